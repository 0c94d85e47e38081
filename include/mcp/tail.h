/* Following the lines appended to a file, on the event loop: inotify (libuv's
 * uv_fs_event) says when it grew, so a line is read within a millisecond or
 * so of its write, with no polling. Used for podman's events file, whose own
 * reader (`podman events`) polls it every 250 ms. */
#ifndef MCP_TAIL_H
#define MCP_TAIL_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "mcp/error.h"

typedef struct mcp_tail mcp_tail;

/* One line appended to the file, without its '\n'; valid during the call. It
 * may call mcp_tail_close. */
typedef void (*mcp_tail_cb)(const char *line, size_t len, void *ud);

/* Follows path from its end at this moment (what it holds already is not
 * delivered), or, when there is no file yet, from the start of the one that
 * comes (its directory is watched until then). A file truncated is followed from its new end; one renamed or
 * removed, at its path again once a file is there (from that file's start:
 * all of it is new). Lines over max_line bytes are dropped. NULL with err set
 * when neither the file nor its directory can be watched. */
mcp_tail *mcp_tail_open(uv_loop_t *loop, const char *path, size_t max_line, mcp_tail_cb on_line,
                        void *ud, mcp_error *err);
/* No callback after it; the memory goes once libuv has closed the watch. */
void mcp_tail_close(mcp_tail *t);

#endif
