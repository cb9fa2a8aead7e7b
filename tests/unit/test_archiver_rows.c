// uses: services/archiver
/*
 * test_archiver_rows.c: quality records to COPY rows of market_data and
 * market_data_rejects (services/archiver/rows.c): what market_data takes, what it rejects
 * and why, the UTC days of a batch, and taking already archived rows out of it.
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

/* The n-th tab-separated field of the last row of COPY text b. */
static void field_of(const hm_buf *b, int n, char *out, size_t size) {
    const char *end = b->data + b->len - 1; /* the row's '\n' */
    const char *row = end;
    while (row > b->data && row[-1] != '\n')
        row--;
    for (int i = 0; i < n; i++)
        row = memchr(row, '\t', (size_t)(end - row)) + 1;
    const char *tab = memchr(row, '\t', (size_t)(end - row));
    size_t len = (size_t)((tab ? tab : end) - row);
    snprintf(out, size, "%.*s", (int)len, row);
}

static uint32_t be32_at(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The n-th field of row i of the binary COPY data: its bytes at *out, its length (-1:
 * NULL). */
static int32_t field(const ar_rows *r, size_t i, int n, const unsigned char **out) {
    const unsigned char *p = (const unsigned char *)r->copy.data + r->rows[i].start;
    assert_int_equal(p[0] << 8 | p[1], 14); /* the field count */
    p += 2;
    for (int k = 0; k < n; k++) {
        int32_t len = (int32_t)be32_at(p);
        p += 4 + (len > 0 ? len : 0);
    }
    *out = p + 4;
    return (int32_t)be32_at(p);
}

static void text_field(const ar_rows *r, size_t i, int n, char *out, size_t size) {
    const unsigned char *p;
    int32_t len = field(r, i, n, &p);
    assert_true(len >= 0);
    snprintf(out, size, "%.*s", (int)len, (const char *)p);
}

static uint64_t int_field(const ar_rows *r, size_t i, int n) {
    const unsigned char *p;
    int32_t len = field(r, i, n, &p);
    assert_true(len == 4 || len == 8);
    uint64_t v = be32_at(p);
    return len == 4 ? v : v << 32 | be32_at(p + 4);
}

static void test_a_trade_is_one_row_with_its_source_coordinates(void **state) {
    (void)state;
    ar_rows r = {0};
    ar_reject why;
    add(&r, TRADE("43000.5"), 77, &why);
    assert_null(why.reason);
    assert_int_equal(r.accepted, 1);
    assert_int_equal(r.rejected, 0);
    assert_memory_equal(r.copy.data, "PGCOPY\n\377\r\n\0", 11);
    char f[64];
    text_field(&r, 0, 1, f, sizeof(f));
    assert_string_equal(f, "BTC/USDT");
    uint64_t bits = int_field(&r, 0, 3);
    double price;
    memcpy(&price, &bits, 8);
    assert_true(price == 43000.5);
    /* 2026-12-02T00:00:00.022Z in microseconds since 2000-01-01 */
    assert_int_equal(int_field(&r, 0, 0), (1796173200022LL - 946684800000LL) * 1000);
    const unsigned char *p;
    assert_int_equal(field(&r, 0, 6, &p), 12); /* issues: the empty text[] */
    assert_int_equal(be32_at(p), 0);           /* ndim */
    text_field(&r, 0, 11, f, sizeof(f));
    assert_string_equal(f, "quality_scores");
    assert_int_equal(int_field(&r, 0, 12), 3);
    assert_int_equal(int_field(&r, 0, 13), 77); /* the last column */
    assert_int_equal(r.copy.len, r.rows[0].start + r.rows[0].len);
    assert_int_equal(r.rejects.len, 0);
    assert_int_equal(r.n_rows, 1);
    assert_true(r.rows[0].trade);
    assert_int_equal(r.rows[0].offset, 77);
    assert_int_equal(r.rows[0].ts_ms, 1796173200022);
    assert_true(r.rows[0].quality == 1.0f);
    const char *symbol, *exchange;
    ar_rows_key(&r, r.rows[0].key, &symbol, &exchange);
    assert_string_equal(symbol, "BTC/USDT");
    assert_string_equal(exchange, "binance");
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
    field_of(&r.rejects, 2, f, sizeof(f));
    assert_string_equal(f, "1"); /* offset */
    field_of(&r.rejects, 3, f, sizeof(f));
    assert_string_equal(f, "price_not_positive");
    field_of(&r.rejects, 4, f, sizeof(f));
    assert_string_equal(f, "price");
    add(&r, "not json", 2, &why);
    assert_string_equal(why.reason, "not_a_quality_record");
    field_of(&r.rejects, 9, f, sizeof(f));
    assert_string_equal(f, "\\\\x6e6f74206a736f6e"); /* bytea hex of "not json" */
    assert_int_equal(r.copy.len, 0);
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

static void test_archived_rows_leave_the_batch_and_the_rest_keep_their_text(void **state) {
    (void)state;
    ar_rows r = {0};
    ar_reject why;
    for (int64_t off = 10; off < 16; off++) /* offsets 10..15 of partition 3, 12 bad */
        add(&r, off == 12 ? TRADE("-1") : TRADE("43000.5"), off, &why);
    assert_int_equal(r.accepted, 5);
    assert_int_equal(r.rejected, 1);
    size_t header = r.rows[0].start, row_len = r.rows[0].len;
    ar_offset_floor floors[] = {{.partition = 7, .next_offset = 100}, /* another partition */
                                {.partition = 3, .next_offset = 13}};
    assert_int_equal(ar_rows_drop_archived(&r, floors, 2), 3);
    assert_int_equal(r.accepted, 3);
    assert_int_equal(r.rejected, 0);
    assert_int_equal(r.rejects.len, 0);
    assert_int_equal(r.copy.len, header + 3 * row_len);
    assert_int_equal(r.rows[0].offset, 13);
    assert_int_equal(r.rows[0].start, header);
    assert_int_equal(int_field(&r, 0, 13), 13);
    assert_int_equal(int_field(&r, 2, 13), 15);
    assert_memory_equal(r.copy.data, "PGCOPY\n\377\r\n\0", 11);
    assert_int_equal(ar_rows_drop_archived(&r, floors, 2), 0); /* nothing more below 13 */
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
        cmocka_unit_test(test_archived_rows_leave_the_batch_and_the_rest_keep_their_text),
        cmocka_unit_test(test_days_format_and_parse_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
