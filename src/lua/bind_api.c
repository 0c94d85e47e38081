/* The agent's gRPC API from Lua: core.api.serve{...} runs the server (every
 * call becomes a Lua task with the request as a table, answered through the
 * call object: reply, or send...finish for a server stream), core.api.codes
 * names the status codes, and core.api.call()
 * is the client the CLI uses to reach a running daemon; core.api.watch()
 * follows a server stream from it. Messages cross
 * between protobuf and Lua through the descriptors (pbconv.c). */
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "internal.h"
#include "mcp/agent/v1/agent.pb-c.h"
#include "mcp/grpc_client.h"
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

/* ---- the client: reaching a running daemon ---- */

static const ProtobufCMethodDescriptor *find_method(const char *path)
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

typedef struct client_op {
    mcp_op op; /* op.req: the mcp_grpc_call */
    const ProtobufCMessageDescriptor *output;
} client_op;

static void client_done(const mcp_grpc_result *res, void *ud)
{
    client_op *c = ud;
    mcp_task *t = c->op.task;
    if (t) {
        lua_State *co = mcp_task_thread(t);
        int n;
        ProtobufCMessage *msg = NULL;
        if (res->status == MCP_GRPC_OK)
            msg = protobuf_c_message_unpack(c->output, NULL, res->data_len, res->data);
        if (msg) {
            mcp_pb_push(co, msg);
            protobuf_c_message_free_unpacked(msg, NULL);
            n = 1;
        } else {
            lua_pushnil(co);
            if (res->status == MCP_GRPC_OK) {
                lua_pushliteral(co, "bad answer");
                lua_pushliteral(co, "the daemon's answer is not a valid message");
            } else {
                lua_pushstring(co, res->reason && *res->reason ? res->reason
                                                                : mcp_grpc_status_name(res->status));
                lua_pushstring(co, res->message ? res->message : "");
            }
            lua_pushinteger(co, res->status);
            n = 4;
        }
        mcp_task_wake(t, n);
    }
    free(c);
}

static void client_cancel(mcp_op *op)
{
    mcp_grpc_client_cancel(op->req);
}

/* What a call or a stream starts from: the request table at idx checked as
 * the method's input and packed into *buf (*len bytes), and a zeroed holder
 * of size bytes; the caller frees both. Raises on misuse and when out of
 * memory, leaving nothing allocated. */
static void *prepare_request(lua_State *L, int idx, const ProtobufCMessageDescriptor *input,
                             size_t size, uint8_t **buf, size_t *len)
{
    ProtobufCMessage *req = mcp_pb_check(L, idx, input);
    *len = protobuf_c_message_get_packed_size(req);
    *buf = malloc(*len ? *len : 1);
    void *holder = calloc(1, size);
    if (*buf && holder)
        protobuf_c_message_pack(req, *buf);
    protobuf_c_message_free_unpacked(req, NULL);
    if (!*buf || !holder) {
        free(*buf);
        free(holder);
        luaL_error(L, "out of memory");
    }
    return holder;
}

/* A call or stream that could not start: nil, "failed", message, UNAVAILABLE. */
static int push_start_failure(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushliteral(L, "failed");
    lua_pushstring(L, msg);
    lua_pushinteger(L, MCP_GRPC_UNAVAILABLE);
    return 4;
}

/* core.api.call(socket, "/mcp.agent.v1.AgentService/Method", request, timeout)
 * -> response | nil, reason, message, status */
static int l_call(lua_State *L)
{
    const char *socket = luaL_checkstring(L, 1);
    const char *path = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_Number timeout = luaL_optnumber(L, 4, 60);
    const ProtobufCMethodDescriptor *m = find_method(path);
    if (!m)
        return luaL_argerror(L, 2, "not a method of the agent's API");
    mcp_task *t = mcp_task_require(L, "api.call");
    mcp_host *h = mcp_host_upvalue(L);
    uint8_t *buf;
    size_t len;
    client_op *c = prepare_request(L, 3, m->input, sizeof *c, &buf, &len);
    c->op.cancel = client_cancel;
    c->output = m->output;
    mcp_grpc_request rq = {.unix_socket = socket, .method = path, .msg = buf, .msg_len = len,
                           .timeout_ms = (int64_t)(timeout * 1000)};
    mcp_error err = {{0}};
    c->op.req = mcp_grpc_client_call(mcp_host_http(L, h), &rq, client_done, c, &err);
    free(buf);
    if (!c->op.req) {
        free(c);
        return push_start_failure(L, err.msg);
    }
    return mcp_op_wait(L, t, &c->op);
}

