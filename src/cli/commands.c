/* The command table and the help it prints. Adding a command is one entry
 * here plus its handler in lua/mcp/host/cli.lua. */
#include "commands.h"

#include <stdlib.h>
#include <string.h>

#include "mcp/suggest.h"

#define JSON_FLAG(what)                                                                            \
    {                                                                                              \
        "--json", NULL, "print " what " as JSON instead of text"                                   \
    }

/* The commands that change one service (or component) named by their one argument. */
#define ONE_TARGET(NAME, ARGS, SUMMARY)                                                            \
    {                                                                                              \
        .name = NAME, .args = ARGS, .summary = SUMMARY, .registry = REG_WRITE, .min_args = 1,      \
        .max_args = 1,                                                                             \
    }

/* Zero fields mean: no arguments, no flags besides --help, no registry. */
static const command commands[] = {
    {
        .name = "run",
        .summary = "the daemon: serve the gRPC API, run the boot sequence, serve until SIGTERM",
        .registry = REG_HOLD,
    },
    {
        .name = "recover",
        .summary = "recreate every desired container that is not running, from the registry",
        .registry = REG_READ_IF_DRY,
        .flags = {{"--dry-run", NULL, "print the plan; create, start and remove nothing"},
                  JSON_FLAG("the report")},
    },
    {
        .name = "boot",
        .summary = "run the configured boot sequence once and exit",
        .registry = REG_READ_IF_DRY,
        .flags = {{"--dry-run", NULL, "print what each stage would start; start nothing"},
                  JSON_FLAG("the report")},
    },
    {
        .name = "eval",
        .args = "(SCRIPT.lua | -e CODE) [ARGS...]",
        .summary = "run a Lua script with the real agent object as the global `agent`",
        .registry = REG_READ_IF_DRY,
        .max_args = -1,
        .flags_first = true,
        .flags = {{"--dry-run", NULL, "wrap the runtime: mutating calls are printed, not done"},
                  {"-e", "CODE", "run CODE instead of a script file; ARGS go to `arg`"}},
    },
    {
        .name = "deploy",
        .args = "FILE.toml...",
        .summary = "store service definitions in the registry and start them",
        .registry = REG_READ_IF_DRY,
        .min_args = 1,
        .max_args = -1,
        .flags = {{"--dry-run", NULL,
                   "print what would change against the registry and the containers; "
                   "change nothing"},
                  {"--allow-unknown", NULL,
                   "store a definition with unknown keys (warned about) instead of refusing it"}},
    },
    {
        .name = "show",
        .args = "SERVICE",
        .summary = "print a stored service definition as TOML that deploy accepts",
        .registry = REG_READ,
        .min_args = 1,
        .max_args = 1,
    },
    ONE_TARGET("start", "SERVICE[/COMPONENT]", "set desired state to running and start"),
    ONE_TARGET("stop", "SERVICE[/COMPONENT]", "set desired state to stopped and stop"),
    ONE_TARGET("restart", "SERVICE[/COMPONENT]", "stop and start again"),
    ONE_TARGET("rm", "SERVICE", "stop, remove the containers and forget the service"),
    {
        .name = "status",
        .args = "[SERVICE]",
        .summary = "desired vs observed state per component, ports, routes, last events",
        .registry = REG_READ,
        .max_args = 1,
        .flags = {JSON_FLAG("the state")},
    },
    {
        .name = "ls",
        .summary = "list services with their components' state",
        .registry = REG_READ,
        .flags = {JSON_FLAG("the list")},
    },
    {
        .name = "events",
        .args = "[SERVICE]",
        .summary = "print the event log; --follow streams new events from the daemon",
        .registry = REG_READ,
        .max_args = 1,
        .flags = {{"--since", "DURATION", "only events newer than DURATION ago (e.g. 5m, 2h30m)"},
                  {"--follow", NULL,
                   "keep running and print new events as the daemon records them"},
                  JSON_FLAG("each event")},
    },
    {
        .name = "snapshot",
        .args = "[PATH]",
        .summary = "consistent online backup of the registry",
        .registry = REG_READ,
        .max_args = 1,
    },
    {
        .name = "check",
        .summary = "validate the config and the policies, like nginx -t",
        .flags = {{"--strict", NULL, "config warnings (unknown keys) are errors: exit 1"},
                  {"--lint", NULL, "also run luacheck over [policy] dir (Debian: lua-check)"}},
    },
    {
        .name = "test",
        .args = "[PATH...]",
        .summary = "run the operator's policy specs (*_spec.lua) with busted on mcp.testing",
        .max_args = -1,
        .flags = {{"--filter", "PATTERN", "only the tests whose names match PATTERN (busted)"},
                  {"--init", "DIR", "write a starter spec for each policy into DIR; run nothing"}},
    },
    {
        .name = "version",
        .summary = "print the version, git commit and the Lua, SQLite, libuv, podman versions",
        .flags = {{"--verbose", NULL, "also say where lua/ and policies/ are loaded from"},
                  JSON_FLAG("the versions")},
    },
    {
        .name = "help",
        .args = "[COMMAND]",
        .summary = "this help, or a command's",
        .max_args = 1,
    },
    {
        .name = "complete",
        .args = "(commands | flags COMMAND | services | scdoc)",
        .summary = "words for the shell completion and the man page (complete.c)",
        .min_args = 1,
        .max_args = 2,
        .hidden = true,
    },
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* Every command takes it; the parser answers it before anything else. */
static const flag_spec help_flag = {"--help", NULL, "print this help"};

const command *command_at(size_t i)
{
    return i < NCOMMANDS ? &commands[i] : NULL;
}

const command *command_find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

size_t edit_distance(const char *a, const char *b)
{
    return mcp_edit_distance(a, b);
}

static bool is_close(const char *typed, const char *known, size_t dist)
{
    return mcp_is_typo_of(typed, known, dist);
}

const command *command_nearest(const char *name)
{
    const command *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        size_t d = edit_distance(name, commands[i].name);
        if (d < best_d && is_close(name, commands[i].name, d)) {
            best = &commands[i];
            best_d = d;
        }
    }
    return best;
}

