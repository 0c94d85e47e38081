/* The registry: opening (refusing what is not ours), the schema and its
 * versioned migrations, the statement table, shared helpers and snapshots.
 * Services live in registry_services.c, events in registry_events.c,
 * supervisor state in registry_supervision.c.
 *
 * Lists (ports, volumes, cmd, env) are stored as JSON arrays: lossless and
 * ordered. Components and routes carry a position column so a definition
 * reads back in the order it was written. Route host ports live in the
 * routes table under a UNIQUE constraint; put_service carries them over by
 * (service, component, route name) so a redeploy never moves a route. */
#include "mcp/registry.h"
#include "registry_db.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* "MCPA": marks the file as ours, next to user_version. */
#define MCP_REGISTRY_APPLICATION_ID 0x4d435041
#define BUSY_TIMEOUT_MS 5000

/* Component and route queries share their column layout (see component_from_row
 * and route_from_row): the service (and component) name first, for stitching. */
#define COMPONENT_COLUMNS                                                                          \
    "SELECT service, name, image, network, user, restart, ports, volumes, cmd, env, "              \
    "desired_state, health_check, health_port, health_path, health_interval_ms, "                  \
    "health_timeout_ms, health_failure_threshold "
#define ROUTE_COLUMNS "SELECT service, component, name, port, mode, hostname, host_port "
#define EVENT_COLUMNS                                                                              \
    "SELECT id, time_ms, service, component, kind, message, exit_code FROM events "
#define SUPERVISION_COLUMNS                                                                        \
    "SELECT service, component, restarts, last_exit_code, state, backoff_until, reason, "          \
    "started_at, updated_at FROM supervision "

const char *const mcp_registry_stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SERVICES_ALL] = "SELECT name, active FROM services ORDER BY name",
    /* Whole tables: a plain scan and one sort beat walking the primary key
     * index (a second lookup per row) and sorting within it anyway. The
     * trailing name keys only break ties a hand-edited file could hold. */
    [ST_COMPONENTS_ALL] =
        COMPONENT_COLUMNS "FROM components NOT INDEXED ORDER BY service, position, name",
    [ST_ROUTES_ALL] =
        ROUTE_COLUMNS "FROM routes NOT INDEXED ORDER BY service, component, position, name",
    [ST_SERVICE_ONE] = "SELECT name, active FROM services WHERE name = ?",
    [ST_COMPONENTS_OF] =
        COMPONENT_COLUMNS "FROM components WHERE service = ? ORDER BY position, name",
    [ST_ROUTES_OF] =
        ROUTE_COLUMNS "FROM routes WHERE service = ? ORDER BY component, position, name",
    [ST_KEPT_PORTS] = "SELECT component, name, host_port FROM routes WHERE service = ?",
    [ST_HELD_PORTS] = "SELECT host_port FROM routes WHERE host_port BETWEEN ? AND ?",
    [ST_INSERT_SERVICE] = "INSERT INTO services (name, active, updated_ms) VALUES (?, ?, ?)",
    [ST_INSERT_COMPONENT] =
        "INSERT INTO components (service, name, position, image, network, user, restart, ports, "
        "volumes, cmd, env, desired_state, health_check, health_port, health_path, "
        "health_interval_ms, health_timeout_ms, health_failure_threshold) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [ST_INSERT_ROUTE] = "INSERT INTO routes (service, component, name, position, port, mode, "
                        "hostname, host_port) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    [ST_DELETE_SERVICE] = "DELETE FROM services WHERE name = ?",
    [ST_SET_STATE_ONE] = "UPDATE components SET desired_state = ? WHERE service = ? AND name = ?",
    [ST_SET_STATE_ALL] = "UPDATE components SET desired_state = ? WHERE service = ?",
    [ST_SET_ACTIVE] = "UPDATE services SET active = ? WHERE name = ?",
    [ST_ADD_EVENT] = "INSERT INTO events (time_ms, service, component, kind, message, exit_code) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
    [ST_EVENTS_ALL] = EVENT_COLUMNS "WHERE time_ms >= ? ORDER BY id DESC LIMIT ?",
    [ST_EVENTS_OF] = EVENT_COLUMNS "WHERE service = ? AND time_ms >= ? ORDER BY id DESC LIMIT ?",
    [ST_EVENTS_AFTER_ALL] = EVENT_COLUMNS "WHERE id > ? ORDER BY id LIMIT ?",
    [ST_EVENTS_AFTER_OF] = EVENT_COLUMNS "WHERE service = ? AND id > ? ORDER BY id LIMIT ?",
    /* ids only grow (AUTOINCREMENT) and events are deleted only here, so
     * the newest N are the ids above max - N: a range delete on the rowid. */
    [ST_TRIM_EVENTS] = "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?",
    /* An upsert of the fields whose bit is set in ?10 (see SUP_* in
     * registry_supervision.c); inserts nothing for an unknown component. */
    [ST_SUP_UPSERT] =
        "INSERT INTO supervision (service, component, restarts, last_exit_code, state, "
        "backoff_until, reason, started_at, updated_at) "
        "SELECT ?1, ?2, coalesce(?3, 0), ?4, ?5, ?6, ?7, ?8, ?9 FROM components "
        "WHERE service = ?1 AND name = ?2 "
        "ON CONFLICT (service, component) DO UPDATE SET "
        "restarts = CASE WHEN ?10 & 1 THEN coalesce(?3, 0) ELSE restarts END, "
        "last_exit_code = CASE WHEN ?10 & 2 THEN ?4 ELSE last_exit_code END, "
        "state = CASE WHEN ?10 & 4 THEN ?5 ELSE state END, "
        "backoff_until = CASE WHEN ?10 & 8 THEN ?6 ELSE backoff_until END, "
        "reason = CASE WHEN ?10 & 16 THEN ?7 ELSE reason END, "
        "started_at = CASE WHEN ?10 & 32 THEN ?8 ELSE started_at END, "
        "updated_at = ?9",
    [ST_SUP_ONE] = SUPERVISION_COLUMNS "WHERE service = ? AND component = ?",
    [ST_SUP_ALL] = SUPERVISION_COLUMNS "ORDER BY service, component",
    [ST_SUP_CLEAR_ONE] = "DELETE FROM supervision WHERE service = ? AND component = ?",
    [ST_SUP_CLEAR_SERVICE] = "DELETE FROM supervision WHERE service = ?",
    [ST_SUP_PRUNE] = "DELETE FROM supervision WHERE service = ?1 AND component NOT IN "
                     "(SELECT name FROM components WHERE service = ?1)",
};

