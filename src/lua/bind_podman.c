/* agent.runtime over podman: each call runs podman as a child process on the
 * event loop and suspends only the calling task until it exits. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef enum call_kind {
    CALL_LIST,
    CALL_INSPECT,
    CALL_RUN,
    CALL_START,
    CALL_STOP,
    CALL_REMOVE,
    CALL_IMAGE_EXISTS,
} call_kind;

typedef struct podman_op {
    mcp_op op;
    mcp_proc *proc;
    call_kind kind;
} podman_op;

static void push_container(lua_State *L, const mcp_container *c, bool detailed)
{
    lua_createtable(L, 0, 14);
    mcp_set_string(L, "id", c->id);
    mcp_set_string(L, "name", c->name);
    mcp_set_string(L, "image", c->image);
    mcp_set_string(L, "state", c->state);
    mcp_set_int(L, "exit_code", c->exit_code);
    mcp_set_string(L, "started_at", c->started_at);
    lua_createtable(L, (int)c->n_ports, 0);
    for (size_t i = 0; i < c->n_ports; i++) {
        const mcp_port_mapping *p = &c->ports[i];
        lua_createtable(L, 0, 4);
        mcp_set_string(L, "host_ip", p->host_ip);
        mcp_set_int(L, "host_port", p->host_port);
        mcp_set_int(L, "container_port", p->container_port);
        mcp_set_string(L, "protocol", p->protocol);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "ports");
    if (detailed) {
        mcp_push_strv(L, &c->env);
        lua_setfield(L, -2, "env");
        mcp_push_strv(L, &c->cmd);
        lua_setfield(L, -2, "cmd");
        mcp_push_strv(L, &c->volumes);
        lua_setfield(L, -2, "volumes");
        mcp_set_string(L, "user", c->user);
        mcp_set_string(L, "network", c->network);
        mcp_set_string(L, "restart", c->restart);
    }
}

static int push_failure(lua_State *L, const char *reason, const char *detail)
{
    lua_pushnil(L);
    lua_pushstring(L, reason);
    lua_pushstring(L, detail);
    return 3;
}

/* Pushes what the finished call returns to Lua; returns the count. */
static int push_outcome(lua_State *L, call_kind kind, const mcp_proc_result *res)
{
    char reason[64];
    mcp_error err = {{0}};
    if (res->cancelled)
        return push_failure(L, "cancelled", "the task was cancelled");
    if (kind == CALL_IMAGE_EXISTS && !res->timed_out && res->term_signal == 0 &&
        res->exit_status == 1) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (mcp_podman_result(res, reason, sizeof reason, &err) != 0) {
        if (kind == CALL_REMOVE && strcmp(reason, "no such container") == 0) {
            lua_pushboolean(L, 1); /* already gone is what remove wants */
            return 1;
        }
        return push_failure(L, reason, err.msg);
    }
    switch (kind) {
    case CALL_LIST: {
        mcp_container *cs = NULL;
        size_t n = 0;
        if (mcp_podman_parse_list(res->out, res->out_len, &cs, &n, &err) != 0)
            return push_failure(L, "bad answer", err.msg);
        lua_createtable(L, (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            push_container(L, &cs[i], false);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        mcp_containers_free(cs, n);
        return 1;
    }
    case CALL_INSPECT: {
        mcp_container c;
        memset(&c, 0, sizeof c);
        if (mcp_podman_parse_inspect(res->out, res->out_len, &c, &err) != 0)
            return push_failure(L, "bad answer", err.msg);
        push_container(L, &c, true);
        mcp_container_free(&c);
        return 1;
    }
    case CALL_RUN: {
        char *id = mcp_podman_parse_run(res->out, res->out_len);
        if (!id)
            return push_failure(L, "bad answer", "podman run printed no container id");
        lua_pushstring(L, id);
        free(id);
        return 1;
    }
    default:
        lua_pushboolean(L, 1);
        return 1;
    }
}

static void call_done(const mcp_proc_result *res, void *ud)
{
    podman_op *p = ud;
    mcp_task *t = p->op.task;
    if (t) {
        lua_State *co = mcp_task_thread(t);
        if (!lua_checkstack(co, 8)) {
            /* cannot even report: wake with nothing, the call returns nil */
            mcp_task_wake(t, 0);
        } else {
            int n = push_outcome(co, p->kind, res);
            mcp_task_wake(t, n);
        }
    }
    free(p);
}

static void call_cancel(mcp_op *op)
{
    podman_op *p = (podman_op *)op;
    mcp_proc_cancel(p->proc); /* call_done still runs, detached, and frees p */
}

/* Starts argv as a podman call for the running task and suspends it. */
static int start_call(lua_State *L, mcp_strv *argv, call_kind kind, const char *what)
{
    mcp_task *t = mcp_task_require(L, what);
    mcp_host *h = mcp_host_upvalue(L);
    podman_op *p = calloc(1, sizeof *p);
    char **args = mcp_strv_argv(argv);
    if (!p || !args) {
        free(p);
        free(args);
        mcp_strv_free(argv);
        return luaL_error(L, "out of memory");
    }
    p->kind = kind;
    p->op.cancel = call_cancel;
    mcp_error err = {{0}};
    p->proc = mcp_proc_spawn(&h->loop, args, h->podman.timeout_ms, call_done, p, &err);
    free(args);
    mcp_strv_free(argv);
    if (!p->proc) {
        free(p);
        return push_failure(L, "podman not found", err.msg);
    }
    mcp_task_suspend(t, &p->op);
    return lua_yield(L, 0);
}

static void argv_oom(lua_State *L, int rc, mcp_strv *argv)
{
    if (rc != 0) {
        mcp_strv_free(argv);
        luaL_error(L, "out of memory");
    }
}

static int l_list(lua_State *L)
{
    mcp_host *h = mcp_host_upvalue(L);
    mcp_strv argv = {0};
    argv_oom(L, mcp_podman_argv_list(&h->podman, &argv), &argv);
    return start_call(L, &argv, CALL_LIST, "agent.runtime.list");
}

static int l_inspect(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    mcp_host *h = mcp_host_upvalue(L);
    mcp_strv argv = {0};
    argv_oom(L, mcp_podman_argv_inspect(&h->podman, name, &argv), &argv);
    return start_call(L, &argv, CALL_INSPECT, "agent.runtime.inspect");
}

static int l_start(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    mcp_host *h = mcp_host_upvalue(L);
    mcp_strv argv = {0};
    argv_oom(L, mcp_podman_argv_start(&h->podman, name, &argv), &argv);
    return start_call(L, &argv, CALL_START, "agent.runtime.start");
}

static int l_stop(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_Integer timeout = luaL_optinteger(L, 2, 10);
    mcp_host *h = mcp_host_upvalue(L);
    mcp_strv argv = {0};
    argv_oom(L, mcp_podman_argv_stop(&h->podman, name, (int)timeout, &argv), &argv);
    return start_call(L, &argv, CALL_STOP, "agent.runtime.stop");
}

static int l_remove(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    mcp_host *h = mcp_host_upvalue(L);
    mcp_strv argv = {0};
    argv_oom(L, mcp_podman_argv_remove(&h->podman, name, &argv), &argv);
    return start_call(L, &argv, CALL_REMOVE, "agent.runtime.remove");
}

static int l_image_exists(lua_State *L)
{
    const char *image = luaL_checkstring(L, 1);
    mcp_host *h = mcp_host_upvalue(L);
    mcp_strv argv = {0};
    argv_oom(L, mcp_podman_argv_image_exists(&h->podman, image, &argv), &argv);
    return start_call(L, &argv, CALL_IMAGE_EXISTS, "agent.runtime.image_exists");
}

/* Reads the spec table; raises (misuse) on missing name/image or wrong types. */
static void check_spec(lua_State *L, int idx, mcp_container_spec *spec)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    spec->name = mcp_opt_string_field(L, idx, "name");
    spec->image = mcp_opt_string_field(L, idx, "image");
    spec->network = mcp_opt_string_field(L, idx, "network");
    spec->user = mcp_opt_string_field(L, idx, "user");
    spec->restart = mcp_opt_string_field(L, idx, "restart");
    mcp_check_strv_field(L, idx, "ports", &spec->ports);
    mcp_check_strv_field(L, idx, "volumes", &spec->volumes);
    mcp_check_strv_field(L, idx, "cmd", &spec->cmd);
    mcp_check_strv_field(L, idx, "env", &spec->env);
}

/* Frees the spec if a Lua error unwinds through l_run. */
static int spec_gc(lua_State *L)
{
    mcp_container_spec *spec = lua_touserdata(L, 1);
    mcp_container_spec_free(spec);
    memset(spec, 0, sizeof *spec);
    return 0;
}

static int l_run(lua_State *L)
{
    mcp_host *h = mcp_host_upvalue(L);
    /* the spec lives in a userdata with __gc so a raising check frees it */
    mcp_container_spec *spec = lua_newuserdatauv(L, sizeof *spec, 0);
    memset(spec, 0, sizeof *spec);
    if (luaL_newmetatable(L, "mcp.container_spec")) {
        lua_pushcfunction(L, spec_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    check_spec(L, 1, spec);
    if (!spec->name || !*spec->name)
        return luaL_argerror(L, 1, "spec.name is required");
    if (!spec->image || !*spec->image)
        return luaL_argerror(L, 1, "spec.image is required");
    mcp_strv argv = {0};
    int rc = mcp_podman_argv_run(&h->podman, spec, &argv);
    argv_oom(L, rc, &argv);
    return start_call(L, &argv, CALL_RUN, "agent.runtime.run");
}

int luaopen_mcp_podman(lua_State *L)
{
    static const luaL_Reg fns[] = {{"list", l_list},   {"inspect", l_inspect},
                                   {"run", l_run},     {"start", l_start},
                                   {"stop", l_stop},   {"remove", l_remove},
                                   {"image_exists", l_image_exists}, {NULL, NULL}};
    luaL_newlibtable(L, fns);
    lua_pushvalue(L, lua_upvalueindex(1));
    luaL_setfuncs(L, fns, 1);
    return 1;
}
