/* The registry's services: storing a definition (host ports carried over
 * by route), reading services back, desired state and active flag. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/registry.h"
#include "registry_db.h"

/* ---- JSON lists ---- */

static char *strv_to_json(const mcp_strv *sv)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    for (size_t i = 0; i < sv->n; i++) {
        if (json_array_append_new(arr, json_string(sv->v[i])) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return s;
}

/* Reads the lists json_dumps writes in the common case without the JSON
 * parser (a tenth of a listing's time): compact arrays of strings of
 * printable ASCII with no quote or backslash, which need no decoding.
 * out must be empty. Returns 1 read, 0 not of that form (out left empty),
 * -1 out of memory. */
static int strv_from_plain_json(const char *p, mcp_strv *out)
{
    if (*p++ != '[')
        return 0;
    if (*p == ']')
        return p[1] == '\0';
    for (;;) {
        if (*p++ != '"')
            break;
        const char *start = p;
        while ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f && *p != '"' && *p != '\\')
            p++;
        if (*p != '"')
            break;
        if (mcp_strv_push_n(out, start, (size_t)(p - start)) != 0) {
            mcp_strv_free(out);
            return -1;
        }
        p++;
        if (*p == ']' && p[1] == '\0')
            return 1;
        if (*p++ != ',')
            break;
    }
    mcp_strv_free(out);
    return 0;
}

static int strv_from_json(const char *text, mcp_strv *out)
{
    int plain = strv_from_plain_json(text ? text : "[]", out);
    if (plain != 0)
        return plain > 0 ? 0 : -1;
    json_error_t jerr;
    json_t *arr = json_loads(text ? text : "[]", 0, &jerr);
    if (!json_is_array(arr)) {
        json_decref(arr);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < json_array_size(arr); i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s || mcp_strv_push(out, s) != 0)
            rc = -1;
    }
    json_decref(arr);
    return rc;
}

/* ---- put_service ---- */

/* Host ports already held by this service's routes, keyed by component and route. */
typedef struct kept_port {
    char *component, *route;
    int host_port;
} kept_port;

static void kept_free(kept_port *k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(k[i].component);
        free(k[i].route);
    }
    free(k);
}

static int kept_from_row(sqlite3_stmt *st, void *item)
{
    kept_port *k = item;
    bool ok = true;
    k->component = reg_column_text(st, 0, &ok);
    k->route = reg_column_text(st, 1, &ok);
    k->host_port = sqlite3_column_int(st, 2);
    return ok && k->component && k->route ? 0 : -1;
}

static int load_kept_ports(mcp_registry *reg, const char *service, kept_port **out, size_t *n,
                           mcp_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = reg_stmt_get(reg, ST_KEPT_PORTS, err);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, service, -1, SQLITE_TRANSIENT);
    void *rows = NULL;
    int rc =
        reg_read_rows(reg, st, sizeof **out, kept_from_row, &rows, n, "reading route ports", err);
    *out = rows;
    return rc;
}

static int kept_lookup(const kept_port *k, size_t n, const char *component, const char *route)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(k[i].component, component) == 0 && strcmp(k[i].route, route) == 0)
            return k[i].host_port;
    return 0;
}

typedef struct port_alloc {
    int min, max;
    unsigned char *held; /* one byte per port of [min, max] */
    bool (*port_free)(int port, void *ud);
    void *ud;
} port_alloc;

/* Marks every host port of [min, max] held by a route in the table. */
static int load_held_ports(mcp_registry *reg, port_alloc *pa, mcp_error *err)
{
    pa->held = calloc((size_t)(pa->max - pa->min + 1), 1);
    if (!pa->held) {
        mcp_error_set(err, "registry %s: out of memory", reg->path);
        return -1;
    }
    sqlite3_stmt *st = reg_stmt_get(reg, ST_HELD_PORTS, err);
    if (!st)
        return -1;
    sqlite3_bind_int(st, 1, pa->min);
    sqlite3_bind_int(st, 2, pa->max);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        pa->held[sqlite3_column_int(st, 0) - pa->min] = 1;
    return reg_stmt_end(reg, st, rc, "reading held ports", err);
}

