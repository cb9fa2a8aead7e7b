// uses: services/ingest-validator
/*
 * test_checks.c: unit tests of the ingest-validator's judging (services/ingest-validator:
 * checks.c, engine.c, config.c, and the record writer of common/src/quality.c), through the
 * engine API only.
 *
 * Every issue code has a test that raises it on a minimal stream and asserts the exact
 * issue list, next to the neighbouring clean case just inside the threshold. Then the
 * behaviour that matters on real streams: interleaved exchanges with skewed clocks raise
 * nothing; a bad tick leaves the value state alone; level shifts, spike reversion, the
 * two freshness clocks, future-jump confirmation, feed silence events, TTL, scores and
 * weights. Every output record is parsed with jansson and with hm_quality_decode and
 * checked against the engine's own issue list. No Kafka, no clock, no files except a temporary
 * config for the loader.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "engine.h"
#include "himari/quality.h"

#define PA_MS INT64_C(1700000000000) /* processed_at of every record in these tests */
#define T0    INT64_C(1700000000000)

/* ---- harness ---------------------------------------------------------------------------- */

typedef struct h {
    iv_config cfg;
    iv_engine *e;
    hm_buf out; /* the last quality record */
    iv_output res;
    json_t *rec;   /* the last quality record, parsed */
    hm_buf events; /* every event, one per line */
    int n_events;
    char issues[1024];
} h;

static void on_event(void *ud, int32_t partition, const char *key, size_t key_len, const char *json,
                     size_t json_len) {
    h *x = ud;
    (void)partition;
    json_error_t je;
    json_t *j = json_loadb(json, json_len, 0, &je);
    if (!j) {
        print_error("event is not JSON: %.*s (%s)\n", (int)json_len, json, je.text);
        fail();
    }
    json_t *sym = json_object_get(j, "symbol");
    assert_true(json_is_string(sym));
    assert_int_equal(json_string_length(sym), key_len);
    assert_memory_equal(json_string_value(sym), key, key_len);
    json_decref(j);
    hm_buf_append(&x->events, json, json_len);
    hm_buf_putc(&x->events, '\n');
    x->n_events++;
}

static void load_defaults(iv_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    hm_err err;
    int rc = iv_config_load(cfg, NULL, &err);
    if (rc != 0) {
        print_error("iv_config_load: %s\n", err.msg);
        fail();
    }
}

static void h_init(h *x, bool event_clock) {
    memset(x, 0, sizeof(*x));
    load_defaults(&x->cfg);
    x->e = iv_engine_new(&x->cfg.checks, event_clock);
    iv_engine_set_event_sink(x->e, on_event, x);
}

/* After changing x->cfg.checks. */
static void h_apply(h *x) {
    iv_engine_set_checks(x->e, &x->cfg.checks);
}

static void h_free(h *x) {
    iv_engine_free(x->e);
    iv_config_free(&x->cfg);
    hm_buf_free(&x->out);
    hm_buf_free(&x->events);
    json_decref(x->rec);
}

/* Judge one record; check that the output is valid JSON whose issues and count match
 * the engine's own result. Returns the issue list as "A,B" in x->issues. */
static const char *h_run_n(h *x, const char *json, size_t len, int64_t ingest_ms) {
    hm_buf_reset(&x->out);
    iv_input in = {json, len, ingest_ms, 0};
    x->res.json = &x->out;
    iv_engine_process(x->e, &in, PA_MS, &x->res);
    json_decref(x->rec);
    json_error_t je;
    x->rec = json_loadb(x->out.data, x->out.len, 0, &je);
    if (!x->rec) {
        print_error("output is not JSON: %s (%s)\n", x->out.data, je.text);
        fail();
    }
    assert_true(json_is_object(x->rec));
    assert_null(memchr(x->out.data, '\n', x->out.len));
    json_t *issues = json_object_get(x->rec, "issues");
    assert_true(json_is_array(issues));
    assert_int_equal(json_array_size(issues), x->res.n_issues);
    assert_int_equal(json_integer_value(json_object_get(x->rec, "issue_count")), x->res.n_issues);
    x->issues[0] = '\0';
    for (uint32_t i = 0; i < x->res.n_issues; i++) {
        const char *name = hm_qcode_name(x->res.issues[i]);
        assert_string_equal(json_string_value(json_array_get(issues, i)), name);
        if (i) assert_true(x->res.issues[i] > x->res.issues[i - 1]); /* table order, once */
        if (i) strcat(x->issues, ",");
        strcat(x->issues, name);
    }
    double score = json_number_value(json_object_get(x->rec, "quality_score"));
    assert_true(fabs(score - x->res.score) < 1e-9);
    /* what a downstream service reads back */
    hm_quality q;
    hm_decode_err de;
    if (hm_quality_decode(x->out.data, x->out.len, &q, &de) != 0) {
        print_error("hm_quality_decode: %s (offset %zu, field '%s')\n  output %s\n", de.msg,
                    de.offset, de.field, x->out.data);
        fail();
    }
    hm_qcodeset codes = 0;
    for (uint32_t i = 0; i < x->res.n_issues; i++)
        codes |= HM_QBIT(x->res.issues[i]);
    assert_true(q.codes == codes);
    assert_int_equal(q.unknown_codes, 0);
    assert_int_equal(q.issue_count, x->res.n_issues);
    assert_true(q.score == x->res.score);
    assert_int_equal(q.processed_at_ms, PA_MS);
    assert_int_equal(q.st[HM_QFIELD_ERROR], x->res.parse_error ? HM_F_OK : HM_F_ABSENT);
    return x->issues;
}

static const char *h_run(h *x, const char *json, int64_t ingest_ms) {
    return h_run_n(x, json, strlen(json), ingest_ms);
}

static void expect_at(h *x, const char *json, int64_t ingest_ms, const char *want, int line) {
    const char *got = h_run(x, json, ingest_ms);
    if (strcmp(got, want) != 0) {
        print_error("line %d: %s\n  issues [%s], want [%s]\n  output %s\n", line, json, got, want,
                    x->out.data);
        fail();
    }
}
/* Judge json (ingest time ingest_ms) and insist on exactly these issues ("" = none). */
#define EXPECT(x, json, ingest, want) expect_at((x), (json), (ingest), (want), __LINE__)

/* A trade record. id < 0: no trade_id field. */
static const char *trade(const char *ex, const char *sym, int64_t ts, const char *price,
                         const char *vol, long long id) {
    static char buf[8][512];
    static int slot;
    char *b = buf[slot++ % 8];
    int n = snprintf(b, 512,
                     "{\"timestamp\":%lld,\"symbol\":\"%s\",\"exchange\":\"%s\",\"price\":%s,"
                     "\"volume\":%s",
                     (long long)ts, sym, ex, price, vol);
    if (id >= 0) n += snprintf(b + n, 512 - (size_t)n, ",\"trade_id\":%lld", id);
    snprintf(b + n, 512 - (size_t)n, "}");
    return b;
}

static const char *btc(const char *ex, int64_t ts, const char *price, long long id) {
    return trade(ex, "BTC/USDT", ts, price, "1", id);
}

/* A JSON field of the last record. */
static json_t *field(h *x, const char *name) {
    return json_object_get(x->rec, name);
}

/* ---- configuration (the code table itself: test_quality.c) ------------------------------ */

