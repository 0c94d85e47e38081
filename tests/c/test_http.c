/* mcp_http and mcp_grpc_client against real servers: python http.server
 * (plain, TLS with client certificates, unix socket), python grpcio (h2c,
 * h2 over TLS, unix socket), and silent listeners that never answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mcp/grpc_client.h"
#include "mcp/http.h"

#include "../fixtures/peers/peer.h"

static struct {
    char dir[128];
    char cert[192], key[192], http_sock[192], grpc_sock[192];
    peer http, https, http_unix, grpc, grpc_tls, grpc_unix;
    int silent_fd, silent_port;
} G;

/* ---- fixtures ----------------------------------------------------------- */

static int group_teardown(void **state);

static int group_setup_peers(void **state)
{
    if (test_dir_make(G.dir, sizeof G.dir, "http") != 0)
        return -1;
    snprintf(G.cert, sizeof G.cert, "%s/cert.pem", G.dir);
    snprintf(G.key, sizeof G.key, "%s/key.pem", G.dir);
    snprintf(G.http_sock, sizeof G.http_sock, "%s/http.sock", G.dir);
    snprintf(G.grpc_sock, sizeof G.grpc_sock, "%s/grpc.sock", G.dir);
    if (make_self_signed(G.dir) != 0)
        return -1;
    char *http_py = PEER_DIR "/http_peer.py", *grpc_py = PEER_DIR "/grpc_peer.py";
    char *const a1[] = {PEER_PYTHON, http_py, NULL};
    char *const a2[] = {PEER_PYTHON, http_py, "--tls", G.cert, G.key, "--client-ca", G.cert, NULL};
    char *const a3[] = {PEER_PYTHON, http_py, "--unix", G.http_sock, NULL};
    char *const a4[] = {PEER_PYTHON, grpc_py, NULL};
    char *const a5[] = {PEER_PYTHON, grpc_py, "--tls", G.cert, G.key, NULL};
    char *const a6[] = {PEER_PYTHON, grpc_py, "--unix", G.grpc_sock, NULL};
    peer *all[] = {&G.http, &G.https, &G.http_unix, &G.grpc, &G.grpc_tls, &G.grpc_unix};
    char *const *argvs[] = {a1, a2, a3, a4, a5, a6};
    for (int i = 0; i < 6; i++) /* all start in parallel */
        if (peer_spawn(all[i], argvs[i]) != 0)
            return -1;
    for (int i = 0; i < 6; i++)
        if (peer_wait_ready(all[i]) != 0) {
            fprintf(stderr, "peer %d did not start\n", i);
            return -1;
        }
    G.silent_fd = silent_listener(&G.silent_port);
    return G.silent_fd >= 0 ? 0 : -1;
}

/* Kills whatever did start when a peer fails to. */
static int group_setup(void **state)
{
    G.silent_fd = -1;
    return setup_or_undo(group_setup_peers, group_teardown, state);
}

static int group_teardown(void **state)
{
    peer *all[] = {&G.http, &G.https, &G.http_unix, &G.grpc, &G.grpc_tls, &G.grpc_unix};
    for (int i = 0; i < 6; i++)
        peer_stop(all[i]);
    if (G.silent_fd >= 0)
        close(G.silent_fd);
    const char *files[] = {G.cert, G.key, G.http_sock, G.grpc_sock};
    for (int i = 0; i < 4; i++)
        unlink(files[i]);
    rmdir(G.dir);
    return 0;
}

/* One loop and one client per test; teardown proves everything closes. */
typedef http_loop ctx;

/* ---- http: capture a response ------------------------------------------- */

typedef struct got {
    int calls;
    mcp_http_response res; /* scalar copy */
    char *body;
    size_t body_len;
    char *error, *reason;
    char *x_test, *x_multi, *x_len, *x_method, *grpc_status_trailer, *grpc_status_header;
    char *x_trailer;
} got;

static char *dup_or_null(const char *s)
{
    return s ? mcp_strdup(s) : NULL;
}

static void on_http(const mcp_http_response *res, void *ud)
{
    got *g = ud;
    g->calls++;
    g->res = *res;
    g->body = mcp_strndup(res->body, res->body_len);
    g->body_len = res->body_len;
    g->error = mcp_strdup(res->error);
    g->reason = mcp_strdup(res->reason);
    g->x_test = dup_or_null(mcp_http_find_header(res, "x-test", MCP_HTTP_IN_ANY));
    g->x_multi = dup_or_null(mcp_http_find_header(res, "X-MULTI", MCP_HTTP_IN_HEADERS));
    g->x_len = dup_or_null(mcp_http_find_header(res, "x-len", MCP_HTTP_IN_ANY));
    g->x_method = dup_or_null(mcp_http_find_header(res, "x-method", MCP_HTTP_IN_ANY));
    g->grpc_status_trailer =
        dup_or_null(mcp_http_find_header(res, "grpc-status", MCP_HTTP_IN_TRAILERS));
    g->grpc_status_header =
        dup_or_null(mcp_http_find_header(res, "grpc-status", MCP_HTTP_IN_HEADERS));
    g->x_trailer = dup_or_null(mcp_http_find_header(res, "x-trailer", MCP_HTTP_IN_TRAILERS));
}

