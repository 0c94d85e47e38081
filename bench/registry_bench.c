/* registry_bench: the cost of the registry's reads, in µs per call and SQL
 * statements compiled per call.
 *
 * Build (after `cmake --build build-reg2`; any non-sanitizer build dir works):
 *
 *   gcc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -Iinclude bench/registry_bench.c \
 *       build-reg2/libmcp_core.a $(pkg-config --libs sqlite3 jansson) \
 *       -Wl,--wrap=sqlite3_prepare_v2,--wrap=sqlite3_prepare_v3,--wrap=sqlite3_exec \
 *       -o /tmp/registry_bench
 *   /tmp/registry_bench [services] [calls]        # defaults: 50 services, 2000 calls
 *
 * The registry is a fresh file in a temporary directory (removed at the end)
 * holding N services of 2 components with 1 route each. Every call is timed
 * alone (CLOCK_MONOTONIC); the median, p90 and p99 are printed, and the
 * process CPU time per call (steadier on a shared machine). Compilations
 * are counted with the linker's --wrap: every sqlite3_prepare_v2/v3 made by
 * the registry, plus every sqlite3_exec (each compiles its SQL text; the
 * registry's are one statement each). Bounded: it stops after `calls` calls. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mcp/registry.h"
#include "mcp/util.h"

static long prepares;

int __real_sqlite3_prepare_v2(sqlite3 *db, const char *sql, int n, sqlite3_stmt **st,
                              const char **tail);
int __real_sqlite3_prepare_v3(sqlite3 *db, const char *sql, int n, unsigned flags,
                              sqlite3_stmt **st, const char **tail);
int __real_sqlite3_exec(sqlite3 *db, const char *sql, int (*cb)(void *, int, char **, char **),
                        void *ud, char **errmsg);

int __wrap_sqlite3_prepare_v2(sqlite3 *db, const char *sql, int n, sqlite3_stmt **st,
                              const char **tail);
int __wrap_sqlite3_prepare_v2(sqlite3 *db, const char *sql, int n, sqlite3_stmt **st,
                              const char **tail)
{
    prepares++;
    return __real_sqlite3_prepare_v2(db, sql, n, st, tail);
}

int __wrap_sqlite3_prepare_v3(sqlite3 *db, const char *sql, int n, unsigned flags,
                              sqlite3_stmt **st, const char **tail);
int __wrap_sqlite3_prepare_v3(sqlite3 *db, const char *sql, int n, unsigned flags,
                              sqlite3_stmt **st, const char **tail)
{
    prepares++;
    return __real_sqlite3_prepare_v3(db, sql, n, flags, st, tail);
}

int __wrap_sqlite3_exec(sqlite3 *db, const char *sql, int (*cb)(void *, int, char **, char **),
                        void *ud, char **errmsg);
int __wrap_sqlite3_exec(sqlite3 *db, const char *sql, int (*cb)(void *, int, char **, char **),
                        void *ud, char **errmsg)
{
    prepares++;
    return __real_sqlite3_exec(db, sql, cb, ud, errmsg);
}

static void die(const char *what, const mcp_error *err)
{
    fprintf(stderr, "registry_bench: %s: %s\n", what, err ? err->msg : "out of memory");
    exit(1);
}

static double clock_us(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double now_us(void)
{
    return clock_us(CLOCK_MONOTONIC);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static mcp_component *add_component(mcp_service *svc, const char *name, const char *route)
{
    mcp_component *c = &svc->components[svc->n_components++];
    memset(c, 0, sizeof *c);
    c->name = mcp_strdup(name);
    c->image = mcp_sprintf("localhost/%s-%s:v1", svc->name, name);
    c->desired_state = mcp_strdup("running");
    c->routes = calloc(1, sizeof *c->routes);
    if (!c->name || !c->image || !c->desired_state || !c->routes)
        die("building services", NULL);
    c->n_routes = 1;
    c->routes[0].name = mcp_strdup(route);
    c->routes[0].port = 8080;
    c->routes[0].mode = mcp_strdup("l4");
    if (!c->routes[0].name || !c->routes[0].mode)
        die("building services", NULL);
    return c;
}

static void fill(mcp_registry *reg, int n_services)
{
    for (int i = 0; i < n_services; i++) {
        mcp_service svc = {0};
        svc.name = mcp_sprintf("svc%03d", i);
        svc.active = true;
        svc.components = calloc(2, sizeof *svc.components);
        if (!svc.name || !svc.components)
            die("building services", NULL);
        mcp_component *api = add_component(&svc, "api", "http");
        char *port = mcp_sprintf("127.0.0.1:%d:8080/tcp", 30000 + i);
        if (!port || mcp_strv_push(&api->ports, port) != 0 ||
            mcp_strv_push(&api->env, "LOG_LEVEL=info") != 0)
            die("building services", NULL);
        free(port);
        add_component(&svc, "worker", "metrics");
        mcp_error err = {{0}};
        if (mcp_registry_put_service(reg, &svc, 20000, 29999, NULL, NULL, &err) != 0)
            die("put", &err);
        if (mcp_registry_add_event(reg, svc.name, NULL, "deployed", "v1", &err) != 0)
            die("add_event", &err);
        mcp_service_free(&svc);
    }
}

typedef int (*bench_fn)(mcp_registry *reg, mcp_error *err);

static int call_list_services(mcp_registry *reg, mcp_error *err)
{
    mcp_service *svcs = NULL;
    size_t n = 0;
    if (mcp_registry_list_services(reg, &svcs, &n, err) != 0)
        return -1;
    mcp_services_free(svcs, n);
    return 0;
}

static int call_get_service(mcp_registry *reg, mcp_error *err)
{
    mcp_service svc;
    int rc = mcp_registry_get_service(reg, "svc007", &svc, err);
    if (rc == 1)
        mcp_service_free(&svc);
    return rc == 1 ? 0 : -1;
}

static int call_list_events(mcp_registry *reg, mcp_error *err)
{
    mcp_event *ev = NULL;
    size_t n = 0;
    if (mcp_registry_list_events(reg, NULL, 20, &ev, &n, err) != 0)
        return -1;
    mcp_events_free(ev, n);
    return 0;
}

static void run(const char *name, bench_fn fn, mcp_registry *reg, int calls, double *samples)
{
    mcp_error err = {{0}};
    for (int i = 0; i < 50; i++) /* warm-up: caches, first prepares */
        if (fn(reg, &err) != 0)
            die(name, &err);
    long before = prepares;
    double cpu0 = clock_us(CLOCK_PROCESS_CPUTIME_ID);
    for (int i = 0; i < calls; i++) {
        double t0 = now_us();
        if (fn(reg, &err) != 0)
            die(name, &err);
        samples[i] = now_us() - t0;
    }
    double cpu_per_call = (clock_us(CLOCK_PROCESS_CPUTIME_ID) - cpu0) / calls;
    double per_call = (double)(prepares - before) / calls;
    qsort(samples, (size_t)calls, sizeof *samples, cmp_double);
    printf("%-16s median %8.1f us  p90 %8.1f us  p99 %8.1f us  cpu/call %8.1f us  "
           "prepares/call %5.1f\n",
           name, samples[calls / 2], samples[calls * 9 / 10], samples[calls * 99 / 100],
           cpu_per_call, per_call);
}

