/* Loads libsystemd on first use: see systemd_shim.h for why. */
#define MCP_SYSTEMD_SHIM_IMPL
#include "systemd_shim.h"

#include "dl_shim.h"

mcp_systemd_api mcp_systemd;

/* in the order of mcp_systemd_api's members */
MCP_DL_SHIM(mcp_systemd_load, "libsystemd.so.0", mcp_systemd, "sd_notify", "sd_notifyf",
            "sd_watchdog_enabled")
