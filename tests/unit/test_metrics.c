/*
 * test_metrics.c: unit tests for common/src/metrics.c, the registry behind
 * every service's /metrics.
 *
 * Expositions are compared as whole strings, so a stray space or a reordered
 * line fails. One test also hands a realistic registry's output to promtool
 * (the Prometheus project's own checker, /usr/bin/promtool), which parses it
 * and lints the names. Programming errors (bad names) must abort: those tests
 * run the call in a forked child and expect SIGABRT.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "himari/metrics.h"

/* Renders m and compares the whole exposition with want. */
static void assert_renders(hm_metrics *m, const char *want) {
    hm_buf out = HM_BUF_INIT;
    hm_metrics_render(m, &out);
    if (strcmp(out.data ? out.data : "", want) != 0)
        fail_msg("exposition differs.\n--- got:\n%s--- want:\n%s", out.data ? out.data : "", want);
    hm_buf_free(&out);
}

/* ---- exposition ---------------------------------------------------------- */

static void test_small_registry_renders_exact_exposition(void **state) {
    (void)state;
    hm_metrics *m = hm_metrics_new();
    hm_metric_family *rec =
        hm_metrics_counter(m, "himari_test_records_total", "Records seen, by result.", "result");
    hm_counter *ok = hm_metrics_counter_child(rec, "ok");
    hm_counter_add(ok, 41);
    hm_counter_inc(ok);
    hm_counter_inc(hm_metrics_counter_child(rec, "bad"));

    hm_metric_family *lag = hm_metrics_gauge(m, "himari_test_lag_records", "Consumer lag.", NULL);
    hm_gauge_set(hm_metrics_gauge_child(lag), -3.5);

    const double bounds[] = {0.005, 0.1, 1};
    hm_metric_family *lat =
        hm_metrics_histogram(m, "himari_test_latency_seconds", "Latency.", "stage", bounds, 3);
    hm_histogram *h = hm_metrics_histogram_child(lat, "parse");
    /* Powers of two, so the sum is exact: 2^-10 + 2^-8 + 2^-4 + 0.5 + 3. */
    hm_histogram_observe(h, 0.0009765625);
    hm_histogram_observe(h, 0.00390625);
    hm_histogram_observe(h, 0.0625);
    hm_histogram_observe(h, 0.5);
    hm_histogram_observe(h, 3);

    assert_renders(m, "# HELP himari_test_records_total Records seen, by result.\n"
                      "# TYPE himari_test_records_total counter\n"
                      "himari_test_records_total{result=\"ok\"} 42\n"
                      "himari_test_records_total{result=\"bad\"} 1\n"
                      "# HELP himari_test_lag_records Consumer lag.\n"
                      "# TYPE himari_test_lag_records gauge\n"
                      "himari_test_lag_records -3.5\n"
                      "# HELP himari_test_latency_seconds Latency.\n"
                      "# TYPE himari_test_latency_seconds histogram\n"
                      "himari_test_latency_seconds_bucket{stage=\"parse\",le=\"0.005\"} 2\n"
                      "himari_test_latency_seconds_bucket{stage=\"parse\",le=\"0.1\"} 3\n"
                      "himari_test_latency_seconds_bucket{stage=\"parse\",le=\"1\"} 4\n"
                      "himari_test_latency_seconds_bucket{stage=\"parse\",le=\"+Inf\"} 5\n"
                      "himari_test_latency_seconds_sum{stage=\"parse\"} 3.5673828125\n"
                      "himari_test_latency_seconds_count{stage=\"parse\"} 5\n");
    hm_metrics_free(m);
}

static void test_multiple_labels_render_in_declared_order(void **state) {
    (void)state;
    hm_metrics *m = hm_metrics_new();
    hm_metric_family *f =
        hm_metrics_gauge(m, "himari_test_offset", "Committed offset.", "topic, partition");
    hm_gauge_set(hm_metrics_gauge_child(f, "raw_market_data", "3"), 1234567);
    assert_renders(m, "# HELP himari_test_offset Committed offset.\n"
                      "# TYPE himari_test_offset gauge\n"
                      "himari_test_offset{topic=\"raw_market_data\",partition=\"3\"} 1234567\n");
    hm_metrics_free(m);
}

