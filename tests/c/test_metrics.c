/* The metric registry, its text exposition, the listen-address parser and
 * the HTTP endpoint on a real libuv loop with a real TCP client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "mcp/metrics.h"
#include "mcp/metrics_http.h"

static int contains(const char *text, const char *needle)
{
    return strstr(text, needle) != NULL;
}

static char *render(mcp_metrics *m)
{
    size_t len = 0;
    char *t = mcp_metrics_render(m, &len);
    assert_non_null(t);
    assert_int_equal(strlen(t), len);
    return t;
}

static void test_counter_gauge_and_escaping(void **state)
{
    (void)state;
    mcp_metrics *m = mcp_metrics_new("1.2\"3");
    assert_non_null(m);
    mcp_error err = {{0}};
    const char *labels[] = {"kind"};
    mcp_metric_family *c = mcp_metrics_define(m, MCP_METRIC_COUNTER, "mcp_things_total",
                                              "Things \\ seen\nso far.", labels, 1, NULL, 0, &err);
    assert_non_null(c);
    const char *odd[] = {"a\"b\\c\nd"};
    const char *plain[] = {"x"};
    assert_int_equal(mcp_metrics_add(c, odd, 1, &err), 0);
    assert_int_equal(mcp_metrics_add(c, plain, 2, &err), 0);
    assert_int_equal(mcp_metrics_add(c, plain, 0.5, &err), 0);
    mcp_metric_family *g =
        mcp_metrics_define(m, MCP_METRIC_GAUGE, "mcp_level", "A level.", NULL, 0, NULL, 0, &err);
    assert_non_null(g);
    assert_int_equal(mcp_metrics_set(g, NULL, 0.1, &err), 0);
    char *t = render(m);
    assert_true(contains(t, "# HELP mcp_things_total Things \\\\ seen\\nso far.\n"));
    assert_true(contains(t, "# TYPE mcp_things_total counter\n"));
    assert_true(contains(t, "mcp_things_total{kind=\"a\\\"b\\\\c\\nd\"} 1\n"));
    assert_true(contains(t, "mcp_things_total{kind=\"x\"} 2.5\n"));
    assert_true(contains(t, "# TYPE mcp_level gauge\nmcp_level 0.1\n"));
    assert_true(contains(t, "mcp_build_info{version=\"1.2\\\"3\"} 1\n"));
    assert_true(contains(t, "\nprocess_resident_memory_bytes "));
    assert_true(contains(t, "\nprocess_open_fds "));
    assert_true(contains(t, "\nprocess_cpu_seconds_total "));
    free(t);
    assert_int_equal(mcp_metrics_set(g, NULL, -INFINITY, &err), 0);
    t = render(m);
    assert_true(contains(t, "mcp_level -Inf\n"));
    free(t);
    assert_int_equal(mcp_metrics_set(g, NULL, 1e-7, &err), 0);
    t = render(m);
    assert_true(contains(t, "mcp_level 1e-07\n"));
    free(t);
    mcp_metrics_free(m);
}

static void test_histogram_buckets_are_cumulative(void **state)
{
    (void)state;
    mcp_metrics *m = mcp_metrics_new("v");
    mcp_error err = {{0}};
    const char *labels[] = {"check"};
    const double buckets[] = {0.1, 1};
    mcp_metric_family *h = mcp_metrics_define(m, MCP_METRIC_HISTOGRAM, "mcp_probe_seconds", "P.",
                                              labels, 1, buckets, 2, &err);
    assert_non_null(h);
    const char *tcp[] = {"tcp"};
    const double obs[] = {0.05, 0.1, 0.5, 3};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(mcp_metrics_observe(h, tcp, obs[i], &err), 0);
    assert_int_equal(mcp_metrics_observe(h, tcp, NAN, &err), -1);
    char *t = render(m);
    assert_true(contains(t, "mcp_probe_seconds_bucket{check=\"tcp\",le=\"0.1\"} 2\n"
                            "mcp_probe_seconds_bucket{check=\"tcp\",le=\"1\"} 3\n"
                            "mcp_probe_seconds_bucket{check=\"tcp\",le=\"+Inf\"} 4\n"
                            "mcp_probe_seconds_sum{check=\"tcp\"} 3.65\n"
                            "mcp_probe_seconds_count{check=\"tcp\"} 4\n"));
    free(t);
    mcp_metrics_free(m);
}

static void test_definitions_are_checked(void **state)
{
    (void)state;
    mcp_metrics *m = mcp_metrics_new("v");
    mcp_error err = {{0}};
    const char *sc[] = {"service", "component"};
    const char *cs[] = {"component", "service"};
    const char *dup[] = {"a", "a"};
    const char *le[] = {"le"};
    const char *under[] = {"__x"};
    assert_null(mcp_metrics_define(m, MCP_METRIC_GAUGE, "bad name", "", NULL, 0, NULL, 0, &err));
    assert_true(contains(err.msg, "invalid metric name"));
    assert_null(mcp_metrics_define(m, MCP_METRIC_GAUGE, "9lives", "", NULL, 0, NULL, 0, &err));
    assert_null(mcp_metrics_define(m, MCP_METRIC_COUNTER, "mcp_x", "", NULL, 0, NULL, 0, &err));
    assert_true(contains(err.msg, "_total"));
    assert_null(mcp_metrics_define(m, MCP_METRIC_GAUGE, "mcp_x_total", "", NULL, 0, NULL, 0, &err));
    assert_null(mcp_metrics_define(m, MCP_METRIC_GAUGE, "mcp_d", "", dup, 2, NULL, 0, &err));
    assert_null(mcp_metrics_define(m, MCP_METRIC_HISTOGRAM, "mcp_h", "", le, 1, NULL, 0, &err));
    assert_null(mcp_metrics_define(m, MCP_METRIC_GAUGE, "mcp_u", "", under, 1, NULL, 0, &err));
    const double down[] = {1, 0.5};
    assert_null(mcp_metrics_define(m, MCP_METRIC_HISTOGRAM, "mcp_h", "", NULL, 0, down, 2, &err));
    mcp_metric_family *a =
        mcp_metrics_define(m, MCP_METRIC_GAUGE, "mcp_up", "Up.", sc, 2, NULL, 0, &err);
    assert_non_null(a);
    /* the same shape again is the same family (a policy reloaded) */
    assert_ptr_equal(mcp_metrics_define(m, MCP_METRIC_GAUGE, "mcp_up", "Up.", sc, 2, NULL, 0, &err),
                     a);
    assert_null(mcp_metrics_define(m, MCP_METRIC_GAUGE, "mcp_up", "Up.", cs, 2, NULL, 0, &err));
    assert_true(contains(err.msg, "already defined"));
    assert_ptr_equal(mcp_metrics_find(m, "mcp_up"), a);
    /* misuse of a family */
    const char *v[] = {"web", "api"};
    assert_int_equal(mcp_metrics_observe(a, v, 1, &err), -1);
    mcp_metric_family *c =
        mcp_metrics_define(m, MCP_METRIC_COUNTER, "mcp_n_total", "N.", NULL, 0, NULL, 0, &err);
    assert_int_equal(mcp_metrics_add(c, NULL, -1, &err), -1);
    assert_int_equal(mcp_metrics_set(c, NULL, 3, &err), -1);
    const char *missing[] = {"web", NULL};
    assert_int_equal(mcp_metrics_set(a, missing, 1, &err), -1);
    assert_true(contains(err.msg, "component"));
    mcp_metrics_free(m);
}

