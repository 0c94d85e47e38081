/* A unary gRPC server: libuv streams, OpenSSL over memory BIOs, nghttp2 sessions.
 *
 * Ownership: the server owns listeners and connections; a connection owns its
 * streams; a stream that reached a handler points at a call, which the
 * handler owns until it replies or fails. When a stream dies first the call
 * is detached ("orphaned"): it keeps its own copies of method and peer, and
 * the handler's later reply/fail only frees it.
 *
 * Re-entrancy: nghttp2 must not be driven (mem_send, session_del) from inside
 * its own callbacks, and handlers may reply from inside them. conn->busy
 * counts such frames; a flush asked for while busy is picked up by the
 * flush loop or the read path that is running. */
#include "mcp/grpc_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "mcp/log.h"
#include "mcp/util.h"

#define DEFAULT_MAX_MESSAGE (4u * 1024u * 1024u)
#define DEFAULT_MAX_CONNECTIONS 256u
#define DEFAULT_MAX_STREAMS 100u
#define DEFAULT_HANDSHAKE_MS 10000u
#define READ_BUF_SIZE 65536
#define GRPC_PREFIX 5
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
    SSL_CTX *ssl_ctx; /* NULL: plaintext */
    char *unix_path;
    struct listener *next;
} listener;

typedef struct conn conn;

typedef struct gstream {
    conn *c;
    int32_t id;
    char *path;
    mcp_grpc_handler_fn fn;
    void *fn_ud;
    bool bad_method, bad_ctype, headers_done, responded;
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
    uint8_t prefix[GRPC_PREFIX];
    size_t prefix_len;
    uint8_t *body;
    size_t body_len, body_want;
    bool msg_complete;
    /* The response message (prefix + body) being sent by the data provider. */
    uint8_t *out;
    size_t out_len, out_off;
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
    bool cancelled;
};

struct conn {
    mcp_grpc_server *server;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_timer_t *hs_timer; /* handshake/preface timeout, freed on its own close */
    nghttp2_session *session;
    SSL *ssl;
    bool got_frame, closing, want_close;
    int busy;
    int cancel_reason; /* told to handlers of calls cut off by a close */
    char peer[128];
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
    nghttp2_session_callbacks *cbs;
    int tcp_port;
    bool shutting_down, done_called;
    uv_timer_t *grace_timer;
    mcp_grpc_done_fn done;
    void *done_ud;
    char readbuf[READ_BUF_SIZE];
    uint8_t tlsbuf[16384];
};

typedef struct write_req {
    uv_write_t req;
    uint8_t *buf;
} write_req;

/* A growable byte buffer for one flush. */
typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes;

static int bytes_append(bytes *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

static void conn_flush(conn *c);
static void conn_close(conn *c);
static void check_done(mcp_grpc_server *s);

/* ------------------------------------------------------------------ */
/* wire helpers                                                        */

int mcp_grpc_parse_timeout(const char *value, int64_t *ms)
{
    if (!value)
        return -1;
    size_t n = strlen(value);
    if (n < 2 || n > 9)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (value[i] < '0' || value[i] > '9')
            return -1;
        v = v * 10 + (value[i] - '0');
    }
    switch (value[n - 1]) {
    case 'H':
        *ms = v * 3600000;
        break;
    case 'M':
        *ms = v * 60000;
        break;
    case 'S':
        *ms = v * 1000;
        break;
    case 'm':
        *ms = v;
        break;
    case 'u':
        *ms = (v + 999) / 1000;
        break;
    case 'n':
        *ms = (v + 999999) / 1000000;
        break;
    default:
        return -1;
    }
    return 0;
}