static void test_untouched_unlabelled_families_show_zero_and_labelled_show_nothing(void **state) {
    (void)state;
    hm_metrics *m = hm_metrics_new();
    hm_metrics_counter(m, "himari_test_restarts_total", "Restarts.", NULL);
    hm_metrics_gauge(m, "himari_test_up", "Up.", "");
    const double b[] = {0.5, 1};
    hm_metrics_histogram(m, "himari_test_wait_seconds", "Wait.", NULL, b, 2);
    hm_metrics_counter(m, "himari_test_errors_total", "Errors by kind.", "kind");
    assert_renders(m, "# HELP himari_test_restarts_total Restarts.\n"
                      "# TYPE himari_test_restarts_total counter\n"
                      "himari_test_restarts_total 0\n"
                      "# HELP himari_test_up Up.\n"
                      "# TYPE himari_test_up gauge\n"
                      "himari_test_up 0\n"
                      "# HELP himari_test_wait_seconds Wait.\n"
                      "# TYPE himari_test_wait_seconds histogram\n"
                      "himari_test_wait_seconds_bucket{le=\"0.5\"} 0\n"
                      "himari_test_wait_seconds_bucket{le=\"1\"} 0\n"
                      "himari_test_wait_seconds_bucket{le=\"+Inf\"} 0\n"
                      "himari_test_wait_seconds_sum 0\n"
                      "himari_test_wait_seconds_count 0\n"
                      "# HELP himari_test_errors_total Errors by kind.\n"
                      "# TYPE himari_test_errors_total counter\n");
    hm_metrics_free(m);
}

static void test_label_values_and_help_are_escaped(void **state) {
    (void)state;
    hm_metrics *m = hm_metrics_new();
    hm_metric_family *f =
        hm_metrics_counter(m, "himari_test_seen_total", "Path C:\\x\nsecond \"line\"", "v");
    hm_counter_inc(hm_metrics_counter_child(f, "a\\b\"c\nd"));
    hm_counter_inc(hm_metrics_counter_child(f, "caf\xc3\xa9 \xff!"));
    assert_renders(m, "# HELP himari_test_seen_total Path C:\\\\x\\nsecond \"line\"\n"
                      "# TYPE himari_test_seen_total counter\n"
                      "himari_test_seen_total{v=\"a\\\\b\\\"c\\nd\"} 1\n"
                      "himari_test_seen_total{v=\"caf\xc3\xa9 \xef\xbf\xbd!\"} 1\n");
    hm_metrics_free(m);
}

static void test_values_integral_plain_else_exact_and_non_finite_named(void **state) {
    (void)state;
    hm_metrics *m = hm_metrics_new();
    hm_metric_family *f = hm_metrics_gauge(m, "himari_test_value", "V.", "case");
    hm_gauge_set(hm_metrics_gauge_child(f, "tenth"), 0.1);
    hm_gauge_set(hm_metrics_gauge_child(f, "big_int"), 9007199254740991.0); /* 2^53 - 1 */
    hm_gauge_set(hm_metrics_gauge_child(f, "huge"), 1e20);
    hm_gauge_set(hm_metrics_gauge_child(f, "neg_zero"), -0.0);
    hm_gauge_set(hm_metrics_gauge_child(f, "nan"), NAN);
    hm_gauge_set(hm_metrics_gauge_child(f, "pinf"), INFINITY);
    hm_gauge_set(hm_metrics_gauge_child(f, "ninf"), -INFINITY);
    hm_gauge_set(hm_metrics_gauge_child(f, "third"), 1.0 / 3.0);
    assert_renders(m, "# HELP himari_test_value V.\n"
                      "# TYPE himari_test_value gauge\n"
                      "himari_test_value{case=\"tenth\"} 0.1\n"
                      "himari_test_value{case=\"big_int\"} 9007199254740991\n"
                      "himari_test_value{case=\"huge\"} 1e+20\n"
                      "himari_test_value{case=\"neg_zero\"} 0\n"
                      "himari_test_value{case=\"nan\"} NaN\n"
                      "himari_test_value{case=\"pinf\"} +Inf\n"
                      "himari_test_value{case=\"ninf\"} -Inf\n"
                      "himari_test_value{case=\"third\"} 0.3333333333333333\n");
    hm_metrics_free(m);
}

