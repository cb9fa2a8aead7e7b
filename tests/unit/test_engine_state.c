// uses: services/ingest-validator
/*
 * test_engine_state.c: unit tests of the ingest-validator's state handling
 * (services/ingest-validator: state.c and the state half of engine.c): the changelog
 * round trip (an engine restored from what another flushed judges the rest of a stream
 * byte for byte as the original), tombstones, partitions, the max_keys bound (eviction by
 * exchange and recency, NO_STATE, tombstones, the same evictions after a restore), the TTL
 * sweep, and restore errors. Pure: no Kafka, no clock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "engine.h"
#include "himari/quality.h"

#define PA_MS INT64_C(1700000000000)
#define T0    INT64_C(1700000000000)

/* ---- a changelog in memory -------------------------------------------------------------- */

typedef struct clrec {
    int32_t partition;
    char *key;
    size_t key_len;
    char *val; /* NULL: tombstone */
    size_t val_len;
} clrec;

typedef struct clog {
    clrec *r;
    size_t n, cap;
} clog;

static void clog_add(void *ud, int32_t partition, const char *key, size_t key_len, const char *val,
                     size_t val_len) {
    clog *c = ud;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->r = realloc(c->r, c->cap * sizeof(*c->r));
        assert_non_null(c->r);
    }
    clrec *r = &c->r[c->n++];
    r->partition = partition;
    r->key = malloc(key_len + 1);
    memcpy(r->key, key, key_len);
    r->key[key_len] = '\0';
    r->key_len = key_len;
    r->val = NULL;
    r->val_len = 0;
    if (val) {
        r->val = malloc(val_len + 1);
        memcpy(r->val, val, val_len);
        r->val[val_len] = '\0';
        r->val_len = val_len;
        /* every value is a JSON object with a version */
        json_t *j = json_loadb(val, val_len, 0, NULL);
        assert_non_null(j);
        assert_int_equal(json_integer_value(json_object_get(j, "v")), 1);
        json_decref(j);
    }
}

static void clog_free(clog *c) {
    for (size_t i = 0; i < c->n; i++) {
        free(c->r[i].key);
        free(c->r[i].val);
    }
    free(c->r);
    memset(c, 0, sizeof(*c));
}

static size_t clog_count(const clog *c, const char *key, bool tombstone) {
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->r[i].key, key) == 0 && (c->r[i].val == NULL) == tombstone) n++;
    return n;
}

static void restore_all(iv_engine *e, const clog *c) {
    for (size_t i = 0; i < c->n; i++) {
        hm_err err;
        int rc = iv_engine_restore(e, c->r[i].partition, c->r[i].key, c->r[i].key_len, c->r[i].val,
                                   c->r[i].val_len, &err);
        if (rc != 0) {
            print_error("restore %s: %s\n", c->r[i].key, err.msg);
            fail();
        }
    }
}

/* ---- engines and streams ---------------------------------------------------------------- */

static iv_config g_cfg;

static int setup(void **state) {
    (void)state;
    memset(&g_cfg, 0, sizeof(g_cfg));
    hm_err err;
    return iv_config_load(&g_cfg, NULL, &err);
}

static int teardown(void **state) {
    (void)state;
    iv_config_free(&g_cfg);
    return 0;
}

static void on_event(void *ud, int32_t partition, const char *key, size_t key_len, const char *json,
                     size_t json_len) {
    hm_buf *b = ud;
    hm_buf_printf(b, "%d %.*s ", (int)partition, (int)key_len, key);
    hm_buf_append(b, json, json_len);
    hm_buf_putc(b, '\n');
}