char *mcp_grpc_percent_encode(const char *msg)
{
    if (!msg)
        msg = "";
    size_t n = strlen(msg);
    char *out = malloc(n * 3 + 1);
    if (!out)
        return NULL;
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            *o++ = (char)*p;
        } else {
            static const char hex[] = "0123456789ABCDEF";
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

bool mcp_grpc_host_is_loopback(const char *host)
{
    if (!host)
        return false;
    if (strcmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return false;
}

const char *mcp_grpc_status_name(int status)
{
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if (status < 0 || status >= (int)(sizeof names / sizeof names[0]))
        return "UNKNOWN";
    return names[status];
}

/* ------------------------------------------------------------------ */
/* streams and calls                                                   */

static void timer_free_cb(uv_handle_t *h)
{
    free(h);
}

static void stream_stop_timer(gstream *s)
{
    if (s->timer) {
        s->timer->data = NULL;
        uv_close((uv_handle_t *)s->timer, timer_free_cb);
        s->timer = NULL;
    }
}

/* Detaches the call from its stream and tells the handler; the call lives on until it is finished.
 */
static void call_orphan(mcp_grpc_server_call *call, int reason)
{
    if (call->s) {
        call->s->call = NULL;
        call->s = NULL;
    }
    call->cancelled = true;
    if (call->cancel)
        call->cancel(call, reason, call->cancel_ud);
}

static void call_free(mcp_grpc_server_call *call)
{
    free(call->method);
    free(call->peer);
    free(call);
}

static void stream_free(gstream *s)
{
    conn *c = s->c;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    stream_stop_timer(s);
    free(s->path);
    free(s->body);
    free(s->out);
    free(s->reject_msg);
    free(s);
}

static int submit_nv(gstream *s, const nghttp2_nv *nv, size_t n, const nghttp2_data_provider *prd)
{
    int rv = nghttp2_submit_response(s->c->session, s->id, nv, n, prd);
    if (rv != 0)
        mcp_log(MCP_LOG_DEBUG, "grpc: cannot submit response", "error", nghttp2_strerror(rv), NULL);
    return rv;
}

#define NV(name, value)                                                                            \
    {                                                                                              \
        (uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, strlen(value),                    \
            NGHTTP2_NV_FLAG_NONE                                                                   \
    }

/* Answers a stream with one HEADERS frame carrying the status (Trailers-Only). */
static void stream_send_status(gstream *s, const char *http_status, int status, const char *msg)
{
    if (s->responded || s->c->closing || !s->c->session)
        return;
    s->responded = true;
    stream_stop_timer(s);
    char code[16];
    snprintf(code, sizeof code, "%d", status);
    char *enc = msg ? mcp_grpc_percent_encode(msg) : NULL;
    nghttp2_nv nv[] = {
        NV(":status", http_status),
        NV("content-type", "application/grpc"),
        NV("grpc-status", code),
        NV("grpc-message", enc ? enc : ""),
    };
    submit_nv(s, nv, enc ? 4 : 3, NULL);
    free(enc);
}

static void stream_send_rejection(gstream *s)
{
    s->rejected = false;
    stream_send_status(s, s->reject_http, s->reject_status,
                       s->reject_msg ? s->reject_msg : "request rejected");
}

/* Answers an error: now when the client has finished sending, else at its
 * END_STREAM (answering mid-upload makes some clients, e.g. curl 7.88, hang or
 * fail even with RST_STREAM(NO_ERROR)); what it still sends is discarded. */
static void stream_reject(gstream *s, const char *http_status, int status, const char *msg)
{
    if (s->responded || s->rejected)
        return;
    s->rejected = true;
    s->reject_http = http_status;
    s->reject_status = status;
    s->reject_msg = mcp_strdup(msg);
    if (s->remote_closed)
        stream_send_rejection(s);
}

static ssize_t reply_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                             size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                             void *user_data)
{
    gstream *s = source->ptr;
    size_t n = s->out_len - s->out_off;
    if (n > length)
        n = length;
    memcpy(buf, s->out + s->out_off, n);
    s->out_off += n;
    if (s->out_off == s->out_len) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv trailer[] = {NV("grpc-status", "0")};
        if (nghttp2_submit_trailer(session, stream_id, trailer, 1) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

/* Answers a stream with HEADERS, the message as DATA, and trailers with grpc-status 0. */
static void stream_send_reply(gstream *s, const uint8_t *msg, size_t len)
{
    if (s->responded || s->c->closing || !s->c->session)
        return;
    if (len > UINT32_MAX || !(s->out = malloc(len + GRPC_PREFIX))) {
        stream_send_status(s, "200", MCP_GRPC_INTERNAL, "server out of memory for the reply");
        return;
    }
    s->responded = true;
    stream_stop_timer(s);
    s->out[0] = 0;
    s->out[1] = (uint8_t)(len >> 24);
    s->out[2] = (uint8_t)(len >> 16);
    s->out[3] = (uint8_t)(len >> 8);
    s->out[4] = (uint8_t)len;
    if (len)
        memcpy(s->out + GRPC_PREFIX, msg, len);
    s->out_len = len + GRPC_PREFIX;
    s->out_off = 0;
    nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = reply_read_cb};
    submit_nv(s, nv, 2, &prd);
}

static void deadline_cb(uv_timer_t *t)
{
    gstream *s = t->data;
    if (!s)
        return;
    conn *c = s->c;
    stream_send_status(s, "200", MCP_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
    if (s->call)
        call_orphan(s->call, MCP_GRPC_DEADLINE_EXCEEDED);
    conn_flush(c);
}

static void stream_start_deadline(gstream *s)
{
    if (s->deadline_ms < 0)
        return;
    uv_timer_t *t = malloc(sizeof *t);
    if (!t)
        return; /* no deadline enforcement rather than no call */
    uv_timer_init(s->c->server->loop, t);
    t->data = s;
    int64_t left = s->deadline_ms - mcp_now_ms();
    uv_timer_start(t, deadline_cb, left > 0 ? (uint64_t)left : 0, 0);
    s->timer = t;
}

/* Feeds request DATA into the one-message framing; errors reject the stream. */
static void stream_feed(gstream *s, const uint8_t *data, size_t len)
{
    size_t max = s->c->server->opts.max_message_bytes;
    while (len > 0 && !s->responded && !s->rejected) {
        if (s->msg_complete) {
            stream_reject(s, "200", MCP_GRPC_UNIMPLEMENTED,
                          "more than one request message on a unary method");
            return;
        }
        if (s->prefix_len < GRPC_PREFIX) {
            size_t take = GRPC_PREFIX - s->prefix_len;
            if (take > len)
                take = len;
            memcpy(s->prefix + s->prefix_len, data, take);
            s->prefix_len += take;
            data += take;
            len -= take;
            if (s->prefix_len < GRPC_PREFIX)
                return;
            if (s->prefix[0] != 0) {
                stream_reject(s, "200", MCP_GRPC_UNIMPLEMENTED,
                              "compressed request messages are not supported");
                return;
            }
            s->body_want = (size_t)s->prefix[1] << 24 | (size_t)s->prefix[2] << 16 |
                           (size_t)s->prefix[3] << 8 | (size_t)s->prefix[4];
            if (s->body_want > max) {
                char msg[128];
                snprintf(msg, sizeof msg,
                         "request message of %zu bytes exceeds the limit of %zu bytes",
                         s->body_want, max);
                stream_reject(s, "200", MCP_GRPC_RESOURCE_EXHAUSTED, msg);
                return;
            }
            s->body = malloc(s->body_want ? s->body_want : 1);
            if (!s->body) {
                stream_reject(s, "200", MCP_GRPC_RESOURCE_EXHAUSTED,
                              "server out of memory for the request");
                return;
            }
            s->msg_complete = s->body_want == 0;
            continue;
        }
        size_t take = s->body_want - s->body_len;
        if (take > len)
            take = len;
        memcpy(s->body + s->body_len, data, take);
        s->body_len += take;
        data += take;
        len -= take;
        s->msg_complete = s->body_len == s->body_want;
    }
}

/* The client half-closed: check the message and hand it to the handler. */
static void stream_request_complete(gstream *s)
{
    if (s->rejected) {
        stream_send_rejection(s);
        return;
    }
    if (s->responded || s->call || !s->headers_done)
        return;
    if (s->prefix_len == 0) {
        stream_send_status(s, "200", MCP_GRPC_INTERNAL, "no request message");
        return;
    }
    if (!s->msg_complete) {
        char msg[128];
        snprintf(msg, sizeof msg, "truncated request message: got %zu of %zu bytes", s->body_len,
                 s->body_want);
        stream_send_status(s, "200", MCP_GRPC_INTERNAL, msg);
        return;
    }
    mcp_grpc_server_call *call = calloc(1, sizeof *call);
    if (call) {
        call->method = mcp_strdup(s->path);
        call->peer = mcp_strdup(s->c->peer);
    }
    if (!call || !call->method || !call->peer) {
        if (call)
            call_free(call);
        stream_send_status(s, "200", MCP_GRPC_RESOURCE_EXHAUSTED, "server out of memory");
        return;
    }
    call->deadline_ms = s->deadline_ms;
    call->s = s;
    s->call = call;
    s->fn(call, s->body, s->body_len, s->fn_ud);
}

/* All request headers are in: route the method or answer at once. */
static void stream_headers_complete(gstream *s)
{
    s->headers_done = true;
    if (s->bad_method || !s->path) {
        stream_reject(s, "405", MCP_GRPC_UNIMPLEMENTED, "gRPC needs POST with a :path");
        return;
    }
    if (s->bad_ctype) {
        stream_reject(s, "415", MCP_GRPC_INTERNAL, "content-type must be application/grpc");
        return;
    }
    for (handler *h = s->c->server->handlers; h; h = h->next) {
        if (strcmp(h->path, s->path) == 0) {
            s->fn = h->fn;
            s->fn_ud = h->ud;
            break;
        }
    }
    if (!s->fn) {
        char *msg = mcp_sprintf("unknown method %s", s->path);
        stream_reject(s, "200", MCP_GRPC_UNIMPLEMENTED, msg ? msg : "unknown method");
        free(msg);
        return;
    }
    stream_start_deadline(s);
}

/* ------------------------------------------------------------------ */
/* nghttp2 callbacks                                                   */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    conn *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    gstream *s = calloc(1, sizeof *s);
    if (!s)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream only */
    s->c = c;
    s->id = frame->hd.stream_id;
    s->deadline_ms = -1;
    s->next = c->streams;
    if (c->streams)
        c->streams->prev = s;
    c->streams = s;
    nghttp2_session_set_stream_user_data(session, s->id, s);
    return 0;
}

static bool ctype_is_grpc(const uint8_t *v, size_t n)
{
    static const char want[] = "application/grpc";
    size_t w = sizeof want - 1;
    if (n < w || memcmp(v, want, w) != 0)
        return false;
    return n == w || v[w] == '+' || v[w] == ';';
}

static bool name_is(const uint8_t *name, size_t namelen, const char *want)
{
    return namelen == strlen(want) && memcmp(name, want, namelen) == 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* client trailers carry nothing we use */
    gstream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!s)
        return 0;
    if (name_is(name, namelen, ":method")) {
        s->bad_method = !(valuelen == 4 && memcmp(value, "POST", 4) == 0);
    } else if (name_is(name, namelen, ":path")) {
        free(s->path);
        s->path = mcp_strndup((const char *)value, valuelen);
        if (!s->path)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    } else if (name_is(name, namelen, "content-type")) {
        s->bad_ctype = !ctype_is_grpc(value, valuelen);
    } else if (name_is(name, namelen, "grpc-timeout")) {
        char v[16];
        int64_t ms;
        if (valuelen < sizeof v) {
            memcpy(v, value, valuelen);
            v[valuelen] = '\0';
            if (mcp_grpc_parse_timeout(v, &ms) == 0)
                s->deadline_ms = mcp_now_ms() + ms;
        }
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    conn *c = user_data;
    if (!c->got_frame) {
        c->got_frame = true;
        if (c->hs_timer)
            uv_timer_stop(c->hs_timer);
    }
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    gstream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!s)
        return 0;
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (end)
        s->remote_closed = true;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        stream_headers_complete(s);
    if (end)
        stream_request_complete(s);
    return 0;
}

/* After answering early (the request still uploading), tell the client to stop
 * sending with RST_STREAM(NO_ERROR), as RFC 9113 §8.1 allows; some clients
 * (curl 7.88) otherwise wait for the stream to end. */
static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    if (frame->hd.type != NGHTTP2_HEADERS || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    gstream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s && !s->remote_closed)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *user_data)
{
    gstream *s = nghttp2_session_get_stream_user_data(session, stream_id);
    if (!s || s->responded || !s->headers_done)
        return 0;
    if (s->rejected) {
        s->discarded += len;
        if (s->discarded > REJECT_DISCARD_LIMIT)
            stream_send_rejection(s); /* stop a big upload early (then RST_STREAM) */
        return 0;
    }
    stream_feed(s, data, len);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    gstream *s = nghttp2_session_get_stream_user_data(session, stream_id);
    if (!s)
        return 0;
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    if (s->call)
        call_orphan(s->call, MCP_GRPC_CANCELLED);
    stream_free(s);
    return 0;
}

static nghttp2_session_callbacks *make_callbacks(void)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return NULL;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    return cbs;
}

