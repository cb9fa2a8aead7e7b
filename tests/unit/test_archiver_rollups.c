// uses: services/archiver
/*
 * test_archiver_rollups.c: exact decimal sums as PostgreSQL's NUMERIC makes them
 * (services/archiver/decimal.c) and a batch's partial candles and day counts
 * (services/archiver/rollups.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "decimal.h"
#include "rollups.h"
#include "rows.h"

static void text_of(ar_dec d, char *out, size_t size) {
    hm_buf b = {0};
    ar_dec_put(&b, d);
    snprintf(out, size, "%.*s", (int)b.len, b.data);
    hm_buf_free(&b);
}

static void test_doubles_become_the_decimals_float8_numeric_gives(void **state) {
    (void)state;
    char t[64];
    text_of(ar_dec_of_double(0.1 + 0.2), t, sizeof(t)); /* 0.30000000000000004: "%.15g" 0.3 */
    assert_string_equal(t, "3e-1");
    text_of(ar_dec_of_double(43000.5), t, sizeof(t));
    assert_string_equal(t, "430005e-1");
    text_of(ar_dec_of_double(1e20), t, sizeof(t));
    assert_string_equal(t, "1e20");
    text_of(ar_dec_of_double(0), t, sizeof(t));
    assert_string_equal(t, "0");
    text_of(ar_dec_of_float(0.95f), t, sizeof(t)); /* 0.949999988: "%.6g" 0.95 */
    assert_string_equal(t, "95e-2");
    text_of(ar_dec_square(ar_dec_of_double(1.5)), t, sizeof(t));
    assert_string_equal(t, "225e-2");
}

static void test_sums_are_exact_and_say_when_they_leave_128_bits(void **state) {
    (void)state;
    ar_dec acc = {0, 0};
    assert_true(ar_dec_add(&acc, ar_dec_of_double(0.1)));
    assert_true(ar_dec_add(&acc, ar_dec_of_double(0.2)));
    assert_true(ar_dec_add(&acc, ar_dec_of_double(100)));
    char t[64];
    text_of(acc, t, sizeof(t));
    assert_string_equal(t, "1003e-1"); /* 100.3 exactly, where doubles give 100.30000000000001 */
    ar_dec before = acc;
    assert_false(ar_dec_add(&acc, ar_dec_of_double(1e-40))); /* 41 more digits: too many */
    assert_true(acc.c == before.c && acc.e == before.e);
}

#define TRADE(ts, price, exchange)                                                                 \
    "{\"symbol\":\"BTC/USDT\",\"exchange\":\"" exchange "\",\"timestamp\":" ts ",\"price\":" price \
    ",\"volume\":0.5,\"trade_id\":\"42\",\"side\":\"buy\",\"type\":\"trade\","                     \
    "\"quality_score\":0.9,\"issues\":[],\"issue_count\":0,"                                       \
    "\"processed_at\":\"2026-12-01T00:00:00.000Z\",\"original_data\":{}}"

static const ar_rows_limits k_open = {.min_ts_ms = INT64_MIN, .max_ts_ms = INT64_MAX};

static void add(ar_rows *r, const char *rec, int32_t partition, int64_t offset) {
    ar_source src = {.topic = "quality_scores", .partition = partition, .offset = offset};
    ar_rows_add(r, &src, rec, strlen(rec), &k_open, NULL);
}

/* The whole batch folded at once, then written. */
static size_t build(ar_rollups *ru, const ar_rows *r, hm_buf *candles, hm_buf *days) {
    ar_rollups_reset(ru);
    ar_rollups_fold(ru, r);
    return ar_rollups_write(ru, r, candles, days);
}

/* The line of COPY text b that starts with prefix, copied to out; false when none. */
static bool line_starting(const hm_buf *b, const char *prefix, char *out, size_t size) {
    const char *p = b->data, *end = b->data + b->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)(eol - p);
        if (n >= strlen(prefix) && memcmp(p, prefix, strlen(prefix)) == 0) {
            snprintf(out, size, "%.*s", (int)n, p);
            return true;
        }
        p = eol + 1;
    }
    return false;
}

static size_t lines(const hm_buf *b) {
    size_t n = 0;
    for (size_t i = 0; i < b->len; i++)
        n += b->data[i] == '\n';
    return n;
}

