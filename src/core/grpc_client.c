/* Unary gRPC over the mcp_http client (doc/PROTOCOL-HTTP2.md in grpc/grpc):
 * POST /pkg.Service/Method with a framed body; the status comes from the
 * trailers, or from the headers of a Trailers-Only response. */
#include "mcp/grpc_client.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/util.h"

struct mcp_grpc_call {
    mcp_http_req *req;
    mcp_grpc_cb cb;
    void *ud;
    size_t max_msg;
};

/* ---- the call ----------------------------------------------------------- */

static void grpc_finish(mcp_grpc_call *call, mcp_grpc_result *res)
{
    call->cb(res, call->ud);
    free(call);
}

/* The transport failed before any grpc-status: map it like grpc-core does. */
static int grpc_status_for_transport(const mcp_http_response *hr)
{
    if (hr->timed_out)
        return MCP_GRPC_DEADLINE_EXCEEDED;
    if (hr->too_large)
        return MCP_GRPC_RESOURCE_EXHAUSTED;
    return MCP_GRPC_UNAVAILABLE;
}

/* Parses grpc-status: 1–2 digits. Returns -1 when malformed. */
static int grpc_parse_status(const char *s)
{
    if (!s || !isdigit((unsigned char)s[0]))
        return -1;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < 0 || v > 99)
        return -1;
    return (int)v;
}

/* Texts a result points into: they live as long as the result. */
typedef struct grpc_texts {
    char reason[160];
    char *decoded; /* grpc-message, percent-decoded */
} grpc_texts;

/* Fills res's status, message and reason from a finished transfer. True when
 * the server's grpc-status decides (a body may then be read). */
static bool grpc_end_status(const mcp_http_response *hr, size_t max_msg, mcp_grpc_result *res,
                            grpc_texts *tx)
{
    res->http_status = hr->status;
    res->elapsed_s = hr->elapsed_s;
    res->message = "";
    res->reason = "";
    tx->decoded = NULL;
    if (hr->cancelled) {
        res->cancelled = true;
        res->status = MCP_GRPC_CANCELLED;
        res->reason = "cancelled";
        return false;
    }
    if (hr->too_large) {
        snprintf(tx->reason, sizeof tx->reason, "response message exceeds %zu bytes", max_msg);
        res->status = MCP_GRPC_RESOURCE_EXHAUSTED;
        res->reason = tx->reason;
        return false;
    }
    if (hr->reason[0]) {
        res->status = grpc_status_for_transport(hr);
        res->reason = hr->reason;
        return false;
    }
    /* trailers, or the headers of a Trailers-Only response */
    const char *status_text = mcp_http_find_header(hr, "grpc-status", MCP_HTTP_IN_TRAILERS);
    if (!status_text)
        status_text = mcp_http_find_header(hr, "grpc-status", MCP_HTTP_IN_HEADERS);
    int status = grpc_parse_status(status_text);
    if (!status_text) {
        res->status = MCP_GRPC_UNKNOWN;
        if (hr->status != 200)
            snprintf(tx->reason, sizeof tx->reason, "missing grpc-status (http status %ld)",
                     hr->status);
        else
            snprintf(tx->reason, sizeof tx->reason, "missing grpc-status");
        res->reason = tx->reason;
        return false;
    }
    if (status < 0) {
        res->status = MCP_GRPC_INTERNAL;
        snprintf(tx->reason, sizeof tx->reason, "bad grpc-status \"%.60s\"", status_text);
        res->reason = tx->reason;
        return false;
    }
    const char *msg_text = mcp_http_find_header(hr, "grpc-message", MCP_HTTP_IN_TRAILERS);
    if (!msg_text)
        msg_text = mcp_http_find_header(hr, "grpc-message", MCP_HTTP_IN_HEADERS);
    tx->decoded = msg_text ? mcp_grpc_percent_decode(msg_text) : NULL;
    res->status = status;
    res->message = tx->decoded ? tx->decoded : "";
    return true;
}

static void on_http_done(const mcp_http_response *hr, void *ud)
{
    mcp_grpc_call *call = ud;
    mcp_grpc_result res = {0};
    grpc_texts tx;
    mcp_error err = {{0}}; /* outlives the block: res.reason may point into it */
    if (grpc_end_status(hr, call->max_msg, &res, &tx) && res.status == MCP_GRPC_OK) {
        const uint8_t *data = NULL;
        size_t len = 0;
        if (mcp_grpc_unframe((const uint8_t *)hr->body, hr->body_len, call->max_msg, &data, &len,
                             &err) != 0) {
            bool too_big = strstr(err.msg, "exceeds") != NULL;
            res.status = too_big ? MCP_GRPC_RESOURCE_EXHAUSTED : MCP_GRPC_INTERNAL;
            res.reason = err.msg;
        } else {
            res.data = data;
            res.data_len = len;
        }
    }
    grpc_finish(call, &res);
    free(tx.decoded);
}