static void got_free(got *g)
{
    char *all[] = {g->body,
                   g->error,
                   g->reason,
                   g->x_test,
                   g->x_multi,
                   g->x_len,
                   g->x_method,
                   g->grpc_status_trailer,
                   g->grpc_status_header,
                   g->x_trailer};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    memset(g, 0, sizeof *g);
}

/* Starts rq, runs the loop until the callback (10 s at most). */
static void fetch(ctx *c, const mcp_http_request *rq, got *g)
{
    mcp_error err = {{0}};
    memset(g, 0, sizeof *g);
    mcp_http_req *r = mcp_http_start(c->http, rq, on_http, g, &err);
    if (!r)
        fail_msg("mcp_http_start: %s", err.msg);
    assert_int_equal(g->calls, 0); /* never from inside start */
    assert_true(run_until(&c->loop, &g->calls, 10000));
    assert_int_equal(g->calls, 1);
}

static char *url(const char *scheme, int port, const char *path)
{
    char *u = mcp_sprintf("%s://127.0.0.1:%d%s", scheme, port, path);
    assert_non_null(u);
    return u;
}

/* ---- http tests --------------------------------------------------------- */

static void test_get_status_body_headers(void **state)
{
    ctx *c = *state;
    char *u = url("http", G.http.port, "/hello");
    got g;
    fetch(c, &(mcp_http_request){.url = u}, &g);
    assert_string_equal(g.reason, "");
    assert_int_equal(g.res.curl_code, 0);
    assert_int_equal(g.res.status, 200);
    assert_int_equal(g.res.http_version, 1);
    assert_string_equal(g.body, "hello world");
    assert_string_equal(g.x_test, "yes");
    assert_string_equal(g.x_multi, "a"); /* the first of two, in order */
    assert_false(g.res.cancelled);
    assert_true(g.res.elapsed_s >= 0 && g.res.elapsed_s < 5);
    got_free(&g);
    free(u);
}

static void test_post_binary_body_round_trip(void **state)
{
    ctx *c = *state;
    char *u = url("http", G.http.port, "/echo");
    uint8_t body[300];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (uint8_t)(i * 7); /* includes NUL bytes */
    const char *headers[] = {"X-Custom: 1", NULL};
    got g;
    fetch(c,
          &(mcp_http_request){.method = "POST",
                              .url = u,
                              .body = body,
                              .body_len = sizeof body,
                              .headers = headers,
                              .version = MCP_HTTP_1_1},
          &g);
    assert_int_equal(g.res.status, 200);
    assert_int_equal(g.body_len, sizeof body);
    assert_memory_equal(g.body, body, sizeof body);
    assert_string_equal(g.x_len, "300");
    assert_string_equal(g.x_method, "POST");
    got_free(&g);

    /* PUT with a body, and the default method for a body is POST */
    fetch(c, &(mcp_http_request){.method = "PUT", .url = u, .body = "abc", .body_len = 3}, &g);
    assert_string_equal(g.x_method, "PUT");
    assert_string_equal(g.body, "abc");
    got_free(&g);
    fetch(c, &(mcp_http_request){.url = u, .body = "z", .body_len = 1}, &g);
    assert_string_equal(g.x_method, "POST");
    got_free(&g);
    free(u);
}

static void test_binary_response_and_request_headers(void **state)
{
    ctx *c = *state;
    char *u = url("http", G.http.port, "/binary");
    got g;
    fetch(c, &(mcp_http_request){.url = u}, &g);
    assert_int_equal(g.body_len, 256);
    for (int i = 0; i < 256; i++)
        assert_int_equal((uint8_t)g.body[i], i);
    got_free(&g);
    free(u);

    u = url("http", G.http.port, "/header/X-Probe");
    const char *headers[] = {"X-Probe: hello there", NULL};
    fetch(c, &(mcp_http_request){.url = u, .headers = headers}, &g);
    assert_string_equal(g.body, "hello there");
    got_free(&g);
    free(u);
}

static void test_http_error_status_is_a_completed_transfer(void **state)
{
    ctx *c = *state;
    char *u = url("http", G.http.port, "/status/503");
    got g;
    fetch(c, &(mcp_http_request){.url = u}, &g);
    assert_int_equal(g.res.status, 503);
    assert_string_equal(g.reason, "");
    assert_string_equal(g.body, "status body");
    got_free(&g);
    free(u);
}

static void test_https_with_ca_and_client_cert(void **state)
{
    ctx *c = *state;
    char *u = mcp_sprintf("https://localhost:%d/hello", G.https.port);
    got g;
    fetch(c,
          &(mcp_http_request){.url = u, .ca_file = G.cert, .cert_file = G.cert, .key_file = G.key},
          &g);
    assert_string_equal(g.reason, "");
    assert_int_equal(g.res.status, 200);
    assert_string_equal(g.body, "hello world");
    got_free(&g);

    /* the server's certificate is not trusted without our CA */
    fetch(c, &(mcp_http_request){.url = u, .cert_file = G.cert, .key_file = G.key}, &g);
    assert_int_equal(g.res.status, 0);
    assert_true(strncmp(g.reason, "tls: ", 5) == 0);
    got_free(&g);

    /* the server requires a client certificate */
    fetch(c, &(mcp_http_request){.url = u, .ca_file = G.cert}, &g);
    assert_int_equal(g.res.status, 0);
    assert_string_not_equal(g.reason, "");
    got_free(&g);

    /* HTTP/2 required, but this server only speaks HTTP/1.1 */
    fetch(c,
          &(mcp_http_request){.url = u,
                              .ca_file = G.cert,
                              .cert_file = G.cert,
                              .key_file = G.key,
                              .version = MCP_HTTP_2},
          &g);
    assert_string_equal(g.reason, "not http/2");
    assert_int_equal(g.res.http_version, 1);
    got_free(&g);
    free(u);
}

