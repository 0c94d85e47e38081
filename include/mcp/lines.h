/* A byte stream split into lines: a child's output (mcp_proc_stream), a file
 * that grows (mcp_tail). */
#ifndef MCP_LINES_H
#define MCP_LINES_H

#include <stdbool.h>
#include <stddef.h>

/* One complete line, without its '\n', NUL-terminated; valid during the call.
 * Returns true to stop the feed that delivered it (its owner closed). */
typedef bool (*mcp_lines_cb)(const char *line, size_t len, void *ud);

typedef struct mcp_lines {
    char *line; /* the partial line, max + 1 bytes */
    size_t len, max;
    size_t dropped; /* lines longer than max, dropped whole */
    bool skipping;  /* inside such a line */
    mcp_lines_cb on_line;
    void *ud;
} mcp_lines;

/* 0, or -1 when out of memory. */
int mcp_lines_init(mcp_lines *l, size_t max, mcp_lines_cb on_line, void *ud);
/* Delivers every line data completes; returns false when a callback stopped it. */
bool mcp_lines_feed(mcp_lines *l, const char *data, size_t n);
/* The last line when it had no '\n' (at the end of the stream). */
void mcp_lines_finish(mcp_lines *l);
/* Forgets a partial line (the stream jumped). */
void mcp_lines_reset(mcp_lines *l);
void mcp_lines_free(mcp_lines *l);

#endif
