/*
 * test_buf.c: unit tests for common/src/buf.c, the byte buffer and JSON writer
 * every record, log line and /metrics page goes through.
 *
 * Pure functions only: no files, no clock. Each test asserts exact bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/buf.h"

/* Deterministic PRNG so a failure reproduces (xorshift64*). */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* Runs a writer on a fresh buffer and compares the whole output. */
#define assert_writes(expected, call)                                                              \
    do {                                                                                           \
        hm_buf b_ = HM_BUF_INIT;                                                                   \
        hm_buf *b = &b_;                                                                           \
        call;                                                                                      \
        assert_string_equal(b_.data, (expected));                                                  \
        assert_int_equal(b_.len, strlen(expected));                                                \
        hm_buf_free(&b_);                                                                          \
    } while (0)

/* ---- buffer -------------------------------------------------------------- */

static void test_many_appends_grow_the_buffer_and_keep_every_byte(void **state) {
    (void)state;
    hm_buf b = HM_BUF_INIT;
    char expected_tail[32];
    size_t expected_len = 0;
    for (int i = 0; i < 100000; i++) {
        hm_buf_append(&b, "ab", 2);
        hm_buf_putc(&b, ':');
        hm_buf_i64(&b, i);
        hm_buf_putc(&b, ';');
        expected_len += 4 + (size_t)snprintf(expected_tail, sizeof(expected_tail), "%d", i);
        assert_true(b.len < b.cap);
        assert_int_equal(b.data[b.len], '\0');
    }
    assert_int_equal(b.len, expected_len);
    assert_int_equal(strlen(b.data), expected_len);
    assert_memory_equal(b.data, "ab:0;ab:1;ab:2;", 15);
    assert_memory_equal(b.data + b.len - 9, "ab:99999;", 9);
    /* Doubling: capacity never more than twice what was needed. */
    assert_true(b.cap <= 2 * (b.len + 1));
    hm_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}

static void test_reset_keeps_memory_and_empties_the_string(void **state) {
    (void)state;
    hm_buf b = HM_BUF_INIT;
    hm_buf_puts(&b, "hello");
    char *mem = b.data;
    size_t cap = b.cap;
    hm_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_ptr_equal(b.data, mem);
    assert_int_equal(b.cap, cap);
    hm_buf_free(&b);
}

static void test_reserve_on_an_empty_buffer_gives_a_terminated_string(void **state) {
    (void)state;
    hm_buf b = HM_BUF_INIT;
    hm_buf_reserve(&b, 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    hm_buf_reserve(&b, 10000);
    assert_true(b.cap >= 10001);
    assert_int_equal(b.len, 0);
    hm_buf_free(&b);
}

static void test_printf_appends_and_grows_past_the_first_allocation(void **state) {
    (void)state;
    char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    hm_buf b = HM_BUF_INIT;
    hm_buf_puts(&b, "start/");
    hm_buf_printf(&b, "%s|%d|%.2f", big, -42, 2.5);
    assert_int_equal(b.len, 6 + 2999 + 9);
    assert_memory_equal(b.data, "start/xxx", 9);
    assert_string_equal(b.data + 6 + 2999, "|-42|2.50");
    hm_buf_printf(&b, "%s", "");
    assert_int_equal(b.len, 6 + 2999 + 9);
    hm_buf_free(&b);
}

/* ---- integers ------------------------------------------------------------ */

static void check_i64(int64_t v) {
    char want[32];
    snprintf(want, sizeof(want), "%" PRId64, v);
    assert_writes(want, hm_buf_i64(b, v));
}

static void check_u64(uint64_t v) {
    char want[32];
    snprintf(want, sizeof(want), "%" PRIu64, v);
    assert_writes(want, hm_buf_u64(b, v));
}

static void test_i64_extremes_match_snprintf(void **state) {
    (void)state;
    assert_writes("-9223372036854775808", hm_buf_i64(b, INT64_MIN));
    assert_writes("9223372036854775807", hm_buf_i64(b, INT64_MAX));
    assert_writes("0", hm_buf_i64(b, 0));
    assert_writes("-1", hm_buf_i64(b, -1));
    const int64_t edges[] = {
        INT64_MIN, INT64_MIN + 1, -1000000, -100, -99,  -10,           -9,       -1, 0, 1, 9, 10,
        99,        100,           101,      999,  1000, INT64_MAX - 1, INT64_MAX};
    for (size_t i = 0; i < HM_ARRAY_LEN(edges); i++)
        check_i64(edges[i]);
}

static void test_u64_extremes_and_random_values_match_snprintf(void **state) {
    (void)state;
    assert_writes("18446744073709551615", hm_buf_u64(b, UINT64_MAX));
    assert_writes("0", hm_buf_u64(b, 0));
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 2000; i++) {
        uint64_t r = rng_next(&s);
        check_u64(r >> (r % 64)); /* spread over every digit count */
        check_i64((int64_t)(r >> (r % 64)) * ((r & 1) ? -1 : 1));
    }
    /* Every power of ten and its neighbours, where digit counts change. */
    for (uint64_t p = 1; p <= UINT64_MAX / 10; p *= 10) {
        check_u64(p - 1);
        check_u64(p);
        check_u64(p + 1);
    }
}

