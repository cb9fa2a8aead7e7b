// uses: services/health-gateway
/*
 * test_gateway.c: the health-gateway's pure parts: reading samples from a /metrics text,
 * Alertmanager's notifications into the table of firing alerts, and the configuration's
 * rules across keys (what an operator gets told when gateway.* is wrong).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "config.h"
#include "promtext.h"

/* ---- promtext ---------------------------------------------------------------------- */

typedef struct seen {
    char lines[8][160];
    int n;
} seen;

static void collect(void *ud, const char *name, size_t name_len, const char *labels,
                    size_t labels_len, double value) {
    seen *s = ud;
    if (s->n < 8)
        snprintf(s->lines[s->n++], sizeof(s->lines[0]), "%.*s|%.*s|%g", (int)name_len, name,
                 (int)labels_len, labels, value);
}

static void test_promtext_reads_samples_and_skips_comments_and_bad_lines(void **state) {
    static const char text[] =
        "# HELP himari_validator_quality_score Quality.\n"
        "# TYPE himari_validator_quality_score histogram\n"
        "himari_validator_quality_score_sum{exchange=\"binance\"} 99.5\n"
        "himari_validator_quality_score_count{exchange=\"a}b,c\\\"d\"} 100 1700000000000\n"
        "up 1\n"
        "broken{exchange=\"x\" 3\n"
        "novalue{a=\"b\"}\n"
        "9starts_with_digit 1\n"
        "nan_value NaN\n"
        "last_without_newline{x=\"y\"} -2.5e3";
    seen s = {0};
    hg_promtext_scan(text, sizeof(text) - 1, collect, &s);
    assert_int_equal(s.n, 5);
    assert_string_equal(s.lines[0], "himari_validator_quality_score_sum|exchange=\"binance\"|99.5");
    assert_string_equal(s.lines[1],
                        "himari_validator_quality_score_count|exchange=\"a}b,c\\\"d\"|100");
    assert_string_equal(s.lines[2], "up||1");
    assert_string_equal(s.lines[3], "nan_value||nan");
    assert_string_equal(s.lines[4], "last_without_newline|x=\"y\"|-2500");
}

static void test_promtext_label_unescapes_and_refuses_what_does_not_fit(void **state) {
    static const char labels[] = "service=\"ingest-validator\",exchange=\"a}b,c\\\"d\\\\e\\n\"";
    char out[32];
    assert_true(hg_promtext_label(labels, sizeof(labels) - 1, "exchange", out, sizeof(out)));
    assert_string_equal(out, "a}b,c\"d\\e\n");
    assert_true(hg_promtext_label(labels, sizeof(labels) - 1, "service", out, sizeof(out)));
    assert_string_equal(out, "ingest-validator");
    assert_false(hg_promtext_label(labels, sizeof(labels) - 1, "exch", out, sizeof(out)));
    assert_false(hg_promtext_label(labels, sizeof(labels) - 1, "service", out, 8));
    assert_false(hg_promtext_label("a=\"unterminated", 15, "a", out, sizeof(out)));
}

/* ---- alerts ------------------------------------------------------------------------- */

static const char k_firing[] =
    "{\"version\":\"4\",\"status\":\"firing\",\"receiver\":\"health-gateway\",\"alerts\":["
    "{\"status\":\"firing\",\"labels\":{\"alertname\":\"ServiceDown\",\"service\":\"archiver\","
    "\"severity\":\"critical\"},\"annotations\":{\"summary\":\"archiver is down\"},"
    "\"startsAt\":\"2026-12-03T17:00:00Z\",\"endsAt\":\"0001-01-01T00:00:00Z\","
    "\"fingerprint\":\"f1\"},"
    "{\"status\":\"firing\",\"labels\":{\"alertname\":\"DLQGrowing\"},\"annotations\":"
    "{\"description\":\"dead letters\"},\"startsAt\":\"2026-12-03T17:01:00Z\","
    "\"fingerprint\":\"f2\"}]}";

