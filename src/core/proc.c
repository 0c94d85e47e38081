/* Child processes on libuv: argv exec in its own process group, captured
 * stdout/stderr with caps, a timeout (SIGTERM, then SIGKILL), cancellation,
 * and one callback once the child is gone and its pipes are drained. */
#include "mcp/proc.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mcp/lines.h"
#include "mcp/util.h"

#define MCP_PROC_READ_CHUNK 65536

/* One captured stream: the pipe, its buffer and whether EOF was seen. */
typedef struct proc_stream {
    uv_pipe_t pipe;
    bool open;  /* uv_close not yet requested */
    bool done;  /* EOF, error or forced close */
    char *buf;
    size_t len, cap, limit;
    char chunk[MCP_PROC_READ_CHUNK];
    struct mcp_proc *owner;
} proc_stream;

/* Where the child stands in the kill sequence. */
enum proc_kill_stage { KILL_NONE, KILL_TERM_SENT, KILL_KILL_SENT };

struct mcp_proc {
    uv_loop_t *loop;
    uv_process_t process;
    uv_timer_t timer; /* the deadline, then the kill grace, then the drain grace */
    proc_stream out, err;
    int pid;
    bool exited, finished, keep_buffers, spawn_failed;
    enum proc_kill_stage kill_stage;
    int open_handles; /* handles whose close callback is still due */
    int64_t started_ms;
    mcp_proc_cb cb;
    void *ud;
    mcp_proc_result res;
};

static void proc_maybe_finish(mcp_proc *p);

/* ---- memory and teardown ------------------------------------------------ */

static void proc_free(mcp_proc *p)
{
    if (!p->keep_buffers) {
        free(p->out.buf);
        free(p->err.buf);
    }
    free(p);
}

static void proc_on_handle_closed(uv_handle_t *h)
{
    mcp_proc *p = h->data;
    if (--p->open_handles == 0 && (p->finished || p->spawn_failed))
        proc_free(p);
}

static void proc_close_handle(mcp_proc *p, uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        h->data = p;
        uv_close(h, proc_on_handle_closed);
    }
}

static void stream_close(proc_stream *s)
{
    s->done = true;
    if (s->open) {
        s->open = false;
        uv_read_stop((uv_stream_t *)&s->pipe);
        proc_close_handle(s->owner, (uv_handle_t *)&s->pipe);
    }
}

/* ---- signals ------------------------------------------------------------- */

/* Signals the whole process group: the child was made a session leader, so
 * grandchildren (a shell script's sleep, say) go down with it. */
static void proc_signal_group(mcp_proc *p, int sig)
{
    if (p->pid <= 0)
        return;
    if (kill(-p->pid, sig) != 0 && !p->exited)
        kill(p->pid, sig); /* group gone or not ours yet: at least the child */
}

static void proc_on_timer(uv_timer_t *t);

static void proc_arm_timer(mcp_proc *p, int64_t ms)
{
    uv_timer_stop(&p->timer);
    uv_timer_start(&p->timer, proc_on_timer, (uint64_t)(ms > 0 ? ms : 0), 0);
}

static void proc_send_kill(mcp_proc *p)
{
    proc_signal_group(p, SIGKILL);
    p->kill_stage = KILL_KILL_SENT;
    /* A process that left the group may still hold the pipes: give up on
     * them after the grace so the callback always comes. */
    proc_arm_timer(p, MCP_PROC_KILL_GRACE_MS);
}

static void proc_on_timer(uv_timer_t *t)
{
    mcp_proc *p = t->data;
    switch (p->kill_stage) {
    case KILL_NONE:
        p->res.timed_out = true;
        proc_signal_group(p, SIGTERM);
        p->kill_stage = KILL_TERM_SENT;
        proc_arm_timer(p, MCP_PROC_KILL_GRACE_MS);
        break;
    case KILL_TERM_SENT:
        proc_send_kill(p);
        break;
    case KILL_KILL_SENT:
        stream_close(&p->out);
        stream_close(&p->err);
        proc_maybe_finish(p);
        break;
    }
}

