/* Health probes against real servers: an in-process uv_tcp listener, a
 * silent listener that accepts (kernel backlog) and never answers, busybox
 * httpd, and a python grpcio server with the standard Health service. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mcp/probe.h"

#include "../fixtures/peers/peer.h"

static struct {
    char dir[128];
    peer grpc, httpd;
    int httpd_port;
    int silent_fd, silent_port;
} G;

/* Waits until something accepts on 127.0.0.1:port (busybox prints nothing). */
static int wait_listening(int port, int64_t limit_ms)
{
    int64_t deadline = mcp_now_ms() + limit_ms;
    while (mcp_now_ms() < deadline) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return 0;
        usleep(20000);
    }
    return -1;
}

static int group_teardown(void **state);

static int group_setup_peers(void **state)
{
    if (test_dir_make(G.dir, sizeof G.dir, "probe") != 0)
        return -1;
    char *healthz = mcp_sprintf("%s/healthz", G.dir), *index = mcp_sprintf("%s/index.html", G.dir);
    int rc = write_text(healthz, "ok\n") | write_text(index, "<p>hi</p>\n");
    free(healthz);
    free(index);
    if (rc != 0)
        return -1;

    char *const grpc_argv[] = {PEER_PYTHON, PEER_DIR "/grpc_peer.py", NULL};
    if (peer_spawn(&G.grpc, grpc_argv) != 0)
        return -1;
    G.httpd_port = closed_port();
    char *listen = mcp_sprintf("127.0.0.1:%d", G.httpd_port);
    char *const httpd_argv[] = {"/usr/bin/busybox", "httpd", "-f", "-p", listen, "-h", G.dir, NULL};
    rc = peer_spawn(&G.httpd, httpd_argv);
    free(listen);
    if (rc != 0 || wait_listening(G.httpd_port, 5000) != 0 || peer_wait_ready(&G.grpc) != 0)
        return -1;
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
    peer_stop(&G.grpc);
    peer_stop(&G.httpd);
    if (G.silent_fd >= 0)
        close(G.silent_fd);
    char *files[] = {mcp_sprintf("%s/healthz", G.dir), mcp_sprintf("%s/index.html", G.dir)};
    for (int i = 0; i < 2; i++) {
        if (files[i])
            unlink(files[i]);
        free(files[i]);
    }
    rmdir(G.dir);
    return 0;
}

typedef http_loop ctx;

/* ---- capture a result --------------------------------------------------- */

typedef struct got {
    int calls;
    bool healthy, cancelled;
    char reason[256];
    double latency_s;
} got;

static void on_probe(const mcp_probe_result *res, void *ud)
{
    got *g = ud;
    g->calls++;
    g->healthy = res->healthy;
    g->cancelled = res->cancelled;
    snprintf(g->reason, sizeof g->reason, "%s", res->reason);
    g->latency_s = res->latency_s;
}

/* Waits for the probe's callback (10 s at most) and checks it came once. */
static void wait_probe(ctx *c, mcp_probe *p, got *g, const char *what, const char *err)
{
    if (!p)
        fail_msg("%s: %s", what, err);
    assert_int_equal(g->calls, 0); /* never from inside the start function */
    assert_true(run_until(&c->loop, &g->calls, 10000));
    for (int i = 0; i < 5; i++)
        uv_run(&c->loop, UV_RUN_NOWAIT);
    assert_int_equal(g->calls, 1);
    assert_true(g->latency_s >= 0 && g->latency_s < 10);
}

static got tcp(ctx *c, int port, int64_t timeout_ms)
{
    got g = {0};
    mcp_error err = {{0}};
    mcp_probe *p = mcp_probe_tcp(&c->loop, "127.0.0.1", port, timeout_ms, on_probe, &g, &err);
    wait_probe(c, p, &g, "tcp", err.msg);
    return g;
}

