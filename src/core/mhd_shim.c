/* Loads libmicrohttpd on first use: see mhd_shim.h for why. */
#define MCP_MHD_SHIM_IMPL
#include "mhd_shim.h"

#include "dl_shim.h"

mcp_mhd_api mcp_mhd;

/* in the order of mcp_mhd_api's members */
MCP_DL_SHIM(mcp_mhd_load, "libmicrohttpd.so.12", mcp_mhd, "MHD_start_daemon", "MHD_stop_daemon",
            "MHD_get_daemon_info", "MHD_run", "MHD_get_timeout", "MHD_get_connection_info",
            "MHD_create_response_from_buffer", "MHD_add_response_header", "MHD_queue_response",
            "MHD_destroy_response")
