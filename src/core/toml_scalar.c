/* TOML scalars: integers (with bases and underscores), floats, inf/nan,
 * offset and local date-times, dates and times, checked to the letter. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toml_parser.h"

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
        toml_fail_oom(p);
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
        toml_fail(p, "invalid number '%.*s'", (int)(n > 60 ? 60 : n), tok);
        return -1;
    }
    /* Accumulate negatively so that INT64_MIN fits. */
    int64_t v = 0;
    for (const char *d = digits; *d; d++) {
        int64_t digit = hex_value((unsigned char)*d);
        if (v < (INT64_MIN + digit) / base) {
            free(digits);
            toml_fail(p, "integer '%.*s' does not fit in 64 bits", (int)(n > 60 ? 60 : n), tok);
            return -1;
        }
        v = v * base - digit;
    }
    free(digits);
    if (!neg) {
        if (v == INT64_MIN) {
            toml_fail(p, "integer '%.*s' does not fit in 64 bits", (int)(n > 60 ? 60 : n), tok);
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
        toml_fail_oom(p);
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
        toml_fail(p, "invalid number '%.*s'", (int)(n > 60 ? 60 : n), tok);
        return -1;
    }
    errno = 0;
    char *end;
    double d = strtod(clean, &end);
    bool overflow = errno == ERANGE && isinf(d);
    free(clean);
    if (overflow) {
        toml_fail(p, "float '%.*s' is out of range", (int)(n > 60 ? 60 : n), tok);
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
        toml_fail(p, "%s in '%.*s'", why, (int)(n > 60 ? 60 : n), tok);
        return -1;
    }
    return type;
}

/* Numbers, dates and times and inf/nan: read a run of token characters
 * (a date followed by " hh:" continues across the space) and classify. */
node *toml_parse_scalar_token(parser *p, int depth)
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
        toml_fail_expected(p, "value", peek(p));
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
        v = toml_node_new(p, (mcp_toml_type)type, line, col, depth);
        if (!v)
            return NULL;
        v->v.u.str.ptr = malloc(n + 1);
        if (!v->v.u.str.ptr) {
            free(v);
            toml_fail_oom(p);
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
        mcp_toml_value num = {0};
        if ((is_float ? parse_float_token(p, tok, n, &num.u.floating)
                      : parse_integer_token(p, tok, n, &num.u.integer)) != 0)
            return NULL;
        v = toml_node_new(p, is_float ? MCP_TOML_FLOAT : MCP_TOML_INTEGER, line, col, depth);
        if (v)
            v->v.u = num.u;
    }
    p->pos = end;
    return v;
}
