/* The agent's gRPC API from Lua: core.api.serve{...} runs the server (every
 * call becomes a Lua task with the request as a table, answered through the
 * call object: reply, or send...finish for a server stream), core.api.codes
 * names the status codes; the client (core.api.call, core.api.watch) is in
 * bind_api_client.c. Messages cross between protobuf and Lua through the
 * descriptors (pbconv.c). */
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "bind_api.h"
#include "internal.h"
#include "mcp/agent/v1/agent.pb-c.h"
#include "mcp/grpc_server.h"
#include "mcp/log.h"
#include "pbconv.h"

#define SERVER_MT "mcp.api.server"
#define CALL_MT "mcp.api.call"

static const ProtobufCServiceDescriptor *const SERVICES[] = {
    &mcp__agent__v1__agent_service__descriptor,
    &grpc__health__v1__health__descriptor,
};

/* ---- method table ---- */

typedef struct api_server api_server;

typedef struct api_method {
    char path[160]; /* "/mcp.agent.v1.AgentService/ListServices" */
    const ProtobufCMethodDescriptor *desc;
    api_server *server;
} api_method;

/* Heap-allocated: it outlives its Lua handle until the server has closed. */
struct api_server {
    mcp_host *host;
    mcp_grpc_server *server;
    int handler_ref;     /* the Lua function(call, method, request) */
    bool shutting_down;
    bool orphaned;       /* the Lua handle is gone: free on close */
    mcp_op *shutdown_op; /* a task waiting in server.shutdown() */
    api_method *methods;
    size_t n_methods;
};

/* ---- calls ---- */

/* Unsent bytes of a streamed call past which call:send waits for the client
 * to read (a slow reader must not grow the agent's memory). It resumes once
 * half of them are out. */
#define SEND_BOUND (256 * 1024)

typedef struct call_wait call_wait;

typedef struct api_call {
    mcp_grpc_server_call *call; /* NULL once finished */
    const ProtobufCMessageDescriptor *output;
    uv_loop_t *loop;
    bool cancelled;  /* the client went away, the deadline passed or the server ended it */
    call_wait *wait; /* the task parked in send or wait_closed, or NULL */
} api_call;

/* A task waiting on its call: for the output to drain, or for the call to close. */
enum { WAIT_DRAIN, WAIT_CLOSED };
enum { WAIT_DONE, WAIT_GONE, WAIT_TIMEOUT };

struct call_wait {
    mcp_wait w; /* w.obj: the api_call */
    int kind;
};

static api_call *check_call(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, CALL_MT);
}

/* Detaches the wait from its call, disarming the drain callback. */
static void wait_detach(mcp_wait *mw)
{
    call_wait *w = (call_wait *)mw;
    api_call *c = mw->obj;
    c->wait = NULL;
    if (c->call && w->kind == WAIT_DRAIN)
        mcp_grpc_server_call_on_drain(c->call, 0, NULL, NULL);
}

/* Wakes the waiting task with what happened. */
static void wait_end(call_wait *w, int what)
{
    int kind = w->kind;
    mcp_task *t = mcp_wait_end(&w->w);
    if (!t)
        return;
    lua_State *co = mcp_task_thread(t);
    if ((kind == WAIT_DRAIN && what == WAIT_DONE) || (kind == WAIT_CLOSED && what == WAIT_GONE)) {
        lua_pushboolean(co, 1);
        mcp_task_wake(t, 1);
        return;
    }
    lua_pushnil(co);
    if (what == WAIT_TIMEOUT)
        lua_pushliteral(co, "timeout");
    else
        lua_pushliteral(co, "closed");
    mcp_task_wake(t, 2);
}

static void wait_timed_out(mcp_wait *w)
{
    wait_end((call_wait *)w, WAIT_TIMEOUT);
}

/* Parks the running task on c until wait_end; timeout_s < 0: no limit. */
static int wait_start(lua_State *L, api_call *c, int kind, lua_Number timeout_s, const char *what)
{
    mcp_task *t = mcp_task_require(L, what);
    call_wait *w = mcp_wait_new(L, sizeof *w, c, c->loop, timeout_s, wait_detach, wait_timed_out);
    w->kind = kind;
    c->wait = w;
    /* may refuse at once (cancel requested): the wait has ended then */
    return mcp_op_wait(L, t, &w->w.op);
}

static void on_drain(mcp_grpc_server_call *call, void *ud)
{
    (void)call;
    api_call *c = ud;
    if (c->wait && c->wait->kind == WAIT_DRAIN)
        wait_end(c->wait, WAIT_DONE);
}

