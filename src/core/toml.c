/* A TOML 1.0 parser: one pass over the bytes, building a tree of nodes that
 * remember their positions and how each table came to exist (the
 * redefinition rules depend on that). */
#include "mcp/toml.h"
#include "mcp/util.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---------- errors and positions ---------- */

static int col_at(const parser *p, size_t pos)
{
    return (int)(pos - p->line_start) + 1;
}

/* Records the first error at the current position; later ones are dropped. */
__attribute__((format(printf, 2, 3))) static void fail(parser *p, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = true;
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mcp_error_set(p->err, "%d:%d: %s", p->line, col_at(p, p->pos), msg);
}

static void fail_oom(parser *p)
{
    fail(p, "out of memory");
}

/* ---------- nodes ---------- */

static node *node_new(parser *p, mcp_toml_type t, int line, int col, int depth)
{
    if (depth > TOML_MAX_DEPTH) {
        fail(p, "nesting deeper than %d levels", TOML_MAX_DEPTH);
        return NULL;
    }
    node *n = calloc(1, sizeof *n);
    if (!n) {
        fail_oom(p);
        return NULL;
    }
    n->v.type = t;
    n->v.line = line;
    n->v.col = col;
    n->depth = depth;
    return n;
}

static node *as_node(mcp_toml_value *v)
{
    return (node *)v;
}

void mcp_toml_free(mcp_toml_value *v)
{
    if (!v)
        return;
    node *n = as_node(v);
    switch (v->type) {
    case MCP_TOML_TABLE:
        for (size_t i = 0; i < v->u.table.len; i++) {
            free(v->u.table.items[i].key);
            mcp_toml_free(v->u.table.items[i].value);
        }
        free(v->u.table.items);
        break;
    case MCP_TOML_ARRAY:
        for (size_t i = 0; i < v->u.array.len; i++)
            mcp_toml_free(v->u.array.items[i]);
        free(v->u.array.items);
        break;
    case MCP_TOML_STRING:
    case MCP_TOML_DATETIME:
    case MCP_TOML_DATETIME_LOCAL:
    case MCP_TOML_DATE_LOCAL:
    case MCP_TOML_TIME_LOCAL:
        free(v->u.str.ptr);
        break;
    default:
        break;
    }
    free(n->hash);
    free(n);
}

static size_t hash_key(const char *k, size_t len)
{
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211u;
    return h;
}

/* Rebuilds the index of a table once it is too big for a linear scan. */
static int table_reindex(node *t)
{
    size_t hcap = 64;
    while (hcap < t->v.u.table.len * 2)
        hcap *= 2;
    size_t *h = calloc(hcap, sizeof *h);
    if (!h)
        return -1;
    for (size_t i = 0; i < t->v.u.table.len; i++) {
        const mcp_toml_kv *kv = &t->v.u.table.items[i];
        size_t slot = hash_key(kv->key, kv->key_len) & (hcap - 1);
        while (h[slot])
            slot = (slot + 1) & (hcap - 1);
        h[slot] = i + 1;
    }
    free(t->hash);
    t->hash = h;
    t->hcap = hcap;
    return 0;
}

static mcp_toml_kv *table_lookup(const node *t, const char *key, size_t len)
{
    const mcp_toml_value *v = &t->v;
    if (t->hash) {
        size_t slot = hash_key(key, len) & (t->hcap - 1);
        for (; t->hash[slot]; slot = (slot + 1) & (t->hcap - 1)) {
            mcp_toml_kv *kv = &v->u.table.items[t->hash[slot] - 1];
            if (kv->key_len == len && memcmp(kv->key, key, len) == 0)
                return kv;
        }
        return NULL;
    }
    for (size_t i = 0; i < v->u.table.len; i++) {
        mcp_toml_kv *kv = &v->u.table.items[i];
        if (kv->key_len == len && memcmp(kv->key, key, len) == 0)
            return kv;
    }
    return NULL;
}

/* Adds key -> value to table t (the key must be absent); takes ownership of
 * value only on success. */
static int table_add(parser *p, node *t, const key_part *k, node *value)
{
    mcp_toml_value *v = &t->v;
    if (v->u.table.len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4;
        mcp_toml_kv *items = realloc(v->u.table.items, cap * sizeof *items);
        if (!items) {
            fail_oom(p);
            return -1;
        }
        v->u.table.items = items;
        t->cap = cap;
    }
    char *key = mcp_strndup(k->s, k->len);
    if (!key) {
        fail_oom(p);
        return -1;
    }
    mcp_toml_kv *kv = &v->u.table.items[v->u.table.len++];
    kv->key = key;
    kv->key_len = k->len;
    kv->value = &value->v;
    kv->line = k->line;
    kv->col = k->col;
    bool grow = t->hash ? v->u.table.len * 2 > t->hcap : v->u.table.len > 16;
    if (grow || t->hash) {
        if (grow) {
            if (table_reindex(t) != 0) {
                /* Undo so that the caller still owns value. */
                v->u.table.len--;
                free(key);
                fail_oom(p);
                return -1;
            }
        } else {
            size_t slot = hash_key(key, k->len) & (t->hcap - 1);
            while (t->hash[slot])
                slot = (slot + 1) & (t->hcap - 1);
            t->hash[slot] = v->u.table.len;
        }
    }
    return 0;
}

