/* The Lua policy host: one Lua state, one libuv loop, the `mcp.core` module
 * of C primitives, and the entry into the Lua command layer. It owns its
 * parts and sets them up in order (loop, scheduler, signals, Lua state),
 * holds the one instruction-count hook every Lua thread inherits, the
 * shared http client, and says why a cancelled command ended. Arrows run
 * one way: cli -> host -> bindings -> core. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "internal.h"
#include "mcp/log.h"

/* ---- the count hook: one for every Lua thread ----
 *
 * Set once on the main state; threads (tasks, and coroutines the policies
 * make) inherit it and the extra space that points back at the host. Lua
 * that never yields keeps the loop from running, so every COUNT
 * instructions it checks two deadlines: a second past SIGINT/SIGTERM, and
 * the task budget (core.task.budget) since the running task was resumed. */
#define HOOK_COUNT 1000000
#define RUNAWAY_GRACE_NS 1000000000LL

static mcp_host *hook_host(lua_State *L)
{
    return *(mcp_host **)lua_getextraspace(L);
}

static void count_hook(lua_State *L, lua_Debug *ar)
{
    int64_t since = 0;
    int sig = mcp_signals_stop_age(&since);
    if (sig && since >= RUNAWAY_GRACE_NS) {
        /* lua_error, not luaL_error: the position is the spinning function's own */
        luaL_where(L, 0);
        lua_pushfstring(L, "%sstopped: still running a second after %s without yielding",
                        lua_tostring(L, -1), mcp_signal_name(sig));
        lua_error(L);
    }
    mcp_host *h = hook_host(L);
    if (!h || !h->current || h->task_budget_ns == 0)
        return;
    uint64_t ran = uv_hrtime() - h->slice_start_ns;
    if (ran < h->task_budget_ns)
        return;
    /* A fresh budget: the error's handler (xpcall, the task's end) gets to run. */
    h->slice_start_ns = uv_hrtime();
    const char *src = "?";
    int line = -1, defined = -1;
    char fn[96] = "a function";
    if (lua_getinfo(L, "nSl", ar)) {
        src = ar->short_src;
        line = ar->currentline;
        defined = ar->linedefined;
        if (ar->name)
            snprintf(fn, sizeof fn, "function '%s'", ar->name);
    }
    /* luaL_error knows no precision: format the numbers first */
    char msg[160];
    snprintf(msg, sizeof msg, "ran %.1f s without yielding (task budget %.1f s)",
             (double)ran / 1e9, (double)h->task_budget_ns / 1e9);
    lua_pushfstring(L, "%s:%d: stopped: %s, in %s defined at line %d", src, line, msg, fn, defined);
    lua_error(L);
}

/* The http client is made on first use: commands that never probe pay nothing. */
mcp_http *mcp_host_http(lua_State *L, mcp_host *h)
{
    if (!h->http) {
        mcp_error err = {{0}};
        h->http = mcp_http_new(&h->loop, &err);
        if (!h->http)
            luaL_error(L, "cannot create the http client: %s", err.msg);
    }
    return h->http;
}

static int resolve_paths(mcp_host *h, mcp_error *err)
{
    mcp_host_paths p;
    if (mcp_host_find_paths(&p, err) != 0)
        return -1;
    memcpy(h->lua_dir, p.lua_dir, sizeof h->lua_dir);
    memcpy(h->builtin_policy_dir, p.policy_dir, sizeof h->builtin_policy_dir);
    h->paths_origin = p.origin;
    return 0;
}

