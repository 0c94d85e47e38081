/* Service definitions (SPEC §4): TOML document -> validated mcp_service.
 *
 * Every error names "FILE:LINE:COL: key 'PATH': what", where PATH is the key
 * path as written, components and lists indexed from 0
 * (e.g. components[1].ports[0]). */
#include "mcp/service.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/duration.h"
#include "mcp/log.h"
#include "mcp/suggest.h"
#include "mcp/toml.h"

#define PATH_MAX_LEN 256

typedef struct parse_ctx {
    const char *file;
    mcp_error *err;
    mcp_strv *unknown; /* where unknown keys are described */
} parse_ctx;

/* ---- value checks shared with other modules ---- */

bool mcp_name_valid(const char *name)
{
    if (!name || !name[0] || strlen(name) > 63)
        return false;
    if (!islower((unsigned char)name[0]) && !isdigit((unsigned char)name[0]))
        return false;
    for (const char *p = name; *p; p++)
        if (!(*p >= 'a' && *p <= 'z') && !(*p >= '0' && *p <= '9') && *p != '-')
            return false;
    return true;
}

/* A decimal port 1..65535 spanning exactly [s, s+len): no sign, no spaces. */
static int parse_port_n(const char *s, size_t len)
{
    long v = mcp_parse_digits(s, len, 5);
    return v >= 1 && v <= 65535 ? (int)v : -1;
}

static void copy_out(char *dst, size_t dst_len, const char *s, size_t n)
{
    if (!dst || dst_len == 0)
        return;
    if (n >= dst_len)
        n = dst_len - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* Splits "[v6]:" or "v4:" off the front of spec. Returns the rest, or NULL when malformed. */
static const char *split_ip(const char *spec, const char *end, char *ip, size_t ip_len, int *ipv6)
{
    char buf[INET6_ADDRSTRLEN + 1];
    unsigned char addr[sizeof(struct in6_addr)];
    if (*spec == '[') {
        const char *close = memchr(spec, ']', (size_t)(end - spec));
        size_t n = close ? (size_t)(close - spec - 1) : 0;
        if (!close || close + 1 >= end || close[1] != ':' || n == 0 || n >= sizeof buf)
            return NULL;
        memcpy(buf, spec + 1, n);
        buf[n] = '\0';
        if (inet_pton(AF_INET6, buf, addr) != 1)
            return NULL;
        copy_out(ip, ip_len, buf, n);
        *ipv6 = 1;
        return close + 2;
    }
    const char *colon = memchr(spec, ':', (size_t)(end - spec));
    size_t n = colon ? (size_t)(colon - spec) : 0;
    if (!colon || n == 0 || n >= sizeof buf)
        return NULL;
    memcpy(buf, spec, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, addr) != 1)
        return NULL;
    copy_out(ip, ip_len, buf, n);
    return colon + 1;
}

static int count_char(const char *s, const char *end, char c)
{
    int n = 0;
    for (; s < end; s++)
        n += *s == c;
    return n;
}