/* ---- pipes --------------------------------------------------------------- */

static void stream_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    proc_stream *s = h->data;
    buf->base = s->chunk;
    buf->len = sizeof s->chunk;
}

/* Appends what fits under the cap; the rest is read and dropped so the child
 * never blocks on a full pipe. Returns -1 when out of memory. */
static int stream_append(proc_stream *s, const char *data, size_t n, bool *truncated)
{
    size_t room = s->limit - s->len;
    if (n > room) {
        *truncated = true;
        n = room;
    }
    if (n == 0)
        return 0;
    return mcp_bytes_append(&s->buf, &s->len, &s->cap, data, n, 4096, s->limit + 1);
}

static void stream_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    proc_stream *s = st->data;
    mcp_proc *p = s->owner;
    if (nread > 0) {
        if (stream_append(s, buf->base, (size_t)nread, &p->res.truncated) != 0)
            p->res.truncated = true; /* out of memory: keep what we have */
        return;
    }
    if (nread == 0) /* EAGAIN */
        return;
    stream_close(s); /* UV_EOF or a read error: either way the stream is over */
    proc_maybe_finish(p);
}

/* ---- completion ---------------------------------------------------------- */

static void proc_fill_result_buffers(mcp_proc *p)
{
    /* Empty streams still give NUL-terminated strings; a synchronous caller
     * owns them, so they must be its own allocation (NULL only when out of
     * memory, which mcp_proc_run reports). */
    static char empty[1] = "";
    if (p->keep_buffers) {
        if (!p->out.buf)
            p->out.buf = calloc(1, 1);
        if (!p->err.buf)
            p->err.buf = calloc(1, 1);
        p->res.out = p->out.buf;
        p->res.err = p->err.buf;
    } else {
        p->res.out = p->out.buf ? p->out.buf : empty;
        p->res.err = p->err.buf ? p->err.buf : empty;
    }
    p->res.out_len = p->out.len;
    p->res.err_len = p->err.len;
}

static void proc_maybe_finish(mcp_proc *p)
{
    if (p->finished || !p->exited || !p->out.done || !p->err.done)
        return;
    p->finished = true;
    uv_timer_stop(&p->timer);
    p->res.elapsed_ms = mcp_now_ms() - p->started_ms;
    proc_fill_result_buffers(p);
    p->cb(&p->res, p->ud);
    proc_close_handle(p, (uv_handle_t *)&p->timer);
    proc_close_handle(p, (uv_handle_t *)&p->process);
}

static void proc_on_exit(uv_process_t *proc, int64_t exit_status, int term_signal)
{
    mcp_proc *p = proc->data;
    p->exited = true;
    p->res.exit_status = (int)exit_status;
    p->res.term_signal = term_signal;
    proc_maybe_finish(p);
}

/* ---- spawning ------------------------------------------------------------ */

/* Finds argv0 the way execvp would, so a missing or unusable binary gets a
 * clear message before any handle exists. Returns a malloc'd path or NULL
 * with err set. */
