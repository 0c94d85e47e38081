/* The gRPC server: wire helpers, listener refusals, and in-process calls from a
 * libcurl HTTP/2 client (in a thread) over a unix socket, checking async
 * replies, Trailers-Only errors, cancellation, deadlines, shutdown and server
 * streaming (messages, then trailers; open streams ended by shutdown). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <nghttp2/nghttp2.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <uv.h>

#include "grpc/health/v1/health.pb-c.h"
#include "mcp/grpc_server.h"

/* ---- wire helpers ---- */

static void test_parse_timeout(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t ms;
    } ok[] = {
        {"100m", 100}, {"1S", 1000}, {"2M", 120000},          {"1H", 3600000}, {"1500u", 2},
        {"1n", 1},     {"0m", 0},    {"99999999m", 99999999}, {"1000u", 1},    {"1000000n", 1},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t ms = -42;
        assert_int_equal(mcp_grpc_parse_timeout(ok[i].in, &ms), 0);
        assert_int_equal(ms, ok[i].ms);
    }
    static const char *const bad[] = {"",    "m",    "100", "123456789m", "10x",
                                      "-1m", "1.5S", " 1S", "1 S"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = -42;
        assert_int_equal(mcp_grpc_parse_timeout(bad[i], &ms), -1);
        assert_int_equal(ms, -42);
    }
    int64_t ms;
    assert_int_equal(mcp_grpc_parse_timeout(NULL, &ms), -1);
}

static void test_percent_encoding(void **state)
{
    (void)state;
    const char *raw = "a%b\nc \xe2\x82\xac~";
    char *enc = mcp_grpc_percent_encode(raw);
    assert_non_null(enc);
    assert_string_equal(enc, "a%25b%0Ac %E2%82%AC~");
    char *dec = mcp_grpc_percent_decode(enc);
    assert_non_null(dec);
    assert_string_equal(dec, raw);
    free(enc);
    free(dec);
    dec = mcp_grpc_percent_decode("100%zz%4");
    assert_string_equal(dec, "100%zz%4"); /* invalid escapes stay */
    free(dec);
}

static void test_loopback_and_status_names(void **state)
{
    (void)state;
    assert_true(mcp_grpc_host_is_loopback("127.0.0.1"));
    assert_true(mcp_grpc_host_is_loopback("127.1.2.3"));
    assert_true(mcp_grpc_host_is_loopback("::1"));
    assert_true(mcp_grpc_host_is_loopback("::ffff:127.0.0.1"));
    assert_true(mcp_grpc_host_is_loopback("localhost"));
    assert_false(mcp_grpc_host_is_loopback("10.0.0.1"));
    assert_false(mcp_grpc_host_is_loopback("0.0.0.0"));
    assert_false(mcp_grpc_host_is_loopback("::"));
    assert_false(mcp_grpc_host_is_loopback(""));
    assert_false(mcp_grpc_host_is_loopback("example.com"));
    assert_false(mcp_grpc_host_is_loopback(NULL));
    assert_string_equal(mcp_grpc_status_name(4), "DEADLINE_EXCEEDED");
    assert_string_equal(mcp_grpc_status_name(16), "UNAUTHENTICATED");
    assert_string_equal(mcp_grpc_status_name(99), "UNKNOWN");
}

/* ---- a server on a private loop ---- */

typedef struct fixture {
    uv_loop_t loop;
    mcp_grpc_server *server;
    char dir[64];
    char sock[128];
    bool done;
} fixture;

