/* agent.http.request{ method, url, headers, body, timeout } (SPEC §10): an
 * HTTP(S) call for policies — a webhook — over the host's libcurl client on
 * the loop, suspending only the calling task. TLS is verified against the
 * system's CAs; the time and the answer's size are bounded.
 * -> status, body, headers | nil, reason, detail */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define HTTP_DEFAULT_TIMEOUT_S 10.0
#define HTTP_MAX_TIMEOUT_S 300.0
#define HTTP_MAX_RESPONSE ((size_t)1 << 20) /* a webhook's answer is small */
#define HTTP_MAX_HEADERS 64

/* status, body, headers | nil, reason, detail */
static int push_response(lua_State *co, const void *result)
{
    const mcp_http_response *res = result;
    if (res->reason && *res->reason)
        return mcp_push_failure(co, res->reason, res->error ? res->error : "");
    lua_pushinteger(co, res->status);
    lua_pushlstring(co, res->body ? res->body : "", res->body_len);
    lua_createtable(co, 0, (int)res->n_headers);
    for (size_t i = 0; i < res->n_headers; i++)
        if (!res->headers[i].trailer)
            mcp_set_string(co, res->headers[i].name, res->headers[i].value);
    return 3;
}

static void http_done(const mcp_http_response *res, void *ud)
{
    mcp_op_done(ud, push_response, res);
}

static void http_cancel(mcp_op *op)
{
    mcp_http_cancel(op->req); /* http_done still runs, detached, and frees op */
}

static int l_request(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    mcp_task *t = mcp_task_require(L, "agent.http.request");
    lua_getfield(L, 1, "url");
    const char *url = lua_tostring(L, -1);
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
        return luaL_argerror(L, 1, "url must be an http:// or https:// string");
    lua_getfield(L, 1, "method");
    const char *method = luaL_optstring(L, -1, NULL);
    if (method && (!*method || strspn(method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(method)))
        return luaL_argerror(L, 1, "method must be an upper-case word such as \"POST\"");
    lua_getfield(L, 1, "body");
    size_t body_len = 0;
    const char *body = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, &body_len);
    lua_getfield(L, 1, "timeout");
    lua_Number timeout = luaL_optnumber(L, -1, HTTP_DEFAULT_TIMEOUT_S);
    if (!(timeout > 0) || timeout > HTTP_MAX_TIMEOUT_S)
        return luaL_argerror(L, 1, "timeout must be > 0 and at most 300 seconds");
    /* "Name: value" strings, kept in a table on the stack until the request
     * has copied them; no CR/LF, so a policy cannot smuggle a header */
    lua_createtable(L, HTTP_MAX_HEADERS, 0);
    int keep = lua_gettop(L);
    const char *headers[HTTP_MAX_HEADERS + 1];
    size_t n = 0;
    lua_getfield(L, 1, "headers");
    int hidx = lua_gettop(L);
    if (!lua_isnil(L, hidx)) {
        luaL_checktype(L, hidx, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, hidx) != 0) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                return luaL_argerror(L, 1, "headers must map names to strings");
            const char *name = lua_tostring(L, -2), *value = lua_tostring(L, -1);
            if (!*name || strpbrk(name, ":\r\n") || strpbrk(value, "\r\n"))
                return luaL_argerror(L, 1, "a header name has no ':' and no header has line breaks");
            if (n >= HTTP_MAX_HEADERS)
                return luaL_argerror(L, 1, "too many headers");
            lua_pushfstring(L, "%s: %s", name, value);
            headers[n] = lua_tostring(L, -1);
            lua_rawseti(L, keep, (lua_Integer)n + 1);
            n++;
            lua_pop(L, 1);
        }
    }
    headers[n] = NULL;

    mcp_host *h = mcp_host_upvalue(L);
    mcp_http *client = mcp_host_http(L, h);
    mcp_op *op = mcp_op_new(L, sizeof *op, http_cancel);
    mcp_http_request rq = {
        .method = method,
        .url = url,
        .headers = n ? headers : NULL,
        .body = body,
        .body_len = body_len,
        .timeout_ms = (int64_t)(timeout * 1000.0 + 0.5),
        .max_response = HTTP_MAX_RESPONSE,
    };
    mcp_error err = {{0}};
    op->req = mcp_http_start(client, &rq, http_done, op, &err);
    return mcp_op_wait_or_fail(L, t, op, "failed", err.msg);
}

int luaopen_mcp_http(lua_State *L)
{
    static const luaL_Reg fns[] = {{"request", l_request}, {NULL, NULL}};
    mcp_new_lib(L, fns, lua_upvalueindex(1));
    return 1;
}
