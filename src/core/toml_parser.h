/* Private to the TOML parser's source files: the parser state, its nodes
 * and the helpers the tree builder (toml.c), the lexer (toml_lex.c: bytes,
 * comments, strings, keys) and the scalar reader (toml_scalar.c: numbers,
 * dates, times) share. */
#ifndef MCP_TOML_PARSER_H
#define MCP_TOML_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "mcp/toml.h"

#define TOML_MAX_DEPTH 128

/* How a table came to exist; decides what may later extend or define it. */
enum {
    NODE_DEFINED = 1 << 0,  /* by a [header], [[header]] element or the root */
    NODE_IMPLICIT = 1 << 1, /* as a parent in a header: [a.b] makes a */
    NODE_DOTTED = 1 << 2,   /* by a dotted key: a.b = 1 makes a */
    NODE_FROZEN = 1 << 3,   /* an inline table or inside one: immutable */
    NODE_AOT = 1 << 4,      /* an array made by [[header]] (appendable) */
};

/* The public value plus parser bookkeeping; every value is allocated as one. */
typedef struct node {
    mcp_toml_value v;
    unsigned flags;
    int depth;
    size_t cap;   /* capacity of the items array */
    size_t *hash; /* table index: slot -> item index + 1; NULL while small */
    size_t hcap;
} node;

typedef struct parser {
    const char *s;
    size_t len, pos;
    int line;
    size_t line_start;
    mcp_error *err;
    bool failed;
    node *root, *cur; /* cur: the table that key = value lines go into */
} parser;

/* A parsed key path: its decoded parts and where each was written. */
typedef struct key_part {
    char *s;
    size_t len;
    int line, col;
} key_part;

typedef struct key_path {
    key_part *parts;
    size_t n, cap;
} key_path;

typedef struct buf {
    char *s;
    size_t len, cap;
} buf;

/* ---- inline character helpers (hot: once per byte) ---- */

static inline int col_at(const parser *p, size_t pos)
{
    return (int)(pos - p->line_start) + 1;
}

static inline bool at_end(const parser *p)
{
    return p->pos >= p->len;
}

static inline int peek(const parser *p)
{
    return at_end(p) ? -1 : (unsigned char)p->s[p->pos];
}

static inline int peek_at(const parser *p, size_t off)
{
    return p->pos + off >= p->len ? -1 : (unsigned char)p->s[p->pos + off];
}

static inline bool lookahead(const parser *p, const char *lit)
{
    size_t n = strlen(lit);
    return p->len - p->pos >= n && memcmp(p->s + p->pos, lit, n) == 0;
}

static inline int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static inline bool is_bare_key_char(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

static inline bool is_token_char(int c)
{
    return is_bare_key_char(c) || c == '+' || c == '.' || c == ':';
}

/* ---- errors and nodes (toml.c) ---- */

/* Records the first error at the current position; later ones are dropped. */
__attribute__((format(printf, 2, 3))) void toml_fail(parser *p, const char *fmt, ...);
void toml_fail_oom(parser *p);
/* "expected a WHAT, found ..." naming the byte c (peek's value) that is not one. */
void toml_fail_expected(parser *p, const char *what, int c);
node *toml_node_new(parser *p, mcp_toml_type t, int line, int col, int depth);

/* ---- lexer (toml_lex.c) ---- */

/* Consumes a newline (LF or CRLF) if one is next; true when it did. */
bool toml_eat_newline(parser *p);
void toml_skip_ws(parser *p);
void toml_skip_comment(parser *p);
void toml_skip_ws_comments_newlines(parser *p);
/* After a key/value or header: only whitespace and a comment until the newline. */
void toml_expect_line_end(parser *p);
bool toml_validate_utf8(parser *p);
/* Reads a string of any of the four kinds into b (multi-line ones only when allow_multi). */
int toml_parse_string(parser *p, buf *b, bool allow_multi);
void toml_key_path_free(key_path *k);
int toml_parse_key(parser *p, key_path *k);

/* ---- scalars (toml_scalar.c) ---- */

/* A number, date, time, inf or nan at p->pos. */
node *toml_parse_scalar_token(parser *p, int depth);

#endif
