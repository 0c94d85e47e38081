/* Where the agent's Lua library and built-in policies live. An installed
 * binary finds them relative to itself (BINDIR/../share/mcp-agent), so any
 * prefix and DESTDIR work; a binary inside the build tree uses the source
 * tree; MCP_AGENT_DATADIR overrides both. Never a compiled-in install path:
 * a moved tree must not load stale files from the old place. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lua.h>

#include "mcp/host.h"

#ifndef MCP_SOURCE_DIR
#define MCP_SOURCE_DIR "."
#endif
#ifndef MCP_BUILD_DIR
#define MCP_BUILD_DIR "/nonexistent"
#endif
#ifndef MCP_DATADIR_REL
#define MCP_DATADIR_REL "../share/mcp-agent"
#endif

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* True when path lies inside dir (both absolute, dir without a trailing slash). */
static bool is_inside(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return n > 0 && strncmp(path, dir, n) == 0 && path[n] == '/';
}

/* Drops "dir/.." pairs in place ("/usr/bin/../share" -> "/usr/share"), for
 * messages about a path that does not exist (realpath needs it to exist). */
static void drop_dotdots(char *path)
{
    char *p;
    while ((p = strstr(path, "/../")) != NULL && p > path) {
        char *start = p - 1;
        while (start > path && *start != '/')
            start--;
        memmove(start, p + 3, strlen(p + 3) + 1);
    }
}

static int fill(mcp_host_paths *out, const char *base, const char *origin, mcp_error *err)
{
    char real[PATH_MAX];
    /* show the tidy path ("/usr/share/mcp-agent", not "/usr/bin/../share/..") */
    if (!realpath(base, real)) {
        snprintf(real, sizeof real, "%s", base);
        drop_dotdots(real);
    }
    int n1 = snprintf(out->datadir, sizeof out->datadir, "%s", real);
    int n2 = snprintf(out->lua_dir, sizeof out->lua_dir, "%s/lua", real);
    int n3 = snprintf(out->policy_dir, sizeof out->policy_dir, "%s/policies", real);
    if (n1 < 0 || n2 < 0 || n3 < 0 || (size_t)n2 >= sizeof out->lua_dir ||
        (size_t)n3 >= sizeof out->policy_dir) {
        mcp_error_set(err, "%s: data directory path too long", base);
        return -1;
    }
    out->origin = origin;
    if (!is_dir(out->lua_dir)) {
        mcp_error_set(err,
                      "%s: the Lua library is missing (%s; set MCP_AGENT_DATADIR to the "
                      "directory holding lua/ and policies/)",
                      out->lua_dir, origin);
        return -1;
    }
    return 0;
}

int mcp_host_find_paths(mcp_host_paths *out, mcp_error *err)
{
    memset(out, 0, sizeof *out);
    const char *env = getenv("MCP_AGENT_DATADIR");
    if (env && *env)
        return fill(out, env, "MCP_AGENT_DATADIR", err);

    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        mcp_error_set(err, "cannot find the running binary (/proc/self/exe): %s", strerror(errno));
        return -1;
    }
    exe[n] = '\0';
    if (is_inside(exe, MCP_BUILD_DIR))
        return fill(out, MCP_SOURCE_DIR, "build tree", err);

    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    char rel[PATH_MAX];
    if (snprintf(rel, sizeof rel, "%s/%s", exe, MCP_DATADIR_REL) >= (int)sizeof rel) {
        mcp_error_set(err, "%s: binary path too long", exe);
        return -1;
    }
    return fill(out, rel, "relative to the binary", err);
}

const char *mcp_host_lua_version(void)
{
    return LUA_VERSION_MAJOR "." LUA_VERSION_MINOR "." LUA_VERSION_RELEASE;
}
