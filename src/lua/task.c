/* Lua tasks on the libuv loop.
 *
 * Every policy runs inside a task: a coroutine whose waiting calls (sleep,
 * podman, probes, waiting on another task) park it on an operation and yield
 * (the "cosocket" recipe). The loop completes the operation, pushes its
 * results on the task's stack and queues the task; the idle handle resumes
 * queued tasks. Cancelling a task cancels its pending operation (freeing
 * timers and child processes) and closes its coroutine. Each resume notes
 * when it started, for the host's count hook (host.c) to enforce the task
 * budget; this file neither sets hooks nor knows about signals. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mcp/log.h"

#define TASK_MT "mcp.task"

typedef enum task_state {
    TASK_READY,
    TASK_RUNNING,
    TASK_WAITING,
    TASK_DONE,
    TASK_FAILED,
    TASK_CANCELLED,
} task_state;

typedef struct wait_op wait_op;

struct mcp_task {
    mcp_host *host;
    lua_State *co;
    int anchor; /* registry ref keeping the userdata alive while the task is live */
    task_state state;
    mcp_op *op;       /* pending operation while WAITING */
    int resume_nargs; /* values pushed on co for the next resume */
    bool queued;
    mcp_task *next_ready;
    mcp_task *prev_live, *next_live;
    wait_op *waiters;      /* tasks waiting for this one to end */
    int nresults;          /* DONE: results at the bottom of co's stack; FAILED: 1 message */
    bool cancel_requested; /* every wait now returns nil, "cancelled" */
    bool cancel_pending;   /* a wait was refused while running: answer it after the yield */
    int refused_waits;     /* how many; past MAX_REFUSED_WAITS the task is closed */
};

/* A cancelled task gets this many waits answered "cancelled" to wind down
 * (report, clean up) before it is closed for good. */
#define MAX_REFUSED_WAITS 100

struct wait_op {
    mcp_op op;
    mcp_task *target;
    wait_op *next;
    uv_timer_t timer;
    bool timer_armed;
};

static const char *const state_names[] = {"ready", "running", "waiting",
                                          "done",  "failed",  "cancelled"};

static bool task_finished(const mcp_task *t)
{
    return t->state == TASK_DONE || t->state == TASK_FAILED || t->state == TASK_CANCELLED;
}

/* ---- live list and ready queue ---- */

static void live_add(mcp_host *h, mcp_task *t)
{
    t->prev_live = NULL;
    t->next_live = h->live;
    if (h->live)
        h->live->prev_live = t;
    h->live = t;
}

static void live_remove(mcp_host *h, mcp_task *t)
{
    if (t->prev_live)
        t->prev_live->next_live = t->next_live;
    else if (h->live == t)
        h->live = t->next_live;
    if (t->next_live)
        t->next_live->prev_live = t->prev_live;
    t->prev_live = t->next_live = NULL;
}

static void on_idle(uv_idle_t *idle);

static void ready_push(mcp_host *h, mcp_task *t, int nargs)
{
    t->resume_nargs = nargs;
    t->state = TASK_READY;
    if (t->queued)
        return;
    t->queued = true;
    MCP_QUEUE_APPEND(h->ready_head, h->ready_tail, t, next_ready);
    if (!uv_is_active((uv_handle_t *)&h->idle))
        uv_idle_start(&h->idle, on_idle);
}

/* ---- finishing ---- */

static void wait_timer_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void wait_op_free(wait_op *w)
{
    if (w->timer_armed) {
        uv_timer_stop(&w->timer);
        w->timer.data = w;
        uv_close((uv_handle_t *)&w->timer, wait_timer_closed);
    } else {
        free(w);
    }
}

