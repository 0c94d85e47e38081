/* The agent's configuration (SPEC §3): TOML over built-in defaults, each key
 * checked for type and range, every error naming file, line, column and key. */
#include "mcp/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcp/duration.h"
#include "mcp/log.h"
#include "mcp/metrics_http.h"
#include "mcp/suggest.h"
#include "mcp/toml.h"

#define DEFAULT_STAGE_TIMEOUT_MS 60000
#define DEFAULT_PODMAN_TIMEOUT_MS 120000
#define DEFAULT_MONITOR_INTERVAL_MS 10000
#define DEFAULT_KEEP_EVENTS 10000

/* How a key's value is checked and stored. */
typedef enum key_kind {
    K_STRING,     /* char * */
    K_BOOL,       /* bool */
    K_DURATION,   /* int64_t milliseconds, > 0 */
    K_STRV,       /* mcp_strv from an array of strings */
    K_CHOICE,     /* char *, one of choices */
    K_PORT_RANGE, /* port_min / port_max from "MIN-MAX" */
    K_POSITIVE,   /* int64_t from an integer >= 1 */
    K_LISTEN,     /* char *, "" or an address mcp_metrics_listen_parse takes */
} key_kind;

typedef struct key_spec {
    const char *section; /* "tls", "boot.sequence" */
    const char *name;
    key_kind kind;
    size_t offset; /* into the struct being filled */
} key_spec;

/* The values of a K_CHOICE key, and what they are called in its errors. */
typedef struct choice_spec {
    const char *section;
    const char *name;
    const char *const *values; /* NULL-terminated */
    const char *what;          /* "health method", … */
} choice_spec;