static uint64_t g_rng;
static uint64_t rnd(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ULL;
}
static double unit(void) {
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

typedef struct rec {
    char *json;
    int64_t ingest_ms;
    int32_t partition;
} rec;

/*
 * A stream with most of what the state must carry: 3 symbols x 4 exchanges on two
 * partitions, trade-id sequences, bursts, liquidations, price spikes that revert,
 * level shifts, out-of-order, future and stale ticks, duplicates and gaps of trade ids,
 * volume spikes, a feed that goes silent and comes back, and parse errors.
 */
static rec *make_stream(size_t n, uint64_t seed) {
    static const char *ex[] = {"binance", "kraken", "bybit", "coinbase"};
    static const char *sym[] = {"BTC/USDT", "ETH/USDT", "SOL/USDT"};
    const int64_t skew[] = {-300, 100, 250, -120};
    g_rng = seed;
    rec *r = calloc(n, sizeof(*r));
    double truth[3] = {37000, 2000, 60};
    long long next_id[3][4];
    int64_t last_ts[3][4] = {{0}};
    for (int s = 0; s < 3; s++)
        for (int e = 0; e < 4; e++)
            next_id[s][e] = 1000 * (s + 1) + 100000 * e;
    int64_t now = T0;
    char buf[512];
    for (size_t i = 0; i < n; i++) {
        now += (int64_t)(unit() * 30);
        int s = (int)(rnd() % 3), e = (int)(rnd() % 4);
        /* kraken on SOL is silent for about two minutes: it falls silent in the
         * first half of the stream and comes back in the second */
        if (s == 2 && e == 1 && i > n / 5 && i < n / 5 * 3) e = 0;
        truth[s] *= 1 + (unit() - 0.5) * 0.0004;
        if (unit() < 0.0005) truth[s] *= unit() < 0.5 ? 1.08 : 0.92; /* level shift */
        int64_t ts = now + skew[e] + (int64_t)(unit() * 20);
        if (ts < last_ts[s][e]) ts = last_ts[s][e];
        double price = truth[s] * (1 + (unit() - 0.5) * 0.0003);
        double vol = 0.5 + unit();
        long long id = next_id[s][e]++;
        const char *type = "trade";
        double u = unit();
        if (u < 0.01)
            price *= unit() < 0.5 ? 1.2 : 0.8; /* spike */
        else if (u < 0.015)
            ts -= 5000; /* out of order */
        else if (u < 0.018)
            ts += 20000; /* from the future */
        else if (u < 0.020)
            ts -= 45000; /* stale */
        else if (u < 0.025)
            id -= 1; /* duplicate id */
        else if (u < 0.028)
            next_id[s][e] += 50; /* a gap after this one */
        else if (u < 0.033)
            vol *= 500; /* volume spike */
        else if (u < 0.036)
            type = "liquidation";
        else if (u < 0.038)
            price = -price;
        if (ts > last_ts[s][e] && u >= 0.02) last_ts[s][e] = ts;
        int len;
        if (u >= 0.038 && u < 0.040)
            len = snprintf(buf, sizeof(buf),
                           "{\"timestamp\":%lld,\"symbol\":\"%s\",\"price\":", (long long)ts,
                           sym[s]); /* cut short: a parse error */
        else
            len = snprintf(buf, sizeof(buf),
                           "{\"type\":\"%s\",\"timestamp\":%lld,\"symbol\":\"%s\",\"exchange\":"
                           "\"%s\",\"price\":%.6f,\"volume\":%.4f,\"trade_id\":%lld,\"side\":"
                           "\"buy\"}",
                           type, (long long)ts, sym[s], ex[e], price, vol, id);
        r[i].json = malloc((size_t)len + 1);
        memcpy(r[i].json, buf, (size_t)len + 1);
        r[i].ingest_ms = now + (int64_t)(unit() * 50);
        r[i].partition = s == 1 ? 1 : 0; /* ETH on its own partition */
    }
    return r;
}

static void free_stream(rec *r, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(r[i].json);
    free(r);
}

static void run(iv_engine *e, const rec *r, hm_buf *out) {
    iv_input in = {r->json, strlen(r->json), r->ingest_ms, r->partition};
    iv_output res;
    res.json = out;
    iv_engine_process(e, &in, PA_MS, &res);
    hm_buf_putc(out, '\n');
}

/* ---- tests ------------------------------------------------------------------------------ */

static void round_trip(bool event_clock, size_t flush_every) {
    const size_t n = 20000, half = n / 2;
    rec *s = make_stream(n, 0x9E3779B97F4A7C15ULL ^ flush_every ^ (uint64_t)event_clock);
    iv_engine *a = iv_engine_new(&g_cfg.checks, event_clock);
    hm_buf out_a = HM_BUF_INIT, out_b = HM_BUF_INIT, ev_a = HM_BUF_INIT, ev_b = HM_BUF_INIT;
    iv_engine_set_event_sink(a, on_event, &ev_a);
    clog log = {0};
    for (size_t i = 0; i < half; i++) {
        run(a, &s[i], &out_a);
        if ((i + 1) % flush_every == 0) iv_engine_flush_dirty(a, clog_add, &log);
    }
    iv_engine_flush_dirty(a, clog_add, &log);
    assert_true(log.n > 0);
    assert_true(iv_engine_stats(a)->events > 0); /* the silence happened in the first half */

    iv_engine *b = iv_engine_new(&g_cfg.checks, event_clock);
    iv_engine_set_event_sink(b, on_event, &ev_b);
    restore_all(b, &log);
    assert_int_equal(iv_engine_state_keys(b), iv_engine_state_keys(a));
    assert_int_equal(iv_engine_state_keys(a), 12);

    hm_buf_reset(&out_a);
    hm_buf_reset(&ev_a);
    for (size_t i = half; i < n; i++) {
        run(a, &s[i], &out_a);
        run(b, &s[i], &out_b);
    }
    assert_int_equal(out_a.len, out_b.len);
    if (memcmp(out_a.data, out_b.data, out_a.len) != 0) {
        size_t k = 0;
        while (out_a.data[k] == out_b.data[k])
            k++;
        size_t from = k > 300 ? k - 300 : 0;
        print_error("outputs differ at byte %zu:\n%.400s\n---\n%.400s\n", k, out_a.data + from,
                    out_b.data + from);
        fail();
    }
    /* events too (the silenced feed resumes in the second half) */
    assert_true(ev_a.len > 0);
    assert_int_equal(ev_a.len, ev_b.len);
    assert_memory_equal(ev_a.data, ev_b.data, ev_a.len);
    /* and the changelog of the second half */
    clog la = {0}, lb = {0};
    iv_engine_flush_dirty(a, clog_add, &la);
    iv_engine_flush_dirty(b, clog_add, &lb);
    assert_int_equal(la.n, lb.n);
    for (size_t i = 0; i < la.n; i++) {
        assert_string_equal(la.r[i].key, lb.r[i].key);
        assert_string_equal(la.r[i].val, lb.r[i].val);
    }
    clog_free(&la);
    clog_free(&lb);
    clog_free(&log);
    hm_buf_free(&out_a);
    hm_buf_free(&out_b);
    hm_buf_free(&ev_a);
    hm_buf_free(&ev_b);
    iv_engine_free(a);
    iv_engine_free(b);
    free_stream(s, n);
}

/* Process s[0, split) with one engine, restore its changelog into another, then
 * insist that both judge s[split, n) identically, events included. */
static void same_after_restore_ck(const iv_checks *ck, const rec *s, size_t n, size_t split,
                                  bool event_clock) {
    iv_engine *a = iv_engine_new(ck, event_clock);
    hm_buf out_a = HM_BUF_INIT, out_b = HM_BUF_INIT, ev_a = HM_BUF_INIT, ev_b = HM_BUF_INIT;
    iv_engine_set_event_sink(a, on_event, &ev_a);
    clog log = {0};
    for (size_t i = 0; i < split; i++)
        run(a, &s[i], &out_a);
    iv_engine_flush_dirty(a, clog_add, &log);
    iv_engine *b = iv_engine_new(ck, event_clock);
    iv_engine_set_event_sink(b, on_event, &ev_b);
    restore_all(b, &log);
    hm_buf_reset(&out_a);
    hm_buf_reset(&ev_a);
    for (size_t i = split; i < n; i++) {
        run(a, &s[i], &out_a);
        run(b, &s[i], &out_b);
    }
    assert_string_equal(out_a.data, out_b.data);
    assert_string_equal(ev_a.data ? ev_a.data : "", ev_b.data ? ev_b.data : "");
    clog_free(&log);
    hm_buf_free(&out_a);
    hm_buf_free(&out_b);
    hm_buf_free(&ev_a);
    hm_buf_free(&ev_b);
    iv_engine_free(a);
    iv_engine_free(b);
}

static void same_after_restore(const rec *s, size_t n, size_t split, bool event_clock) {
    same_after_restore_ck(&g_cfg.checks, s, n, split, event_clock);
}

static rec mk(const char *ex, int64_t ts, long long id) {
    char buf[256];
    snprintf(buf, sizeof(buf),
             "{\"timestamp\":%lld,\"symbol\":\"BTC/USDT\",\"exchange\":\"%s\",\"price\":100,"
             "\"volume\":1,\"trade_id\":%lld}",
             (long long)ts, ex, id);
    rec r = {strdup(buf), -1, 0};
    return r;
}

static void test_restore_in_the_middle_of_a_future_run(void **state) {
    (void)state;
    rec s[] = {mk("binance", T0, 1),          mk("kraken", T0 + 10, 1),
               mk("binance", T0 + 120000, 2), mk("kraken", T0 + 120100, 2),
               mk("bybit", T0 + 120200, 1),   mk("binance", T0 + 120300, 3)};
    /* the third tick ahead confirms the jump whether or not the engine restarted */
    same_after_restore(s, 6, 4, true);
    same_after_restore(s, 6, 3, true);
    for (size_t i = 0; i < 6; i++)
        free(s[i].json);
}

/* The rhythm travels in the changelog: lulls growing 4, 10, 25, 60, 100 s, each within 3
 * times the longest before it, are lulls, not the future; a restored engine judges the
 * rest alike (with the rhythm lost it would call the next lull the future). */
static void test_restore_keeps_the_symbol_s_rhythm(void **state) {
    (void)state;
    rec s[] = {mk("kraken", T0, 1),          mk("kraken", T0 + 4000, 2),
               mk("kraken", T0 + 8000, 3),   mk("kraken", T0 + 18000, 4),
               mk("kraken", T0 + 43000, 5),  mk("kraken", T0 + 103000, 6),
               mk("kraken", T0 + 203000, 7), mk("kraken", T0 + 204000, 8)};
    for (size_t split = 1; split < 8; split++)
        same_after_restore(s, 8, split, true);
    for (size_t i = 0; i < 8; i++)
        free(s[i].json);
}

static void test_restore_between_two_silence_scans_of_one_second(void **state) {
    (void)state;
    /* binance last spoke at T0 + 500; kraken moves the watermark a second at a time. At
     * T0 + 60000 the scan finds binance 59.5 s behind; at T0 + 60600 it is 60.1 s, but the
     * scan runs once per second of watermark, so the event comes at T0 + 61000, restarted
     * or not */
    rec s[70];
    size_t n = 0;
    s[n++] = mk("binance", T0 + 500, 1);
    for (int i = 0; i <= 60; i++)
        s[n++] = mk("kraken", T0 + 600 + (i == 60 ? 59400 : i * 1000), i + 1);
    s[n++] = mk("kraken", T0 + 60600, 100);
    size_t split = n;
    s[n++] = mk("kraken", T0 + 60700, 101);
    s[n++] = mk("kraken", T0 + 61000, 102);
    s[n++] = mk("binance", T0 + 61500, 2);
    same_after_restore(s, n, split, true);
    for (size_t i = 0; i < n; i++)
        free(s[i].json);
}

static void test_restored_engine_judges_the_rest_byte_for_byte_ingest_clock(void **state) {
    (void)state;
    round_trip(false, 100);
}

static void test_restored_engine_judges_the_rest_byte_for_byte_event_clock(void **state) {
    (void)state;
    round_trip(true, 1000000); /* one flush at the end */
}

static void test_restored_engine_after_many_flushes_event_clock(void **state) {
    (void)state;
    round_trip(true, 7);
}

static void test_flush_emits_each_dirty_key_once_then_nothing(void **state) {
    (void)state;
    iv_engine *e = iv_engine_new(&g_cfg.checks, false);
    hm_buf out = HM_BUF_INIT;
    char in[256];
    for (int i = 0; i < 10; i++) {
        snprintf(in, sizeof(in),
                 "{\"timestamp\":%lld,\"symbol\":\"BTC/USDT\",\"exchange\":\"%s\",\"price\":100,"
                 "\"volume\":1,\"trade_id\":%d}",
                 (long long)T0 + i, i % 2 ? "kraken" : "binance", i);
        rec r = {in, T0 + i, 3};
        run(e, &r, &out);
    }
    clog log = {0};
    iv_engine_flush_dirty(e, clog_add, &log);
    assert_int_equal(log.n, 3); /* the symbol and two keys */
    assert_int_equal(clog_count(&log, "|BTC/USDT", false), 1);
    assert_int_equal(clog_count(&log, "binance|BTC/USDT", false), 1);
    assert_int_equal(clog_count(&log, "kraken|BTC/USDT", false), 1);
    for (size_t i = 0; i < log.n; i++)
        assert_int_equal(log.r[i].partition, 3);
    clog_free(&log);
    iv_engine_flush_dirty(e, clog_add, &log);
    assert_int_equal(log.n, 0);
    /* a liquidation reads the state but changes nothing: nothing to flush */
    snprintf(in, sizeof(in),
             "{\"type\":\"liquidation\",\"timestamp\":%lld,\"symbol\":\"BTC/USDT\",\"exchange\":"
             "\"binance\",\"price\":100,\"volume\":1,\"side\":\"sell\"}",
             (long long)T0 + 20);
    rec r = {in, T0 + 20, 3};
    run(e, &r, &out);
    iv_engine_flush_dirty(e, clog_add, &log);
    assert_int_equal(log.n, 0);
    /* clear_dirty forgets marks without emitting */
    snprintf(in, sizeof(in),
             "{\"timestamp\":%lld,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"price\":100,"
             "\"volume\":1,\"trade_id\":99}",
             (long long)T0 + 30);
    rec r2 = {in, T0 + 30, 3};
    run(e, &r2, &out);
    iv_engine_clear_dirty(e);
    iv_engine_flush_dirty(e, clog_add, &log);
    assert_int_equal(log.n, 0);
    hm_buf_free(&out);
    iv_engine_free(e);
}

/* Judge one record (a trade unless type says otherwise) and insist on its issues, in
 * code-table order; returns how many keys were evicted for it. */
static uint32_t judge(iv_engine *e, int32_t partition, const char *type, const char *ex,
                      const char *sym, int64_t ts, long long id, double price, int64_t ingest_ms,
                      hm_buf *out, const char *want_issues) {
    char in[256];
    snprintf(in, sizeof(in),
             "{\"type\":\"%s\",\"timestamp\":%lld,\"symbol\":\"%s\",\"exchange\":\"%s\","
             "\"price\":%.10g,\"volume\":1,\"trade_id\":%lld,\"side\":\"buy\"}",
             type, (long long)ts, sym, ex, price, id);
    hm_buf_reset(out);
    iv_input inp = {in, strlen(in), ingest_ms, partition};
    iv_output res;
    res.json = out;
    iv_engine_process(e, &inp, PA_MS, &res);
    char got[512] = "";
    for (uint32_t i = 0; i < res.n_issues; i++) {
        if (i) strcat(got, ",");
        strcat(got, hm_qcode_name(res.issues[i]));
    }
    if (strcmp(got, want_issues) != 0) {
        print_error("%s: issues [%s], want [%s]\n", in, got, want_issues);
        fail();
    }
    assert_int_equal(res.evictions != 0, res.evicted_key[0] != '\0');
    return res.evictions;
}

static void tick_at(iv_engine *e, int32_t partition, const char *ex, const char *sym, int64_t ts,
                    long long id, int64_t ingest_ms, hm_buf *out, const char *want_issues) {
    judge(e, partition, "trade", ex, sym, ts, id, 100, ingest_ms, out, want_issues);
}

/* A clean trade at price 100, volume 1, judged at ingest time = its timestamp. */
static void tick(iv_engine *e, int32_t partition, const char *ex, const char *sym, int64_t ts,
                 long long id, hm_buf *out, const char *want_issues) {
    tick_at(e, partition, ex, sym, ts, id, ts, out, want_issues);
}

static void test_sweep_drops_idle_keys_and_flushes_tombstones(void **state) {
    (void)state;
    iv_checks ck = g_cfg.checks;
    ck.state_ttl_ms = 60000;
    iv_engine *e = iv_engine_new(&ck, false);
    hm_buf out = HM_BUF_INIT;
    tick(e, 0, "binance", "BTC/USDT", T0, 1, &out, "");
    tick(e, 0, "kraken", "BTC/USDT", T0, 1, &out, "");
    tick(e, 0, "bybit", "ETH/USDT", T0, 1, &out, "");
    clog log = {0};
    iv_engine_flush_dirty(e, clog_add, &log);
    assert_int_equal(iv_engine_sweep(e), 0);
    /* binance BTC moves on; kraken BTC idles past the TTL */
    tick(e, 0, "bybit", "ETH/USDT", T0 + 30000, 2, &out, "");
    tick(e, 0, "binance", "BTC/USDT", T0 + 40000, 2, &out, "");
    assert_int_equal(iv_engine_sweep(e), 0);
    tick(e, 0, "binance", "BTC/USDT", T0 + 61000, 3, &out, "");
    assert_int_equal(iv_engine_sweep(e), 1);
    assert_int_equal(iv_engine_state_keys(e), 2);
    size_t before = log.n;
    iv_engine_flush_dirty(e, clog_add, &log);
    assert_int_equal(clog_count(&log, "kraken|BTC/USDT", true), 1);
    assert_int_equal(clog_count(&log, "bybit|ETH/USDT", true), 0);
    assert_true(log.n > before);
    /* restoring the whole log gives the swept state */
    iv_engine *b = iv_engine_new(&ck, false);
    restore_all(b, &log);
    assert_int_equal(iv_engine_state_keys(b), 2);
    /* kraken BTC is new in both: its next tick is not compared with the old one */
    tick(e, 0, "kraken", "BTC/USDT", T0 + 60002, 900, &out, "");
    tick(b, 0, "kraken", "BTC/USDT", T0 + 60002, 900, &out, "");
    /* idle is measured against the partition's event time: a symbol that stops
     * trading altogether is forgotten with its keys, and its own symbol record */
    tick(e, 0, "coinbase", "SOL/USDT", T0 + 60002, 1, &out, "");
    tick(e, 0, "binance", "BTC/USDT", T0 + 120003, 4, &out, "");
    assert_int_equal(iv_engine_sweep(e), 3); /* kraken BTC, bybit ETH, coinbase SOL */
    assert_int_equal(iv_engine_state_keys(e), 1);
    iv_engine_flush_dirty(e, clog_add, &log);
    /* a key never flushed alive still gets its (harmless) tombstone */
    assert_int_equal(clog_count(&log, "coinbase|SOL/USDT", true), 1);
    assert_int_equal(clog_count(&log, "|SOL/USDT", true), 1);
    assert_int_equal(clog_count(&log, "bybit|ETH/USDT", true), 1);
    assert_int_equal(clog_count(&log, "|ETH/USDT", true), 1);
    assert_int_equal(clog_count(&log, "|BTC/USDT", true), 0);
    clog_free(&log);
    hm_buf_free(&out);
    iv_engine_free(e);
    iv_engine_free(b);
}

static void test_tombstone_before_recreation_in_one_flush(void **state) {
    (void)state;
    iv_checks ck = g_cfg.checks;
    ck.state_ttl_ms = 1000;
    iv_engine *e = iv_engine_new(&ck, false);
    hm_buf out = HM_BUF_INIT;
    clog log = {0};
    tick(e, 0, "binance", "BTC/USDT", T0, 1, &out, "");
    tick(e, 0, "kraken", "BTC/USDT", T0, 1, &out, "");
    iv_engine_flush_dirty(e, clog_add, &log);
    tick(e, 0, "binance", "BTC/USDT", T0 + 5000, 2, &out, "");
    assert_int_equal(iv_engine_sweep(e), 1); /* kraken */
    tick(e, 0, "kraken", "BTC/USDT", T0 + 5001, 7, &out, "");
    iv_engine_flush_dirty(e, clog_add, &log);
    /* in the log: kraken's tombstone, then its new state */
    size_t tomb = SIZE_MAX, val = SIZE_MAX;
    for (size_t i = 0; i < log.n; i++) {
        if (strcmp(log.r[i].key, "kraken|BTC/USDT") != 0) continue;
        if (log.r[i].val == NULL)
            tomb = i;
        else
            val = i;
    }
    assert_true(tomb != SIZE_MAX && val != SIZE_MAX && tomb < val);
    iv_engine *b = iv_engine_new(&ck, false);
    restore_all(b, &log);
    assert_int_equal(iv_engine_state_keys(b), 2);
    /* the restored kraken key has the new sequence: id 7 is a duplicate there */
    tick(b, 0, "kraken", "BTC/USDT", T0 + 5002, 7, &out, "DUPLICATE_TRADE_ID");
    clog_free(&log);
    hm_buf_free(&out);
    iv_engine_free(e);
    iv_engine_free(b);
}

static void test_drop_partition_forgets_only_that_partition(void **state) {
    (void)state;
    iv_engine *e = iv_engine_new(&g_cfg.checks, false);
    hm_buf out = HM_BUF_INIT;
    tick(e, 0, "binance", "BTC/USDT", T0, 10, &out, "");
    tick(e, 5, "binance", "BTC/USDT", T0, 10, &out, "");
    tick(e, 5, "kraken", "ETH/USDT", T0, 10, &out, "");
    assert_int_equal(iv_engine_state_keys(e), 3);
    iv_engine_drop_partition(e, 5);
    assert_int_equal(iv_engine_state_keys(e), 1);
    iv_engine_drop_partition(e, 42); /* never seen: nothing happens */
    /* partition 5 starts over (no duplicate), partition 0 remembers (duplicate) */
    tick(e, 5, "binance", "BTC/USDT", T0 + 1, 10, &out, "");
    tick(e, 0, "binance", "BTC/USDT", T0 + 1, 10, &out, "DUPLICATE_TRADE_ID");
    /* nothing of the dropped partition is flushed, no tombstones */
    clog log = {0};
    iv_engine_drop_partition(e, 5);
    iv_engine_flush_dirty(e, clog_add, &log);
    for (size_t i = 0; i < log.n; i++) {
        assert_int_equal(log.r[i].partition, 0);
        assert_non_null(log.r[i].val);
    }
    clog_free(&log);
    hm_buf_free(&out);
    iv_engine_free(e);
}

static void test_partitions_keep_separate_state_for_one_symbol(void **state) {
    (void)state;
    iv_engine *e = iv_engine_new(&g_cfg.checks, false);
    hm_buf out = HM_BUF_INIT;
    tick(e, 0, "binance", "BTC/USDT", T0 + 100, 10, &out, "");
    tick(e, 1, "binance", "BTC/USDT", T0, 10, &out, ""); /* not out of order: other partition */
    tick(e, 1, "binance", "BTC/USDT", T0 + 50, 11, &out, "");
    tick(e, 0, "binance", "BTC/USDT", T0 + 50, 11, &out, "OUT_OF_ORDER");
    hm_buf_free(&out);
    iv_engine_free(e);
}

/* ---- the max_keys bound: eviction ------------------------------------------------------ */

static uint64_t evictions_of(const iv_engine *e, const char *exchange) {
    const iv_stats *st = iv_engine_stats(e);
    for (uint32_t i = 0; i < st->n_evictions_by; i++)
        if (strcmp(st->evictions_by[i].exchange, exchange) == 0) return st->evictions_by[i].n;
    return 0;
}

/* n junk symbols J<from>..J<from+n-1>/USDT on exchange ex, one clean trade each. */
static void junk(iv_engine *e, int32_t partition, const char *ex, int from, int n, int64_t ts,
                 hm_buf *out) {
    for (int i = from; i < from + n; i++) {
        char sym[32];
        snprintf(sym, sizeof(sym), "J%d/USDT", i);
        iv_input inp;
        char in[256];
        snprintf(in, sizeof(in),
                 "{\"timestamp\":%lld,\"symbol\":\"%s\",\"exchange\":\"%s\",\"price\":1,"
                 "\"volume\":1,\"trade_id\":1}",
                 (long long)ts, sym, ex);
        inp = (iv_input){in, strlen(in), ts, partition};
        iv_output res;
        hm_buf_reset(out);
        res.json = out;
        iv_engine_process(e, &inp, PA_MS, &res);
    }
}

static void
test_max_keys_is_kept_by_evicting_and_the_tick_that_needed_room_says_no_state(void **state) {
    (void)state;
    iv_checks ck = g_cfg.checks;
    ck.max_keys = 2;
    iv_engine *e = iv_engine_new(&ck, false);
    hm_buf out = HM_BUF_INIT;
    tick(e, 0, "binance", "BTC/USDT", T0 + 100, 10, &out, "");
    tick(e, 0, "kraken", "BTC/USDT", T0 + 100, 10, &out, "");
    /* full: binance and kraken hold one key each, binance's was seen longer ago */
    assert_int_equal(
        judge(e, 0, "trade", "bybit", "BTC/USDT", T0 + 100, 10, 100, T0 + 100, &out, "NO_STATE"),
        1);
    assert_int_equal(iv_engine_state_keys(e), 2);
    assert_int_equal(evictions_of(e, "binance"), 1);
    /* bybit has state: a tick going back and repeating its id is seen as such */
    tick(e, 0, "bybit", "BTC/USDT", T0 + 50, 10, &out, "OUT_OF_ORDER,DUPLICATE_TRADE_ID");
    /* kraken kept its state */
    tick(e, 0, "kraken", "BTC/USDT", T0 + 50, 11, &out, "OUT_OF_ORDER");
    /* binance's was dropped: its next tick starts over (bybit's key, seen before kraken's
     * last tick, makes room) */
    tick(e, 0, "binance", "BTC/USDT", T0 + 50, 10, &out, "NO_STATE");
    assert_int_equal(evictions_of(e, "bybit"), 1);
    /* a liquidation without a key while the partition is full says so too, and evicts
     * nothing (liquidations never create state) */
    assert_int_equal(judge(e, 0, "liquidation", "coinbase", "BTC/USDT", T0 + 60, 1, 100, T0 + 60,
                           &out, "NO_STATE"),
                     0);
    /* field checks and ingest-time freshness still apply */
    tick_at(e, 0, "deribit", "BTC/USDT", T0 + 50, 10, T0 + 40000, &out, "STALE_DATA,NO_STATE");
    assert_int_equal(iv_engine_state_keys(e), 2);
    /* a partition has its own bound */
    tick(e, 1, "bybit", "BTC/USDT", T0, 10, &out, "");
    assert_int_equal(iv_engine_state_keys(e), 3);
    const iv_stats *st = iv_engine_stats(e);
    assert_int_equal(st->evictions, 3);
    assert_int_equal(st->issues[HM_Q_NO_STATE], 4);
    /* informational: the score stays 1 */
    assert_int_equal(st->flagged, 3); /* the two out-of-order ticks and the stale one */
    hm_buf_free(&out);
    iv_engine_free(e);
}

static void
test_junk_filling_the_partition_does_not_silence_the_checks_of_a_later_key(void **state) {
    (void)state;
    iv_checks ck = g_cfg.checks;
    ck.max_keys = 64;
    iv_engine *e = iv_engine_new(&ck, false);
    hm_buf out = HM_BUF_INIT;
    junk(e, 0, "bybit", 0, 64, T0, &out);
    assert_int_equal(iv_engine_state_keys(e), 64);
    /* BTC/USDT starts trading on binance after the junk filled the partition */
    judge(e, 0, "trade", "binance", "BTC/USDT", T0 + 1000, 100, 37000, T0 + 1000, &out, "NO_STATE");
    judge(e, 0, "trade", "binance", "BTC/USDT", T0 + 1001, 101, 37001, T0 + 1001, &out, "");
    judge(e, 0, "trade", "binance", "BTC/USDT", T0 + 1002, 100, 37001, T0 + 1002, &out,
          "DUPLICATE_TRADE_ID");
    judge(e, 0, "trade", "binance", "BTC/USDT", T0 + 900, 102, 37000 * 2.4, T0 + 900, &out,
          "OUT_OF_ORDER,EXTREME_PRICE_MOVE,PRICE_ANOMALY");
    /* more junk on bybit evicts bybit's own keys: BTC/USDT keeps its state though idle */
    junk(e, 0, "bybit", 64, 200, T0 + 1003, &out);
    judge(e, 0, "trade", "binance", "BTC/USDT", T0 + 1004, 101, 37001, T0 + 1004, &out,
          "DUPLICATE_TRADE_ID");
    assert_int_equal(iv_engine_state_keys(e), 64);
    assert_int_equal(evictions_of(e, "bybit"), 201);
    assert_int_equal(evictions_of(e, "binance"), 0);
    hm_buf_free(&out);
    iv_engine_free(e);
}

static void test_one_exchanges_junk_evicts_its_own_keys_not_another_exchanges(void **state) {
    (void)state;
    iv_checks ck = g_cfg.checks;
    ck.max_keys = 10;
    iv_engine *e = iv_engine_new(&ck, false);
    hm_buf out = HM_BUF_INIT;
    static const char *ksyms[] = {"BTC/USDT", "ETH/USDT", "SOL/USDT"};
    for (int i = 0; i < 3; i++)
        tick(e, 0, "kraken", ksyms[i], T0, 1, &out, "");
    junk(e, 0, "binance", 0, 500, T0 + 1, &out);
    /* binance filled the rest and then made room from its own keys only */
    assert_int_equal(iv_engine_state_keys(e), 10);
    assert_int_equal(evictions_of(e, "binance"), 493);
    assert_int_equal(evictions_of(e, "kraken"), 0);
    for (int i = 0; i < 3; i++)
        tick(e, 0, "kraken", ksyms[i], T0 + 2, 1, &out, "DUPLICATE_TRADE_ID");
    /* symbols go with their last key: memory stays bounded by max_keys */
    assert_int_equal(iv_engine_state_symbols(e), 10);
    /* a new kraken key is made room for by binance, which holds the most keys */
    tick(e, 0, "kraken", "ADA/USDT", T0 + 3, 1, &out, "NO_STATE");
    assert_int_equal(evictions_of(e, "binance"), 494);
    for (int i = 0; i < 3; i++)
        tick(e, 0, "kraken", ksyms[i], T0 + 4, 1, &out, "DUPLICATE_TRADE_ID");
    /* once the two hold as many, each new key takes its own exchange's least recently seen */
    tick(e, 0, "kraken", "XRP/USDT", T0 + 5, 1, &out, "NO_STATE");
    assert_int_equal(evictions_of(e, "binance"), 495); /* 5 and 5 now */
    tick(e, 0, "kraken", "DOT/USDT", T0 + 6, 1, &out, "NO_STATE");
    /* ADA/USDT: BTC, ETH and SOL were seen after it */
    assert_int_equal(evictions_of(e, "kraken"), 1);
    assert_int_equal(evictions_of(e, "binance"), 495);
    for (int i = 0; i < 3; i++)
        tick(e, 0, "kraken", ksyms[i], T0 + 8, 1, &out, "DUPLICATE_TRADE_ID");
    hm_buf_free(&out);
    iv_engine_free(e);
}

static void
test_an_idle_key_is_evicted_only_after_as_many_newer_keys_of_its_exchange(void **state) {
    (void)state;
    iv_checks ck = g_cfg.checks;
    ck.max_keys = 8;
    iv_engine *e = iv_engine_new(&ck, false);
    hm_buf out = HM_BUF_INIT;
    tick(e, 0, "binance", "BTC/USDT", T0, 1, &out, "");
    junk(e, 0, "binance", 0, 7, T0 + 1, &out); /* full */
    tick(e, 0, "binance", "BTC/USDT", T0 + 2, 2, &out, "");
    junk(e, 0, "binance", 7, 7, T0 + 3, &out); /* evicts J0..J6, not BTC/USDT */
    tick(e, 0, "binance", "BTC/USDT", T0 + 4, 2, &out, "DUPLICATE_TRADE_ID");
    junk(e, 0, "binance", 14, 8, T0 + 5, &out); /* eight newer keys: BTC/USDT goes too */
    tick(e, 0, "binance", "BTC/USDT", T0 + 6, 2, &out, "NO_STATE");
    assert_int_equal(evictions_of(e, "binance"), 7 + 8 + 1);
    hm_buf_free(&out);
    iv_engine_free(e);
}

static void test_evicted_keys_are_tombstoned_and_a_restore_does_not_bring_them_back(void **state) {
    (void)state;
    iv_checks ck = g_cfg.checks;
    ck.max_keys = 4;
    iv_engine *a = iv_engine_new(&ck, false);
    hm_buf out = HM_BUF_INIT;
    clog log = {0};
    static const char *syms[] = {"A1/USDT", "A2/USDT", "A3/USDT", "A4/USDT", "A5/USDT", "A6/USDT"};
    for (int i = 0; i < 4; i++)
        tick(a, 0, "binance", syms[i], T0 + i, 7, &out, "");
    iv_engine_flush_dirty(a, clog_add, &log);
    size_t first = log.n;
    tick(a, 0, "binance", syms[4], T0 + 10, 7, &out, "NO_STATE"); /* evicts A1 */
    tick(a, 0, "binance", syms[5], T0 + 11, 7, &out, "NO_STATE"); /* evicts A2 */
    iv_engine_flush_dirty(a, clog_add, &log);
    /* tombstones for the evicted keys and their symbols, before the new keys' state */
    clog tail = {log.r + first, log.n - first, 0};
    assert_int_equal(clog_count(&tail, "binance|A1/USDT", true), 1);
    assert_int_equal(clog_count(&tail, "|A1/USDT", true), 1);
    assert_int_equal(clog_count(&tail, "binance|A2/USDT", true), 1);
    assert_int_equal(clog_count(&tail, "|A2/USDT", true), 1);
    assert_int_equal(clog_count(&tail, "binance|A5/USDT", false), 1);
    assert_int_equal(clog_count(&tail, "binance|A3/USDT", true), 0);
    /* a restore of the whole log has the four keys a has, not the evicted ones */
    iv_engine *b = iv_engine_new(&ck, false);
    restore_all(b, &log);
    assert_int_equal(iv_engine_state_keys(b), 4);
    assert_int_equal(iv_engine_state_symbols(b), 4);
    /* A1's old trade id is nothing to either; both evict A3 (the least recently seen) */
    tick(a, 0, "binance", syms[0], T0 + 12, 7, &out, "NO_STATE");
    tick(b, 0, "binance", syms[0], T0 + 12, 7, &out, "NO_STATE");
    tick(a, 0, "binance", syms[3], T0 + 13, 7, &out, "DUPLICATE_TRADE_ID");
    tick(b, 0, "binance", syms[3], T0 + 13, 7, &out, "DUPLICATE_TRADE_ID");
    tick(a, 0, "binance", syms[2], T0 + 14, 7, &out, "NO_STATE");
    tick(b, 0, "binance", syms[2], T0 + 14, 7, &out, "NO_STATE");
    clog_free(&log);
    hm_buf_free(&out);
    iv_engine_free(a);
    iv_engine_free(b);
}

static void test_a_key_restored_without_a_recency_counts_as_least_recently_seen(void **state) {
    (void)state;
    /* changelogs written before keys had a recency ("seen") restore, their keys oldest */
    iv_checks ck = g_cfg.checks;
    ck.max_keys = 2;
    iv_engine *a = iv_engine_new(&ck, false);
    hm_buf out = HM_BUF_INIT;
    tick(a, 0, "binance", "A1/USDT", T0, 1, &out, "");
    tick(a, 0, "binance", "A2/USDT", T0 + 1, 1, &out, "");
    tick(a, 0, "binance", "A1/USDT", T0 + 2, 2, &out, ""); /* A1 the most recently seen */
    clog log = {0};
    iv_engine_flush_dirty(a, clog_add, &log);
    for (size_t i = 0; i < log.n; i++) {
        if (strcmp(log.r[i].key, "binance|A1/USDT") != 0) continue;
        char *seen = strstr(log.r[i].val, ",\"seen\":");
        assert_non_null(seen);
        char *end = strchr(seen + 1, '}');
        memmove(seen, end, strlen(end) + 1); /* as an older build wrote it */
        log.r[i].val_len = strlen(log.r[i].val);
    }
    iv_engine *b = iv_engine_new(&ck, false);
    restore_all(b, &log);
    assert_int_equal(iv_engine_state_keys(b), 2);
    tick(a, 0, "binance", "A3/USDT", T0 + 3, 1, &out, "NO_STATE"); /* evicts A2 */
    tick(b, 0, "binance", "A3/USDT", T0 + 3, 1, &out, "NO_STATE"); /* evicts A1 */
    tick(a, 0, "binance", "A1/USDT", T0 + 4, 2, &out, "DUPLICATE_TRADE_ID");
    tick(b, 0, "binance", "A2/USDT", T0 + 4, 1, &out, "DUPLICATE_TRADE_ID");
    clog_free(&log);
    hm_buf_free(&out);
    iv_engine_free(a);
    iv_engine_free(b);
}

/*
 * Many feeds of unequal activity through a small max_keys: evictions all along. An engine
 * restored half way (whose keys are linked in log order, sorted back by recency when it
 * first evicts) evicts the same keys as the original and judges the rest byte for byte.
 */
static void test_restored_engine_evicts_the_same_keys_as_the_original(void **state) {
    (void)state;
    static const char *ex[] = {"binance", "kraken", "bybit"};
    const size_t n = 6000;
    rec *r = calloc(n, sizeof(*r));
    long long ids[40][3] = {{0}};
    g_rng = 0x51ED270B;
    int64_t ts = T0;
    for (size_t i = 0; i < n; i++) {
        /* popular symbols low, a long tail of rare ones */
        int s = (int)(rnd() % 40), s2 = (int)(rnd() % 40), x = (int)(rnd() % 3);
        if (s2 < s) s = s2;
        ts += (int64_t)(rnd() % 20);
        long long id = ++ids[s][x];
        if (rnd() % 50 == 0) id -= 1;                /* a duplicate */
        int64_t t = rnd() % 60 == 0 ? ts - 500 : ts; /* out of order */
        char buf[256];
        snprintf(buf, sizeof(buf),
                 "{\"timestamp\":%lld,\"symbol\":\"C%d/USDT\",\"exchange\":\"%s\",\"price\":%d,"
                 "\"volume\":1,\"trade_id\":%lld}",
                 (long long)t, s, ex[x], 100 + s, id);
        r[i] = (rec){strdup(buf), ts, 0};
    }
    iv_checks ck = g_cfg.checks;
    ck.max_keys = 24;
    same_after_restore_ck(&ck, r, n, n / 2, false);
    same_after_restore_ck(&ck, r, n, n / 3, true);
    free_stream(r, n);
}

static void test_junk_never_creates_state(void **state) {
    (void)state;
    iv_engine *e = iv_engine_new(&g_cfg.checks, false);
    hm_buf out = HM_BUF_INIT;
    char in[256];
    for (int i = 0; i < 1000; i++) {
        snprintf(in, sizeof(in),
                 "{\"timestamp\":%d,\"symbol\":\"S%d/USDT\",\"exchange\":\"x%d\",\"price\":1,"
                 "\"volume\":1}",
                 i, i, i);
        rec r = {in, i, 0};
        run(e, &r, &out);
        snprintf(in, sizeof(in),
                 "{\"timestamp\":%d,\"symbol\":\"bad%d\",\"exchange\":\"binance\",\"price\":1,"
                 "\"volume\":1}",
                 i, i);
        run(e, &r, &out);
    }
    assert_int_equal(iv_engine_state_keys(e), 0);
    clog log = {0};
    iv_engine_flush_dirty(e, clog_add, &log);
    assert_int_equal(log.n, 0);
    hm_buf_free(&out);
    iv_engine_free(e);
}

static void expect_restore_error(const char *key, const char *val, const char *needle) {
    iv_engine *e = iv_engine_new(&g_cfg.checks, false);
    hm_err err;
    int rc = iv_engine_restore(e, 0, key, strlen(key), val, val ? strlen(val) : 0, &err);
    if (rc != -EINVAL || !strstr(err.msg, needle)) {
        print_error("restore %s = %s: rc %d '%s', want '%s'\n", key, val ? val : "NULL", rc,
                    rc ? err.msg : "", needle);
        fail();
    }
    assert_int_equal(iv_engine_state_keys(e), 0);
    iv_engine_free(e);
}

static void test_restore_refuses_bad_records_and_names_them(void **state) {
    (void)state;
    expect_restore_error("binanceBTC/USDT", "{\"v\":1}", "binanceBTC/USDT");
    expect_restore_error("binance|BTC/USDT", "not json", "not a JSON object");
    expect_restore_error("binance|BTC/USDT", "[1]", "not a JSON object");
    expect_restore_error("binance|BTC/USDT", "{\"v\":2}", "unknown version 2");
    expect_restore_error("binance|BTC/USDT", "{\"v\":1}", "'silent' is missing");
    expect_restore_error("|BTC/USDT", "{\"v\":1,\"has_wm\":true,\"wm\":\"x\"}", "'wm'");
    expect_restore_error("binance|", "{\"v\":1}", "length");
    /* a tombstone for something never seen is fine */
    iv_engine *e = iv_engine_new(&g_cfg.checks, false);
    hm_err err;
    assert_int_equal(iv_engine_restore(e, 0, "kraken|BTC/USDT", 15, NULL, 0, &err), 0);
    assert_int_equal(iv_engine_restore(e, 0, "|BTC/USDT", 9, NULL, 0, &err), 0);
    iv_engine_free(e);
}

static void test_restored_values_are_bit_exact(void **state) {
    (void)state;
    iv_engine *a = iv_engine_new(&g_cfg.checks, false);
    hm_buf out = HM_BUF_INIT;
    char in[256];
    /* prices and volumes whose binary values have long decimal expansions */
    for (int i = 0; i < 50; i++) {
        snprintf(in, sizeof(in),
                 "{\"timestamp\":%lld,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\","
                 "\"price\":%.17g,\"volume\":%.17g,\"trade_id\":\"s-%d\"}",
                 (long long)T0 + i, 100.0 / 3.0 + i * 0.001, 0.1 + i / 7.0, i);
        rec r = {in, T0 + i, 0};
        run(a, &r, &out);
    }
    clog la = {0}, lb = {0};
    iv_engine_flush_dirty(a, clog_add, &la);
    iv_engine *b = iv_engine_new(&g_cfg.checks, false);
    restore_all(b, &la);
    /* serialise b's state again: mark it dirty with one identical tick on both */
    snprintf(in, sizeof(in),
             "{\"timestamp\":%lld,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\","
             "\"price\":33.4,\"volume\":1.5,\"trade_id\":\"s-x\"}",
             (long long)T0 + 100);
    rec r = {in, T0 + 100, 0};
    hm_buf oa = HM_BUF_INIT, ob = HM_BUF_INIT;
    run(a, &r, &oa);
    run(b, &r, &ob);
    assert_string_equal(oa.data, ob.data);
    clog_free(&la);
    iv_engine_flush_dirty(a, clog_add, &la);
    iv_engine_flush_dirty(b, clog_add, &lb);
    assert_int_equal(la.n, lb.n);
    for (size_t i = 0; i < la.n; i++)
        assert_string_equal(la.r[i].val, lb.r[i].val);
    /* string ids survive as their hashes: a repeat is a duplicate in b */
    snprintf(in, sizeof(in),
             "{\"timestamp\":%lld,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\","
             "\"price\":33.4,\"volume\":1.5,\"trade_id\":\"s-45\"}",
             (long long)T0 + 101);
    rec r2 = {in, T0 + 101, 0};
    hm_buf_reset(&ob);
    run(b, &r2, &ob);
    assert_non_null(strstr(ob.data, "DUPLICATE_TRADE_ID"));
    clog_free(&la);
    clog_free(&lb);
    hm_buf_free(&out);
    hm_buf_free(&oa);
    hm_buf_free(&ob);
    iv_engine_free(a);
    iv_engine_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restored_engine_judges_the_rest_byte_for_byte_ingest_clock),
        cmocka_unit_test(test_restored_engine_judges_the_rest_byte_for_byte_event_clock),
        cmocka_unit_test(test_restored_engine_after_many_flushes_event_clock),
        cmocka_unit_test(test_restore_in_the_middle_of_a_future_run),
        cmocka_unit_test(test_restore_keeps_the_symbol_s_rhythm),
        cmocka_unit_test(test_restore_between_two_silence_scans_of_one_second),
        cmocka_unit_test(test_flush_emits_each_dirty_key_once_then_nothing),
        cmocka_unit_test(test_sweep_drops_idle_keys_and_flushes_tombstones),
        cmocka_unit_test(test_tombstone_before_recreation_in_one_flush),
        cmocka_unit_test(test_drop_partition_forgets_only_that_partition),
        cmocka_unit_test(test_partitions_keep_separate_state_for_one_symbol),
        cmocka_unit_test(
            test_max_keys_is_kept_by_evicting_and_the_tick_that_needed_room_says_no_state),
        cmocka_unit_test(
            test_junk_filling_the_partition_does_not_silence_the_checks_of_a_later_key),
        cmocka_unit_test(test_one_exchanges_junk_evicts_its_own_keys_not_another_exchanges),
        cmocka_unit_test(test_an_idle_key_is_evicted_only_after_as_many_newer_keys_of_its_exchange),
        cmocka_unit_test(test_evicted_keys_are_tombstoned_and_a_restore_does_not_bring_them_back),
        cmocka_unit_test(test_restored_engine_evicts_the_same_keys_as_the_original),
        cmocka_unit_test(test_a_key_restored_without_a_recency_counts_as_least_recently_seen),
        cmocka_unit_test(test_junk_never_creates_state),
        cmocka_unit_test(test_restore_refuses_bad_records_and_names_them),
        cmocka_unit_test(test_restored_values_are_bit_exact),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
