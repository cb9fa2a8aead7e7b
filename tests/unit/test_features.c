// uses: services/feature-engine
/*
 * test_features.c: unit tests of the feature-engine's logic (services/feature-engine:
 * market.c, features.c, engine.c): every window edge (empty, one tick, a tick leaving
 * the window exactly at its boundary, out of order within the lateness bound, late
 * beyond it, a record below the quality floor), the formulas against values worked out
 * by hand, the interval emission, the three causal events and the bounds on memory.
 * Records are quality records written as JSON and decoded with hm_quality_decode, as
 * the service reads them. Pure: no Kafka, no Redis, no clock.
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

#include "engine.h"
#include "feature_set.h"
#include "market.h"

#define T0 INT64_C(1700000000000) /* a whole second (and minute) */

/* ---- helpers ---------------------------------------------------------------------------- */

typedef struct captured {
    json_t *features; /* array of features_computed records */
    json_t *events;   /* array of events */
} captured;

static void capture(json_t *into, const char *json, size_t len) {
    json_error_t jerr;
    json_t *v = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v) fail_msg("emitted JSON does not load: %s: %.*s", jerr.text, (int)len, json);
    json_array_append_new(into, v);
}

static void on_features(void *ud, int32_t partition, const char *key, size_t key_len,
                        int64_t interval_end_ms, const char *json, size_t len) {
    (void)interval_end_ms;
    (void)partition;
    (void)key;
    (void)key_len;
    capture(((captured *)ud)->features, json, len);
}

static void on_event(void *ud, int32_t partition, const char *key, size_t key_len, const char *json,
                     size_t len) {
    (void)partition;
    (void)key;
    (void)key_len;
    capture(((captured *)ud)->events, json, len);
}

typedef struct fixture {
    fe_params p;
    fe_engine *e;
    captured out;
} fixture;

static void fx_init(fixture *f, const fe_params *p) {
    f->p = *p;
    f->out.features = json_array();
    f->out.events = json_array();
    fe_sinks s = {.features = on_features, .event = on_event, .ud = &f->out};
    f->e = fe_engine_new(&f->p, &s);
    assert_non_null(f->e);
}

static void fx_free(fixture *f) {
    fe_engine_free(f->e);
    json_decref(f->out.features);
    json_decref(f->out.events);
}

/* Feed one quality record given as JSON text. */
static void feed_json(fixture *f, int32_t partition, const char *json) {
    hm_quality q;
    hm_decode_err err;
    size_t n = strlen(json);
    char *copy = malloc(n);
    memcpy(copy, json, n);
    if (hm_quality_decode(copy, n, &q, &err) != 0)
        fail_msg("test record does not decode: %s at %zu: %s", err.msg, err.offset, json);
    fe_engine_process(f->e, partition, &q);
    free(copy);
}

/* A trade: price <= 0 writes a null price (the validator did not accept it). */
static void trade(fixture *f, const char *symbol, const char *exchange, int64_t ts, double price,
                  double volume, const char *side, double score) {
    char buf[512], pr[40];
    if (price > 0)
        snprintf(pr, sizeof(pr), "%.17g", price);
    else
        snprintf(pr, sizeof(pr), "null");
    snprintf(buf, sizeof(buf),
             "{\"symbol\":\"%s\",\"exchange\":\"%s\",\"timestamp\":%lld,\"price\":%s,"
             "\"volume\":%.17g,\"trade_id\":null,\"side\":%s%s%s,\"type\":\"trade\","
             "\"quality_score\":%.3f,\"issues\":[],\"issue_count\":0,"
             "\"processed_at\":\"2023-11-14T22:13:21.004Z\",\"original_data\":null}",
             symbol, exchange, (long long)ts, pr, volume, side ? "\"" : "", side ? side : "null",
             side ? "\"" : "", score);
    feed_json(f, 0, buf);
}

static void liquidation(fixture *f, const char *symbol, int64_t ts, double price, double volume,
                        const char *side) {
    char buf[512];
    snprintf(buf, sizeof(buf),
             "{\"symbol\":\"%s\",\"exchange\":\"binance\",\"timestamp\":%lld,\"price\":%.17g,"
             "\"volume\":%.17g,\"trade_id\":null,\"side\":\"%s\",\"type\":\"liquidation\","
             "\"quality_score\":1.000,\"issues\":[],\"issue_count\":0,"
             "\"processed_at\":\"2023-11-14T22:13:21.004Z\",\"original_data\":null}",
             symbol, (long long)ts, price, volume, side);
    feed_json(f, 0, buf);
}

static void transfer(fixture *f, const char *asset, int64_t ts, double amount,
                     const char *tx_hash) {
    char buf[640];
    snprintf(buf, sizeof(buf),
             "{\"symbol\":null,\"exchange\":\"binance\",\"timestamp\":%lld,\"price\":null,"
             "\"volume\":%.17g,\"trade_id\":null,\"side\":null,\"type\":\"transfer\","
             "\"asset\":\"%s\",\"amount\":%.17g,\"from\":\"bc1qwhale\",\"to\":\"bc1qbinance\","
             "\"tx_hash\":%s%s%s,\"quality_score\":1.000,\"issues\":[],\"issue_count\":0,"
             "\"processed_at\":\"2023-11-14T22:13:21.004Z\",\"original_data\":null}",
             (long long)ts, amount, asset, amount, tx_hash ? "\"" : "", tx_hash ? tx_hash : "null",
             tx_hash ? "\"" : "");
    feed_json(f, 0, buf);
}

