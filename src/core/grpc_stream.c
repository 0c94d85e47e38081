/* HTTP/2 streams of the gRPC server: the request (one message, checked as it
 * arrives), the response (messages queued by the handler, sent as DATA as
 * flow control allows, then trailers) and the nghttp2 callbacks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_server_impl.h"
#include "mcp/log.h"
#include "mcp/util.h"

static void stream_stop_timer(gstream *s)
{
    if (s->timer) {
        s->timer->data = NULL;
        uv_close((uv_handle_t *)s->timer, mcp_grpcs_timer_free_cb);
        s->timer = NULL;
    }
}

void mcp_grpcs_call_orphan(mcp_grpc_server_call *call, int reason)
{
    if (call->s) {
        call->s->call = NULL;
        call->s = NULL;
    }
    call->cancelled = true;
    call->drain = NULL;
    if (call->cancel)
        call->cancel(call, reason, call->cancel_ud);
}

void mcp_grpcs_call_free(mcp_grpc_server_call *call)
{
    free(call->method);
    free(call->peer);
    free(call);
}

void mcp_grpcs_stream_free(gstream *s)
{
    conn *c = s->c;
    MCP_LIST_UNLINK(c->streams, s);
    stream_stop_timer(s);
    MCP_FREE_ALL(s->path, s->body, s->out, s->end_msg, s->reject_msg, s);
    if (!c->streams)
        c->idle_since = uv_now(c->server->loop); /* (shutting down: the GOAWAY soon after) */
    mcp_grpcs_conn_arm_timer(c);
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

/* Picks the data provider up again after it said "nothing yet". */
static void stream_resume(gstream *s)
{
    if (s->deferred && s->c->session) {
        s->deferred = false;
        nghttp2_session_resume_data(s->c->session, s->id);
    }
}

