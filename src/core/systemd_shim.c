/* Loads libsystemd on first use: see systemd_shim.h for why. */
#define MCP_SYSTEMD_SHIM_IMPL
#include "systemd_shim.h"

#include "dl_shim.h"

mcp_systemd_api mcp_systemd;

int mcp_systemd_load(char *why, size_t len)
{
    static mcp_dl_lib lib = {.soname = "libsystemd.so.0"};
    static const mcp_dl_symbol syms[] = {
        {"sd_notify", offsetof(mcp_systemd_api, notify)},
        {"sd_notifyf", offsetof(mcp_systemd_api, notifyf)},
        {"sd_watchdog_enabled", offsetof(mcp_systemd_api, watchdog_enabled)},
    };
    return mcp_dl_load(&lib, syms, sizeof syms / sizeof syms[0], &mcp_systemd, sizeof mcp_systemd,
                       why, len);
}
