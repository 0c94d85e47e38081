/* Loading policy scripts (SPEC §11): `require "policy.NAME"` finds NAME.lua
 * in the operator's [policy] dir first, then among the built-in policies;
 * `require "policy.builtin.NAME"` only the built-in one, so an operator's
 * policy can wrap it. Nothing else is searched here: a file in the policy
 * dir never shadows a library or C module. Files (and the operator's dir)
 * are refused when writable by group or others (sshd's StrictModes); text
 * chunks only; each in its own environment; an instruction budget so a
 * script that loops at load time cannot hang us; and a policy that requires
 * itself is an error naming it (Lua's require would recurse until the C
 * stack overflows). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "mcp/log.h"

#define LOAD_BUDGET_STEPS 1000 /* instructions between hook calls */
#define LOAD_BUDGET_CALLS 100000 /* 100 M instructions: far beyond any sane top-level chunk */

/* StrictModes for a policy file (dir false) or the policy dir: it exists, is
 * of that kind, is not writable by group or others and is owned by root or us. */
static int check_strict(const char *path, bool dir, char *why, size_t whylen)
{
    const char *what = dir ? "policies from a directory" : "a policy";
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "%s: %s", path,
                 dir ? "the policy dir is not a directory" : "not a regular file");
        return -1;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(why, whylen,
                 "%s: refusing to load %s writable by group or others (mode %04o); "
                 "fix with: chmod go-w %s",
                 path, what, (unsigned)(st.st_mode & 07777), path);
        return -1;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        snprintf(why, whylen, "%s: refusing to load %s owned by uid %u (want root or uid %u)", path,
                 what, (unsigned)st.st_uid, (unsigned)geteuid());
        return -1;
    }
    return 0;
}

int mcp_policy_check_file(const char *path, char *why, size_t whylen)
{
    return check_strict(path, false, why, whylen);
}

/* Whoever may write the directory may drop a policy into it: the same rules as for the files. */
static int check_policy_dir(const char *dir, char *why, size_t whylen)
{
    return check_strict(dir, true, why, whylen);
}

/* Loads never interleave: a chunk cannot yield while loading. */
static int g_budget_calls;
static const char *g_budget_path;

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    if (++g_budget_calls <= LOAD_BUDGET_CALLS)
        return;
    /* the full path (Lua's own chunk names shorten long ones) and the line */
    int line = lua_getinfo(L, "l", ar) ? ar->currentline : -1;
    luaL_error(L, "%s:%d: policy still running at load time after %d million instructions "
                  "(an endless loop at the top level of the file?)",
               g_budget_path ? g_budget_path : "?", line,
               LOAD_BUDGET_STEPS * LOAD_BUDGET_CALLS / 1000000);
}

/* New globals a policy defines are almost always a missing `local`. */
static int env_newindex(lua_State *L)
{
    const char *name = lua_tostring(L, 2);
    lua_getfield(L, lua_upvalueindex(1), "name");
    mcp_log(MCP_LOG_WARN, "policy sets a global (missing 'local'?)", "policy",
            lua_tostring(L, -1), "global", name ? name : "?", NULL);
    lua_pop(L, 1);
    lua_rawset(L, 1);
    return 0;
}

/* Registry key of the set of policy modules being loaded right now. */
static const char LOADING_KEY[] = "mcp.policy.loading";

/* Marks name as loading (value true) or done (nil) in the loading set. */
static void set_loading(lua_State *L, const char *name, bool loading)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, LOADING_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, LOADING_KEY);
    }
    if (loading)
        lua_pushboolean(L, 1);
    else
        lua_pushnil(L);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