static char *proc_resolve(const char *argv0, mcp_error *err)
{
    if (!argv0 || !*argv0) {
        mcp_error_set(err, "empty command");
        return NULL;
    }
    struct stat st;
    if (strchr(argv0, '/')) {
        if (stat(argv0, &st) != 0) {
            mcp_error_set(err, "%s: executable not found", argv0);
            return NULL;
        }
        if (S_ISDIR(st.st_mode) || access(argv0, X_OK) != 0) {
            mcp_error_set(err, "%s: not executable (permission denied)", argv0);
            return NULL;
        }
        char *copy = mcp_strdup(argv0);
        if (!copy)
            mcp_error_set(err, "%s: out of memory", argv0);
        return copy;
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    bool denied = false;
    for (const char *dir = path; dir;) {
        const char *colon = strchr(dir, ':');
        size_t dlen = colon ? (size_t)(colon - dir) : strlen(dir);
        char *cand = dlen ? mcp_sprintf("%.*s/%s", (int)dlen, dir, argv0) : mcp_sprintf("./%s", argv0);
        if (!cand) {
            mcp_error_set(err, "%s: out of memory", argv0);
            return NULL;
        }
        if (stat(cand, &st) == 0 && !S_ISDIR(st.st_mode)) {
            if (access(cand, X_OK) == 0)
                return cand;
            denied = true;
        }
        free(cand);
        dir = colon ? colon + 1 : NULL;
    }
    if (denied)
        mcp_error_set(err, "%s: found in PATH but not executable (permission denied)", argv0);
    else
        mcp_error_set(err, "%s: executable not found in PATH", argv0);
    return NULL;
}

static int proc_init_stream(mcp_proc *p, proc_stream *s, size_t limit)
{
    s->owner = p;
    s->limit = limit;
    int rc = uv_pipe_init(p->loop, &s->pipe, 0);
    if (rc != 0)
        return rc;
    s->pipe.data = s;
    s->open = true;
    p->open_handles++;
    return 0;
}

/* Closes whatever was opened after a failed start; p frees itself when the
 * loop has run the close callbacks. */
static void proc_abandon(mcp_proc *p, bool process_inited)
{
    p->spawn_failed = true;
    stream_close(&p->out);
    stream_close(&p->err);
    if (process_inited) {
        p->open_handles++;
        proc_close_handle(p, (uv_handle_t *)&p->process);
    }
    proc_close_handle(p, (uv_handle_t *)&p->timer);
}

/* Spawns file with argv, stdin on /dev/null and stdout/stderr into the pipes
 * out and err (inited), the one way both a run and a stream start a child. */
static int spawn_piped(uv_loop_t *loop, uv_process_t *process, const char *file, char *const argv[],
                       uv_pipe_t *out, uv_pipe_t *err, uv_exit_cb on_exit)
{
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE; /* libuv opens /dev/null for 0..2 */
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)out;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)err;

    uv_process_options_t opt;
    memset(&opt, 0, sizeof opt);
    opt.exit_cb = on_exit;
    opt.file = file;
    opt.args = (char **)argv;
    /* DETACHED = setsid(): its own process group, so kills reach grandchildren. */
    opt.flags = UV_PROCESS_DETACHED;
    opt.stdio_count = 3;
    opt.stdio = stdio;
    return uv_spawn(loop, process, &opt);
}

static int proc_start(mcp_proc *p, const char *file, char *const argv[])
{
    p->process.data = p;
    return spawn_piped(p->loop, &p->process, file, argv, &p->out.pipe, &p->err.pipe, proc_on_exit);
}

/* The first step of a run and of a stream: checks argv and that it has its
 * callbacks (have_cb), finds the executable (*file, to free) and allocates a
 * zeroed handle of size bytes. NULL with err set, nothing left to free. */
static void *spawn_begin(char *const argv[], bool have_cb, size_t size, char **file, mcp_error *err)
{
    if (!argv || !argv[0] || !have_cb) {
        mcp_error_set(err, "proc: empty command or missing callback");
        return NULL;
    }
    *file = proc_resolve(argv[0], err);
    if (!*file)
        return NULL;
    void *handle = calloc(1, size);
    if (!handle) {
        free(*file);
        mcp_error_set(err, "%s: out of memory", argv[0]);
    }
    return handle;
}

