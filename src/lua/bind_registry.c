/* agent.registry: the desired state, as plain Lua tables (docs/LUA_API.md). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mcp/net.h"

static mcp_registry *check_registry(lua_State *L)
{
    mcp_host *h = mcp_host_upvalue(L);
    if (!h->reg)
        luaL_error(L, "no registry is open");
    return h->reg;
}

static const mcp_field route_fields[] = {
    MCP_FIELD(mcp_route, name),
    MCP_FIELD_F(mcp_route, port, MCP_F_OMIT_ZERO), /* 0: the process listens on $PORT */
    MCP_FIELD(mcp_route, mode),
    MCP_FIELD(mcp_route, hostname),
    MCP_FIELD_F(mcp_route, host_port, MCP_F_OMIT_ZERO), /* 0: not allocated yet */
};

/* after name and container, which are set first */
static const mcp_field component_fields[] = {
    MCP_FIELD(mcp_component, image),         MCP_FIELD(mcp_component, network),
    MCP_FIELD(mcp_component, user),          MCP_FIELD(mcp_component, restart),
    MCP_FIELD(mcp_component, desired_state), MCP_FIELD(mcp_component, ports),
    MCP_FIELD(mcp_component, volumes),       MCP_FIELD(mcp_component, cmd),
    MCP_FIELD(mcp_component, env),
};

static const mcp_field health_fields[] = {
    MCP_FIELD(mcp_health, check),
    MCP_FIELD_F(mcp_health, port, MCP_F_OMIT_ZERO), /* 0: the default port */
    MCP_FIELD(mcp_health, path),
    MCP_FIELD_AS("interval", mcp_health, interval_ms, MCP_F_MS),
    MCP_FIELD_AS("timeout", mcp_health, timeout_ms, MCP_F_MS),
    MCP_FIELD(mcp_health, failure_threshold),
};

static void push_component(lua_State *L, const mcp_service *svc, const mcp_component *c)
{
    lua_createtable(L, 0, 14);
    mcp_set_string(L, "name", c->name);
    char *container = mcp_container_name(svc->name, c->name);
    if (!container)
        luaL_error(L, "out of memory");
    mcp_set_string(L, "container", container);
    free(container);
    mcp_set_fields(L, c, component_fields, MCP_N_FIELDS(component_fields));
    if (c->health.check)
        mcp_set_fields_table(L, "health", &c->health, health_fields, MCP_N_FIELDS(health_fields));
    mcp_push_fields_array(L, c->routes, c->n_routes, sizeof *c->routes, route_fields,
                          MCP_N_FIELDS(route_fields));
    lua_setfield(L, -2, "routes");
}

static const mcp_field service_fields[] = {
    MCP_FIELD(mcp_service, name),
    MCP_FIELD(mcp_service, active),
};