static void test_config_defaults_match_the_brief(void **state) {
    (void)state;
    iv_config cfg;
    load_defaults(&cfg);
    assert_string_equal(cfg.input_topic, "raw_market_data");
    assert_string_equal(cfg.output_topic, "quality_scores");
    assert_string_equal(cfg.dlq_topic, "raw_market_data.dlq");
    assert_string_equal(cfg.events_topic, "causal_events");
    assert_string_equal(cfg.changelog_topic, "ingest-validator.changelog");
    assert_string_equal(cfg.group_id, "ingest-validator");
    assert_int_equal(cfg.commit_interval_ms, 0); /* see docs/BENCHMARKS.md */
    assert_int_equal(cfg.base.grpc_port, 9081);
    assert_int_equal(cfg.commit_max_records, 20000);
    assert_false(cfg.event_clock);
    assert_int_equal(cfg.base.admin_port, 8081);
    const iv_checks *k = &cfg.checks;
    assert_int_equal(k->valid_exchanges.n, 5);
    assert_string_equal(k->valid_exchanges.items[0], "binance");
    assert_string_equal(k->valid_exchanges.items[4], "coinbase");
    assert_int_equal(k->max_record_bytes, 65536);
    assert_int_equal(k->large_gap_ms, 60000);
    assert_int_equal(k->stale_ms, 30000);
    assert_int_equal(k->delayed_ms, 10000);
    assert_int_equal(k->future_ms, 5000);
    assert_int_equal(k->future_confirm_ticks, 3);
    assert_true(k->future_lull_factor == 3);
    assert_int_equal(k->future_lull_max_ms, 21600000);
    assert_true(k->extreme_move == 0.10 && k->large_move == 0.05);
    assert_true(k->anomaly_deviation == 0.15 && k->ema_alpha == 0.1 && k->volume_alpha == 0.05);
    assert_true(k->volume_spike_ratio == 5 && k->extreme_volume_ratio == 100000);
    assert_true(k->volume_spike_sigmas == 2.5);
    assert_int_equal(k->volume_warmup_ticks, 5);
    assert_int_equal(k->max_price_decimals, 8);
    assert_true(k->cross_exchange_deviation == 0.01);
    assert_int_equal(k->cross_exchange_window_ms, 30000);
    assert_int_equal(k->cross_exchange_min_peers, 2);
    assert_int_equal(k->level_confirm_ticks, 2);
    assert_true(k->level_confirm_tolerance == 0.01 && k->spike_revert_tolerance == 0.01);
    assert_int_equal(k->silence_ms, 60000);
    assert_int_equal(k->state_ttl_ms, 86400000);
    assert_int_equal(k->max_keys, 100000);
    assert_true(k->notional_max == 1e7);
    for (int c = 0; c < HM_QCODE_COUNT; c++)
        assert_true(k->weights[c] == hm_qcode_default_weight(c));
    iv_config_free(&cfg);
}

static int load_yaml(const char *yaml, iv_config *cfg, hm_err *err) {
    char path[] = "/tmp/test_checks_XXXXXX.yaml";
    int fd = mkstemps(path, 5);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    memset(cfg, 0, sizeof(*cfg));
    int rc = iv_config_load(cfg, path, err);
    unlink(path);
    return rc;
}

static void expect_config_error(const char *yaml, const char *needle1, const char *needle2) {
    iv_config cfg;
    hm_err err;
    int rc = load_yaml(yaml, &cfg, &err);
    if (rc != -EINVAL || !strstr(err.msg, needle1) || (needle2 && !strstr(err.msg, needle2))) {
        print_error("yaml:\n%s\nrc %d, message '%s'; want '%s' and '%s'\n", yaml, rc,
                    rc ? err.msg : "", needle1, needle2 ? needle2 : "");
        fail();
    }
    /* nothing was kept */
    assert_null(cfg.input_topic);
    assert_null(cfg.checks.valid_exchanges.items);
}

static void test_config_cross_field_rules_name_their_keys(void **state) {
    (void)state;
    expect_config_error("checks:\n  large_move: 0.2\n", "checks.large_move", "checks.extreme_move");
    expect_config_error("checks:\n  volume_spike_ratio: 100000\n", "checks.volume_spike_ratio",
                        "checks.extreme_volume_ratio");
    expect_config_error("checks:\n  delayed_ms: 30000\n", "checks.delayed_ms", "checks.stale_ms");
    expect_config_error("validator:\n  freshness_clock: wall\n", "validator.freshness_clock",
                        "wall");
    expect_config_error("checks:\n  valid_exchanges: [Binance]\n", "checks.valid_exchanges",
                        "Binance");
    expect_config_error("checks:\n  valid_exchanges: []\n", "checks.valid_exchanges", NULL);
    expect_config_error("checks:\n  extreme_move: 0\n", "checks.extreme_move", NULL);
    expect_config_error("checks:\n  weights:\n    LARGE_GAP: 2\n", "checks.weights.LARGE_GAP",
                        NULL);
    expect_config_error("checks:\n  weights:\n    NO_SUCH_CODE: 0.1\n",
                        "checks.weights.NO_SUCH_CODE", NULL);
}

static void test_config_file_sets_clock_exchanges_and_weights(void **state) {
    (void)state;
    iv_config cfg;
    hm_err err;
    int rc = load_yaml("validator:\n  freshness_clock: event\n  commit_interval_ms: 250\n"
                       "checks:\n  valid_exchanges: [okx, binance]\n  stale_ms: 60000\n"
                       "  weights:\n    LARGE_GAP: 0.5\n",
                       &cfg, &err);
    if (rc) print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_true(cfg.event_clock);
    assert_int_equal(cfg.commit_interval_ms, 250);
    assert_int_equal(cfg.checks.valid_exchanges.n, 2);
    assert_string_equal(cfg.checks.valid_exchanges.items[0], "okx");
    assert_int_equal(cfg.checks.stale_ms, 60000);
    assert_true(cfg.checks.weights[HM_Q_LARGE_GAP] == 0.5);
    assert_true(cfg.checks.weights[HM_Q_TRADE_ID_GAP] == 0.05);
    /* A second load replaces the first (and frees it: ASan would see a leak). */
    rc = iv_config_load(&cfg, NULL, &err);
    assert_int_equal(rc, 0);
    assert_false(cfg.event_clock);
    assert_true(cfg.checks.weights[HM_Q_LARGE_GAP] == 0);
    iv_config_free(&cfg);
}

static void test_config_sections_mark_thresholds_reloadable_topics_not(void **state) {
    (void)state;
    iv_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    hm_cfg_section s[IV_CONFIG_SECTIONS];
    iv_config_sections(&cfg, s);
    int seen = 0;
    for (size_t i = HM_SERVICE_SECTIONS; i < IV_CONFIG_SECTIONS; i++) {
        for (size_t k = 0; k < s[i].n_keys; k++) {
            const hm_cfg_key *key = &s[i].keys[k];
            assert_non_null(key->doc);
            assert_true(strlen(key->doc) > 10);
            bool topic = strstr(key->path, "topic") || strstr(key->path, "group_id") ||
                         strstr(key->path, "freshness_clock");
            if (strncmp(key->path, "checks.", 7) == 0 || strstr(key->path, "commit_")) {
                assert_true(key->flags & HM_CFG_RELOADABLE);
                seen++;
            } else if (topic) {
                assert_false(key->flags & HM_CFG_RELOADABLE);
            }
        }
    }
    assert_int_equal(seen, 2 + 30 + HM_QCODE_COUNT);
}

/* ---- record-level codes ----------------------------------------------------------------- */

static void test_garbage_is_parse_error_with_string_original_and_no_key(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, "not json at all", -1, "PARSE_ERROR");
    assert_true(x.res.parse_error);
    assert_null(x.res.key);
    assert_true(x.res.score == 0);
    assert_string_equal(json_string_value(field(&x, "original_data")), "not json at all");
    assert_string_equal(json_string_value(field(&x, "error")), x.res.error);
    assert_non_null(strstr(x.res.error, "at byte 0"));
    assert_true(json_is_null(field(&x, "symbol")));
    assert_true(json_is_null(field(&x, "type")));
    assert_string_equal(json_string_value(field(&x, "quality_score")) ? "" : "num", "num");
    assert_true(json_number_value(field(&x, "quality_score")) == 0);
    /* neighbour: the smallest valid record is no parse error */
    EXPECT(&x, btc("binance", T0, "100", 1), T0, "");
    assert_false(x.res.parse_error);
    assert_string_equal(x.res.error, "");
    h_free(&x);
}

static void test_truncated_record_error_names_byte_and_field(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    const char *in = "{\"timestamp\":1700000000000,\"price\":tru";
    EXPECT(&x, in, -1, "PARSE_ERROR");
    assert_non_null(strstr(x.res.error, "at byte"));
    assert_non_null(strstr(x.res.error, "price"));
    assert_string_equal(json_string_value(field(&x, "original_data")), in);
    const iv_stats *st = iv_engine_stats(x.e);
    assert_int_equal(st->parse_errors, 1);
    assert_int_equal(st->rejected, 1);
    assert_int_equal(st->issues[HM_Q_PARSE_ERROR], 1);
    h_free(&x);
}

static void test_invalid_utf8_is_parse_error_with_replacement_character(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    const char in[] = "{\"symbol\":\"BTC\xC3\x28USDT\"}";
    EXPECT(&x, in, -1, "PARSE_ERROR");
    assert_non_null(strstr(x.res.error, "UTF-8"));
    const char *orig = json_string_value(field(&x, "original_data"));
    assert_non_null(orig);
    assert_non_null(strstr(orig, "\xEF\xBF\xBD")); /* U+FFFD */
    h_free(&x);
}