static fe_params defaults(void) {
    fe_params p;
    fe_params_default(&p);
    return p;
}

static const fe_ema_params k_ema = {.fast_s = 30, .slow_s = 300};

static void apply(fe_market *m, int64_t ts, double price, double volume, hm_side side) {
    fe_tick_in t = {.ts_ms = ts,
                    .price = price,
                    .volume = volume,
                    .side = side,
                    .quality = 1.0,
                    .is_price = true};
    fe_market_apply(m, &t, &k_ema);
}

static fe_market *new_market(void) {
    fe_market *m = malloc(sizeof(*m));
    fe_market_init(m);
    return m;
}

/* ---- windows ------------------------------------------------------------------------------ */

static void test_an_empty_market_has_no_price_features_and_zero_counts(void **state) {
    (void)state;
    fe_market *m = new_market();
    fe_features f;
    fe_features_compute(m, T0, &k_ema, &f);
    assert_false(fe_features_has(&f, FE_F_LAST_PRICE));
    assert_false(fe_features_has(&f, FE_F_VWAP_1M));
    assert_false(fe_features_has(&f, FE_F_RETURN_1S));
    assert_false(fe_features_has(&f, FE_F_RVOL_1M));
    assert_false(fe_features_has(&f, FE_F_EMA_FAST));
    assert_false(fe_features_has(&f, FE_F_MEAN_QUALITY_1M));
    assert_false(fe_features_has(&f, FE_F_ZSCORE_5M));
    assert_true(fe_features_has(&f, FE_F_TRADES_1M));
    assert_true(f.v[FE_F_TRADES_1M] == 0);
    assert_true(f.v[FE_F_INTENSITY_1M] == 0);
    free(m);
}

static void test_one_tick_gives_its_price_and_no_return(void **state) {
    (void)state;
    fe_market *m = new_market();
    apply(m, T0 + 500, 100.0, 2.0, HM_SIDE_BUY);
    fe_features f;
    fe_features_compute(m, T0 + 501, &k_ema, &f);
    assert_true(f.v[FE_F_LAST_PRICE] == 100.0);
    assert_true(f.v[FE_F_VWAP_1M] == 100.0);
    assert_true(f.v[FE_F_VWAP_5M] == 100.0);
    assert_true(f.v[FE_F_TRADES_1M] == 1);
    assert_true(f.v[FE_F_VOLUME_1M] == 2.0);
    assert_true(f.v[FE_F_IMBALANCE_1M] == 1.0);
    assert_true(f.v[FE_F_INTENSITY_1M] == 1.0 / 60);
    assert_true(f.v[FE_F_EMA_FAST] == 100.0 && f.v[FE_F_EMA_SLOW] == 100.0);
    assert_true(f.v[FE_F_EMA_SPREAD_BPS] == 0.0);
    assert_true(f.v[FE_F_MEAN_QUALITY_1M] == 1.0 && f.v[FE_F_BAD_TICK_RATIO_1M] == 0.0);
    /* No price a second (or more) before the first one: no return, no volatility. */
    assert_false(fe_features_has(&f, FE_F_RETURN_1S));
    assert_false(fe_features_has(&f, FE_F_RVOL_1M));
    /* One price: no spread of prices, so no z-score. */
    assert_false(fe_features_has(&f, FE_F_ZSCORE_5M));
    assert_int_equal(f.last_trade_ms, T0 + 500);
    free(m);
}

static void test_a_tick_leaves_the_1m_window_exactly_60_s_after_its_second(void **state) {
    (void)state;
    fe_market *m = new_market();
    apply(m, T0 + 999, 100.0, 1.0, HM_SIDE_NONE); /* second T0/1000 */
    fe_features f;
    /* Windows ending at T0 + 60 s (exclusive) hold the seconds T0 .. T0+59: it is in. */
    fe_features_compute(m, T0 + 60000, &k_ema, &f);
    assert_true(f.v[FE_F_TRADES_1M] == 1);
    /* One millisecond later the window is T0+1 .. T0+60: it is out of 1m, still in 5m. */
    fe_features_compute(m, T0 + 60001, &k_ema, &f);
    assert_true(f.v[FE_F_TRADES_1M] == 0);
    assert_false(fe_features_has(&f, FE_F_VWAP_1M));
    assert_true(f.v[FE_F_TRADES_5M] == 1);
    fe_features_compute(m, T0 + 300000, &k_ema, &f);
    assert_true(f.v[FE_F_TRADES_5M] == 1);
    fe_features_compute(m, T0 + 300001, &k_ema, &f);
    assert_true(f.v[FE_F_TRADES_5M] == 0);
    /* The last price outlives the windows (it is the last trade, however old). */
    assert_true(f.v[FE_F_LAST_PRICE] == 100.0);
    free(m);
}

