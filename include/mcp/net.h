/* Small socket helpers. */
#ifndef MCP_NET_H
#define MCP_NET_H

#include <stdbool.h>

/* True when nothing on this host listens on TCP port (checked by binding
 * 127.0.0.1:port and 0.0.0.0:port briefly). */
bool mcp_tcp_port_free(int port);

#endif
