/*
 * metrics.c: the metrics registry and its Prometheus text exposition (0.0.4).
 *
 * Every service registers its families at start-up, resolves the children its
 * hot paths need, and serves hm_metrics_render() on /metrics. A family is a
 * name, a kind, label names and a list of children in creation order; each
 * child is allocated on its own so the pointers handed out never move. Lookups
 * are a linear scan, which is fine because they happen at set-up (or when a
 * partition is assigned), never per record. The registry belongs to the loop
 * thread: no locks. Rendering must never allocate per sample beyond the output
 * buffer; a bad metric or label name is a programming error and aborts.
 */
#include "himari/metrics.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HM_METRICS_MAX_COLLECT 8

typedef enum hm_metric_kind { HM_MK_COUNTER, HM_MK_GAUGE, HM_MK_HISTOGRAM } hm_metric_kind;

static const char *const kind_names[] = {"counter", "gauge", "histogram"};

typedef struct hm_metric_child {
    struct hm_metric_child *next;
    char *values[HM_METRICS_MAX_LABELS];
    union {
        hm_counter counter;
        hm_gauge gauge;
        hm_histogram histogram;
    } m;
} hm_metric_child;

struct hm_metric_family {
    struct hm_metric_family *next;
    char *name;
    char *help;
    hm_metric_kind kind;
    size_t n_labels;
    char *labels[HM_METRICS_MAX_LABELS];
    double *bounds; /* histograms: ascending, finite */
    char **le;      /* histograms: each bound as Prometheus writes it, computed once */
    size_t n_bounds;
    hm_metric_child *children, *last_child;
};

struct hm_metrics {
    hm_metric_family *families, *last_family;
    struct {
        hm_metrics_collect_cb cb;
        void *ud;
    } collect[HM_METRICS_MAX_COLLECT];
    size_t n_collect;
};

const double hm_latency_buckets[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                     0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                     0.5,     1,      2.5,     5,      10};
const size_t hm_latency_buckets_n = HM_ARRAY_LEN(hm_latency_buckets);

/* ---- names ---------------------------------------------------------------- */

static bool name_char_ok(char c, bool first, bool colon_ok) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
    if (colon_ok && c == ':') return true;
    return !first && c >= '0' && c <= '9';
}

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names: [a-zA-Z_][a-zA-Z0-9_]*. */
static bool name_valid(const char *s, size_t n, bool colon_ok) {
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        if (!name_char_ok(s[i], i == 0, colon_ok)) return false;
    }
    return true;
}

/* "topic, partition" -> labels[]; NULL or "" is none; aborts on a bad or duplicate name. */
static size_t parse_labels(const char *metric, const char *list, hm_metric_kind kind,
                           char *labels[HM_METRICS_MAX_LABELS]) {
    size_t n = 0;
    if (!list || list[strspn(list, " ")] == '\0') return 0;
    for (const char *p = list;;) {
        p += strspn(p, " ");
        size_t len = strcspn(p, ", ");
        const char *name = p;
        p += len;
        p += strspn(p, " ");
        if (!name_valid(name, len, false) || (len >= 2 && name[0] == '_' && name[1] == '_'))
            hm_panic("metric %s: invalid label name in \"%s\"", metric, list);
        if (kind == HM_MK_HISTOGRAM && len == 2 && memcmp(name, "le", 2) == 0)
            hm_panic("metric %s: label \"le\" is reserved for histogram buckets", metric);
        if (n == HM_METRICS_MAX_LABELS)
            hm_panic("metric %s: more than %d labels in \"%s\"", metric, HM_METRICS_MAX_LABELS,
                     list);
        for (size_t i = 0; i < n; i++) {
            if (strlen(labels[i]) == len && memcmp(labels[i], name, len) == 0)
                hm_panic("metric %s: label %.*s listed twice", metric, (int)len, name);
        }
        labels[n++] = hm_xstrndup(name, len);
        if (*p == '\0') return n;
        if (*p != ',') hm_panic("metric %s: invalid label list \"%s\"", metric, list);
        p++;
    }
}

/* ---- numbers ------------------------------------------------------------- */

/*
 * A bucket bound the way Prometheus clients write it (Go's
 * strconv.FormatFloat(v, 'g', -1, 64)): the fewest significant digits that
 * read back exactly, plain decimal when the exponent is in [-4, 6), else
 * d.ddde±XX. So 0.005 -> "0.005", 1 -> "1", 10 -> "10", 0.00005 -> "5e-05".
 */
