// uses: services/ingest-validator
/*
 * test_real_markets.c: the ingest-validator on real exchange trades
 * (tests/unit/fixtures/real-trades/, excerpts of the development set: every line a trade
 * an exchange printed, so a score below 1 on one is a false positive), one test per
 * class of cause the real markets showed, each next to the defect the check is there
 * for, so that a fix for genuine data cannot quietly stop finding bad data:
 *   quiet markets   a lull on a sparse market is not a clock from the future (event
 *                   clock: judged against the symbol's own rhythm), a gap is news about
 *                   the feed (LARGE_GAP informational); a tick far ahead still is;
 *   fat tails       a block trade hundreds of times the baseline is informational
 *                   (VOLUME_SPIKE, weight 0, still reported); a size orders of magnitude
 *                   beyond any market's tail still lowers the score;
 *   replay time     a recorded feed that carries its own receive time is judged against
 *                   it, as live is against the Kafka record time: a trade received late
 *                   is stale whatever the stream around it says, and one received at
 *                   once after a long lull is no clock from the future;
 *   instruments     an inverse contract's notional is contracts x their size (inferred
 *                   for *coinm, or from checks.instruments), ids above 2^53 are exact,
 *                   unordered ids are checked for duplicates only (these on records of
 *                   the shape of the real ones: the development set has no COIN-M trade).
 * Through the engine API, replay's event clock, the default configuration with the
 * fixtures' exchange names added.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "engine.h"

#define FIXTURES "tests/unit/fixtures/real-trades/"

typedef struct run {
    iv_config cfg;
    iv_engine *e;
    hm_buf out;
    iv_output res;
} run;

/* The configuration: the fixtures' exchanges, plus `extra` lines under checks:. */
static int load_config(iv_config *cfg, const char *extra, hm_err *err) {
    memset(cfg, 0, sizeof(*cfg));
    char path[] = "/tmp/test_real_markets.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char yaml[1024];
    int n = snprintf(yaml, sizeof(yaml),
                     "checks:\n  valid_exchanges: [binance, binanceusdm, binancecoinm, kraken, "
                     "bybit, deribit, coinbase]\n%s",
                     extra ? extra : "");
    assert_int_equal(write(fd, yaml, (size_t)n), n);
    close(fd);
    int rc = iv_config_load(cfg, path, err);
    unlink(path);
    return rc;
}

static void run_init_with(run *r, const char *extra) {
    memset(r, 0, sizeof(*r));
    hm_err err;
    if (load_config(&r->cfg, extra, &err) != 0) fail_msg("iv_config_load: %s", err.msg);
    r->e = iv_engine_new(&r->cfg.checks, true); /* replay's event clock */
}

static void run_init(run *r) {
    run_init_with(r, NULL);
}

static void run_free(run *r) {
    iv_engine_free(r->e);
    iv_config_free(&r->cfg);
    hm_buf_free(&r->out);
}

/* Judge one record; r->res has its verdict. */
static void judge(run *r, const char *json) {
    hm_buf_reset(&r->out);
    iv_input in = {json, strlen(json), -1, 0};
    r->res.json = &r->out;
    iv_engine_process(r->e, &in, 0, &r->res);
}

static bool has_code(const run *r, hm_qcode c) {
    for (uint32_t i = 0; i < r->res.n_issues; i++)
        if (r->res.issues[i] == c) return true;
    return false;
}

/* Every line of a fixture; fn (may be NULL) sees each verdict. @return the lines below 1. */
static int judge_fixture(run *r, const char *name, void (*fn)(run *r, const char *line, int n)) {
    FILE *f = fopen(name, "r");
    if (!f) fail_msg("cannot open %s (tests run from the repository root)", name);
    char line[4096];
    int n = 0, below = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        judge(r, line);
        n++;
        if (r->res.score < 1) {
            below++;
            print_message("%s:%d: score %.3f: %s\n", name, n, r->res.score, r->out.data);
        }
        if (fn) fn(r, line, n);
    }
    fclose(f);
    assert_true(n > 100);
    return below;
}

/* ---- quiet markets --------------------------------------------------------------------- */

static int g_future, g_gap;

static void count_lull_codes(run *r, const char *line, int n) {
    (void)line;
    (void)n;
    g_future += has_code(r, HM_Q_FUTURE_TIMESTAMP);
    g_gap += has_code(r, HM_Q_LARGE_GAP);
}