/* The lowest port not held and accepted by port_free, or 0 when the range is exhausted. */
static int allocate_port(port_alloc *pa)
{
    for (int p = pa->min; p <= pa->max; p++) {
        if (pa->held[p - pa->min])
            continue;
        if (pa->port_free && !pa->port_free(p, pa->ud))
            continue;
        pa->held[p - pa->min] = 1;
        return p;
    }
    return 0;
}

static int insert_service_row(mcp_registry *reg, const mcp_service *svc, mcp_error *err)
{
    sqlite3_stmt *st = reg_stmt_get(reg, ST_INSERT_SERVICE, err);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, svc->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, svc->active ? 1 : 0);
    sqlite3_bind_int64(st, 3, reg_wall_ms());
    return reg_stmt_end(reg, st, sqlite3_step(st), "storing service", err);
}

static int insert_component_row(mcp_registry *reg, const char *service, const mcp_component *c,
                                int position, mcp_error *err)
{
    sqlite3_stmt *st = reg_stmt_get(reg, ST_INSERT_COMPONENT, err);
    if (!st)
        return -1;
    char *lists[4] = {strv_to_json(&c->ports), strv_to_json(&c->volumes), strv_to_json(&c->cmd),
                      strv_to_json(&c->env)};
    int rc = -1;
    if (!lists[0] || !lists[1] || !lists[2] || !lists[3]) {
        mcp_error_set(err, "registry %s: out of memory", reg->path);
        goto done;
    }
    sqlite3_bind_text(st, 1, service, -1, SQLITE_TRANSIENT);
    reg_bind_text(st, 2, c->name);
    sqlite3_bind_int(st, 3, position);
    reg_bind_text(st, 4, c->image ? c->image : "");
    reg_bind_text(st, 5, c->network);
    reg_bind_text(st, 6, c->user);
    reg_bind_text(st, 7, c->restart);
    for (int i = 0; i < 4; i++)
        sqlite3_bind_text(st, 8 + i, lists[i], -1, SQLITE_TRANSIENT);
    reg_bind_text(st, 12, c->desired_state ? c->desired_state : "running");
    reg_bind_text(st, 13, c->health.check);
    sqlite3_bind_int(st, 14, c->health.port);
    reg_bind_text(st, 15, c->health.path);
    sqlite3_bind_int64(st, 16, c->health.interval_ms);
    sqlite3_bind_int64(st, 17, c->health.timeout_ms);
    sqlite3_bind_int(st, 18, c->health.failure_threshold);
    if (sqlite3_step(st) == SQLITE_DONE)
        rc = 0;
    else
        reg_db_fail(reg, err, "storing component");
done:
    for (int i = 0; i < 4; i++)
        free(lists[i]);
    reg_stmt_done(st);
    return rc;
}

