/* sd_notify(3) for the agent: READY/STATUS/RELOADING/STOPPING/WATCHDOG. The
 * messages are short datagrams; sd_notify neither blocks nor retries.
 * libsystemd is loaded only once NOTIFY_SOCKET (or WATCHDOG_USEC for this
 * pid) shows systemd is listening: other processes never map it. */
#include "mcp/notify.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mcp/log.h"
#include "systemd_shim.h" /* sd_notify, loaded on first use */

#define STATUS_MAX 400

/* 0 when libsystemd is there, -ELIBACC when it cannot be loaded (said once
 * in the log, with the loader's reason). */
static int load_systemd(void)
{
    static bool logged;
    char why[256];
    if (mcp_systemd_load(why, sizeof why) == 0)
        return 0;
    if (!logged) {
        logged = true;
        mcp_log(MCP_LOG_ERROR, "cannot load libsystemd: systemd is not told how the agent is doing",
                "reason", why, NULL);
    }
    return -ELIBACC;
}

/* 1 when a message should be sent, 0 when nobody listens (what sd_notify
 * itself returns then), or a negative errno. */
static int can_send(void)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    if (!sock || !*sock)
        return 0;
    int rc = load_systemd();
    return rc < 0 ? rc : 1;
}

/* "STATUS=text" with line breaks flattened; returns buf. */
static const char *status_line(char *buf, size_t len, const char *status)
{
    snprintf(buf, len, "STATUS=%s", status);
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return buf;
}

static int send_state(const char *state)
{
    int rc = can_send();
    return rc <= 0 ? rc : sd_notify(0, state);
}

int mcp_notify_ready(const char *status)
{
    if (!status)
        return send_state("READY=1");
    int rc = can_send();
    if (rc <= 0)
        return rc;
    char buf[STATUS_MAX];
    return sd_notifyf(0, "READY=1\n%s", status_line(buf, sizeof buf, status));
}

int mcp_notify_status(const char *status)
{
    char buf[STATUS_MAX];
    return send_state(status_line(buf, sizeof buf, status ? status : ""));
}

int mcp_notify_reloading(void)
{
    int rc = can_send();
    if (rc <= 0)
        return rc;
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return sd_notify(0, "RELOADING=1");
    unsigned long long usec =
        (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL;
    return sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", usec);
}

int mcp_notify_stopping(void)
{
    return send_state("STOPPING=1");
}

int mcp_notify_watchdog(void)
{
    return send_state("WATCHDOG=1");
}

/* WATCHDOG_USEC is set and WATCHDOG_PID, when set, is this process. */
static bool watchdog_asked(void)
{
    const char *usec = getenv("WATCHDOG_USEC");
    if (!usec || !*usec)
        return false;
    const char *pid = getenv("WATCHDOG_PID");
    if (!pid || !*pid)
        return true;
    char *end;
    errno = 0;
    long long p = strtoll(pid, &end, 10);
    return errno == 0 && *end == '\0' && p == (long long)getpid();
}

uint64_t mcp_notify_watchdog_usec(void)
{
    if (!watchdog_asked() || load_systemd() != 0)
        return 0;
    uint64_t usec = 0;
    return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}