/* The hour of Kraken BTC/USD: no FUTURE_TIMESTAMP, no LARGE_GAP. One record is below 1:
 * line 1001 repeats line 1000 exactly (ms, price, size, side) on a market without trade
 * ids, which a repeated message would look like too (DUPLICATE_TIMESTAMP). */
static void test_a_sparse_market_s_lulls_are_not_the_future(void **state) {
    (void)state;
    run r;
    run_init(&r);
    g_future = g_gap = 0;
    assert_int_equal(judge_fixture(&r, FIXTURES "kraken_btcusd_lulls.jsonl", count_lull_codes), 1);
    assert_int_equal(g_future, 0);
    assert_int_equal(g_gap, 0);
    run_free(&r);
}

/* After a fixture, a trade with a clock ahead is FUTURE_TIMESTAMP, and the next genuine
 * trade is clean again (the watermark did not follow the bad clock). */
static void expect_future_then_clean(const char *fixture, const char *ahead, const char *next) {
    run r;
    run_init(&r);
    judge_fixture(&r, fixture, NULL);
    judge(&r, ahead);
    assert_true(has_code(&r, HM_Q_FUTURE_TIMESTAMP) && r.res.score < 1);
    judge(&r, next);
    assert_int_equal(r.res.n_issues, 0);
    run_free(&r);
}

/* After the sparse market's lulls (gaps of up to 58 s), a clock 20 minutes ahead is
 * beyond three times the longest of them. The fixture's last trade is at 1561942791213. */
static void test_a_clock_far_ahead_after_lulls_is_still_the_future(void **state) {
    (void)state;
    expect_future_then_clean(
        FIXTURES "kraken_btcusd_lulls.jsonl",
        "{\"timestamp\":1561944000000,\"symbol\":\"BTC/USD\",\"exchange\":\"kraken\","
        "\"price\":10800.0,\"volume\":0.01,\"side\":\"buy\"}",
        "{\"timestamp\":1561942795000,\"symbol\":\"BTC/USD\",\"exchange\":\"kraken\","
        "\"price\":10800.0,\"volume\":0.02,\"side\":\"sell\"}");
}

/* On a dense market (the mean gap between its trading moments is a few ms) a trade 30 s
 * ahead is the future: the rhythm that lets the sparse market's lulls pass does not let
 * a dense market's bad clock pass. The fixture's last trade: 1680653184572, id 3535198615. */
static void test_a_clock_30_s_ahead_on_a_dense_market_is_the_future(void **state) {
    (void)state;
    expect_future_then_clean(
        FIXTURES "binanceusdm_btcusdt_block.jsonl",
        "{\"timestamp\":1680653214572,\"symbol\":\"BTC/USDT\",\"exchange\":\"binanceusdm\","
        "\"price\":28139.2,\"volume\":0.01,\"trade_id\":3535198616,\"side\":\"buy\"}",
        "{\"timestamp\":1680653184600,\"symbol\":\"BTC/USDT\",\"exchange\":\"binanceusdm\","
        "\"price\":28139.3,\"volume\":0.002,\"trade_id\":3535198617,\"side\":\"sell\"}");
}

/* ---- fat tails -------------------------------------------------------------------------- */

static bool g_block_seen;

static void on_block_trade(run *r, const char *line, int n) {
    (void)n;
    if (strstr(line, "\"volume\": 1.332, \"trade_id\": 3535198596")) {
        g_block_seen = true;
        assert_true(has_code(r, HM_Q_VOLUME_SPIKE)); /* reported, weight 0 */
        assert_true(r->res.score == 1);
    }
}

static void test_a_block_trade_is_informational_not_a_defect(void **state) {
    (void)state;
    run r;
    run_init(&r);
    g_block_seen = false;
    assert_int_equal(judge_fixture(&r, FIXTURES "binanceusdm_btcusdt_block.jsonl", on_block_trade),
                     0);
    assert_true(g_block_seen);
    run_free(&r);
}

/* After the same market, a print of 50,000 BTC (~10^7 times its baseline: no exchange
 * prints that) still lowers the score: EXTREME_VOLUME_SPIKE. */