static int insert_route_row(mcp_registry *reg, const char *service, const char *component,
                            const mcp_route *r, int position, mcp_error *err)
{
    sqlite3_stmt *st = reg_stmt_get(reg, ST_INSERT_ROUTE, err);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, service, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, component, -1, SQLITE_TRANSIENT);
    reg_bind_text(st, 3, r->name);
    sqlite3_bind_int(st, 4, position);
    sqlite3_bind_int(st, 5, r->port);
    reg_bind_text(st, 6, r->mode ? r->mode : "l4");
    reg_bind_text(st, 7, r->hostname);
    sqlite3_bind_int(st, 8, r->host_port);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        mcp_error_set(err, "registry %s: storing route '%s/%s/%s' (host port %d): %s", reg->path,
                      service, component, r->name, r->host_port, sqlite3_errmsg(reg->db));
    reg_stmt_done(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Gives each route its kept host port, or a new one from the range. */
static int assign_route_ports(mcp_registry *reg, mcp_service *svc, const kept_port *kept,
                              size_t n_kept, port_alloc *pa, mcp_error *err)
{
    /* Kept ports first, so a new route can never take a port a kept one is about to reclaim. */
    for (size_t i = 0; i < svc->n_components; i++) {
        mcp_component *c = &svc->components[i];
        for (size_t j = 0; j < c->n_routes; j++) {
            c->routes[j].host_port = kept_lookup(kept, n_kept, c->name, c->routes[j].name);
            int p = c->routes[j].host_port;
            if (p >= pa->min && p <= pa->max)
                pa->held[p - pa->min] = 1;
        }
    }
    for (size_t i = 0; i < svc->n_components; i++) {
        mcp_component *c = &svc->components[i];
        for (size_t j = 0; j < c->n_routes; j++) {
            mcp_route *r = &c->routes[j];
            if (r->host_port)
                continue;
            r->host_port = allocate_port(pa);
            if (!r->host_port) {
                mcp_error_set(err,
                              "registry %s: no free host port in range %d-%d for route "
                              "'%s/%s/%s'",
                              reg->path, pa->min, pa->max, svc->name, c->name, r->name);
                return -1;
            }
        }
    }
    return 0;
}

static int insert_definition(mcp_registry *reg, const mcp_service *svc, mcp_error *err)
{
    if (insert_service_row(reg, svc, err) != 0)
        return -1;
    for (size_t i = 0; i < svc->n_components; i++) {
        const mcp_component *c = &svc->components[i];
        if (insert_component_row(reg, svc->name, c, (int)i, err) != 0)
            return -1;
        for (size_t j = 0; j < c->n_routes; j++)
            if (insert_route_row(reg, svc->name, c->name, &c->routes[j], (int)j, err) != 0)
                return -1;
    }
    return 0;
}

static int delete_service_rows(mcp_registry *reg, const char *name, mcp_error *err)
{
    int n = reg_change_with(reg, ST_DELETE_SERVICE, name, "deleting service", err);
    return n < 0 ? -1 : n > 0;
}

/* The registry stores only what mcp_service_parse would accept as names. */
static int check_names(mcp_registry *reg, const mcp_service *svc, mcp_error *err)
{
    if (!mcp_name_valid(svc->name)) {
        mcp_error_set(err, "registry %s: invalid service name \"%s\"", reg->path,
                      svc->name ? svc->name : "");
        return -1;
    }
    for (size_t i = 0; i < svc->n_components; i++) {
        const mcp_component *c = &svc->components[i];
        if (!mcp_name_valid(c->name) || !c->image || !c->image[0]) {
            mcp_error_set(err,
                          "registry %s: service '%s': component %zu lacks a valid name or image",
                          reg->path, svc->name, i);
            return -1;
        }
        for (size_t j = 0; j < c->n_routes; j++) {
            if (!mcp_name_valid(c->routes[j].name)) {
                mcp_error_set(err, "registry %s: service '%s/%s': route %zu lacks a valid name",
                              reg->path, svc->name, c->name, j);
                return -1;
            }
        }
    }
    return 0;
}

/* Drops the supervisor state of components the new definition no longer has. */
static int prune_supervision(mcp_registry *reg, const char *service, mcp_error *err)
{
    return reg_change_with(reg, ST_SUP_PRUNE, service, "pruning supervision", err) < 0 ? -1 : 0;
}

int mcp_registry_put_service(mcp_registry *reg, mcp_service *svc, int port_min, int port_max,
                             bool (*port_free)(int port, void *ud), void *ud, mcp_error *err)
{
    if (check_names(reg, svc, err) != 0)
        return -1;
    if (port_min < 1 || port_max > 65535 || port_min > port_max) {
        mcp_error_set(err, "registry %s: invalid port range %d-%d", reg->path, port_min, port_max);
        return -1;
    }
    kept_port *kept = NULL;
    size_t n_kept = 0;
    port_alloc pa = {.min = port_min, .max = port_max, .port_free = port_free, .ud = ud};
    if (reg_stmt_run(reg, ST_BEGIN_IMMEDIATE, err) != 0)
        return -1;
    /* Old ports are read, the old definition dropped (freeing routes that
     * disappeared), then the new one inserted, all in one transaction. */
    if (load_kept_ports(reg, svc->name, &kept, &n_kept, err) != 0 ||
        delete_service_rows(reg, svc->name, err) < 0 || load_held_ports(reg, &pa, err) != 0 ||
        assign_route_ports(reg, svc, kept, n_kept, &pa, err) != 0 ||
        insert_definition(reg, svc, err) != 0 || prune_supervision(reg, svc->name, err) != 0 ||
        reg_stmt_run(reg, ST_COMMIT, err) != 0) {
        reg_rollback(reg);
        kept_free(kept, n_kept);
        free(pa.held);
        return -1;
    }
    kept_free(kept, n_kept);
    free(pa.held);
    return 0;
}

/* ---- reading ----
 *
 * A read is one transaction (one consistent snapshot) of three statements:
 * the services, then all their components, then all their routes, each in
 * order; the rows are stitched onto their services here. */

/* The service called name in svcs, which is sorted by name. strcmp orders as
 * SQLite's BINARY collation (bytewise), which sorted them. */
static mcp_service *find_service(mcp_service *svcs, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(svcs[mid].name, name);
        if (c == 0)
            return &svcs[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static mcp_component *find_component(mcp_service *svc, const char *name)
{
    for (size_t i = 0; i < svc->n_components; i++)
        if (strcmp(svc->components[i].name, name) == 0)
            return &svc->components[i];
    return NULL;
}

/* Fills c from a component row (COMPONENT_COLUMNS; column 0 is the service). */
static int component_from_row(sqlite3_stmt *st, mcp_component *c)
{
    bool ok = true;
    c->name = reg_column_text(st, 1, &ok);
    c->image = reg_column_text(st, 2, &ok);
    c->network = reg_column_text(st, 3, &ok);
    c->user = reg_column_text(st, 4, &ok);
    c->restart = reg_column_text(st, 5, &ok);
    mcp_strv *lists[4] = {&c->ports, &c->volumes, &c->cmd, &c->env};
    for (int i = 0; i < 4; i++)
        if (strv_from_json((const char *)sqlite3_column_text(st, 6 + i), lists[i]) != 0)
            ok = false;
    c->desired_state = reg_column_text(st, 10, &ok);
    c->health.check = reg_column_text(st, 11, &ok);
    c->health.port = sqlite3_column_int(st, 12);
    c->health.path = reg_column_text(st, 13, &ok);
    c->health.interval_ms = sqlite3_column_int64(st, 14);
    c->health.timeout_ms = sqlite3_column_int64(st, 15);
    c->health.failure_threshold = sqlite3_column_int(st, 16);
    return ok && c->name ? 0 : -1;
}

/* Fills r from a route row (ROUTE_COLUMNS; columns 0 and 1 are service and component). */
static bool route_from_row(sqlite3_stmt *st, mcp_route *r)
{
    bool ok = true;
    r->name = reg_column_text(st, 2, &ok);
    r->port = sqlite3_column_int(st, 3);
    r->mode = reg_column_text(st, 4, &ok);
    r->hostname = reg_column_text(st, 5, &ok);
    r->host_port = sqlite3_column_int(st, 6);
    return ok;
}

/* Appends each component row of st, in the order they come, to its service
 * in svcs. Rows of services not in svcs are skipped, as a read per service
 * never saw them either. Resets st. */
static int read_components(mcp_registry *reg, sqlite3_stmt *st, mcp_service *svcs, size_t n,
                           mcp_error *err)
{
    mcp_service *svc = NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *service = (const char *)sqlite3_column_text(st, 0);
        if (!service)
            continue;
        /* Rows come grouped by service: look up only when it changes. */
        if (!svc || strcmp(svc->name, service) != 0)
            svc = find_service(svcs, n, service);
        if (!svc)
            continue;
        mcp_component *grown = mcp_grow_one(svc->components, svc->n_components, sizeof *grown);
        if (grown)
            svc->components = grown;
        if (!grown || component_from_row(st, &grown[svc->n_components++]) != 0) {
            mcp_error_set(err, "registry %s: unreadable component of service '%s'", reg->path,
                          svc->name);
            reg_stmt_done(st);
            return -1;
        }
    }
    return reg_stmt_end(reg, st, rc, "reading components", err);
}

/* Appends each route row of st, in the order they come, to its component.
 * Routes of components not in svcs are skipped. Resets st. */
static int read_routes(mcp_registry *reg, sqlite3_stmt *st, mcp_service *svcs, size_t n,
                       mcp_error *err)
{
    mcp_service *svc = NULL;
    mcp_component *c = NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *service = (const char *)sqlite3_column_text(st, 0);
        const char *component = (const char *)sqlite3_column_text(st, 1);
        if (!service || !component)
            continue;
        /* Rows come grouped by service and component: look up only on a change. */
        if (!svc || strcmp(svc->name, service) != 0) {
            svc = find_service(svcs, n, service);
            c = NULL;
        }
        if (!svc)
            continue;
        if (!c || strcmp(c->name, component) != 0)
            c = find_component(svc, component);
        if (!c)
            continue;
        mcp_route *grown = mcp_grow_one(c->routes, c->n_routes, sizeof *grown);
        if (grown)
            c->routes = grown;
        if (!grown || !route_from_row(st, &grown[c->n_routes++])) {
            reg_stmt_done(st);
            return reg_out_of_memory(reg, err);
        }
    }
    return reg_stmt_end(reg, st, rc, "reading routes", err);
}

/* Reads the components and routes of svcs (sorted by name, with no components
 * yet) inside the caller's transaction: one statement per table. service,
 * when not NULL, is bound to the statements' only parameter. */
static int read_children(mcp_registry *reg, enum stmt_id components, enum stmt_id routes,
                         const char *service, mcp_service *svcs, size_t n, mcp_error *err)
{
    sqlite3_stmt *st = reg_stmt_get(reg, components, err);
    if (!st)
        return -1;
    if (service)
        sqlite3_bind_text(st, 1, service, -1, SQLITE_TRANSIENT);
    if (read_components(reg, st, svcs, n, err) != 0)
        return -1;
    if (!(st = reg_stmt_get(reg, routes, err)))
        return -1;
    if (service)
        sqlite3_bind_text(st, 1, service, -1, SQLITE_TRANSIENT);
    return read_routes(reg, st, svcs, n, err);
}

/* Fills svc from a service row (name, active). */
static int service_from_row(sqlite3_stmt *st, void *item)
{
    mcp_service *svc = item;
    bool ok = true;
    svc->name = reg_column_text(st, 0, &ok);
    svc->active = sqlite3_column_int(st, 1) != 0;
    return ok && svc->name ? 0 : -1;
}

/* Reads one service inside the caller's transaction: 1 found, 0 absent, -1 error. */
static int read_service(mcp_registry *reg, const char *name, mcp_service *out, mcp_error *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = reg_stmt_get(reg, ST_SERVICE_ONE, err);
    if (!st)
        return -1;
    reg_bind_text(st, 1, name);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        if (rc != SQLITE_DONE)
            reg_db_fail(reg, err, "reading service");
        reg_stmt_done(st);
        return rc == SQLITE_DONE ? 0 : -1;
    }
    int unread = service_from_row(st, out);
    reg_stmt_done(st);
    if (unread != 0) {
        mcp_service_free(out);
        return reg_out_of_memory(reg, err);
    }
    if (read_children(reg, ST_COMPONENTS_OF, ST_ROUTES_OF, out->name, out, 1, err) != 0) {
        mcp_service_free(out);
        return -1;
    }
    return 1;
}

