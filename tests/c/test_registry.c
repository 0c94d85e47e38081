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
        cmocka_unit_test_setup_teardown(test_refuses_garbage_file, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_refuses_truncated_database, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_refuses_foreign_database, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_refuses_newer_schema, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_creates_fresh_and_reopens, setup_tmp, teardown_tmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
