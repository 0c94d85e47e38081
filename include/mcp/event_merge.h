/* One stream of podman's container events from two sources: podman's own
 * reader (`podman events`: every event, but with the file backend up to
 * 250 ms after it was written, as it polls the file) and podman's events file
 * itself, followed with inotify (mcp_tail: at once). Each event is delivered
 * once, from whichever source has it first; the file only once it has been
 * seen to agree with the reader (an event from both), so a guessed path that
 * is not podman's file never delivers anything. */
#ifndef MCP_EVENT_MERGE_H
#define MCP_EVENT_MERGE_H

#include <stdbool.h>
#include <stdint.h>

#include "mcp/podman.h"

/* Events remembered for pairing: the reader is never this many behind. */
#define MCP_EVENT_MERGE_RING 4096

typedef enum { MCP_EVENTS_READER, MCP_EVENTS_FILE } mcp_events_source;

typedef struct mcp_event_merge {
    struct {
        uint64_t key;
        uint8_t source, delivered;
    } ring[MCP_EVENT_MERGE_RING];
    unsigned next, used;
    bool file_trusted;
} mcp_event_merge;

/* Zero it to start. True when ev (from src) is to be delivered now. */
bool mcp_event_merge_take(mcp_event_merge *m, const mcp_podman_event *ev, mcp_events_source src);

#endif
