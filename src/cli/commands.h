/* The command table of mcp-agent: the one place that names each command,
 * its arguments and flags (each with its meaning), whether it needs the
 * registry and whether it only reads. Parsing, `help` and `COMMAND --help`
 * all come from it; the Lua command layer receives the parsed result. */
#ifndef MCP_CLI_COMMANDS_H
#define MCP_CLI_COMMANDS_H

#include <stdbool.h>
#include <stdio.h>

enum { EXIT_OK = 0, EXIT_GOAL = 1, EXIT_USAGE = 2 };

#define MAX_FLAGS 6

typedef struct flag_spec {
    const char *name;  /* "--json"; a short one ("-e") is part of the args synopsis */
    const char *value; /* what the flag takes ("DURATION"), NULL for a switch */
    const char *help;  /* one line */
} flag_spec;

/* How a command uses the registry. A reader never creates it. */
typedef enum {
    REG_NONE,        /* never opened (the zero value) */
    REG_READ,        /* must exist */
    REG_WRITE,       /* created when missing */
    REG_READ_IF_DRY, /* REG_READ with --dry-run, else REG_WRITE */
    REG_HOLD,        /* REG_WRITE, held open for the life of the process (the daemon) */
} registry_use;

typedef struct command {
    const char *name;
    const char *args;    /* positional synopsis, NULL when none */
    const char *summary; /* one line */
    registry_use registry;
    int min_args, max_args; /* positional counts; max -1 = any */
    bool flags_first;       /* flags only before the first argument (eval: the rest is the
                               script's) */
    bool hidden;            /* for tools (shell completion, man page), not listed in help */
    flag_spec flags[MAX_FLAGS];
} command;

const command *command_find(const char *name);
/* The i-th command of the table, NULL past the end (hidden ones included). */
const command *command_at(size_t i);
/* What a command does to the registry, one sentence, or NULL. */
const char *command_registry_note(const command *c);
/* The command nearest to a misspelt name, or NULL when none is close. */
const command *command_nearest(const char *name);
/* The flag spec named `name` ("--json", "-e") of c, or NULL. */
const flag_spec *command_flag(const command *c, const char *name);
const flag_spec *command_nearest_flag(const command *c, const char *name);

void command_print_synopsis(FILE *f, const command *c);
void command_print_help(FILE *f, const command *c);
void commands_print_usage(FILE *f, const char *default_config);

/* Optimal string alignment distance (a swap of two letters counts 1). */
size_t edit_distance(const char *a, const char *b);

#endif