static char *grpc_url(const mcp_grpc_request *rq)
{
    if (rq->unix_socket)
        return mcp_sprintf("http://localhost%s", rq->method);
    return mcp_sprintf("%s://%s%s", rq->tls ? "https" : "http", rq->target, rq->method);
}

static int grpc_check_request(const mcp_grpc_request *rq, mcp_error *err)
{
    if (!rq->method || rq->method[0] != '/' || !strchr(rq->method + 1, '/') ||
        strpbrk(rq->method, " \r\n?#")) {
        mcp_error_set(err, "grpc: bad method \"%s\" (want /pkg.Service/Method)",
                      rq->method ? rq->method : "(null)");
        return -1;
    }
    if (rq->unix_socket) {
        if (strlen(rq->unix_socket) > 107 || !rq->unix_socket[0]) {
            mcp_error_set(err, "grpc: unix socket path \"%s\" is empty or longer than 107 bytes",
                          rq->unix_socket);
            return -1;
        }
        if (rq->tls) {
            mcp_error_set(err, "grpc: TLS over a unix socket is not supported");
            return -1;
        }
    } else if (!rq->target || !rq->target[0] || strpbrk(rq->target, "/ \r\n?#@")) {
        mcp_error_set(err, "grpc: bad target \"%s\" (want host:port)",
                      rq->target ? rq->target : "(null)");
        return -1;
    }
    return 0;
}

/* What every call sends: the request headers (grpc-timeout only with a
 * deadline), the URL and the framed message. */
typedef struct grpc_out {
    mcp_strv headers;
    char **header_argv;
    char *timeout_header;
    char *url;
    uint8_t *body;
} grpc_out;

static void grpc_out_free(grpc_out *o)
{
    free(o->header_argv);
    mcp_strv_free(&o->headers);
    free(o->timeout_header);
    free(o->url);
    free(o->body);
}

static int grpc_out_build(grpc_out *o, const mcp_grpc_request *rq, int64_t deadline_ms,
                          mcp_error *err)
{
    memset(o, 0, sizeof *o);
    bool ok = true;
    if (deadline_ms > 0) {
        char value[32];
        mcp_grpc_timeout_header(deadline_ms, value, sizeof value);
        ok = (o->timeout_header = mcp_sprintf("grpc-timeout: %s", value)) != NULL;
    }
    o->url = grpc_url(rq);
    o->body = mcp_grpc_frame(rq->msg, rq->msg_len);
    ok = ok && o->url && o->body &&
         mcp_strv_push(&o->headers, "content-type: application/grpc") == 0 &&
         mcp_strv_push(&o->headers, "te: trailers") == 0 &&
         (!o->timeout_header || mcp_strv_push(&o->headers, o->timeout_header) == 0);
    for (size_t i = 0; ok && rq->metadata && rq->metadata[i]; i++)
        ok = mcp_strv_push(&o->headers, rq->metadata[i]) == 0;
    o->header_argv = ok ? mcp_strv_argv(&o->headers) : NULL;
    if (!o->header_argv) {
        mcp_error_set(err, "grpc: out of memory");
        grpc_out_free(o);
        return -1;
    }
    return 0;
}

static mcp_http_request grpc_http_request(const mcp_grpc_request *rq, const grpc_out *o)
{
    return (mcp_http_request){
        .method = "POST",
        .url = o->url,
        .headers = (const char *const *)o->header_argv,
        .body = o->body,
        .body_len = rq->msg_len + MCP_GRPC_PREFIX_LEN,
        .unix_socket = rq->unix_socket,
        .version = MCP_HTTP_2,
        .ca_file = rq->ca_file,
        .cert_file = rq->cert_file,
        .key_file = rq->key_file,
    };
}

/* Checks rq, frames its message (out) and allocates a zeroed handle of size
 * bytes: the first steps of a call and of a stream. NULL, err set. */
