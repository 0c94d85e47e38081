/* The podman runtime as pure functions: argv builders and parsers of the
 * JSON podman 4.3 prints. Parsers treat missing, null or wrongly typed
 * fields as absent; only input that is not JSON at all is an error. */
#include "mcp/podman.h"

#include <ctype.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ---- argv builders --------------------------------------------------------- */

/* binary, the configured global args, then the subcommand words. */
static int argv_begin(const mcp_podman_cfg *cfg, mcp_strv *argv, const char *const *words)
{
    const char *binary = cfg && cfg->binary && *cfg->binary ? cfg->binary : "podman";
    if (mcp_strv_push(argv, binary) != 0)
        return -1;
    if (cfg && cfg->global_args && mcp_strv_extend(argv, cfg->global_args) != 0)
        return -1;
    for (size_t i = 0; words[i]; i++)
        if (mcp_strv_push(argv, words[i]) != 0)
            return -1;
    return 0;
}

/* "--" ends podman's options, so a name or image starting with '-' can never
 * be read as a flag. */
static int argv_positional(mcp_strv *argv, const char *arg)
{
    if (mcp_strv_push(argv, "--") != 0)
        return -1;
    return mcp_strv_push(argv, arg ? arg : "");
}

int mcp_podman_argv_list(const mcp_podman_cfg *cfg, mcp_strv *argv)
{
    static const char *const words[] = {"ps", "-a", "--format", "json", NULL};
    return argv_begin(cfg, argv, words);
}

int mcp_podman_argv_inspect(const mcp_podman_cfg *cfg, const char *name, mcp_strv *argv)
{
    static const char *const words[] = {"container", "inspect", NULL};
    if (argv_begin(cfg, argv, words) != 0)
        return -1;
    return argv_positional(argv, name);
}

static int argv_flag_value(mcp_strv *argv, const char *flag, const char *value)
{
    if (!value || !*value)
        return 0;
    if (mcp_strv_push(argv, flag) != 0)
        return -1;
    return mcp_strv_push(argv, value);
}

static int argv_flag_each(mcp_strv *argv, const char *flag, const mcp_strv *values)
{
    for (size_t i = 0; i < values->n; i++)
        if (argv_flag_value(argv, flag, values->v[i]) != 0)
            return -1;
    return 0;
}

/* Orders "key=value" entries by key alone ("a=1" before "a.b=2"). */
static int label_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    size_t kx = strcspn(x, "="), ky = strcspn(y, "=");
    int c = strncmp(x, y, kx < ky ? kx : ky);
    if (c != 0)
        return c;
    return kx < ky ? -1 : kx > ky ? 1 : strcmp(x, y);
}

/* Sorted copy of labels, so the argv is the same for the same spec. */
static int sorted_labels(const mcp_strv *labels, mcp_strv *out)
{
    if (mcp_strv_extend(out, labels) != 0)
        return -1;
    if (out->n > 1)
        qsort(out->v, out->n, sizeof *out->v, label_cmp);
    return 0;
}

int mcp_podman_argv_run(const mcp_podman_cfg *cfg, const mcp_container_spec *spec, mcp_strv *argv)
{
    /* --pull=never: recover and deploy never reach out to a registry.
     * --restart=no: the agent is the only supervisor (SPEC §10); spec->restart
     * is its policy, never podman's. */
    static const char *const words[] = {"run", "-d", "--pull=never", "--restart=no", NULL};
    mcp_strv labels = {0};
    if (sorted_labels(&spec->labels, &labels) != 0) {
        mcp_strv_free(&labels);
        return -1;
    }
    int rc = -1;
    if (argv_begin(cfg, argv, words) == 0 && argv_flag_value(argv, "--name", spec->name) == 0 &&
        argv_flag_value(argv, "--network", spec->network) == 0 &&
        argv_flag_value(argv, "--user", spec->user) == 0 &&
        argv_flag_each(argv, "--label", &labels) == 0 &&
        argv_flag_each(argv, "-p", &spec->ports) == 0 &&
        argv_flag_each(argv, "-v", &spec->volumes) == 0 &&
        argv_flag_each(argv, "-e", &spec->env) == 0 && argv_positional(argv, spec->image) == 0)
        rc = mcp_strv_extend(argv, &spec->cmd);
    mcp_strv_free(&labels);
    return rc;
}