static void test_oversized_record_has_null_original_and_its_length(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    x.cfg.checks.max_record_bytes = 64;
    h_apply(&x);
    char big[200];
    snprintf(big, sizeof(big),
             "{\"timestamp\":%lld,\"symbol\":\"BTC/USDT\",\"exchange\":"
             "\"binance\",\"price\":100,\"volume\":1,\"trade_id\":1234}",
             (long long)T0);
    size_t n = strlen(big);
    assert_true(n > 65);
    EXPECT(&x, big, -1, "PARSE_ERROR");
    assert_true(json_is_null(field(&x, "original_data")));
    assert_int_equal(json_integer_value(field(&x, "original_bytes")), n);
    assert_non_null(strstr(x.res.error, "exceeds the limit of 64"));
    /* neighbour: a record of exactly the limit is read */
    char small[65];
    memset(small, ' ', 64);
    small[0] = '{';
    small[63] = '}';
    small[64] = '\0';
    EXPECT(&x, small, -1,
           "MISSING_TIMESTAMP,MISSING_SYMBOL,MISSING_EXCHANGE,MISSING_PRICE,"
           "MISSING_VOLUME");
    h_free(&x);
}

static void test_empty_record_is_parse_error(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, "", -1, "PARSE_ERROR");
    assert_string_equal(x.res.error, "empty record");
    assert_string_equal(json_string_value(field(&x, "original_data")), "");
    EXPECT(&x, "   ", -1, "PARSE_ERROR");
    assert_string_equal(x.res.error, "empty record");
    h_free(&x);
}

static void test_invalid_type_is_judged_as_trade(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    char in[300];
    snprintf(in, sizeof(in),
             "{\"type\":\"swap\",\"timestamp\":%lld,\"symbol\":\"BTC/USDT\",\"exchange\":"
             "\"binance\",\"price\":100,\"volume\":1}",
             (long long)T0);
    EXPECT(&x, in, T0, "INVALID_TYPE");
    assert_string_equal(json_string_value(field(&x, "type")), "trade");
    snprintf(in, sizeof(in),
             "{\"type\":\"trade\",\"timestamp\":%lld,\"symbol\":\"BTC/USDT\",\"exchange\":"
             "\"binance\",\"price\":100,\"volume\":1}",
             (long long)T0 + 1);
    EXPECT(&x, in, T0 + 1, "");
    h_free(&x);
}

/* ---- identity fields -------------------------------------------------------------------- */

static void test_timestamp_missing_invalid_and_valid_forms(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, "{\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"price\":1,\"volume\":1}", -1,
           "MISSING_TIMESTAMP");
    EXPECT(&x,
           "{\"timestamp\":\"yesterday\",\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\","
           "\"price\":1,\"volume\":1}",
           -1, "INVALID_TIMESTAMP");
    EXPECT(&x,
           "{\"timestamp\":null,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"price\":1,"
           "\"volume\":1}",
           -1, "INVALID_TIMESTAMP");
    EXPECT(&x,
           "{\"timestamp\":NaN,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"price\":1,"
           "\"volume\":1}",
           -1, "INVALID_TIMESTAMP");
    EXPECT(&x,
           "{\"timestamp\":-5,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"price\":1,"
           "\"volume\":1}",
           -1, "INVALID_TIMESTAMP");
    assert_true(json_is_integer(field(&x, "timestamp")));
    /* neighbours: ISO-8601 and 0 are valid */
    EXPECT(&x,
           "{\"timestamp\":\"2023-11-14T22:13:20.000Z\",\"symbol\":\"BTC/USDT\",\"exchange\":"
           "\"binance\",\"price\":1,\"volume\":1}",
           T0, "");
    assert_int_equal(json_integer_value(field(&x, "timestamp")), T0);
    EXPECT(&x,
           "{\"timestamp\":0,\"symbol\":\"ETH/USDT\",\"exchange\":\"binance\",\"price\":1,"
           "\"volume\":1}",
           0, "");
    h_free(&x);
}

static void test_symbol_missing_invalid_and_format(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, "{\"timestamp\":1,\"exchange\":\"binance\",\"price\":1,\"volume\":1}", 1,
           "MISSING_SYMBOL");
    assert_null(x.res.key);
    EXPECT(&x, "{\"timestamp\":1,\"symbol\":5,\"exchange\":\"binance\",\"price\":1,\"volume\":1}",
           1, "INVALID_SYMBOL");
    EXPECT(&x,
           "{\"timestamp\":1,\"symbol\":\"\",\"exchange\":\"binance\",\"price\":1,\"volume\":1}", 1,
           "INVALID_SYMBOL");
    static const char *bad[] = {"btc/usdt",  "BTCUSDT",   "BTC/",
                                "/USDT",     "BTC/USD-T", "AAAAAAAAAAAAAAAAAAAAA/USDT",
                                "BTC/USDT/X"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        EXPECT(&x, trade("binance", bad[i], 1, "1", "1", -1), 1, "INVALID_SYMBOL_FORMAT");
        /* the key is the symbol as given, even when malformed */
        assert_int_equal(x.res.key_len, strlen(bad[i]));
    }
    /* neighbour: 20 characters on each side is still well formed */
    EXPECT(&x, trade("binance", "AAAAAAAAAAAAAAAAAAAA/12345678901234567890", 1, "1", "1", -1), 1,
           "");
    assert_int_equal(x.res.key_len, 41);
    h_free(&x);
}

static void test_exchange_missing_invalid_unknown_and_case(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, "{\"timestamp\":1,\"symbol\":\"BTC/USDT\",\"price\":1,\"volume\":1}", 1,
           "MISSING_EXCHANGE");
    EXPECT(&x, "{\"timestamp\":1,\"symbol\":\"BTC/USDT\",\"exchange\":7,\"price\":1,\"volume\":1}",
           1, "INVALID_EXCHANGE");
    EXPECT(&x, btc("fakex", 1, "1", -1), 1, "UNKNOWN_EXCHANGE");
    assert_string_equal(x.res.exchange, "fakex");
    /* neighbour: case does not matter, the output is lower-cased */
    EXPECT(&x, btc("BiNaNcE", 1, "1", -1), 1, "");
    assert_string_equal(json_string_value(field(&x, "exchange")), "binance");
    assert_string_equal(x.res.exchange, "binance");
    h_free(&x);
}

static void test_trade_id_invalid_forms_and_string_ids(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    static const char *bad[] = {"-1", "1.5", "{}", "null", "\"\""};
    char in[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(in, sizeof(in),
                 "{\"timestamp\":%zu,\"symbol\":\"ETH/USDT\",\"exchange\":\"kraken\","
                 "\"price\":1,\"volume\":1,\"trade_id\":%s}",
                 i + 1, bad[i]);
        EXPECT(&x, in, (int64_t)i + 1, "INVALID_TRADE_ID");
        assert_true(json_is_null(field(&x, "trade_id")));
    }
    /* neighbour: a string id is fine and written as a string; so is a number */
    EXPECT(&x,
           "{\"timestamp\":100,\"symbol\":\"BTC/USDT\",\"exchange\":\"kraken\",\"price\":1,"
           "\"volume\":1,\"trade_id\":\"abc-1\"}",
           100, "");
    assert_string_equal(json_string_value(field(&x, "trade_id")), "abc-1");
    EXPECT(&x, btc("binance", 100, "1", 123456789012LL), 100, "");
    assert_string_equal(json_string_value(field(&x, "trade_id")), "123456789012");
    h_free(&x);
}

static void test_side_invalid_and_missing_for_liquidations(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x,
           "{\"timestamp\":1,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"price\":1,"
           "\"volume\":1,\"side\":\"long\"}",
           1, "INVALID_SIDE");
    assert_true(json_is_null(field(&x, "side")));
    EXPECT(&x,
           "{\"type\":\"liquidation\",\"timestamp\":1,\"symbol\":\"BTC/USDT\",\"exchange\":"
           "\"binance\",\"price\":1,\"volume\":1}",
           1, "MISSING_SIDE");
    assert_string_equal(json_string_value(field(&x, "type")), "liquidation");
    /* neighbours: a liquidation with a side, a trade without one, an upper-case side */
    EXPECT(&x,
           "{\"type\":\"liquidation\",\"timestamp\":1,\"symbol\":\"BTC/USDT\",\"exchange\":"
           "\"binance\",\"price\":1,\"volume\":1,\"side\":\"sell\"}",
           1, "");
    EXPECT(&x,
           "{\"timestamp\":2,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"price\":1,"
           "\"volume\":1,\"side\":\"SELL\"}",
           2, "");
    assert_string_equal(json_string_value(field(&x, "side")), "sell");
    h_free(&x);
}

/* ---- price and volume values ------------------------------------------------------------ */