static int array_push(parser *p, node *a, node *item)
{
    mcp_toml_value *v = &a->v;
    if (v->u.array.len == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4;
        mcp_toml_value **items = realloc(v->u.array.items, cap * sizeof *items);
        if (!items) {
            fail_oom(p);
            return -1;
        }
        v->u.array.items = items;
        a->cap = cap;
    }
    v->u.array.items[v->u.array.len++] = &item->v;
    return 0;
}

/* Marks an inline table and everything in it immutable. */
static void freeze(node *n)
{
    if (n->v.type == MCP_TOML_TABLE) {
        n->flags |= NODE_FROZEN;
        for (size_t i = 0; i < n->v.u.table.len; i++)
            freeze(as_node(n->v.u.table.items[i].value));
    } else if (n->v.type == MCP_TOML_ARRAY) {
        for (size_t i = 0; i < n->v.u.array.len; i++)
            freeze(as_node(n->v.u.array.items[i]));
    }
}

/* ---------- characters ---------- */

static bool at_end(const parser *p)
{
    return p->pos >= p->len;
}

static int peek(const parser *p)
{
    return at_end(p) ? -1 : (unsigned char)p->s[p->pos];
}

static int peek_at(const parser *p, size_t off)
{
    return p->pos + off >= p->len ? -1 : (unsigned char)p->s[p->pos + off];
}

static bool lookahead(const parser *p, const char *lit)
{
    size_t n = strlen(lit);
    return p->len - p->pos >= n && memcmp(p->s + p->pos, lit, n) == 0;
}

/* Consumes a newline (LF or CRLF) if one is next; true when it did. */
static bool eat_newline(parser *p)
{
    if (peek(p) == '\n') {
        p->pos++;
    } else if (peek(p) == '\r' && peek_at(p, 1) == '\n') {
        p->pos += 2;
    } else {
        return false;
    }
    p->line++;
    p->line_start = p->pos;
    return true;
}

static void skip_ws(parser *p)
{
    while (peek(p) == ' ' || peek(p) == '\t')
        p->pos++;
}

/* Control characters other than tab are not allowed in comments or strings. */
static bool is_control(int c)
{
    return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f;
}

/* Skips a comment if one starts here (up to, not including, the newline). */
static void skip_comment(parser *p)
{
    if (peek(p) != '#')
        return;
    while (!at_end(p) && peek(p) != '\n') {
        if (peek(p) == '\r' && peek_at(p, 1) == '\n')
            return;
        if (is_control(peek(p))) {
            fail(p, "control character 0x%02x in a comment", peek(p));
            return;
        }
        p->pos++;
    }
}

/* Skips whitespace, comments and newlines (inside arrays). */
static void skip_ws_comments_newlines(parser *p)
{
    for (;;) {
        skip_ws(p);
        skip_comment(p);
        if (p->failed || !eat_newline(p))
            return;
    }
}

/* After a key/value pair or a header: only a comment may follow on the line. */
static void expect_line_end(parser *p)
{
    skip_ws(p);
    skip_comment(p);
    if (p->failed || at_end(p))
        return;
    if (!eat_newline(p)) {
        int c = peek(p);
        if (c >= 0x20 && c < 0x7f)
            fail(p, "unexpected '%c', expected a newline", c);
        else
            fail(p, "unexpected byte 0x%02x, expected a newline", c);
    }
}

/* Checks the whole text is UTF-8 (no overlongs, surrogates or > U+10FFFF). */
static bool validate_utf8(parser *p)
{
    const unsigned char *s = (const unsigned char *)p->s;
    size_t i = 0;
    while (i < p->len) {
        unsigned c = s[i];
        size_t n;
        unsigned cp, min;
        if (c < 0x80) {
            if (c == '\n') {
                p->line++;
                p->line_start = i + 1;
            }
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4, cp = c & 0x07, min = 0x10000;
        } else {
            goto bad;
        }
        if (p->len - i < n)
            goto bad;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                goto bad;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            goto bad;
        i += n;
    }
    p->line = 1;
    p->line_start = 0;
    return true;
bad:
    p->pos = i;
    fail(p, "invalid UTF-8");
    return false;
}

/* ---------- strings ---------- */

typedef struct buf {
    char *s;
    size_t len, cap;
} buf;

static int buf_put(parser *p, buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 32;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->s, cap);
        if (!grown) {
            fail_oom(p);
            return -1;
        }
        b->s = grown;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return 0;
}