static bool is_loading(lua_State *L, const char *name)
{
    bool yes = false;
    if (lua_getfield(L, LUA_REGISTRYINDEX, LOADING_KEY) == LUA_TTABLE) {
        yes = lua_getfield(L, -1, name) != LUA_TNIL;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return yes;
}

/* Loader returned by the searcher: runs the chunk in its own _ENV under the budget. */
static int policy_loader(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *path = luaL_checkstring(L, 2);
    if (luaL_loadfilex(L, path, "t") != LUA_OK)
        return lua_error(L);
    /* _ENV: a fresh table reading through to the curated globals of
     * mcp.sandbox (no os.execute, io.popen, debug, bytecode, raw core) */
    lua_newtable(L);
    lua_newtable(L); /* its metatable */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "mcp.sandbox");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "globals");
    lua_remove(L, -2);
    lua_setfield(L, -2, "__index");
    lua_newtable(L);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
    lua_pushcclosure(L, env_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
    if (!lua_setupvalue(L, -2, 1))
        lua_pop(L, 1);

    lua_pushstring(L, name);
    g_budget_calls = 0;
    g_budget_path = path;
    /* the thread's own hook (the runaway check) comes back afterwards */
    lua_Hook old_hook = lua_gethook(L);
    int old_mask = lua_gethookmask(L), old_count = lua_gethookcount(L);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, LOAD_BUDGET_STEPS);
    set_loading(L, name, true);
    int status = lua_pcall(L, 1, 1, 0);
    set_loading(L, name, false);
    lua_sethook(L, old_hook, old_mask, old_count);
    g_budget_path = NULL;
    if (status != LUA_OK)
        return lua_error(L);
    if (lua_isnil(L, -1))
        return luaL_error(L, "%s: a policy must return a table of functions", path);
    return 1;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* A policy's own name: letters, digits, '_' and '-', no dots or slashes. */
static bool valid_policy_name(const char *name)
{
    if (!*name)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return false;
    return true;
}

/* package.searchers entry for "policy.NAME" and "policy.builtin.NAME". */
static int policy_searcher(lua_State *L)
{
    mcp_host *h = mcp_host_upvalue(L);
    const char *module = luaL_checkstring(L, 1);
    static const char prefix[] = "policy.", builtin[] = "builtin.";
    if (strncmp(module, prefix, sizeof prefix - 1) != 0)
        return 0; /* not ours: the other searchers look */
    const char *name = module + sizeof prefix - 1;
    bool only_builtin = strncmp(name, builtin, sizeof builtin - 1) == 0;
    if (only_builtin)
        name += sizeof builtin - 1;
    if (!valid_policy_name(name)) {
        lua_pushfstring(L, "\n\tno policy '%s' (a policy name has letters, digits, '_' and '-')",
                        module);
        return 1;
    }
    const char *dirs[2] = {only_builtin ? NULL : (h->cfg ? h->cfg->policy_dir : NULL),
                           h->builtin_policy_dir};
    luaL_Buffer tried;
    luaL_buffinit(L, &tried);
    for (int i = 0; i < 2; i++) {
        if (!dirs[i] || !*dirs[i])
            continue;
        char path[PATH_MAX];
        int n = snprintf(path, sizeof path, "%s/%s.lua", dirs[i], name);
        if (n < 0 || (size_t)n >= sizeof path)
            continue;
        if (!file_exists(path)) {
            luaL_addstring(&tried, "\n\tno file '");
            luaL_addstring(&tried, path);
            luaL_addstring(&tried, "'");
            continue;
        }
        if (is_loading(L, module))
            return luaL_error(L,
                              "%s: policy %s requires itself; to build on the built-in policy, "
                              "require \"policy.builtin.%s\"",
                              path, module, name);
        char why[2 * PATH_MAX + 256];
        if ((i == 0 && check_policy_dir(dirs[i], why, sizeof why) != 0) ||
            mcp_policy_check_file(path, why, sizeof why) != 0)
            return luaL_error(L, "%s", why);
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_pushcclosure(L, policy_loader, 1);
        lua_pushstring(L, path);
        return 2;
    }
    luaL_pushresult(&tried);
    return 1;
}

void mcp_policy_install_searcher(lua_State *L, mcp_host *h)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchers");
    /* after the preload searcher, before the path searchers */
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = n; i >= 2; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushlightuserdata(L, h);
    lua_pushcclosure(L, policy_searcher, 1);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);
}