/* ------------------------------------------------------------------ */
/* connections                                                         */

static void on_write(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    conn *c = req->handle->data;
    free(w->buf);
    free(w);
    if (status < 0 && !c->closing)
        conn_close(c);
}

/* Hands buf (owned) to libuv. */
static void conn_write(conn *c, uint8_t *buf, size_t len)
{
    write_req *w = malloc(sizeof *w);
    if (!w) {
        free(buf);
        c->want_close = true;
        return;
    }
    w->buf = buf;
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->h, &b, 1, on_write) != 0) {
        free(buf);
        free(w);
        c->want_close = true;
    }
}

static void drain_tls(conn *c, bytes *out)
{
    int pending;
    while ((pending = BIO_pending(SSL_get_wbio(c->ssl))) > 0) {
        uint8_t tmp[16384];
        int n = BIO_read(SSL_get_wbio(c->ssl), tmp,
                         pending < (int)sizeof tmp ? pending : (int)sizeof tmp);
        if (n <= 0 || bytes_append(out, tmp, (size_t)n) != 0)
            break;
    }
}

/* Sends whatever nghttp2 and TLS have queued; closes the connection when it is finished. */
static void conn_flush(conn *c)
{
    if (c->busy || c->closing)
        return;
    bytes out = {0};
    if (c->session) {
        c->busy++;
        for (;;) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(c->session, &data);
            if (n < 0) {
                c->want_close = true;
                break;
            }
            if (n == 0)
                break;
            if (c->ssl) {
                ERR_clear_error();
                if (SSL_write(c->ssl, data, (int)n) <= 0) {
                    c->want_close = true;
                    break;
                }
            } else if (bytes_append(&out, data, (size_t)n) != 0) {
                c->want_close = true;
                break;
            }
        }
        c->busy--;
    }
    if (c->ssl)
        drain_tls(c, &out);
    if (out.len)
        conn_write(c, out.p, out.len);
    else
        free(out.p);
    if (c->want_close || (c->session && !nghttp2_session_want_read(c->session) &&
                          !nghttp2_session_want_write(c->session)))
        conn_close(c);
}

