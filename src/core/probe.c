/* Health probes: a TCP connect with a timer, an HTTP GET on mcp_http, and
 * grpc.health.v1.Health/Check on the gRPC client with its two tiny messages
 * encoded and decoded by hand. */
#include "mcp/probe.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/grpc_client.h"
#include "mcp/util.h"

enum probe_kind { PROBE_TCP, PROBE_HTTP, PROBE_GRPC };

struct mcp_probe {
    enum probe_kind kind;
    mcp_probe_cb cb;
    void *ud;
    int64_t started_ms;
    /* tcp */
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_timer_t timer;
    int open_handles;
    bool decided; /* the tcp outcome is known; handles are closing */
    /* http / grpc */
    mcp_http_req *req;
    mcp_grpc_call *call;
    /* the outcome */
    mcp_probe_result res;
    char reason[192];
};

static mcp_probe *probe_new(enum probe_kind kind, mcp_probe_cb cb, void *ud, mcp_error *err)
{
    if (!cb) {
        mcp_error_set(err, "probe: a callback is required");
        return NULL;
    }
    mcp_probe *p = calloc(1, sizeof *p);
    if (!p) {
        mcp_error_set(err, "probe: out of memory");
        return NULL;
    }
    p->kind = kind;
    p->cb = cb;
    p->ud = ud;
    p->started_ms = mcp_now_ms();
    return p;
}

static void probe_decide(mcp_probe *p, bool healthy, const char *reason)
{
    p->res.healthy = healthy;
    snprintf(p->reason, sizeof p->reason, "%s", reason);
    p->res.reason = p->reason;
    p->res.latency_s = (double)(mcp_now_ms() - p->started_ms) / 1000.0;
}

static void probe_finish(mcp_probe *p)
{
    p->cb(&p->res, p->ud);
    free(p);
}

static int64_t probe_timeout(int64_t timeout_ms)
{
    return timeout_ms > 0 ? timeout_ms : MCP_PROBE_DEFAULT_TIMEOUT_MS;
}

static int probe_check_target(const char *host, int port, mcp_error *err)
{
    if (!host || !host[0] || strpbrk(host, "/ \r\n?#@[]")) {
        mcp_error_set(err, "probe: bad host \"%s\"", host ? host : "(null)");
        return -1;
    }
    if (port < 1 || port > 65535) {
        mcp_error_set(err, "probe: bad port %d (want 1-65535)", port);
        return -1;
    }
    return 0;
}

/* ---- tcp ---------------------------------------------------------------- */

static void tcp_on_closed(uv_handle_t *h)
{
    mcp_probe *p = h->data;
    if (--p->open_handles == 0)
        probe_finish(p);
}

/* Records the outcome once and closes both handles; the callback comes when
 * they are closed, so never from inside start or cancel. */
static void tcp_decide(mcp_probe *p, bool healthy, const char *reason)
{
    if (p->decided)
        return;
    p->decided = true;
    probe_decide(p, healthy, reason);
    uv_close((uv_handle_t *)&p->tcp, tcp_on_closed);
    uv_close((uv_handle_t *)&p->timer, tcp_on_closed);
}

static const char *tcp_reason(int status)
{
    switch (status) {
    case UV_ECONNREFUSED:
        return "refused";
    case UV_ETIMEDOUT:
        return "timeout";
    case UV_ECONNRESET:
        return "reset";
    case UV_ENETUNREACH:
    case UV_EHOSTUNREACH:
        return "unreachable";
    default:
        return uv_strerror(status);
    }
}

static void tcp_on_connect(uv_connect_t *req, int status)
{
    mcp_probe *p = req->data;
    if (status == 0)
        tcp_decide(p, true, "ok");
    else if (status != UV_ECANCELED)
        tcp_decide(p, false, tcp_reason(status));
}

static void tcp_on_timeout(uv_timer_t *t)
{
    tcp_decide(t->data, false, "timeout");
}

/* host: an IP literal, or "localhost". */
static int tcp_address(const char *host, int port, struct sockaddr_storage *addr)
{
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)addr) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr) == 0)
        return 0;
    return -1;
}