static void test_unix_socket(void **state)
{
    ctx *c = *state;
    got g;
    fetch(c, &(mcp_http_request){.url = "http://localhost/hello", .unix_socket = G.http_sock}, &g);
    assert_int_equal(g.res.status, 200);
    assert_string_equal(g.body, "hello world");
    got_free(&g);

    char *missing = mcp_sprintf("%s/nothing.sock", G.dir);
    fetch(c, &(mcp_http_request){.url = "http://localhost/hello", .unix_socket = missing}, &g);
    assert_string_equal(g.reason, "refused");
    got_free(&g);
    free(missing);
}

static void test_response_cap(void **state)
{
    ctx *c = *state;
    char *u = url("http", G.http.port, "/big?n=100000");
    got g;
    fetch(c, &(mcp_http_request){.url = u, .max_response = 1000}, &g);
    assert_true(g.res.too_large);
    assert_string_equal(g.reason, "too large");
    assert_true(g.body_len <= 1000);
    got_free(&g);
    fetch(c, &(mcp_http_request){.url = u, .max_response = 100000}, &g);
    assert_false(g.res.too_large);
    assert_int_equal(g.body_len, 100000);
    got_free(&g);
    free(u);
}

static void test_timeout_against_silent_server(void **state)
{
    ctx *c = *state;
    char *u = url("http", G.silent_port, "/");
    got g;
    int64_t t0 = mcp_now_ms();
    fetch(c, &(mcp_http_request){.url = u, .timeout_ms = 300}, &g);
    int64_t took = mcp_now_ms() - t0;
    assert_true(g.res.timed_out);
    assert_string_equal(g.reason, "timeout");
    assert_true(took >= 250 && took < 1500);
    got_free(&g);
    free(u);
}

static void test_refused(void **state)
{
    ctx *c = *state;
    char *u = url("http", closed_port(), "/");
    got g;
    fetch(c, &(mcp_http_request){.url = u, .timeout_ms = 2000}, &g);
    assert_string_equal(g.reason, "refused");
    assert_int_equal(g.res.status, 0);
    assert_string_not_equal(g.error, "");
    got_free(&g);
    free(u);
}

static void test_cancel_calls_back_once(void **state)
{
    ctx *c = *state;
    char *u = url("http", G.silent_port, "/");
    mcp_error err = {{0}};
    got g = {0};
    mcp_http_req *r = mcp_http_start(c->http, &(mcp_http_request){.url = u, .timeout_ms = 5000},
                                     on_http, &g, &err);
    assert_non_null(r);
    uv_run(&c->loop, UV_RUN_NOWAIT); /* let it connect */
    mcp_http_cancel(r);
    assert_int_equal(g.calls, 0); /* not from inside cancel */
    int64_t t0 = mcp_now_ms();
    assert_true(run_until(&c->loop, &g.calls, 2000));
    assert_true(mcp_now_ms() - t0 < 500);
    assert_true(g.res.cancelled);
    assert_string_equal(g.reason, "cancelled");
    /* nothing more comes */
    for (int i = 0; i < 20; i++)
        uv_run(&c->loop, UV_RUN_NOWAIT);
    assert_int_equal(g.calls, 1);
    got_free(&g);
    free(u);
}

static void test_destroy_with_requests_in_flight(void **state)
{
    ctx *c = *state;
    char *u = url("http", G.silent_port, "/");
    char *ok = url("http", G.http.port, "/hello");
    mcp_error err = {{0}};
    got g[4] = {0};
    for (int i = 0; i < 4; i++)
        assert_non_null(
            mcp_http_start(c->http, &(mcp_http_request){.url = i == 3 ? ok : u, .timeout_ms = 5000},
                           on_http, &g[i], &err));
    for (int i = 0; i < 5; i++)
        uv_run(&c->loop, UV_RUN_NOWAIT);
    mcp_http_destroy(c->http);
    /* a destroyed client refuses new work */
    got extra = {0};
    assert_null(mcp_http_start(c->http, &(mcp_http_request){.url = ok}, on_http, &extra, &err));
    uv_run(&c->loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(g[i].calls, 1);
        assert_true(g[i].res.cancelled);
    }
    assert_int_equal(g[3].calls, 1);
    for (int i = 0; i < 4; i++)
        got_free(&g[i]);
    assert_int_equal(uv_loop_close(&c->loop), 0);
    /* teardown must not destroy again: give it a fresh client */
    assert_int_equal(uv_loop_init(&c->loop), 0);
    c->http = mcp_http_new(&c->loop, &err);
    assert_non_null(c->http);
    free(u);
    free(ok);
}