/* Takes the call out of c to finish it; a task waiting on it learns it closed. */
static mcp_grpc_server_call *take_call(api_call *c)
{
    mcp_grpc_server_call *call = c->call;
    c->call = NULL;
    if (c->wait)
        wait_end(c->wait, WAIT_GONE);
    return call;
}

static void finish_fail(api_call *c, int status, const char *msg)
{
    if (!c->call)
        return;
    mcp_grpc_server_fail(take_call(c), status, msg);
}

static int push_closed(lua_State *L)
{
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
}

static void check_open(lua_State *L, api_call *c)
{
    if (!c->call)
        luaL_error(L, "this call was already answered");
    if (c->wait)
        luaL_error(L, "another task is waiting on this call");
}

/* call.reply(table): answers with the method's response message. */
static int l_call_reply(lua_State *L)
{
    api_call *c = check_call(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    check_open(L, c);
    ProtobufCMessage *msg = mcp_pb_check(L, 2, c->output); /* raises on a bad table */
    int rc = mcp_grpc_server_reply_message(take_call(c), msg);
    protobuf_c_message_free_unpacked(msg, NULL);
    lua_pushboolean(L, rc == 0);
    return 1;
}

/* call.reply_packed(bytes): answers with a message packed earlier (by
 * api.pack for this method): cached answers cost no conversion at all. */
static int l_call_reply_packed(lua_State *L)
{
    api_call *c = check_call(L, 1);
    size_t len;
    const char *bytes = luaL_checklstring(L, 2, &len);
    check_open(L, c);
    lua_pushboolean(L, mcp_grpc_server_reply(take_call(c), (const uint8_t *)bytes, len) == 0);
    return 1;
}

/* call.send(table[, timeout_s]): one message of a streamed response; the call
 * stays open. Waits (this task only) while the client is SEND_BOUND behind.
 * -> true | nil, "closed" | nil, "timeout" */
static int l_call_send(lua_State *L)
{
    api_call *c = check_call(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Number timeout = luaL_optnumber(L, 3, -1);
    if (!lua_isnoneornil(L, 3) && !(timeout >= 0))
        return luaL_argerror(L, 3, "timeout must be a number of seconds >= 0");
    check_open(L, c);
    ProtobufCMessage *msg = mcp_pb_check(L, 2, c->output); /* raises on a bad table */
    int rc = c->cancelled ? -1 : mcp_grpc_server_send_message(c->call, msg);
    protobuf_c_message_free_unpacked(msg, NULL);
    if (rc != 0 || c->cancelled)
        return push_closed(L);
    if (mcp_grpc_server_call_unsent(c->call) <= SEND_BOUND) {
        lua_pushboolean(L, 1);
        return 1;
    }
    mcp_grpc_server_call_on_drain(c->call, SEND_BOUND / 2, on_drain, c);
    return wait_start(L, c, WAIT_DRAIN, timeout, "call:send");
}

/* call.finish(): ends a streamed call with status OK. -> true | nil, "closed" */
static int l_call_finish(lua_State *L)
{
    api_call *c = check_call(L, 1);
    check_open(L, c);
    bool was_cancelled = c->cancelled;
    if (mcp_grpc_server_finish(take_call(c)) != 0 || was_cancelled)
        return push_closed(L);
    lua_pushboolean(L, 1);
    return 1;
}

/* call.closed(): true once the call is over (client gone, deadline, shutdown, answered). */
static int l_call_closed(lua_State *L)
{
    api_call *c = check_call(L, 1);
    lua_pushboolean(L, c->cancelled || !c->call);
    return 1;
}

/* call.wait_closed([timeout_s]): waits (this task only) until the call closes.
 * -> true | nil, "timeout" */
static int l_call_wait_closed(lua_State *L)
{
    api_call *c = check_call(L, 1);
    lua_Number timeout = luaL_optnumber(L, 2, -1);
    if (!lua_isnoneornil(L, 2) && !(timeout >= 0))
        return luaL_argerror(L, 2, "timeout must be a number of seconds >= 0");
    if (c->wait)
        return luaL_error(L, "another task is waiting on this call");
    if (c->call && !c->cancelled)
        mcp_grpc_server_call_set_streaming(c->call); /* shutdown must end it, not wait */
    if (c->cancelled || !c->call) {
        lua_pushboolean(L, 1);
        return 1;
    }
    return wait_start(L, c, WAIT_CLOSED, timeout, "call:wait_closed");
}

/* call.fail(status, message): after sends the status goes in trailers. */
static int l_call_fail(lua_State *L)
{
    api_call *c = check_call(L, 1);
    lua_Integer status = luaL_checkinteger(L, 2);
    const char *msg = luaL_optstring(L, 3, "");
    if (status <= MCP_GRPC_OK || status > MCP_GRPC_STATUS_MAX)
        return luaL_argerror(L, 2, "a gRPC error status is 1..16 (core.api.codes)");
    check_open(L, c);
    finish_fail(c, (int)status, msg);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_call_cancelled(lua_State *L)
{
    lua_pushboolean(L, check_call(L, 1)->cancelled);
    return 1;
}

static int l_call_peer(lua_State *L)
{
    api_call *c = check_call(L, 1);
    lua_pushstring(L, c->call ? mcp_grpc_server_call_peer(c->call) : "");
    return 1;
}

/* A handler task that ends (or is cancelled) without answering still answers
 * (after sends: in trailers). */
static int l_call_close(lua_State *L)
{
    api_call *c = check_call(L, 1);
    finish_fail(c, MCP_GRPC_UNAVAILABLE, "the request ended without an answer (agent stopping?)");
    return 0;
}

static void on_call_cancel(mcp_grpc_server_call *call, int reason, void *ud)
{
    (void)call;
    (void)reason;
    api_call *c = ud;
    c->cancelled = true;
    if (c->wait)
        wait_end(c->wait, WAIT_GONE);
}

/* ---- the server ---- */

typedef struct server_handle {
    api_server *s;
} server_handle;

static api_server *check_server(lua_State *L, int idx)
{
    server_handle *hd = luaL_checkudata(L, idx, SERVER_MT);
    return hd->s;
}

/* Runs protected: handler(call, method, request) becomes a new task. */
static int build_and_spawn(lua_State *L)
{
    const api_method *m = lua_touserdata(L, 1);
    const ProtobufCMessage *req = lua_touserdata(L, 3);
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->server->handler_ref);
    lua_pushvalue(L, 2); /* the call */
    lua_pushstring(L, m->path);
    mcp_pb_push(L, req);
    mcp_sched_spawn(m->server->host, 3);
    return 0;
}

static void on_request(mcp_grpc_server_call *call, const uint8_t *req, size_t len, void *ud)
{
    api_method *m = ud;
    api_server *s = m->server;
    ProtobufCMessage *msg = mcp_grpc_server_unpack_or_fail(call, m->desc->input, req, len);
    if (!msg)
        return; /* INVALID_ARGUMENT already sent */
    if (s->shutting_down || s->handler_ref == LUA_NOREF) {
        protobuf_c_message_free_unpacked(msg, NULL);
        mcp_grpc_server_fail(call, MCP_GRPC_UNAVAILABLE, "the agent is stopping");
        return;
    }
    lua_State *L = s->host->L;
    int top = lua_gettop(L);
    /* The call's userdata first: from here on it answers the call whatever happens. */
    api_call *c = lua_newuserdatauv(L, sizeof *c, 0);
    c->call = call;
    c->output = m->desc->output;
    c->loop = &s->host->loop;
    c->cancelled = false;
    c->wait = NULL;
    luaL_setmetatable(L, CALL_MT);
    mcp_grpc_server_call_set_cancel(call, on_call_cancel, c);
    int cidx = lua_gettop(L);
    lua_pushcfunction(L, build_and_spawn);
    lua_pushlightuserdata(L, m);
    lua_pushvalue(L, cidx);
    lua_pushlightuserdata(L, msg);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
        mcp_log(MCP_LOG_ERROR, "cannot dispatch a gRPC call", "method", m->path, "error",
                lua_tostring(L, -1), NULL);
        finish_fail(c, MCP_GRPC_INTERNAL, "the agent could not handle the request");
    }
    lua_settop(L, top);
    protobuf_c_message_free_unpacked(msg, NULL);
}

static void on_shutdown_done(mcp_grpc_server *server, void *ud)
{
    api_server *s = ud;
    mcp_grpc_server_free(server);
    s->server = NULL;
    mcp_op *op = s->shutdown_op;
    s->shutdown_op = NULL;
    if (op) {
        mcp_task *t = op->task;
        free(op);
        if (t) {
            lua_pushboolean(mcp_task_thread(t), 1);
            mcp_task_wake(t, 1);
        }
    }
    if (s->orphaned)
        free(s);
}

static void shutdown_op_cancel(mcp_op *op)
{
    (void)op; /* the shutdown goes on; on_shutdown_done frees the op */
}

static void start_shutdown(api_server *s, unsigned grace_ms)
{
    if (s->shutting_down || !s->server)
        return;
    s->shutting_down = true;
    mcp_grpc_server_shutdown(s->server, grace_ms, on_shutdown_done, s);
}

/* server.shutdown(grace_seconds): stops accepting, lets calls in flight
 * finish within the grace, and returns once everything is closed. */
static int l_server_shutdown(lua_State *L)
{
    api_server *s = check_server(L, 1);
    lua_Number grace = luaL_optnumber(L, 2, 10);
    if (!s || !s->server) {
        lua_pushboolean(L, 1);
        return 1;
    }
    mcp_task *t = mcp_task_require(L, "server.shutdown");
    if (s->shutdown_op)
        return luaL_error(L, "server.shutdown is already being waited for");
    mcp_op *op = mcp_op_new(L, sizeof *op, shutdown_op_cancel);
    s->shutdown_op = op;
    start_shutdown(s, grace > 0 ? (unsigned)(grace * 1000) : 0);
    return mcp_op_wait(L, t, op);
}

static int l_server_connections(lua_State *L)
{
    api_server *s = check_server(L, 1);
    lua_pushinteger(L, s && s->server ? (lua_Integer)mcp_grpc_server_connections(s->server) : 0);
    return 1;
}

static int l_server_tcp_port(lua_State *L)
{
    api_server *s = check_server(L, 1);
    lua_pushinteger(L, s && s->server ? mcp_grpc_server_tcp_port(s->server) : -1);
    return 1;
}

/* The Lua handle went away (lua_close at the latest): stop at once and let
 * the loop finish closing; the done callback frees what is left. */
static int l_server_gc(lua_State *L)
{
    server_handle *hd = lua_touserdata(L, 1);
    api_server *s = hd->s;
    hd->s = NULL;
    if (!s)
        return 0;
    if (s->handler_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, s->handler_ref);
        s->handler_ref = LUA_NOREF;
    }
    if (!s->server) {
        free(s);
        return 0;
    }
    s->orphaned = true;
    start_shutdown(s, 0);
    return 0;
}

