/* Unary gRPC calls over HTTP/2 on the mcp_http client: cleartext TCP (prior
 * knowledge), a unix socket, or TLS. Messages are opaque bytes: the caller
 * packs and unpacks them (protobuf-c or by hand). */
#ifndef MCP_GRPC_CLIENT_H
#define MCP_GRPC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcp/error.h"
#include "mcp/grpc_wire.h" /* status codes, framing, grpc-timeout */
#include "mcp/http.h"

#define MCP_GRPC_DEFAULT_TIMEOUT_MS 10000

/* Where and what to call. Copied: nothing needs to outlive the call. */
typedef struct mcp_grpc_request {
    const char *target;      /* "host:port" ("[::1]:port" for IPv6); ignored with unix_socket */
    const char *unix_socket; /* path (<= 107 bytes), or NULL for TCP */
    bool tls;                /* https + ALPN h2 (TCP only) */
    const char *ca_file, *cert_file, *key_file; /* TLS options, may be NULL */
    const char *method;                         /* "/pkg.Service/Method" */
    const void *msg;                            /* the serialized request message */
    size_t msg_len;
    const char *const *metadata; /* extra "name: value" headers, NULL-terminated; may be NULL */
    int64_t timeout_ms; /* deadline, sent as grpc-timeout; <= 0: MCP_GRPC_DEFAULT_TIMEOUT_MS */
    size_t max_msg;     /* response message cap; 0: MCP_GRPC_DEFAULT_MAX_MSG */
} mcp_grpc_request;

typedef struct mcp_grpc_result {
    bool cancelled;
    int status;          /* the server's grpc-status; on failures without one: DEADLINE_EXCEEDED
                            (timeout), UNAVAILABLE (transport), UNKNOWN (no grpc-status),
                            INTERNAL (bad framing, compressed), RESOURCE_EXHAUSTED (too big),
                            CANCELLED */
    const char *message; /* grpc-message, percent-decoded; "" when none */
    const char *reason;  /* "" when a grpc-status arrived; else short text: "timeout",
                            "refused", "reset", "http2 error: ...", "missing grpc-status", ... */
    const uint8_t *data; /* the response message, unframed (status OK only; may be empty) */
    size_t data_len;
    long http_status;
    double elapsed_s;
} mcp_grpc_result;

typedef struct mcp_grpc_call mcp_grpc_call;

/* Called exactly once per started call, from the loop. res and its buffers
 * are freed after it returns; the call handle is invalid then too. */
typedef void (*mcp_grpc_cb)(const mcp_grpc_result *res, void *ud);

/* Starts a unary call on http's loop. NULL with err set on bad arguments
 * (missing method or target, unix path too long) or when http refuses the
 * request; cb is then never called. */
mcp_grpc_call *mcp_grpc_client_call(mcp_http *http, const mcp_grpc_request *rq, mcp_grpc_cb cb,
                                    void *ud, mcp_error *err);

/* Cancels the call: cb runs once on the next loop turn with cancelled = true
 * and status CANCELLED. Valid until cb has run. */
void mcp_grpc_client_cancel(mcp_grpc_call *call);

#endif
