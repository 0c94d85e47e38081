/* mcp_wait (internal.h): a task parked on an object of a binding (a gRPC
 * call, a stream) until the object has news for it or a timer runs out. The
 * bindings say what detaching means and what a timeout answers; the
 * allocation, the timer and the order of the teardown are here. */
#include <stdlib.h>

#include "internal.h"

static void wait_cancel(mcp_op *op)
{
    mcp_wait_end((mcp_wait *)op); /* the task was cancelled: the scheduler answers it */
}

static void wait_timer_cb(uv_timer_t *timer)
{
    mcp_wait *w = timer->data;
    if (w->obj)
        w->timed_out(w);
}

static void wait_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

void *mcp_wait_new(lua_State *L, size_t size, void *obj, uv_loop_t *loop, lua_Number timeout_s,
                   void (*detach)(mcp_wait *w), void (*timed_out)(mcp_wait *w))
{
    mcp_wait *w = mcp_op_new(L, size, wait_cancel);
    w->obj = obj;
    w->detach = detach;
    w->timed_out = timed_out;
    if (timeout_s >= 0) {
        w->has_timer = true;
        uv_timer_init(loop, &w->timer);
        w->timer.data = w;
        lua_Number ms = timeout_s * 1000.0 + 0.5;
        uv_timer_start(&w->timer, wait_timer_cb, ms > 1e12 ? (uint64_t)1e12 : (uint64_t)ms, 0);
    }
    return w;
}

mcp_task *mcp_wait_end(mcp_wait *w)
{
    mcp_task *t = w->op.task;
    if (w->obj) {
        w->detach(w);
        w->obj = NULL;
    }
    if (w->has_timer)
        uv_close((uv_handle_t *)&w->timer, wait_closed_cb); /* stops it too */
    else
        free(w);
    return t;
}
