/* The registry: desired state in SQLite with versioned migrations.
 *
 * Lists (ports, volumes, cmd, env) are stored as JSON arrays: lossless and
 * ordered. Components and routes carry a position column so a definition
 * reads back in the order it was written. Route host ports live in the
 * routes table under a UNIQUE constraint; put_service carries them over by
 * (service, component, route name) so a redeploy never moves a route. */
#include "mcp/registry.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
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

/* Every statement the registry runs after opening, compiled once per handle
 * (on first use) and kept until close: compiling SQL costs far more than
 * running these small queries. */
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
    ST_COUNT
};

/* Component and route queries share their column layout (see component_from_row
 * and route_from_row): the service (and component) name first, for stitching. */
#define COMPONENT_COLUMNS                                                                          \
    "SELECT service, name, image, network, user, restart, ports, volumes, cmd, env, "              \
    "desired_state, health_check, health_port, health_path "
#define ROUTE_COLUMNS "SELECT service, component, name, port, mode, hostname, host_port "
#define EVENT_COLUMNS "SELECT id, time_ms, service, component, kind, message FROM events "

static const char *const stmt_sql[ST_COUNT] = {
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
        "volumes, cmd, env, desired_state, health_check, health_port, health_path) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [ST_INSERT_ROUTE] = "INSERT INTO routes (service, component, name, position, port, mode, "
                        "hostname, host_port) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    [ST_DELETE_SERVICE] = "DELETE FROM services WHERE name = ?",
    [ST_SET_STATE_ONE] = "UPDATE components SET desired_state = ? WHERE service = ? AND name = ?",
    [ST_SET_STATE_ALL] = "UPDATE components SET desired_state = ? WHERE service = ?",
    [ST_SET_ACTIVE] = "UPDATE services SET active = ? WHERE name = ?",
    [ST_ADD_EVENT] =
        "INSERT INTO events (time_ms, service, component, kind, message) VALUES (?, ?, ?, ?, ?)",
    [ST_EVENTS_ALL] = EVENT_COLUMNS "ORDER BY id DESC LIMIT ?",
    [ST_EVENTS_OF] = EVENT_COLUMNS "WHERE service = ? ORDER BY id DESC LIMIT ?",
};

/* One handle serves one thread at a time (its transactions are per connection anyway). */
struct mcp_registry {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmts[ST_COUNT]; /* NULL until first used */
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
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* ---- small SQLite helpers ---- */

static int db_fail(mcp_registry *reg, mcp_error *err, const char *what)
{
    mcp_error_set(err, "registry %s: %s: %s", reg->path, what, sqlite3_errmsg(reg->db));
    return -1;
}

static int exec_sql(mcp_registry *reg, const char *sql, mcp_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(reg->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        mcp_error_set(err, "registry %s: %s", reg->path, msg ? msg : sqlite3_errmsg(reg->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static sqlite3_stmt *prepare(mcp_registry *reg, const char *sql, mcp_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(reg->db, sql, -1, &st, NULL) != SQLITE_OK) {
        db_fail(reg, err, "prepare");
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

/* The cached statement id, reset and with no bindings, compiling it on first
 * use. A statement that failed to compile (say, a table another connection
 * dropped) is not kept, so the next call tries again. */
static sqlite3_stmt *stmt_get(mcp_registry *reg, enum stmt_id id, mcp_error *err)
{
    sqlite3_stmt *st = reg->stmts[id];
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return st;
    }
    if (sqlite3_prepare_v3(reg->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) !=
        SQLITE_OK) {
        db_fail(reg, err, "prepare");
        sqlite3_finalize(st);
        return NULL;
    }
    reg->stmts[id] = st;
    return st;
}

/* Ends a use of a cached statement. Resetting at once matters: a statement
 * left mid-result would hold its read snapshot (and block checkpoints) until
 * its next use. Error messages must be taken before this. */
static void stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
}

/* Runs a cached statement that returns no rows (BEGIN, COMMIT, …). */
static int stmt_run(mcp_registry *reg, enum stmt_id id, mcp_error *err)
{
    sqlite3_stmt *st = stmt_get(reg, id, err);
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        db_fail(reg, err, stmt_sql[id]);
    stmt_done(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

/* Binds a possibly NULL string. */
static int bind_text(sqlite3_stmt *st, int idx, const char *s)
{
    return s ? sqlite3_bind_text(st, idx, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, idx);
}

/* Copies a possibly NULL text column; *ok turns false when out of memory. */
static char *column_text(sqlite3_stmt *st, int col, bool *ok)
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
static void rollback(mcp_registry *reg)
{
    if (sqlite3_get_autocommit(reg->db))
        return;
    mcp_error ignored = {{0}};
    if (stmt_run(reg, ST_ROLLBACK, &ignored) != 0)
        sqlite3_exec(reg->db, "ROLLBACK", NULL, NULL, NULL); /* last resort */
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs a query returning one integer. */
static int query_int(mcp_registry *reg, const char *sql, int64_t *out, mcp_error *err)
{
    sqlite3_stmt *st = prepare(reg, sql, err);
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE)
        *out = 0;
    else
        db_fail(reg, err, sql);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
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

/* Runs PRAGMA quick_check; anything but a single "ok" is corruption. */
static int check_integrity(mcp_registry *reg, mcp_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(reg->db, "PRAGMA quick_check(5)", -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return open_fail(reg, err, "corrupt or unreadable SQLite database (%s)",
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
    if (query_int(reg, "PRAGMA user_version", &version, err) != 0 ||
        query_int(reg, "PRAGMA application_id", &app_id, err) != 0)
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
        if (exec_sql(reg, "BEGIN IMMEDIATE", err) != 0)
            return -1;
        int64_t version = 0;
        if (query_int(reg, "PRAGMA user_version", &version, err) != 0)
            goto fail;
        if (version >= SCHEMA_VERSION) {
            rollback(reg);
            return 0;
        }
        if (exec_sql(reg, migrations[version], err) != 0)
            goto fail;
        char pragmas[128];
        snprintf(pragmas, sizeof pragmas, "PRAGMA application_id = %d; PRAGMA user_version = %d",
                 MCP_REGISTRY_APPLICATION_ID, (int)version + 1);
        if (exec_sql(reg, pragmas, err) != 0 || exec_sql(reg, "COMMIT", err) != 0)
            goto fail;
    }
fail:
    rollback(reg);
    mcp_error_prefix(err, "migrating the registry schema");
    return -1;
}

int mcp_registry_open(const char *path, mcp_registry **out, mcp_error *err)
{
    *out = NULL;
    mcp_registry *reg = calloc(1, sizeof *reg);
    if (!reg || !(reg->path = mcp_strdup(path))) {
        free(reg);
        mcp_error_set(err, "%s: out of memory", path);
        return -1;
    }
    bool exists = false;
    if (check_magic(reg, &exists, err) != 0)
        goto fail;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | (exists ? 0 : SQLITE_OPEN_CREATE);
    if (sqlite3_open_v2(path, &reg->db, flags, NULL) != SQLITE_OK) {
        open_fail(reg, err, "cannot open (%s)",
                  reg->db ? sqlite3_errmsg(reg->db) : "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(reg->db, 1);
    sqlite3_busy_timeout(reg->db, BUSY_TIMEOUT_MS);
    /* Checks read only: nothing is written before the file is known to be ours. */
    if (check_integrity(reg, err) != 0 || check_ownership(reg, err) != 0)
        goto fail;
    if (exec_sql(reg, "PRAGMA foreign_keys = ON", err) != 0)
        goto fail;
    int64_t fk = 0;
    if (query_int(reg, "PRAGMA foreign_keys", &fk, err) != 0 || fk != 1) {
        open_fail(reg, err, "%s", "SQLite lacks foreign key support");
        goto fail;
    }
    if (exec_sql(reg, "PRAGMA journal_mode = WAL", err) != 0 || migrate(reg, err) != 0)
        goto fail;
    *out = reg;
    return 0;
fail:
    mcp_registry_close(reg);
    return -1;
}

void mcp_registry_close(mcp_registry *reg)
{
    if (!reg)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(reg->stmts[i]);
    sqlite3_close_v2(reg->db);
    free(reg->path);
    free(reg);
}

/* ---- JSON lists ---- */

static char *strv_to_json(const mcp_strv *sv)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    for (size_t i = 0; i < sv->n; i++) {
        if (json_array_append_new(arr, json_string(sv->v[i])) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return s;
}

/* Appends the len bytes at s to out. */
static int strv_push_n(mcp_strv *out, const char *s, size_t len)
{
    char *copy = strndup(s, len);
    if (!copy)
        return -1;
    char **grown = realloc(out->v, (out->n + 1) * sizeof *grown);
    if (!grown) {
        free(copy);
        return -1;
    }
    out->v = grown;
    out->v[out->n++] = copy;
    return 0;
}

/* Reads the lists json_dumps writes in the common case without the JSON
 * parser (a tenth of a listing's time): compact arrays of strings of
 * printable ASCII with no quote or backslash, which need no decoding.
 * out must be empty. Returns 1 read, 0 not of that form (out left empty),
 * -1 out of memory. */
static int strv_from_plain_json(const char *p, mcp_strv *out)
{
    if (*p++ != '[')
        return 0;
    if (*p == ']')
        return p[1] == '\0';
    for (;;) {
        if (*p++ != '"')
            break;
        const char *start = p;
        while ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f && *p != '"' && *p != '\\')
            p++;
        if (*p != '"')
            break;
        if (strv_push_n(out, start, (size_t)(p - start)) != 0) {
            mcp_strv_free(out);
            return -1;
        }
        p++;
        if (*p == ']' && p[1] == '\0')
            return 1;
        if (*p++ != ',')
            break;
    }
    mcp_strv_free(out);
    return 0;
}

static int strv_from_json(const char *text, mcp_strv *out)
{
    int plain = strv_from_plain_json(text ? text : "[]", out);
    if (plain != 0)
        return plain > 0 ? 0 : -1;
    json_error_t jerr;
    json_t *arr = json_loads(text ? text : "[]", 0, &jerr);
    if (!json_is_array(arr)) {
        json_decref(arr);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < json_array_size(arr); i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s || mcp_strv_push(out, s) != 0)
            rc = -1;
    }
    json_decref(arr);
    return rc;
}

/* ---- put_service ---- */

/* Host ports already held by this service's routes, keyed by component and route. */
typedef struct kept_port {
    char *component, *route;
    int host_port;
} kept_port;

static void kept_free(kept_port *k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(k[i].component);
        free(k[i].route);
    }
    free(k);
}

static int load_kept_ports(mcp_registry *reg, const char *service, kept_port **out, size_t *n,
                           mcp_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt_get(reg, ST_KEPT_PORTS, err);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, service, -1, SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        kept_port *grown = realloc(*out, (*n + 1) * sizeof *grown);
        if (!grown)
            goto oom;
        *out = grown;
        bool ok = true;
        kept_port *k = &grown[*n];
        k->component = column_text(st, 0, &ok);
        k->route = column_text(st, 1, &ok);
        k->host_port = sqlite3_column_int(st, 2);
        (*n)++;
        if (!ok || !k->component || !k->route)
            goto oom;
    }
    if (rc != SQLITE_DONE)
        db_fail(reg, err, "reading route ports");
    stmt_done(st);
    return rc == SQLITE_DONE ? 0 : -1;
oom:
    stmt_done(st);
    mcp_error_set(err, "registry %s: out of memory", reg->path);
    return -1;
}

static int kept_lookup(const kept_port *k, size_t n, const char *component, const char *route)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(k[i].component, component) == 0 && strcmp(k[i].route, route) == 0)
            return k[i].host_port;
    return 0;
}

typedef struct port_alloc {
    int min, max;
    unsigned char *held; /* one byte per port of [min, max] */
    bool (*port_free)(int port, void *ud);
    void *ud;
} port_alloc;

/* Marks every host port of [min, max] held by a route in the table. */
static int load_held_ports(mcp_registry *reg, port_alloc *pa, mcp_error *err)
{
    pa->held = calloc((size_t)(pa->max - pa->min + 1), 1);
    if (!pa->held) {
        mcp_error_set(err, "registry %s: out of memory", reg->path);
        return -1;
    }
    sqlite3_stmt *st = stmt_get(reg, ST_HELD_PORTS, err);
    if (!st)
        return -1;
    sqlite3_bind_int(st, 1, pa->min);
    sqlite3_bind_int(st, 2, pa->max);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        pa->held[sqlite3_column_int(st, 0) - pa->min] = 1;
    if (rc != SQLITE_DONE)
        db_fail(reg, err, "reading held ports");
    stmt_done(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* The lowest port not held and accepted by port_free, or 0 when the range is exhausted. */
static int allocate_port(port_alloc *pa)
{
    for (int p = pa->min; p <= pa->max; p++) {
        if (pa->held[p - pa->min])
            continue;
        if (pa->port_free && !pa->port_free(p, pa->ud))
            continue;
        pa->held[p - pa->min] = 1;
        return p;
    }
    return 0;
}

static int insert_service_row(mcp_registry *reg, const mcp_service *svc, mcp_error *err)
{
    sqlite3_stmt *st = stmt_get(reg, ST_INSERT_SERVICE, err);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, svc->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, svc->active ? 1 : 0);
    sqlite3_bind_int64(st, 3, wall_ms());
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        db_fail(reg, err, "storing service");
    stmt_done(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int insert_component_row(mcp_registry *reg, const char *service, const mcp_component *c,
                                int position, mcp_error *err)
{
    sqlite3_stmt *st = stmt_get(reg, ST_INSERT_COMPONENT, err);
    if (!st)
        return -1;
    char *lists[4] = {strv_to_json(&c->ports), strv_to_json(&c->volumes), strv_to_json(&c->cmd),
                      strv_to_json(&c->env)};
    int rc = -1;
    if (!lists[0] || !lists[1] || !lists[2] || !lists[3]) {
        mcp_error_set(err, "registry %s: out of memory", reg->path);
        goto done;
    }
    sqlite3_bind_text(st, 1, service, -1, SQLITE_TRANSIENT);
    bind_text(st, 2, c->name);
    sqlite3_bind_int(st, 3, position);
    bind_text(st, 4, c->image ? c->image : "");
    bind_text(st, 5, c->network);
    bind_text(st, 6, c->user);
    bind_text(st, 7, c->restart);
    for (int i = 0; i < 4; i++)
        sqlite3_bind_text(st, 8 + i, lists[i], -1, SQLITE_TRANSIENT);
    bind_text(st, 12, c->desired_state ? c->desired_state : "running");
    bind_text(st, 13, c->health.check);
    sqlite3_bind_int(st, 14, c->health.port);
    bind_text(st, 15, c->health.path);
    if (sqlite3_step(st) == SQLITE_DONE)
        rc = 0;
    else
        db_fail(reg, err, "storing component");
done:
    for (int i = 0; i < 4; i++)
        free(lists[i]);
    stmt_done(st);
    return rc;
}

static int insert_route_row(mcp_registry *reg, const char *service, const char *component,
                            const mcp_route *r, int position, mcp_error *err)
{
    sqlite3_stmt *st = stmt_get(reg, ST_INSERT_ROUTE, err);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, service, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, component, -1, SQLITE_TRANSIENT);
    bind_text(st, 3, r->name);
    sqlite3_bind_int(st, 4, position);
    sqlite3_bind_int(st, 5, r->port);
    bind_text(st, 6, r->mode ? r->mode : "l4");
    bind_text(st, 7, r->hostname);
    sqlite3_bind_int(st, 8, r->host_port);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        mcp_error_set(err, "registry %s: storing route '%s/%s/%s' (host port %d): %s", reg->path,
                      service, component, r->name, r->host_port, sqlite3_errmsg(reg->db));
    stmt_done(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Gives each route its kept host port, or a new one from the range. */
static int assign_route_ports(mcp_registry *reg, mcp_service *svc, const kept_port *kept,
                              size_t n_kept, port_alloc *pa, mcp_error *err)
{
    /* Kept ports first, so a new route can never take a port a kept one is about to reclaim. */
    for (size_t i = 0; i < svc->n_components; i++) {
        mcp_component *c = &svc->components[i];
        for (size_t j = 0; j < c->n_routes; j++) {
            c->routes[j].host_port = kept_lookup(kept, n_kept, c->name, c->routes[j].name);
            int p = c->routes[j].host_port;
            if (p >= pa->min && p <= pa->max)
                pa->held[p - pa->min] = 1;
        }
    }
    for (size_t i = 0; i < svc->n_components; i++) {
        mcp_component *c = &svc->components[i];
        for (size_t j = 0; j < c->n_routes; j++) {
            mcp_route *r = &c->routes[j];
            if (r->host_port)
                continue;
            r->host_port = allocate_port(pa);
            if (!r->host_port) {
                mcp_error_set(err,
                              "registry %s: no free host port in range %d-%d for route "
                              "'%s/%s/%s'",
                              reg->path, pa->min, pa->max, svc->name, c->name, r->name);
                return -1;
            }
        }
    }
    return 0;
}

static int insert_definition(mcp_registry *reg, const mcp_service *svc, mcp_error *err)
{
    if (insert_service_row(reg, svc, err) != 0)
        return -1;
    for (size_t i = 0; i < svc->n_components; i++) {
        const mcp_component *c = &svc->components[i];
        if (insert_component_row(reg, svc->name, c, (int)i, err) != 0)
            return -1;
        for (size_t j = 0; j < c->n_routes; j++)
            if (insert_route_row(reg, svc->name, c->name, &c->routes[j], (int)j, err) != 0)
                return -1;
    }
    return 0;
}

static int delete_service_rows(mcp_registry *reg, const char *name, mcp_error *err)
{
    sqlite3_stmt *st = stmt_get(reg, ST_DELETE_SERVICE, err);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        db_fail(reg, err, "deleting service");
    stmt_done(st);
    if (rc != SQLITE_DONE)
        return -1;
    return sqlite3_changes(reg->db) > 0 ? 1 : 0;
}

/* The registry stores only what mcp_service_parse would accept as names. */
static int check_names(mcp_registry *reg, const mcp_service *svc, mcp_error *err)
{
    if (!mcp_name_valid(svc->name)) {
        mcp_error_set(err, "registry %s: invalid service name \"%s\"", reg->path,
                      svc->name ? svc->name : "");
        return -1;
    }
    for (size_t i = 0; i < svc->n_components; i++) {
        const mcp_component *c = &svc->components[i];
        if (!mcp_name_valid(c->name) || !c->image || !c->image[0]) {
            mcp_error_set(err,
                          "registry %s: service '%s': component %zu lacks a valid name or image",
                          reg->path, svc->name, i);
            return -1;
        }
        for (size_t j = 0; j < c->n_routes; j++) {
            if (!mcp_name_valid(c->routes[j].name)) {
                mcp_error_set(err, "registry %s: service '%s/%s': route %zu lacks a valid name",
                              reg->path, svc->name, c->name, j);
                return -1;
            }
        }
    }
    return 0;
}

int mcp_registry_put_service(mcp_registry *reg, mcp_service *svc, int port_min, int port_max,
                             bool (*port_free)(int port, void *ud), void *ud, mcp_error *err)
{
    if (check_names(reg, svc, err) != 0)
        return -1;
    if (port_min < 1 || port_max > 65535 || port_min > port_max) {
        mcp_error_set(err, "registry %s: invalid port range %d-%d", reg->path, port_min, port_max);
        return -1;
    }
    kept_port *kept = NULL;
    size_t n_kept = 0;
    port_alloc pa = {.min = port_min, .max = port_max, .port_free = port_free, .ud = ud};
    if (stmt_run(reg, ST_BEGIN_IMMEDIATE, err) != 0)
        return -1;
    /* Old ports are read, the old definition dropped (freeing routes that
     * disappeared), then the new one inserted, all in one transaction. */
    if (load_kept_ports(reg, svc->name, &kept, &n_kept, err) != 0 ||
        delete_service_rows(reg, svc->name, err) < 0 || load_held_ports(reg, &pa, err) != 0 ||
        assign_route_ports(reg, svc, kept, n_kept, &pa, err) != 0 ||
        insert_definition(reg, svc, err) != 0 || stmt_run(reg, ST_COMMIT, err) != 0) {
        rollback(reg);
        kept_free(kept, n_kept);
        free(pa.held);
        return -1;
    }
    kept_free(kept, n_kept);
    free(pa.held);
    return 0;
}

/* ---- reading ----
 *
 * A read is one transaction (one consistent snapshot) of three statements:
 * the services, then all their components, then all their routes, each in
 * order; the rows are stitched onto their services here. */

static int out_of_memory(mcp_registry *reg, mcp_error *err)
{
    mcp_error_set(err, "registry %s: out of memory", reg->path);
    return -1;
}

/* The service called name in svcs, which is sorted by name. strcmp orders as
 * SQLite's BINARY collation (bytewise), which sorted them. */
static mcp_service *find_service(mcp_service *svcs, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(svcs[mid].name, name);
        if (c == 0)
            return &svcs[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static mcp_component *find_component(mcp_service *svc, const char *name)
{
    for (size_t i = 0; i < svc->n_components; i++)
        if (strcmp(svc->components[i].name, name) == 0)
            return &svc->components[i];
    return NULL;
}

/* Fills c from a component row (COMPONENT_COLUMNS; column 0 is the service). */
static int component_from_row(sqlite3_stmt *st, mcp_component *c)
{
    bool ok = true;
    c->name = column_text(st, 1, &ok);
    c->image = column_text(st, 2, &ok);
    c->network = column_text(st, 3, &ok);
    c->user = column_text(st, 4, &ok);
    c->restart = column_text(st, 5, &ok);
    mcp_strv *lists[4] = {&c->ports, &c->volumes, &c->cmd, &c->env};
    for (int i = 0; i < 4; i++)
        if (strv_from_json((const char *)sqlite3_column_text(st, 6 + i), lists[i]) != 0)
            ok = false;
    c->desired_state = column_text(st, 10, &ok);
    c->health.check = column_text(st, 11, &ok);
    c->health.port = sqlite3_column_int(st, 12);
    c->health.path = column_text(st, 13, &ok);
    return ok && c->name ? 0 : -1;
}

/* Fills r from a route row (ROUTE_COLUMNS; columns 0 and 1 are service and component). */
static bool route_from_row(sqlite3_stmt *st, mcp_route *r)
{
    bool ok = true;
    r->name = column_text(st, 2, &ok);
    r->port = sqlite3_column_int(st, 3);
    r->mode = column_text(st, 4, &ok);
    r->hostname = column_text(st, 5, &ok);
    r->host_port = sqlite3_column_int(st, 6);
    return ok;
}

/* Appends each component row of st, in the order they come, to its service
 * in svcs. Rows of services not in svcs are skipped, as a read per service
 * never saw them either. Resets st. */
static int read_components(mcp_registry *reg, sqlite3_stmt *st, mcp_service *svcs, size_t n,
                           mcp_error *err)
{
    mcp_service *svc = NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *service = (const char *)sqlite3_column_text(st, 0);
        if (!service)
            continue;
        /* Rows come grouped by service: look up only when it changes. */
        if (!svc || strcmp(svc->name, service) != 0)
            svc = find_service(svcs, n, service);
        if (!svc)
            continue;
        mcp_component *grown = realloc(svc->components, (svc->n_components + 1) * sizeof *grown);
        if (!grown) {
            out_of_memory(reg, err);
            goto fail;
        }
        svc->components = grown;
        mcp_component *c = &grown[svc->n_components++];
        memset(c, 0, sizeof *c);
        if (component_from_row(st, c) != 0) {
            mcp_error_set(err, "registry %s: unreadable component of service '%s'", reg->path,
                          svc->name);
            goto fail;
        }
    }
    if (rc != SQLITE_DONE) {
        db_fail(reg, err, "reading components");
        goto fail;
    }
    stmt_done(st);
    return 0;
fail:
    stmt_done(st);
    return -1;
}

/* Appends each route row of st, in the order they come, to its component.
 * Routes of components not in svcs are skipped. Resets st. */
static int read_routes(mcp_registry *reg, sqlite3_stmt *st, mcp_service *svcs, size_t n,
                       mcp_error *err)
{
    mcp_service *svc = NULL;
    mcp_component *c = NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *service = (const char *)sqlite3_column_text(st, 0);
        const char *component = (const char *)sqlite3_column_text(st, 1);
        if (!service || !component)
            continue;
        /* Rows come grouped by service and component: look up only on a change. */
        if (!svc || strcmp(svc->name, service) != 0) {
            svc = find_service(svcs, n, service);
            c = NULL;
        }
        if (!svc)
            continue;
        if (!c || strcmp(c->name, component) != 0)
            c = find_component(svc, component);
        if (!c)
            continue;
        mcp_route *grown = realloc(c->routes, (c->n_routes + 1) * sizeof *grown);
        if (!grown) {
            out_of_memory(reg, err);
            goto fail;
        }
        c->routes = grown;
        mcp_route *r = &grown[c->n_routes++];
        memset(r, 0, sizeof *r);
        if (!route_from_row(st, r)) {
            out_of_memory(reg, err);
            goto fail;
        }
    }
    if (rc != SQLITE_DONE) {
        db_fail(reg, err, "reading routes");
        goto fail;
    }
    stmt_done(st);
    return 0;
fail:
    stmt_done(st);
    return -1;
}

/* Reads the components and routes of svcs (sorted by name, with no components
 * yet) inside the caller's transaction: one statement per table. service,
 * when not NULL, is bound to the statements' only parameter. */
static int read_children(mcp_registry *reg, enum stmt_id components, enum stmt_id routes,
                         const char *service, mcp_service *svcs, size_t n, mcp_error *err)
{
    sqlite3_stmt *st = stmt_get(reg, components, err);
    if (!st)
        return -1;
    if (service)
        sqlite3_bind_text(st, 1, service, -1, SQLITE_TRANSIENT);
    if (read_components(reg, st, svcs, n, err) != 0)
        return -1;
    if (!(st = stmt_get(reg, routes, err)))
        return -1;
    if (service)
        sqlite3_bind_text(st, 1, service, -1, SQLITE_TRANSIENT);
    return read_routes(reg, st, svcs, n, err);
}

/* Reads one service inside the caller's transaction: 1 found, 0 absent, -1 error. */
static int read_service(mcp_registry *reg, const char *name, mcp_service *out, mcp_error *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = stmt_get(reg, ST_SERVICE_ONE, err);
    if (!st)
        return -1;
    bind_text(st, 1, name);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        if (rc != SQLITE_DONE)
            db_fail(reg, err, "reading service");
        stmt_done(st);
        return rc == SQLITE_DONE ? 0 : -1;
    }
    bool ok = true;
    out->name = column_text(st, 0, &ok);
    out->active = sqlite3_column_int(st, 1) != 0;
    stmt_done(st);
    if (!ok || !out->name) {
        mcp_service_free(out);
        return out_of_memory(reg, err);
    }
    if (read_children(reg, ST_COMPONENTS_OF, ST_ROUTES_OF, out->name, out, 1, err) != 0) {
        mcp_service_free(out);
        return -1;
    }
    return 1;
}

int mcp_registry_get_service(mcp_registry *reg, const char *name, mcp_service *out, mcp_error *err)
{
    memset(out, 0, sizeof *out);
    /* One read transaction: a concurrent put never shows half a service. */
    if (stmt_run(reg, ST_BEGIN, err) != 0)
        return -1;
    int rc = read_service(reg, name, out, err);
    rollback(reg);
    return rc;
}

/* Every service row, sorted by name, without components. */
static int read_service_rows(mcp_registry *reg, mcp_service **out, size_t *n, mcp_error *err)
{
    sqlite3_stmt *st = stmt_get(reg, ST_SERVICES_ALL, err);
    if (!st)
        return -1;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t want = cap ? cap * 2 : 16;
            mcp_service *grown = realloc(*out, want * sizeof *grown);
            if (!grown) {
                stmt_done(st);
                return out_of_memory(reg, err);
            }
            *out = grown;
            cap = want;
        }
        mcp_service *svc = &(*out)[*n];
        memset(svc, 0, sizeof *svc);
        bool ok = true;
        svc->name = column_text(st, 0, &ok);
        svc->active = sqlite3_column_int(st, 1) != 0;
        if (!ok || !svc->name) {
            stmt_done(st);
            return out_of_memory(reg, err);
        }
        (*n)++;
    }
    if (rc != SQLITE_DONE)
        db_fail(reg, err, "listing services");
    stmt_done(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int mcp_registry_list_services(mcp_registry *reg, mcp_service **out, size_t *n, mcp_error *err)
{
    *out = NULL;
    *n = 0;
    mcp_service *svcs = NULL;
    size_t count = 0;
    if (stmt_run(reg, ST_BEGIN, err) != 0)
        return -1;
    if (read_service_rows(reg, &svcs, &count, err) != 0 ||
        read_children(reg, ST_COMPONENTS_ALL, ST_ROUTES_ALL, NULL, svcs, count, err) != 0) {
        rollback(reg);
        mcp_services_free(svcs, count);
        return -1;
    }
    rollback(reg);
    *out = svcs;
    *n = count;
    return 0;
}

int mcp_registry_delete_service(mcp_registry *reg, const char *name, mcp_error *err)
{
    /* Routes go with their components by ON DELETE CASCADE, freeing their ports. */
    return delete_service_rows(reg, name, err);
}

int mcp_registry_set_desired_state(mcp_registry *reg, const char *service, const char *component,
                                   const char *state, mcp_error *err)
{
    if (!state || (strcmp(state, "running") != 0 && strcmp(state, "stopped") != 0)) {
        mcp_error_set(err, "invalid desired state \"%s\" (expected \"running\" or \"stopped\")",
                      state ? state : "(null)");
        return -1;
    }
    sqlite3_stmt *st = stmt_get(reg, component ? ST_SET_STATE_ONE : ST_SET_STATE_ALL, err);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, state, -1, SQLITE_TRANSIENT);
    bind_text(st, 2, service);
    if (component)
        sqlite3_bind_text(st, 3, component, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        db_fail(reg, err, "setting desired state");
    stmt_done(st);
    if (rc != SQLITE_DONE)
        return -1;
    return sqlite3_changes(reg->db);
}

int mcp_registry_set_active(mcp_registry *reg, const char *service, bool active, mcp_error *err)
{
    sqlite3_stmt *st = stmt_get(reg, ST_SET_ACTIVE, err);
    if (!st)
        return -1;
    sqlite3_bind_int(st, 1, active ? 1 : 0);
    bind_text(st, 2, service);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        db_fail(reg, err, "setting active");
    stmt_done(st);
    if (rc != SQLITE_DONE)
        return -1;
    return sqlite3_changes(reg->db) > 0 ? 1 : 0;
}

/* ---- events ---- */

int mcp_registry_add_event(mcp_registry *reg, const char *service, const char *component,
                           const char *kind, const char *message, mcp_error *err)
{
    sqlite3_stmt *st = stmt_get(reg, ST_ADD_EVENT, err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, wall_ms());
    bind_text(st, 2, service ? service : "");
    bind_text(st, 3, component);
    bind_text(st, 4, kind ? kind : "");
    bind_text(st, 5, message ? message : "");
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        db_fail(reg, err, "adding event");
    stmt_done(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int mcp_registry_list_events(mcp_registry *reg, const char *service, int limit, mcp_event **out,
                             size_t *n, mcp_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt_get(reg, service ? ST_EVENTS_OF : ST_EVENTS_ALL, err);
    if (!st)
        return -1;
    int idx = 1;
    if (service)
        sqlite3_bind_text(st, idx++, service, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, idx, limit < 0 ? -1 : limit);
    mcp_event *events = NULL;
    size_t count = 0;
    bool ok = true;
    int rc;
    while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        mcp_event *grown = realloc(events, (count + 1) * sizeof *grown);
        if (!grown) {
            ok = false;
            break;
        }
        events = grown;
        mcp_event *e = &events[count++];
        memset(e, 0, sizeof *e);
        e->id = sqlite3_column_int64(st, 0);
        e->time_ms = sqlite3_column_int64(st, 1);
        e->service = column_text(st, 2, &ok);
        e->component = column_text(st, 3, &ok);
        e->kind = column_text(st, 4, &ok);
        e->message = column_text(st, 5, &ok);
    }
    if (!ok || rc != SQLITE_DONE) {
        if (!ok)
            mcp_error_set(err, "registry %s: out of memory", reg->path);
        else
            db_fail(reg, err, "listing events");
        stmt_done(st);
        mcp_events_free(events, count);
        return -1;
    }
    stmt_done(st);
    *out = events;
    *n = count;
    return 0;
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
