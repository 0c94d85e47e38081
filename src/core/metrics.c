/* The metric registry and the Prometheus text exposition format 0.0.4:
 * families in definition order, series in creation order, found by their
 * label values through an open-addressing hash. */
#include "mcp/metrics.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "mcp/util.h"

typedef struct series {
    char *key; /* the label values, each as 4 length bytes + bytes */
    size_t key_len;
    char **values;
    char *labels; /* rendered once: l1="v1",l2="v2" (escaped) */
    size_t labels_len;
    double value;     /* counter, gauge */
    uint64_t *counts; /* histogram: per bucket, not cumulative */
    uint64_t count;
    double sum;
} series;

struct mcp_metric_family {
    mcp_metric_type type;
    char *name, *help;
    char *labels[MCP_METRICS_MAX_LABELS];
    size_t n_labels;
    double buckets[MCP_METRICS_MAX_BUCKETS];
    size_t n_buckets;
    series **series;
    size_t n_series, cap_series;
    size_t *index; /* hash slots: series position + 1, 0 = empty */
    size_t n_index;
};

struct mcp_metrics {
    char *version;
    size_t last_len; /* the previous rendering's size: the next buffer starts there */
    mcp_metric_family **families;
    size_t n_families, cap_families;
};

static const double default_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* ---------- names ---------- */

static int name_char(char c, int first, int colon)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':'))
        return 1;
    return !first && c >= '0' && c <= '9';
}

int mcp_metrics_valid_name(const char *name)
{
    if (!name || !*name)
        return 0;
    for (size_t i = 0; name[i]; i++)
        if (!name_char(name[i], i == 0, 1))
            return 0;
    return 1;
}

int mcp_metrics_valid_label(const char *name)
{
    if (!name || !*name || strncmp(name, "__", 2) == 0)
        return 0;
    for (size_t i = 0; name[i]; i++)
        if (!name_char(name[i], i == 0, 0))
            return 0;
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* ---------- registry ---------- */

mcp_metrics *mcp_metrics_new(const char *version)
{
    mcp_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->version = mcp_strdup(version ? version : "");
    if (!m->version) {
        free(m);
        return NULL;
    }
    return m;
}

static void series_free(series *s, size_t n_labels)
{
    if (!s)
        return;
    for (size_t i = 0; s->values && i < n_labels; i++)
        free(s->values[i]);
    MCP_FREE_ALL(s->values, s->labels, s->key, s->counts, s);
}

static void family_free(mcp_metric_family *f)
{
    for (size_t i = 0; i < f->n_series; i++)
        series_free(f->series[i], f->n_labels);
    for (size_t i = 0; i < f->n_labels; i++)
        free(f->labels[i]);
    MCP_FREE_ALL(f->series, f->index, f->name, f->help, f);
}

void mcp_metrics_free(mcp_metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_families; i++)
        family_free(m->families[i]);
    free(m->families);
    free(m->version);
    free(m);
}

mcp_metric_family *mcp_metrics_find(mcp_metrics *m, const char *name)
{
    for (size_t i = 0; i < m->n_families; i++)
        if (strcmp(m->families[i]->name, name) == 0)
            return m->families[i];
    return NULL;
}

mcp_metric_type mcp_metrics_family_type(const mcp_metric_family *f)
{
    return f->type;
}

size_t mcp_metrics_family_labels(const mcp_metric_family *f, const char *const **names)
{
    *names = (const char *const *)f->labels;
    return f->n_labels;
}

static const char *type_name(mcp_metric_type t)
{
    return t == MCP_METRIC_COUNTER ? "counter" : t == MCP_METRIC_GAUGE ? "gauge" : "histogram";
}

static int same_shape(const mcp_metric_family *f, mcp_metric_type type, const char *const *labels,
                      size_t n_labels)
{
    if (f->type != type || f->n_labels != n_labels)
        return 0;
    for (size_t i = 0; i < n_labels; i++)
        if (strcmp(f->labels[i], labels[i]) != 0)
            return 0;
    return 1;
}