static void *grpc_begin(const mcp_grpc_request *rq, int64_t timeout_ms, grpc_out *out, size_t size,
                        mcp_error *err)
{
    if (grpc_check_request(rq, err) != 0)
        return NULL;
    if (grpc_out_build(out, rq, timeout_ms, err) != 0)
        return NULL;
    void *handle = calloc(1, size);
    if (!handle) {
        mcp_error_set(err, "grpc: out of memory");
        grpc_out_free(out);
    }
    return handle;
}

/* Starts hrq for handle (done's ud), its request kept in *req, and drops out.
 * Returns handle, or NULL after freeing it when the request did not start
 * (err set). */
static void *grpc_start(mcp_http *http, const mcp_http_request *hrq, grpc_out *out,
                        mcp_http_cb done, void *handle, mcp_http_req **req, mcp_error *err)
{
    mcp_http_req *started = mcp_http_start(http, hrq, done, handle, err);
    grpc_out_free(out);
    if (!started) {
        mcp_error_prefix(err, "grpc");
        free(handle);
        return NULL;
    }
    *req = started;
    return handle;
}

mcp_grpc_call *mcp_grpc_client_call(mcp_http *http, const mcp_grpc_request *rq, mcp_grpc_cb cb,
                                    void *ud, mcp_error *err)
{
    if (!rq || !cb) {
        mcp_error_set(err, "grpc: a call needs a request and a callback");
        return NULL;
    }
    int64_t timeout = rq->timeout_ms > 0 ? rq->timeout_ms : MCP_GRPC_DEFAULT_TIMEOUT_MS;
    grpc_out out;
    mcp_grpc_call *call = grpc_begin(rq, timeout, &out, sizeof *call, err);
    if (!call)
        return NULL;
    call->cb = cb;
    call->ud = ud;
    call->max_msg = rq->max_msg ? rq->max_msg : MCP_GRPC_DEFAULT_MAX_MSG;
    mcp_http_request hrq = grpc_http_request(rq, &out);
    hrq.timeout_ms = timeout;
    /* the frame header, and a little room so that the length prefix (not the
     * http cap) decides in most cases */
    hrq.max_response = call->max_msg + MCP_GRPC_PREFIX_LEN + 1;
    return grpc_start(http, &hrq, &out, on_http_done, call, &call->req, err);
}

void mcp_grpc_client_cancel(mcp_grpc_call *call)
{
    if (call)
        mcp_http_cancel(call->req);
}

/* ---- the incremental decoder ------------------------------------------- */

void mcp_grpc_decoder_init(mcp_grpc_decoder *d, size_t max_msg)
{
    memset(d, 0, sizeof *d);
    d->max_msg = max_msg ? max_msg : MCP_GRPC_DEFAULT_MAX_MSG;
}

void mcp_grpc_decoder_free(mcp_grpc_decoder *d)
{
    free(d->msg);
    d->msg = NULL;
    d->msg_len = d->msg_have = d->prefix_have = 0;
}

bool mcp_grpc_decoder_idle(const mcp_grpc_decoder *d)
{
    return d->failed == 0 && d->prefix_have == 0;
}

/* Stops the decoder for good (err already says why). */
static int decoder_fail(mcp_grpc_decoder *d, int status)
{
    mcp_grpc_decoder_free(d);
    d->failed = status;
    return status;
}

/* A whole message is there: hand it over and start the next one. */
static int decoder_emit(mcp_grpc_decoder *d, const uint8_t *msg, mcp_grpc_msg_cb on_msg, void *ud,
                        mcp_error *err)
{
    int rc = on_msg(msg, d->msg_len, ud);
    free(d->msg);
    d->msg = NULL;
    d->msg_len = d->msg_have = d->prefix_have = 0;
    if (rc != 0) {
        mcp_error_set(err, "the receiver stopped the stream");
        d->failed = rc;
    }
    return rc;
}

