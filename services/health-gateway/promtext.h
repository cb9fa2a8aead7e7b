/*
 * promtext.h: reading samples out of a Prometheus text exposition (a service's /metrics),
 * enough for the figures the gateway shows: the validator's quality per exchange.
 */
#ifndef HG_PROMTEXT_H
#define HG_PROMTEXT_H

#include <stdbool.h>
#include <stddef.h>

/** One sample: name and the text between its braces ("" when none), not NUL-terminated. */
typedef void (*hg_sample_fn)(void *ud, const char *name, size_t name_len, const char *labels,
                             size_t labels_len, double value);

/** @brief Call fn for every well-formed sample line; comments and bad lines are skipped. */
void hg_promtext_scan(const char *text, size_t len, hg_sample_fn fn, void *ud);

/**
 * @brief The value of label key in labels (as hg_sample_fn gets them), unescaped into
 * out (NUL-terminated). @return false when absent or longer than out.
 */
bool hg_promtext_label(const char *labels, size_t len, const char *key, char *out, size_t out_size);

#endif
