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
 *                   once after a long lull is no clock from the future.
 * Through the engine API, replay's event clock, the default configuration with the
 * fixtures' exchange names added.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

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

static void run_init(run *r) {
    memset(r, 0, sizeof(*r));
    char path[] = "/tmp/test_real_markets.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char yaml[] =
        "checks:\n  valid_exchanges: [binance, binanceusdm, kraken, bybit, deribit, coinbase]\n";
    assert_int_equal(write(fd, yaml, sizeof(yaml) - 1), (ssize_t)(sizeof(yaml) - 1));
    close(fd);
    hm_err err;
    int rc = iv_config_load(&r->cfg, path, &err);
    unlink(path);
    if (rc != 0) fail_msg("iv_config_load: %s", err.msg);
    r->e = iv_engine_new(&r->cfg.checks, true); /* replay's event clock */
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

/* After the sparse market's lulls (gaps of tens of seconds), a clock 20 minutes ahead is
 * beyond any lull (checks.future_lull_max_ms, 10 min): FUTURE_TIMESTAMP, and the next
 * genuine trade is clean again (the watermark did not follow the bad clock). */
static void test_a_clock_far_ahead_after_lulls_is_still_the_future(void **state) {
    (void)state;
    run r;
    run_init(&r);
    judge_fixture(&r, FIXTURES "kraken_btcusd_lulls.jsonl", NULL);
    /* the fixture's last trade is at 1561942791213 */
    judge(&r, "{\"timestamp\":1561944000000,\"symbol\":\"BTC/USD\",\"exchange\":\"kraken\","
              "\"price\":10800.0,\"volume\":0.01,\"side\":\"buy\"}");
    assert_true(has_code(&r, HM_Q_FUTURE_TIMESTAMP) && r.res.score < 1);
    judge(&r, "{\"timestamp\":1561942795000,\"symbol\":\"BTC/USD\",\"exchange\":\"kraken\","
              "\"price\":10800.0,\"volume\":0.02,\"side\":\"sell\"}");
    assert_int_equal(r.res.n_issues, 0);
    run_free(&r);
}

/* On a dense market (the mean gap between its trading moments is a few ms) a trade 30 s
 * ahead is the future: the rhythm that lets the sparse market's lulls pass does not let
 * a dense market's bad clock pass. */
static void test_a_clock_30_s_ahead_on_a_dense_market_is_the_future(void **state) {
    (void)state;
    run r;
    run_init(&r);
    judge_fixture(&r, FIXTURES "binanceusdm_btcusdt_block.jsonl", NULL);
    /* the fixture's last trade is at 1680653184572, id 3535198615 */
    judge(&r, "{\"timestamp\":1680653214572,\"symbol\":\"BTC/USDT\",\"exchange\":\"binanceusdm\","
              "\"price\":28139.2,\"volume\":0.01,\"trade_id\":3535198616,\"side\":\"buy\"}");
    assert_true(has_code(&r, HM_Q_FUTURE_TIMESTAMP) && r.res.score < 1);
    judge(&r, "{\"timestamp\":1680653184600,\"symbol\":\"BTC/USDT\",\"exchange\":\"binanceusdm\","
              "\"price\":28139.3,\"volume\":0.002,\"trade_id\":3535198617,\"side\":\"sell\"}");
    assert_int_equal(r.res.n_issues, 0);
    run_free(&r);
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
    /* The same without its receive time is judged on the event clock: the future. */
    judge(&r, "{\"timestamp\":1786312000000,\"symbol\":\"ETH/USD\",\"exchange\":\"coinbase\","
              "\"price\":1921.0,\"volume\":0.01,\"trade_id\":833140813,\"side\":\"sell\"}");
    assert_true(has_code(&r, HM_Q_FUTURE_TIMESTAMP));
    run_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_sparse_market_s_lulls_are_not_the_future),
        cmocka_unit_test(test_a_clock_far_ahead_after_lulls_is_still_the_future),
        cmocka_unit_test(test_a_clock_30_s_ahead_on_a_dense_market_is_the_future),
        cmocka_unit_test(test_a_block_trade_is_informational_not_a_defect),
        cmocka_unit_test(test_a_size_beyond_any_tail_still_lowers_the_score),
        cmocka_unit_test(test_a_recorded_feed_is_judged_against_its_own_receive_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
