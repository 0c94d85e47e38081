/* mcp_proc: exit codes, captured output and its caps, timeouts that reach
 * grandchildren, cancellation, spawn errors, and clean loop teardown; and
 * mcp_proc_stream: lines as they come, long lines, close, the end. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mcp/proc.h"
#include "mcp/util.h"

#define FIX MCP_FIXTURES "/podman/"

/* Runs argv synchronously; fails the test when it cannot start. */
static void run_ok(char *const argv[], int64_t timeout_ms, mcp_proc_result *res)
{
    mcp_error err = {{0}};
    int rc = mcp_proc_run(argv, timeout_ms, res, &err);
    if (rc != 0)
        fail_msg("%s: %s", argv[0], err.msg);
}

static char *pidfile_path(void)
{
    char *path = mcp_sprintf("/tmp/mcp-test-proc-%ld-%ld.pid", (long)getpid(), (long)mcp_now_ms());
    assert_non_null(path);
    return path;
}

static pid_t read_pidfile(const char *path)
{
    char *text = mcp_read_file(path, NULL);
    assert_non_null(text);
    pid_t pid = (pid_t)atol(text);
    free(text);
    assert_true(pid > 1);
    return pid;
}

/* True when pid is gone or only a zombie waiting for init to reap it. */
static int process_gone(pid_t pid)
{
    if (kill(pid, 0) != 0)
        return errno == ESRCH;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    char *stat = mcp_read_file(path, NULL);
    if (!stat)
        return 1;
    char *paren = strrchr(stat, ')');
    int zombie = paren && paren[1] == ' ' && paren[2] == 'Z';
    free(stat);
    return zombie;
}

/* Waits up to 3 s for pid to disappear: the group kill is asynchronous. */
static int wait_gone(pid_t pid)
{
    for (int i = 0; i < 300; i++) {
        if (process_gone(pid))
            return 1;
        usleep(10000);
    }
    return 0;
}

static void test_exit_codes(void **state)
{
    mcp_proc_result res;
    char *t[] = {"true", NULL};
    run_ok(t, 5000, &res);
    assert_int_equal(res.exit_status, 0);
    assert_int_equal(res.term_signal, 0);
    assert_false(res.timed_out);
    assert_false(res.cancelled);
    assert_non_null(res.out);
    assert_string_equal(res.out, "");
    assert_string_equal(res.err, "");
    mcp_proc_result_free(&res);

    char *f[] = {"false", NULL};
    run_ok(f, 5000, &res);
    assert_int_equal(res.exit_status, 1);
    mcp_proc_result_free(&res);

    char *sh[] = {"sh", "-c", "exit 42", NULL};
    run_ok(sh, 5000, &res);
    assert_int_equal(res.exit_status, 42);
    mcp_proc_result_free(&res);
}

static void test_capture_stdout_stderr(void **state)
{
    mcp_proc_result res;
    char *argv[] = {"sh", "-c", "printf 'hello\\nworld\\n'; printf 'oops' >&2; exit 3", NULL};
    run_ok(argv, 5000, &res);
    assert_int_equal(res.exit_status, 3);
    assert_string_equal(res.out, "hello\nworld\n");
    assert_int_equal(res.out_len, 12);
    assert_string_equal(res.err, "oops");
    assert_int_equal(res.err_len, 4);
    assert_false(res.truncated);
    assert_true(res.elapsed_ms >= 0);
    mcp_proc_result_free(&res);
}

static void test_argv_is_not_a_shell(void **state)
{
    mcp_proc_result res;
    char *argv[] = {"echo", "$HOME; rm -rf /nonexistent", "a  b", NULL};
    run_ok(argv, 5000, &res);
    assert_string_equal(res.out, "$HOME; rm -rf /nonexistent a  b\n");
    mcp_proc_result_free(&res);
}

static void test_stdin_is_dev_null(void **state)
{
    mcp_proc_result res;
    char *argv[] = {"cat", NULL}; /* would hang if stdin were inherited */
    run_ok(argv, 5000, &res);
    assert_int_equal(res.exit_status, 0);
    assert_int_equal(res.out_len, 0);
    assert_false(res.timed_out);
    mcp_proc_result_free(&res);
}

static void test_large_output(void **state)
{
    mcp_proc_result res;
    char *argv[] = {"head", "-c", "5000000", "/dev/urandom", NULL};
    run_ok(argv, 20000, &res);
    assert_int_equal(res.exit_status, 0);
    assert_int_equal(res.out_len, 5000000);
    assert_false(res.truncated);
    assert_int_equal(res.out[res.out_len], '\0');
    mcp_proc_result_free(&res);
}