int main(int argc, char **argv)
{
    int n_services = argc > 1 ? atoi(argv[1]) : 50;
    int calls = argc > 2 ? atoi(argv[2]) : 2000;
    if (n_services < 8 || n_services > 5000 || calls < 10 || calls > 1000000) {
        fprintf(stderr, "usage: registry_bench [services 8..5000] [calls 10..1000000]\n");
        return 2;
    }
    char dir[] = "/tmp/registry-bench-XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp", NULL);
    char *path = mcp_sprintf("%s/registry.db", dir);
    double *samples = calloc((size_t)calls, sizeof *samples);
    if (!path || !samples)
        die("setup", NULL);
    mcp_registry *reg = NULL;
    mcp_error err = {{0}};
    if (mcp_registry_open(path, &reg, &err) != 0)
        die("open", &err);
    fill(reg, n_services);
    printf("registry_bench: %d services x 2 components x 1 route, %d calls each, sqlite %s\n",
           n_services, calls, sqlite3_libversion());
    run("list_services", call_list_services, reg, calls, samples);
    run("get_service", call_get_service, reg, calls, samples);
    run("list_events(20)", call_list_events, reg, calls, samples);
    mcp_registry_close(reg);
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char *f = mcp_sprintf("%s%s", path, suffixes[i]);
        if (f)
            unlink(f);
        free(f);
    }
    rmdir(dir);
    free(path);
    free(samples);
    return 0;
}
