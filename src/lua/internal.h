/* Internals shared by the Lua host and its binding files. Only src/lua/
 * includes lua.h. */
#ifndef MCP_LUA_INTERNAL_H
#define MCP_LUA_INTERNAL_H

#include <limits.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <uv.h>

#include "mcp/config.h"
#include "mcp/http.h"
#include "mcp/host.h"
#include "mcp/podman.h"
#include "mcp/registry.h"

/* Takes the first node of the singly linked queue head..tail (lvalues, not
 * empty; see MCP_QUEUE_APPEND) into node, linked through its member next. */
#define MCP_QUEUE_TAKE(head, tail, node, next)                                                     \
    do {                                                                                           \
        (node) = (head);                                                                           \
        (head) = (node)->next;                                                                     \
        if (!(head))                                                                               \
            (tail) = NULL;                                                                         \
    } while (0)

typedef struct mcp_task mcp_task;
typedef struct mcp_op mcp_op;

/* A pending operation of a suspended task (a timer, a child process, a wait
 * on another task). The task is suspended in lua_yield until the operation
 * completes and wakes it with its results pushed on the task's stack. */
struct mcp_op {
    mcp_task *task;             /* NULL once detached: the task was cancelled */
    void (*cancel)(mcp_op *op); /* stop the operation; its completion then only frees */
    void *req;                  /* the core's request handle, which cancel stops */
};

struct mcp_host {
    lua_State *L;
    uv_loop_t loop;
    bool loop_ready;
    bool sched_ready;
    const mcp_config *cfg;
    mcp_registry *reg;
    mcp_podman_cfg podman;
    bool events_file_believed; /* an events stream found podman's events file true */
    mcp_http *http; /* made on first use (probes, proxy, CA) */
    bool dry_run;
    const char *config_path;
    char lua_dir[PATH_MAX];
    char builtin_policy_dir[PATH_MAX];
    const char *paths_origin; /* how they were found (mcp_host_paths.origin) */

    /* scheduler */
    mcp_task *current;                 /* the task now running, or NULL */
    mcp_task *ready_head, *ready_tail; /* tasks to resume on the next loop turn */
    mcp_task *live;                    /* every task not yet finished */
    uv_idle_t idle;                    /* runs the ready queue */
    uint64_t slice_start_ns;           /* uv_hrtime() when the running task was resumed */
    uint64_t task_budget_ns;           /* Lua time a task may run without yielding; 0 = none */
    uv_async_t sig_async;              /* woken by the signal handler (signals.c) */
    bool signals_armed;
    int stop_signal;              /* the SIGINT/SIGTERM received, 0 = none */
    int stop_count;               /* how many of them: a second one forces the stop */
    struct sig_wait *sig_waiters; /* tasks in core.signals.wait() */
};

/* --- scheduler (task.c); host.c sets it up after the loop, before signals --- */
int mcp_sched_init(mcp_host *h);
/* Closes every live task and the scheduler's handles. */
void mcp_sched_close(mcp_host *h);
/* The running task of L, or raises a Lua error when L is not a task's own
 * thread (e.g. the main state, or a coroutine created by the policy itself). */
mcp_task *mcp_task_require(lua_State *L, const char *what);
/* Parks the running task on op; the caller then returns lua_yield(L, 0). */
void mcp_task_suspend(mcp_task *t, mcp_op *op);
/* The task's thread, to push results on before mcp_task_wake. */
lua_State *mcp_task_thread(mcp_task *t);
/* Clears t's pending op and queues t to resume with nargs values already pushed. */
void mcp_task_wake(mcp_task *t, int nargs);
/* Completes op: when a task still waits on it, push(thread, res) pushes what
 * the task wakes with and returns the count. Returns whether a task woke. */
bool mcp_op_complete(mcp_op *op, int (*push)(lua_State *co, const void *res), const void *res);
/* A zeroed operation of size bytes (a struct whose first member is the
 * mcp_op) that cancel stops; raises when out of memory. */
void *mcp_op_new(lua_State *L, size_t size, void (*cancel)(mcp_op *op));
/* mcp_op_complete, then frees op: the first member of a struct from malloc,
 * as the bindings' ops are (the end of the operation's callback). */
void mcp_op_done(mcp_op *op, int (*push)(lua_State *co, const void *res), const void *res);
/* Parks the running task t on op and yields it: `return mcp_op_wait(L, t, op);`. */
int mcp_op_wait(lua_State *L, mcp_task *t, mcp_op *op);
/* The end of a binding that started a request: waits on op when op->req is
 * set, else frees op and returns nil, reason, detail. */
int mcp_op_wait_or_fail(lua_State *L, mcp_task *t, mcp_op *op, const char *reason,
                        const char *detail);
/* A task's wait on an object of a binding (a call, a stream) that news of
 * the object or a timer ends; the first member of the binding's own struct. */
