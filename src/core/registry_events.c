/* The registry's event log: append (with a batched trim to the newest
 * keep_events rows) and read, newest first or following by id. */
#include <stdlib.h>
#include <string.h>

#include "mcp/registry.h"
#include "registry_db.h"

static int trim_events(mcp_registry *reg, mcp_error *err)
{
    sqlite3_stmt *st = reg_stmt_get(reg, ST_TRIM_EVENTS, err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, reg->keep_events);
    if (reg_stmt_change(reg, st, "trimming events", err) < 0)
        return -1;
    reg->events_since_trim = 0;
    return 0;
}

int mcp_registry_set_keep_events(mcp_registry *reg, int64_t keep, mcp_error *err)
{
    if (keep < 1) {
        mcp_error_set(err, "registry %s: keep_events must be >= 1", reg->path);
        return -1;
    }
    reg->keep_events = keep;
    return trim_events(reg, err);
}

int mcp_registry_add_event_exit(mcp_registry *reg, const char *service, const char *component,
                                const char *kind, const char *message, const int *exit_code,
                                mcp_error *err)
{
    sqlite3_stmt *st = reg_stmt_get(reg, ST_ADD_EVENT, err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, reg_wall_ms());
    reg_bind_text(st, 2, service ? service : "");
    reg_bind_text(st, 3, component);
    reg_bind_text(st, 4, kind ? kind : "");
    reg_bind_text(st, 5, message ? message : "");
    if (exit_code)
        sqlite3_bind_int(st, 6, *exit_code);
    else
        sqlite3_bind_null(st, 6);
    if (reg_stmt_change(reg, st, "adding event", err) < 0)
        return -1;
    /* One range delete per batch instead of one per insert. */
    int64_t batch = reg->keep_events / 100 > 0 ? reg->keep_events / 100 : 1;
    if (++reg->events_since_trim >= batch)
        return trim_events(reg, err);
    return 0;
}

int mcp_registry_add_event(mcp_registry *reg, const char *service, const char *component,
                           const char *kind, const char *message, mcp_error *err)
{
    return mcp_registry_add_event_exit(reg, service, component, kind, message, NULL, err);
}

/* Binds q to the statement it picked: [service,] since-or-after, limit. */
static sqlite3_stmt *events_stmt(mcp_registry *reg, const mcp_event_query *q, mcp_error *err)
{
    bool after = q->after || q->after_id > 0;
    enum stmt_id id = after ? (q->service ? ST_EVENTS_AFTER_OF : ST_EVENTS_AFTER_ALL)
                            : (q->service ? ST_EVENTS_OF : ST_EVENTS_ALL);
    sqlite3_stmt *st = reg_stmt_get(reg, id, err);
    if (!st)
        return NULL;
    int idx = 1;
    if (q->service)
        sqlite3_bind_text(st, idx++, q->service, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, idx++, after ? q->after_id : q->since_ms);
    sqlite3_bind_int(st, idx, q->limit < 0 ? -1 : q->limit);
    return st;
}

static int event_from_row(sqlite3_stmt *st, void *item)
{
    mcp_event *e = item;
    bool ok = true;
    e->id = sqlite3_column_int64(st, 0);
    e->time_ms = sqlite3_column_int64(st, 1);
    e->service = reg_column_text(st, 2, &ok);
    e->component = reg_column_text(st, 3, &ok);
    e->kind = reg_column_text(st, 4, &ok);
    e->message = reg_column_text(st, 5, &ok);
    e->has_exit_code = sqlite3_column_type(st, 6) != SQLITE_NULL;
    e->exit_code = sqlite3_column_int(st, 6);
    return ok ? 0 : -1;
}

int mcp_registry_query_events(mcp_registry *reg, const mcp_event_query *q, mcp_event **out,
                              size_t *n, mcp_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = events_stmt(reg, q, err);
    if (!st)
        return -1;
    void *events = NULL;
    size_t count = 0;
    if (reg_read_rows(reg, st, sizeof **out, event_from_row, &events, &count, "listing events",
                      err) != 0) {
        mcp_events_free(events, count);
        return -1;
    }
    *out = events;
    *n = count;
    return 0;
}

int mcp_registry_list_events(mcp_registry *reg, const char *service, int limit, mcp_event **out,
                             size_t *n, mcp_error *err)
{
    mcp_event_query q = {.service = service, .limit = limit};
    return mcp_registry_query_events(reg, &q, out, n, err);
}

void mcp_events_free(mcp_event *ev, size_t n)
{
    for (size_t i = 0; ev && i < n; i++) {
        free(ev[i].service);
        free(ev[i].component);
        free(ev[i].kind);
        free(ev[i].message);
    }
    free(ev);
}