static void conn_closed_cb(uv_handle_t *h)
{
    conn *c = h->data;
    mcp_grpc_server *s = c->server;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    s->open_handles--;
    free(c);
    check_done(s);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    uv_close((uv_handle_t *)req->handle, conn_closed_cb);
    free(req);
}

/* Cancels what is in flight, frees the session and TLS, and closes the socket
 * after the queued bytes are written. Never call it while busy. */
static void conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->hs_timer) {
        c->hs_timer->data = NULL;
        uv_close((uv_handle_t *)c->hs_timer, timer_free_cb);
        c->hs_timer = NULL;
    }
    while (c->streams) {
        gstream *s = c->streams;
        if (s->call)
            call_orphan(s->call, c->cancel_reason);
        stream_free(s);
    }
    if (c->session) {
        nghttp2_session_del(c->session);
        c->session = NULL;
    }
    if (c->ssl) {
        bytes out = {0};
        ERR_clear_error();
        if (SSL_is_init_finished(c->ssl))
            SSL_shutdown(c->ssl); /* queues close_notify */
        drain_tls(c, &out);
        if (out.len)
            conn_write(c, out.p, out.len);
        else
            free(out.p);
        SSL_free(c->ssl);
        c->ssl = NULL;
        ERR_clear_error();
    }
    uv_read_stop((uv_stream_t *)&c->h);
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req || uv_shutdown(req, (uv_stream_t *)&c->h, on_shutdown) != 0) {
        free(req);
        uv_close((uv_handle_t *)&c->h, conn_closed_cb);
    }
}

static void hs_timeout_cb(uv_timer_t *t)
{
    conn *c = t->data;
    if (c && !c->got_frame) {
        mcp_log(MCP_LOG_INFO, "grpc: closing a connection that sent no HTTP/2 frame in time",
                "peer", c->peer, NULL);
        conn_close(c);
    }
}

