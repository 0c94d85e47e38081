/* Go-style duration parsing and formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mcp/duration.h"

static void test_parse_valid(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t ms;
    } cases[] = {
        {"0", 0},
        {"0s", 0},
        {"+5s", 5000},
        {"150ms", 150},
        {"1s", 1000},
        {"2m30s", 150000},
        {"1h", 3600000},
        {"1.5h", 5400000},
        {"1.5s", 1500},
        {".5s", 500},
        {"1.s", 1000},
        {"300us", 1},
        {"300\xc2\xb5s", 1},
        {"300\xce\xbcs", 1},
        {"1ns", 1},
        {"999999ns", 1},
        {"1000000ns", 1},
        {"1000001ns", 2},
        {"1h2m3s4ms", 3723004},
        {"1.0001ms", 2},
        {"90m", 5400000},
        {"0.25m", 15000},
        {"2562047h", 2562047LL * 3600000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = -1;
        char why[128] = "";
        int rc = mcp_duration_parse(cases[i].in, &ms, why, sizeof why);
        if (rc != 0 || ms != cases[i].ms)
            print_error("case %s: rc=%d ms=%lld why=%s\n", cases[i].in, rc, (long long)ms, why);
        assert_int_equal(rc, 0);
        assert_int_equal(ms, cases[i].ms);
    }
}

static void test_parse_invalid(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *why; /* a substring of the reason */
    } cases[] = {
        {"", "invalid duration"},     {"5", "missing unit in \"5\""},
        {"-5s", "negative"},          {"-0", "negative"},
        {"5x", "unknown unit"},       {"5 s", "unknown unit"},
        {"s", "invalid duration"},    {".s", "invalid duration"},
        {"1.2.3s", "missing unit"},   {"5sec", "unknown unit"},
        {"1h2", "missing unit"},      {"abc", "invalid duration"},
        {"3000000h", "out of range"}, {"99999999999999999999s", "out of range"},
        {"2562048h", "out of range"}, {" 5s", "invalid duration"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = 42;
        char why[128] = "";
        int rc = mcp_duration_parse(cases[i].in, &ms, why, sizeof why);
        if (rc != -1 || !strstr(why, cases[i].why))
            print_error("case '%s': rc=%d why=%s\n", cases[i].in, rc, why);
        assert_int_equal(rc, -1);
        assert_non_null(strstr(why, cases[i].why));
        assert_int_equal(ms, 42); /* untouched on failure */
    }
}

static void test_parse_null_and_small_buffer(void **state)
{
    (void)state;
    int64_t ms;
    char why[8];
    assert_int_equal(mcp_duration_parse(NULL, &ms, why, sizeof why), -1);
    /* A reason longer than the buffer is truncated, still NUL-terminated. */
    assert_int_equal(mcp_duration_parse("12345", &ms, why, sizeof why), -1);
    assert_int_equal(strlen(why), sizeof why - 1);
    /* No buffer at all is fine. */
    assert_int_equal(mcp_duration_parse("5", &ms, NULL, 0), -1);
}

static void test_format(void **state)
{
    (void)state;
    static const struct {
        int64_t ms;
        const char *out;
    } cases[] = {
        {0, "0s"},
        {1, "1ms"},
        {150, "150ms"},
        {999, "999ms"},
        {1000, "1s"},
        {1500, "1.5s"},
        {1250, "1.25s"},
        {1001, "1.001s"},
        {60000, "1m0s"},
        {90000, "1m30s"},
        {150000, "2m30s"},
        {3600000, "1h0m0s"},
        {5400000, "1h30m0s"},
        {3723004, "1h2m3.004s"},
        {-5, "-5ms"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        mcp_duration_format(cases[i].ms, buf, sizeof buf);
        assert_string_equal(buf, cases[i].out);
    }
}

static void test_format_round_trips(void **state)
{
    (void)state;
    static const int64_t values[] = {1,     7,     999,     1000,    1234,     59999,
                                     60000, 61001, 3599999, 3600000, 86400000, 123456789};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char buf[64], why[128];
        int64_t back = -1;
        mcp_duration_format(values[i], buf, sizeof buf);
        assert_int_equal(mcp_duration_parse(buf, &back, why, sizeof why), 0);
        assert_int_equal(back, values[i]);
    }
    /* A tiny buffer truncates without overflowing. */
    char tiny[4];
    mcp_duration_format(3723004, tiny, sizeof tiny);
    assert_string_equal(tiny, "1h2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_parse_null_and_small_buffer),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