/* core.config: the loaded mcp_config, sections as subtables (tls, mcproxy, metacrypt, boot). */
static const mcp_field config_fields[] = {
    MCP_FIELD(mcp_config, node_name),
    MCP_FIELD(mcp_config, container_runtime),
    MCP_FIELD(mcp_config, socket),
    MCP_FIELD(mcp_config, grpc_addr),
    MCP_FIELD(mcp_config, insecure_loopback),
    MCP_FIELD(mcp_config, db_path),
    MCP_FIELD(mcp_config, port_min),
    MCP_FIELD(mcp_config, port_max),
    MCP_FIELD(mcp_config, policy_dir),
    MCP_FIELD(mcp_config, log_level),
    MCP_FIELD_AS("monitor_interval", mcp_config, monitor_interval_ms, MCP_F_MS),
    MCP_FIELD(mcp_config, monitor_drift),
    MCP_FIELD(mcp_config, pull),
    MCP_FIELD_AS("warnings", mcp_config, n_warnings, 0),
    MCP_FIELD(mcp_config, keep_events),
    MCP_FIELD(mcp_config, metrics_listen),
    MCP_FIELD_AS("podman_timeout", mcp_config, podman_timeout_ms, MCP_F_MS),
    MCP_FIELD(mcp_config, podman_args),
};

static const mcp_field tls_fields[] = {
    MCP_FIELD_AS("cert", mcp_config, tls_cert, 0),
    MCP_FIELD_AS("key", mcp_config, tls_key, 0),
    MCP_FIELD_AS("client_ca", mcp_config, tls_client_ca, 0),
};

static const mcp_field mcproxy_fields[] = {
    MCP_FIELD_AS("socket", mcp_config, mcproxy_socket, 0),
    MCP_FIELD_AS("cert_dir", mcp_config, mcproxy_cert_dir, 0),
    MCP_FIELD_AS("listener", mcp_config, mcproxy_listener, 0),
};

static const mcp_field metacrypt_fields[] = {
    MCP_FIELD_AS("server_url", mcp_config, metacrypt_server_url, 0),
    MCP_FIELD_AS("ca_cert", mcp_config, metacrypt_ca_cert, 0),
    MCP_FIELD_AS("mount", mcp_config, metacrypt_mount, 0),
    MCP_FIELD_AS("issuer", mcp_config, metacrypt_issuer, 0),
    MCP_FIELD_AS("token_path", mcp_config, metacrypt_token_path, 0),
};

static const mcp_field stage_fields[] = {
    MCP_FIELD(mcp_boot_stage, name),
    MCP_FIELD(mcp_boot_stage, services),
    MCP_FIELD_AS("timeout", mcp_boot_stage, timeout_ms, MCP_F_MS),
    MCP_FIELD(mcp_boot_stage, health),
    MCP_FIELD(mcp_boot_stage, line),
};

static void push_config(lua_State *L, const mcp_host *h)
{
    const mcp_config *c = h->cfg;
    lua_newtable(L);
    mcp_set_bool(L, "dry_run", h->dry_run);
    mcp_set_string(L, "config_path", h->config_path);
    if (!c)
        return;
    mcp_set_fields(L, c, config_fields, MCP_N_FIELDS(config_fields));
    mcp_set_fields_table(L, "tls", c, tls_fields, MCP_N_FIELDS(tls_fields));
    mcp_set_fields_table(L, "mcproxy", c, mcproxy_fields, MCP_N_FIELDS(mcproxy_fields));
    mcp_set_fields_table(L, "metacrypt", c, metacrypt_fields, MCP_N_FIELDS(metacrypt_fields));
    mcp_push_fields_array(L, c->stages, c->n_stages, sizeof *c->stages, stage_fields,
                          MCP_N_FIELDS(stage_fields));
    lua_setfield(L, -2, "boot");
}

/* core.release_memory(): a full Lua collection, then the C heap's free
 * pages back to the system — for a daemon that has just gone idle. */
static int l_release_memory(lua_State *L)
{
    lua_gc(L, LUA_GCCOLLECT);
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    return 0;
}

/* Opens one binding area with the host as upvalue and stores it in the table on top. */
static void add_area(lua_State *L, mcp_host *h, const char *name, lua_CFunction opener)
{
    lua_pushlightuserdata(L, h);
    lua_pushcclosure(L, opener, 1);
    lua_call(L, 0, 1);
    lua_setfield(L, -2, name);
}