static void test_a_ring_slot_from_an_older_lap_counts_as_empty(void **state) {
    (void)state;
    fe_market *m = new_market();
    apply(m, T0, 100.0, 1.0, HM_SIDE_NONE);
    /* FE_BUCKETS seconds later the same slot serves a new second: the old bucket must
     * neither be counted nor leak into the new one. */
    apply(m, T0 + FE_BUCKETS * 1000, 200.0, 3.0, HM_SIDE_NONE);
    fe_features f;
    fe_features_compute(m, T0 + FE_BUCKETS * 1000 + 1, &k_ema, &f);
    assert_true(f.v[FE_F_TRADES_5M] == 1);
    assert_true(f.v[FE_F_VOLUME_5M] == 3.0);
    assert_true(f.v[FE_F_VWAP_5M] == 200.0);
    free(m);
}

static void test_out_of_order_within_a_second_keeps_the_latest_timestamp_as_close(void **state) {
    (void)state;
    fe_market *m = new_market();
    apply(m, T0 + 10500, 101.0, 1.0, HM_SIDE_BUY);
    apply(m, T0 + 10200, 99.0, 1.0, HM_SIDE_SELL); /* older, same second */
    fe_features f;
    fe_features_compute(m, T0 + 10501, &k_ema, &f);
    assert_true(f.v[FE_F_LAST_PRICE] == 101.0); /* the latest by timestamp, not arrival */
    assert_true(f.v[FE_F_TRADES_1M] == 2);
    assert_true(f.v[FE_F_VWAP_1M] == 100.0);
    assert_true(f.v[FE_F_IMBALANCE_1M] == 0.0);
    double p;
    assert_true(fe_market_price_at(m, (T0 + 10500) / 1000, &p));
    assert_true(p == 101.0);
    free(m);
}

static void test_returns_look_back_to_the_last_price_at_or_before_the_window_start(void **state) {
    (void)state;
    fe_market *m = new_market();
    apply(m, T0, 100.0, 1.0, HM_SIDE_NONE);
    apply(m, T0 + 5000, 110.0, 1.0, HM_SIDE_NONE);
    apply(m, T0 + 3600 * 1000 + 200, 121.0, 1.0, HM_SIDE_NONE);
    fe_features f;
    fe_features_compute(m, T0 + 3600 * 1000 + 201, &k_ema, &f);
    /* 1 h back from second T0+3600 is second T0: 100. */
    assert_float_equal(f.v[FE_F_RETURN_1H], log(121.0 / 100.0), 1e-15);
    /* 5 min back, the last price at or before it is the one at T0+5 s: 110. */
    assert_float_equal(f.v[FE_F_RETURN_5M], log(121.0 / 110.0), 1e-15);
    assert_float_equal(f.v[FE_F_RETURN_1S], log(121.0 / 110.0), 1e-15);
    /* One second short of an hour of history: no 1 h return. */
    fe_market *n = new_market();
    apply(n, T0 + 1000, 100.0, 1.0, HM_SIDE_NONE);
    apply(n, T0 + 3600 * 1000, 121.0, 1.0, HM_SIDE_NONE);
    fe_features_compute(n, T0 + 3600 * 1000 + 1, &k_ema, &f);
    assert_false(fe_features_has(&f, FE_F_RETURN_1H));
    assert_true(fe_features_has(&f, FE_F_RETURN_5M));
    free(m);
    free(n);
}

static void test_realized_vol_is_the_root_of_summed_squared_second_returns(void **state) {
    (void)state;
    fe_market *m = new_market();
    const double px[] = {100, 101, 99, 99, 102};
    for (int i = 0; i < 5; i++) {
        apply(m, T0 + i * 1000 + 100, px[i], 1.0, HM_SIDE_NONE);
        apply(m, T0 + i * 1000 + 50, 1.0, 1.0, HM_SIDE_NONE); /* older in its second */
    }
    double want = 0;
    for (int i = 1; i < 5; i++)
        want += pow(log(px[i] / px[i - 1]), 2);
    fe_features f;
    fe_features_compute(m, T0 + 4101, &k_ema, &f);
    assert_float_equal(f.v[FE_F_RVOL_1M], sqrt(want), 1e-15);
    assert_float_equal(f.v[FE_F_RVOL_5M], sqrt(want), 1e-15);
    free(m);
}

static void test_zscore_uses_the_population_sd_of_the_5m_trades(void **state) {
    (void)state;
    fe_market *m = new_market();
    const double px[] = {100, 102, 104, 106};
    for (int i = 0; i < 4; i++)
        apply(m, T0 + i * 20000, px[i], 1.0, HM_SIDE_NONE);
    double mean = 103, var = (9 + 1 + 1 + 9) / 4.0;
    fe_features f;
    fe_features_compute(m, T0 + 60001, &k_ema, &f);
    assert_float_equal(f.v[FE_F_ZSCORE_5M], (106 - mean) / sqrt(var), 1e-12);
    free(m);
}

static void test_zscore_keeps_its_precision_at_btc_prices(void **state) {
    (void)state;
    fe_market *m = new_market();
    /* Prices near 4e4 a cent apart: sums of squares (1.6e9) would cancel to noise. */
    for (int i = 0; i < 200; i++)
        apply(m, T0 + i * 1000, 40000.0 + (i % 2) * 0.01, 1.0, 0);
    fe_features f;
    fe_features_compute(m, T0 + 199 * 1000 + 1, &k_ema, &f);
    /* 100 at 40000, 100 at 40000.01: mean 40000.005, sd 0.005, last 40000.01: z = 1. */
    assert_float_equal(f.v[FE_F_ZSCORE_5M], 1.0, 1e-6);
    free(m);
}

