// uses: services/archiver
/*
 * test_archiver_export.c: the cold archive's pure helpers (services/archiver/export.c):
 * which dates --export-day takes, and the Hive-style object key of a (date, exchange),
 * escaped so that no exchange name can make a path of its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "export.h"

static void dates(void **state) {
    (void)state;
    assert_true(ar_export_date_valid("2026-12-01"));
    assert_true(ar_export_date_valid("2024-02-29"));  /* leap year */
    assert_true(ar_export_date_valid("2000-02-29"));  /* divisible by 400 */
    assert_false(ar_export_date_valid("2100-02-29")); /* divisible by 100 only */
    assert_false(ar_export_date_valid("2026-02-29"));
    assert_false(ar_export_date_valid("2026-04-31"));
    assert_false(ar_export_date_valid("2026-13-01"));
    assert_false(ar_export_date_valid("2026-00-10"));
    assert_false(ar_export_date_valid("2026-12-00"));
    assert_false(ar_export_date_valid("2026-1-01"));
    assert_false(ar_export_date_valid("2026/12/01"));
    assert_false(ar_export_date_valid("2026-12-01x"));
    assert_false(ar_export_date_valid("2026-12-0a"));
    assert_false(ar_export_date_valid(""));
    assert_false(ar_export_date_valid(NULL));
}

static void key_of(const char *date, const char *exchange, const char *want) {
    ar_export_day d;
    snprintf(d.date, sizeof(d.date), "%s", date);
    snprintf(d.exchange, sizeof(d.exchange), "%s", exchange);
    char key[AR_EXPORT_KEY_MAX];
    assert_int_equal(ar_export_key(&d, key, sizeof(key)), 0);
    assert_string_equal(key, want);
}

static void keys(void **state) {
    (void)state;
    key_of("2026-12-01", "binance", "market_data/date=2026-12-01/exchange=binance/part-0.parquet");
    key_of("2026-12-01", "binance-futures_x1.v2",
           "market_data/date=2026-12-01/exchange=binance-futures_x1.v2/part-0.parquet");
    /* A path of its own: escaped, so the key keeps its four levels. */
    key_of("2026-12-01", "../etc",
           "market_data/date=2026-12-01/exchange=%2E.%2Fetc/part-0.parquet");
    key_of("2026-12-01", "..", "market_data/date=2026-12-01/exchange=%2E./part-0.parquet");
    key_of("2026-12-01", "a b=c%",
           "market_data/date=2026-12-01/exchange=a%20b%3Dc%25/part-0.parquet");
    key_of("2026-12-01", "\xc3\xa9", "market_data/date=2026-12-01/exchange=%C3%A9/part-0.parquet");
}

static void key_too_long(void **state) {
    (void)state;
    ar_export_day d = {.date = "2026-12-01"};
    memset(d.exchange, '/', AR_EXPORT_EXCHANGE_MAX);
    d.exchange[AR_EXPORT_EXCHANGE_MAX] = '\0';
    char key[AR_EXPORT_KEY_MAX];
    assert_int_equal(ar_export_key(&d, key, sizeof(key)), 0); /* the longest fits */
    assert_int_equal(strlen(key), strlen("market_data/date=2026-12-01/exchange=/part-0.parquet") +
                                      3 * AR_EXPORT_EXCHANGE_MAX);
    char small[40];
    assert_int_equal(ar_export_key(&d, small, sizeof(small)), -ENOSPC);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dates),
        cmocka_unit_test(keys),
        cmocka_unit_test(key_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
