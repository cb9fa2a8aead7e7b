// uses: tools/himari-sim
/*
 * test_sim.c: unit tests of himari-sim's record logic (tools/himari-sim: market.c,
 * anomaly.c, gen.c), run in memory without the binary, files or a broker.
 *
 * The simulator is the ground truth the validator is measured against, so these
 * tests read its output the way the validator will (hm_tick_decode) and check both
 * directions: every clean record is clean (all fields OK, sane prices, ids and
 * timestamps in order), and every label points at a line that shows its anomaly.
 * A "twin" run with the same seed and no anomalies gives exact expectations for
 * the value anomalies. Must never depend on the clock or the network.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anomaly.h"
#include "gen.h"
#include "himari/tick.h"
#include "market.h"

/* ---- helpers ------------------------------------------------------------------------ */

static const char *const k_symbols[] = {"BTC/USDT", "ETH/USDT", "SOL/USDT"};
static const char *const k_exchanges[] = {"binance", "kraken", "bybit", "coinbase", "deribit"};
#define START_MS INT64_C(1700000000000)

static sim_gen_opts opts(uint64_t seed, double rate, double anomaly_rate) {
    sim_gen_opts o;
    memset(&o, 0, sizeof(o));
    o.market.seed = seed;
    o.market.symbols = k_symbols;
    o.market.n_symbols = HM_ARRAY_LEN(k_symbols);
    o.market.exchanges = k_exchanges;
    o.market.n_exchanges = HM_ARRAY_LEN(k_exchanges);
    o.market.rate = rate;
    o.market.liquidation_rate = 0.002;
    o.market.transfer_rate = 0.001;
    o.market.ts_format = SIM_TS_MS;
    o.market.start_ms = START_MS;
    o.anomaly.rate = anomaly_rate;
    return o;
}

/* Every kind but these two leaves the market's random draws as in a clean run. */
static void without_market_changing_kinds(sim_gen_opts *o) {
    for (int k = 1; k < SIM_AN_COUNT_; k++)
        o->anomaly.weights[k] = 1.0;
    o->anomaly.weights[SIM_AN_LEVEL_SHIFT] = 0;
    o->anomaly.weights[SIM_AN_FEED_SILENCE] = 0;
}

/** A whole run kept in memory, with what the generator knew about each line. */
typedef struct run {
    sim_gen *g;
    hm_buf out;
    hm_buf labels;
    size_t n;
    size_t *off;       /* line i is out.data[off[i] .. off[i+1] - 1) (no '\n') */
    int64_t *sim_ms;   /* simulated now at arrival */
    uint32_t *feed;    /* generator's feed index */
    uint8_t *kind;     /* sim_rkind */
    uint8_t *label;    /* sim_anomaly_kind */
    uint8_t *burst;    /* in a same-ms burst */
    uint8_t *burst_go; /* a burst continues after this line */
    char **key;        /* the Kafka key (symbol) or NULL */
} run;

static void run_gen(run *r, const sim_gen_opts *o, size_t n) {
    memset(r, 0, sizeof(*r));
    hm_err err;
    int rc = sim_gen_new(o, &r->g, &err);
    if (rc != 0) fail_msg("sim_gen_new: %d %s", rc, err.msg);
    r->n = n;
    r->off = calloc(n + 1, sizeof(*r->off));
    r->sim_ms = calloc(n, sizeof(*r->sim_ms));
    r->feed = calloc(n, sizeof(*r->feed));
    r->kind = calloc(n, 1);
    r->label = calloc(n, 1);
    r->burst = calloc(n, 1);
    r->burst_go = calloc(n, 1);
    r->key = calloc(n, sizeof(*r->key));
    for (size_t i = 0; i < n; i++) {
        sim_line line;
        r->off[i] = r->out.len;
        sim_gen_next(r->g, -1, &r->out, &r->labels, &line);
        assert_true(r->out.len > r->off[i] + 1);
        assert_int_equal(r->out.data[r->out.len - 1], '\n');
        r->sim_ms[i] = line.sim_ms;
        r->feed[i] = r->g->rec.feed;
        r->kind[i] = (uint8_t)r->g->rec.kind;
        r->label[i] = (uint8_t)line.label;
        r->burst[i] = r->g->rec.in_burst;
        r->burst_go[i] = r->g->market->burst_left > 0;
        r->key[i] = line.key ? strndup(line.key, line.key_len) : NULL;
    }
    r->off[n] = r->out.len;
}

static void run_free(run *r) {
    for (size_t i = 0; i < r->n; i++)
        free(r->key[i]);
    free(r->key);
    free(r->off);
    free(r->sim_ms);
    free(r->feed);
    free(r->kind);
    free(r->label);
    free(r->burst);
    free(r->burst_go);
    hm_buf_free(&r->out);
    hm_buf_free(&r->labels);
    sim_gen_free(r->g);
}

static const char *line_at(const run *r, size_t i, size_t *len) {
    *len = r->off[i + 1] - r->off[i] - 1;
    return r->out.data + r->off[i];
}

static int decode(const run *r, size_t i, hm_tick *t) {
    size_t len;
    const char *p = line_at(r, i, &len);
    hm_decode_err err;
    return hm_tick_decode(p, len, 0, t, &err);
}

/* Does line p[0..len) contain the string literal lit? */
#define has_lit(p, len, lit) (memmem((p), (len), (lit), sizeof(lit) - 1) != NULL)