static void on_done(mcp_grpc_server *s, void *ud)
{
    ((fixture *)ud)->done = true;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    snprintf(f->dir, sizeof f->dir, "/tmp/mcp-grpc-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->sock, sizeof f->sock, "%s/s.sock", f->dir);
    mcp_error err;
    f->server = mcp_grpc_server_new(&f->loop, NULL, &err);
    assert_non_null(f->server);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    mcp_grpc_server_shutdown(f->server, 100, on_done, f);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(f->done);
    assert_int_equal(access(f->sock, F_OK), -1); /* shutdown removed the socket file */
    mcp_grpc_server_free(f->server);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    char path[160];
    snprintf(path, sizeof path, "%s/file", f->dir);
    unlink(path);
    unlink(f->sock);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void test_tcp_refusals(void **state)
{
    fixture *f = *state;
    mcp_error err;
    mcp_grpc_tls_options insecure = {.insecure = true};
    assert_int_equal(mcp_grpc_server_listen_tcp(f->server, "0.0.0.0:0", &insecure, &err), -1);
    assert_non_null(strstr(err.msg, "plaintext (insecure) gRPC on 0.0.0.0:0 refused"));
    assert_int_equal(mcp_grpc_server_listen_tcp(f->server, ":0", &insecure, &err), -1);
    assert_int_equal(mcp_grpc_server_listen_tcp(f->server, "[::]:0", &insecure, &err), -1);
    static const char *const bad[] = {"nocolon", "127.0.0.1:99999", "[::1",
                                      "::1:80",  "127.0.0.1:",      "127.0.0.1:8x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(mcp_grpc_server_listen_tcp(f->server, bad[i], &insecure, &err), -1);
        assert_non_null(strstr(err.msg, "bad listen address"));
    }
    assert_int_equal(mcp_grpc_server_listen_tcp(f->server, "host.example:80", &insecure, &err), -1);
    mcp_grpc_tls_options tls = {0};
    assert_int_equal(mcp_grpc_server_listen_tcp(f->server, "127.0.0.1:0", &tls, &err), -1);
    assert_non_null(strstr(err.msg, "cert_file, key_file and ca_file are all required"));
    tls = (mcp_grpc_tls_options){.cert_file = "/nonexistent/cert.pem",
                                 .key_file = "/nonexistent/key.pem",
                                 .ca_file = "/x/ca.pem"};
    assert_int_equal(mcp_grpc_server_listen_tcp(f->server, "127.0.0.1:0", &tls, &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent/cert.pem"));
    /* plaintext on loopback is fine, and port 0 reports the real port */
    assert_int_equal(mcp_grpc_server_listen_tcp(f->server, "127.0.0.1:0", &insecure, &err), 0);
    assert_true(mcp_grpc_server_tcp_port(f->server) > 0);
}

static void test_unix_refusals(void **state)
{
    fixture *f = *state;
    mcp_error err;
    char path[160];
    snprintf(path, sizeof path, "%s/file", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("keep", fp);
    fclose(fp);
    assert_int_equal(mcp_grpc_server_listen_unix(f->server, path, &err), -1);
    assert_non_null(strstr(err.msg, "is not a socket"));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 4);
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = '\0';
    assert_int_equal(mcp_grpc_server_listen_unix(f->server, longpath, &err), -1);
    assert_int_equal(mcp_grpc_server_handle(f->server, "no-slash", NULL, NULL, &err), -1);
    /* a live socket is not taken over */
    assert_int_equal(mcp_grpc_server_listen_unix(f->server, f->sock, &err), 0);
    assert_int_equal(stat(f->sock, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0660);
    mcp_grpc_server *other = mcp_grpc_server_new(&f->loop, NULL, &err);
    assert_non_null(other);
    assert_int_equal(mcp_grpc_server_listen_unix(other, f->sock, &err), -1);
    assert_non_null(strstr(err.msg, "another server is listening"));
    mcp_grpc_server_shutdown(other, 0, NULL, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    mcp_grpc_server_free(other);
}

/* ---- calls from libcurl ---- */

typedef struct client_req {
    const char *sock, *path, *extra_header;
    const uint8_t *body;
    size_t len;
    long timeout_ms;
    char headers[4096];
    size_t headers_len;
    uint8_t resp[4096];
    size_t resp_len;
    CURLcode rc;
    uv_async_t async;
    uv_thread_t thread;
} client_req;

static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
    client_req *r = ud;
    size_t len = size * n;
    if (r->headers_len + len < sizeof r->headers) {
        memcpy(r->headers + r->headers_len, buf, len);
        r->headers_len += len;
        r->headers[r->headers_len] = '\0';
    }
    return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *ud)
{
    client_req *r = ud;
    size_t len = size * n;
    if (r->resp_len + len <= sizeof r->resp) {
        memcpy(r->resp + r->resp_len, buf, len);
        r->resp_len += len;
    }
    return len;
}

static void client_thread(void *arg)
{
    client_req *r = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "content-type: application/grpc");
    h = curl_slist_append(h, "te: trailers");
    if (r->extra_header)
        h = curl_slist_append(h, r->extra_header);
    char url[256];
    snprintf(url, sizeof url, "http://localhost%s", r->path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, r->sock);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)r->len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(c, CURLOPT_VERBOSE, getenv("CURL_DEBUG") ? 1L : 0L);
    r->rc = curl_easy_perform(c);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    uv_async_send(&r->async);
}

static void on_client_done(uv_async_t *a)
{
    uv_close((uv_handle_t *)a, NULL);
    uv_stop(a->loop);
}

/* Runs one request through the loop until the client thread is finished. */
static void call(fixture *f, client_req *r)
{
    r->sock = f->sock;
    if (!r->timeout_ms)
        r->timeout_ms = 5000;
    assert_int_equal(uv_async_init(&f->loop, &r->async, on_client_done), 0);
    assert_int_equal(uv_thread_create(&r->thread, client_thread, r), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_thread_join(&r->thread);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* the async's close callback */
}

/* Handler state shared with the test. */
typedef enum { REPLY_LATER, NEVER, FAIL_NOW, SHUTDOWN, STREAM, STREAM_FAIL, STREAM_OPEN } mode;
typedef struct hstate {
    mode m;
    fixture *f;
    mcp_grpc_server_call *call;
    int cancel_reason;
    int cancels;
    uv_timer_t timer;
    char service[64];
    uint64_t shutdown_at, done_at; /* uv_now of the shutdown and of its done callback */
} hstate;

static void on_cancel(mcp_grpc_server_call *c, int reason, void *ud)
{
    hstate *h = ud;
    assert_ptr_equal(c, h->call);
    assert_true(mcp_grpc_server_call_cancelled(c));
    h->cancel_reason = reason;
    h->cancels++;
}

static void reply_now(uv_timer_t *t)
{
    hstate *h = t->data;
    Grpc__Health__V1__HealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    out.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    assert_false(mcp_grpc_server_call_cancelled(h->call));
    assert_int_equal(mcp_grpc_server_reply_message(h->call, &out.base), 0);
    h->call = NULL;
    uv_close((uv_handle_t *)t, NULL);
}

static void on_stream_done(mcp_grpc_server *s, void *ud)
{
    hstate *h = ud;
    h->done_at = uv_now(&h->f->loop);
    h->f->done = true;
}

static void shutdown_later(uv_timer_t *t)
{
    hstate *h = t->data;
    h->shutdown_at = uv_now(&h->f->loop);
    mcp_grpc_server_shutdown(h->f->server, 5000, on_stream_done, h);
    uv_close((uv_handle_t *)t, NULL);
}

static void handler(mcp_grpc_server_call *c, const uint8_t *req, size_t len, void *ud)
{
    hstate *h = ud;
    Grpc__Health__V1__HealthCheckRequest *in =
        (Grpc__Health__V1__HealthCheckRequest *)mcp_grpc_server_unpack_or_fail(
            c, &grpc__health__v1__health_check_request__descriptor, req, len);
    if (!in)
        return;
    snprintf(h->service, sizeof h->service, "%s", in->service);
    protobuf_c_message_free_unpacked(&in->base, NULL);
    assert_string_equal(mcp_grpc_server_call_method(c), "/grpc.health.v1.Health/Check");
    assert_string_equal(mcp_grpc_server_call_peer(c), "unix");
    h->call = c;
    mcp_grpc_server_call_set_cancel(c, on_cancel, h);
    switch (h->m) {
    case FAIL_NOW:
        assert_int_equal(mcp_grpc_server_fail(c, MCP_GRPC_NOT_FOUND, "no such thing: 100%"), 0);
        h->call = NULL;
        break;
    case REPLY_LATER:
        uv_timer_init(&h->f->loop, &h->timer);
        h->timer.data = h;
        uv_timer_start(&h->timer, reply_now, 20, 0);
        break;
    case SHUTDOWN: /* from inside the server's own callback, with a short grace */
        mcp_grpc_server_shutdown(h->f->server, 50, on_done, h->f);
        break;
    case NEVER:
        break;
    case STREAM:
    case STREAM_FAIL:
        for (int i = 1; i <= 3; i++) {
            Grpc__Health__V1__HealthCheckResponse out =
                GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
            out.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)i;
            assert_int_equal(mcp_grpc_server_send_message(c, &out.base), 0);
        }
        assert_int_equal(mcp_grpc_server_call_unsent(c) <= 3 * 7, true);
        if (h->m == STREAM)
            assert_int_equal(mcp_grpc_server_finish(c), 0);
        else
            assert_int_equal(mcp_grpc_server_fail(c, MCP_GRPC_NOT_FOUND, "gone"), 0);
        h->call = NULL;
        break;
    case STREAM_OPEN: /* one message, then the stream stays open until shutdown ends it */
        assert_int_equal(mcp_grpc_server_send(c, (const uint8_t *)"\x08\x01", 2), 0);
        uv_timer_init(&h->f->loop, &h->timer);
        h->timer.data = h;
        uv_timer_start(&h->timer, shutdown_later, 100, 0);
        break;
    }
}

static void start_unix(fixture *f, hstate *h)
{
    mcp_error err;
    h->f = f;
    assert_int_equal(
        mcp_grpc_server_handle(f->server, "/grpc.health.v1.Health/Check", handler, h, &err), 0);
    assert_int_equal(mcp_grpc_server_listen_unix(f->server, f->sock, &err), 0);
}

/* HealthCheckRequest{service: "abc"} with its gRPC prefix. */
static const uint8_t HC_REQ[] = {0, 0, 0, 0, 5, 0x0a, 3, 'a', 'b', 'c'};
#define CHECK "/grpc.health.v1.Health/Check"

static void test_async_reply(void **state)
{
    fixture *f = *state;
    hstate h = {.m = REPLY_LATER};
    start_unix(f, &h);
    for (int i = 0; i < 3; i++) {
        client_req r = {.path = CHECK, .body = HC_REQ, .len = sizeof HC_REQ};
        call(f, &r);
        assert_int_equal(r.rc, CURLE_OK);
        assert_non_null(strstr(r.headers, "HTTP/2 200"));
        assert_non_null(strstr(r.headers, "content-type: application/grpc"));
        assert_non_null(strstr(r.headers, "grpc-status: 0"));
        static const uint8_t serving[] = {0, 0, 0, 0, 2, 0x08, 1};
        assert_int_equal(r.resp_len, sizeof serving);
        assert_memory_equal(r.resp, serving, sizeof serving);
        assert_string_equal(h.service, "abc");
        assert_int_equal(h.cancels, 0);
    }
}

static void test_fail_is_trailers_only(void **state)
{
    fixture *f = *state;
    hstate h = {.m = FAIL_NOW};
    start_unix(f, &h);
    client_req r = {.path = CHECK, .body = HC_REQ, .len = sizeof HC_REQ};
    call(f, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_non_null(strstr(r.headers, "grpc-status: 5"));
    assert_non_null(strstr(r.headers, "grpc-message: no such thing: 100%25"));
    assert_int_equal(r.resp_len, 0);
}

static void test_bad_requests(void **state)
{
    fixture *f = *state;
    hstate h = {.m = REPLY_LATER};
    start_unix(f, &h);
    static const uint8_t not_pb[] = {0, 0, 0, 0, 3, 0x0a, 0xff, 0xff};
    client_req r = {.path = CHECK, .body = not_pb, .len = sizeof not_pb};
    call(f, &r);
    assert_int_equal(r.rc, CURLE_OK); /* answered early: the client must not hang */
    assert_non_null(strstr(r.headers, "grpc-status: 3"));
    assert_non_null(strstr(r.headers, "grpc.health.v1.HealthCheckRequest"));
    client_req u = {.path = "/x.Y/Z", .body = HC_REQ, .len = sizeof HC_REQ};
    call(f, &u);
    assert_int_equal(u.rc, CURLE_OK); /* answered early: the client must not hang */
    assert_non_null(strstr(u.headers, "grpc-status: 12"));
    static const uint8_t compressed[] = {1, 0, 0, 0, 0};
    client_req z = {.path = CHECK, .body = compressed, .len = sizeof compressed};
    call(f, &z);
    assert_int_equal(z.rc, CURLE_OK); /* answered early: the client must not hang */
    assert_non_null(strstr(z.headers, "grpc-status: 12"));
    static const uint8_t huge[] = {0, 0x7f, 0, 0, 0, 1, 2, 3};
    client_req big = {.path = CHECK, .body = huge, .len = sizeof huge};
    call(f, &big);
    assert_int_equal(big.rc, CURLE_OK); /* answered early: the client must not hang */
    assert_non_null(strstr(big.headers, "grpc-status: 8"));
    assert_int_equal(h.cancels, 0);
    assert_null(h.call); /* nothing reached the handler's async path */
}

static void test_deadline_cancels_the_call(void **state)
{
    fixture *f = *state;
    hstate h = {.m = NEVER};
    start_unix(f, &h);
    client_req r = {
        .path = CHECK, .body = HC_REQ, .len = sizeof HC_REQ, .extra_header = "grpc-timeout: 100m"};
    call(f, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_non_null(strstr(r.headers, "grpc-status: 4"));
    assert_int_equal(h.cancels, 1);
    assert_int_equal(h.cancel_reason, MCP_GRPC_DEADLINE_EXCEEDED);
    assert_int_equal(mcp_grpc_server_call_remaining_ms(h.call), 0);
    /* the late reply is a harmless no-op that frees the call (ASan checks the free) */
    assert_int_equal(mcp_grpc_server_reply(h.call, (const uint8_t *)"", 0), -1);
}

static void test_client_gone_cancels_the_call(void **state)
{
    fixture *f = *state;
    hstate h = {.m = NEVER};
    start_unix(f, &h);
    client_req r = {.path = CHECK, .body = HC_REQ, .len = sizeof HC_REQ, .timeout_ms = 200};
    call(f, &r);
    assert_int_not_equal(r.rc, CURLE_OK);
    for (int i = 0; i < 200 && h.cancels == 0; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    assert_int_equal(h.cancels, 1);
    assert_int_equal(h.cancel_reason, MCP_GRPC_CANCELLED);
    assert_int_equal(mcp_grpc_server_fail(h.call, MCP_GRPC_INTERNAL, "late"), -1);
}

static void test_shutdown_from_a_handler_cancels_after_grace(void **state)
{
    fixture *f = *state;
    hstate h = {.m = SHUTDOWN};
    start_unix(f, &h);
    client_req r = {.path = CHECK, .body = HC_REQ, .len = sizeof HC_REQ, .timeout_ms = 3000};
    call(f, &r);
    assert_int_not_equal(r.rc, CURLE_OK); /* the connection was closed under the call */
    uv_run(&f->loop, UV_RUN_DEFAULT);     /* the server finishes closing */
    assert_true(f->done);
    assert_int_equal(h.cancels, 1);
    assert_int_equal(h.cancel_reason, MCP_GRPC_UNAVAILABLE);
    assert_int_equal(access(f->sock, F_OK), -1); /* the socket file is gone */
    assert_int_equal(mcp_grpc_server_reply(h.call, (const uint8_t *)"", 0), -1);
}

/* Three messages, then OK trailers: HEADERS, DATA, trailers (not Trailers-Only). */
static void test_stream_then_finish(void **state)
{
    fixture *f = *state;
    hstate h = {.m = STREAM};
    start_unix(f, &h);
    client_req r = {.path = CHECK, .body = HC_REQ, .len = sizeof HC_REQ};
    call(f, &r);
    assert_int_equal(r.rc, CURLE_OK);
    static const uint8_t three[] = {
        0, 0, 0, 0, 2, 0x08, 1, /* status 1 */
        0, 0, 0, 0, 2, 0x08, 2, /* status 2 */
        0, 0, 0, 0, 2, 0x08, 3, /* status 3 */
    };
    assert_int_equal(r.resp_len, sizeof three);
    assert_memory_equal(r.resp, three, sizeof three);
    assert_non_null(strstr(r.headers, "grpc-status: 0"));
    assert_int_equal(h.cancels, 0);
}

/* A failure after messages carries its status in the trailers. */
static void test_stream_then_fail(void **state)
{
    fixture *f = *state;
    hstate h = {.m = STREAM_FAIL};
    start_unix(f, &h);
    client_req r = {.path = CHECK, .body = HC_REQ, .len = sizeof HC_REQ};
    call(f, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.resp_len, 21);
    assert_non_null(strstr(r.headers, "grpc-status: 5"));
    assert_non_null(strstr(r.headers, "grpc-message: gone"));
    /* the status came after the body: in trailers, not in the response headers */
    char *content_type = strstr(r.headers, "content-type: application/grpc");
    assert_non_null(content_type);
    assert_true(strstr(r.headers, "grpc-status: 5") > content_type);
}

/* Shutdown ends an open stream at once (not after the 5 s grace): the client
 * gets the message sent so far, the handler a cancel with UNAVAILABLE. */
static void test_shutdown_ends_open_streams(void **state)
{
    fixture *f = *state;
    hstate h = {.m = STREAM_OPEN};
    start_unix(f, &h);
    client_req r = {.path = CHECK, .body = HC_REQ, .len = sizeof HC_REQ, .timeout_ms = 4000};
    call(f, &r);
    assert_int_equal(r.rc, CURLE_OK);
    static const uint8_t one[] = {0, 0, 0, 0, 2, 0x08, 1};
    assert_int_equal(r.resp_len, sizeof one);
    assert_memory_equal(r.resp, one, sizeof one);
    /* UNAVAILABLE goes out in trailers before the GOAWAY, but curl 7.88 drops
     * what it has not yet reported once it sees the GOAWAY: grpcio sees it
     * (tests/integration/test_grpc_stream.py) */
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the server finishes closing */
    assert_true(f->done);
    assert_true(h.done_at - h.shutdown_at < 2000);
    assert_int_equal(h.cancels, 1);
    assert_int_equal(h.cancel_reason, MCP_GRPC_UNAVAILABLE);
    assert_int_equal(mcp_grpc_server_send(h.call, (const uint8_t *)"", 0), -1);
    assert_int_equal(mcp_grpc_server_finish(h.call), -1); /* frees the orphaned call */
}

/* ---- a slow reader: an nghttp2 client that opens its flow-control window by hand ---- */

typedef struct h2client {
    int fd;
    nghttp2_session *session;
    size_t received, consumed;
    bool closed;
    char status[8];
} h2client;

static ssize_t cl_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    ssize_t n = write(((h2client *)ud)->fd, data, len);
    if (n < 0)
        return errno == EAGAIN ? NGHTTP2_ERR_WOULDBLOCK : NGHTTP2_ERR_CALLBACK_FAILURE;
    return n;
}

static int cl_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d, size_t len,
                   void *ud)
{
    ((h2client *)ud)->received += len;
    return 0;
}

static int cl_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    h2client *c = ud;
    if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0 && valuelen < sizeof c->status) {
        memcpy(c->status, value, valuelen);
        c->status[valuelen] = '\0';
    }
    return 0;
}

static int cl_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
    ((h2client *)ud)->closed = true;
    return 0;
}

static ssize_t cl_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                       uint32_t *data_flags, nghttp2_data_source *src, void *ud)
{
    memcpy(buf, HC_REQ, sizeof HC_REQ);
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return sizeof HC_REQ;
}