static void test_bad_requests_are_refused(void **state)
{
    ctx *c = *state;
    mcp_error err = {{0}};
    got g = {0};
    assert_null(mcp_http_start(c->http, &(mcp_http_request){.url = "ftp://x/"}, on_http, &g, &err));
    assert_non_null(strstr(err.msg, "ftp://x/"));
    assert_null(mcp_http_start(c->http, &(mcp_http_request){.url = NULL}, on_http, &g, &err));
    assert_non_null(strstr(err.msg, "URL"));
    const char *bad_headers[] = {"NoColonHere", NULL};
    assert_null(mcp_http_start(
        c->http, &(mcp_http_request){.url = "http://127.0.0.1:1/", .headers = bad_headers}, on_http,
        &g, &err));
    assert_non_null(strstr(err.msg, "NoColonHere"));
    const char *crlf[] = {"X-A: 1\r\nX-B: 2", NULL};
    assert_null(mcp_http_start(c->http,
                               &(mcp_http_request){.url = "http://127.0.0.1:1/", .headers = crlf},
                               on_http, &g, &err));
    assert_null(mcp_http_start(c->http,
                               &(mcp_http_request){.url = "http://127.0.0.1:1/", .method = "g et"},
                               on_http, &g, &err));
    assert_non_null(strstr(err.msg, "method"));
    uv_run(&c->loop, UV_RUN_NOWAIT);
    assert_int_equal(g.calls, 0);
}

/* ---- http/2 at the http level: trailers --------------------------------- */

static void test_h2_trailers_and_trailers_only(void **state)
{
    ctx *c = *state;
    const char *headers[] = {"content-type: application/grpc", "te: trailers", NULL};
    const uint8_t msg[] = {0, 0, 0, 0, 3, 'a', 'b', 'c'};
    char *u = url("http", G.grpc.port, "/test.Echo/Echo");
    got g;
    fetch(c,
          &(mcp_http_request){.method = "POST",
                              .url = u,
                              .headers = headers,
                              .body = msg,
                              .body_len = sizeof msg,
                              .version = MCP_HTTP_2},
          &g);
    assert_string_equal(g.reason, "");
    assert_int_equal(g.res.http_version, 2);
    assert_int_equal(g.res.status, 200);
    assert_int_equal(g.body_len, sizeof msg);
    assert_memory_equal(g.body, msg, sizeof msg);
    assert_string_equal(g.grpc_status_trailer, "0");
    assert_null(g.grpc_status_header);
    assert_string_equal(g.x_trailer, "t1");
    got_free(&g);
    free(u);

    /* an error before any message: Trailers-Only, grpc-status among the headers */
    u = url("http", G.grpc.port, "/test.Echo/Fail");
    fetch(c,
          &(mcp_http_request){.method = "POST",
                              .url = u,
                              .headers = headers,
                              .body = msg,
                              .body_len = sizeof msg,
                              .version = MCP_HTTP_2},
          &g);
    assert_string_equal(g.grpc_status_header, "3");
    assert_null(g.grpc_status_trailer);
    got_free(&g);
    free(u);
}

/* ---- grpc client -------------------------------------------------------- */

typedef struct grpc_got {
    int calls;
    mcp_grpc_result res;
    char *data, *message, *reason;
    size_t data_len;
} grpc_got;

static void on_grpc(const mcp_grpc_result *res, void *ud)
{
    grpc_got *g = ud;
    g->calls++;
    g->res = *res;
    g->data =
        mcp_strndup((const char *)(res->data ? res->data : (const uint8_t *)""), res->data_len);
    g->data_len = res->data_len;
    g->message = mcp_strdup(res->message);
    g->reason = mcp_strdup(res->reason);
}

static void grpc_got_free(grpc_got *g)
{
    free(g->data);
    free(g->message);
    free(g->reason);
    memset(g, 0, sizeof *g);
}

static void call(ctx *c, mcp_grpc_request *rq, grpc_got *g)
{
    mcp_error err = {{0}};
    memset(g, 0, sizeof *g);
    if (!mcp_grpc_client_call(c->http, rq, on_grpc, g, &err))
        fail_msg("mcp_grpc_client_call: %s", err.msg);
    assert_int_equal(g->calls, 0);
    assert_true(run_until(&c->loop, &g->calls, 10000));
}

static void test_grpc_echo_tcp_unix_tls(void **state)
{
    ctx *c = *state;
    char target[64], tls_target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", G.grpc.port);
    snprintf(tls_target, sizeof tls_target, "localhost:%d", G.grpc_tls.port);
    const char payload[] = "hello\0grpc";
    mcp_grpc_request base = {
        .method = "/test.Echo/Echo", .msg = payload, .msg_len = sizeof payload - 1};
    mcp_grpc_request variants[3] = {base, base, base};
    variants[0].target = target;
    variants[1].unix_socket = G.grpc_sock;
    variants[2].target = tls_target;
    variants[2].tls = true;
    variants[2].ca_file = G.cert;
    for (int i = 0; i < 3; i++) {
        grpc_got g;
        call(c, &variants[i], &g);
        assert_string_equal(g.reason, "");
        assert_int_equal(g.res.status, 0);
        assert_int_equal(g.res.http_status, 200);
        assert_int_equal(g.data_len, sizeof payload - 1);
        assert_memory_equal(g.data, payload, sizeof payload - 1);
        grpc_got_free(&g);
    }
    /* an empty message works too */
    mcp_grpc_request empty = {.target = target, .method = "/test.Echo/Echo"};
    grpc_got g;
    call(c, &empty, &g);
    assert_int_equal(g.res.status, 0);
    assert_int_equal(g.data_len, 0);
    grpc_got_free(&g);
}