/* package.preload["mcp.core"]: the C primitives, one table per area. */
static int open_core(lua_State *L)
{
    mcp_host *h = lua_touserdata(L, lua_upvalueindex(1));
    lua_newtable(L);
    add_area(L, h, "clock", luaopen_mcp_clock);
    add_area(L, h, "task", luaopen_mcp_task);
    add_area(L, h, "log", luaopen_mcp_log);
    add_area(L, h, "registry", luaopen_mcp_registry);
    add_area(L, h, "podman", luaopen_mcp_podman);
    add_area(L, h, "probe", luaopen_mcp_probe);
    add_area(L, h, "proxy", luaopen_mcp_proxy);
    add_area(L, h, "certs", luaopen_mcp_certs);
    add_area(L, h, "signals", luaopen_mcp_signals);
    add_area(L, h, "api", luaopen_mcp_api);
    add_area(L, h, "hash", luaopen_mcp_hash);
    add_area(L, h, "http", luaopen_mcp_http);
    add_area(L, h, "notify", luaopen_mcp_notify);
    add_area(L, h, "metrics", luaopen_mcp_metrics);
    add_area(L, h, "exec", luaopen_mcp_exec);
    push_config(L, h);
    lua_setfield(L, -2, "config");
    lua_pushcfunction(L, l_release_memory);
    lua_setfield(L, -2, "release_memory");
    lua_createtable(L, 0, 3);
    mcp_set_string(L, "lua", h->lua_dir);
    mcp_set_string(L, "builtin_policies", h->builtin_policy_dir);
    mcp_set_string(L, "origin", h->paths_origin);
    lua_setfield(L, -2, "paths");
#ifdef MCP_VERSION
    mcp_set_string(L, "version", MCP_VERSION);
#endif
    return 1;
}

static int traceback_handler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : luaL_typename(L, 1), 1);
    return 1;
}

/* Runs the setup steps that call into Lua under one protected call. */
static int setup(lua_State *L)
{
    mcp_host *h = lua_touserdata(L, 1);
    luaL_openlibs(L);
    /* package.path: the agent's library only, then the system's (for cjson's .so in cpath) */
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", h->lua_dir, h->lua_dir);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_getfield(L, -1, "preload");
    lua_pushlightuserdata(L, h);
    lua_pushcclosure(L, open_core, 1);
    lua_setfield(L, -2, "mcp.core");
    lua_pop(L, 2);
    mcp_policy_install_searcher(L, h);
    return 0;
}

int mcp_host_new(const mcp_host_opts *opts, mcp_host **out, mcp_error *err)
{
    *out = NULL;
    mcp_host *h = calloc(1, sizeof *h);
    if (!h) {
        mcp_error_set(err, "out of memory");
        return -1;
    }
    h->cfg = opts->cfg;
    h->reg = opts->reg;
    h->dry_run = opts->dry_run;
    h->config_path = opts->config_path;
    if (h->cfg) {
        h->podman.binary = h->cfg->podman ? h->cfg->podman : "podman";
        h->podman.global_args = &h->cfg->podman_args;
        h->podman.timeout_ms = h->cfg->podman_timeout_ms > 0 ? h->cfg->podman_timeout_ms : 120000;
    } else {
        h->podman.binary = "podman";
        h->podman.timeout_ms = 120000;
    }
    if (resolve_paths(h, err) != 0)
        goto fail;
    if (uv_loop_init(&h->loop) != 0) {
        mcp_error_set(err, "cannot create the event loop");
        goto fail;
    }
    h->loop_ready = true;
    if (mcp_sched_init(h) != 0) {
        mcp_error_set(err, "cannot set up the task scheduler");
        goto fail;
    }
    h->sched_ready = true;
    if (mcp_signals_init(h) != 0) {
        mcp_error_set(err, "cannot install the signal handlers: %s", strerror(errno));
        goto fail;
    }
    h->L = luaL_newstate();
    if (!h->L) {
        mcp_error_set(err, "cannot create a Lua state (out of memory)");
        goto fail;
    }
    /* Before any thread exists: each one copies both from the main state. */
    *(mcp_host **)lua_getextraspace(h->L) = h;
    lua_sethook(h->L, count_hook, LUA_MASKCOUNT, HOOK_COUNT);
    lua_pushcfunction(h->L, traceback_handler);
    lua_pushcfunction(h->L, setup);
    lua_pushlightuserdata(h->L, h);
    if (lua_pcall(h->L, 1, 0, 1) != LUA_OK) {
        mcp_error_set(err, "Lua setup failed: %s", lua_tostring(h->L, -1));
        goto fail;
    }
    lua_settop(h->L, 0);
    if (h->reg && h->cfg && h->cfg->keep_events > 0 &&
        mcp_registry_set_keep_events(h->reg, h->cfg->keep_events, err) != 0)
        goto fail;
    *out = h;
    return 0;
fail:
    mcp_host_free(h);
    return -1;
}