static bool span_is(hm_span s, const char *lit) {
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

#define fail_line(r, i, fmt, ...)                                                                  \
    do {                                                                                           \
        size_t len_;                                                                               \
        const char *p_ = line_at((r), (i), &len_);                                                 \
        fail_msg("line %zu (%s): " fmt "\n  %.*s", (size_t)(i), sim_anomaly_name((r)->label[i]),   \
                 ##__VA_ARGS__, (int)len_, p_);                                                    \
    } while (0)

#define check_line(r, i, cond, fmt, ...)                                                           \
    do {                                                                                           \
        if (!(cond)) fail_line((r), (i), "%s: " fmt, #cond, ##__VA_ARGS__);                        \
    } while (0)

static bool all_fields_ok(const hm_tick *t, bool trade) {
    static const hm_field need[] = {HM_FIELD_TIMESTAMP, HM_FIELD_SYMBOL, HM_FIELD_EXCHANGE,
                                    HM_FIELD_PRICE,     HM_FIELD_VOLUME, HM_FIELD_SIDE};
    for (size_t k = 0; k < HM_ARRAY_LEN(need); k++)
        if (t->st[need[k]] != HM_F_OK) return false;
    if (trade && (t->st[HM_FIELD_TRADE_ID] != HM_F_OK || !t->trade_id_numeric)) return false;
    return true;
}

/* Parses the label lines and checks each against what the generator said. */
static size_t check_labels_file(const run *r) {
    size_t n = 0;
    const char *p = r->labels.data ? r->labels.data : "";
    uint64_t prev_seq = 0;
    while (*p) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        unsigned long long seq;
        char kind[40];
        if (sscanf(p, "{\"seq\":%llu,\"kind\":\"%39[a-z_0-9]\"", &seq, kind) != 2)
            fail_msg("bad label line: %.*s", (int)(nl - p), p);
        assert_true(seq < r->n);
        if (n > 0) assert_true(seq > prev_seq); /* one label per line, in order */
        prev_seq = seq;
        assert_string_equal(kind, sim_anomaly_name(r->label[seq]));
        const sim_market *m = r->g->market;
        const sim_feed *f = &m->feeds[r->feed[seq]];
        char want[128];
        snprintf(want, sizeof(want), "\"exchange\":\"%s\",\"symbol\":\"%s\"}",
                 m->exch[f->exch].name, m->sym[f->sym].name);
        if (!memmem(p, (size_t)(nl - p), want, strlen(want)))
            fail_msg("label %.*s does not end with %s", (int)(nl - p), p, want);
        n++;
        p = nl + 1;
    }
    size_t labelled = 0;
    for (size_t i = 0; i < r->n; i++)
        labelled += r->label[i] != SIM_AN_NONE;
    assert_int_equal(n, labelled);
    return n;
}

/* ---- number formatting -------------------------------------------------------------- */

static void test_ticks_are_printed_with_exactly_the_tick_decimals(void **state) {
    char b[40];
    assert_int_equal(sim_format_ticks(3700012, 2, b, sizeof(b)), 8);
    assert_string_equal(b, "37000.12");
    sim_format_ticks(3700010, 2, b, sizeof(b));
    assert_string_equal(b, "37000.10");
    sim_format_ticks(-3700012, 2, b, sizeof(b));
    assert_string_equal(b, "-37000.12");
    sim_format_ticks(0, 3, b, sizeof(b));
    assert_string_equal(b, "0.000");
    sim_format_ticks(5, 4, b, sizeof(b));
    assert_string_equal(b, "0.0005");
    sim_format_ticks(42, 0, b, sizeof(b));
    assert_string_equal(b, "42");
}

static void test_volumes_are_micro_units_with_trailing_zeros_trimmed(void **state) {
    char b[40];
    sim_format_micro(50000, b, sizeof(b));
    assert_string_equal(b, "0.05");
    sim_format_micro(3000000, b, sizeof(b));
    assert_string_equal(b, "3");
    sim_format_micro(1, b, sizeof(b));
    assert_string_equal(b, "0.000001");
    sim_format_micro(123456789, b, sizeof(b));
    assert_string_equal(b, "123.456789");
    sim_format_micro(-2500000, b, sizeof(b));
    assert_string_equal(b, "-2.5");
    sim_format_micro(0, b, sizeof(b));
    assert_string_equal(b, "0");
}

/* ---- options -------------------------------------------------------------------------- */

static void expect_market_error(const char *sym, const char *exch, const char *needle) {
    sim_gen_opts o = opts(1, 1000, 0);
    const char *syms[] = {"BTC/USDT", sym};
    const char *exchs[] = {"binance", exch};
    o.market.symbols = syms;
    o.market.n_symbols = 2;
    o.market.exchanges = exchs;
    o.market.n_exchanges = 2;
    sim_market *m = NULL;
    hm_err err = {{0}};
    assert_int_equal(sim_market_new(&o.market, &m, &err), -EINVAL);
    assert_null(m);
    if (!strstr(err.msg, needle)) fail_msg("error '%s' does not name '%s'", err.msg, needle);
}

static void test_bad_symbols_and_exchanges_are_refused_by_name(void **state) {
    expect_market_error("btc/usdt", "kraken", "'btc/usdt'");
    expect_market_error("BTCUSDT", "kraken", "'BTCUSDT'");
    expect_market_error("BTC/", "kraken", "'BTC/'");
    expect_market_error("BTC/USDT", "kraken", "listed twice");
    expect_market_error("ETH/USDT", "Kraken", "'Kraken'");
    expect_market_error("ETH/USDT", "fakex", "reserved");
    expect_market_error("ETH/USDT", "binance", "listed twice");
}

static void test_anomaly_kinds_parse_by_name_and_refuse_unknown_ones(void **state) {
    sim_anomaly_kind k;
    assert_int_equal(sim_anomaly_parse("level_shift", 11, &k), 0);
    assert_int_equal(k, SIM_AN_LEVEL_SHIFT);
    assert_int_equal(sim_anomaly_parse("price_spike,x", 11, &k), 0);
    assert_int_equal(k, SIM_AN_PRICE_SPIKE);
    assert_int_equal(sim_anomaly_parse("spike", 5, &k), -EINVAL);
    for (int i = 1; i < SIM_AN_COUNT_; i++) {
        assert_true(strlen(sim_anomaly_help((sim_anomaly_kind)i)) > 5);
        assert_true(sim_anomaly_default_weight((sim_anomaly_kind)i) > 0);
    }
}

/* ---- determinism and counts ----------------------------------------------------------- */

static void test_same_seed_gives_byte_identical_output_and_labels(void **state) {
    sim_gen_opts o = opts(42, 10000, 0.05);
    o.market.ts_format = SIM_TS_MIXED;
    run a, b;
    run_gen(&a, &o, 30000);
    run_gen(&b, &o, 30000);
    assert_int_equal(a.out.len, b.out.len);
    assert_memory_equal(a.out.data, b.out.data, a.out.len);
    assert_true(a.labels.len > 0);
    assert_int_equal(a.labels.len, b.labels.len);
    assert_memory_equal(a.labels.data, b.labels.data, a.labels.len);
    run_free(&a);
    run_free(&b);
}

static void test_different_seeds_give_different_output(void **state) {
    sim_gen_opts o1 = opts(1, 10000, 0), o2 = opts(2, 10000, 0);
    run a, b;
    run_gen(&a, &o1, 1000);
    run_gen(&b, &o2, 1000);
    size_t same = 0;
    for (size_t i = 0; i < 1000; i++) {
        size_t la, lb;
        const char *pa = line_at(&a, i, &la), *pb = line_at(&b, i, &lb);
        same += la == lb && memcmp(pa, pb, la) == 0;
    }
    assert_true(same < 10);
    run_free(&a);
    run_free(&b);
}

static void test_each_call_writes_exactly_one_line(void **state) {
    sim_gen_opts o = opts(3, 10000, 0.2);
    run r;
    run_gen(&r, &o, 20000);
    size_t newlines = 0;
    for (size_t i = 0; i < r.out.len; i++)
        newlines += r.out.data[i] == '\n';
    assert_int_equal(newlines, 20000);
    for (size_t i = 0; i < r.n; i++) {
        size_t len;
        line_at(&r, i, &len);
        assert_true(len > 0);
    }
    run_free(&r);
}

/* ---- the clean market ---------------------------------------------------------------- */

static void test_clean_records_decode_with_every_field_ok_and_feeds_in_order(void **state) {
    sim_gen_opts o = opts(5, 10000, 0);
    o.market.ts_format = SIM_TS_MIXED;
    run r;
    run_gen(&r, &o, 100000);
    const sim_market *m = r.g->market;
    uint64_t last_id[SIM_MAX_SYMBOLS * SIM_MAX_EXCHANGES] = {0};
    int64_t last_ts[SIM_MAX_SYMBOLS * SIM_MAX_EXCHANGES] = {0};
    size_t n_trade = 0, n_liq = 0, n_transfer = 0;
    for (size_t i = 0; i < r.n; i++) {
        hm_tick t;
        check_line(&r, i, decode(&r, i, &t) == 0, "does not decode");
        assert_int_equal(r.label[i], SIM_AN_NONE);
        if (t.kind == HM_KIND_TRANSFER) {
            n_transfer++;
            check_line(&r, i, t.st[HM_FIELD_ASSET] == HM_F_OK && t.st[HM_FIELD_AMOUNT] == HM_F_OK,
                       "transfer fields");
            check_line(&r, i,
                       t.st[HM_FIELD_FROM] == HM_F_OK && t.st[HM_FIELD_TO] == HM_F_OK &&
                           t.st[HM_FIELD_TX_HASH] == HM_F_OK,
                       "transfer addresses");
            check_line(&r, i, t.volume > 0, "amount");
            assert_null(r.key[i]);
            continue;
        }
        bool trade = t.kind == HM_KIND_TRADE;
        n_trade += trade;
        n_liq += !trade;
        check_line(&r, i, all_fields_ok(&t, trade), "a field is not OK");
        check_line(&r, i, t.price > 0 && t.volume > 0, "price/volume not positive");
        check_line(&r, i, t.strict_json, "not strict JSON");
        const sim_feed *f = &m->feeds[r.feed[i]];
        const sim_exchange *e = &m->exch[f->exch];
        check_line(&r, i, span_is(t.symbol, m->sym[f->sym].name), "symbol");
        check_line(&r, i, span_is(t.exchange, e->name), "exchange");
        assert_string_equal(r.key[i], m->sym[f->sym].name);
        /* The clock skew and jitter are the only distance from the simulated now. */
        int64_t d = t.ts_ms - (r.sim_ms[i] + e->skew_ms);
        check_line(&r, i, d >= 0 && d <= 20, "ts %" PRId64 " off the exchange clock by %" PRId64,
                   t.ts_ms, d);
        check_line(&r, i, t.ts_ms >= last_ts[r.feed[i]], "timestamp went back");
        last_ts[r.feed[i]] = t.ts_ms;
        if (trade) {
            check_line(&r, i, t.trade_id_num > last_id[r.feed[i]], "trade id not increasing");
            check_line(&r, i, t.trade_id_num >= 100000 && t.trade_id_num < 10000000000ull,
                       "ids are 6..9-digit numbers");
            last_id[r.feed[i]] = t.trade_id_num;
            /* The tick's decimals exactly (trailing zeros kept: "37000.10"). */
            size_t dot = 0;
            while (dot < t.price_text.len && t.price_text.p[dot] != '.')
                dot++;
            check_line(&r, i, t.price_text.len - dot - 1 == (size_t)m->sym[f->sym].decimals,
                       "price decimals");
            check_line(&r, i, hm_decimal_places(t.volume_text.p, t.volume_text.len) <= 6,
                       "volume decimals");
        }
        /* Exchange traits: kraken quotes numbers, ISO timestamps under mixed. */
        size_t len;
        const char *p = line_at(&r, i, &len);
        bool quoted = has_lit(p, len, "\"price\":\"");
        check_line(&r, i, quoted == e->numbers_as_strings, "number quoting");
        bool iso = has_lit(p, len, "\"timestamp\":\"");
        check_line(&r, i, iso == e->iso_ts, "timestamp format");
        bool typed = strncmp(p, "{\"type\":", 8) == 0;
        check_line(&r, i, typed == (!trade || e->type_on_trades), "type field");
    }
    assert_true(n_trade > 99000);
    assert_in_range(n_liq, 100, 300);     /* 0.002 of 100000 */
    assert_in_range(n_transfer, 50, 160); /* 0.001 of 100000 */
    run_free(&r);
}

static void test_exchanges_quote_one_symbol_within_a_tenth_of_a_percent(void **state) {
    sim_gen_opts o = opts(6, 10000, 0);
    run r;
    run_gen(&r, &o, 200000);
    const sim_market *m = r.g->market;
    double last_price[SIM_MAX_SYMBOLS * SIM_MAX_EXCHANGES] = {0};
    int64_t last_ms[SIM_MAX_SYMBOLS * SIM_MAX_EXCHANGES] = {0};
    size_t compared = 0;
    double worst = 0;
    for (size_t i = 0; i < r.n; i++) {
        if (r.kind[i] != SIM_R_TRADE) continue;
        hm_tick t;
        assert_int_equal(decode(&r, i, &t), 0);
        const sim_feed *f = &m->feeds[r.feed[i]];
        for (size_t e = 0; e < m->n_exch; e++) {
            size_t other = f->sym * m->n_exch + e;
            if (other == r.feed[i] || last_price[other] == 0) continue;
            if (r.sim_ms[i] - last_ms[other] > 100) continue; /* "at the same time" */
            double dev = fabs(t.price / last_price[other] - 1.0);
            if (dev > worst) worst = dev;
            check_line(&r, i, dev < 0.001, "%.4f%% from %s", dev * 100, m->exch[e].name);
            compared++;
        }
        last_price[r.feed[i]] = t.price;
        last_ms[r.feed[i]] = r.sim_ms[i];
    }
    assert_true(compared > 100000);
    assert_true(worst > 0.0001); /* the offsets and bounce are really there */
    run_free(&r);
}

static void test_arrivals_follow_the_rate_and_the_feed_shares(void **state) {
    sim_gen_opts o = opts(7, 1000, 0);
    run r;
    run_gen(&r, &o, 100000);
    /* 100000 records at 1000/s: 100 simulated seconds (Poisson: +-0.3%). */
    int64_t span = r.sim_ms[r.n - 1] - START_MS;
    assert_in_range(span, 98000, 102000);
    size_t per_feed[SIM_MAX_SYMBOLS * SIM_MAX_EXCHANGES] = {0};
    for (size_t i = 0; i < r.n; i++)
        per_feed[r.feed[i]]++;
    /* binance BTC: 0.45 x 0.35 of a total weight of 1.0 x 1.0 */
    double share = (double)per_feed[0] / (double)r.n;
    if (fabs(share - 0.1575) > 0.01) fail_msg("binance BTC/USDT share %.4f", share);
    /* deribit SOL: 0.20 x 0.10 */
    share = (double)per_feed[2 * 5 + 4] / (double)r.n;
    if (fabs(share - 0.02) > 0.004) fail_msg("deribit SOL/USDT share %.4f", share);
    run_free(&r);
}

static void
test_bursts_share_a_millisecond_with_consecutive_ids_and_are_never_labelled(void **state) {
    sim_gen_opts o = opts(8, 10000, 0.05);
    run r;
    run_gen(&r, &o, 100000);
    size_t pairs = 0;
    hm_tick prev, t;
    for (size_t i = 0; i < r.n; i++) {
        if (r.burst[i]) check_line(&r, i, r.label[i] == SIM_AN_NONE, "labelled burst record");
        if (i == 0 || !r.burst[i] || !r.burst[i - 1] || !r.burst_go[i - 1]) continue;
        /* A continuation: same feed, same ms, next id, right after its predecessor. */
        assert_int_equal(r.feed[i], r.feed[i - 1]);
        assert_int_equal(decode(&r, i - 1, &prev), 0);
        assert_int_equal(decode(&r, i, &t), 0);
        check_line(&r, i, t.ts_ms == prev.ts_ms, "burst ms");
        check_line(&r, i, t.trade_id_num == prev.trade_id_num + 1, "burst id");
        pairs++;
    }
    assert_true(pairs > 200);
    run_free(&r);
}

/* ---- profiles (--profile): what real markets showed, all clean ------------------------ */

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void
test_profiles_give_lulls_fat_tails_big_bursts_off_book_prints_and_contracts(void **state) {
    (void)state;
    sim_gen_opts o = opts(21, 100, 0);
    o.market.profiles = SIM_PROFILE_SPARSE | SIM_PROFILE_FAT_TAILS | SIM_PROFILE_BURSTS |
                        SIM_PROFILE_INSURANCE | SIM_PROFILE_INVERSE;
    static const char *const ex[] = {"binance", "binancecoinm", "kraken"};
    o.market.exchanges = ex;
    o.market.n_exchanges = HM_ARRAY_LEN(ex);
    run r;
    run_gen(&r, &o, 200000);
    double *vol = calloc(r.n, sizeof(*vol));
    size_t n_vol = 0, max_same_ms = 0, same = 0, lulls = 0, off_book = 0;
    int64_t prev_sim = r.sim_ms[0], prev_ts = INT64_MIN;
    double prev_price = 0;
    hm_tick t;
    for (size_t i = 0; i < r.n; i++) {
        if (r.kind[i] != SIM_R_TRADE) continue;
        assert_int_equal(decode(&r, i, &t), 0);
        /* the mean gap at 100 records/s is 10 ms: a lull is 10..60 times that */
        if (r.sim_ms[i] - prev_sim >= 100) lulls++;
        prev_sim = r.sim_ms[i];
        same = t.ts_ms == prev_ts && r.burst[i] ? same + 1 : 1;
        if (same > max_same_ms) max_same_ms = same;
        prev_ts = t.ts_ms;
        bool inverse = t.exchange.len == 12 && !memcmp(t.exchange.p, "binancecoinm", 12);
        if (inverse) {
            check_line(&r, i, t.volume >= 1 && t.volume == floor(t.volume), "whole contracts");
        } else if (t.exchange.len == 7 && !memcmp(t.exchange.p, "binance", 7) &&
                   t.symbol.len == 8 && !memcmp(t.symbol.p, "BTC/USDT", 8)) {
            vol[n_vol++] = t.volume;
            /* an insurance-fund print: 1.5..2.5% from the feed's previous trade */
            if (prev_price > 0 && fabs(t.price / prev_price - 1) > 0.014) off_book++;
            prev_price = t.price;
        }
    }
    qsort(vol, n_vol, sizeof(*vol), cmp_dbl);
    double tail = vol[n_vol - 1] / vol[n_vol / 2];
    if (tail < 1000) fail_msg("largest / median size %.0f: no fat tail", tail);
    if (max_same_ms < 100) fail_msg("largest same-ms burst %zu", max_same_ms);
    if (lulls < 1000) fail_msg("%zu gaps of >= 100 ms", lulls);
    /* each print and the trade back after it */
    if (off_book < 4) fail_msg("%zu jumps of > 1.4%% on binance BTC/USDT", off_book);
    free(vol);
    run_free(&r);
}

static void test_liquidations_are_large_and_transfers_whale_sized(void **state) {
    sim_gen_opts o = opts(9, 10000, 0);
    o.market.liquidation_rate = 0.05;
    o.market.transfer_rate = 0.05;
    run r;
    run_gen(&r, &o, 60000);
    double trade_vol = 0, liq_vol = 0;
    size_t n_trade = 0, n_liq = 0, n_tr = 0, n_tr_exch = 0;
    for (size_t i = 0; i < r.n; i++) {
        hm_tick t;
        assert_int_equal(decode(&r, i, &t), 0);
        /* BTC only: sizes differ by asset */
        if (t.kind == HM_KIND_TRANSFER) {
            if (!span_is(t.asset, "BTC")) continue;
            n_tr++;
            n_tr_exch += t.st[HM_FIELD_EXCHANGE] == HM_F_OK;
            check_line(&r, i, t.volume >= 50 && t.volume <= 2000, "BTC whale amount");
            check_line(&r, i, t.from.len == 42 && t.to.len == 42 && t.tx_hash.len == 66,
                       "address lengths");
            continue;
        }
        if (!span_is(t.symbol, "BTC/USDT")) continue;
        if (t.kind == HM_KIND_LIQUIDATION) {
            check_line(&r, i, t.st[HM_FIELD_TRADE_ID] == HM_F_ABSENT, "liquidation id");
            liq_vol += log(t.volume);
            n_liq++;
        } else {
            trade_vol += log(t.volume);
            n_trade++;
        }
    }
    assert_true(n_liq > 500 && n_tr > 500);
    /* Geometric means: liquidations are ~15x a trade. */
    double ratio = exp(liq_vol / (double)n_liq - trade_vol / (double)n_trade);
    if (ratio < 10 || ratio > 22) fail_msg("liquidation/trade size ratio %.2f", ratio);
    double half = (double)n_tr_exch / (double)n_tr;
    if (half < 0.43 || half > 0.57) fail_msg("transfers naming an exchange: %.3f", half);
    run_free(&r);
}

static void test_iso_timestamps_decode_to_the_same_clock(void **state) {
    sim_gen_opts o = opts(10, 10000, 0);
    o.market.ts_format = SIM_TS_ISO;
    run r;
    run_gen(&r, &o, 5000);
    const sim_market *m = r.g->market;
    for (size_t i = 0; i < r.n; i++) {
        hm_tick t;
        assert_int_equal(decode(&r, i, &t), 0);
        size_t len;
        const char *p = line_at(&r, i, &len);
        check_line(&r, i, has_lit(p, len, "\"timestamp\":\"2023-11-1"), "ISO");
        if (t.kind == HM_KIND_TRANSFER) continue;
        int64_t d = t.ts_ms - (r.sim_ms[i] + m->exch[m->feeds[r.feed[i]].exch].skew_ms);
        check_line(&r, i, d >= 0 && d <= 20, "ISO time off by %" PRId64, d);
    }
    run_free(&r);
}

/* ---- anomalies --------------------------------------------------------------------- */

static bool consumes_id(sim_anomaly_kind k, const hm_tick *t, bool decoded) {
    switch (k) {
        case SIM_AN_MALFORMED_JSON:
        case SIM_AN_INVALID_UTF8:
        case SIM_AN_UNKNOWN_EXCHANGE:
        case SIM_AN_INVALID_SYMBOL:
        case SIM_AN_DUPLICATE_TRADE_ID:
            return false;
        case SIM_AN_MISSING_FIELD:
            return decoded && t->st[HM_FIELD_TIMESTAMP] == HM_F_OK &&
                   t->st[HM_FIELD_SYMBOL] == HM_F_OK && t->st[HM_FIELD_EXCHANGE] == HM_F_OK;
        default:
            return true;
    }
}

/*
 * One large run with every kind, at a low rate so that silences end inside it.
 * Walks the lines in order keeping per-feed history as a validator would.
 */
static void test_every_label_points_at_a_line_that_shows_its_anomaly(void **state) {
    sim_gen_opts o = opts(11, 50, 0.05);
    run r;
    run_gen(&r, &o, 200000);
    const sim_market *m = r.g->market;
    size_t n_labels = check_labels_file(&r);
    enum { NF = SIM_MAX_SYMBOLS * SIM_MAX_EXCHANGES };
    double ref_price[NF] = {0};
    uint64_t last_id[NF] = {0};
    int64_t last_ts[NF] = {0}, last_ms[NF] = {0};
    size_t by_kind[SIM_AN_COUNT_] = {0};

    for (size_t i = 0; i < r.n; i++) {
        hm_tick t;
        const bool decoded = decode(&r, i, &t) == 0;
        const sim_anomaly_kind k = (sim_anomaly_kind)r.label[i];
        const uint32_t fi = r.feed[i];
        const sim_feed *f = &m->feeds[fi];
        const sim_exchange *e = &m->exch[f->exch];
        const int64_t exch_now = r.sim_ms[i] + e->skew_ms;
        const double ratio = ref_price[fi] > 0 && decoded ? t.price / ref_price[fi] : 1.0;
        size_t len;
        const char *p = line_at(&r, i, &len);
        by_kind[k]++;

        if (r.kind[i] == SIM_R_TRANSFER) {
            check_line(&r, i, decoded && k == SIM_AN_NONE, "transfer");
            continue;
        }
        if (k == SIM_AN_NONE) {
            bool trade = r.kind[i] == SIM_R_TRADE;
            check_line(&r, i, decoded && all_fields_ok(&t, trade), "unlabelled but damaged");
            check_line(&r, i, t.price > 0 && t.volume > 0, "unlabelled bad value");
            check_line(&r, i, span_is(t.exchange, e->name), "exchange");
            check_line(&r, i, span_is(t.symbol, m->sym[f->sym].name), "symbol");
            int64_t d = t.ts_ms - exch_now;
            check_line(&r, i, d >= 0 && d <= 20, "unlabelled time off by %" PRId64, d);
            check_line(&r, i, t.ts_ms >= last_ts[fi], "clean timestamp went back");
            if (ref_price[fi] > 0 && r.sim_ms[i] - last_ms[fi] < 120000)
                check_line(&r, i, fabs(ratio - 1) < 0.015, "unlabelled jump %.4f", ratio);
            if (trade) {
                check_line(&r, i, t.trade_id_num == last_id[fi] + 1 || last_id[fi] == 0,
                           "id %" PRIu64 " after %" PRIu64, t.trade_id_num, last_id[fi]);
                last_id[fi] = t.trade_id_num;
            }
            ref_price[fi] = t.price;
            last_ts[fi] = t.ts_ms;
            last_ms[fi] = r.sim_ms[i];
            continue;
        }

        /* A labelled line: it shows its kind. */
        check_line(&r, i,
                   r.kind[i] == SIM_R_TRADE || k == SIM_AN_LEVEL_SHIFT || k == SIM_AN_FEED_SILENCE,
                   "only trades are damaged");
        switch (k) {
            case SIM_AN_PRICE_SPIKE:
                check_line(&r, i, decoded && fabs(ratio - 1) > 0.07 && fabs(ratio - 1) < 0.31,
                           "ratio %.4f", ratio);
                break;
            case SIM_AN_VOLUME_SPIKE:
                check_line(&r, i, decoded && t.volume > m->sym[f->sym].def->median_volume,
                           "volume %g", t.volume);
                break;
            case SIM_AN_NEGATIVE_PRICE:
                check_line(&r, i, decoded && t.st[HM_FIELD_PRICE] == HM_F_OK && t.price < 0, "");
                break;
            case SIM_AN_ZERO_PRICE:
                check_line(&r, i, decoded && t.st[HM_FIELD_PRICE] == HM_F_OK && t.price == 0, "");
                break;
            case SIM_AN_NEGATIVE_VOLUME:
                check_line(&r, i, decoded && t.st[HM_FIELD_VOLUME] == HM_F_OK && t.volume < 0, "");
                break;
            case SIM_AN_ZERO_VOLUME:
                check_line(&r, i, decoded && t.st[HM_FIELD_VOLUME] == HM_F_OK && t.volume == 0, "");
                break;
            case SIM_AN_MISSING_FIELD: {
                static const hm_field fs[] = {HM_FIELD_TIMESTAMP, HM_FIELD_SYMBOL,
                                              HM_FIELD_EXCHANGE, HM_FIELD_PRICE, HM_FIELD_VOLUME};
                int absent = 0, ok = 0;
                for (size_t j = 0; decoded && j < HM_ARRAY_LEN(fs); j++) {
                    absent += t.st[fs[j]] == HM_F_ABSENT;
                    ok += t.st[fs[j]] == HM_F_OK;
                }
                check_line(&r, i, decoded && absent == 1 && ok == 4, "absent %d", absent);
                break;
            }
            case SIM_AN_WRONG_TYPE:
                check_line(&r, i,
                           decoded && (t.st[HM_FIELD_PRICE] == HM_F_WRONG_TYPE) !=
                                          (t.st[HM_FIELD_VOLUME] == HM_F_WRONG_TYPE),
                           "");
                break;
            case SIM_AN_NON_FINITE:
                check_line(&r, i, decoded && t.st[HM_FIELD_PRICE] == HM_F_NONFINITE, "");
                break;
            case SIM_AN_MALFORMED_JSON:
                check_line(&r, i, !decoded && memchr(p, '\n', len) == NULL, "");
                break;
            case SIM_AN_INVALID_UTF8:
                check_line(&r, i, !decoded && has_lit(p, len, "\xC3\x28"), "");
                break;
            case SIM_AN_OUT_OF_ORDER:
                /* 2..10 s before the feed's previous committed tick, which lies
                 * between the last one seen here and the exchange's now. */
                check_line(&r, i,
                           decoded && t.ts_ms <= exch_now + 20 - 2000 &&
                               t.ts_ms >= last_ts[fi] - 10000,
                           "ts %" PRId64 " vs previous %" PRId64, t.ts_ms, last_ts[fi]);
                break;
            case SIM_AN_DUPLICATE_TRADE_ID:
                check_line(&r, i, decoded && t.trade_id_num == last_id[fi], "");
                check_line(&r, i, t.ts_ms >= exch_now && t.ts_ms > last_ts[fi], "new timestamp");
                break;
            case SIM_AN_TRADE_ID_GAP:
                check_line(&r, i,
                           decoded && t.trade_id_num >= last_id[fi] + 10 &&
                               t.trade_id_num <= last_id[fi] + 1000,
                           "jump %" PRId64, (int64_t)(t.trade_id_num - last_id[fi]));
                break;
            case SIM_AN_STALE:
                check_line(&r, i,
                           decoded && exch_now - t.ts_ms >= 60000 && exch_now - t.ts_ms <= 600000,
                           "");
                break;
            case SIM_AN_DELAYED:
                check_line(&r, i,
                           decoded && exch_now - t.ts_ms >= 12000 && exch_now - t.ts_ms <= 25000,
                           "");
                break;
            case SIM_AN_FUTURE:
                check_line(&r, i,
                           decoded && t.ts_ms - exch_now >= 10000 && t.ts_ms - exch_now <= 120000,
                           "");
                break;
            case SIM_AN_EXCESSIVE_PRECISION: {
                int dp = decoded ? hm_decimal_places(t.price_text.p, t.price_text.len) : 0;
                check_line(&r, i, dp >= 10 && dp <= 12 && fabs(ratio - 1) < 0.015, "dp %d", dp);
                check_line(&r, i, t.price_text.p[t.price_text.len - 1] != '0', "");
                break;
            }
            case SIM_AN_UNKNOWN_EXCHANGE:
                check_line(&r, i, decoded && span_is(t.exchange, "fakex"), "");
                break;
            case SIM_AN_INVALID_SYMBOL: {
                const sim_symbol *s = &m->sym[f->sym];
                bool lower = t.symbol.len == s->name_len && t.symbol.p[0] >= 'a';
                bool no_slash = t.symbol.len > 0 && !memchr(t.symbol.p, '/', t.symbol.len);
                bool no_quote = t.symbol.len > 0 && t.symbol.p[t.symbol.len - 1] == '/';
                check_line(&r, i,
                           decoded && t.st[HM_FIELD_SYMBOL] == HM_F_OK &&
                               (lower || no_slash || no_quote),
                           "");
                assert_null(r.key[i]);
                break;
            }
            case SIM_AN_INVALID_SIDE:
                check_line(&r, i,
                           decoded && t.st[HM_FIELD_SIDE] == HM_F_INVALID &&
                               has_lit(p, len, "\"side\":\"long\""),
                           "");
                break;
            case SIM_AN_CROSS_EXCHANGE:
                check_line(&r, i, decoded && fabs(ratio - 1) > 0.015 && fabs(ratio - 1) < 0.045,
                           "ratio %.4f", ratio);
                break;
            case SIM_AN_LEVEL_SHIFT:
                check_line(&r, i, decoded && all_fields_ok(&t, r.kind[i] == SIM_R_TRADE), "");
                check_line(&r, i, fabs(ratio - 1) > 0.05 && fabs(ratio - 1) < 0.13, "ratio %.4f",
                           ratio);
                break;
            case SIM_AN_FEED_SILENCE:
                check_line(&r, i, decoded && all_fields_ok(&t, r.kind[i] == SIM_R_TRADE), "");
                check_line(&r, i, r.sim_ms[i] - last_ms[fi] >= 90000, "gap %" PRId64 " ms",
                           r.sim_ms[i] - last_ms[fi]);
                break;
            case SIM_AN_NONE:
            case SIM_AN_COUNT_:
                fail_msg("bad kind");
        }
        /* What the market committed, as a validator would follow it. */
        if (decoded && r.kind[i] == SIM_R_TRADE && consumes_id(k, &t, decoded))
            last_id[fi] = t.trade_id_num;
        if (k == SIM_AN_LEVEL_SHIFT || k == SIM_AN_FEED_SILENCE) {
            ref_price[fi] = t.price;
            last_ts[fi] = t.ts_ms;
        }
        if (decoded && t.st[HM_FIELD_TIMESTAMP] == HM_F_OK && k != SIM_AN_OUT_OF_ORDER &&
            k != SIM_AN_STALE && k != SIM_AN_DELAYED && k != SIM_AN_FUTURE)
            last_ts[fi] = t.ts_ms > last_ts[fi] ? t.ts_ms : last_ts[fi];
        last_ms[fi] = r.sim_ms[i];
    }
    /* Every kind occurs, and none crowds out the others. */
    for (int k = 1; k < SIM_AN_COUNT_; k++) {
        /* One silence at a time, 90..300 s each: ~20 fit in this run's ~4000 s. */
        size_t least = k == SIM_AN_FEED_SILENCE ? 10 : 30;
        if (by_kind[k] < least)
            fail_msg("kind %s occurred %zu times", sim_anomaly_name((sim_anomaly_kind)k),
                     by_kind[k]);
    }
    /* The labelled share is the requested one, +-20%. */
    double share = (double)n_labels / (double)r.n;
    if (share < 0.04 || share > 0.06) fail_msg("labelled share %.4f for rate 0.05", share);
    run_free(&r);
}

static void test_labelled_share_tracks_the_requested_rate(void **state) {
    static const double rates[] = {0.001, 0.01, 0.05, 0.1};
    for (size_t j = 0; j < HM_ARRAY_LEN(rates); j++) {
        sim_gen_opts o = opts(12 + j, 10000, rates[j]);
        run r;
        run_gen(&r, &o, 100000);
        double share = (double)check_labels_file(&r) / (double)r.n;
        if (share < rates[j] * 0.8 || share > rates[j] * 1.2)
            fail_msg("rate %g: labelled share %.5f", rates[j], share);
        run_free(&r);
    }
}

/*
 * With the kinds that leave the market's random draws alone, a run with
 * anomalies and one without (same seed) draw the same prices and volumes:
 * unlabelled lines carry exactly the twin's values, and labelled lines
 * differ from the twin exactly as their kind says.
 */
static void test_anomalies_change_exactly_their_line_compared_with_a_clean_twin(void **state) {
    sim_gen_opts o = opts(13, 10000, 0.05), clean = opts(13, 10000, 0);
    without_market_changing_kinds(&o);
    run r, twin;
    run_gen(&r, &o, 60000);
    run_gen(&twin, &clean, 60000);
    const sim_market *m = r.g->market;
    size_t checked = 0;
    for (size_t i = 0; i < r.n; i++) {
        assert_int_equal(r.sim_ms[i], twin.sim_ms[i]);
        assert_int_equal(r.feed[i], twin.feed[i]);
        assert_int_equal(r.kind[i], twin.kind[i]);
        hm_tick t, c;
        assert_int_equal(decode(&twin, i, &c), 0);
        const bool decoded = decode(&r, i, &t) == 0;
        const sim_anomaly_kind k = (sim_anomaly_kind)r.label[i];
        if (r.kind[i] == SIM_R_TRANSFER) continue;
        const sim_symbol *s = &m->sym[m->feeds[r.feed[i]].sym];
        const double tick = 1.0 / (double)s->pow10;
        if (k == SIM_AN_NONE || k == SIM_AN_OUT_OF_ORDER || k == SIM_AN_STALE ||
            k == SIM_AN_DELAYED || k == SIM_AN_FUTURE || k == SIM_AN_DUPLICATE_TRADE_ID ||
            k == SIM_AN_TRADE_ID_GAP || k == SIM_AN_INVALID_SIDE || k == SIM_AN_UNKNOWN_EXCHANGE ||
            k == SIM_AN_INVALID_SYMBOL) {
            /* Values untouched. */
            check_line(&r, i,
                       decoded && t.price_text.len == c.price_text.len &&
                           memcmp(t.price_text.p, c.price_text.p, c.price_text.len) == 0,
                       "price differs from the twin's");
            check_line(&r, i,
                       t.volume_text.len == c.volume_text.len &&
                           memcmp(t.volume_text.p, c.volume_text.p, c.volume_text.len) == 0,
                       "volume differs from the twin's");
            continue;
        }
        checked++;
        double pr = decoded ? t.price / c.price : 0, vr = decoded ? t.volume / c.volume : 0;
        switch (k) {
            case SIM_AN_PRICE_SPIKE:
                check_line(&r, i, fabs(pr - 1) >= 0.08 - 1e-4 && fabs(pr - 1) <= 0.30 + 1e-4,
                           "%.5f", pr);
                break;
            case SIM_AN_CROSS_EXCHANGE:
                check_line(&r, i, fabs(pr - 1) >= 0.02 - 1e-4 && fabs(pr - 1) <= 0.04 + 1e-4,
                           "%.5f", pr);
                break;
            case SIM_AN_VOLUME_SPIKE:
                check_line(&r, i, vr >= 50 * 0.99 && vr <= 500 * 1.01, "%.3f", vr);
                break;
            case SIM_AN_NEGATIVE_PRICE:
                check_line(&r, i, t.price == -c.price, "");
                break;
            case SIM_AN_NEGATIVE_VOLUME:
                check_line(&r, i, t.volume == -c.volume, "");
                break;
            case SIM_AN_ZERO_PRICE:
                check_line(&r, i, t.price == 0 && t.volume == c.volume, "");
                break;
            case SIM_AN_ZERO_VOLUME:
                check_line(&r, i, t.volume == 0 && t.price == c.price, "");
                break;
            case SIM_AN_EXCESSIVE_PRECISION:
                check_line(&r, i, fabs(t.price - c.price) < tick, "%.12f vs %.12f", t.price,
                           c.price);
                break;
            default:
                break; /* field-shape kinds: checked by the label test */
        }
    }
    assert_true(checked > 500);
    run_free(&r);
    run_free(&twin);
}

/* The market's own state after each labelled record: what moved and what did not. */
static void test_anomalies_do_not_poison_the_markets_state(void **state) {
    sim_gen_opts o = opts(14, 10000, 0.1);
    hm_err err;
    sim_gen *g;
    assert_int_equal(sim_gen_new(&o, &g, &err), 0);
    sim_market *m = g->market;
    hm_buf out = HM_BUF_INIT;
    sim_feed before[SIM_MAX_SYMBOLS * SIM_MAX_EXCHANGES];
    double true_before[SIM_MAX_SYMBOLS];
    size_t seen[SIM_AN_COUNT_] = {0};
    for (int i = 0; i < 60000; i++) {
        memcpy(before, m->feeds, m->n_feeds * sizeof(*before));
        for (size_t s = 0; s < m->n_sym; s++)
            true_before[s] = m->sym[s].true_price;
        sim_line line;
        hm_buf_reset(&out);
        sim_gen_next(g, -1, &out, NULL, &line);
        const sim_record *rec = &g->rec;
        const sim_feed *b = &before[rec->feed], *a = &m->feeds[rec->feed];
        seen[line.label]++;
        switch (line.label) {
            case SIM_AN_OUT_OF_ORDER:
            case SIM_AN_STALE:
            case SIM_AN_DELAYED:
            case SIM_AN_FUTURE:
                assert_int_equal(a->last_ts_ms, b->last_ts_ms); /* feed clock unmoved */
                assert_int_equal(a->next_id, b->next_id + 1);
                break;
            case SIM_AN_DUPLICATE_TRADE_ID:
                assert_int_equal(rec->trade_id, b->next_id - 1);
                assert_int_equal(a->next_id, b->next_id); /* no id used up */
                break;
            case SIM_AN_TRADE_ID_GAP:
                assert_int_equal(a->next_id, rec->trade_id + 1); /* the sequence jumps */
                assert_in_range(rec->trade_id - (b->next_id - 1), 10, 1000);
                break;
            case SIM_AN_MALFORMED_JSON:
            case SIM_AN_INVALID_UTF8:
            case SIM_AN_UNKNOWN_EXCHANGE:
            case SIM_AN_INVALID_SYMBOL:
                assert_int_equal(a->next_id, b->next_id);
                break;
            case SIM_AN_PRICE_SPIKE:
            case SIM_AN_CROSS_EXCHANGE:
            case SIM_AN_ZERO_PRICE:
            case SIM_AN_NEGATIVE_PRICE: {
                /* The spike is in the record only: the true price barely moved. */
                double tp = m->sym[rec->sym].true_price / true_before[rec->sym];
                assert_true(fabs(tp - 1) < 0.001);
                assert_int_equal(a->next_id, b->next_id + 1);
                break;
            }
            case SIM_AN_LEVEL_SHIFT: {
                /* The feed that shifts moves the true price by 6..12%; the other
                 * exchanges' labelled first ticks find it already moved. */
                double tp = fabs(m->sym[rec->sym].true_price / true_before[rec->sym] - 1);
                assert_true(tp < 0.001 || (tp > 0.059 && tp < 0.121));
                break;
            }
            default:
                break;
        }
    }
    assert_true(seen[SIM_AN_OUT_OF_ORDER] > 50 && seen[SIM_AN_DUPLICATE_TRADE_ID] > 50 &&
                seen[SIM_AN_TRADE_ID_GAP] > 50 && seen[SIM_AN_LEVEL_SHIFT] > 10);
    hm_buf_free(&out);
    sim_gen_free(g);
}

static void test_malformed_lines_never_decode_and_stay_one_line(void **state) {
    sim_gen_opts o = opts(15, 10000, 0);
    run r;
    run_gen(&r, &o, 3000);
    size_t bad = 0;
    for (size_t i = 0; i < r.n; i++) {
        for (uint8_t variant = 1; variant <= 3; variant++) {
            for (double at = 0; at < 1; at += 0.0625) {
                size_t len;
                const char *p = line_at(&r, i, &len);
                char *copy = malloc(len);
                memcpy(copy, p, len);
                sim_record rec = {.garble = variant, .garble_at = at};
                sim_anomaly_garble(&rec, copy, &len);
                hm_tick t;
                hm_decode_err err;
                if (hm_tick_decode(copy, len, 0, &t, &err) == 0)
                    fail_msg("variant %d at %.3f decodes: %.*s", variant, at, (int)len, copy);
                assert_null(memchr(copy, '\n', len));
                assert_true(len > 0);
                free(copy);
                bad++;
            }
        }
    }
    assert_int_equal(bad, 3000 * 3 * 16);
    run_free(&r);
}

static void test_a_level_shift_moves_every_exchange_of_the_symbol_and_holds(void **state) {
    sim_gen_opts o = opts(16, 10000, 0.01);
    o.anomaly.weights[SIM_AN_LEVEL_SHIFT] = 1.0; /* only this kind */
    run r;
    run_gen(&r, &o, 100000);
    double ref[SIM_MAX_SYMBOLS * SIM_MAX_EXCHANGES] = {0};
    size_t shifts = 0, labels_per_symbol_event = 0;
    for (size_t i = 0; i < r.n; i++) {
        if (r.kind[i] == SIM_R_TRANSFER) continue;
        hm_tick t;
        assert_int_equal(decode(&r, i, &t), 0);
        uint32_t fi = r.feed[i];
        if (r.label[i] == SIM_AN_LEVEL_SHIFT) {
            labels_per_symbol_event++;
            if (ref[fi] > 0) {
                double ratio = t.price / ref[fi];
                check_line(&r, i, fabs(ratio - 1) > 0.05, "shift %.4f", ratio);
                shifts++;
            }
        } else if (ref[fi] > 0) {
            /* After its labelled first tick, every exchange stays at the new level. */
            check_line(&r, i, fabs(t.price / ref[fi] - 1) < 0.01, "drift %.4f", t.price / ref[fi]);
        }
        ref[fi] = t.price;
    }
    assert_true(shifts > 20);
    /* One label per exchange per shift (the last shifts may still be waiting). */
    assert_true(labels_per_symbol_event >= shifts);
    run_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ticks_are_printed_with_exactly_the_tick_decimals),
        cmocka_unit_test(test_volumes_are_micro_units_with_trailing_zeros_trimmed),
        cmocka_unit_test(test_bad_symbols_and_exchanges_are_refused_by_name),
        cmocka_unit_test(test_anomaly_kinds_parse_by_name_and_refuse_unknown_ones),
        cmocka_unit_test(test_same_seed_gives_byte_identical_output_and_labels),
        cmocka_unit_test(test_different_seeds_give_different_output),
        cmocka_unit_test(test_each_call_writes_exactly_one_line),
        cmocka_unit_test(test_clean_records_decode_with_every_field_ok_and_feeds_in_order),
        cmocka_unit_test(test_exchanges_quote_one_symbol_within_a_tenth_of_a_percent),
        cmocka_unit_test(test_arrivals_follow_the_rate_and_the_feed_shares),
        cmocka_unit_test(
            test_bursts_share_a_millisecond_with_consecutive_ids_and_are_never_labelled),
        cmocka_unit_test(
            test_profiles_give_lulls_fat_tails_big_bursts_off_book_prints_and_contracts),
        cmocka_unit_test(test_liquidations_are_large_and_transfers_whale_sized),
        cmocka_unit_test(test_iso_timestamps_decode_to_the_same_clock),
        cmocka_unit_test(test_every_label_points_at_a_line_that_shows_its_anomaly),
        cmocka_unit_test(test_labelled_share_tracks_the_requested_rate),
        cmocka_unit_test(test_anomalies_change_exactly_their_line_compared_with_a_clean_twin),
        cmocka_unit_test(test_anomalies_do_not_poison_the_markets_state),
        cmocka_unit_test(test_malformed_lines_never_decode_and_stay_one_line),
        cmocka_unit_test(test_a_level_shift_moves_every_exchange_of_the_symbol_and_holds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