/* Checks the definition; 0 or -1 with err set. */
static int check_definition(mcp_metric_type type, const char *name, const char *const *labels,
                            size_t n_labels, const double *buckets, size_t n_buckets,
                            mcp_error *err)
{
    if (!mcp_metrics_valid_name(name)) {
        mcp_error_set(err, "invalid metric name \"%s\" (want [a-zA-Z_:][a-zA-Z0-9_:]*)",
                      name ? name : "");
        return -1;
    }
    if (type == MCP_METRIC_COUNTER && !ends_with(name, "_total")) {
        mcp_error_set(err, "counter \"%s\" must end in _total", name);
        return -1;
    }
    if (type != MCP_METRIC_COUNTER && ends_with(name, "_total")) {
        mcp_error_set(err, "only a counter's name ends in _total (\"%s\")", name);
        return -1;
    }
    if (n_labels > MCP_METRICS_MAX_LABELS) {
        mcp_error_set(err, "%s: at most %d labels", name, MCP_METRICS_MAX_LABELS);
        return -1;
    }
    for (size_t i = 0; i < n_labels; i++) {
        if (!mcp_metrics_valid_label(labels[i]) ||
            (type == MCP_METRIC_HISTOGRAM && strcmp(labels[i], "le") == 0)) {
            mcp_error_set(err, "%s: invalid label name \"%s\"", name, labels[i]);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[i], labels[j]) == 0) {
                mcp_error_set(err, "%s: label \"%s\" given twice", name, labels[i]);
                return -1;
            }
    }
    if (type != MCP_METRIC_HISTOGRAM && buckets) {
        mcp_error_set(err, "%s: only a histogram has buckets", name);
        return -1;
    }
    if (n_buckets > MCP_METRICS_MAX_BUCKETS) {
        mcp_error_set(err, "%s: at most %d buckets", name, MCP_METRICS_MAX_BUCKETS);
        return -1;
    }
    for (size_t i = 0; buckets && i < n_buckets; i++)
        if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) {
            mcp_error_set(err, "%s: buckets must be finite and strictly increasing", name);
            return -1;
        }
    return 0;
}

mcp_metric_family *mcp_metrics_define(mcp_metrics *m, mcp_metric_type type, const char *name,
                                      const char *help, const char *const *labels, size_t n_labels,
                                      const double *buckets, size_t n_buckets, mcp_error *err)
{
    if (check_definition(type, name, labels, n_labels, buckets, n_buckets, err) != 0)
        return NULL;
    mcp_metric_family *old = mcp_metrics_find(m, name);
    if (old) {
        if (same_shape(old, type, labels, n_labels))
            return old;
        mcp_error_set(err, "metric \"%s\" is already defined as a %s with other labels", name,
                      type_name(old->type));
        return NULL;
    }
    if (m->n_families == m->cap_families) {
        size_t cap = m->cap_families ? m->cap_families * 2 : 16;
        mcp_metric_family **grown = realloc(m->families, cap * sizeof *grown);
        if (!grown)
            goto oom;
        m->families = grown;
        m->cap_families = cap;
    }
    mcp_metric_family *f = calloc(1, sizeof *f);
    if (!f)
        goto oom;
    f->type = type;
    f->name = mcp_strdup(name);
    f->help = mcp_strdup(help ? help : "");
    int ok = f->name && f->help;
    for (size_t i = 0; i < n_labels; i++) {
        f->labels[i] = mcp_strdup(labels[i]);
        f->n_labels = i + 1;
        ok = ok && f->labels[i];
    }
    if (!ok) {
        family_free(f);
        goto oom;
    }
    if (type == MCP_METRIC_HISTOGRAM) {
        if (!buckets) {
            buckets = default_buckets;
            n_buckets = sizeof default_buckets / sizeof default_buckets[0];
        }
        memcpy(f->buckets, buckets, n_buckets * sizeof *buckets);
        f->n_buckets = n_buckets;
    }
    m->families[m->n_families++] = f;
    return f;
oom:
    mcp_error_set(err, "out of memory");
    return NULL;
}

/* ---------- text buffers ---------- */

