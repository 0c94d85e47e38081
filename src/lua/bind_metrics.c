/* core.metrics: the process's metric registry (src/core/metrics.c) and its
 * HTTP endpoint (src/core/metrics_http.c).
 *   counter(name, help[, {label, …}]) / gauge(…) / histogram(…[, {bucket, …}])
 *     -> family (defining it again with the same shape returns it)
 *   family:inc([labels][, n]) family:set(labels, v) family:observe(labels, v)
 *   family:remove(labels) -> bool           labels: { name = value, … }
 *   render() -> the exposition text
 *   serve(listen) -> server | nil, "bad address" | "cannot listen", detail
 *   server:port() -> TCP port (0 for a unix socket); server:close()
 * Misuse (bad names, wrong labels, a counter going down) raises. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mcp/metrics.h"
#include "mcp/metrics_http.h"

#ifndef MCP_VERSION
#define MCP_VERSION "unknown"
#endif

#define REGISTRY_MT "mcp.metrics.registry"
#define FAMILY_MT "mcp.metrics.family"
#define SERVER_MT "mcp.metrics.server"

typedef struct registry_ud {
    mcp_metrics *m;
} registry_ud;

typedef struct server_ud {
    mcp_metrics_http *s;
} server_ud;

static mcp_metrics *registry_of(lua_State *L)
{
    registry_ud *r = lua_touserdata(L, lua_upvalueindex(2));
    return r->m;
}

static int registry_gc(lua_State *L)
{
    registry_ud *r = luaL_checkudata(L, 1, REGISTRY_MT);
    mcp_metrics_free(r->m);
    r->m = NULL;
    return 0;
}

/* ---------- families ---------- */

/* A family is a light pointer into the registry, which lives as long as
 * the module (an upvalue of every function here, and the family's uservalue). */
static mcp_metric_family *check_family(lua_State *L)
{
    mcp_metric_family **f = luaL_checkudata(L, 1, FAMILY_MT);
    return *f;
}

/* The label values of the table at idx in the family's order; raises on a
 * missing or unknown label. values must hold MCP_METRICS_MAX_LABELS. */
static void check_labels(lua_State *L, int idx, mcp_metric_family *f, const char **values)
{
    const char *const *names;
    size_t n = mcp_metrics_family_labels(f, &names);
    if (lua_isnoneornil(L, idx)) {
        if (n)
            luaL_argerror(L, idx, lua_pushfstring(L, "labels { %s = … } are required", names[0]));
        return;
    }
    luaL_checktype(L, idx, LUA_TTABLE);
    for (size_t i = 0; i < n; i++) {
        lua_getfield(L, idx, names[i]);
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
            luaL_argerror(L, idx, lua_pushfstring(L, "label '%s' needs a string value", names[i]));
        values[i] = lua_tostring(L, -1); /* stays on the stack: kept alive */
    }
    size_t given = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        given++;
    }
    if (given != n)
        luaL_argerror(L, idx, "labels must be exactly the family's label names");
}

static int family_update(lua_State *L, int which)
{
    mcp_metric_family *f = check_family(L);
    const char *values[MCP_METRICS_MAX_LABELS] = {0};
    int labels_at = 2, value_at = 3;
    if (which == 0 && lua_type(L, 2) == LUA_TNUMBER) {
        labels_at = 4; /* inc(n): no labels */
        value_at = 2;
    }
    /* the value first: check_labels pushes the label values */
    double v = which == 0 ? luaL_optnumber(L, value_at, 1) : luaL_checknumber(L, value_at);
    lua_settop(L, 3);
    check_labels(L, labels_at, f, values);
    mcp_error err = {{0}};
    int rc;
    if (which == 0)
        rc = mcp_metrics_add(f, values, v, &err);
    else if (which == 1)
        rc = mcp_metrics_set(f, values, v, &err);
    else
        rc = mcp_metrics_observe(f, values, v, &err);
    if (rc != 0)
        return luaL_argerror(L, value_at, err.msg);
    return 0;
}

static int family_inc(lua_State *L)
{
    return family_update(L, 0);
}
static int family_set(lua_State *L)
{
    return family_update(L, 1);
}
static int family_observe(lua_State *L)
{
    return family_update(L, 2);
}

static int family_remove(lua_State *L)
{
    mcp_metric_family *f = check_family(L);
    const char *values[MCP_METRICS_MAX_LABELS] = {0};
    check_labels(L, 2, f, values);
    lua_pushboolean(L, mcp_metrics_remove(f, values));
    return 1;
}

