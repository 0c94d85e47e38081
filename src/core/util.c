/* Allocation and string helpers. */
#include "mcp/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Arrays grown one item at a time keep their room implied by the count: the
 * next power of two, at least 4. They double when the count reaches it: one
 * realloc per item made a 100k-entry env list quadratic (ASan's realloc
 * always copies). */
static bool full_at(size_t n)
{
    return n == 0 || (n >= 4 && (n & (n - 1)) == 0);
}

/* Room for n + 1 items of size bytes; items itself when it has it. */
static void *room_for_one_more(void *items, size_t n, size_t size)
{
    if (!full_at(n))
        return items;
    size_t cap = n ? n * 2 : 4;
    return cap <= SIZE_MAX / size ? realloc(items, cap * size) : NULL;
}

int mcp_strv_push(mcp_strv *sv, const char *s)
{
    return mcp_strv_push_n(sv, s ? s : "", s ? strlen(s) : 0);
}

int mcp_strv_push_n(mcp_strv *sv, const char *s, size_t len)
{
    char *copy = strndup(s, len);
    if (!copy)
        return -1;
    char **grown = room_for_one_more(sv->v, sv->n, sizeof *grown);
    if (!grown) {
        free(copy);
        return -1;
    }
    sv->v = grown;
    sv->v[sv->n++] = copy;
    return 0;
}

void *mcp_grow_to(void *items, size_t *cap, size_t need, size_t first_cap, size_t max_cap)
{
    size_t want = *cap ? *cap : first_cap;
    while (want < need)
        want *= 2;
    if (max_cap && want > max_cap)
        want = max_cap;
    void *grown = realloc(items, want);
    if (grown)
        *cap = want;
    return grown;
}

void mcp_free_each(void *const ptrs[], size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ptrs[i]);
}

void mcp_strv_free_each(mcp_strv *const svs[], size_t n)
{
    for (size_t i = 0; i < n; i++)
        mcp_strv_free(svs[i]);
}

int mcp_bytes_append(char **s, size_t *len, size_t *cap, const char *data, size_t n,
                     size_t first_cap, size_t max_cap)
{
    if (*len + n + 1 > *cap) {
        char *grown = mcp_grow_to(*s, cap, *len + n + 1, first_cap, max_cap);
        if (!grown)
            return -1;
        *s = grown;
    }
    memcpy(*s + *len, data, n);
    *len += n;
    (*s)[*len] = '\0';
    return 0;
}

long mcp_parse_digits(const char *s, size_t n, size_t max_digits)
{
    if (n == 0 || n > max_digits)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

void *mcp_grow_one(void *items, size_t n, size_t size)
{
    if (size == 0)
        return NULL;
    char *grown = room_for_one_more(items, n, size);
    if (grown)
        memset(grown + n * size, 0, size);
    return grown;
}

int mcp_strv_extend(mcp_strv *dst, const mcp_strv *src)
{
    for (size_t i = 0; src && i < src->n; i++)
        if (mcp_strv_push(dst, src->v[i]) != 0)
            return -1;
    return 0;
}

void mcp_strv_free(mcp_strv *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        free(sv->v[i]);
    free(sv->v);
    sv->v = NULL;
    sv->n = 0;
}

char **mcp_strv_argv(const mcp_strv *sv)
{
    char **argv = calloc(sv->n + 1, sizeof *argv);
    if (!argv)
        return NULL;
    for (size_t i = 0; i < sv->n; i++)
        argv[i] = sv->v[i];
    return argv;
}

char *mcp_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

char *mcp_strndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *mcp_sprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *buf = malloc((size_t)n + 1);
    if (!buf)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(buf, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return buf;
}

char *mcp_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
        if (n + 1 == cap) {
            if (cap > (64u << 20)) { /* 64 MiB: no config or definition is that large */
                free(buf);
                buf = NULL;
                errno = EFBIG;
                break;
            }
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
    }
    if (buf && ferror(f)) {
        int e = errno;
        free(buf);
        buf = NULL;
        errno = e ? e : EIO;
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

int64_t mcp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double mcp_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
