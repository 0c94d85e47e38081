/* A command's arguments parsed once, by its entry in the command table. */
#ifndef MCP_CLI_ARGS_H
#define MCP_CLI_ARGS_H

#include <stdbool.h>

#include "commands.h"

typedef struct parsed_args {
    bool help;    /* -h/--help among the flags: print the command's help */
    bool dry_run; /* --dry-run given (only commands that have it) */
    /* What the Lua command layer gets (cli.main): each flag given as "--name"
     * or "--name=value" (short "-e CODE" as "--e=CODE"), then "--", then the
     * positional arguments. All strings are owned. */
    int argc;
    char **argv;
} parsed_args;

/* Parses argv by c's flags and argument counts. Returns 0, or -1 after
 * printing the problem (an unknown flag with the nearest one, a missing
 * value, a wrong number of arguments) to stderr: exit EXIT_USAGE. */
int args_parse(const command *c, int argc, char **argv, parsed_args *out);
void args_free(parsed_args *p);

#endif
