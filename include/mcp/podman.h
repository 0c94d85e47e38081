/* The podman runtime as pure functions: argv builders for every call and
 * parsers of podman's JSON answers. Running them is the caller's (mcp_proc),
 * so the same code serves the event loop and synchronous use. */
#ifndef MCP_PODMAN_H
#define MCP_PODMAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcp/error.h"
#include "mcp/proc.h"
#include "mcp/util.h"

typedef struct mcp_podman_cfg {
    const char *binary;          /* "podman" or a path */
    const mcp_strv *global_args; /* e.g. --root X --runroot Y; may be NULL */
    int64_t timeout_ms;          /* bound on one call */
} mcp_podman_cfg;

typedef struct mcp_port_mapping {
    char *host_ip; /* "" when bound to all addresses */
    int host_port;
    int container_port;
    char *protocol; /* "tcp" | "udp" */
} mcp_port_mapping;

/* One container as `podman ps -a` or `podman inspect` sees it. */
typedef struct mcp_container {
    char *id;
    char *name;
    char *image;
    char *state; /* created, running, exited, stopped, paused, … */
    int exit_code;
    char *started_at;  /* RFC 3339; NULL when never started */
    char *finished_at; /* RFC 3339; NULL when it has not exited */
    bool oom;          /* inspect: State.OOMKilled; always false after list */
    mcp_strv labels;   /* "key=value", sorted by key (ps Labels, inspect Config.Labels) */
    mcp_port_mapping *ports;
    size_t n_ports;
    /* filled by inspect only (empty after list): */
    mcp_strv env;     /* KEY=value as podman reports it (includes podman's own PATH, …) */
    mcp_strv cmd;
    mcp_strv volumes; /* "src:dst" of bind mounts and named volumes */
    char *user;
    char *network;    /* first network name, may be NULL */
    char *restart;    /* restart policy name, may be NULL */
} mcp_container;

/* What to run: every field as in a service component, ports already
 * including route mappings and env already including PORT variables.
 * restart is the agent's to apply (SPEC §10): argv never carries it, every
 * container gets --restart=no. labels are "key=value", added in key order. */
typedef struct mcp_container_spec {
    char *name, *image, *network, *user, *restart; /* network, user, restart may be NULL */
    mcp_strv ports, volumes, cmd, env, labels;
} mcp_container_spec;

/* One line of `podman events --format json` (type container). */
typedef struct mcp_podman_event {
    char *name, *id, *image; /* "" when podman left them out */
    char *status;            /* create, init, start, died, cleanup, remove, stop, kill, … */
    bool has_exit_code;
    int exit_code;   /* ContainerExitCode; on died without it, 0 (podman omits a zero) */
    double time;     /* unix seconds with sub-second precision; 0 when unknown */
    mcp_strv labels; /* "key=value" from Attributes, sorted by key */
    bool container;  /* Type "container", or no Type; podman's events file has others */
} mcp_podman_event;

/* argv builders: fill argv (empty on entry) with binary, global args, then the call.
 * Names and images always follow "--", so they are never read as options; run
 * adds --pull=never (never reach a registry). Return 0, or -1 on out of memory. */
int mcp_podman_argv_list(const mcp_podman_cfg *cfg, mcp_strv *argv);                      /* ps -a --format json */
int mcp_podman_argv_inspect(const mcp_podman_cfg *cfg, const char *name, mcp_strv *argv);  /* container inspect */
/* run -d --pull=never --restart=no --name … [--label k=v …] … */
int mcp_podman_argv_run(const mcp_podman_cfg *cfg, const mcp_container_spec *spec, mcp_strv *argv);
/* events --format json --filter type=container: a long-lived stream */
int mcp_podman_argv_events(const mcp_podman_cfg *cfg, mcp_strv *argv);
/* Where podman's file events backend most likely writes: <tmpdir>/events/events.log,
 * tmpdir from --tmpdir in the global args, else libpod's default (/run/libpod as
 * root, $XDG_RUNTIME_DIR/libpod/tmp otherwise). A guess (containers.conf may set
 * events_logfile_path or another logger): see mcp_event_merge. Malloc'd; NULL when
 * there is no guess or no memory. */
char *mcp_podman_events_file(const mcp_podman_cfg *cfg);
int mcp_podman_argv_start(const mcp_podman_cfg *cfg, const char *name, mcp_strv *argv);
int mcp_podman_argv_stop(const mcp_podman_cfg *cfg, const char *name, int timeout_s, mcp_strv *argv);
/* rm -f -i -t 0: also clears a name that only podman's storage still holds; a missing container is not an error. */
int mcp_podman_argv_remove(const mcp_podman_cfg *cfg, const char *name, mcp_strv *argv);
int mcp_podman_argv_image_exists(const mcp_podman_cfg *cfg, const char *image, mcp_strv *argv);
/* podman pull -- IMAGE (progress goes to podman's stderr) */
int mcp_podman_argv_pull(const mcp_podman_cfg *cfg, const char *image, mcp_strv *argv);

/* Parsers of podman's answers. Return 0, or -1 with err set on malformed JSON. */
int mcp_podman_parse_list(const char *json, size_t len, mcp_container **out, size_t *n, mcp_error *err);
int mcp_podman_parse_inspect(const char *json, size_t len, mcp_container *out, mcp_error *err);
/* One events line. Returns 0, or -1 with err set when it is not a JSON
 * object or has no Status. */
int mcp_podman_parse_event(const char *line, size_t len, mcp_podman_event *out, mcp_error *err);
void mcp_podman_event_free(mcp_podman_event *ev);
/* RFC 3339 ("2026-12-01T22:47:32.318817944Z", "…+01:00") to unix seconds;
 * -1 when malformed. */
int mcp_podman_parse_time(const char *s, double *out);

/* The id printed by `podman run -d` (trimmed); NULL on empty output. */
char *mcp_podman_parse_run(const char *out, size_t len);

/* Turns a finished call into success (0) or -1 with a short, stable reason in
 * reason ("timeout", "podman not found", "no such container", "no such image",
 * "name in use", "cancelled", "failed") and a detail naming podman's stderr in err.
 * ("podman not found" is for callers whose mcp_proc_spawn/run failed: a
 * finished call never yields it.) */
int mcp_podman_result(const mcp_proc_result *res, char *reason, size_t reason_len, mcp_error *err);

/* Why a failed `podman pull` failed, from its stderr: "registry unreachable"
 * (refused, no such host, timeout, plain HTTP), "no such image", or another
 * reason of mcp_podman_result. */
const char *mcp_podman_pull_reason(const char *err);
/* The answer of `image exists`: 1 present (exit 0), 0 absent (exit 1), -1 with
 * err set when the call itself failed (timeout, signal, other status). */
int mcp_podman_parse_image_exists(const mcp_proc_result *res, mcp_error *err);

void mcp_container_free(mcp_container *c);
void mcp_containers_free(mcp_container *cs, size_t n);
void mcp_container_spec_free(mcp_container_spec *spec);

#endif
