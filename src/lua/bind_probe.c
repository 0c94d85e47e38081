/* agent.probe: tcp / http / grpc health probes on the event loop; each
 * suspends only the calling task. Returns true, latency | nil, reason, latency. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mcp/probe.h"

/* true, latency | nil, reason, latency */
static int push_result(lua_State *co, const void *result)
{
    const mcp_probe_result *res = result;
    int n = 1;
    if (res->healthy)
        lua_pushboolean(co, 1);
    else
        n = mcp_push_reason(co, res->reason ? res->reason : "failed");
    lua_pushnumber(co, res->latency_s);
    return n + 1;
}

static void probe_done(const mcp_probe_result *res, void *ud)
{
    mcp_op_done(ud, push_result, res);
}

static void probe_cancel(mcp_op *op)
{
    mcp_probe_cancel(op->req); /* probe_done still runs, detached, and frees op */
}

static int64_t timeout_ms(lua_State *L, int idx)
{
    lua_Number s = luaL_optnumber(L, idx, 2.0);
    if (!(s > 0))
        luaL_argerror(L, idx, "timeout must be > 0 seconds");
    if (s > 3600)
        s = 3600;
    return (int64_t)(s * 1000.0 + 0.5);
}

static int check_port(lua_State *L, int idx)
{
    lua_Integer port = luaL_checkinteger(L, idx);
    if (port < 1 || port > 65535)
        luaL_argerror(L, idx, "port must be 1..65535");
    return (int)port;
}

typedef enum { PROBE_TCP, PROBE_HTTP, PROBE_GRPC } probe_kind;

static int start_probe(lua_State *L, probe_kind kind)
{
    const char *host = luaL_checkstring(L, 1);
    int port = check_port(L, 2);
    const char *extra = NULL; /* http path or grpc service */
    int64_t ms;
    if (kind == PROBE_TCP) {
        ms = timeout_ms(L, 3);
    } else {
        extra = luaL_optstring(L, 3, kind == PROBE_HTTP ? "/" : "");
        ms = timeout_ms(L, 4);
    }
    static const char *const names[] = {"agent.probe.tcp", "agent.probe.http", "agent.probe.grpc"};
    mcp_task *t = mcp_task_require(L, names[kind]);
    mcp_host *h = mcp_host_upvalue(L);
    mcp_http *http = kind == PROBE_TCP ? NULL : mcp_host_http(L, h); /* may raise: first */
    mcp_op *op = mcp_op_new(L, sizeof *op, probe_cancel);
    mcp_error err = {{0}};
    switch (kind) {
    case PROBE_TCP:
        op->req = mcp_probe_tcp(&h->loop, host, port, ms, probe_done, op, &err);
        break;
    case PROBE_HTTP:
        op->req = mcp_probe_http(http, host, port, extra, ms, probe_done, op, &err);
        break;
    case PROBE_GRPC:
        op->req = mcp_probe_grpc(http, host, port, extra, ms, probe_done, op, &err);
        break;
    }
    if (!op->req) {
        free(op);
        return luaL_error(L, "%s: %s", names[kind], err.msg); /* bad host or path: misuse */
    }
    return mcp_op_wait(L, t, op);
}

static int l_tcp(lua_State *L) { return start_probe(L, PROBE_TCP); }
static int l_http(lua_State *L) { return start_probe(L, PROBE_HTTP); }
static int l_grpc(lua_State *L) { return start_probe(L, PROBE_GRPC); }

int luaopen_mcp_probe(lua_State *L)
{
    static const luaL_Reg fns[] = {{"tcp", l_tcp}, {"http", l_http}, {"grpc", l_grpc}, {NULL, NULL}};
    mcp_new_lib(L, fns, lua_upvalueindex(1));
    return 1;
}