/* core.api.serve{ socket=, grpc_addr=, tls_cert=, tls_key=, tls_client_ca=,
 *                 insecure_loopback=, handler=function(call, method, request) }
 * -> server | nil, message */
static int l_serve(lua_State *L)
{
    mcp_host *h = mcp_host_upvalue(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "handler");
    luaL_argcheck(L, lua_isfunction(L, -1), 1, "handler must be a function");
    lua_pop(L, 1);
    char *socket = mcp_opt_string_field(L, 1, "socket");
    char *addr = mcp_opt_string_field(L, 1, "grpc_addr");
    char *cert = mcp_opt_string_field(L, 1, "tls_cert");
    char *key = mcp_opt_string_field(L, 1, "tls_key");
    char *ca = mcp_opt_string_field(L, 1, "tls_client_ca");
    lua_getfield(L, 1, "insecure_loopback");
    bool insecure = lua_toboolean(L, -1);
    lua_pop(L, 1);

    size_t n_methods = 0;
    for (size_t i = 0; i < sizeof SERVICES / sizeof SERVICES[0]; i++)
        n_methods += SERVICES[i]->n_methods;
    server_handle *hd = lua_newuserdatauv(L, sizeof *hd, 0);
    hd->s = NULL;
    luaL_setmetatable(L, SERVER_MT);
    int hidx = lua_gettop(L);
    api_server *s = calloc(1, sizeof *s + n_methods * sizeof(api_method));
    mcp_error err = {{0}};
    int rc = 0;
    if (!s) {
        mcp_error_set(&err, "out of memory");
        rc = -1;
        goto out;
    }
    hd->s = s;
    s->host = h;
    s->handler_ref = LUA_NOREF;
    s->methods = (api_method *)(s + 1);
    s->server = mcp_grpc_server_new(&h->loop, NULL, &err);
    if (!s->server) {
        rc = -1;
        goto out;
    }
    for (size_t i = 0; rc == 0 && i < sizeof SERVICES / sizeof SERVICES[0]; i++) {
        const ProtobufCServiceDescriptor *svc = SERVICES[i];
        for (unsigned j = 0; rc == 0 && j < svc->n_methods; j++) {
            api_method *m = &s->methods[s->n_methods++];
            snprintf(m->path, sizeof m->path, "/%s/%s", svc->name, svc->methods[j].name);
            m->desc = &svc->methods[j];
            m->server = s;
            rc = mcp_grpc_server_handle(s->server, m->path, on_request, m, &err);
        }
    }
    if (rc == 0 && !(socket && *socket) && !(addr && *addr)) {
        mcp_error_set(&err, "neither [agent] socket nor grpc_addr is set: nothing to listen on");
        rc = -1;
    }
    if (rc == 0 && socket && *socket)
        rc = mcp_grpc_server_listen_unix(s->server, socket, &err);
    if (rc == 0 && addr && *addr) {
        mcp_grpc_tls_options tls = {
            .cert_file = cert, .key_file = key, .ca_file = ca, .insecure = insecure};
        rc = mcp_grpc_server_listen_tcp(s->server, addr, &tls, &err);
    }
out:
    free(socket);
    free(addr);
    free(cert);
    free(key);
    free(ca);
    if (rc != 0) {
        if (s && s->server) {
            /* close what did open now: open listeners would keep the loop alive */
            hd->s = NULL;
            s->orphaned = true;
            start_shutdown(s, 0);
        }
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        return 2;
    }
    lua_getfield(L, 1, "handler");
    s->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, hidx);
    return 1;
}