/* ---- the client: following a server stream ---- */

#define STREAM_MT "mcp.api.stream"

/* Messages that arrived and were not read yet, at most: a reader this far
 * behind ends its stream (RESOURCE_EXHAUSTED) rather than grow without bound. */
#define WATCH_MAX_QUEUED 4096
#define WATCH_MAX_QUEUED_BYTES ((size_t)16 << 20)

typedef struct watch_msg {
    struct watch_msg *next;
    size_t len;
    uint8_t data[];
} watch_msg;

/* Heap-allocated: freed once both its Lua handle is gone and the stream ended. */
typedef struct api_watch {
    mcp_grpc_stream *stream; /* NULL once it ended */
    const ProtobufCMessageDescriptor *output;
    uv_loop_t *loop;
    watch_msg *head, *tail;
    size_t queued, queued_bytes;
    bool overflow; /* the reader fell too far behind: we ended the stream */
    bool closed;   /* stream:close() (or __close/__gc) */
    bool orphaned; /* the Lua handle is gone */
    bool ended;
    int status;       /* how it ended */
    char *message;    /* grpc-message, else our reason */
    mcp_wait *wait;   /* the task parked in next(), or NULL */
} api_watch;

typedef struct watch_handle {
    api_watch *w;
} watch_handle;

static void watch_drop_queue(api_watch *w)
{
    while (w->head) {
        watch_msg *m = w->head;
        w->head = m->next;
        free(m);
    }
    w->tail = NULL;
    w->queued = w->queued_bytes = 0;
}

static void watch_free(api_watch *w)
{
    watch_drop_queue(w);
    free(w->message);
    free(w);
}

static void watch_wait_detach(mcp_wait *ww)
{
    api_watch *w = ww->obj;
    w->wait = NULL;
}

/* Wakes the task in next(): with true (look again) or nil, "timeout". */
static void watch_wake(api_watch *w, bool timed_out)
{
    mcp_task *t = mcp_wait_end(w->wait);
    if (!t)
        return;
    lua_State *co = mcp_task_thread(t);
    if (timed_out) {
        lua_pushnil(co);
        lua_pushliteral(co, "timeout");
        mcp_task_wake(t, 2);
    } else {
        lua_pushboolean(co, 1);
        mcp_task_wake(t, 1);
    }
}

static void watch_wait_timed_out(mcp_wait *ww)
{
    watch_wake(ww->obj, true);
}

/* From inside curl: queue a copy, wake the reader (it unpacks in its own task). */
static int watch_on_msg(const uint8_t *msg, size_t len, void *ud)
{
    api_watch *w = ud;
    if (w->queued >= WATCH_MAX_QUEUED || w->queued_bytes + len > WATCH_MAX_QUEUED_BYTES) {
        w->overflow = true;
        return MCP_GRPC_RESOURCE_EXHAUSTED;
    }
    watch_msg *m = malloc(sizeof *m + len);
    if (!m)
        return MCP_GRPC_RESOURCE_EXHAUSTED;
    m->len = len;
    if (len)
        memcpy(m->data, msg, len);
    MCP_QUEUE_APPEND(w->head, w->tail, m, next);
    w->queued++;
    w->queued_bytes += len;
    if (w->wait)
        watch_wake(w, false);
    return 0;
}

static void watch_on_end(const mcp_grpc_result *res, void *ud)
{
    api_watch *w = ud;
    w->stream = NULL;
    w->ended = true;
    if (w->orphaned) {
        watch_free(w);
        return;
    }
    w->status = res->status;
    if (w->overflow)
        w->message = mcp_sprintf("the reader fell behind (%d messages or %zu bytes unread)",
                                 WATCH_MAX_QUEUED, WATCH_MAX_QUEUED_BYTES);
    else if (res->message && *res->message)
        w->message = strdup(res->message);
    else
        w->message =
            strdup(res->reason && *res->reason ? res->reason : mcp_grpc_status_name(res->status));
    if (w->wait)
        watch_wake(w, false);
}

static api_watch *check_watch(lua_State *L, int idx)
{
    watch_handle *hd = luaL_checkudata(L, idx, STREAM_MT);
    return hd->w;
}