typedef struct mcp_wait mcp_wait;
struct mcp_wait {
    mcp_op op;
    void *obj;                      /* what the task waits on; NULL once the wait ended */
    void (*detach)(mcp_wait *w);    /* makes obj forget w */
    void (*timed_out)(mcp_wait *w); /* the timer ran out: end w, wake its task with the answer */
    bool has_timer;
    uv_timer_t timer;
};
/* A wait of size bytes on obj, with a timer on loop of timeout_s seconds
 * (none when < 0; at most 1e12 ms); cancelling its task ends it. Raises when
 * out of memory. The caller then parks the running task on its op. */
void *mcp_wait_new(lua_State *L, size_t size, void *obj, uv_loop_t *loop, lua_Number timeout_s,
                   void (*detach)(mcp_wait *w), void (*timed_out)(mcp_wait *w));
/* Ends w: detaches it from obj, stops its timer and frees it. Returns the
 * task that waited, to wake with the answer, or NULL (it was cancelled). */
mcp_task *mcp_wait_end(mcp_wait *w);
/* How the main task ended. */
typedef enum mcp_main_outcome {
    MCP_MAIN_DONE,      /* its results (nres) are on h->L */
    MCP_MAIN_FAILED,    /* an error message (traceback included) is on h->L */
    MCP_MAIN_CANCELLED, /* nothing pushed: the host says why (the stop signal) */
} mcp_main_outcome;
/* Runs the function on h->L below its nargs arguments as the main task
 * until it ends. */
mcp_main_outcome mcp_sched_run_main(mcp_host *h, int nargs, int *nres);
int luaopen_mcp_task(lua_State *L); /* upvalue 1: mcp_host light userdata */
/* Spawns the function below nargs arguments on h->L as a new task (popping
 * them), from C code outside any task (e.g. a server callback). */
void mcp_sched_spawn(mcp_host *h, int nargs);
/* Closes every live task at once. */
void mcp_sched_cancel_all(mcp_host *h);
/* Asks every live task to stop: their waits return nil, "cancelled" so they
 * can wind down and report (the stop path when nobody handles signals). */
void mcp_sched_request_cancel_all(mcp_host *h);

/* --- signals (signals.c); host.c sets them up after the scheduler --- */
/* Installs SIGINT/SIGTERM/SIGHUP handlers that wake the loop. A task waiting
 * in core.signals.wait() receives them; with none waiting, SIGINT/SIGTERM
 * ask every task to stop and a second one closes them all; SIGHUP is ignored. */
int mcp_signals_init(mcp_host *h);
void mcp_signals_close(mcp_host *h);
/* The first SIGINT/SIGTERM received (0 = none) and, when there was one, how
 * long ago in *ns. Safe to call from a Lua hook. */
int mcp_signals_stop_age(int64_t *ns);
const char *mcp_signal_name(int sig);  /* "SIGTERM", "SIGINT", "SIGHUP" */
int luaopen_mcp_signals(lua_State *L); /* upvalue: host */
int luaopen_mcp_clock(lua_State *L);   /* upvalue 1: mcp_host light userdata */

/* --- bindings --- */
int luaopen_mcp_log(lua_State *L);
int luaopen_mcp_registry(lua_State *L); /* upvalue: host */
int luaopen_mcp_podman(lua_State *L);   /* upvalue: host */
int luaopen_mcp_probe(lua_State *L);    /* upvalue: host */
int luaopen_mcp_api(lua_State *L);      /* upvalue: host */
int luaopen_mcp_proxy(lua_State *L);    /* upvalue: host */
int luaopen_mcp_certs(lua_State *L);    /* upvalue: host */
/* The host's http client (host.c), created on first use; raises on failure. */
mcp_http *mcp_host_http(lua_State *L, mcp_host *h);
int luaopen_mcp_http(lua_State *L);
int luaopen_mcp_hash(lua_State *L); /* bind_hash.c */
int luaopen_mcp_notify(lua_State *L); /* upvalue: host; starts the systemd watchdog */
int luaopen_mcp_metrics(lua_State *L); /* upvalue: host; bind_metrics.c */

/* bind_exec.c: foreground children of a command (test, check --lint) */
int luaopen_mcp_exec(lua_State *L);

/* --- conversions (convert.c) --- */
void mcp_push_strv(lua_State *L, const mcp_strv *sv);
/* An array of the n items laid out size bytes apart, each pushed by push. */
void mcp_push_array(lua_State *L, const void *items, size_t n, size_t size,
                    void (*push)(lua_State *L, const void *item));
/* The expected-failure answers: nil, reason, detail (3) and nil, reason (2). */
int mcp_push_failure(lua_State *L, const char *reason, const char *detail);
int mcp_push_reason(lua_State *L, const char *reason);
/* Reads field `key` of the table at idx as an array of strings; raises on wrong types. */
void mcp_check_strv_field(lua_State *L, int idx, const char *key, mcp_strv *out);
/* Optional string field; NULL when absent; raises on wrong type. Returns a fresh copy. */
char *mcp_opt_string_field(lua_State *L, int idx, const char *key);
void mcp_set_string(lua_State *L, const char *key,
                    const char *val); /* t[key]=val on top table, skipped when NULL */
void mcp_set_int(lua_State *L, const char *key, lua_Integer val);
void mcp_set_number(lua_State *L, const char *key, lua_Number val);
void mcp_set_bool(lua_State *L, const char *key, bool val);