int mcp_grpc_decoder_feed(mcp_grpc_decoder *d, const uint8_t *data, size_t len,
                          mcp_grpc_msg_cb on_msg, void *ud, mcp_error *err)
{
    if (d->failed) {
        mcp_error_set(err, "the stream already failed");
        return d->failed;
    }
    while (len > 0) {
        if (d->prefix_have < MCP_GRPC_PREFIX_LEN) {
            size_t take = MCP_GRPC_PREFIX_LEN - d->prefix_have;
            take = take < len ? take : len;
            memcpy(d->prefix + d->prefix_have, data, take);
            d->prefix_have += take;
            data += take;
            len -= take;
            if (d->prefix_have < MCP_GRPC_PREFIX_LEN)
                return 0;
            const uint8_t *p = d->prefix;
            size_t n = ((size_t)p[1] << 24) | ((size_t)p[2] << 16) | ((size_t)p[3] << 8) | p[4];
            if (n > d->max_msg) {
                mcp_error_set(err, "message of %zu bytes exceeds the %zu byte cap", n, d->max_msg);
                return decoder_fail(d, MCP_GRPC_RESOURCE_EXHAUSTED);
            }
            if (p[0] != 0) {
                mcp_error_set(err, "compressed message (flag %u) not supported", (unsigned)p[0]);
                return decoder_fail(d, MCP_GRPC_INTERNAL);
            }
            d->msg_len = n;
            d->msg_have = 0;
            /* a message that arrived whole in this chunk is handed over in place */
            if (len >= n) {
                int rc = decoder_emit(d, data, on_msg, ud, err);
                if (rc != 0)
                    return rc;
                data += n;
                len -= n;
                continue;
            }
            d->msg = malloc(n);
            if (!d->msg) {
                mcp_error_set(err, "out of memory (a message of %zu bytes)", n);
                return decoder_fail(d, MCP_GRPC_INTERNAL);
            }
        }
        size_t take = d->msg_len - d->msg_have;
        take = take < len ? take : len;
        memcpy(d->msg + d->msg_have, data, take);
        d->msg_have += take;
        data += take;
        len -= take;
        if (d->msg_have == d->msg_len) {
            int rc = decoder_emit(d, d->msg, on_msg, ud, err);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

/* ---- server streams ----------------------------------------------------- */

struct mcp_grpc_stream {
    mcp_http_req *req;
    mcp_grpc_decoder dec;
    mcp_grpc_stream_msg_cb on_msg;
    mcp_grpc_stream_end_cb on_end;
    void *ud;
    int failed; /* the status the decoder or the receiver stopped with */
    mcp_error failed_why;
};

static bool stream_on_data(const void *data, size_t len, long status, void *ud)
{
    mcp_grpc_stream *s = ud;
    if (status != 200)
        return true; /* not a gRPC answer: its end says what it was */
    int rc = mcp_grpc_decoder_feed(&s->dec, data, len, s->on_msg, s->ud, &s->failed_why);
    if (rc != 0) {
        s->failed = rc;
        return false;
    }
    return true;
}

static void stream_on_done(const mcp_http_response *hr, void *ud)
{
    mcp_grpc_stream *s = ud;
    mcp_grpc_result res = {0};
    grpc_texts tx;
    bool from_server = grpc_end_status(hr, s->dec.max_msg, &res, &tx);
    if (s->failed) {
        res.status = s->failed;
        res.message = "";
        res.reason = s->failed_why.msg;
    } else if (from_server && res.status == MCP_GRPC_OK && !mcp_grpc_decoder_idle(&s->dec)) {
        res.status = MCP_GRPC_INTERNAL;
        res.reason = "the stream ended inside a message";
    }
    s->on_end(&res, s->ud);
    free(tx.decoded);
    mcp_grpc_decoder_free(&s->dec);
    free(s);
}

mcp_grpc_stream *mcp_grpc_client_stream(mcp_http *http, const mcp_grpc_request *rq,
                                        int64_t connect_timeout_ms, mcp_grpc_stream_msg_cb on_msg,
                                        mcp_grpc_stream_end_cb on_end, void *ud, mcp_error *err)
{
    if (!rq || !on_msg || !on_end) {
        mcp_error_set(err, "grpc: a stream needs a request and both callbacks");
        return NULL;
    }
    grpc_out out;
    mcp_grpc_stream *s = grpc_begin(rq, rq->timeout_ms, &out, sizeof *s, err);
    if (!s)
        return NULL;
    mcp_grpc_decoder_init(&s->dec, rq->max_msg);
    s->on_msg = on_msg;
    s->on_end = on_end;
    s->ud = ud;
    mcp_http_request hrq = grpc_http_request(rq, &out);
    hrq.no_deadline = rq->timeout_ms <= 0;
    hrq.timeout_ms = rq->timeout_ms > 0 ? rq->timeout_ms : 0;
    hrq.connect_timeout_ms =
        connect_timeout_ms > 0 ? connect_timeout_ms : MCP_GRPC_DEFAULT_TIMEOUT_MS;
    hrq.on_data = stream_on_data;
    hrq.data_ud = s;
    return grpc_start(http, &hrq, &out, stream_on_done, s, &s->req, err);
}

void mcp_grpc_client_stream_cancel(mcp_grpc_stream *s)
{
    if (s)
        mcp_http_cancel(s->req);
}
