// uses: services/archiver
/*
 * test_archiver_rows.c: quality records to COPY rows of ar_stage (services/archiver/rows.c):
 * what market_data takes, what it rejects and why, and the UTC days of a batch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rows.h"

#define TRADE(price)                                                                               \
    "{\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"timestamp\":1796173200022,"               \
    "\"price\":" price ",\"volume\":0.5,\"trade_id\":\"42\",\"side\":\"buy\",\"type\":\"trade\","  \
    "\"quality_score\":1.000,\"issues\":[],\"issue_count\":0,"                                     \
    "\"processed_at\":\"2026-12-01T00:00:00.000Z\",\"original_data\":{}}"

static const ar_rows_limits k_open = {.min_ts_ms = INT64_MIN, .max_ts_ms = INT64_MAX};

static void add(ar_rows *r, const char *rec, int64_t offset, ar_reject *why) {
    ar_source src = {.topic = "quality_scores", .partition = 3, .offset = offset};
    memset(why, 0, sizeof(*why));
    ar_rows_add(r, &src, rec, strlen(rec), &k_open, why);
}

/* The n-th tab-separated field of the batch's last row. */
static void field(const ar_rows *r, int n, char *out, size_t size) {
    const char *end = r->copy.data + r->copy.len - 1; /* the row's '\n' */
    const char *row = end;
    while (row > r->copy.data && row[-1] != '\n')
        row--;
    for (int i = 0; i < n; i++)
        row = memchr(row, '\t', (size_t)(end - row)) + 1;
    const char *tab = memchr(row, '\t', (size_t)(end - row));
    size_t len = (size_t)((tab ? tab : end) - row);
    snprintf(out, size, "%.*s", (int)len, row);
}

static void test_a_trade_is_one_row_with_its_source_coordinates(void **state) {
    (void)state;
    ar_rows r = {0};
    ar_reject why;
    add(&r, TRADE("43000.5"), 77, &why);
    assert_null(why.reason);
    assert_int_equal(r.accepted, 1);
    assert_int_equal(r.rejected, 0);
    char f[64];
    field(&r, 1, f, sizeof(f));
    assert_string_equal(f, "BTC/USDT");
    field(&r, 3, f, sizeof(f));
    assert_string_equal(f, "43000.5");
    field(&r, 11, f, sizeof(f));
    assert_string_equal(f, "quality_scores");
    field(&r, 12, f, sizeof(f));
    assert_string_equal(f, "3");
    field(&r, 13, f, sizeof(f));
    assert_string_equal(f, "77");
    field(&r, 14, f, sizeof(f));
    assert_string_equal(f, "\\N"); /* no reject reason */
    assert_int_equal(r.n_days, 1);
    char day[11];
    ar_day_format(r.days[0], day);
    assert_string_equal(day, "2026-12-02"); /* 1796173200022 ms */
    ar_rows_free(&r);
}

static void test_rejects_carry_reason_field_and_the_record(void **state) {
    (void)state;
    ar_rows r = {0};
    ar_reject why;
    add(&r, TRADE("0"), 1, &why);
    assert_string_equal(why.reason, "price_not_positive");
    assert_string_equal(why.field, "price");
    char f[64];
    field(&r, 14, f, sizeof(f));
    assert_string_equal(f, "price_not_positive");
    add(&r, "not json", 2, &why);
    assert_string_equal(why.reason, "not_a_quality_record");
    field(&r, 17, f, sizeof(f));
    assert_string_equal(f, "\\\\x6e6f74206a736f6e"); /* bytea hex of "not json" */
    assert_int_equal(r.accepted, 0);
    assert_int_equal(r.rejected, 2);
    assert_int_equal(r.n_days, 0);
    ar_rows_reset(&r);
    assert_int_equal(ar_rows_count(&r), 0);
    assert_int_equal(r.copy.len, 0);
    ar_rows_free(&r);
}

static void test_records_outside_the_window_are_rejected(void **state) {
    (void)state;
    ar_rows r = {0};
    ar_reject why = {0};
    ar_source src = {.topic = "q", .partition = 0, .offset = 0};
    ar_rows_limits lim = {.min_ts_ms = 1796173200023, .max_ts_ms = INT64_MAX};
    ar_rows_add(&r, &src, TRADE("1"), strlen(TRADE("1")), &lim, &why);
    assert_string_equal(why.reason, "older_than_retention");
    lim = (ar_rows_limits){.min_ts_ms = INT64_MIN, .max_ts_ms = 1796173200021};
    ar_rows_add(&r, &src, TRADE("1"), strlen(TRADE("1")), &lim, &why);
    assert_string_equal(why.reason, "timestamp_in_future");
    ar_rows_free(&r);
}

static void test_days_format_and_parse_round_trip(void **state) {
    (void)state;
    static const char *const days[] = {"1970-01-01", "2000-02-29", "2026-12-31", "2100-03-01"};
    for (size_t i = 0; i < sizeof(days) / sizeof(days[0]); i++) {
        int32_t d;
        char out[11];
        assert_int_equal(ar_day_parse(days[i], &d), 0);
        ar_day_format(d, out);
        assert_string_equal(out, days[i]);
    }
    int32_t d;
    assert_int_equal(ar_day_parse("1970-01-02", &d), 0);
    assert_int_equal(d, 1);
    assert_int_equal(ar_day_of_ms(-1), -1);
    assert_int_equal(ar_day_of_ms(86400000), 1);
    static const char *const bad[] = {"2026-02-29", "2100-02-29",  "2026-13-01",
                                      "2026-1-01",  "2026-01-01x", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ar_day_parse(bad[i], &d), -EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_trade_is_one_row_with_its_source_coordinates),
        cmocka_unit_test(test_rejects_carry_reason_field_and_the_record),
        cmocka_unit_test(test_records_outside_the_window_are_rejected),
        cmocka_unit_test(test_days_format_and_parse_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
