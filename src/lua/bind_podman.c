/* agent.runtime over podman: each call runs podman as a child process on the
 * event loop and suspends only the calling task until it exits; events()
 * keeps one `podman events` child and hands its lines to the task waiting. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mcp/event_merge.h"
#include "mcp/log.h"
#include "mcp/tail.h"

typedef enum call_kind {
    CALL_LIST,
    CALL_INSPECT,
    CALL_RUN,
    CALL_START,
    CALL_STOP,
    CALL_REMOVE,
    CALL_IMAGE_EXISTS,
    CALL_PULL,
} call_kind;

typedef struct podman_op {
    mcp_op op; /* op.req: the mcp_proc */
    call_kind kind;
} podman_op;

/* {k = v} from "k=v" entries, as a field of the table on top. */
static void set_labels(lua_State *L, const mcp_strv *labels)
{
    lua_createtable(L, 0, (int)labels->n);
    for (size_t i = 0; i < labels->n; i++) {
        const char *kv = labels->v[i];
        const char *eq = strchr(kv, '=');
        size_t klen = eq ? (size_t)(eq - kv) : strlen(kv);
        lua_pushlstring(L, kv, klen);
        lua_pushstring(L, eq ? eq + 1 : "");
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "labels");
}

static const mcp_field port_fields[] = {
    MCP_FIELD(mcp_port_mapping, host_ip),
    MCP_FIELD(mcp_port_mapping, host_port),
    MCP_FIELD(mcp_port_mapping, container_port),
    MCP_FIELD(mcp_port_mapping, protocol),
};

static const mcp_field container_fields[] = {
    MCP_FIELD(mcp_container, id),
    MCP_FIELD(mcp_container, name),
    MCP_FIELD(mcp_container, image),
    MCP_FIELD(mcp_container, state),
    MCP_FIELD(mcp_container, exit_code),
    MCP_FIELD_F(mcp_container, started_at, MCP_F_NULL_EMPTY),
    MCP_FIELD_F(mcp_container, finished_at, MCP_F_NULL_EMPTY),
    MCP_FIELD(mcp_container, oom),
};

/* what only inspect fills */
static const mcp_field container_detail_fields[] = {
    MCP_FIELD(mcp_container, env),     MCP_FIELD(mcp_container, cmd),
    MCP_FIELD(mcp_container, volumes), MCP_FIELD(mcp_container, user),
    MCP_FIELD(mcp_container, network), MCP_FIELD(mcp_container, restart),
};

static void push_container(lua_State *L, const mcp_container *c, bool detailed)
{
    lua_createtable(L, 0, 18);
    mcp_set_fields(L, c, container_fields, MCP_N_FIELDS(container_fields));
    set_labels(L, &c->labels);
    mcp_push_fields_array(L, c->ports, c->n_ports, sizeof *c->ports, port_fields,
                          MCP_N_FIELDS(port_fields));
    lua_setfield(L, -2, "ports");
    if (detailed)
        mcp_set_fields(L, c, container_detail_fields, MCP_N_FIELDS(container_detail_fields));
}

/* Pushes what the finished call returns to Lua; returns the count. */
static int push_outcome(lua_State *L, call_kind kind, const mcp_proc_result *res)
{
    char reason[64];
    mcp_error err = {{0}};
    if (res->cancelled)
        return mcp_push_failure(L, "cancelled", "the task was cancelled");
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
        if (kind == CALL_PULL && strcmp(reason, "timeout") != 0)
            return mcp_push_failure(L, mcp_podman_pull_reason(res->err), err.msg);
        return mcp_push_failure(L, reason, err.msg);
    }
    switch (kind) {
    case CALL_LIST: {
        mcp_container *cs = NULL;
        size_t n = 0;
        if (mcp_podman_parse_list(res->out, res->out_len, &cs, &n, &err) != 0)
            return mcp_push_failure(L, "bad answer", err.msg);
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
            return mcp_push_failure(L, "bad answer", err.msg);
        push_container(L, &c, true);
        mcp_container_free(&c);
        return 1;
    }
    case CALL_RUN: {
        char *id = mcp_podman_parse_run(res->out, res->out_len);
        if (!id)
            return mcp_push_failure(L, "bad answer", "podman run printed no container id");
        lua_pushstring(L, id);
        free(id);
        return 1;
    }
    case CALL_PULL: /* true, podman's progress lines (for the log) */
        lua_pushboolean(L, 1);
        lua_pushlstring(L, res->err ? res->err : "", res->err ? res->err_len : 0);
        return 2;
    default:
        lua_pushboolean(L, 1);
        return 1;
    }
}

