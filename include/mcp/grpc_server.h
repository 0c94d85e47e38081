/* A gRPC server on a caller's libuv loop: HTTP/2 by nghttp2, TLS by OpenSSL
 * (grpc_tls.h). Unary calls and server streaming (one request message, any
 * number of response messages).
 *
 * Listeners: a unix socket (mode 0660) and TCP, which needs TLS with client
 * certificates verified against a CA, unless the caller asks for plaintext AND
 * the address is loopback. Handlers are registered per method path; a handler
 * gets the call and the request bytes and completes the call whenever it likes
 * (possibly many loop turns later) with exactly one mcp_grpc_server_reply(),
 * mcp_grpc_server_fail() or mcp_grpc_server_finish(), after any number of
 * mcp_grpc_server_send(). If the client goes away, the deadline passes or the
 * server closes the connection first, the server answers or cleans up itself,
 * tells the handler through the optional cancel callback, and the handler's
 * later reply/fail is a harmless no-op that frees the call.
 *
 * Generated protobuf-c headers come from the mcp_proto library, included by
 * their proto path: #include "mcp/agent/v1/agent.pb-c.h". */
#ifndef MCP_GRPC_SERVER_H
#define MCP_GRPC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "mcp/error.h"
#include "mcp/grpc_wire.h" /* status codes, framing, grpc-timeout, percent-encoding */

typedef struct mcp_grpc_server mcp_grpc_server;
typedef struct mcp_grpc_server_call mcp_grpc_server_call;

/* Called once per request, on the loop thread. `req` (the message without its
 * 5-byte gRPC prefix) is valid only during this call: copy or unpack it. The
 * handler (now or later) must finish the call with exactly one reply/fail. */
typedef void (*mcp_grpc_handler_fn)(mcp_grpc_server_call *call, const uint8_t *req, size_t len,
                                    void *ud);

/* Called at most once when the call ends before the handler finished it:
 * reason is MCP_GRPC_CANCELLED (client reset the stream or disconnected),
 * MCP_GRPC_DEADLINE_EXCEEDED (already answered to the client) or
 * MCP_GRPC_UNAVAILABLE (the server closed the connection, or ended a streaming
 * call at shutdown, answering UNAVAILABLE itself). It may run from inside any
 * server function, including the handler's own send: record it (wake a task),
 * do not free the call from it. The call stays
 * valid: the handler still completes it (reply/fail then only free it). */
typedef void (*mcp_grpc_cancel_fn)(mcp_grpc_server_call *call, int reason, void *ud);

/* Called once when a streamed call's unsent output dropped to the mark given
 * to mcp_grpc_server_call_on_drain (from the loop, inside the server: record
 * it, e.g. wake a task; sending from it is allowed). */
typedef void (*mcp_grpc_drain_fn)(mcp_grpc_server_call *call, void *ud);

/* Called once when mcp_grpc_server_shutdown() has closed everything. */
typedef void (*mcp_grpc_done_fn)(mcp_grpc_server *server, void *ud);

/* Connection limits are per listener, so that a flood on the TCP port never
 * locks the CLI out of the unix socket; connections over a limit are closed at
 * once. */
typedef struct mcp_grpc_server_options {
    size_t max_message_bytes;        /* request cap; 0 = 4 MiB */
    unsigned max_connections;        /* per TCP listener; 0 = 256 */
    unsigned max_unix_connections;   /* the unix socket's own pool; 0 = 64 */
    unsigned max_peer_connections;   /* per TCP peer address and listener; 0 = 32 */
    unsigned max_handshakes;         /* per TCP listener, still before the first frame; 0 = 64 */
    unsigned max_concurrent_streams; /* advertised in SETTINGS; 0 = 100 */
    unsigned handshake_timeout_ms;   /* TLS handshake + HTTP/2 preface; 0 = 10000 */
    unsigned header_timeout_ms;      /* a request's HEADERS, from their first frame; 0 = 10000 */
    unsigned idle_timeout_ms;        /* no open stream (a streaming call is open); 0 = 60000 */
} mcp_grpc_server_options;

/* TLS for a TCP listener. All three files are required unless insecure. */
typedef struct mcp_grpc_tls_options {
    const char *cert_file; /* server certificate chain, PEM */
    const char *key_file;  /* its private key, PEM */
    const char *ca_file;   /* CA that client certificates must chain to, PEM */
    bool insecure;         /* plaintext; accepted only on a loopback address */
} mcp_grpc_tls_options;

/* A server on loop (opts may be NULL for the defaults). NULL with err set on failure.
 * Sets SIGPIPE to ignored (process-wide): a client hanging up must not kill the daemon. */
mcp_grpc_server *mcp_grpc_server_new(uv_loop_t *loop, const mcp_grpc_server_options *opts,
                                     mcp_error *err);

/* Routes a method path ("/mcp.agent.v1.AgentService/ListServices") to fn.
 * Registering the same path again replaces the handler. 0, or -1 (err set). */
int mcp_grpc_server_handle(mcp_grpc_server *server, const char *path, mcp_grpc_handler_fn fn,
                           void *ud, mcp_error *err);

/* Listens on a unix socket at path (mode 0660). A stale socket file (nobody
 * answering) is removed; a live one or a file that is not a socket is
 * refused. The socket file is removed again at shutdown. 0, or -1 (err set). */
int mcp_grpc_server_listen_unix(mcp_grpc_server *server, const char *path, mcp_error *err);

