/* Signals: SIGINT, SIGTERM and SIGHUP reach the loop through a uv_async
 * (async-signal-safe) from a plain sigaction handler, which also records
 * when the stop was asked for: Lua code that spins without yielding never
 * lets the loop run, so the host's count hook (host.c) asks
 * mcp_signals_stop_age and stops it once it has ignored a stop signal for a
 * second. Uses the scheduler (task.c); nothing here is called back by it. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "mcp/log.h"

static mcp_host *g_host;              /* the one host whose loop the handler wakes */
static volatile sig_atomic_t g_stop;  /* last SIGINT/SIGTERM, 0 = none */
static volatile sig_atomic_t g_stops; /* how many arrived */
static volatile sig_atomic_t g_hup;
static volatile sig_atomic_t g_stop_sec, g_stop_nsec; /* when the first stop arrived */

typedef struct sig_wait {
    mcp_op op;
    struct sig_wait *next;
} sig_wait;

static const char *sig_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "?";
}

static void on_os_signal(int sig)
{
    int saved = errno;
    if (sig == SIGHUP) {
        g_hup = 1;
    } else {
        if (!g_stop) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts); /* async-signal-safe */
            g_stop_sec = (sig_atomic_t)ts.tv_sec;
            g_stop_nsec = (sig_atomic_t)ts.tv_nsec;
        }
        g_stop = sig;
        g_stops++;
    }
    if (g_host)
        uv_async_send(&g_host->sig_async);
    errno = saved;
}

int mcp_signals_stop_age(int64_t *ns)
{
    int sig = g_stop;
    if (!sig)
        return 0;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    *ns = ((int64_t)now.tv_sec - g_stop_sec) * 1000000000LL + ((int64_t)now.tv_nsec - g_stop_nsec);
    return sig;
}

const char *mcp_signal_name(int sig)
{
    return sig_name(sig);
}

static int push_name(lua_State *co, const void *name)
{
    lua_pushstring(co, name);
    return 1;
}

/* Hands sig to every waiting task; returns how many there were. */
static int deliver(mcp_host *h, int sig)
{
    int n = 0;
    sig_wait *w = h->sig_waiters;
    h->sig_waiters = NULL;
    while (w) {
        sig_wait *next = w->next;
        if (mcp_op_complete(&w->op, push_name, sig_name(sig)))
            n++;
        free(w);
        w = next;
    }
    return n;
}

static void on_async(uv_async_t *async)
{
    mcp_host *h = async->data;
    if (g_hup) {
        g_hup = 0;
        if (deliver(h, SIGHUP) == 0)
            mcp_log(MCP_LOG_INFO, "SIGHUP ignored: nothing to reload", NULL);
    }
    int stops = g_stops;
    if (g_stop && stops > h->stop_count) {
        int sig = g_stop;
        bool first = h->stop_count == 0;
        h->stop_count = stops;
        h->stop_signal = sig;
        /* A waiting task (the daemon) stops gracefully; with nobody waiting
         * every task is asked to wind down; a second signal closes them all. */
        if (first && deliver(h, sig) > 0)
            return;
        if (first) {
            mcp_log(MCP_LOG_WARN, "signal received: cancelling tasks", "signal", sig_name(sig),
                    NULL);
            mcp_sched_request_cancel_all(h);
        } else {
            mcp_log(MCP_LOG_WARN, "second signal: stopping now", "signal", sig_name(sig), NULL);
            mcp_sched_cancel_all(h);
        }
    }
}

int mcp_signals_init(mcp_host *h)
{
    if (uv_async_init(&h->loop, &h->sig_async, on_async) != 0)
        return -1;
    h->sig_async.data = h;
    uv_unref((uv_handle_t *)&h->sig_async); /* signals never keep the loop alive */
    g_host = h;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_os_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0 ||
        sigaction(SIGHUP, &sa, NULL) != 0)
        return -1;
    h->signals_armed = true;
    return 0;
}

static void async_closed(uv_handle_t *handle)
{
    (void)handle;
}

void mcp_signals_close(mcp_host *h)
{
    if (h->signals_armed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        h->signals_armed = false;
    }
    if (g_host == h)
        g_host = NULL;
    sig_wait *w = h->sig_waiters;
    h->sig_waiters = NULL;
    while (w) {
        sig_wait *next = w->next;
        free(w);
        w = next;
    }
    if (h->sig_async.data) { /* set once uv_async_init succeeded */
        h->sig_async.data = NULL;
        uv_close((uv_handle_t *)&h->sig_async, async_closed);
    }
}

static void wait_cancel(mcp_op *op)
{
    mcp_host *h = g_host;
    for (sig_wait **p = h ? &h->sig_waiters : NULL; p && *p; p = &(*p)->next) {
        if (&(*p)->op == op) {
            sig_wait *w = *p;
            *p = w->next;
            free(w);
            return;
        }
    }
}

/* core.signals.wait() -> "SIGTERM" | "SIGINT" | "SIGHUP": suspends the task
 * until one arrives. While a task waits here, a first SIGINT/SIGTERM goes to
 * it instead of cancelling every task (the daemon's graceful stop). */
static int l_wait(lua_State *L)
{
    mcp_task *t = mcp_task_require(L, "signals.wait");
    mcp_host *h = mcp_host_upvalue(L);
    sig_wait *w = mcp_op_new(L, sizeof *w, wait_cancel);
    w->next = h->sig_waiters;
    h->sig_waiters = w;
    mcp_task_suspend(t, &w->op);
    return lua_yield(L, 0);
}

/* core.signals.stopping() -> the stop signal's name, or nil. */
static int l_stopping(lua_State *L)
{
    mcp_host *h = mcp_host_upvalue(L);
    if (!h->stop_signal)
        return 0;
    lua_pushstring(L, sig_name(h->stop_signal));
    return 1;
}

int luaopen_mcp_signals(lua_State *L)
{
    static const luaL_Reg fns[] = {{"wait", l_wait}, {"stopping", l_stopping}, {NULL, NULL}};
    mcp_new_lib(L, fns, lua_upvalueindex(1));
    return 1;
}