static mcp_proc *proc_spawn(uv_loop_t *loop, char *const argv[], int64_t timeout_ms, mcp_proc_cb cb,
                            void *ud, bool keep_buffers, mcp_error *err)
{
    char *file;
    mcp_proc *p = spawn_begin(argv, cb != NULL, sizeof *p, &file, err);
    if (!p)
        return NULL;
    p->loop = loop;
    p->cb = cb;
    p->ud = ud;
    p->keep_buffers = keep_buffers;
    p->started_ms = mcp_now_ms();
    uv_timer_init(loop, &p->timer); /* cannot fail on unix */
    p->timer.data = p;
    p->open_handles = 1;

    int rc = proc_init_stream(p, &p->out, MCP_PROC_OUT_CAP);
    if (rc == 0)
        rc = proc_init_stream(p, &p->err, MCP_PROC_ERR_CAP);
    if (rc != 0) {
        mcp_error_set(err, "%s: cannot create pipe: %s", argv[0], uv_strerror(rc));
        free(file);
        proc_abandon(p, false);
        return NULL;
    }
    rc = proc_start(p, file, argv);
    free(file);
    if (rc != 0) {
        if (rc == UV_ENOENT)
            mcp_error_set(err, "%s: executable not found in PATH", argv[0]);
        else if (rc == UV_EACCES)
            mcp_error_set(err, "%s: not executable (permission denied)", argv[0]);
        else
            mcp_error_set(err, "%s: cannot start: %s", argv[0], uv_strerror(rc));
        proc_abandon(p, true);
        return NULL;
    }
    p->open_handles++; /* the process handle */
    p->pid = p->process.pid;
    uv_read_start((uv_stream_t *)&p->out.pipe, stream_alloc, stream_read);
    uv_read_start((uv_stream_t *)&p->err.pipe, stream_alloc, stream_read);
    if (timeout_ms > 0)
        proc_arm_timer(p, timeout_ms);
    return p;
}

mcp_proc *mcp_proc_spawn(uv_loop_t *loop, char *const argv[], int64_t timeout_ms, mcp_proc_cb cb,
                         void *ud, mcp_error *err)
{
    return proc_spawn(loop, argv, timeout_ms, cb, ud, false, err);
}

void mcp_proc_cancel(mcp_proc *p)
{
    if (!p || p->finished || p->res.cancelled)
        return;
    p->res.cancelled = true;
    proc_send_kill(p);
}

/* ---- synchronous use ----------------------------------------------------- */

static void proc_run_done(const mcp_proc_result *res, void *ud)
{
    *(mcp_proc_result *)ud = *res; /* keep_buffers handed the buffers over */
}

int mcp_proc_run(char *const argv[], int64_t timeout_ms, mcp_proc_result *res, mcp_error *err)
{
    memset(res, 0, sizeof *res);
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc != 0) {
        mcp_error_set(err, "%s: cannot create event loop: %s", argv && argv[0] ? argv[0] : "proc",
                      uv_strerror(rc));
        return -1;
    }
    mcp_proc *p = proc_spawn(&loop, argv, timeout_ms, proc_run_done, res, true, err);
    uv_run(&loop, UV_RUN_DEFAULT); /* also runs the close callbacks of a failed start */
    rc = uv_loop_close(&loop);
    if (!p)
        return -1;
    if (rc != 0) { /* a handle outlived the run: a bug here, never the child's doing */
        mcp_proc_result_free(res);
        mcp_error_set(err, "%s: event loop not closed: %s", argv[0], uv_strerror(rc));
        return -1;
    }
    if (!res->out || !res->err) {
        mcp_proc_result_free(res);
        mcp_error_set(err, "%s: out of memory", argv[0]);
        return -1;
    }
    return 0;
}

void mcp_proc_result_free(mcp_proc_result *res)
{
    if (!res)
        return;
    free(res->out);
    free(res->err);
    res->out = res->err = NULL;
    res->out_len = res->err_len = 0;
}

/* ---- streams: a long-lived child read line by line ----------------------- */

#define STREAM_DEFAULT_MAX_LINE ((size_t)65536)

struct mcp_proc_stream {
    uv_loop_t *loop;
    uv_process_t process;
    uv_pipe_t out, err;
    uv_timer_t drain;              /* after the exit: the wait for pipes an escaped process holds */
    bool out_reading, err_reading; /* uv_close not yet requested */
    bool exited;                   /* the child was reaped (its process handle is closing) */
    bool ended;                    /* on_exit ran or is no longer due */
    bool closed;                   /* mcp_proc_stream_close was called: no more callbacks */
    int open_handles;              /* handles whose close callback is still due */
    int pid;
    int exit_status, term_signal;
    mcp_lines lines; /* stdout */
    char err_tail[MCP_PROC_STREAM_ERR_TAIL + 1];
    size_t err_len;
    mcp_proc_line_cb on_line;
    mcp_proc_stream_exit_cb on_exit;
    void *ud;
    char chunk[MCP_PROC_READ_CHUNK];
};