static int conn_start_session(conn *c)
{
    mcp_grpc_server *s = c->server;
    if (nghttp2_session_server_new(&c->session, s->cbs, c) != 0) {
        c->session = NULL;
        return -1;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, s->opts.max_concurrent_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 16384},
    };
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 2) != 0)
        return -1;
    if (s->shutting_down)
        nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
    return 0;
}

/* Feeds plaintext HTTP/2 bytes to nghttp2. */
static void conn_recv_h2(conn *c, const uint8_t *data, size_t len)
{
    if (!c->session || c->want_close)
        return;
    c->busy++;
    ssize_t rv = nghttp2_session_mem_recv(c->session, data, len);
    c->busy--;
    if (rv < 0) {
        mcp_log(MCP_LOG_INFO, "grpc: bad HTTP/2 from client", "peer", c->peer, "error",
                nghttp2_strerror((int)rv), NULL);
        c->want_close = true;
    }
}

static void peer_from_cert(conn *c)
{
    X509 *cert = SSL_get1_peer_certificate(c->ssl);
    if (!cert)
        return;
    char cn[128];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0)
        snprintf(c->peer, sizeof c->peer, "%s", cn);
    X509_free(cert);
}

static const char *tls_error_text(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    if (!e)
        return "connection closed during handshake";
    ERR_error_string_n(e, buf, n);
    return buf;
}

/* Decrypts what arrived; finishes the handshake first. */
static void conn_recv_tls(conn *c, const uint8_t *data, size_t len)
{
    mcp_grpc_server *s = c->server;
    if (BIO_write(SSL_get_rbio(c->ssl), data, (int)len) != (int)len) {
        c->want_close = true;
        return;
    }
    ERR_clear_error();
    if (!SSL_is_init_finished(c->ssl)) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                char buf[256];
                mcp_log(MCP_LOG_WARN, "grpc: TLS handshake failed", "peer", c->peer, "error",
                        tls_error_text(buf, sizeof buf), NULL);
                c->want_close = true; /* the flush still sends the alert */
            }
            return;
        }
        const unsigned char *alpn = NULL;
        unsigned alpn_len = 0;
        SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
        if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
            mcp_log(MCP_LOG_WARN, "grpc: TLS client did not negotiate h2", "peer", c->peer, NULL);
            c->want_close = true;
            return;
        }
        peer_from_cert(c);
        if (conn_start_session(c) != 0) {
            c->want_close = true;
            return;
        }
    }
    for (;;) {
        int n = SSL_read(c->ssl, s->tlsbuf, (int)sizeof s->tlsbuf);
        if (n > 0) {
            conn_recv_h2(c, s->tlsbuf, (size_t)n);
            if (c->want_close)
                return;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            c->want_close = true;
        return;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    buf->base = c->server->readbuf;
    buf->len = sizeof c->server->readbuf;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = stream->data;
    if (c->closing)
        return;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    if (c->ssl)
        conn_recv_tls(c, (const uint8_t *)buf->base, (size_t)nread);
    else
        conn_recv_h2(c, (const uint8_t *)buf->base, (size_t)nread);
    conn_flush(c);
}

static void reject_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

static void on_connection(uv_stream_t *lstream, int status)
{
    listener *l = lstream->data;
    mcp_grpc_server *s = l->server;
    if (status < 0) {
        mcp_log(MCP_LOG_WARN, "grpc: accept failed", "error", uv_strerror(status), NULL);
        return;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->server = s;
    c->cancel_reason = MCP_GRPC_CANCELLED;
    if (l->is_unix)
        uv_pipe_init(s->loop, &c->h.pipe, 0);
    else
        uv_tcp_init(s->loop, &c->h.tcp);
    c->h.tcp.data = c;
    if (uv_accept(lstream, (uv_stream_t *)&c->h) != 0 || s->shutting_down ||
        s->nconns >= s->opts.max_connections) {
        if (!s->shutting_down && s->nconns >= s->opts.max_connections)
            mcp_log(MCP_LOG_WARN, "grpc: connection limit reached, refusing a connection", NULL);
        uv_close((uv_handle_t *)&c->h, reject_closed_cb);
        return;
    }
    snprintf(c->peer, sizeof c->peer, "%s", l->is_unix ? "unix" : l->ssl_ctx ? "tls" : "tcp");
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->open_handles++;
    if (!l->is_unix)
        uv_tcp_nodelay(&c->h.tcp, 1);
    if (l->ssl_ctx) {
        BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
        c->ssl = SSL_new(l->ssl_ctx);
        if (!c->ssl || !rb || !wb) {
            BIO_free(rb);
            BIO_free(wb);
            conn_close(c);
            return;
        }
        SSL_set_bio(c->ssl, rb, wb);
        SSL_set_accept_state(c->ssl);
    } else if (conn_start_session(c) != 0) {
        conn_close(c);
        return;
    }
    c->hs_timer = malloc(sizeof *c->hs_timer);
    if (c->hs_timer) {
        uv_timer_init(s->loop, c->hs_timer);
        c->hs_timer->data = c;
        uv_timer_start(c->hs_timer, hs_timeout_cb, s->opts.handshake_timeout_ms, 0);
    }
    if (uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    conn_flush(c); /* our SETTINGS go first */
}

/* ------------------------------------------------------------------ */
/* calls (public)                                                      */

void mcp_grpc_server_call_set_cancel(mcp_grpc_server_call *call, mcp_grpc_cancel_fn fn, void *ud)
{
    call->cancel = fn;
    call->cancel_ud = ud;
}

const char *mcp_grpc_server_call_method(const mcp_grpc_server_call *call)
{
    return call->method;
}

const char *mcp_grpc_server_call_peer(const mcp_grpc_server_call *call)
{
    return call->peer;
}

int64_t mcp_grpc_server_call_remaining_ms(const mcp_grpc_server_call *call)
{
    if (call->deadline_ms < 0)
        return -1;
    int64_t left = call->deadline_ms - mcp_now_ms();
    return left > 0 ? left : 0;
}

bool mcp_grpc_server_call_cancelled(const mcp_grpc_server_call *call)
{
    return call->cancelled || !call->s;
}

/* Detaches a finished call; returns its stream (NULL when orphaned) and frees the call. */
static gstream *call_finish(mcp_grpc_server_call *call)
{
    gstream *s = call->s;
    if (s)
        s->call = NULL;
    call_free(call);
    return s;
}

int mcp_grpc_server_reply(mcp_grpc_server_call *call, const uint8_t *msg, size_t len)
{
    gstream *s = call_finish(call);
    if (!s)
        return -1;
    conn *c = s->c;
    stream_send_reply(s, msg, len);
    bool sent = s->out != NULL;
    conn_flush(c);
    return sent ? 0 : -1;
}

int mcp_grpc_server_fail(mcp_grpc_server_call *call, int status, const char *message)
{
    gstream *s = call_finish(call);
    if (!s)
        return -1;
    conn *c = s->c;
    if (status == MCP_GRPC_OK)
        status = MCP_GRPC_UNKNOWN; /* a failure is never OK */
    stream_send_status(s, "200", status, message);
    conn_flush(c);
    return 0;
}

int mcp_grpc_server_reply_message(mcp_grpc_server_call *call, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        mcp_grpc_server_fail(call, MCP_GRPC_INTERNAL, "server out of memory for the reply");
        return -1;
    }
    protobuf_c_message_pack(msg, buf);
    int rv = mcp_grpc_server_reply(call, buf, len);
    free(buf);
    return rv;
}

ProtobufCMessage *mcp_grpc_server_unpack_or_fail(mcp_grpc_server_call *call,
                                                 const ProtobufCMessageDescriptor *desc,
                                                 const uint8_t *req, size_t len)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, req);
    if (!m) {
        char *msg = mcp_sprintf("request is not a valid %s (%zu bytes)", desc->name, len);
        mcp_grpc_server_fail(call, MCP_GRPC_INVALID_ARGUMENT, msg ? msg : "invalid request");
        free(msg);
    }
    return m;
}