static got http(ctx *c, int port, const char *path, int64_t timeout_ms)
{
    got g = {0};
    mcp_error err = {{0}};
    mcp_probe *p = mcp_probe_http(c->http, "127.0.0.1", port, path, timeout_ms, on_probe, &g, &err);
    wait_probe(c, p, &g, "http", err.msg);
    return g;
}

static got grpc(ctx *c, int port, const char *service, int64_t timeout_ms)
{
    got g = {0};
    mcp_error err = {{0}};
    mcp_probe *p =
        mcp_probe_grpc(c->http, "127.0.0.1", port, service, timeout_ms, on_probe, &g, &err);
    wait_probe(c, p, &g, "grpc", err.msg);
    return g;
}

/* ---- tcp ---------------------------------------------------------------- */

static void on_accept(uv_stream_t *server, int status)
{
    int *accepted = server->data;
    uv_tcp_t *client = malloc(sizeof *client);
    if (status != 0 || !client || uv_tcp_init(server->loop, client) != 0) {
        free(client);
        return;
    }
    if (uv_accept(server, (uv_stream_t *)client) == 0)
        (*accepted)++;
    uv_close((uv_handle_t *)client, (uv_close_cb)free);
}

static void test_tcp_listener_up(void **state)
{
    ctx *c = *state;
    uv_tcp_t server;
    int accepted = 0;
    struct sockaddr_in addr;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    assert_int_equal(uv_tcp_init(&c->loop, &server), 0);
    server.data = &accepted;
    assert_int_equal(uv_tcp_bind(&server, (struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&server, 16, on_accept), 0);
    int len = sizeof addr;
    assert_int_equal(uv_tcp_getsockname(&server, (struct sockaddr *)&addr, &len), 0);
    got g = tcp(c, ntohs(addr.sin_port), 2000);
    assert_true(g.healthy);
    assert_string_equal(g.reason, "ok");
    assert_true(g.latency_s < 1);
    run_until(&c->loop, &accepted, 2000);
    assert_int_equal(accepted, 1);
    uv_close((uv_handle_t *)&server, NULL);
    uv_run(&c->loop, UV_RUN_NOWAIT); /* server lives on this stack frame */
}

static void test_tcp_refused(void **state)
{
    got g = tcp(*state, closed_port(), 2000);
    assert_false(g.healthy);
    assert_string_equal(g.reason, "refused");
}

static void test_tcp_accept_never_answer_is_healthy(void **state)
{
    got g = tcp(*state, G.silent_port, 2000);
    assert_true(g.healthy);
}

static void test_tcp_cancel_and_bad_input(void **state)
{
    ctx *c = *state;
    got g = {0};
    mcp_error err = {{0}};
    mcp_probe *p = mcp_probe_tcp(&c->loop, "localhost", G.silent_port, 2000, on_probe, &g, &err);
    assert_non_null(p);
    mcp_probe_cancel(p);
    assert_int_equal(g.calls, 0);
    assert_true(run_until(&c->loop, &g.calls, 2000));
    assert_true(g.cancelled);
    assert_false(g.healthy);
    assert_string_equal(g.reason, "cancelled");

    assert_null(mcp_probe_tcp(&c->loop, "example.com", 80, 1000, on_probe, &g, &err));
    assert_non_null(strstr(err.msg, "example.com"));
    assert_null(mcp_probe_tcp(&c->loop, "127.0.0.1", 0, 1000, on_probe, &g, &err));
    assert_non_null(strstr(err.msg, "port 0"));
    assert_null(mcp_probe_tcp(&c->loop, "127.0.0.1", 70000, 1000, on_probe, &g, &err));
    assert_null(mcp_probe_tcp(&c->loop, NULL, 80, 1000, on_probe, &g, &err));
    assert_null(mcp_probe_tcp(&c->loop, "127.0.0.1", 80, 1000, NULL, &g, &err));
    assert_int_equal(g.calls, 1);
}

/* ---- http --------------------------------------------------------------- */

static void test_http_busybox_ok_and_404(void **state)
{
    ctx *c = *state;
    got g = http(c, G.httpd_port, "/healthz", 2000);
    assert_true(g.healthy);
    assert_string_equal(g.reason, "ok");
    g = http(c, G.httpd_port, NULL, 2000); /* "/" → index.html */
    assert_true(g.healthy);
    g = http(c, G.httpd_port, "/missing", 2000);
    assert_false(g.healthy);
    assert_string_equal(g.reason, "http status 404");
}

static void test_http_refused_timeout_and_bad_path(void **state)
{
    ctx *c = *state;
    got g = http(c, closed_port(), "/", 2000);
    assert_false(g.healthy);
    assert_string_equal(g.reason, "refused");

    int64_t t0 = mcp_now_ms();
    g = http(c, G.silent_port, "/", 300);
    assert_string_equal(g.reason, "timeout");
    assert_true(mcp_now_ms() - t0 < 1300);

    mcp_error err = {{0}};
    assert_null(mcp_probe_http(c->http, "127.0.0.1", 80, "no-slash", 1000, on_probe, &g, &err));
    assert_non_null(strstr(err.msg, "no-slash"));
}

/* ---- grpc --------------------------------------------------------------- */

static void test_grpc_health_statuses(void **state)
{
    ctx *c = *state;
    got g = grpc(c, G.grpc.port, "", 3000);
    assert_true(g.healthy);
    assert_string_equal(g.reason, "ok");
    g = grpc(c, G.grpc.port, NULL, 3000);
    assert_true(g.healthy);
    g = grpc(c, G.grpc.port, "svc.up", 3000);
    assert_true(g.healthy);
    g = grpc(c, G.grpc.port, "svc.down", 3000);
    assert_false(g.healthy);
    assert_string_equal(g.reason, "NOT_SERVING");
    g = grpc(c, G.grpc.port, "no.such.service", 3000);
    assert_false(g.healthy);
    assert_string_equal(g.reason, "unknown service");
    g = grpc(c, G.grpc.port, "svc.error", 3000);
    assert_false(g.healthy);
    assert_string_equal(g.reason, "grpc status 7: no way");
}

static void test_grpc_not_running_and_silent(void **state)
{
    ctx *c = *state;
    got g = grpc(c, closed_port(), "", 2000);
    assert_false(g.healthy);
    assert_string_equal(g.reason, "refused");

    /* accepts and never answers: the deadline fires within timeout + slack */
    int64_t t0 = mcp_now_ms();
    g = grpc(c, G.silent_port, "", 500);
    int64_t took = mcp_now_ms() - t0;
    assert_false(g.healthy);
    assert_string_equal(g.reason, "timeout");
    assert_true(took >= 450 && took < 1500);
    assert_true(g.latency_s >= 0.45 && g.latency_s < 1.5);

    /* an HTTP/1.1 server is not a gRPC server */
    g = grpc(c, G.httpd_port, "", 2000);
    assert_false(g.healthy);
}

static void test_cancel_http_and_grpc_probes(void **state)
{
    ctx *c = *state;
    mcp_error err = {{0}};
    got g1 = {0}, g2 = {0};
    mcp_probe *p1 =
        mcp_probe_http(c->http, "127.0.0.1", G.silent_port, "/", 5000, on_probe, &g1, &err);
    mcp_probe *p2 =
        mcp_probe_grpc(c->http, "127.0.0.1", G.silent_port, "", 5000, on_probe, &g2, &err);
    assert_non_null(p1);
    assert_non_null(p2);
    uv_run(&c->loop, UV_RUN_NOWAIT);
    mcp_probe_cancel(p1);
    mcp_probe_cancel(p2);
    assert_int_equal(g1.calls + g2.calls, 0);
    int64_t t0 = mcp_now_ms();
    assert_true(run_until(&c->loop, &g1.calls, 2000));
    assert_true(run_until(&c->loop, &g2.calls, 2000));
    assert_true(mcp_now_ms() - t0 < 500);
    assert_true(g1.cancelled && g2.cancelled);
    assert_string_equal(g1.reason, "cancelled");
    assert_string_equal(g2.reason, "cancelled");
}

static void test_destroying_the_client_cancels_probes(void **state)
{
    ctx *c = *state;
    mcp_error err = {{0}};
    got g = {0};
    assert_non_null(
        mcp_probe_grpc(c->http, "127.0.0.1", G.silent_port, "", 5000, on_probe, &g, &err));
    uv_run(&c->loop, UV_RUN_NOWAIT);
    mcp_http_destroy(c->http);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(g.calls, 1);
    assert_true(g.cancelled);
    assert_int_equal(uv_loop_close(&c->loop), 0);
    assert_int_equal(uv_loop_init(&c->loop), 0);
    c->http = mcp_http_new(&c->loop, &err);
    assert_non_null(c->http);
}

/* ---- the health messages ------------------------------------------------ */

static void test_health_request_encoding(void **state)
{
    uint8_t buf[512];
    assert_int_equal(mcp_probe_health_request("", buf, sizeof buf), 0);
    assert_int_equal(mcp_probe_health_request(NULL, buf, sizeof buf), 0);
    assert_int_equal(mcp_probe_health_request("ab", buf, sizeof buf), 4);
    assert_memory_equal(buf,
                        "\x0a\x02"
                        "ab",
                        4);
    char longname[201];
    memset(longname, 's', 200);
    longname[200] = '\0';
    /* 200 = 0xc8: varint c8 01 */
    assert_int_equal(mcp_probe_health_request(longname, buf, sizeof buf), 203);
    assert_memory_equal(buf, "\x0a\xc8\x01", 3);
    assert_int_equal(mcp_probe_health_request(longname, buf, 100), -1);
}

static void test_health_response_decoding(void **state)
{
    int st = -1;
    assert_int_equal(mcp_probe_health_decode((const uint8_t *)"\x08\x01", 2, &st), 0);
    assert_int_equal(st, 1);
    assert_int_equal(mcp_probe_health_decode((const uint8_t *)"\x08\x02", 2, &st), 0);
    assert_int_equal(st, 2);
    assert_int_equal(mcp_probe_health_decode((const uint8_t *)"", 0, &st), 0);
    assert_int_equal(st, 0); /* proto3 default: UNKNOWN */
    /* an unknown length-delimited field 2 is skipped */
    assert_int_equal(mcp_probe_health_decode((const uint8_t *)"\x12\x01x\x08\x01", 5, &st), 0);
    assert_int_equal(st, 1);
    assert_int_equal(mcp_probe_health_decode((const uint8_t *)"\x08", 1, &st), -1);
    assert_int_equal(mcp_probe_health_decode((const uint8_t *)"\x12\x05x", 3, &st), -1);
    assert_int_equal(mcp_probe_health_decode((const uint8_t *)"\x0b", 1, &st), -1);
    assert_int_equal(
        mcp_probe_health_decode((const uint8_t *)"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
                                12, &st),
        -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        http_loop_test(test_tcp_listener_up),
        http_loop_test(test_tcp_refused),
        http_loop_test(test_tcp_accept_never_answer_is_healthy),
        http_loop_test(test_tcp_cancel_and_bad_input),
        http_loop_test(test_http_busybox_ok_and_404),
        http_loop_test(test_http_refused_timeout_and_bad_path),
        http_loop_test(test_grpc_health_statuses),
        http_loop_test(test_grpc_not_running_and_silent),
        http_loop_test(test_cancel_http_and_grpc_probes),
        http_loop_test(test_destroying_the_client_cancels_probes),
        cmocka_unit_test(test_health_request_encoding),
        cmocka_unit_test(test_health_response_decoding),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