static void test_grpc_error_status_and_message(void **state)
{
    ctx *c = *state;
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", G.grpc.port);
    grpc_got g;
    call(c, &(mcp_grpc_request){.target = target, .method = "/test.Echo/Fail"}, &g);
    assert_int_equal(g.res.status, 3); /* INVALID_ARGUMENT */
    assert_string_equal(g.message, "bad: 100% sure, ünï");
    assert_string_equal(g.reason, "");
    assert_int_equal(g.data_len, 0);
    grpc_got_free(&g);

    call(c, &(mcp_grpc_request){.target = target, .method = "/test.Echo/NoSuchMethod"}, &g);
    assert_int_equal(g.res.status, MCP_GRPC_UNIMPLEMENTED);
    grpc_got_free(&g);
}

static void test_grpc_deadline(void **state)
{
    ctx *c = *state;
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", G.grpc.port);
    grpc_got g;
    int64_t t0 = mcp_now_ms();
    call(c, &(mcp_grpc_request){.target = target, .method = "/test.Echo/Hang", .timeout_ms = 300},
         &g);
    int64_t took = mcp_now_ms() - t0;
    /* the server's DEADLINE_EXCEEDED or our own timeout, whichever is first */
    assert_int_equal(g.res.status, MCP_GRPC_DEADLINE_EXCEEDED);
    assert_true(took >= 250 && took < 1500);
    grpc_got_free(&g);

    /* a server that never answers at all */
    snprintf(target, sizeof target, "127.0.0.1:%d", G.silent_port);
    t0 = mcp_now_ms();
    call(c, &(mcp_grpc_request){.target = target, .method = "/test.Echo/Echo", .timeout_ms = 300},
         &g);
    took = mcp_now_ms() - t0;
    assert_int_equal(g.res.status, MCP_GRPC_DEADLINE_EXCEEDED);
    assert_string_equal(g.reason, "timeout");
    assert_true(took >= 250 && took < 1500);
    grpc_got_free(&g);
}

static void test_grpc_size_cap_and_transport_failures(void **state)
{
    ctx *c = *state;
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", G.grpc.port);
    grpc_got g;
    call(c,
         &(mcp_grpc_request){.target = target,
                             .method = "/test.Echo/Big",
                             .msg = "5000",
                             .msg_len = 4,
                             .max_msg = 1000},
         &g);
    assert_int_equal(g.res.status, MCP_GRPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(g.reason, "1000"));
    grpc_got_free(&g);
    call(c,
         &(mcp_grpc_request){.target = target,
                             .method = "/test.Echo/Big",
                             .msg = "1000",
                             .msg_len = 4,
                             .max_msg = 1000},
         &g);
    assert_int_equal(g.res.status, 0);
    assert_int_equal(g.data_len, 1000);
    grpc_got_free(&g);

    snprintf(target, sizeof target, "127.0.0.1:%d", closed_port());
    call(c, &(mcp_grpc_request){.target = target, .method = "/test.Echo/Echo"}, &g);
    assert_int_equal(g.res.status, MCP_GRPC_UNAVAILABLE);
    assert_string_equal(g.reason, "refused");
    grpc_got_free(&g);

    /* an HTTP/1.1 server: no HTTP/2, no grpc-status */
    snprintf(target, sizeof target, "127.0.0.1:%d", G.http.port);
    call(c, &(mcp_grpc_request){.target = target, .method = "/test.Echo/Echo"}, &g);
    assert_int_not_equal(g.res.status, 0);
    assert_string_not_equal(g.reason, "");
    grpc_got_free(&g);

    /* TLS without trusting the server */
    snprintf(target, sizeof target, "localhost:%d", G.grpc_tls.port);
    call(c, &(mcp_grpc_request){.target = target, .tls = true, .method = "/test.Echo/Echo"}, &g);
    assert_int_equal(g.res.status, MCP_GRPC_UNAVAILABLE);
    assert_true(strncmp(g.reason, "tls: ", 5) == 0);
    grpc_got_free(&g);
}

static void test_grpc_cancel(void **state)
{
    ctx *c = *state;
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", G.grpc.port);
    mcp_error err = {{0}};
    grpc_got g = {0};
    mcp_grpc_call *k = mcp_grpc_client_call(
        c->http, &(mcp_grpc_request){.target = target, .method = "/test.Echo/Hang"}, on_grpc, &g,
        &err);
    assert_non_null(k);
    for (int i = 0; i < 10; i++)
        uv_run(&c->loop, UV_RUN_NOWAIT);
    mcp_grpc_client_cancel(k);
    assert_int_equal(g.calls, 0);
    assert_true(run_until(&c->loop, &g.calls, 2000));
    assert_true(g.res.cancelled);
    assert_int_equal(g.res.status, MCP_GRPC_CANCELLED);
    grpc_got_free(&g);
}