/* --- struct -> table by a table of fields (fields.c) --- */
typedef enum mcp_field_kind {
    MCP_F_STRING, /* char *: left out when NULL */
    MCP_F_INT,    /* int */
    MCP_F_INT64,  /* int64_t */
    MCP_F_BOOL,   /* bool */
    MCP_F_NUMBER, /* double */
    MCP_F_STRV,   /* mcp_strv, as an array of strings */
} mcp_field_kind;
/* flags of a field */
#define MCP_F_OMIT_ZERO 1u  /* left out when 0, false, "" or empty: the member's "unset" */
#define MCP_F_NULL_EMPTY 2u /* a NULL string is pushed as "" */
#define MCP_F_MS 4u         /* an int64_t of milliseconds, pushed as seconds */
typedef struct mcp_field {
    const char *key;
    mcp_field_kind kind;
    size_t offset;     /* of the member */
    unsigned flags;    /* MCP_F_* */
    size_t has_offset; /* 1 + offset of the bool that says the member is set; 0: always */
} mcp_field;
/* The kind of a member, from its C type: any other type does not compile. */
#define MCP_FIELD_KIND(T, m)                                                                       \
    _Generic(((T *)0)->m, char *: MCP_F_STRING, int: MCP_F_INT, int64_t: MCP_F_INT64,             \
             bool: MCP_F_BOOL, double: MCP_F_NUMBER, mcp_strv: MCP_F_STRV)
/* t["m"] = member m of a T; _F with flags; _AS under a key named otherwise. */
#define MCP_FIELD(T, m) MCP_FIELD_AS(#m, T, m, 0)
#define MCP_FIELD_F(T, m, flags) MCP_FIELD_AS(#m, T, m, flags)
#define MCP_FIELD_AS(key, T, m, flags) {(key), MCP_FIELD_KIND(T, m), offsetof(T, m), (flags), 0}
/* t["m"] = member m of a T only when its bool member has is true. */
#define MCP_FIELD_IF(T, m, has)                                                                    \
    {#m, MCP_FIELD_KIND(T, m), offsetof(T, m), 0,                                                  \
     offsetof(T, has) + 1 + 0 * sizeof(_Generic(((T *)0)->has, bool: 1))}
#define MCP_N_FIELDS(a) (sizeof(a) / sizeof((a)[0]))
/* Sets the n fields of obj on the table on top. */
void mcp_set_fields(lua_State *L, const void *obj, const mcp_field *fields, size_t n);
/* Pushes a new table of the n fields of obj. */
void mcp_push_fields(lua_State *L, const void *obj, const mcp_field *fields, size_t n);
/* An array of the n structs at items, size bytes apart, each a table of its nf fields. */
void mcp_push_fields_array(lua_State *L, const void *items, size_t n, size_t size,
                           const mcp_field *fields, size_t nf);
/* t[key] = a new table of the n fields of obj, on the table t on top. */
void mcp_set_fields_table(lua_State *L, const char *key, const void *obj, const mcp_field *fields,
                          size_t n);

/* --- argument checks (check_args.c): misuse raises luaL_argerror naming `what` --- */
/* A string (not a number) with no NUL inside, at most 4096 bytes. */
const char *mcp_check_text(lua_State *L, int idx, const char *what);
const char *mcp_opt_text(lua_State *L, int idx, const char *what); /* NULL for none/nil */
/* A service or component name as in service files (mcp_name_valid). */
const char *mcp_check_name(lua_State *L, int idx, const char *what);
const char *mcp_opt_name(lua_State *L, int idx, const char *what);
/* A container name or id: podman's rule, at most 127 characters. */
const char *mcp_check_container(lua_State *L, int idx, const char *what);
/* An image reference: no spaces or control characters, no leading '-', at most 1024. */
const char *mcp_check_image(lua_State *L, int idx, const char *what);
/* spec.name (a container name) and spec.image of the table argument arg, when present. */
void mcp_check_spec_names(lua_State *L, int arg);

mcp_host *mcp_host_upvalue(lua_State *L);
/* A new table of fns, each with the value at host_idx (the host) as upvalue 1. */
void mcp_new_lib(lua_State *L, const luaL_Reg *fns, int host_idx);
void mcp_set_cfunction(lua_State *L, const char *key, lua_CFunction fn); /* t[key]=fn, top table */
/* Makes the metatable name once: methods (NULL: none; each with the value at
 * host_idx as upvalue 1) as __index, and the metamethods meta (NULL: none).
 * Leaves the stack as it was. */
void mcp_new_metatable(lua_State *L, const char *name, const luaL_Reg *methods, int host_idx,
                       const luaL_Reg *meta);

/* --- policies (policy.c) --- */
/* Installs the searcher that loads policy modules (StrictModes, text only, own _ENV). */
void mcp_policy_install_searcher(lua_State *L, mcp_host *h);
/* Checks a policy file may be loaded: not writable by group or others, owned by root or us. */
int mcp_policy_check_file(const char *path, char *why, size_t whylen);

#endif
