/* `mcp-agent version [--verbose] [--json]`: the build and what it runs on. */
#ifndef MCP_CLI_VERSION_H
#define MCP_CLI_VERSION_H

#include "args.h"

/* Prints the version, git commit and the Lua, SQLite, libuv and podman
 * versions; --verbose adds where lua/ and policies/ are loaded from.
 * Returns the exit code. */
int version_command(const parsed_args *p, const char *default_config);

#endif