static const char *const runtimes[] = {"podman", "fake", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const health_methods[] = {"tcp", "grpc", "http", NULL};
static const char *const drift_modes[] = {"report", "fix", NULL};
static const char *const pull_modes[] = {"missing", "never", NULL};

#define CFG(field) offsetof(mcp_config, field)
#define STAGE(field) offsetof(mcp_boot_stage, field)

/* Every key of every section ("boot.sequence": of each [[boot.sequence]]
 * table, into an mcp_boot_stage; the others into mcp_config), a section's
 * keys together. */
static const key_spec keys[] = {
    {"agent", "node_name", K_STRING, CFG(node_name)},
    {"agent", "grpc_addr", K_STRING, CFG(grpc_addr)},
    {"agent", "insecure_loopback", K_BOOL, CFG(insecure_loopback)},
    {"agent", "socket", K_STRING, CFG(socket)},
    {"agent", "container_runtime", K_CHOICE, CFG(container_runtime)},
    {"agent", "podman_args", K_STRV, CFG(podman_args)},
    {"agent", "podman", K_STRING, CFG(podman)},
    {"agent", "podman_timeout", K_DURATION, CFG(podman_timeout_ms)},
    {"agent", "port_range", K_PORT_RANGE, CFG(port_min)},
    {"agent", "pull", K_CHOICE, CFG(pull)},
    {"tls", "cert", K_STRING, CFG(tls_cert)},
    {"tls", "key", K_STRING, CFG(tls_key)},
    {"tls", "client_ca", K_STRING, CFG(tls_client_ca)},
    {"database", "path", K_STRING, CFG(db_path)},
    {"mcproxy", "socket", K_STRING, CFG(mcproxy_socket)},
    {"mcproxy", "cert_dir", K_STRING, CFG(mcproxy_cert_dir)},
    {"mcproxy", "listener", K_STRING, CFG(mcproxy_listener)},
    {"metacrypt", "server_url", K_STRING, CFG(metacrypt_server_url)},
    {"metacrypt", "ca_cert", K_STRING, CFG(metacrypt_ca_cert)},
    {"metacrypt", "mount", K_STRING, CFG(metacrypt_mount)},
    {"metacrypt", "issuer", K_STRING, CFG(metacrypt_issuer)},
    {"metacrypt", "token_path", K_STRING, CFG(metacrypt_token_path)},
    {"monitor", "interval", K_DURATION, CFG(monitor_interval_ms)},
    {"monitor", "drift", K_CHOICE, CFG(monitor_drift)},
    {"monitor", "keep_events", K_POSITIVE, CFG(keep_events)},
    {"metrics", "listen", K_LISTEN, CFG(metrics_listen)},
    {"log", "level", K_CHOICE, CFG(log_level)},
    {"log", "format", K_CHOICE, CFG(log_format)},
    {"policy", "dir", K_STRING, CFG(policy_dir)},
    {"boot.sequence", "name", K_STRING, STAGE(name)},
    {"boot.sequence", "services", K_STRV, STAGE(services)},
    {"boot.sequence", "timeout", K_DURATION, STAGE(timeout_ms)},
    {"boot.sequence", "health", K_CHOICE, STAGE(health)},
};

static const choice_spec choice_specs[] = {
    {"agent", "container_runtime", runtimes, "container runtime"},
    {"agent", "pull", pull_modes, "pull mode"},
    {"monitor", "drift", drift_modes, "drift mode"},
    {"log", "level", log_levels, "log level"},
    {"log", "format", log_formats, "log format"},
    {"boot.sequence", "health", health_methods, "health method"},
};

/* The top-level tables: the sections above but boot.sequence, and boot. */
static const char *const section_names[] = {"agent",     "tls",     "database", "mcproxy",
                                            "metacrypt", "monitor", "metrics",  "log",
                                            "policy",    "boot",    NULL};

typedef struct loader {
    const char *path;
    mcp_config *cfg;
    mcp_error *err;
} loader;

/* ---------- defaults and freeing ---------- */

static void stage_free(mcp_boot_stage *st)
{
    free(st->name);
    free(st->health);
    mcp_strv_free(&st->services);
    memset(st, 0, sizeof *st);
}

void mcp_config_free(mcp_config *cfg)
{
    if (!cfg)
        return;
    char **strings[] = {
        &cfg->path,
        &cfg->node_name,
        &cfg->grpc_addr,
        &cfg->socket,
        &cfg->container_runtime,
        &cfg->podman,
        &cfg->tls_cert,
        &cfg->tls_key,
        &cfg->tls_client_ca,
        &cfg->db_path,
        &cfg->mcproxy_socket,
        &cfg->mcproxy_cert_dir,
        &cfg->mcproxy_listener,
        &cfg->metacrypt_server_url,
        &cfg->metacrypt_ca_cert,
        &cfg->metacrypt_mount,
        &cfg->metacrypt_issuer,
        &cfg->metacrypt_token_path,
        &cfg->log_level,
        &cfg->log_format,
        &cfg->policy_dir,
        &cfg->monitor_drift,
        &cfg->metrics_listen,
        &cfg->pull,
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        free(*strings[i]);
    mcp_strv_free(&cfg->podman_args);
    for (size_t i = 0; i < cfg->n_stages; i++)
        stage_free(&cfg->stages[i]);
    free(cfg->stages);
    memset(cfg, 0, sizeof *cfg);
}

static char *host_name(void)
{
    char name[256];
    if (gethostname(name, sizeof name) != 0 || name[0] == '\0')
        return mcp_strdup("localhost");
    name[sizeof name - 1] = '\0';
    return mcp_strdup(name);
}

int mcp_config_defaults(mcp_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->node_name = host_name();
    cfg->grpc_addr = mcp_strdup("");
    cfg->socket = mcp_strdup("/run/mcp-agent/agent.sock");
    cfg->container_runtime = mcp_strdup("podman");
    cfg->podman = mcp_strdup("podman");
    cfg->podman_timeout_ms = DEFAULT_PODMAN_TIMEOUT_MS;
    cfg->port_min = 10000;
    cfg->port_max = 19999;
    cfg->db_path = mcp_strdup("./mcp-agent.db");
    cfg->mcproxy_listener = mcp_strdup(":443");
    cfg->metacrypt_mount = mcp_strdup("pki");
    cfg->metacrypt_issuer = mcp_strdup("web");
    cfg->monitor_interval_ms = DEFAULT_MONITOR_INTERVAL_MS;
    cfg->monitor_drift = mcp_strdup("report");
    cfg->keep_events = DEFAULT_KEEP_EVENTS;
    cfg->metrics_listen = mcp_strdup("");
    cfg->pull = mcp_strdup("missing");
    cfg->log_level = mcp_strdup("info");
    cfg->log_format = mcp_strdup("text");
    if (!cfg->node_name || !cfg->grpc_addr || !cfg->socket || !cfg->container_runtime ||
        !cfg->podman || !cfg->db_path || !cfg->mcproxy_listener || !cfg->metacrypt_mount ||
        !cfg->metacrypt_issuer || !cfg->log_level || !cfg->log_format || !cfg->monitor_drift ||
        !cfg->metrics_listen || !cfg->pull) {
        mcp_config_free(cfg);
        return -1;
    }
    return 0;
}

/* ---------- errors and warnings ---------- */

/* Sets err to "PATH:LINE:COL: key 'KEY': message" at value v. */
__attribute__((format(printf, 5, 6))) static int
fail_at(loader *L, const mcp_toml_value *v, int line, const char *key, const char *fmt, ...)
{
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        msg[0] = '\0';
    if (v)
        mcp_error_set(L->err, "%s:%d:%d: key '%s': %s", L->path, v->line, v->col, key, msg);
    else
        mcp_error_set(L->err, "%s:%d: key '%s': %s", L->path, line, key, msg);
    return -1;
}

static int fail_oom(loader *L)
{
    mcp_error_set(L->err, "%s: out of memory", L->path);
    return -1;
}

/* Warns about an unknown key (named in full: "agent.colour"), once, with the
 * nearest of known when it looks like a typo of it; counted for check --strict. */
static void warn_unknown(loader *L, const char *what, const char *key, int line,
                         const char *const *known)
{
    char line_text[16];
    snprintf(line_text, sizeof line_text, "%d", line);
    const char *last = strrchr(key, '.');
    const char *near = known ? mcp_suggest(last ? last + 1 : key, known) : NULL;
    char hint[128] = "";
    if (near)
        snprintf(hint, sizeof hint, "%.*s%s", last ? (int)(last - key + 1) : 0, key, near);
    L->cfg->n_warnings++;
    mcp_log(MCP_LOG_WARN, what, "file", L->path, "line", line_text, "key", key,
            near ? "did_you_mean" : NULL, hint, NULL);
}

#define MAX_KEYS 32

/* The names of a section's keys, NULL-terminated, for suggestions. */
static void key_names(const char *section, const char **out)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && n + 1 < MAX_KEYS; i++)
        if (strcmp(keys[i].section, section) == 0)
            out[n++] = keys[i].name;
    out[n] = NULL;
}

