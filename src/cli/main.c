/* mcp-agent: the command line. Parses global options and the command's
 * arguments (by the command table, commands.c), loads the config, opens the
 * registry as the command needs it and hands the parsed command to the Lua
 * command layer. */
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

#include "args.h"
#include "commands.h"
#include "complete.h"
#include "version.h"

#ifndef MCP_VERSION
#define MCP_VERSION "0.0.0"
#endif

#define DEFAULT_CONFIG "/etc/mcp-agent/mcp-agent.toml"

static void usage(FILE *f)
{
    commands_print_usage(f, DEFAULT_CONFIG);
}

static void command_help(const command *c)
{
    command_print_help(stdout, c);
}

/* "unknown command 'stauts' (did you mean 'status'?)" */
static void unknown_command(const char *name)
{
    const command *near = command_nearest(name);
    if (near)
        fprintf(stderr, "mcp-agent: unknown command '%s' (did you mean '%s'?)\n", name, near->name);
    else
        fprintf(stderr, "mcp-agent: unknown command '%s' (see mcp-agent help)\n", name);
}

static void unknown_option(const char *a)
{
    static const char *const options[] = {"--config", "--help", "--version"};
    const char *near = NULL;
    size_t best = 3; /* two edits at most */
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        size_t d = edit_distance(a, options[i]);
        if (d < best) {
            best = d;
            near = options[i];
        }
    }
    if (near)
        fprintf(stderr, "mcp-agent: unknown option '%s' (did you mean '%s'?)\n\n", a, near);
    else
        fprintf(stderr, "mcp-agent: unknown option '%s'\n\n", a);
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

/* Readers never create the registry: a missing file is a usage error
 * naming the path. Returns false after saying so. */
static bool registry_present(const command *cmd, const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 || (errno != ENOENT && errno != ENOTDIR))
        return true; /* other problems: the registry's open reports them */
    fprintf(stderr,
            "mcp-agent: %s: no registry at %s ([database] path); `mcp-agent deploy` creates it\n",
            cmd->name, path);
    return false;
}

/* The `help` command: help, help COMMAND, help --help. */
static int help_command(const command *self, const parsed_args *p)
{
    if (p->help) {
        command_help(self);
        return EXIT_OK;
    }
    const char *about = p->argc > 1 ? p->argv[p->argc - 1] : NULL;
    if (!about) {
        usage(stdout);
        return EXIT_OK;
    }
    const command *c = command_find(about);
    if (!c) {
        unknown_command(about);
        return EXIT_USAGE;
    }
    command_help(c);
    return EXIT_OK;
}

static int run_command(const command *cmd, const char *config_path, parsed_args *p)
{
    mcp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (load_config(config_path, &cfg) != 0)
        return EXIT_USAGE;
    apply_log_config(&cfg);

    registry_use use = cmd->registry;
    if (use == REG_READ_IF_DRY)
        use = p->dry_run ? REG_READ : REG_WRITE;
    mcp_registry *reg = NULL;
    if (use == REG_READ && !registry_present(cmd, cfg.db_path)) {
        mcp_config_free(&cfg);
        return EXIT_USAGE;
    }
    if (use != REG_NONE) {
        mcp_error err = {{0}};
        /* A command's moment with the registry may take it alone on a full
         * disk; the daemon holding it so would lock every other command out. */
        int orc = use == REG_HOLD ? mcp_registry_open(cfg.db_path, &reg, &err)
                                  : mcp_registry_open_brief(cfg.db_path, &reg, &err);
        if (orc != 0) {
            fprintf(stderr, "mcp-agent: %s\n", err.msg);
            mcp_config_free(&cfg);
            /* busy, or a disk that fails us, is not bad input */
            return orc == MCP_REGISTRY_BUSY || orc == MCP_REGISTRY_UNAVAILABLE ? EXIT_GOAL
                                                                               : EXIT_USAGE;
        }
    }

    mcp_host_opts opts = {
        .cfg = &cfg,
        .reg = reg,
        .dry_run = p->dry_run,
        .config_path = cfg.path,
    };
    mcp_host *host = NULL;
    mcp_error err = {{0}};
    int rc;
    if (mcp_host_new(&opts, &host, &err) != 0) {
        fprintf(stderr, "mcp-agent: %s\n", err.msg);
        rc = EXIT_USAGE;
    } else {
        rc = mcp_host_command(host, cmd->name, p->argc, p->argv);
        mcp_host_free(host);
    }
    mcp_registry_close(reg);
    mcp_config_free(&cfg);
    return rc;
}

/* The hidden `complete` command, with the config's registry path. */
static int complete_words(const char *config_path, const parsed_args *p)
{
    mcp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (load_config(config_path, &cfg) != 0)
        return complete_command(p, NULL);
    int rc = complete_command(p, cfg.db_path);
    mcp_config_free(&cfg);
    return rc;
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
            unknown_option(a);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[i++];
    const command *cmd = command_find(name);
    if (!cmd) {
        unknown_command(name);
        return EXIT_USAGE;
    }
    parsed_args p;
    if (args_parse(cmd, argc - i, argv + i, &p) != 0)
        return EXIT_USAGE;
    int rc;
    if (strcmp(cmd->name, "help") == 0) {
        rc = help_command(cmd, &p);
    } else if (p.help) {
        command_help(cmd);
        rc = EXIT_OK;
    } else if (strcmp(cmd->name, "complete") == 0) {
        rc = complete_words(config_path, &p);
    } else if (strcmp(cmd->name, "version") == 0) {
        rc = version_command(&p, DEFAULT_CONFIG);
    } else {
        rc = run_command(cmd, config_path, &p);
    }
    args_free(&p);
    return rc;
}