static void push_service(lua_State *L, const void *item)
{
    const mcp_service *svc = item;
    lua_createtable(L, 0, 3);
    mcp_set_fields(L, svc, service_fields, MCP_N_FIELDS(service_fields));
    lua_createtable(L, (int)svc->n_components, 0);
    for (size_t i = 0; i < svc->n_components; i++) {
        push_component(L, svc, &svc->components[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "components");
}

/* Registry failures are runtime failures: nil, "registry", detail. */
static int registry_failure(lua_State *L, const mcp_error *err)
{
    return mcp_push_failure(L, "registry", err->msg);
}

/* A service document that does not validate: nil, "invalid", message. */
static int invalid_service(lua_State *L, const mcp_error *err)
{
    return mcp_push_failure(L, "invalid", err->msg);
}

/* Calls that count rows answer the count, or the failure. */
static int count_result(lua_State *L, int n, const mcp_error *err)
{
    if (n < 0)
        return registry_failure(L, err);
    lua_pushinteger(L, n);
    return 1;
}

/* Lookups that found nothing (0) answer nil; a failure (< 0) nil, "registry", detail. */
static int lookup_miss(lua_State *L, int found, const mcp_error *err)
{
    if (found < 0)
        return registry_failure(L, err);
    lua_pushnil(L);
    return 1;
}

/* What a listing (rc < 0: failed) answers: the n rows pushed by push, or the failure. */
static int list_result(lua_State *L, int rc, const mcp_error *err, const void *rows, size_t n,
                       size_t size, void (*push)(lua_State *L, const void *item))
{
    if (rc != 0)
        return registry_failure(L, err);
    mcp_push_array(L, rows, n, size, push);
    return 1;
}

/* What a lookup answers: the row pushed by push when found (> 0), else lookup_miss. */
static int lookup_result(lua_State *L, int found, const mcp_error *err, const void *row,
                         void (*push)(lua_State *L, const void *item))
{
    if (found <= 0)
        return lookup_miss(L, found, err);
    push(L, row);
    return 1;
}

static int l_services(lua_State *L)
{
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    mcp_service *svcs = NULL;
    size_t n = 0;
    int rc = mcp_registry_list_services(reg, &svcs, &n, &err);
    int nres = list_result(L, rc, &err, svcs, n, sizeof *svcs, push_service);
    mcp_services_free(svcs, n);
    return nres;
}

static int l_service(lua_State *L)
{
    const char *name = mcp_check_text(L, 1, "service"); /* any text: an unknown one is nil */
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    mcp_service svc;
    memset(&svc, 0, sizeof svc);
    int found = mcp_registry_get_service(reg, name, &svc, &err);
    int nres = lookup_result(L, found, &err, &svc, push_service);
    if (found > 0)
        mcp_service_free(&svc);
    return nres;
}

static int l_set_desired(lua_State *L)
{
    const char *service = mcp_check_name(L, 1, "service");
    const char *component = mcp_opt_name(L, 2, "component");
    const char *state = mcp_check_text(L, 3, "state");
    if (strcmp(state, "running") != 0 && strcmp(state, "stopped") != 0)
        return luaL_argerror(L, 3, "want \"running\" or \"stopped\"");
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    return count_result(L, mcp_registry_set_desired_state(reg, service, component, state, &err),
                        &err);
}

static int l_set_active(lua_State *L)
{
    const char *service = mcp_check_name(L, 1, "service");
    luaL_checktype(L, 2, LUA_TBOOLEAN);
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    return count_result(L, mcp_registry_set_active(reg, service, lua_toboolean(L, 2), &err), &err);
}

static int check_limit(lua_State *L, int idx, lua_Integer dflt)
{
    lua_Integer limit = luaL_optinteger(L, idx, dflt);
    if (limit < 0 || limit > 1000000)
        return luaL_argerror(L, idx, "limit must be 0..1000000");
    return (int)limit;
}

/* registry.event(service, component|nil, kind, message[, exit_code]) -> true */
static int l_event(lua_State *L)
{
    /* "" is the node's own events; a component may come from a container's label */
    const char *service = lua_type(L, 1) == LUA_TSTRING && lua_rawlen(L, 1) == 0
                              ? ""
                              : mcp_check_name(L, 1, "service");
    const char *component = mcp_opt_text(L, 2, "component");
    const char *kind = mcp_check_text(L, 3, "kind");
    if (!lua_isnoneornil(L, 4) && lua_type(L, 4) != LUA_TSTRING)
        return luaL_argerror(L, 4, "message must be a string");
    const char *message = luaL_optstring(L, 4, "");
    int code = 0;
    bool has_code = !lua_isnoneornil(L, 5);
    if (has_code) {
        lua_Integer c = luaL_checkinteger(L, 5);
        if (c < INT32_MIN || c > INT32_MAX)
            return luaL_argerror(L, 5, "exit code out of range");
        code = (int)c;
    }
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    if (mcp_registry_add_event_exit(reg, service, component, kind, message, has_code ? &code : NULL,
                                    &err) != 0)
        return registry_failure(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static const mcp_field event_fields[] = {
    MCP_FIELD(mcp_event, id),
    MCP_FIELD_AS("time", mcp_event, time_ms, MCP_F_MS),
    MCP_FIELD(mcp_event, service),
    MCP_FIELD(mcp_event, component),
    MCP_FIELD(mcp_event, kind),
    MCP_FIELD(mcp_event, message),
    MCP_FIELD_IF(mcp_event, exit_code, has_exit_code),
};

static int push_events(lua_State *L, mcp_registry *reg, const mcp_event_query *q)
{
    mcp_error err = {{0}};
    mcp_event *ev = NULL;
    size_t n = 0;
    if (mcp_registry_query_events(reg, q, &ev, &n, &err) != 0)
        return registry_failure(L, &err);
    mcp_push_fields_array(L, ev, n, sizeof *ev, event_fields, MCP_N_FIELDS(event_fields));
    mcp_events_free(ev, n);
    return 1;
}

/* registry.events(service|nil, limit[, since_unix_seconds]) -> newest first */
static int l_events(lua_State *L)
{
    mcp_event_query q = {.service = mcp_opt_text(L, 1, "service"), .limit = check_limit(L, 2, 20)};
    if (!lua_isnoneornil(L, 3)) {
        lua_Number since = luaL_checknumber(L, 3);
        if (!(since >= 0 && since < 1e11))
            return luaL_argerror(L, 3, "since must be unix seconds >= 0");
        q.since_ms = (int64_t)(since * 1000.0 + 0.5); /* the nearest ms: times come back exact */
    }
    return push_events(L, check_registry(L), &q);
}

/* registry.events_after(id, service|nil, limit) -> oldest first, ids above id */
static int l_events_after(lua_State *L)
{
    lua_Integer id = luaL_checkinteger(L, 1);
    if (id < 0)
        return luaL_argerror(L, 1, "id must be >= 0");
    mcp_event_query q = {.after = true,
                         .after_id = id,
                         .service = mcp_opt_text(L, 2, "service"),
                         .limit = check_limit(L, 3, 100)};
    return push_events(L, check_registry(L), &q);
}

/* ---- supervision ---- */

static const mcp_field supervision_fields[] = {
    MCP_FIELD(mcp_supervision, service),
    MCP_FIELD(mcp_supervision, component),
    MCP_FIELD(mcp_supervision, restarts),
    MCP_FIELD_IF(mcp_supervision, last_exit_code, has_last_exit_code),
    MCP_FIELD(mcp_supervision, state),
    MCP_FIELD_IF(mcp_supervision, backoff_until, has_backoff_until),
    MCP_FIELD(mcp_supervision, reason),
    MCP_FIELD_IF(mcp_supervision, started_at, has_started_at),
    MCP_FIELD(mcp_supervision, updated_at),
};

static void push_supervision(lua_State *L, const void *item)
{
    mcp_push_fields(L, item, supervision_fields, MCP_N_FIELDS(supervision_fields));
}

/* registry.supervision(service, component) -> table | nil */
static int l_supervision(lua_State *L)
{
    const char *service = luaL_checkstring(L, 1);
    const char *component = luaL_checkstring(L, 2);
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    mcp_supervision s;
    int found = mcp_registry_get_supervision(reg, service, component, &s, &err);
    int nres = lookup_result(L, found, &err, &s, push_supervision);
    if (found > 0)
        mcp_supervision_free(&s);
    return nres;
}

/* registry.supervisions() -> { {service=, component=, ...}, ... } */
static int l_supervisions(lua_State *L)
{
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    mcp_supervision *rows = NULL;
    size_t n = 0;
    int rc = mcp_registry_list_supervision(reg, &rows, &n, &err);
    int nres = list_result(L, rc, &err, rows, n, sizeof *rows, push_supervision);
    mcp_supervisions_free(rows, n);
    return nres;
}

/* One settable field of set_supervision: its type, and whether false clears it. */
typedef struct sup_field {
    const char *name;
    unsigned bit;
    int type; /* LUA_TNUMBER (integer when is_int) or LUA_TSTRING */
    bool is_int;
    bool nullable;
} sup_field;

static const sup_field sup_fields[] = {
    {"restarts", MCP_SUP_RESTARTS, LUA_TNUMBER, true, false},
    {"last_exit_code", MCP_SUP_LAST_EXIT_CODE, LUA_TNUMBER, true, true},
    {"state", MCP_SUP_STATE, LUA_TSTRING, false, true},
    {"backoff_until", MCP_SUP_BACKOFF_UNTIL, LUA_TNUMBER, false, true},
    {"reason", MCP_SUP_REASON, LUA_TSTRING, false, true},
    {"started_at", MCP_SUP_STARTED_AT, LUA_TNUMBER, false, true},
};
#define N_SUP_FIELDS (sizeof sup_fields / sizeof sup_fields[0])

static const sup_field *find_sup_field(const char *name)
{
    for (size_t i = 0; i < N_SUP_FIELDS; i++)
        if (strcmp(sup_fields[i].name, name) == 0)
            return &sup_fields[i];
    return NULL;
}

/* Reads fields (table at idx) into u; returns the MCP_SUP_* bits given. Strings stay on
 * the Lua stack's table, which outlives the call. Raises on unknown keys or wrong types. */
static unsigned read_sup_fields(lua_State *L, int idx, mcp_supervision *u)
{
    unsigned set = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        const sup_field *f = key ? find_sup_field(key) : NULL;
        if (!f)
            luaL_argerror(L, idx,
                          lua_pushfstring(L, "unknown supervision field %s",
                                          key ? key : luaL_typename(L, -2)));
        bool clear = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
        if (clear && !f->nullable)
            luaL_argerror(L, idx, lua_pushfstring(L, "%s cannot be cleared", f->name));
        if (!clear && (lua_type(L, -1) != f->type || (f->is_int && !lua_isinteger(L, -1))))
            luaL_argerror(L, idx,
                          lua_pushfstring(L, "%s must be %s%s", f->name,
                                          f->type == LUA_TSTRING ? "a string"
                                          : f->is_int            ? "an integer"
                                                                 : "a number",
                                          f->nullable ? " or false" : ""));
        set |= f->bit;
        switch (f->bit) {
        case MCP_SUP_RESTARTS:
            u->restarts = lua_tointeger(L, -1);
            if (u->restarts < 0)
                luaL_argerror(L, idx, "restarts must be >= 0");
            break;
        case MCP_SUP_LAST_EXIT_CODE:
            u->has_last_exit_code = !clear;
            if (!clear) {
                lua_Integer c = lua_tointeger(L, -1);
                if (c < INT32_MIN || c > INT32_MAX)
                    luaL_argerror(L, idx, "last_exit_code out of range");
                u->last_exit_code = (int)c;
            }
            break;
        case MCP_SUP_STATE:
            u->state = clear ? NULL : (char *)lua_tostring(L, -1);
            break;
        case MCP_SUP_BACKOFF_UNTIL:
            u->has_backoff_until = !clear;
            u->backoff_until = clear ? 0 : lua_tonumber(L, -1);
            break;
        case MCP_SUP_REASON:
            u->reason = clear ? NULL : (char *)lua_tostring(L, -1);
            break;
        case MCP_SUP_STARTED_AT:
            u->has_started_at = !clear;
            u->started_at = clear ? 0 : lua_tonumber(L, -1);
            break;
        }
        lua_pop(L, 1);
    }
    return set;
}

/* registry.set_supervision(service, component, fields) -> true | nil, reason[, detail]
 * Upserts: fields absent from the table keep their value; false clears a
 * nullable field (every field but restarts). */
static int l_set_supervision(lua_State *L)
{
    mcp_supervision u;
    memset(&u, 0, sizeof u);
    u.service = (char *)luaL_checkstring(L, 1);
    u.component = (char *)luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    unsigned set = read_sup_fields(L, 3, &u);
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    int rc = mcp_registry_set_supervision(reg, &u, set, &err);
    if (rc < 0)
        return registry_failure(L, &err);
    if (rc == 0)
        return mcp_push_reason(L, "no such component");
    lua_pushboolean(L, 1);
    return 1;
}

/* registry.clear_supervision(service[, component]) -> rows deleted */
static int l_clear_supervision(lua_State *L)
{
    const char *service = luaL_checkstring(L, 1);
    const char *component = luaL_optstring(L, 2, NULL);
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    return count_result(L, mcp_registry_clear_supervision(reg, service, component, &err), &err);
}

static int l_delete(lua_State *L)
{
    const char *service = luaL_checkstring(L, 1);
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    int n = mcp_registry_delete_service(reg, service, &err);
    if (n < 0)
        return registry_failure(L, &err);
    lua_pushboolean(L, n > 0);
    return 1;
}

static bool port_free(int port, void *ud)
{
    (void)ud;
    return mcp_tcp_port_free(port);
}

/* registry.deploy(text, filename) -> service table | nil, "invalid", message:
 * validates a §4 document and stores it in one transaction (host ports of
 * existing routes kept, new ones allocated from port_range). */
static int l_deploy(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    const char *filename = luaL_optstring(L, 2, "<service>");
    mcp_host *h = mcp_host_upvalue(L);
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    mcp_service svc;
    memset(&svc, 0, sizeof svc);
    if (mcp_service_parse(text, len, filename, &svc, &err) != 0)
        return invalid_service(L, &err);
    int port_min = h->cfg ? h->cfg->port_min : 10000, port_max = h->cfg ? h->cfg->port_max : 19999;
    if (mcp_registry_put_service(reg, &svc, port_min, port_max, port_free, NULL, &err) != 0) {
        mcp_service_free(&svc);
        return registry_failure(L, &err);
    }
    push_service(L, &svc);
    mcp_service_free(&svc);
    return 1;
}

/* registry.validate(text, filename) -> true, service name, unknown keys (a list
 * of "file:line:col: unknown key 'k' (did you mean 'x'?)", maybe empty), the
 * definition as registry.service would return it (no host ports yet)
 * | nil, "invalid", message */
static int l_validate(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    const char *filename = luaL_optstring(L, 2, "<service>");
    mcp_error err = {{0}};
    mcp_service svc;
    memset(&svc, 0, sizeof svc);
    if (mcp_service_parse(text, len, filename, &svc, &err) != 0)
        return invalid_service(L, &err);
    lua_pushboolean(L, 1);
    lua_pushstring(L, svc.name); /* callers lock the service before storing it */
    mcp_push_strv(L, &svc.unknown);
    push_service(L, &svc);
    mcp_service_free(&svc);
    return 4;
}

static int l_snapshot(lua_State *L)
{
    const char *dest = luaL_checkstring(L, 1);
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    if (mcp_registry_snapshot(reg, dest, &err) != 0)
        return registry_failure(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

int luaopen_mcp_registry(lua_State *L)
{
    static const luaL_Reg fns[] = {{"services", l_services},
                                   {"service", l_service},
                                   {"set_desired", l_set_desired},
                                   {"set_active", l_set_active},
                                   {"event", l_event},
                                   {"events", l_events},
                                   {"delete", l_delete},
                                   {"deploy", l_deploy},
                                   {"validate", l_validate},
                                   {"snapshot", l_snapshot},
                                   {"events_after", l_events_after},
                                   {"supervision", l_supervision},
                                   {"supervisions", l_supervisions},
                                   {"set_supervision", l_set_supervision},
                                   {"clear_supervision", l_clear_supervision},
                                   {NULL, NULL}};
    mcp_new_lib(L, fns, lua_upvalueindex(1));
    return 1;
}
