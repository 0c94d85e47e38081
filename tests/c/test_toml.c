/* The TOML parser: values, positions, errors with line:col, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mcp/toml.h"

static mcp_toml_value *parse_ok(const char *text)
{
    mcp_error err = {{0}};
    mcp_toml_value *root = mcp_toml_parse(text, strlen(text), &err);
    if (!root)
        print_error("unexpected error: %s\n", err.msg);
    assert_non_null(root);
    assert_int_equal(root->type, MCP_TOML_TABLE);
    return root;
}

/* Parses text expecting an error that starts with want_prefix ("L:C: ") and
 * contains want_text. */
static void parse_fails(const char *text, const char *want_prefix, const char *want_text)
{
    mcp_error err = {{0}};
    mcp_toml_value *root = mcp_toml_parse(text, strlen(text), &err);
    if (root || strncmp(err.msg, want_prefix, strlen(want_prefix)) != 0 ||
        !strstr(err.msg, want_text))
        print_error("for %s\n got: %s\nwant: %s...%s\n", text, err.msg, want_prefix, want_text);
    assert_null(root);
    assert_memory_equal(err.msg, want_prefix, strlen(want_prefix));
    assert_non_null(strstr(err.msg, want_text));
}

static const mcp_toml_value *get(const mcp_toml_value *t, const char *key)
{
    const mcp_toml_kv *kv = mcp_toml_find(t, key);
    if (!kv)
        print_error("key %s not found\n", key);
    assert_non_null(kv);
    return kv->value;
}

static void test_scalars(void **state)
{
    (void)state;
    mcp_toml_value *r = parse_ok("s = \"a\\tb\\u00e9\\U0001F600\"\n"
                                 "lit = 'C:\\path'\n"
                                 "ml = \"\"\"\nline1\\\n   line2\"\"\"\n"
                                 "i = -42\nhex = 0xDEAD_beef\noct = 0o755\nbin = 0b1010\n"
                                 "max = 9223372036854775807\nmin = -9223372036854775808\n"
                                 "f = 6.02e23\nneg_inf = -inf\nnan = nan\n"
                                 "yes = true\nno = false\n");
    const mcp_toml_value *s = get(r, "s");
    assert_int_equal(s->type, MCP_TOML_STRING);
    assert_string_equal(s->u.str.ptr, "a\tb\xc3\xa9\xf0\x9f\x98\x80");
    assert_int_equal(s->u.str.len, strlen("a\tb\xc3\xa9\xf0\x9f\x98\x80"));
    assert_string_equal(get(r, "lit")->u.str.ptr, "C:\\path");
    assert_string_equal(get(r, "ml")->u.str.ptr, "line1line2");
    assert_int_equal(get(r, "i")->u.integer, -42);
    assert_int_equal(get(r, "hex")->u.integer, 0xdeadbeef);
    assert_int_equal(get(r, "oct")->u.integer, 0755);
    assert_int_equal(get(r, "bin")->u.integer, 10);
    assert_true(get(r, "max")->u.integer == INT64_MAX);
    assert_true(get(r, "min")->u.integer == INT64_MIN);
    assert_int_equal(get(r, "f")->type, MCP_TOML_FLOAT);
    assert_true(get(r, "f")->u.floating == 6.02e23);
    assert_true(get(r, "neg_inf")->u.floating < -1e308);
    assert_true(get(r, "nan")->u.floating != get(r, "nan")->u.floating);
    assert_true(get(r, "yes")->u.boolean);
    assert_int_equal(get(r, "no")->type, MCP_TOML_BOOL);
    assert_false(get(r, "no")->u.boolean);
    mcp_toml_free(r);
}