/* "a, b or c" from a NULL-terminated list. */
static void join_choices(const char *const *choices, char *out, size_t len)
{
    size_t n = 0, used = 0;
    while (choices[n])
        n++;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        int w = snprintf(out + used, len - used, "%s%s", sep, choices[i]);
        if (w < 0 || (size_t)w >= len - used)
            return;
        used += (size_t)w;
    }
}

/* ---------- value checkers ---------- */

static int expect_type(loader *L, const mcp_toml_value *v, mcp_toml_type t, const char *key)
{
    if (v->type == t)
        return 0;
    const char *want = mcp_toml_type_name(t);
    return fail_at(L, v, 0, key, "expected %s %s, got %s", strchr("aeiou", want[0]) ? "an" : "a",
                   want, mcp_toml_type_name(v->type));
}

/* A string value without embedded NUL bytes. */
static int get_string(loader *L, const mcp_toml_value *v, const char *key, const char **out)
{
    if (expect_type(L, v, MCP_TOML_STRING, key) != 0)
        return -1;
    if (strlen(v->u.str.ptr) != v->u.str.len)
        return fail_at(L, v, 0, key, "must not contain NUL bytes");
    *out = v->u.str.ptr;
    return 0;
}

static int replace_string(loader *L, char **slot, const char *s)
{
    char *copy = mcp_strdup(s);
    if (!copy)
        return fail_oom(L);
    free(*slot);
    *slot = copy;
    return 0;
}

