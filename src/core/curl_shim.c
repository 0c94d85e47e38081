/* Loads libcurl on first use: see curl_shim.h for why. */
#define MCP_CURL_SHIM_IMPL
#include "curl_shim.h"

#include "dl_shim.h"

mcp_curl_api mcp_curl;

/* in the order of mcp_curl_api's members */
MCP_DL_SHIM(mcp_curl_load, "libcurl.so.4", mcp_curl, "curl_global_init", "curl_easy_init",
            "curl_easy_setopt", "curl_easy_getinfo", "curl_easy_cleanup", "curl_easy_strerror",
            "curl_multi_init", "curl_multi_setopt", "curl_multi_add_handle",
            "curl_multi_remove_handle", "curl_multi_socket_action", "curl_multi_assign",
            "curl_multi_info_read", "curl_multi_cleanup", "curl_multi_strerror",
            "curl_slist_append", "curl_slist_free_all")
