/*
 * himari/metrics.h: counters, gauges and histograms with labels, rendered in
 * the Prometheus text exposition format (version 0.0.4).
 *
 * Families are registered once at start-up; a family with labels hands out a
 * child per distinct label-value tuple. Hot paths resolve their children once
 * (hm_metrics_counter_child(...)) and then update a plain number: no lookup, no
 * lock, no allocation per record. The registry belongs to the loop thread.
 *
 * Naming follows Prometheus practice: himari_<service>_<what>_<unit>, counters
 * end in _total, durations are _seconds. Label values are escaped on output.
 */
#ifndef HIMARI_METRICS_H
#define HIMARI_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "himari/buf.h"
#include "himari/common.h"

#define HM_METRICS_MAX_LABELS 4

typedef struct hm_metrics hm_metrics;
typedef struct hm_metric_family hm_metric_family;

typedef struct hm_counter {
    double value;
} hm_counter;

typedef struct hm_gauge {
    double value;
} hm_gauge;

typedef struct hm_histogram {
    const double *bounds; /* the family's upper bounds, ascending (+Inf implicit) */
    size_t n_bounds;
    uint64_t *counts; /* n_bounds + 1 non-cumulative bucket counts */
    uint64_t count;
    double sum;
} hm_histogram;

/** @brief A new, empty registry. Free with hm_metrics_free(). */
hm_metrics *hm_metrics_new(void);
void hm_metrics_free(hm_metrics *m);

/**
 * @brief Register a family. labels is a comma-separated list of label names
 * ("result" or "topic,partition") or NULL for none. Names must be valid
 * Prometheus names; registering a name twice returns the existing family when
 * the kind and labels agree and aborts otherwise (a programming error).
 */
hm_metric_family *hm_metrics_counter(hm_metrics *m, const char *name, const char *help,
                                     const char *labels);
hm_metric_family *hm_metrics_gauge(hm_metrics *m, const char *name, const char *help,
                                   const char *labels);
/** bounds are upper bounds in ascending order, copied. */
hm_metric_family *hm_metrics_histogram(hm_metrics *m, const char *name, const char *help,
                                       const char *labels, const double *bounds, size_t n_bounds);

/**
 * @brief The child for the given label values (as many as the family has
 * labels; none for an unlabelled family). Created on first use; the pointer
 * stays valid until hm_metrics_free().
 */
hm_counter *hm_metrics_counter_child(hm_metric_family *f, ...);
hm_gauge *hm_metrics_gauge_child(hm_metric_family *f, ...);
hm_histogram *hm_metrics_histogram_child(hm_metric_family *f, ...);
/** Same, with the values as an array (for label values computed at run time). */
void *hm_metrics_child_v(hm_metric_family *f, const char *const *values, size_t n_values);

/** @brief Drop every child of a family (e.g. per-partition gauges on revoke). */
void hm_metrics_family_clear(hm_metric_family *f);

static inline void hm_counter_inc(hm_counter *c) {
    c->value += 1.0;
}
static inline void hm_counter_add(hm_counter *c, double v) {
    c->value += v;
}
static inline void hm_gauge_set(hm_gauge *g, double v) {
    g->value = v;
}
static inline void hm_gauge_add(hm_gauge *g, double v) {
    g->value += v;
}
void hm_histogram_observe(hm_histogram *h, double v);

/**
 * @brief Called at the start of every render, so gauges that mirror other state
 * (lag, state size) are fresh when scraped. At most 8 per registry.
 */
typedef void (*hm_metrics_collect_cb)(hm_metrics *m, void *ud);
void hm_metrics_on_collect(hm_metrics *m, hm_metrics_collect_cb cb, void *ud);
/** @brief Unregister a collect callback (the same cb and ud); no-op if absent. */
void hm_metrics_remove_collect(hm_metrics *m, hm_metrics_collect_cb cb, void *ud);

/** @brief Append the exposition text of every family to out. */
void hm_metrics_render(hm_metrics *m, hm_buf *out);

/** Bucket bounds in seconds from 50 us to 10 s, for latencies. */
extern const double hm_latency_buckets[];
extern const size_t hm_latency_buckets_n;

#endif
