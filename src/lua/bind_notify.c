/* core.notify: the daemon's word to systemd (mcp/notify.h), and the
 * watchdog. When systemd asked for one (WATCHDOG_USEC), a timer on the event
 * loop sends WATCHDOG=1 every half interval: it fires only while the loop
 * turns, so Lua that wedges the loop stops the pings and systemd restarts
 * the agent. The timer does not keep the loop alive.
 *
 *   core.notify.ready([status]) -> sent     READY=1 (boot done, reload done)
 *   core.notify.status(text)    -> sent     STATUS=text (one line)
 *   core.notify.reloading()     -> sent     RELOADING=1
 *   core.notify.stopping()      -> sent     STOPPING=1
 *   core.notify.watchdog_interval() -> seconds between pings, or nil
 * sent is true, or false without NOTIFY_SOCKET; nil, "send failed", detail
 * when the socket refused the message. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mcp/log.h"
#include "mcp/notify.h"

#define WATCHDOG_KEY "mcp.notify.watchdog"

static int push_sent(lua_State *L, int rc)
{
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "send failed");
        lua_pushstring(L, strerror(-rc));
        return 3;
    }
    lua_pushboolean(L, rc > 0);
    return 1;
}

static int l_ready(lua_State *L)
{
    return push_sent(L, mcp_notify_ready(luaL_optstring(L, 1, NULL)));
}

static int l_status(lua_State *L)
{
    return push_sent(L, mcp_notify_status(luaL_checkstring(L, 1)));
}

static int l_reloading(lua_State *L)
{
    return push_sent(L, mcp_notify_reloading());
}

static int l_stopping(lua_State *L)
{
    return push_sent(L, mcp_notify_stopping());
}

typedef struct watchdog {
    uv_timer_t *timer; /* freed by its close callback */
    uint64_t interval_ms;
} watchdog;

static void on_watchdog(uv_timer_t *t)
{
    if (mcp_notify_watchdog() < 0)
        mcp_log(MCP_LOG_WARN, "cannot send WATCHDOG=1 to systemd", NULL);
}

static void free_timer(uv_handle_t *h)
{
    free(h);
}

/* __gc of the watchdog: lua_close runs it before the host drains the loop. */
static int watchdog_gc(lua_State *L)
{
    watchdog *w = lua_touserdata(L, 1);
    if (w->timer) {
        uv_timer_stop(w->timer);
        uv_close((uv_handle_t *)w->timer, free_timer);
        w->timer = NULL;
    }
    return 0;
}

/* Starts the watchdog timer once per host when systemd asked for one. */
static void start_watchdog(lua_State *L, mcp_host *h)
{
    uint64_t usec = mcp_notify_watchdog_usec();
    if (usec == 0)
        return;
    bool running = lua_getfield(L, LUA_REGISTRYINDEX, WATCHDOG_KEY) != LUA_TNIL;
    lua_pop(L, 1);
    if (running)
        return;
    watchdog *w = lua_newuserdatauv(L, sizeof *w, 0);
    w->timer = NULL;
    w->interval_ms = usec / 2000 > 0 ? usec / 2000 : 1;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, watchdog_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, WATCHDOG_KEY);
    uv_timer_t *t = malloc(sizeof *t);
    if (!t || uv_timer_init(&h->loop, t) != 0) {
        free(t);
        mcp_log(MCP_LOG_ERROR, "cannot start the systemd watchdog timer", NULL);
        return;
    }
    w->timer = t;
    if (uv_timer_start(t, on_watchdog, 0, w->interval_ms) != 0)
        mcp_log(MCP_LOG_ERROR, "cannot start the systemd watchdog timer", NULL);
    uv_unref((uv_handle_t *)t);
}

static int l_watchdog_interval(lua_State *L)
{
    uint64_t usec = mcp_notify_watchdog_usec();
    if (usec == 0)
        return 0;
    lua_pushnumber(L, (lua_Number)usec / 2e6);
    return 1;
}

int luaopen_mcp_notify(lua_State *L)
{
    mcp_host *h = lua_touserdata(L, lua_upvalueindex(1));
    start_watchdog(L, h);
    static const luaL_Reg fns[] = {
        {"ready", l_ready},
        {"status", l_status},
        {"reloading", l_reloading},
        {"stopping", l_stopping},
        {"watchdog_interval", l_watchdog_interval},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
