/* The mc-proxy admin client (SPEC §8): AddRoute, RemoveRoute and ListRoutes
 * of mcproxy.v1.ProxyAdminService, unary gRPC over mc-proxy's unix socket,
 * on the event loop. Every call has a deadline, can be cancelled and calls
 * back exactly once. */
#ifndef MCP_MCPROXY_H
#define MCP_MCPROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcp/error.h"
#include "mcp/http.h"

#define MCP_MCPROXY_DEFAULT_TIMEOUT_MS 5000

/* One route: a listener and hostname bound to a backend. Strings may be
 * NULL when sending (sent as ""); in results they are never NULL. */
typedef struct mcp_mcproxy_route {
    char *listener;  /* e.g. ":443" */
    char *hostname;  /* e.g. "metacrypt.example.net" */
    char *backend;   /* "127.0.0.1:HOSTPORT" */
    char *mode;      /* "l4" | "l7" */
    char *cert_path; /* l7 only */
    char *key_path;  /* l7 only */
    char *service;   /* the agent's service name */
} mcp_mcproxy_route;

typedef struct mcp_mcproxy_result {
    bool ok;
    bool cancelled;
    /* "" when ok; else short and stable: "unavailable" (mc-proxy not reachable:
     * no socket, refused, reset, not gRPC), "timeout", "grpc status N: message"
     * (mc-proxy answered an error), "bad response" (not a valid message),
     * "cancelled" */
    const char *reason;
    const char *detail;              /* more about the failure (transport text), "" when none */
    const mcp_mcproxy_route *routes; /* ListRoutes only */
    size_t n_routes;
} mcp_mcproxy_result;

typedef struct mcp_mcproxy_call mcp_mcproxy_call;

/* Called exactly once per started call, from the loop. res and its routes
 * are freed after it returns; the call handle is invalid then too. */
typedef void (*mcp_mcproxy_cb)(const mcp_mcproxy_result *res, void *ud);

/* Where mc-proxy is and how long a call may take. */
typedef struct mcp_mcproxy_target {
    const char *socket; /* [mcproxy] socket: unix path, <= 107 bytes */
    int64_t timeout_ms; /* <= 0: MCP_MCPROXY_DEFAULT_TIMEOUT_MS */
} mcp_mcproxy_target;

/* Registers route (AddRoute is idempotent on mc-proxy's side). Returns the
 * call, or NULL with err set (no socket configured, path too long, out of
 * memory): cb is then never called. */
mcp_mcproxy_call *mcp_mcproxy_add_route(mcp_http *http, const mcp_mcproxy_target *to,
                                        const mcp_mcproxy_route *route, mcp_mcproxy_cb cb, void *ud,
                                        mcp_error *err);

/* Removes the route of listener + hostname. Same contract as add_route. */
mcp_mcproxy_call *mcp_mcproxy_remove_route(mcp_http *http, const mcp_mcproxy_target *to,
                                           const char *listener, const char *hostname,
                                           mcp_mcproxy_cb cb, void *ud, mcp_error *err);

/* Lists mc-proxy's routes (res->routes on success). Same contract as add_route. */
mcp_mcproxy_call *mcp_mcproxy_list_routes(mcp_http *http, const mcp_mcproxy_target *to,
                                          mcp_mcproxy_cb cb, void *ud, mcp_error *err);

/* Stops the call: cb runs once on a later loop turn with cancelled = true.
 * Valid until cb has run. */
void mcp_mcproxy_cancel(mcp_mcproxy_call *call);

#endif