int mcp_podman_argv_events(const mcp_podman_cfg *cfg, mcp_strv *argv)
{
    static const char *const words[] = {"events",   "--format",       "json",
                                        "--filter", "type=container", NULL};
    return argv_begin(cfg, argv, words);
}

char *mcp_podman_events_file(const mcp_podman_cfg *cfg)
{
    const char *tmpdir = NULL;
    const mcp_strv *args = cfg->global_args;
    for (size_t i = 0; args && i < args->n; i++) {
        const char *a = args->v[i];
        if (strcmp(a, "--tmpdir") == 0 && i + 1 < args->n)
            tmpdir = args->v[++i];
        else if (strncmp(a, "--tmpdir=", 9) == 0)
            tmpdir = a + 9;
    }
    if (tmpdir)
        return mcp_sprintf("%s/events/events.log", tmpdir);
    if (geteuid() == 0)
        return mcp_strdup("/run/libpod/events/events.log");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    return xdg && *xdg ? mcp_sprintf("%s/libpod/tmp/events/events.log", xdg) : NULL;
}

int mcp_podman_argv_start(const mcp_podman_cfg *cfg, const char *name, mcp_strv *argv)
{
    static const char *const words[] = {"start", NULL};
    if (argv_begin(cfg, argv, words) != 0)
        return -1;
    return argv_positional(argv, name);
}

int mcp_podman_argv_stop(const mcp_podman_cfg *cfg, const char *name, int timeout_s, mcp_strv *argv)
{
    static const char *const words[] = {"stop", "-t", NULL};
    char secs[16];
    snprintf(secs, sizeof secs, "%d", timeout_s < 0 ? 0 : timeout_s);
    if (argv_begin(cfg, argv, words) != 0 || mcp_strv_push(argv, secs) != 0)
        return -1;
    return argv_positional(argv, name);
}

int mcp_podman_argv_remove(const mcp_podman_cfg *cfg, const char *name, mcp_strv *argv)
{
    /* -f: also a running or unusable container; -i: a missing one is fine,
     * and podman 4.3.1 then also drops a name only its storage still holds
     * (checked by deleting libpod/bolt_state.db); -t 0: no 10 s stop wait,
     * a graceful stop is mcp_podman_argv_stop's job. */
    static const char *const words[] = {"rm", "-f", "-i", "-t", "0", NULL};
    if (argv_begin(cfg, argv, words) != 0)
        return -1;
    return argv_positional(argv, name);
}

int mcp_podman_argv_image_exists(const mcp_podman_cfg *cfg, const char *image, mcp_strv *argv)
{
    static const char *const words[] = {"image", "exists", NULL};
    if (argv_begin(cfg, argv, words) != 0)
        return -1;
    return argv_positional(argv, image);
}

int mcp_podman_argv_pull(const mcp_podman_cfg *cfg, const char *image, mcp_strv *argv)
{
    static const char *const words[] = {"pull", NULL};
    if (argv_begin(cfg, argv, words) != 0)
        return -1;
    return argv_positional(argv, image);
}

/* ---- JSON helpers ---------------------------------------------------------- */

/* jansson's json_object_foreach and json_array_foreach visit nothing in a
 * value of another type (or NULL): podman's missing or null fields need no
 * check before them. */

/* Nested lookup: json_path(o, "State", "Status", NULL); NULL when any step is
 * missing or not an object. */
static json_t *json_path(json_t *o, ...)
{
    va_list ap;
    va_start(ap, o);
    for (const char *key = va_arg(ap, const char *); key && o; key = va_arg(ap, const char *))
        o = json_is_object(o) ? json_object_get(o, key) : NULL;
    va_end(ap);
    return o;
}

/* A copy of a string member, NULL when absent, not a string, or (with
 * empty_is_null) empty. Sets *oom on allocation failure. */
static char *json_strdup(json_t *v, bool empty_is_null, bool *oom)
{
    if (!json_is_string(v))
        return NULL;
    const char *s = json_string_value(v);
    if (empty_is_null && !*s)
        return NULL;
    char *copy = mcp_strdup(s);
    if (!copy)
        *oom = true;
    return copy;
}