/* ---- grpc server streams ------------------------------------------------ */

typedef struct stream_got {
    int messages, ends;
    bool in_order;
    size_t total_bytes, want_size;
    int stop_at; /* > 0: the receiver stops at this message */
    grpc_got end;
} stream_got;

static int on_stream_msg(const uint8_t *msg, size_t len, void *ud)
{
    stream_got *g = ud;
    char head[16];
    int n = snprintf(head, sizeof head, "%d:", g->messages);
    if (len != g->want_size || (len >= (size_t)n && memcmp(msg, head, (size_t)n) != 0))
        g->in_order = false;
    g->messages++;
    g->total_bytes += len;
    return g->stop_at > 0 && g->messages == g->stop_at ? MCP_GRPC_ABORTED : 0;
}

static void on_stream_end(const mcp_grpc_result *res, void *ud)
{
    stream_got *g = ud;
    g->ends++;
    assert_null(res->data);
    on_grpc(res, &g->end);
}

static mcp_grpc_stream *stream_start(ctx *c, mcp_grpc_request *rq, stream_got *g)
{
    mcp_error err = {{0}};
    g->in_order = true;
    mcp_grpc_stream *s =
        mcp_grpc_client_stream(c->http, rq, 5000, on_stream_msg, on_stream_end, g, &err);
    if (!s)
        fail_msg("mcp_grpc_client_stream: %s", err.msg);
    assert_int_equal(g->ends, 0); /* never from inside start */
    return s;
}

/* Many small messages (several per DATA frame) and large ones (each split
 * over DATA frames and read callbacks) arrive whole and in order, over TCP
 * and a unix socket; the end comes once, with the trailers' status. */
static void test_grpc_stream_messages_in_order(void **state)
{
    ctx *c = *state;
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", G.grpc.port);
    const struct {
        const char *req;
        int n;
        size_t size;
    } cases[] = {{"300 3", 300, 3}, {"20 70000", 20, 70000}, {"5 0", 5, 0}, {"0 1", 0, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int unix_sock = 0; unix_sock < 2; unix_sock++) {
            stream_got g = {.want_size = cases[i].size};
            mcp_grpc_request rq = {.method = "/test.Echo/Stream",
                                   .msg = cases[i].req,
                                   .msg_len = strlen(cases[i].req)};
            if (unix_sock)
                rq.unix_socket = G.grpc_sock;
            else
                rq.target = target;
            stream_start(c, &rq, &g);
            assert_true(run_until(&c->loop, &g.ends, 10000));
            assert_int_equal(g.ends, 1);
            assert_string_equal(g.end.reason, "");
            assert_int_equal(g.end.res.status, MCP_GRPC_OK);
            assert_int_equal(g.messages, cases[i].n);
            assert_true(g.in_order);
            assert_int_equal(g.total_bytes, (size_t)cases[i].n * cases[i].size);
            grpc_got_free(&g.end);
        }
    }
}

/* An error after some messages comes in the trailers; an error before any is
 * Trailers-Only; a unary method is a stream of one message. */
static void test_grpc_stream_error_status(void **state)
{
    ctx *c = *state;
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", G.grpc.port);
    const char *reqs[] = {"3 10 9", "0 10 7"};
    const int want_msgs[] = {3, 0},
              want_status[] = {MCP_GRPC_FAILED_PRECONDITION, MCP_GRPC_PERMISSION_DENIED};
    for (int i = 0; i < 2; i++) {
        stream_got g = {.want_size = 10};
        mcp_grpc_request rq = {
            .target = target, .method = "/test.Echo/Stream", .msg = reqs[i], .msg_len = 6};
        stream_start(c, &rq, &g);
        assert_true(run_until(&c->loop, &g.ends, 10000));
        assert_int_equal(g.messages, want_msgs[i]);
        assert_int_equal(g.end.res.status, want_status[i]);
        assert_string_equal(g.end.message, "stream failed");
        assert_string_equal(g.end.reason, "");
        grpc_got_free(&g.end);
    }
    stream_got g = {.want_size = 4};
    mcp_grpc_request rq = {
        .target = target, .method = "/test.Echo/Echo", .msg = "0:ab", .msg_len = 4};
    stream_start(c, &rq, &g);
    assert_true(run_until(&c->loop, &g.ends, 10000));
    assert_int_equal(g.messages, 1);
    assert_true(g.in_order);
    assert_int_equal(g.end.res.status, MCP_GRPC_OK);
    grpc_got_free(&g.end);
}

/* A message over max_msg ends the stream RESOURCE_EXHAUSTED before it is
 * kept; a receiver that says stop ends it with its status; nothing more
 * arrives after either. */