/* ---- JSON strings -------------------------------------------------------- */

#define STR(b, lit) hm_json_str((b), (lit), sizeof(lit) - 1)

static void test_json_str_plain_ascii_is_copied_between_quotes(void **state) {
    (void)state;
    assert_writes("\"BTC-USDT@binance\"", hm_json_cstr(b, "BTC-USDT@binance"));
    assert_writes("\"\"", hm_json_cstr(b, ""));
    assert_writes("\"~\x7f\"", hm_json_cstr(b, "~\x7f")); /* DEL needs no escape in JSON */
}

static void test_json_str_escapes_quotes_backslashes_and_control_chars(void **state) {
    (void)state;
    assert_writes("\"say \\\"hi\\\"\"", hm_json_cstr(b, "say \"hi\""));
    assert_writes("\"C:\\\\path\\\\x\"", hm_json_cstr(b, "C:\\path\\x"));
    assert_writes("\"a\\nb\\tc\\rd\\be\\ff\"", hm_json_cstr(b, "a\nb\tc\rd\be\ff"));
    assert_writes("\"\\u0001\\u001f\\u0000x\"", STR(b, "\x01\x1f\0x"));
    assert_writes("\"/\"", hm_json_cstr(b, "/")); /* solidus may stay as is */
}

static void test_json_str_keeps_valid_multibyte_utf8(void **state) {
    (void)state;
    /* 2, 3 and 4 byte sequences: é, €, 日本, U+1F600, and the extremes U+0080, U+10FFFF. */
    const char *s = "caf\xc3\xa9 \xe2\x82\xac \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 "
                    "\xc2\x80\xf4\x8f\xbf\xbf\xef\xbf\xbf";
    char want[128];
    snprintf(want, sizeof(want), "\"%s\"", s);
    assert_writes(want, hm_json_cstr(b, s));
}

static void test_json_str_replaces_each_invalid_sequence_with_fffd(void **state) {
    (void)state;
    /* Lone continuation bytes: one replacement each. */
    assert_writes("\"a\\ufffd\\ufffdb\"", STR(b, "a\x80\xbf"
                                                 "b"));
    /* Overlong encodings of '/' and of NUL. */
    assert_writes("\"\\ufffd\\ufffd\"", STR(b, "\xc0\xaf"));
    assert_writes("\"\\ufffd\\ufffd\\ufffdx\"", STR(b, "\xe0\x80\x80x"));
    /* UTF-16 surrogate U+D800 encoded in UTF-8. */
    assert_writes("\"\\ufffd\\ufffd\\ufffd\"", STR(b, "\xed\xa0\x80"));
    /* Above U+10FFFF, and bytes that never appear. */
    assert_writes("\"\\ufffd\\ufffd\\ufffd\\ufffd\"", STR(b, "\xf4\x90\x80\x80"));
    assert_writes("\"\\ufffd\\ufffd\"", STR(b, "\xfe\xff"));
}

static void test_json_str_truncated_sequence_is_one_fffd_and_next_char_survives(void **state) {
    (void)state;
    /* € is E2 82 AC; cut after two bytes, then 'A' and the end of input. */
    assert_writes("\"\\ufffdA\"", STR(b, "\xe2\x82"
                                         "A"));
    assert_writes("\"x\\ufffd\"", STR(b, "x\xe2\x82"));
    assert_writes("\"\\ufffd\"", STR(b, "\xf0\x9f\x98"));
    assert_writes("\"\\ufffd\\\"\"", STR(b, "\xc3\""));
    /* The length bounds the read: a valid sequence cut by n is invalid. */
    assert_writes("\"ok\\ufffd\"", hm_json_str(b, "ok\xc3\xa9", 3));
}