/* Many series, half removed: the rest are still found (the index is rebuilt). */
static void test_many_series_and_removal(void **state)
{
    (void)state;
    mcp_metrics *m = mcp_metrics_new("v");
    mcp_error err = {{0}};
    const char *sc[] = {"service", "component"};
    mcp_metric_family *g =
        mcp_metrics_define(m, MCP_METRIC_GAUGE, "mcp_v", "V.", sc, 2, NULL, 0, &err);
    char svc[32], comp[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(svc, sizeof svc, "s%d", i / 10);
        snprintf(comp, sizeof comp, "c%d", i);
        const char *v[] = {svc, comp};
        assert_int_equal(mcp_metrics_set(g, v, i, &err), 0);
    }
    for (int i = 0; i < 1000; i += 2) {
        snprintf(svc, sizeof svc, "s%d", i / 10);
        snprintf(comp, sizeof comp, "c%d", i);
        const char *v[] = {svc, comp};
        assert_int_equal(mcp_metrics_remove(g, v), 1);
        assert_int_equal(mcp_metrics_remove(g, v), 0);
    }
    for (int i = 1; i < 1000; i += 2) { /* add to the survivors: no new series */
        snprintf(svc, sizeof svc, "s%d", i / 10);
        snprintf(comp, sizeof comp, "c%d", i);
        const char *v[] = {svc, comp};
        assert_int_equal(mcp_metrics_add(g, v, 1000, &err), 0);
    }
    char *t = render(m);
    int lines = 0;
    for (const char *p = t; (p = strstr(p, "\nmcp_v{")); p++)
        lines++;
    assert_int_equal(lines, 500);
    assert_true(contains(t, "mcp_v{service=\"s99\",component=\"c999\"} 1999\n"));
    assert_false(contains(t, "component=\"c998\""));
    free(t);
    mcp_metrics_free(m);
}

