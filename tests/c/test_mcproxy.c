/* The mc-proxy admin client against a real gRPC server: fake_mcproxy.py
 * (python grpcio, ProxyAdminService from our proto) on a unix socket, with
 * its record file checked and its control file used to make it slow or fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sys/un.h>

#include "mcp/mcproxy.h"

#include "../fixtures/peers/peer.h"

static struct {
    char dir[128];
    char sock[160], record[160], control[160];
    peer proxy;
} G;

static int group_setup(void **state)
{
    if (test_dir_make(G.dir, sizeof G.dir, "mcproxy") != 0)
        return -1;
    snprintf(G.sock, sizeof G.sock, "%s/mc-proxy.sock", G.dir);
    snprintf(G.record, sizeof G.record, "%s/record.json", G.dir);
    snprintf(G.control, sizeof G.control, "%s/control.json", G.dir);
    char *const argv[] = {PEER_PYTHON, PEER_DIR "/fake_mcproxy.py",
                          "--socket",  G.sock,
                          "--record",  G.record,
                          "--control", G.control,
                          NULL};
    return peer_start(&G.proxy, argv);
}

static int group_teardown(void **state)
{
    peer_stop(&G.proxy);
    unlink(G.record);
    unlink(G.control);
    unlink(G.sock);
    rmdir(G.dir);
    return 0;
}

typedef http_loop ctx;

static int setup(void **state)
{
    unlink(G.control); /* well-behaved unless a test says otherwise */
    return http_loop_setup(state);
}

static int teardown(void **state)
{
    int rc = http_loop_teardown(state);
    unlink(G.control);
    return rc;
}

/* ---- capture a result --------------------------------------------------- */

typedef struct got {
    int calls;
    bool ok, cancelled;
    char reason[256], detail[256];
    size_t n_routes;
    mcp_mcproxy_route routes[8]; /* copies */
} got;

static void got_free(got *g)
{
    for (size_t i = 0; i < g->n_routes && i < 8; i++) {
        mcp_mcproxy_route *r = &g->routes[i];
        free(r->listener);
        free(r->hostname);
        free(r->backend);
        free(r->mode);
        free(r->cert_path);
        free(r->key_path);
        free(r->service);
    }
}

static void on_done(const mcp_mcproxy_result *res, void *ud)
{
    got *g = ud;
    g->calls++;
    g->ok = res->ok;
    g->cancelled = res->cancelled;
    snprintf(g->reason, sizeof g->reason, "%s", res->reason);
    snprintf(g->detail, sizeof g->detail, "%s", res->detail);
    g->n_routes = res->n_routes;
    for (size_t i = 0; i < res->n_routes && i < 8; i++) {
        const mcp_mcproxy_route *r = &res->routes[i];
        g->routes[i] = (mcp_mcproxy_route){mcp_strdup(r->listener),  mcp_strdup(r->hostname),
                                           mcp_strdup(r->backend),   mcp_strdup(r->mode),
                                           mcp_strdup(r->cert_path), mcp_strdup(r->key_path),
                                           mcp_strdup(r->service)};
    }
}

static void wait_call(ctx *c, mcp_mcproxy_call *call, got *g, const char *err)
{
    if (!call)
        fail_msg("call refused: %s", err);
    assert_int_equal(g->calls, 0); /* never from inside the start function */
    assert_true(run_until(&c->loop, &g->calls, 15000));
    for (int i = 0; i < 5; i++)
        uv_run(&c->loop, UV_RUN_NOWAIT);
    assert_int_equal(g->calls, 1);
}

static mcp_mcproxy_target target(const char *sock, int64_t timeout_ms)
{
    return (mcp_mcproxy_target){.socket = sock, .timeout_ms = timeout_ms};
}

static void add(ctx *c, const char *sock, const mcp_mcproxy_route *r, int64_t timeout_ms, got *g)
{
    mcp_error err = {{0}};
    mcp_mcproxy_target to = target(sock, timeout_ms);
    wait_call(c, mcp_mcproxy_add_route(c->http, &to, r, on_done, g, &err), g, err.msg);
}

static void list(ctx *c, got *g)
{
    mcp_error err = {{0}};
    mcp_mcproxy_target to = target(G.sock, 0);
    wait_call(c, mcp_mcproxy_list_routes(c->http, &to, on_done, g, &err), g, err.msg);
}

