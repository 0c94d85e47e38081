/* Connections of the gRPC server: accept, read, TLS (grpc_tls.c) or
 * plaintext, nghttp2 in memory, queued writes, close. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_server_impl.h"
#include "mcp/log.h"
#include "mcp/util.h"

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
        uint8_t *p = mcp_grow_to(b->p, &b->cap, b->len + len, 4096, 0);
        if (!p)
            return -1;
        b->p = p;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

static void on_write(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    conn *c = req->handle->data;
    free(w->buf);
    free(w);
    if (status < 0 && !c->closing)
        mcp_grpcs_conn_close(c);
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
    uint8_t tmp[16384];
    size_t n;
    while ((n = mcp_tls_take_output(c->tls, tmp, sizeof tmp)) > 0)
        if (bytes_append(out, tmp, n) != 0)
            break;
}

/* Sends whatever nghttp2 and TLS have queued; closes the connection when it is finished. */
void mcp_grpcs_conn_flush(conn *c)
{
    if (c->busy || c->closing)
        return;
    bytes out = {0};
    if (c->session) {
        c->busy++;
        for (bool again = true; again;) {
            for (;;) {
                const uint8_t *data;
                ssize_t n = nghttp2_session_mem_send(c->session, &data);
                if (n < 0) {
                    c->want_close = true;
                    break;
                }
                if (n == 0)
                    break;
                if (c->tls ? mcp_tls_write(c->tls, data, (size_t)n) != 0
                           : bytes_append(&out, data, (size_t)n) != 0) {
                    c->want_close = true;
                    break;
                }
            }
            /* a stream drained below its mark: its handler may queue more */
            again = !c->want_close && mcp_grpcs_notify_drained(c);
        }
        c->busy--;
    }
    if (c->tls)
        drain_tls(c, &out);
    if (out.len)
        conn_write(c, out.p, out.len);
    else
        free(out.p);
    if (c->want_close || (c->session && !nghttp2_session_want_read(c->session) &&
                          !nghttp2_session_want_write(c->session)))
        mcp_grpcs_conn_close(c);
}

static void conn_closed_cb(uv_handle_t *h)
{
    conn *c = h->data;
    mcp_grpc_server *s = c->server;
    MCP_LIST_UNLINK(s->conns, c);
    s->nconns--;
    s->open_handles--;
    free(c);
    mcp_grpcs_check_done(s);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    uv_close((uv_handle_t *)req->handle, conn_closed_cb);
    free(req);
}

/* Cancels what is in flight, frees the session and TLS, and closes the socket
 * after the queued bytes are written. Never call it while busy. */
void mcp_grpcs_conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->timer) {
        c->timer->data = NULL;
        uv_close((uv_handle_t *)c->timer, mcp_grpcs_timer_free_cb);
        c->timer = NULL;
    }
    while (c->streams) {
        gstream *s = c->streams;
        if (s->call)
            mcp_grpcs_call_orphan(s->call, c->cancel_reason);
        mcp_grpcs_stream_free(s);
    }
    if (c->session) {
        nghttp2_session_del(c->session);
        c->session = NULL;
    }
    if (c->tls) {
        bytes out = {0};
        mcp_tls_close_notify(c->tls);
        drain_tls(c, &out);
        if (out.len)
            conn_write(c, out.p, out.len);
        else
            free(out.p);
        mcp_tls_free(c->tls);
        c->tls = NULL;
    }
    uv_read_stop((uv_stream_t *)&c->h);
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req || uv_shutdown(req, (uv_stream_t *)&c->h, on_shutdown) != 0) {
        free(req);
        uv_close((uv_handle_t *)&c->h, conn_closed_cb);
    }
}

/* The stream still sending its HEADERS that began first, or NULL. */
static gstream *oldest_unfinished_headers(const conn *c)
{
    gstream *oldest = NULL;
    for (gstream *s = c->streams; s; s = s->next)
        if (!s->headers_done && (!oldest || s->begun_ms < oldest->begun_ms))
            oldest = s;
    return oldest;
}