static void test_json_str_appends_after_existing_content(void **state) {
    (void)state;
    hm_buf b = HM_BUF_INIT;
    hm_buf_puts(&b, "{\"k\":");
    hm_json_cstr(&b, "v\n");
    hm_buf_putc(&b, '}');
    assert_string_equal(b.data, "{\"k\":\"v\\n\"}");
    hm_buf_free(&b);
}

/* ---- JSON numbers -------------------------------------------------------- */

static void test_json_double_uses_the_shortest_form(void **state) {
    (void)state;
    assert_writes("0.1", hm_json_double(b, 0.1));
    assert_writes("37000", hm_json_double(b, 37000.0));
    assert_writes("-2.5", hm_json_double(b, -2.5));
    assert_writes("0", hm_json_double(b, 0.0));
    assert_writes("-0", hm_json_double(b, -0.0));
    assert_writes("0.30000000000000004", hm_json_double(b, 0.1 + 0.2));
    assert_writes("1e+300", hm_json_double(b, 1e300));
    assert_writes("1.5e-07", hm_json_double(b, 1.5e-7));
    assert_writes("4.94065645841247e-324", hm_json_double(b, 4.9406564584124654e-324));
    assert_writes("65432.123456789", hm_json_double(b, 65432.123456789));
    /* Integral beyond 15 digits: still exact, exponent form when shorter. */
    assert_writes("9007199254740994", hm_json_double(b, 9007199254740994.0));
    assert_writes("1e+15", hm_json_double(b, 1e15));
    assert_writes("999999999999999", hm_json_double(b, 999999999999999.0));
}

static void test_json_double_writes_null_for_non_finite(void **state) {
    (void)state;
    assert_writes("null", hm_json_double(b, NAN));
    assert_writes("null", hm_json_double(b, INFINITY));
    assert_writes("null", hm_json_double(b, -INFINITY));
}

static void check_round_trip(double v) {
    hm_buf b = HM_BUF_INIT;
    hm_json_double(&b, v);
    assert_true(hm_json_is_number(b.data, b.len));
    double back = strtod(b.data, NULL);
    if (memcmp(&back, &v, sizeof(v)) != 0)
        fail_msg("%.17g wrote \"%s\" which reads %.17g", v, b.data, back);
    assert_true(b.len <= 24);
    hm_buf_free(&b);
}

static void test_json_double_round_trips_random_doubles(void **state) {
    (void)state;
    uint64_t s = 12345;
    int checked = 0;
    while (checked < 1000) {
        uint64_t bits = rng_next(&s);
        double v;
        memcpy(&v, &bits, sizeof(v));
        if (!isfinite(v)) continue;
        check_round_trip(v);
        /* Also prices and scores, the values we actually write. */
        check_round_trip((double)(bits >> 11) / 9007199254740992.0);
        check_round_trip((double)(bits % 10000000) / 100.0);
        checked++;
    }
    check_round_trip(1e15);
    check_round_trip(123456789012345678.0);
    check_round_trip(2.2250738585072014e-308);
    check_round_trip(1.7976931348623157e308);
}

static void test_fixed3_rounds_half_up_to_three_decimals(void **state) {
    (void)state;
    assert_writes("0.876", hm_json_fixed3(b, 0.8755));
    assert_writes("0.875", hm_json_fixed3(b, 0.8745));
    assert_writes("0.875", hm_json_fixed3(b, 0.875));
    assert_writes("0.875", hm_json_fixed3(b, 0.87549));
    assert_writes("0.124", hm_json_fixed3(b, 0.1235));
    assert_writes("0.100", hm_json_fixed3(b, 0.1));
    assert_writes("0.001", hm_json_fixed3(b, 0.0005));
    assert_writes("0.000", hm_json_fixed3(b, 0.0004999));
    assert_writes("0.010", hm_json_fixed3(b, 0.00999));
    assert_writes("0.999", hm_json_fixed3(b, 0.9985));
    assert_writes("1.000", hm_json_fixed3(b, 0.9995));
    assert_writes("1.000", hm_json_fixed3(b, 1.0));
    assert_writes("0.000", hm_json_fixed3(b, 0.0));
    /* Every thousandth written exactly. */
    for (int i = 0; i <= 1000; i++) {
        char want[16];
        snprintf(want, sizeof(want), "%d.%03d", i / 1000, i % 1000);
        assert_writes(want, hm_json_fixed3(b, i / 1000.0));
    }
}

