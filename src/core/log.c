/* Structured logging: logfmt or JSON lines on stderr. */
#include "mcp/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static mcp_log_level g_level = MCP_LOG_INFO;
static bool g_json = false;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

int mcp_log_level_parse(const char *s)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; s && i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

void mcp_log_set_level(mcp_log_level level)
{
    g_level = level;
}

void mcp_log_set_json(bool json)
{
    g_json = json;
}

bool mcp_log_enabled(mcp_log_level level)
{
    return level >= g_level;
}

/* logfmt quotes a value holding spaces, quotes, '=' or control bytes. */
static bool needs_quotes(const char *s)
{
    if (!*s)
        return true;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == '"' || *s == '=' || *s == '\\')
            return true;
    return false;
}

static void put_escaped(FILE *f, const char *s, bool json)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20)
            fprintf(f, json ? "\\u%04x" : "\\x%02x", c);
        else
            fputc(c, f);
    }
}

static void put_value(FILE *f, const char *v, bool json)
{
    if (json || needs_quotes(v)) {
        fputc('"', f);
        put_escaped(f, v, json);
        fputc('"', f);
    } else {
        fputs(v, f);
    }
}

void mcp_logv(mcp_log_level level, const char *msg, const char *const *keys,
              const char *const *vals, int n)
{
    if (!mcp_log_enabled(level))
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[64];
    size_t off = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + off, sizeof ts - off, ".%03ldZ", (long)(tv.tv_usec / 1000));

    FILE *f = stderr;
    flockfile(f);
    if (g_json) {
        fprintf(f, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":", ts, level_names[level]);
        put_value(f, msg, true);
        for (int i = 0; i < n; i++) {
            fputc(',', f);
            put_value(f, keys[i], true);
            fputc(':', f);
            put_value(f, vals[i] ? vals[i] : "", true);
        }
        fputs("}\n", f);
    } else {
        fprintf(f, "time=%s level=%s msg=", ts, level_names[level]);
        put_value(f, msg, false);
        for (int i = 0; i < n; i++) {
            fprintf(f, " %s=", keys[i]);
            put_value(f, vals[i] ? vals[i] : "", false);
        }
        fputc('\n', f);
    }
    funlockfile(f);
}

void mcp_log(mcp_log_level level, const char *msg, ...)
{
    if (!mcp_log_enabled(level))
        return;
    const char *keys[32], *vals[32];
    int n = 0;
    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k)
            break;
        const char *v = va_arg(ap, const char *);
        if (n < 32) {
            keys[n] = k;
            vals[n] = v;
            n++;
        }
        if (!v)
            break;
    }
    va_end(ap);
    mcp_logv(level, msg, keys, vals, n);
}
