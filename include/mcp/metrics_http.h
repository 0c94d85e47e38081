/* GET /metrics over HTTP/1.1 on the agent's libuv loop: libmicrohttpd in
 * external-poll mode (its epoll descriptor watched by a uv_poll, its
 * timeouts by a uv_timer), so a scrape runs on the loop thread and renders
 * the registry directly. No thread of its own. */
#ifndef MCP_METRICS_HTTP_H
#define MCP_METRICS_HTTP_H

#include <stddef.h>
#include <sys/un.h>
#include <uv.h>

#include "mcp/error.h"
#include "mcp/metrics.h"

/* Bounds of the endpoint (the tests rely on them being small). */
#define MCP_METRICS_MAX_CONNECTIONS 256  /* more are refused at accept */
#define MCP_METRICS_IDLE_CONNECTIONS 32  /* beyond this, the oldest idle one is cut */
#define MCP_METRICS_REQUEST_DEADLINE_S 5 /* a request must be complete this soon */
#define MCP_METRICS_IDLE_TIMEOUT_S 10    /* a silent connection is closed after */
#define MCP_METRICS_REQUEST_MEMORY 16384 /* request line + headers; more is refused */

typedef struct mcp_metrics_listen {
    int family; /* AF_INET, AF_INET6 or AF_UNIX */
    char host[64];
    int port; /* 0: any free port */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} mcp_metrics_listen;

/* Parses "host:port" (IPv4 literal or "localhost"), "[v6]:port", ":port"
 * (every IPv4 address) or a unix socket path (starting with "/" or "./").
 * 0, or -1 with a reason in why. */
int mcp_metrics_listen_parse(const char *text, mcp_metrics_listen *out, char *why, size_t whylen);

typedef struct mcp_metrics_http mcp_metrics_http;

/* Listens on `listen` and serves m (which must outlive the server).
 * NULL with err set ("metrics: cannot listen on ...: Address in use"). */
mcp_metrics_http *mcp_metrics_http_start(uv_loop_t *loop, const char *listen, mcp_metrics *m,
                                         mcp_error *err);
/* The TCP port listened on (useful with port 0); 0 for a unix socket. */
int mcp_metrics_http_port(const mcp_metrics_http *s);
/* Stops serving and frees s once the loop has closed its handles (a unix
 * socket file is removed). */
void mcp_metrics_http_close(mcp_metrics_http *s);

#endif