/* ------------------------------------------------------------------ */
/* server                                                              */

mcp_grpc_server *mcp_grpc_server_new(uv_loop_t *loop, const mcp_grpc_server_options *opts,
                                     mcp_error *err)
{
    mcp_grpc_server *s = calloc(1, sizeof *s);
    if (!s) {
        mcp_error_set(err, "grpc server: out of memory");
        return NULL;
    }
    s->loop = loop;
    /* a client that hangs up must cost an EPIPE, not the process */
    signal(SIGPIPE, SIG_IGN);
    if (opts)
        s->opts = *opts;
    if (!s->opts.max_message_bytes)
        s->opts.max_message_bytes = DEFAULT_MAX_MESSAGE;
    if (!s->opts.max_connections)
        s->opts.max_connections = DEFAULT_MAX_CONNECTIONS;
    if (!s->opts.max_concurrent_streams)
        s->opts.max_concurrent_streams = DEFAULT_MAX_STREAMS;
    if (!s->opts.handshake_timeout_ms)
        s->opts.handshake_timeout_ms = DEFAULT_HANDSHAKE_MS;
    if (s->opts.max_message_bytes > UINT32_MAX)
        s->opts.max_message_bytes = UINT32_MAX;
    s->tcp_port = -1;
    s->cbs = make_callbacks();
    if (!s->cbs) {
        mcp_error_set(err, "grpc server: out of memory");
        free(s);
        return NULL;
    }
    return s;
}

int mcp_grpc_server_handle(mcp_grpc_server *s, const char *path, mcp_grpc_handler_fn fn, void *ud,
                           mcp_error *err)
{
    if (!path || path[0] != '/' || !fn) {
        mcp_error_set(err, "grpc server: a method path starts with '/' and needs a handler: %s",
                      path ? path : "(null)");
        return -1;
    }
    for (handler *h = s->handlers; h; h = h->next) {
        if (strcmp(h->path, path) == 0) {
            h->fn = fn;
            h->ud = ud;
            return 0;
        }
    }
    handler *h = calloc(1, sizeof *h);
    if (!h || !(h->path = mcp_strdup(path))) {
        free(h);
        mcp_error_set(err, "grpc server: out of memory");
        return -1;
    }
    h->fn = fn;
    h->ud = ud;
    h->next = s->handlers;
    s->handlers = h;
    return 0;
}

static listener *listener_new(mcp_grpc_server *s)
{
    listener *l = calloc(1, sizeof *l);
    if (l)
        l->server = s;
    return l;
}

