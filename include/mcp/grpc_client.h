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

/* ---- server streaming ---------------------------------------------------- */

/* Reassembles length-prefixed messages from bytes that arrive in chunks of
 * any size. The length prefix is checked against max_msg before anything of
 * the message is buffered. */
typedef struct mcp_grpc_decoder {
    size_t max_msg;
    uint8_t prefix[MCP_GRPC_PREFIX_LEN];
    size_t prefix_have;
    uint8_t *msg; /* the message being reassembled (msg_len bytes) */
    size_t msg_len, msg_have;
    int failed; /* the status it failed with; 0 while ok */
} mcp_grpc_decoder;

/* One complete message; msg is valid during the call only. 0 to go on, else a
 * gRPC status code that stops the decoder (feed then returns it). */
typedef int (*mcp_grpc_msg_cb)(const uint8_t *msg, size_t len, void *ud);

/* max_msg 0: MCP_GRPC_DEFAULT_MAX_MSG. */
void mcp_grpc_decoder_init(mcp_grpc_decoder *d, size_t max_msg);

/* Feeds len bytes, calling on_msg for every message they complete. Returns 0,
 * or a gRPC status with err set: RESOURCE_EXHAUSTED (a message longer than
 * max_msg), INTERNAL (compressed, out of memory), or what on_msg returned.
 * A failed decoder refuses further input with the same status. */
int mcp_grpc_decoder_feed(mcp_grpc_decoder *d, const uint8_t *data, size_t len,
                          mcp_grpc_msg_cb on_msg, void *ud, mcp_error *err);

/* True when the bytes fed so far end between two messages. */
bool mcp_grpc_decoder_idle(const mcp_grpc_decoder *d);

void mcp_grpc_decoder_free(mcp_grpc_decoder *d);

typedef struct mcp_grpc_stream mcp_grpc_stream;

/* Every message of a server stream, as it arrives. Called on the loop but
 * from inside curl: it must not cancel the stream or touch the http client.
 * 0 to go on, else a gRPC status code that ends the stream with it. */
typedef int (*mcp_grpc_stream_msg_cb)(const uint8_t *msg, size_t len, void *ud);

/* The end of a stream, exactly once, from the loop (like mcp_grpc_cb; data is
 * always NULL). The stream handle is invalid once it has returned. */
typedef void (*mcp_grpc_stream_end_cb)(const mcp_grpc_result *res, void *ud);

/* Starts a server-streaming call (one request message, any number of
 * answers). rq->timeout_ms > 0 is the deadline of the whole stream, sent as
 * grpc-timeout; <= 0: none (the caller bounds its waits and cancels).
 * Connecting is bounded by connect_timeout_ms (<= 0: MCP_GRPC_DEFAULT_TIMEOUT_MS).
 * rq->max_msg bounds each message. NULL with err set like mcp_grpc_client_call. */
mcp_grpc_stream *mcp_grpc_client_stream(mcp_http *http, const mcp_grpc_request *rq,
                                        int64_t connect_timeout_ms, mcp_grpc_stream_msg_cb on_msg,
                                        mcp_grpc_stream_end_cb on_end, void *ud, mcp_error *err);

/* Cancels the stream: on_end runs once on the next loop turn with cancelled =
 * true and status CANCELLED. Valid until on_end has run. */
void mcp_grpc_client_stream_cancel(mcp_grpc_stream *s);

#endif