/* Pushes the outcome of finished task t onto co: true, results… | false, msg | nil, "cancelled". */
static int push_outcome(lua_State *co, const void *task)
{
    const mcp_task *t = task;
    if (t->state == TASK_DONE) {
        if (!lua_checkstack(co, t->nresults + 1))
            return 0;
        lua_pushboolean(co, 1);
        for (int i = 1; i <= t->nresults; i++) {
            lua_pushvalue(t->co, i);
            lua_xmove(t->co, co, 1);
        }
        return t->nresults + 1;
    }
    if (t->state == TASK_FAILED) {
        lua_pushboolean(co, 0);
        lua_pushvalue(t->co, -1);
        lua_xmove(t->co, co, 1);
        return 2;
    }
    return mcp_push_reason(co, "cancelled");
}

/* The task ended (done, failed or cancelled): wake its waiters and let it be collected. */
static void task_finish(mcp_task *t)
{
    mcp_host *h = t->host;
    live_remove(h, t);
    wait_op *w = t->waiters;
    t->waiters = NULL;
    while (w) {
        wait_op *next = w->next;
        mcp_op_complete(&w->op, push_outcome, t);
        wait_op_free(w);
        w = next;
    }
    if (t->anchor != LUA_NOREF) {
        luaL_unref(h->L, LUA_REGISTRYINDEX, t->anchor);
        t->anchor = LUA_NOREF;
    }
}

static void task_fail(mcp_task *t, const char *msg)
{
    lua_settop(t->co, 0);
    lua_pushstring(t->co, msg);
    t->nresults = 0;
    t->state = TASK_FAILED;
    task_finish(t);
}

static void task_cancel(mcp_task *t);

/* ---- resuming ---- */

static void task_resume(mcp_task *t, int nargs)
{
    mcp_host *h = t->host;
    mcp_task *prev = h->current;
    h->current = t;
    t->state = TASK_RUNNING;
    h->slice_start_ns = uv_hrtime();
    int nres = 0;
    int status = lua_resume(t->co, h->L, nargs, &nres);
    h->current = prev;

    if (t->state == TASK_CANCELLED) /* cancelled itself while running: already finished */
        return;
    if (status == LUA_YIELD) {
        lua_pop(t->co, nres);
        if (t->op) {
            t->state = TASK_WAITING;
            return;
        }
        if (t->cancel_pending) {
            /* the wait it just started was refused (see mcp_task_suspend) */
            t->cancel_pending = false;
            if (t->refused_waits > MAX_REFUSED_WAITS) {
                task_cancel(t);
                return;
            }
            lua_pushnil(t->co);
            lua_pushliteral(t->co, "cancelled");
            ready_push(h, t, 2);
            return;
        }
        /* A bare coroutine.yield() at task level would park the task for ever. */
        lua_resetthread(t->co);
        task_fail(t, "task yielded outside an agent call (coroutine.yield at task level is not "
                     "allowed; use agent.clock.sleep or agent.task)");
        return;
    }
    if (status == LUA_OK) {
        /* a cancelled task's results are not its waiters' to see */
        t->state = t->cancel_requested ? TASK_CANCELLED : TASK_DONE;
        t->nresults = nres;
        task_finish(t);
        return;
    }
    /* An error: keep its message with the traceback of where it was raised. */
    const char *msg = lua_tostring(t->co, -1);
    if (!msg)
        msg = luaL_typename(t->co, -1);
    luaL_traceback(h->L, t->co, msg, 0);
    char *text = mcp_strdup(lua_tostring(h->L, -1));
    lua_pop(h->L, 1);
    lua_resetthread(t->co);
    task_fail(t, text ? text : "error (out of memory formatting it)");
    free(text);
}

static void on_idle(uv_idle_t *idle)
{
    mcp_host *h = idle->data;
    /* Resume only what is queued now; tasks queued meanwhile wait a turn. */
    mcp_task *tail = h->ready_tail;
    while (h->ready_head) {
        mcp_task *t = h->ready_head;
        h->ready_head = t->next_ready;
        if (!h->ready_head)
            h->ready_tail = NULL;
        t->queued = false;
        if (t->state == TASK_READY)
            task_resume(t, t->resume_nargs);
        if (t == tail)
            break;
    }
    if (!h->ready_head)
        uv_idle_stop(&h->idle);
}