static void test_fixed3_clamps_out_of_range_and_nan(void **state) {
    (void)state;
    assert_writes("1.000", hm_json_fixed3(b, 1.5));
    assert_writes("1.000", hm_json_fixed3(b, INFINITY));
    assert_writes("0.000", hm_json_fixed3(b, -0.2));
    assert_writes("0.000", hm_json_fixed3(b, -INFINITY));
    assert_writes("0.000", hm_json_fixed3(b, NAN));
    assert_writes("0.000", hm_json_fixed3(b, -0.0));
}

static void test_is_number_accepts_rfc8259_numbers(void **state) {
    (void)state;
    const char *ok[] = {"0",
                        "-0",
                        "1",
                        "-1",
                        "123",
                        "0.5",
                        "-0.5",
                        "1e5",
                        "1E5",
                        "1e+5",
                        "1e-5",
                        "1.25e-10",
                        "10",
                        "37000",
                        "0e0",
                        "-0.0E-0",
                        "9007199254740993"};
    for (size_t i = 0; i < HM_ARRAY_LEN(ok); i++) {
        if (!hm_json_is_number(ok[i], strlen(ok[i]))) fail_msg("rejected \"%s\"", ok[i]);
    }
}

static void test_is_number_rejects_what_json_forbids(void **state) {
    (void)state;
    const char *bad[] = {"",    "-",     "01",   "-01", ".5", "1.",   "+1",       "1e",
                         "1e+", "1.e5",  "0x10", "1 ",  " 1", "NaN",  "Infinity", "1,5",
                         "--1", "1e5.0", "e5",   "0.",  "00", "1..2", "-.5"};
    for (size_t i = 0; i < HM_ARRAY_LEN(bad); i++) {
        if (hm_json_is_number(bad[i], strlen(bad[i]))) fail_msg("accepted \"%s\"", bad[i]);
    }
    /* The length is the boundary: "12" followed by other bytes. */
    assert_true(hm_json_is_number("12x", 2));
    assert_false(hm_json_is_number("12x", 3));
    assert_false(hm_json_is_number("1.", 2));
}

/* ---- UTF-8 validation ---------------------------------------------------- */

static void expect_utf8_bad_at(const char *s, size_t n, size_t want) {
    size_t at = 9999;
    assert_false(hm_utf8_valid(s, n, &at));
    assert_int_equal(at, want);
}