static void test_price_missing_invalid_nonfinite_negative_zero(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, "{\"timestamp\":1,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"volume\":1}", 1,
           "MISSING_PRICE");
    /* distinct timestamps: ticks without trade ids at one ms would be duplicates */
    int64_t ts = 2;
    static const char *invalid[] = {"\"abc\"", "true", "null", "[]"};
    for (size_t i = 0; i < 4; i++, ts++)
        EXPECT(&x, trade("binance", "BTC/USDT", ts, invalid[i], "1", -1), ts, "INVALID_PRICE");
    static const char *nonfinite[] = {"NaN", "Infinity", "-Infinity", "\"NaN\"", "1e400"};
    for (size_t i = 0; i < 5; i++, ts++) {
        EXPECT(&x, trade("binance", "BTC/USDT", ts, nonfinite[i], "1", -1), ts, "NON_FINITE_PRICE");
        assert_true(json_is_null(field(&x, "price")));
    }
    EXPECT(&x, trade("binance", "BTC/USDT", ts, "-0.5", "1", -1), ts, "INVALID_PRICE_NEGATIVE");
    assert_true(json_number_value(field(&x, "price")) == -0.5);
    ts++;
    EXPECT(&x, trade("binance", "BTC/USDT", ts, "0", "1", -1), ts, "ZERO_PRICE");
    ts++;
    EXPECT(&x, trade("binance", "BTC/USDT", ts, "\"0.000\"", "1", -1), ts, "ZERO_PRICE");
    /* neighbour: the smallest positive price is fine */
    EXPECT(&x, trade("binance", "XRP/USDT", 1, "0.00000001", "1", -1), 1, "");
    h_free(&x);
}

static void test_excessive_precision_counts_significant_decimals(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, trade("binance", "BTC/USDT", 1, "1.123456789", "1", -1), 1, "EXCESSIVE_PRECISION");
    EXPECT(&x, trade("binance", "ETH/USDT", 1, "\"2.000000001\"", "1", -1), 1,
           "EXCESSIVE_PRECISION");
    /* neighbours: 8 decimals, and trailing zeros do not count */
    EXPECT(&x, trade("binance", "SOL/USDT", 1, "1.12345678", "1", -1), 1, "");
    EXPECT(&x, trade("binance", "ADA/USDT", 1, "1.123456780000", "1", -1), 1, "");
    h_free(&x);
}

static void test_volume_missing_invalid_nonfinite_negative_zero(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, "{\"timestamp\":1,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"price\":1}", 1,
           "MISSING_VOLUME");
    static const char *vols[] = {"false", "\"x\"", "Infinity", "-2", "0", "0.000001"};
    static const char *want[] = {"INVALID_VOLUME",          "INVALID_VOLUME", "NON_FINITE_VOLUME",
                                 "INVALID_VOLUME_NEGATIVE", "ZERO_VOLUME",    ""};
    for (int i = 0; i < 6; i++)
        EXPECT(&x, trade("binance", "BTC/USDT", 2 + i, "1", vols[i], -1), 2 + i, want[i]);
    h_free(&x);
}

static void test_notional_outlier_above_the_limit_only(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, trade("binance", "BTC/USDT", 1, "100000", "100.01", -1), 1, "NOTIONAL_OUTLIER");
    EXPECT(&x, trade("binance", "BTC/USDT", 2, "100000", "100", -1), 2, "");
    h_free(&x);
}

/* ---- transfers -------------------------------------------------------------------------- */

static const char *transfer(const char *extra_or_null, const char *amount, bool from, bool to) {
    static char b[512];
    snprintf(b, sizeof(b),
             "{\"type\":\"transfer\",\"timestamp\":1700000000000,\"asset\":\"BTC\"%s%s%s%s%s%s}",
             amount ? ",\"amount\":" : "", amount ? amount : "", from ? ",\"from\":\"0xaaa\"" : "",
             to ? ",\"to\":\"0xbbb\"" : "", ",\"tx_hash\":\"0xabc\"",
             extra_or_null ? extra_or_null : "");
    return b;
}

static void test_transfer_fields_and_output(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, transfer(NULL, "250.5", true, true), T0, "");
    assert_string_equal(json_string_value(field(&x, "type")), "transfer");
    assert_string_equal(json_string_value(field(&x, "asset")), "BTC");
    assert_true(json_number_value(field(&x, "amount")) == 250.5);
    assert_string_equal(json_string_value(field(&x, "from")), "0xaaa");
    assert_string_equal(json_string_value(field(&x, "to")), "0xbbb");
    assert_string_equal(json_string_value(field(&x, "tx_hash")), "0xabc");
    assert_true(json_is_null(field(&x, "symbol")));
    /* a transfer without symbol is keyed by its asset */
    assert_int_equal(x.res.key_len, 3);
    assert_memory_equal(x.res.key, "BTC", 3);

    EXPECT(&x, transfer(NULL, NULL, true, true), T0, "MISSING_AMOUNT");
    EXPECT(&x, transfer(NULL, "0", true, true), T0, "INVALID_AMOUNT");
    EXPECT(&x, transfer(NULL, "-3", true, true), T0, "INVALID_AMOUNT");
    EXPECT(&x, transfer(NULL, "\"x\"", true, true), T0, "INVALID_AMOUNT");
    EXPECT(&x, transfer(NULL, "NaN", true, true), T0, "INVALID_AMOUNT");
    EXPECT(&x, transfer(NULL, "1", false, true), T0, "MISSING_ADDRESS");
    EXPECT(&x, transfer(NULL, "1", true, false), T0, "MISSING_ADDRESS");
    EXPECT(&x, transfer(NULL, "1", false, false), T0, "MISSING_ADDRESS");
    EXPECT(&x, transfer(",\"to\":null", "1", true, false), T0, "MISSING_ADDRESS");
    EXPECT(&x, "{\"type\":\"transfer\",\"timestamp\":1,\"amount\":1,\"from\":\"a\",\"to\":\"b\"}",
           1, "MISSING_ASSET");
    /* exchange and symbol are optional but checked when present */
    EXPECT(&x, transfer(",\"exchange\":\"fakex\"", "1", true, true), T0, "UNKNOWN_EXCHANGE");
    EXPECT(&x, transfer(",\"exchange\":\"Kraken\",\"symbol\":\"BTC/USDT\"", "1", true, true), T0,
           "");
    assert_string_equal(json_string_value(field(&x, "exchange")), "kraken");
    assert_int_equal(x.res.key_len, 8);
    EXPECT(&x, transfer(",\"symbol\":\"btc\"", "1", true, true), T0, "INVALID_SYMBOL_FORMAT");
    /* ... and a transfer moves no state: it never creates a key */
    assert_int_equal(iv_engine_state_keys(x.e), 0);
    h_free(&x);
}

/* ---- sequence --------------------------------------------------------------------------- */

static void test_out_of_order_and_equal_timestamp_with_ids(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, btc("binance", T0 + 1000, "100", 1), T0 + 1000, "");
    EXPECT(&x, btc("binance", T0 + 999, "100", 2), T0 + 1000, "OUT_OF_ORDER");
    /* neighbour: the same ms with a new id is a burst, not a problem; the out-of-order
     * tick did not move the clock, and it did consume its id (2) */
    EXPECT(&x, btc("binance", T0 + 1000, "100", 3), T0 + 1000, "");
    h_free(&x);
}

static void test_duplicate_timestamp_only_without_trade_ids(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, btc("binance", T0, "100", -1), T0, "");
    EXPECT(&x, btc("binance", T0, "100", -1), T0, "DUPLICATE_TIMESTAMP");
    EXPECT(&x, btc("binance", T0, "100", 7), T0, "DUPLICATE_TIMESTAMP"); /* previous had none */
    EXPECT(&x, btc("binance", T0, "100", 8), T0, "");                    /* both have ids */
    EXPECT(&x, btc("binance", T0 + 1, "100", -1), T0 + 1, "");
    h_free(&x);
}

static void test_large_gap_just_above_the_threshold(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, btc("binance", T0, "100", 1), T0, "");
    EXPECT(&x, btc("binance", T0 + 60000, "100", 2), T0 + 60000, "");
    EXPECT(&x, btc("binance", T0 + 120001, "100", 3), T0 + 120001, "LARGE_GAP");
    EXPECT(&x, btc("binance", T0 + 120002, "100", 4), T0 + 120002, "");
    h_free(&x);
}

static void test_duplicate_trade_id_numeric_and_string(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, btc("binance", T0, "100", 10), T0, "");
    EXPECT(&x, btc("binance", T0 + 1, "100", 11), T0 + 1, "");
    EXPECT(&x, btc("binance", T0 + 2, "100", 10), T0 + 2, "DUPLICATE_TRADE_ID");
    EXPECT(&x, btc("binance", T0 + 3, "100", 11), T0 + 3, "DUPLICATE_TRADE_ID");
    EXPECT(&x, btc("binance", T0 + 4, "100", 12), T0 + 4, ""); /* duplicates did not advance */
    static const char *ids[] = {"x-a", "x-b", "x-a", "x-c"};
    static const char *want[] = {"", "", "DUPLICATE_TRADE_ID", ""};
    char in[256];
    for (int i = 0; i < 4; i++) {
        snprintf(in, sizeof(in),
                 "{\"timestamp\":%lld,\"symbol\":\"ETH/USDT\",\"exchange\":\"kraken\","
                 "\"price\":1,\"volume\":1,\"trade_id\":\"%s\"}",
                 (long long)T0 + i, ids[i]);
        EXPECT(&x, in, T0 + i, want[i]);
    }
    h_free(&x);
}