static void pstream_free_if_done(mcp_proc_stream *s)
{
    if (s->closed && s->open_handles == 0) {
        mcp_lines_free(&s->lines);
        free(s);
    }
}

static void pstream_on_closed(uv_handle_t *h)
{
    mcp_proc_stream *s = h->data;
    s->open_handles--;
    pstream_free_if_done(s);
}

static void pstream_close_handle(mcp_proc_stream *s, uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        h->data = s;
        uv_close(h, pstream_on_closed);
    }
}

static void pstream_stop_pipe(mcp_proc_stream *s, uv_pipe_t *pipe, bool *reading)
{
    if (*reading) {
        *reading = false;
        uv_read_stop((uv_stream_t *)pipe);
        pstream_close_handle(s, (uv_handle_t *)pipe);
    }
}

/* Reports the end once the child is gone and stdout/stderr are over. */
static void pstream_maybe_end(mcp_proc_stream *s)
{
    if (s->ended || s->closed || !s->exited || s->out_reading || s->err_reading)
        return;
    s->ended = true;
    uv_timer_stop(&s->drain);
    mcp_proc_stream_end end = {
        .exit_status = s->exit_status,
        .term_signal = s->term_signal,
        .err_tail = s->err_tail,
        .err_len = s->err_len,
        .dropped_lines = s->lines.dropped,
    };
    s->on_exit(&end, s->ud);
}

static void pstream_on_drain_timeout(uv_timer_t *t)
{
    mcp_proc_stream *s = t->data;
    pstream_stop_pipe(s, &s->out, &s->out_reading);
    pstream_stop_pipe(s, &s->err, &s->err_reading);
    pstream_maybe_end(s);
}

static void pstream_on_exit(uv_process_t *proc, int64_t exit_status, int term_signal)
{
    mcp_proc_stream *s = proc->data;
    s->exited = true;
    s->exit_status = (int)exit_status;
    s->term_signal = term_signal;
    pstream_close_handle(s, (uv_handle_t *)&s->process);
    if (s->closed)
        return;
    /* A grandchild that left the group may keep the pipes open. */
    uv_timer_start(&s->drain, pstream_on_drain_timeout, MCP_PROC_KILL_GRACE_MS, 0);
    pstream_maybe_end(s);
}

static void pstream_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    mcp_proc_stream *s = h->data;
    buf->base = s->chunk;
    buf->len = sizeof s->chunk;
}

/* A line of stdout; a callback that closed the stream stops the feed. */
static bool pstream_line(const char *line, size_t len, void *ud)
{
    mcp_proc_stream *s = ud;
    s->on_line(line, len, s->ud);
    return s->closed;
}

/* Keeps the last MCP_PROC_STREAM_ERR_TAIL bytes: the end explains the exit. */
static void pstream_keep_err(mcp_proc_stream *s, const char *data, size_t n)
{
    const size_t cap = MCP_PROC_STREAM_ERR_TAIL;
    if (n >= cap) {
        memcpy(s->err_tail, data + n - cap, cap);
        s->err_len = cap;
    } else {
        if (s->err_len + n > cap) {
            size_t drop = s->err_len + n - cap;
            memmove(s->err_tail, s->err_tail + drop, s->err_len - drop);
            s->err_len -= drop;
        }
        memcpy(s->err_tail + s->err_len, data, n);
        s->err_len += n;
    }
    s->err_tail[s->err_len] = '\0';
}

/* stdout is cut into lines, stderr kept as a tail; either one's end or error
 * stops that pipe. */