static void test_ema_folds_one_close_per_second_with_time_decay(void **state) {
    (void)state;
    fe_market *m = new_market();
    apply(m, T0, 100.0, 1.0, HM_SIDE_NONE);
    apply(m, T0 + 10000, 110.0, 1.0, HM_SIDE_NONE);
    apply(m, T0 + 10500, 120.0, 1.0, HM_SIDE_NONE); /* the close of second +10 */
    double fast, slow;
    assert_true(fe_market_ema(m, &k_ema, &fast, &slow));
    /* Second +10's close (120) folded onto 100 after 10 s. */
    assert_float_equal(fast, 100 + (1 - exp(-10.0 / 30)) * 20, 1e-12);
    assert_float_equal(slow, 100 + (1 - exp(-10.0 / 300)) * 20, 1e-12);
    free(m);
}

/* ---- the engine: floor, lateness, intervals -------------------------------------------- */

static json_t *only(json_t *arr, size_t want) {
    assert_int_equal(json_array_size(arr), want);
    return json_array_get(arr, want - 1);
}

static double feat(json_t *rec, const char *exchange, const char *key) {
    json_t *obj = exchange ? json_object_get(json_object_get(rec, "exchanges"), exchange)
                           : json_object_get(rec, "features");
    assert_non_null(obj);
    json_t *v = json_object_get(obj, key);
    assert_non_null(v);
    if (json_is_null(v)) return NAN;
    return json_number_value(v);
}

static void test_a_record_below_the_quality_floor_counts_only_in_quality_features(void **s) {
    (void)s;
    fixture f;
    fe_params p = defaults();
    fx_init(&f, &p);
    trade(&f, "BTC/USDT", "binance", T0 + 100, 100.0, 1.0, "buy", 1.0);
    trade(&f, "BTC/USDT", "binance", T0 + 200, 500.0, 9.0, "buy", 0.5);   /* below 0.7 */
    trade(&f, "BTC/USDT", "binance", T0 + 1100, 100.0, 1.0, "sell", 1.0); /* closes T0's second */
    json_t *r = only(f.out.features, 1);
    assert_int_equal(json_integer_value(json_object_get(r, "interval_start")), T0);
    assert_int_equal(json_integer_value(json_object_get(r, "interval_end")), T0 + 1000);
    assert_true(feat(r, NULL, "last_price") == 100.0);
    assert_true(feat(r, NULL, "trade_count_1m") == 1);
    assert_true(feat(r, NULL, "volume_1m") == 1.0);
    assert_float_equal(feat(r, NULL, "mean_quality_1m"), 0.75, 1e-12);
    assert_float_equal(feat(r, NULL, "bad_tick_ratio_1m"), 0.5, 1e-12);
    assert_float_equal(feat(r, "binance", "bad_tick_ratio_1m"), 0.5, 1e-12);
    assert_int_equal(fe_engine_stats(f.e)->below_floor, 1);
    fx_free(&f);
}

static void test_a_record_older_than_the_lateness_bound_is_counted_not_applied(void **s) {
    (void)s;
    fixture f;
    fe_params p = defaults();
    p.lateness_ms = 2000;
    fx_init(&f, &p);
    trade(&f, "ETH/USDT", "binance", T0 + 10000, 2000.0, 1.0, NULL, 1.0);
    trade(&f, "ETH/USDT", "binance", T0 + 8000, 1999.0, 1.0, NULL, 1.0); /* exactly 2 s: in */
    trade(&f, "ETH/USDT", "binance", T0 + 7999, 1998.0, 1.0, NULL, 1.0); /* late */
    assert_int_equal(fe_engine_stats(f.e)->late, 1);
    assert_int_equal(fe_engine_stats(f.e)->applied, 2);
    fe_features x;
    assert_int_equal(fe_engine_latest(f.e, "ETH/USDT", NULL, &x), 0);
    assert_true(x.v[FE_F_TRADES_1M] == 2);
    assert_true(x.v[FE_F_LAST_PRICE] == 2000.0);
    fx_free(&f);
}

/* The latest view is computed once per change and shared: a read after a new tick, on
 * the symbol or on one of its exchanges, or after new parameters, sees the change. */
static void test_the_latest_view_follows_every_change_after_a_read(void **s) {
    (void)s;
    fixture f;
    fe_params p = defaults();
    fx_init(&f, &p);
    trade(&f, "BTC/USDT", "binance", T0 + 100, 40000.0, 1.0, NULL, 1.0);
    trade(&f, "BTC/USDT", "kraken", T0 + 200, 40100.0, 1.0, NULL, 1.0);
    fe_features x, k;
    assert_int_equal(fe_engine_latest(f.e, "BTC/USDT", NULL, &x), 0);
    assert_int_equal(fe_engine_latest(f.e, "BTC/USDT", "kraken", &k), 0);
    assert_true(x.v[FE_F_LAST_PRICE] == 40100.0 && k.ticks == 1);
    assert_true(fe_features_has(&x, FE_F_CROSS_SPREAD_BPS));
    double spread = x.v[FE_F_CROSS_SPREAD_BPS];
    trade(&f, "BTC/USDT", "kraken", T0 + 300, 40200.0, 1.0, NULL, 1.0);
    assert_int_equal(fe_engine_latest(f.e, "BTC/USDT", NULL, &x), 0);
    assert_int_equal(fe_engine_latest(f.e, "BTC/USDT", "kraken", &k), 0);
    assert_true(x.v[FE_F_LAST_PRICE] == 40200.0 && x.ticks == 3);
    assert_true(k.v[FE_F_LAST_PRICE] == 40200.0 && k.ticks == 2);
    assert_true(x.v[FE_F_CROSS_SPREAD_BPS] > spread);
    /* binance's own view did not change with kraken's tick, and is still right. */
    assert_int_equal(fe_engine_latest(f.e, "BTC/USDT", "binance", &k), 0);
    assert_true(k.v[FE_F_LAST_PRICE] == 40000.0 && k.ticks == 1);
    /* A fresher-spread bound that leaves binance's price out: no spread any more. */
    p.cross_fresh_ms = 150;
    fe_engine_set_params(f.e, &p);
    assert_int_equal(fe_engine_latest(f.e, "BTC/USDT", NULL, &x), 0);
    assert_false(fe_features_has(&x, FE_F_CROSS_SPREAD_BPS));
    fx_free(&f);
}

