/* Error text helpers. */
#include "mcp/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void mcp_error_set(mcp_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

void mcp_error_prefix(mcp_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    /* Truncation is fine: the front of the message matters most. */
    size_t n = strlen(prefix);
    if (n > sizeof err->msg - 3)
        n = sizeof err->msg - 3;
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t rest = sizeof err->msg - n - 3;
    size_t oldlen = strnlen(old, sizeof old);
    if (oldlen > rest)
        oldlen = rest;
    memcpy(err->msg + n + 2, old, oldlen);
    err->msg[n + 2 + oldlen] = '\0';
}
