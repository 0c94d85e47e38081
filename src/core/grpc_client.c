/* Unary gRPC over the mcp_http client (doc/PROTOCOL-HTTP2.md in grpc/grpc):
 * POST /pkg.Service/Method with a framed body; the status comes from the
 * trailers, or from the headers of a Trailers-Only response. */
#include "mcp/grpc_client.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/util.h"

#define GRPC_FRAME_HEADER 5

struct mcp_grpc_call {
    mcp_http_req *req;
    mcp_grpc_cb cb;
    void *ud;
    size_t max_msg;
};

char *mcp_grpc_percent_decode(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            char hex[3] = {s[i + 1], s[i + 2], 0};
            *o++ = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

uint8_t *mcp_grpc_frame(const void *msg, size_t msg_len)
{
    if (msg_len > UINT32_MAX)
        return NULL;
    uint8_t *buf = malloc(msg_len + GRPC_FRAME_HEADER);
    if (!buf)
        return NULL;
    buf[0] = 0; /* not compressed */
    buf[1] = (uint8_t)(msg_len >> 24);
    buf[2] = (uint8_t)(msg_len >> 16);
    buf[3] = (uint8_t)(msg_len >> 8);
    buf[4] = (uint8_t)msg_len;
    if (msg_len)
        memcpy(buf + GRPC_FRAME_HEADER, msg, msg_len);
    return buf;
}

int mcp_grpc_unframe(const uint8_t *body, size_t body_len, size_t max_msg, const uint8_t **msg,
                     size_t *msg_len, mcp_error *err)
{
    if (body_len < GRPC_FRAME_HEADER) {
        mcp_error_set(err, "truncated message: %zu bytes, want at least 5", body_len);
        return -1;
    }
    size_t len = ((size_t)body[1] << 24) | ((size_t)body[2] << 16) | ((size_t)body[3] << 8) |
                 (size_t)body[4];
    if (len > max_msg) {
        mcp_error_set(err, "message of %zu bytes exceeds the %zu byte cap", len, max_msg);
        return -1;
    }
    if (body[0] != 0) {
        mcp_error_set(err, "compressed message (flag %u) not supported", body[0]);
        return -1;
    }
    if (body_len - GRPC_FRAME_HEADER < len) {
        mcp_error_set(err, "truncated message: %zu of %zu bytes", body_len - GRPC_FRAME_HEADER,
                      len);
        return -1;
    }
    if (body_len - GRPC_FRAME_HEADER > len) {
        mcp_error_set(err, "%zu bytes after the message (unary call)",
                      body_len - GRPC_FRAME_HEADER - len);
        return -1;
    }
    *msg = body + GRPC_FRAME_HEADER;
    *msg_len = len;
    return 0;
}

void mcp_grpc_timeout_header(int64_t timeout_ms, char *buf, size_t size)
{
    if (timeout_ms < 1)
        timeout_ms = 1;
    /* at most 8 digits: switch to seconds, then hours, for long deadlines */
    if (timeout_ms <= 99999999)
        snprintf(buf, size, "%lldm", (long long)timeout_ms);
    else if (timeout_ms / 1000 <= 99999999)
        snprintf(buf, size, "%lldS", (long long)(timeout_ms / 1000));
    else
        snprintf(buf, size, "%lldH", (long long)(timeout_ms / 3600000));
}

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

static void on_http_done(const mcp_http_response *hr, void *ud)
{
    mcp_grpc_call *call = ud;
    mcp_grpc_result res = {0};
    res.http_status = hr->status;
    res.elapsed_s = hr->elapsed_s;
    res.message = "";
    res.reason = "";
    if (hr->cancelled) {
        res.cancelled = true;
        res.status = MCP_GRPC_CANCELLED;
        res.reason = "cancelled";
        grpc_finish(call, &res);
        return;
    }
    if (hr->too_large) {
        char reason[96];
        snprintf(reason, sizeof reason, "response message exceeds %zu bytes", call->max_msg);
        res.status = MCP_GRPC_RESOURCE_EXHAUSTED;
        res.reason = reason;
        grpc_finish(call, &res);
        return;
    }
    if (hr->reason[0]) {
        res.status = grpc_status_for_transport(hr);
        res.reason = hr->reason;
        grpc_finish(call, &res);
        return;
    }
    /* trailers, or the headers of a Trailers-Only response */
    const char *status_text = mcp_http_find_header(hr, "grpc-status", MCP_HTTP_IN_TRAILERS);
    if (!status_text)
        status_text = mcp_http_find_header(hr, "grpc-status", MCP_HTTP_IN_HEADERS);
    char reason[160];
    int status = grpc_parse_status(status_text);
    if (!status_text) {
        res.status = MCP_GRPC_UNKNOWN;
        if (hr->status != 200)
            snprintf(reason, sizeof reason, "missing grpc-status (http status %ld)", hr->status);
        else
            snprintf(reason, sizeof reason, "missing grpc-status");
        res.reason = reason;
        grpc_finish(call, &res);
        return;
    }
    if (status < 0) {
        res.status = MCP_GRPC_INTERNAL;
        snprintf(reason, sizeof reason, "bad grpc-status \"%.60s\"", status_text);
        res.reason = reason;
        grpc_finish(call, &res);
        return;
    }
    const char *msg_text = mcp_http_find_header(hr, "grpc-message", MCP_HTTP_IN_TRAILERS);
    if (!msg_text)
        msg_text = mcp_http_find_header(hr, "grpc-message", MCP_HTTP_IN_HEADERS);
    char *decoded = msg_text ? mcp_grpc_percent_decode(msg_text) : NULL;
    res.status = status;
    res.message = decoded ? decoded : "";
    mcp_error err = {{0}}; /* outlives the block: res.reason may point into it */
    if (status == MCP_GRPC_OK) {
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
    free(decoded);
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

mcp_grpc_call *mcp_grpc_client_call(mcp_http *http, const mcp_grpc_request *rq, mcp_grpc_cb cb,
                                    void *ud, mcp_error *err)
{
    if (!rq || !cb) {
        mcp_error_set(err, "grpc: a call needs a request and a callback");
        return NULL;
    }
    if (grpc_check_request(rq, err) != 0)
        return NULL;
    int64_t timeout = rq->timeout_ms > 0 ? rq->timeout_ms : MCP_GRPC_DEFAULT_TIMEOUT_MS;
    char timeout_value[32];
    mcp_grpc_timeout_header(timeout, timeout_value, sizeof timeout_value);

    mcp_strv headers = {0};
    char *timeout_header = mcp_sprintf("grpc-timeout: %s", timeout_value);
    char *url = grpc_url(rq);
    uint8_t *body = mcp_grpc_frame(rq->msg, rq->msg_len);
    mcp_grpc_call *call = calloc(1, sizeof *call);
    bool ok = timeout_header && url && body && call &&
              mcp_strv_push(&headers, "content-type: application/grpc") == 0 &&
              mcp_strv_push(&headers, "te: trailers") == 0 &&
              mcp_strv_push(&headers, timeout_header) == 0;
    for (size_t i = 0; ok && rq->metadata && rq->metadata[i]; i++)
        ok = mcp_strv_push(&headers, rq->metadata[i]) == 0;
    char **header_argv = ok ? mcp_strv_argv(&headers) : NULL;
    mcp_grpc_call *result = NULL;
    if (!header_argv) {
        mcp_error_set(err, "grpc: out of memory");
    } else {
        call->cb = cb;
        call->ud = ud;
        call->max_msg = rq->max_msg ? rq->max_msg : MCP_GRPC_DEFAULT_MAX_MSG;
        mcp_http_request hrq = {
            .method = "POST",
            .url = url,
            .headers = (const char *const *)header_argv,
            .body = body,
            .body_len = rq->msg_len + GRPC_FRAME_HEADER,
            .unix_socket = rq->unix_socket,
            .version = MCP_HTTP_2,
            .ca_file = rq->ca_file,
            .cert_file = rq->cert_file,
            .key_file = rq->key_file,
            .timeout_ms = timeout,
            /* the frame header, and a little room so that the length prefix
             * (not the http cap) decides in most cases */
            .max_response = call->max_msg + GRPC_FRAME_HEADER + 1,
        };
        call->req = mcp_http_start(http, &hrq, on_http_done, call, err);
        if (call->req)
            result = call;
        else
            mcp_error_prefix(err, "grpc");
    }
    if (!result)
        free(call);
    free(header_argv);
    mcp_strv_free(&headers);
    free(timeout_header);
    free(url);
    free(body);
    return result;
}

void mcp_grpc_client_cancel(mcp_grpc_call *call)
{
    if (call)
        mcp_http_cancel(call->req);
}