static int buf_put_utf8(parser *p, buf *b, unsigned long cp)
{
    char out[4];
    size_t n;
    if (cp < 0x80) {
        out[0] = (char)cp, n = 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12)), out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
    } else {
        out[0] = (char)(0xf0 | (cp >> 18)), out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), out[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
    }
    return buf_put(p, b, out, n);
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the escape after a backslash (p->pos is at the backslash). */
static int parse_escape(parser *p, buf *b)
{
    size_t backslash = p->pos;
    p->pos++;
    int c = peek(p);
    const char *simple = NULL;
    switch (c) {
    case 'b':
        simple = "\b";
        break;
    case 't':
        simple = "\t";
        break;
    case 'n':
        simple = "\n";
        break;
    case 'f':
        simple = "\f";
        break;
    case 'r':
        simple = "\r";
        break;
    case '"':
        simple = "\"";
        break;
    case '\\':
        simple = "\\";
        break;
    case 'u':
    case 'U': {
        int digits = c == 'u' ? 4 : 8;
        unsigned long cp = 0;
        for (int i = 1; i <= digits; i++) {
            int h = hex_value(peek_at(p, (size_t)i));
            if (h < 0) {
                p->pos = backslash;
                fail(p, "\\%c escape needs %d hex digits", c, digits);
                return -1;
            }
            cp = cp * 16 + (unsigned long)h;
        }
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            p->pos = backslash;
            fail(p, "\\%c escape is not a Unicode scalar value", c);
            return -1;
        }
        p->pos += (size_t)digits + 1;
        return buf_put_utf8(p, b, cp);
    }
    default:
        p->pos = backslash; /* errors point at the backslash */
        if (c >= 0x20 && c < 0x7f)
            fail(p, "invalid escape '\\%c'", c);
        else
            fail(p, "invalid escape");
        return -1;
    }
    p->pos++;
    return buf_put(p, b, simple, 1);
}

/* In a multi-line basic string, a backslash at the end of a line eats all
 * whitespace and newlines up to the next other character. Returns 1 when the
 * backslash here was such a line ending, 0 when it is an ordinary escape. */
static int line_ending_backslash(parser *p)
{
    size_t i = p->pos + 1;
    while (i < p->len && (p->s[i] == ' ' || p->s[i] == '\t'))
        i++;
    if (!(i < p->len &&
          (p->s[i] == '\n' || (p->s[i] == '\r' && i + 1 < p->len && p->s[i + 1] == '\n'))))
        return 0;
    p->pos = i;
    for (;;) {
        skip_ws(p);
        if (!eat_newline(p))
            return 1;
    }
}

/* Parses any of the four string kinds starting at p->pos into b.
 * allow_multi: false for keys. */
static int parse_string(parser *p, buf *b, bool allow_multi)
{
    char q = (char)peek(p);
    bool literal = q == '\'';
    bool multi = lookahead(p, literal ? "'''" : "\"\"\"");
    if (multi && !allow_multi) {
        fail(p, "multi-line strings cannot be keys");
        return -1;
    }
    if (buf_put(p, b, "", 0) != 0)
        return -1;
    p->pos += multi ? 3 : 1;
    if (multi)
        eat_newline(p); /* a newline right after the opening quotes is trimmed */
    for (;;) {
        int c = peek(p);
        if (c < 0) {
            fail(p, "unterminated string");
            return -1;
        }
        if (c == q) {
            if (!multi) {
                p->pos++;
                return 0;
            }
            if (peek_at(p, 1) == q && peek_at(p, 2) == q) {
                /* Up to two quotes may sit right before the closing three. */
                size_t extra = 0;
                while (extra < 2 && peek_at(p, 3 + extra) == q)
                    extra++;
                if (buf_put(p, b, p->s + p->pos, extra) != 0)
                    return -1;
                p->pos += 3 + extra;
                return 0;
            }
            if (buf_put(p, b, p->s + p->pos, 1) != 0)
                return -1;
            p->pos++;
            continue;
        }
        if (c == '\\' && !literal) {
            if (multi) {
                int r = line_ending_backslash(p);
                if (r)
                    continue;
            }
            if (parse_escape(p, b) != 0)
                return -1;
            continue;
        }
        if (c == '\n' || (c == '\r' && peek_at(p, 1) == '\n')) {
            if (!multi) {
                fail(p, "newline in a single-line string");
                return -1;
            }
            size_t start = p->pos;
            eat_newline(p);
            if (buf_put(p, b, p->s + start, p->pos - start) != 0)
                return -1;
            continue;
        }
        if (is_control(c)) {
            fail(p, "control character 0x%02x in a string", c);
            return -1;
        }
        /* Copy a run of ordinary bytes at once. */
        size_t start = p->pos;
        while (!at_end(p)) {
            int d = peek(p);
            if (d == q || (d == '\\' && !literal) || is_control(d) || d == '\n' || d == '\r')
                break;
            p->pos++;
        }
        if (buf_put(p, b, p->s + start, p->pos - start) != 0)
            return -1;
    }
}

/* ---------- keys ---------- */

static bool is_bare_key_char(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

static void key_path_free(key_path *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->parts[i].s);
    free(k->parts);
    k->parts = NULL;
    k->n = k->cap = 0;
}

static int key_path_push(parser *p, key_path *k, buf *b, int line, int col)
{
    if (k->n >= TOML_MAX_DEPTH) {
        fail(p, "key has more than %d parts", TOML_MAX_DEPTH);
        return -1;
    }
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4;
        key_part *parts = realloc(k->parts, cap * sizeof *parts);
        if (!parts) {
            fail_oom(p);
            return -1;
        }
        k->parts = parts;
        k->cap = cap;
    }
    k->parts[k->n].s = b->s;
    k->parts[k->n].len = b->len;
    k->parts[k->n].line = line;
    k->parts[k->n].col = col;
    k->n++;
    b->s = NULL;
    b->len = b->cap = 0;
    return 0;
}

