/* The supervisor's per-component state (SPEC §10): restarts, last exit
 * code, state, backoff deadline, reason, last start. One row per component,
 * written field by field so each caller changes only what it knows. */
#include <stdlib.h>
#include <string.h>

#include "mcp/registry.h"
#include "registry_db.h"

static void bind_opt_double(sqlite3_stmt *st, int idx, bool has, double v)
{
    if (has)
        sqlite3_bind_double(st, idx, v);
    else
        sqlite3_bind_null(st, idx);
}

int mcp_registry_set_supervision(mcp_registry *reg, const mcp_supervision *u, unsigned set,
                                 mcp_error *err)
{
    if (!u->service || !u->component) {
        mcp_error_set(err, "registry %s: supervision needs a service and a component", reg->path);
        return -1;
    }
    sqlite3_stmt *st = reg_stmt_get(reg, ST_SUP_UPSERT, err);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, u->service, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, u->component, -1, SQLITE_TRANSIENT);
    if (set & MCP_SUP_RESTARTS)
        sqlite3_bind_int64(st, 3, u->restarts);
    else
        sqlite3_bind_null(st, 3);
    if ((set & MCP_SUP_LAST_EXIT_CODE) && u->has_last_exit_code)
        sqlite3_bind_int(st, 4, u->last_exit_code);
    else
        sqlite3_bind_null(st, 4);
    reg_bind_text(st, 5, set & MCP_SUP_STATE ? u->state : NULL);
    bind_opt_double(st, 6, (set & MCP_SUP_BACKOFF_UNTIL) && u->has_backoff_until, u->backoff_until);
    reg_bind_text(st, 7, set & MCP_SUP_REASON ? u->reason : NULL);
    bind_opt_double(st, 8, (set & MCP_SUP_STARTED_AT) && u->has_started_at, u->started_at);
    sqlite3_bind_double(st, 9, (double)reg_wall_ms() / 1000.0);
    sqlite3_bind_int(st, 10, (int)set);
    int changed = reg_stmt_change(reg, st, "storing supervision", err);
    return changed < 0 ? -1 : changed > 0 ? 1 : 0;
}

static int supervision_from_row(sqlite3_stmt *st, void *item)
{
    mcp_supervision *s = item;
    bool ok = true;
    memset(s, 0, sizeof *s);
    s->service = reg_column_text(st, 0, &ok);
    s->component = reg_column_text(st, 1, &ok);
    s->restarts = sqlite3_column_int64(st, 2);
    s->has_last_exit_code = sqlite3_column_type(st, 3) != SQLITE_NULL;
    s->last_exit_code = sqlite3_column_int(st, 3);
    s->state = reg_column_text(st, 4, &ok);
    s->has_backoff_until = sqlite3_column_type(st, 5) != SQLITE_NULL;
    s->backoff_until = sqlite3_column_double(st, 5);
    s->reason = reg_column_text(st, 6, &ok);
    s->has_started_at = sqlite3_column_type(st, 7) != SQLITE_NULL;
    s->started_at = sqlite3_column_double(st, 7);
    s->updated_at = sqlite3_column_double(st, 8);
    return ok && s->service && s->component ? 0 : -1;
}

int mcp_registry_get_supervision(mcp_registry *reg, const char *service, const char *component,
                                 mcp_supervision *out, mcp_error *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = reg_stmt_get(reg, ST_SUP_ONE, err);
    if (!st)
        return -1;
    reg_bind_text(st, 1, service);
    reg_bind_text(st, 2, component);
    int rc = sqlite3_step(st);
    int found = 0;
    if (rc == SQLITE_ROW) {
        found = 1;
        if (supervision_from_row(st, out) != 0) {
            mcp_supervision_free(out);
            found = reg_out_of_memory(reg, err);
        }
    } else if (rc != SQLITE_DONE) {
        found = reg_db_fail(reg, err, "reading supervision");
    }
    reg_stmt_done(st);
    return found;
}

int mcp_registry_list_supervision(mcp_registry *reg, mcp_supervision **out, size_t *n,
                                  mcp_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = reg_stmt_get(reg, ST_SUP_ALL, err);
    if (!st)
        return -1;
    void *rows = NULL;
    size_t count = 0;
    if (reg_read_rows(reg, st, sizeof **out, supervision_from_row, &rows, &count,
                      "listing supervision", err) != 0) {
        mcp_supervisions_free(rows, count);
        return -1;
    }
    *out = rows;
    *n = count;
    return 0;
}

int mcp_registry_clear_supervision(mcp_registry *reg, const char *service, const char *component,
                                   mcp_error *err)
{
    sqlite3_stmt *st = reg_stmt_get(reg, component ? ST_SUP_CLEAR_ONE : ST_SUP_CLEAR_SERVICE, err);
    if (!st)
        return -1;
    reg_bind_text(st, 1, service);
    if (component)
        sqlite3_bind_text(st, 2, component, -1, SQLITE_TRANSIENT);
    return reg_stmt_change(reg, st, "clearing supervision", err);
}

void mcp_supervision_free(mcp_supervision *s)
{
    if (!s)
        return;
    free(s->service);
    free(s->component);
    free(s->state);
    free(s->reason);
    memset(s, 0, sizeof *s);
}

void mcp_supervisions_free(mcp_supervision *s, size_t n)
{
    MCP_FREE_ARRAY(s, n, mcp_supervision_free);
}