static void test_datetimes(void **state)
{
    (void)state;
    mcp_toml_value *r =
        parse_ok("odt = 1979-05-27 07:32:00.5z\nldt = 1979-05-27t07:32:00\n"
                 "ld = 2024-02-29\nlt = 23:59:60.999\noff = 1979-05-27T00:32:00-07:00\n");
    assert_int_equal(get(r, "odt")->type, MCP_TOML_DATETIME);
    assert_string_equal(get(r, "odt")->u.str.ptr, "1979-05-27T07:32:00.5Z");
    assert_int_equal(get(r, "ldt")->type, MCP_TOML_DATETIME_LOCAL);
    assert_string_equal(get(r, "ldt")->u.str.ptr, "1979-05-27T07:32:00");
    assert_int_equal(get(r, "ld")->type, MCP_TOML_DATE_LOCAL);
    assert_int_equal(get(r, "lt")->type, MCP_TOML_TIME_LOCAL);
    assert_string_equal(get(r, "off")->u.str.ptr, "1979-05-27T00:32:00-07:00");
    assert_string_equal(mcp_toml_type_name(get(r, "ldt")->type), "datetime-local");
    mcp_toml_free(r);

    parse_fails("d = 2023-02-29\n", "1:5: ", "day out of range");
    parse_fails("d = 1900-02-29\n", "1:5: ", "day out of range");
    parse_fails("d = 2023-13-01\n", "1:5: ", "month out of range");
    parse_fails("t = 24:00:00\n", "1:5: ", "hour out of range");
    parse_fails("t = 12:60:00\n", "1:5: ", "minute out of range");
    parse_fails("t = 1979-05-27T00:32:00+24:00\n", "1:5: ", "offset out of range");
}

static void test_structure_and_positions(void **state)
{
    (void)state;
    mcp_toml_value *r = parse_ok("# comment\n"
                                 "top = 1\n"
                                 "[server]\n"
                                 "  host = \"x\"\n"
                                 "  a.b.c = [1,\n    2]\n"
                                 "[[item]]\n"
                                 "name = \"one\"\n"
                                 "[[item]]\n"
                                 "name = { first = \"t\", \"last\" = 'o' }\n");
    const mcp_toml_kv *top = mcp_toml_find(r, "top");
    assert_int_equal(top->line, 2);
    assert_int_equal(top->col, 1);
    assert_int_equal(top->value->line, 2);
    assert_int_equal(top->value->col, 7);

    const mcp_toml_kv *server = mcp_toml_find(r, "server");
    assert_int_equal(server->value->line, 3);
    assert_int_equal(server->value->col, 1);
    const mcp_toml_kv *host = mcp_toml_find(server->value, "host");
    assert_int_equal(host->line, 4);
    assert_int_equal(host->col, 3);
    assert_int_equal(host->value->col, 10);

    const mcp_toml_kv *a = mcp_toml_find(server->value, "a");
    assert_int_equal(a->line, 5);
    assert_int_equal(a->col, 3);
    const mcp_toml_kv *c = mcp_toml_find(get(a->value, "b"), "c");
    assert_int_equal(c->line, 5);
    assert_int_equal(c->col, 7);
    assert_int_equal(c->value->type, MCP_TOML_ARRAY);
    assert_int_equal(c->value->u.array.len, 2);
    assert_int_equal(c->value->u.array.items[1]->line, 6);
    assert_int_equal(c->value->u.array.items[1]->col, 5);

    const mcp_toml_value *items = get(r, "item");
    assert_int_equal(items->type, MCP_TOML_ARRAY);
    assert_int_equal(items->u.array.len, 2);
    assert_int_equal(items->u.array.items[0]->line, 7);
    assert_int_equal(items->u.array.items[1]->line, 9);
    const mcp_toml_value *name = get(items->u.array.items[1], "name");
    assert_int_equal(name->type, MCP_TOML_TABLE);
    assert_int_equal(name->line, 10);
    assert_int_equal(name->col, 8);
    assert_string_equal(get(name, "last")->u.str.ptr, "o");

    /* Keys keep their order of definition. */
    assert_string_equal(r->u.table.items[0].key, "top");
    assert_string_equal(r->u.table.items[1].key, "server");
    assert_string_equal(r->u.table.items[2].key, "item");

    /* Lookups on non-tables are NULL, not a crash. */
    assert_null(mcp_toml_find(get(r, "top"), "x"));
    assert_null(mcp_toml_find(NULL, "x"));
    assert_null(mcp_toml_find(r, "missing"));
    mcp_toml_free(r);
}

