/* Internals of the gRPC server, shared by its four files:
 *   grpc_server.c  the server object, shutdown and the public call API
 *   grpc_listen.c  unix and TCP listeners
 *   grpc_conn.c    connections: libuv I/O, TLS (grpc_tls.c), flush and close
 *   grpc_stream.c  HTTP/2 streams: request parsing, responses, nghttp2 callbacks
 *
 * Ownership: the server owns listeners and connections; a connection owns its
 * streams; a stream that reached a handler points at a call, which the
 * handler owns until it finishes it. When a stream dies first the call is
 * detached ("orphaned"): it keeps its own copies of method and peer, and the
 * handler's later reply/fail only frees it.
 *
 * Re-entrancy: nghttp2 must not be driven (mem_send, session_del) from inside
 * its own callbacks, and handlers may reply from inside them. conn->busy
 * counts such frames; a flush asked for while busy is picked up by the flush
 * loop or the read path that is running. */
#ifndef MCP_GRPC_SERVER_IMPL_H
#define MCP_GRPC_SERVER_IMPL_H

#include <nghttp2/nghttp2.h>

#include "mcp/grpc_server.h"
#include "mcp/grpc_tls.h"

#define READ_BUF_SIZE 65536
#define REJECT_DISCARD_LIMIT (64 * 1024)

typedef struct handler {
    char *path;
    mcp_grpc_handler_fn fn;
    void *ud;
    struct handler *next;
} handler;

typedef struct listener {
    mcp_grpc_server *server;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    bool is_unix;
    mcp_tls_ctx *tls; /* NULL: plaintext */
    char *unix_path;
    unsigned id; /* connections name their listener by id: it may be freed first */
    struct listener *next;
} listener;

typedef struct conn conn;

typedef struct gstream {
    conn *c;
    int32_t id;
    char *path;
    mcp_grpc_handler_fn fn;
    void *fn_ud;
    bool bad_method, bad_ctype, headers_done;
    uint64_t begun_ms;  /* uv_now when its HEADERS began: slow headers are cut off */
    bool responded;     /* the final status is decided (Trailers-Only sent or trailers due) */
    bool remote_closed; /* the client sent END_STREAM */
    /* An error decided before the client finished sending: answered at its
     * END_STREAM, or at once if it keeps sending (REJECT_DISCARD_LIMIT). */
    bool rejected;
    const char *reject_http;
    int reject_status;
    char *reject_msg;
    size_t discarded;
    int64_t deadline_ms; /* absolute (mcp_now_ms), -1 = none */
    uv_timer_t *timer;
    /* The one request message: prefix, then body allocated once the prefix passed the checks. */
    uint8_t prefix[MCP_GRPC_PREFIX_LEN];
    size_t prefix_len;
    uint8_t *body;
    size_t body_len, body_want;
    bool msg_complete;
    /* The response: framed messages not yet taken by nghttp2 (out[out_off..out_len)),
     * then trailers with end_status once they are all out. */
    bool headers_sent; /* HEADERS + the data provider submitted */
    bool deferred;     /* the data provider waits for more output */
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    int end_status;
    char *end_msg; /* percent-encoded, or NULL */
    mcp_grpc_server_call *call;
    struct gstream *prev, *next;
} gstream;

struct mcp_grpc_server_call {
    gstream *s; /* NULL once orphaned */
    char *method;
    char *peer;
    int64_t deadline_ms;
    mcp_grpc_cancel_fn cancel;
    void *cancel_ud;
    mcp_grpc_drain_fn drain; /* armed by mcp_grpc_server_call_on_drain */
    void *drain_ud;
    size_t drain_below;
    bool cancelled;
    bool streaming; /* a long-lived stream: shutdown ends it at once */
};

#define GOAWAY_LINGER_MS 250

struct conn {
    mcp_grpc_server *server;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    /* Handshake/preface, then slow-headers or idle timeout (mcp_grpcs_conn_arm_timer);
     * freed on its own close. */
    uv_timer_t *timer;
    uint64_t idle_since; /* uv_now when the last stream went (or the first frame came) */
    nghttp2_session *session;
    mcp_tls *tls; /* NULL: plaintext */
    bool got_frame, closing, want_close;
    /* Shutting down with calls open: GOAWAY once the last has answered and
     * GOAWAY_LINGER_MS have passed (libcurl 7.88 drops trailers it reads
     * together with a GOAWAY). */
    bool goaway_due;
    unsigned listener_id;
    int busy;
    int cancel_reason; /* told to handlers of calls cut off by a close */
    char peer[128];
    char addr[64]; /* the peer's IP address (TCP), "" on the unix socket */
    gstream *streams;
    conn *prev, *next;
};

struct mcp_grpc_server {
    uv_loop_t *loop;
    mcp_grpc_server_options opts;
    handler *handlers;
    listener *listeners;
    conn *conns;
    unsigned nconns;
    unsigned open_handles; /* listeners + connections not yet closed */
    unsigned next_listener_id;
    uint64_t refusal_logged_at; /* uv_now: refusals are logged once a second, counted */
    unsigned refusals_unlogged;
    nghttp2_session_callbacks *cbs;
    int tcp_port;
    bool shutting_down, done_called;
    uv_timer_t *grace_timer;
    mcp_grpc_done_fn done;
    void *done_ud;
    char readbuf[READ_BUF_SIZE];
    uint8_t tlsbuf[16384];
};

/* grpc_server.c */
void mcp_grpcs_check_done(mcp_grpc_server *s);
void mcp_grpcs_timer_free_cb(uv_handle_t *h);
/* Ends a streaming call because the server is shutting down. */
void mcp_grpcs_end_for_shutdown(mcp_grpc_server_call *call);

/* grpc_listen.c */
void mcp_grpcs_listener_closed_cb(uv_handle_t *h);

/* grpc_conn.c */
void mcp_grpcs_on_connection(uv_stream_t *lstream, int status);
void mcp_grpcs_conn_flush(conn *c);
void mcp_grpcs_conn_close(conn *c);
int mcp_grpcs_conn_start_session(conn *c);
/* After the first frame and whenever a stream begins, finishes its headers or
 * goes: times out the oldest stream still sending HEADERS, or the connection
 * once it has no stream. */
void mcp_grpcs_conn_arm_timer(conn *c);

/* grpc_stream.c */
nghttp2_session_callbacks *mcp_grpcs_make_callbacks(void);
void mcp_grpcs_stream_free(gstream *s);
/* Detaches the call from its stream, marks it cancelled and tells the handler. */
void mcp_grpcs_call_orphan(mcp_grpc_server_call *call, int reason);
void mcp_grpcs_call_free(mcp_grpc_server_call *call);
/* Ends the stream with status: Trailers-Only before any message, else
 * trailers after the queued messages. */
void mcp_grpcs_stream_end(gstream *s, const char *http_status, int status, const char *msg);
/* Queues one message (HEADERS go first). 0, or -1 (nothing queued). */
int mcp_grpcs_stream_queue(gstream *s, const uint8_t *msg, size_t len);
size_t mcp_grpcs_stream_unsent(const gstream *s);
/* Runs the drain callbacks that came due; true when one ran. */
bool mcp_grpcs_notify_drained(conn *c);

#endif