static int json_int(json_t *v, int fallback)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i >= INT_MIN && i <= INT_MAX)
            return (int)i;
    }
    if (json_is_string(v)) { /* HostPort is a string in inspect */
        char *end;
        long l = strtol(json_string_value(v), &end, 10);
        if (end != json_string_value(v) && *end == '\0' && l >= INT_MIN && l <= INT_MAX)
            return (int)l;
    }
    return fallback;
}

/* Appends every string element of an array (others are skipped). */
static int json_strv(json_t *arr, mcp_strv *out)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
        if (json_is_string(v) && mcp_strv_push(out, json_string_value(v)) != 0)
            return -1;
    return 0;
}

/* Podman's zero time ("0001-01-01T00:00:00Z", or epoch -62135596800 in ps)
 * means never started: NULL. Integer epochs become RFC 3339 UTC. */
static char *started_at_of(json_t *v, bool *oom)
{
    if (json_is_integer(v)) {
        json_int_t epoch = json_integer_value(v);
        if (epoch <= 0)
            return NULL;
        time_t t = (time_t)epoch;
        struct tm tm;
        char buf[32];
        if (!gmtime_r(&t, &tm) || !strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm))
            return NULL;
        char *copy = mcp_strdup(buf);
        if (!copy)
            *oom = true;
        return copy;
    }
    if (json_is_string(v) && strncmp(json_string_value(v), "0001-01-01", 10) == 0)
        return NULL;
    return json_strdup(v, true, oom);
}

/* A JSON object of string values as sorted "key=value" entries. */
static int labels_of(json_t *obj, mcp_strv *out)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (!json_is_string(v))
            continue;
        char *kv = mcp_sprintf("%s=%s", key, json_string_value(v));
        int rc = kv ? mcp_strv_push(out, kv) : -1;
        free(kv);
        if (rc != 0)
            return -1;
    }
    if (out->n > 1)
        qsort(out->v, out->n, sizeof *out->v, label_cmp);
    return 0;
}

/* A ps range expands to one mapping a port: past this many a container's
 * list is cut (a range spans at most 65535 ports, but an answer may hold many). */
#define MAX_PORT_MAPPINGS 65536

static int ports_push(mcp_container *c, const char *host_ip, int host_port, int container_port,
                      const char *protocol)
{
    if (c->n_ports >= MAX_PORT_MAPPINGS)
        return 0;
    mcp_port_mapping *grown = mcp_grow_one(c->ports, c->n_ports, sizeof *grown);
    if (!grown)
        return -1;
    c->ports = grown;
    mcp_port_mapping *m = &c->ports[c->n_ports];
    m->host_ip = mcp_strdup(host_ip ? host_ip : "");
    m->protocol = mcp_strdup(protocol && *protocol ? protocol : "tcp");
    m->host_port = host_port;
    m->container_port = container_port;
    c->n_ports++;
    if (!m->host_ip || !m->protocol)
        return -1;
    return 0;
}

static bool port_valid(int port)
{
    return port > 0 && port <= 65535;
}

/* ps: [{host_ip, container_port, host_port, range, protocol}] or null; a
 * range of N maps N consecutive ports. */
static int ports_from_ps(json_t *arr, mcp_container *c)
{
    size_t i;
    json_t *p;
    json_array_foreach(arr, i, p) {
        int host = json_int(json_object_get(p, "host_port"), 0);
        int cont = json_int(json_object_get(p, "container_port"), 0);
        int range = json_int(json_object_get(p, "range"), 1);
        const char *ip = json_string_value(json_object_get(p, "host_ip"));
        const char *proto = json_string_value(json_object_get(p, "protocol"));
        if (!port_valid(cont) || range < 1)
            continue;
        for (int k = 0; k < range && port_valid(cont + k) && c->n_ports < MAX_PORT_MAPPINGS; k++)
            if (ports_push(c, ip, port_valid(host) ? host + k : 0, cont + k, proto) != 0)
                return -1;
    }
    return 0;
}

