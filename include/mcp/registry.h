/* The registry: the node's desired state in SQLite (WAL, foreign keys, versioned migrations). */
#ifndef MCP_REGISTRY_H
#define MCP_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcp/error.h"
#include "mcp/service.h"

typedef struct mcp_registry mcp_registry;

typedef struct mcp_event {
    int64_t id;
    int64_t time_ms; /* wall clock, ms since the epoch */
    char *service;
    char *component; /* may be NULL */
    char *kind;      /* short and stable: "deployed", "recovered", "started", "failed", … */
    char *message;
    bool has_exit_code;
    int exit_code;
} mcp_event;

/* Which events to read. */
typedef struct mcp_event_query {
    const char *service; /* NULL = every service */
    int limit;           /* < 0 = no limit */
    int64_t since_ms;    /* newest-first reads: only events at or after this time; 0 = any */
    int64_t after_id;    /* > 0 (or after = true): only ids above it, oldest first (following) */
    bool after;
} mcp_event_query;

/* The supervisor's state of one component (SPEC §10); survives restarts of
 * the agent and redeploys that keep the component; deleted with its service. */
typedef struct mcp_supervision {
    char *service, *component;
    int64_t restarts; /* since the component was last stable */
    bool has_last_exit_code;
    int last_exit_code;
    char *state; /* "running", "backoff", "given up", "unhealthy", "drifted"; may be NULL */
    bool has_backoff_until;
    double backoff_until; /* unix seconds */
    char *reason;         /* last error / why given up; may be NULL */
    bool has_started_at;
    double started_at; /* unix seconds of the supervisor's last start */
    double updated_at; /* unix seconds, set on every write */
} mcp_supervision;

/* Bits of mcp_supervision_update.set: the fields to write. A set nullable
 * field whose has_ flag (or pointer) is false/NULL is cleared. */
enum {
    MCP_SUP_RESTARTS = 1,
    MCP_SUP_LAST_EXIT_CODE = 2,
    MCP_SUP_STATE = 4,
    MCP_SUP_BACKOFF_UNTIL = 8,
    MCP_SUP_REASON = 16,
    MCP_SUP_STARTED_AT = 32,
};

/* The newest events kept unless mcp_registry_set_keep_events says otherwise. */
#define MCP_REGISTRY_KEEP_EVENTS 10000

/* Opens (creating when absent) and migrates the registry at path. A file that
 * is not SQLite, is corrupt, or is a SQLite database of another application
 * (tables we do not know and no user_version of ours) is refused with a clear
 * error and left untouched. A database from a newer schema version is refused. */
#define MCP_REGISTRY_BUSY (-2)
#define MCP_REGISTRY_UNAVAILABLE (-3)
/* 0, -1 (err says why), MCP_REGISTRY_BUSY: another process held it locked
 * for longer than the busy timeout (err names the processes that have it open,
 * when they can be found), or MCP_REGISTRY_UNAVAILABLE: the disk failed the
 * read (I/O error, no room for SQLite's WAL index on a full disk). The files
 * are created 0600 whatever the umask. */
int mcp_registry_open(const char *path, mcp_registry **out, mcp_error *err);
/* mcp_registry_open for a process that holds the registry for a moment (a
 * CLI command): where a full disk leaves no room for the WAL index and no
 * one else has the registry open, it is opened in exclusive locking mode, the
 * index in SQLite's own memory: reads work, a write fails at its commit
 * ("database or disk is full"). Others wait while it stays open, so a daemon
 * uses mcp_registry_open. */
int mcp_registry_open_brief(const char *path, mcp_registry **out, mcp_error *err);
void mcp_registry_close(mcp_registry *reg);

/* Stores a service in one transaction, replacing an earlier definition of the
 * same name. A route keeps its host port when a route of the same service,
 * component and name already had one; new routes get the lowest port of
 * [port_min, port_max] that no other route holds and port_free() accepts
 * (port_free may be NULL: every port not held is free). Fills host_port of
 * svc's routes with the result. Exhaustion of the range is an error. */
