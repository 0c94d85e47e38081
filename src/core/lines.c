/* A byte stream split into lines, with a cap on a line's length. */
#include <stdlib.h>
#include <string.h>

#include "mcp/lines.h"

int mcp_lines_init(mcp_lines *l, size_t max, mcp_lines_cb on_line, void *ud)
{
    memset(l, 0, sizeof *l);
    l->line = malloc(max + 1);
    if (!l->line)
        return -1;
    l->max = max;
    l->on_line = on_line;
    l->ud = ud;
    return 0;
}

/* Ends the current line: delivered, unless it went over the cap. */
static bool emit(mcp_lines *l)
{
    bool stop = false;
    if (l->skipping) {
        l->skipping = false;
    } else {
        l->line[l->len] = '\0';
        stop = l->on_line(l->line, l->len, l->ud);
    }
    l->len = 0;
    return stop;
}

bool mcp_lines_feed(mcp_lines *l, const char *data, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        if (!l->skipping) {
            if (l->len + take > l->max) {
                l->skipping = true; /* counted once per line */
                l->dropped++;
                l->len = 0;
            } else {
                memcpy(l->line + l->len, data, take);
                l->len += take;
            }
        }
        if (!nl)
            return true;
        if (emit(l))
            return false;
        data += take + 1;
        n -= take + 1;
    }
    return true;
}

void mcp_lines_finish(mcp_lines *l)
{
    if (l->len > 0 || l->skipping)
        emit(l);
}

void mcp_lines_reset(mcp_lines *l)
{
    l->len = 0;
    l->skipping = false;
}

void mcp_lines_free(mcp_lines *l)
{
    free(l->line);
    l->line = NULL;
}
