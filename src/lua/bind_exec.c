/* core.exec.run: runs a program in the foreground of a command (mcp-agent
 * test runs busted, check --lint runs luacheck) with the terminal's stdin,
 * stdout and stderr, an argv (never a shell), extra environment and a bound.
 * It blocks the loop while it waits: only commands that have nothing else to
 * do call it, never the daemon. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "internal.h"

extern char **environ;

#define POLL_NS 20000000L /* how often the wait looks at the child: 20 ms */

/* environ with every "K=V" of the table at idx (0 or nil: none) put over it. */
static int build_env(lua_State *L, int idx, mcp_strv *env)
{
    mcp_strv extra = {0};
    if (idx != 0 && !lua_isnil(L, idx)) {
        luaL_checktype(L, idx, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
                mcp_strv_free(&extra);
                return luaL_argerror(L, 2, "opts.env: string keys and string values only");
            }
            lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
            int rc = mcp_strv_push(&extra, lua_tostring(L, -1));
            lua_pop(L, 2);
            if (rc != 0) {
                mcp_strv_free(&extra);
                return luaL_error(L, "out of memory");
            }
        }
    }
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        size_t klen = eq ? (size_t)(eq - *e) + 1 : strlen(*e);
        bool replaced = false;
        for (size_t i = 0; i < extra.n && !replaced; i++)
            replaced = strncmp(extra.v[i], *e, klen) == 0;
        if (!replaced && mcp_strv_push(env, *e) != 0) {
            mcp_strv_free(&extra);
            return luaL_error(L, "out of memory");
        }
    }
    int rc = mcp_strv_extend(env, &extra);
    mcp_strv_free(&extra);
    if (rc != 0)
        return luaL_error(L, "out of memory");
    return 0;
}

/* The child starts with default signal dispositions and nothing blocked,
 * whatever the host set up for itself. */
static int spawn_attrs(posix_spawnattr_t *attr)
{
    sigset_t none, all;
    if (posix_spawnattr_init(attr) != 0)
        return -1;
    if (sigemptyset(&none) != 0 || sigfillset(&all) != 0 ||
        posix_spawnattr_setsigmask(attr, &none) != 0 ||
        posix_spawnattr_setsigdefault(attr, &all) != 0 ||
        posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF) != 0) {
        posix_spawnattr_destroy(attr);
        return -1;
    }
    return 0;
}

static double monotonic_seconds(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for pid until the deadline, then kills it. -> waitpid status, or -1
 * (errno set; ETIMEDOUT after the kill). */
static int wait_bounded(pid_t pid, double timeout_s)
{
    double deadline = monotonic_seconds() + timeout_s;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -1;
        if (monotonic_seconds() >= deadline) {
            if (kill(pid, SIGKILL) != 0 && errno != ESRCH)
                return -1;
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            errno = ETIMEDOUT;
            return -1;
        }
        struct timespec pause = {0, POLL_NS};
        nanosleep(&pause, NULL);
    }
}

/* exec.run(argv, {env = {K = V}, timeout = seconds}) -> exit code
 * | nil, "not found" | "timeout" | "signal" | "failed", detail */
static int l_run(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    mcp_strv argv = {0};
    lua_Integer n = luaL_len(L, 1);
    if (n < 1)
        return luaL_argerror(L, 1, "argv needs at least the program");
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, 1, i);
        const char *a = lua_tostring(L, -1);
        if (!a || lua_type(L, -1) != LUA_TSTRING) {
            mcp_strv_free(&argv);
            return luaL_argerror(L, 1, "argv: strings only");
        }
        int rc = mcp_strv_push(&argv, a);
        lua_pop(L, 1);
        if (rc != 0) {
            mcp_strv_free(&argv);
            return luaL_error(L, "out of memory");
        }
    }
    double timeout = 3600;
    int env_idx = 0;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "timeout");
        if (!lua_isnil(L, -1))
            timeout = luaL_checknumber(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, 2, "env");
        env_idx = lua_gettop(L);
    }
    if (timeout <= 0) {
        mcp_strv_free(&argv);
        return luaL_argerror(L, 2, "opts.timeout must be > 0");
    }
    mcp_strv env = {0};
    build_env(L, env_idx, &env);
    char **args = mcp_strv_argv(&argv);
    char **envp = mcp_strv_argv(&env);
    posix_spawnattr_t attr;
    pid_t pid;
    int rc = -1;
    if (args && envp && spawn_attrs(&attr) == 0) {
        rc = posix_spawnp(&pid, args[0], NULL, &attr, args, envp);
        posix_spawnattr_destroy(&attr);
    } else {
        rc = ENOMEM;
    }
    char program[256];
    snprintf(program, sizeof program, "%s", argv.v[0]);
    free(args);
    free(envp);
    mcp_strv_free(&argv);
    mcp_strv_free(&env);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, rc == ENOENT ? "not found" : "failed");
        lua_pushfstring(L, "%s: %s", program, strerror(rc));
        return 3;
    }
    int status = wait_bounded(pid, timeout);
    if (status < 0) {
        int e = errno;
        lua_pushnil(L);
        lua_pushstring(L, e == ETIMEDOUT ? "timeout" : "failed");
        lua_pushfstring(L, "%s: %s", program,
                        e == ETIMEDOUT ? "did not finish in time, killed" : strerror(e));
        return 3;
    }
    if (WIFSIGNALED(status)) {
        lua_pushnil(L);
        lua_pushstring(L, "signal");
        lua_pushfstring(L, "%s: killed by signal %d", program, WTERMSIG(status));
        return 3;
    }
    lua_pushinteger(L, WEXITSTATUS(status));
    return 1;
}

int luaopen_mcp_exec(lua_State *L)
{
    static const luaL_Reg fns[] = {{"run", l_run}, {NULL, NULL}};
    mcp_new_lib(L, fns, lua_upvalueindex(1));
    return 1;
}
