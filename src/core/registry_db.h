/* Private to the registry's source files (registry*.c): the handle, its
 * cached statements and the small SQLite helpers they share. */
#ifndef MCP_REGISTRY_DB_H
#define MCP_REGISTRY_DB_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "mcp/registry.h"

/* Every statement the registry runs after opening, compiled once per handle
 * (on first use) and kept until close: compiling SQL costs far more than
 * running these small queries. The SQL is in registry.c. */
enum stmt_id {
    ST_BEGIN,
    ST_BEGIN_IMMEDIATE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SERVICES_ALL,
    ST_COMPONENTS_ALL,
    ST_ROUTES_ALL,
    ST_SERVICE_ONE,
    ST_COMPONENTS_OF,
    ST_ROUTES_OF,
    ST_KEPT_PORTS,
    ST_HELD_PORTS,
    ST_INSERT_SERVICE,
    ST_INSERT_COMPONENT,
    ST_INSERT_ROUTE,
    ST_DELETE_SERVICE,
    ST_SET_STATE_ONE,
    ST_SET_STATE_ALL,
    ST_SET_ACTIVE,
    ST_ADD_EVENT,
    ST_EVENTS_ALL,
    ST_EVENTS_OF,
    ST_EVENTS_AFTER_ALL,
    ST_EVENTS_AFTER_OF,
    ST_TRIM_EVENTS,
    ST_SUP_UPSERT,
    ST_SUP_ONE,
    ST_SUP_ALL,
    ST_SUP_CLEAR_ONE,
    ST_SUP_CLEAR_SERVICE,
    ST_SUP_PRUNE,
    ST_COUNT
};

extern const char *const mcp_registry_stmt_sql[ST_COUNT];

/* One handle serves one thread at a time (its transactions are per connection anyway). */
struct mcp_registry {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmts[ST_COUNT]; /* NULL until first used */
    int64_t keep_events;           /* newest events kept; trimmed in batches */
    int64_t events_since_trim;
};

int reg_db_fail(mcp_registry *reg, mcp_error *err, const char *what);
/* registry_holder.c: the processes (other than this one) that have path or
 * its -wal/-shm open, as "pid N (comm), …" in out; returns how many. */
size_t reg_find_holders(const char *path, char *out, size_t len);
/* True when the last call on reg->db failed on another connection's lock. */
bool reg_is_busy(mcp_registry *reg);
int reg_out_of_memory(mcp_registry *reg, mcp_error *err);
int reg_exec(mcp_registry *reg, const char *sql, mcp_error *err);
sqlite3_stmt *reg_prepare(mcp_registry *reg, const char *sql, mcp_error *err);
/* The cached statement id, reset and with no bindings, compiled on first use. */
sqlite3_stmt *reg_stmt_get(mcp_registry *reg, enum stmt_id id, mcp_error *err);
/* Ends a use of a cached statement (resetting it releases its read snapshot). */
void reg_stmt_done(sqlite3_stmt *st);
/* Runs a cached statement that returns no rows (BEGIN, COMMIT, …). */
int reg_stmt_run(mcp_registry *reg, enum stmt_id id, mcp_error *err);
/* Binds a possibly NULL string. */
int reg_bind_text(sqlite3_stmt *st, int idx, const char *s);
/* Copies a possibly NULL text column; *ok turns false when out of memory. */
char *reg_column_text(sqlite3_stmt *st, int col, bool *ok);
/* Ends the current transaction, if any, dropping its changes (or its read snapshot). */
void reg_rollback(mcp_registry *reg);
int64_t reg_wall_ms(void);
int reg_query_int(mcp_registry *reg, const char *sql, int64_t *out, mcp_error *err);
/* Steps a cached statement that changes rows; returns the rows changed or -1. */
int reg_stmt_change(mcp_registry *reg, sqlite3_stmt *st, const char *what, mcp_error *err);
/* Runs cached statement id with text bound to its one parameter; returns the rows changed or -1. */
int reg_change_with(mcp_registry *reg, enum stmt_id id, const char *text, const char *what,
                    mcp_error *err);
/* Ends a use of st whose last step answered rc: 0 when that was the end of
 * its rows (SQLITE_DONE), else -1 with err naming what failed. Resets st. */
int reg_stmt_end(mcp_registry *reg, sqlite3_stmt *st, int rc, const char *what, mcp_error *err);
/* Reads every row of st into *out, an array of *n items of size bytes, each
 * zeroed then filled by from_row (0, or -1 when out of memory). Resets st.
 * Returns 0, or -1 with err set; *out then holds the items read so far, for
 * the caller to free as it frees a full answer. */
int reg_read_rows(mcp_registry *reg, sqlite3_stmt *st, size_t size,
                  int (*from_row)(sqlite3_stmt *st, void *item), void **out, size_t *n,
                  const char *what, mcp_error *err);

#endif
