/* sd_notify(3) for the agent: READY/STATUS/RELOADING/STOPPING/WATCHDOG. The
 * messages are short datagrams; sd_notify neither blocks nor retries. */
#include "mcp/notify.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#define STATUS_MAX 400

/* "STATUS=text" with line breaks flattened; returns buf. */
static const char *status_line(char *buf, size_t len, const char *status)
{
    snprintf(buf, len, "STATUS=%s", status);
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return buf;
}

int mcp_notify_ready(const char *status)
{
    if (!status)
        return sd_notify(0, "READY=1");
    char buf[STATUS_MAX];
    return sd_notifyf(0, "READY=1\n%s", status_line(buf, sizeof buf, status));
}

int mcp_notify_status(const char *status)
{
    char buf[STATUS_MAX];
    return sd_notify(0, status_line(buf, sizeof buf, status ? status : ""));
}

int mcp_notify_reloading(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return sd_notify(0, "RELOADING=1");
    unsigned long long usec =
        (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL;
    return sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", usec);
}

int mcp_notify_stopping(void)
{
    return sd_notify(0, "STOPPING=1");
}

int mcp_notify_watchdog(void)
{
    return sd_notify(0, "WATCHDOG=1");
}

uint64_t mcp_notify_watchdog_usec(void)
{
    uint64_t usec = 0;
    return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}