/* Stops the stream; the next next() says "cancelled". */
static void watch_close(api_watch *w)
{
    w->closed = true;
    watch_drop_queue(w);
    if (w->stream)
        mcp_grpc_client_stream_cancel(w->stream);
}

/* What next() answers now, or 0 when it must wait. */
static int watch_answer(lua_State *L, api_watch *w)
{
    if (w->closed) {
        lua_pushnil(L);
        lua_pushliteral(L, "cancelled");
        return 2;
    }
    if (w->head) {
        watch_msg *m;
        MCP_QUEUE_TAKE(w->head, w->tail, m, next);
        w->queued--;
        w->queued_bytes -= m->len;
        ProtobufCMessage *msg = protobuf_c_message_unpack(w->output, NULL, m->len, m->data);
        free(m);
        if (!msg) {
            /* the stream is not what the method promises: stop it */
            watch_close(w);
            lua_pushnil(L);
            lua_pushliteral(L, "closed");
            lua_pushinteger(L, MCP_GRPC_INTERNAL);
            lua_pushfstring(L, "a message of the stream is not a valid %s", w->output->name);
            return 4;
        }
        mcp_pb_push(L, msg);
        protobuf_c_message_free_unpacked(msg, NULL);
        return 1;
    }
    if (w->ended) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        lua_pushinteger(L, w->status);
        lua_pushstring(L, w->message ? w->message : "");
        return 4;
    }
    return 0;
}

/* Resumed: true means "look again"; anything else (nil, "timeout" | nil,
 * "cancelled") is the answer. */
static int watch_next_cont(lua_State *L, int status, lua_KContext base)
{
    (void)status;
    int nargs = lua_gettop(L) - (int)base;
    if (nargs == 1 && lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        api_watch *w = check_watch(L, 1);
        int n = w ? watch_answer(L, w) : 0;
        if (n > 0)
            return n;
        lua_pushnil(L); /* woken with nothing to read: cannot happen, answer anyway */
        lua_pushliteral(L, "timeout");
        return 2;
    }
    return nargs;
}

/* stream:next(timeout_s) -> message | nil, "timeout" | nil, "closed", status,
 * message | nil, "cancelled". Waits (this task only) up to timeout_s. */
static int l_stream_next(lua_State *L)
{
    api_watch *w = check_watch(L, 1);
    lua_Number timeout = luaL_checknumber(L, 2);
    if (!(timeout >= 0))
        return luaL_argerror(L, 2, "timeout must be a number of seconds >= 0");
    lua_settop(L, 2);
    if (!w) {
        lua_pushnil(L);
        lua_pushliteral(L, "cancelled");
        return 2;
    }
    if (w->wait)
        return luaL_error(L, "another task is waiting on this stream");
    int n = watch_answer(L, w);
    if (n > 0)
        return n;
    if (timeout == 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "timeout");
        return 2;
    }
    mcp_task *t = mcp_task_require(L, "stream:next");
    w->wait = mcp_wait_new(L, sizeof *w->wait, w, w->loop, timeout, watch_wait_detach,
                           watch_wait_timed_out);
    mcp_task_suspend(t, &w->wait->op); /* may refuse at once (cancel requested): the wait ended */
    return lua_yieldk(L, 0, (lua_KContext)lua_gettop(L), watch_next_cont);
}

