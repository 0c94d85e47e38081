/* libmicrohttpd, loaded on first use. Debian's libmicrohttpd12 links GnuTLS
 * and with it p11-kit, idn2, unistring, tasn1, nettle, hogweed, gmp and ffi:
 * a process that serves no metrics should not map them. metrics_http.c
 * calls MHD through this table; the loader fills it from libmicrohttpd.so.12
 * when an endpoint is first started ([metrics] listen). */
#ifndef MCP_MHD_SHIM_H
#define MCP_MHD_SHIM_H

#include <stddef.h>

#include <microhttpd.h>

/* function pointers only, in the order mhd_shim.c names their symbols */
typedef struct mcp_mhd_api {
    struct MHD_Daemon *(*start_daemon)(unsigned int flags, uint16_t port,
                                       MHD_AcceptPolicyCallback apc, void *apc_cls,
                                       MHD_AccessHandlerCallback dh, void *dh_cls, ...);
    void (*stop_daemon)(struct MHD_Daemon *daemon);
    const union MHD_DaemonInfo *(*get_daemon_info)(struct MHD_Daemon *daemon,
                                                   enum MHD_DaemonInfoType info_type, ...);
    enum MHD_Result (*run)(struct MHD_Daemon *daemon);
    enum MHD_Result (*get_timeout)(struct MHD_Daemon *daemon, MHD_UNSIGNED_LONG_LONG *timeout);
    const union MHD_ConnectionInfo *(*get_connection_info)(struct MHD_Connection *connection,
                                                           enum MHD_ConnectionInfoType info_type,
                                                           ...);
    struct MHD_Response *(*create_response_from_buffer)(size_t size, void *buffer,
                                                        enum MHD_ResponseMemoryMode mode);
    enum MHD_Result (*add_response_header)(struct MHD_Response *response, const char *header,
                                           const char *content);
    enum MHD_Result (*queue_response)(struct MHD_Connection *connection, unsigned int status_code,
                                      struct MHD_Response *response);
    void (*destroy_response)(struct MHD_Response *response);
} mcp_mhd_api;

extern mcp_mhd_api mcp_mhd;

/* Loads libmicrohttpd.so.12 once (later calls return the first outcome).
 * 0, or -1 with a reason in why. */
int mcp_mhd_load(char *why, size_t len);

#ifndef MCP_MHD_SHIM_IMPL
#define MHD_start_daemon mcp_mhd.start_daemon
#define MHD_stop_daemon mcp_mhd.stop_daemon
#define MHD_get_daemon_info mcp_mhd.get_daemon_info
#define MHD_run mcp_mhd.run
#define MHD_get_timeout mcp_mhd.get_timeout
#define MHD_get_connection_info mcp_mhd.get_connection_info
#define MHD_create_response_from_buffer mcp_mhd.create_response_from_buffer
#define MHD_add_response_header mcp_mhd.add_response_header
#define MHD_queue_response mcp_mhd.queue_response
#define MHD_destroy_response mcp_mhd.destroy_response
#endif

#endif