static void listener_closed_cb(uv_handle_t *h)
{
    listener *l = h->data;
    mcp_grpc_server *s = l->server;
    if (l->unix_path)
        unlink(l->unix_path);
    free(l->unix_path);
    SSL_CTX_free(l->ssl_ctx);
    free(l);
    s->open_handles--;
    check_done(s);
}

/* Returns 0 when path is free for a socket (removing a stale one), -1 otherwise. */
static int clear_socket_path(const char *path, mcp_error *err)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        mcp_error_set(err, "grpc: cannot stat socket path %s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        mcp_error_set(err, "grpc: %s exists and is not a socket; refusing to remove it", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        mcp_error_set(err, "grpc: socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    close(fd);
    if (rc == 0) {
        mcp_error_set(err, "grpc: another server is listening on %s", path);
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        mcp_error_set(err, "grpc: cannot remove stale socket %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int mcp_grpc_server_listen_unix(mcp_grpc_server *s, const char *path, mcp_error *err)
{
    struct sockaddr_un sa;
    if (!path || !*path || strlen(path) >= sizeof sa.sun_path) {
        mcp_error_set(err, "grpc: unix socket path is empty or longer than %zu bytes: %s",
                      sizeof sa.sun_path - 1, path ? path : "(null)");
        return -1;
    }
    if (s->shutting_down) {
        mcp_error_set(err, "grpc: server is shutting down");
        return -1;
    }
    if (clear_socket_path(path, err) != 0)
        return -1;
    listener *l = listener_new(s);
    if (!l || !(l->unix_path = mcp_strdup(path))) {
        free(l);
        mcp_error_set(err, "grpc: out of memory");
        return -1;
    }
    l->is_unix = true;
    uv_pipe_init(s->loop, &l->h.pipe, 0);
    l->h.pipe.data = l;
    s->open_handles++;
    int rc = uv_pipe_bind(&l->h.pipe, path);
    if (rc != 0) {
        /* nothing created: the close callback must not remove whatever is at path */
        free(l->unix_path);
        l->unix_path = NULL;
    }
    if (rc == 0 && chmod(path, 0660) != 0)
        rc = uv_translate_sys_error(errno);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->h.pipe, 128, on_connection);
    if (rc != 0) {
        mcp_error_set(err, "grpc: cannot listen on unix socket %s: %s", path, uv_strerror(rc));
        uv_close((uv_handle_t *)&l->h.pipe, listener_closed_cb);
        return -1;
    }
    l->next = s->listeners;
    s->listeners = l;
    return 0;
}

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    for (unsigned i = 0; i < inlen;) {
        unsigned n = in[i];
        if (i + 1 + n > inlen)
            break;
        if (n == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* gRPC needs HTTP/2 */
}

static void ssl_error(mcp_error *err, const char *what, const char *file)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    else
        snprintf(buf, sizeof buf, "%s", "unknown error");
    mcp_error_set(err, "grpc tls: %s %s: %s", what, file ? file : "", buf);
    ERR_clear_error();
}

static SSL_CTX *make_ssl_ctx(const mcp_grpc_tls_options *tls, mcp_error *err)
{
    if (!tls->cert_file || !*tls->cert_file || !tls->key_file || !*tls->key_file || !tls->ca_file ||
        !*tls->ca_file) {
        mcp_error_set(err, "grpc tls: cert_file, key_file and ca_file are all required for a "
                           "TLS listener");
        return NULL;
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_error(err, "cannot create context", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert_file) != 1) {
        ssl_error(err, "cannot load certificate chain", tls->cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, tls->key_file, SSL_FILETYPE_PEM) != 1) {
        ssl_error(err, "cannot load private key", tls->key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_error(err, "private key does not match the certificate:", tls->key_file);
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(ctx, tls->ca_file, NULL) != 1) {
        ssl_error(err, "cannot load CA", tls->ca_file);
        goto fail;
    }
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(tls->ca_file);
    if (!names) {
        ssl_error(err, "no CA certificate in", tls->ca_file);
        goto fail;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* Splits "host:port" / "[v6]:port" / ":port". */
static int parse_hostport(const char *addr, char *host, size_t hostlen, int *port, mcp_error *err)
{
    const char *colon;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':' || (size_t)(end - addr - 1) >= hostlen)
            goto bad;
        memcpy(host, addr + 1, (size_t)(end - addr - 1));
        host[end - addr - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || (size_t)(colon - addr) >= hostlen)
            goto bad;
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = '\0';
        if (strchr(host, ':'))
            goto bad; /* a bare IPv6 address needs brackets */
    }
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno || p < 0 || p > 65535)
        goto bad;
    *port = (int)p;
    return 0;
bad:
    mcp_error_set(err, "grpc: bad listen address \"%s\": want host:port, [ipv6]:port or :port",
                  addr);
    return -1;
}

int mcp_grpc_server_listen_tcp(mcp_grpc_server *s, const char *addr,
                               const mcp_grpc_tls_options *tls, mcp_error *err)
{
    static const mcp_grpc_tls_options none = {0};
    char host[256];
    int port;
    if (!tls)
        tls = &none;
    if (!addr || parse_hostport(addr, host, sizeof host, &port, err) != 0) {
        if (!addr)
            mcp_error_set(err, "grpc: no listen address");
        return -1;
    }
    if (s->shutting_down) {
        mcp_error_set(err, "grpc: server is shutting down");
        return -1;
    }
    if (tls->insecure && !mcp_grpc_host_is_loopback(host)) {
        mcp_error_set(err,
                      "grpc: plaintext (insecure) gRPC on %s refused: it is allowed only on a "
                      "loopback address (127.0.0.0/8, ::1, localhost); configure TLS instead",
                      addr);
        return -1;
    }
    const char *numeric = host[0] ? host : "0.0.0.0";
    if (strcmp(numeric, "localhost") == 0)
        numeric = "127.0.0.1";
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
        struct sockaddr_storage ss;
    } sa;
    if (uv_ip4_addr(numeric, port, &sa.in4) != 0 && uv_ip6_addr(numeric, port, &sa.in6) != 0) {
        mcp_error_set(err,
                      "grpc: listen address \"%s\": host must be a numeric IP address or "
                      "localhost",
                      addr);
        return -1;
    }
    SSL_CTX *ctx = NULL;
    if (!tls->insecure && !(ctx = make_ssl_ctx(tls, err)))
        return -1;
    listener *l = listener_new(s);
    if (!l) {
        SSL_CTX_free(ctx);
        mcp_error_set(err, "grpc: out of memory");
        return -1;
    }
    l->ssl_ctx = ctx;
    uv_tcp_init(s->loop, &l->h.tcp);
    l->h.tcp.data = l;
    s->open_handles++;
    int rc = uv_tcp_bind(&l->h.tcp, &sa.sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->h.tcp, 128, on_connection);
    if (rc != 0) {
        mcp_error_set(err, "grpc: cannot listen on %s: %s", addr, uv_strerror(rc));
        uv_close((uv_handle_t *)&l->h.tcp, listener_closed_cb);
        return -1;
    }
    int len = sizeof sa;
    if (uv_tcp_getsockname(&l->h.tcp, &sa.sa, &len) == 0)
        s->tcp_port = ntohs(sa.sa.sa_family == AF_INET6 ? sa.in6.sin6_port : sa.in4.sin_port);
    l->next = s->listeners;
    s->listeners = l;
    return 0;
}

int mcp_grpc_server_tcp_port(const mcp_grpc_server *s)
{
    return s->tcp_port;
}

unsigned mcp_grpc_server_connections(const mcp_grpc_server *s)
{
    return s->nconns;
}

static void grace_timer_closed_cb(uv_handle_t *h)
{
    mcp_grpc_server *s = h->data;
    free(h);
    s->open_handles--;
    check_done(s);
}

static void check_done(mcp_grpc_server *s)
{
    if (!s->shutting_down || s->done_called || s->open_handles > 0)
        return;
    if (s->grace_timer) {
        /* last handle: close the grace timer, come back from its close callback */
        uv_close((uv_handle_t *)s->grace_timer, grace_timer_closed_cb);
        s->grace_timer = NULL;
        s->open_handles++;
        return;
    }
    s->done_called = true;
    if (s->done)
        s->done(s, s->done_ud);
}

static void close_all_conns(mcp_grpc_server *s)
{
    if (s->conns)
        mcp_log(MCP_LOG_WARN, "grpc: shutdown grace period over, closing connections", NULL);
    for (conn *c = s->conns; c; c = c->next) {
        c->cancel_reason = MCP_GRPC_UNAVAILABLE;
        conn_close(c);
    }
}

static void grace_cb(uv_timer_t *t)
{
    close_all_conns(t->data);
}

void mcp_grpc_server_shutdown(mcp_grpc_server *s, unsigned grace_ms, mcp_grpc_done_fn done,
                              void *ud)
{
    if (s->shutting_down)
        return;
    s->shutting_down = true;
    s->done = done;
    s->done_ud = ud;
    while (s->listeners) {
        listener *l = s->listeners;
        s->listeners = l->next;
        uv_close((uv_handle_t *)&l->h, listener_closed_cb);
    }
    for (conn *c = s->conns; c; c = c->next) {
        if (c->closing)
            continue;
        if (!c->session) {
            c->want_close = true; /* TLS handshake not done yet: nothing to finish */
        } else {
            nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                                  nghttp2_session_get_last_proc_stream_id(c->session),
                                  NGHTTP2_NO_ERROR, NULL, 0);
        }
    }
    /* flush outside the list walk: a flush may close (unlink) the connection later, not now */
    for (conn *c = s->conns; c; c = c->next)
        if (!c->busy)
            conn_flush(c);
    s->grace_timer = malloc(sizeof *s->grace_timer);
    if (s->grace_timer) {
        uv_timer_init(s->loop, s->grace_timer);
        s->grace_timer->data = s;
        uv_timer_start(s->grace_timer, grace_cb, grace_ms, 0);
    } else {
        close_all_conns(s);
    }
    check_done(s);
}

void mcp_grpc_server_free(mcp_grpc_server *s)
{
    if (!s)
        return;
    if (s->listeners || s->conns || s->open_handles)
        mcp_log(MCP_LOG_ERROR, "grpc: server freed while it still has open handles", NULL);
    while (s->handlers) {
        handler *h = s->handlers;
        s->handlers = h->next;
        free(h->path);
        free(h);
    }
    nghttp2_session_callbacks_del(s->cbs);
    free(s);
}