mcp_probe *mcp_probe_tcp(uv_loop_t *loop, const char *host, int port, int64_t timeout_ms,
                         mcp_probe_cb cb, void *ud, mcp_error *err)
{
    struct sockaddr_storage addr;
    if (probe_check_target(host, port, err) != 0)
        return NULL;
    if (tcp_address(host, port, &addr) != 0) {
        mcp_error_set(err, "probe: tcp host \"%s\" is not an IP address or localhost", host);
        return NULL;
    }
    mcp_probe *p = probe_new(PROBE_TCP, cb, ud, err);
    if (!p)
        return NULL;
    int rc = uv_tcp_init(loop, &p->tcp);
    if (rc != 0) {
        mcp_error_set(err, "probe: %s", uv_strerror(rc));
        free(p);
        return NULL;
    }
    uv_timer_init(loop, &p->timer);
    p->tcp.data = p->timer.data = p->connect.data = p;
    p->open_handles = 2;
    uv_timer_start(&p->timer, tcp_on_timeout, (uint64_t)probe_timeout(timeout_ms), 0);
    rc = uv_tcp_connect(&p->connect, &p->tcp, (const struct sockaddr *)&addr, tcp_on_connect);
    if (rc != 0) /* reported through the callback like any other failure */
        tcp_decide(p, false, tcp_reason(rc));
    return p;
}

/* ---- http --------------------------------------------------------------- */

static void http_probe_done(const mcp_http_response *hr, void *ud)
{
    mcp_probe *p = ud;
    char reason[64];
    p->res.cancelled = hr->cancelled;
    if (hr->reason[0])
        probe_decide(p, false, hr->reason);
    else if (hr->status >= 200 && hr->status < 400)
        probe_decide(p, true, "ok");
    else {
        snprintf(reason, sizeof reason, "http status %ld", hr->status);
        probe_decide(p, false, reason);
    }
    probe_finish(p);
}

/* The end of starting a probe over http or grpc: frees target (the text
 * its request was made from) and returns p, or frees p too and returns NULL
 * when the request did not start (started is NULL, err set). */
static mcp_probe *probe_started(mcp_probe *p, const void *started, char *target)
{
    free(target);
    if (!started) {
        free(p);
        return NULL;
    }
    return p;
}

/* "host:port", with brackets around an IPv6 literal. */
static char *host_port(const char *host, int port)
{
    if (strchr(host, ':'))
        return mcp_sprintf("[%s]:%d", host, port);
    return mcp_sprintf("%s:%d", host, port);
}

mcp_probe *mcp_probe_http(mcp_http *http, const char *host, int port, const char *path,
                          int64_t timeout_ms, mcp_probe_cb cb, void *ud, mcp_error *err)
{
    if (probe_check_target(host, port, err) != 0)
        return NULL;
    if (!path || !path[0])
        path = "/";
    if (path[0] != '/' || strpbrk(path, " \r\n#")) {
        mcp_error_set(err, "probe: bad http path \"%s\" (want /...)", path);
        return NULL;
    }
    char *hp = host_port(host, port);
    char *url = hp ? mcp_sprintf("http://%s%s", hp, path) : NULL;
    free(hp);
    mcp_probe *p = url ? probe_new(PROBE_HTTP, cb, ud, err) : NULL;
    if (!p) {
        if (!url)
            mcp_error_set(err, "probe: out of memory");
        free(url);
        return NULL;
    }
    mcp_http_request rq = {
        .method = "GET",
        .url = url,
        .timeout_ms = probe_timeout(timeout_ms),
        .max_response = (size_t)1 << 20,
    };
    p->req = mcp_http_start(http, &rq, http_probe_done, p, err);
    return probe_started(p, p->req, url);
}

/* ---- grpc health -------------------------------------------------------- */

/* Protobuf base-128 varint: 7 bits per byte, low bits first, high bit set on
 * every byte but the last. */
static int put_varint(uint64_t v, uint8_t *buf, size_t size)
{
    size_t n = 0;
    do {
        if (n >= size)
            return -1;
        uint8_t b = v & 0x7f;
        v >>= 7;
        buf[n++] = b | (v ? 0x80 : 0);
    } while (v);
    return (int)n;
}

