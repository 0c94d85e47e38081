/* toml-test decoder: reads TOML (stdin, or the file named as the only
 * argument) and prints toml-test's tagged JSON on stdout. Exit status 1 and a
 * message on stderr when the document is invalid. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/toml.h"

static void put_json_string(const char *s, size_t len)
{
    putchar('"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void put_tagged(const char *type, const char *text, size_t len)
{
    printf("{\"type\":\"%s\",\"value\":", type);
    put_json_string(text, len);
    putchar('}');
}

static void put_value(const mcp_toml_value *v)
{
    char num[64];
    switch (v->type) {
    case MCP_TOML_TABLE:
        putchar('{');
        for (size_t i = 0; i < v->u.table.len; i++) {
            if (i)
                putchar(',');
            put_json_string(v->u.table.items[i].key, v->u.table.items[i].key_len);
            putchar(':');
            put_value(v->u.table.items[i].value);
        }
        putchar('}');
        break;
    case MCP_TOML_ARRAY:
        putchar('[');
        for (size_t i = 0; i < v->u.array.len; i++) {
            if (i)
                putchar(',');
            put_value(v->u.array.items[i]);
        }
        putchar(']');
        break;
    case MCP_TOML_STRING:
    case MCP_TOML_DATETIME:
    case MCP_TOML_DATETIME_LOCAL:
    case MCP_TOML_DATE_LOCAL:
    case MCP_TOML_TIME_LOCAL:
        put_tagged(mcp_toml_type_name(v->type), v->u.str.ptr, v->u.str.len);
        break;
    case MCP_TOML_INTEGER:
        snprintf(num, sizeof num, "%lld", (long long)v->u.integer);
        put_tagged("integer", num, strlen(num));
        break;
    case MCP_TOML_FLOAT:
        if (isnan(v->u.floating))
            snprintf(num, sizeof num, "nan");
        else if (isinf(v->u.floating))
            snprintf(num, sizeof num, "%sinf", v->u.floating < 0 ? "-" : "");
        else
            snprintf(num, sizeof num, "%.17g", v->u.floating);
        put_tagged("float", num, strlen(num));
        break;
    case MCP_TOML_BOOL:
        put_tagged("bool", v->u.boolean ? "true" : "false", v->u.boolean ? 4 : 5);
        break;
    }
}

static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        if (n == cap) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                return NULL;
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    FILE *in = stdin;
    if (argc > 1 && !(in = fopen(argv[1], "rb"))) {
        perror(argv[1]);
        return 2;
    }
    size_t len = 0;
    char *text = read_all(in, &len);
    if (in != stdin)
        fclose(in);
    if (!text) {
        fprintf(stderr, "cannot read input\n");
        return 2;
    }
    mcp_error err = {{0}};
    mcp_toml_value *root = mcp_toml_parse(text, len, &err);
    free(text);
    if (!root) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    put_value(root);
    putchar('\n');
    mcp_toml_free(root);
    return 0;
}
