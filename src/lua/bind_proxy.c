/* agent.proxy: mc-proxy route registration (SPEC §8). Each call suspends
 * only the calling task.
 *   add_route{listener=, hostname=, backend=, mode=, service=, cert_path=, key_path=}
 *       -> true | nil, reason, detail
 *   remove_route(listener, hostname) -> true | nil, reason, detail
 *   list_routes() -> {route, ...} | nil, reason, detail
 * reason: "unavailable" | "timeout" | "grpc status N: message" | "bad response"
 * | "not configured". */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mcp/mcproxy.h"

static const mcp_field route_fields[] = {
    MCP_FIELD(mcp_mcproxy_route, listener),
    MCP_FIELD(mcp_mcproxy_route, hostname),
    MCP_FIELD(mcp_mcproxy_route, backend),
    MCP_FIELD(mcp_mcproxy_route, mode),
    MCP_FIELD(mcp_mcproxy_route, service),
    /* "" means unset on the wire: leave the field out, as an l4 route has none */
    MCP_FIELD_F(mcp_mcproxy_route, cert_path, MCP_F_OMIT_ZERO),
    MCP_FIELD_F(mcp_mcproxy_route, key_path, MCP_F_OMIT_ZERO),
};

static int push_outcome(lua_State *co, const void *result)
{
    const mcp_mcproxy_result *res = result;
    if (!res->ok)
        return mcp_push_failure(co, res->reason, res->detail);
    if (res->routes)
        mcp_push_fields_array(co, res->routes, res->n_routes, sizeof *res->routes, route_fields,
                              MCP_N_FIELDS(route_fields));
    else
        lua_pushboolean(co, 1); /* add/remove */
    return 1;
}

/* list_routes with no routes must still return a table. */
static int push_list_outcome(lua_State *co, const void *result)
{
    const mcp_mcproxy_result *res = result;
    if (res->ok && !res->routes) {
        lua_newtable(co);
        return 1;
    }
    return push_outcome(co, res);
}

static void proxy_done(const mcp_mcproxy_result *res, void *ud)
{
    mcp_op_done(ud, push_outcome, res);
}

static void proxy_cancel(mcp_op *op)
{
    mcp_mcproxy_cancel(op->req); /* proxy_done still runs, detached, and frees op */
}

static void list_done(const mcp_mcproxy_result *res, void *ud)
{
    mcp_op_done(ud, push_list_outcome, res);
}

/* A string field of the table at idx, left on the stack so that it stays alive. */
static const char *str_field(lua_State *L, int idx, const char *key, bool required)
{
    int t = lua_getfield(L, idx, key);
    if (t == LUA_TSTRING)
        return lua_tostring(L, -1);
    if (t == LUA_TNIL && !required)
        return NULL;
    luaL_error(L, "agent.proxy.add_route: field '%s' must be a string, got %s", key,
               lua_typename(L, t));
    return NULL;
}

/* The route listener when none is given: [mcproxy] listener, else ":443". */
static const char *default_listener(const mcp_host *h)
{
    return h->cfg && h->cfg->mcproxy_listener && h->cfg->mcproxy_listener[0]
               ? h->cfg->mcproxy_listener
               : ":443";
}

/* What every call starts from, once its arguments are read. */
typedef struct proxy_call {
    mcp_task *t;
    mcp_http *http;
    mcp_mcproxy_target to;
    mcp_op *op;
} proxy_call;

/* Readies call `what` of the running task; false, with nil, "not configured",
 * detail pushed, when there is no [mcproxy] socket. */
static bool begin_call(lua_State *L, const char *what, proxy_call *c)
{
    mcp_host *h = mcp_host_upvalue(L);
    c->t = mcp_task_require(L, what);
    const char *sock = h->cfg ? h->cfg->mcproxy_socket : NULL;
    if (!sock || !sock[0]) {
        mcp_push_failure(L, "not configured", "no [mcproxy] socket in the config");
        return false;
    }
    c->http = mcp_host_http(L, h); /* may raise: before anything is allocated */
    c->op = mcp_op_new(L, sizeof *c->op, proxy_cancel);
    c->to = (mcp_mcproxy_target){.socket = sock, .timeout_ms = MCP_MCPROXY_DEFAULT_TIMEOUT_MS};
    return true;
}

static int l_add_route(lua_State *L)
{
    mcp_mcproxy_route route = {0};
    luaL_checktype(L, 1, LUA_TTABLE);
    route.listener = (char *)str_field(L, 1, "listener", false);
    if (!route.listener)
        route.listener = (char *)default_listener(mcp_host_upvalue(L));
    route.hostname = (char *)str_field(L, 1, "hostname", true);
    route.backend = (char *)str_field(L, 1, "backend", true);
    route.mode = (char *)str_field(L, 1, "mode", false);
    route.service = (char *)str_field(L, 1, "service", false);
    route.cert_path = (char *)str_field(L, 1, "cert_path", false);
    route.key_path = (char *)str_field(L, 1, "key_path", false);
    if (!route.mode)
        route.mode = "l4";
    if (strcmp(route.mode, "l4") != 0 && strcmp(route.mode, "l7") != 0)
        return luaL_error(L, "agent.proxy.add_route: mode must be \"l4\" or \"l7\", got \"%s\"",
                          route.mode);
    proxy_call c;
    if (!begin_call(L, "agent.proxy.add_route", &c))
        return 3;
    mcp_error err = {{0}};
    c.op->req = mcp_mcproxy_add_route(c.http, &c.to, &route, proxy_done, c.op, &err);
    return mcp_op_wait_or_fail(L, c.t, c.op, "unavailable", err.msg);
}

static int l_remove_route(lua_State *L)
{
    const char *listener = luaL_optstring(L, 1, default_listener(mcp_host_upvalue(L)));
    const char *hostname = luaL_checkstring(L, 2);
    proxy_call c;
    if (!begin_call(L, "agent.proxy.remove_route", &c))
        return 3;
    mcp_error err = {{0}};
    c.op->req = mcp_mcproxy_remove_route(c.http, &c.to, listener, hostname, proxy_done, c.op, &err);
    return mcp_op_wait_or_fail(L, c.t, c.op, "unavailable", err.msg);
}

static int l_list_routes(lua_State *L)
{
    proxy_call c;
    if (!begin_call(L, "agent.proxy.list_routes", &c))
        return 3;
    mcp_error err = {{0}};
    c.op->req = mcp_mcproxy_list_routes(c.http, &c.to, list_done, c.op, &err);
    return mcp_op_wait_or_fail(L, c.t, c.op, "unavailable", err.msg);
}

int luaopen_mcp_proxy(lua_State *L)
{
    static const luaL_Reg fns[] = {{"add_route", l_add_route},
                                   {"remove_route", l_remove_route},
                                   {"list_routes", l_list_routes},
                                   {NULL, NULL}};
    mcp_new_lib(L, fns, lua_upvalueindex(1));
    return 1;
}