void mcp_grpcs_stream_end(gstream *s, const char *http_status, int status, const char *msg)
{
    if (s->responded || s->c->closing || !s->c->session)
        return;
    s->responded = true;
    stream_stop_timer(s);
    char *enc = msg ? mcp_grpc_percent_encode(msg) : NULL;
    if (s->headers_sent) {
        /* messages went out: the status follows them in trailers (out_read_cb) */
        s->end_status = status;
        s->end_msg = enc;
        stream_resume(s);
        return;
    }
    /* Trailers-Only: one HEADERS frame carrying the status */
    char code[16];
    snprintf(code, sizeof code, "%d", status);
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
    mcp_grpcs_stream_end(s, s->reject_http, s->reject_status,
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

size_t mcp_grpcs_stream_unsent(const gstream *s)
{
    return s->out_len - s->out_off;
}

/* nghttp2 takes the queued output as DATA, as far as flow control allows;
 * with nothing queued it waits (DEFERRED) until more comes or the call ends. */
static ssize_t out_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                           uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    (void)user_data;
    gstream *s = source->ptr;
    size_t n = s->out_len - s->out_off;
    if (n == 0 && !s->responded) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (n > length)
        n = length;
    memcpy(buf, s->out + s->out_off, n);
    s->out_off += n;
    if (s->out_off == s->out_len)
        s->out_off = s->out_len = 0;
    if (s->out_len == 0 && s->responded) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        char code[16];
        snprintf(code, sizeof code, "%d", s->end_status);
        nghttp2_nv trailer[] = {NV("grpc-status", code),
                                NV("grpc-message", s->end_msg ? s->end_msg : "")};
        if (nghttp2_submit_trailer(session, stream_id, trailer, s->end_msg ? 2 : 1) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

int mcp_grpcs_stream_queue(gstream *s, const uint8_t *msg, size_t len)
{
    if (s->responded || s->c->closing || !s->c->session || len > UINT32_MAX)
        return -1;
    size_t need = mcp_grpcs_stream_unsent(s) + MCP_GRPC_PREFIX_LEN + len;
    if (s->out_off > 0) { /* keep the unsent bytes at the front */
        memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
        s->out_len -= s->out_off;
        s->out_off = 0;
    }
    if (need > s->out_cap) {
        uint8_t *p = mcp_grow_to(s->out, &s->out_cap, need, 256, 0);
        if (!p)
            return -1;
        s->out = p;
    }
    size_t at = s->out_len;
    mcp_grpc_put_prefix(s->out + at, len);
    if (len)
        memcpy(s->out + at + MCP_GRPC_PREFIX_LEN, msg, len);
    s->out_len = need;
    if (!s->headers_sent) {
        nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
        nghttp2_data_provider prd = {.source.ptr = s, .read_callback = out_read_cb};
        if (submit_nv(s, nv, 2, &prd) != 0) {
            s->out_len = at;
            return -1;
        }
        s->headers_sent = true;
    } else {
        stream_resume(s);
    }
    return 0;
}

bool mcp_grpcs_notify_drained(conn *c)
{
    bool ran = false;
    for (gstream *s = c->streams; s; s = s->next) {
        mcp_grpc_server_call *call = s->call;
        if (!call || !call->drain || mcp_grpcs_stream_unsent(s) > call->drain_below)
            continue;
        mcp_grpc_drain_fn fn = call->drain;
        call->drain = NULL;
        fn(call, call->drain_ud);
        ran = true;
        break; /* the callback may have changed the list: the caller comes back */
    }
    return ran;
}

static void deadline_cb(uv_timer_t *t)
{
    gstream *s = t->data;
    if (!s)
        return;
    conn *c = s->c;
    mcp_grpcs_stream_end(s, "200", MCP_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
    if (s->call)
        mcp_grpcs_call_orphan(s->call, MCP_GRPC_DEADLINE_EXCEEDED);
    mcp_grpcs_conn_flush(c);
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

/* Moves what fits of *data (*len bytes) into dst, which holds *have of want bytes. */
static void take_bytes(uint8_t *dst, size_t *have, size_t want, const uint8_t **data, size_t *len)
{
    size_t take = want - *have;
    if (take > *len)
        take = *len;
    memcpy(dst + *have, *data, take);
    *have += take;
    *data += take;
    *len -= take;
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
        if (s->prefix_len < MCP_GRPC_PREFIX_LEN) {
            take_bytes(s->prefix, &s->prefix_len, MCP_GRPC_PREFIX_LEN, &data, &len);
            if (s->prefix_len < MCP_GRPC_PREFIX_LEN)
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
        take_bytes(s->body, &s->body_len, s->body_want, &data, &len);
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
        mcp_grpcs_stream_end(s, "200", MCP_GRPC_INTERNAL, "no request message");
        return;
    }
    if (!s->msg_complete) {
        char msg[128];
        snprintf(msg, sizeof msg, "truncated request message: got %zu of %zu bytes", s->body_len,
                 s->body_want);
        mcp_grpcs_stream_end(s, "200", MCP_GRPC_INTERNAL, msg);
        return;
    }
    mcp_grpc_server_call *call = calloc(1, sizeof *call);
    if (call) {
        call->method = mcp_strdup(s->path);
        call->peer = mcp_strdup(s->c->peer);
    }
    if (!call || !call->method || !call->peer) {
        if (call)
            mcp_grpcs_call_free(call);
        mcp_grpcs_stream_end(s, "200", MCP_GRPC_RESOURCE_EXHAUSTED, "server out of memory");
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
    if (s->c->server->shutting_down) { /* a connection that has not had its GOAWAY yet */
        stream_reject(s, "200", MCP_GRPC_UNAVAILABLE, "the server is shutting down");
        return;
    }
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
    s->begun_ms = uv_now(c->server->loop);
    s->next = c->streams;
    if (c->streams)
        c->streams->prev = s;
    c->streams = s;
    nghttp2_session_set_stream_user_data(session, s->id, s);
    mcp_grpcs_conn_arm_timer(c);
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
        c->idle_since = uv_now(c->server->loop);
        mcp_grpcs_conn_arm_timer(c);
    }
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    gstream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!s)
        return 0;
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (end)
        s->remote_closed = true;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        stream_headers_complete(s);
        mcp_grpcs_conn_arm_timer(c);
    }
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
        mcp_grpcs_call_orphan(s->call, MCP_GRPC_CANCELLED);
    mcp_grpcs_stream_free(s);
    return 0;
}

nghttp2_session_callbacks *mcp_grpcs_make_callbacks(void)
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