static void test_errors_have_line_and_column(void **state)
{
    (void)state;
    parse_fails("a = 1\nb = \n", "2:5: ", "expected a value");
    parse_fails("a = 1\na = 2\n", "2:1: ", "duplicate key 'a'");
    parse_fails("[t]\nx = 1\n[t]\n", "3:2: ", "already defined");
    parse_fails("s = \"abc\n", "1:9: ", "newline in a single-line string");
    parse_fails("s = \"abc", "1:9: ", "unterminated string");
    parse_fails("x = 1 2\n", "1:7: ", "expected a newline");
    parse_fails("x = 0x_1\n", "1:5: ", "invalid number");
    parse_fails("x = 9223372036854775808\n", "1:5: ", "does not fit in 64 bits");
    parse_fails("x = \"\\q\"\n", "1:6: ", "invalid escape");
    parse_fails("t = {a = 1}\nt.b = 2\n", "2:1: ", "cannot add keys to 't'");
    parse_fails("[fruit]\napple.color = 'red'\n[fruit.apple]\n", "3:8: ", "already defined");
    parse_fails("a = [1]\n[[a]]\n", "2:3: ", "not an array of tables");
    parse_fails("ok = 1\nbad = \"\xff\"\n", "2:8: ", "invalid UTF-8");
    parse_fails("x = 1 # bell \x07\n", "1:14: ", "control character");
    parse_fails("= 1\n", "1:1: ", "expected a key");
    parse_fails("a = {b = 1,}\n", "1:12: ", "trailing comma");
    parse_fails("a = TRUE\n", "1:5: ", "invalid");
}

static void test_not_nul_terminated_and_nul_bytes(void **state)
{
    (void)state;
    /* The text is a window into a larger buffer: nothing past len is read. */
    const char text[] = "a = 12345";
    mcp_error err = {{0}};
    mcp_toml_value *r = mcp_toml_parse(text, 6, &err);
    assert_non_null(r);
    assert_int_equal(get(r, "a")->u.integer, 12);
    mcp_toml_free(r);

    /* A NUL byte in the document is an error, not the end of it. */
    const char with_nul[] = "a = 1\n\0b = 2\n";
    assert_null(mcp_toml_parse(with_nul, sizeof with_nul - 1, &err));
    assert_memory_equal(err.msg, "2:1: ", 5);

    /* An escaped NUL in a string and a key is kept, with its length. */
    const char *esc = "\"k\\u0000ey\" = \"v\\u0000al\"\n";
    r = mcp_toml_parse(esc, strlen(esc), &err);
    assert_non_null(r);
    assert_int_equal(r->u.table.items[0].key_len, 4);
    assert_memory_equal(r->u.table.items[0].key, "k\0ey", 4);
    assert_int_equal(r->u.table.items[0].value->u.str.len, 4);
    mcp_toml_free(r);

    /* Empty input and a NULL text are empty documents. */
    r = mcp_toml_parse("", 0, &err);
    assert_non_null(r);
    assert_int_equal(r->u.table.len, 0);
    mcp_toml_free(r);
    r = mcp_toml_parse(NULL, 0, NULL);
    assert_non_null(r);
    mcp_toml_free(r);
}

static char *repeat_doc(const char *head, const char *unit, size_t n, const char *close,
                        const char *tail)
{
    size_t len = strlen(head) + n * (strlen(unit) + strlen(close)) + strlen(tail) + 1;
    char *s = malloc(len);
    assert_non_null(s);
    char *end = s;
    end = stpcpy(end, head);
    for (size_t i = 0; i < n; i++)
        end = stpcpy(end, unit);
    for (size_t i = 0; i < n; i++)
        end = stpcpy(end, close);
    stpcpy(end, tail);
    return s;
}

