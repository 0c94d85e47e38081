/* Loads libcurl on first use: see curl_shim.h for why. */
#define MCP_CURL_SHIM_IMPL
#include "curl_shim.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

mcp_curl_api mcp_curl;

#define LIBCURL "libcurl.so.4"

/* dlsym into a function pointer without the object/function pointer
 * conversion ISO C leaves undefined: copy the bytes. */
static int bind_symbol(void *lib, const char *name, void *slot, char *why, size_t len)
{
    void *sym = dlsym(lib, name);
    if (!sym) {
        snprintf(why, len, "%s: no symbol %s", LIBCURL, name);
        return -1;
    }
    memcpy(slot, &sym, sizeof sym);
    return 0;
}

int mcp_curl_load(char *why, size_t len)
{
    static int state; /* 0 not tried, 1 loaded, -1 failed */
    static char first_why[256];
    if (state == 1)
        return 0;
    if (state == -1) {
        snprintf(why, len, "%s", first_why);
        return -1;
    }
    void *lib = dlopen(LIBCURL, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(first_why, sizeof first_why, "%s", dlerror());
        snprintf(why, len, "%s", first_why);
        state = -1;
        return -1;
    }
    static const struct {
        const char *name;
        size_t offset;
    } syms[] = {
        {"curl_global_init", offsetof(mcp_curl_api, global_init)},
        {"curl_easy_init", offsetof(mcp_curl_api, easy_init)},
        {"curl_easy_setopt", offsetof(mcp_curl_api, easy_setopt)},
        {"curl_easy_getinfo", offsetof(mcp_curl_api, easy_getinfo)},
        {"curl_easy_cleanup", offsetof(mcp_curl_api, easy_cleanup)},
        {"curl_easy_strerror", offsetof(mcp_curl_api, easy_strerror)},
        {"curl_multi_init", offsetof(mcp_curl_api, multi_init)},
        {"curl_multi_setopt", offsetof(mcp_curl_api, multi_setopt)},
        {"curl_multi_add_handle", offsetof(mcp_curl_api, multi_add_handle)},
        {"curl_multi_remove_handle", offsetof(mcp_curl_api, multi_remove_handle)},
        {"curl_multi_socket_action", offsetof(mcp_curl_api, multi_socket_action)},
        {"curl_multi_assign", offsetof(mcp_curl_api, multi_assign)},
        {"curl_multi_info_read", offsetof(mcp_curl_api, multi_info_read)},
        {"curl_multi_cleanup", offsetof(mcp_curl_api, multi_cleanup)},
        {"curl_multi_strerror", offsetof(mcp_curl_api, multi_strerror)},
        {"curl_slist_append", offsetof(mcp_curl_api, slist_append)},
        {"curl_slist_free_all", offsetof(mcp_curl_api, slist_free_all)},
    };
    mcp_curl_api api;
    memset(&api, 0, sizeof api);
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        if (bind_symbol(lib, syms[i].name, (char *)&api + syms[i].offset, first_why, sizeof first_why) !=
            0) {
            snprintf(why, len, "%s", first_why);
            dlclose(lib);
            state = -1;
            return -1;
        }
    }
    mcp_curl = api;
    state = 1; /* the library stays loaded for the life of the process */
    return 0;
}