typedef struct call_end {
    call_kind kind;
    const mcp_proc_result *res;
} call_end;

static int push_call_end(lua_State *co, const void *end)
{
    const call_end *e = end;
    if (!lua_checkstack(co, 8))
        return 0; /* cannot even report: wake with nothing, the call returns nil */
    return push_outcome(co, e->kind, e->res);
}

static void call_done(const mcp_proc_result *res, void *ud)
{
    podman_op *p = ud;
    call_end e = {p->kind, res};
    mcp_op_done(&p->op, push_call_end, &e);
}

static void call_cancel(mcp_op *op)
{
    mcp_proc_cancel(op->req); /* call_done still runs, detached, and frees the op */
}

/* Starts argv as a podman call for the running task and suspends it. */
static int start_call(lua_State *L, mcp_strv *argv, call_kind kind, const char *what)
{
    mcp_task *t = mcp_task_require(L, what);
    mcp_host *h = mcp_host_upvalue(L);
    char **args = mcp_strv_argv(argv);
    podman_op *p = args ? calloc(1, sizeof *p) : NULL;
    if (!p) {
        free(args);
        mcp_strv_free(argv);
        return luaL_error(L, "out of memory");
    }
    p->kind = kind;
    p->op.cancel = call_cancel;
    mcp_error err = {{0}};
    p->op.req = mcp_proc_spawn(&h->loop, args, h->podman.timeout_ms, call_done, p, &err);
    free(args);
    mcp_strv_free(argv);
    return mcp_op_wait_or_fail(L, t, &p->op, "podman not found", err.msg);
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

/* The calls whose one argument is a container (or image) name. */
static int named_call(lua_State *L, int (*build)(const mcp_podman_cfg *, const char *, mcp_strv *),
                      call_kind kind, const char *what)
{
    bool image = kind == CALL_IMAGE_EXISTS || kind == CALL_PULL;
    const char *name = image ? mcp_check_image(L, 1, "image") : mcp_check_container(L, 1, "container");
    mcp_host *h = mcp_host_upvalue(L);
    mcp_strv argv = {0};
    argv_oom(L, build(&h->podman, name, &argv), &argv);
    return start_call(L, &argv, kind, what);
}

static int l_inspect(lua_State *L)
{
    return named_call(L, mcp_podman_argv_inspect, CALL_INSPECT, "agent.runtime.inspect");
}

static int l_start(lua_State *L)
{
    return named_call(L, mcp_podman_argv_start, CALL_START, "agent.runtime.start");
}

static int l_stop(lua_State *L)
{
    const char *name = mcp_check_container(L, 1, "container");
    lua_Integer timeout = luaL_optinteger(L, 2, 10);
    if (timeout < 0 || timeout > 3600)
        return luaL_argerror(L, 2, "timeout must be 0..3600 seconds");
    mcp_host *h = mcp_host_upvalue(L);
    mcp_strv argv = {0};
    argv_oom(L, mcp_podman_argv_stop(&h->podman, name, (int)timeout, &argv), &argv);
    return start_call(L, &argv, CALL_STOP, "agent.runtime.stop");
}

static int l_remove(lua_State *L)
{
    return named_call(L, mcp_podman_argv_remove, CALL_REMOVE, "agent.runtime.remove");
}

static int l_image_exists(lua_State *L)
{
    return named_call(L, mcp_podman_argv_image_exists, CALL_IMAGE_EXISTS,
                      "agent.runtime.image_exists");
}

/* runtime.pull(image) -> true, progress text | nil, reason, detail; bounded
 * like every call by [agent] podman_timeout. */
static int l_pull(lua_State *L)
{
    return named_call(L, mcp_podman_argv_pull, CALL_PULL, "agent.runtime.pull");
}

/* spec.labels: a table of string keys to string (or number) values, as
 * "k=v"; the argv builder sorts them. Raises on anything else. */
static void check_labels(lua_State *L, int idx, mcp_strv *out)
{
    lua_getfield(L, idx, "labels");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_istable(L, -1))
        luaL_argerror(L, idx, "spec.labels must be a table of key = value strings");
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING ||
            !(lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER))
            luaL_argerror(L, idx, "spec.labels must map strings to strings");
        const char *key = lua_tostring(L, -2);
        if (!*key || strchr(key, '='))
            luaL_argerror(L, idx, "spec.labels keys must be non-empty and without '='");
        lua_pushvalue(L, -1); /* tostring on a copy: never convert the table's own value */
        char *kv = mcp_sprintf("%s=%s", key, lua_tostring(L, -1));
        lua_pop(L, 1);
        if (!kv || mcp_strv_push(out, kv) != 0) {
            free(kv);
            luaL_error(L, "out of memory");
        }
        free(kv);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
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
    check_labels(L, idx, &spec->labels);
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
        mcp_set_cfunction(L, "__gc", spec_gc);
    }
    lua_setmetatable(L, -2);
    luaL_checktype(L, 1, LUA_TTABLE);
    mcp_check_spec_names(L, 1);
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