static int set_strv(loader *L, const mcp_toml_value *v, const char *key, mcp_strv *slot)
{
    if (expect_type(L, v, MCP_TOML_ARRAY, key) != 0)
        return -1;
    mcp_strv fresh = {0};
    for (size_t i = 0; i < v->u.array.len; i++) {
        char item_key[300];
        if (snprintf(item_key, sizeof item_key, "%s[%zu]", key, i) < 0)
            item_key[0] = '\0';
        const char *s;
        if (get_string(L, v->u.array.items[i], item_key, &s) != 0) {
            mcp_strv_free(&fresh);
            return -1;
        }
        if (mcp_strv_push(&fresh, s) != 0) {
            mcp_strv_free(&fresh);
            return fail_oom(L);
        }
    }
    mcp_strv_free(slot);
    *slot = fresh;
    return 0;
}

static int set_duration(loader *L, const mcp_toml_value *v, const char *key, int64_t *slot)
{
    const char *s;
    if (get_string(L, v, key, &s) != 0)
        return -1;
    char why[200];
    int64_t ms;
    if (mcp_duration_parse(s, &ms, why, sizeof why) != 0)
        return fail_at(L, v, 0, key, "%s", why);
    if (ms <= 0)
        return fail_at(L, v, 0, key, "duration \"%s\" must be positive", s);
    *slot = ms;
    return 0;
}

static int set_choice(loader *L, const mcp_toml_value *v, const key_spec *spec, const char *key,
                      char **slot)
{
    const char *s;
    if (get_string(L, v, key, &s) != 0)
        return -1;
    const choice_spec *ch = NULL;
    for (size_t i = 0; !ch && i < sizeof choice_specs / sizeof choice_specs[0]; i++)
        if (strcmp(choice_specs[i].section, spec->section) == 0 &&
            strcmp(choice_specs[i].name, spec->name) == 0)
            ch = &choice_specs[i];
    if (!ch)
        return fail_at(L, v, 0, key, "no values known for this key"); /* a bug in the tables */
    for (const char *const *c = ch->values; *c; c++)
        if (strcmp(*c, s) == 0)
            return replace_string(L, slot, s);
    char want[200];
    join_choices(ch->values, want, sizeof want);
    return fail_at(L, v, 0, key, "unknown %s \"%s\" (want %s)", ch->what, s, want);
}

/* A port number of 1 to 5 digits; -1 when s is not one. */
static long parse_port(const char *s, size_t n)
{
    return mcp_parse_digits(s, n, 5);
}

static int set_port_range(loader *L, const mcp_toml_value *v, const char *key)
{
    const char *s;
    if (get_string(L, v, key, &s) != 0)
        return -1;
    const char *dash = strchr(s, '-');
    long lo = dash ? parse_port(s, (size_t)(dash - s)) : -1;
    long hi = dash ? parse_port(dash + 1, strlen(dash + 1)) : -1;
    if (lo < 0 || hi < 0)
        return fail_at(L, v, 0, key,
                       "invalid port range \"%s\" (want MIN-MAX, e.g. \"10000-19999\")", s);
    if (lo < 1 || hi > 65535 || hi < 1 || lo > 65535)
        return fail_at(L, v, 0, key, "port range \"%s\": ports must be between 1 and 65535", s);
    if (lo > hi)
        return fail_at(L, v, 0, key, "port range \"%s\": minimum is greater than maximum", s);
    L->cfg->port_min = (int)lo;
    L->cfg->port_max = (int)hi;
    return 0;
}