static void test_listen_addresses(void **state)
{
    (void)state;
    mcp_metrics_listen a;
    char why[300];
    assert_int_equal(mcp_metrics_listen_parse("127.0.0.1:9464", &a, why, sizeof why), 0);
    assert_int_equal(a.family, AF_INET);
    assert_int_equal(a.port, 9464);
    assert_int_equal(mcp_metrics_listen_parse("[::1]:9464", &a, why, sizeof why), 0);
    assert_int_equal(a.family, AF_INET6);
    assert_string_equal(a.host, "::1");
    assert_int_equal(mcp_metrics_listen_parse(":9464", &a, why, sizeof why), 0);
    assert_string_equal(a.host, "0.0.0.0");
    assert_int_equal(mcp_metrics_listen_parse("localhost:1", &a, why, sizeof why), 0);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(mcp_metrics_listen_parse("/run/mcp/metrics.sock", &a, why, sizeof why), 0);
    assert_int_equal(a.family, AF_UNIX);
    static const char *const bad[] = {
        "",          "9464",    "127.0.0.1", "127.0.0.1:",     "1.2.3:80",    "::1:9464",
        "[::1]9464", "[::1]:x", "h:65536",   "example.com:80", "[1.2.3.4]:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        assert_int_equal(mcp_metrics_listen_parse(bad[i], &a, why, sizeof why), -1);
        assert_true(why[0] != '\0');
    }
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    assert_int_equal(mcp_metrics_listen_parse(longpath, &a, why, sizeof why), -1);
}

/* ---------- the endpoint on a real loop ---------- */

typedef struct client_run {
    int port;
    uv_async_t done;
    char answers[4][512];
} client_run;

/* One request on a fresh connection; the first bytes of the answer. */
static void request(int port, const char *req, char *out, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    out[0] = '\0';
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req)) {
        size_t got = 0;
        ssize_t n;
        while (got + 1 < len && (n = recv(fd, out + got, len - 1 - got, 0)) > 0)
            got += (size_t)n;
        out[got] = '\0';
    }
    close(fd);
}

static void *client_main(void *arg)
{
    client_run *r = arg;
    request(r->port, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", r->answers[0],
            sizeof r->answers[0]);
    request(r->port, "GET /other HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", r->answers[1],
            sizeof r->answers[1]);
    request(r->port,
            "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
            r->answers[2], sizeof r->answers[2]);
    request(r->port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n", r->answers[3], sizeof r->answers[3]);
    uv_async_send(&r->done);
    return NULL;
}

static mcp_metrics_http *serving;

static void on_done(uv_async_t *a)
{
    mcp_metrics_http_close(serving);
    uv_close((uv_handle_t *)a, NULL);
}

static void test_endpoint_on_the_loop(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    mcp_metrics *m = mcp_metrics_new("t");
    mcp_error err = {{0}};
    mcp_metric_family *g =
        mcp_metrics_define(m, MCP_METRIC_GAUGE, "mcp_answer", "A.", NULL, 0, NULL, 0, &err);
    assert_int_equal(mcp_metrics_set(g, NULL, 42, &err), 0);
    serving = mcp_metrics_http_start(&loop, "127.0.0.1:0", m, &err);
    assert_non_null(serving);
    int port = mcp_metrics_http_port(serving);
    assert_true(port > 0);
    /* the same port again cannot bind: a clear error */
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    assert_null(mcp_metrics_http_start(&loop, addr, m, &err));
    assert_true(contains(err.msg, "cannot listen on"));
    assert_true(contains(err.msg, "in use"));

    client_run r = {.port = port};
    assert_int_equal(uv_async_init(&loop, &r.done, on_done), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, client_main, &r), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    pthread_join(th, NULL);
    assert_true(contains(r.answers[0], "HTTP/1.1 200"));
    assert_true(contains(r.answers[0], "text/plain; version=0.0.4"));
    assert_true(contains(r.answers[0], "\nmcp_answer 42\n"));
    assert_true(contains(r.answers[1], "HTTP/1.1 404"));
    assert_true(contains(r.answers[2], "HTTP/1.1 405"));
    assert_true(contains(r.answers[2], "Allow: GET"));
    assert_true(contains(r.answers[3], " 200 "));
    assert_int_equal(uv_loop_close(&loop), 0);
    mcp_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge_and_escaping),
        cmocka_unit_test(test_histogram_buckets_are_cumulative),
        cmocka_unit_test(test_definitions_are_checked),
        cmocka_unit_test(test_many_series_and_removal),
        cmocka_unit_test(test_listen_addresses),
        cmocka_unit_test(test_endpoint_on_the_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