static void test_truncation(void **state)
{
    mcp_proc_result res;
    char *out[] = {"head", "-c", "17000000", "/dev/zero", NULL};
    run_ok(out, 30000, &res);
    assert_int_equal(res.exit_status, 0); /* the child was never blocked */
    assert_true(res.truncated);
    assert_int_equal(res.out_len, MCP_PROC_OUT_CAP);
    assert_int_equal(res.out[res.out_len], '\0');
    mcp_proc_result_free(&res);

    char *err[] = {"sh", "-c", "head -c 2000000 /dev/zero | tr '\\0' x >&2; echo fine", NULL};
    run_ok(err, 30000, &res);
    assert_int_equal(res.exit_status, 0);
    assert_true(res.truncated);
    assert_int_equal(res.err_len, MCP_PROC_ERR_CAP);
    assert_int_equal(res.err[0], 'x');
    assert_string_equal(res.out, "fine\n");
    mcp_proc_result_free(&res);
}

static void test_timeout_kills_group(void **state)
{
    char *pidfile = pidfile_path();
    char *argv[] = {FIX "fake-hang.sh", pidfile, NULL};
    mcp_proc_result res;
    int64_t t0 = mcp_now_ms();
    run_ok(argv, 300, &res);
    int64_t took = mcp_now_ms() - t0;
    assert_true(res.timed_out);
    assert_false(res.cancelled);
    assert_int_equal(res.term_signal, SIGTERM);
    assert_true(took >= 250);
    assert_true(took < 2000); /* SIGTERM was enough: no grace period */
    pid_t sleeper = read_pidfile(pidfile);
    assert_true(wait_gone(sleeper));
    unlink(pidfile);
    free(pidfile);
    mcp_proc_result_free(&res);
}

static void test_timeout_escalates_to_sigkill(void **state)
{
    char *pidfile = pidfile_path();
    char *argv[] = {FIX "fake-ignore-term.sh", pidfile, NULL};
    mcp_proc_result res;
    int64_t t0 = mcp_now_ms();
    run_ok(argv, 200, &res);
    int64_t took = mcp_now_ms() - t0;
    assert_true(res.timed_out);
    assert_int_equal(res.term_signal, SIGKILL);
    assert_true(took >= 200 + MCP_PROC_KILL_GRACE_MS - 100);
    assert_true(took < 200 + MCP_PROC_KILL_GRACE_MS + 3000);
    pid_t sleeper = read_pidfile(pidfile);
    assert_true(wait_gone(sleeper));
    unlink(pidfile);
    free(pidfile);
    mcp_proc_result_free(&res);
}

static void test_grandchild_holding_pipes_is_killed(void **state)
{
    char *pidfile = pidfile_path();
    char *argv[] = {FIX "fake-leaves-child.sh", pidfile, NULL};
    mcp_proc_result res;
    run_ok(argv, 400, &res);
    /* the script itself exited 0; the call only ended when the group died */
    assert_int_equal(res.exit_status, 0);
    assert_int_equal(res.term_signal, 0);
    assert_true(res.timed_out);
    assert_string_equal(res.out, "started\n");
    pid_t sleeper = read_pidfile(pidfile);
    assert_true(wait_gone(sleeper));
    unlink(pidfile);
    free(pidfile);
    mcp_proc_result_free(&res);
}

static void test_escaped_grandchild_does_not_hang(void **state)
{
    char *pidfile = pidfile_path();
    char *argv[] = {FIX "fake-escapes.sh", pidfile, NULL};
    mcp_proc_result res;
    int64_t t0 = mcp_now_ms();
    run_ok(argv, 200, &res);
    int64_t took = mcp_now_ms() - t0;
    assert_true(res.timed_out);
    assert_true(took < 200 + 2 * MCP_PROC_KILL_GRACE_MS + 3000);
    pid_t sleeper = read_pidfile(pidfile);
    kill(sleeper, SIGKILL); /* out of our reach by design: the test cleans it up */
    assert_true(wait_gone(sleeper));
    unlink(pidfile);
    free(pidfile);
    mcp_proc_result_free(&res);
}

/* ---- on a shared loop ---- */

typedef struct call_state {
    int calls;
    mcp_proc_result copy;
    char out[64];
} call_state;

