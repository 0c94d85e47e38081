/* The SQLite registry against real database files in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mcp/registry.h"
#include "mcp/util.h"

/* ---- fixtures ---- */

typedef struct tmp {
    char dir[256];
} tmp;

static int setup_tmp(void **state)
{
    tmp *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    const char *base = getenv("MCP_TEST_TMP");
    if (base)
        mkdir(base, 0755);
    snprintf(t->dir, sizeof t->dir, "%s/registry-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(t->dir)) {
        free(t);
        return -1;
    }
    *state = t;
    return 0;
}

static int teardown_tmp(void **state)
{
    tmp *t = *state;
    /* Only files, no subdirectories: unlink each, then the directory. */
    DIR *d = opendir(t->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", t->dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(t->dir);
    free(t);
    return 0;
}

static char *path_in(void **state, const char *name)
{
    tmp *t = *state;
    char *p = mcp_sprintf("%s/%s", t->dir, name);
    assert_non_null(p);
    return p;
}

static mcp_registry *open_reg(void **state)
{
    char *p = path_in(state, "reg.db");
    mcp_registry *reg = NULL;
    mcp_error err = {{0}};
    int rc = mcp_registry_open(p, &reg, &err);
    if (rc != 0)
        fail_msg("open %s: %s", p, err.msg);
    free(p);
    return reg;
}

static void push(mcp_strv *sv, const char *s)
{
    assert_int_equal(mcp_strv_push(sv, s), 0);
}

static void add_route(mcp_component *c, const char *name, int port, const char *mode,
                      const char *hostname)
{
    mcp_route *grown = realloc(c->routes, (c->n_routes + 1) * sizeof *grown);
    assert_non_null(grown);
    c->routes = grown;
    mcp_route *r = &grown[c->n_routes++];
    memset(r, 0, sizeof *r);
    r->name = mcp_strdup(name);
    r->port = port;
    r->mode = mcp_strdup(mode);
    r->hostname = mcp_strdup(hostname);
}

static mcp_component *add_component(mcp_service *svc, const char *name, const char *image)
{
    mcp_component *grown = realloc(svc->components, (svc->n_components + 1) * sizeof *grown);
    assert_non_null(grown);
    svc->components = grown;
    mcp_component *c = &grown[svc->n_components++];
    memset(c, 0, sizeof *c);
    c->name = mcp_strdup(name);
    c->image = mcp_strdup(image);
    c->desired_state = mcp_strdup("running");
    return c;
}

/* A service using every field, with lists whose order matters. */
static void full_service(mcp_service *svc)
{
    memset(svc, 0, sizeof *svc);
    svc->name = mcp_strdup("metacrypt");
    svc->active = false;
    mcp_component *c = add_component(svc, "api", "localhost/metacrypt:v1");
    c->network = mcp_strdup("mcpnet");
    c->user = mcp_strdup("0:0");
    c->restart = mcp_strdup("unless-stopped");
    push(&c->ports, "127.0.0.1:18443:8443/tcp");
    push(&c->ports, "9000");
    push(&c->volumes, "/srv/metacrypt:/srv/metacrypt");
    push(&c->volumes, "data:/data:ro,Z");
    push(&c->cmd, "server");
    push(&c->cmd, "--config");
    push(&c->cmd, "/srv/metacrypt/metacrypt.toml");
    push(&c->cmd, "with \"quotes\", [brackets] and ünïcode");
    push(&c->env, "LOG_LEVEL=info");
    push(&c->env, "EMPTY=");
    free(c->desired_state);
    c->desired_state = mcp_strdup("stopped");
    c->health.check = mcp_strdup("http");
    c->health.port = 8443;
    c->health.path = mcp_strdup("/healthz");
    c->health.interval_ms = 2500;
    c->health.timeout_ms = 300;
    c->health.failure_threshold = 5;
    add_route(c, "rest", 8443, "l7", "metacrypt.example.net");
    add_route(c, "grpc", 9443, "l4", NULL);
    add_route(c, "admin", 0, "l4", "admin.example.net");
    mcp_component *w = add_component(svc, "worker", "localhost/worker:v2");
    (void)w;
}

static void assert_strv_equal(const mcp_strv *a, const mcp_strv *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++)
        assert_string_equal(a->v[i], b->v[i]);
}

static void assert_opt_string_equal(const char *a, const char *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static void assert_service_equal(const mcp_service *a, const mcp_service *b)
{
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->active, b->active);
    assert_int_equal(a->n_components, b->n_components);
    for (size_t i = 0; i < a->n_components; i++) {
        const mcp_component *x = &a->components[i], *y = &b->components[i];
        assert_string_equal(x->name, y->name);
        assert_string_equal(x->image, y->image);
        assert_opt_string_equal(x->network, y->network);
        assert_opt_string_equal(x->user, y->user);
        assert_opt_string_equal(x->restart, y->restart);
        assert_strv_equal(&x->ports, &y->ports);
        assert_strv_equal(&x->volumes, &y->volumes);
        assert_strv_equal(&x->cmd, &y->cmd);
        assert_strv_equal(&x->env, &y->env);
        assert_string_equal(x->desired_state, y->desired_state);
        assert_opt_string_equal(x->health.check, y->health.check);
        assert_int_equal(x->health.port, y->health.port);
        assert_opt_string_equal(x->health.path, y->health.path);
        assert_int_equal(x->health.interval_ms, y->health.interval_ms);
        assert_int_equal(x->health.timeout_ms, y->health.timeout_ms);
        assert_int_equal(x->health.failure_threshold, y->health.failure_threshold);
        assert_int_equal(x->n_routes, y->n_routes);
        for (size_t j = 0; j < x->n_routes; j++) {
            assert_string_equal(x->routes[j].name, y->routes[j].name);
            assert_int_equal(x->routes[j].port, y->routes[j].port);
            assert_string_equal(x->routes[j].mode, y->routes[j].mode);
            assert_opt_string_equal(x->routes[j].hostname, y->routes[j].hostname);
            assert_int_equal(x->routes[j].host_port, y->routes[j].host_port);
        }
    }
}

static int put(mcp_registry *reg, mcp_service *svc, int min, int max)
{
    mcp_error err = {{0}};
    int rc = mcp_registry_put_service(reg, svc, min, max, NULL, NULL, &err);
    if (rc != 0)
        fail_msg("put %s: %s", svc->name, err.msg);
    return rc;
}

static mcp_service one_route_service(const char *name, const char *route)
{
    mcp_service svc = {0};
    svc.name = mcp_strdup(name);
    svc.active = true;
    mcp_component *c = add_component(&svc, name, "img");
    add_route(c, route, 80, "l4", NULL);
    return svc;
}

/* ---- round trip ---- */

