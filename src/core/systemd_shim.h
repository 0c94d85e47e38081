/* libsystemd, loaded on first use. Debian's libsystemd0 links libgcrypt,
 * liblzma, libzstd, liblz4, libcap and libgpg-error: a process that systemd
 * did not start (a CLI command, a daemon run by hand or under a test) should
 * not map them. notify.c calls sd_notify through this table, and loads it
 * only when NOTIFY_SOCKET or WATCHDOG_USEC says systemd is listening. */
#ifndef MCP_SYSTEMD_SHIM_H
#define MCP_SYSTEMD_SHIM_H

#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-daemon.h>

/* function pointers only, in the order systemd_shim.c names their symbols */
typedef struct mcp_systemd_api {
    int (*notify)(int unset_environment, const char *state);
    int (*notifyf)(int unset_environment, const char *format, ...)
        __attribute__((format(printf, 2, 3)));
    int (*watchdog_enabled)(int unset_environment, uint64_t *usec);
} mcp_systemd_api;

extern mcp_systemd_api mcp_systemd;

/* Loads libsystemd.so.0 once (later calls return the first outcome).
 * 0, or -1 with a reason in why. */
int mcp_systemd_load(char *why, size_t len);

#ifndef MCP_SYSTEMD_SHIM_IMPL
#define sd_notify mcp_systemd.notify
#define sd_notifyf mcp_systemd.notifyf
#define sd_watchdog_enabled mcp_systemd.watchdog_enabled
#endif

#endif