static void record_cb(const mcp_proc_result *res, void *ud)
{
    call_state *cs = ud;
    cs->calls++;
    cs->copy = *res;
    snprintf(cs->out, sizeof cs->out, "%s", res->out);
    cs->copy.out = cs->copy.err = NULL; /* owned by the proc module */
}

static void cancel_timer_cb(uv_timer_t *t)
{
    mcp_proc_cancel(t->data);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_cancel(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    call_state cs = {0};
    mcp_error err = {{0}};
    char *argv[] = {"sleep", "30", NULL};
    mcp_proc *p = mcp_proc_spawn(&loop, argv, 60000, record_cb, &cs, &err);
    assert_non_null(p);
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = p;
    uv_timer_start(&t, cancel_timer_cb, 100, 0);
    int64_t t0 = mcp_now_ms();
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(mcp_now_ms() - t0 < 5000);
    assert_int_equal(cs.calls, 1);
    assert_true(cs.copy.cancelled);
    assert_false(cs.copy.timed_out);
    assert_int_equal(cs.copy.term_signal, SIGKILL);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_concurrent_on_one_loop(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    call_state cs[4] = {{0}};
    mcp_error err = {{0}};
    char *a0[] = {"sh", "-c", "sleep 0.2; echo slow", NULL};
    char *a1[] = {"echo", "fast", NULL};
    char *a2[] = {"sh", "-c", "exit 7", NULL};
    char *a3[] = {"sleep", "10", NULL};
    assert_non_null(mcp_proc_spawn(&loop, a0, 5000, record_cb, &cs[0], &err));
    assert_non_null(mcp_proc_spawn(&loop, a1, 5000, record_cb, &cs[1], &err));
    assert_non_null(mcp_proc_spawn(&loop, a2, 5000, record_cb, &cs[2], &err));
    assert_non_null(mcp_proc_spawn(&loop, a3, 100, record_cb, &cs[3], &err));
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 4; i++)
        assert_int_equal(cs[i].calls, 1);
    assert_string_equal(cs[0].out, "slow\n");
    assert_string_equal(cs[1].out, "fast\n");
    assert_int_equal(cs[2].copy.exit_status, 7);
    assert_true(cs[3].copy.timed_out);
    assert_false(cs[0].copy.timed_out);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- spawn errors ---- */

static void test_missing_binary(void **state)
{
    mcp_proc_result res;
    mcp_error err = {{0}};
    char *argv[] = {"mcp-no-such-binary-xyz", "ps", NULL};
    assert_int_equal(mcp_proc_run(argv, 1000, &res, &err), -1);
    assert_string_equal(err.msg, "mcp-no-such-binary-xyz: executable not found in PATH");

    char *abs[] = {"/nonexistent/podman", NULL};
    assert_int_equal(mcp_proc_run(abs, 1000, &res, &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent/podman"));
    assert_non_null(strstr(err.msg, "not found"));

    /* podman with an empty PATH: the message the agent shows */
    char *old = mcp_strdup(getenv("PATH"));
    setenv("PATH", "/nonexistent-dir", 1);
    char *podman[] = {"podman", "ps", NULL};
    assert_int_equal(mcp_proc_run(podman, 1000, &res, &err), -1);
    setenv("PATH", old, 1);
    free(old);
    assert_string_equal(err.msg, "podman: executable not found in PATH");

    char *empty[] = {"", NULL};
    assert_int_equal(mcp_proc_run(empty, 1000, &res, &err), -1);
    char *none[] = {NULL};
    assert_int_equal(mcp_proc_run(none, 1000, &res, &err), -1);
}

static void test_not_executable(void **state)
{
    mcp_proc_result res;
    mcp_error err = {{0}};
    char *argv[] = {FIX "not-executable.sh", NULL};
    assert_int_equal(mcp_proc_run(argv, 1000, &res, &err), -1);
    assert_non_null(strstr(err.msg, "permission denied"));
    char *dir[] = {FIX "bin", NULL};
    assert_int_equal(mcp_proc_run(dir, 1000, &res, &err), -1);
    assert_non_null(strstr(err.msg, "permission denied"));
}

static void never_cb(const mcp_proc_result *res, void *ud)
{
    fail_msg("callback after a failed spawn");
}

static void test_spawn_failure_on_loop(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    mcp_error err = {{0}};
    char *argv[] = {"mcp-no-such-binary-xyz", NULL};
    assert_null(mcp_proc_spawn(&loop, argv, 1000, never_cb, NULL, &err));
    assert_non_null(strstr(err.msg, "executable not found in PATH"));
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_path_lookup(void **state)
{
    char *old = mcp_strdup(getenv("PATH"));
    char *path = mcp_sprintf("%sbin:%s", FIX, old);
    setenv("PATH", path, 1);
    mcp_proc_result res;
    char *argv[] = {"podman", "ps", "-a", NULL};
    mcp_error err = {{0}};
    int rc = mcp_proc_run(argv, 5000, &res, &err);
    setenv("PATH", old, 1);
    free(old);
    free(path);
    assert_int_equal(rc, 0);
    assert_string_equal(res.out, "ps\n-a\n"); /* the fake podman echoes its args */
    mcp_proc_result_free(&res);
}

/* ---- mcp_proc_stream ------------------------------------------------------ */

typedef struct stream_log {
    mcp_strv lines;
    int exits;
    int exit_status, term_signal;
    char err[MCP_PROC_STREAM_ERR_TAIL + 1];
    size_t dropped;
    mcp_proc_stream *s;
    bool close_on_first_line;
} stream_log;

static void log_line(const char *line, size_t len, void *ud)
{
    stream_log *log = ud;
    assert_int_equal(strlen(line), len);
    assert_int_equal(mcp_strv_push(&log->lines, line), 0);
    if (log->close_on_first_line && log->s) {
        mcp_proc_stream_close(log->s);
        log->s = NULL;
    }
}

static void log_exit(const mcp_proc_stream_end *end, void *ud)
{
    stream_log *log = ud;
    log->exits++;
    log->exit_status = end->exit_status;
    log->term_signal = end->term_signal;
    log->dropped = end->dropped_lines;
    snprintf(log->err, sizeof log->err, "%s", end->err_tail);
}

/* Runs the loop until done(log) or 10 s pass; returns whether done. */
static bool run_until(uv_loop_t *loop, stream_log *log, bool (*done)(const stream_log *))
{
    int64_t deadline = mcp_now_ms() + 10000;
    while (!done(log) && mcp_now_ms() < deadline)
        uv_run(loop, UV_RUN_NOWAIT), usleep(1000);
    return done(log);
}

static bool has_exited(const stream_log *log)
{
    return log->exits > 0;
}
static bool has_line(const stream_log *log)
{
    return log->lines.n > 0;
}

/* Closing the loop proves every handle of the stream was closed. */
static void finish_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void test_stream_lines_and_exit(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    stream_log log = {0};
    char *argv[] = {"sh", "-c",
                    "echo one; echo 'two words'; echo; printf last; echo oops >&2; exit 3", NULL};
    mcp_error err = {{0}};
    log.s = mcp_proc_stream_spawn(&loop, argv, 0, log_line, log_exit, &log, &err);
    assert_non_null(log.s);
    assert_true(mcp_proc_stream_pid(log.s) > 0);
    assert_true(run_until(&loop, &log, has_exited));
    assert_int_equal(log.exits, 1);
    assert_int_equal(log.exit_status, 3);
    assert_int_equal(log.term_signal, 0);
    assert_string_equal(log.err, "oops\n");
    assert_int_equal(log.lines.n, 4);
    assert_string_equal(log.lines.v[0], "one");
    assert_string_equal(log.lines.v[1], "two words");
    assert_string_equal(log.lines.v[2], "");
    assert_string_equal(log.lines.v[3], "last"); /* no '\n' before EOF */
    mcp_proc_stream_close(log.s);
    finish_loop(&loop);
    assert_int_equal(log.exits, 1);
    mcp_strv_free(&log.lines);
}

/* The first line arrives while the child still runs; close kills the group. */
static void test_stream_is_live_and_close_kills_group(void **state)
{
    (void)state;
    char *pidfile = pidfile_path();
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    stream_log log = {0};
    char *argv[] = {"sh", "-c", "sleep 300 & echo $! > \"$0\"; echo ready; wait", pidfile, NULL};
    mcp_error err = {{0}};
    log.s = mcp_proc_stream_spawn(&loop, argv, 0, log_line, log_exit, &log, &err);
    assert_non_null(log.s);
    assert_true(run_until(&loop, &log, has_line));
    assert_string_equal(log.lines.v[0], "ready");
    assert_int_equal(log.exits, 0);
    pid_t sleeper = read_pidfile(pidfile);
    pid_t leader = mcp_proc_stream_pid(log.s);
    mcp_proc_stream_close(log.s);
    finish_loop(&loop);             /* returns once the child was reaped */
    assert_int_equal(log.exits, 0); /* never after close */
    assert_true(wait_gone(sleeper));
    assert_true(wait_gone(leader));
    unlink(pidfile);
    free(pidfile);
    mcp_strv_free(&log.lines);
}

static void test_stream_long_lines_dropped(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    stream_log log = {0};
    /* 200000 bytes span several reads; 10 bytes is exactly the cap and kept */
    char *argv[] = {"sh", "-c",
                    "echo short; head -c 200000 /dev/zero | tr '\\0' x; echo; echo 0123456789;"
                    " echo 0123456789A; echo after",
                    NULL};
    mcp_error err = {{0}};
    log.s = mcp_proc_stream_spawn(&loop, argv, 10, log_line, log_exit, &log, &err);
    assert_non_null(log.s);
    assert_true(run_until(&loop, &log, has_exited));
    assert_int_equal(log.exit_status, 0);
    assert_int_equal(log.lines.n, 3);
    assert_string_equal(log.lines.v[0], "short");
    assert_string_equal(log.lines.v[1], "0123456789");
    assert_string_equal(log.lines.v[2], "after");
    assert_int_equal(log.dropped, 2);
    assert_int_equal(mcp_proc_stream_dropped(log.s), 2);
    mcp_proc_stream_close(log.s);
    finish_loop(&loop);
    mcp_strv_free(&log.lines);
}

static void test_stream_close_from_callback(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    stream_log log = {.close_on_first_line = true};
    char *argv[] = {"sh", "-c",
                    "i=0; while [ $i -lt 1000 ]; do echo line$i; i=$((i+1)); done; sleep 300",
                    NULL};
    mcp_error err = {{0}};
    log.s = mcp_proc_stream_spawn(&loop, argv, 0, log_line, log_exit, &log, &err);
    assert_non_null(log.s);
    finish_loop(&loop); /* ends: the first line closed the stream and killed the child */
    assert_int_equal(log.lines.n, 1);
    assert_string_equal(log.lines.v[0], "line0");
    assert_int_equal(log.exits, 0);
    mcp_strv_free(&log.lines);
}

static void test_stream_stderr_tail_is_capped(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    stream_log log = {0};
    char *argv[] = {"sh", "-c",
                    "head -c 100000 /dev/zero | tr '\\0' e >&2; echo THE-END >&2; kill -TERM $$",
                    NULL};
    mcp_error err = {{0}};
    log.s = mcp_proc_stream_spawn(&loop, argv, 0, log_line, log_exit, &log, &err);
    assert_non_null(log.s);
    assert_true(run_until(&loop, &log, has_exited));
    assert_int_equal(log.term_signal, SIGTERM);
    assert_int_equal(strlen(log.err), MCP_PROC_STREAM_ERR_TAIL);
    assert_non_null(strstr(log.err, "eeeeTHE-END\n"));
    mcp_proc_stream_close(log.s);
    finish_loop(&loop);
    mcp_strv_free(&log.lines);
}

static void test_stream_missing_binary(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    stream_log log = {0};
    char *argv[] = {"no-such-binary-mcp", NULL};
    mcp_error err = {{0}};
    assert_null(mcp_proc_stream_spawn(&loop, argv, 0, log_line, log_exit, &log, &err));
    assert_non_null(strstr(err.msg, "not found"));
    finish_loop(&loop);
    assert_int_equal(log.exits, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_capture_stdout_stderr),
        cmocka_unit_test(test_argv_is_not_a_shell),
        cmocka_unit_test(test_stdin_is_dev_null),
        cmocka_unit_test(test_large_output),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_timeout_kills_group),
        cmocka_unit_test(test_timeout_escalates_to_sigkill),
        cmocka_unit_test(test_grandchild_holding_pipes_is_killed),
        cmocka_unit_test(test_escaped_grandchild_does_not_hang),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_concurrent_on_one_loop),
        cmocka_unit_test(test_missing_binary),
        cmocka_unit_test(test_not_executable),
        cmocka_unit_test(test_spawn_failure_on_loop),
        cmocka_unit_test(test_path_lookup),
        cmocka_unit_test(test_stream_lines_and_exit),
        cmocka_unit_test(test_stream_is_live_and_close_kills_group),
        cmocka_unit_test(test_stream_long_lines_dropped),
        cmocka_unit_test(test_stream_close_from_callback),
        cmocka_unit_test(test_stream_stderr_tail_is_capped),
        cmocka_unit_test(test_stream_missing_binary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