static void test_round_trip_full_service(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_service svc;
    full_service(&svc);
    put(reg, &svc, 10000, 10100);
    assert_int_equal(svc.components[0].routes[0].host_port, 10000);
    assert_int_equal(svc.components[0].routes[1].host_port, 10001);
    assert_int_equal(svc.components[0].routes[2].host_port, 10002);

    mcp_service got;
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_get_service(reg, "metacrypt", &got, &err), 1);
    assert_service_equal(&svc, &got);
    mcp_service_free(&got);
    assert_int_equal(mcp_registry_get_service(reg, "nope", &got, &err), 0);

    /* Survives closing and reopening the file. */
    mcp_registry_close(reg);
    reg = open_reg(state);
    assert_int_equal(mcp_registry_get_service(reg, "metacrypt", &got, &err), 1);
    assert_service_equal(&svc, &got);
    mcp_service_free(&got);
    mcp_service_free(&svc);
    mcp_registry_close(reg);
}

static void test_list_services_sorted(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_service b = one_route_service("bravo", "r"), a = one_route_service("alpha", "r");
    put(reg, &b, 20000, 20010);
    put(reg, &a, 20000, 20010);
    mcp_service *all = NULL;
    size_t n = 0;
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_list_services(reg, &all, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(all[0].name, "alpha");
    assert_string_equal(all[1].name, "bravo");
    assert_int_equal(all[0].components[0].routes[0].host_port, 20001);
    assert_int_equal(all[1].components[0].routes[0].host_port, 20000);
    mcp_services_free(all, n);
    mcp_service_free(&a);
    mcp_service_free(&b);
    mcp_registry_close(reg);
}

/* ---- host ports ---- */

static void test_redeploy_keeps_host_ports(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_service first = one_route_service("one", "web");
    put(reg, &first, 10000, 10100);
    mcp_service other = one_route_service("two", "web");
    put(reg, &other, 10000, 10100);
    assert_int_equal(other.components[0].routes[0].host_port, 10001);

    /* Redeploy "two" with a new route listed before the old one: the old keeps its port. */
    mcp_service again = {0};
    again.name = mcp_strdup("two");
    again.active = true;
    mcp_component *c = add_component(&again, "two", "img:v2");
    add_route(c, "new", 81, "l4", NULL);
    add_route(c, "web", 80, "l4", NULL);
    c->routes[1].host_port = 4242; /* ignored: the registry decides */
    put(reg, &again, 10000, 10100);
    assert_int_equal(again.components[0].routes[1].host_port, 10001);
    assert_int_equal(again.components[0].routes[0].host_port, 10002);

    /* Even after the port range changed, a kept route stays where it was. */
    mcp_service third = {0};
    third.name = mcp_strdup("two");
    mcp_component *c3 = add_component(&third, "two", "img:v3");
    add_route(c3, "web", 80, "l4", NULL);
    put(reg, &third, 30000, 30010);
    assert_int_equal(third.components[0].routes[0].host_port, 10001);

    mcp_service got;
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_get_service(reg, "two", &got, &err), 1);
    assert_int_equal(got.components[0].n_routes, 1);
    assert_int_equal(got.components[0].routes[0].host_port, 10001);
    assert_string_equal(got.components[0].image, "img:v3");
    mcp_service_free(&got);

    mcp_service_free(&first);
    mcp_service_free(&other);
    mcp_service_free(&again);
    mcp_service_free(&third);
    mcp_registry_close(reg);
}

static void test_new_route_gets_lowest_free_port(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_service a = one_route_service("a", "r"), b = one_route_service("b", "r"),
                c = one_route_service("c", "r");
    put(reg, &a, 10000, 10100);
    put(reg, &b, 10000, 10100);
    put(reg, &c, 10000, 10100);
    assert_int_equal(c.components[0].routes[0].host_port, 10002);
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_delete_service(reg, "b", &err), 1);
    /* The hole left by b is the lowest free port. */
    mcp_service d = one_route_service("d", "r");
    put(reg, &d, 10000, 10100);
    assert_int_equal(d.components[0].routes[0].host_port, 10001);
    mcp_service e = one_route_service("e", "r");
    put(reg, &e, 10000, 10100);
    assert_int_equal(e.components[0].routes[0].host_port, 10003);
    mcp_service_free(&a);
    mcp_service_free(&b);
    mcp_service_free(&c);
    mcp_service_free(&d);
    mcp_service_free(&e);
    mcp_registry_close(reg);
}

typedef struct busy_ports {
    int busy[4];
    int asked;
} busy_ports;

static bool port_free_cb(int port, void *ud)
{
    busy_ports *b = ud;
    b->asked++;
    for (int i = 0; i < 4; i++)
        if (b->busy[i] == port)
            return false;
    return true;
}

static void test_port_free_callback_honoured(void **state)
{
    mcp_registry *reg = open_reg(state);
    busy_ports busy = {{10000, 10001, 10003, 0}, 0};
    mcp_service svc = {0};
    svc.name = mcp_strdup("svc");
    mcp_component *c = add_component(&svc, "svc", "img");
    add_route(c, "a", 80, "l4", NULL);
    add_route(c, "b", 81, "l4", NULL);
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_put_service(reg, &svc, 10000, 10010, port_free_cb, &busy, &err),
                     0);
    assert_int_equal(svc.components[0].routes[0].host_port, 10002);
    assert_int_equal(svc.components[0].routes[1].host_port, 10004);
    assert_true(busy.asked >= 5);
    /* A redeploy keeps the ports without asking again, even when the callback now refuses. */
    busy_ports all_busy = {{10002, 10004, 0, 0}, 0};
    assert_int_equal(
        mcp_registry_put_service(reg, &svc, 10000, 10010, port_free_cb, &all_busy, &err), 0);
    assert_int_equal(svc.components[0].routes[0].host_port, 10002);
    assert_int_equal(svc.components[0].routes[1].host_port, 10004);
    assert_int_equal(all_busy.asked, 0);
    mcp_service_free(&svc);
    mcp_registry_close(reg);
}

static void test_range_exhaustion_is_an_error(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_service a = one_route_service("a", "r"), b = one_route_service("b", "r");
    put(reg, &a, 10000, 10001);
    put(reg, &b, 10000, 10001);
    mcp_service c = {0};
    c.name = mcp_strdup("c");
    mcp_component *comp = add_component(&c, "c", "img");
    add_route(comp, "r", 80, "l4", NULL);
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_put_service(reg, &c, 10000, 10001, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "10000-10001"));
    assert_non_null(strstr(err.msg, "c/c/r"));
    /* The failed put left nothing behind. */
    mcp_service got;
    assert_int_equal(mcp_registry_get_service(reg, "c", &got, &err), 0);
    /* An earlier definition survives a failed redeploy intact. */
    mcp_service a2 = {0};
    a2.name = mcp_strdup("a");
    mcp_component *ac = add_component(&a2, "a", "img:new");
    add_route(ac, "r", 80, "l4", NULL);
    add_route(ac, "extra", 81, "l4", NULL);
    assert_int_equal(mcp_registry_put_service(reg, &a2, 10000, 10001, NULL, NULL, &err), -1);
    assert_int_equal(mcp_registry_get_service(reg, "a", &got, &err), 1);
    assert_string_equal(got.components[0].image, "img");
    assert_int_equal(got.components[0].n_routes, 1);
    mcp_service_free(&got);
    /* A bad range is refused. */
    assert_int_equal(mcp_registry_put_service(reg, &c, 20, 10, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "20-10"));
    mcp_service_free(&a);
    mcp_service_free(&a2);
    mcp_service_free(&b);
    mcp_service_free(&c);
    mcp_registry_close(reg);
}

