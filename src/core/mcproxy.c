/* mc-proxy admin client: protobuf-c messages carried by the unary gRPC
 * client over mc-proxy's unix socket. */
#include "mcp/mcproxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/grpc_client.h"
#include "mcp/util.h"
#include "mcproxy/v1/admin.pb-c.h"

#define SERVICE_PATH "/mcproxy.v1.ProxyAdminService/"
/* A route list is small; anything bigger than this is not mc-proxy talking. */
#define MAX_RESPONSE ((size_t)1 << 20)

typedef enum { CALL_ADD, CALL_REMOVE, CALL_LIST } call_kind;

struct mcp_mcproxy_call {
    mcp_grpc_call *grpc;
    call_kind kind;
    mcp_mcproxy_cb cb;
    void *ud;
};

void mcp_mcproxy_cancel(mcp_mcproxy_call *call)
{
    if (call)
        mcp_grpc_client_cancel(call->grpc);
}

static char *dup_or_empty(const char *s)
{
    return mcp_strdup(s ? s : "");
}

static void free_routes(mcp_mcproxy_route *routes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mcp_mcproxy_route *r = &routes[i];
        MCP_FREE_ALL(r->listener, r->hostname, r->backend, r->mode, r->cert_path, r->key_path,
                     r->service);
    }
    free(routes);
}

/* Copies the routes of a ListRoutesResponse. Returns 0, or -1 out of memory. */
static int copy_routes(const Mcproxy__V1__ListRoutesResponse *msg, mcp_mcproxy_route **out,
                       size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (msg->n_routes == 0)
        return 0;
    mcp_mcproxy_route *routes = calloc(msg->n_routes, sizeof *routes);
    if (!routes)
        return -1;
    for (size_t i = 0; i < msg->n_routes; i++) {
        const Mcproxy__V1__Route *in = msg->routes[i];
        mcp_mcproxy_route *r = &routes[i];
        r->listener = dup_or_empty(in->listener);
        r->hostname = dup_or_empty(in->hostname);
        r->backend = dup_or_empty(in->backend);
        r->mode = dup_or_empty(in->mode);
        r->cert_path = dup_or_empty(in->cert_path);
        r->key_path = dup_or_empty(in->key_path);
        r->service = dup_or_empty(in->service);
        if (!r->listener || !r->hostname || !r->backend || !r->mode || !r->cert_path ||
            !r->key_path || !r->service) {
            free_routes(routes, i + 1);
            return -1;
        }
    }
    *out = routes;
    *n_out = msg->n_routes;
    return 0;
}

static const ProtobufCMessageDescriptor *response_descriptor(call_kind kind)
{
    switch (kind) {
    case CALL_ADD:
        return &mcproxy__v1__add_route_response__descriptor;
    case CALL_REMOVE:
        return &mcproxy__v1__remove_route_response__descriptor;
    case CALL_LIST:
        break;
    }
    return &mcproxy__v1__list_routes_response__descriptor;
}

/* Fills res from a grpc-status OK answer: the message must unpack as the
 * method's response type. */
static void decode_ok(mcp_mcproxy_call *call, const mcp_grpc_result *gr, mcp_mcproxy_result *res,
                      mcp_mcproxy_route **routes)
{
    ProtobufCMessage *msg =
        protobuf_c_message_unpack(response_descriptor(call->kind), NULL, gr->data_len, gr->data);
    if (!msg) {
        res->reason = "bad response";
        res->detail = "the answer is not a valid protobuf message";
        return;
    }
    if (call->kind == CALL_LIST &&
        copy_routes((const Mcproxy__V1__ListRoutesResponse *)msg, routes, &res->n_routes) != 0) {
        res->reason = "bad response";
        res->detail = "out of memory";
    } else {
        res->ok = true;
        res->routes = *routes;
    }
    protobuf_c_message_free_unpacked(msg, NULL);
}

static void on_grpc_done(const mcp_grpc_result *gr, void *ud)
{
    mcp_mcproxy_call *call = ud;
    mcp_mcproxy_result res = {.reason = "", .detail = ""};
    mcp_mcproxy_route *routes = NULL;
    char status_reason[512];
    if (gr->cancelled) {
        res.cancelled = true;
        res.reason = "cancelled";
    } else if (gr->status == MCP_GRPC_DEADLINE_EXCEEDED) {
        /* our deadline, or the server's enforcement of the grpc-timeout we sent */
        res.reason = "timeout";
        res.detail = gr->reason[0] ? gr->reason : gr->message;
    } else if (gr->reason[0]) {
        /* no grpc-status: the socket is missing, refused, reset, or not gRPC */
        res.reason = "unavailable";
        res.detail = gr->reason;
    } else if (gr->status != MCP_GRPC_OK) {
        snprintf(status_reason, sizeof status_reason, "grpc status %d: %s", gr->status,
                 gr->message);
        res.reason = status_reason;
    } else {
        decode_ok(call, gr, &res, &routes);
    }
    call->cb(&res, call->ud);
    free_routes(routes, res.n_routes);
    free(call);
}