static void rm(ctx *c, const char *listener, const char *hostname, got *g)
{
    mcp_error err = {{0}};
    mcp_mcproxy_target to = target(G.sock, 0);
    wait_call(c, mcp_mcproxy_remove_route(c->http, &to, listener, hostname, on_done, g, &err), g,
              err.msg);
}

static void clear_routes(ctx *c)
{
    got g = {0};
    list(c, &g);
    assert_true(g.ok);
    for (size_t i = 0; i < g.n_routes; i++) {
        got r = {0};
        rm(c, g.routes[i].listener, g.routes[i].hostname, &r);
        assert_true(r.ok);
    }
    got_free(&g);
}

/* How many calls of method the fake recorded (its record file). */
static int recorded(const char *method)
{
    size_t len = 0;
    char *text = mcp_read_file(G.record, &len);
    assert_non_null(text);
    char *needle = mcp_sprintf("\"method\": \"%s\"", method);
    int n = 0;
    for (char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    free(needle);
    free(text);
    return n;
}

/* ---- tests -------------------------------------------------------------- */

static void test_add_list_remove(void **state)
{
    ctx *c = *state;
    clear_routes(c);
    int adds_before = recorded("AddRoute");
    mcp_mcproxy_route l7 = {.listener = ":443",
                            .hostname = "web.example.test",
                            .backend = "127.0.0.1:10001",
                            .mode = "l7",
                            .cert_path = "/certs/web.pem",
                            .key_path = "/certs/web.key",
                            .service = "web"};
    mcp_mcproxy_route l4 = {.listener = ":443",
                            .hostname = "db.example.test",
                            .backend = "127.0.0.1:10002",
                            .mode = "l4",
                            .service = "db"};
    got a = {0}, b = {0};
    add(c, G.sock, &l7, 0, &a);
    assert_true(a.ok);
    assert_string_equal(a.reason, "");
    add(c, G.sock, &l4, 0, &b);
    assert_true(b.ok);
    assert_int_equal(recorded("AddRoute"), adds_before + 2);

    got g = {0};
    list(c, &g);
    assert_true(g.ok);
    assert_int_equal(g.n_routes, 2);
    /* the fake lists by (listener, hostname): db before web */
    assert_string_equal(g.routes[0].hostname, "db.example.test");
    assert_string_equal(g.routes[0].backend, "127.0.0.1:10002");
    assert_string_equal(g.routes[0].mode, "l4");
    assert_string_equal(g.routes[0].cert_path, ""); /* unset comes back as "" */
    assert_string_equal(g.routes[0].service, "db");
    assert_string_equal(g.routes[1].hostname, "web.example.test");
    assert_string_equal(g.routes[1].listener, ":443");
    assert_string_equal(g.routes[1].mode, "l7");
    assert_string_equal(g.routes[1].cert_path, "/certs/web.pem");
    assert_string_equal(g.routes[1].key_path, "/certs/web.key");
    assert_string_equal(g.routes[1].service, "web");
    got_free(&g);

    got r = {0};
    rm(c, ":443", "web.example.test", &r);
    assert_true(r.ok);
    got g2 = {0};
    list(c, &g2);
    assert_int_equal(g2.n_routes, 1);
    assert_string_equal(g2.routes[0].hostname, "db.example.test");
    got_free(&g2);

    /* removing what is not there: mc-proxy's own status comes back */
    got missing = {0};
    rm(c, ":443", "web.example.test", &missing);
    assert_false(missing.ok);
    assert_true(strncmp(missing.reason, "grpc status 5: ", 15) == 0);
    assert_non_null(strstr(missing.reason, "no route"));
    clear_routes(c);
}

static void test_add_is_idempotent_and_empty_list(void **state)
{
    ctx *c = *state;
    clear_routes(c);
    got empty = {0};
    list(c, &empty);
    assert_true(empty.ok);
    assert_int_equal(empty.n_routes, 0);
    mcp_mcproxy_route r = {.listener = ":8443", .hostname = "x.test", .backend = "127.0.0.1:1"};
    for (int i = 0; i < 3; i++) {
        got a = {0};
        add(c, G.sock, &r, 0, &a);
        assert_true(a.ok);
    }
    got g = {0};
    list(c, &g);
    assert_int_equal(g.n_routes, 1);
    assert_string_equal(g.routes[0].mode, ""); /* NULL fields are sent as "" */
    got_free(&g);
    clear_routes(c);
}

static void test_down_is_unavailable(void **state)
{
    ctx *c = *state;
    char *missing = mcp_sprintf("%s/nobody.sock", G.dir);
    mcp_mcproxy_route r = {.listener = ":443", .hostname = "x.test", .backend = "127.0.0.1:1"};
    got g = {0};
    add(c, missing, &r, 2000, &g);
    assert_false(g.ok);
    assert_string_equal(g.reason, "unavailable");
    assert_true(g.detail[0] != '\0');
    free(missing);
}

/* A stale socket file whose server is gone (mc-proxy crashed): refused. */
static void test_stale_socket_is_unavailable(void **state)
{
    ctx *c = *state;
    char *path = mcp_sprintf("%s/closer.sock", G.dir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    unlink(path);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0);
    /* close the listener: connections are then refused */
    close(fd);
    mcp_mcproxy_route r = {.hostname = "x.test", .backend = "127.0.0.1:1"};
    got g = {0};
    add(c, path, &r, 2000, &g);
    assert_false(g.ok);
    assert_string_equal(g.reason, "unavailable");
    unlink(path);
    free(path);
}

static void test_slow_is_timeout(void **state)
{
    ctx *c = *state;
    assert_int_equal(write_text(G.control, "{\"delay\": 3}"), 0);
    mcp_mcproxy_route r = {.listener = ":443", .hostname = "slow.test", .backend = "127.0.0.1:1"};
    got g = {0};
    int64_t start = mcp_now_ms();
    add(c, G.sock, &r, 300, &g);
    int64_t took = mcp_now_ms() - start;
    assert_false(g.ok);
    assert_string_equal(g.reason, "timeout");
    assert_true(took < 2900); /* the deadline ended it, not the server */
    unlink(G.control);
    sleep(3); /* let the fake's slow handler finish before the next test */
}

static void test_server_error_status(void **state)
{
    ctx *c = *state;
    assert_int_equal(write_text(G.control, "{\"fail\": \"PERMISSION_DENIED:not today\"}"), 0);
    got g = {0};
    list(c, &g);
    assert_false(g.ok);
    assert_string_equal(g.reason, "grpc status 7: not today");
    assert_int_equal(g.n_routes, 0);
}

static void test_invalid_route_refused_by_server(void **state)
{
    ctx *c = *state;
    mcp_mcproxy_route r = {.listener = ":443"}; /* no hostname, no backend */
    got g = {0};
    add(c, G.sock, &r, 0, &g);
    assert_false(g.ok);
    assert_true(strncmp(g.reason, "grpc status 3: ", 15) == 0);
}

static void test_cancel(void **state)
{
    ctx *c = *state;
    assert_int_equal(write_text(G.control, "{\"delay\": 2}"), 0);
    mcp_error err = {{0}};
    mcp_mcproxy_target to = target(G.sock, 0);
    got g = {0};
    mcp_mcproxy_call *call = mcp_mcproxy_list_routes(c->http, &to, on_done, &g, &err);
    assert_non_null(call);
    mcp_mcproxy_cancel(call);
    assert_int_equal(g.calls, 0); /* not from inside cancel */
    assert_true(run_until(&c->loop, &g.calls, 5000));
    assert_int_equal(g.calls, 1);
    assert_true(g.cancelled);
    assert_false(g.ok);
    assert_string_equal(g.reason, "cancelled");
    unlink(G.control);
    sleep(2);
}

static void test_bad_arguments(void **state)
{
    ctx *c = *state;
    mcp_error err = {{0}};
    got g = {0};
    mcp_mcproxy_target none = target(NULL, 0);
    assert_null(mcp_mcproxy_list_routes(c->http, &none, on_done, &g, &err));
    assert_non_null(strstr(err.msg, "[mcproxy] socket"));
    char long_path[200];
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[0] = '/';
    long_path[sizeof long_path - 1] = '\0';
    mcp_mcproxy_target too_long = target(long_path, 0);
    assert_null(mcp_mcproxy_list_routes(c->http, &too_long, on_done, &g, &err));
    assert_non_null(strstr(err.msg, "107"));
    mcp_mcproxy_target to = target(G.sock, 0);
    assert_null(mcp_mcproxy_add_route(c->http, &to, NULL, on_done, &g, &err));
    for (int i = 0; i < 3; i++)
        uv_run(&c->loop, UV_RUN_NOWAIT);
    assert_int_equal(g.calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_add_list_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_is_idempotent_and_empty_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_down_is_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_socket_is_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_is_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_error_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_route_refused_by_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