static int define(lua_State *L, mcp_metric_type type)
{
    const char *name = luaL_checkstring(L, 1);
    const char *help = luaL_checkstring(L, 2);
    lua_settop(L, 4); /* label names are pushed above the arguments */
    const char *labels[MCP_METRICS_MAX_LABELS];
    double buckets[MCP_METRICS_MAX_BUCKETS];
    size_t n_labels = 0, n_buckets = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_Integer n = luaL_len(L, 3);
        luaL_argcheck(L, n <= MCP_METRICS_MAX_LABELS, 3, "too many labels");
        for (lua_Integer i = 1; i <= n; i++) {
            lua_geti(L, 3, i);
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_argerror(L, 3, "label names must be strings");
            labels[n_labels++] = lua_tostring(L, -1);
        }
    }
    bool has_buckets = type == MCP_METRIC_HISTOGRAM && !lua_isnoneornil(L, 4);
    if (has_buckets) {
        luaL_checktype(L, 4, LUA_TTABLE);
        lua_Integer n = luaL_len(L, 4);
        luaL_argcheck(L, n >= 1 && n <= MCP_METRICS_MAX_BUCKETS, 4, "1 to 32 buckets");
        for (lua_Integer i = 1; i <= n; i++) {
            lua_geti(L, 4, i);
            if (!lua_isnumber(L, -1))
                luaL_argerror(L, 4, "buckets must be numbers");
            buckets[n_buckets++] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    }
    mcp_error err = {{0}};
    mcp_metric_family *f = mcp_metrics_define(registry_of(L), type, name, help, labels, n_labels,
                                              has_buckets ? buckets : NULL, n_buckets, &err);
    if (!f)
        return luaL_argerror(L, 1, err.msg);
    mcp_metric_family **ud = lua_newuserdatauv(L, sizeof *ud, 1);
    *ud = f;
    lua_pushvalue(L, lua_upvalueindex(2)); /* the registry outlives its families */
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, FAMILY_MT);
    return 1;
}

static int l_counter(lua_State *L)
{
    return define(L, MCP_METRIC_COUNTER);
}
static int l_gauge(lua_State *L)
{
    return define(L, MCP_METRIC_GAUGE);
}
static int l_histogram(lua_State *L)
{
    return define(L, MCP_METRIC_HISTOGRAM);
}

static int l_render(lua_State *L)
{
    size_t len = 0;
    char *text = mcp_metrics_render(registry_of(L), &len);
    if (!text)
        return luaL_error(L, "core.metrics.render: out of memory");
    lua_pushlstring(L, text, len);
    free(text);
    return 1;
}

/* ---------- the endpoint ---------- */

static int l_serve(lua_State *L)
{
    mcp_host *h = mcp_host_upvalue(L);
    const char *listen = luaL_checkstring(L, 1);
    mcp_metrics_listen parsed;
    char why[300];
    if (mcp_metrics_listen_parse(listen, &parsed, why, sizeof why) != 0)
        return mcp_push_failure(L, "bad address", why);
    server_ud *s = lua_newuserdatauv(L, sizeof *s, 1);
    s->s = NULL;
    luaL_setmetatable(L, SERVER_MT);
    lua_pushvalue(L, lua_upvalueindex(2)); /* keeps the registry alive while serving */
    lua_setiuservalue(L, -2, 1);
    mcp_error err = {{0}};
    s->s = mcp_metrics_http_start(&h->loop, listen, registry_of(L), &err);
    if (!s->s)
        return mcp_push_failure(L, "cannot listen", err.msg);
    return 1;
}

static int server_port(lua_State *L)
{
    server_ud *s = luaL_checkudata(L, 1, SERVER_MT);
    lua_pushinteger(L, s->s ? mcp_metrics_http_port(s->s) : 0);
    return 1;
}

static int server_close(lua_State *L)
{
    server_ud *s = luaL_checkudata(L, 1, SERVER_MT);
    mcp_metrics_http_close(s->s);
    s->s = NULL;
    return 0;
}

int luaopen_mcp_metrics(lua_State *L)
{
    mcp_host *h = mcp_host_upvalue(L);
    static const luaL_Reg family_fns[] = {{"inc", family_inc},
                                          {"set", family_set},
                                          {"observe", family_observe},
                                          {"remove", family_remove},
                                          {NULL, NULL}};
    static const luaL_Reg server_fns[] = {
        {"port", server_port}, {"close", server_close}, {NULL, NULL}};
    static const luaL_Reg server_meta[] = {{"__gc", server_close}, {NULL, NULL}};
    static const luaL_Reg registry_meta[] = {{"__gc", registry_gc}, {NULL, NULL}};
    mcp_new_metatable(L, FAMILY_MT, family_fns, lua_upvalueindex(1), NULL);
    mcp_new_metatable(L, SERVER_MT, server_fns, lua_upvalueindex(1), server_meta);
    mcp_new_metatable(L, REGISTRY_MT, NULL, lua_upvalueindex(1), registry_meta);

    static const luaL_Reg fns[] = {{"counter", l_counter},     {"gauge", l_gauge},
                                   {"histogram", l_histogram}, {"render", l_render},
                                   {"serve", l_serve},         {NULL, NULL}};
    luaL_newlibtable(L, fns);
    lua_pushlightuserdata(L, h);
    registry_ud *r = lua_newuserdatauv(L, sizeof *r, 0);
    r->m = NULL;
    luaL_setmetatable(L, REGISTRY_MT);
    r->m = mcp_metrics_new(MCP_VERSION);
    if (!r->m)
        return luaL_error(L, "core.metrics: out of memory");
    luaL_setfuncs(L, fns, 2);
    return 1;
}
