/* The gRPC server object: handlers, graceful shutdown, and the API a
 * handler uses to answer its call (unary reply, streamed messages, status).
 * The wire lives in grpc_stream.c, grpc_conn.c and grpc_listen.c (see
 * grpc_server_impl.h). */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_server_impl.h"
#include "mcp/log.h"
#include "mcp/util.h"

#define DEFAULT_MAX_MESSAGE (4u * 1024u * 1024u)
#define DEFAULT_MAX_CONNECTIONS 256u
#define DEFAULT_MAX_STREAMS 100u
#define DEFAULT_HANDSHAKE_MS 10000u
#define DEFAULT_UNIX_CONNECTIONS 64u
#define DEFAULT_PEER_CONNECTIONS 32u
#define DEFAULT_HANDSHAKES 64u
#define DEFAULT_HEADER_MS 10000u
#define DEFAULT_IDLE_MS 60000u

void mcp_grpcs_timer_free_cb(uv_handle_t *h)
{
    free(h);
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
    mcp_grpcs_call_free(call);
    return s;
}

int mcp_grpc_server_reply(mcp_grpc_server_call *call, const uint8_t *msg, size_t len)
{
    gstream *s = call_finish(call);
    if (!s)
        return -1;
    conn *c = s->c;
    int rc = mcp_grpcs_stream_queue(s, msg, len);
    if (rc == 0)
        mcp_grpcs_stream_end(s, "200", MCP_GRPC_OK, NULL);
    else if (!s->headers_sent)
        mcp_grpcs_stream_end(s, "200", MCP_GRPC_INTERNAL, "server out of memory for the reply");
    else
        mcp_grpcs_stream_end(s, "200", MCP_GRPC_INTERNAL, "server out of memory for a message");
    mcp_grpcs_conn_flush(c);
    return rc;
}

int mcp_grpc_server_fail(mcp_grpc_server_call *call, int status, const char *message)
{
    gstream *s = call_finish(call);
    if (!s)
        return -1;
    conn *c = s->c;
    if (status == MCP_GRPC_OK)
        status = MCP_GRPC_UNKNOWN; /* a failure is never OK */
    mcp_grpcs_stream_end(s, "200", status, message);
    mcp_grpcs_conn_flush(c);
    return 0;
}

int mcp_grpc_server_finish(mcp_grpc_server_call *call)
{
    gstream *s = call_finish(call);
    if (!s)
        return -1;
    conn *c = s->c;
    mcp_grpcs_stream_end(s, "200", MCP_GRPC_OK, NULL);
    mcp_grpcs_conn_flush(c);
    return 0;
}

int mcp_grpc_server_send(mcp_grpc_server_call *call, const uint8_t *msg, size_t len)
{
    gstream *s = call->s;
    if (call->cancelled || !s)
        return -1;
    mcp_grpc_server_call_set_streaming(call);
    if (call->cancelled) /* the server is shutting down: set_streaming ended it */
        return -1;
    if (mcp_grpcs_stream_queue(s, msg, len) != 0)
        return -1;
    mcp_grpcs_conn_flush(s->c);
    return 0;
}

int mcp_grpc_server_send_message(mcp_grpc_server_call *call, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -1;
    protobuf_c_message_pack(msg, buf);
    int rv = mcp_grpc_server_send(call, buf, len);
    free(buf);
    return rv;
}

size_t mcp_grpc_server_call_unsent(const mcp_grpc_server_call *call)
{
    return call->s ? mcp_grpcs_stream_unsent(call->s) : 0;
}

void mcp_grpc_server_call_on_drain(mcp_grpc_server_call *call, size_t below, mcp_grpc_drain_fn fn,
                                   void *ud)
{
    call->drain = fn;
    call->drain_ud = ud;
    call->drain_below = below;
}

void mcp_grpc_server_call_set_streaming(mcp_grpc_server_call *call)
{
    if (call->streaming)
        return;
    call->streaming = true;
    if (call->s && call->s->c->server->shutting_down) {
        conn *c = call->s->c;
        mcp_grpcs_end_for_shutdown(call);
        mcp_grpcs_conn_flush(c);
    }
}