/* Listens on TCP "host:port" ("[::1]:port", ":port" = all addresses; port 0
 * picks a free port, see mcp_grpc_server_tcp_port). TLS 1.2+ with ALPN h2
 * and required, verified client certificates; tls->insecure gives plaintext
 * on a loopback address only. 0, or -1 (err says why). */
int mcp_grpc_server_listen_tcp(mcp_grpc_server *server, const char *addr,
                               const mcp_grpc_tls_options *tls, mcp_error *err);

/* The port the most recent TCP listener is bound to, or -1. */
int mcp_grpc_server_tcp_port(const mcp_grpc_server *server);

/* Graceful stop: closes the listeners, sends GOAWAY on every connection, ends
 * streaming calls at once (their queued messages, then UNAVAILABLE trailers;
 * the handler is told through the cancel callback), lets the other
 * calls in flight finish for up to grace_ms, then closes what is left
 * (cancelling their calls with MCP_GRPC_UNAVAILABLE), and calls done (may be
 * NULL) from the loop once everything is closed. Calling it again does
 * nothing: the first grace period and done callback stand. */
void mcp_grpc_server_shutdown(mcp_grpc_server *server, unsigned grace_ms, mcp_grpc_done_fn done,
                              void *ud);

/* Frees the server. Only after the done callback, or before any listen call. */
void mcp_grpc_server_free(mcp_grpc_server *server);

/* Number of open connections. */
unsigned mcp_grpc_server_connections(const mcp_grpc_server *server);

/* ---- calls ---- */

/* Sets the cancel callback of a call (call it from the handler, before returning). */
void mcp_grpc_server_call_set_cancel(mcp_grpc_server_call *call, mcp_grpc_cancel_fn fn, void *ud);

/* The method path, e.g. "/grpc.health.v1.Health/Check" (valid until the call is finished). */
const char *mcp_grpc_server_call_method(const mcp_grpc_server_call *call);

/* Who called: "unix", "tcp" (plaintext loopback) or the client certificate's
 * subject CN for TLS (valid until the call is finished). */
const char *mcp_grpc_server_call_peer(const mcp_grpc_server_call *call);

/* Milliseconds left before the client's deadline, or -1 when it set none. */
int64_t mcp_grpc_server_call_remaining_ms(const mcp_grpc_server_call *call);

/* True once the call was cancelled (the reply would go nowhere). */
bool mcp_grpc_server_call_cancelled(const mcp_grpc_server_call *call);

/* Finishes the call with status OK and msg (the serialized response, without
 * prefix). Frees the call. 0 when queued to the client; -1 when the call had
 * been cancelled (nothing sent) or memory ran out (the client gets INTERNAL). */
int mcp_grpc_server_reply(mcp_grpc_server_call *call, const uint8_t *msg, size_t len);

/* Finishes the call with an error status (not OK) and a message (may be NULL),
 * sent Trailers-Only. Frees the call. 0, or -1 when it had been cancelled. */
int mcp_grpc_server_fail(mcp_grpc_server_call *call, int status, const char *message);

/* Packs msg and replies with it (see mcp_grpc_server_reply). */
int mcp_grpc_server_reply_message(mcp_grpc_server_call *call, const ProtobufCMessage *msg);

/* Unpacks req as desc's message. On failure fails the call with
 * INVALID_ARGUMENT ("request is not a valid <type>"), which frees the call,
 * and returns NULL. Free the result with protobuf_c_message_free_unpacked(m, NULL). */
ProtobufCMessage *mcp_grpc_server_unpack_or_fail(mcp_grpc_server_call *call,
                                                 const ProtobufCMessageDescriptor *desc,
                                                 const uint8_t *req, size_t len);

/* ---- server streaming ---- */

/* Queues msg (serialized, without prefix) as one message of the response;
 * the response HEADERS go out with the first. Does not end the call, and
 * marks it streaming (see mcp_grpc_server_call_set_streaming). 0 when
 * queued; -1 when the call was cancelled or closed (nothing sent; the call
 * still needs its finish/fail to be freed) or memory ran out. */
int mcp_grpc_server_send(mcp_grpc_server_call *call, const uint8_t *msg, size_t len);

/* Packs msg and sends it (see mcp_grpc_server_send). */
int mcp_grpc_server_send_message(mcp_grpc_server_call *call, const ProtobufCMessage *msg);

/* Ends the call with status OK: trailers after the sent messages, or
 * Trailers-Only when none was sent. Frees the call. 0, or -1 when it had
 * been cancelled. (mcp_grpc_server_fail after sends puts its status in the
 * trailers the same way.) */
int mcp_grpc_server_finish(mcp_grpc_server_call *call);

/* Bytes of sent messages not yet taken by HTTP/2 (flow control: the client
 * reads slower than the handler sends). 0 once cancelled. */
size_t mcp_grpc_server_call_unsent(const mcp_grpc_server_call *call);

/* Arms fn to run once when the unsent bytes drop to at most below. Replaces
 * an armed one; fn NULL disarms. Never runs once the call is cancelled (the
 * cancel callback runs instead). */
void mcp_grpc_server_call_on_drain(mcp_grpc_server_call *call, size_t below, mcp_grpc_drain_fn fn,
                                   void *ud);

/* Marks the call a long-lived stream, which shutdown ends at once instead of
 * waiting for it during the grace period. When the server is already
 * shutting down, ends it now (the cancel callback runs before this returns). */
void mcp_grpc_server_call_set_streaming(mcp_grpc_server_call *call);

#endif