/* Closes with GOAWAY, so that a well-behaved client reconnects instead of failing a call. */
static void conn_goaway_close(conn *c)
{
    c->goaway_due = false;
    if (c->session)
        nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->session), NGHTTP2_NO_ERROR,
                              NULL, 0);
    c->want_close = true;
    mcp_grpcs_conn_flush(c);
}

static void conn_timeout_cb(uv_timer_t *t)
{
    conn *c = t->data;
    if (!c || c->closing)
        return;
    const char *peer = c->addr[0] ? c->addr : c->peer;
    if (!c->got_frame) {
        mcp_log(MCP_LOG_INFO, "grpc: closing a connection that sent no HTTP/2 frame in time",
                "peer", peer, NULL);
        mcp_grpcs_conn_close(c);
    } else if (oldest_unfinished_headers(c)) {
        mcp_log(MCP_LOG_INFO, "grpc: closing a connection whose request headers came too slowly",
                "peer", peer, NULL);
        mcp_grpcs_conn_close(c);
    } else if (!c->streams) {
        mcp_log(MCP_LOG_DEBUG, "grpc: closing an idle connection", "peer", peer, NULL);
        conn_goaway_close(c);
    }
}

void mcp_grpcs_conn_arm_timer(conn *c)
{
    if (c->closing || !c->timer || !c->got_frame)
        return; /* before the first frame the handshake timeout runs */
    mcp_grpc_server *s = c->server;
    uint64_t now = uv_now(s->loop), due;
    gstream *slow = oldest_unfinished_headers(c);
    if (slow) {
        due = slow->begun_ms + s->opts.header_timeout_ms;
    } else if (!c->streams) {
        /* shutting down, its last answer out (or none open): the client gets
         * a moment to close first, since libcurl 7.88 drops trailers it reads
         * together with a GOAWAY; then the GOAWAY and the close, as idle */
        due = c->idle_since + (c->goaway_due ? GOAWAY_LINGER_MS : s->opts.idle_timeout_ms);
    } else {
        uv_timer_stop(c->timer); /* a call is open: its own deadline, if any, governs */
        return;
    }
    uv_timer_start(c->timer, conn_timeout_cb, due > now ? due - now : 0, 0);
}

int mcp_grpcs_conn_start_session(conn *c)
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

/* Decrypts what arrived; finishes the handshake first. */
static void conn_recv_tls(conn *c, const uint8_t *data, size_t len)
{
    mcp_grpc_server *s = c->server;
    bool was_ready = mcp_tls_ready(c->tls);
    char why[256];
    mcp_tls_state st = mcp_tls_recv(c->tls, data, len, why, sizeof why);
    if (st == MCP_TLS_FAILED) {
        mcp_log(MCP_LOG_WARN, "grpc: TLS handshake failed", "peer", c->peer, "error", why, NULL);
        c->want_close = true; /* the flush still sends the alert */
        return;
    }
    if (st == MCP_TLS_AGAIN)
        return;
    if (!was_ready) {
        mcp_tls_peer_cn(c->tls, c->peer, sizeof c->peer);
        if (mcp_grpcs_conn_start_session(c) != 0) {
            c->want_close = true;
            return;
        }
    }
    for (;;) {
        int n = mcp_tls_read(c->tls, s->tlsbuf, sizeof s->tlsbuf);
        if (n < 0)
            c->want_close = true;
        if (n <= 0)
            return;
        conn_recv_h2(c, s->tlsbuf, (size_t)n);
        if (c->want_close)
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
        mcp_grpcs_conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    if (c->tls)
        conn_recv_tls(c, (const uint8_t *)buf->base, (size_t)nread);
    else
        conn_recv_h2(c, (const uint8_t *)buf->base, (size_t)nread);
    mcp_grpcs_conn_flush(c);
}

static void reject_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

/* Why a new connection on l from addr is over a limit, or NULL. Walks the
 * connections: a few hundred at most, and only at accept. */
static const char *over_limit(const mcp_grpc_server *s, const listener *l, const char *addr)
{
    unsigned total = 0, handshaking = 0, same_peer = 0;
    for (const conn *c = s->conns; c; c = c->next) {
        if (c->listener_id != l->id)
            continue;
        total++;
        if (!c->got_frame)
            handshaking++;
        if (addr[0] && strcmp(c->addr, addr) == 0)
            same_peer++;
    }
    if (l->is_unix)
        return total >= s->opts.max_unix_connections ? "unix socket connection limit" : NULL;
    if (total >= s->opts.max_connections)
        return "connection limit";
    if (handshaking >= s->opts.max_handshakes)
        return "limit of connections in handshake";
    if (same_peer >= s->opts.max_peer_connections)
        return "per-peer connection limit";
    return NULL;
}

/* The peer's IP address as text ("" when it cannot be had). */
static void peer_address(uv_tcp_t *tcp, char *out, size_t len)
{
    struct sockaddr_storage ss;
    int n = sizeof ss;
    out[0] = '\0';
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &n) != 0 ||
        uv_ip_name((struct sockaddr *)&ss, out, len) != 0)
        out[0] = '\0';
}