/* Parses a (possibly dotted) key; whitespace around the dots is allowed. */
static int parse_key(parser *p, key_path *k)
{
    for (;;) {
        skip_ws(p);
        int line = p->line, col = col_at(p, p->pos);
        buf b = {0};
        int c = peek(p);
        if (c == '"' || c == '\'') {
            if (parse_string(p, &b, false) != 0) {
                free(b.s);
                return -1;
            }
        } else if (is_bare_key_char(c)) {
            size_t start = p->pos;
            while (is_bare_key_char(peek(p)))
                p->pos++;
            if (buf_put(p, &b, p->s + start, p->pos - start) != 0) {
                free(b.s);
                return -1;
            }
        } else {
            if (c < 0)
                fail(p, "expected a key, found the end of the document");
            else if (c == '\n' || c == '\r')
                fail(p, "expected a key, found a newline");
            else if (c >= 0x20 && c < 0x7f)
                fail(p, "expected a key, found '%c'", c);
            else
                fail(p, "expected a key, found byte 0x%02x", c);
            return -1;
        }
        if (key_path_push(p, k, &b, line, col) != 0) {
            free(b.s);
            return -1;
        }
        skip_ws(p);
        if (peek(p) != '.')
            return 0;
        p->pos++;
    }
}

/* ---------- numbers and dates ---------- */

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* Checks that underscores in [s, s+n) each sit between two digits valid for
 * base and copies the digits (without underscores) to out. */
static bool strip_underscores(const char *s, size_t n, int base, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '_') {
            if (i == 0 || i + 1 == n)
                return false;
            int before = hex_value((unsigned char)s[i - 1]),
                after = hex_value((unsigned char)s[i + 1]);
            if (before < 0 || after < 0 || before >= base || after >= base)
                return false;
            continue;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return true;
}

static bool all_digits_base(const char *s, int base)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        int h = hex_value((unsigned char)*s);
        if (h < 0 || h >= base)
            return false;
    }
    return true;
}

/* Integer token: decimal with optional sign, or 0x/0o/0b without sign. */
static int parse_integer_token(parser *p, const char *tok, size_t n, int64_t *out)
{
    char *digits = malloc(n + 1);
    if (!digits) {
        fail_oom(p);
        return -1;
    }
    int base = 10;
    const char *body = tok;
    size_t blen = n;
    bool neg = false;
    if (n > 2 && tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'o' || tok[1] == 'b')) {
        base = tok[1] == 'x' ? 16 : tok[1] == 'o' ? 8 : 2;
        body += 2, blen -= 2;
    } else if (n > 0 && (tok[0] == '+' || tok[0] == '-')) {
        neg = tok[0] == '-';
        body++, blen--;
    }
    bool ok = strip_underscores(body, blen, base, digits) && all_digits_base(digits, base);
    if (ok && base == 10 && digits[0] == '0' && digits[1] != '\0')
        ok = false; /* leading zeros */
    if (!ok) {
        free(digits);
        fail(p, "invalid number '%.*s'", (int)(n > 60 ? 60 : n), tok);
        return -1;
    }
    /* Accumulate negatively so that INT64_MIN fits. */
    int64_t v = 0;
    for (const char *d = digits; *d; d++) {
        int64_t digit = hex_value((unsigned char)*d);
        if (v < (INT64_MIN + digit) / base) {
            free(digits);
            fail(p, "integer '%.*s' does not fit in 64 bits", (int)(n > 60 ? 60 : n), tok);
            return -1;
        }
        v = v * base - digit;
    }
    free(digits);
    if (!neg) {
        if (v == INT64_MIN) {
            fail(p, "integer '%.*s' does not fit in 64 bits", (int)(n > 60 ? 60 : n), tok);
            return -1;
        }
        v = -v;
    }
    *out = v;
    return 0;
}

/* Float token: [sign] int [. digits] [e [sign] digits], or inf/nan. */
static int parse_float_token(parser *p, const char *tok, size_t n, double *out)
{
    size_t i = 0;
    bool neg = false;
    if (n > 0 && (tok[0] == '+' || tok[0] == '-'))
        neg = tok[0] == '-', i++;
    if (n - i == 3 && memcmp(tok + i, "inf", 3) == 0) {
        *out = neg ? -INFINITY : INFINITY;
        return 0;
    }
    if (n - i == 3 && memcmp(tok + i, "nan", 3) == 0) {
        *out = neg ? -NAN : NAN;
        return 0;
    }
    char *clean = malloc(n + 1);
    char *part = malloc(n + 1);
    if (!clean || !part) {
        free(clean);
        free(part);
        fail_oom(p);
        return -1;
    }
    size_t o = 0;
    bool ok = true;
    if (neg)
        clean[o++] = '-';
    /* Integer part: digits, no leading zero. */
    size_t start = i;
    while (i < n && (is_digit(tok[i]) || tok[i] == '_'))
        i++;
    ok = i > start && strip_underscores(tok + start, i - start, 10, part) &&
         all_digits_base(part, 10) && !(part[0] == '0' && part[1] != '\0');
    if (ok) {
        memcpy(clean + o, part, strlen(part));
        o += strlen(part);
    }
    bool has_frac = false, has_exp = false;
    if (ok && i < n && tok[i] == '.') {
        has_frac = true;
        start = ++i;
        while (i < n && (is_digit(tok[i]) || tok[i] == '_'))
            i++;
        ok = i > start && strip_underscores(tok + start, i - start, 10, part) &&
             all_digits_base(part, 10);
        if (ok) {
            clean[o++] = '.';
            memcpy(clean + o, part, strlen(part));
            o += strlen(part);
        }
    }
    if (ok && i < n && (tok[i] == 'e' || tok[i] == 'E')) {
        has_exp = true;
        clean[o++] = 'e';
        i++;
        if (i < n && (tok[i] == '+' || tok[i] == '-'))
            clean[o++] = tok[i++];
        start = i;
        while (i < n && (is_digit(tok[i]) || tok[i] == '_'))
            i++;
        ok = i > start && strip_underscores(tok + start, i - start, 10, part) &&
             all_digits_base(part, 10);
        if (ok) {
            memcpy(clean + o, part, strlen(part));
            o += strlen(part);
        }
    }
    clean[o] = '\0';
    free(part);
    if (!ok || i != n || !(has_frac || has_exp)) {
        free(clean);
        fail(p, "invalid number '%.*s'", (int)(n > 60 ? 60 : n), tok);
        return -1;
    }
    errno = 0;
    char *end;
    double d = strtod(clean, &end);
    bool overflow = errno == ERANGE && isinf(d);
    free(clean);
    if (overflow) {
        fail(p, "float '%.*s' is out of range", (int)(n > 60 ? 60 : n), tok);
        return -1;
    }
    *out = d;
    return 0;
}