static void test_alerts_firing_are_added_updated_and_resolved_removed(void **state) {
    hg_alerts *a = calloc(1, sizeof(*a));
    char err[256];
    assert_int_equal(hg_alerts_apply(a, k_firing, strlen(k_firing), 1000, err, sizeof(err)), 0);
    assert_int_equal(a->n, 2);
    assert_string_equal(a->items[0].name, "ServiceDown");
    assert_string_equal(a->items[0].severity, "critical");
    assert_string_equal(a->items[0].summary, "archiver is down");
    assert_string_equal(a->items[1].summary, "dead letters");
    /* The same notification again (repeat_interval) updates, never duplicates. */
    assert_int_equal(hg_alerts_apply(a, k_firing, strlen(k_firing), 2000, err, sizeof(err)), 0);
    assert_int_equal(a->n, 2);
    assert_int_equal(a->firing_received, 4);

    static const char resolved[] =
        "{\"status\":\"resolved\",\"alerts\":[{\"status\":\"resolved\",\"fingerprint\":\"f1\","
        "\"labels\":{\"alertname\":\"ServiceDown\"}}]}";
    assert_int_equal(hg_alerts_apply(a, resolved, strlen(resolved), 3000, err, sizeof(err)), 0);
    assert_int_equal(a->n, 1);
    assert_string_equal(a->items[0].fingerprint, "f2");
    assert_int_equal(a->resolved_received, 1);

    hm_buf out = {0};
    hg_alerts_json(a, &out);
    hm_buf_putc(&out, '\0');
    assert_string_equal(out.data,
                        "[{\"name\":\"DLQGrowing\",\"status\":\"firing\",\"severity\":\"\","
                        "\"summary\":\"dead letters\",\"starts_at\":\"2026-12-03T17:01:00Z\","
                        "\"fingerprint\":\"f2\",\"labels\":{\"alertname\":\"DLQGrowing\"}}]");
    hm_buf_free(&out);
    hg_alerts_free(a);
    free(a);
}