static void test_one_record_per_interval_with_ticks_and_none_for_a_quiet_one(void **s) {
    (void)s;
    fixture f;
    fe_params p = defaults();
    p.emit_interval_ms = 5000;
    fx_init(&f, &p);
    trade(&f, "SOL/USDT", "binance", T0 + 100, 50.0, 1.0, NULL, 1.0);
    trade(&f, "SOL/USDT", "binance", T0 + 4999, 51.0, 1.0, NULL, 1.0);
    assert_int_equal(json_array_size(f.out.features), 0); /* the interval is still open */
    trade(&f, "SOL/USDT", "binance", T0 + 5000, 52.0, 1.0, NULL, 1.0); /* closes [0, 5 s) */
    json_t *r = only(f.out.features, 1);
    assert_true(feat(r, NULL, "last_price") == 51.0); /* the closing tick is not in it */
    assert_true(feat(r, NULL, "trade_count_1m") == 2);
    /* [5, 10) had a tick; [10, 15) none; a tick at 17 s closes [5, 10) only. */
    trade(&f, "SOL/USDT", "binance", T0 + 17000, 53.0, 1.0, NULL, 1.0);
    r = only(f.out.features, 2);
    assert_int_equal(json_integer_value(json_object_get(r, "interval_end")), T0 + 10000);
    assert_true(feat(r, NULL, "last_price") == 52.0);
    fx_free(&f);
}

static void test_features_per_exchange_and_across_with_the_spread(void **s) {
    (void)s;
    fixture f;
    fe_params p = defaults();
    fx_init(&f, &p);
    trade(&f, "BTC/USDT", "binance", T0 + 100, 40000.0, 1.0, "buy", 1.0);
    trade(&f, "BTC/USDT", "coinbase", T0 + 200, 40040.0, 3.0, "sell", 1.0);
    trade(&f, "BTC/USDT", "binance", T0 + 1000, 40010.0, 1.0, "buy", 1.0);
    json_t *r = only(f.out.features, 1);
    assert_true(feat(r, NULL, "last_price") == 40040.0); /* the latest across exchanges */
    assert_true(feat(r, "binance", "last_price") == 40000.0);
    assert_true(feat(r, "coinbase", "last_price") == 40040.0);
    assert_float_equal(feat(r, NULL, "vwap_1m"), (40000.0 + 3 * 40040.0) / 4, 1e-9);
    assert_float_equal(feat(r, NULL, "buy_sell_imbalance_1m"), (1.0 - 3.0) / 4, 1e-12);
    assert_float_equal(feat(r, NULL, "cross_exchange_spread_bps"), 40.0 / 40020.0 * 1e4, 1e-9);
    assert_true(isnan(feat(r, "binance", "cross_exchange_spread_bps")));
    /* The latest view has both exchanges, in name order, and loads as JSON. */
    hm_buf b = {0};
    assert_int_equal(fe_engine_latest_json(f.e, "BTC/USDT", &b), 0);
    json_t *l = json_loadb(b.data, b.len, 0, NULL);
    assert_non_null(l);
    assert_int_equal(json_integer_value(json_object_get(l, "timestamp")), T0 + 1000);
    assert_true(feat(l, "binance", "last_price") == 40010.0);
    json_decref(l);
    hm_buf_free(&b);
    fe_features x;
    assert_int_equal(fe_engine_latest(f.e, "BTC/USDT", "kraken", &x), -ENOENT);
    assert_int_equal(fe_engine_latest(f.e, "DOGE/USDT", NULL, &x), -ENOENT);
    fx_free(&f);
}

static void test_an_exchange_too_stale_is_left_out_of_the_spread(void **s) {
    (void)s;
    fixture f;
    fe_params p = defaults();
    p.cross_fresh_ms = 10000;
    fx_init(&f, &p);
    trade(&f, "BTC/USDT", "kraken", T0, 39000.0, 1.0, NULL, 1.0);
    trade(&f, "BTC/USDT", "binance", T0 + 10500, 40000.0, 1.0, NULL, 1.0);
    trade(&f, "BTC/USDT", "binance", T0 + 11000, 40000.0, 1.0, NULL, 1.0);
    json_t *r = only(f.out.features, 2);
    assert_true(isnan(feat(r, NULL, "cross_exchange_spread_bps")));
    fx_free(&f);
}