const ProtobufCMethodDescriptor *mcp_api_find_method(const char *path)
{
    for (size_t i = 0; i < sizeof SERVICES / sizeof SERVICES[0]; i++) {
        const ProtobufCServiceDescriptor *svc = SERVICES[i];
        size_t n = strlen(svc->name);
        if (path[0] != '/' || strncmp(path + 1, svc->name, n) != 0 || path[n + 1] != '/')
            continue;
        for (unsigned j = 0; j < svc->n_methods; j++)
            if (strcmp(path + n + 2, svc->methods[j].name) == 0)
                return &svc->methods[j];
    }
    return NULL;
}

/* core.api.pack(method_path, table) -> the method's response, packed. */
static int l_pack(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    const ProtobufCMethodDescriptor *m = mcp_api_find_method(path);
    if (!m)
        return luaL_argerror(L, 1, "not a method of the agent's API");
    ProtobufCMessage *msg = mcp_pb_check(L, 2, m->output);
    size_t len = protobuf_c_message_get_packed_size(msg);
    luaL_Buffer b;
    uint8_t *buf = (uint8_t *)luaL_buffinitsize(L, &b, len ? len : 1);
    protobuf_c_message_pack(msg, buf);
    protobuf_c_message_free_unpacked(msg, NULL);
    luaL_pushresultsize(&b, len);
    return 1;
}