typedef struct buf {
    char *p;
    size_t len, cap;
    int failed;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *grown = realloc(b->p, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* HELP text: backslash and newline escaped; label values: the quote too. */
static void put_escaped(buf *b, const char *s, int quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = *s == '\\'             ? "\\\\"
                          : *s == '\n'           ? "\\n"
                          : (quote && *s == '"') ? "\\\""
                                                 : NULL;
        if (!esc)
            continue;
        put(b, run, (size_t)(s - run));
        puts_(b, esc);
        run = s + 1;
    }
    put(b, run, (size_t)(s - run));
}

/* ---------- series lookup ---------- */

static char *make_key(const mcp_metric_family *f, const char *const *values, size_t *len)
{
    size_t n = 0;
    for (size_t i = 0; i < f->n_labels; i++)
        n += 4 + strlen(values[i]);
    char *key = malloc(n ? n : 1);
    if (!key)
        return NULL;
    size_t at = 0;
    for (size_t i = 0; i < f->n_labels; i++) {
        uint32_t l = (uint32_t)strlen(values[i]);
        memcpy(key + at, &l, 4);
        memcpy(key + at + 4, values[i], l);
        at += 4 + l;
    }
    *len = n;
    return key;
}

static size_t hash_key(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}

/* The slot of key in f->index: its series, or the empty slot to fill. */
static size_t slot_of(const mcp_metric_family *f, const char *key, size_t len)
{
    size_t mask = f->n_index - 1;
    size_t i = hash_key(key, len) & mask;
    while (f->index[i]) {
        const series *s = f->series[f->index[i] - 1];
        if (s->key_len == len && memcmp(s->key, key, len) == 0)
            return i;
        i = (i + 1) & mask;
    }
    return i;
}

static int rebuild_index(mcp_metric_family *f, size_t n_index)
{
    size_t *fresh = calloc(n_index, sizeof *fresh);
    if (!fresh)
        return -1;
    free(f->index);
    f->index = fresh;
    f->n_index = n_index;
    for (size_t i = 0; i < f->n_series; i++)
        f->index[slot_of(f, f->series[i]->key, f->series[i]->key_len)] = i + 1;
    return 0;
}

static series *new_series(mcp_metric_family *f, char *key, size_t len, const char *const *values)
{
    series *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->key = key;
    s->key_len = len;
    s->values = calloc(f->n_labels ? f->n_labels : 1, sizeof *s->values);
    if (!s->values)
        goto fail;
    for (size_t i = 0; i < f->n_labels; i++)
        if (!(s->values[i] = mcp_strdup(values[i])))
            goto fail;
    if (f->type == MCP_METRIC_HISTOGRAM &&
        !(s->counts = calloc(f->n_buckets + 1, sizeof(uint64_t))))
        goto fail;
    buf lb = {0};
    for (size_t i = 0; i < f->n_labels; i++) {
        if (i)
            puts_(&lb, ",");
        puts_(&lb, f->labels[i]);
        puts_(&lb, "=\"");
        put_escaped(&lb, values[i], 1);
        puts_(&lb, "\"");
    }
    if (lb.failed) {
        free(lb.p);
        goto fail;
    }
    s->labels = lb.p;
    s->labels_len = lb.len;
    return s;
fail:
    s->key = NULL; /* the caller still owns key */
    series_free(s, f->n_labels);
    return NULL;
}

/* The series of values, made when missing; NULL with err set. */
static series *series_for(mcp_metric_family *f, const char *const *values, mcp_error *err)
{
    for (size_t i = 0; i < f->n_labels; i++)
        if (!values || !values[i]) {
            mcp_error_set(err, "%s: label \"%s\" has no value", f->name, f->labels[i]);
            return NULL;
        }
    size_t len = 0;
    char *key = make_key(f, values, &len);
    if (!key)
        goto oom;
    if (f->n_index) {
        size_t at = slot_of(f, key, len);
        if (f->index[at]) {
            free(key);
            return f->series[f->index[at] - 1];
        }
    }
    if (f->n_series >= MCP_METRICS_MAX_SERIES) {
        free(key);
        mcp_error_set(err, "%s: too many series (%d)", f->name, MCP_METRICS_MAX_SERIES);
        return NULL;
    }
    if (f->n_series == f->cap_series) {
        size_t cap = f->cap_series ? f->cap_series * 2 : 8;
        series **grown = realloc(f->series, cap * sizeof *grown);
        if (!grown) {
            free(key);
            goto oom;
        }
        f->series = grown;
        f->cap_series = cap;
    }
    series *s = new_series(f, key, len, values);
    if (!s) {
        free(key);
        goto oom;
    }
    f->series[f->n_series++] = s;
    /* keep the table at most half full */
    if (f->n_series * 2 > f->n_index) {
        if (rebuild_index(f, f->n_index ? f->n_index * 2 : 16) != 0) {
            series_free(f->series[--f->n_series], f->n_labels);
            goto oom;
        }
    } else {
        f->index[slot_of(f, key, len)] = f->n_series;
    }
    return s;
oom:
    mcp_error_set(err, "out of memory");
    return NULL;
}

int mcp_metrics_add(mcp_metric_family *f, const char *const *values, double delta, mcp_error *err)
{
    if (f->type == MCP_METRIC_HISTOGRAM) {
        mcp_error_set(err, "%s is a histogram: observe it", f->name);
        return -1;
    }
    if (!isfinite(delta) || (f->type == MCP_METRIC_COUNTER && delta < 0)) {
        mcp_error_set(err, "%s: a counter only goes up by a finite amount", f->name);
        return -1;
    }
    series *s = series_for(f, values, err);
    if (!s)
        return -1;
    s->value += delta;
    return 0;
}

int mcp_metrics_set(mcp_metric_family *f, const char *const *values, double v, mcp_error *err)
{
    if (f->type != MCP_METRIC_GAUGE) {
        mcp_error_set(err, "%s is a %s: only a gauge is set", f->name, type_name(f->type));
        return -1;
    }
    series *s = series_for(f, values, err);
    if (!s)
        return -1;
    s->value = v;
    return 0;
}

int mcp_metrics_observe(mcp_metric_family *f, const char *const *values, double v, mcp_error *err)
{
    if (f->type != MCP_METRIC_HISTOGRAM) {
        mcp_error_set(err, "%s is a %s: only a histogram observes", f->name, type_name(f->type));
        return -1;
    }
    if (isnan(v)) {
        mcp_error_set(err, "%s: cannot observe NaN", f->name);
        return -1;
    }
    series *s = series_for(f, values, err);
    if (!s)
        return -1;
    size_t b = 0;
    while (b < f->n_buckets && v > f->buckets[b])
        b++;
    s->counts[b]++;
    s->count++;
    s->sum += v;
    return 0;
}

int mcp_metrics_remove(mcp_metric_family *f, const char *const *values)
{
    if (!f->n_index)
        return 0;
    for (size_t i = 0; i < f->n_labels; i++)
        if (!values || !values[i])
            return 0;
    size_t len = 0;
    char *key = make_key(f, values, &len);
    if (!key)
        return 0;
    size_t at = slot_of(f, key, len);
    free(key);
    if (!f->index[at])
        return 0;
    size_t pos = f->index[at] - 1;
    series_free(f->series[pos], f->n_labels);
    memmove(&f->series[pos], &f->series[pos + 1], (f->n_series - pos - 1) * sizeof *f->series);
    f->n_series--;
    /* re-index in place: positions moved, and nothing to allocate */
    memset(f->index, 0, f->n_index * sizeof *f->index);
    for (size_t i = 0; i < f->n_series; i++)
        f->index[slot_of(f, f->series[i]->key, f->series[i]->key_len)] = i + 1;
    return 1;
}

/* ---------- rendering ---------- */

/* The shortest text that reads back as v; Prometheus spells infinities +Inf/-Inf. */
static void format_number(char *out, size_t len, double v)
{
    if (isnan(v)) {
        snprintf(out, len, "NaN");
    } else if (isinf(v)) {
        snprintf(out, len, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        /* most samples are small integers: no printf for them */
        char tmp[24];
        size_t n = 0;
        uint64_t u = (uint64_t)fabs(v);
        do {
            tmp[n++] = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        size_t at = 0;
        if (v < 0 && at + 1 < len)
            out[at++] = '-';
        while (n && at + 1 < len)
            out[at++] = tmp[--n];
        out[at] = '\0';
    } else {
        snprintf(out, len, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, len, "%.17g", v);
    }
}

static void put_number(buf *b, double v)
{
    char n[40];
    format_number(n, sizeof n, v);
    puts_(b, n);
}

/* name{l1="v1",...,le="x"} value\n */
static void put_sample(buf *b, const char *name, const char *suffix, const series *s,
                       const char *le, double v)
{
    puts_(b, name);
    puts_(b, suffix);
    size_t n = s ? s->labels_len : 0;
    if (n || le) {
        put(b, "{", 1);
        if (n)
            put(b, s->labels, n);
        if (le) { /* a number: nothing to escape */
            puts_(b, n ? ",le=\"" : "le=\"");
            puts_(b, le);
            put(b, "\"", 1);
        }
        put(b, "}", 1);
    }
    put(b, " ", 1);
    put_number(b, v);
    put(b, "\n", 1);
}

static void put_header(buf *b, const char *name, const char *help, const char *type)
{
    puts_(b, "# HELP ");
    puts_(b, name);
    puts_(b, " ");
    put_escaped(b, help, 0);
    puts_(b, "\n# TYPE ");
    puts_(b, name);
    puts_(b, " ");
    puts_(b, type);
    puts_(b, "\n");
}

static void render_family(buf *b, const mcp_metric_family *f)
{
    put_header(b, f->name, f->help, type_name(f->type));
    for (size_t i = 0; i < f->n_series; i++) {
        const series *s = f->series[i];
        if (f->type != MCP_METRIC_HISTOGRAM) {
            put_sample(b, f->name, "", s, NULL, s->value);
            continue;
        }
        uint64_t cum = 0;
        for (size_t k = 0; k <= f->n_buckets; k++) {
            char le[40];
            cum += s->counts[k];
            format_number(le, sizeof le, k < f->n_buckets ? f->buckets[k] : INFINITY);
            put_sample(b, f->name, "_bucket", s, le, (double)cum);
        }
        put_sample(b, f->name, "_sum", s, NULL, s->sum);
        put_sample(b, f->name, "_count", s, NULL, (double)s->count);
    }
}

/* Resident and virtual size from /proc/self/statm; -1 when unreadable. */
static int read_statm(double *rss, double *vsize)
{
    FILE *fp = fopen("/proc/self/statm", "r");
    if (!fp)
        return -1;
    unsigned long pages = 0, resident = 0;
    int n = fscanf(fp, "%lu %lu", &pages, &resident);
    fclose(fp);
    if (n != 2)
        return -1;
    double page = (double)sysconf(_SC_PAGESIZE);
    *vsize = (double)pages * page;
    *rss = (double)resident * page;
    return 0;
}

static int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static void render_process(buf *b, const mcp_metrics *m)
{
    put_header(b, "mcp_build_info", "The agent's version; always 1.", "gauge");
    puts_(b, "mcp_build_info{version=\"");
    put_escaped(b, m->version, 1);
    puts_(b, "\"} 1\n");

    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        put_header(b, "process_cpu_seconds_total",
                   "Total user and system CPU time spent in seconds.", "counter");
        put_sample(b, "process_cpu_seconds_total", "", NULL, NULL, cpu);
    }
    double rss, vsize;
    if (read_statm(&rss, &vsize) == 0) {
        put_header(b, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge");
        put_sample(b, "process_resident_memory_bytes", "", NULL, NULL, rss);
        put_header(b, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge");
        put_sample(b, "process_virtual_memory_bytes", "", NULL, NULL, vsize);
    }
    int fds = count_open_fds();
    if (fds >= 0) {
        put_header(b, "process_open_fds", "Number of open file descriptors.", "gauge");
        put_sample(b, "process_open_fds", "", NULL, NULL, fds);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        put_header(b, "process_max_fds", "Maximum number of open file descriptors.", "gauge");
        put_sample(b, "process_max_fds", "", NULL, NULL, (double)rl.rlim_cur);
    }
}

char *mcp_metrics_render(mcp_metrics *m, size_t *len)
{
    buf b = {0};
    if (m->last_len && (b.p = malloc(m->last_len + 4096)))
        b.cap = m->last_len + 4096;
    for (size_t i = 0; i < m->n_families; i++)
        render_family(&b, m->families[i]);
    render_process(&b, m);
    if (b.failed || !b.p) {
        free(b.p);
        return NULL;
    }
    m->last_len = b.len;
    *len = b.len;
    return b.p;
}