/* ---- public to the bindings ---- */

mcp_task *mcp_task_require(lua_State *L, const char *what)
{
    mcp_host *h = mcp_host_upvalue(L);
    mcp_task *t = h->current;
    if (!t || t->co != L)
        luaL_error(L,
                   "%s must be called from an agent task, not the main chunk or a coroutine of "
                   "your own (use agent.task.spawn)",
                   what);
    if (!lua_isyieldable(L))
        luaL_error(L, "%s cannot wait here (inside a metamethod or C callback)", what);
    return t;
}

void mcp_task_suspend(mcp_task *t, mcp_op *op)
{
    if (t->cancel_requested) {
        /* refuse the wait at once; task_resume answers it after the yield */
        op->task = NULL;
        op->cancel(op);
        t->cancel_pending = true;
        t->refused_waits++;
        return;
    }
    op->task = t;
    t->op = op;
}

lua_State *mcp_task_thread(mcp_task *t)
{
    return t->co;
}

void mcp_task_wake(mcp_task *t, int nargs)
{
    t->op = NULL;
    ready_push(t->host, t, nargs);
}

bool mcp_op_complete(mcp_op *op, int (*push)(lua_State *co, const void *res), const void *res)
{
    mcp_task *t = op->task;
    if (!t)
        return false;
    mcp_task_wake(t, push(t->co, res));
    return true;
}

void *mcp_op_new(lua_State *L, size_t size, void (*cancel)(mcp_op *op))
{
    mcp_op *op = calloc(1, size);
    if (!op)
        luaL_error(L, "out of memory");
    op->cancel = cancel;
    return op;
}

void mcp_op_done(mcp_op *op, int (*push)(lua_State *co, const void *res), const void *res)
{
    mcp_op_complete(op, push, res);
    free(op);
}

int mcp_op_wait(lua_State *L, mcp_task *t, mcp_op *op)
{
    mcp_task_suspend(t, op);
    return lua_yield(L, 0); /* throws: it does not return to here */
}

int mcp_op_wait_or_fail(lua_State *L, mcp_task *t, mcp_op *op, const char *reason,
                        const char *detail)
{
    if (op->req)
        return mcp_op_wait(L, t, op);
    free(op);
    return mcp_push_failure(L, reason, detail);
}

/* Cancels t: detaches and cancels its pending operation, closes its
 * coroutine (running its to-be-closed variables) and wakes its waiters. */
static void task_cancel(mcp_task *t)
{
    if (task_finished(t))
        return;
    mcp_op *op = t->op;
    t->op = NULL;
    if (op) {
        op->task = NULL;
        op->cancel(op);
    }
    /* A queued task stays in the queue; on_idle skips it once it is not READY. */
    t->state = TASK_CANCELLED;
    lua_resetthread(t->co);
    lua_settop(t->co, 0);
    task_finish(t);
}

/* Asks t to stop: its pending wait and every later one return nil,
 * "cancelled", so a policy can wind down and report; waiters of t see
 * nil, "cancelled" when it ends. A task that keeps waiting regardless is
 * closed after MAX_REFUSED_WAITS. */
static void task_request_cancel(mcp_task *t)
{
    if (task_finished(t) || t->cancel_requested)
        return;
    t->cancel_requested = true;
    mcp_op *op = t->op;
    if (op) {
        t->op = NULL;
        op->task = NULL;
        op->cancel(op);
        t->refused_waits++;
        lua_pushnil(t->co);
        lua_pushliteral(t->co, "cancelled");
        ready_push(t->host, t, 2);
    }
}

/* ---- sleep ---- */

typedef struct sleep_op {
    mcp_op op;
    uv_timer_t timer;
} sleep_op;