static void cl_open(h2client *c, const char *sock, uint32_t window)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(sock) < sizeof sa.sun_path);
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(fcntl(c->fd, F_SETFL, O_NONBLOCK), 0);
    nghttp2_session_callbacks *cbs;
    assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
    nghttp2_session_callbacks_set_send_callback(cbs, cl_send);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cl_data);
    nghttp2_session_callbacks_set_on_header_callback(cbs, cl_header);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cl_close);
    nghttp2_option *opt;
    assert_int_equal(nghttp2_option_new(&opt), 0);
    nghttp2_option_set_no_auto_window_update(opt, 1); /* the window opens only by cl_consume */
    assert_int_equal(nghttp2_session_client_new2(&c->session, cbs, c, opt), 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, window}};
    assert_int_equal(nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 1), 0);
#define CNV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, 0}
    nghttp2_nv nv[] = {CNV(":method", "POST"),
                       CNV(":scheme", "http"),
                       CNV(":path", CHECK),
                       CNV(":authority", "localhost"),
                       CNV("content-type", "application/grpc"),
                       CNV("te", "trailers")};
#undef CNV
    nghttp2_data_provider body = {.read_callback = cl_body};
    assert_int_equal(nghttp2_submit_request(c->session, NULL, nv, 6, &body, NULL), 1);
}