static void test_bucket_bounds_are_written_like_prometheus(void **state) {
    (void)state;
    hm_metrics *m = hm_metrics_new();
    hm_metrics_histogram(m, "himari_test_latency_seconds", "L.", NULL, hm_latency_buckets,
                         hm_latency_buckets_n);
    const double odd[] = {-1.5, 0, 2.5e-7, 0.3, 123456, 1e6};
    hm_metrics_histogram(m, "himari_test_odd", "O.", NULL, odd, HM_ARRAY_LEN(odd));
    hm_buf out = HM_BUF_INIT;
    hm_metrics_render(m, &out);
    const char *want_le[] = {"5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                             "0.01",  "0.025",  "0.05",    "0.1",    "0.25",  "0.5",    "1",
                             "2.5",   "5",      "10",      "+Inf",   "-1.5",  "0",      "2.5e-07",
                             "0.3",   "123456", "1e+06",   "+Inf"};
    const char *p = out.data;
    for (size_t i = 0; i < HM_ARRAY_LEN(want_le); i++) {
        p = strstr(p, "le=\"");
        assert_non_null(p);
        p += 4;
        size_t n = strcspn(p, "\"");
        if (strlen(want_le[i]) != n || memcmp(p, want_le[i], n) != 0)
            fail_msg("bound %zu: got le=\"%.*s\", want \"%s\"", i, (int)n, p, want_le[i]);
    }
    assert_null(strstr(p, "le=\""));
    assert_int_equal(hm_latency_buckets_n, 17);
    hm_buf_free(&out);
    hm_metrics_free(m);
}

/* ---- histograms ---------------------------------------------------------- */

static void test_observe_puts_values_on_a_bound_into_that_bucket(void **state) {
    (void)state;
    hm_metrics *m = hm_metrics_new();
    const double b[] = {1, 2, 5};
    hm_metric_family *f = hm_metrics_histogram(m, "himari_test_h", "H.", NULL, b, 3);
    hm_histogram *h = hm_metrics_histogram_child(f);
    assert_int_equal(h->n_bounds, 3);
    assert_true(h->bounds[2] == 5);
    const double vs[] = {-10, 1, 1.0000001, 2, 4.9, 5, 5.1, 1e300, NAN, INFINITY};
    for (size_t i = 0; i < HM_ARRAY_LEN(vs); i++)
        hm_histogram_observe(h, vs[i]);
    /* le=1: -10, 1 | le=2: 1.0000001, 2 | le=5: 4.9, 5 | +Inf: 5.1, 1e300, NaN, Inf */
    assert_int_equal(h->counts[0], 2);
    assert_int_equal(h->counts[1], 2);
    assert_int_equal(h->counts[2], 2);
    assert_int_equal(h->counts[3], 4);
    assert_int_equal(h->count, 10);
    assert_true(isnan(h->sum));
    hm_metrics_free(m);
}

static void test_observe_matches_a_linear_scan_on_latency_buckets(void **state) {
    (void)state;
    hm_metrics *m = hm_metrics_new();
    hm_metric_family *f = hm_metrics_histogram(m, "himari_test_lat_seconds", "L.", NULL,
                                               hm_latency_buckets, hm_latency_buckets_n);
    hm_histogram *h = hm_metrics_histogram_child(f);
    uint64_t want[32] = {0};
    double v = 1e-6;
    for (int i = 0; i < 400; i++, v *= 1.05) {
        size_t k = 0;
        while (k < hm_latency_buckets_n && !(v <= hm_latency_buckets[k]))
            k++;
        want[k]++;
        hm_histogram_observe(h, v);
        for (size_t j = 0; j < hm_latency_buckets_n; j++) { /* exact bounds too */
            if (i == 0) {
                want[j]++;
                hm_histogram_observe(h, hm_latency_buckets[j]);
            }
        }
    }
    assert_memory_equal(h->counts, want, (hm_latency_buckets_n + 1) * sizeof(uint64_t));
    assert_int_equal(h->count, 400 + hm_latency_buckets_n);
    hm_metrics_free(m);
}

/* ---- registry behaviour -------------------------------------------------- */

static int collect_calls;