static void test_trade_id_gap_then_the_sequence_continues(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, btc("binance", T0, "100", 100), T0, "");
    EXPECT(&x, btc("binance", T0 + 1, "100", 101), T0 + 1, "");
    EXPECT(&x, btc("binance", T0 + 2, "100", 103), T0 + 2, "TRADE_ID_GAP");
    EXPECT(&x, btc("binance", T0 + 3, "100", 104), T0 + 3, "");
    h_free(&x);
}

static void test_trade_id_out_of_order_beyond_the_recent_ring(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    for (int i = 0; i < 20; i++)
        EXPECT(&x, btc("binance", T0 + i, "100", 1000 + i), T0 + i, "");
    /* 1002 left the ring of the last 16 ids: not a duplicate, but going back */
    EXPECT(&x, btc("binance", T0 + 20, "100", 1002), T0 + 20, "TRADE_ID_OUT_OF_ORDER");
    /* 1005 is still in the ring */
    EXPECT(&x, btc("binance", T0 + 21, "100", 1005), T0 + 21, "DUPLICATE_TRADE_ID");
    EXPECT(&x, btc("binance", T0 + 22, "100", 1020), T0 + 22, "");
    h_free(&x);
}

/* ---- freshness -------------------------------------------------------------------------- */

static void test_ingest_clock_stale_delayed_future_thresholds(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    /* each on its own symbol so that no sequence check interferes */
    EXPECT(&x, trade("binance", "A1/USDT", T0, "1", "1", -1), T0 + 30001, "STALE_DATA");
    EXPECT(&x, trade("binance", "A2/USDT", T0, "1", "1", -1), T0 + 30000, "DELAYED_DATA");
    EXPECT(&x, trade("binance", "A3/USDT", T0, "1", "1", -1), T0 + 10001, "DELAYED_DATA");
    EXPECT(&x, trade("binance", "A4/USDT", T0, "1", "1", -1), T0 + 10000, "");
    EXPECT(&x, trade("binance", "A5/USDT", T0, "1", "1", -1), T0 - 5001, "FUTURE_TIMESTAMP");
    EXPECT(&x, trade("binance", "A6/USDT", T0, "1", "1", -1), T0 - 5000, "");
    /* transfers and unknown exchanges are judged for freshness too */
    EXPECT(&x, transfer(NULL, "1", true, true), T0 + 40000, "STALE_DATA");
    EXPECT(&x, btc("fakex", T0, "1", -1), T0 + 40000, "UNKNOWN_EXCHANGE,STALE_DATA");
    h_free(&x);
}

static void test_event_clock_judges_against_the_symbol_watermark(void **state) {
    (void)state;
    h x;
    h_init(&x, true);
    /* ingest times are ignored by the event clock */
    EXPECT(&x, btc("binance", T0, "100", 1), T0 + 999999, "");
    EXPECT(&x, btc("kraken", T0 + 40000, "100", 1), -1, "FUTURE_TIMESTAMP");
    EXPECT(&x, btc("bybit", T0 - 10001, "100", 1), -1, "DELAYED_DATA");
    EXPECT(&x, btc("deribit", T0 - 30001, "100", 1), -1, "STALE_DATA");
    EXPECT(&x, btc("coinbase", T0 + 5000, "100", 1), -1, "");
    /* the watermark is now T0 + 5000 */
    EXPECT(&x, btc("binance", T0 + 5000 - 10001, "100", 2), -1, "OUT_OF_ORDER,DELAYED_DATA");
    EXPECT(&x, btc("bybit", T0 - 5000, "100", 2), -1, "");
    h_free(&x);
}

static void test_ingest_clock_falls_back_to_event_clock_without_ingest_time(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, btc("binance", T0, "100", 1), -1, "");
    EXPECT(&x, btc("kraken", T0 - 40000, "100", 1), -1, "STALE_DATA");
    EXPECT(&x, btc("kraken", T0 - 40000 + 1, "100", 2), T0 - 40000, "");
    h_free(&x);
}

static void test_future_jump_is_confirmed_by_consecutive_ticks(void **state) {
    (void)state;
    h x;
    h_init(&x, true);
    EXPECT(&x, btc("binance", T0, "100", 1), -1, "");
    EXPECT(&x, btc("kraken", T0 + 10, "100", 1), -1, "");
    /* the whole symbol jumps 120 s ahead (every feed paused): two ticks are held as
     * future, the third within future_ms of them confirms the jump */
    EXPECT(&x, btc("binance", T0 + 120000, "100", 2), -1, "LARGE_GAP,FUTURE_TIMESTAMP");
    EXPECT(&x, btc("kraken", T0 + 120100, "100", 2), -1, "LARGE_GAP,FUTURE_TIMESTAMP");
    EXPECT(&x, btc("bybit", T0 + 120200, "100", 1), -1, "");
    /* from now on the stream is judged at its new time */
    EXPECT(&x, btc("binance", T0 + 120300, "100", 3), -1, "LARGE_GAP");
    EXPECT(&x, btc("kraken", T0 + 120400, "100", 3), -1, "LARGE_GAP");
    EXPECT(&x, btc("binance", T0 + 120500, "100", 4), -1, "");
    EXPECT(&x, btc("bybit", T0 + 100, "100", 2), -1, "OUT_OF_ORDER,STALE_DATA");
    h_free(&x);
}

static void test_future_ticks_interleaved_with_normal_ones_never_confirm(void **state) {
    (void)state;
    h x;
    h_init(&x, true);
    EXPECT(&x, btc("binance", T0, "100", 1), -1, "");
    for (int i = 0; i < 10; i++) {
        /* one exchange with a clock 60 s fast, between good ticks of another */
        EXPECT(&x, btc("kraken", T0 + 60000 + i * 100, "100", i + 1), -1,
               i == 0 ? "FUTURE_TIMESTAMP" : "FUTURE_TIMESTAMP");
        EXPECT(&x, btc("binance", T0 + (i + 1) * 100, "100", i + 2), -1, "");
    }
    /* neighbour: future_ms is inclusive */
    EXPECT(&x, btc("bybit", T0 + 1000 + 5000, "100", 1), -1, "");
    h_free(&x);
}

/* ---- price behaviour -------------------------------------------------------------------- */

static void test_extreme_and_large_price_move_thresholds(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, btc("binance", T0, "100", 1), T0, "");
    EXPECT(&x, btc("binance", T0 + 1, "110.1", 2), T0, "EXTREME_PRICE_MOVE");
    EXPECT(&x, btc("binance", T0 + 2, "100", 3), T0, "SPIKE_REVERTED");
    EXPECT(&x, btc("binance", T0 + 3, "109.9", 4), T0, "LARGE_PRICE_MOVE");
    EXPECT(&x, btc("binance", T0 + 4, "100", 5), T0, "SPIKE_REVERTED");
    EXPECT(&x, btc("binance", T0 + 5, "94.9", 6), T0, "LARGE_PRICE_MOVE");
    EXPECT(&x, btc("binance", T0 + 6, "100", 7), T0, "SPIKE_REVERTED");
    /* neighbours: 4.9% either way is no move */
    EXPECT(&x, btc("binance", T0 + 7, "104.9", 8), T0, "");
    EXPECT(&x, btc("binance", T0 + 8, "99.8", 9), T0, "");
    h_free(&x);
}

static void test_price_anomaly_against_the_ema(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    x.cfg.checks.anomaly_deviation = 0.03;
    h_apply(&x);
    EXPECT(&x, btc("binance", T0, "100", 1), T0, "");
    EXPECT(&x, btc("binance", T0 + 1, "104", 2), T0, "PRICE_ANOMALY");
    EXPECT(&x, btc("binance", T0 + 2, "100.5", 3), T0, "SPIKE_REVERTED");
    /* neighbour: 2.9% from the EMA (100.05) */
    EXPECT(&x, btc("binance", T0 + 3, "102.9", 4), T0, "");
    h_free(&x);
}