/* A flood must not flood the log too: one line a second, with the count since. */
static void log_refusal(mcp_grpc_server *s, const char *limit, const char *peer)
{
    uint64_t now = uv_now(s->loop);
    s->refusals_unlogged++;
    if (s->refusal_logged_at && now - s->refusal_logged_at < 1000)
        return;
    char n[16];
    snprintf(n, sizeof n, "%u", s->refusals_unlogged);
    mcp_log(MCP_LOG_WARN, "grpc: refusing connections", "reason", limit, "peer", peer, "refused", n,
            NULL);
    s->refusal_logged_at = now ? now : 1;
    s->refusals_unlogged = 0;
}

void mcp_grpcs_on_connection(uv_stream_t *lstream, int status)
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
    c->listener_id = l->id;
    if (l->is_unix)
        uv_pipe_init(s->loop, &c->h.pipe, 0);
    else
        uv_tcp_init(s->loop, &c->h.tcp);
    c->h.tcp.data = c;
    const char *limit = NULL;
    if (uv_accept(lstream, (uv_stream_t *)&c->h) == 0 && !s->shutting_down) {
        if (!l->is_unix)
            peer_address(&c->h.tcp, c->addr, sizeof c->addr);
        limit = over_limit(s, l, c->addr);
        if (!limit)
            goto accepted;
        log_refusal(s, limit, c->addr[0] ? c->addr : "unix");
    }
    uv_close((uv_handle_t *)&c->h, reject_closed_cb);
    return;
accepted:
    snprintf(c->peer, sizeof c->peer, "%s", l->is_unix ? "unix" : l->tls ? "tls" : "tcp");
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->open_handles++;
    if (!l->is_unix)
        uv_tcp_nodelay(&c->h.tcp, 1);
    if (l->tls) {
        c->tls = mcp_tls_new(l->tls);
        if (!c->tls) {
            mcp_grpcs_conn_close(c);
            return;
        }
    } else if (mcp_grpcs_conn_start_session(c) != 0) {
        mcp_grpcs_conn_close(c);
        return;
    }
    c->timer = malloc(sizeof *c->timer);
    if (!c->timer || uv_timer_init(s->loop, c->timer) != 0) {
        free(c->timer); /* a connection nobody could time out is not taken */
        c->timer = NULL;
        mcp_grpcs_conn_close(c);
        return;
    }
    c->timer->data = c;
    uv_timer_start(c->timer, conn_timeout_cb, s->opts.handshake_timeout_ms, 0);
    if (uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read) != 0) {
        mcp_grpcs_conn_close(c);
        return;
    }
    mcp_grpcs_conn_flush(c); /* our SETTINGS go first */
}
