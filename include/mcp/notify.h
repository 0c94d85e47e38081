/* Telling systemd how the service is doing (sd_notify(3) over
 * $NOTIFY_SOCKET). Without NOTIFY_SOCKET every call is a no-op returning 0,
 * so a process not started by systemd behaves exactly as before, and does
 * not load libsystemd (it is opened on the first message that is sent). */
#ifndef MCP_NOTIFY_H
#define MCP_NOTIFY_H

#include <stdint.h>

/* Each returns > 0 when sent, 0 when there is no NOTIFY_SOCKET, or a
 * negative errno when sending failed (-ELIBACC: libsystemd.so.0 cannot be
 * loaded; the reason is logged once). A status is one line: line breaks in
 * it become spaces (so it cannot smuggle in other assignments). */
int mcp_notify_ready(const char *status); /* READY=1, and STATUS= unless NULL */
int mcp_notify_status(const char *status);
int mcp_notify_reloading(void); /* RELOADING=1 with MONOTONIC_USEC */
int mcp_notify_stopping(void);  /* STOPPING=1 */
int mcp_notify_watchdog(void);  /* WATCHDOG=1 */

/* The watchdog interval systemd asked this process for (WATCHDOG_USEC, when
 * WATCHDOG_PID is unset or ours), in microseconds; 0 when none (or when
 * libsystemd cannot be loaded). */
uint64_t mcp_notify_watchdog_usec(void);

#endif
