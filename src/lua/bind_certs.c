/* agent.certs: TLS certificates for L7 routes from Metacrypt (SPEC §8,
 * docs/CERTIFICATES.md). A request suspends only the calling task.
 *   ensure(service, hostnames) -> {cert=, key=, expires_at=, issued=} | nil, reason, detail
 * hostnames: a string or an array of strings. expires_at is RFC 3339 (UTC),
 * read from the certificate itself. reason: "unavailable" | "timeout" |
 * "refused" | "bad response" | "write failed" | "config". */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "mcp/certs.h"

static int push_result(lua_State *L, const void *result)
{
    const mcp_certs_result *res = result;
    if (!res->ok)
        return mcp_push_failure(L, res->reason, res->detail);
    lua_createtable(L, 0, 4);
    mcp_set_string(L, "cert", res->cert_path);
    mcp_set_string(L, "key", res->key_path);
    char when[40] = "";
    struct tm tm;
    if (gmtime_r(&res->not_after, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    mcp_set_string(L, "expires_at", when);
    mcp_set_bool(L, "issued", res->issued);
    return 1;
}

static void certs_done(const mcp_certs_result *res, void *ud)
{
    mcp_op_done(ud, push_result, res);
}

static void certs_cancel(mcp_op *op)
{
    mcp_certs_cancel(op->req); /* certs_done still runs, detached, and frees op */
}

/* Collects hostnames (a string or an array of strings at idx) as pointers
 * into Lua strings that stay referenced from the argument. At most 100. */
static size_t check_hostnames(lua_State *L, int idx, const char **out, size_t max)
{
    if (lua_type(L, idx) == LUA_TSTRING) {
        out[0] = lua_tostring(L, idx);
        return 1;
    }
    luaL_argexpected(L, lua_type(L, idx) == LUA_TTABLE, idx, "string or array of strings");
    lua_Integer n = luaL_len(L, idx);
    if (n < 1 || (size_t)n > max)
        luaL_argerror(L, idx, "want 1..100 hostnames");
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, idx, i) != LUA_TSTRING)
            luaL_argerror(L, idx, "hostnames must be strings");
        out[i - 1] = lua_tostring(L, -1);
        lua_pop(L, 1); /* still referenced by the table */
    }
    return (size_t)n;
}

static int l_ensure(lua_State *L)
{
    const char *service = luaL_checkstring(L, 1);
    const char *hostnames[100];
    size_t n = check_hostnames(L, 2, hostnames, 100);
    mcp_task *t = mcp_task_require(L, "agent.certs.ensure");
    mcp_host *h = mcp_host_upvalue(L);
    const mcp_config *c = h->cfg;
    if (!c || !c->metacrypt_server_url || !c->metacrypt_server_url[0] || !c->mcproxy_cert_dir ||
        !c->mcproxy_cert_dir[0])
        return mcp_push_failure(
            L, "config", "needs [metacrypt] server_url and [mcproxy] cert_dir in the config");
    mcp_certs_cfg cfg = {
        .cert_dir = c->mcproxy_cert_dir,
        .server_url = c->metacrypt_server_url,
        .ca_cert = c->metacrypt_ca_cert,
        .mount = c->metacrypt_mount,
        .issuer = c->metacrypt_issuer,
        .token_path = c->metacrypt_token_path,
    };
    mcp_http *http = mcp_host_http(L, h); /* may raise: before anything is allocated */
    /* the answer when there is nothing to wait for: large, so not on the C stack */
    mcp_certs_result *now = lua_newuserdatauv(L, sizeof *now, 0);
    mcp_op *op = mcp_op_new(L, sizeof *op, certs_cancel);
    mcp_certs_op *req = NULL;
    mcp_error err = {{0}};
    int rc = mcp_certs_ensure(http, &cfg, service, hostnames, n, certs_done, op, &req, now, &err);
    op->req = req;
    if (rc == 1)
        return mcp_op_wait(L, t, op);
    free(op);
    return rc == 0 ? push_result(L, now) : mcp_push_failure(L, "config", err.msg);
}

/* agent.certs.info(service) -> { cert=, expires_at=, status= } | nil, "missing"|"config":
 * what the certificate on disk says, without asking Metacrypt (for status). */
static int l_info(lua_State *L)
{
    const char *service = luaL_checkstring(L, 1);
    mcp_host *h = mcp_host_upvalue(L);
    const mcp_config *c = h->cfg;
    if (!c || !c->mcproxy_cert_dir || !c->mcproxy_cert_dir[0])
        return mcp_push_reason(L, "config");
    char path[MCP_CERTS_PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s.pem", c->mcproxy_cert_dir, service);
    if (n < 0 || (size_t)n >= sizeof path)
        return luaL_argerror(L, 1, "service name too long for a certificate path");
    mcp_cert_info info;
    memset(&info, 0, sizeof info);
    mcp_cert_status st = mcp_certs_check(path, NULL, 0, 0, &info);
    if (!info.not_after)
        return mcp_push_reason(L, mcp_cert_status_name(st));
    char when[32];
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&info.not_after, &tm));
    lua_createtable(L, 0, 3);
    mcp_set_string(L, "cert", path);
    mcp_set_string(L, "expires_at", when);
    mcp_set_string(L, "status", mcp_cert_status_name(st));
    return 1;
}

int luaopen_mcp_certs(lua_State *L)
{
    static const luaL_Reg fns[] = {{"ensure", l_ensure}, {"info", l_info}, {NULL, NULL}};
    mcp_new_lib(L, fns, lua_upvalueindex(1));
    return 1;
}