/* ---- events -------------------------------------------------------------------------------- */

static void test_a_price_movement_fires_once_per_crossing_and_rearms(void **s) {
    (void)s;
    fixture f;
    fe_params p = defaults();
    p.moves[0] = (fe_move_rule){60, 0.02};
    p.n_moves = 1;
    fx_init(&f, &p);
    int64_t t = T0;
    trade(&f, "ETH/USDT", "binance", t, 2000.0, 1.0, NULL, 1.0);
    trade(&f, "ETH/USDT", "binance", t += 70000, 1950.0, 1.0, NULL, 1.0); /* -2.5% in 70 s */
    /* No event yet: a minute back from second +0 there was no price. */
    assert_int_equal(json_array_size(f.out.events), 0);
    trade(&f, "ETH/USDT", "binance", t += 1000, 1950.0, 1.0, NULL, 1.0); /* closes +70 s */
    json_t *ev = only(f.out.events, 1);
    assert_string_equal(json_string_value(json_object_get(ev, "type")), "price_movement");
    assert_float_equal(json_number_value(json_object_get(ev, "change_percent")), -2.5, 1e-9);
    assert_int_equal(json_integer_value(json_object_get(ev, "timestamp")), T0 + 71000);
    char id[96];
    snprintf(id, sizeof(id), "price_movement:ETH/USDT:60:%lld", (long long)(T0 + 71000));
    assert_string_equal(json_string_value(json_object_get(ev, "event_id")), id);
    /* Still down 2.5% a second later: no second event. */
    trade(&f, "ETH/USDT", "binance", t += 1000, 1950.0, 1.0, NULL, 1.0);
    assert_int_equal(json_array_size(f.out.events), 1);
    /* Back within 1% (half the threshold) over the window: re-armed; a new fall fires. */
    trade(&f, "ETH/USDT", "binance", t += 61000, 1950.0, 1.0, NULL, 1.0);
    trade(&f, "ETH/USDT", "binance", t += 1000, 1950.0, 1.0, NULL, 1.0);
    trade(&f, "ETH/USDT", "binance", t += 30000, 2000.0, 1.0, NULL, 1.0); /* +2.56% */
    trade(&f, "ETH/USDT", "binance", t += 1000, 2000.0, 1.0, NULL, 1.0);
    ev = only(f.out.events, 2);
    assert_true(json_number_value(json_object_get(ev, "change_percent")) > 2.5);
    fx_free(&f);
}

static void test_a_liquidation_cascade_is_one_event_when_the_episode_goes_quiet(void **s) {
    (void)s;
    fixture f;
    fe_params p = defaults();
    p.cascade_window_ms = 10000;
    p.cascade_min_count = 5;
    p.cascade_min_notional = 1e12; /* by count only */
    fx_init(&f, &p);
    for (int i = 0; i < 5; i++)
        liquidation(&f, "BTC/USDT", T0 + i * 9000, 40000.0, 10.0, i % 2 ? "buy" : "sell");
    assert_int_equal(json_array_size(f.out.events), 0);
    /* 10 s after the last one the episode is closed by the next record of the symbol. */
    trade(&f, "BTC/USDT", "binance", T0 + 36000 + 10000, 40000.0, 1.0, NULL, 1.0);
    assert_int_equal(json_array_size(f.out.events), 0); /* exactly 10 s: still open */
    trade(&f, "BTC/USDT", "binance", T0 + 36000 + 10001, 40000.0, 1.0, NULL, 1.0);
    json_t *ev = only(f.out.events, 1);
    assert_string_equal(json_string_value(json_object_get(ev, "type")), "liquidation_cascade");
    assert_int_equal(json_integer_value(json_object_get(ev, "count")), 5);
    assert_int_equal(json_integer_value(json_object_get(ev, "buy_count")), 2);
    assert_float_equal(json_number_value(json_object_get(ev, "total_liquidation_value")), 2e6,
                       1e-6);
    assert_string_equal(json_string_value(json_object_get(ev, "severity")), "medium");
    assert_int_equal(json_integer_value(json_object_get(ev, "timestamp")), T0);
    /* Four liquidations are no cascade. */
    for (int i = 0; i < 4; i++)
        liquidation(&f, "BTC/USDT", T0 + 100000 + i * 1000, 40000.0, 1, "sell");
    trade(&f, "BTC/USDT", "binance", T0 + 200000, 40000.0, 1.0, NULL, 1.0);
    assert_int_equal(json_array_size(f.out.events), 1);
    /* Liquidations stay out of the price features. */
    fe_features x;
    assert_int_equal(fe_engine_latest(f.e, "BTC/USDT", NULL, &x), 0);
    assert_true(x.v[FE_F_VOLUME_5M] == 3.0); /* the three trades' volume, no liquidation's */
    fx_free(&f);
}

