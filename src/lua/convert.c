/* Moving values between C structures and Lua tables. */
#include <stdlib.h>

#include "internal.h"

mcp_host *mcp_host_upvalue(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

void mcp_new_lib(lua_State *L, const luaL_Reg *fns, int host_idx)
{
    host_idx = lua_absindex(L, host_idx);
    int n = 0;
    while (fns[n].name)
        n++;
    lua_createtable(L, 0, n);
    lua_pushvalue(L, host_idx);
    luaL_setfuncs(L, fns, 1);
}

void mcp_set_cfunction(lua_State *L, const char *key, lua_CFunction fn)
{
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, key);
}

void mcp_new_metatable(lua_State *L, const char *name, const luaL_Reg *methods, int host_idx,
                       const luaL_Reg *meta)
{
    host_idx = lua_absindex(L, host_idx);
    if (luaL_newmetatable(L, name)) {
        if (methods) {
            mcp_new_lib(L, methods, host_idx);
            lua_setfield(L, -2, "__index");
        }
        if (meta)
            luaL_setfuncs(L, meta, 0);
    }
    lua_pop(L, 1);
}

void mcp_push_strv(lua_State *L, const mcp_strv *sv)
{
    lua_createtable(L, (int)sv->n, 0);
    for (size_t i = 0; i < sv->n; i++) {
        lua_pushstring(L, sv->v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

void mcp_push_array(lua_State *L, const void *items, size_t n, size_t size,
                    void (*push)(lua_State *L, const void *item))
{
    const char *p = items;
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        push(L, p + i * size);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

int mcp_push_failure(lua_State *L, const char *reason, const char *detail)
{
    lua_pushnil(L);
    lua_pushstring(L, reason);
    lua_pushstring(L, detail);
    return 3;
}

int mcp_push_reason(lua_State *L, const char *reason)
{
    lua_pushnil(L);
    lua_pushstring(L, reason);
    return 2;
}

void mcp_check_strv_field(lua_State *L, int idx, const char *key, mcp_strv *out)
{
    idx = lua_absindex(L, idx);
    int t = lua_getfield(L, idx, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (t != LUA_TTABLE)
        luaL_error(L, "field '%s' must be an array of strings, got %s", key, lua_typename(L, t));
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, -1, i) != LUA_TSTRING && !lua_isnumber(L, -1))
            luaL_error(L, "field '%s[%d]' must be a string, got %s", key, (int)i,
                       luaL_typename(L, -1));
        if (mcp_strv_push(out, lua_tostring(L, -1)) != 0)
            luaL_error(L, "out of memory");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

char *mcp_opt_string_field(lua_State *L, int idx, const char *key)
{
    int t = lua_getfield(L, idx, key);
    char *s = NULL;
    if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        s = mcp_strdup(lua_tostring(L, -1));
        if (!s)
            luaL_error(L, "out of memory");
    } else if (t != LUA_TNIL) {
        luaL_error(L, "field '%s' must be a string, got %s", key, lua_typename(L, t));
    }
    lua_pop(L, 1);
    return s;
}

void mcp_set_string(lua_State *L, const char *key, const char *val)
{
    if (!val)
        return;
    lua_pushstring(L, val);
    lua_setfield(L, -2, key);
}

void mcp_set_int(lua_State *L, const char *key, lua_Integer val)
{
    lua_pushinteger(L, val);
    lua_setfield(L, -2, key);
}

void mcp_set_number(lua_State *L, const char *key, lua_Number val)
{
    lua_pushnumber(L, val);
    lua_setfield(L, -2, key);
}

void mcp_set_bool(lua_State *L, const char *key, bool val)
{
    lua_pushboolean(L, val);
    lua_setfield(L, -2, key);
}
