/* Unary gRPC calls over HTTP/2 on the mcp_http client: cleartext TCP (prior
 * knowledge), a unix socket, or TLS. Messages are opaque bytes: the caller
 * packs and unpacks them (protobuf-c or by hand). */
#ifndef MCP_GRPC_CLIENT_H
#define MCP_GRPC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcp/error.h"
#include "mcp/http.h"

#define MCP_GRPC_DEFAULT_TIMEOUT_MS 10000
#define MCP_GRPC_DEFAULT_MAX_MSG ((size_t)4 << 20)

/* All gRPC status codes (grpc/grpc doc/statuscodes.md), for the client and
 * the server (grpc_server.h includes this header). */
enum {
    MCP_GRPC_OK = 0,
    MCP_GRPC_CANCELLED = 1,
    MCP_GRPC_UNKNOWN = 2,
    MCP_GRPC_INVALID_ARGUMENT = 3,
    MCP_GRPC_DEADLINE_EXCEEDED = 4,
    MCP_GRPC_NOT_FOUND = 5,
    MCP_GRPC_ALREADY_EXISTS = 6,
    MCP_GRPC_PERMISSION_DENIED = 7,
    MCP_GRPC_RESOURCE_EXHAUSTED = 8,
    MCP_GRPC_FAILED_PRECONDITION = 9,
    MCP_GRPC_ABORTED = 10,
    MCP_GRPC_OUT_OF_RANGE = 11,
    MCP_GRPC_UNIMPLEMENTED = 12,
    MCP_GRPC_INTERNAL = 13,
    MCP_GRPC_UNAVAILABLE = 14,
    MCP_GRPC_DATA_LOSS = 15,
    MCP_GRPC_UNAUTHENTICATED = 16,
};

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

/* Pure helpers (exposed for tests and the server side). */

/* Percent-decodes a grpc-message into a new string (invalid escapes are
 * kept as they are). NULL when out of memory. */
char *mcp_grpc_percent_decode(const char *s);

/* Frames msg (flag 0 + 4-byte big-endian length) into a new buffer of
 * msg_len + 5 bytes. NULL when out of memory. */
uint8_t *mcp_grpc_frame(const void *msg, size_t msg_len);

/* Unframes exactly one uncompressed message from body. Returns 0 and points
 * *msg into body, or -1 with err set (truncated, trailing bytes, compressed,
 * longer than max_msg — checked on the length prefix before anything else). */
int mcp_grpc_unframe(const uint8_t *body, size_t body_len, size_t max_msg, const uint8_t **msg,
                     size_t *msg_len, mcp_error *err);

/* Formats a deadline as a grpc-timeout value ("500m", "30S", ...) into buf. */
void mcp_grpc_timeout_header(int64_t timeout_ms, char *buf, size_t size);

#endif