static void test_delete_frees_ports(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_service a = one_route_service("a", "r");
    put(reg, &a, 10000, 10000);
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_delete_service(reg, "a", &err), 1);
    assert_int_equal(mcp_registry_delete_service(reg, "a", &err), 0);
    mcp_service b = one_route_service("b", "r");
    put(reg, &b, 10000, 10000);
    assert_int_equal(b.components[0].routes[0].host_port, 10000);
    mcp_service got;
    assert_int_equal(mcp_registry_get_service(reg, "a", &got, &err), 0);
    mcp_service_free(&a);
    mcp_service_free(&b);
    mcp_registry_close(reg);
}

static void test_put_refuses_invalid_names(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_error err = {{0}};
    mcp_service svc = {0};
    svc.name = mcp_strdup("Bad Name");
    assert_int_equal(mcp_registry_put_service(reg, &svc, 10000, 10010, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "invalid service name"));
    mcp_service_free(&svc);

    svc = one_route_service("ok", "r");
    free(svc.components[0].routes[0].name);
    svc.components[0].routes[0].name = NULL;
    assert_int_equal(mcp_registry_put_service(reg, &svc, 10000, 10010, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "route 0"));
    free(svc.components[0].image);
    svc.components[0].image = NULL;
    assert_int_equal(mcp_registry_put_service(reg, &svc, 10000, 10010, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "component 0"));
    mcp_service got;
    assert_int_equal(mcp_registry_get_service(reg, "ok", &got, &err), 0);
    mcp_service_free(&svc);
    mcp_registry_close(reg);
}

static void test_two_handles_share_the_file(void **state)
{
    mcp_registry *writer = open_reg(state), *reader = open_reg(state);
    mcp_service a = one_route_service("a", "r");
    put(writer, &a, 10000, 10010);
    mcp_service got;
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_get_service(reader, "a", &got, &err), 1);
    assert_int_equal(got.components[0].routes[0].host_port, 10000);
    mcp_service_free(&got);
    /* The second handle allocates around the first one's ports. */
    mcp_service b = one_route_service("b", "r");
    put(reader, &b, 10000, 10010);
    assert_int_equal(b.components[0].routes[0].host_port, 10001);
    mcp_service_free(&a);
    mcp_service_free(&b);
    mcp_registry_close(reader);
    mcp_registry_close(writer);
}

/* ---- state ---- */

static void test_set_desired_state_and_active(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_service svc;
    full_service(&svc);
    put(reg, &svc, 10000, 10100);
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_set_desired_state(reg, "metacrypt", "worker", "stopped", &err),
                     1);
    mcp_service got;
    assert_int_equal(mcp_registry_get_service(reg, "metacrypt", &got, &err), 1);
    assert_string_equal(got.components[0].desired_state, "stopped");
    assert_string_equal(got.components[1].desired_state, "stopped");
    mcp_service_free(&got);

    assert_int_equal(mcp_registry_set_desired_state(reg, "metacrypt", NULL, "running", &err), 2);
    assert_int_equal(mcp_registry_get_service(reg, "metacrypt", &got, &err), 1);
    assert_string_equal(got.components[0].desired_state, "running");
    assert_string_equal(got.components[1].desired_state, "running");
    mcp_service_free(&got);

    assert_int_equal(mcp_registry_set_desired_state(reg, "metacrypt", "nope", "running", &err), 0);
    assert_int_equal(mcp_registry_set_desired_state(reg, "nope", NULL, "running", &err), 0);
    assert_int_equal(mcp_registry_set_desired_state(reg, "metacrypt", NULL, "paused", &err), -1);
    assert_non_null(strstr(err.msg, "paused"));

    assert_int_equal(mcp_registry_set_active(reg, "metacrypt", true, &err), 1);
    assert_int_equal(mcp_registry_set_active(reg, "nope", true, &err), 0);
    assert_int_equal(mcp_registry_get_service(reg, "metacrypt", &got, &err), 1);
    assert_true(got.active);
    mcp_service_free(&got);
    mcp_service_free(&svc);
    mcp_registry_close(reg);
}

static void test_events_newest_first(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_add_event(reg, "a", "api", "deployed", "first", &err), 0);
    assert_int_equal(mcp_registry_add_event(reg, "b", NULL, "started", "second", &err), 0);
    assert_int_equal(mcp_registry_add_event(reg, "a", NULL, "failed", "third", &err), 0);
    mcp_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(mcp_registry_list_events(reg, NULL, 10, &ev, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(ev[0].message, "third");
    assert_string_equal(ev[1].message, "second");
    assert_string_equal(ev[2].message, "first");
    assert_null(ev[1].component);
    assert_string_equal(ev[2].component, "api");
    assert_string_equal(ev[2].kind, "deployed");
    assert_true(ev[0].id > ev[1].id);
    assert_true(ev[0].time_ms > 1600000000000LL); /* wall clock, not monotonic */
    mcp_events_free(ev, n);

    assert_int_equal(mcp_registry_list_events(reg, "a", 10, &ev, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ev[0].message, "third");
    assert_string_equal(ev[1].message, "first");
    mcp_events_free(ev, n);

    assert_int_equal(mcp_registry_list_events(reg, NULL, 1, &ev, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].message, "third");
    mcp_events_free(ev, n);

    assert_int_equal(mcp_registry_list_events(reg, "none", 10, &ev, &n, &err), 0);
    assert_int_equal(n, 0);
    mcp_events_free(ev, n);
    mcp_registry_close(reg);
}

/* ---- snapshot ---- */

static void test_snapshot_is_an_openable_copy(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_service svc;
    full_service(&svc);
    put(reg, &svc, 10000, 10100);
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_add_event(reg, "metacrypt", NULL, "deployed", "v1", &err), 0);
    char *copy = path_in(state, "copy.db");
    assert_int_equal(mcp_registry_snapshot(reg, copy, &err), 0);
    /* Refuses to overwrite. */
    assert_int_equal(mcp_registry_snapshot(reg, copy, &err), -1);
    assert_non_null(strstr(err.msg, "exists"));

    /* Later changes to the original do not reach the copy. */
    assert_int_equal(mcp_registry_delete_service(reg, "metacrypt", &err), 1);

    mcp_registry *snap = NULL;
    if (mcp_registry_open(copy, &snap, &err) != 0)
        fail_msg("open snapshot: %s", err.msg);
    mcp_service got;
    assert_int_equal(mcp_registry_get_service(snap, "metacrypt", &got, &err), 1);
    assert_service_equal(&svc, &got);
    mcp_service_free(&got);
    mcp_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(mcp_registry_list_events(snap, NULL, 10, &ev, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].message, "v1");
    mcp_events_free(ev, n);
    mcp_registry_close(snap);

    char *bad = path_in(state, "no-such-dir/x.db");
    assert_int_equal(mcp_registry_snapshot(reg, bad, &err), -1);
    assert_non_null(strstr(err.msg, "no-such-dir"));
    free(bad);
    free(copy);
    mcp_service_free(&svc);
    mcp_registry_close(reg);
}

/* ---- reads: list against get, the statement cache ---- */

/* A deterministic pseudo-random sequence (no libc rand state shared with others). */
static unsigned next_rand(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 16) & 0x7fff;
}