static void sleep_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void sleep_fired(uv_timer_t *timer)
{
    sleep_op *s = timer->data;
    mcp_task *t = s->op.task;
    if (t) {
        lua_pushboolean(t->co, 1);
        mcp_task_wake(t, 1);
    }
    uv_close((uv_handle_t *)&s->timer, sleep_closed);
}

static void sleep_cancel(mcp_op *op)
{
    sleep_op *s = (sleep_op *)op;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, sleep_closed);
}

static uint64_t seconds_to_ms(lua_State *L, int idx)
{
    lua_Number s = luaL_checknumber(L, idx);
    if (!(s >= 0))
        luaL_argerror(L, idx, "seconds must be a number >= 0");
    if (s > 1e9)
        s = 1e9;
    return (uint64_t)(s * 1000.0 + 0.5);
}

static int l_sleep(lua_State *L)
{
    uint64_t ms = seconds_to_ms(L, 1);
    mcp_task *t = mcp_task_require(L, "agent.clock.sleep");
    mcp_host *h = mcp_host_upvalue(L);
    sleep_op *s = mcp_op_new(L, sizeof *s, sleep_cancel);
    uv_timer_init(&h->loop, &s->timer);
    s->timer.data = s;
    /* the loop's time is from before this Lua ran: a long stretch of Lua
     * (a policy, a big reply) would otherwise shorten the sleep */
    uv_update_time(&h->loop);
    uv_timer_start(&s->timer, sleep_fired, ms, 0);
    mcp_task_suspend(t, &s->op);
    return lua_yield(L, 0);
}

static int l_now(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
    return 1;
}

static int l_wallclock(lua_State *L)
{
    uv_timeval64_t tv;
    if (uv_gettimeofday(&tv) != 0)
        return luaL_error(L, "gettimeofday failed");
    lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec / 1e6);
    return 1;
}

int luaopen_mcp_clock(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"now", l_now}, {"sleep", l_sleep}, {"wallclock", l_wallclock}, {NULL, NULL}};
    mcp_new_lib(L, fns, lua_upvalueindex(1));
    return 1;
}

/* ---- task objects ---- */

static mcp_task *check_task(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, TASK_MT);
}

/* agent.task.spawn(fn, ...) -> handle: fn runs as a new task from the next loop turn. */
static int l_spawn(lua_State *L)
{
    mcp_host *h = mcp_host_upvalue(L);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int nargs = lua_gettop(L) - 1;
    mcp_task *t = lua_newuserdatauv(L, sizeof *t, 1);
    memset(t, 0, sizeof *t);
    t->host = h;
    t->anchor = LUA_NOREF;
    luaL_setmetatable(L, TASK_MT);
    /* Made from the main state, so it inherits the host's count hook and
     * extra space (host.c) whichever thread spawns it. */
    if (!lua_checkstack(h->L, 1))
        return luaL_error(L, "out of memory");
    lua_newthread(h->L);
    lua_xmove(h->L, L, 1); /* stack: fn args… ud thread */
    lua_State *co = lua_tothread(L, -1);
    lua_setiuservalue(L, -2, 1); /* the userdata keeps the thread alive */
    lua_rotate(L, 1, 1);         /* ud fn args… */
    lua_xmove(L, co, nargs + 1); /* fn and args onto the new thread */
    t->co = co;
    lua_pushvalue(L, 1);
    t->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
    live_add(h, t);
    ready_push(h, t, nargs);
    return 1;
}