int mcp_registry_get_service(mcp_registry *reg, const char *name, mcp_service *out, mcp_error *err)
{
    memset(out, 0, sizeof *out);
    /* One read transaction: a concurrent put never shows half a service. */
    if (reg_stmt_run(reg, ST_BEGIN, err) != 0)
        return -1;
    int rc = read_service(reg, name, out, err);
    reg_rollback(reg);
    return rc;
}

/* Every service row, sorted by name, without components. */
static int read_service_rows(mcp_registry *reg, mcp_service **out, size_t *n, mcp_error *err)
{
    sqlite3_stmt *st = reg_stmt_get(reg, ST_SERVICES_ALL, err);
    if (!st)
        return -1;
    void *rows = NULL;
    int rc =
        reg_read_rows(reg, st, sizeof **out, service_from_row, &rows, n, "listing services", err);
    *out = rows;
    return rc;
}

int mcp_registry_list_services(mcp_registry *reg, mcp_service **out, size_t *n, mcp_error *err)
{
    *out = NULL;
    *n = 0;
    mcp_service *svcs = NULL;
    size_t count = 0;
    if (reg_stmt_run(reg, ST_BEGIN, err) != 0)
        return -1;
    if (read_service_rows(reg, &svcs, &count, err) != 0 ||
        read_children(reg, ST_COMPONENTS_ALL, ST_ROUTES_ALL, NULL, svcs, count, err) != 0) {
        reg_rollback(reg);
        mcp_services_free(svcs, count);
        return -1;
    }
    reg_rollback(reg);
    *out = svcs;
    *n = count;
    return 0;
}