/* A service whose component and route names are out of alphabetical order,
 * so only the stored positions give the order back. variant changes the shape. */
static void churn_service(mcp_service *svc, const char *name, unsigned variant)
{
    static const char *const comp_names[] = {"zeta", "alpha", "mid", "beta"};
    static const char *const route_names[] = {"z", "a", "m"};
    memset(svc, 0, sizeof *svc);
    svc->name = mcp_strdup(name);
    assert_non_null(svc->name);
    svc->active = variant % 2 == 0;
    size_t n_comps = variant % 4; /* 0..3 components, some services have none */
    for (size_t i = 0; i < n_comps; i++) {
        char image[64];
        snprintf(image, sizeof image, "localhost/%s-%zu:v%u", name, i, variant);
        mcp_component *c = add_component(svc, comp_names[(i + variant) % 4], image);
        if (variant % 3 == 0) {
            push(&c->ports, "9000");
            push(&c->ports, "127.0.0.1:18443:8443/tcp");
        }
        if (variant % 5 == 1)
            push(&c->cmd, "say \"hi\", then ünïcode");
        push(&c->env, "B=2");
        push(&c->env, "A=1");
        if (i == 1)
            c->network = mcp_strdup("mcpnet");
        size_t n_routes = (variant + i) % 4;
        for (size_t j = 0; j < n_routes; j++)
            add_route(c, route_names[j], (int)(8000 + j), j % 2 ? "l7" : "l4",
                      j % 2 ? "host.example.net" : NULL);
    }
}

static void assert_list_matches_gets(mcp_registry *reg, mcp_service *model, bool *live,
                                     size_t n_names)
{
    mcp_service *all = NULL;
    size_t n = 0;
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_list_services(reg, &all, &n, &err), 0);
    size_t expected = 0;
    for (size_t i = 0; i < n_names; i++)
        expected += live[i];
    assert_int_equal(n, expected);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            assert_true(strcmp(all[i - 1].name, all[i].name) < 0);
        mcp_service got;
        assert_int_equal(mcp_registry_get_service(reg, all[i].name, &got, &err), 1);
        assert_service_equal(&got, &all[i]);
        mcp_service_free(&got);
        /* And both are what was stored last, host ports included. */
        size_t k = 0;
        while (k < n_names && strcmp(model[k].name, all[i].name) != 0)
            k++;
        assert_true(k < n_names);
        assert_true(live[k]);
        assert_service_equal(&model[k], &all[i]);
    }
    mcp_services_free(all, n);
}

static void test_list_matches_gets_after_churn(void **state)
{
    enum { N_NAMES = 40, ROUNDS = 300 };
    mcp_registry *reg = open_reg(state);
    mcp_service model[N_NAMES];
    bool live[N_NAMES] = {false};
    unsigned seed = 12345;
    /* Names inserted in scrambled order, a mix of lengths and prefixes. */
    for (size_t i = 0; i < N_NAMES; i++) {
        char name[32];
        snprintf(name, sizeof name, "%c%zu-svc", "qbzam"[i % 5], (i * 7) % N_NAMES);
        churn_service(&model[i], name, 0);
    }
    mcp_error err = {{0}};
    for (int round = 0; round < ROUNDS; round++) {
        size_t k = next_rand(&seed) % N_NAMES;
        if (live[k] && next_rand(&seed) % 3 == 0) {
            assert_int_equal(mcp_registry_delete_service(reg, model[k].name, &err), 1);
            live[k] = false;
        } else {
            char *name = mcp_strdup(model[k].name);
            assert_non_null(name);
            mcp_service_free(&model[k]);
            churn_service(&model[k], name, next_rand(&seed));
            free(name);
            put(reg, &model[k], 20000, 21000);
            live[k] = true;
        }
        if (round % 50 == 49)
            assert_list_matches_gets(reg, model, live, N_NAMES);
    }
    /* Desired state and active changes show in both reads too. */
    for (size_t i = 0; i < N_NAMES; i++) {
        if (!live[i] || model[i].n_components == 0)
            continue;
        assert_int_equal(mcp_registry_set_desired_state(
                             reg, model[i].name, model[i].components[0].name, "stopped", &err),
                         1);
        free(model[i].components[0].desired_state);
        model[i].components[0].desired_state = mcp_strdup("stopped");
        assert_int_equal(mcp_registry_set_active(reg, model[i].name, !model[i].active, &err), 1);
        model[i].active = !model[i].active;
    }
    assert_list_matches_gets(reg, model, live, N_NAMES);
    /* A second handle (fresh statement cache) reads the same. */
    mcp_registry *other = open_reg(state);
    assert_list_matches_gets(other, model, live, N_NAMES);
    mcp_registry_close(other);
    for (size_t i = 0; i < N_NAMES; i++)
        mcp_service_free(&model[i]);
    mcp_registry_close(reg);
}

/* Lists are stored as JSON; plain ones are read without the JSON parser, the
 * rest with it: both must give back exactly what was stored. */
