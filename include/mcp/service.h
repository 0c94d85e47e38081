/* Service definitions (SPEC §4): the desired state of one service. */
#ifndef MCP_SERVICE_H
#define MCP_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcp/error.h"
#include "mcp/util.h"

typedef struct mcp_route {
    char *name;     /* unique within the component */
    int port;       /* container port; 0 = the process listens on $PORT (mapped host:host) */
    char *mode;     /* "l4" | "l7" */
    char *hostname; /* may be NULL */
    int host_port;  /* from the registry; 0 = not allocated yet */
} mcp_route;

#define MCP_HEALTH_DEFAULT_INTERVAL_MS 10000
#define MCP_HEALTH_DEFAULT_TIMEOUT_MS 1000
#define MCP_HEALTH_DEFAULT_FAILURE_THRESHOLD 3

typedef struct mcp_health {
    char *check; /* "tcp" | "grpc" | "http"; NULL = none given (use the boot stage's) */
    int port;    /* container port to probe; 0 = default (first route, else first published port) */
    char *path;  /* http only; NULL = "/" */
    /* liveness after boot (SPEC §10); the parser fills the defaults */
    int64_t interval_ms;   /* between probes, > 0; default 10 s */
    int64_t timeout_ms;    /* of one probe, > 0; default 1 s */
    int failure_threshold; /* failures in a row that make it unhealthy, >= 1; default 3 */
} mcp_health;

typedef struct mcp_component {
    char *name;
    char *image;
    char *network;    /* may be NULL */
    char *user;       /* may be NULL */
    char *restart;    /* may be NULL; "no" | "always" | "on-failure[:N]" | "unless-stopped" */
    mcp_strv ports;   /* podman -p specs as written: "[ip:][host:]container[/tcp|udp]" */
    mcp_strv volumes; /* "src:dst[:opts]" */
    mcp_strv cmd;
    mcp_strv env;        /* "KEY=value" */
    char *desired_state; /* "running" | "stopped" */
    mcp_health health;
    mcp_route *routes;
    size_t n_routes;
} mcp_component;

typedef struct mcp_service {
    char *name;
    bool active;
    mcp_component *components;
    size_t n_components;
    mcp_strv unknown; /* per unknown key: "file:line:col: unknown key 'k' (did you mean 'x'?)" */
} mcp_service;

/* Parses and validates a service definition document. filename is used in
 * error messages, which read "file:line:col: key 'components[1].ports[0]': bad port spec \"x\"".
 * Checks: name syntax ([a-z0-9][a-z0-9-]*, max 63) for the service,
 * components and routes; duplicate component and route names; required keys
 * (name, components[].name, image); port specs; volume specs; desired_state,
 * restart, route mode and health check values; route and health ports 1..65535;
 * health interval and timeout positive durations, failure_threshold >= 1;
 * env entries of the form KEY=value; wrong types. Unknown keys are not
 * errors: each is described in out->unknown, naming the nearest known key,
 * and logged by no one here (the caller says them once). Returns 0, or -1 with err set. */
int mcp_service_parse(const char *text, size_t len, const char *filename, mcp_service *out,
                      mcp_error *err);
/* Reads and parses a file. */
int mcp_service_load(const char *path, mcp_service *out, mcp_error *err);

/* Validates names: [a-z0-9][a-z0-9-]*, at most 63 bytes. */
bool mcp_name_valid(const char *name);
/* Validates one podman port spec; fills the parsed parts (any may be NULL). */
bool mcp_port_spec_parse(const char *spec, char *host_ip, size_t host_ip_len, int *host_port,
                         int *container_port, char *proto, size_t proto_len);
bool mcp_volume_spec_valid(const char *spec);

/* The container name: "service-component", or "service" when the component
 * has the service's name. Returns a fresh string. */
char *mcp_container_name(const char *service, const char *component);

void mcp_service_free(mcp_service *svc);
void mcp_services_free(mcp_service *svcs, size_t n);

#endif