static void collect_lag(hm_metrics *m, void *ud) {
    (void)m;
    collect_calls++;
    hm_gauge_set(ud, 100.0 + collect_calls);
}

static void collect_second(hm_metrics *m, void *ud) {
    (void)m;
    /* Runs after collect_lag: it sees the first callback's effect. */
    hm_gauge *lag = ud;
    assert_true(lag->value == 100.0 + collect_calls);
    collect_calls += 10;
}

static void test_collect_callbacks_run_before_rendering_in_order(void **state) {
    (void)state;
    collect_calls = 0;
    hm_metrics *m = hm_metrics_new();
    hm_metric_family *f = hm_metrics_gauge(m, "himari_test_lag", "Lag.", NULL);
    hm_gauge *g = hm_metrics_gauge_child(f);
    hm_metrics_on_collect(m, collect_lag, g);
    hm_metrics_on_collect(m, collect_second, g);
    assert_renders(m, "# HELP himari_test_lag Lag.\n"
                      "# TYPE himari_test_lag gauge\n"
                      "himari_test_lag 101\n");
    assert_int_equal(collect_calls, 11);
    assert_renders(m, "# HELP himari_test_lag Lag.\n"
                      "# TYPE himari_test_lag gauge\n"
                      "himari_test_lag 112\n");
    assert_int_equal(collect_calls, 22);
    hm_metrics_free(m);
}

static void test_family_clear_drops_children_and_new_ones_start_at_zero(void **state) {
    (void)state;
    hm_metrics *m = hm_metrics_new();
    hm_metric_family *f = hm_metrics_gauge(m, "himari_test_partition_lag", "Lag.", "partition");
    hm_gauge_set(hm_metrics_gauge_child(f, "0"), 5);
    hm_gauge_set(hm_metrics_gauge_child(f, "1"), 6);
    hm_metrics_family_clear(f);
    assert_renders(m, "# HELP himari_test_partition_lag Lag.\n"
                      "# TYPE himari_test_partition_lag gauge\n");
    hm_gauge *g = hm_metrics_gauge_child(f, "1");
    assert_true(g->value == 0);
    hm_gauge_add(g, 2);
    assert_renders(m, "# HELP himari_test_partition_lag Lag.\n"
                      "# TYPE himari_test_partition_lag gauge\n"
                      "himari_test_partition_lag{partition=\"1\"} 2\n");
    hm_metrics_family_clear(f);
    hm_metrics_family_clear(f); /* clearing an empty family is fine */
    hm_metrics_free(m);
}

static void test_registering_a_family_twice_returns_the_same_family(void **state) {
    (void)state;
    hm_metrics *m = hm_metrics_new();
    hm_metric_family *a = hm_metrics_counter(m, "himari_test_x_total", "X.", "result");
    hm_counter_inc(hm_metrics_counter_child(a, "ok"));
    hm_metric_family *b = hm_metrics_counter(m, "himari_test_x_total", "X again.", "result");
    assert_ptr_equal(a, b);
    hm_metric_family *h1 =
        hm_metrics_histogram(m, "himari_test_y_seconds", "Y.", NULL, hm_latency_buckets, 5);
    hm_metric_family *h2 =
        hm_metrics_histogram(m, "himari_test_y_seconds", "Y.", NULL, hm_latency_buckets, 5);
    assert_ptr_equal(h1, h2);
    assert_renders(m, "# HELP himari_test_x_total X.\n"
                      "# TYPE himari_test_x_total counter\n"
                      "himari_test_x_total{result=\"ok\"} 1\n"
                      "# HELP himari_test_y_seconds Y.\n"
                      "# TYPE himari_test_y_seconds histogram\n"
                      "himari_test_y_seconds_bucket{le=\"5e-05\"} 0\n"
                      "himari_test_y_seconds_bucket{le=\"0.0001\"} 0\n"
                      "himari_test_y_seconds_bucket{le=\"0.00025\"} 0\n"
                      "himari_test_y_seconds_bucket{le=\"0.0005\"} 0\n"
                      "himari_test_y_seconds_bucket{le=\"0.001\"} 0\n"
                      "himari_test_y_seconds_bucket{le=\"+Inf\"} 0\n"
                      "himari_test_y_seconds_sum 0\n"
                      "himari_test_y_seconds_count 0\n");
    hm_metrics_free(m);
}