/* One turn of the server's loop and of the client's I/O. */
static void cl_pump(fixture *f, h2client *c)
{
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(nghttp2_session_send(c->session), 0);
    uint8_t buf[16384];
    ssize_t n;
    while ((n = read(c->fd, buf, sizeof buf)) > 0)
        assert_int_equal(nghttp2_session_mem_recv(c->session, buf, (size_t)n), n);
    assert_int_equal(nghttp2_session_send(c->session), 0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    usleep(1000);
}

/* The client reads what came and opens its window by as much. */
static void cl_consume(h2client *c)
{
    size_t n = c->received - c->consumed;
    c->consumed = c->received;
    assert_int_equal(nghttp2_session_consume(c->session, 1, n), 0);
}

static void cl_free(h2client *c)
{
    nghttp2_session_del(c->session);
    close(c->fd);
}

#define BIG_MSG 10240
#define BIG_COUNT 20

typedef struct slow {
    hstate h;
    size_t unsent_after_sends, unsent_at_drain;
    int drains;
} slow;

static void on_slow_drain(mcp_grpc_server_call *c, void *ud)
{
    slow *sl = ud;
    sl->drains++;
    sl->unsent_at_drain = mcp_grpc_server_call_unsent(c);
}

static void slow_handler(mcp_grpc_server_call *c, const uint8_t *req, size_t len, void *ud)
{
    slow *sl = ud;
    sl->h.call = c;
    mcp_grpc_server_call_set_cancel(c, on_cancel, &sl->h);
    static uint8_t msg[BIG_MSG];
    for (int i = 0; i < BIG_COUNT; i++)
        assert_int_equal(mcp_grpc_server_send(c, msg, sizeof msg), 0);
    sl->unsent_after_sends = mcp_grpc_server_call_unsent(c);
    mcp_grpc_server_call_on_drain(c, 100000, on_slow_drain, sl);
}

/* Messages the client has no window for stay queued (unsent), and the drain
 * callback runs once the client has read enough for them to drop under the mark. */
static void test_slow_reader_drains_by_flow_control(void **state)
{
    fixture *f = *state;
    slow sl = {.h.f = f};
    mcp_error err;
    assert_int_equal(mcp_grpc_server_handle(f->server, CHECK, slow_handler, &sl, &err), 0);
    assert_int_equal(mcp_grpc_server_listen_unix(f->server, f->sock, &err), 0);
    h2client c;
    cl_open(&c, f->sock, 16384);
    for (int i = 0; i < 200 && c.received < 16384; i++)
        cl_pump(f, &c);
    assert_non_null(sl.h.call);
    size_t total = BIG_COUNT * (BIG_MSG + 5);
    assert_true(sl.unsent_after_sends > total - 65536); /* at most a window went at once */
    for (int i = 0; i < 50; i++)
        cl_pump(f, &c);
    assert_int_equal(c.received, 16384); /* no window, no more data */
    assert_int_equal(sl.drains, 0);
    int rounds = 0;
    while (sl.drains == 0 && rounds < 100) {
        cl_consume(&c);
        for (int i = 0; i < 20; i++)
            cl_pump(f, &c);
        rounds++;
    }
    assert_int_equal(sl.drains, 1);
    assert_true(rounds > 1); /* not at the first window update: only under the mark */
    assert_true(sl.unsent_at_drain <= 100000);
    assert_int_equal(mcp_grpc_server_finish(sl.h.call), 0);
    for (int i = 0; i < 2000 && !c.closed; i++) {
        cl_consume(&c);
        cl_pump(f, &c);
    }
    assert_true(c.closed);
    assert_int_equal(c.received, total);
    assert_string_equal(c.status, "0");
    assert_int_equal(sl.h.cancels, 0);
    cl_free(&c);
}

/* ---- connection limits and timeouts ---- */

/* Replaces the fixture's server (never listened yet) by one with opts. */
static void use_options(fixture *f, const mcp_grpc_server_options *opts)
{
    mcp_error err;
    mcp_grpc_server_free(f->server);
    f->server = mcp_grpc_server_new(&f->loop, opts, &err);
    assert_non_null(f->server);
}

static int raw_connect(int family, const char *path, int port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    int rc;
    if (family == AF_UNIX) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        memcpy(sa.sun_path, path, strlen(path) + 1);
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    } else {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    }
    assert_true(rc == 0 || errno == EINPROGRESS);
    return fd;
}