/* The schema, one step per version; step i brings user_version from i to i+1.
 * Never edit a released step: append a new one. */
static const char *const migrations[] = {
    /* 1: the initial schema. */
    "CREATE TABLE services ("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  active INTEGER NOT NULL DEFAULT 1,"
    "  updated_ms INTEGER NOT NULL"
    ");"
    "CREATE TABLE components ("
    "  service TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  position INTEGER NOT NULL,"
    "  image TEXT NOT NULL,"
    "  network TEXT,"
    "  user TEXT,"
    "  restart TEXT,"
    "  ports TEXT NOT NULL DEFAULT '[]',"
    "  volumes TEXT NOT NULL DEFAULT '[]',"
    "  cmd TEXT NOT NULL DEFAULT '[]',"
    "  env TEXT NOT NULL DEFAULT '[]',"
    "  desired_state TEXT NOT NULL DEFAULT 'running',"
    "  health_check TEXT,"
    "  health_port INTEGER NOT NULL DEFAULT 0,"
    "  health_path TEXT,"
    "  PRIMARY KEY (service, name)"
    ");"
    "CREATE TABLE routes ("
    "  service TEXT NOT NULL,"
    "  component TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  position INTEGER NOT NULL,"
    "  port INTEGER NOT NULL DEFAULT 0,"
    "  mode TEXT NOT NULL DEFAULT 'l4',"
    "  hostname TEXT,"
    "  host_port INTEGER NOT NULL UNIQUE,"
    "  PRIMARY KEY (service, component, name),"
    "  FOREIGN KEY (service, component) REFERENCES components(service, name) ON DELETE CASCADE"
    ");"
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  time_ms INTEGER NOT NULL,"
    "  service TEXT NOT NULL,"
    "  component TEXT,"
    "  kind TEXT NOT NULL,"
    "  message TEXT NOT NULL"
    ");"
    "CREATE INDEX events_by_service ON events(service, id);",
    /* 2: liveness settings per component, exit codes on events, and the
     * supervisor's state per component (SPEC §10). Supervision rows have no
     * foreign key: a redeploy replaces the service's rows but must keep the
     * state of components it keeps; deleting the service deletes them. */
    "ALTER TABLE components ADD COLUMN health_interval_ms INTEGER NOT NULL DEFAULT 10000;"
    "ALTER TABLE components ADD COLUMN health_timeout_ms INTEGER NOT NULL DEFAULT 1000;"
    "ALTER TABLE components ADD COLUMN health_failure_threshold INTEGER NOT NULL DEFAULT 3;"
    "ALTER TABLE events ADD COLUMN exit_code INTEGER;"
    "CREATE TABLE supervision ("
    "  service TEXT NOT NULL,"
    "  component TEXT NOT NULL,"
    "  restarts INTEGER NOT NULL DEFAULT 0,"
    "  last_exit_code INTEGER,"
    "  state TEXT,"
    "  backoff_until REAL,"
    "  reason TEXT,"
    "  started_at REAL,"
    "  updated_at REAL NOT NULL,"
    "  PRIMARY KEY (service, component)"
    ");",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* ---- small SQLite helpers ---- */

bool reg_is_busy(mcp_registry *reg)
{
    int rc = reg->db ? sqlite3_errcode(reg->db) & 0xff : SQLITE_OK;
    return rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
}

/* " (locked for over 5 s; held open by pid N (comm))" after a busy failure, else "". */
static void busy_detail(mcp_registry *reg, char *out, size_t len)
{
    out[0] = '\0';
    if (!reg_is_busy(reg))
        return;
    char holders[400];
    if (reg_find_holders(reg->path, holders, sizeof holders) > 0)
        snprintf(out, len, " (locked for over %d s; held open by %s)", BUSY_TIMEOUT_MS / 1000,
                 holders);
    else
        snprintf(out, len, " (locked for over %d s by another process)", BUSY_TIMEOUT_MS / 1000);
}

int reg_db_fail(mcp_registry *reg, mcp_error *err, const char *what)
{
    char busy[512];
    busy_detail(reg, busy, sizeof busy);
    mcp_error_set(err, "registry %s: %s: %s%s", reg->path, what, sqlite3_errmsg(reg->db), busy);
    return -1;
}

int reg_exec(mcp_registry *reg, const char *sql, mcp_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(reg->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        char busy[512];
        busy_detail(reg, busy, sizeof busy);
        mcp_error_set(err, "registry %s: %s%s", reg->path, msg ? msg : sqlite3_errmsg(reg->db),
                      busy);
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

sqlite3_stmt *reg_prepare(mcp_registry *reg, const char *sql, mcp_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(reg->db, sql, -1, &st, NULL) != SQLITE_OK) {
        reg_db_fail(reg, err, "prepare");
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

/* The cached statement id, reset and with no bindings, compiling it on first
 * use. A statement that failed to compile (say, a table another connection
 * dropped) is not kept, so the next call tries again. */
sqlite3_stmt *reg_stmt_get(mcp_registry *reg, enum stmt_id id, mcp_error *err)
{
    sqlite3_stmt *st = reg->stmts[id];
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return st;
    }
    if (sqlite3_prepare_v3(reg->db, mcp_registry_stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &st,
                           NULL) != SQLITE_OK) {
        reg_db_fail(reg, err, "prepare");
        sqlite3_finalize(st);
        return NULL;
    }
    reg->stmts[id] = st;
    return st;
}

/* Ends a use of a cached statement. Resetting at once matters: a statement
 * left mid-result would hold its read snapshot (and block checkpoints) until
 * its next use. Error messages must be taken before this. */
void reg_stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
}

/* Runs a cached statement that returns no rows (BEGIN, COMMIT, …). */
int reg_stmt_run(mcp_registry *reg, enum stmt_id id, mcp_error *err)
{
    sqlite3_stmt *st = reg_stmt_get(reg, id, err);
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        reg_db_fail(reg, err, mcp_registry_stmt_sql[id]);
    reg_stmt_done(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

/* Binds a possibly NULL string. */
int reg_bind_text(sqlite3_stmt *st, int idx, const char *s)
{
    return s ? sqlite3_bind_text(st, idx, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, idx);
}

/* Copies a possibly NULL text column; *ok turns false when out of memory. */
char *reg_column_text(sqlite3_stmt *st, int col, bool *ok)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    if (!s)
        return NULL;
    char *copy = mcp_strdup((const char *)s);
    if (!copy)
        *ok = false;
    return copy;
}

/* Ends the current transaction, if any, dropping its changes (or its read snapshot). */
void reg_rollback(mcp_registry *reg)
{
    if (sqlite3_get_autocommit(reg->db))
        return;
    mcp_error ignored = {{0}};
    if (reg_stmt_run(reg, ST_ROLLBACK, &ignored) != 0)
        sqlite3_exec(reg->db, "ROLLBACK", NULL, NULL, NULL); /* last resort */
}

int64_t reg_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs a query returning one integer. */
int reg_query_int(mcp_registry *reg, const char *sql, int64_t *out, mcp_error *err)
{
    sqlite3_stmt *st = reg_prepare(reg, sql, err);
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE)
        *out = 0;
    else
        reg_db_fail(reg, err, sql);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int reg_out_of_memory(mcp_registry *reg, mcp_error *err)
{
    mcp_error_set(err, "registry %s: out of memory", reg->path);
    return -1;
}

int reg_stmt_end(mcp_registry *reg, sqlite3_stmt *st, int rc, const char *what, mcp_error *err)
{
    if (rc != SQLITE_DONE)
        reg_db_fail(reg, err, what);
    reg_stmt_done(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int reg_stmt_change(mcp_registry *reg, sqlite3_stmt *st, const char *what, mcp_error *err)
{
    int rc = sqlite3_step(st);
    return reg_stmt_end(reg, st, rc, what, err) == 0 ? sqlite3_changes(reg->db) : -1;
}

int reg_change_with(mcp_registry *reg, enum stmt_id id, const char *text, const char *what,
                    mcp_error *err)
{
    sqlite3_stmt *st = reg_stmt_get(reg, id, err);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
    return reg_stmt_change(reg, st, what, err);
}

int reg_read_rows(mcp_registry *reg, sqlite3_stmt *st, size_t size,
                  int (*from_row)(sqlite3_stmt *st, void *item), void **out, size_t *n,
                  const char *what, mcp_error *err)
{
    char *rows = NULL;
    size_t count = 0, cap = 0;
    bool oom = false;
    int rc;
    while (!oom && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == cap) {
            size_t want = cap ? cap * 2 : 16;
            char *grown = want <= SIZE_MAX / size ? realloc(rows, want * size) : NULL;
            if (!grown) {
                oom = true;
                break;
            }
            rows = grown;
            cap = want;
        }
        char *item = rows + count++ * size;
        memset(item, 0, size);
        oom = from_row(st, item) != 0;
    }
    *out = rows;
    *n = count;
    if (!oom)
        return reg_stmt_end(reg, st, rc, what, err);
    reg_stmt_done(st);
    return reg_out_of_memory(reg, err);
}

/* ---- opening: refuse anything that is not our registry, without touching it ---- */

/* Error message for open failures: "PATH: what". */
static int open_fail(mcp_registry *reg, mcp_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int open_fail(mcp_registry *reg, mcp_error *err, const char *fmt, ...)
{
    char what[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    mcp_error_set(err, "%s: %s", reg->path, what);
    return -1;
}

/* A non-empty file must start with the SQLite magic. Checked by hand so a
 * garbage file is never handed to SQLite (which could try to write to it). */
static int check_magic(mcp_registry *reg, bool *exists, mcp_error *err)
{
    struct stat sb;
    *exists = false;
    if (stat(reg->path, &sb) != 0) {
        if (errno == ENOENT)
            return 0;
        return open_fail(reg, err, "%s", strerror(errno));
    }
    if (!S_ISREG(sb.st_mode))
        return open_fail(reg, err, "%s", "not a regular file");
    *exists = sb.st_size > 0;
    if (sb.st_size == 0)
        return 0; /* SQLite treats an empty file as an empty database */
    static const char magic[16] = "SQLite format 3";
    char head[16] = {0};
    int fd = open(reg->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return open_fail(reg, err, "%s", strerror(errno));
    ssize_t got = read(fd, head, sizeof head);
    close(fd);
    if (got != (ssize_t)sizeof head || memcmp(head, magic, sizeof magic) != 0)
        return open_fail(reg, err, "%s", "not a SQLite database (file is not a database)");
    return 0;
}

/* The last error was the disk's (I/O, full), not the file's content. */
static bool reg_disk_failed(mcp_registry *reg)
{
    int rc = reg->db ? sqlite3_errcode(reg->db) & 0xff : SQLITE_OK;
    return rc == SQLITE_IOERR || rc == SQLITE_FULL;
}

/* Runs PRAGMA quick_check; anything but a single "ok" is corruption (or,
 * when the disk fails the read, says so). */
static int check_integrity(mcp_registry *reg, mcp_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(reg->db, "PRAGMA quick_check(5)", -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return open_fail(reg, err, "%s (%s)",
                         reg_disk_failed(reg) ? "cannot read" : "corrupt or unreadable SQLite database",
                         sqlite3_errmsg(reg->db));
    }
    char problems[600] = "";
    int rc;
    bool ok = false;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *row = (const char *)sqlite3_column_text(st, 0);
        if (row && strcmp(row, "ok") == 0) {
            ok = true;
            continue;
        }
        size_t used = strlen(problems);
        snprintf(problems + used, sizeof problems - used, "%s%s", used ? "; " : "",
                 row ? row : "?");
    }
    if (rc != SQLITE_DONE && reg_disk_failed(reg)) {
        snprintf(problems, sizeof problems, "%s", sqlite3_errmsg(reg->db));
        sqlite3_finalize(st);
        return open_fail(reg, err, "cannot read (%s)", problems);
    }
    if (rc != SQLITE_DONE) {
        snprintf(problems, sizeof problems, "%s", sqlite3_errmsg(reg->db));
        ok = false;
    }
    sqlite3_finalize(st);
    if (!ok || problems[0])
        return open_fail(reg, err, "corrupt SQLite database (%s)", problems);
    return 0;
}

/* The names of the user tables, comma separated, into buf. Returns the count or -1. */
static int list_tables(mcp_registry *reg, char *buf, size_t len, mcp_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(reg->db,
                           "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT "
                           "LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return open_fail(reg, err, "unreadable SQLite database (%s)", sqlite3_errmsg(reg->db));
    }
    int n = 0, rc;
    buf[0] = '\0';
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", n ? ", " : "", name ? name : "?");
        n++;
    }
    if (rc != SQLITE_DONE) {
        open_fail(reg, err, "unreadable SQLite database (%s)", sqlite3_errmsg(reg->db));
        n = -1;
    }
    sqlite3_finalize(st);
    return n;
}

/* Accepts an empty database, or one whose user_version and application_id are ours. */
static int check_ownership(mcp_registry *reg, mcp_error *err)
{
    int64_t version = 0, app_id = 0;
    if (reg_query_int(reg, "PRAGMA user_version", &version, err) != 0 ||
        reg_query_int(reg, "PRAGMA application_id", &app_id, err) != 0)
        return open_fail(reg, err, "unreadable SQLite database (%s)", sqlite3_errmsg(reg->db));
    char tables[600];
    int n_tables = list_tables(reg, tables, sizeof tables, err);
    if (n_tables < 0)
        return -1;
    if (version == 0 && app_id == 0 && n_tables == 0)
        return 0; /* fresh: ours to initialise */
    if (app_id != MCP_REGISTRY_APPLICATION_ID || version == 0)
        return open_fail(reg, err, "not an mcp-agent registry (found tables: %s)",
                         n_tables ? tables : "none");
    if (version > SCHEMA_VERSION) {
        return open_fail(reg, err,
                         "registry schema version %lld is newer than this mcp-agent knows "
                         "(%d): refusing to open it",
                         (long long)version, SCHEMA_VERSION);
    }
    return 0;
}

/* Applies each missing migration in its own transaction. The version is
 * re-read inside the transaction so two agents starting at once agree. */
static int migrate(mcp_registry *reg, mcp_error *err)
{
    for (;;) {
        if (reg_exec(reg, "BEGIN IMMEDIATE", err) != 0)
            return -1;
        int64_t version = 0;
        if (reg_query_int(reg, "PRAGMA user_version", &version, err) != 0)
            goto fail;
        if (version >= SCHEMA_VERSION) {
            reg_rollback(reg);
            return 0;
        }
        if (reg_exec(reg, migrations[version], err) != 0)
            goto fail;
        char pragmas[128];
        snprintf(pragmas, sizeof pragmas, "PRAGMA application_id = %d; PRAGMA user_version = %d",
                 MCP_REGISTRY_APPLICATION_ID, (int)version + 1);
        if (reg_exec(reg, pragmas, err) != 0 || reg_exec(reg, "COMMIT", err) != 0)
            goto fail;
    }
fail:
    reg_rollback(reg);
    mcp_error_prefix(err, "migrating the registry schema");
    return -1;
}

/* Component env may hold secrets: the registry is 0600 whatever the umask.
 * SQLite gives -wal and -shm the database's mode when it creates them; older
 * files of ours that are wider are narrowed. */
static int restrict_file(mcp_registry *reg, const char *suffix, mcp_error *err)
{
    char *p = mcp_sprintf("%s%s", reg->path, suffix);
    if (!p)
        return open_fail(reg, err, "%s", "out of memory");
    struct stat sb;
    int rc = 0;
    if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && (sb.st_mode & 077) && sb.st_uid == geteuid() &&
        chmod(p, 0600) != 0)
        rc = open_fail(reg, err, "cannot make %s private (0600): %s", p, strerror(errno));
    free(p);
    return rc;
}

static int create_private(mcp_registry *reg, mcp_error *err)
{
    int fd = open(reg->path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == EEXIST ? 0 : open_fail(reg, err, "cannot create: %s", strerror(errno));
    int rc = fchmod(fd, 0600) == 0 ? 0 : open_fail(reg, err, "chmod 0600: %s", strerror(errno));
    close(fd);
    return rc;
}

/* Closes the connection and the statements kept for it. */
static void disconnect(mcp_registry *reg)
{
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(reg->stmts[i]);
        reg->stmts[i] = NULL;
    }
    sqlite3_close_v2(reg->db);
    reg->db = NULL;
}

/* SQLite keeps a WAL database's index in the -shm file, which the first
 * connection to open the database must size: on a full disk it cannot. */
static bool shm_unavailable(mcp_registry *reg)
{
    int rc = reg->db ? sqlite3_extended_errcode(reg->db) : SQLITE_OK;
    return rc == SQLITE_IOERR_SHMSIZE || rc == SQLITE_IOERR_SHMOPEN || rc == SQLITE_IOERR_SHMMAP ||
           (rc & 0xff) == SQLITE_FULL;
}

/* Opens the connection and checks, read only, that the file is a sound
 * registry of ours, then sets it up (foreign keys, WAL, schema). With
 * in_memory_index the connection takes the database in exclusive locking
 * mode, so SQLite keeps the WAL index in its own memory and needs no -shm. */
static int connect(mcp_registry *reg, bool create, bool in_memory_index, mcp_error *err)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(reg->path, &reg->db, flags, NULL) != SQLITE_OK)
        return open_fail(reg, err, "cannot open (%s)",
                         reg->db ? sqlite3_errmsg(reg->db) : "out of memory");
    sqlite3_extended_result_codes(reg->db, 1);
    sqlite3_busy_timeout(reg->db, BUSY_TIMEOUT_MS);
    if (in_memory_index && reg_exec(reg, "PRAGMA locking_mode = EXCLUSIVE", err) != 0)
        return -1;
    /* Checks read only: nothing is written before the file is known to be ours. */
    if (check_integrity(reg, err) != 0 || check_ownership(reg, err) != 0)
        return -1;
    if (reg_exec(reg, "PRAGMA foreign_keys = ON", err) != 0)
        return -1;
    int64_t fk = 0;
    if (reg_query_int(reg, "PRAGMA foreign_keys", &fk, err) != 0 || fk != 1)
        return open_fail(reg, err, "%s", "SQLite lacks foreign key support");
    if (reg_exec(reg, "PRAGMA journal_mode = WAL", err) != 0 || migrate(reg, err) != 0)
        return -1;
    return 0;
}

static int open_registry(const char *path, bool brief, mcp_registry **out, mcp_error *err)
{
    *out = NULL;
    mcp_registry *reg = calloc(1, sizeof *reg);
    if (!reg || !(reg->path = mcp_strdup(path))) {
        free(reg);
        mcp_error_set(err, "%s: out of memory", path);
        return -1;
    }
    reg->keep_events = MCP_REGISTRY_KEEP_EVENTS;
    bool exists = false;
    if (check_magic(reg, &exists, err) != 0)
        goto fail;
    if (create_private(reg, err) != 0 || restrict_file(reg, "", err) != 0 ||
        restrict_file(reg, "-wal", err) != 0 || restrict_file(reg, "-shm", err) != 0)
        goto fail;
    if (connect(reg, !exists, false, err) != 0) {
        /* A full disk and nobody else with the registry open: read it with
         * the index in memory (a write then fails at its commit, cleanly). */
        if (!exists || !shm_unavailable(reg))
            goto fail;
        if (!brief) {
            open_fail(reg, err, "%s", "cannot open: no room for SQLite's WAL index (the -shm file); "
                                      "is the disk full?");
            goto fail;
        }
        disconnect(reg);
        if (connect(reg, false, true, err) != 0)
            goto fail;
    }
    *out = reg;
    return 0;
fail:;
    int rc = reg_is_busy(reg)       ? MCP_REGISTRY_BUSY
             : reg_disk_failed(reg) ? MCP_REGISTRY_UNAVAILABLE
                                    : -1;
    mcp_registry_close(reg);
    return rc;
}

int mcp_registry_open(const char *path, mcp_registry **out, mcp_error *err)
{
    return open_registry(path, false, out, err);
}

int mcp_registry_open_brief(const char *path, mcp_registry **out, mcp_error *err)
{
    return open_registry(path, true, out, err);
}

void mcp_registry_close(mcp_registry *reg)
{
    if (!reg)
        return;
    disconnect(reg);
    free(reg->path);
    free(reg);
}

/* ---- snapshot ---- */

/* Copies every page; a busy source (a writer mid-commit) is retried for at most the busy timeout.
 */
static int run_backup(mcp_registry *reg, sqlite3 *dst, const char *dest, mcp_error *err)
{
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", reg->db, "main");
    if (!b) {
        mcp_error_set(err, "snapshot %s: %s", dest, sqlite3_errmsg(dst));
        return -1;
    }
    int rc;
    int waited_ms = 0;
    while ((rc = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || rc == SQLITE_LOCKED) {
        if (waited_ms >= BUSY_TIMEOUT_MS)
            break;
        sqlite3_sleep(50);
        waited_ms += 50;
    }
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
        mcp_error_set(err, "snapshot %s: backup of %s failed: %s", dest, reg->path,
                      sqlite3_errstr(rc));
        return -1;
    }
    return 0;
}

int mcp_registry_snapshot(mcp_registry *reg, const char *dest, mcp_error *err)
{
    /* O_EXCL claims the name: an existing file is never overwritten. */
    int fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        mcp_error_set(err, "snapshot %s: %s", dest,
                      errno == EEXIST ? "destination already exists, refusing to overwrite it"
                                      : strerror(errno));
        return -1;
    }
    close(fd);
    sqlite3 *dst = NULL;
    int rc = -1;
    if (sqlite3_open_v2(dest, &dst, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        mcp_error_set(err, "snapshot %s: %s", dest, dst ? sqlite3_errmsg(dst) : "out of memory");
    else
        rc = run_backup(reg, dst, dest, err);
    if (sqlite3_close(dst) != SQLITE_OK && rc == 0) {
        mcp_error_set(err, "snapshot %s: close failed", dest);
        rc = -1;
    }
    if (rc != 0)
        unlink(dest);
    return rc;
}
