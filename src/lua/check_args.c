/* Argument checks shared by the bindings: misuse (a number for a name, a NUL
 * inside one, 100k characters) raises luaL_argerror naming the argument,
 * before anything reaches the runtime or the registry. */
#include <string.h>

#include "internal.h"
#include "mcp/service.h"

#define MAX_TEXT 4096
#define MAX_CONTAINER 127 /* "service-component": two names of at most 63 */
#define MAX_IMAGE 1024

/* A real string (numbers are not silently converted) without a NUL inside. */
/* The value at idx is read; errors name argument arg (a table's field is its table's argument). */
static const char *check_string(lua_State *L, int idx, int arg, const char *what, size_t *len)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_argerror(
            L, arg, lua_pushfstring(L, "%s must be a string, got %s", what, luaL_typename(L, idx)));
    const char *s = lua_tolstring(L, idx, len);
    if (strlen(s) != *len)
        luaL_argerror(L, arg, lua_pushfstring(L, "%s contains a NUL byte", what));
    return s;
}

const char *mcp_check_text(lua_State *L, int idx, const char *what)
{
    size_t len;
    const char *s = check_string(L, idx, idx, what, &len);
    if (len > MAX_TEXT)
        luaL_argerror(
            L, idx,
            lua_pushfstring(L, "%s is %d bytes long, at most %d", what, (int)len, MAX_TEXT));
    return s;
}

const char *mcp_opt_text(lua_State *L, int idx, const char *what)
{
    return lua_isnoneornil(L, idx) ? NULL : mcp_check_text(L, idx, what);
}

const char *mcp_check_name(lua_State *L, int idx, const char *what)
{
    size_t len;
    const char *s = check_string(L, idx, idx, what, &len);
    if (!mcp_name_valid(s))
        luaL_argerror(L, idx,
                      lua_pushfstring(L,
                                      "%s must be a name as in service files (lowercase letters, "
                                      "digits and '-', at most 63), got %s",
                                      what, len > 80 ? "a longer one" : s));
    return s;
}

const char *mcp_opt_name(lua_State *L, int idx, const char *what)
{
    return lua_isnoneornil(L, idx) ? NULL : mcp_check_name(L, idx, what);
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Podman's own rule for a name ([a-zA-Z0-9][a-zA-Z0-9_.-]*), bounded as ours are. */
static bool container_name_valid(const char *s, size_t len)
{
    if (len == 0 || len > MAX_CONTAINER || !is_alnum(s[0]))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return false;
    return true;
}

static const char *check_container(lua_State *L, int idx, int arg, const char *what)
{
    size_t len;
    const char *s = check_string(L, idx, arg, what, &len);
    if (!container_name_valid(s, len))
        luaL_argerror(L, arg,
                      lua_pushfstring(L,
                                      "%s must be a container name or id (a letter or digit, "
                                      "then letters, digits, '_', '.' or '-', at most %d), got %s",
                                      what, MAX_CONTAINER, len > 80 ? "a longer one" : s));
    return s;
}

const char *mcp_check_container(lua_State *L, int idx, const char *what)
{
    return check_container(L, idx, idx, what);
}

static const char *check_image(lua_State *L, int idx, int arg, const char *what)
{
    size_t len;
    const char *s = check_string(L, idx, arg, what, &len);
    bool ok = len > 0 && len <= MAX_IMAGE && s[0] != '-';
    for (size_t i = 0; ok && i < len; i++)
        ok = (unsigned char)s[i] > ' ' && s[i] != 0x7f;
    if (!ok)
        luaL_argerror(L, arg,
                      lua_pushfstring(L,
                                      "%s must be an image reference (no spaces or control "
                                      "characters, not starting with '-', at most %d)",
                                      what, MAX_IMAGE));
    return s;
}

const char *mcp_check_image(lua_State *L, int idx, const char *what)
{
    return check_image(L, idx, idx, what);
}

void mcp_check_spec_names(lua_State *L, int arg)
{
    lua_getfield(L, arg, "name");
    if (!lua_isnil(L, -1))
        check_container(L, -1, arg, "spec.name");
    lua_getfield(L, arg, "image");
    if (!lua_isnil(L, -1))
        check_image(L, -1, arg, "spec.image");
    lua_pop(L, 2);
}