static void test_utf8_valid_accepts_ascii_and_every_sequence_length(void **state) {
    (void)state;
    size_t at = 4242;
    assert_true(hm_utf8_valid("", 0, &at));
    assert_true(hm_utf8_valid("plain", 5, &at));
    assert_true(hm_utf8_valid("\xc2\x80\xdf\xbf", 4, &at));                 /* U+0080, U+07FF */
    assert_true(hm_utf8_valid("\xe0\xa0\x80\xef\xbf\xbf", 6, &at));         /* U+0800, U+FFFF */
    assert_true(hm_utf8_valid("\xed\x9f\xbf\xee\x80\x80", 6, &at));         /* around surrogates */
    assert_true(hm_utf8_valid("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 8, &at)); /* U+10000..10FFFF */
    assert_true(hm_utf8_valid("a\0b", 3, NULL)); /* NUL is a valid code point */
    assert_int_equal(at, 4242);                  /* untouched on success */
}

static void test_utf8_valid_reports_offset_of_first_bad_sequence(void **state) {
    (void)state;
    expect_utf8_bad_at("abc\x80", 4, 3);            /* stray continuation */
    expect_utf8_bad_at("\xc0\x80", 2, 0);           /* overlong NUL */
    expect_utf8_bad_at("ok\xc1\xbf", 4, 2);         /* overlong DEL */
    expect_utf8_bad_at("x\xe0\x9f\xbf", 4, 1);      /* overlong 3-byte */
    expect_utf8_bad_at("xy\xf0\x8f\xbf\xbf", 6, 2); /* overlong 4-byte */
    expect_utf8_bad_at("\xed\xa0\x80", 3, 0);       /* surrogate U+D800 */
    expect_utf8_bad_at("ab\xed\xbf\xbf", 5, 2);     /* surrogate U+DFFF */
    expect_utf8_bad_at("\xf4\x90\x80\x80", 4, 0);   /* U+110000 */
    expect_utf8_bad_at("\xf5\x80\x80\x80", 4, 0);   /* lead byte past F4 */
    expect_utf8_bad_at("\xc3\xa9\xff", 3, 2);       /* 0xFF after a valid é */
    expect_utf8_bad_at("abc\xe2\x82", 5, 3);        /* truncated at the end */
    expect_utf8_bad_at("\xe2\x82"
                       "A",
                       3, 0);                                 /* truncated before ASCII */
    expect_utf8_bad_at("\xf0\x9f\x98\x80\xf0\x9f\x98", 7, 4); /* second emoji cut */
    expect_utf8_bad_at("\xc3\xa9", 1, 0);                     /* n cuts the sequence */
    assert_false(hm_utf8_valid("\x80", 1, NULL));             /* bad_at is optional */
}

static void test_json_unescape_resolves_escapes_and_refuses_malformed_ones(void **state) {
    (void)state;
    hm_buf b = HM_BUF_INIT;
    const char *in = "a\\\"b\\n\\u00e9\\ud83d\\ude00\\/";
    assert_int_equal(hm_json_unescape(&b, in, strlen(in)), 0);
    assert_int_equal(b.len, strlen("a\"b\n\xc3\xa9\xf0\x9f\x98\x80/"));
    assert_memory_equal(b.data, "a\"b\n\xc3\xa9\xf0\x9f\x98\x80/", b.len);
    hm_buf_reset(&b);
    const char *lone = "x\\ud800y";
    assert_int_equal(hm_json_unescape(&b, lone, strlen(lone)), 0);
    assert_memory_equal(b.data, "x\xef\xbf\xbdy", 5);
    hm_buf_reset(&b);
    const char *nul = "\\u0000";
    assert_int_equal(hm_json_unescape(&b, nul, strlen(nul)), 0);
    assert_int_equal(b.len, 1);
    assert_int_equal(b.data[0], '\0');
    const char *bad[] = {"\\x", "\\u12", "\\u12g4", "ab\\"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        hm_buf_reset(&b);
        assert_int_equal(hm_json_unescape(&b, bad[i], strlen(bad[i])), -EINVAL);
    }
    hm_buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_appends_grow_the_buffer_and_keep_every_byte),
        cmocka_unit_test(test_reset_keeps_memory_and_empties_the_string),
        cmocka_unit_test(test_reserve_on_an_empty_buffer_gives_a_terminated_string),
        cmocka_unit_test(test_printf_appends_and_grows_past_the_first_allocation),
        cmocka_unit_test(test_i64_extremes_match_snprintf),
        cmocka_unit_test(test_u64_extremes_and_random_values_match_snprintf),
        cmocka_unit_test(test_json_str_plain_ascii_is_copied_between_quotes),
        cmocka_unit_test(test_json_str_escapes_quotes_backslashes_and_control_chars),
        cmocka_unit_test(test_json_str_keeps_valid_multibyte_utf8),
        cmocka_unit_test(test_json_str_replaces_each_invalid_sequence_with_fffd),
        cmocka_unit_test(test_json_str_truncated_sequence_is_one_fffd_and_next_char_survives),
        cmocka_unit_test(test_json_str_appends_after_existing_content),
        cmocka_unit_test(test_json_double_uses_the_shortest_form),
        cmocka_unit_test(test_json_double_writes_null_for_non_finite),
        cmocka_unit_test(test_json_double_round_trips_random_doubles),
        cmocka_unit_test(test_fixed3_rounds_half_up_to_three_decimals),
        cmocka_unit_test(test_fixed3_clamps_out_of_range_and_nan),
        cmocka_unit_test(test_is_number_accepts_rfc8259_numbers),
        cmocka_unit_test(test_is_number_rejects_what_json_forbids),
        cmocka_unit_test(test_utf8_valid_accepts_ascii_and_every_sequence_length),
        cmocka_unit_test(test_utf8_valid_reports_offset_of_first_bad_sequence),
        cmocka_unit_test(test_json_unescape_resolves_escapes_and_refuses_malformed_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