static void test_lists_round_trip_odd_strings(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_service svc = {0};
    svc.name = mcp_strdup("odd");
    add_component(&svc, "odd", "img"); /* components[0]; later adds move the array */
    const char *odd[] = {"a,b",       "]", "[",       "\",\"",   "x\"y",        "back\\slash",
                         "tab\there", "",  "ünïcode", "[\"x\"]", "line\nbreak", "~del\x7f"};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        push(&svc.components[0].cmd, odd[i]);
        /* Alone in a list too, so no other string sends the list to the parser. */
        char name[16];
        snprintf(name, sizeof name, "c%zu", i);
        mcp_component *alone = add_component(&svc, name, "img");
        push(&alone->volumes, odd[i]); /* the registry does not validate specs */
        push(&alone->ports, "80");
        push(&alone->ports, odd[i]);
    }
    push(&svc.components[0].env, ""); /* a list holding one empty string is not an empty list */
    mcp_component *plain = add_component(&svc, "plain", "img");
    push(&plain->cmd, "only");
    push(&plain->cmd, "plain ascii, with spaces [and] {braces}");
    put(reg, &svc, 10000, 10010);

    mcp_service got;
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_get_service(reg, "odd", &got, &err), 1);
    assert_service_equal(&svc, &got);
    assert_int_equal(got.components[0].env.n, 1);
    assert_string_equal(got.components[0].env.v[0], "");
    assert_int_equal(got.components[0].ports.n, 0);
    mcp_service_free(&got);
    mcp_service *all = NULL;
    size_t n = 0;
    assert_int_equal(mcp_registry_list_services(reg, &all, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_service_equal(&svc, &all[0]);
    mcp_services_free(all, n);
    mcp_service_free(&svc);
    mcp_registry_close(reg);
}

static sqlite3 *raw_open(void **state);
static void raw_exec(sqlite3 *db, const char *sql);

/* A list column edited by hand into something that is not a JSON array of
 * valid strings makes the service unreadable, for get and list alike. */
static void test_unreadable_lists_refused(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_service svc = one_route_service("svc", "r");
    put(reg, &svc, 10000, 10010);
    sqlite3 *db = raw_open(state);
    const char *bad[] = {
        "UPDATE components SET cmd = '[\"a\tb\"]'",       /* raw control character */
        "UPDATE components SET cmd = '[\"\xff\xfe\"]'",   /* not UTF-8 */
        "UPDATE components SET cmd = '[\"a\",]'",         /* trailing comma */
        "UPDATE components SET cmd = '[\"a\" \"b\"]'",    /* no comma */
        "UPDATE components SET cmd = '[1]'",              /* not a string */
        "UPDATE components SET cmd = '{}'",               /* not an array */
        "UPDATE components SET cmd = '[\"a\"] x'",        /* trailing garbage */
        "UPDATE components SET cmd = '[\"unterminated]'", /* no closing quote */
    };
    mcp_error err = {{0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        raw_exec(db, bad[i]);
        mcp_service got;
        if (mcp_registry_get_service(reg, "svc", &got, &err) != -1)
            fail_msg("accepted: %s", bad[i]);
        assert_non_null(strstr(err.msg, "unreadable component of service 'svc'"));
        mcp_service *all = NULL;
        size_t n = 0;
        assert_int_equal(mcp_registry_list_services(reg, &all, &n, &err), -1);
        assert_null(all);
        assert_non_null(strstr(err.msg, "unreadable component of service 'svc'"));
    }
    /* Whitespace is valid JSON: the full parser reads it. */
    raw_exec(db, "UPDATE components SET cmd = ' [ \"a\" , \"b\" ] '");
    mcp_service got;
    assert_int_equal(mcp_registry_get_service(reg, "svc", &got, &err), 1);
    assert_int_equal(got.components[0].cmd.n, 2);
    assert_string_equal(got.components[0].cmd.v[1], "b");
    mcp_service_free(&got);
    sqlite3_close(db);
    mcp_service_free(&svc);
    mcp_registry_close(reg);
}

static sqlite3 *raw_open(void **state)
{
    char *p = path_in(state, "reg.db");
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    free(p);
    return db;
}

static void raw_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
}

static size_t count_services(mcp_registry *reg)
{
    mcp_service *all = NULL;
    size_t n = 0;
    mcp_error err = {{0}};
    if (mcp_registry_list_services(reg, &all, &n, &err) != 0)
        fail_msg("list: %s", err.msg);
    mcp_services_free(all, n);
    return n;
}

/* Another connection holds the write lock: writes fail with SQLITE_BUSY after
 * the busy timeout, reads go on (WAL) and see only committed data, and the
 * handle (its cached statements, its transaction state) works once the lock
 * is gone. Takes the busy timeout (5 s). */
static void test_survives_busy_from_other_connection(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_service a = one_route_service("a", "r");
    put(reg, &a, 10000, 10010);
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_add_event(reg, "a", NULL, "deployed", "v1", &err), 0);

    sqlite3 *db = raw_open(state);
    raw_exec(db, "BEGIN IMMEDIATE;"
                 "INSERT INTO events (time_ms, service, kind, message) VALUES (1, 'a', 'x', 'y');"
                 "DELETE FROM services WHERE name = 'a';");
    assert_int_equal(count_services(reg), 1); /* uncommitted delete unseen */
    mcp_service got;
    assert_int_equal(mcp_registry_get_service(reg, "a", &got, &err), 1);
    mcp_service_free(&got);

    mcp_service b = one_route_service("b", "r");
    assert_int_equal(mcp_registry_put_service(reg, &b, 10000, 10010, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "locked"));
    assert_int_equal(mcp_registry_add_event(reg, "a", NULL, "x", "z", &err), -1);
    assert_non_null(strstr(err.msg, "locked"));
    mcp_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(mcp_registry_list_events(reg, NULL, 10, &ev, &n, &err), 0);
    assert_int_equal(n, 1);
    mcp_events_free(ev, n);

    raw_exec(db, "ROLLBACK");
    put(reg, &b, 10000, 10010);
    assert_int_equal(b.components[0].routes[0].host_port, 10001);
    assert_int_equal(count_services(reg), 2);
    assert_int_equal(mcp_registry_get_service(reg, "b", &got, &err), 1);
    assert_service_equal(&b, &got);
    mcp_service_free(&got);
    assert_int_equal(mcp_registry_add_event(reg, "b", NULL, "deployed", "v1", &err), 0);
    assert_int_equal(mcp_registry_list_events(reg, NULL, 10, &ev, &n, &err), 0);
    assert_int_equal(n, 2);
    mcp_events_free(ev, n);

    /* A committed change by the other connection is seen by the next read. */
    raw_exec(db, "DELETE FROM services WHERE name = 'a'");
    assert_int_equal(count_services(reg), 1);
    assert_int_equal(mcp_registry_get_service(reg, "a", &got, &err), 0);
    sqlite3_close(db);
    mcp_service_free(&a);
    mcp_service_free(&b);
    mcp_registry_close(reg);
}

/* A statement that fails (a trigger refusing a row mid-put, a table dropped
 * under the handle) is reported, and the cached statements work afterwards. */
static void test_survives_failed_statements(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_service a = one_route_service("a", "r");
    put(reg, &a, 10000, 10010);
    mcp_error err = {{0}};
    mcp_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(mcp_registry_list_events(reg, NULL, 10, &ev, &n, &err), 0);
    mcp_events_free(ev, n);

    sqlite3 *db = raw_open(state);
    raw_exec(db, "CREATE TRIGGER refuse_bad BEFORE INSERT ON routes WHEN NEW.name = 'bad' "
                 "BEGIN SELECT RAISE(ABORT, 'refused by test'); END");
    mcp_service a2 = one_route_service("a", "r");
    add_route(&a2.components[0], "bad", 81, "l4", NULL);
    free(a2.components[0].image);
    a2.components[0].image = mcp_strdup("img:v2");
    assert_int_equal(mcp_registry_put_service(reg, &a2, 10000, 10010, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "refused by test"));
    assert_non_null(strstr(err.msg, "a/a/bad"));
    /* Rolled back whole: the old definition is intact, the next put works. */
    mcp_service got;
    assert_int_equal(mcp_registry_get_service(reg, "a", &got, &err), 1);
    assert_service_equal(&a, &got);
    mcp_service_free(&got);
    free(a2.components[0].routes[1].name);
    a2.components[0].routes[1].name = mcp_strdup("good");
    put(reg, &a2, 10000, 10010);
    assert_int_equal(a2.components[0].routes[0].host_port, a.components[0].routes[0].host_port);
    assert_int_equal(mcp_registry_get_service(reg, "a", &got, &err), 1);
    assert_service_equal(&a2, &got);
    mcp_service_free(&got);

    /* The events table goes away and comes back under the handle. */
    raw_exec(db, "DROP TABLE events");
    assert_int_equal(mcp_registry_list_events(reg, NULL, 10, &ev, &n, &err), -1);
    assert_non_null(strstr(err.msg, "events"));
    assert_int_equal(mcp_registry_add_event(reg, "a", NULL, "x", "y", &err), -1);
    assert_int_equal(count_services(reg), 1);
    raw_exec(db, "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER "
                 "NOT NULL, service TEXT NOT NULL, component TEXT, kind TEXT NOT NULL, message "
                 "TEXT NOT NULL, exit_code INTEGER)");
    assert_int_equal(mcp_registry_add_event(reg, "a", "a", "deployed", "back", &err), 0);
    assert_int_equal(mcp_registry_list_events(reg, "a", 10, &ev, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].message, "back");
    mcp_events_free(ev, n);
    sqlite3_close(db);
    mcp_service_free(&a);
    mcp_service_free(&a2);
    mcp_registry_close(reg);
}

