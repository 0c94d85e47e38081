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
} mcp_event;

/* Opens (creating when absent) and migrates the registry at path. A file that
 * is not SQLite, is corrupt, or is a SQLite database of another application
 * (tables we do not know and no user_version of ours) is refused with a clear
 * error and left untouched. A database from a newer schema version is refused. */
int mcp_registry_open(const char *path, mcp_registry **out, mcp_error *err);
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
int mcp_registry_get_service(mcp_registry *reg, const char *name, mcp_service *out,
                             mcp_error *err);
/* All services ordered by name. Free with mcp_services_free. */
int mcp_registry_list_services(mcp_registry *reg, mcp_service **out, size_t *n, mcp_error *err);
/* Removes a service, its components and routes (freeing their ports). Returns 1 removed, 0 absent, -1 error. */
int mcp_registry_delete_service(mcp_registry *reg, const char *name, mcp_error *err);

/* Sets desired_state of one component, or of all when component is NULL.
 * Returns the number of components changed (0 = no such service/component), -1 on error. */
int mcp_registry_set_desired_state(mcp_registry *reg, const char *service, const char *component,
                                   const char *state, mcp_error *err);
/* Sets a service's active flag. Returns 1 done, 0 no such service, -1 on error. */
int mcp_registry_set_active(mcp_registry *reg, const char *service, bool active, mcp_error *err);

/* Appends an event (component may be NULL). */
int mcp_registry_add_event(mcp_registry *reg, const char *service, const char *component,
                           const char *kind, const char *message, mcp_error *err);
/* The newest events first, at most limit, of one service or (NULL) all. */
int mcp_registry_list_events(mcp_registry *reg, const char *service, int limit, mcp_event **out,
                             size_t *n, mcp_error *err);
void mcp_events_free(mcp_event *ev, size_t n);

/* A consistent online copy of the registry at dest (SQLite backup API).
 * dest must not exist yet. */
int mcp_registry_snapshot(mcp_registry *reg, const char *dest, mcp_error *err);

#endif