static void raw_send(int fd, const void *buf, size_t len)
{
    assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* True once the server closed fd (EOF or reset), reading whatever it sent. */
static bool raw_closed(int fd)
{
    uint8_t buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return true;
        if (n < 0)
            return false;
    }
}

/* Runs the loop for ms, reading (and dropping) what the server sends on fd. */
static void run_for(fixture *f, int ms, int fd)
{
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;
    while (uv_hrtime() < end) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        if (fd >= 0)
            (void)raw_closed(fd);
        usleep(2000);
    }
}

/* Runs the loop until the server closed fd or ms passed; the ms it took, or -1. */
static int64_t wait_closed(fixture *f, int fd, int ms)
{
    uint64_t start = uv_hrtime();
    while (uv_hrtime() - start < (uint64_t)ms * 1000000u) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        if (raw_closed(fd))
            return (int64_t)((uv_hrtime() - start) / 1000000u);
        usleep(2000);
    }
    return -1;
}

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
static const uint8_t EMPTY_SETTINGS[] = {0, 0, 0, 4, 0, 0, 0, 0, 0};

static void send_preface(int fd)
{
    raw_send(fd, PREFACE, sizeof PREFACE - 1);
    raw_send(fd, EMPTY_SETTINGS, sizeof EMPTY_SETTINGS);
}