static int get_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= len)
            return -1;
        uint8_t b = p[(*pos)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

/* HealthCheckRequest { string service = 1; }: field 1, wire type 2
 * (length-delimited) → tag byte 0x0a, the length as a varint, the bytes.
 * proto3 leaves an empty string out: "" encodes as zero bytes. */
int mcp_probe_health_request(const char *service, uint8_t *buf, size_t size)
{
    size_t n = service ? strlen(service) : 0;
    if (n == 0)
        return 0;
    if (size < 1)
        return -1;
    buf[0] = 0x0a;
    int lenlen = put_varint(n, buf + 1, size - 1);
    if (lenlen < 0 || (size_t)lenlen + 1 + n > size)
        return -1;
    memcpy(buf + 1 + lenlen, service, n);
    return (int)(1 + (size_t)lenlen + n);
}

/* HealthCheckResponse { ServingStatus status = 1; }: field 1, wire type 0
 * (varint) → tag byte 0x08 then the enum value; SERVING is 08 01. Unknown
 * fields are skipped by wire type; an absent status means 0 (UNKNOWN). */
int mcp_probe_health_decode(const uint8_t *msg, size_t len, int *status)
{
    size_t pos = 0;
    *status = 0;
    while (pos < len) {
        uint64_t tag, v;
        if (get_varint(msg, len, &pos, &tag) != 0)
            return -1;
        unsigned field = (unsigned)(tag >> 3), wire = (unsigned)(tag & 7);
        if (field == 0)
            return -1;
        switch (wire) {
        case 0: /* varint */
            if (get_varint(msg, len, &pos, &v) != 0)
                return -1;
            if (field == 1)
                *status = (int)(int32_t)v;
            break;
        case 2: /* length-delimited */
            if (get_varint(msg, len, &pos, &v) != 0 || v > len - pos)
                return -1;
            pos += (size_t)v;
            break;
        case 1:   /* 64-bit */
        case 5: { /* 32-bit */
            size_t width = wire == 1 ? 8 : 4;
            if (len - pos < width)
                return -1;
            pos += width;
            break;
        }
        default:
            return -1;
        }
    }
    return 0;
}

static void grpc_probe_done(const mcp_grpc_result *gr, void *ud)
{
    mcp_probe *p = ud;
    char reason[192];
    int serving = 0;
    p->res.cancelled = gr->cancelled;
    if (gr->cancelled) {
        probe_decide(p, false, "cancelled");
    } else if (gr->reason[0]) {
        probe_decide(p, false, gr->reason);
    } else if (gr->status == MCP_GRPC_NOT_FOUND) {
        probe_decide(p, false, "unknown service");
    } else if (gr->status != MCP_GRPC_OK) {
        snprintf(reason, sizeof reason, "grpc status %d: %.150s", gr->status, gr->message);
        probe_decide(p, false, reason);
    } else if (mcp_probe_health_decode(gr->data, gr->data_len, &serving) != 0) {
        probe_decide(p, false, "malformed health reply");
    } else if (serving == 1) {
        probe_decide(p, true, "ok");
    } else {
        const char *names[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
        if (serving >= 0 && serving <= 3)
            snprintf(reason, sizeof reason, "%s", names[serving]);
        else
            snprintf(reason, sizeof reason, "serving status %d", serving);
        probe_decide(p, false, reason);
    }
    probe_finish(p);
}

mcp_probe *mcp_probe_grpc(mcp_http *http, const char *host, int port, const char *service,
                          int64_t timeout_ms, mcp_probe_cb cb, void *ud, mcp_error *err)
{
    if (probe_check_target(host, port, err) != 0)
        return NULL;
    size_t n = service ? strlen(service) : 0;
    if (n > 4096) {
        mcp_error_set(err, "probe: grpc service name longer than 4096 bytes");
        return NULL;
    }
    uint8_t msg[4096 + 8];
    int msg_len = mcp_probe_health_request(service, msg, sizeof msg);
    char *target = host_port(host, port);
    mcp_probe *p = target ? probe_new(PROBE_GRPC, cb, ud, err) : NULL;
    if (!p || msg_len < 0) {
        mcp_error_set(err, "probe: out of memory");
        free(target);
        free(p);
        return NULL;
    }
    mcp_grpc_request rq = {
        .target = target,
        .method = "/grpc.health.v1.Health/Check",
        .msg = msg,
        .msg_len = (size_t)msg_len,
        .timeout_ms = probe_timeout(timeout_ms),
        .max_msg = 4096,
    };
    p->call = mcp_grpc_client_call(http, &rq, grpc_probe_done, p, err);
    return probe_started(p, p->call, target);
}

void mcp_probe_cancel(mcp_probe *p)
{
    if (!p)
        return;
    switch (p->kind) {
    case PROBE_TCP:
        if (!p->decided) {
            p->res.cancelled = true;
            tcp_decide(p, false, "cancelled");
        }
        break;
    case PROBE_HTTP:
        mcp_http_cancel(p->req);
        break;
    case PROBE_GRPC:
        mcp_grpc_client_cancel(p->call);
        break;
    }
}