static void test_a_whale_transfer_above_its_assets_threshold_is_an_event(void **s) {
    (void)s;
    fixture f;
    fe_params p = defaults(); /* BTC: 100 */
    fx_init(&f, &p);
    transfer(&f, "BTC", T0, 99.9, "0xaaa");
    transfer(&f, "DOGE", T0, 1e9, "0xbbb"); /* no rule for DOGE */
    transfer(&f, "btc", T0 + 1, 250.0, "0xccc");
    transfer(&f, "BTC", T0 + 2, 100.0, NULL);
    assert_int_equal(json_array_size(f.out.events), 2);
    json_t *ev = json_array_get(f.out.events, 0);
    assert_string_equal(json_string_value(json_object_get(ev, "type")), "whale_transfer");
    assert_string_equal(json_string_value(json_object_get(ev, "asset")), "BTC");
    assert_true(json_number_value(json_object_get(ev, "amount")) == 250.0);
    assert_string_equal(json_string_value(json_object_get(ev, "to")), "bc1qbinance");
    assert_string_equal(json_string_value(json_object_get(ev, "event_id")), "whale_transfer:0xccc");
    ev = json_array_get(f.out.events, 1);
    char id[96];
    snprintf(id, sizeof(id), "whale_transfer:BTC:%lld:bc1qwhale", (long long)(T0 + 2));
    assert_string_equal(json_string_value(json_object_get(ev, "event_id")), id);
    fx_free(&f);
}

/* ---- bounds and partitions ---------------------------------------------------------------- */

static void test_at_max_symbols_the_symbol_updated_least_recently_makes_room(void **s) {
    (void)s;
    fixture f;
    fe_params p = defaults();
    p.max_symbols = 3;
    fx_init(&f, &p);
    trade(&f, "A/USDT", "binance", T0 + 1000, 1.0, 1.0, NULL, 1.0);
    trade(&f, "B/USDT", "binance", T0 + 1000, 1.0, 1.0, NULL, 1.0);
    trade(&f, "C/USDT", "binance", T0 + 1000, 1.0, 1.0, NULL, 1.0);
    trade(&f, "A/USDT", "binance", T0 + 2000, 1.0, 1.0, NULL, 1.0); /* B: least recent now */
    trade(&f, "D/USDT", "binance", T0 + 3000, 1.0, 1.0, NULL, 1.0);
    assert_int_equal(fe_engine_symbols(f.e), 3);
    assert_int_equal(fe_engine_stats(f.e)->evicted, 1);
    fe_features x;
    assert_int_equal(fe_engine_latest(f.e, "B/USDT", NULL, &x), -ENOENT);
    assert_int_equal(fe_engine_latest(f.e, "A/USDT", NULL, &x), 0);
    fx_free(&f);
}

static void collect_changed(void *ud, const char *symbol) {
    json_array_append_new(ud, json_string(symbol));
}

static void test_changed_symbols_are_handed_out_once_and_partitions_drop(void **s) {
    (void)s;
    fixture f;
    fe_params p = defaults();
    fx_init(&f, &p);
    char buf[512];
    for (int part = 0; part < 2; part++) {
        snprintf(buf, sizeof(buf),
                 "{\"symbol\":\"S%d/USDT\",\"exchange\":\"binance\",\"timestamp\":%lld,"
                 "\"price\":1,\"volume\":1,\"type\":\"trade\",\"quality_score\":1,"
                 "\"issues\":[],\"issue_count\":0,\"processed_at\":\"2023-11-14T22:13:21.004Z\","
                 "\"original_data\":null}",
                 part, (long long)T0);
        feed_json(&f, part, buf);
    }
    json_t *changed = json_array();
    assert_int_equal(fe_engine_take_changed(f.e, collect_changed, changed), 2);
    assert_string_equal(json_string_value(json_array_get(changed, 0)), "S0/USDT");
    assert_int_equal(fe_engine_take_changed(f.e, collect_changed, changed), 0);
    feed_json(&f, 1, buf);
    fe_engine_drop_partition(f.e, 1); /* also leaves the changed list */
    assert_int_equal(fe_engine_take_changed(f.e, collect_changed, changed), 0);
    assert_int_equal(fe_engine_symbols(f.e), 1);
    json_decref(changed);
    fx_free(&f);
}

static void test_parse_errors_and_records_without_exchange_or_score_are_not_applied(void **s) {
    (void)s;
    fixture f;
    fe_params p = defaults();
    fx_init(&f, &p);
    feed_json(&f, 0,
              "{\"symbol\":null,\"exchange\":null,\"timestamp\":null,\"price\":null,"
              "\"volume\":null,\"trade_id\":null,\"side\":null,\"type\":null,"
              "\"quality_score\":0.000,\"issues\":[\"PARSE_ERROR\"],\"issue_count\":1,"
              "\"processed_at\":\"2023-11-14T22:13:21.004Z\",\"error\":\"x\","
              "\"original_data\":\"x\"}");
    feed_json(&f, 0, "{\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"timestamp\":1}");
    feed_json(&f, 0,
              "{\"symbol\":\"BTC/USDT\",\"exchange\":null,\"timestamp\":1,\"quality_score\":1}");
    assert_int_equal(fe_engine_stats(f.e)->untrusted, 1); /* PARSE_ERROR holds everything */
    assert_int_equal(fe_engine_stats(f.e)->unusable, 2);
    assert_int_equal(fe_engine_symbols(f.e), 0);
    fx_free(&f);
}