/* 300 bare TCP connects and 256 that send the preface and go idle fill the TCP
 * listener's limits; the unix socket keeps its own pool and answers at once. */
static void test_tcp_flood_leaves_the_unix_socket(void **state)
{
    fixture *f = *state;
    hstate h = {.m = REPLY_LATER};
    start_unix(f, &h);
    mcp_error err;
    mcp_grpc_tls_options insecure = {.insecure = true};
    assert_int_equal(mcp_grpc_server_listen_tcp(f->server, "127.0.0.1:0", &insecure, &err), 0);
    int port = mcp_grpc_server_tcp_port(f->server);
    enum { BARE = 300, IDLE = 256 };
    static int fds[BARE + IDLE];
    for (int i = 0; i < BARE + IDLE; i++) {
        fds[i] = raw_connect(AF_INET, NULL, port);
        if (i >= BARE) {
            run_for(f, 0, -1);
            send(fds[i], PREFACE, sizeof PREFACE - 1, MSG_NOSIGNAL); /* refused ones: EPIPE */
            send(fds[i], EMPTY_SETTINGS, sizeof EMPTY_SETTINGS, MSG_NOSIGNAL);
        }
        if (i % 16 == 0)
            uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    run_for(f, 200, -1);
    /* everything came from 127.0.0.1: the per-peer limit holds it to 32 */
    assert_int_equal(mcp_grpc_server_connections(f->server), 32);
    uint64_t t0 = uv_hrtime();
    client_req r = {.path = CHECK, .body = HC_REQ, .len = sizeof HC_REQ, .timeout_ms = 2000};
    call(f, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_non_null(strstr(r.headers, "grpc-status: 0"));
    assert_true(uv_hrtime() - t0 < 2000000000u);
    for (int i = 0; i < BARE + IDLE; i++)
        close(fds[i]);
}

/* The unix socket has a pool of its own, capped too. */
static void test_unix_pool_is_capped(void **state)
{
    fixture *f = *state;
    mcp_grpc_server_options opts = {.max_unix_connections = 3};
    use_options(f, &opts);
    hstate h = {.m = REPLY_LATER};
    start_unix(f, &h);
    int fds[4];
    for (int i = 0; i < 4; i++)
        fds[i] = raw_connect(AF_UNIX, f->sock, 0);
    run_for(f, 100, -1);
    assert_int_equal(mcp_grpc_server_connections(f->server), 3);
    assert_int_equal(wait_closed(f, fds[3], 1000) >= 0, true);
    for (int i = 0; i < 4; i++)
        close(fds[i]);
}

/* A connection with no stream for idle_timeout_ms is closed with GOAWAY; one
 * whose call is open (a long streaming call) is not. */
static void test_idle_connection_is_closed(void **state)
{
    fixture *f = *state;
    mcp_grpc_server_options opts = {.idle_timeout_ms = 300};
    use_options(f, &opts);
    hstate h = {.m = NEVER};
    start_unix(f, &h);
    int fd = raw_connect(AF_UNIX, f->sock, 0);
    send_preface(fd);
    int64_t took = wait_closed(f, fd, 3000);
    assert_true(took >= 250 && took < 2000);
    close(fd);
    /* an open call keeps its connection past the idle timeout */
    h2client c;
    cl_open(&c, f->sock, 65535);
    for (int i = 0; i < 100 && !h.call; i++)
        cl_pump(f, &c);
    assert_non_null(h.call);
    run_for(f, 900, -1);
    for (int i = 0; i < 5; i++)
        cl_pump(f, &c);
    assert_false(c.closed);
    assert_int_equal(mcp_grpc_server_connections(f->server), 1);
    assert_int_equal(mcp_grpc_server_finish(h.call), 0);
    h.call = NULL;
    for (int i = 0; i < 200 && !c.closed; i++)
        cl_pump(f, &c);
    assert_true(c.closed);
    assert_string_equal(c.status, "0");
    /* and once it ended, the connection idles out in its turn */
    uint64_t t0 = uv_hrtime();
    while (mcp_grpc_server_connections(f->server) > 0 && uv_hrtime() - t0 < 3000000000u)
        cl_pump(f, &c);
    assert_int_equal(mcp_grpc_server_connections(f->server), 0);
    cl_free(&c);
}

/* HEADERS trickled at a byte per 100 ms: cut off header_timeout_ms after the
 * frame began, and by the idle timeout while not even its frame header is in. */
static void test_slow_headers_are_cut_off(void **state)
{
    fixture *f = *state;
    mcp_grpc_server_options opts = {.header_timeout_ms = 400, .idle_timeout_ms = 600};
    use_options(f, &opts);
    hstate h = {.m = NEVER};
    start_unix(f, &h);
    /* HEADERS, 64 bytes, END_HEADERS, stream 1; then indexed ":method GET"s */
    static const uint8_t hd[] = {0, 0, 64, 1, 4, 0, 0, 0, 1};
    for (int trickle_frame_header = 0; trickle_frame_header < 2; trickle_frame_header++) {
        int fd = raw_connect(AF_UNIX, f->sock, 0);
        send_preface(fd);
        run_for(f, 50, fd);
        if (!trickle_frame_header)
            raw_send(fd, hd, sizeof hd);
        uint64_t t0 = uv_hrtime();
        int64_t took = -1;
        for (size_t i = 0; i < 9 + 64 && took < 0; i++) {
            uint8_t b = trickle_frame_header && i < 9 ? hd[i] : 0x82;
            if (trickle_frame_header || i >= 9)
                if (send(fd, &b, 1, MSG_NOSIGNAL) != 1)
                    break;
            if (wait_closed(f, fd, 100) >= 0)
                took = (int64_t)((uv_hrtime() - t0) / 1000000u);
        }
        if (took < 0 && wait_closed(f, fd, 100) >= 0)
            took = (int64_t)((uv_hrtime() - t0) / 1000000u);
        int want = trickle_frame_header ? 600 : 400;
        assert_true(took >= want - 100 && took < want + 1000);
        assert_null(h.call);
        close(fd);
    }
    run_for(f, 50, -1);
    assert_int_equal(mcp_grpc_server_connections(f->server), 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_timeout),
        cmocka_unit_test(test_percent_encoding),
        cmocka_unit_test(test_loopback_and_status_names),
        cmocka_unit_test_setup_teardown(test_tcp_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_is_trailers_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_cancels_the_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone_cancels_the_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_from_a_handler_cancels_after_grace, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stream_then_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_then_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_ends_open_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_reader_drains_by_flow_control, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_flood_leaves_the_unix_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_pool_is_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_connection_is_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_headers_are_cut_off, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
