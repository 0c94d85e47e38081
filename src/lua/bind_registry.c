/* agent.registry: the desired state, as plain Lua tables (docs/LUA_API.md). */
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

static void push_route(lua_State *L, const mcp_route *r)
{
    lua_createtable(L, 0, 5);
    mcp_set_string(L, "name", r->name);
    if (r->port)
        mcp_set_int(L, "port", r->port);
    mcp_set_string(L, "mode", r->mode);
    mcp_set_string(L, "hostname", r->hostname);
    if (r->host_port)
        mcp_set_int(L, "host_port", r->host_port);
}

static void push_component(lua_State *L, const mcp_service *svc, const mcp_component *c)
{
    lua_createtable(L, 0, 14);
    mcp_set_string(L, "name", c->name);
    char *container = mcp_container_name(svc->name, c->name);
    if (!container)
        luaL_error(L, "out of memory");
    mcp_set_string(L, "container", container);
    free(container);
    mcp_set_string(L, "image", c->image);
    mcp_set_string(L, "network", c->network);
    mcp_set_string(L, "user", c->user);
    mcp_set_string(L, "restart", c->restart);
    mcp_set_string(L, "desired_state", c->desired_state);
    mcp_push_strv(L, &c->ports);
    lua_setfield(L, -2, "ports");
    mcp_push_strv(L, &c->volumes);
    lua_setfield(L, -2, "volumes");
    mcp_push_strv(L, &c->cmd);
    lua_setfield(L, -2, "cmd");
    mcp_push_strv(L, &c->env);
    lua_setfield(L, -2, "env");
    if (c->health.check) {
        lua_createtable(L, 0, 3);
        mcp_set_string(L, "check", c->health.check);
        if (c->health.port)
            mcp_set_int(L, "port", c->health.port);
        mcp_set_string(L, "path", c->health.path);
        lua_setfield(L, -2, "health");
    }
    lua_createtable(L, (int)c->n_routes, 0);
    for (size_t i = 0; i < c->n_routes; i++) {
        push_route(L, &c->routes[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "routes");
}

static void push_service(lua_State *L, const mcp_service *svc)
{
    lua_createtable(L, 0, 3);
    mcp_set_string(L, "name", svc->name);
    mcp_set_bool(L, "active", svc->active);
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
    lua_pushnil(L);
    lua_pushliteral(L, "registry");
    lua_pushstring(L, err->msg);
    return 3;
}

static int l_services(lua_State *L)
{
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    mcp_service *svcs = NULL;
    size_t n = 0;
    if (mcp_registry_list_services(reg, &svcs, &n, &err) != 0)
        return registry_failure(L, &err);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        push_service(L, &svcs[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    mcp_services_free(svcs, n);
    return 1;
}

static int l_service(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    mcp_service svc;
    memset(&svc, 0, sizeof svc);
    int found = mcp_registry_get_service(reg, name, &svc, &err);
    if (found < 0)
        return registry_failure(L, &err);
    if (found == 0) {
        lua_pushnil(L);
        return 1;
    }
    push_service(L, &svc);
    mcp_service_free(&svc);
    return 1;
}

static int l_set_desired(lua_State *L)
{
    const char *service = luaL_checkstring(L, 1);
    const char *component = luaL_optstring(L, 2, NULL);
    const char *state = luaL_checkstring(L, 3);
    if (strcmp(state, "running") != 0 && strcmp(state, "stopped") != 0)
        return luaL_argerror(L, 3, "want \"running\" or \"stopped\"");
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    int n = mcp_registry_set_desired_state(reg, service, component, state, &err);
    if (n < 0)
        return registry_failure(L, &err);
    lua_pushinteger(L, n);
    return 1;
}

static int l_set_active(lua_State *L)
{
    const char *service = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TBOOLEAN);
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    int n = mcp_registry_set_active(reg, service, lua_toboolean(L, 2), &err);
    if (n < 0)
        return registry_failure(L, &err);
    lua_pushinteger(L, n);
    return 1;
}

static int l_event(lua_State *L)
{
    const char *service = luaL_checkstring(L, 1);
    const char *component = luaL_optstring(L, 2, NULL);
    const char *kind = luaL_checkstring(L, 3);
    const char *message = luaL_optstring(L, 4, "");
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    if (mcp_registry_add_event(reg, service, component, kind, message, &err) != 0)
        return registry_failure(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_events(lua_State *L)
{
    const char *service = luaL_optstring(L, 1, NULL);
    lua_Integer limit = luaL_optinteger(L, 2, 20);
    mcp_registry *reg = check_registry(L);
    mcp_error err = {{0}};
    mcp_event *ev = NULL;
    size_t n = 0;
    if (mcp_registry_list_events(reg, service, (int)limit, &ev, &n, &err) != 0)
        return registry_failure(L, &err);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_createtable(L, 0, 5);
        lua_pushnumber(L, (lua_Number)ev[i].time_ms / 1000.0);
        lua_setfield(L, -2, "time");
        mcp_set_string(L, "service", ev[i].service);
        mcp_set_string(L, "component", ev[i].component);
        mcp_set_string(L, "kind", ev[i].kind);
        mcp_set_string(L, "message", ev[i].message);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    mcp_events_free(ev, n);
    return 1;
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
    if (mcp_service_parse(text, len, filename, &svc, &err) != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "invalid");
        lua_pushstring(L, err.msg);
        return 3;
    }
    int port_min = h->cfg ? h->cfg->port_min : 10000, port_max = h->cfg ? h->cfg->port_max : 19999;
    if (mcp_registry_put_service(reg, &svc, port_min, port_max, port_free, NULL, &err) != 0) {
        mcp_service_free(&svc);
        return registry_failure(L, &err);
    }
    push_service(L, &svc);
    mcp_service_free(&svc);
    return 1;
}

/* registry.validate(text, filename) -> true | nil, "invalid", message */
static int l_validate(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    const char *filename = luaL_optstring(L, 2, "<service>");
    mcp_error err = {{0}};
    mcp_service svc;
    memset(&svc, 0, sizeof svc);
    if (mcp_service_parse(text, len, filename, &svc, &err) != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "invalid");
        lua_pushstring(L, err.msg);
        return 3;
    }
    mcp_service_free(&svc);
    lua_pushboolean(L, 1);
    return 1;
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
    static const luaL_Reg fns[] = {{"services", l_services},       {"service", l_service},
                                   {"set_desired", l_set_desired}, {"set_active", l_set_active},
                                   {"event", l_event},             {"events", l_events},
                                   {"delete", l_delete},           {"deploy", l_deploy},
                                   {"validate", l_validate},       {"snapshot", l_snapshot},
                                   {NULL, NULL}};
    luaL_newlibtable(L, fns);
    lua_pushvalue(L, lua_upvalueindex(1));
    luaL_setfuncs(L, fns, 1);
    return 1;
}