/* Packs msg and starts method on the socket. */
static mcp_mcproxy_call *start_call(mcp_http *http, const mcp_mcproxy_target *to, call_kind kind,
                                    const char *method, const ProtobufCMessage *msg,
                                    mcp_mcproxy_cb cb, void *ud, mcp_error *err)
{
    if (!http || !to || !cb) {
        mcp_error_set(err, "mcproxy: a call needs a client, a target and a callback");
        return NULL;
    }
    if (!to->socket || !to->socket[0]) {
        mcp_error_set(err, "mcproxy: no socket configured ([mcproxy] socket)");
        return NULL;
    }
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    mcp_mcproxy_call *call = calloc(1, sizeof *call);
    char *path = mcp_sprintf(SERVICE_PATH "%s", method);
    if (!buf || !call || !path) {
        mcp_error_set(err, "mcproxy: out of memory");
        free(buf);
        free(call);
        free(path);
        return NULL;
    }
    protobuf_c_message_pack(msg, buf);
    call->kind = kind;
    call->cb = cb;
    call->ud = ud;
    mcp_grpc_request rq = {
        .unix_socket = to->socket,
        .method = path,
        .msg = buf,
        .msg_len = len,
        .timeout_ms = to->timeout_ms > 0 ? to->timeout_ms : MCP_MCPROXY_DEFAULT_TIMEOUT_MS,
        .max_msg = MAX_RESPONSE,
    };
    call->grpc = mcp_grpc_client_call(http, &rq, on_grpc_done, call, err);
    free(buf);
    free(path);
    if (!call->grpc) {
        mcp_error_prefix(err, "mcproxy");
        free(call);
        return NULL;
    }
    return call;
}

/* protobuf-c wants non-NULL strings: "" stands for "not set". */
static char *str_or_empty(const char *s)
{
    return (char *)(s ? s : "");
}

mcp_mcproxy_call *mcp_mcproxy_add_route(mcp_http *http, const mcp_mcproxy_target *to,
                                        const mcp_mcproxy_route *route, mcp_mcproxy_cb cb, void *ud,
                                        mcp_error *err)
{
    if (!route) {
        mcp_error_set(err, "mcproxy: add_route needs a route");
        return NULL;
    }
    Mcproxy__V1__Route r = MCPROXY__V1__ROUTE__INIT;
    r.listener = str_or_empty(route->listener);
    r.hostname = str_or_empty(route->hostname);
    r.backend = str_or_empty(route->backend);
    r.mode = str_or_empty(route->mode);
    r.cert_path = str_or_empty(route->cert_path);
    r.key_path = str_or_empty(route->key_path);
    r.service = str_or_empty(route->service);
    Mcproxy__V1__AddRouteRequest rq = MCPROXY__V1__ADD_ROUTE_REQUEST__INIT;
    rq.route = &r;
    return start_call(http, to, CALL_ADD, "AddRoute", &rq.base, cb, ud, err);
}

mcp_mcproxy_call *mcp_mcproxy_remove_route(mcp_http *http, const mcp_mcproxy_target *to,
                                           const char *listener, const char *hostname,
                                           mcp_mcproxy_cb cb, void *ud, mcp_error *err)
{
    Mcproxy__V1__RemoveRouteRequest rq = MCPROXY__V1__REMOVE_ROUTE_REQUEST__INIT;
    rq.listener = str_or_empty(listener);
    rq.hostname = str_or_empty(hostname);
    return start_call(http, to, CALL_REMOVE, "RemoveRoute", &rq.base, cb, ud, err);
}

mcp_mcproxy_call *mcp_mcproxy_list_routes(mcp_http *http, const mcp_mcproxy_target *to,
                                          mcp_mcproxy_cb cb, void *ud, mcp_error *err)
{
    Mcproxy__V1__ListRoutesRequest rq = MCPROXY__V1__LIST_ROUTES_REQUEST__INIT;
    return start_call(http, to, CALL_LIST, "ListRoutes", &rq.base, cb, ud, err);
}