bool mcp_port_spec_parse(const char *spec, char *host_ip, size_t host_ip_len, int *host_port,
                         int *container_port, char *proto, size_t proto_len)
{
    if (!spec || !*spec)
        return false;
    copy_out(host_ip, host_ip_len, "", 0);
    if (host_port)
        *host_port = 0;
    const char *end = spec + strlen(spec);
    const char *slash = strchr(spec, '/');
    const char *proto_s = "tcp";
    if (slash) {
        proto_s = slash + 1;
        if (strcmp(proto_s, "tcp") != 0 && strcmp(proto_s, "udp") != 0)
            return false;
        end = slash;
    }
    copy_out(proto, proto_len, proto_s, strlen(proto_s));
    const char *rest = spec;
    int colons = count_char(spec, end, ':');
    int ipv6 = 0;
    /* Three parts ("ip:host:ctr" or "ip::ctr") or a bracketed IPv6 address carry an IP. */
    if (*spec == '[' || colons == 2) {
        rest = split_ip(spec, end, host_ip, host_ip_len, &ipv6);
        if (!rest)
            return false;
        if (count_char(rest, end, ':') != 1)
            return false;
    } else if (colons > 2) {
        return false;
    }
    const char *colon = memchr(rest, ':', (size_t)(end - rest));
    int ctr;
    if (colon) {
        /* An empty host port is only allowed after an IP: "ip::ctr" (podman picks one). */
        size_t hn = (size_t)(colon - rest);
        int hp = hn == 0 && rest != spec ? 0 : parse_port_n(rest, hn);
        if (hp < 0)
            return false;
        if (host_port)
            *host_port = hp;
        ctr = parse_port_n(colon + 1, (size_t)(end - colon - 1));
    } else {
        ctr = parse_port_n(rest, (size_t)(end - rest));
    }
    if (ctr < 0)
        return false;
    if (container_port)
        *container_port = ctr;
    return true;
}