int mcp_registry_delete_service(mcp_registry *reg, const char *name, mcp_error *err)
{
    /* Routes go with their components by ON DELETE CASCADE, freeing their
     * ports; the supervisor state has no foreign key and goes explicitly. */
    if (reg_stmt_run(reg, ST_BEGIN_IMMEDIATE, err) != 0)
        return -1;
    int rc = delete_service_rows(reg, name, err);
    if (rc < 0 ||
        reg_change_with(reg, ST_SUP_CLEAR_SERVICE, name, "deleting supervision", err) < 0 ||
        reg_stmt_run(reg, ST_COMMIT, err) != 0) {
        reg_rollback(reg);
        return -1;
    }
    return rc;
}

int mcp_registry_set_desired_state(mcp_registry *reg, const char *service, const char *component,
                                   const char *state, mcp_error *err)
{
    if (!state || (strcmp(state, "running") != 0 && strcmp(state, "stopped") != 0)) {
        mcp_error_set(err, "invalid desired state \"%s\" (expected \"running\" or \"stopped\")",
                      state ? state : "(null)");
        return -1;
    }
    sqlite3_stmt *st = reg_stmt_get(reg, component ? ST_SET_STATE_ONE : ST_SET_STATE_ALL, err);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, state, -1, SQLITE_TRANSIENT);
    reg_bind_text(st, 2, service);
    if (component)
        sqlite3_bind_text(st, 3, component, -1, SQLITE_TRANSIENT);
    return reg_stmt_change(reg, st, "setting desired state", err);
}

int mcp_registry_set_active(mcp_registry *reg, const char *service, bool active, mcp_error *err)
{
    sqlite3_stmt *st = reg_stmt_get(reg, ST_SET_ACTIVE, err);
    if (!st)
        return -1;
    sqlite3_bind_int(st, 1, active ? 1 : 0);
    reg_bind_text(st, 2, service);
    int n = reg_stmt_change(reg, st, "setting active", err);
    return n < 0 ? -1 : n > 0;
}