/* Cached statements are reset after each call: an idle handle holds no read
 * snapshot, so another connection can checkpoint and truncate the WAL. */
static void test_idle_handle_holds_no_snapshot(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_service svc;
    full_service(&svc);
    put(reg, &svc, 10000, 10100);
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_add_event(reg, "metacrypt", NULL, "deployed", "v1", &err), 0);
    assert_int_equal(mcp_registry_add_event(reg, "metacrypt", NULL, "started", "v1", &err), 0);
    mcp_service got;
    assert_int_equal(mcp_registry_get_service(reg, "metacrypt", &got, &err), 1);
    mcp_service_free(&got);
    assert_int_equal(count_services(reg), 1);
    mcp_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(mcp_registry_list_events(reg, NULL, 1, &ev, &n, &err), 0);
    mcp_events_free(ev, n);

    sqlite3 *db = raw_open(state);
    raw_exec(db, "SELECT count(*) FROM services"); /* opens the WAL on this connection */
    int log_frames = -1, checkpointed = -1;
    assert_int_equal(
        sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log_frames, &checkpointed),
        SQLITE_OK);
    assert_int_equal(log_frames, 0); /* truncated: no reader was in the way */
    sqlite3_close(db);
    assert_int_equal(count_services(reg), 1);
    mcp_service_free(&svc);
    mcp_registry_close(reg);
}

/* ---- refusals: the file stays byte-identical ---- */

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static char *read_bytes(const char *path, size_t *len)
{
    char *b = mcp_read_file(path, len);
    assert_non_null(b);
    return b;
}

/* Opens path, expects refusal with a message holding each needle, and checks the bytes did not
 * change. */
static void assert_refused_untouched(const char *path, const char *needle1, const char *needle2)
{
    size_t before_len = 0, after_len = 0;
    char *before = read_bytes(path, &before_len);
    mcp_registry *reg = NULL;
    mcp_error err = {{0}};
    int rc = mcp_registry_open(path, &reg, &err);
    if (rc == 0) {
        mcp_registry_close(reg);
        fail_msg("%s was opened, expected a refusal", path);
    }
    assert_null(reg);
    assert_non_null(strstr(err.msg, path));
    if (!strstr(err.msg, needle1) || (needle2 && !strstr(err.msg, needle2)))
        fail_msg("message \"%s\" lacks \"%s\"/\"%s\"", err.msg, needle1, needle2 ? needle2 : "");
    char *after = read_bytes(path, &after_len);
    assert_int_equal(before_len, after_len);
    assert_memory_equal(before, after, before_len);
    free(before);
    free(after);
}

static void test_refuses_garbage_file(void **state)
{
    char *p = path_in(state, "garbage.db");
    const char text[] = "this is not a database at all, just some text\n";
    write_bytes(p, text, sizeof text - 1);
    assert_refused_untouched(p, "not a SQLite database (file is not a database)", NULL);
    /* A file shorter than the header too. */
    write_bytes(p, "SQLite", 6);
    assert_refused_untouched(p, "not a SQLite database", NULL);
    free(p);
}

static void test_refuses_truncated_database(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_service svc;
    full_service(&svc);
    put(reg, &svc, 10000, 10100);
    char *copy = path_in(state, "copy.db");
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_snapshot(reg, copy, &err), 0);
    mcp_registry_close(reg);
    size_t len = 0;
    char *bytes = read_bytes(copy, &len);
    assert_true(len > 4096);
    char *trunc = path_in(state, "trunc.db");
    /* Keep the header page but cut the rest: the schema points at missing pages. */
    write_bytes(trunc, bytes, len / 2 + 100);
    assert_refused_untouched(trunc, "corrupt", NULL);
    free(bytes);
    free(trunc);
    free(copy);
    mcp_service_free(&svc);
}