int mcp_registry_put_service(mcp_registry *reg, mcp_service *svc, int port_min, int port_max,
                             bool (*port_free)(int port, void *ud), void *ud, mcp_error *err);

/* Returns 1 and fills out when found, 0 when there is no such service, -1 on error. */
int mcp_registry_get_service(mcp_registry *reg, const char *name, mcp_service *out, mcp_error *err);
/* All services ordered by name. Free with mcp_services_free. */
int mcp_registry_list_services(mcp_registry *reg, mcp_service **out, size_t *n, mcp_error *err);
/* Removes a service, its components, routes (freeing their ports) and supervisor state. Returns 1
 * removed, 0 absent, -1 error. */
int mcp_registry_delete_service(mcp_registry *reg, const char *name, mcp_error *err);

/* Sets desired_state of one component, or of all when component is NULL.
 * Returns the number of components changed (0 = no such service/component), -1 on error. */
int mcp_registry_set_desired_state(mcp_registry *reg, const char *service, const char *component,
                                   const char *state, mcp_error *err);
/* Sets a service's active flag. Returns 1 done, 0 no such service, -1 on error. */
int mcp_registry_set_active(mcp_registry *reg, const char *service, bool active, mcp_error *err);

/* Appends an event (component may be NULL) without an exit code. */
int mcp_registry_add_event(mcp_registry *reg, const char *service, const char *component,
                           const char *kind, const char *message, mcp_error *err);
/* Appends an event with an exit code when exit_code is not NULL. Keeps only
 * the newest keep_events rows, trimmed in batches of keep/100 (at least 1)
 * inserts, so the table briefly holds up to that many more. */
int mcp_registry_add_event_exit(mcp_registry *reg, const char *service, const char *component,
                                const char *kind, const char *message, const int *exit_code,
                                mcp_error *err);
/* keep >= 1; also trims at once. */
int mcp_registry_set_keep_events(mcp_registry *reg, int64_t keep, mcp_error *err);
/* The newest events first, at most limit, of one service or (NULL) all. */
int mcp_registry_list_events(mcp_registry *reg, const char *service, int limit, mcp_event **out,
                             size_t *n, mcp_error *err);
/* Events as q says: newest first, or oldest first above q->after_id. */
int mcp_registry_query_events(mcp_registry *reg, const mcp_event_query *q, mcp_event **out,
                              size_t *n, mcp_error *err);
void mcp_events_free(mcp_event *ev, size_t n);

/* Writes the fields of u named by the bits of set (MCP_SUP_*), creating the
 * row (other fields empty, restarts 0) when absent; updated_at is now.
 * u->service and u->component name the row. Returns 1 written, 0 no such
 * component, -1 error. */
int mcp_registry_set_supervision(mcp_registry *reg, const mcp_supervision *u, unsigned set,
                                 mcp_error *err);
/* Returns 1 and fills out, 0 when there is no row, -1 on error. */
int mcp_registry_get_supervision(mcp_registry *reg, const char *service, const char *component,
                                 mcp_supervision *out, mcp_error *err);
/* Every row, ordered by service and component. */
int mcp_registry_list_supervision(mcp_registry *reg, mcp_supervision **out, size_t *n,
                                  mcp_error *err);
/* Deletes one component's row, or every row of the service when component
 * is NULL. Returns the rows deleted, -1 on error. */
int mcp_registry_clear_supervision(mcp_registry *reg, const char *service, const char *component,
                                   mcp_error *err);
void mcp_supervision_free(mcp_supervision *s);
void mcp_supervisions_free(mcp_supervision *s, size_t n);

/* A consistent online copy of the registry at dest (SQLite backup API).
 * dest must not exist yet. */
int mcp_registry_snapshot(mcp_registry *reg, const char *dest, mcp_error *err);

#endif