static void test_cross_exchange_deviation_needs_fresh_peers(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, btc("binance", T0, "100", 1), T0, "");
    /* one peer is not enough (min_peers 2) */
    EXPECT(&x, btc("kraken", T0 + 1, "102", 1), T0, "");
    EXPECT(&x, btc("kraken", T0 + 2, "100.1", 2), T0, "");
    EXPECT(&x, btc("bybit", T0 + 3, "99.9", 1), T0, "");
    /* peers 100, 100.1, 99.9: median 100 */
    EXPECT(&x, btc("coinbase", T0 + 4, "101.5", 1), T0, "CROSS_EXCHANGE_DEVIATION");
    EXPECT(&x, btc("coinbase", T0 + 5, "98.9", 2), T0, "CROSS_EXCHANGE_DEVIATION");
    /* neighbour: 0.9% away */
    EXPECT(&x, btc("coinbase", T0 + 6, "100.9", 3), T0, "");
    /* peers older than the window (symbol event time) do not count: at T0 + 31000 only
     * kraken is fresh, one peer for deribit */
    EXPECT(&x, btc("kraken", T0 + 31000, "100", 3), T0 + 31000, "");
    EXPECT(&x, btc("deribit", T0 + 31001, "103", 1), T0 + 31001, "");
    EXPECT(&x, btc("coinbase", T0 + 31002, "100.2", 4), T0 + 31002, "");
    EXPECT(&x, btc("deribit", T0 + 31003, "103", 2), T0 + 31003, "CROSS_EXCHANGE_DEVIATION");
    h_free(&x);
}

static void test_spike_then_revert_is_informational(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, btc("binance", T0, "100", 1), T0, "");
    EXPECT(&x, btc("kraken", T0, "100", 1), T0, "");
    EXPECT(&x, btc("bybit", T0, "100", 1), T0, "");
    EXPECT(&x, btc("binance", T0 + 1, "130", 2), T0,
           "EXTREME_PRICE_MOVE,PRICE_ANOMALY,CROSS_EXCHANGE_DEVIATION");
    EXPECT(&x, btc("binance", T0 + 2, "100.5", 3), T0, "SPIKE_REVERTED");
    assert_true(x.res.score == 1.0);
    assert_true(json_number_value(field(&x, "quality_score")) == 1.0);
    /* neighbour: a normal tick without a spike before carries nothing */
    EXPECT(&x, btc("binance", T0 + 3, "100.4", 4), T0, "");
    h_free(&x);
}

static void test_level_confirmed_by_the_keys_own_ticks(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, btc("binance", T0, "100", 1), T0, "");
    EXPECT(&x, btc("binance", T0 + 1, "108", 2), T0, "LARGE_PRICE_MOVE");
    EXPECT(&x, btc("binance", T0 + 2, "108.2", 3), T0, "LEVEL_SHIFT_CONFIRMED");
    assert_true(x.res.score == 1.0);
    EXPECT(&x, btc("binance", T0 + 3, "108.1", 4), T0, "");
    EXPECT(&x, btc("binance", T0 + 4, "107.9", 5), T0, "");
    h_free(&x);
}

/* ---- volume behaviour ------------------------------------------------------------------- */

static void warm_volume(h *x, int n, int64_t *ts, long long *id, const char *sym) {
    for (int i = 0; i < n; i++, (*ts)++, (*id)++)
        EXPECT(x, trade("binance", sym, *ts, "100", "1", *id), *ts, "");
}

static void test_volume_spikes_after_warmup(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    int64_t ts = T0;
    long long id = 1;
    warm_volume(&x, 4, &ts, &id, "BTC/USDT");
    /* 4 accepted volumes: the check has not started */
    EXPECT(&x, trade("binance", "BTC/USDT", ts, "100", "1000", id), ts, "");
    ts++, id++;
    /* another key, warmed up */
    warm_volume(&x, 5, &ts, &id, "ETH/USDT");
    /* a constant baseline of 1 (log 0, spread 0): the ratio floors decide */
    static const char *vols[] = {"5.1", "100000.5", "99999", "5.1", "4.9"};
    static const char *want[] = {"VOLUME_SPIKE", "EXTREME_VOLUME_SPIKE,NOTIONAL_OUTLIER",
                                 "VOLUME_SPIKE", "VOLUME_SPIKE",
                                 ""}; /* the spikes did not move the baseline */
    for (int i = 0; i < 5; i++, ts++, id++)
        EXPECT(&x, trade("binance", "ETH/USDT", ts, "100", vols[i], id), ts, want[i]);
    h_free(&x);
}

/* ---- behaviour on streams --------------------------------------------------------------- */

/* A small deterministic generator (xorshift64*), so the streams are the same every run. */
static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}
static double unit(void) {
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

static void run_interleaved_clean_stream(bool event_clock) {
    h x;
    h_init(&x, event_clock);
    static const char *ex[] = {"binance", "kraken", "bybit", "coinbase"};
    const int64_t skew[] = {-300, 120, 300, -150};
    const double offset[] = {0.0002, -0.0002, 0.0001, -0.00005};
    long long next_id[] = {5000000, 77, 123456789, 1};
    int64_t last_ts[] = {0, 0, 0, 0};
    double truth = 37000;
    int64_t now = T0;
    char price[32], vol[32];
    for (int i = 0; i < 10000; i++) {
        now += (int64_t)(unit() * 40);
        truth *= 1 + (unit() - 0.5) * 0.0004;
        int e = (int)(rnd() % 4);
        int64_t ts = now + skew[e] + (int64_t)(unit() * 20);
        if (ts < last_ts[e]) ts = last_ts[e];
        int burst = unit() < 0.01 ? 3 : 1; /* same-ms bursts with consecutive ids */
        for (int b = 0; b < burst; b++) {
            snprintf(price, sizeof(price), "%.2f",
                     truth * (1 + offset[e]) * (1 + (unit() - 0.5) * 0.0002));
            snprintf(vol, sizeof(vol), "%.4f", 0.5 + unit() * 1.5);
            EXPECT(&x, trade(ex[e], "BTC/USDT", ts, price, vol, next_id[e]++), now, "");
        }
        last_ts[e] = ts;
    }
    const iv_stats *st = iv_engine_stats(x.e);
    assert_int_equal(st->flagged + st->rejected, 0);
    assert_true(st->ok >= 10000);
    assert_int_equal(iv_engine_state_keys(x.e), 4);
    h_free(&x);
}

static void test_interleaved_exchanges_with_skewed_clocks_raise_nothing_event_clock(void **s) {
    (void)s;
    run_interleaved_clean_stream(true);
}

static void test_interleaved_exchanges_with_skewed_clocks_raise_nothing_ingest_clock(void **s) {
    (void)s;
    run_interleaved_clean_stream(false);
}

/* The value state of the first key, from the changelog. */
typedef struct vstate {
    double ref, ema, vol_mean, vol_var;
    long long vol_n;
    bool found;
} vstate;

static void grab_state(void *ud, int32_t partition, const char *key, size_t key_len,
                       const char *val, size_t val_len) {
    vstate *v = ud;
    (void)partition;
    if (!val || key_len == 0 || key[0] == '|') return;
    json_t *j = json_loadb(val, val_len, 0, NULL);
    assert_non_null(j);
    v->ref = json_number_value(json_object_get(j, "ref"));
    v->ema = json_number_value(json_object_get(j, "ema"));
    v->vol_mean = json_number_value(json_object_get(j, "vol_mean"));
    v->vol_var = json_number_value(json_object_get(j, "vol_var"));
    v->vol_n = json_integer_value(json_object_get(j, "vol_n"));
    v->found = true;
    json_decref(j);
}

static vstate value_state(h *x) {
    vstate v = {0};
    iv_engine_flush_dirty(x->e, grab_state, &v);
    assert_true(v.found);
    return v;
}

/* After a clean stream, a bad tick must not move the value state its codes hold
 * (price: reference and EMA; volume: the log-volume baseline), and the following good
 * ticks must be clean. */
static void bad_tick_leaves_values_alone(const char *bad_price, const char *bad_vol, int64_t bad_dt,
                                         const char *want_bad, bool holds_price, bool holds_volume,
                                         const char *want_next) {
    h b;
    h_init(&b, false);
    char price[32], vol[32];
    int64_t ts = T0;
    long long id = 1;
    for (int i = 0; i < 30; i++, ts += 10, id++) {
        snprintf(price, sizeof(price), "%.2f", 100 + (i % 5) * 0.1);
        snprintf(vol, sizeof(vol), "%.2f", 1 + (i % 3) * 0.2);
        EXPECT(&b, trade("binance", "BTC/USDT", ts, price, vol, id), ts, "");
    }
    vstate before = value_state(&b);
    EXPECT(&b, trade("binance", "BTC/USDT", ts + bad_dt, bad_price, bad_vol, id++), ts, want_bad);
    vstate after = value_state(&b);
    if (holds_price) assert_true(before.ref == after.ref && before.ema == after.ema);
    if (holds_volume) {
        assert_true(before.vol_mean == after.vol_mean && before.vol_var == after.vol_var);
        assert_int_equal(before.vol_n, after.vol_n);
    }
    /* the next good ticks, with the next trade ids, are clean (after a flagged move the
     * first says, with weight 0, that the move reverted) */
    for (int i = 0; i < 5; i++, ts += 10, id++) {
        EXPECT(&b, trade("binance", "BTC/USDT", ts + 20, "100.2", "1.2", id), ts + 20,
               i == 0 ? want_next : "");
        assert_true(b.res.score == 1.0);
    }
    h_free(&b);
}

static void test_bad_ticks_leave_value_state_and_next_verdict_unchanged(void **state) {
    (void)state;
    /* a 30% spike */
    bad_tick_leaves_values_alone("130", "1.1", 5, "EXTREME_PRICE_MOVE,PRICE_ANOMALY", true, false,
                                 "SPIKE_REVERTED");
    bad_tick_leaves_values_alone("-100", "1.1", 5, "INVALID_PRICE_NEGATIVE", true, false, "");
    bad_tick_leaves_values_alone("0", "1.1", 5, "ZERO_PRICE", true, false, "");
    bad_tick_leaves_values_alone("100.1", "-1", 5, "INVALID_VOLUME_NEGATIVE", false, true, "");
    bad_tick_leaves_values_alone("100.1", "1.1", -50, "OUT_OF_ORDER", true, true, "");
    bad_tick_leaves_values_alone("100.1", "500000", 5, "EXTREME_VOLUME_SPIKE,NOTIONAL_OUTLIER",
                                 false, true, "");
    bad_tick_leaves_values_alone("100.1", "1.1", -40000, "OUT_OF_ORDER,STALE_DATA", true, true, "");
    bad_tick_leaves_values_alone("100.1", "1.1", 60000, "LARGE_GAP,FUTURE_TIMESTAMP", true, true,
                                 "");
}

static void test_level_shift_across_exchanges_flags_only_first_tick_of_each(void **state) {
    (void)state;
    h x;
    h_init(&x, true);
    static const char *ex[] = {"binance", "kraken", "bybit", "coinbase", "deribit"};
    long long id[5] = {1, 1, 1, 1, 1};
    int64_t ts = T0;
    char price[32];
    for (int r = 0; r < 10; r++)
        for (int e = 0; e < 5; e++, ts += 7) {
            snprintf(price, sizeof(price), "%.2f", 100 + e * 0.01);
            EXPECT(&x, btc(ex[e], ts, price, id[e]++), -1, "");
        }
    /* everything jumps 8%; exchanges report in a shuffled order, some twice in a row */
    static const int order[] = {2, 2, 0, 4, 1, 1, 3, 0, 2, 3, 4, 1, 0, 3, 4, 2, 0, 1};
    bool seen[5] = {false};
    int flagged = 0;
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++, ts += 7) {
        int e = order[i];
        snprintf(price, sizeof(price), "%.2f", 108 + e * 0.01 + (double)(i % 3) * 0.02);
        const char *got = h_run(&x, btc(ex[e], ts, price, id[e]++), -1);
        if (!seen[e]) {
            if (!strstr(got, "PRICE_MOVE")) {
                print_error("first tick of %s after the jump: [%s]\n", ex[e], got);
                fail();
            }
            flagged++;
        } else if (x.res.score != 1.0) {
            print_error("later tick %zu of %s after the jump: [%s]\n", i, ex[e], got);
            fail();
        }
        seen[e] = true;
    }
    assert_int_equal(flagged, 5);
    h_free(&x);
}