/* ---- events(): one `podman events` child per stream ------------------------ */
/* Beside the child, podman's events file itself is followed (mcp_tail): with
 * the file backend the child polls it every 250 ms, the tail sees a line at
 * once. mcp_event_merge passes each event once, and the file's only once the
 * two have agreed on one (a guessed path that is not podman's file is never
 * believed). */

#define EVENTS_METATABLE "mcp.podman_events"
/* Unread events kept; past this they are dropped and next() says "overflow"
 * once, so the caller falls back to a full list. */
#define EVENTS_QUEUE_MAX 10000
/* A container's labels can be long, but no event line is a megabyte. */
#define EVENTS_MAX_LINE ((size_t)1 << 20)

typedef struct ev_node {
    struct ev_node *next;
    mcp_podman_event ev;
} ev_node;

typedef struct events_ud {
    mcp_host *host;
    uv_loop_t *loop;
    mcp_proc_stream *proc; /* NULL once closed or ended */
    mcp_tail *file;        /* podman's events file, NULL when not followed */
    mcp_event_merge *merge;
    ev_node *head, *tail;
    size_t count;
    bool overflowed; /* events were dropped; "overflow" not yet reported */
    bool ended;      /* the child ended by itself; end_detail says how */
    char *end_detail;
    size_t bad_lines;    /* lines that did not parse as events (ignored) */
    mcp_wait *waiter;    /* the one task in next(), or NULL */
} events_ud;

static void events_queue_clear(events_ud *ud)
{
    while (ud->head) {
        ev_node *n = ud->head;
        ud->head = n->next;
        mcp_podman_event_free(&n->ev);
        free(n);
    }
    ud->tail = NULL;
    ud->count = 0;
}

static const mcp_field event_fields[] = {
    MCP_FIELD(mcp_podman_event, name),   MCP_FIELD(mcp_podman_event, id),
    MCP_FIELD(mcp_podman_event, status), MCP_FIELD_IF(mcp_podman_event, exit_code, has_exit_code),
    MCP_FIELD(mcp_podman_event, time),   MCP_FIELD(mcp_podman_event, image),
};

static void push_event(lua_State *L, const mcp_podman_event *ev)
{
    lua_createtable(L, 0, 8);
    mcp_set_fields(L, ev, event_fields, MCP_N_FIELDS(event_fields));
    set_labels(L, &ev->labels);
}

/* What next() answers now, pushed on L; 0 when it has to wait. */
static int events_answer(lua_State *L, events_ud *ud)
{
    if (ud->overflowed) {
        ud->overflowed = false;
        return mcp_push_reason(L, "overflow");
    }
    if (ud->head) {
        ev_node *n;
        MCP_QUEUE_TAKE(ud->head, ud->tail, n, next);
        ud->count--;
        push_event(L, &n->ev);
        mcp_podman_event_free(&n->ev);
        free(n);
        return 1;
    }
    if (ud->ended || !ud->proc)
        return mcp_push_failure(L, "closed", ud->ended ? ud->end_detail : "the stream was closed");
    return 0;
}

