/* Go-style durations (time.ParseDuration), kept in milliseconds. */
#include "mcp/duration.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef struct unit {
    const char *name;
    uint64_t ns;
} unit;

static const unit units[] = {
    {"ns", 1},           {"us", 1000},      {"\xc2\xb5s", 1000}, /* U+00B5 micro sign */
    {"\xce\xbcs", 1000},                                         /* U+03BC Greek mu */
    {"ms", 1000000},     {"s", 1000000000}, {"m", 60ull * 1000000000}, {"h", 3600ull * 1000000000},
};

#define MAX_NS ((uint64_t)INT64_MAX)

__attribute__((format(printf, 3, 4))) static int refuse(char *why, size_t whylen, const char *fmt,
                                                        ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Reads leading digits into *v; false on overflow. */
static bool leading_int(const char **s, uint64_t *v)
{
    uint64_t x = 0;
    for (; is_digit(**s); (*s)++) {
        if (x > (MAX_NS - (uint64_t)(**s - '0')) / 10)
            return false;
        x = x * 10 + (uint64_t)(**s - '0');
    }
    *v = x;
    return true;
}

/* Reads the digits after a '.', keeping as many as fit (like Go). */
static void leading_fraction(const char **s, uint64_t *f, double *scale)
{
    uint64_t x = 0;
    double sc = 1;
    bool overflow = false;
    for (; is_digit(**s); (*s)++) {
        if (overflow)
            continue;
        if (x > (MAX_NS - 9) / 10) {
            overflow = true;
            continue;
        }
        x = x * 10 + (uint64_t)(**s - '0');
        sc *= 10;
    }
    *f = x;
    *scale = sc;
}

static const unit *find_unit(const char *s, size_t n)
{
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strlen(units[i].name) == n && memcmp(units[i].name, s, n) == 0)
            return &units[i];
    return NULL;
}

int mcp_duration_parse(const char *s, int64_t *ms, char *why, size_t whylen)
{
    if (!s)
        return refuse(why, whylen, "%s", "missing duration");
    const char *orig = s;
    if (*s == '-')
        return refuse(why, whylen, "negative duration \"%s\"", orig);
    if (*s == '+')
        s++;
    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return 0;
    }
    if (!*s)
        return refuse(why, whylen, "invalid duration \"%s\"", orig);
    uint64_t total = 0;
    while (*s) {
        if (!(*s == '.' || is_digit(*s)))
            return refuse(why, whylen, "invalid duration \"%s\"", orig);
        const char *start = s;
        uint64_t v, f = 0;
        double scale = 1;
        if (!leading_int(&s, &v))
            return refuse(why, whylen, "duration \"%s\" is out of range", orig);
        bool pre = s != start, post = false;
        if (*s == '.') {
            s++;
            const char *fstart = s;
            leading_fraction(&s, &f, &scale);
            post = s != fstart;
        }
        if (!pre && !post)
            return refuse(why, whylen, "invalid duration \"%s\"", orig);
        const char *ustart = s;
        while (*s && *s != '.' && !is_digit(*s))
            s++;
        if (s == ustart)
            return refuse(why, whylen, "missing unit in \"%s\" (use ns, us, ms, s, m or h)", orig);
        const unit *u = find_unit(ustart, (size_t)(s - ustart));
        if (!u)
            return refuse(why, whylen, "unknown unit in \"%s\" (use ns, us, ms, s, m or h)", orig);
        if (v > MAX_NS / u->ns)
            return refuse(why, whylen, "duration \"%s\" is out of range", orig);
        v *= u->ns;
        if (f > 0) {
            v += (uint64_t)((double)f * ((double)u->ns / scale));
            if (v > MAX_NS)
                return refuse(why, whylen, "duration \"%s\" is out of range", orig);
        }
        if (v > MAX_NS - total)
            return refuse(why, whylen, "duration \"%s\" is out of range", orig);
        total += v;
    }
    /* Sub-millisecond remainders round up so that "300us" is not 0. */
    *ms = (int64_t)(total / 1000000 + (total % 1000000 ? 1 : 0));
    return 0;
}

void mcp_duration_format(int64_t ms, char *buf, size_t len)
{
    if (!buf || !len)
        return;
    if (ms < 0) {
        snprintf(buf, len, "-%" PRId64 "ms", ms == INT64_MIN ? INT64_MAX : -ms);
        return;
    }
    if (ms == 0) {
        snprintf(buf, len, "0s");
        return;
    }
    if (ms < 1000) {
        snprintf(buf, len, "%" PRId64 "ms", ms);
        return;
    }
    int64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
    char secs[32];
    if (frac) {
        char f[8];
        snprintf(f, sizeof f, "%03d", (int)frac);
        for (int i = 2; i > 0 && f[i] == '0'; i--)
            f[i] = '\0';
        snprintf(secs, sizeof secs, "%d.%ss", (int)s, f);
    } else {
        snprintf(secs, sizeof secs, "%ds", (int)s);
    }
    if (h)
        snprintf(buf, len, "%" PRId64 "h%dm%s", h, (int)m, secs);
    else if (m)
        snprintf(buf, len, "%dm%s", (int)m, secs);
    else
        snprintf(buf, len, "%s", secs);
}
