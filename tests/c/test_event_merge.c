/* mcp_event_merge: every event once, from the first source that has it; the
 * file only once an event from both showed it is podman's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mcp/event_merge.h"

static mcp_podman_event ev(const char *id, const char *status, double time)
{
    mcp_podman_event e;
    memset(&e, 0, sizeof e);
    e.id = (char *)id;
    e.name = (char *)"web";
    e.status = (char *)status;
    e.time = time;
    return e;
}

#define READER MCP_EVENTS_READER
#define FILE_ MCP_EVENTS_FILE

static void test_reader_alone_delivers_everything(void **state)
{
    (void)state;
    mcp_event_merge *m = calloc(1, sizeof *m);
    mcp_podman_event a = ev("1", "died", 10.5), b = ev("1", "start", 10.9);
    assert_true(mcp_event_merge_take(m, &a, READER));
    assert_true(mcp_event_merge_take(m, &b, READER));
    free(m);
}

static void test_file_trusted_once_the_reader_agrees(void **state)
{
    (void)state;
    mcp_event_merge *m = calloc(1, sizeof *m);
    mcp_podman_event d1 = ev("1", "died", 10.5), s1 = ev("1", "start", 11.0),
                     d2 = ev("1", "died", 12.25);
    /* before: the file's event waits for the reader, which delivers it */
    assert_false(mcp_event_merge_take(m, &d1, FILE_));
    assert_true(mcp_event_merge_take(m, &d1, READER));
    assert_true(m->file_trusted);
    /* after: the file first, the reader's copy dropped */
    assert_true(mcp_event_merge_take(m, &s1, FILE_));
    assert_false(mcp_event_merge_take(m, &s1, READER));
    /* the reader first (the file was late): the file's copy dropped */
    assert_true(mcp_event_merge_take(m, &d2, READER));
    assert_false(mcp_event_merge_take(m, &d2, FILE_));
    free(m);
}

static void test_a_file_that_never_agrees_delivers_nothing(void **state)
{
    (void)state;
    mcp_event_merge *m = calloc(1, sizeof *m);
    for (int i = 0; i < 3 * MCP_EVENT_MERGE_RING; i++) {
        mcp_podman_event other = ev("other-store", "died", i), ours = ev("1", "died", i + 0.5);
        assert_false(mcp_event_merge_take(m, &other, FILE_));
        assert_true(mcp_event_merge_take(m, &ours, READER));
    }
    assert_false(m->file_trusted);
    free(m);
}

static void test_events_alike_but_for_time_or_status_are_two(void **state)
{
    (void)state;
    mcp_event_merge *m = calloc(1, sizeof *m);
    mcp_podman_event d1 = ev("1", "died", 10.5), d1b = ev("1", "died", 10.500001),
                     k1 = ev("1", "kill", 10.5);
    assert_false(mcp_event_merge_take(m, &d1, FILE_));
    assert_true(mcp_event_merge_take(m, &d1, READER));
    assert_true(mcp_event_merge_take(m, &d1b, FILE_));
    assert_true(mcp_event_merge_take(m, &k1, FILE_));
    assert_false(mcp_event_merge_take(m, &d1b, READER));
    assert_false(mcp_event_merge_take(m, &k1, READER));
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_alone_delivers_everything),
        cmocka_unit_test(test_file_trusted_once_the_reader_agrees),
        cmocka_unit_test(test_a_file_that_never_agrees_delivers_nothing),
        cmocka_unit_test(test_events_alike_but_for_time_or_status_are_two),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