static void test_out_of_order_trades_give_earliest_open_and_latest_close(void **state) {
    (void)state;
    ar_rows r = {0};
    ar_rollups ru = {0};
    hm_buf candles = {0}, days = {0};
    /* 2026-12-02T00:00:00Z = 1796169600000; all in its first 5 minutes but the last. */
    add(&r, TRADE("1796169600200", "102", "binance"), 0, 5);  /* arrives first, not first */
    add(&r, TRADE("1796169600100", "101", "binance"), 1, 9);  /* the open */
    add(&r, TRADE("1796169600200", "103", "binance"), 0, 4);  /* same ts: lower offset */
    add(&r, TRADE("1796169899999", "99.5", "binance"), 2, 1); /* the close */
    add(&r, TRADE("1796169900000", "100", "binance"), 2, 2);  /* the next 5-minute bucket */
    add(&r, TRADE("1796169600000", "7", "kraken"), 0, 6);     /* another exchange */
    size_t n = build(&ru, &r, &candles, &days);
    assert_int_equal(n, 5); /* 5 min: binance x2, kraken; 1 h: binance, kraken */
    assert_int_equal(lines(&candles), 5);
    char l[512];
    assert_true(line_starting(&candles, "300\t2026-12-02T00:00:00.000Z\tBTC/USDT\tbinance\t", l,
                              sizeof(l)));
    assert_string_equal(l, "300\t2026-12-02T00:00:00.000Z\tBTC/USDT\tbinance\t"
                           "101\t2026-12-02T00:00:00.100Z\t1\t9\t"
                           "99.5\t2026-12-02T00:04:59.999Z\t2\t1\t"
                           "103\t99.5\t20e-1\t4\t36e-1\t4055e-1\t4111425e-2");
    assert_true(line_starting(&candles, "3600\t2026-12-02T00:00:00.000Z\tBTC/USDT\tbinance\t", l,
                              sizeof(l)));
    assert_non_null(strstr(l, "\t100\t2026-12-02T00:05:00.000Z\t2\t2\t103\t99.5\t25e-1\t5\t"));
    assert_int_equal(lines(&days), 2);
    assert_true(line_starting(&days, "2026-12-02\tbinance\t", l, sizeof(l)));
    assert_string_equal(l, "2026-12-02\tbinance\t5");
    assert_true(line_starting(&days, "2026-12-02\tkraken\t", l, sizeof(l)));
    assert_string_equal(l, "2026-12-02\tkraken\t1");
    hm_buf_free(&candles);
    hm_buf_free(&days);
    ar_rollups_free(&ru);
    ar_rows_free(&r);
}

static void test_a_sum_too_wide_for_one_partial_is_sent_as_two(void **state) {
    (void)state;
    ar_rows r = {0};
    ar_rollups ru = {0};
    hm_buf candles = {0}, days = {0};
    add(&r, TRADE("1796169600000", "1.23456789012345e-10", "binance"), 0, 1);
    add(&r, TRADE("1796169600001", "1.23456789012345e+20", "binance"), 0, 2);
    size_t n = build(&ru, &r, &candles, &days);
    assert_int_equal(n, 4); /* each width: a partial per trade, the database adds them */
    hm_buf_putc(&candles, '\0');
    /* count 1, quality 0.9, its own price */
    assert_non_null(strstr(candles.data, "\t1\t9e-1\t123456789012345e-24\t"));
    assert_non_null(strstr(candles.data, "\t1\t9e-1\t123456789012345e6\t"));
    hm_buf_free(&candles);
    hm_buf_free(&days);
    ar_rollups_free(&ru);
    ar_rows_free(&r);
}

/* What the archiver does: fold each row as it arrives, write when the batch is sent (and
 * again when it is sent again), fold anew when rows leave the batch. */
static void test_a_fold_row_by_row_writes_what_the_whole_batch_gives(void **state) {
    (void)state;
    ar_rows r = {0};
    ar_rollups live = {0}, whole = {0};
    hm_buf c1 = {0}, d1 = {0}, c2 = {0}, d2 = {0}, c3 = {0}, d3 = {0};
    const char *recs[] = {TRADE("1796169600200", "102", "binance"),
                          TRADE("1796169600000", "1.23456789012345e-10", "binance"),
                          "not a quality record",
                          TRADE("1796169600001", "1.23456789012345e+20", "binance"),
                          TRADE("1796169900000", "100", "kraken")};
    for (size_t i = 0; i < HM_ARRAY_LEN(recs); i++) {
        add(&r, recs[i], 0, (int64_t)i);
        ar_rollups_fold(&live, &r);
    }
    size_t n1 = ar_rollups_write(&live, &r, &c1, &d1);
    size_t n2 = ar_rollups_write(&live, &r, &c2, &d2); /* a retry sends the same */
    size_t n3 = build(&whole, &r, &c3, &d3);
    assert_int_equal(n1, 8); /* binance: 3 partials (sums too wide) x 2 widths; kraken: 2 */
    assert_int_equal(n1, n2);
    assert_int_equal(n1, n3);
    assert_int_equal(c1.len, c3.len);
    assert_memory_equal(c1.data, c3.data, c1.len);
    assert_int_equal(c2.len, c3.len);
    assert_memory_equal(c2.data, c3.data, c2.len);
    assert_int_equal(d1.len, d3.len);
    assert_memory_equal(d1.data, d3.data, d1.len);
    /* Offsets 0..2 archived already: what is left is a trade of each exchange. */
    ar_offset_floor floor = {.partition = 0, .next_offset = 3};
    assert_int_equal(ar_rows_drop_archived(&r, &floor, 1), 3);
    ar_rollups_reset(&live);
    ar_rollups_fold(&live, &r);
    hm_buf_reset(&c1);
    hm_buf_reset(&d1);
    assert_int_equal(ar_rollups_write(&live, &r, &c1, &d1), 4);
    assert_int_equal(lines(&d1), 2);
    hm_buf_free(&c1);
    hm_buf_free(&d1);
    hm_buf_free(&c2);
    hm_buf_free(&d2);
    hm_buf_free(&c3);
    hm_buf_free(&d3);
    ar_rollups_free(&live);
    ar_rollups_free(&whole);
    ar_rows_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doubles_become_the_decimals_float8_numeric_gives),
        cmocka_unit_test(test_sums_are_exact_and_say_when_they_leave_128_bits),
        cmocka_unit_test(test_out_of_order_trades_give_earliest_open_and_latest_close),
        cmocka_unit_test(test_a_sum_too_wide_for_one_partial_is_sent_as_two),
        cmocka_unit_test(test_a_fold_row_by_row_writes_what_the_whole_batch_gives),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