void mcp_host_free(mcp_host *h)
{
    if (!h)
        return;
    /* Order matters: tasks first (their operations are cancelled and only
     * free themselves from here on), then the http client, then the Lua
     * state (collecting a server handle starts its close), and last the loop
     * runs until every handle has closed and every child has been reaped. */
    if (h->sched_ready)
        mcp_sched_close(h);
    if (h->loop_ready)
        mcp_signals_close(h); /* safe when never installed */
    if (h->http) {
        mcp_http_destroy(h->http);
        h->http = NULL;
    }
    if (h->L)
        lua_close(h->L);
    if (h->loop_ready) {
        uv_run(&h->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&h->loop) != 0)
            mcp_log(MCP_LOG_WARN, "event loop closed with handles still open", NULL);
    }
    free(h);
}

/* Loads mcp.host.cli and calls cli.main(name, args) as the main task. */
int mcp_host_command(mcp_host *h, const char *name, int argc, char **argv)
{
    lua_State *L = h->L;
    lua_settop(L, 0);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "mcp.host.cli");
    lua_pushcfunction(L, traceback_handler);
    lua_insert(L, 1);
    if (lua_pcall(L, 1, 1, 1) != LUA_OK) {
        mcp_log(MCP_LOG_ERROR, "cannot load the command layer", "error", lua_tostring(L, -1), NULL);
        lua_settop(L, 0);
        return 2;
    }
    lua_getfield(L, -1, "main");
    if (!lua_isfunction(L, -1)) {
        mcp_log(MCP_LOG_ERROR, "mcp.host.cli has no main function", NULL);
        lua_settop(L, 0);
        return 2;
    }
    lua_pushstring(L, name);
    lua_createtable(L, argc, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    int nres = 0;
    int rc;
    mcp_main_outcome outcome = mcp_sched_run_main(h, 2, &nres);
    if (outcome == MCP_MAIN_CANCELLED) {
        lua_pushfstring(L, "cancelled by %s",
                        h->stop_signal ? mcp_signal_name(h->stop_signal) : "the host");
        outcome = MCP_MAIN_FAILED;
    }
    if (outcome == MCP_MAIN_FAILED) {
        const char *msg = lua_tostring(L, -1);
        if (h->stop_signal) {
            mcp_log(MCP_LOG_WARN, "command cancelled", "command", name, "reason",
                    msg ? msg : "signal", NULL);
            rc = 1;
        } else {
            mcp_log(MCP_LOG_ERROR, "command failed with a Lua error", "command", name, "error",
                    msg ? msg : "?", NULL);
            rc = 2;
        }
    } else {
        rc = nres > 0 && lua_isinteger(L, -nres) ? (int)lua_tointeger(L, -nres) : 0;
    }
    lua_settop(L, 0);
    return rc;
}
