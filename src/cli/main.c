/* mcp-agent: the command line. Parses global options, loads the config,
 * opens the registry and hands the command to the Lua command layer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mcp/config.h"
#include "mcp/host.h"
#include "mcp/log.h"
#include "mcp/registry.h"

#ifndef MCP_VERSION
#define MCP_VERSION "0.0.0"
#endif

#define DEFAULT_CONFIG "/etc/mcp-agent/mcp-agent.toml"

enum { EXIT_OK = 0, EXIT_GOAL = 1, EXIT_USAGE = 2 };

typedef struct command {
    const char *name;
    const char *usage;
    const char *summary;
    bool needs_registry;
} command;

static const command commands[] = {
    {"run", "run", "the daemon: serve the gRPC API, run the boot sequence, serve until SIGTERM",
     true},
    {"recover", "recover [--dry-run] [--json]",
     "recreate every desired container that is not running, from the registry", true},
    {"boot", "boot [--dry-run] [--json]", "run the configured boot sequence once and exit", true},
    {"eval", "eval [--dry-run] SCRIPT.lua [ARGS...] | eval [--dry-run] -e CODE [ARGS...]",
     "run a Lua script with the real agent object as the global `agent`", true},
    {"deploy", "deploy FILE.toml...", "store service definitions in the registry and start them",
     true},
    {"start", "start SERVICE[/COMPONENT]", "set desired state to running and start", true},
    {"stop", "stop SERVICE[/COMPONENT]", "set desired state to stopped and stop", true},
    {"restart", "restart SERVICE[/COMPONENT]", "stop and start again", true},
    {"rm", "rm SERVICE", "stop, remove the containers and forget the service", true},
    {"status", "status [SERVICE] [--json]",
     "desired vs observed state per component, ports, routes, last events", true},
    {"ls", "ls [--json]", "list services with their components' state", true},
    {"snapshot", "snapshot [PATH]", "consistent online backup of the registry", true},
    {"check", "check", "validate the config and the policies, like nginx -t", false},
    {"version", "version", "print the version", false},
    {"help", "help [COMMAND]", "this help", false},
};

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: mcp-agent [-c CONFIG] COMMAND [ARGS]\n\n"
               "The node agent: keeps the node's desired state in a SQLite registry and makes\n"
               "podman match it. Policy (boot order, retries, backoff, recover) lives in Lua.\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\noptions:\n"
               "  -c, --config PATH  config file (default: $MCP_AGENT_CONFIG, else %s;\n"
               "                     built-in defaults when neither exists)\n"
               "  -h, --help         this help; COMMAND --help for a command's\n"
               "\nexit codes: 0 success, 1 the job did not reach its goal, 2 usage, config,\n"
               "service-definition or policy error\n",
               DEFAULT_CONFIG);
}

static void command_help(const command *c)
{
    printf("usage: mcp-agent [-c CONFIG] %s\n\n%s\n", c->usage, c->summary);
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* An explicit -c or $MCP_AGENT_CONFIG must exist; the default path may be absent. */
static int load_config(const char *explicit_path, mcp_config *cfg)
{
    mcp_error err = {{0}};
    const char *path = explicit_path;
    bool must_exist = true;
    if (!path || !*path) {
        path = getenv("MCP_AGENT_CONFIG");
        if (!path || !*path) {
            path = DEFAULT_CONFIG;
            must_exist = false;
        }
    }
    if (!must_exist && !file_exists(path)) {
        if (mcp_config_defaults(cfg) != 0) {
            fprintf(stderr, "mcp-agent: out of memory\n");
            return -1;
        }
        return 0;
    }
    if (mcp_config_load(path, cfg, &err) != 0) {
        fprintf(stderr, "mcp-agent: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static void apply_log_config(const mcp_config *cfg)
{
    int level = mcp_log_level_parse(cfg->log_level);
    if (level >= 0)
        mcp_log_set_level((mcp_log_level)level);
    mcp_log_set_json(cfg->log_format && strcmp(cfg->log_format, "json") == 0);
}

static bool has_help_flag(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

static bool has_flag(int argc, char **argv, const char *flag)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], flag) == 0)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "mcp-agent: %s needs a path\n", a);
                return EXIT_USAGE;
            }
            config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            config_path = a + 9;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else if (strcmp(a, "--version") == 0) {
            printf("mcp-agent %s\n", MCP_VERSION);
            return EXIT_OK;
        } else {
            fprintf(stderr, "mcp-agent: unknown option %s\n\n", a);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[i++];
    const command *cmd = find_command(name);
    if (!cmd) {
        fprintf(stderr, "mcp-agent: unknown command \"%s\" (see mcp-agent help)\n", name);
        return EXIT_USAGE;
    }
    int cargc = argc - i;
    char **cargv = argv + i;

    if (strcmp(cmd->name, "help") == 0) {
        if (cargc > 0 && (strcmp(cargv[0], "--help") == 0 || strcmp(cargv[0], "-h") == 0)) {
            command_help(cmd);
            return EXIT_OK;
        }
        const command *about = cargc > 0 ? find_command(cargv[0]) : NULL;
        if (cargc > 0 && !about) {
            fprintf(stderr, "mcp-agent: unknown command \"%s\"\n", cargv[0]);
            return EXIT_USAGE;
        }
        if (about)
            command_help(about);
        else
            usage(stdout);
        return EXIT_OK;
    }
    /* eval passes everything after the script to the script, --help included */
    bool help = strcmp(cmd->name, "eval") == 0 ? cargc > 0 && (strcmp(cargv[0], "--help") == 0 ||
                                                               strcmp(cargv[0], "-h") == 0)
                                               : has_help_flag(cargc, cargv);
    if (help) {
        command_help(cmd);
        return EXIT_OK;
    }
    if (strcmp(cmd->name, "version") == 0) {
        printf("mcp-agent %s\n", MCP_VERSION);
        return EXIT_OK;
    }

    mcp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (load_config(config_path, &cfg) != 0)
        return EXIT_USAGE;
    apply_log_config(&cfg);

    mcp_registry *reg = NULL;
    if (cmd->needs_registry) {
        mcp_error err = {{0}};
        if (mcp_registry_open(cfg.db_path, &reg, &err) != 0) {
            fprintf(stderr, "mcp-agent: %s\n", err.msg);
            mcp_config_free(&cfg);
            return EXIT_USAGE;
        }
    }

    mcp_host_opts opts = {
        .cfg = &cfg,
        .reg = reg,
        .dry_run = has_flag(cargc, cargv, "--dry-run") && strcmp(cmd->name, "eval") != 0,
        .config_path = cfg.path,
    };
    /* eval's --dry-run comes before the script */
    if (strcmp(cmd->name, "eval") == 0 && cargc > 0 && strcmp(cargv[0], "--dry-run") == 0)
        opts.dry_run = true;

    mcp_host *host = NULL;
    mcp_error err = {{0}};
    int rc;
    if (mcp_host_new(&opts, &host, &err) != 0) {
        fprintf(stderr, "mcp-agent: %s\n", err.msg);
        rc = EXIT_USAGE;
    } else {
        rc = mcp_host_command(host, cmd->name, cargc, cargv);
        mcp_host_free(host);
    }
    mcp_registry_close(reg);
    mcp_config_free(&cfg);
    return rc;
}