static void test_alerts_bad_notification_changes_nothing_and_says_why(void **state) {
    hg_alerts *a = calloc(1, sizeof(*a));
    char err[256];
    assert_int_equal(hg_alerts_apply(a, k_firing, strlen(k_firing), 1000, err, sizeof(err)), 0);
    static const char *const bad[][2] = {
        {"not json", "not JSON"},
        {"{\"status\":\"firing\"}", "no \"alerts\" array"},
        /* The first alert is fine, the second has no fingerprint: neither is applied. */
        {"{\"alerts\":[{\"status\":\"resolved\",\"fingerprint\":\"f1\"},{\"status\":\"firing\"}]}",
         "alerts[1]: needs a fingerprint"},
        {"{\"alerts\":[{\"status\":\"pending\",\"fingerprint\":\"f9\"}]}", "alerts[0]"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(hg_alerts_apply(a, bad[i][0], strlen(bad[i][0]), 2000, err, sizeof(err)),
                         -EINVAL);
        if (!strstr(err, bad[i][1])) fail_msg("case %zu: error '%s'", i, err);
        assert_int_equal(a->n, 2);
    }
    hg_alerts_free(a);
    free(a);
}

static void test_alerts_table_is_bounded_dropping_the_oldest(void **state) {
    hg_alerts *a = calloc(1, sizeof(*a));
    char err[256], body[256];
    for (int i = 0; i < HG_ALERTS_MAX + 5; i++) {
        snprintf(body, sizeof(body),
                 "{\"alerts\":[{\"status\":\"firing\",\"fingerprint\":\"fp%d\",\"labels\":{}}]}",
                 i);
        assert_int_equal(hg_alerts_apply(a, body, strlen(body), i, err, sizeof(err)), 0);
    }
    assert_int_equal(a->n, HG_ALERTS_MAX);
    for (size_t i = 0; i < a->n; i++)
        assert_true(strcmp(a->items[i].fingerprint, "fp4") != 0);
    hg_alerts_free(a);
    free(a);
}

/* ---- configuration -------------------------------------------------------------------- */

static void test_service_entry_splits_name_and_url(void **state) {
    char name[16];
    const char *url = NULL;
    assert_int_equal(hg_service_entry("archiver=http://127.0.0.1:8083", name, sizeof(name), &url),
                     0);
    assert_string_equal(name, "archiver");
    assert_string_equal(url, "http://127.0.0.1:8083");
    assert_int_equal(hg_service_entry("archiver", name, sizeof(name), &url), -EINVAL);
    assert_int_equal(hg_service_entry("=http://x:1", name, sizeof(name), &url), -EINVAL);
    assert_int_equal(hg_service_entry("a=ftp://x:1", name, sizeof(name), &url), -EINVAL);
    assert_int_equal(hg_service_entry("a=http://x:1/", name, sizeof(name), &url), -EINVAL);
    assert_int_equal(
        hg_service_entry("a-very-long-service-name=http://x:1", name, sizeof(name), &url), -EINVAL);
}

/* Load the schema's defaults with one env override; the error message, or "" when valid. */
static void load_with(const char *var, const char *value, char *msg, size_t size) {
    hg_config *cfg = calloc(1, sizeof(*cfg));
    setenv(var, value, 1);
    hm_err err = {0};
    int rc = hm_service_config_load(&hg_config_schema, cfg, NULL, &err);
    unsetenv(var);
    snprintf(msg, size, "%s", rc ? err.msg : "");
    if (rc == 0) hm_service_config_free(&hg_config_schema, cfg);
    free(cfg);
}

static void test_config_rules_name_the_keys(void **state) {
    char msg[512];
    load_with("HIMARI_GATEWAY_PROBE_INTERVAL_MS", "1500", msg, sizeof(msg));
    assert_string_equal(msg, "");
    load_with("HIMARI_GATEWAY_PROBE_TIMEOUT_MS", "2000", msg, sizeof(msg));
    assert_string_equal(msg, "(no config file): gateway.probe_timeout_ms (2000) must be below "
                             "gateway.probe_interval_ms (2000)");
    load_with("HIMARI_GATEWAY_SERVICES", "archiver=http://a:1,archiver=http://b:2", msg,
              sizeof(msg));
    assert_string_equal(msg, "(no config file): gateway.services: 'archiver' is listed twice");
    load_with("HIMARI_GATEWAY_SERVICES", "kafka=http://a:1", msg, sizeof(msg));
    assert_string_equal(msg,
                        "(no config file): gateway.services: 'kafka' is the name of a dependency");
    load_with("HIMARI_GATEWAY_CRITICAL", "kafka,archivr", msg, sizeof(msg));
    assert_string_equal(msg,
                        "(no config file): gateway.critical: 'archivr' is neither a service of "
                        "gateway.services nor kafka, redis, postgres, neo4j or s3");
    /* A service of ours not probed here may stay in the default critical list. */
    load_with("HIMARI_GATEWAY_SERVICES", "ingest-validator=http://127.0.0.1:1", msg, sizeof(msg));
    assert_string_equal(msg, "");
    load_with("HIMARI_NEO4J_URL", "bolt://127.0.0.1:7687", msg, sizeof(msg));
    assert_string_equal(msg, "(no config file): neo4j.url: 'bolt://127.0.0.1:7687' must start with "
                             "http:// or https:// and not end with '/'");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promtext_reads_samples_and_skips_comments_and_bad_lines),
        cmocka_unit_test(test_promtext_label_unescapes_and_refuses_what_does_not_fit),
        cmocka_unit_test(test_alerts_firing_are_added_updated_and_resolved_removed),
        cmocka_unit_test(test_alerts_bad_notification_changes_nothing_and_says_why),
        cmocka_unit_test(test_alerts_table_is_bounded_dropping_the_oldest),
        cmocka_unit_test(test_service_entry_splits_name_and_url),
        cmocka_unit_test(test_config_rules_name_the_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