static char *format_le(double v) {
    char tmp[40];
    int digits = 1;
    for (; digits < 17; digits++) {
        snprintf(tmp, sizeof(tmp), "%.*e", digits - 1, v);
        if (strtod(tmp, NULL) == v) break;
    }
    snprintf(tmp, sizeof(tmp), "%.*e", digits - 1, v);
    int exp10 = atoi(strchr(tmp, 'e') + 1);
    if (exp10 >= -4 && exp10 < 6) {
        int decimals = digits - 1 - exp10;
        snprintf(tmp, sizeof(tmp), "%.*f", decimals > 0 ? decimals : 0, v);
    }
    return hm_xstrdup(tmp);
}

/* Sample values: integers plainly, else the shortest exact decimal (hm_json_double). */
static void put_value(hm_buf *out, double v) {
    if (isnan(v)) {
        hm_buf_puts(out, "NaN");
    } else if (isinf(v)) {
        hm_buf_puts(out, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 9007199254740992.0 /* 2^53 */) {
        hm_buf_i64(out, (int64_t)v);
    } else {
        hm_json_double(out, v);
    }
}

/* ---- registry ------------------------------------------------------------ */

hm_metrics *hm_metrics_new(void) {
    return hm_xcalloc(1, sizeof(hm_metrics));
}

static void child_free(hm_metric_family *f, hm_metric_child *c) {
    for (size_t i = 0; i < f->n_labels; i++)
        free(c->values[i]);
    if (f->kind == HM_MK_HISTOGRAM) free(c->m.histogram.counts);
    free(c);
}

void hm_metrics_family_clear(hm_metric_family *f) {
    hm_metric_child *c = f->children;
    while (c) {
        hm_metric_child *next = c->next;
        child_free(f, c);
        c = next;
    }
    f->children = f->last_child = NULL;
}

void hm_metrics_free(hm_metrics *m) {
    if (!m) return;
    hm_metric_family *f = m->families;
    while (f) {
        hm_metric_family *next = f->next;
        hm_metrics_family_clear(f);
        for (size_t i = 0; i < f->n_labels; i++)
            free(f->labels[i]);
        for (size_t i = 0; f->le && i < f->n_bounds; i++)
            free(f->le[i]);
        free(f->le);
        free(f->bounds);
        free(f->name);
        free(f->help);
        free(f);
        f = next;
    }
    free(m);
}

static hm_metric_family *family_find(hm_metrics *m, const char *name) {
    for (hm_metric_family *f = m->families; f; f = f->next) {
        if (strcmp(f->name, name) == 0) return f;
    }
    return NULL;
}

/* An existing family must match in kind, labels and bounds, else two modules disagree. */
static void family_check_same(hm_metric_family *f, hm_metric_kind kind,
                              char *labels[HM_METRICS_MAX_LABELS], size_t n_labels,
                              const double *bounds, size_t n_bounds) {
    bool same = f->kind == kind && f->n_labels == n_labels;
    for (size_t i = 0; same && i < n_labels; i++)
        same = strcmp(f->labels[i], labels[i]) == 0;
    if (same && kind == HM_MK_HISTOGRAM) {
        same = f->n_bounds == n_bounds;
        for (size_t i = 0; same && i < n_bounds; i++)
            same = f->bounds[i] == bounds[i];
    }
    if (!same)
        hm_panic("metric %s registered twice with a different kind, labels or buckets", f->name);
}

static hm_metric_family *family_register(hm_metrics *m, hm_metric_kind kind, const char *name,
                                         const char *help, const char *labels, const double *bounds,
                                         size_t n_bounds) {
    assert(m != NULL && name != NULL);
    if (!name_valid(name, strlen(name), true)) hm_panic("invalid metric name \"%s\"", name);
    char *label_names[HM_METRICS_MAX_LABELS];
    size_t n_labels = parse_labels(name, labels, kind, label_names);

    hm_metric_family *f = family_find(m, name);
    if (f) {
        family_check_same(f, kind, label_names, n_labels, bounds, n_bounds);
        for (size_t i = 0; i < n_labels; i++)
            free(label_names[i]);
        return f;
    }

    f = hm_xcalloc(1, sizeof(*f));
    f->name = hm_xstrdup(name);
    f->help = hm_xstrdup(help ? help : "");
    f->kind = kind;
    f->n_labels = n_labels;
    memcpy(f->labels, label_names, n_labels * sizeof(label_names[0]));
    if (kind == HM_MK_HISTOGRAM) {
        for (size_t i = 0; i < n_bounds; i++) {
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
                hm_panic("metric %s: bucket bounds must be finite and strictly ascending", name);
        }
        f->n_bounds = n_bounds;
        f->bounds = hm_xmalloc(n_bounds * sizeof(double));
        if (n_bounds) memcpy(f->bounds, bounds, n_bounds * sizeof(double));
        f->le = hm_xcalloc(n_bounds, sizeof(char *));
        for (size_t i = 0; i < n_bounds; i++)
            f->le[i] = format_le(bounds[i]);
    }
    if (m->last_family)
        m->last_family->next = f;
    else
        m->families = f;
    m->last_family = f;
    return f;
}

hm_metric_family *hm_metrics_counter(hm_metrics *m, const char *name, const char *help,
                                     const char *labels) {
    return family_register(m, HM_MK_COUNTER, name, help, labels, NULL, 0);
}

hm_metric_family *hm_metrics_gauge(hm_metrics *m, const char *name, const char *help,
                                   const char *labels) {
    return family_register(m, HM_MK_GAUGE, name, help, labels, NULL, 0);
}

hm_metric_family *hm_metrics_histogram(hm_metrics *m, const char *name, const char *help,
                                       const char *labels, const double *bounds, size_t n_bounds) {
    assert(bounds != NULL || n_bounds == 0);
    return family_register(m, HM_MK_HISTOGRAM, name, help, labels, bounds, n_bounds);
}

/* ---- children ------------------------------------------------------------ */

void *hm_metrics_child_v(hm_metric_family *f, const char *const *values, size_t n_values) {
    assert(f != NULL);
    if (n_values != f->n_labels)
        hm_panic("metric %s: %zu label values given, %zu labels declared", f->name, n_values,
                 f->n_labels);
    for (size_t i = 0; i < n_values; i++) {
        if (!values[i]) hm_panic("metric %s: label %s is NULL", f->name, f->labels[i]);
    }
    hm_metric_child *c;
    for (c = f->children; c; c = c->next) {
        size_t i = 0;
        while (i < n_values && strcmp(c->values[i], values[i]) == 0)
            i++;
        if (i == n_values) return &c->m;
    }
    c = hm_xcalloc(1, sizeof(*c));
    for (size_t i = 0; i < n_values; i++)
        c->values[i] = hm_xstrdup(values[i]);
    if (f->kind == HM_MK_HISTOGRAM) {
        c->m.histogram.bounds = f->bounds;
        c->m.histogram.n_bounds = f->n_bounds;
        c->m.histogram.counts = hm_xcalloc(f->n_bounds + 1, sizeof(uint64_t));
    }
    if (f->last_child)
        f->last_child->next = c;
    else
        f->children = c;
    f->last_child = c;
    return &c->m;
}

/* Collects the family's label values from the variadic tail (all const char *). */
static void *child_va(hm_metric_family *f, hm_metric_kind kind, va_list ap) {
    assert(f != NULL);
    if (f->kind != kind)
        hm_panic("metric %s is a %s, asked for a %s child", f->name, kind_names[f->kind],
                 kind_names[kind]);
    const char *values[HM_METRICS_MAX_LABELS];
    for (size_t i = 0; i < f->n_labels; i++)
        values[i] = va_arg(ap, const char *);
    return hm_metrics_child_v(f, values, f->n_labels);
}

hm_counter *hm_metrics_counter_child(hm_metric_family *f, ...) {
    va_list ap;
    va_start(ap, f);
    void *c = child_va(f, HM_MK_COUNTER, ap);
    va_end(ap);
    return c;
}

hm_gauge *hm_metrics_gauge_child(hm_metric_family *f, ...) {
    va_list ap;
    va_start(ap, f);
    void *c = child_va(f, HM_MK_GAUGE, ap);
    va_end(ap);
    return c;
}

hm_histogram *hm_metrics_histogram_child(hm_metric_family *f, ...) {
    va_list ap;
    va_start(ap, f);
    void *c = child_va(f, HM_MK_HISTOGRAM, ap);
    va_end(ap);
    return c;
}

void hm_histogram_observe(hm_histogram *h, double v) {
    /* First bound with v <= bound; NaN compares false everywhere and lands in
     * +Inf, as in the Prometheus clients. */
    size_t lo = 0, hi = h->n_bounds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= h->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    h->counts[lo]++;
    h->count++;
    h->sum += v;
}

void hm_metrics_on_collect(hm_metrics *m, hm_metrics_collect_cb cb, void *ud) {
    assert(cb != NULL);
    if (m->n_collect == HM_METRICS_MAX_COLLECT)
        hm_panic("hm_metrics_on_collect: more than %d callbacks", HM_METRICS_MAX_COLLECT);
    m->collect[m->n_collect].cb = cb;
    m->collect[m->n_collect].ud = ud;
    m->n_collect++;
}

void hm_metrics_remove_collect(hm_metrics *m, hm_metrics_collect_cb cb, void *ud) {
    for (size_t i = 0; i < m->n_collect; i++) {
        if (m->collect[i].cb != cb || m->collect[i].ud != ud) continue;
        /* Keep registration order: the callbacks may depend on it. */
        memmove(&m->collect[i], &m->collect[i + 1], (m->n_collect - i - 1) * sizeof(m->collect[0]));
        m->n_collect--;
        return;
    }
}

/* ---- rendering ----------------------------------------------------------- */

/* HELP text escapes backslash and newline; label values also the double quote. */
static void put_escaped(hm_buf *out, const char *s, bool quote) {
    for (const char *run = s;; s++) {
        char c = *s;
        if (c != '\0' && c != '\\' && c != '\n' && !(quote && c == '"')) continue;
        hm_buf_append(out, run, (size_t)(s - run));
        if (c == '\0') return;
        hm_buf_putc(out, '\\');
        hm_buf_putc(out, c == '\n' ? 'n' : c);
        run = s + 1;
    }
}

/* A label value must be UTF-8 for Prometheus; stray bytes become U+FFFD. */
static void put_label_value(hm_buf *out, const char *s) {
    size_t n = strlen(s), bad;
    if (HM_LIKELY(hm_utf8_valid(s, n, &bad))) {
        put_escaped(out, s, true);
        return;
    }
    hm_buf tmp = HM_BUF_INIT;
    while (!hm_utf8_valid(s, n, &bad)) {
        hm_buf_append(&tmp, s, bad);
        hm_buf_append(&tmp, "\xEF\xBF\xBD", 3);
        s += bad + 1;
        n -= bad + 1;
    }
    hm_buf_append(&tmp, s, n);
    put_escaped(out, tmp.data, true);
    hm_buf_free(&tmp);
}

/* name[suffix]{l1="v1",...[,le="x"]} */
static void put_series(hm_buf *out, const hm_metric_family *f, const char *suffix,
                       const hm_metric_child *c, const char *le) {
    hm_buf_puts(out, f->name);
    if (suffix) hm_buf_puts(out, suffix);
    if (f->n_labels == 0 && !le) {
        hm_buf_putc(out, ' ');
        return;
    }
    hm_buf_putc(out, '{');
    for (size_t i = 0; i < f->n_labels; i++) {
        if (i) hm_buf_putc(out, ',');
        hm_buf_puts(out, f->labels[i]);
        hm_buf_append(out, "=\"", 2);
        put_label_value(out, c->values[i]);
        hm_buf_putc(out, '"');
    }
    if (le) {
        if (f->n_labels) hm_buf_putc(out, ',');
        hm_buf_append(out, "le=\"", 4);
        hm_buf_puts(out, le);
        hm_buf_putc(out, '"');
    }
    hm_buf_append(out, "} ", 2);
}

/* c == NULL renders the zero sample of an unlabelled family nobody touched yet. */
static void render_child(hm_buf *out, const hm_metric_family *f, const hm_metric_child *c) {
    switch (f->kind) {
        case HM_MK_COUNTER:
            put_series(out, f, NULL, c, NULL);
            put_value(out, c ? c->m.counter.value : 0);
            hm_buf_putc(out, '\n');
            break;
        case HM_MK_GAUGE:
            put_series(out, f, NULL, c, NULL);
            put_value(out, c ? c->m.gauge.value : 0);
            hm_buf_putc(out, '\n');
            break;
        case HM_MK_HISTOGRAM: {
            const hm_histogram *h = c ? &c->m.histogram : NULL;
            uint64_t cumulative = 0;
            for (size_t i = 0; i <= f->n_bounds; i++) {
                if (h) cumulative += h->counts[i];
                put_series(out, f, "_bucket", c, i < f->n_bounds ? f->le[i] : "+Inf");
                hm_buf_u64(out, cumulative);
                hm_buf_putc(out, '\n');
            }
            assert(!h || cumulative == h->count);
            put_series(out, f, "_sum", c, NULL);
            put_value(out, h ? h->sum : 0);
            hm_buf_putc(out, '\n');
            put_series(out, f, "_count", c, NULL);
            hm_buf_u64(out, h ? h->count : 0);
            hm_buf_putc(out, '\n');
            break;
        }
    }
}

void hm_metrics_render(hm_metrics *m, hm_buf *out) {
    for (size_t i = 0; i < m->n_collect; i++)
        m->collect[i].cb(m, m->collect[i].ud);
    for (const hm_metric_family *f = m->families; f; f = f->next) {
        hm_buf_append(out, "# HELP ", 7);
        hm_buf_puts(out, f->name);
        hm_buf_putc(out, ' ');
        put_escaped(out, f->help, false);
        hm_buf_append(out, "\n# TYPE ", 8);
        hm_buf_puts(out, f->name);
        hm_buf_putc(out, ' ');
        hm_buf_puts(out, kind_names[f->kind]);
        hm_buf_putc(out, '\n');
        if (f->children) {
            for (const hm_metric_child *c = f->children; c; c = c->next)
                render_child(out, f, c);
        } else if (f->n_labels == 0) {
            /* An unlabelled metric exists from registration: show its zero. */
            render_child(out, f, NULL);
        }
    }
}
