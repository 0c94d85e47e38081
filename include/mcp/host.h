/* The Lua policy host: one Lua state and one event loop, the `agent` object
 * over the C core, and the policies loaded from [policy] dir with the
 * built-in ones as fallback. The only interface the CLI needs; it hides Lua. */
#ifndef MCP_HOST_H
#define MCP_HOST_H

#include <limits.h>
#include <stdbool.h>

#include "mcp/config.h"
#include "mcp/error.h"
#include "mcp/registry.h"

typedef struct mcp_host mcp_host;

typedef struct mcp_host_opts {
    const mcp_config *cfg;
    mcp_registry *reg; /* may be NULL: commands that need it then fail cleanly */
    bool dry_run;      /* wrap the runtime: mutating calls are printed, not done */
    const char *config_path; /* shown in messages; may be NULL */
} mcp_host_opts;

/* Creates the Lua state and event loop and builds the agent object.
 * Returns 0, or -1 with err set (e.g. the Lua library cannot be found). */
int mcp_host_new(const mcp_host_opts *opts, mcp_host **out, mcp_error *err);
void mcp_host_free(mcp_host *h);

/* Runs command `name` of the Lua command layer (lua/mcp/host/cli.lua) as the
 * main task with the given arguments, on the event loop, until it ends.
 * SIGINT/SIGTERM cancel it. Returns the exit code the command chose (SPEC §2):
 * 0 done, 1 goal not reached, 2 usage/config/definition/policy error. */
int mcp_host_command(mcp_host *h, const char *name, int argc, char **argv);

/* Where the Lua library and built-in policies are (src/lua/datadir.c):
 * $MCP_AGENT_DATADIR, else the source tree for a binary inside the build
 * tree, else BINDIR/../share/mcp-agent beside the running binary. */
typedef struct mcp_host_paths {
    char datadir[PATH_MAX];    /* holds lua/ and policies/ */
    char lua_dir[PATH_MAX];    /* DATADIR/lua */
    char policy_dir[PATH_MAX]; /* DATADIR/policies (the built-in ones) */
    const char *origin; /* "MCP_AGENT_DATADIR", "build tree" or "relative to the binary" */
} mcp_host_paths;

/* Returns 0, or -1 with err naming the missing directory and the rule used. */
int mcp_host_find_paths(mcp_host_paths *out, mcp_error *err);
/* The embedded Lua's release, e.g. "5.4.4". */
const char *mcp_host_lua_version(void);

#endif
