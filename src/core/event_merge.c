/* Pairing the events of podman's reader and of its file (mcp/event_merge.h). */
#include <string.h>

#include "mcp/event_merge.h"

/* FNV-1a over what tells one event from another: container, what, when. */
static uint64_t event_key(const mcp_podman_event *ev)
{
    uint64_t h = 1469598103934665603ULL;
    const char *parts[] = {ev->id ? ev->id : "", ev->status ? ev->status : "",
                           ev->name ? ev->name : ""};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++)
            h = (h ^ *p) * 1099511628211ULL;
        h = (h ^ 0xff) * 1099511628211ULL;
    }
    uint64_t t;
    memcpy(&t, &ev->time, sizeof t);
    for (int i = 0; i < 8; i++)
        h = (h ^ ((t >> (8 * i)) & 0xff)) * 1099511628211ULL;
    return h;
}

bool mcp_event_merge_take(mcp_event_merge *m, const mcp_podman_event *ev, mcp_events_source src)
{
    uint64_t key = event_key(ev);
    /* newest first: an event's twin comes soon after it */
    for (unsigned i = 0; i < m->used; i++) {
        unsigned at = (m->next + MCP_EVENT_MERGE_RING - 1 - i) % MCP_EVENT_MERGE_RING;
        if (m->ring[at].key != key || m->ring[at].source == src)
            continue;
        if (src == MCP_EVENTS_READER)
            m->file_trusted = true; /* the file said it too: it is podman's */
        if (m->ring[at].delivered)
            return false;
        m->ring[at].delivered = 1;
        return true;
    }
    bool now = src == MCP_EVENTS_READER || m->file_trusted;
    m->ring[m->next].key = key;
    m->ring[m->next].source = (uint8_t)src;
    m->ring[m->next].delivered = now;
    m->next = (m->next + 1) % MCP_EVENT_MERGE_RING;
    if (m->used < MCP_EVENT_MERGE_RING)
        m->used++;
    return now;
}