static void test_same_label_values_give_the_same_stable_child(void **state) {
    (void)state;
    hm_metrics *m = hm_metrics_new();
    hm_metric_family *f = hm_metrics_counter(m, "himari_test_by_symbol_total", "S.", "a,b");
    hm_counter *first = hm_metrics_counter_child(f, "BTC", "0");
    hm_counter_inc(first);
    /* Many more children must not move the first one. */
    char sym[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(sym, sizeof(sym), "SYM%d", i);
        hm_counter_inc(hm_metrics_counter_child(f, sym, "0"));
    }
    const char *vals[] = {"BTC", "0"};
    assert_ptr_equal(hm_metrics_child_v(f, vals, 2), first);
    assert_ptr_equal(hm_metrics_counter_child(f, "BTC", "0"), first);
    assert_ptr_not_equal(hm_metrics_counter_child(f, "BTC", "1"), first);
    assert_ptr_not_equal(hm_metrics_counter_child(f, "0", "BTC"), first);
    hm_counter_inc(first);
    assert_true(first->value == 2);
    hm_metrics_free(m);
}

/* Runs fn in a child process and asserts it aborts (hm_panic). */
static void assert_aborts(void (*fn)(void)) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 2); /* the panic message is expected */
        fn();
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void reg_bad_metric_name(void) {
    hm_metrics_counter(hm_metrics_new(), "1himari_total", "x", NULL);
}
static void reg_metric_name_with_dash(void) {
    hm_metrics_gauge(hm_metrics_new(), "himari-lag", "x", NULL);
}
static void reg_bad_label_name(void) {
    hm_metrics_counter(hm_metrics_new(), "himari_x_total", "x", "ok,bad:label");
}
static void reg_reserved_label_name(void) {
    hm_metrics_counter(hm_metrics_new(), "himari_x_total", "x", "__name");
}
static void reg_le_on_histogram(void) {
    hm_metrics_histogram(hm_metrics_new(), "himari_h", "x", "le", hm_latency_buckets, 3);
}
static void reg_too_many_labels(void) {
    hm_metrics_counter(hm_metrics_new(), "himari_x_total", "x", "a,b,c,d,e");
}
static void reg_twice_with_other_labels(void) {
    hm_metrics *m = hm_metrics_new();
    hm_metrics_counter(m, "himari_x_total", "x", "a");
    hm_metrics_counter(m, "himari_x_total", "x", "b");
}
static void reg_twice_with_other_kind(void) {
    hm_metrics *m = hm_metrics_new();
    hm_metrics_counter(m, "himari_x", "x", NULL);
    hm_metrics_gauge(m, "himari_x", "x", NULL);
}
static void reg_descending_bounds(void) {
    const double b[] = {1, 0.5};
    hm_metrics_histogram(hm_metrics_new(), "himari_h", "x", NULL, b, 2);
}
static void child_wrong_kind(void) {
    hm_metric_family *f = hm_metrics_counter(hm_metrics_new(), "himari_x_total", "x", NULL);
    hm_metrics_gauge_child(f);
}
static void child_wrong_value_count(void) {
    hm_metric_family *f = hm_metrics_counter(hm_metrics_new(), "himari_x_total", "x", "a,b");
    const char *v[] = {"only one"};
    hm_metrics_child_v(f, v, 1);
}

static void test_programming_errors_abort(void **state) {
    (void)state;
    /* Valid edge cases first, so the aborts below are about what they name. */
    hm_metrics *m = hm_metrics_new();
    hm_metrics_counter(m, "_:himari:x_total", "x", "_a,B9");
    hm_metrics_free(m);

    assert_aborts(reg_bad_metric_name);
    assert_aborts(reg_metric_name_with_dash);
    assert_aborts(reg_bad_label_name);
    assert_aborts(reg_reserved_label_name);
    assert_aborts(reg_le_on_histogram);
    assert_aborts(reg_too_many_labels);
    assert_aborts(reg_twice_with_other_labels);
    assert_aborts(reg_twice_with_other_kind);
    assert_aborts(reg_descending_bounds);
    assert_aborts(child_wrong_kind);
    assert_aborts(child_wrong_value_count);
}