/* Reads exactly n digits at s[*i]; -1 when they are not all digits. */
static int fixed_digits(const char *s, size_t len, size_t *i, int n)
{
    int v = 0;
    for (int k = 0; k < n; k++, (*i)++) {
        if (*i >= len || !is_digit(s[*i]))
            return -1;
        v = v * 10 + (s[*i] - '0');
    }
    return v;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* hh:mm:ss[.frac] at s[*i]; returns a reason on failure. */
static const char *scan_time(const char *s, size_t n, size_t *i)
{
    int h = fixed_digits(s, n, i, 2);
    if (h < 0 || *i >= n || s[(*i)++] != ':')
        return "malformed time (want hh:mm:ss)";
    int m = fixed_digits(s, n, i, 2);
    if (m < 0 || *i >= n || s[(*i)++] != ':')
        return "malformed time (want hh:mm:ss)";
    int sec = fixed_digits(s, n, i, 2);
    if (sec < 0)
        return "malformed time (want hh:mm:ss)";
    if (h > 23)
        return "hour out of range";
    if (m > 59)
        return "minute out of range";
    if (sec > 60)
        return "second out of range";
    if (*i < n && s[*i] == '.') {
        (*i)++;
        size_t start = *i;
        while (*i < n && is_digit(s[*i]))
            (*i)++;
        if (*i == start)
            return "missing digits after the decimal point";
    }
    return NULL;
}

/* Classifies and validates a date/time token. Returns the type, or -1. */
static int parse_datetime_token(parser *p, const char *tok, size_t n)
{
    size_t i = 0;
    const char *why = NULL;
    int type;
    if (n >= 3 && tok[2] == ':') {
        why = scan_time(tok, n, &i);
        type = MCP_TOML_TIME_LOCAL;
    } else {
        int y = fixed_digits(tok, n, &i, 4);
        int m = -1, d = -1;
        if (y >= 0 && i < n && tok[i++] == '-')
            m = fixed_digits(tok, n, &i, 2);
        if (m >= 0 && i < n && tok[i++] == '-')
            d = fixed_digits(tok, n, &i, 2);
        type = MCP_TOML_DATE_LOCAL;
        if (d < 0)
            why = "malformed date (want YYYY-MM-DD)";
        else if (m < 1 || m > 12)
            why = "month out of range";
        else if (d < 1 || d > days_in_month(y, m))
            why = "day out of range";
        else if (i < n && (tok[i] == 'T' || tok[i] == 't' || tok[i] == ' ')) {
            i++;
            type = MCP_TOML_DATETIME_LOCAL;
            why = scan_time(tok, n, &i);
            if (!why && i < n) {
                type = MCP_TOML_DATETIME;
                if (tok[i] == 'Z' || tok[i] == 'z') {
                    i++;
                } else if (tok[i] == '+' || tok[i] == '-') {
                    i++;
                    int oh = fixed_digits(tok, n, &i, 2);
                    int om = -1;
                    if (oh >= 0 && i < n && tok[i++] == ':')
                        om = fixed_digits(tok, n, &i, 2);
                    if (om < 0)
                        why = "malformed offset (want +hh:mm)";
                    else if (oh > 23 || om > 59)
                        why = "offset out of range";
                } else {
                    why = "malformed date-time";
                }
            }
        }
    }
    if (!why && i != n)
        why = "malformed date-time";
    if (why) {
        fail(p, "%s in '%.*s'", why, (int)(n > 60 ? 60 : n), tok);
        return -1;
    }
    return type;
}

static bool is_token_char(int c)
{
    return is_bare_key_char(c) || c == '+' || c == '.' || c == ':';
}

/* Numbers, dates and times and inf/nan: read a run of token characters
 * (a date followed by " hh:" continues across the space) and classify. */
static node *parse_scalar_token(parser *p, int depth)
{
    int line = p->line, col = col_at(p, p->pos);
    size_t start = p->pos;
    while (is_token_char(peek(p)))
        p->pos++;
    size_t n = p->pos - start;
    const char *tok = p->s + start;
    if (n == 10 && tok[4] == '-' && tok[7] == '-' && peek(p) == ' ' && is_digit(peek_at(p, 1)) &&
        is_digit(peek_at(p, 2)) && peek_at(p, 3) == ':') {
        p->pos++;
        while (is_token_char(peek(p)))
            p->pos++;
        n = p->pos - start;
    }
    if (n == 0) {
        int c = peek(p);
        if (c < 0)
            fail(p, "expected a value, found the end of the document");
        else if (c == '\n' || c == '\r')
            fail(p, "expected a value, found a newline");
        else if (c >= 0x20 && c < 0x7f)
            fail(p, "expected a value, found '%c'", c);
        else
            fail(p, "expected a value, found byte 0x%02x", c);
        return NULL;
    }
    /* Errors point at the start of the token. */
    size_t end = p->pos;
    p->pos = start;
    node *v = NULL;
    bool dateish = (n >= 5 && is_digit(tok[0]) && tok[4] == '-') || (n >= 3 && tok[2] == ':');
    if (dateish) {
        int type = parse_datetime_token(p, tok, n);
        if (type < 0)
            return NULL;
        v = node_new(p, (mcp_toml_type)type, line, col, depth);
        if (!v)
            return NULL;
        v->v.u.str.ptr = malloc(n + 1);
        if (!v->v.u.str.ptr) {
            free(v);
            fail_oom(p);
            return NULL;
        }
        for (size_t i = 0; i < n; i++) {
            char c = tok[i];
            v->v.u.str.ptr[i] = (c == 't' || c == ' ') ? 'T' : c == 'z' ? 'Z' : c;
        }
        v->v.u.str.ptr[n] = '\0';
        v->v.u.str.len = n;
    } else {
        bool is_float = false;
        bool hex = n > 2 && tok[0] == '0' && tok[1] == 'x';
        for (size_t i = 0; i < n; i++)
            if (tok[i] == '.' || (!hex && (tok[i] == 'e' || tok[i] == 'E')) || tok[i] == 'i' ||
                tok[i] == 'n')
                is_float = true;
        if (is_float) {
            double d;
            if (parse_float_token(p, tok, n, &d) != 0)
                return NULL;
            v = node_new(p, MCP_TOML_FLOAT, line, col, depth);
            if (v)
                v->v.u.floating = d;
        } else {
            int64_t iv;
            if (parse_integer_token(p, tok, n, &iv) != 0)
                return NULL;
            v = node_new(p, MCP_TOML_INTEGER, line, col, depth);
            if (v)
                v->v.u.integer = iv;
        }
    }
    p->pos = end;
    return v;
}

/* ---------- values ---------- */

static node *parse_value(parser *p, int depth);
static int parse_keyval(parser *p, node *table, int depth_base);

static node *parse_array(parser *p, int depth)
{
    node *a = node_new(p, MCP_TOML_ARRAY, p->line, col_at(p, p->pos), depth);
    if (!a)
        return NULL;
    p->pos++; /* [ */
    for (;;) {
        skip_ws_comments_newlines(p);
        if (p->failed)
            goto fail;
        if (peek(p) == ']') {
            p->pos++;
            return a;
        }
        node *item = parse_value(p, depth + 1);
        if (!item)
            goto fail;
        if (array_push(p, a, item) != 0) {
            mcp_toml_free(&item->v);
            goto fail;
        }
        skip_ws_comments_newlines(p);
        if (p->failed)
            goto fail;
        if (peek(p) == ',') {
            p->pos++;
        } else if (peek(p) == ']') {
            p->pos++;
            return a;
        } else {
            fail(p, "expected ',' or ']' in an array");
            goto fail;
        }
    }
fail:
    mcp_toml_free(&a->v);
    return NULL;
}

static node *parse_inline_table(parser *p, int depth)
{
    node *t = node_new(p, MCP_TOML_TABLE, p->line, col_at(p, p->pos), depth);
    if (!t)
        return NULL;
    t->flags = NODE_DEFINED;
    p->pos++; /* { */
    skip_ws(p);
    if (peek(p) == '}') {
        p->pos++;
        freeze(t);
        return t;
    }
    for (;;) {
        if (parse_keyval(p, t, depth) != 0)
            goto fail;
        skip_ws(p);
        if (peek(p) == ',') {
            p->pos++;
            skip_ws(p);
            if (peek(p) == '}') {
                fail(p, "trailing comma in an inline table");
                goto fail;
            }
        } else if (peek(p) == '}') {
            p->pos++;
            freeze(t);
            return t;
        } else {
            fail(p, "expected ',' or '}' in an inline table (which must fit on one line)");
            goto fail;
        }
    }
fail:
    mcp_toml_free(&t->v);
    return NULL;
}

static node *parse_string_value(parser *p, int depth)
{
    int line = p->line, col = col_at(p, p->pos);
    buf b = {0};
    if (parse_string(p, &b, true) != 0) {
        free(b.s);
        return NULL;
    }
    node *v = node_new(p, MCP_TOML_STRING, line, col, depth);
    if (!v) {
        free(b.s);
        return NULL;
    }
    v->v.u.str.ptr = b.s;
    v->v.u.str.len = b.len;
    return v;
}

static node *parse_bool(parser *p, int depth)
{
    int line = p->line, col = col_at(p, p->pos);
    bool value;
    if (lookahead(p, "true")) {
        value = true;
        p->pos += 4;
    } else if (lookahead(p, "false")) {
        value = false;
        p->pos += 5;
    } else {
        return parse_scalar_token(p, depth); /* reports what it found */
    }
    if (is_token_char(peek(p))) {
        p->pos -= value ? 4 : 5;
        fail(p, "invalid value (booleans are lowercase true or false)");
        return NULL;
    }
    node *v = node_new(p, MCP_TOML_BOOL, line, col, depth);
    if (v)
        v->v.u.boolean = value;
    return v;
}

/* Parses one value; depth is the nesting level it will sit at. */
static node *parse_value(parser *p, int depth)
{
    switch (peek(p)) {
    case '"':
    case '\'':
        return parse_string_value(p, depth);
    case '[':
        return parse_array(p, depth);
    case '{':
        return parse_inline_table(p, depth);
    case 't':
    case 'f':
        return parse_bool(p, depth);
    default:
        return parse_scalar_token(p, depth);
    }
}

/* ---------- key/value pairs and headers ---------- */

static const char *type_desc(const mcp_toml_value *v)
{
    return mcp_toml_type_name(v->type);
}

/* Walks the dotted parts of a key (all but the last) from table t,
 * creating dotted tables; existing ones must themselves be dotted tables. */
static node *descend_dotted(parser *p, node *t, const key_path *k, size_t upto)
{
    for (size_t i = 0; i < upto; i++) {
        const key_part *kp = &k->parts[i];
        mcp_toml_kv *kv = table_lookup(t, kp->s, kp->len);
        if (!kv) {
            node *child = node_new(p, MCP_TOML_TABLE, kp->line, kp->col, t->depth + 1);
            if (!child)
                return NULL;
            child->flags = NODE_DOTTED | (t->flags & NODE_FROZEN);
            if (table_add(p, t, kp, child) != 0) {
                free(child);
                return NULL;
            }
            t = child;
            continue;
        }
        node *n = as_node(kv->value);
        if (n->v.type != MCP_TOML_TABLE || !(n->flags & NODE_DOTTED) || (n->flags & NODE_FROZEN)) {
            p->line = kp->line;
            p->line_start = 0;
            p->pos = (size_t)kp->col - 1;
            fail(p, "cannot add keys to '%.*s' (a %s defined at line %d)", (int)kp->len, kp->s,
                 n->v.type == MCP_TOML_TABLE ? "table" : type_desc(&n->v), n->v.line);
            return NULL;
        }
        t = n;
    }
    return t;
}

/* Sets the parser position to a key part so that an error points at it. */
static void point_at(parser *p, const key_part *kp)
{
    p->line = kp->line;
    p->line_start = 0;
    p->pos = (size_t)kp->col - 1;
}

/* key = value into table (which is the current table or an inline table). */
static int parse_keyval(parser *p, node *table, int depth_base)
{
    key_path k = {0};
    if (parse_key(p, &k) != 0)
        goto fail;
    skip_ws(p);
    if (peek(p) != '=') {
        fail(p, "expected '=' after a key");
        goto fail;
    }
    p->pos++;
    skip_ws(p);
    /* The value sits below the table and each dotted part. */
    node *value = parse_value(p, depth_base + (int)k.n);
    if (!value)
        goto fail;
    size_t saved_pos = p->pos, saved_ls = p->line_start;
    int saved_line = p->line;
    node *t = descend_dotted(p, table, &k, k.n - 1);
    const key_part *last = &k.parts[k.n - 1];
    if (t && table_lookup(t, last->s, last->len)) {
        point_at(p, last);
        fail(p, "duplicate key '%.*s'", (int)last->len, last->s);
        t = NULL;
    }
    if (!t || table_add(p, t, last, value) != 0) {
        mcp_toml_free(&value->v);
        goto fail;
    }
    p->pos = saved_pos, p->line_start = saved_ls, p->line = saved_line;
    key_path_free(&k);
    return 0;
fail:
    key_path_free(&k);
    return -1;
}

/* Walks a header's parent parts, creating implicit tables; an array of
 * tables leads into its last element. */
static node *descend_header(parser *p, const key_path *k, int line, int col)
{
    node *t = p->root;
    for (size_t i = 0; i + 1 < k->n; i++) {
        const key_part *kp = &k->parts[i];
        mcp_toml_kv *kv = table_lookup(t, kp->s, kp->len);
        if (!kv) {
            node *child = node_new(p, MCP_TOML_TABLE, line, col, t->depth + 1);
            if (!child)
                return NULL;
            child->flags = NODE_IMPLICIT;
            if (table_add(p, t, kp, child) != 0) {
                free(child);
                return NULL;
            }
            t = child;
            continue;
        }
        node *n = as_node(kv->value);
        if (n->v.type == MCP_TOML_ARRAY && (n->flags & NODE_AOT) && n->v.u.array.len > 0)
            n = as_node(n->v.u.array.items[n->v.u.array.len - 1]);
        if (n->v.type != MCP_TOML_TABLE || (n->flags & NODE_FROZEN)) {
            point_at(p, kp);
            fail(p, "'%.*s' is already a%s %s (line %d), not a table", (int)kp->len, kp->s,
                 (n->flags & NODE_FROZEN) ? "n inline" : "", type_desc(&n->v), n->v.line);
            return NULL;
        }
        t = n;
    }
    return t;
}

/* [table] or [[array of tables]] starting at '['. */
static int parse_header(parser *p)
{
    int line = p->line, col = col_at(p, p->pos);
    bool aot = peek_at(p, 1) == '[';
    p->pos += aot ? 2 : 1;
    key_path k = {0};
    if (parse_key(p, &k) != 0)
        goto fail;
    skip_ws(p);
    if (aot ? !lookahead(p, "]]") : peek(p) != ']') {
        fail(p, aot ? "expected ']]' to close the header" : "expected ']' to close the header");
        goto fail;
    }
    p->pos += aot ? 2 : 1;
    size_t saved_pos = p->pos, saved_ls = p->line_start;
    int saved_line = p->line;
    node *parent = descend_header(p, &k, line, col);
    if (!parent)
        goto fail;
    const key_part *last = &k.parts[k.n - 1];
    mcp_toml_kv *kv = table_lookup(parent, last->s, last->len);
    node *target = NULL;
    if (aot) {
        node *arr = kv ? as_node(kv->value) : NULL;
        if (arr && !(arr->v.type == MCP_TOML_ARRAY && (arr->flags & NODE_AOT))) {
            point_at(p, last);
            fail(p, "'%.*s' is already a %s (line %d), not an array of tables", (int)last->len,
                 last->s, type_desc(&arr->v), arr->v.line);
            goto fail;
        }
        if (!arr) {
            arr = node_new(p, MCP_TOML_ARRAY, line, col, parent->depth + 1);
            if (!arr)
                goto fail;
            arr->flags = NODE_AOT;
            if (table_add(p, parent, last, arr) != 0) {
                free(arr);
                goto fail;
            }
        }
        target = node_new(p, MCP_TOML_TABLE, line, col, arr->depth + 1);
        if (!target)
            goto fail;
        target->flags = NODE_DEFINED;
        if (array_push(p, arr, target) != 0) {
            free(target);
            goto fail;
        }
    } else if (kv) {
        target = as_node(kv->value);
        if (target->v.type != MCP_TOML_TABLE || !(target->flags & NODE_IMPLICIT) ||
            (target->flags & (NODE_DEFINED | NODE_DOTTED | NODE_FROZEN))) {
            point_at(p, last);
            fail(p, "'%.*s' is already defined (line %d)", (int)last->len, last->s, target->v.line);
            goto fail;
        }
        target->flags = (target->flags & ~(unsigned)NODE_IMPLICIT) | NODE_DEFINED;
        target->v.line = line;
        target->v.col = col;
    } else {
        target = node_new(p, MCP_TOML_TABLE, line, col, parent->depth + 1);
        if (!target)
            goto fail;
        target->flags = NODE_DEFINED;
        if (table_add(p, parent, last, target) != 0) {
            free(target);
            goto fail;
        }
    }
    p->cur = target;
    p->pos = saved_pos, p->line_start = saved_ls, p->line = saved_line;
    key_path_free(&k);
    return 0;
fail:
    key_path_free(&k);
    return -1;
}

static int parse_document(parser *p)
{
    if (lookahead(p, "\xef\xbb\xbf"))
        p->pos += 3; /* BOM */
    while (!p->failed) {
        skip_ws(p);
        skip_comment(p);
        if (p->failed)
            break;
        if (at_end(p))
            return 0;
        if (eat_newline(p))
            continue;
        if (peek(p) == '[') {
            if (parse_header(p) != 0)
                break;
        } else if (parse_keyval(p, p->cur, p->cur->depth) != 0) {
            break;
        }
        expect_line_end(p);
    }
    return -1;
}

mcp_toml_value *mcp_toml_parse(const char *text, size_t len, mcp_error *err)
{
    parser p = {.s = text ? text : "", .len = text ? len : 0, .line = 1, .err = err};
    if (!validate_utf8(&p))
        return NULL;
    p.root = node_new(&p, MCP_TOML_TABLE, 1, 1, 0);
    if (!p.root)
        return NULL;
    p.root->flags = NODE_DEFINED;
    p.cur = p.root;
    if (parse_document(&p) != 0) {
        mcp_toml_free(&p.root->v);
        return NULL;
    }
    return &p.root->v;
}

const mcp_toml_kv *mcp_toml_find(const mcp_toml_value *table, const char *key)
{
    if (!table || table->type != MCP_TOML_TABLE || !key)
        return NULL;
    return table_lookup((const node *)table, key, strlen(key));
}

const char *mcp_toml_type_name(mcp_toml_type t)
{
    switch (t) {
    case MCP_TOML_TABLE:
        return "table";
    case MCP_TOML_ARRAY:
        return "array";
    case MCP_TOML_STRING:
        return "string";
    case MCP_TOML_INTEGER:
        return "integer";
    case MCP_TOML_FLOAT:
        return "float";
    case MCP_TOML_BOOL:
        return "bool";
    case MCP_TOML_DATETIME:
        return "datetime";
    case MCP_TOML_DATETIME_LOCAL:
        return "datetime-local";
    case MCP_TOML_DATE_LOCAL:
        return "date-local";
    case MCP_TOML_TIME_LOCAL:
        return "time-local";
    }
    return "unknown";
}