/* The wait is over: the stream forgets it. */
static void events_wait_detach(mcp_wait *w)
{
    events_ud *ud = w->obj;
    if (ud->waiter == w)
        ud->waiter = NULL;
}

/* Wakes the waiting task when there is something to tell it. */
static void events_deliver(events_ud *ud)
{
    mcp_wait *w = ud->waiter;
    if (!w)
        return;
    mcp_task *t = w->op.task;
    if (!t)
        return;
    lua_State *co = mcp_task_thread(t);
    int n;
    if (!lua_checkstack(co, 8))
        n = 0; /* cannot even report: the call returns nothing */
    else if ((n = events_answer(co, ud)) == 0)
        return;
    mcp_wait_end(w);
    mcp_task_wake(t, n);
}

static void events_wait_timed_out(mcp_wait *w)
{
    mcp_task *t = mcp_wait_end(w);
    if (t)
        mcp_task_wake(t, mcp_push_reason(mcp_task_thread(t), "timeout"));
}

/* A line from either source: queued when it is a container event not queued yet. */
static void events_take(events_ud *ud, const char *line, size_t len, mcp_events_source src)
{
    ev_node *n = calloc(1, sizeof *n);
    mcp_error err = {{0}};
    if (!n || mcp_podman_parse_event(line, len, &n->ev, &err) != 0) {
        free(n);
        ud->bad_lines++;
        return;
    }
    bool take = n->ev.container && mcp_event_merge_take(ud->merge, &n->ev, src);
    if (ud->merge->file_trusted)
        ud->host->events_file_believed = true; /* the next stream need not ask again */
    if (!take) {
        mcp_podman_event_free(&n->ev);
        free(n);
        return;
    }
    if (ud->count >= EVENTS_QUEUE_MAX) {
        events_queue_clear(ud); /* the reader fell behind: it will list instead */
        ud->overflowed = true;
    }
    MCP_QUEUE_APPEND(ud->head, ud->tail, n, next);
    ud->count++;
    events_deliver(ud);
}

static void events_on_line(const char *line, size_t len, void *data)
{
    events_take(data, line, len, MCP_EVENTS_READER);
}

static void events_on_file_line(const char *line, size_t len, void *data)
{
    events_take(data, line, len, MCP_EVENTS_FILE);
}

static void events_stop_file(events_ud *ud)
{
    mcp_tail_close(ud->file);
    ud->file = NULL;
}

static void events_on_exit(const mcp_proc_stream_end *end, void *data)
{
    events_ud *ud = data;
    const char *tail = end->err_tail ? end->err_tail : "";
    size_t n = end->err_len;
    while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == '\r' || tail[n - 1] == ' '))
        n--;
    if (end->term_signal)
        ud->end_detail = mcp_sprintf("podman events killed by signal %d%s%.*s", end->term_signal,
                                     n ? ": " : "", (int)n, tail);
    else
        ud->end_detail = mcp_sprintf("podman events exited with status %d%s%.*s", end->exit_status,
                                     n ? ": " : "", (int)n, tail);
    ud->ended = true;
    mcp_proc_stream_close(ud->proc); /* allowed from its own callback */
    ud->proc = NULL;
    events_stop_file(ud); /* the stream ends with its reader: the caller lists, then opens anew */
    events_deliver(ud);
}

static events_ud *check_events(lua_State *L)
{
    return luaL_checkudata(L, 1, EVENTS_METATABLE);
}

/* stream:next([timeout_s]): an event table, or nil with "timeout", "closed"
 * (+ detail), "cancelled" or "overflow". No timeout: wait for ever. */
static int l_events_next(lua_State *L)
{
    events_ud *ud = check_events(L);
    lua_Number timeout = luaL_optnumber(L, 2, -1);
    if (!lua_isnoneornil(L, 2) && !(timeout >= 0))
        return luaL_argerror(L, 2, "timeout must be a number of seconds >= 0");
    int n = events_answer(L, ud);
    if (n > 0)
        return n;
    if (ud->waiter)
        return luaL_argerror(L, 1, "another task is already waiting on this stream");
    if (timeout == 0)
        return mcp_push_reason(L, "timeout");
    mcp_task *t = mcp_task_require(L, "events:next");
    /* no timeout (< 0): wait for ever */
    ud->waiter = mcp_wait_new(L, sizeof *ud->waiter, ud, ud->loop, timeout, events_wait_detach,
                              events_wait_timed_out);
    return mcp_op_wait(L, t, &ud->waiter->op); /* a cancelled task is refused here: cancel ran */
}