/* ---- promtool ------------------------------------------------------------ */

static void test_realistic_registry_passes_promtool_check_metrics(void **state) {
    (void)state;
    if (access("/usr/bin/promtool", X_OK) != 0) fail_msg("promtool not installed");
    hm_metrics *m = hm_metrics_new();
    hm_metric_family *rec = hm_metrics_counter(m, "himari_validator_records_total",
                                               "Records validated, by result.", "result");
    hm_counter_add(hm_metrics_counter_child(rec, "ok"), 1234567);
    hm_counter_add(hm_metrics_counter_child(rec, "invalid"), 89);
    hm_counter_add(hm_metrics_counter_child(rec, "late \"quoted\"\n\\"), 1);
    hm_metric_family *bytes =
        hm_metrics_counter(m, "himari_validator_consumed_bytes_total", "Bytes read.", NULL);
    hm_counter_add(hm_metrics_counter_child(bytes), 9.5e12);
    hm_metrics_counter(m, "himari_validator_restarts_total", "Restarts since boot.", NULL);
    hm_metric_family *lag =
        hm_metrics_gauge(m, "himari_validator_consumer_lag_records",
                         "Records behind the high watermark.", "topic,partition");
    for (int p = 0; p < 12; p++) {
        char part[16];
        snprintf(part, sizeof(part), "%d", p);
        hm_gauge_set(hm_metrics_gauge_child(lag, "raw_market_data", part), p * 10);
    }
    hm_metric_family *up = hm_metrics_gauge(m, "himari_validator_kafka_connected",
                                            "1 when the broker connection is up.", NULL);
    hm_gauge_set(hm_metrics_gauge_child(up), NAN);
    hm_metric_family *lat =
        hm_metrics_histogram(m, "himari_validator_process_seconds",
                             "Time from poll to produce, per record.\nSecond line \\ ok.", "stage",
                             hm_latency_buckets, hm_latency_buckets_n);
    hm_histogram *parse = hm_metrics_histogram_child(lat, "parse");
    hm_histogram *check = hm_metrics_histogram_child(lat, "check");
    for (int i = 0; i < 1000; i++) {
        hm_histogram_observe(parse, i * 1e-5);
        hm_histogram_observe(check, i * 0.013);
    }
    hm_metrics_histogram(m, "himari_validator_commit_seconds", "Offset commit time.", NULL,
                         hm_latency_buckets, hm_latency_buckets_n);
    hm_metrics_gauge(m, "himari_validator_partition_state_bytes", "State size.", "partition");

    hm_buf out = HM_BUF_INIT;
    hm_metrics_render(m, &out);
    char path[] = "/tmp/himari_test_metrics_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, out.data, out.len), (ssize_t)out.len);
    close(fd);

    /* promtool exits non-zero on a parse error and on any lint problem. */
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < %s", path);
    int rc = system(cmd);
    unlink(path);
    if (rc != 0) fail_msg("promtool rejected the exposition (status %d):\n%s", rc, out.data);
    hm_buf_free(&out);
    hm_metrics_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_registry_renders_exact_exposition),
        cmocka_unit_test(test_multiple_labels_render_in_declared_order),
        cmocka_unit_test(test_untouched_unlabelled_families_show_zero_and_labelled_show_nothing),
        cmocka_unit_test(test_label_values_and_help_are_escaped),
        cmocka_unit_test(test_values_integral_plain_else_exact_and_non_finite_named),
        cmocka_unit_test(test_bucket_bounds_are_written_like_prometheus),
        cmocka_unit_test(test_observe_puts_values_on_a_bound_into_that_bucket),
        cmocka_unit_test(test_observe_matches_a_linear_scan_on_latency_buckets),
        cmocka_unit_test(test_collect_callbacks_run_before_rendering_in_order),
        cmocka_unit_test(test_family_clear_drops_children_and_new_ones_start_at_zero),
        cmocka_unit_test(test_registering_a_family_twice_returns_the_same_family),
        cmocka_unit_test(test_same_label_values_give_the_same_stable_child),
        cmocka_unit_test(test_programming_errors_abort),
        cmocka_unit_test(test_realistic_registry_passes_promtool_check_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