/* ---- events ----------------------------------------------------------------------------- */

static void test_feed_silence_and_resume_events(void **state) {
    (void)state;
    h x;
    h_init(&x, true);
    EXPECT(&x, btc("binance", T0, "100", 1), -1, "");
    EXPECT(&x, btc("kraken", T0 + 10, "100", 1), -1, "");
    /* kraken goes on, binance is silent */
    for (int i = 1; i <= 70; i++)
        EXPECT(&x, btc("kraken", T0 + 10 + i * 1000, "100", 1 + i), -1, "");
    /* at watermark T0 + 60010 binance was 60010 ms behind: one event, not repeated */
    assert_int_equal(x.n_events, 1);
    json_t *ev = json_loadb(x.events.data, x.events.len, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "type")), "feed_silence");
    assert_string_equal(json_string_value(json_object_get(ev, "exchange")), "binance");
    assert_string_equal(json_string_value(json_object_get(ev, "symbol")), "BTC/USDT");
    assert_int_equal(json_integer_value(json_object_get(ev, "last_timestamp")), T0);
    assert_int_equal(json_integer_value(json_object_get(ev, "watermark")), T0 + 60010);
    assert_int_equal(json_integer_value(json_object_get(ev, "silent_ms")), 60010);
    char id[128];
    snprintf(id, sizeof(id), "feed_silence:binance:BTC/USDT:%lld", (long long)T0);
    assert_string_equal(json_string_value(json_object_get(ev, "event_id")), id);
    json_decref(ev);
    /* binance speaks again */
    hm_buf_reset(&x.events);
    EXPECT(&x, btc("binance", T0 + 70500, "100", 2), -1, "LARGE_GAP");
    assert_int_equal(x.n_events, 2);
    ev = json_loadb(x.events.data, x.events.len, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "type")), "feed_resumed");
    assert_int_equal(json_integer_value(json_object_get(ev, "gap_ms")), 70500);
    assert_int_equal(json_integer_value(json_object_get(ev, "timestamp")), T0 + 70500);
    snprintf(id, sizeof(id), "feed_resumed:binance:BTC/USDT:%lld", (long long)T0 + 70500);
    assert_string_equal(json_string_value(json_object_get(ev, "event_id")), id);
    json_decref(ev);
    assert_int_equal(iv_engine_stats(x.e)->events, 2);
    /* neighbour: a key 59 s behind is not silent */
    EXPECT(&x, btc("binance", T0 + 71010, "100", 3), -1, "");
    for (int i = 1; i <= 59; i++)
        EXPECT(&x, btc("kraken", T0 + 71010 + i * 1000, "100", 71 + i), -1, "");
    assert_int_equal(x.n_events, 2);
    h_free(&x);
}

static void test_idle_key_is_reset_after_the_ttl(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    x.cfg.checks.state_ttl_ms = 100000;
    h_apply(&x);
    EXPECT(&x, btc("binance", T0, "100", 50), T0, "");
    /* within the TTL the key remembers: a gap and a price move */
    EXPECT(&x, btc("binance", T0 + 100000, "120", 60), T0 + 100000,
           "LARGE_GAP,TRADE_ID_GAP,EXTREME_PRICE_MOVE,PRICE_ANOMALY");
    /* past the TTL it is new: nothing to compare with */
    EXPECT(&x, btc("binance", T0 + 200001, "150", 10), T0 + 200001, "");
    EXPECT(&x, btc("binance", T0 + 200002, "150", 11), T0 + 200002, "");
    h_free(&x);
}

/* ---- scores and weights ----------------------------------------------------------------- */

static void test_score_subtracts_weights_and_clamps_at_zero(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, trade("binance", "BTC/USDT", T0, "-1", "-1", -1), T0,
           "INVALID_PRICE_NEGATIVE,INVALID_VOLUME_NEGATIVE");
    assert_true(fabs(x.res.score - 0.55) < 1e-12);
    assert_non_null(strstr(x.out.data, "\"quality_score\":0.550"));
    /* many problems at once: clamped at 0, not negative */
    EXPECT(&x, "{\"type\":\"x\",\"timestamp\":\"?\",\"symbol\":1,\"exchange\":2,\"price\":{}}", -1,
           "INVALID_TYPE,INVALID_TIMESTAMP,INVALID_SYMBOL,INVALID_EXCHANGE,INVALID_PRICE,"
           "MISSING_VOLUME");
    assert_true(x.res.score == 0);
    assert_non_null(strstr(x.out.data, "\"quality_score\":0.000"));
    const iv_stats *st = iv_engine_stats(x.e);
    assert_int_equal(st->flagged, 1);
    assert_int_equal(st->rejected, 1);
    assert_int_equal(st->issues[HM_Q_INVALID_PRICE], 1);
    h_free(&x);
}