static void make_sqlite(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s", msg);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static void test_refuses_foreign_database(void **state)
{
    char *p = path_in(state, "foreign.db");
    make_sqlite(p, "CREATE TABLE x (a); CREATE TABLE y (b); INSERT INTO x VALUES (1);");
    assert_refused_untouched(p, "not an mcp-agent registry (found tables: x, y)", NULL);
    /* Another application that also uses user_version. */
    unlink(p);
    make_sqlite(p, "CREATE TABLE services (a); PRAGMA user_version = 1;");
    assert_refused_untouched(p, "not an mcp-agent registry (found tables: services)", NULL);
    free(p);
}

static void test_refuses_newer_schema(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_registry_close(reg);
    char *p = path_in(state, "reg.db");
    /* Bump the version as a newer agent would (after checkpointing the WAL away). */
    make_sqlite(p, "PRAGMA user_version = 999; PRAGMA journal_mode = DELETE;");
    assert_refused_untouched(p, "newer", "999");
    free(p);
}

static void test_creates_fresh_and_reopens(void **state)
{
    char *p = path_in(state, "reg.db");
    /* An empty file counts as a fresh database. */
    write_bytes(p, "", 0);
    mcp_registry *reg = NULL;
    mcp_error err = {{0}};
    assert_int_equal(mcp_registry_open(p, &reg, &err), 0);
    mcp_registry_close(reg);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_true(sqlite3_column_int(st, 0) >= 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
    /* Reopening an existing registry works and does not re-run migrations. */
    assert_int_equal(mcp_registry_open(p, &reg, &err), 0);
    mcp_registry_close(reg);
    /* A missing directory is a clear error. */
    char *bad = path_in(state, "missing/reg.db");
    assert_int_equal(mcp_registry_open(bad, &reg, &err), -1);
    assert_non_null(strstr(err.msg, bad));
    free(bad);
    free(p);
}

/* ---- events with exit codes, following, trimming ---- */

static void test_events_exit_code_since_and_after(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_error err = {{0}};
    int code = 137;
    assert_int_equal(mcp_registry_add_event_exit(reg, "a", "api", "died", "killed", &code, &err),
                     0);
    assert_int_equal(mcp_registry_add_event(reg, "b", NULL, "restarted", "again", &err), 0);
    code = 0;
    assert_int_equal(mcp_registry_add_event_exit(reg, "a", "api", "died", "clean", &code, &err), 0);
    mcp_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(mcp_registry_list_events(reg, NULL, 10, &ev, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_true(ev[0].has_exit_code);
    assert_int_equal(ev[0].exit_code, 0);
    assert_false(ev[1].has_exit_code);
    assert_true(ev[2].has_exit_code);
    assert_int_equal(ev[2].exit_code, 137);
    int64_t first_id = ev[2].id, first_ms = ev[2].time_ms;
    mcp_events_free(ev, n);

    /* since: a time in the future finds nothing, the first event's time finds all */
    mcp_event_query q = {.limit = 10, .since_ms = first_ms + 60000};
    assert_int_equal(mcp_registry_query_events(reg, &q, &ev, &n, &err), 0);
    assert_int_equal(n, 0);
    mcp_events_free(ev, n);
    q.since_ms = first_ms;
    assert_int_equal(mcp_registry_query_events(reg, &q, &ev, &n, &err), 0);
    assert_int_equal(n, 3);
    mcp_events_free(ev, n);

    /* after: oldest first, above the id, of one service or all */
    mcp_event_query f = {.limit = 10, .after_id = first_id};
    assert_int_equal(mcp_registry_query_events(reg, &f, &ev, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ev[0].message, "again");
    assert_string_equal(ev[1].message, "clean");
    mcp_events_free(ev, n);
    f.service = "a";
    assert_int_equal(mcp_registry_query_events(reg, &f, &ev, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].message, "clean");
    mcp_events_free(ev, n);
    mcp_event_query all = {.limit = -1, .after = true};
    assert_int_equal(mcp_registry_query_events(reg, &all, &ev, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(ev[0].message, "killed");
    mcp_events_free(ev, n);
    mcp_registry_close(reg);
}

static int64_t raw_count(void **state, const char *sql);

static void test_events_trimmed_to_keep(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_error err = {{0}};
    for (int i = 0; i < 30; i++)
        assert_int_equal(mcp_registry_add_event(reg, "a", NULL, "x", "old", &err), 0);
    assert_int_equal(raw_count(state, "SELECT count(*) FROM events"), 30);
    /* Setting keep trims at once; with keep < 100 every insert trims. */
    assert_int_equal(mcp_registry_set_keep_events(reg, 5, &err), 0);
    assert_int_equal(raw_count(state, "SELECT count(*) FROM events"), 5);
    char msg[16];
    for (int i = 0; i < 12; i++) {
        snprintf(msg, sizeof msg, "new%d", i);
        assert_int_equal(mcp_registry_add_event(reg, "a", NULL, "x", msg, &err), 0);
        assert_true(raw_count(state, "SELECT count(*) FROM events") <= 5);
    }
    mcp_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(mcp_registry_list_events(reg, NULL, -1, &ev, &n, &err), 0);
    assert_int_equal(n, 5);
    assert_string_equal(ev[0].message, "new11");
    assert_string_equal(ev[4].message, "new7");
    mcp_events_free(ev, n);
    /* A large keep trims in batches: at most keep + keep/100 rows. */
    assert_int_equal(mcp_registry_set_keep_events(reg, 1000, &err), 0);
    for (int i = 0; i < 1100; i++)
        assert_int_equal(mcp_registry_add_event(reg, "a", NULL, "x", "bulk", &err), 0);
    int64_t rows = raw_count(state, "SELECT count(*) FROM events");
    assert_true(rows >= 1000 && rows <= 1010);
    assert_int_equal(mcp_registry_set_keep_events(reg, 0, &err), -1);
    mcp_registry_close(reg);
}

/* ---- supervision ---- */

static void test_supervision_upsert_and_clear(void **state)
{
    mcp_registry *reg = open_reg(state);
    mcp_service a = one_route_service("a", "r");
    add_component(&a, "worker", "img");
    put(reg, &a, 10000, 10010);
    mcp_error err = {{0}};
    mcp_supervision got;
    assert_int_equal(mcp_registry_get_supervision(reg, "a", "a", &got, &err), 0);

    /* First write creates the row with only the given fields. */
    mcp_supervision u = {.service = "a",
                         .component = "a",
                         .restarts = 2,
                         .has_last_exit_code = true,
                         .last_exit_code = 1,
                         .state = "backoff",
                         .has_backoff_until = true,
                         .backoff_until = 1700000000.5};
    assert_int_equal(mcp_registry_set_supervision(reg, &u,
                                                  MCP_SUP_RESTARTS | MCP_SUP_LAST_EXIT_CODE |
                                                      MCP_SUP_STATE | MCP_SUP_BACKOFF_UNTIL,
                                                  &err),
                     1);
    assert_int_equal(mcp_registry_get_supervision(reg, "a", "a", &got, &err), 1);
    assert_int_equal(got.restarts, 2);
    assert_true(got.has_last_exit_code);
    assert_int_equal(got.last_exit_code, 1);
    assert_string_equal(got.state, "backoff");
    assert_true(got.has_backoff_until);
    assert_true(got.backoff_until == 1700000000.5);
    assert_null(got.reason);
    assert_false(got.has_started_at);
    assert_true(got.updated_at > 1600000000.0);
    mcp_supervision_free(&got);

    /* A later write changes only its fields; a set NULL field is cleared. */
    mcp_supervision v = {.service = "a",
                         .component = "a",
                         .state = "running",
                         .has_started_at = true,
                         .started_at = 1700000100.25};
    assert_int_equal(mcp_registry_set_supervision(
                         reg, &v, MCP_SUP_STATE | MCP_SUP_BACKOFF_UNTIL | MCP_SUP_STARTED_AT, &err),
                     1);
    assert_int_equal(mcp_registry_get_supervision(reg, "a", "a", &got, &err), 1);
    assert_int_equal(got.restarts, 2);
    assert_int_equal(got.last_exit_code, 1);
    assert_string_equal(got.state, "running");
    assert_false(got.has_backoff_until);
    assert_true(got.started_at == 1700000100.25);
    mcp_supervision_free(&got);

    /* Unknown components are refused without a row. */
    mcp_supervision bad = {.service = "a", .component = "nope", .state = "running"};
    assert_int_equal(mcp_registry_set_supervision(reg, &bad, MCP_SUP_STATE, &err), 0);
    bad.service = "zzz";
    assert_int_equal(mcp_registry_set_supervision(reg, &bad, MCP_SUP_STATE, &err), 0);

    mcp_supervision w = {.service = "a", .component = "worker", .reason = "gave up"};
    assert_int_equal(mcp_registry_set_supervision(reg, &w, MCP_SUP_REASON, &err), 1);
    mcp_supervision *rows = NULL;
    size_t n = 0;
    assert_int_equal(mcp_registry_list_supervision(reg, &rows, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].component, "a");
    assert_string_equal(rows[1].component, "worker");
    assert_string_equal(rows[1].reason, "gave up");
    assert_int_equal(rows[1].restarts, 0);
    mcp_supervisions_free(rows, n);

    /* A redeploy keeps the rows of components it keeps, drops the others. */
    mcp_service a2 = one_route_service("a", "r");
    put(reg, &a2, 10000, 10010);
    assert_int_equal(mcp_registry_get_supervision(reg, "a", "a", &got, &err), 1);
    assert_int_equal(got.restarts, 2);
    mcp_supervision_free(&got);
    assert_int_equal(mcp_registry_get_supervision(reg, "a", "worker", &got, &err), 0);

    /* clear one, then the service's rows go with the service */
    assert_int_equal(mcp_registry_clear_supervision(reg, "a", "a", &err), 1);
    assert_int_equal(mcp_registry_get_supervision(reg, "a", "a", &got, &err), 0);
    assert_int_equal(mcp_registry_set_supervision(reg, &u, MCP_SUP_RESTARTS, &err), 1);
    assert_int_equal(mcp_registry_delete_service(reg, "a", &err), 1);
    assert_int_equal(raw_count(state, "SELECT count(*) FROM supervision"), 0);
    assert_int_equal(mcp_registry_delete_service(reg, "a", &err), 0);
    mcp_service_free(&a);
    mcp_service_free(&a2);
    mcp_registry_close(reg);
}

/* A registry written by the previous schema version (1) opens, migrates and
 * keeps its services, routes and events. */
static void test_migrates_version_1(void **state)
{
    char *p = path_in(state, "reg.db");
    make_sqlite(p,
                "CREATE TABLE services (name TEXT PRIMARY KEY NOT NULL, active INTEGER NOT NULL "
                "DEFAULT 1, updated_ms INTEGER NOT NULL);"
                "CREATE TABLE components (service TEXT NOT NULL REFERENCES services(name) ON "
                "DELETE CASCADE, name TEXT NOT NULL, position INTEGER NOT NULL, image TEXT NOT "
                "NULL, network TEXT, user TEXT, restart TEXT, ports TEXT NOT NULL DEFAULT '[]', "
                "volumes TEXT NOT NULL DEFAULT '[]', cmd TEXT NOT NULL DEFAULT '[]', env TEXT NOT "
                "NULL DEFAULT '[]', desired_state TEXT NOT NULL DEFAULT 'running', health_check "
                "TEXT, health_port INTEGER NOT NULL DEFAULT 0, health_path TEXT, PRIMARY KEY "
                "(service, name));"
                "CREATE TABLE routes (service TEXT NOT NULL, component TEXT NOT NULL, name TEXT "
                "NOT NULL, position INTEGER NOT NULL, port INTEGER NOT NULL DEFAULT 0, mode TEXT "
                "NOT NULL DEFAULT 'l4', hostname TEXT, host_port INTEGER NOT NULL UNIQUE, PRIMARY "
                "KEY (service, component, name), FOREIGN KEY (service, component) REFERENCES "
                "components(service, name) ON DELETE CASCADE);"
                "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT "
                "NULL, service TEXT NOT NULL, component TEXT, kind TEXT NOT NULL, message TEXT NOT "
                "NULL);"
                "CREATE INDEX events_by_service ON events(service, id);"
                "INSERT INTO services VALUES ('web', 1, 1);"
                "INSERT INTO components (service, name, position, image, restart, ports, "
                "health_check, health_port) VALUES ('web', 'api', 0, 'img:v1', 'always', "
                "'[\"8080\"]', 'tcp', 8080);"
                "INSERT INTO routes VALUES ('web', 'api', 'http', 0, 8080, 'l4', NULL, 10042);"
                "INSERT INTO events (time_ms, service, component, kind, message) VALUES "
                "(1700000000000, 'web', 'api', 'deployed', 'v1');"
                "PRAGMA application_id = 1296257089; PRAGMA user_version = 1;");
    mcp_registry *reg = NULL;
    mcp_error err = {{0}};
    if (mcp_registry_open(p, &reg, &err) != 0)
        fail_msg("open: %s", err.msg);
    mcp_service got;
    assert_int_equal(mcp_registry_get_service(reg, "web", &got, &err), 1);
    assert_int_equal(got.n_components, 1);
    const mcp_component *c = &got.components[0];
    assert_string_equal(c->image, "img:v1");
    assert_string_equal(c->restart, "always");
    assert_string_equal(c->ports.v[0], "8080");
    assert_string_equal(c->health.check, "tcp");
    /* liveness defaults for rows written before they existed */
    assert_int_equal(c->health.interval_ms, 10000);
    assert_int_equal(c->health.timeout_ms, 1000);
    assert_int_equal(c->health.failure_threshold, 3);
    assert_int_equal(c->n_routes, 1);
    assert_int_equal(c->routes[0].host_port, 10042);
    mcp_service_free(&got);
    mcp_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(mcp_registry_list_events(reg, NULL, 10, &ev, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].message, "v1");
    assert_int_equal(ev[0].time_ms, 1700000000000LL);
    assert_false(ev[0].has_exit_code);
    mcp_events_free(ev, n);
    mcp_supervision u = {.service = "web", .component = "api", .state = "running"};
    assert_int_equal(mcp_registry_set_supervision(reg, &u, MCP_SUP_STATE, &err), 1);
    mcp_registry_close(reg);
    assert_int_equal(raw_count(state, "PRAGMA user_version"), 2);
    free(p);
}

static int64_t raw_count(void **state, const char *sql)
{
    char *p = path_in(state, "reg.db");
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(p);
    return v;
}

/* ---- permissions ---- */

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

/* The registry, -wal and -shm are 0600 whatever the umask (component env may
 * hold secrets), and an older, wider registry of ours is narrowed at open. */
static void test_registry_files_are_private(void **state)
{
    mode_t old = umask(0);
    mcp_registry *reg = open_reg(state);
    mcp_service svc;
    full_service(&svc);
    assert_int_equal(put(reg, &svc, 10000, 10100), 0);
    mcp_service_free(&svc);
    char *p = path_in(state, "reg.db"), *wal = path_in(state, "reg.db-wal"),
         *shm = path_in(state, "reg.db-shm");
    assert_int_equal(mode_of(p), 0600);
    assert_int_equal(mode_of(wal), 0600);
    assert_int_equal(mode_of(shm), 0600);
    mcp_registry_close(reg);
    assert_int_equal(chmod(p, 0644), 0);
    int fd = open(wal, O_WRONLY | O_CREAT, 0666);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(chmod(wal, 0666), 0);
    reg = open_reg(state);
    assert_int_equal(mode_of(p), 0600);
    assert_int_equal(mode_of(wal), 0600);
    mcp_registry_close(reg);
    umask(old);
    free(p);
    free(wal);
    free(shm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_full_service, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_list_services_sorted, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_redeploy_keeps_host_ports, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_new_route_gets_lowest_free_port, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(test_port_free_callback_honoured, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_range_exhaustion_is_an_error, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_delete_frees_ports, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_two_handles_share_the_file, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_put_refuses_invalid_names, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_set_desired_state_and_active, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_events_newest_first, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_snapshot_is_an_openable_copy, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_list_matches_gets_after_churn, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(test_lists_round_trip_odd_strings, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_unreadable_lists_refused, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_survives_busy_from_other_connection, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(test_survives_failed_statements, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_idle_handle_holds_no_snapshot, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(test_refuses_garbage_file, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_refuses_truncated_database, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_refuses_foreign_database, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_refuses_newer_schema, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_creates_fresh_and_reopens, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_events_exit_code_since_and_after, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(test_events_trimmed_to_keep, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_supervision_upsert_and_clear, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_migrates_version_1, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_registry_files_are_private, setup_tmp, teardown_tmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