const flag_spec *command_flag(const command *c, const char *name)
{
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        return &help_flag;
    for (size_t i = 0; i < MAX_FLAGS && c->flags[i].name; i++)
        if (strcmp(c->flags[i].name, name) == 0)
            return &c->flags[i];
    return NULL;
}

const flag_spec *command_nearest_flag(const command *c, const char *name)
{
    const flag_spec *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i <= MAX_FLAGS; i++) {
        const flag_spec *f = i < MAX_FLAGS ? &c->flags[i] : &help_flag;
        if (!f->name)
            continue;
        size_t d = edit_distance(name, f->name);
        if (d < best_d && is_close(name, f->name, d)) {
            best = f;
            best_d = d;
        }
    }
    return best;
}

static void print_flag_synopsis(FILE *f, const command *c)
{
    for (size_t i = 0; i < MAX_FLAGS && c->flags[i].name; i++) {
        const flag_spec *fl = &c->flags[i];
        if (fl->name[1] != '-')
            continue; /* short flags are spelt out in the args synopsis */
        if (fl->value)
            fprintf(f, " [%s %s]", fl->name, fl->value);
        else
            fprintf(f, " [%s]", fl->name);
    }
}

void command_print_synopsis(FILE *f, const command *c)
{
    fprintf(f, "%s", c->name);
    if (!c->flags_first && c->args)
        fprintf(f, " %s", c->args);
    print_flag_synopsis(f, c);
    if (c->flags_first && c->args)
        fprintf(f, " %s", c->args);
}

static void print_flag_line(FILE *f, const flag_spec *fl)
{
    char left[48];
    int n = snprintf(left, sizeof left, "%s%s%s", fl->name, fl->value ? " " : "",
                     fl->value ? fl->value : "");
    if (n < 0)
        left[0] = '\0';
    fprintf(f, "  %-18s %s\n", left, fl->help);
}

const char *command_registry_note(const command *c)
{
    switch (c->registry) {
    case REG_READ:
        return "reads the registry; exits 2 when it does not exist (deploy creates it)";
    case REG_READ_IF_DRY:
        return "writes the registry, creating it when missing; with --dry-run only reads it "
               "and exits 2 when it does not exist";
    case REG_WRITE:
    case REG_HOLD:
        return "writes the registry, creating it when missing";
    case REG_NONE:
        break;
    }
    return NULL;
}

void command_print_help(FILE *f, const command *c)
{
    fprintf(f, "usage: mcp-agent [-c CONFIG] ");
    command_print_synopsis(f, c);
    fprintf(f, "\n\n%s\n\nflags:\n", c->summary);
    for (size_t i = 0; i < MAX_FLAGS && c->flags[i].name; i++)
        print_flag_line(f, &c->flags[i]);
    fprintf(f, "  %-18s %s\n", "-h, --help", help_flag.help);
    const char *note = command_registry_note(c);
    if (note)
        fprintf(f, "\nregistry: %s\n", note);
}

void commands_print_usage(FILE *f, const char *default_config)
{
    fprintf(f, "usage: mcp-agent [-c CONFIG] COMMAND [ARGS]\n\n"
               "The node agent: keeps the node's desired state in a SQLite registry and makes\n"
               "podman match it. Policy (boot order, retries, backoff, recover) lives in Lua.\n\n"
               "commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!commands[i].hidden)
            fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\noptions:\n"
            "  -c, --config PATH  config file (default: $MCP_AGENT_CONFIG, else %s;\n"
            "                     built-in defaults when neither exists)\n"
            "  -h, --help         this help; COMMAND --help for a command's flags\n"
            "  --version          print the version\n"
            "\nexit codes: 0 success, 1 the job did not reach its goal, 2 usage, config,\n"
            "service-definition or policy error\n",
            default_config);
}