/* Kills the child and drops what is queued; a task waiting gets "closed". */
static void events_close(events_ud *ud)
{
    if (ud->proc) {
        mcp_proc_stream_close(ud->proc);
        ud->proc = NULL;
    }
    events_stop_file(ud);
    events_queue_clear(ud);
    ud->overflowed = false;
    events_deliver(ud);
}

static int l_events_close(lua_State *L)
{
    events_close(check_events(L));
    return 0;
}

static int l_events_gc(lua_State *L)
{
    events_ud *ud = check_events(L);
    events_close(ud);
    if (ud->waiter) /* cannot happen (a waiter keeps it alive); never leave it dangling */
        mcp_wait_end(ud->waiter);
    free(ud->end_detail);
    ud->end_detail = NULL;
    free(ud->merge);
    ud->merge = NULL;
    return 0;
}

static int l_events_tostring(lua_State *L)
{
    events_ud *ud = check_events(L);
    lua_pushfstring(L, "podman events (%s%s, %d queued)", ud->proc ? "open" : "closed",
                    ud->file ? (ud->merge->file_trusted ? ", file followed" : ", file unconfirmed") : "",
                    (int)ud->count);
    return 1;
}

/* core.podman.events(): a stream userdata, or nil, "podman not found", detail. */
static int l_events(lua_State *L)
{
    mcp_host *h = mcp_host_upvalue(L);
    mcp_strv argv = {0};
    argv_oom(L, mcp_podman_argv_events(&h->podman, &argv), &argv);
    char **args = mcp_strv_argv(&argv);
    if (!args) {
        mcp_strv_free(&argv);
        return luaL_error(L, "out of memory");
    }
    events_ud *ud = lua_newuserdatauv(L, sizeof *ud, 0);
    memset(ud, 0, sizeof *ud);
    ud->host = h;
    ud->loop = &h->loop;
    luaL_setmetatable(L, EVENTS_METATABLE);
    ud->merge = calloc(1, sizeof *ud->merge);
    if (!ud->merge) {
        free(args);
        mcp_strv_free(&argv);
        return luaL_error(L, "out of memory");
    }
    mcp_error err = {{0}};
    ud->proc = mcp_proc_stream_spawn(&h->loop, args, EVENTS_MAX_LINE, events_on_line,
                                     events_on_exit, ud, &err);
    free(args);
    mcp_strv_free(&argv);
    if (!ud->proc)
        return mcp_push_failure(L, "podman not found", err.msg);
    ud->merge->file_trusted = h->events_file_believed;
    /* the file is a help, not a need: another events backend has none */
    char *path = mcp_podman_events_file(&h->podman);
    if (path) {
        mcp_error ferr = {{0}};
        ud->file = mcp_tail_open(&h->loop, path, EVENTS_MAX_LINE, events_on_file_line, ud, &ferr);
        if (!ud->file)
            mcp_log(MCP_LOG_DEBUG, "podman events: not following the events file", "error",
                    ferr.msg, NULL);
        free(path);
    }
    return 1;
}

/* host_idx: the host light userdata, which next() needs to suspend its task. */
static void events_metatable(lua_State *L, int host_idx)
{
    static const luaL_Reg methods[] = {
        {"next", l_events_next}, {"close", l_events_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_events_gc},
                                    {"__close", l_events_close},
                                    {"__tostring", l_events_tostring},
                                    {NULL, NULL}};
    mcp_new_metatable(L, EVENTS_METATABLE, methods, host_idx, meta);
}

int luaopen_mcp_podman(lua_State *L)
{
    static const luaL_Reg fns[] = {{"list", l_list},
                                   {"inspect", l_inspect},
                                   {"run", l_run},
                                   {"start", l_start},
                                   {"stop", l_stop},
                                   {"remove", l_remove},
                                   {"image_exists", l_image_exists},
                                   {"pull", l_pull},
                                   {"events", l_events},
                                   {NULL, NULL}};
    events_metatable(L, lua_upvalueindex(1));
    mcp_new_lib(L, fns, lua_upvalueindex(1));
    return 1;
}