/* inspect: {"8080/tcp": [{"HostIp": "", "HostPort": "18080"}], …} */
static int ports_from_bindings(json_t *obj, mcp_container *c)
{
    const char *key;
    json_t *binds;
    json_object_foreach(obj, key, binds) {
        char *end;
        long cont = strtol(key, &end, 10);
        if (end == key || !port_valid((int)(cont > 65535 ? 0 : cont)))
            continue;
        const char *proto = *end == '/' ? end + 1 : "tcp";
        size_t i;
        json_t *b;
        json_array_foreach(binds, i, b) {
            if (!json_is_object(b))
                continue;
            int host = json_int(json_object_get(b, "HostPort"), 0);
            const char *ip = json_string_value(json_object_get(b, "HostIp"));
            if (ports_push(c, ip, port_valid(host) ? host : 0, (int)cont, proto) != 0)
                return -1;
        }
    }
    return 0;
}

static json_t *json_load_text(const char *json, size_t len, const char *what, mcp_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(json ? json : "", json ? len : 0, JSON_DECODE_ANY, &jerr);
    if (!root)
        mcp_error_set(err, "podman %s output: line %d, column %d: %s", what, jerr.line, jerr.column,
                      jerr.text);
    return root;
}

static bool blank(const char *s, size_t len)
{
    for (size_t i = 0; s && i < len; i++)
        if (!isspace((unsigned char)s[i]))
            return false;
    return true;
}

/* ---- ps -a --format json ----------------------------------------------------- */

static int container_from_ps(json_t *o, mcp_container *c)
{
    bool oom = false;
    json_t *names = json_object_get(o, "Names");
    c->id = json_strdup(json_object_get(o, "Id"), false, &oom);
    /* Names is an array in podman; a plain string is accepted too. */
    c->name = json_strdup(json_is_array(names) ? json_array_get(names, 0) : names, false, &oom);
    c->image = json_strdup(json_object_get(o, "Image"), false, &oom);
    c->state = json_strdup(json_object_get(o, "State"), false, &oom);
    c->exit_code = json_int(json_object_get(o, "ExitCode"), 0);
    c->started_at = started_at_of(json_object_get(o, "StartedAt"), &oom);
    /* ExitedAt is an epoch, and only means something once it exited */
    if (json_is_true(json_object_get(o, "Exited")))
        c->finished_at = started_at_of(json_object_get(o, "ExitedAt"), &oom);
    if (oom || ports_from_ps(json_object_get(o, "Ports"), c) != 0 ||
        labels_of(json_object_get(o, "Labels"), &c->labels) != 0)
        return -1;
    return 0;
}

int mcp_podman_parse_list(const char *json, size_t len, mcp_container **out, size_t *n, mcp_error *err)
{
    *out = NULL;
    *n = 0;
    if (blank(json, len)) /* no output at all: nothing listed */
        return 0;
    json_t *root = json_load_text(json, len, "ps", err);
    if (!root)
        return -1;
    if (json_is_null(root)) {
        json_decref(root);
        return 0;
    }
    if (!json_is_array(root)) {
        mcp_error_set(err, "podman ps output: expected a JSON array, got %s",
                      json_is_object(root) ? "an object" : "a scalar");
        json_decref(root);
        return -1;
    }
    size_t count = json_array_size(root), kept = 0;
    mcp_container *cs = calloc(count ? count : 1, sizeof *cs);
    if (!cs) {
        json_decref(root);
        mcp_error_set(err, "podman ps output: out of memory");
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        json_t *o = json_array_get(root, i);
        if (!json_is_object(o))
            continue; /* not a container: nothing to say about it */
        if (container_from_ps(o, &cs[kept++]) != 0) {
            mcp_containers_free(cs, kept);
            json_decref(root);
            mcp_error_set(err, "podman ps output: out of memory");
            return -1;
        }
    }
    json_decref(root);
    *out = cs;
    *n = kept;
    return 0;
}

/* ---- container inspect ------------------------------------------------------- */