void mcp_grpcs_end_for_shutdown(mcp_grpc_server_call *call)
{
    gstream *s = call->s;
    if (!s || call->cancelled)
        return;
    mcp_grpcs_stream_end(s, "200", MCP_GRPC_UNAVAILABLE, "the server is shutting down");
    mcp_grpcs_call_orphan(call, MCP_GRPC_UNAVAILABLE);
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

#define OPT(field) offsetof(mcp_grpc_server_options, field)

/* The unsigned options a 0 leaves to their default. */
static const struct {
    size_t offset;
    unsigned value;
} unsigned_defaults[] = {
    {OPT(max_connections), DEFAULT_MAX_CONNECTIONS},
    {OPT(max_unix_connections), DEFAULT_UNIX_CONNECTIONS},
    {OPT(max_peer_connections), DEFAULT_PEER_CONNECTIONS},
    {OPT(max_handshakes), DEFAULT_HANDSHAKES},
    {OPT(max_concurrent_streams), DEFAULT_MAX_STREAMS},
    {OPT(handshake_timeout_ms), DEFAULT_HANDSHAKE_MS},
    {OPT(header_timeout_ms), DEFAULT_HEADER_MS},
    {OPT(idle_timeout_ms), DEFAULT_IDLE_MS},
};

static void fill_defaults(mcp_grpc_server_options *o)
{
    for (size_t i = 0; i < sizeof unsigned_defaults / sizeof unsigned_defaults[0]; i++) {
        unsigned *v = (unsigned *)((char *)o + unsigned_defaults[i].offset);
        if (!*v)
            *v = unsigned_defaults[i].value;
    }
    if (!o->max_message_bytes)
        o->max_message_bytes = DEFAULT_MAX_MESSAGE;
    if (o->max_message_bytes > UINT32_MAX)
        o->max_message_bytes = UINT32_MAX;
}

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
    fill_defaults(&s->opts);
    s->tcp_port = -1;
    s->cbs = mcp_grpcs_make_callbacks();
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

unsigned mcp_grpc_server_connections(const mcp_grpc_server *s)
{
    return s->nconns;
}

static void grace_timer_closed_cb(uv_handle_t *h)
{
    mcp_grpc_server *s = h->data;
    free(h);
    s->open_handles--;
    mcp_grpcs_check_done(s);
}

void mcp_grpcs_check_done(mcp_grpc_server *s)
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
        mcp_grpcs_conn_close(c);
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
        uv_close((uv_handle_t *)&l->h, mcp_grpcs_listener_closed_cb);
    }
    /* long-lived streams would never finish by themselves: end them now */
    for (conn *c = s->conns; c; c = c->next) {
        if (c->closing)
            continue;
        c->busy++; /* a handler told of the end must not flush (and close) under the walk */
        for (gstream *st = c->streams, *next; st; st = next) {
            next = st->next;
            if (st->call && st->call->streaming)
                mcp_grpcs_end_for_shutdown(st->call);
        }
        c->busy--;
        /* their trailers before the GOAWAY: curl drops what it reads after one */
        mcp_grpcs_conn_flush(c);
    }
    for (conn *c = s->conns; c; c = c->next) {
        if (c->closing)
            continue;
        if (!c->session || !c->got_frame) {
            c->want_close = true; /* no HTTP/2 from it yet: nothing to finish */
        } else {
            c->goaway_due = true; /* now, or after its calls' answers: its timer says */
            mcp_grpcs_conn_arm_timer(c);
        }
    }
    /* flush outside the list walk: a flush may close (unlink) the connection later, not now */
    for (conn *c = s->conns; c; c = c->next)
        if (!c->busy)
            mcp_grpcs_conn_flush(c);
    s->grace_timer = malloc(sizeof *s->grace_timer);
    if (s->grace_timer) {
        uv_timer_init(s->loop, s->grace_timer);
        s->grace_timer->data = s;
        uv_timer_start(s->grace_timer, grace_cb, grace_ms, 0);
    } else {
        close_all_conns(s);
    }
    mcp_grpcs_check_done(s);
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
