/* A metric registry (counters, gauges, histograms with label sets) and its
 * rendering in the Prometheus text exposition format 0.0.4. The agent keeps
 * the numbers as they change; a scrape only renders them, in O(series). */
#ifndef MCP_METRICS_H
#define MCP_METRICS_H

#include <stddef.h>

#include "mcp/error.h"

typedef enum mcp_metric_type {
    MCP_METRIC_COUNTER,
    MCP_METRIC_GAUGE,
    MCP_METRIC_HISTOGRAM,
} mcp_metric_type;

typedef struct mcp_metrics mcp_metrics;
typedef struct mcp_metric_family mcp_metric_family;

#define MCP_METRICS_MAX_LABELS 8
#define MCP_METRICS_MAX_BUCKETS 32
/* Series per family: a bound on memory when label values come from outside. */
#define MCP_METRICS_MAX_SERIES 100000

/* A registry whose renderings end with mcp_build_info{version} and the
 * process_* metrics of this process. NULL when out of memory. */
mcp_metrics *mcp_metrics_new(const char *version);
void mcp_metrics_free(mcp_metrics *m);

/* True when name is a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) /
 * label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__"). */
int mcp_metrics_valid_name(const char *name);
int mcp_metrics_valid_label(const char *name);

/* Defines a family. Defining an existing name again with the same type and
 * labels returns the existing family (a reloaded policy does that); any
 * other difference is an error. A counter's name must end in "_total".
 * buckets (histograms only; NULL = the default 5 ms .. 10 s) must be finite
 * and strictly increasing; +Inf is implied. NULL with err set on failure. */
mcp_metric_family *mcp_metrics_define(mcp_metrics *m, mcp_metric_type type, const char *name,
                                      const char *help, const char *const *labels, size_t n_labels,
                                      const double *buckets, size_t n_buckets, mcp_error *err);
mcp_metric_family *mcp_metrics_find(mcp_metrics *m, const char *name);
mcp_metric_type mcp_metrics_family_type(const mcp_metric_family *f);
size_t mcp_metrics_family_labels(const mcp_metric_family *f, const char *const **names);

/* Updates the series of the given label values (one per label, in the
 * family's order; any bytes). add: counters (delta >= 0) and gauges;
 * set: gauges; observe: histograms. -1 with err on misuse or when the
 * family has MCP_METRICS_MAX_SERIES series already. */
int mcp_metrics_add(mcp_metric_family *f, const char *const *values, double delta, mcp_error *err);
int mcp_metrics_set(mcp_metric_family *f, const char *const *values, double v, mcp_error *err);
int mcp_metrics_observe(mcp_metric_family *f, const char *const *values, double v, mcp_error *err);
/* Drops one series (a component that was removed). 1 dropped, 0 none. */
int mcp_metrics_remove(mcp_metric_family *f, const char *const *values);
/* The whole exposition, NUL-terminated, malloc'ed (the caller frees); its
 * length in *len. NULL when out of memory. */
char *mcp_metrics_render(mcp_metrics *m, size_t *len);

#endif
