/* Child processes on the event loop: argv exec (never a shell), captured
 * output, a hard timeout, and cancellation. */
#ifndef MCP_PROC_H
#define MCP_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "mcp/error.h"

/* Output caps: what goes beyond them is read and dropped (truncated = true). */
#define MCP_PROC_OUT_CAP ((size_t)16 << 20)
#define MCP_PROC_ERR_CAP ((size_t)1 << 20)
/* Between SIGTERM and SIGKILL, and how long pipes held by an escaped process
 * are waited for after SIGKILL. */
#define MCP_PROC_KILL_GRACE_MS 2000

typedef struct mcp_proc_result {
    int exit_status;  /* when term_signal == 0 */
    int term_signal;  /* nonzero when killed by a signal (also after a timeout) */
    bool timed_out;   /* the timeout fired and the child was killed */
    bool cancelled;   /* mcp_proc_cancel was called */
    char *out;        /* stdout, NUL-terminated (capped at 16 MiB; see truncated) */
    size_t out_len;
    char *err;        /* stderr, NUL-terminated (capped at 1 MiB) */
    size_t err_len;
    bool truncated;
    int64_t elapsed_ms;
} mcp_proc_result;

typedef struct mcp_proc mcp_proc;

/* Called once, on the loop, after the child has exited and its pipes are
 * drained. res and its buffers belong to the proc module and are freed after
 * the callback returns; the mcp_proc handle is invalid after it too. */
typedef void (*mcp_proc_cb)(const mcp_proc_result *res, void *ud);

/* Starts argv[0] (looked up in PATH) with argv; stdin is /dev/null. The child
 * leads its own process group (session). After timeout_ms (<= 0: no deadline)
 * the group gets SIGTERM, and SIGKILL 2 s later; pipes still held open 2 s
 * after that are abandoned so cb always comes. argv is not kept: it may be
 * freed as soon as this returns. Returns a handle,
 * or NULL with err set when the process cannot be started (e.g.
 * "podman: executable not found in PATH"); cb is then never called. */
mcp_proc *mcp_proc_spawn(uv_loop_t *loop, char *const argv[], int64_t timeout_ms, mcp_proc_cb cb,
                         void *ud, mcp_error *err);

/* Kills the child (SIGKILL); cb still runs once, with cancelled = true.
 * Safe to call once the handle was returned and before cb ran. */
void mcp_proc_cancel(mcp_proc *p);

/* Runs argv to completion on a private loop. Fills res (free with
 * mcp_proc_result_free). Returns 0 when the process ran (whatever its exit
 * status), -1 with err set when it could not be started. */
int mcp_proc_run(char *const argv[], int64_t timeout_ms, mcp_proc_result *res, mcp_error *err);
void mcp_proc_result_free(mcp_proc_result *res);

/* ---- long-lived children, read line by line ---------------------------- */

/* Stderr kept to explain a stream child's exit: its last bytes. */
#define MCP_PROC_STREAM_ERR_TAIL ((size_t)4096)

typedef struct mcp_proc_stream mcp_proc_stream;

/* One complete stdout line, without its '\n' (a trailing '\r' is kept);
 * line is NUL-terminated and only valid during the call. */
typedef void (*mcp_proc_line_cb)(const char *line, size_t len, void *ud);

typedef struct mcp_proc_stream_end {
    int exit_status;      /* when term_signal == 0 */
    int term_signal;      /* nonzero when killed by a signal */
    const char *err_tail; /* the last MCP_PROC_STREAM_ERR_TAIL bytes of stderr, NUL-terminated */
    size_t err_len;
    size_t dropped_lines; /* lines longer than max_line, dropped whole */
} mcp_proc_stream_end;

/* The child ended on its own and its pipes are drained (or were abandoned
 * 2 s after it exited, when an escaped process still held them). end is only
 * valid during the call. */
typedef void (*mcp_proc_stream_exit_cb)(const mcp_proc_stream_end *end, void *ud);

/* Starts argv[0] (PATH lookup, no shell) in its own process group with stdin
 * /dev/null, and calls on_line for each stdout line as it arrives. Lines
 * longer than max_line bytes (0: 64 KiB) are dropped and counted. on_exit
 * comes at most once, when the child ended by itself; never after
 * mcp_proc_stream_close. argv is not kept. Returns a handle, or NULL with err
 * set (then no callback ever comes). */
mcp_proc_stream *mcp_proc_stream_spawn(uv_loop_t *loop, char *const argv[], size_t max_line,
                                       mcp_proc_line_cb on_line, mcp_proc_stream_exit_cb on_exit,
                                       void *ud, mcp_error *err);

/* Ends the stream: SIGKILLs the child's process group if it still runs and
 * stops every callback at once (none comes after this returns, even when
 * called from inside one). The handle is invalid afterwards; its memory is
 * released once the loop has reaped the child and closed the pipes, so the
 * loop must keep running a little (a closing loop does). Call exactly once
 * per handle, whether or not on_exit came. */
void mcp_proc_stream_close(mcp_proc_stream *s);

/* Lines dropped so far for being longer than max_line. */
size_t mcp_proc_stream_dropped(const mcp_proc_stream *s);

/* The child's pid (its process group id too). */
int mcp_proc_stream_pid(const mcp_proc_stream *s);

#endif
