/* The agent's configuration (SPEC §3), loaded from TOML over built-in defaults. */
#ifndef MCP_CONFIG_H
#define MCP_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "mcp/error.h"
#include "mcp/util.h"

typedef struct mcp_boot_stage {
    char *name;
    mcp_strv services;
    int64_t timeout_ms; /* default 60 s */
    char *health;       /* "tcp" | "grpc" | "http"; default "tcp" */
    int line;           /* line of its [[boot.sequence]] header, 0 when built in */
} mcp_boot_stage;

typedef struct mcp_config {
    char *path; /* the file loaded; NULL when only built-in defaults apply */

    /* [agent] */
    char *node_name;           /* default: the host name */
    char *grpc_addr;           /* default "" (no TCP listener) */
    bool insecure_loopback;    /* default false */
    char *socket;              /* default "/run/mcp-agent/agent.sock" */
    char *container_runtime;   /* "podman" (default) | "fake" */
    mcp_strv podman_args;      /* extra global podman args */
    char *podman;              /* extension: the podman binary, default "podman" (found in PATH) */
    int64_t podman_timeout_ms; /* extension: bound on one podman call, default 120 s */
    int port_min, port_max;    /* port_range, default 10000-19999 */
    char *pull;                /* "missing" (default): deploy pulls absent images | "never" */

    /* [tls] */
    char *tls_cert, *tls_key, *tls_client_ca;

    /* [database] */
    char *db_path; /* default "./mcp-agent.db" */

    /* [mcproxy] */
    char *mcproxy_socket, *mcproxy_cert_dir, *mcproxy_listener; /* listener default ":443" */

    /* [metacrypt] */
    char *metacrypt_server_url, *metacrypt_ca_cert, *metacrypt_mount, *metacrypt_issuer,
        *metacrypt_token_path; /* mount default "pki", issuer default "web" */

    /* [monitor] */
    int64_t monitor_interval_ms; /* default 10 s */
    char *monitor_drift;         /* "report" (default) | "fix" */
    int64_t keep_events;         /* newest registry events kept, >= 1; default 10000 */

    /* [metrics] */
    char *metrics_listen; /* "" = off (default); host:port, [v6]:port or a unix socket path */

    /* [log] */
    char *log_level;  /* default "info" */
    char *log_format; /* "text" (default) | "json" */

    /* [policy] */
    char *policy_dir; /* operator scripts; NULL = built-in policies only */

    /* [[boot.sequence]] */
    mcp_boot_stage *stages;
    size_t n_stages;

    int n_warnings; /* unknown keys warned about while loading (check --strict) */
} mcp_config;

/* Fills cfg with the built-in defaults. Returns 0 or -1 (out of memory). */
int mcp_config_defaults(mcp_config *cfg);

/* Loads path over the defaults. Unknown keys are logged as warnings with
 * file:line (mcp_log); wrong types, bad durations, a bad port_range, an
 * unknown health method, runtime or log level are errors naming
 * "file:line:col: key 'section.key': problem" (boot stages are named
 * 'boot.sequence[N]' with N counted from 0; a stage needs a unique, non-empty
 * name; durations must be positive). TOML syntax errors read
 * "file:line:col: problem". Relative paths are kept as written. Returns 0, or -1 with err set
 * (cfg is then freed and zeroed). A missing file is an error here; callers
 * decide whether to fall back to mcp_config_defaults. */
int mcp_config_load(const char *path, mcp_config *cfg, mcp_error *err);

void mcp_config_free(mcp_config *cfg);

#endif