/* Podman volume names: [a-zA-Z0-9][a-zA-Z0-9_.-]*. */
static bool volume_name_valid(const char *s, size_t n)
{
    if (n == 0 || !isalnum((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return false;
    return true;
}

/* Mount options: comma separated words such as ro, Z, rbind, U, idmap=… */
static bool volume_opts_valid(const char *s)
{
    if (!*s)
        return false;
    bool word = false;
    for (; *s; s++) {
        if (*s == ',') {
            if (!word)
                return false;
            word = false;
        } else if (isalnum((unsigned char)*s) || strchr("=_.-", *s)) {
            word = true;
        } else {
            return false;
        }
    }
    return word;
}

bool mcp_volume_spec_valid(const char *spec)
{
    if (!spec)
        return false;
    const char *c1 = strchr(spec, ':');
    if (!c1)
        return false;
    const char *dst = c1 + 1;
    const char *c2 = strchr(dst, ':');
    size_t dst_len = c2 ? (size_t)(c2 - dst) : strlen(dst);
    size_t src_len = (size_t)(c1 - spec);
    if (src_len == 0 || dst_len == 0 || dst[0] != '/')
        return false;
    if (spec[0] != '/' && !volume_name_valid(spec, src_len))
        return false;
    return !c2 || volume_opts_valid(c2 + 1);
}

char *mcp_container_name(const char *service, const char *component)
{
    if (!component || strcmp(service, component) == 0)
        return mcp_strdup(service);
    return mcp_sprintf("%s-%s", service, component);
}

static bool restart_valid(const char *s)
{
    if (strcmp(s, "no") == 0 || strcmp(s, "always") == 0 || strcmp(s, "unless-stopped") == 0 ||
        strcmp(s, "on-failure") == 0)
        return true;
    if (strncmp(s, "on-failure:", 11) != 0 || !s[11] || strlen(s + 11) > 9)
        return false;
    for (const char *p = s + 11; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    return true;
}

static bool env_valid(const char *s)
{
    const char *eq = strchr(s, '=');
    if (!eq || eq == s || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (const char *p = s; p < eq; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return false;
    return true;
}

/* DNS host name, optionally with a leading "*." wildcard label. */
static bool hostname_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return false;
    if (strncmp(s, "*.", 2) == 0)
        s += 2;
    size_t label = 0;
    char prev = '.';
    for (; *s; s++) {
        if (*s == '.') {
            if (label == 0 || prev == '-')
                return false;
            label = 0;
        } else if (isalnum((unsigned char)*s) || (*s == '-' && label > 0)) {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
        prev = *s;
    }
    return label > 0 && prev != '-';
}

/* Image references, user, network: non-empty, no spaces or control bytes. */
static bool plain_token_valid(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return false;
    return true;
}

static bool one_of(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(s, *set) == 0)
            return true;
    return false;
}

/* ---- error reporting ---- */

static int failf(parse_ctx *p, int line, int col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int failf(parse_ctx *p, int line, int col, const char *path, const char *fmt, ...)
{
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    mcp_error_set(p->err, "%s:%d:%d: key '%s': %s", p->file, line, col, path, what);
    return -1;
}

/* Describes an unknown key, naming the nearest known one when it looks like a
 * typo of it. Out of memory only loses the description. */
static void note_unknown(parse_ctx *p, const mcp_toml_kv *kv, const char *path,
                         const char *const *known)
{
    const char *near = mcp_suggest(kv->key, known);
    char hint[96] = "";
    if (near)
        snprintf(hint, sizeof hint, " (did you mean '%s'?)", near);
    char msg[512];
    snprintf(msg, sizeof msg, "%s:%d:%d: unknown key '%s'%s", p->file, kv->line, kv->col, path,
             hint);
    if (p->unknown && mcp_strv_push(p->unknown, msg) != 0)
        mcp_log(MCP_LOG_WARN, "out of memory noting an unknown key", "key", path, NULL);
}

/* Key paths are bounded; a truncated one still names the front of the path. */
static void child_path(char *out, const char *parent, const char *key)
{
    int n = parent[0] ? snprintf(out, PATH_MAX_LEN, "%s.%s", parent, key)
                      : snprintf(out, PATH_MAX_LEN, "%s", key);
    if (n < 0)
        out[0] = '\0';
}

static void index_path(char *out, const char *parent, size_t i)
{
    if (snprintf(out, PATH_MAX_LEN, "%s[%zu]", parent, i) < 0)
        out[0] = '\0';
}

/* Notes every key of table not in known. */
static void check_known_keys(parse_ctx *p, const mcp_toml_value *table, const char *path,
                             const char *const *known)
{
    for (size_t i = 0; i < table->u.table.len; i++) {
        const mcp_toml_kv *kv = &table->u.table.items[i];
        if (kv->key_len == strlen(kv->key) && one_of(kv->key, known))
            continue;
        char kp[PATH_MAX_LEN];
        child_path(kp, path, kv->key);
        note_unknown(p, kv, kp, known);
    }
}

/* ---- typed getters: each returns 1 found, 0 absent, -1 error ---- */

static const char *type_article(mcp_toml_type t)
{
    return t == MCP_TOML_INTEGER || t == MCP_TOML_ARRAY ? "an" : "a";
}

static int expect_type(parse_ctx *p, const mcp_toml_value *v, mcp_toml_type t, const char *path)
{
    if (v->type == t)
        return 0;
    return failf(p, v->line, v->col, path, "expected %s %s, got %s", type_article(t),
                 mcp_toml_type_name(t), mcp_toml_type_name(v->type));
}

static int string_value(parse_ctx *p, const mcp_toml_value *v, const char *path, char **out)
{
    if (expect_type(p, v, MCP_TOML_STRING, path) != 0)
        return -1;
    if (strlen(v->u.str.ptr) != v->u.str.len)
        return failf(p, v->line, v->col, path, "string contains a NUL byte");
    *out = mcp_strdup(v->u.str.ptr);
    if (!*out)
        return failf(p, v->line, v->col, path, "out of memory");
    return 0;
}

/* The value of key in table, or NULL when absent; path gets its key path either way. */
static const mcp_toml_value *find_key(const mcp_toml_value *table, const char *parent,
                                      const char *key, char *path)
{
    child_path(path, parent, key);
    const mcp_toml_kv *kv = mcp_toml_find(table, key);
    return kv ? kv->value : NULL;
}

static int get_string(parse_ctx *p, const mcp_toml_value *table, const char *parent,
                      const char *key, char **out, char *path)
{
    const mcp_toml_value *v = find_key(table, parent, key, path);
    if (!v)
        return 0;
    return string_value(p, v, path, out) == 0 ? 1 : -1;
}

/* The value of key when of type t: 1 with *v set, 0 absent, -1 of another type. */
static int find_typed(parse_ctx *p, const mcp_toml_value *table, const char *parent,
                      const char *key, mcp_toml_type t, char *path, const mcp_toml_value **v)
{
    *v = find_key(table, parent, key, path);
    if (!*v)
        return 0;
    return expect_type(p, *v, t, path) == 0 ? 1 : -1;
}

/* An integer of min..max; what goes before the number in the message ("port " or ""). */
static int get_int_in(parse_ctx *p, const mcp_toml_value *table, const char *parent,
                      const char *key, int min, int max, const char *what, int *out)
{
    char path[PATH_MAX_LEN];
    const mcp_toml_value *v;
    int rc = find_typed(p, table, parent, key, MCP_TOML_INTEGER, path, &v);
    if (rc <= 0)
        return rc;
    if (v->u.integer < min || v->u.integer > max)
        return failf(p, v->line, v->col, path, "%s%lld out of range %d..%d", what,
                     (long long)v->u.integer, min, max);
    *out = (int)v->u.integer;
    return 1;
}

static int get_port(parse_ctx *p, const mcp_toml_value *table, const char *parent, const char *key,
                    int *out)
{
    return get_int_in(p, table, parent, key, 1, 65535, "port ", out);
}

/* A Go-style duration string that must be > 0, in milliseconds. */
static int get_duration(parse_ctx *p, const mcp_toml_value *table, const char *parent,
                        const char *key, int64_t *out)
{
    char path[PATH_MAX_LEN];
    char *text = NULL;
    int rc = get_string(p, table, parent, key, &text, path);
    if (rc <= 0)
        return rc;
    const mcp_toml_value *v = mcp_toml_find(table, key)->value;
    char why[200];
    int64_t ms = 0;
    if (mcp_duration_parse(text, &ms, why, sizeof why) != 0)
        rc = failf(p, v->line, v->col, path, "%s", why);
    else if (ms <= 0)
        rc = failf(p, v->line, v->col, path, "duration \"%s\" must be positive", text);
    else
        *out = ms;
    free(text);
    return rc;
}

/* The line/col of key's value, or of the table when the key is absent. */
static const mcp_toml_value *value_or_table(const mcp_toml_value *table, const char *key)
{
    const mcp_toml_kv *kv = mcp_toml_find(table, key);
    return kv ? kv->value : table;
}

typedef bool (*item_check)(const char *s);

/* Reads an array of strings, checking each item with check (may be NULL). */
static int get_strv(parse_ctx *p, const mcp_toml_value *table, const char *parent, const char *key,
                    mcp_strv *out, item_check check, const char *what, const char *hint)
{
    char path[PATH_MAX_LEN];
    const mcp_toml_value *arr;
    int rc = find_typed(p, table, parent, key, MCP_TOML_ARRAY, path, &arr);
    if (rc <= 0)
        return rc;
    for (size_t i = 0; i < arr->u.array.len; i++) {
        const mcp_toml_value *item = arr->u.array.items[i];
        char ip[PATH_MAX_LEN];
        index_path(ip, path, i);
        char *s = NULL;
        if (string_value(p, item, ip, &s) != 0)
            return -1;
        if (check && !check(s)) {
            failf(p, item->line, item->col, ip, "bad %s \"%s\" (%s)", what, s, hint);
            free(s);
            return -1;
        }
        int pushed = mcp_strv_push(out, s);
        free(s);
        if (pushed != 0)
            return failf(p, item->line, item->col, ip, "out of memory");
    }
    return 1;
}

/* A string that must be one of set (its message lists them). */
static int get_enum(parse_ctx *p, const mcp_toml_value *table, const char *parent, const char *key,
                    const char *const *set, const char *expected, char **out)
{
    char path[PATH_MAX_LEN];
    int rc = get_string(p, table, parent, key, out, path);
    if (rc <= 0)
        return rc;
    if (one_of(*out, set))
        return 1;
    const mcp_toml_value *v = value_or_table(table, key);
    failf(p, v->line, v->col, path, "invalid value \"%s\" (expected %s)", *out, expected);
    free(*out);
    *out = NULL;
    return -1;
}

/* A name following the [a-z0-9][a-z0-9-]* rule; required. */
static int get_name(parse_ctx *p, const mcp_toml_value *table, const char *parent, char **out)
{
    char path[PATH_MAX_LEN];
    int rc = get_string(p, table, parent, "name", out, path);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return failf(p, table->line, table->col, path, "missing required key");
    if (mcp_name_valid(*out))
        return 0;
    const mcp_toml_value *v = value_or_table(table, "name");
    return failf(p, v->line, v->col, path,
                 "invalid name \"%s\" (must match [a-z0-9][a-z0-9-]*, at most 63 characters)",
                 *out);
}

/* ---- the document ---- */

static const char *const health_checks[] = {"tcp", "grpc", "http", NULL};

static int parse_health(parse_ctx *p, const mcp_toml_value *comp, const char *cpath, mcp_health *h)
{
    char path[PATH_MAX_LEN];
    const mcp_toml_value *t;
    int rc = find_typed(p, comp, cpath, "health", MCP_TOML_TABLE, path, &t);
    if (rc <= 0)
        return rc;
    static const char *const known[] = {
        "check", "port", "path", "interval", "timeout", "failure_threshold", NULL};
    check_known_keys(p, t, path, known);
    h->interval_ms = MCP_HEALTH_DEFAULT_INTERVAL_MS;
    h->timeout_ms = MCP_HEALTH_DEFAULT_TIMEOUT_MS;
    h->failure_threshold = MCP_HEALTH_DEFAULT_FAILURE_THRESHOLD;
    if (get_enum(p, t, path, "check", health_checks, "\"tcp\", \"grpc\" or \"http\"", &h->check) <
            0 ||
        get_port(p, t, path, "port", &h->port) < 0 ||
        get_duration(p, t, path, "interval", &h->interval_ms) < 0 ||
        get_duration(p, t, path, "timeout", &h->timeout_ms) < 0 ||
        get_int_in(p, t, path, "failure_threshold", 1, 1000000, "", &h->failure_threshold) < 0)
        return -1;
    char ppath[PATH_MAX_LEN];
    rc = get_string(p, t, path, "path", &h->path, ppath);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        const mcp_toml_value *v = value_or_table(t, "path");
        if (h->path[0] != '/')
            return failf(p, v->line, v->col, ppath, "bad http path \"%s\" (must start with '/')",
                         h->path);
        /* Only a warning: SPEC §4's own example pairs a path with check = "grpc". */
        if (h->check && strcmp(h->check, "http") != 0) {
            char line[16];
            snprintf(line, sizeof line, "%d", v->line);
            mcp_log(MCP_LOG_WARN, "health path is only used by check = \"http\", ignored", "file",
                    p->file, "line", line, "key", ppath, NULL);
        }
    }
    return 0;
}

/* The container port of a port spec "[ip:][host:]container[/proto]", or -1. */
static long spec_container_port(const char *spec)
{
    const char *end = strchr(spec, '/');
    size_t len = end ? (size_t)(end - spec) : strlen(spec);
    const char *start = spec;
    for (const char *q = spec; q < spec + len; q++)
        if (*q == ':')
            start = q + 1;
    return mcp_parse_digits(start, (size_t)(spec + len - start), 5);
}

/* [components.health] port must be a container port the component publishes
 * (a ports entry or a route), or the probe would have no host port to reach. */
static int check_health_port(parse_ctx *p, const mcp_toml_value *comp, const char *cpath,
                             const mcp_component *c)
{
    int port = c->health.port;
    if (port <= 0)
        return 0;
    for (size_t i = 0; i < c->n_routes; i++)
        if (c->routes[i].port == port || c->routes[i].port == 0) /* 0: $PORT, known later */
            return 0;
    for (size_t i = 0; i < c->ports.n; i++)
        if (spec_container_port(c->ports.v[i]) == port)
            return 0;
    const mcp_toml_value *v = value_or_table(value_or_table(comp, "health"), "port");
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "%s.health.port", cpath);
    return failf(p, v->line, v->col, path,
                 "container port %d is not published (no ports entry or route maps it), so the "
                 "probe could not reach it",
                 port);
}

static int parse_route(parse_ctx *p, const mcp_toml_value *t, const char *path, void *item)
{
    mcp_route *r = item;
    if (expect_type(p, t, MCP_TOML_TABLE, path) != 0)
        return -1;
    static const char *const known[] = {"name", "port", "mode", "hostname", NULL};
    check_known_keys(p, t, path, known);
    static const char *const modes[] = {"l4", "l7", NULL};
    if (get_name(p, t, path, &r->name) != 0 || get_port(p, t, path, "port", &r->port) < 0 ||
        get_enum(p, t, path, "mode", modes, "\"l4\" or \"l7\"", &r->mode) < 0)
        return -1;
    if (!r->mode && !(r->mode = mcp_strdup("l4")))
        return failf(p, t->line, t->col, path, "out of memory");
    char hpath[PATH_MAX_LEN];
    int rc = get_string(p, t, path, "hostname", &r->hostname, hpath);
    if (rc < 0)
        return -1;
    if (rc == 1 && !hostname_valid(r->hostname)) {
        const mcp_toml_value *v = value_or_table(t, "hostname");
        return failf(p, v->line, v->col, hpath, "bad hostname \"%s\"", r->hostname);
    }
    if (strcmp(r->mode, "l7") == 0 && !r->hostname) {
        const mcp_toml_value *v = value_or_table(t, "mode");
        return failf(p, v->line, v->col, hpath,
                     "missing: a route with mode = \"l7\" needs a hostname (for its certificate)");
    }
    return 0;
}

/* How the items of an array of named tables (components, routes) are read. */
typedef struct named_tables {
    const char *key;    /* "routes": the array's key */
    const char *what;   /* "route": the message's word for one item */
    size_t size;        /* of one item */
    size_t name_offset; /* of the item's char *name */
    int (*parse)(parse_ctx *p, const mcp_toml_value *t, const char *path, void *item);
} named_tables;

static const char *item_name(const named_tables *nt, const void *items, size_t i)
{
    const char *item = (const char *)items + i * nt->size;
    return *(char *const *)(item + nt->name_offset);
}

/* Parses each table of arr (at path) into items (room for all, zeroed),
 * counting in *n the items the caller must free; names must be unique. */
static int parse_named_tables(parse_ctx *p, const mcp_toml_value *arr, const char *path,
                              const named_tables *nt, void *items, size_t *n)
{
    for (size_t i = 0; i < arr->u.array.len; i++) {
        char ipath[PATH_MAX_LEN];
        index_path(ipath, path, i);
        const mcp_toml_value *t = arr->u.array.items[i];
        (*n)++;
        if (nt->parse(p, t, ipath, (char *)items + i * nt->size) != 0)
            return -1;
        const char *name = item_name(nt, items, i);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(item_name(nt, items, j), name) != 0)
                continue;
            const mcp_toml_value *v = value_or_table(t, "name");
            char npath[PATH_MAX_LEN];
            child_path(npath, ipath, "name");
            return failf(p, v->line, v->col, npath, "duplicate %s name \"%s\" (also %s[%zu])",
                         nt->what, name, nt->key, j);
        }
    }
    return 0;
}

static int parse_routes(parse_ctx *p, const mcp_toml_value *comp, const char *cpath,
                        mcp_component *c)
{
    static const named_tables routes = {"routes", "route", sizeof(mcp_route),
                                        offsetof(mcp_route, name), parse_route};
    char path[PATH_MAX_LEN];
    const mcp_toml_value *arr;
    int rc = find_typed(p, comp, cpath, "routes", MCP_TOML_ARRAY, path, &arr);
    if (rc <= 0 || arr->u.array.len == 0)
        return rc < 0 ? -1 : 0;
    c->routes = calloc(arr->u.array.len, sizeof *c->routes);
    if (!c->routes)
        return failf(p, arr->line, arr->col, path, "out of memory");
    return parse_named_tables(p, arr, path, &routes, c->routes, &c->n_routes);
}

static bool port_spec_check(const char *s)
{
    return mcp_port_spec_parse(s, NULL, 0, NULL, NULL, NULL, 0);
}

/* Optional plain-token strings of a component: network, user, image. */
static int get_token(parse_ctx *p, const mcp_toml_value *t, const char *cpath, const char *key,
                     char **out, const char *what)
{
    char path[PATH_MAX_LEN];
    int rc = get_string(p, t, cpath, key, out, path);
    if (rc <= 0)
        return rc;
    if (plain_token_valid(*out))
        return 1;
    const mcp_toml_value *v = value_or_table(t, key);
    return failf(p, v->line, v->col, path, "bad %s \"%s\" (empty or contains spaces)", what, *out);
}

static int parse_component(parse_ctx *p, const mcp_toml_value *t, const char *path, void *item)
{
    mcp_component *c = item;
    if (expect_type(p, t, MCP_TOML_TABLE, path) != 0)
        return -1;
    static const char *const known[] = {"name",   "image",   "network", "user", "restart",
                                        "ports",  "volumes", "cmd",     "env",  "desired_state",
                                        "health", "routes",  NULL};
    check_known_keys(p, t, path, known);
    if (get_name(p, t, path, &c->name) != 0)
        return -1;
    int rc = get_token(p, t, path, "image", &c->image, "image");
    if (rc < 0)
        return -1;
    if (rc == 0) {
        char ipath[PATH_MAX_LEN];
        child_path(ipath, path, "image");
        return failf(p, t->line, t->col, ipath, "missing required key");
    }
    if (get_token(p, t, path, "network", &c->network, "network") < 0 ||
        get_token(p, t, path, "user", &c->user, "user") < 0)
        return -1;
    char rpath[PATH_MAX_LEN];
    rc = get_string(p, t, path, "restart", &c->restart, rpath);
    if (rc < 0)
        return -1;
    if (rc == 1 && !restart_valid(c->restart)) {
        const mcp_toml_value *v = value_or_table(t, "restart");
        return failf(p, v->line, v->col, rpath,
                     "invalid restart policy \"%s\" (expected \"no\", \"always\", "
                     "\"on-failure[:N]\" or \"unless-stopped\")",
                     c->restart);
    }
    static const char *const states[] = {"running", "stopped", NULL};
    if (get_strv(p, t, path, "ports", &c->ports, port_spec_check, "port spec",
                 "want [ip:][hostPort:]containerPort[/tcp|udp], ports 1..65535") < 0 ||
        get_strv(p, t, path, "volumes", &c->volumes, mcp_volume_spec_valid, "volume spec",
                 "want src:dst[:opts], dst absolute, src absolute or a volume name") < 0 ||
        get_strv(p, t, path, "cmd", &c->cmd, NULL, NULL, NULL) < 0 ||
        get_strv(p, t, path, "env", &c->env, env_valid, "env entry",
                 "want KEY=value, KEY of [A-Za-z_][A-Za-z0-9_]*") < 0 ||
        get_enum(p, t, path, "desired_state", states, "\"running\" or \"stopped\"",
                 &c->desired_state) < 0)
        return -1;
    if (!c->desired_state && !(c->desired_state = mcp_strdup("running")))
        return failf(p, t->line, t->col, path, "out of memory");
    if (parse_health(p, t, path, &c->health) != 0 || parse_routes(p, t, path, c) != 0 ||
        check_health_port(p, t, path, c) != 0)
        return -1;
    return 0;
}

static int parse_components(parse_ctx *p, const mcp_toml_value *root, mcp_service *svc)
{
    const mcp_toml_kv *kv = mcp_toml_find(root, "components");
    if (!kv)
        return failf(p, 1, 1, "components", "missing required key (at least one [[components]])");
    const mcp_toml_value *arr = kv->value;
    if (expect_type(p, arr, MCP_TOML_ARRAY, "components") != 0)
        return -1;
    if (arr->u.array.len == 0)
        return failf(p, arr->line, arr->col, "components", "at least one component is required");
    svc->components = calloc(arr->u.array.len, sizeof *svc->components);
    if (!svc->components)
        return failf(p, arr->line, arr->col, "components", "out of memory");
    static const named_tables components = {"components", "component", sizeof(mcp_component),
                                            offsetof(mcp_component, name), parse_component};
    return parse_named_tables(p, arr, "components", &components, svc->components,
                              &svc->n_components);
}

static int parse_document(parse_ctx *p, const mcp_toml_value *root, mcp_service *svc)
{
    static const char *const known[] = {"name", "active", "components", NULL};
    check_known_keys(p, root, "", known);
    if (get_name(p, root, "", &svc->name) != 0)
        return -1;
    const mcp_toml_kv *active = mcp_toml_find(root, "active");
    svc->active = true;
    if (active) {
        if (expect_type(p, active->value, MCP_TOML_BOOL, "active") != 0)
            return -1;
        svc->active = active->value->u.boolean;
    }
    return parse_components(p, root, svc);
}

int mcp_service_parse(const char *text, size_t len, const char *filename, mcp_service *out,
                      mcp_error *err)
{
    memset(out, 0, sizeof *out);
    const char *file = filename ? filename : "<service>";
    mcp_toml_value *root = mcp_toml_parse(text, len, err);
    if (!root) {
        /* The parser says "LINE:COL: what"; make it "FILE:LINE:COL: what". */
        if (err) {
            char what[sizeof err->msg];
            memcpy(what, err->msg, sizeof what);
            mcp_error_set(err, "%s:%s", file, what);
        }
        return -1;
    }
    parse_ctx p = {.file = file, .err = err, .unknown = &out->unknown};
    int rc = parse_document(&p, root, out);
    mcp_toml_free(root);
    if (rc != 0)
        mcp_service_free(out);
    return rc;
}

int mcp_service_load(const char *path, mcp_service *out, mcp_error *err)
{
    memset(out, 0, sizeof *out);
    size_t len = 0;
    char *text = mcp_read_file(path, &len);
    if (!text) {
        mcp_error_set(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    int rc = mcp_service_parse(text, len, path, out, err);
    free(text);
    return rc;
}

static void component_free(mcp_component *c)
{
    MCP_FREE_ALL(c->name, c->image, c->network, c->user, c->restart, c->desired_state,
                 c->health.check, c->health.path);
    MCP_STRV_FREE_ALL(&c->ports, &c->volumes, &c->cmd, &c->env);
    for (size_t i = 0; i < c->n_routes; i++)
        MCP_FREE_ALL(c->routes[i].name, c->routes[i].mode, c->routes[i].hostname);
    free(c->routes);
}

void mcp_service_free(mcp_service *svc)
{
    if (!svc)
        return;
    for (size_t i = 0; i < svc->n_components; i++)
        component_free(&svc->components[i]);
    free(svc->components);
    free(svc->name);
    mcp_strv_free(&svc->unknown);
    memset(svc, 0, sizeof *svc);
}

void mcp_services_free(mcp_service *svcs, size_t n)
{
    MCP_FREE_ARRAY(svcs, n, mcp_service_free);
}
