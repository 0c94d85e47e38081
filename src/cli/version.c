/* The `version` command. Only podman's version costs a process (bounded by a
 * timeout); the rest is compiled in or asked of the linked libraries. */
#include "version.h"

#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "mcp/host.h"
#include "mcp/proc.h"

#ifndef MCP_VERSION
#define MCP_VERSION "0.0.0"
#endif
#ifndef MCP_GIT_COMMIT
#define MCP_GIT_COMMIT "unknown"
#endif

#define PODMAN_VERSION_TIMEOUT_MS 5000

static bool has_flag(const parsed_args *p, const char *name)
{
    for (int i = 0; i < p->argc && strcmp(p->argv[i], "--") != 0; i++)
        if (strcmp(p->argv[i], name) == 0)
            return true;
    return false;
}

/* "4.3.1" from `podman --version` ("podman version 4.3.1"), or why not. */
static void podman_version(char *buf, size_t len)
{
    char *argv[] = {"podman", "--version", NULL};
    mcp_proc_result res;
    mcp_error err = {{0}};
    memset(&res, 0, sizeof res);
    if (mcp_proc_run(argv, PODMAN_VERSION_TIMEOUT_MS, &res, &err) != 0) {
        snprintf(buf, len, "unavailable (%.100s)", err.msg);
        return;
    }
    if (res.timed_out || res.term_signal || res.exit_status != 0 || !res.out) {
        snprintf(buf, len, "unavailable (podman --version failed)");
    } else {
        const char *v = strrchr(res.out, ' ');
        v = v ? v + 1 : res.out;
        snprintf(buf, len, "%.*s", (int)strcspn(v, "\r\n"), v);
    }
    mcp_proc_result_free(&res);
}

static int print_json(const char *podman, const mcp_host_paths *paths, const char *paths_err,
                      const char *config, bool verbose)
{
    json_t *o = json_pack("{ss ss ss ss ss ss}", "version", MCP_VERSION, "commit", MCP_GIT_COMMIT,
                          "lua", mcp_host_lua_version(), "sqlite", sqlite3_libversion(), "libuv",
                          uv_version_string(), "podman", podman);
    if (!o)
        return 1;
    if (verbose) {
        json_t *d =
            paths_err ? json_pack("{ss}", "error", paths_err)
                      : json_pack("{ss ss ss ss}", "datadir", paths->datadir, "lua", paths->lua_dir,
                                  "policies", paths->policy_dir, "origin", paths->origin);
        if (!d || json_object_set_new(o, "paths", d) != 0 ||
            json_object_set_new(o, "config", json_string(config)) != 0) {
            json_decref(o);
            return 1;
        }
    }
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s)
        return 1;
    puts(s);
    free(s);
    return 0;
}

int version_command(const parsed_args *p, const char *default_config)
{
    bool json = has_flag(p, "--json"), verbose = has_flag(p, "--verbose");
    char podman[160];
    podman_version(podman, sizeof podman);
    mcp_host_paths paths;
    mcp_error err = {{0}};
    bool found = mcp_host_find_paths(&paths, &err) == 0;
    const char *env = getenv("MCP_AGENT_CONFIG");
    const char *config = env && *env ? env : default_config;
    if (json)
        return print_json(podman, &paths, found ? NULL : err.msg, config, verbose) == 0 ? 0 : 1;
    printf("mcp-agent %s (commit %s)\n", MCP_VERSION, MCP_GIT_COMMIT);
    printf("lua %s, sqlite %s, libuv %s, podman %s\n", mcp_host_lua_version(), sqlite3_libversion(),
           uv_version_string(), podman);
    if (!verbose)
        return 0;
    if (found) {
        printf("lua library: %s (%s)\n", paths.lua_dir, paths.origin);
        printf("built-in policies: %s\n", paths.policy_dir);
    } else {
        printf("lua library: %s\n", err.msg);
    }
    printf("config: %s\n", config);
    return found ? 0 : 2;
}