static int volumes_from_mounts(json_t *mounts, mcp_strv *out)
{
    size_t i;
    json_t *m;
    json_array_foreach(mounts, i, m) {
        const char *type = json_string_value(json_object_get(m, "Type"));
        const char *name = json_string_value(json_object_get(m, "Name"));
        const char *src = json_string_value(json_object_get(m, "Source"));
        const char *dst = json_string_value(json_object_get(m, "Destination"));
        if (type && strcmp(type, "volume") == 0 && name && *name)
            src = name; /* a named volume is known by its name, not its path */
        if (!src || !dst)
            continue;
        char *vol = mcp_sprintf("%s:%s", src, dst);
        int rc = vol ? mcp_strv_push(out, vol) : -1;
        free(vol);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* The first attached network; else the network mode when it names one. */
static char *network_of(json_t *o, bool *oom)
{
    json_t *nets = json_path(o, "NetworkSettings", "Networks", NULL);
    if (json_is_object(nets)) {
        void *it = json_object_iter(nets);
        if (it) {
            char *name = mcp_strdup(json_object_iter_key(it));
            if (!name)
                *oom = true;
            return name;
        }
    }
    return json_strdup(json_path(o, "HostConfig", "NetworkMode", NULL), true, oom);
}

static int container_from_inspect(json_t *o, mcp_container *c)
{
    bool oom = false;
    c->id = json_strdup(json_object_get(o, "Id"), false, &oom);
    const char *name = json_string_value(json_object_get(o, "Name"));
    c->name = name ? mcp_strdup(name[0] == '/' ? name + 1 : name) : NULL;
    if (name && !c->name)
        oom = true;
    /* "Image" is the image id in inspect; the name the user gave is ImageName. */
    json_t *image = json_object_get(o, "ImageName");
    if (!json_is_string(image) || !*json_string_value(image))
        image = json_path(o, "Config", "Image", NULL);
    if (!json_is_string(image) || !*json_string_value(image))
        image = json_object_get(o, "Image");
    c->image = json_strdup(image, false, &oom);
    c->state = json_strdup(json_path(o, "State", "Status", NULL), false, &oom);
    c->exit_code = json_int(json_path(o, "State", "ExitCode", NULL), 0);
    c->started_at = started_at_of(json_path(o, "State", "StartedAt", NULL), &oom);
    c->finished_at = started_at_of(json_path(o, "State", "FinishedAt", NULL), &oom);
    c->oom = json_is_true(json_path(o, "State", "OOMKilled", NULL));
    c->user = json_strdup(json_path(o, "Config", "User", NULL), true, &oom);
    c->restart = json_strdup(json_path(o, "HostConfig", "RestartPolicy", "Name", NULL), true, &oom);
    c->network = network_of(o, &oom);
    json_t *bindings = json_path(o, "HostConfig", "PortBindings", NULL);
    if (!json_is_object(bindings) || json_object_size(bindings) == 0)
        bindings = json_path(o, "NetworkSettings", "Ports", NULL);
    if (oom || ports_from_bindings(bindings, c) != 0 ||
        json_strv(json_path(o, "Config", "Env", NULL), &c->env) != 0 ||
        json_strv(json_path(o, "Config", "Cmd", NULL), &c->cmd) != 0 ||
        volumes_from_mounts(json_object_get(o, "Mounts"), &c->volumes) != 0 ||
        labels_of(json_path(o, "Config", "Labels", NULL), &c->labels) != 0)
        return -1;
    return 0;
}

int mcp_podman_parse_inspect(const char *json, size_t len, mcp_container *out, mcp_error *err)
{
    memset(out, 0, sizeof *out);
    json_t *root = json_load_text(json, len, "inspect", err);
    if (!root)
        return -1;
    /* podman prints an array of one object; a bare object is accepted too. */
    json_t *o = json_is_array(root) ? json_array_get(root, 0) : root;
    if (!json_is_object(o)) {
        mcp_error_set(err, "podman inspect output: %s",
                      json_is_array(root) ? "no container in the answer" : "expected an array of objects");
        json_decref(root);
        return -1;
    }
    int rc = container_from_inspect(o, out);
    json_decref(root);
    if (rc != 0) {
        mcp_container_free(out);
        mcp_error_set(err, "podman inspect output: out of memory");
    }
    return rc;
}

char *mcp_podman_parse_run(const char *out, size_t len)
{
    if (!out)
        return NULL;
    /* The id is the last non-empty line (progress, if any, goes before it). */
    size_t end = len;
    while (end > 0 && isspace((unsigned char)out[end - 1]))
        end--;
    size_t start = end;
    while (start > 0 && out[start - 1] != '\n')
        start--;
    while (start < end && isspace((unsigned char)out[start]))
        start++;
    if (start == end)
        return NULL;
    return mcp_strndup(out + start, end - start);
}

int mcp_podman_parse_image_exists(const mcp_proc_result *res, mcp_error *err)
{
    if (!res->timed_out && !res->cancelled && res->term_signal == 0) {
        if (res->exit_status == 0)
            return 1;
        if (res->exit_status == 1)
            return 0;
    }
    char reason[32];
    mcp_podman_result(res, reason, sizeof reason, err);
    return -1;
}

/* ---- events --format json ------------------------------------------------------- */

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static long long days_from_civil(long long y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Reads exactly n digits at *p. */
static bool take_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool take_char(const char **p, char c)
{
    if (**p != c)
        return false;
    (*p)++;
    return true;
}

int mcp_podman_parse_time(const char *s, double *out)
{
    int y, mo, d, h, mi, sec;
    const char *p = s;
    if (!s || !take_digits(&p, 4, &y) || !take_char(&p, '-') || !take_digits(&p, 2, &mo) ||
        !take_char(&p, '-') || !take_digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return -1;
    p++;
    if (!take_digits(&p, 2, &h) || !take_char(&p, ':') || !take_digits(&p, 2, &mi) ||
        !take_char(&p, ':') || !take_digits(&p, 2, &sec))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    double frac = 0, scale = 0.1;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        for (; isdigit((unsigned char)*p); p++, scale /= 10)
            frac += (*p - '0') * scale;
    }
    long long offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (!take_digits(&p, 2, &oh) || !take_char(&p, ':') || !take_digits(&p, 2, &om))
            return -1;
        offset = sign * (oh * 3600LL + om * 60LL);
    } else {
        return -1;
    }
    if (*p)
        return -1;
    long long secs = days_from_civil(y, mo, d) * 86400LL + h * 3600LL + mi * 60LL + sec - offset;
    *out = (double)secs + frac;
    return 0;
}

static char *json_strdup_or_empty(json_t *v, bool *oom)
{
    char *copy = json_strdup(v, false, oom);
    if (!copy && !*oom) {
        copy = mcp_strdup("");
        if (!copy)
            *oom = true;
    }
    return copy;
}

static double event_time(json_t *o)
{
    /* timeNano (some podman versions) is exact; else Time in RFC 3339 with ns */
    json_t *nano = json_object_get(o, "timeNano");
    if (json_is_integer(nano) && json_integer_value(nano) > 0)
        return (double)json_integer_value(nano) / 1e9;
    double t;
    json_t *time = json_object_get(o, "Time");
    if (json_is_string(time) && mcp_podman_parse_time(json_string_value(time), &t) == 0)
        return t;
    if (json_is_integer(time)) /* "time" as epoch seconds in docker-style output */
        return (double)json_integer_value(time);
    return 0;
}

int mcp_podman_parse_event(const char *line, size_t len, mcp_podman_event *out, mcp_error *err)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *o = json_loadb(line ? line : "", line ? len : 0, 0, &jerr);
    if (!o) {
        mcp_error_set(err, "podman events line: column %d: %s", jerr.column, jerr.text);
        return -1;
    }
    json_t *status = json_object_get(o, "Status");
    if (!json_is_string(status) || !*json_string_value(status)) {
        json_decref(o);
        mcp_error_set(err, "podman events line: no Status");
        return -1;
    }
    bool oom = false;
    out->status = json_strdup(status, false, &oom);
    out->name = json_strdup_or_empty(json_object_get(o, "Name"), &oom);
    out->id = json_strdup_or_empty(json_object_get(o, "ID"), &oom);
    out->image = json_strdup_or_empty(json_object_get(o, "Image"), &oom);
    out->time = event_time(o);
    json_t *type = json_object_get(o, "Type");
    out->container = !json_is_string(type) || strcmp(json_string_value(type), "container") == 0;
    json_t *code = json_object_get(o, "ContainerExitCode");
    if (json_is_integer(code)) {
        out->has_exit_code = true;
        out->exit_code = json_int(code, 0);
    } else if (strcmp(json_string_value(status), "died") == 0) {
        /* podman 4.3 marshals ContainerExitCode with omitempty: a zero exit has none */
        out->has_exit_code = true;
        out->exit_code = 0;
    }
    if (oom || labels_of(json_object_get(o, "Attributes"), &out->labels) != 0) {
        json_decref(o);
        mcp_podman_event_free(out);
        mcp_error_set(err, "podman events line: out of memory");
        return -1;
    }
    json_decref(o);
    return 0;
}

void mcp_podman_event_free(mcp_podman_event *ev)
{
    if (!ev)
        return;
    MCP_FREE_ALL(ev->name, ev->id, ev->image, ev->status);
    mcp_strv_free(&ev->labels);
    memset(ev, 0, sizeof *ev);
}

/* ---- classification ---------------------------------------------------------- */

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; p && *p; p++)
        if (strncasecmp(p, needle, n) == 0)
            return true;
    return false;
}