static void pstream_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    mcp_proc_stream *s = st->data;
    bool is_out = st == (uv_stream_t *)&s->out;
    if (nread > 0) {
        if (is_out)
            mcp_lines_feed(&s->lines, buf->base, (size_t)nread);
        else
            pstream_keep_err(s, buf->base, (size_t)nread);
        return;
    }
    if (nread == 0)
        return;
    if (is_out)
        mcp_lines_finish(&s->lines); /* a last line without '\n' */
    if (s->closed)
        return; /* close already stopped the pipes */
    if (is_out)
        pstream_stop_pipe(s, &s->out, &s->out_reading);
    else
        pstream_stop_pipe(s, &s->err, &s->err_reading);
    pstream_maybe_end(s);
}

mcp_proc_stream *mcp_proc_stream_spawn(uv_loop_t *loop, char *const argv[], size_t max_line,
                                       mcp_proc_line_cb on_line, mcp_proc_stream_exit_cb on_exit,
                                       void *ud, mcp_error *err)
{
    char *file;
    mcp_proc_stream *s = spawn_begin(argv, on_line && on_exit, sizeof *s, &file, err);
    if (!s)
        return NULL;
    if (max_line == 0)
        max_line = STREAM_DEFAULT_MAX_LINE;
    if (mcp_lines_init(&s->lines, max_line, pstream_line, s) != 0) {
        free(s);
        free(file);
        mcp_error_set(err, "%s: out of memory", argv[0]);
        return NULL;
    }
    s->loop = loop;
    s->on_line = on_line;
    s->on_exit = on_exit;
    s->ud = ud;
    /* From here on a failure closes what was opened and frees s in the
     * close callbacks (the caller's loop runs them). */
    s->closed = true;
    uv_timer_init(loop, &s->drain); /* cannot fail on unix */
    s->drain.data = s;
    s->open_handles = 1;
    int rc = uv_pipe_init(loop, &s->out, 0);
    if (rc == 0) {
        s->out.data = s;
        s->out_reading = true;
        s->open_handles++;
        rc = uv_pipe_init(loop, &s->err, 0);
    }
    if (rc == 0) {
        s->err.data = s;
        s->err_reading = true;
        s->open_handles++;
        s->process.data = s;
        rc = spawn_piped(loop, &s->process, file, argv, &s->out, &s->err, pstream_on_exit);
        s->open_handles++; /* a failed uv_spawn still needs uv_close */
        if (rc != 0)
            pstream_close_handle(s, (uv_handle_t *)&s->process);
    }
    free(file);
    if (rc != 0) {
        mcp_error_set(err, "%s: cannot start: %s", argv[0], uv_strerror(rc));
        pstream_stop_pipe(s, &s->out, &s->out_reading);
        pstream_stop_pipe(s, &s->err, &s->err_reading);
        pstream_close_handle(s, (uv_handle_t *)&s->drain);
        return NULL;
    }
    s->closed = false;
    s->pid = s->process.pid;
    if ((rc = uv_read_start((uv_stream_t *)&s->out, pstream_alloc, pstream_read)) != 0 ||
        (rc = uv_read_start((uv_stream_t *)&s->err, pstream_alloc, pstream_read)) != 0) {
        mcp_error_set(err, "%s: cannot read its output: %s", argv[0], uv_strerror(rc));
        mcp_proc_stream_close(s); /* kills the child; the loop frees s */
        return NULL;
    }
    return s;
}

void mcp_proc_stream_close(mcp_proc_stream *s)
{
    if (!s || s->closed)
        return;
    s->closed = true;
    if (!s->exited && s->pid > 0 && kill(-s->pid, SIGKILL) != 0)
        kill(s->pid, SIGKILL);
    /* The process handle closes when the child is reaped (no zombie left). */
    pstream_stop_pipe(s, &s->out, &s->out_reading);
    pstream_stop_pipe(s, &s->err, &s->err_reading);
    uv_timer_stop(&s->drain);
    pstream_close_handle(s, (uv_handle_t *)&s->drain);
    pstream_free_if_done(s);
}

size_t mcp_proc_stream_dropped(const mcp_proc_stream *s)
{
    return s ? s->lines.dropped : 0;
}

int mcp_proc_stream_pid(const mcp_proc_stream *s)
{
    return s ? s->pid : 0;
}
