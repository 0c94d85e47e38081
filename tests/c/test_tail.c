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

/* A temp dir whose events.log holds `initial` (NULL: no file yet), and a tail on it. */
typedef struct fixture {
    uv_loop_t loop;
    char *dir, *path;
    seen s;
} fixture;

static void start(fixture *f, const char *initial, size_t max_line, bool close_at_first)
{
    memset(f, 0, sizeof *f);
    uv_loop_init(&f->loop);
    f->dir = temp_dir();
    f->path = mcp_sprintf("%s/events.log", f->dir);
    if (initial)
        append(f->path, initial);
    f->s.close_at_first = close_at_first;
    mcp_error err = {{0}};
    f->s.t = mcp_tail_open(&f->loop, f->path, max_line, on_line, &f->s, &err);
    assert_non_null(f->s.t);
}

static void finish(fixture *f)
{
    mcp_tail_close(f->s.t); /* NULL when the callback closed it */
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the handles close; nothing else is left */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    unlink(f->path);
    char *old = mcp_sprintf("%s.1", f->path);
    unlink(old);
    free(old);
    rmdir(f->dir);
    free(f->path);
    free(f->dir);
}

static void test_appended_lines_only(void **state)
{
    (void)state;
    fixture f;
    start(&f, "old one\nold two\n", 200, false);
    append(f.path, "new one\nnew t");
    run_until(&f.loop, &f.s, 1);
    assert_string_equal(f.s.lines[0], "new one");
    append(f.path, "wo\n");
    run_until(&f.loop, &f.s, 2);
    assert_string_equal(f.s.lines[1], "new two");
    finish(&f);
}

static void test_truncated_then_grows(void **state)
{
    (void)state;
    fixture f;
    start(&f, "", 200, false);
    append(f.path, "a long first line of the old file\n");
    run_until(&f.loop, &f.s, 1);
    assert_int_equal(truncate(f.path, 0), 0);
    run_a_little(&f.loop);
    append(f.path, "after\n");
    run_until(&f.loop, &f.s, 2);
    assert_string_equal(f.s.lines[1], "after");
    finish(&f);
}

static void test_renamed_and_removed(void **state)
{
    (void)state;
    fixture f;
    start(&f, "", 200, false);
    char *old = mcp_sprintf("%s.1", f.path);
    /* rotated: a new file at the path, written before the tail looks again */
    assert_int_equal(rename(f.path, old), 0);
    append(f.path, "rotated\n");
    run_until(&f.loop, &f.s, 1);
    assert_string_equal(f.s.lines[0], "rotated");
    /* removed: nothing there for a while, then a file again */
    assert_int_equal(unlink(f.path), 0);
    run_a_little(&f.loop);
    append(f.path, "back\n");
    run_until(&f.loop, &f.s, 2);
    assert_string_equal(f.s.lines[1], "back");
    append(f.path, "and on\n");
    run_until(&f.loop, &f.s, 3);
    assert_string_equal(f.s.lines[2], "and on");
    free(old);
    finish(&f);
}

static void test_long_lines_dropped(void **state)
{
    (void)state;
    fixture f;
    start(&f, "", 8, false);
    append(f.path, "much too long for eight\nshort\n");
    run_until(&f.loop, &f.s, 1);
    assert_string_equal(f.s.lines[0], "short");
    finish(&f);
}

static void test_close_from_the_callback(void **state)
{
    (void)state;
    fixture f;
    start(&f, "", 200, true);
    append(f.path, "one\ntwo\nthree\n");
    run_until(&f.loop, &f.s, 1);
    run_a_little(&f.loop);
    assert_int_equal(f.s.n, 1);
    assert_null(f.s.t);
    finish(&f);
}

static void test_a_file_that_comes_later(void **state)
{
    (void)state;
    fixture f;
    start(&f, NULL, 200, false);
    append(f.path, "first\n");
    run_until(&f.loop, &f.s, 1);
    assert_string_equal(f.s.lines[0], "first");
    append(f.path, "second\n");
    run_until(&f.loop, &f.s, 2);
    assert_string_equal(f.s.lines[1], "second");
    finish(&f);
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
