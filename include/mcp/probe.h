/* Health probes on the event loop: TCP connect, HTTP GET, and the standard
 * gRPC health check (grpc.health.v1.Health/Check). Each has a timeout, can be
 * cancelled and calls back exactly once. */
#ifndef MCP_PROBE_H
#define MCP_PROBE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "mcp/error.h"
#include "mcp/http.h"

/* Used when a probe is given timeout_ms <= 0. */
#define MCP_PROBE_DEFAULT_TIMEOUT_MS 5000

typedef struct mcp_probe_result {
    bool healthy;
    bool cancelled;
    const char *reason; /* "ok" when healthy; else short and stable: "refused", "timeout",
                           "reset", "http status 503", "NOT_SERVING", "unknown service",
                           "grpc status N: message", "cancelled", ... */
    double latency_s;   /* from start to the answer (or to the failure) */
} mcp_probe_result;

typedef struct mcp_probe mcp_probe;

/* Called exactly once per started probe, from the loop (never from inside
 * the start or cancel functions). res is valid only during the call; the
 * probe handle is invalid after it. */
typedef void (*mcp_probe_cb)(const mcp_probe_result *res, void *ud);

/* Healthy when a TCP connection to host:port is accepted within timeout_ms.
 * host is an IPv4/IPv6 literal or "localhost" (→ 127.0.0.1). NULL with err
 * set on a bad host or port; cb is then never called. */
mcp_probe *mcp_probe_tcp(uv_loop_t *loop, const char *host, int port, int64_t timeout_ms,
                         mcp_probe_cb cb, void *ud, mcp_error *err);

/* GET http://host:port/path (path NULL: "/"); healthy on a 2xx or 3xx status
 * within timeout_ms, else reason "http status N" or the transport reason. */
mcp_probe *mcp_probe_http(mcp_http *http, const char *host, int port, const char *path,
                          int64_t timeout_ms, mcp_probe_cb cb, void *ud, mcp_error *err);

/* grpc.health.v1.Health/Check for service ("" or NULL: the whole server) over
 * cleartext HTTP/2 at host:port. Healthy when the reply says SERVING; reasons:
 * "NOT_SERVING", "UNKNOWN" (status 0 in the reply), "unknown service" (grpc
 * status NOT_FOUND), "grpc status N: message", or the transport reason. */
mcp_probe *mcp_probe_grpc(mcp_http *http, const char *host, int port, const char *service,
                          int64_t timeout_ms, mcp_probe_cb cb, void *ud, mcp_error *err);

/* Stops the probe; cb runs once on the next loop turn with cancelled = true,
 * healthy = false, reason "cancelled". Valid until cb has run. */
void mcp_probe_cancel(mcp_probe *p);

/* Pure helpers for the health protocol (exposed for tests). */

/* Encodes HealthCheckRequest{service} into buf. Returns the length, or -1
 * when it does not fit (service longer than 127 bytes needs no more than a
 * 2-byte length; size >= strlen(service) + 3 always suffices). */
int mcp_probe_health_request(const char *service, uint8_t *buf, size_t size);

/* Decodes HealthCheckResponse into *status (0 UNKNOWN, 1 SERVING,
 * 2 NOT_SERVING, 3 SERVICE_UNKNOWN). Returns 0, or -1 on malformed bytes. */
int mcp_probe_health_decode(const uint8_t *msg, size_t len, int *status);

#endif