static void wait_timed_out(uv_timer_t *timer)
{
    wait_op *w = timer->data;
    /* unlink from the target's waiters */
    for (wait_op **p = &w->target->waiters; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    mcp_task *t = w->op.task;
    w->timer_armed = false;
    uv_close((uv_handle_t *)&w->timer, wait_timer_closed);
    if (t)
        mcp_task_wake(t, mcp_push_reason(t->co, "timeout"));
}

static void wait_cancel(mcp_op *op)
{
    wait_op *w = (wait_op *)op;
    for (wait_op **p = &w->target->waiters; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    wait_op_free(w);
}

/* handle.wait(timeout) / agent.task.wait(handle, timeout) */
static int l_wait(lua_State *L)
{
    mcp_task *target = check_task(L, 1);
    bool has_timeout = !lua_isnoneornil(L, 2);
    uint64_t ms = has_timeout ? seconds_to_ms(L, 2) : 0;
    if (task_finished(target))
        return push_outcome(L, target);
    mcp_task *self = mcp_task_require(L, "agent.task.wait");
    if (self == target)
        return luaL_error(L, "a task cannot wait for itself");
    mcp_host *h = mcp_host_upvalue(L);
    wait_op *w = mcp_op_new(L, sizeof *w, wait_cancel);
    w->target = target;
    w->next = target->waiters;
    target->waiters = w;
    if (has_timeout) {
        uv_timer_init(&h->loop, &w->timer);
        w->timer.data = w;
        uv_update_time(w->timer.loop); /* as for sleep */
        uv_timer_start(&w->timer, wait_timed_out, ms, 0);
        w->timer_armed = true;
    }
    mcp_task_suspend(self, &w->op);
    return lua_yield(L, 0);
}

static int l_cancel(lua_State *L)
{
    mcp_task *t = check_task(L, 1);
    mcp_host *h = mcp_host_upvalue(L);
    if (t == h->current)
        return luaL_error(L, "a task cannot cancel itself (return from it instead)");
    bool was_live = !task_finished(t) && !t->cancel_requested;
    task_request_cancel(t);
    lua_pushboolean(L, was_live);
    return 1;
}

static int l_status(lua_State *L)
{
    mcp_task *t = check_task(L, 1);
    /* a task winding down after cancel already counts as cancelled */
    lua_pushstring(L,
                   t->cancel_requested && !task_finished(t) ? "cancelled" : state_names[t->state]);
    return 1;
}

static int l_task_tostring(lua_State *L)
{
    mcp_task *t = check_task(L, 1);
    lua_pushfstring(L, "task (%s): %p", state_names[t->state], (void *)t);
    return 1;
}

/* Methods work with a dot (handle.wait(5)) as the API convention says, and
 * with a colon too: __index hands out closures bound to the handle. */
static int l_bound_method(lua_State *L)
{
    void *handle = lua_touserdata(L, lua_upvalueindex(2));
    if (lua_touserdata(L, 1) != handle) {
        lua_pushvalue(L, lua_upvalueindex(2));
        lua_insert(L, 1);
    }
    lua_CFunction fn = lua_tocfunction(L, lua_upvalueindex(3));
    return fn(L);
}

static int l_task_index(lua_State *L)
{
    check_task(L, 1);
    const char *key = luaL_checkstring(L, 2);
    lua_CFunction fn = NULL;
    if (strcmp(key, "wait") == 0)
        fn = l_wait;
    else if (strcmp(key, "cancel") == 0)
        fn = l_cancel;
    else if (strcmp(key, "status") == 0)
        fn = l_status;
    if (!fn)
        return 0;
    lua_pushvalue(L, lua_upvalueindex(1)); /* host: upvalue 1 as every binding expects */
    lua_pushvalue(L, 1);
    lua_pushcfunction(L, fn);
    lua_pushcclosure(L, l_bound_method, 3);
    return 1;
}

/* core.task.budget([seconds]) -> the previous budget in seconds (0 = none).
 * A task that runs Lua longer than this without yielding is stopped with an
 * error naming where it was (the host's count hook); 0 turns it off. */
static int l_budget(lua_State *L)
{
    mcp_host *h = mcp_host_upvalue(L);
    lua_pushnumber(L, (lua_Number)h->task_budget_ns / 1e9);
    if (!lua_isnoneornil(L, 1)) {
        lua_Number s = luaL_checknumber(L, 1);
        if (!(s >= 0 && s <= 3600))
            return luaL_argerror(L, 1, "budget must be 0..3600 seconds");
        h->task_budget_ns = (uint64_t)(s * 1e9);
    }
    return 1;
}

int luaopen_mcp_task(lua_State *L)
{
    static const luaL_Reg fns[] = {{"spawn", l_spawn},   {"wait", l_wait},     {"cancel", l_cancel},
                                   {"status", l_status}, {"budget", l_budget}, {NULL, NULL}};
    if (luaL_newmetatable(L, TASK_MT)) {
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_pushcclosure(L, l_task_index, 1);
        lua_setfield(L, -2, "__index");
        mcp_set_cfunction(L, "__tostring", l_task_tostring);
    }
    lua_pop(L, 1);
    mcp_new_lib(L, fns, lua_upvalueindex(1));
    return 1;
}

/* ---- running the main task ---- */

void mcp_sched_spawn(mcp_host *h, int nargs)
{
    lua_State *L = h->L;
    lua_pushlightuserdata(L, h);
    lua_pushcclosure(L, l_spawn, 1);
    lua_insert(L, -(nargs + 2));
    lua_call(L, nargs + 1, 1);
    lua_pop(L, 1); /* the handle: the task keeps itself alive while it runs */
}

void mcp_sched_cancel_all(mcp_host *h)
{
    while (h->live)
        task_cancel(h->live);
}

void mcp_sched_request_cancel_all(mcp_host *h)
{
    for (mcp_task *t = h->live; t; t = t->next_live)
        task_request_cancel(t);
}

int mcp_sched_init(mcp_host *h)
{
    if (uv_idle_init(&h->loop, &h->idle) != 0)
        return -1;
    h->idle.data = h;
    return 0;
}

static void noop_close(uv_handle_t *handle)
{
    (void)handle;
}

void mcp_sched_close(mcp_host *h)
{
    while (h->live)
        task_cancel(h->live);
    uv_close((uv_handle_t *)&h->idle, noop_close);
    /* The caller runs the loop to its end once the Lua state is closed too:
     * servers close when their handles are collected. */
}

mcp_main_outcome mcp_sched_run_main(mcp_host *h, int nargs, int *nres)
{
    lua_State *L = h->L;
    /* stack: fn args… → spawn a task for it through the same path as agent.task.spawn */
    lua_pushlightuserdata(L, h);
    lua_pushcclosure(L, l_spawn, 1);
    lua_insert(L, -(nargs + 2));
    lua_call(L, nargs + 1, 1);
    mcp_task *main = check_task(L, -1);
    int main_idx = lua_gettop(L);

    while (!task_finished(main)) {
        int alive = uv_run(&h->loop, UV_RUN_ONCE);
        if (!alive && !task_finished(main) && !h->ready_head) {
            /* Nothing can ever wake it: every task waits on another. */
            mcp_sched_cancel_all(h);
            lua_remove(L, main_idx);
            lua_pushliteral(L, "deadlock: every task is waiting and nothing can wake them");
            return MCP_MAIN_FAILED;
        }
    }
    /* Tasks the main task left running end with it. */
    while (h->live)
        task_cancel(h->live);

    if (main->state == TASK_DONE) {
        lua_checkstack(L, main->nresults + 1);
        for (int i = 1; i <= main->nresults; i++) {
            lua_pushvalue(main->co, i);
            lua_xmove(main->co, L, 1);
        }
        lua_remove(L, main_idx);
        *nres = main->nresults;
        return MCP_MAIN_DONE;
    }
    if (main->state == TASK_FAILED) {
        lua_pushvalue(main->co, -1);
        lua_xmove(main->co, L, 1);
        lua_remove(L, main_idx);
        return MCP_MAIN_FAILED;
    }
    lua_remove(L, main_idx);
    return MCP_MAIN_CANCELLED;
}
