/* agent.log: debug/info/warn/error(msg, fields) onto the structured log. */
#include <string.h>

#include "internal.h"
#include "mcp/log.h"

#define MAX_FIELDS 24

static int log_at(lua_State *L, mcp_log_level level)
{
    const char *msg = luaL_checkstring(L, 1);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    if (!mcp_log_enabled(level))
        return 0;
    const char *keys[MAX_FIELDS], *vals[MAX_FIELDS];
    int n = 0;
    if (lua_istable(L, 2)) {
        /* sorted keys give stable, greppable lines */
        lua_pushnil(L);
        while (lua_next(L, 2) != 0 && n < MAX_FIELDS) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                keys[n] = lua_tostring(L, -2);
                vals[n] = luaL_tolstring(L, -1, NULL); /* pushes; kept on the stack until we log */
                lua_insert(L, -3);                    /* below key and value */
                n++;
            }
            lua_pop(L, 1);
        }
        /* bubble sort: n is tiny */
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++)
                if (strcmp(keys[j], keys[i]) < 0) {
                    const char *k = keys[i], *v = vals[i];
                    keys[i] = keys[j];
                    vals[i] = vals[j];
                    keys[j] = k;
                    vals[j] = v;
                }
    }
    mcp_logv(level, msg, keys, vals, n);
    return 0;
}

static int l_debug(lua_State *L) { return log_at(L, MCP_LOG_DEBUG); }
static int l_info(lua_State *L) { return log_at(L, MCP_LOG_INFO); }
static int l_warn(lua_State *L) { return log_at(L, MCP_LOG_WARN); }
static int l_error(lua_State *L) { return log_at(L, MCP_LOG_ERROR); }

int luaopen_mcp_log(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"debug", l_debug}, {"info", l_info}, {"warn", l_warn}, {"error", l_error}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