/* Checks value v against spec and stores it into base + spec->offset. */
static int apply_key(loader *L, void *base, const key_spec *spec, const mcp_toml_value *v,
                     const char *key)
{
    void *slot = (char *)base + spec->offset;
    const char *s;
    switch (spec->kind) {
    case K_STRING:
        if (get_string(L, v, key, &s) != 0)
            return -1;
        return replace_string(L, (char **)slot, s);
    case K_BOOL:
        if (expect_type(L, v, MCP_TOML_BOOL, key) != 0)
            return -1;
        *(bool *)slot = v->u.boolean;
        return 0;
    case K_DURATION:
        return set_duration(L, v, key, (int64_t *)slot);
    case K_STRV:
        return set_strv(L, v, key, (mcp_strv *)slot);
    case K_CHOICE:
        return set_choice(L, v, spec, key, (char **)slot);
    case K_PORT_RANGE:
        return set_port_range(L, v, key);
    case K_POSITIVE:
        if (expect_type(L, v, MCP_TOML_INTEGER, key) != 0)
            return -1;
        if (v->u.integer < 1)
            return fail_at(L, v, 0, key, "must be a positive integer, got %lld",
                           (long long)v->u.integer);
        *(int64_t *)slot = v->u.integer;
        return 0;
    case K_LISTEN: {
        if (get_string(L, v, key, &s) != 0)
            return -1;
        mcp_metrics_listen parsed;
        char why[300];
        if (*s && mcp_metrics_listen_parse(s, &parsed, why, sizeof why) != 0)
            return fail_at(L, v, 0, key, "%s", why);
        return replace_string(L, (char **)slot, s);
    }
    }
    return -1;
}

static const key_spec *find_spec(const char *section, const mcp_toml_kv *kv)
{
    if (strlen(kv->key) != kv->key_len)
        return NULL; /* a key with a NUL byte matches nothing */
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, kv->key) == 0)
            return &keys[i];
    return NULL;
}

/* Applies every key of table t (named prefix) to base, by the keys of
 * section; unknown keys warn. */
static int apply_table(loader *L, void *base, const char *section, const mcp_toml_value *t,
                       const char *prefix)
{
    for (size_t i = 0; i < t->u.table.len; i++) {
        const mcp_toml_kv *kv = &t->u.table.items[i];
        char key[300];
        if (snprintf(key, sizeof key, "%s.%s", prefix, kv->key) < 0)
            key[0] = '\0';
        const key_spec *spec = find_spec(section, kv);
        if (!spec) {
            const char *names[MAX_KEYS];
            key_names(section, names);
            warn_unknown(L, "unknown config key", key, kv->line, names);
            continue;
        }
        if (apply_key(L, base, spec, kv->value, key) != 0)
            return -1;
    }
    return 0;
}

/* ---------- [[boot.sequence]] ---------- */

static int load_stage(loader *L, const mcp_toml_value *t, size_t index)
{
    char key[64];
    snprintf(key, sizeof key, "boot.sequence[%zu]", index);
    if (expect_type(L, t, MCP_TOML_TABLE, key) != 0)
        return -1;
    mcp_config *cfg = L->cfg;
    mcp_boot_stage *st = &cfg->stages[cfg->n_stages];
    memset(st, 0, sizeof *st);
    st->timeout_ms = DEFAULT_STAGE_TIMEOUT_MS;
    st->line = t->line;
    st->health = mcp_strdup("tcp");
    cfg->n_stages++; /* counted now so that mcp_config_free frees it on error */
    if (!st->health)
        return fail_oom(L);
    if (apply_table(L, st, "boot.sequence", t, key) != 0)
        return -1;
    if (!st->name)
        return fail_at(L, t, 0, key, "a boot stage needs a name");
    const mcp_toml_kv *name_kv = mcp_toml_find(t, "name");
    char name_key[80];
    snprintf(name_key, sizeof name_key, "%s.name", key);
    if (st->name[0] == '\0')
        return fail_at(L, name_kv->value, 0, name_key, "a boot stage name must not be empty");
    for (size_t i = 0; i + 1 < cfg->n_stages; i++)
        if (strcmp(cfg->stages[i].name, st->name) == 0)
            return fail_at(L, name_kv->value, 0, name_key,
                           "duplicate boot stage \"%s\" (also boot.sequence[%zu], line %d)",
                           st->name, i, cfg->stages[i].line);
    return 0;
}