static void test_grpc_stream_cap_and_receiver_stop(void **state)
{
    ctx *c = *state;
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", G.grpc.port);
    stream_got g = {.want_size = 5000};
    mcp_grpc_request rq = {.target = target,
                           .method = "/test.Echo/Stream",
                           .msg = "2 5000",
                           .msg_len = 6,
                           .max_msg = 4999};
    stream_start(c, &rq, &g);
    assert_true(run_until(&c->loop, &g.ends, 10000));
    assert_int_equal(g.messages, 0);
    assert_int_equal(g.end.res.status, MCP_GRPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(g.end.reason, "exceeds"));
    grpc_got_free(&g.end);

    stream_got h = {.want_size = 100, .stop_at = 3};
    rq = (mcp_grpc_request){
        .target = target, .method = "/test.Echo/Stream", .msg = "50 100", .msg_len = 6};
    stream_start(c, &rq, &h);
    assert_true(run_until(&c->loop, &h.ends, 10000));
    assert_int_equal(h.messages, 3);
    assert_int_equal(h.end.res.status, MCP_GRPC_ABORTED);
    grpc_got_free(&h.end);
}

/* A stream without deadline outlives the http default: it is still open
 * after its first message until cancelled, and the cancel ends it once, on
 * a later loop turn. With a deadline it ends DEADLINE_EXCEEDED. A peer that
 * is not there ends it UNAVAILABLE. */
static void test_grpc_stream_cancel_deadline_refused(void **state)
{
    ctx *c = *state;
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", G.grpc.port);
    stream_got g = {.want_size = 5};
    mcp_grpc_request rq = {.target = target, .method = "/test.Echo/StreamHang"};
    mcp_grpc_stream *s = stream_start(c, &rq, &g);
    assert_true(run_until(&c->loop, &g.messages, 10000));
    uint64_t until = uv_now(&c->loop) + 300;
    while (uv_now(&c->loop) < until && g.ends == 0)
        uv_run(&c->loop, UV_RUN_ONCE);
    assert_int_equal(g.ends, 0);
    mcp_grpc_client_stream_cancel(s);
    assert_int_equal(g.ends, 0);
    assert_true(run_until(&c->loop, &g.ends, 2000));
    assert_int_equal(g.ends, 1);
    assert_true(g.end.res.cancelled);
    assert_int_equal(g.end.res.status, MCP_GRPC_CANCELLED);
    grpc_got_free(&g.end);

    stream_got d = {.want_size = 5};
    rq.timeout_ms = 300;
    stream_start(c, &rq, &d);
    assert_true(run_until(&c->loop, &d.ends, 10000));
    assert_int_equal(d.messages, 1);
    assert_int_equal(d.end.res.status, MCP_GRPC_DEADLINE_EXCEEDED);
    grpc_got_free(&d.end);

    char missing[256];
    snprintf(missing, sizeof missing, "%s/nobody.sock", G.dir);
    stream_got r = {0};
    rq = (mcp_grpc_request){.unix_socket = missing, .method = "/test.Echo/Stream"};
    stream_start(c, &rq, &r);
    assert_true(run_until(&c->loop, &r.ends, 10000));
    assert_int_equal(r.end.res.status, MCP_GRPC_UNAVAILABLE);
    assert_int_equal(r.messages, 0);
    grpc_got_free(&r.end);
}

/* Destroying the client with a stream open ends it once, cancelled. */
static void test_grpc_stream_destroy_in_flight(void **state)
{
    ctx *c = *state;
    stream_got g = {.want_size = 5};
    mcp_grpc_request rq = {.unix_socket = G.grpc_sock, .method = "/test.Echo/StreamHang"};
    stream_start(c, &rq, &g);
    assert_true(run_until(&c->loop, &g.messages, 10000));
    mcp_http_destroy(c->http);
    c->http = NULL;
    assert_int_equal(g.ends, 0);
    assert_true(run_until(&c->loop, &g.ends, 2000));
    assert_true(g.end.res.cancelled);
    grpc_got_free(&g.end);
}

#define CONCURRENT 200

static void concurrent_calls(ctx *c, mcp_grpc_request *rq)
{
    static grpc_got g[CONCURRENT];
    static char payload[CONCURRENT][16];
    mcp_error err = {{0}};
    memset(g, 0, sizeof g);
    for (int i = 0; i < CONCURRENT; i++) {
        snprintf(payload[i], sizeof payload[i], "call-%d", i);
        rq->msg = payload[i];
        rq->msg_len = strlen(payload[i]);
        if (!mcp_grpc_client_call(c->http, rq, on_grpc, &g[i], &err))
            fail_msg("call %d: %s", i, err.msg);
    }
    int64_t deadline = mcp_now_ms() + 20000;
    int done = 0;
    while (done < CONCURRENT && mcp_now_ms() < deadline) {
        uv_run(&c->loop, UV_RUN_NOWAIT);
        done = 0;
        for (int i = 0; i < CONCURRENT; i++)
            done += g[i].calls;
        if (done < CONCURRENT)
            usleep(500);
    }
    int ok = 0;
    for (int i = 0; i < CONCURRENT; i++) {
        assert_int_equal(g[i].calls, 1);
        if (g[i].res.status == 0 && strcmp(g[i].data, payload[i]) == 0)
            ok++;
        else
            fprintf(stderr, "call %d: status %d reason %s\n", i, g[i].res.status, g[i].reason);
        grpc_got_free(&g[i]);
    }
    assert_int_equal(ok, CONCURRENT);
}

