/* libcurl, loaded on first use. Debian's libcurl brings some twenty
 * libraries with it (GnuTLS, Kerberos, LDAP, SSH, …): a command or a daemon
 * that never makes an HTTP request should not map them (start-up time,
 * resident memory). http.c calls curl through this table; the loader fills
 * it from libcurl.so.4 the first time an http client is made. */
#ifndef MCP_CURL_SHIM_H
#define MCP_CURL_SHIM_H

#include <stddef.h>

#define CURL_DISABLE_TYPECHECK /* the calls go through pointers below */
#include <curl/curl.h>

/* function pointers only, in the order curl_shim.c names their symbols */
typedef struct mcp_curl_api {
    CURLcode (*global_init)(long flags);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *h, CURLoption opt, ...);
    CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
    void (*easy_cleanup)(CURL *h);
    const char *(*easy_strerror)(CURLcode code);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_setopt)(CURLM *m, CURLMoption opt, ...);
    CURLMcode (*multi_add_handle)(CURLM *m, CURL *h);
    CURLMcode (*multi_remove_handle)(CURLM *m, CURL *h);
    CURLMcode (*multi_socket_action)(CURLM *m, curl_socket_t s, int ev, int *running);
    CURLMcode (*multi_assign)(CURLM *m, curl_socket_t s, void *p);
    CURLMsg *(*multi_info_read)(CURLM *m, int *left);
    CURLMcode (*multi_cleanup)(CURLM *m);
    const char *(*multi_strerror)(CURLMcode code);
    struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
    void (*slist_free_all)(struct curl_slist *l);
} mcp_curl_api;

extern mcp_curl_api mcp_curl;

/* Loads libcurl once (later calls return the first outcome). Returns 0, or
 * -1 with a reason in why ("libcurl.so.4: cannot open shared object file"). */
int mcp_curl_load(char *why, size_t len);

#ifndef MCP_CURL_SHIM_IMPL
/* curl.h may define some of these as macros already */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_multi_setopt
#define curl_global_init mcp_curl.global_init
#define curl_easy_init mcp_curl.easy_init
#define curl_easy_setopt mcp_curl.easy_setopt
#define curl_easy_getinfo mcp_curl.easy_getinfo
#define curl_easy_cleanup mcp_curl.easy_cleanup
#define curl_easy_strerror mcp_curl.easy_strerror
#define curl_multi_init mcp_curl.multi_init
#define curl_multi_setopt mcp_curl.multi_setopt
#define curl_multi_add_handle mcp_curl.multi_add_handle
#define curl_multi_remove_handle mcp_curl.multi_remove_handle
#define curl_multi_socket_action mcp_curl.multi_socket_action
#define curl_multi_assign mcp_curl.multi_assign
#define curl_multi_info_read mcp_curl.multi_info_read
#define curl_multi_cleanup mcp_curl.multi_cleanup
#define curl_multi_strerror mcp_curl.multi_strerror
#define curl_slist_append mcp_curl.slist_append
#define curl_slist_free_all mcp_curl.slist_free_all
#endif

#endif