static const char *classify_stderr(const char *err)
{
    static const char *const missing_image[] = {"no such image", "image not known", "manifest unknown",
                                                "pull access denied", "initializing source", NULL};
    if (contains_ci(err, "no such container") || contains_ci(err, "no container with name or id"))
        return "no such container";
    for (size_t i = 0; missing_image[i]; i++)
        if (contains_ci(err, missing_image[i]))
            return "no such image";
    /* "address already in use" is a port, not a name */
    if (contains_ci(err, "address already in use") || contains_ci(err, "cannot listen on the"))
        return "port in use";
    if (contains_ci(err, "already in use"))
        return "name in use";
    return "failed";
}

const char *mcp_podman_pull_reason(const char *err)
{
    static const char *const unreachable[] = {"connection refused", "no such host",
                                              "i/o timeout", "network is unreachable",
                                              "server gave http response to https client",
                                              "connection reset", NULL};
    for (size_t i = 0; unreachable[i]; i++)
        if (contains_ci(err ? err : "", unreachable[i]))
            return "registry unreachable";
    return classify_stderr(err ? err : "");
}

/* podman's stderr without surrounding blanks, cut to fit a message. */
static void trimmed_stderr(const mcp_proc_result *res, const char **start, int *len)
{
    const char *s = res->err ? res->err : "";
    size_t n = res->err ? res->err_len : 0;
    while (n > 0 && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    if (n > 800)
        n = 800;
    *start = s;
    *len = (int)n;
}

int mcp_podman_result(const mcp_proc_result *res, char *reason, size_t reason_len, mcp_error *err)
{
    const char *why;
    const char *msg;
    int msg_len;
    trimmed_stderr(res, &msg, &msg_len);
    if (res->timed_out) {
        why = "timeout";
        mcp_error_set(err, "podman timed out after %lld ms%s%.*s", (long long)res->elapsed_ms,
                      msg_len ? ": " : "", msg_len, msg);
    } else if (res->cancelled) {
        why = "cancelled";
        mcp_error_set(err, "podman call cancelled");
    } else if (res->term_signal != 0) {
        why = "failed";
        mcp_error_set(err, "podman killed by signal %d%s%.*s", res->term_signal, msg_len ? ": " : "",
                      msg_len, msg);
    } else if (res->exit_status == 0) {
        if (reason && reason_len)
            reason[0] = '\0';
        return 0;
    } else {
        why = classify_stderr(res->err);
        mcp_error_set(err, "podman exited with status %d%s%.*s", res->exit_status,
                      msg_len ? ": " : "", msg_len, msg);
    }
    if (reason && reason_len)
        snprintf(reason, reason_len, "%s", why);
    return -1;
}

/* ---- freeing ------------------------------------------------------------------ */

void mcp_container_free(mcp_container *c)
{
    if (!c)
        return;
    MCP_FREE_ALL(c->id, c->name, c->image, c->state, c->started_at, c->finished_at, c->user,
                 c->network, c->restart);
    for (size_t i = 0; i < c->n_ports; i++)
        MCP_FREE_ALL(c->ports[i].host_ip, c->ports[i].protocol);
    free(c->ports);
    MCP_STRV_FREE_ALL(&c->labels, &c->env, &c->cmd, &c->volumes);
    memset(c, 0, sizeof *c);
}

void mcp_containers_free(mcp_container *cs, size_t n)
{
    MCP_FREE_ARRAY(cs, n, mcp_container_free);
}

void mcp_container_spec_free(mcp_container_spec *spec)
{
    if (!spec)
        return;
    MCP_FREE_ALL(spec->name, spec->image, spec->network, spec->user, spec->restart);
    MCP_STRV_FREE_ALL(&spec->ports, &spec->volumes, &spec->cmd, &spec->env, &spec->labels);
    memset(spec, 0, sizeof *spec);
}