static void test_nesting_limit(void **state)
{
    (void)state;
    mcp_error err = {{0}};
    char *ok = repeat_doc("a = ", "[", 128, "]", "\n");
    mcp_toml_value *r = mcp_toml_parse(ok, strlen(ok), &err);
    assert_non_null(r);
    mcp_toml_free(r);
    free(ok);

    char *deep = repeat_doc("a = ", "[", 129, "]", "\n");
    assert_null(mcp_toml_parse(deep, strlen(deep), &err));
    assert_non_null(strstr(err.msg, "nesting deeper than 128"));
    free(deep);

    /* Far deeper input is refused just as cleanly (no stack exhaustion). */
    char *very = repeat_doc("a = ", "{b=", 100000, "}", "\n");
    assert_null(mcp_toml_parse(very, strlen(very), &err));
    assert_non_null(strstr(err.msg, "nesting deeper than 128"));
    free(very);

    /* Long dotted keys and headers count too. */
    char *dotted = repeat_doc("", "k.", 200, "", "z = 1\n");
    assert_null(mcp_toml_parse(dotted, strlen(dotted), &err));
    free(dotted);
    char *header = repeat_doc("[", "k.", 200, "", "z]\n");
    assert_null(mcp_toml_parse(header, strlen(header), &err));
    free(header);
}

static void test_huge_inputs(void **state)
{
    (void)state;
    /* 100k keys in one table, a 1 MB string and a 100k-element array. */
    size_t n = 100000;
    size_t cap = n * 32 + (1u << 20) + 64;
    char *doc = malloc(cap);
    assert_non_null(doc);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(doc + len, cap - len, "key%zu = %zu\n", i, i);
    len += (size_t)snprintf(doc + len, cap - len, "big = \"");
    memset(doc + len, 'x', 1u << 20);
    len += 1u << 20;
    len += (size_t)snprintf(doc + len, cap - len, "\"\narr = [");
    char *doc2 = realloc(doc, cap + n * 8);
    assert_non_null(doc2);
    doc = doc2;
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(doc + len, cap + n * 8 - len, "%zu,", i);
    len += (size_t)snprintf(doc + len, cap + n * 8 - len, "]\n");

    mcp_error err = {{0}};
    mcp_toml_value *r = mcp_toml_parse(doc, len, &err);
    if (!r)
        print_error("%s\n", err.msg);
    assert_non_null(r);
    assert_int_equal(r->u.table.len, n + 2);
    assert_int_equal(get(r, "key99999")->u.integer, 99999);
    assert_int_equal(get(r, "key12345")->u.integer, 12345);
    assert_int_equal(get(r, "big")->u.str.len, 1u << 20);
    assert_int_equal(get(r, "arr")->u.array.len, n);
    mcp_toml_free(r);

    /* A duplicate among many keys is still found. */
    len += (size_t)snprintf(doc + len, cap + n * 8 - len, "key500 = 1\n");
    assert_null(mcp_toml_parse(doc, len, &err));
    assert_non_null(strstr(err.msg, "duplicate key 'key500'"));
    free(doc);
}

/* Mutates a valid document byte by byte: each result parses or fails with
 * "LINE:COL: ", never crashes (run under ASan to catch memory errors). */
static void test_mutations_never_crash(void **state)
{
    (void)state;
    const char *base = "title = \"x\\u00e9\"\n[a.b]\nc = [1, 2.5, {d = 1979-05-27T07:32:00Z}]\n"
                       "'lit' = '''\nmulti'''\n[[arr]]\ne.f = 0x1F\n# end\n";
    size_t len = strlen(base);
    char *buf = malloc(len);
    assert_non_null(buf);
    static const char bytes[] = "\"'[]{}=.,#\n\r\\ \t0x_e+-:Tz\xff\xc3";
    unsigned seed = 12345;
    for (int round = 0; round < 20000; round++) {
        memcpy(buf, base, len);
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % len;
            seed = seed * 1103515245u + 12345u;
            buf[at] = bytes[(seed >> 8) % (sizeof bytes - 1)];
        }
        seed = seed * 1103515245u + 12345u;
        size_t cut = round % 2 ? len : (seed >> 8) % (len + 1);
        mcp_error err = {{0}};
        mcp_toml_value *r = mcp_toml_parse(buf, cut, &err);
        if (r) {
            mcp_toml_free(r);
        } else {
            int line = 0, col = 0;
            assert_int_equal(sscanf(err.msg, "%d:%d: ", &line, &col), 2);
            assert_true(line >= 1 && col >= 1);
        }
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_datetimes),
        cmocka_unit_test(test_structure_and_positions),
        cmocka_unit_test(test_errors_have_line_and_column),
        cmocka_unit_test(test_not_nul_terminated_and_nul_bytes),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_huge_inputs),
        cmocka_unit_test(test_mutations_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