static void test_a_size_beyond_any_tail_still_lowers_the_score(void **state) {
    (void)state;
    run r;
    run_init(&r);
    judge_fixture(&r, FIXTURES "binanceusdm_btcusdt_block.jsonl", NULL);
    judge(&r, "{\"timestamp\":1680653184580,\"symbol\":\"BTC/USDT\",\"exchange\":\"binanceusdm\","
              "\"price\":28139.2,\"volume\":50000,\"trade_id\":3535198616,\"side\":\"buy\"}");
    assert_true(has_code(&r, HM_Q_EXTREME_VOLUME_SPIKE) && r.res.score < 1);
    run_free(&r);
}

/* ---- replay time ------------------------------------------------------------------------ */

static void test_a_recorded_feed_is_judged_against_its_own_receive_times(void **state) {
    (void)state;
    run r;
    run_init(&r);
    assert_int_equal(judge_fixture(&r, FIXTURES "coinbase_with_receipts.jsonl", NULL), 0);
    /* the fixture's last trade: ETH/USD at 1786309572197, id 833140810. The next one,
     * received 45 s after its own time, is stale, though on the stream's watermark it is
     * right on time (the event clock alone would call it clean). */
    judge(&r, "{\"timestamp\":1786309572300,\"symbol\":\"ETH/USD\",\"exchange\":\"coinbase\","
              "\"price\":1919.4,\"volume\":0.01,\"trade_id\":833140811,\"side\":\"buy\","
              "\"receipt_timestamp\":1786309617.300}");
    assert_true(has_code(&r, HM_Q_STALE_DATA) && r.res.score < 1);
    /* After 20 minutes without a trade (beyond any lull the rhythm allows), a trade the
     * capture received 40 ms after its time is clean: no clock from the future. */
    judge(&r, "{\"timestamp\":1786310772300,\"symbol\":\"ETH/USD\",\"exchange\":\"coinbase\","
              "\"price\":1921.0,\"volume\":0.01,\"trade_id\":833140812,\"side\":\"sell\","
              "\"receipt_timestamp\":1786310772.340}");
    assert_false(has_code(&r, HM_Q_FUTURE_TIMESTAMP));
    assert_true(r.res.score == 1);
    /* Two hours later without a receive time it is judged on the event clock: beyond
     * three times the longest lull so far (the 20 minutes), the future. */
    judge(&r, "{\"timestamp\":1786317972300,\"symbol\":\"ETH/USD\",\"exchange\":\"coinbase\","
              "\"price\":1921.0,\"volume\":0.01,\"trade_id\":833140813,\"side\":\"sell\"}");
    assert_true(has_code(&r, HM_Q_FUTURE_TIMESTAMP));
    run_free(&r);
}

/* ---- instrument conventions --------------------------------------------------------- */

static void trade_on(run *r, const char *exch, const char *sym, int64_t ts, const char *price,
                     const char *volume, const char *id) {
    char json[512];
    snprintf(json, sizeof(json),
             "{\"timestamp\":%lld,\"symbol\":\"%s\",\"exchange\":\"%s\",\"price\":%s,"
             "\"volume\":%s,\"trade_id\":%s,\"side\":\"buy\"}",
             (long long)ts, sym, exch, price, volume, id);
    judge(r, json);
}

/* Binance COIN-M's sizes count contracts of 100 USD (BTC): 2,000 contracts at 28,000 are
 * 200,000 USD, not 56 M. Inferred from the market's name; a table entry does the same
 * for any other name; past notional_max (10 M) the notional is still reported. */
static void test_an_inverse_contract_s_notional_is_contracts_times_their_size(void **state) {
    (void)state;
    run r;
    run_init_with(&r, "  instruments: [\"deribit BTC/USD inverse contract=10\"]\n");
    int64_t ts = 1680653184000;
    for (int i = 0; i < 10; i++)
        trade_on(&r, "binancecoinm", "BTC/USD", ts + i, "28000", "20", "1");
    trade_on(&r, "binancecoinm", "BTC/USD", ts + 20, "28000", "2000", "2");
    assert_false(has_code(&r, HM_Q_NOTIONAL_OUTLIER));
    trade_on(&r, "binancecoinm", "BTC/USD", ts + 21, "28000", "200000", "3");
    assert_true(has_code(&r, HM_Q_NOTIONAL_OUTLIER)); /* 20 M USD */
    trade_on(&r, "deribit", "BTC/USD", ts + 22, "28000", "20000", "7");
    assert_false(has_code(&r, HM_Q_NOTIONAL_OUTLIER)); /* 200,000 USD, not 560 M */
    trade_on(&r, "binance", "BTC/USDT", ts + 23, "28000", "2000", "9");
    assert_true(has_code(&r, HM_Q_NOTIONAL_OUTLIER)); /* a linear market: 56 M */
    run_free(&r);
}

