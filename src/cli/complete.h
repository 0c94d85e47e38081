/* `mcp-agent complete WHAT`: words from the command table and the registry
 * for the bash completion, and the man page's COMMANDS section, so neither
 * repeats the table. Hidden from help. */
#ifndef MCP_CLI_COMPLETE_H
#define MCP_CLI_COMPLETE_H

#include "args.h"

/* complete commands | flags COMMAND | services | scdoc. db_path is the
 * config's [database] path (services: silent and empty when there is no
 * registry). Returns the exit code. */
int complete_command(const parsed_args *p, const char *db_path);

#endif