static void test_a_record_whose_time_or_identity_the_validator_held_is_not_applied(void **s) {
    (void)s;
    fixture f;
    fe_params p = defaults();
    fx_init(&f, &p);
    trade(&f, "BTC/USDT", "binance", T0, 40000.0, 1.0, NULL, 1.0);
    /* A future timestamp scored 0.8 (above the floor): applied, it would move the
     * symbol's clock a day ahead and make every later tick late. */
    feed_json(&f, 0,
              "{\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"timestamp\":1700086400000,"
              "\"price\":40000,\"volume\":1,\"type\":\"trade\",\"quality_score\":0.800,"
              "\"issues\":[\"FUTURE_TIMESTAMP\"],\"issue_count\":1,"
              "\"processed_at\":\"2023-11-14T22:13:21.004Z\",\"original_data\":null}");
    /* A malformed symbol (0.85): applied, it would be a symbol of its own. */
    feed_json(&f, 0,
              "{\"symbol\":\"BTC/\",\"exchange\":\"binance\",\"timestamp\":1700000000500,"
              "\"price\":40000,\"volume\":1,\"type\":\"trade\",\"quality_score\":0.850,"
              "\"issues\":[\"INVALID_SYMBOL_FORMAT\"],\"issue_count\":1,"
              "\"processed_at\":\"2023-11-14T22:13:21.004Z\",\"original_data\":null}");
    trade(&f, "BTC/USDT", "binance", T0 + 1000, 40001.0, 1.0, NULL, 1.0);
    assert_int_equal(fe_engine_stats(f.e)->untrusted, 2);
    assert_int_equal(fe_engine_stats(f.e)->late, 0);
    assert_int_equal(fe_engine_symbols(f.e), 1);
    fe_features x;
    assert_int_equal(fe_engine_latest(f.e, "BTC/USDT", NULL, &x), 0);
    assert_true(x.v[FE_F_LAST_PRICE] == 40001.0 && x.v[FE_F_TRADES_1M] == 2);
    fx_free(&f);
}

static void count_history(void *ud, const fe_history_entry *h) {
    int64_t *ends = ud;
    ends[++ends[0]] = h->interval_end_ms;
}

static void test_history_keeps_the_newest_intervals_and_answers_ranges(void **s) {
    (void)s;
    fixture f;
    fe_params p = defaults();
    p.history_max = 20;
    fx_init(&f, &p);
    for (int i = 0; i <= 50; i++)
        trade(&f, "BTC/USDT", "binance", T0 + i * 1000, 100 + i, 1, 0, 1);
    int64_t ends[64] = {0};
    /* 50 intervals were emitted; the newest 20 are kept, oldest first. */
    assert_int_equal(fe_engine_history(f.e, "BTC/USDT", 0, 0, 100, count_history, ends), 20);
    assert_int_equal(ends[1], T0 + 31000);
    assert_int_equal(ends[20], T0 + 50000);
    /* A range, and a limit that takes the newest of it. */
    memset(ends, 0, sizeof(ends));
    assert_int_equal(
        fe_engine_history(f.e, "BTC/USDT", T0 + 35000, T0 + 44000, 3, count_history, ends), 3);
    assert_int_equal(ends[1], T0 + 42000);
    assert_int_equal(ends[3], T0 + 44000);
    assert_int_equal(fe_engine_history(f.e, "ETH/USDT", 0, 0, 10, count_history, ends), -ENOENT);
    fx_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_empty_market_has_no_price_features_and_zero_counts),
        cmocka_unit_test(test_one_tick_gives_its_price_and_no_return),
        cmocka_unit_test(test_a_tick_leaves_the_1m_window_exactly_60_s_after_its_second),
        cmocka_unit_test(test_a_ring_slot_from_an_older_lap_counts_as_empty),
        cmocka_unit_test(test_out_of_order_within_a_second_keeps_the_latest_timestamp_as_close),
        cmocka_unit_test(test_returns_look_back_to_the_last_price_at_or_before_the_window_start),
        cmocka_unit_test(test_realized_vol_is_the_root_of_summed_squared_second_returns),
        cmocka_unit_test(test_zscore_uses_the_population_sd_of_the_5m_trades),
        cmocka_unit_test(test_zscore_keeps_its_precision_at_btc_prices),
        cmocka_unit_test(test_ema_folds_one_close_per_second_with_time_decay),
        cmocka_unit_test(test_a_record_below_the_quality_floor_counts_only_in_quality_features),
        cmocka_unit_test(test_a_record_older_than_the_lateness_bound_is_counted_not_applied),
        cmocka_unit_test(test_the_latest_view_follows_every_change_after_a_read),
        cmocka_unit_test(test_one_record_per_interval_with_ticks_and_none_for_a_quiet_one),
        cmocka_unit_test(test_features_per_exchange_and_across_with_the_spread),
        cmocka_unit_test(test_an_exchange_too_stale_is_left_out_of_the_spread),
        cmocka_unit_test(test_a_price_movement_fires_once_per_crossing_and_rearms),
        cmocka_unit_test(test_a_liquidation_cascade_is_one_event_when_the_episode_goes_quiet),
        cmocka_unit_test(test_a_whale_transfer_above_its_assets_threshold_is_an_event),
        cmocka_unit_test(test_at_max_symbols_the_symbol_updated_least_recently_makes_room),
        cmocka_unit_test(test_changed_symbols_are_handed_out_once_and_partitions_drop),
        cmocka_unit_test(test_parse_errors_and_records_without_exchange_or_score_are_not_applied),
        cmocka_unit_test(test_a_record_whose_time_or_identity_the_validator_held_is_not_applied),
        cmocka_unit_test(test_history_keeps_the_newest_intervals_and_answers_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
