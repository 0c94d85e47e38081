/* core.api.call() and core.api.watch(): the client the CLI uses to reach a
 * running daemon — a unary call, or a server stream followed message by
 * message. Requests and answers cross between protobuf and Lua through the
 * descriptors (pbconv.c); the methods are the API's (bind_api.c). */
#include <stdlib.h>
#include <string.h>

#include "bind_api.h"
#include "internal.h"
#include "mcp/grpc_client.h"
#include "mcp/log.h"
#include "pbconv.h"

/* ---- a unary call ---- */

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
    const ProtobufCMethodDescriptor *m = mcp_api_find_method(path);
    if (!m)
        return luaL_argerror(L, 2, "not a method of the agent's API");
    mcp_task *t = mcp_task_require(L, "api.call");
    mcp_host *h = mcp_host_upvalue(L);
    uint8_t *buf;
    size_t len;
    client_op *c = prepare_request(L, 3, m->input, sizeof *c, &buf, &len);
    c->op.cancel = client_cancel;
    c->output = m->output;
    mcp_grpc_request rq = {.unix_socket = socket,
                           .method = path,
                           .msg = buf,
                           .msg_len = len,
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

/* ---- following a server stream ---- */

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
    int status;     /* how it ended */
    char *message;  /* grpc-message, else our reason */
    mcp_wait *wait; /* the task parked in next(), or NULL */
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
    const ProtobufCMethodDescriptor *m = mcp_api_find_method(path);
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

void mcp_api_client_open(lua_State *L, int host_idx)
{
    static const luaL_Reg fns[] = {{"call", l_call}, {"watch", l_watch}, {NULL, NULL}};
    static const luaL_Reg stream_methods[] = {
        {"next", l_stream_next}, {"close", l_stream_close}, {NULL, NULL}};
    static const luaL_Reg stream_meta[] = {
        {"__close", l_stream_close}, {"__gc", l_stream_gc}, {NULL, NULL}};
    /* the host as upvalue: next parks tasks */
    mcp_new_metatable(L, STREAM_MT, stream_methods, host_idx, stream_meta);
    lua_pushvalue(L, host_idx);
    luaL_setfuncs(L, fns, 1);
}