/* stream:close() (also __close and __gc): cancels the request. -> true */
static int l_stream_close(lua_State *L)
{
    watch_handle *hd = luaL_checkudata(L, 1, STREAM_MT);
    if (hd->w && !hd->w->closed)
        watch_close(hd->w);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_stream_gc(lua_State *L)
{
    watch_handle *hd = luaL_checkudata(L, 1, STREAM_MT);
    api_watch *w = hd->w;
    hd->w = NULL;
    if (!w)
        return 0;
    if (w->wait) /* cannot be: a waiting task keeps its stream alive */
        mcp_wait_end(w->wait);
    if (!w->closed)
        watch_close(w);
    if (w->stream)
        w->orphaned = true; /* watch_on_end frees it */
    else
        watch_free(w);
    return 0;
}

/* core.api.watch(socket, "/mcp.agent.v1.AgentService/Method", request[, opts])
 * opts: deadline (seconds for the whole stream; default none), connect_timeout
 * (seconds, default 10), max_msg (bytes per message, default 4 MiB).
 * -> stream | nil, "failed", message, status */
static int l_watch(lua_State *L)
{
    const char *socket = luaL_checkstring(L, 1);
    const char *path = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    if (!lua_isnoneornil(L, 4))
        luaL_checktype(L, 4, LUA_TTABLE);
    const ProtobufCMethodDescriptor *m = find_method(path);
    if (!m)
        return luaL_argerror(L, 2, "not a method of the agent's API");
    lua_Number deadline = 0, connect = 10, max_msg = 0;
    if (lua_istable(L, 4)) {
        struct {
            const char *key;
            lua_Number *v;
        } fields[] = {
            {"deadline", &deadline}, {"connect_timeout", &connect}, {"max_msg", &max_msg}};
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
            int ty = lua_getfield(L, 4, fields[i].key);
            if (ty != LUA_TNIL) {
                if (ty != LUA_TNUMBER || !(lua_tonumber(L, -1) > 0) || lua_tonumber(L, -1) > 1e9)
                    return luaL_argerror(
                        L, 4, lua_pushfstring(L, "%s must be a number > 0", fields[i].key));
                *fields[i].v = lua_tonumber(L, -1);
            }
            lua_pop(L, 1);
        }
    }
    mcp_host *h = mcp_host_upvalue(L);
    mcp_http *http = mcp_host_http(L, h); /* raises when curl cannot be set up */
    uint8_t *buf;
    size_t len;
    api_watch *w = prepare_request(L, 3, m->input, sizeof *w, &buf, &len);
    w->output = m->output;
    w->loop = &h->loop;
    /* the handle first: once the stream starts, a raised error must not leak it */
    watch_handle *hd = lua_newuserdatauv(L, sizeof *hd, 0);
    hd->w = NULL;
    luaL_setmetatable(L, STREAM_MT);
    mcp_grpc_request rq = {.unix_socket = socket,
                           .method = path,
                           .msg = buf,
                           .msg_len = len,
                           .timeout_ms = (int64_t)(deadline * 1000),
                           .max_msg = (size_t)max_msg};
    mcp_error err = {{0}};
    w->stream = mcp_grpc_client_stream(http, &rq, (int64_t)(connect * 1000), watch_on_msg,
                                       watch_on_end, w, &err);
    free(buf);
    if (!w->stream) {
        free(w);
        return push_start_failure(L, err.msg);
    }
    hd->w = w;
    return 1;
}

/* core.api.pack(method_path, table) -> the method's response, packed. */
static int l_pack(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    const ProtobufCMethodDescriptor *m = find_method(path);
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
        {"serve", l_serve}, {"call", l_call}, {"watch", l_watch}, {"pack", l_pack}, {NULL, NULL}};
    static const luaL_Reg server_meta[] = {{"__gc", l_server_gc}, {NULL, NULL}};
    static const luaL_Reg call_meta[] = {
        {"__close", l_call_close}, {"__gc", l_call_close}, {NULL, NULL}};
    static const luaL_Reg stream_methods[] = {
        {"next", l_stream_next}, {"close", l_stream_close}, {NULL, NULL}};
    static const luaL_Reg stream_meta[] = {
        {"__close", l_stream_close}, {"__gc", l_stream_gc}, {NULL, NULL}};
    /* the host as upvalue: send, wait_closed and next park tasks */
    mcp_new_metatable(L, SERVER_MT, server_methods, lua_upvalueindex(1), server_meta);
    mcp_new_metatable(L, CALL_MT, call_methods, lua_upvalueindex(1), call_meta);
    mcp_new_metatable(L, STREAM_MT, stream_methods, lua_upvalueindex(1), stream_meta);
    luaL_newlibtable(L, fns);
    lua_pushvalue(L, lua_upvalueindex(1));
    luaL_setfuncs(L, fns, 1);
    /* core.api.codes: the gRPC status codes by name, from the one C list */
    lua_createtable(L, 0, MCP_GRPC_STATUS_MAX + 1);
#define PUSH_CODE(name, code) (lua_pushinteger(L, code), lua_setfield(L, -2, #name));
    MCP_GRPC_STATUS_LIST(PUSH_CODE)
#undef PUSH_CODE
    lua_setfield(L, -2, "codes");
    return 1;
}
