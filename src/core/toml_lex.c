/* The TOML lexer: bytes and UTF-8, whitespace and comments, the four kinds
 * of strings with their escapes, and keys (bare, quoted, dotted). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/util.h"
#include "toml_parser.h"

/* ---------- characters ---------- */

/* Consumes a newline (LF or CRLF) if one is next; true when it did. */
bool toml_eat_newline(parser *p)
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

void toml_skip_ws(parser *p)
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
void toml_skip_comment(parser *p)
{
    if (peek(p) != '#')
        return;
    while (!at_end(p) && peek(p) != '\n') {
        if (peek(p) == '\r' && peek_at(p, 1) == '\n')
            return;
        if (is_control(peek(p))) {
            toml_fail(p, "control character 0x%02x in a comment", peek(p));
            return;
        }
        p->pos++;
    }
}

/* Skips whitespace, comments and newlines (inside arrays). */
void toml_skip_ws_comments_newlines(parser *p)
{
    for (;;) {
        toml_skip_ws(p);
        toml_skip_comment(p);
        if (p->failed || !toml_eat_newline(p))
            return;
    }
}

/* After a key/value pair or a header: only a comment may follow on the line. */
void toml_expect_line_end(parser *p)
{
    toml_skip_ws(p);
    toml_skip_comment(p);
    if (p->failed || at_end(p))
        return;
    if (!toml_eat_newline(p)) {
        int c = peek(p);
        if (c >= 0x20 && c < 0x7f)
            toml_fail(p, "unexpected '%c', expected a newline", c);
        else
            toml_fail(p, "unexpected byte 0x%02x, expected a newline", c);
    }
}

/* Checks the whole text is UTF-8 (no overlongs, surrogates or > U+10FFFF). */
bool toml_validate_utf8(parser *p)
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
    toml_fail(p, "invalid UTF-8");
    return false;
}

/* ---------- strings ---------- */

static int buf_put(parser *p, buf *b, const char *s, size_t n)
{
    if (mcp_bytes_append(&b->s, &b->len, &b->cap, s, n, 32, 0) != 0) {
        toml_fail_oom(p);
        return -1;
    }
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
                toml_fail(p, "\\%c escape needs %d hex digits", c, digits);
                return -1;
            }
            cp = cp * 16 + (unsigned long)h;
        }
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            p->pos = backslash;
            toml_fail(p, "\\%c escape is not a Unicode scalar value", c);
            return -1;
        }
        p->pos += (size_t)digits + 1;
        return buf_put_utf8(p, b, cp);
    }
    default:
        p->pos = backslash; /* errors point at the backslash */
        if (c >= 0x20 && c < 0x7f)
            toml_fail(p, "invalid escape '\\%c'", c);
        else
            toml_fail(p, "invalid escape");
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
        toml_skip_ws(p);
        if (!toml_eat_newline(p))
            return 1;
    }
}

/* Parses any of the four string kinds starting at p->pos into b.
 * allow_multi: false for keys. */
int toml_parse_string(parser *p, buf *b, bool allow_multi)
{
    char q = (char)peek(p);
    bool literal = q == '\'';
    bool multi = lookahead(p, literal ? "'''" : "\"\"\"");
    if (multi && !allow_multi) {
        toml_fail(p, "multi-line strings cannot be keys");
        return -1;
    }
    if (buf_put(p, b, "", 0) != 0)
        return -1;
    p->pos += multi ? 3 : 1;
    if (multi)
        toml_eat_newline(p); /* a newline right after the opening quotes is trimmed */
    for (;;) {
        int c = peek(p);
        if (c < 0) {
            toml_fail(p, "unterminated string");
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
                toml_fail(p, "newline in a single-line string");
                return -1;
            }
            size_t start = p->pos;
            toml_eat_newline(p);
            if (buf_put(p, b, p->s + start, p->pos - start) != 0)
                return -1;
            continue;
        }
        if (is_control(c)) {
            toml_fail(p, "control character 0x%02x in a string", c);
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

void toml_key_path_free(key_path *k)
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
        toml_fail(p, "key has more than %d parts", TOML_MAX_DEPTH);
        return -1;
    }
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4;
        key_part *parts = realloc(k->parts, cap * sizeof *parts);
        if (!parts) {
            toml_fail_oom(p);
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
int toml_parse_key(parser *p, key_path *k)
{
    for (;;) {
        toml_skip_ws(p);
        int line = p->line, col = col_at(p, p->pos);
        buf b = {0};
        int c = peek(p);
        if (c == '"' || c == '\'') {
            if (toml_parse_string(p, &b, false) != 0) {
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
            toml_fail_expected(p, "key", c);
            return -1;
        }
        if (key_path_push(p, k, &b, line, col) != 0) {
            free(b.s);
            return -1;
        }
        toml_skip_ws(p);
        if (peek(p) != '.')
            return 0;
        p->pos++;
    }
}