int luaopen_mcp_api(lua_State *L)
{
    static const luaL_Reg server_methods[] = {{"shutdown", l_server_shutdown},
                                              {"connections", l_server_connections},
                                              {"tcp_port", l_server_tcp_port},
                                              {NULL, NULL}};
    static const luaL_Reg call_methods[] = {{"reply", l_call_reply},
                                            {"fail", l_call_fail},
                                            {"reply_packed", l_call_reply_packed},
                                            {"send", l_call_send},
                                            {"finish", l_call_finish},
                                            {"closed", l_call_closed},
                                            {"wait_closed", l_call_wait_closed},
                                            {"cancelled", l_call_cancelled},
                                            {"peer", l_call_peer},
                                            {NULL, NULL}};
    static const luaL_Reg fns[] = {
        {"serve", l_serve}, {"pack", l_pack}, {NULL, NULL}};
    static const luaL_Reg server_meta[] = {{"__gc", l_server_gc}, {NULL, NULL}};
    static const luaL_Reg call_meta[] = {
        {"__close", l_call_close}, {"__gc", l_call_close}, {NULL, NULL}};
    /* the host as upvalue: send, wait_closed and next park tasks */
    mcp_new_metatable(L, SERVER_MT, server_methods, lua_upvalueindex(1), server_meta);
    mcp_new_metatable(L, CALL_MT, call_methods, lua_upvalueindex(1), call_meta);
    luaL_newlibtable(L, fns);
    lua_pushvalue(L, lua_upvalueindex(1));
    luaL_setfuncs(L, fns, 1);
    mcp_api_client_open(L, lua_upvalueindex(1)); /* call, watch */
    /* core.api.codes: the gRPC status codes by name, from the one C list */
    lua_createtable(L, 0, MCP_GRPC_STATUS_MAX + 1);
#define PUSH_CODE(name, code) (lua_pushinteger(L, code), lua_setfield(L, -2, #name));
    MCP_GRPC_STATUS_LIST(PUSH_CODE)
#undef PUSH_CODE
    lua_setfield(L, -2, "codes");
    return 1;
}
