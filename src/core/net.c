/* Small socket helpers. */
#include "mcp/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static bool can_bind(in_addr_t addr, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true; /* cannot tell: do not hold the port back */
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = addr;
    bool ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

bool mcp_tcp_port_free(int port)
{
    if (port <= 0 || port > 65535)
        return false;
    return can_bind(htonl(INADDR_LOOPBACK), port) && can_bind(htonl(INADDR_ANY), port);
}