static void test_grpc_200_concurrent_cleartext_h2(void **state)
{
    ctx *c = *state;
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", G.grpc.port);
    mcp_grpc_request rq = {.target = target, .method = "/test.Echo/Echo", .timeout_ms = 15000};
    concurrent_calls(c, &rq);
    mcp_grpc_request urq = {
        .unix_socket = G.grpc_sock, .method = "/test.Echo/Echo", .timeout_ms = 15000};
    concurrent_calls(c, &urq);
}

static void test_grpc_bad_requests(void **state)
{
    ctx *c = *state;
    mcp_error err = {{0}};
    grpc_got g = {0};
    assert_null(mcp_grpc_client_call(
        c->http, &(mcp_grpc_request){.target = "127.0.0.1:1", .method = "NoSlash"}, on_grpc, &g,
        &err));
    assert_non_null(strstr(err.msg, "NoSlash"));
    assert_null(
        mcp_grpc_client_call(c->http, &(mcp_grpc_request){.method = "/a.B/C"}, on_grpc, &g, &err));
    assert_non_null(strstr(err.msg, "target"));
    char long_path[200];
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[sizeof long_path - 1] = '\0';
    assert_null(mcp_grpc_client_call(
        c->http, &(mcp_grpc_request){.unix_socket = long_path, .method = "/a.B/C"}, on_grpc, &g,
        &err));
    assert_non_null(strstr(err.msg, "107"));
    assert_int_equal(g.calls, 0);
}

/* ---- pure helpers ------------------------------------------------------- */

static void test_grpc_helpers(void **state)
{
    char *d = mcp_grpc_percent_decode("a%20b%25c%zz%4");
    assert_string_equal(d, "a b%c%zz%4");
    free(d);

    uint8_t *f = mcp_grpc_frame("\x01\x02", 2);
    const uint8_t want[] = {0, 0, 0, 0, 2, 1, 2};
    assert_memory_equal(f, want, sizeof want);
    const uint8_t *msg;
    size_t len;
    mcp_error err = {{0}};
    assert_int_equal(mcp_grpc_unframe(f, 7, 100, &msg, &len, &err), 0);
    assert_int_equal(len, 2);
    assert_ptr_equal(msg, f + 5);
    assert_int_equal(mcp_grpc_unframe(f, 6, 100, &msg, &len, &err), -1); /* truncated */
    assert_non_null(strstr(err.msg, "truncated"));
    assert_int_equal(mcp_grpc_unframe(f, 3, 100, &msg, &len, &err), -1);
    assert_int_equal(mcp_grpc_unframe(f, 7, 1, &msg, &len, &err), -1); /* over the cap */
    assert_non_null(strstr(err.msg, "cap"));
    free(f);
    const uint8_t trailing[] = {0, 0, 0, 0, 1, 9, 9};
    assert_int_equal(mcp_grpc_unframe(trailing, 7, 100, &msg, &len, &err), -1);
    const uint8_t compressed[] = {1, 0, 0, 0, 1, 9};
    assert_int_equal(mcp_grpc_unframe(compressed, 6, 100, &msg, &len, &err), -1);
    assert_non_null(strstr(err.msg, "compressed"));
    /* a huge length prefix is refused before anything else */
    const uint8_t huge[] = {0, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(mcp_grpc_unframe(huge, 5, 4 << 20, &msg, &len, &err), -1);
    assert_non_null(strstr(err.msg, "cap"));

    char buf[32];
    mcp_grpc_timeout_header(500, buf, sizeof buf);
    assert_string_equal(buf, "500m");
    mcp_grpc_timeout_header(0, buf, sizeof buf);
    assert_string_equal(buf, "1m");
    mcp_grpc_timeout_header(200000000, buf, sizeof buf);
    assert_string_equal(buf, "200000S");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        http_loop_test(test_get_status_body_headers),
        http_loop_test(test_post_binary_body_round_trip),
        http_loop_test(test_binary_response_and_request_headers),
        http_loop_test(test_http_error_status_is_a_completed_transfer),
        http_loop_test(test_https_with_ca_and_client_cert),
        http_loop_test(test_unix_socket),
        http_loop_test(test_response_cap),
        http_loop_test(test_timeout_against_silent_server),
        http_loop_test(test_refused),
        http_loop_test(test_cancel_calls_back_once),
        http_loop_test(test_destroy_with_requests_in_flight),
        http_loop_test(test_bad_requests_are_refused),
        http_loop_test(test_h2_trailers_and_trailers_only),
        http_loop_test(test_grpc_echo_tcp_unix_tls),
        http_loop_test(test_grpc_error_status_and_message),
        http_loop_test(test_grpc_deadline),
        http_loop_test(test_grpc_size_cap_and_transport_failures),
        http_loop_test(test_grpc_cancel),
        http_loop_test(test_grpc_stream_messages_in_order),
        http_loop_test(test_grpc_stream_error_status),
        http_loop_test(test_grpc_stream_cap_and_receiver_stop),
        http_loop_test(test_grpc_stream_cancel_deadline_refused),
        http_loop_test(test_grpc_stream_destroy_in_flight),
        http_loop_test(test_grpc_200_concurrent_cleartext_h2),
        http_loop_test(test_grpc_bad_requests),
        cmocka_unit_test(test_grpc_helpers),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