static int load_boot(loader *L, const mcp_toml_value *boot)
{
    for (size_t i = 0; i < boot->u.table.len; i++) {
        const mcp_toml_kv *kv = &boot->u.table.items[i];
        if (strcmp(kv->key, "sequence") != 0 || kv->key_len != strlen("sequence")) {
            char key[300];
            if (snprintf(key, sizeof key, "boot.%s", kv->key) < 0)
                key[0] = '\0';
            static const char *const boot_names[] = {"sequence", NULL};
            warn_unknown(L, "unknown config key", key, kv->line, boot_names);
            continue;
        }
        const mcp_toml_value *seq = kv->value;
        if (seq->type != MCP_TOML_ARRAY)
            return fail_at(L, seq, 0, "boot.sequence",
                           "expected an array of tables ([[boot.sequence]]), got %s",
                           mcp_toml_type_name(seq->type));
        mcp_config *cfg = L->cfg;
        for (size_t k = 0; k < cfg->n_stages; k++)
            stage_free(&cfg->stages[k]);
        free(cfg->stages);
        cfg->stages = NULL;
        cfg->n_stages = 0;
        if (seq->u.array.len == 0)
            continue;
        cfg->stages = calloc(seq->u.array.len, sizeof *cfg->stages);
        if (!cfg->stages)
            return fail_oom(L);
        for (size_t k = 0; k < seq->u.array.len; k++)
            if (load_stage(L, seq->u.array.items[k], k) != 0)
                return -1;
    }
    return 0;
}

/* ---------- the document ---------- */

static int load_root(loader *L, const mcp_toml_value *root)
{
    for (size_t i = 0; i < root->u.table.len; i++) {
        const mcp_toml_kv *kv = &root->u.table.items[i];
        const char *sec = NULL;
        for (size_t k = 0; section_names[k]; k++)
            if (strcmp(section_names[k], kv->key) == 0 && kv->key_len == strlen(kv->key))
                sec = section_names[k];
        bool is_boot = sec && strcmp(sec, "boot") == 0;
        if (!sec) {
            warn_unknown(L,
                         kv->value->type == MCP_TOML_TABLE ? "unknown config section"
                                                           : "unknown config key",
                         kv->key, kv->line, section_names);
            continue;
        }
        if (expect_type(L, kv->value, MCP_TOML_TABLE, kv->key) != 0)
            return -1;
        int rc = is_boot ? load_boot(L, kv->value) : apply_table(L, L->cfg, sec, kv->value, sec);
        if (rc != 0)
            return -1;
    }
    return 0;
}

int mcp_config_load(const char *path, mcp_config *cfg, mcp_error *err)
{
    if (mcp_config_defaults(cfg) != 0) {
        mcp_error_set(err, "%s: out of memory", path);
        return -1;
    }
    size_t len = 0;
    char *text = mcp_read_file(path, &len);
    if (!text) {
        mcp_error_set(err, "%s: %s", path, strerror(errno));
        mcp_config_free(cfg);
        return -1;
    }
    mcp_error syntax = {{0}};
    mcp_toml_value *root = mcp_toml_parse(text, len, &syntax);
    free(text);
    if (!root) {
        /* "PATH:LINE:COL: message", like the checks below. */
        mcp_error_set(err, "%s:%s", path, syntax.msg);
        mcp_config_free(cfg);
        return -1;
    }
    loader L = {.path = path, .cfg = cfg, .err = err};
    int rc = -1;
    cfg->path = mcp_strdup(path);
    if (!cfg->path)
        fail_oom(&L);
    else
        rc = load_root(&L, root);
    mcp_toml_free(root);
    if (rc != 0)
        mcp_config_free(cfg);
    return rc;
}
