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
            .body_len = rq->msg_len + MCP_GRPC_PREFIX_LEN,
            .unix_socket = rq->unix_socket,
            .version = MCP_HTTP_2,
            .ca_file = rq->ca_file,
            .cert_file = rq->cert_file,
            .key_file = rq->key_file,
            .timeout_ms = timeout,
            /* the frame header, and a little room so that the length prefix
             * (not the http cap) decides in most cases */
            .max_response = call->max_msg + MCP_GRPC_PREFIX_LEN + 1,
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
