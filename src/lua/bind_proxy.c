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

typedef enum { OP_ADD, OP_REMOVE, OP_LIST } proxy_kind;

static int start(lua_State *L, proxy_kind kind)
{
    static const char *const names[] = {"agent.proxy.add_route", "agent.proxy.remove_route",
                                        "agent.proxy.list_routes"};
    mcp_host *h = mcp_host_upvalue(L);
    mcp_mcproxy_route route = {0};
    const char *listener = NULL, *hostname = NULL;
    const char *default_listener = h->cfg && h->cfg->mcproxy_listener && h->cfg->mcproxy_listener[0]
                                       ? h->cfg->mcproxy_listener
                                       : ":443";
    if (kind == OP_ADD) {
        luaL_checktype(L, 1, LUA_TTABLE);
        route.listener = (char *)str_field(L, 1, "listener", false);
        if (!route.listener)
            route.listener = (char *)default_listener;
        route.hostname = (char *)str_field(L, 1, "hostname", true);
        route.backend = (char *)str_field(L, 1, "backend", true);
        route.mode = (char *)str_field(L, 1, "mode", false);
        route.service = (char *)str_field(L, 1, "service", false);
        route.cert_path = (char *)str_field(L, 1, "cert_path", false);
        route.key_path = (char *)str_field(L, 1, "key_path", false);
        if (!route.mode)
            route.mode = "l4";
        if (strcmp(route.mode, "l4") != 0 && strcmp(route.mode, "l7") != 0)
            return luaL_error(L, "%s: mode must be \"l4\" or \"l7\", got \"%s\"", names[kind],
                              route.mode);
    } else if (kind == OP_REMOVE) {
        listener = luaL_optstring(L, 1, default_listener);
        hostname = luaL_checkstring(L, 2);
    }
    mcp_task *t = mcp_task_require(L, names[kind]);
    const char *sock = h->cfg ? h->cfg->mcproxy_socket : NULL;
    if (!sock || !sock[0])
        return mcp_push_failure(L, "not configured", "no [mcproxy] socket in the config");
    mcp_http *http = mcp_host_http(L, h); /* may raise: before anything is allocated */
    mcp_op *op = mcp_op_new(L, sizeof *op, proxy_cancel);
    mcp_mcproxy_target to = {.socket = sock, .timeout_ms = MCP_MCPROXY_DEFAULT_TIMEOUT_MS};
    mcp_error err = {{0}};
    switch (kind) {
    case OP_ADD:
        op->req = mcp_mcproxy_add_route(http, &to, &route, proxy_done, op, &err);
        break;
    case OP_REMOVE:
        op->req = mcp_mcproxy_remove_route(http, &to, listener, hostname, proxy_done, op, &err);
        break;
    case OP_LIST:
        op->req = mcp_mcproxy_list_routes(http, &to, list_done, op, &err);
        break;
    }
    return mcp_op_wait_or_fail(L, t, op, "unavailable", err.msg);
}

static int l_add_route(lua_State *L)
{
    return start(L, OP_ADD);
}
static int l_remove_route(lua_State *L)
{
    return start(L, OP_REMOVE);
}
static int l_list_routes(lua_State *L)
{
    return start(L, OP_LIST);
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