static void test_weights_from_config_change_the_score(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    EXPECT(&x, trade("binance", "BTC/USDT", T0, "1", "1", -1), T0 + 20000, "DELAYED_DATA");
    assert_true(fabs(x.res.score - 0.95) < 1e-12);
    x.cfg.checks.weights[HM_Q_DELAYED_DATA] = 0.4;
    h_apply(&x);
    EXPECT(&x, trade("binance", "ETH/USDT", T0, "1", "1", -1), T0 + 20000, "DELAYED_DATA");
    assert_true(fabs(x.res.score - 0.6) < 1e-12);
    x.cfg.checks.weights[HM_Q_DELAYED_DATA] = 0;
    h_apply(&x);
    EXPECT(&x, trade("binance", "SOL/USDT", T0, "1", "1", -1), T0 + 20000, "DELAYED_DATA");
    assert_true(x.res.score == 1.0);
    h_free(&x);
}

/* ---- output ----------------------------------------------------------------------------- */

static void test_output_fields_in_order_with_values(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    const char *in = "{\"exchange\":\"Kraken\",\"price\":\"37000.50\",\"volume\":\"+0.25\","
                     "\"timestamp\":\"2023-11-14T22:13:20.123Z\",\"symbol\":\"BTC/USDT\","
                     "\"trade_id\":\"T-9\",\"side\":\"Buy\",\"extra\":[1,{\"a\":null}]}";
    EXPECT(&x, in, T0 + 123, "");
    static const char *order[] = {"symbol",        "exchange", "timestamp",   "price",
                                  "volume",        "trade_id", "side",        "type",
                                  "quality_score", "issues",   "issue_count", "processed_at",
                                  "original_data"};
    const char *prev = x.out.data;
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        char key[32];
        snprintf(key, sizeof(key), "\"%s\":", order[i]);
        const char *at = strstr(x.out.data, key);
        assert_non_null(at);
        assert_true(at >= prev);
        prev = at;
    }
    assert_int_equal(json_object_size(x.rec), 13);
    assert_string_equal(json_string_value(field(&x, "symbol")), "BTC/USDT");
    assert_string_equal(json_string_value(field(&x, "exchange")), "kraken");
    assert_int_equal(json_integer_value(field(&x, "timestamp")), T0 + 123);
    /* "37000.50" is a JSON number as it stands: copied; "+0.25" is not: re-formatted */
    assert_non_null(strstr(x.out.data, "\"price\":37000.50,"));
    assert_non_null(strstr(x.out.data, "\"volume\":0.25,"));
    assert_string_equal(json_string_value(field(&x, "trade_id")), "T-9");
    assert_string_equal(json_string_value(field(&x, "side")), "buy");
    assert_string_equal(json_string_value(field(&x, "type")), "trade");
    assert_string_equal(json_string_value(field(&x, "processed_at")), "2023-11-14T22:13:20.000Z");
    /* original_data is the object itself, byte for byte */
    assert_non_null(strstr(x.out.data, in));
    assert_true(json_is_object(field(&x, "original_data")));
    assert_int_equal(x.res.key_len, 8);
    assert_memory_equal(x.res.key, "BTC/USDT", 8);
    h_free(&x);
}

static void test_nan_token_record_embeds_original_as_string(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    const char *in = "{\"timestamp\":1,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\","
                     "\"price\":NaN,\"volume\":1}";
    EXPECT(&x, in, 1, "NON_FINITE_PRICE");
    assert_string_equal(json_string_value(field(&x, "original_data")), in);
    /* so is a literal beyond a double's range */
    in = "{\"timestamp\":2,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\","
         "\"price\":1,\"volume\":-1e999}";
    EXPECT(&x, in, 2, "NON_FINITE_VOLUME");
    assert_string_equal(json_string_value(field(&x, "original_data")), in);
    /* neighbour: "NaN" as a string is strict JSON and stays an object */
    in = "{\"timestamp\":3,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\","
         "\"price\":\"NaN\",\"volume\":1}";
    EXPECT(&x, in, 3, "NON_FINITE_PRICE");
    assert_true(json_is_object(field(&x, "original_data")));
    h_free(&x);
}

static void test_awkward_strings_stay_valid_json(void **state) {
    (void)state;
    h x;
    h_init(&x, false);
    /* escapes make identifiers invalid but must not break the output */
    const char *in = "{\"timestamp\":1,\"symbol\":\"BTC\\u002fUSDT\",\"exchange\":\"bin\\\"ance\","
                     "\"price\":1,\"volume\":1,\"trade_id\":\"a\\nb\",\"x\":\"\\u2028\"}";
    EXPECT(&x, in, 1, "INVALID_SYMBOL,INVALID_EXCHANGE,INVALID_TRADE_ID");
    assert_true(json_is_null(field(&x, "symbol")));
    /* multi-byte UTF-8 in an exchange name is lower-cased byte-wise and kept */
    EXPECT(&x, btc("BÖRSE", 1, "1", -1), 1, "UNKNOWN_EXCHANGE");
    assert_string_equal(json_string_value(field(&x, "exchange")), "bÖrse");
    h_free(&x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults_match_the_brief),
        cmocka_unit_test(test_config_cross_field_rules_name_their_keys),
        cmocka_unit_test(test_config_file_sets_clock_exchanges_and_weights),
        cmocka_unit_test(test_config_sections_mark_thresholds_reloadable_topics_not),
        cmocka_unit_test(test_garbage_is_parse_error_with_string_original_and_no_key),
        cmocka_unit_test(test_truncated_record_error_names_byte_and_field),
        cmocka_unit_test(test_invalid_utf8_is_parse_error_with_replacement_character),
        cmocka_unit_test(test_oversized_record_has_null_original_and_its_length),
        cmocka_unit_test(test_empty_record_is_parse_error),
        cmocka_unit_test(test_invalid_type_is_judged_as_trade),
        cmocka_unit_test(test_timestamp_missing_invalid_and_valid_forms),
        cmocka_unit_test(test_symbol_missing_invalid_and_format),
        cmocka_unit_test(test_exchange_missing_invalid_unknown_and_case),
        cmocka_unit_test(test_trade_id_invalid_forms_and_string_ids),
        cmocka_unit_test(test_side_invalid_and_missing_for_liquidations),
        cmocka_unit_test(test_price_missing_invalid_nonfinite_negative_zero),
        cmocka_unit_test(test_excessive_precision_counts_significant_decimals),
        cmocka_unit_test(test_volume_missing_invalid_nonfinite_negative_zero),
        cmocka_unit_test(test_notional_outlier_above_the_limit_only),
        cmocka_unit_test(test_transfer_fields_and_output),
        cmocka_unit_test(test_out_of_order_and_equal_timestamp_with_ids),
        cmocka_unit_test(test_duplicate_timestamp_only_without_trade_ids),
        cmocka_unit_test(test_large_gap_just_above_the_threshold),
        cmocka_unit_test(test_duplicate_trade_id_numeric_and_string),
        cmocka_unit_test(test_trade_id_gap_then_the_sequence_continues),
        cmocka_unit_test(test_trade_id_out_of_order_beyond_the_recent_ring),
        cmocka_unit_test(test_ingest_clock_stale_delayed_future_thresholds),
        cmocka_unit_test(test_event_clock_judges_against_the_symbol_watermark),
        cmocka_unit_test(test_ingest_clock_falls_back_to_event_clock_without_ingest_time),
        cmocka_unit_test(test_future_jump_is_confirmed_by_consecutive_ticks),
        cmocka_unit_test(test_future_ticks_interleaved_with_normal_ones_never_confirm),
        cmocka_unit_test(test_extreme_and_large_price_move_thresholds),
        cmocka_unit_test(test_price_anomaly_against_the_ema),
        cmocka_unit_test(test_cross_exchange_deviation_needs_fresh_peers),
        cmocka_unit_test(test_spike_then_revert_is_informational),
        cmocka_unit_test(test_level_confirmed_by_the_keys_own_ticks),
        cmocka_unit_test(test_volume_spikes_after_warmup),
        cmocka_unit_test(test_interleaved_exchanges_with_skewed_clocks_raise_nothing_event_clock),
        cmocka_unit_test(test_interleaved_exchanges_with_skewed_clocks_raise_nothing_ingest_clock),
        cmocka_unit_test(test_bad_ticks_leave_value_state_and_next_verdict_unchanged),
        cmocka_unit_test(test_level_shift_across_exchanges_flags_only_first_tick_of_each),
        cmocka_unit_test(test_feed_silence_and_resume_events),
        cmocka_unit_test(test_idle_key_is_reset_after_the_ttl),
        cmocka_unit_test(test_score_subtracts_weights_and_clamps_at_zero),
        cmocka_unit_test(test_weights_from_config_change_the_score),
        cmocka_unit_test(test_output_fields_in_order_with_values),
        cmocka_unit_test(test_nan_token_record_embeds_original_as_string),
        cmocka_unit_test(test_awkward_strings_stay_valid_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
