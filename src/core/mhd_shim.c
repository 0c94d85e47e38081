/* Loads libmicrohttpd on first use: see mhd_shim.h for why. */
#define MCP_MHD_SHIM_IMPL
#include "mhd_shim.h"

#include "dl_shim.h"

mcp_mhd_api mcp_mhd;

int mcp_mhd_load(char *why, size_t len)
{
    static mcp_dl_lib lib = {.soname = "libmicrohttpd.so.12"};
    static const mcp_dl_symbol syms[] = {
        {"MHD_start_daemon", offsetof(mcp_mhd_api, start_daemon)},
        {"MHD_stop_daemon", offsetof(mcp_mhd_api, stop_daemon)},
        {"MHD_get_daemon_info", offsetof(mcp_mhd_api, get_daemon_info)},
        {"MHD_run", offsetof(mcp_mhd_api, run)},
        {"MHD_get_timeout", offsetof(mcp_mhd_api, get_timeout)},
        {"MHD_get_connection_info", offsetof(mcp_mhd_api, get_connection_info)},
        {"MHD_create_response_from_buffer", offsetof(mcp_mhd_api, create_response_from_buffer)},
        {"MHD_add_response_header", offsetof(mcp_mhd_api, add_response_header)},
        {"MHD_queue_response", offsetof(mcp_mhd_api, queue_response)},
        {"MHD_destroy_response", offsetof(mcp_mhd_api, destroy_response)},
    };
    return mcp_dl_load(&lib, syms, sizeof syms / sizeof syms[0], &mcp_mhd, sizeof mcp_mhd, why,
                       len);
}
