/* mcp_tail: lines appended to a file reach the callback (not what it held
 * before), partial lines wait for their '\n', a truncated file is followed
 * from its new end, a renamed or removed one at its path again, long lines
 * are dropped, and closing from the callback ends it. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mcp/tail.h"
#include "mcp/util.h"

typedef struct seen {
    char lines[16][256];
    int n;
    bool close_at_first;
    mcp_tail *t;
} seen;

static void on_line(const char *line, size_t len, void *ud)
{
    seen *s = ud;
    assert_int_equal(strlen(line), len);
    if (s->n < 16)
        snprintf(s->lines[s->n], sizeof s->lines[0], "%s", line);
    s->n++;
    if (s->close_at_first) {
        mcp_tail_close(s->t);
        s->t = NULL;
    }
}

static char *temp_dir(void)
{
    char *d = mcp_sprintf("/tmp/mcp-test-tail-%ld-XXXXXX", (long)getpid());
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static void append(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void on_deadline(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop until s has `want` lines or 3 s have passed. */
static void run_until(uv_loop_t *loop, seen *s, int want)
{
    bool late = false;
    uv_timer_t deadline;
    uv_timer_init(loop, &deadline);
    deadline.data = &late;
    uv_timer_start(&deadline, on_deadline, 3000, 0);
    while (s->n < want && !late)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    assert_int_equal(s->n, want);
}

/* A moment of the loop with nothing expected: what arrives is counted. */
static void run_a_little(uv_loop_t *loop)
{
    bool late = false;
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &late;
    uv_timer_start(&t, on_deadline, 100, 0);
    while (!late)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static void finish(uv_loop_t *loop, mcp_tail *t, char *dir, char *path)
{
    mcp_tail_close(t);
    uv_run(loop, UV_RUN_DEFAULT); /* the handles close; nothing else is left */
    assert_int_equal(uv_loop_close(loop), 0);
    unlink(path);
    char *old = mcp_sprintf("%s.1", path);
    unlink(old);
    free(old);
    rmdir(dir);
    free(path);
    free(dir);
}

static void test_appended_lines_only(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir = temp_dir(), *path = mcp_sprintf("%s/events.log", dir);
    append(path, "old one\nold two\n");
    seen s = {0};
    mcp_error err = {{0}};
    mcp_tail *t = mcp_tail_open(&loop, path, 200, on_line, &s, &err);
    assert_non_null(t);
    append(path, "new one\nnew t");
    run_until(&loop, &s, 1);
    assert_string_equal(s.lines[0], "new one");
    append(path, "wo\n");
    run_until(&loop, &s, 2);
    assert_string_equal(s.lines[1], "new two");
    finish(&loop, t, dir, path);
}

static void test_truncated_then_grows(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir = temp_dir(), *path = mcp_sprintf("%s/events.log", dir);
    append(path, "");
    seen s = {0};
    mcp_error err = {{0}};
    mcp_tail *t = mcp_tail_open(&loop, path, 200, on_line, &s, &err);
    assert_non_null(t);
    append(path, "a long first line of the old file\n");
    run_until(&loop, &s, 1);
    assert_int_equal(truncate(path, 0), 0);
    run_a_little(&loop);
    append(path, "after\n");
    run_until(&loop, &s, 2);
    assert_string_equal(s.lines[1], "after");
    finish(&loop, t, dir, path);
}

static void test_renamed_and_removed(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir = temp_dir(), *path = mcp_sprintf("%s/events.log", dir);
    char *old = mcp_sprintf("%s.1", path);
    append(path, "");
    seen s = {0};
    mcp_error err = {{0}};
    mcp_tail *t = mcp_tail_open(&loop, path, 200, on_line, &s, &err);
    assert_non_null(t);
    /* rotated: a new file at the path, written before the tail looks again */
    assert_int_equal(rename(path, old), 0);
    append(path, "rotated\n");
    run_until(&loop, &s, 1);
    assert_string_equal(s.lines[0], "rotated");
    /* removed: nothing there for a while, then a file again */
    assert_int_equal(unlink(path), 0);
    run_a_little(&loop);
    append(path, "back\n");
    run_until(&loop, &s, 2);
    assert_string_equal(s.lines[1], "back");
    append(path, "and on\n");
    run_until(&loop, &s, 3);
    assert_string_equal(s.lines[2], "and on");
    free(old);
    finish(&loop, t, dir, path);
}

static void test_long_lines_dropped(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir = temp_dir(), *path = mcp_sprintf("%s/events.log", dir);
    append(path, "");
    seen s = {0};
    mcp_error err = {{0}};
    mcp_tail *t = mcp_tail_open(&loop, path, 8, on_line, &s, &err);
    assert_non_null(t);
    append(path, "much too long for eight\nshort\n");
    run_until(&loop, &s, 1);
    assert_string_equal(s.lines[0], "short");
    finish(&loop, t, dir, path);
}

static void test_close_from_the_callback(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir = temp_dir(), *path = mcp_sprintf("%s/events.log", dir);
    append(path, "");
    seen s = {.close_at_first = true};
    mcp_error err = {{0}};
    s.t = mcp_tail_open(&loop, path, 200, on_line, &s, &err);
    assert_non_null(s.t);
    append(path, "one\ntwo\nthree\n");
    run_until(&loop, &s, 1);
    run_a_little(&loop);
    assert_int_equal(s.n, 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    unlink(path);
    rmdir(dir);
    free(path);
    free(dir);
}

static void test_a_file_that_comes_later(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir = temp_dir(), *path = mcp_sprintf("%s/events.log", dir);
    seen s = {0};
    mcp_error err = {{0}};
    mcp_tail *t = mcp_tail_open(&loop, path, 200, on_line, &s, &err);
    assert_non_null(t);
    append(path, "first\n");
    run_until(&loop, &s, 1);
    assert_string_equal(s.lines[0], "first");
    append(path, "second\n");
    run_until(&loop, &s, 2);
    assert_string_equal(s.lines[1], "second");
    finish(&loop, t, dir, path);
}

static void test_missing_file(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    seen s = {0};
    mcp_error err = {{0}};
    assert_null(mcp_tail_open(&loop, "/nonexistent/events.log", 200, on_line, &s, &err));
    assert_non_null(strstr(err.msg, "/nonexistent/events.log"));
    assert_non_null(strstr(err.msg, "cannot watch /nonexistent"));
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_appended_lines_only),  cmocka_unit_test(test_truncated_then_grows),
        cmocka_unit_test(test_renamed_and_removed),  cmocka_unit_test(test_long_lines_dropped),
        cmocka_unit_test(test_close_from_the_callback), cmocka_unit_test(test_a_file_that_comes_later),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