/* Ids are int64: above 2^53 (where a double loses units) a gap of one is told from none. */
static void test_trade_ids_above_2_to_the_53_are_exact(void **state) {
    (void)state;
    run r;
    run_init(&r);
    int64_t ts = 1680653184000;
    trade_on(&r, "bybit", "BTC/USDT", ts, "28000", "0.1", "9007199254740993");
    trade_on(&r, "bybit", "BTC/USDT", ts + 1, "28000", "0.1", "9007199254740994");
    assert_int_equal(r.res.n_issues, 0);
    trade_on(&r, "bybit", "BTC/USDT", ts + 2, "28000", "0.1", "9007199254740996");
    assert_true(has_code(&r, HM_Q_TRADE_ID_GAP));
    trade_on(&r, "bybit", "BTC/USDT", ts + 3, "28000", "0.1", "\"9007199254740996\"");
    assert_true(has_code(&r, HM_Q_DUPLICATE_TRADE_ID)); /* the same id as a string */
    run_free(&r);
}

/* A market whose ids identify trades but follow no sequence (ids=unordered): duplicates
 * still count, gaps and order do not. */
static void test_unordered_ids_are_checked_for_duplicates_only(void **state) {
    (void)state;
    run r;
    run_init_with(&r, "  instruments: [\"kraken * ids=unordered\"]\n");
    int64_t ts = 1680653184000;
    trade_on(&r, "kraken", "BTC/USD", ts, "28000", "0.1", "500");
    trade_on(&r, "kraken", "BTC/USD", ts + 1, "28000", "0.1", "9000");
    trade_on(&r, "kraken", "BTC/USD", ts + 2, "28000", "0.1", "12");
    assert_int_equal(r.res.n_issues, 0);
    trade_on(&r, "kraken", "BTC/USD", ts + 3, "28000", "0.1", "9000");
    assert_true(has_code(&r, HM_Q_DUPLICATE_TRADE_ID));
    trade_on(&r, "coinbase", "BTC/USD", ts + 4, "28000", "0.1", "500");
    trade_on(&r, "coinbase", "BTC/USD", ts + 5, "28000", "0.1", "9000");
    assert_true(has_code(&r, HM_Q_TRADE_ID_GAP)); /* coinbase is sequential */
    run_free(&r);
}

static void test_a_bad_instrument_entry_is_refused_by_name(void **state) {
    (void)state;
    static const struct {
        const char *yaml, *want;
    } bad[] = {
        {"  instruments: [\"deribit\"]\n", "checks.instruments[0]: 'deribit'"},
        {"  instruments: [\"deribit BTC/USD inverse\"]\n", "needs contract=N"},
        {"  instruments: [\"deribit BTC/USD contract=-1\"]\n", "a number > 0"},
        {"  instruments: [\"deribit * ids=random\"]\n", "unknown word"},
        {"  instruments: [\"a * inverse contract=1\", \"A * ids=unordered\"]\n",
         "checks.instruments[1]: 'A * ids=unordered': listed twice"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        iv_config cfg;
        hm_err err;
        int rc = load_config(&cfg, bad[i].yaml, &err);
        if (rc != -EINVAL || !strstr(err.msg, bad[i].want))
            fail_msg("%s: rc %d, '%s'; want '%s'", bad[i].yaml, rc, rc ? err.msg : "", bad[i].want);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_sparse_market_s_lulls_are_not_the_future),
        cmocka_unit_test(test_a_clock_far_ahead_after_lulls_is_still_the_future),
        cmocka_unit_test(test_a_clock_30_s_ahead_on_a_dense_market_is_the_future),
        cmocka_unit_test(test_a_block_trade_is_informational_not_a_defect),
        cmocka_unit_test(test_a_size_beyond_any_tail_still_lowers_the_score),
        cmocka_unit_test(test_a_recorded_feed_is_judged_against_its_own_receive_times),
        cmocka_unit_test(test_an_inverse_contract_s_notional_is_contracts_times_their_size),
        cmocka_unit_test(test_trade_ids_above_2_to_the_53_are_exact),
        cmocka_unit_test(test_unordered_ids_are_checked_for_duplicates_only),
        cmocka_unit_test(test_a_bad_instrument_entry_is_refused_by_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
