/*
 * test_tick.c: unit tests of the market-record decoder (common/src/tick.c).
 *
 * Every record is decoded from an exactly-sized heap copy, so under ASan any read past
 * len is caught. Covers field states per field family, the syntax errors with their
 * offsets and messages, truncation at every byte, invalid UTF-8, limits, the ISO-8601
 * parser (cross-checked against timegm), number conversion bit-for-bit against
 * strtod on random decimal strings, and the numbers out of range that make a record not
 * strict JSON (cross-checked against a reference built on strtod and against jansson).
 * Must never depend on the network, the clock or the locale.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "himari/tick.h"

/* ---- helpers ---------------------------------------------------------------------------- */

typedef struct dcase {
    char *buf; /* exactly-sized copy of the input; spans point into it */
    hm_tick t;
    hm_decode_err err;
    int rc;
} dcase;

static int dc_decode_n(dcase *c, const char *json, size_t n, size_t max_bytes) {
    free(c->buf);
    c->buf = malloc(n ? n : 1);
    assert_non_null(c->buf);
    if (n) memcpy(c->buf, json, n);
    memset(&c->err, 0, sizeof(c->err));
    c->rc = hm_tick_decode(c->buf, n, max_bytes, &c->t, &c->err);
    return c->rc;
}

static int dc_decode(dcase *c, const char *json) {
    return dc_decode_n(c, json, strlen(json), 0);
}

static void dc_free(dcase *c) {
    free(c->buf);
    c->buf = NULL;
}

/* Decode and insist on success, printing the decoder's message when it fails. */
static hm_tick *dc_ok(dcase *c, const char *json) {
    if (dc_decode(c, json) != 0) {
        print_error("unexpected failure for %s: %s (offset %zu, field '%s')\n", json, c->err.msg,
                    c->err.offset, c->err.field);
        fail();
    }
    return &c->t;
}

/* Decode and insist on the exact error. */
static void expect_error(const char *json, size_t n, size_t offset, const char *field,
                         const char *msg) {
    dcase c = {0};
    int rc = dc_decode_n(&c, json, n, 0);
    if (rc != -EINVAL || c.err.offset != offset || strcmp(c.err.field, field) != 0 ||
        strcmp(c.err.msg, msg) != 0) {
        print_error("input %.*s\n  got rc=%d offset=%zu field='%s' msg='%s'\n  want offset=%zu "
                    "field='%s' msg='%s'\n",
                    (int)n, json, rc, c.err.offset, c.err.field, c.err.msg, offset, field, msg);
        dc_free(&c);
        fail();
    }
    dc_free(&c);
}
#define EXPECT_ERROR(lit, off, field, msg) expect_error(lit, sizeof(lit) - 1, off, field, msg)

static void assert_span(hm_span s, const char *want) {
    size_t n = strlen(want);
    if (s.len != n || (n && memcmp(s.p, want, n) != 0)) {
        print_error("span '%.*s' != '%s'\n", (int)s.len, s.p ? s.p : "", want);
        fail();
    }
}

/* The state of field f in a record {"<name>": <value>}. */
static hm_fstate state_of(hm_field f, const char *value) {
    char json[256];
    snprintf(json, sizeof(json), "{\"%s\": %s}", hm_field_name(f), value);
    dcase c = {0};
    hm_tick *t = dc_ok(&c, json);
    hm_fstate s = t->st[f];
    dc_free(&c);
    return s;
}

static void expect_state(hm_field f, const char *value, hm_fstate want) {
    hm_fstate got = state_of(f, value);
    if (got != want) {
        print_error("%s = %s: state %s, want %s\n", hm_field_name(f), value, hm_fstate_name(got),
                    hm_fstate_name(want));
        fail();
    }
}

static const char k_trade_ms[] =
    "{\"timestamp\": 1700000000123, \"symbol\": \"BTC/USDT\", \"exchange\": \"Binance\", "
    "\"price\": 37012.53, \"volume\": 0.01234, \"trade_id\": 3000000001, \"side\": \"buy\", "
    "\"type\": \"trade\"}";

/* ---- whole records ---------------------------------------------------------------------- */

static void test_full_trade_with_ms_timestamp_decodes_every_field(void **state) {
    (void)state;
    dcase c = {0};
    hm_tick *t = dc_ok(&c, k_trade_ms);
    for (int f = 0; f < HM_FIELD_COUNT_; f++) {
        hm_fstate want = f <= HM_FIELD_TYPE ? HM_F_OK : HM_F_ABSENT;
        assert_int_equal(t->st[f], want);
    }
    assert_int_equal(t->kind, HM_KIND_TRADE);
    assert_int_equal(t->ts_ms, 1700000000123LL);
    assert_span(t->symbol, "BTC/USDT");
    assert_span(t->exchange, "Binance");
    assert_true(t->price == 37012.53);
    assert_span(t->price_text, "37012.53");
    assert_true(t->volume == 0.01234);
    assert_span(t->volume_text, "0.01234");
    assert_span(t->trade_id, "3000000001");
    assert_true(t->trade_id_numeric);
    assert_int_equal(t->trade_id_num, 3000000001ULL);
    assert_int_equal(t->side, HM_SIDE_BUY);
    assert_true(t->strict_json);
    assert_ptr_equal(t->raw.p, c.buf);
    assert_int_equal(t->raw.len, strlen(k_trade_ms));
    char ex[16];
    assert_int_equal(hm_tick_exchange_lower(t, ex, sizeof(ex)), 7);
    assert_string_equal(ex, "binance");
    dc_free(&c);
}

/* A capture's receive time under each capture's name, its unit told by its size. */
static void test_receive_time_in_any_unit_and_name(void **state) {
    (void)state;
    static const struct {
        const char *json;
        int64_t ms;
    } ok[] = {
        {"{\"receipt_timestamp\": 1786309475.4021}", 1786309475402}, /* cryptofeed: s */
        {"{\"local_timestamp\": 1786309475402}", 1786309475402},     /* ms */
        {"{\"local_timestamp\": 1786309475402311}", 1786309475402},  /* tardis: us */
        {"{\"local_ts\": 1680653184448123456}", 1680653184448},      /* hftbacktest: ns */
        {"{\"local_timestamp\": \"2026-08-09T21:04:35.402Z\"}", 1786309475402},
        /* a second name: the first counts, and it is no duplicate key */
        {"{\"local_ts\": 1786309475402, \"receipt_timestamp\": 1.0}", 1786309475402},
    };
    for (size_t i = 0; i < HM_ARRAY_LEN(ok); i++) {
        dcase c = {0};
        hm_tick *t = dc_ok(&c, ok[i].json);
        assert_int_equal(t->st[HM_FIELD_RECEIVED], HM_F_OK);
        assert_int_equal(t->received_ms, ok[i].ms);
        dc_free(&c);
    }
    expect_state(HM_FIELD_RECEIVED, "-1", HM_F_INVALID);
    expect_state(HM_FIELD_RECEIVED, "\"yesterday\"", HM_F_INVALID);
    expect_state(HM_FIELD_RECEIVED, "true", HM_F_WRONG_TYPE);
    expect_state(HM_FIELD_RECEIVED, "null", HM_F_NULL);
}

static void test_full_trade_with_iso_timestamp_converts_to_ms(void **state) {
    (void)state;
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{\"timestamp\":\"2023-11-14T22:13:20.123Z\",\"symbol\":\"ETH/USDT\","
                           "\"exchange\":\"okx\",\"price\":2051.37,\"volume\":1.5,"
                           "\"trade_id\":\"okx-77\",\"side\":\"SELL\"}");
    assert_int_equal(t->st[HM_FIELD_TIMESTAMP], HM_F_OK);
    assert_int_equal(t->ts_ms, 1700000000123LL);
    assert_int_equal(t->side, HM_SIDE_SELL);
    assert_span(t->trade_id, "okx-77");
    assert_false(t->trade_id_numeric);
    assert_int_equal(t->st[HM_FIELD_TYPE], HM_F_ABSENT);
    assert_int_equal(t->kind, HM_KIND_TRADE);
    dc_free(&c);
}

static void test_numbers_given_as_strings_parse_and_span_the_contents(void **state) {
    (void)state;
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{\"timestamp\": \"1700000000123\", \"price\": \"37012.50\", "
                           "\"volume\": \"+1e-3\", \"trade_id\": \"42\"}");
    assert_int_equal(t->st[HM_FIELD_TIMESTAMP], HM_F_OK);
    assert_int_equal(t->ts_ms, 1700000000123LL);
    assert_int_equal(t->st[HM_FIELD_PRICE], HM_F_OK);
    assert_true(t->price == 37012.5);
    assert_span(t->price_text, "37012.50");
    assert_int_equal(t->st[HM_FIELD_VOLUME], HM_F_OK);
    assert_true(t->volume == 0.001);
    assert_span(t->volume_text, "+1e-3");
    assert_true(t->trade_id_numeric);
    assert_int_equal(t->trade_id_num, 42);
    dc_free(&c);
}

static void test_empty_object_has_every_field_absent(void **state) {
    (void)state;
    dcase c = {0};
    hm_tick *t = dc_ok(&c, " \t\r\n{ } \n");
    for (int f = 0; f < HM_FIELD_COUNT_; f++)
        assert_int_equal(t->st[f], HM_F_ABSENT);
    assert_int_equal(t->kind, HM_KIND_TRADE);
    assert_int_equal(t->side, HM_SIDE_NONE);
    assert_true(t->strict_json);
    assert_span(t->raw, "{ }");
    dc_free(&c);
}

static void test_whitespace_everywhere_is_allowed_and_raw_is_trimmed(void **state) {
    (void)state;
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "\n {\n\t\"price\" \r: \n 1.5 ,\n \"x\" : [ 1 , { } , [ ] ] \n}\r\n ");
    assert_int_equal(t->st[HM_FIELD_PRICE], HM_F_OK);
    assert_true(t->price == 1.5);
    assert_int_equal(t->raw.p[0], '{');
    assert_int_equal(t->raw.p[t->raw.len - 1], '}');
    assert_int_equal(t->raw.p - c.buf, 2);
    dc_free(&c);
}

static void test_liquidation_record_sets_kind_and_side(void **state) {
    (void)state;
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{\"type\": \"liquidation\", \"timestamp\": 1700000000000, "
                           "\"symbol\": \"BTC/USDT\", \"exchange\": \"bybit\", \"price\": 36500, "
                           "\"volume\": 12.5, \"side\": \"sell\"}");
    assert_int_equal(t->kind, HM_KIND_LIQUIDATION);
    assert_int_equal(t->st[HM_FIELD_TYPE], HM_F_OK);
    assert_int_equal(t->side, HM_SIDE_SELL);
    assert_true(t->price == 36500.0);
    assert_true(t->volume == 12.5);
    dc_free(&c);
}

static void test_transfer_amount_fills_absent_volume(void **state) {
    (void)state;
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{\"type\":\"transfer\",\"timestamp\":1700000000000,\"asset\":\"BTC\","
                           "\"amount\":250.0,\"from\":\"bc1qsrc\",\"to\":\"bc1qdst\","
                           "\"exchange\":\"binance\",\"tx_hash\":\"ab12cd\"}");
    assert_int_equal(t->kind, HM_KIND_TRANSFER);
    assert_int_equal(t->st[HM_FIELD_AMOUNT], HM_F_OK);
    assert_int_equal(t->st[HM_FIELD_VOLUME], HM_F_OK);
    assert_true(t->volume == 250.0);
    assert_span(t->volume_text, "250.0");
    assert_span(t->asset, "BTC");
    assert_span(t->from, "bc1qsrc");
    assert_span(t->to, "bc1qdst");
    assert_span(t->tx_hash, "ab12cd");
    assert_int_equal(t->st[HM_FIELD_SYMBOL], HM_F_ABSENT);
    assert_int_equal(t->st[HM_FIELD_PRICE], HM_F_ABSENT);

    /* the amount's state travels too */
    t = dc_ok(&c, "{\"type\":\"transfer\",\"amount\":\"lots\"}");
    assert_int_equal(t->st[HM_FIELD_AMOUNT], HM_F_INVALID);
    assert_int_equal(t->st[HM_FIELD_VOLUME], HM_F_INVALID);
    dc_free(&c);
}

static void test_amount_never_overrides_a_given_volume_in_either_order(void **state) {
    (void)state;
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{\"amount\": 5, \"volume\": 7}");
    assert_true(t->volume == 7.0);
    assert_span(t->volume_text, "7");
    assert_true(t->amount == 5.0); /* kept as well */
    assert_span(t->amount_text, "5");
    t = dc_ok(&c, "{\"volume\": 7, \"amount\": 5}");
    assert_true(t->volume == 7.0);
    t = dc_ok(&c, "{\"volume\": null, \"amount\": 5}");
    assert_int_equal(t->st[HM_FIELD_VOLUME], HM_F_NULL);
    assert_int_equal(t->st[HM_FIELD_AMOUNT], HM_F_OK);
    dc_free(&c);
}

static void test_unknown_nested_fields_are_skipped(void **state) {
    (void)state;
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{\"meta\": {\"price\": \"nested\", \"a\": [1, -2.5e-3, true, false, "
                           "null, \"s\\\"\\u00e9\", {\"b\": [[], {}]}]}, \"price\": 3, "
                           "\"x\": \"\\ud83d\\ude00\", \"x\": 1, \"symbol\": \"BTC/USDT\"}");
    assert_int_equal(t->st[HM_FIELD_PRICE], HM_F_OK);
    assert_true(t->price == 3.0);
    assert_span(t->symbol, "BTC/USDT");
    assert_true(t->strict_json);
    dc_free(&c);
}

static void test_bare_nan_and_infinity_tokens_clear_strict_json(void **state) {
    (void)state;
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{\"price\": NaN, \"volume\": Infinity, \"amount\": -Infinity}");
    assert_false(t->strict_json);
    assert_int_equal(t->st[HM_FIELD_PRICE], HM_F_NONFINITE);
    assert_span(t->price_text, "NaN");
    assert_int_equal(t->st[HM_FIELD_VOLUME], HM_F_NONFINITE);
    assert_int_equal(t->st[HM_FIELD_AMOUNT], HM_F_NONFINITE);
    assert_int_equal(t->st[HM_FIELD_TIMESTAMP], HM_F_ABSENT);

    /* elsewhere they are skipped, but the record is still not strict JSON */
    t = dc_ok(&c, "{\"extra\": [NaN, {\"v\": -Infinity}], \"price\": 1}");
    assert_false(t->strict_json);
    assert_int_equal(t->st[HM_FIELD_PRICE], HM_F_OK);

    /* in non-numeric fields they are the wrong type */
    t = dc_ok(&c, "{\"symbol\": NaN, \"side\": Infinity, \"trade_id\": NaN}");
    assert_int_equal(t->st[HM_FIELD_SYMBOL], HM_F_WRONG_TYPE);
    assert_int_equal(t->st[HM_FIELD_SIDE], HM_F_WRONG_TYPE);
    assert_int_equal(t->st[HM_FIELD_TRADE_ID], HM_F_INVALID);
    dc_free(&c);
}

/* ---- field states per family ------------------------------------------------------------ */

static void test_timestamp_field_states(void **state) {
    (void)state;
    const hm_field f = HM_FIELD_TIMESTAMP;
    expect_state(f, "1700000000123", HM_F_OK);
    expect_state(f, "1.7e12", HM_F_OK);
    expect_state(f, "1700000000123.000", HM_F_OK);
    expect_state(f, "0.0000000000000000000001e22", HM_F_OK); /* leading zeros are free */
    expect_state(f, "\"1700000000123\"", HM_F_OK);
    expect_state(f, "\"2023-11-14 22:13:20+00:00\"", HM_F_OK);
    expect_state(f, "null", HM_F_NULL);
    expect_state(f, "true", HM_F_WRONG_TYPE);
    expect_state(f, "{\"ms\": 1}", HM_F_WRONG_TYPE);
    expect_state(f, "[1700000000123]", HM_F_WRONG_TYPE);
    expect_state(f, "1700000000123.5", HM_F_INVALID);
    expect_state(f, "1.7000000001234e3", HM_F_INVALID);
    expect_state(f, "9223372036854775808", HM_F_INVALID); /* 2^63: past int64 */
    expect_state(f, "1e19", HM_F_INVALID);
    expect_state(f, "\"\"", HM_F_INVALID);
    expect_state(f, "\"yesterday\"", HM_F_INVALID);
    expect_state(f, "\"2023-02-29T00:00:00Z\"", HM_F_INVALID);
    expect_state(f, "\"99999999999999999999\"", HM_F_INVALID);
    expect_state(f, "NaN", HM_F_NONFINITE);

    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{\"timestamp\": 1.7e12}");
    assert_int_equal(t->ts_ms, 1700000000000LL);
    t = dc_ok(&c, "{\"timestamp\": 9223372036854775807}");
    assert_int_equal(t->ts_ms, INT64_MAX);
    t = dc_ok(&c, "{\"timestamp\": -9223372036854775808}");
    assert_int_equal(t->st[HM_FIELD_TIMESTAMP], HM_F_OK);
    assert_true(t->ts_ms == INT64_MIN);
    t = dc_ok(&c, "{\"timestamp\": 0.0e5}");
    assert_int_equal(t->ts_ms, 0);
    dc_free(&c);
}

static void test_price_and_volume_field_states(void **state) {
    (void)state;
    const hm_field fams[] = {HM_FIELD_PRICE, HM_FIELD_VOLUME, HM_FIELD_AMOUNT};
    for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
        hm_field f = fams[i];
        expect_state(f, "37012.53", HM_F_OK);
        expect_state(f, "0", HM_F_OK);
        expect_state(f, "-1.5", HM_F_OK);
        expect_state(f, "\"0.01234\"", HM_F_OK);
        expect_state(f, "null", HM_F_NULL);
        expect_state(f, "false", HM_F_WRONG_TYPE);
        expect_state(f, "{}", HM_F_WRONG_TYPE);
        expect_state(f, "[1]", HM_F_WRONG_TYPE);
        expect_state(f, "\"\"", HM_F_INVALID);
        expect_state(f, "\"abc\"", HM_F_INVALID);
        expect_state(f, "\"1.5 \"", HM_F_INVALID);
        expect_state(f, "\"1\\u002e5\"", HM_F_INVALID);
        expect_state(f, "NaN", HM_F_NONFINITE);
        expect_state(f, "Infinity", HM_F_NONFINITE);
        expect_state(f, "\"NaN\"", HM_F_NONFINITE);
        expect_state(f, "\"nan\"", HM_F_NONFINITE);
        expect_state(f, "\"Infinity\"", HM_F_NONFINITE);
        expect_state(f, "\"inf\"", HM_F_NONFINITE);
        expect_state(f, "\"-inf\"", HM_F_NONFINITE);
        expect_state(f, "1e400", HM_F_NONFINITE);
        expect_state(f, "\"-1e400\"", HM_F_NONFINITE);
    }
}

static void test_number_overflowing_double_is_nonfinite_and_underflow_reads_zero(void **state) {
    (void)state;
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{\"price\": 1e400, \"volume\": -1.8e308}");
    assert_int_equal(t->st[HM_FIELD_PRICE], HM_F_NONFINITE);
    assert_true(isinf(t->price));
    assert_span(t->price_text, "1e400");
    assert_int_equal(t->st[HM_FIELD_VOLUME], HM_F_NONFINITE);
    assert_false(t->strict_json); /* RFC 8259 grammar, but jansson refuses 1e400 */
    t = dc_ok(&c, "{\"price\": 1e-400}");
    assert_int_equal(t->st[HM_FIELD_PRICE], HM_F_OK);
    assert_true(t->price == 0.0);
    assert_false(t->strict_json); /* a double reader gets 0, not the number written */
    /* neighbours: the largest double and a subnormal are doubles, and strict */
    t = dc_ok(&c, "{\"price\": 1.7976931348623157e308, \"volume\": 5e-324}");
    assert_int_equal(t->st[HM_FIELD_PRICE], HM_F_OK);
    assert_int_equal(t->st[HM_FIELD_VOLUME], HM_F_OK);
    assert_true(t->volume > 0.0);
    assert_true(t->strict_json);
    dc_free(&c);
}

/* ---- numbers out of range: the record is not strict JSON -------------------------------- */

/* The record prefix + tok + suffix, decoded (it must decode); built on the heap because
 * some tokens are 16 KB long. */
static hm_tick *dc_ok3(dcase *c, const char *prefix, const char *tok, const char *suffix) {
    size_t n = strlen(prefix) + strlen(tok) + strlen(suffix);
    char *json = malloc(n + 1);
    assert_non_null(json);
    snprintf(json, n + 1, "%s%s%s", prefix, tok, suffix);
    if (dc_decode_n(c, json, n, 0) != 0) {
        print_error("unexpected failure for %.200s: %s (offset %zu)\n", json, c->err.msg,
                    c->err.offset);
        fail();
    }
    free(json);
    return &c->t;
}

/* Every place a number can stand in a record: each known number field, a string field
 * (wrong type), an unknown field, an escaped known key, inside arrays and objects. */
static const char *const k_number_positions[][2] = {
    {"{\"timestamp\": ", ", \"symbol\": \"BTC/USDT\", \"price\": 1, \"volume\": 1}"},
    {"{\"symbol\": \"BTC/USDT\", \"trade_id\": ", "}"},
    {"{\"price\": ", ", \"volume\": 1}"},
    {"{\"volume\": ", "}"},
    {"{\"type\": \"transfer\", \"amount\": ", "}"},
    {"{\"symbol\": ", "}"},
    {"{\"extra\": ", ", \"price\": 1}"},
    {"{\"pr\\u0069ce\": ", "}"},
    {"{\"price\": 1, \"extra\": [true, ", ", null]}"},
    {"{\"meta\": {\"a\": [{\"b\": [[", "]]}]}, \"volume\": 2}"},
};

/* A string of n copies of c after head and before tail; the caller frees. */
static char *repeat(const char *head, char c, size_t n, const char *tail) {
    size_t h = strlen(head), t = strlen(tail);
    char *s = malloc(h + n + t + 1);
    assert_non_null(s);
    memcpy(s, head, h);
    memset(s + h, c, n);
    memcpy(s + h + n, tail, t + 1);
    return s;
}

static void expect_strict_everywhere(const char *tok, bool want) {
    dcase c = {0};
    for (size_t i = 0; i < HM_ARRAY_LEN(k_number_positions); i++) {
        hm_tick *t = dc_ok3(&c, k_number_positions[i][0], tok, k_number_positions[i][1]);
        if (t->strict_json != want) {
            print_error("%s%.60s%s: strict_json %d, want %d\n", k_number_positions[i][0], tok,
                        k_number_positions[i][1], t->strict_json, want);
            fail();
        }
    }
    dc_free(&c);
}

static void test_out_of_range_numbers_anywhere_make_the_record_not_strict(void **state) {
    (void)state;
    static const char *const out[] = {
        "1e999",
        "-1e999",
        "1e-999",
        "-1e-999",
        "1e400",
        "-1.5e-400",
        "1234567890123456789012345678901234567890",  /* 40 digits */
        "-1234567890123456789012345678901234567890", /* */
        "18446744073709551616",                      /* 2^64: beyond int64 and uint64 */
        "99999999999999999999",                      /* 20 digits */
        "9223372036854775808",                       /* 2^63 */
        "-9223372036854775809",                      /* -2^63 - 1 */
        "1.7976931348623159e308",                    /* rounds to infinity */
        "0e309",
        "0.0E+400",
        "0e-16384", /* exponents RapidJSON / jsonb refuse */
    };
    for (size_t i = 0; i < HM_ARRAY_LEN(out); i++)
        expect_strict_everywhere(out[i], false);
    char *long_out[] = {
        repeat("1", '0', 399, ""),          /* a 400-digit integer */
        repeat("-7", '3', 399, ".25"),      /* 400 digits with a fraction: overflows */
        repeat("1", '0', 400, "e-300"),     /* 401 digits before the point: RapidJSON */
        repeat("1.", '0', 16383, "1"),      /* 16384 digits after the point: jsonb */
        repeat("0.", '0', 16380, "e-4"),    /* zero of scale 16384 */
        repeat("0.", '0', 1000, "1e-9999"), /* underflow, written long */
    };
    for (size_t i = 0; i < HM_ARRAY_LEN(long_out); i++) {
        expect_strict_everywhere(long_out[i], false);
        free(long_out[i]);
    }
}

static void test_numbers_just_in_range_keep_the_record_strict(void **state) {
    (void)state;
    static const char *const in[] = {
        "0",
        "-0",
        "0.0",
        "-0.0e-5",
        "1700000000123",
        "37012.53",
        "1e-05",
        "9223372036854775807",
        "-9223372036854775808",
        "1234567890123456789",
        "12345678901234567890.5",
        "1e19",
        "1.7976931348623157e308",
        "-1.7976931348623157e308",
        "1e308",
        "0e308",
        "0.5e308",
        "2.2250738585072014e-308",
        "5e-324",
        "-4.9e-324",
        "1e-300",
        "1e-323",
        "0e-16383",
        "0.0e-16382",
    };
    for (size_t i = 0; i < HM_ARRAY_LEN(in); i++) {
        expect_strict_everywhere(in[i], true);
        /* and jansson, which refuses integers beyond int64 and overflowing reals, agrees */
        char arr[64];
        snprintf(arr, sizeof(arr), "[%s]", in[i]);
        json_error_t je;
        json_t *j = json_loads(arr, JSON_REJECT_DUPLICATES, &je);
        if (!j) {
            print_error("jansson refuses %s: %s\n", arr, je.text);
            fail();
        }
        json_decref(j);
    }
    char *long_in[] = {
        repeat("1", '0', 307, ".5"),       /* 308 digits before the point */
        repeat("1.", '0', 16382, "1"),     /* 16383 after it */
        repeat("0.", '0', 16383, ""),      /* a zero of scale 16383 */
        repeat("1.", '0', 16000, "1e300"), /* the exponent moves the point back */
    };
    for (size_t i = 0; i < HM_ARRAY_LEN(long_in); i++) {
        expect_strict_everywhere(long_in[i], true);
        free(long_in[i]);
    }
}

static void test_out_of_range_numbers_leave_the_field_states_as_they_were(void **state) {
    (void)state;
    dcase c = {0};
    hm_tick *t =
        dc_ok(&c, "{\"timestamp\": 1e999, \"trade_id\": 1234567890123456789012345678901234567890, "
                  "\"price\": 1234567890123456789012345678901234567890, \"volume\": 1e-999}");
    assert_false(t->strict_json);
    assert_int_equal(t->st[HM_FIELD_TIMESTAMP], HM_F_INVALID);
    assert_int_equal(t->st[HM_FIELD_TRADE_ID], HM_F_OK);
    assert_false(t->trade_id_numeric);
    assert_span(t->trade_id, "1234567890123456789012345678901234567890");
    assert_int_equal(t->st[HM_FIELD_PRICE], HM_F_OK);
    assert_true(t->price == 1234567890123456789012345678901234567890.0);
    assert_int_equal(t->st[HM_FIELD_VOLUME], HM_F_OK);
    assert_true(t->volume == 0.0);
    /* a numeric string is text, not a number token: strict */
    t = dc_ok(&c,
              "{\"price\": \"1e999\", \"trade_id\": \"1234567890123456789012345678901234567890\"}");
    assert_true(t->strict_json);
    assert_int_equal(t->st[HM_FIELD_PRICE], HM_F_NONFINITE);
    dc_free(&c);
}

static void test_identifier_field_states(void **state) {
    (void)state;
    const hm_field fams[] = {HM_FIELD_SYMBOL, HM_FIELD_EXCHANGE, HM_FIELD_ASSET,
                             HM_FIELD_FROM,   HM_FIELD_TO,       HM_FIELD_TX_HASH};
    for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
        hm_field f = fams[i];
        expect_state(f, "\"BTC/USDT\"", HM_F_OK);
        expect_state(f, "\"caf\xc3\xa9\"", HM_F_OK);
        expect_state(f, "null", HM_F_NULL);
        expect_state(f, "42", HM_F_WRONG_TYPE);
        expect_state(f, "true", HM_F_WRONG_TYPE);
        expect_state(f, "{\"a\": 1}", HM_F_WRONG_TYPE);
        expect_state(f, "[\"BTC\"]", HM_F_WRONG_TYPE);
        expect_state(f, "\"\"", HM_F_INVALID);
        expect_state(f, "\"BTC\\/USDT\"", HM_F_INVALID);
    }
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{}");
    assert_int_equal(t->st[HM_FIELD_SYMBOL], HM_F_ABSENT);
    dc_free(&c);
}

static void test_trade_id_field_states(void **state) {
    (void)state;
    const hm_field f = HM_FIELD_TRADE_ID;
    expect_state(f, "0", HM_F_OK);
    expect_state(f, "\"abc-1\"", HM_F_OK);
    expect_state(f, "null", HM_F_NULL);
    expect_state(f, "true", HM_F_WRONG_TYPE);
    expect_state(f, "{}", HM_F_WRONG_TYPE);
    expect_state(f, "-1", HM_F_INVALID);
    expect_state(f, "-0", HM_F_INVALID);
    expect_state(f, "1.5", HM_F_INVALID);
    expect_state(f, "1e3", HM_F_INVALID);
    expect_state(f, "\"\"", HM_F_INVALID);
}

static void test_negative_trade_id_is_invalid(void **state) {
    (void)state;
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{\"trade_id\": -12}");
    assert_int_equal(t->st[HM_FIELD_TRADE_ID], HM_F_INVALID);
    assert_false(t->trade_id_numeric);
    dc_free(&c);
}

static void test_big_trade_ids_keep_their_text_but_are_not_numeric(void **state) {
    (void)state;
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{\"trade_id\": \"123456789012345678901234\"}");
    assert_int_equal(t->st[HM_FIELD_TRADE_ID], HM_F_OK);
    assert_false(t->trade_id_numeric);
    assert_span(t->trade_id, "123456789012345678901234");

    t = dc_ok(&c, "{\"trade_id\": \"9223372036854775808\"}"); /* 2^63 */
    assert_false(t->trade_id_numeric);
    t = dc_ok(&c, "{\"trade_id\": \"9223372036854775807\"}");
    assert_true(t->trade_id_numeric);
    assert_int_equal(t->trade_id_num, 9223372036854775807ULL);

    t = dc_ok(&c, "{\"trade_id\": 100000000000000000000}");
    assert_int_equal(t->st[HM_FIELD_TRADE_ID], HM_F_OK);
    assert_false(t->trade_id_numeric);
    assert_span(t->trade_id, "100000000000000000000");
    t = dc_ok(&c, "{\"trade_id\": 9223372036854775808}");
    assert_false(t->trade_id_numeric);
    t = dc_ok(&c, "{\"trade_id\": 9223372036854775807}");
    assert_true(t->trade_id_numeric);
    assert_int_equal(t->trade_id_num, 9223372036854775807ULL);

    t = dc_ok(&c, "{\"trade_id\": \"0042\"}");
    assert_true(t->trade_id_numeric);
    assert_int_equal(t->trade_id_num, 42);
    t = dc_ok(&c, "{\"trade_id\": \"12a\"}");
    assert_false(t->trade_id_numeric);
    dc_free(&c);
}

static void test_side_field_states_and_case(void **state) {
    (void)state;
    const char *ok_words[] = {"\"buy\"", "\"BUY\"", "\"Buy\"", "\"sell\"", "\"Sell\"", "\"SELL\""};
    for (size_t i = 0; i < sizeof(ok_words) / sizeof(ok_words[0]); i++)
        expect_state(HM_FIELD_SIDE, ok_words[i], HM_F_OK);
    expect_state(HM_FIELD_SIDE, "\"b\"", HM_F_INVALID);
    expect_state(HM_FIELD_SIDE, "\"s\"", HM_F_INVALID);
    expect_state(HM_FIELD_SIDE, "\"bid\"", HM_F_INVALID);
    expect_state(HM_FIELD_SIDE, "\"\"", HM_F_INVALID);
    expect_state(HM_FIELD_SIDE, "1", HM_F_WRONG_TYPE);
    expect_state(HM_FIELD_SIDE, "null", HM_F_NULL);
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{\"side\": \"Sell\"}");
    assert_int_equal(t->side, HM_SIDE_SELL);
    t = dc_ok(&c, "{\"side\": \"sideways\"}");
    assert_int_equal(t->side, HM_SIDE_NONE);
    dc_free(&c);
}

static void test_type_field_states_and_default_kind(void **state) {
    (void)state;
    expect_state(HM_FIELD_TYPE, "\"trade\"", HM_F_OK);
    expect_state(HM_FIELD_TYPE, "\"liquidation\"", HM_F_OK);
    expect_state(HM_FIELD_TYPE, "\"transfer\"", HM_F_OK);
    expect_state(HM_FIELD_TYPE, "\"Trade\"", HM_F_INVALID);
    expect_state(HM_FIELD_TYPE, "\"swap\"", HM_F_INVALID);
    expect_state(HM_FIELD_TYPE, "1", HM_F_WRONG_TYPE);
    expect_state(HM_FIELD_TYPE, "null", HM_F_NULL);
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{\"type\": \"TRANSFER\"}");
    assert_int_equal(t->kind, HM_KIND_TRADE);
    assert_int_equal(t->st[HM_FIELD_TYPE], HM_F_INVALID);
    t = dc_ok(&c, "{\"price\": 1}");
    assert_int_equal(t->kind, HM_KIND_TRADE);
    assert_int_equal(t->st[HM_FIELD_TYPE], HM_F_ABSENT);
    dc_free(&c);
}

static void test_escaped_known_key_is_recognised(void **state) {
    (void)state;
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{\"pr\\u0069ce\": 2.5, \"sym\\/bol\": \"X\"}");
    assert_int_equal(t->st[HM_FIELD_PRICE], HM_F_OK);
    assert_true(t->price == 2.5);
    assert_int_equal(t->st[HM_FIELD_SYMBOL], HM_F_ABSENT); /* "sym/bol" is not "symbol" */
    dc_free(&c);
}

/* ---- syntax errors ---------------------------------------------------------------------- */

static void test_empty_and_non_object_input_is_refused(void **state) {
    (void)state;
    EXPECT_ERROR("", 0, "", "empty input");
    hm_tick t;
    hm_decode_err err;
    assert_int_equal(hm_tick_decode(NULL, 0, 0, &t, &err), -EINVAL);
    assert_string_equal(err.msg, "empty input");
    EXPECT_ERROR("  \n", 3, "", "empty input");
    EXPECT_ERROR("[1]", 0, "", "expected '{' at byte 0, found '['");
    EXPECT_ERROR(" \"a\"", 1, "", "expected '{' at byte 1, found '\"'");
    EXPECT_ERROR("\x01{}", 0, "", "expected '{' at byte 0, found byte 0x01");
}

static void test_trailing_characters_after_the_object_are_refused(void **state) {
    (void)state;
    EXPECT_ERROR("{\"a\":1} x", 8, "", "trailing characters after the object at byte 8");
    EXPECT_ERROR("{}{}", 2, "", "trailing characters after the object at byte 2");
    EXPECT_ERROR("{} \n,", 4, "", "trailing characters after the object at byte 4");
}

static void test_string_errors_name_offset_and_field(void **state) {
    (void)state;
    EXPECT_ERROR("{\"symbol\":\"BTC", 14, "symbol",
                 "unterminated string starting at byte 10: unexpected end of input at byte 14");
    EXPECT_ERROR("{\"sym", 5, "",
                 "unterminated string starting at byte 1: unexpected end of input at byte 5");
    EXPECT_ERROR("{\"a\":\"\\x\"}", 6, "a", "invalid escape at byte 6: backslash followed by 'x'");
    EXPECT_ERROR("{\"a\":\"\\u12G4\"}", 6, "a",
                 "invalid \\u escape at byte 6: expected 4 hex digits");
    EXPECT_ERROR("{\"a\":\"\\u12\"}", 6, "a",
                 "invalid \\u escape at byte 6: expected 4 hex digits");
    EXPECT_ERROR("{\"a\":\"\\ud800\"}", 6, "a", "unpaired surrogate escape \\ud800 at byte 6");
    EXPECT_ERROR("{\"a\":\"\\ud800\\u0041\"}", 6, "a",
                 "unpaired surrogate escape \\ud800 at byte 6");
    EXPECT_ERROR("{\"a\":\"\\udc00\"}", 6, "a", "unpaired surrogate escape \\udc00 at byte 6");
    EXPECT_ERROR("{\"a\":\"x\ny\"}", 7, "a", "control character 0x0a in string at byte 7");
    EXPECT_ERROR("{\"a\":\"x\x00y\"}", 7, "a", "control character 0x00 in string at byte 7");
    EXPECT_ERROR("{\"a\tb\":1}", 3, "", "control character 0x09 in string at byte 3");
    /* a valid surrogate pair is fine */
    dcase c = {0};
    assert_int_equal(dc_decode(&c, "{\"a\":\"\\ud83d\\ude00\\u00e9\"}"), 0);
    dc_free(&c);
}

static void test_literal_and_value_errors(void **state) {
    (void)state;
    EXPECT_ERROR("{\"a\":tru}", 5, "a", "invalid literal at byte 5 (expected true)");
    EXPECT_ERROR("{\"a\":nulx}", 5, "a", "invalid literal at byte 5 (expected null)");
    EXPECT_ERROR("{\"a\":Nan}", 5, "a", "invalid literal at byte 5 (expected NaN)");
    EXPECT_ERROR("{\"a\":-Inf}", 5, "a", "invalid literal at byte 5 (expected -Infinity)");
    EXPECT_ERROR("{\"a\":True}", 5, "a", "expected a value at byte 5, found 'T'");
    EXPECT_ERROR("{\"a\":}", 5, "a", "expected a value at byte 5, found '}'");
    EXPECT_ERROR("{\"a\":'x'}", 5, "a", "expected a value at byte 5, found '''");
    EXPECT_ERROR("{\"a\":truex}", 9, "", "expected ',' or '}' after value at byte 9, found 'x'");
}

static void test_number_errors(void **state) {
    (void)state;
    EXPECT_ERROR("{\"price\":01}", 10, "price", "invalid number at byte 10: unexpected '1'");
    EXPECT_ERROR("{\"price\":1.}", 11, "price", "invalid number at byte 11: unexpected '}'");
    EXPECT_ERROR("{\"price\":-}", 10, "price", "invalid number at byte 10: unexpected '}'");
    EXPECT_ERROR("{\"price\":1e+}", 12, "price", "invalid number at byte 12: unexpected '}'");
    EXPECT_ERROR("{\"price\":.5}", 9, "price", "expected a value at byte 9, found '.'");
    EXPECT_ERROR("{\"price\":+1}", 9, "price", "expected a value at byte 9, found '+'");
    EXPECT_ERROR("{\"price\":1.5.2}", 12, "",
                 "expected ',' or '}' after value at byte 12, found '.'");
}

static void test_missing_colon_and_comma_errors(void **state) {
    (void)state;
    EXPECT_ERROR("{\"a\" 1}", 5, "a", "expected ':' after key at byte 5, found '1'");
    EXPECT_ERROR("{\"a\":1 \"b\":2}", 7, "",
                 "expected ',' or '}' after value at byte 7, found '\"'");
    EXPECT_ERROR("{\"a\":1,}", 7, "", "expected '\"' to start a key at byte 7, found '}'");
    EXPECT_ERROR("{a:1}", 1, "", "expected '\"' to start a key at byte 1, found 'a'");
    EXPECT_ERROR("{\"a\":[1 2]}", 8, "a", "expected ',' or ']' after value at byte 8, found '2'");
    EXPECT_ERROR("{\"a\":[1,]}", 8, "a", "expected a value at byte 8, found ']'");
    EXPECT_ERROR("{\"a\":{\"b\" 1}}", 10, "a", "expected ':' after key at byte 10, found '1'");
    EXPECT_ERROR("{\"a\":{1:2}}", 6, "a", "expected '\"' to start a key at byte 6, found '1'");
    EXPECT_ERROR("{\"a\":[1}", 7, "a", "expected ',' or ']' after value at byte 7, found '}'");
}

static void test_truncated_input_reports_unexpected_end(void **state) {
    (void)state;
    EXPECT_ERROR("{", 1, "", "unexpected end of input at byte 1");
    EXPECT_ERROR("{\"a\"", 4, "a", "unexpected end of input at byte 4");
    EXPECT_ERROR("{\"a\":", 5, "a", "unexpected end of input at byte 5");
    EXPECT_ERROR("{\"a\":1", 6, "", "unexpected end of input at byte 6");
    EXPECT_ERROR("{\"a\":1.", 7, "a", "unexpected end of input at byte 7");
    EXPECT_ERROR("{\"a\":nul", 8, "a", "unexpected end of input at byte 8");
    EXPECT_ERROR("{\"a\":[1,", 8, "a", "unexpected end of input at byte 8");
    EXPECT_ERROR("{\"a\":1,", 7, "", "unexpected end of input at byte 7");
}

static void test_errors_inside_nested_values_name_the_top_level_key(void **state) {
    (void)state;
    EXPECT_ERROR("{\"meta\":{\"a\":[1,{\"b\":tru}]}}", 21, "meta",
                 "invalid literal at byte 21 (expected true)");
}

/* Records that end exactly at '}' so that every strict prefix is incomplete. */
static const char *const k_prefix_records[] = {
    k_trade_ms,
    "{\"timestamp\":\"2023-11-14T22:13:20.123+02:00\",\"symbol\":\"caf\xc3\xa9/\xe2\x82\xac\","
    "\"price\":\"-1.5e-3\",\"x\":[NaN,-Infinity,Infinity,{\"k\\u00e9\":[true,false,null]}],"
    "\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\ud83d\\ude00\xf0\x9d\x84\x9e\",\"trade_id\":-0.5e+10}",
    "{ \"type\" : \"transfer\" , \"amount\" : 1E3 , \"from\" : \"a\" , \"e\" : [ [ ] , { } ] }",
};

static void test_truncation_at_every_byte_fails_cleanly(void **state) {
    (void)state;
    for (size_t r = 0; r < sizeof(k_prefix_records) / sizeof(k_prefix_records[0]); r++) {
        const char *rec = k_prefix_records[r];
        size_t n = strlen(rec);
        dcase c = {0};
        assert_int_equal(dc_decode_n(&c, rec, n, 0), 0);
        for (size_t len = 0; len < n; len++) {
            int rc = dc_decode_n(&c, rec, len, 0);
            if (rc != -EINVAL || c.err.msg[0] == '\0' || c.err.offset > len) {
                print_error("prefix %zu of record %zu: rc=%d offset=%zu msg='%s'\n", len, r, rc,
                            c.err.offset, c.err.msg);
                fail();
            }
        }
        dc_free(&c);
    }
}

static void test_random_byte_mutations_never_crash(void **state) {
    (void)state;
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    dcase c = {0};
    char tmp[512];
    for (int i = 0; i < 20000; i++) {
        const char *rec = k_prefix_records[i % 3];
        size_t n = strlen(rec);
        memcpy(tmp, rec, n);
        for (int k = 0; k < 3; k++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            tmp[s % n] = (char)(s >> 40);
        }
        int rc = dc_decode_n(&c, tmp, n, 0);
        assert_true(rc == 0 || rc == -EINVAL);
        if (rc != 0) assert_true(c.err.offset <= n);
    }
    dc_free(&c);
}

static void test_invalid_utf8_is_rejected_with_its_offset(void **state) {
    (void)state;
    EXPECT_ERROR("{\"a\":\"\xc0\xaf\"}", 6, "a", "invalid UTF-8 at byte 6");         /* overlong */
    EXPECT_ERROR("{\"a\":\"\xe0\x80\xaf\"}", 6, "a", "invalid UTF-8 at byte 6");     /* overlong */
    EXPECT_ERROR("{\"a\":\"\xf0\x80\x80\xaf\"}", 6, "a", "invalid UTF-8 at byte 6"); /* overlong */
    EXPECT_ERROR("{\"a\":\"x\xed\xa0\x80\"}", 7, "a", "invalid UTF-8 at byte 7");    /* surrogate */
    EXPECT_ERROR("{\"a\":\"\xe2\x82\"}", 6, "a", "invalid UTF-8 at byte 6");         /* truncated */
    EXPECT_ERROR("{\"a\":\"\xff\"}", 6, "a", "invalid UTF-8 at byte 6");
    EXPECT_ERROR("{\"a\":\"\x80\"}", 6, "a", "invalid UTF-8 at byte 6");
    EXPECT_ERROR("{\"a\":\"\xf4\x90\x80\x80\"}", 6, "a", "invalid UTF-8 at byte 6"); /* >10FFFF */
    EXPECT_ERROR("{\"a\":\"\xf5\x80\x80\x80\"}", 6, "a", "invalid UTF-8 at byte 6");
    /* past the 8-byte fast scan, in keys, and in nested values */
    EXPECT_ERROR("{\"a\":\"0123456789abcdef\xfe\"}", 22, "a", "invalid UTF-8 at byte 22");
    EXPECT_ERROR("{\"k\xff\":1}", 3, "", "invalid UTF-8 at byte 3");
    EXPECT_ERROR("{\"m\":{\"k\":[\"\xc3\"]}}", 12, "m", "invalid UTF-8 at byte 12");
    EXPECT_ERROR("{\"m\":{\"\xed\xbf\xbf\":1}}", 7, "m", "invalid UTF-8 at byte 7");
    /* valid 2-, 3- and 4-byte characters, including the extremes */
    dcase c = {0};
    assert_int_equal(
        dc_decode(&c, "{\"a\":\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf"
                      "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"}"),
        0);
    dc_free(&c);
}

static void test_oversized_record_is_refused_with_e2big(void **state) {
    (void)state;
    size_t n = HM_TICK_DEFAULT_MAX_BYTES + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    hm_tick t;
    hm_decode_err err;
    assert_int_equal(hm_tick_decode(big, n, 0, &t, &err), -E2BIG);
    assert_string_equal(err.msg, "record of 65537 bytes exceeds the limit of 65536");
    assert_int_equal(hm_tick_decode(big, n - 1, 0, &t, &err), -EINVAL); /* not the size */
    assert_int_equal(hm_tick_decode(big, n, n, &t, &err), 0);
    free(big);

    dcase c = {0};
    assert_int_equal(dc_decode_n(&c, "{\"a\": 12345}", 12, 11), -E2BIG);
    assert_string_equal(c.err.msg, "record of 12 bytes exceeds the limit of 11");
    assert_int_equal(dc_decode_n(&c, "{\"a\": 12345}", 12, 12), 0);
    dc_free(&c);
}

static void test_nesting_deeper_than_the_limit_is_refused(void **state) {
    (void)state;
    char json[128];
    /* the record is level 1; 15 more levels reach HM_TICK_MAX_DEPTH */
    int inner = HM_TICK_MAX_DEPTH - 1;
    size_t n = (size_t)sprintf(json, "{\"a\":");
    for (int i = 0; i < inner; i++) {
        if (i % 2)
            json[n++] = '[';
        else
            n += (size_t)sprintf(json + n, "{\"k\":");
    }
    json[n++] = '1';
    for (int i = inner - 1; i >= 0; i--)
        json[n++] = i % 2 ? ']' : '}';
    json[n++] = '}';
    json[n] = '\0';
    dcase c = {0};
    assert_int_equal(dc_decode(&c, json), 0);

    /* one level more */
    char deep[64];
    n = (size_t)sprintf(deep, "{\"a\":");
    for (int i = 0; i < HM_TICK_MAX_DEPTH; i++)
        deep[n++] = '[';
    deep[n] = '\0';
    char msg[96];
    snprintf(msg, sizeof(msg), "nesting deeper than %d levels at byte %d", HM_TICK_MAX_DEPTH,
             5 + HM_TICK_MAX_DEPTH - 1);
    expect_error(deep, n, 5 + HM_TICK_MAX_DEPTH - 1, "a", msg);
    dc_free(&c);
}

static void test_duplicate_known_key_is_refused_but_unknown_keys_may_repeat(void **state) {
    (void)state;
    EXPECT_ERROR("{\"price\":1,\"price\":2}", 11, "price", "duplicate key 'price'");
    EXPECT_ERROR("{\"price\":1, \"pr\\u0069ce\":2}", 12, "pr\\u0069ce", "duplicate key 'price'");
    EXPECT_ERROR("{\"type\":\"trade\",\"side\":\"buy\",\"type\":\"trade\"}", 29, "type",
                 "duplicate key 'type'");
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{\"x\":1,\"x\":2,\"price\":3,\"meta\":{\"price\":1,\"price\":2}}");
    assert_true(t->price == 3.0);
    dc_free(&c);
}

static void test_null_err_pointer_is_tolerated(void **state) {
    (void)state;
    hm_tick t;
    assert_int_equal(hm_tick_decode("[", 1, 0, &t, NULL), -EINVAL);
}

/* ---- ISO-8601 --------------------------------------------------------------------------- */

static int64_t iso(const char *s) {
    int64_t ms = -1;
    int rc = hm_parse_iso8601_ms(s, strlen(s), &ms);
    if (rc != 0) {
        print_error("refused: %s\n", s);
        fail();
    }
    return ms;
}

static bool iso_refused(const char *s) {
    int64_t ms;
    return hm_parse_iso8601_ms(s, strlen(s), &ms) == -EINVAL;
}

static void test_iso8601_accepts_zones_fractions_and_separators(void **state) {
    (void)state;
    assert_int_equal(iso("2023-11-14T22:13:20Z"), 1700000000000LL);
    assert_int_equal(iso("2023-11-14T22:13:20.123Z"), 1700000000123LL);
    assert_int_equal(iso("2023-11-14T22:13:20.123456789Z"), 1700000000123LL);
    assert_int_equal(iso("2023-11-14T22:13:20.5Z"), 1700000000500LL);
    assert_int_equal(iso("2023-11-14T22:13:20.12Z"), 1700000000120LL);
    assert_int_equal(iso("2023-11-14 22:13:20Z"), 1700000000000LL);
    assert_int_equal(iso("2023-11-14t22:13:20z"), 1700000000000LL);
    assert_int_equal(iso("2023-11-15T00:13:20+02:00"), 1700000000000LL);
    assert_int_equal(iso("2023-11-15T00:13:20+0200"), 1700000000000LL);
    assert_int_equal(iso("2023-11-14T16:43:20.001-05:30"), 1700000000001LL);
    assert_int_equal(iso("2023-11-14T22:13:20+00:00"), 1700000000000LL);
    assert_int_equal(iso("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(iso("1970-01-01T00:30:00+01:00"), -1800000LL);
    assert_int_equal(iso("9999-12-31T23:59:59.999Z"), 253402300799999LL);
}

static void test_iso8601_leap_days_and_leap_seconds(void **state) {
    (void)state;
    assert_int_equal(iso("2024-02-29T00:00:00Z"), 1709164800000LL);
    assert_int_equal(iso("2000-02-29T12:00:00Z"), 951825600000LL);
    assert_true(iso_refused("2023-02-29T00:00:00Z"));
    assert_true(iso_refused("2100-02-29T00:00:00Z"));
    /* second 60 is the first second of the next minute */
    assert_int_equal(iso("2016-12-31T23:59:60Z"), iso("2017-01-01T00:00:00Z"));
    assert_int_equal(iso("2016-12-31T23:59:60.250Z"), iso("2017-01-01T00:00:00.250Z"));
}

static void test_iso8601_refuses_bad_dates_times_and_missing_zones(void **state) {
    (void)state;
    const char *bad[] = {
        "",
        "2023-11-14",
        "2023-11-14T22:13:20",   /* no zone */
        "2023-11-14T22:13:20.5", /* no zone */
        "2023-13-01T00:00:00Z",
        "2023-00-01T00:00:00Z",
        "2023-04-31T00:00:00Z",
        "2023-01-32T00:00:00Z",
        "2023-01-00T00:00:00Z",
        "2023-01-01T24:00:00Z",
        "2023-01-01T00:60:00Z",
        "2023-01-01T00:00:61Z",
        "1969-12-31T23:59:59Z",
        "2023-1-01T00:00:00Z",
        "2023/01/01T00:00:00Z",
        "2023-01-01X00:00:00Z",
        "2023-01-01T00:00:00.Z",
        "2023-01-01T00:00:00ZZ",
        "2023-01-01T00:00:00+24:00",
        "2023-01-01T00:00:00+01:60",
        "2023-01-01T00:00:00+1",
        "2023-01-01T00:00:00+01:0",
        "2023-01-01T00:00:00 Z",
        "+2023-01-01T00:00:00Z",
        "2023-01-01T00:00:00+01:00 ",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (!iso_refused(bad[i])) {
            print_error("accepted: '%s'\n", bad[i]);
            fail();
        }
    }
}

static void test_iso8601_matches_timegm_for_every_day_1970_to_2200(void **state) {
    (void)state;
    struct tm tm = {0};
    for (int64_t day = 0; day < 84000; day += 1) {
        time_t secs = (time_t)(day * 86400 + (day * 7919) % 86400);
        gmtime_r(&secs, &tm);
        char s[40];
        strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
        int64_t ms;
        assert_int_equal(hm_parse_iso8601_ms(s, strlen(s), &ms), 0);
        assert_int_equal(ms, (int64_t)timegm(&tm) * 1000);
    }
}

/* ---- numbers ---------------------------------------------------------------------------- */

typedef struct prng {
    uint64_t s;
} prng;

static uint64_t prng_next(prng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ULL;
}

static unsigned below(prng *r, unsigned n) {
    return (unsigned)(prng_next(r) % n);
}

/* A random string in JSON number grammar, of a shape chosen at random: short prices,
 * long digit runs, big and tiny exponents, long zero runs. */
static size_t random_decimal(prng *r, char *out, size_t cap) {
    size_t n = 0;
    unsigned shape = below(r, 8);
    if (below(r, 4) == 0) out[n++] = '-';
    unsigned int_digits = shape == 0 ? 1 + below(r, 40) : below(r, 8);
    unsigned frac_digits = shape == 1 ? 1 + below(r, 40) : below(r, 10);
    if (shape == 2) frac_digits = 300 + below(r, 600);
    if (int_digits == 0) {
        out[n++] = '0';
    } else {
        out[n++] = (char)('1' + below(r, 9));
        for (unsigned i = 1; i < int_digits && n < cap - 40; i++)
            out[n++] = shape == 3 ? '0' : (char)('0' + below(r, 10));
    }
    if (frac_digits) {
        out[n++] = '.';
        for (unsigned i = 0; i < frac_digits && n < cap - 40; i++)
            out[n++] = (shape == 4 && i < frac_digits - 3) ? '0' : (char)('0' + below(r, 10));
    }
    if (below(r, 3) == 0 || shape >= 5) {
        out[n++] = below(r, 2) ? 'e' : 'E';
        unsigned k = below(r, 3);
        if (k == 1) out[n++] = '-';
        if (k == 2) out[n++] = '+';
        int ex = shape == 5   ? (int)below(r, 40)
                 : shape == 6 ? (int)below(r, 700)
                              : (int)below(r, 25);
        if (below(r, 16) == 0) n += (size_t)snprintf(out + n, cap - n, "0000");
        n += (size_t)snprintf(out + n, cap - n, "%d", ex);
    }
    out[n] = '\0';
    return n;
}

static void check_against_strtod(const char *s, size_t n) {
    double want = strtod(s, NULL);
    double got = -1;
    hm_fstate st = hm_parse_decimal(s, n, &got);
    if (memcmp(&want, &got, sizeof(double)) != 0 ||
        st != (isinf(want) ? HM_F_NONFINITE : HM_F_OK)) {
        print_error("'%s': strtod %.17g, hm_parse_decimal %.17g (%s)\n", s, want, got,
                    hm_fstate_name(st));
        fail();
    }
}

static void test_decimal_parse_equals_strtod_on_100k_random_strings(void **state) {
    (void)state;
    prng r = {0x243f6a8885a308d3ULL};
    char s[1200];
    for (int i = 0; i < 100000; i++) {
        size_t n = random_decimal(&r, s, sizeof(s));
        check_against_strtod(s, n);
    }
}

static void test_decimal_parse_equals_strtod_on_halfway_cases(void **state) {
    (void)state;
    /* Exact midpoints between neighbouring doubles (exact in long double), printed in
     * full, then nudged by a final digit: the hardest inputs for correct rounding. */
    prng r = {0x13198a2e03707344ULL};
    char s[1200];
    for (int i = 0; i < 3000; i++) {
        uint64_t bits = prng_next(&r) & 0x7fefffffffffffffULL;
        if (i % 3 == 0) bits &= 0x000fffffffffffffULL; /* subnormals */
        double a;
        memcpy(&a, &bits, sizeof(a));
        double b = nextafter(a, INFINITY);
        long double mid = ((long double)a + (long double)b) / 2;
        int n = snprintf(s, sizeof(s) - 2, "%.800Le", mid);
        assert_true(n > 0 && (size_t)n < sizeof(s) - 2);
        check_against_strtod(s, (size_t)n);
        /* the same value just above the midpoint: a nonzero digit far out */
        char *e = strchr(s, 'e');
        assert_non_null(e);
        char exp_part[16];
        snprintf(exp_part, sizeof(exp_part), "%s", e);
        snprintf(e, sizeof(s) - (size_t)(e - s), "1%s", exp_part);
        check_against_strtod(s, strlen(s));
    }
    /* short classics */
    const char *cls[] = {"0",
                         "-0",
                         "0.0",
                         "-0.0e10",
                         "1",
                         "9007199254740993",
                         "9007199254740992",
                         "123456789012345678901234567890",
                         "2.2250738585072011e-308",
                         "2.2250738585072012e-308",
                         "4.9e-324",
                         "2.4703282292062327e-324",
                         "2.4703282292062328e-324",
                         "1.7976931348623157e308",
                         "1.7976931348623158e308",
                         "1.8e308",
                         "0.1",
                         "0.3",
                         "1e22",
                         "1e23",
                         "12e30",
                         "1e-22",
                         "1e-23",
                         "37012.53",
                         "0.01234",
                         "1e999999999999999",
                         "1e-999999999999999"};
    for (size_t i = 0; i < sizeof(cls) / sizeof(cls[0]); i++)
        check_against_strtod(cls[i], strlen(cls[i]));
}

static void test_number_tokens_in_records_equal_strtod(void **state) {
    (void)state;
    prng r = {0xa4093822299f31d0ULL};
    char num[1200], json[1300];
    dcase c = {0};
    for (int i = 0; i < 10000; i++) {
        random_decimal(&r, num, sizeof(num));
        snprintf(json, sizeof(json), "{\"price\":%s}", num);
        hm_tick *t = dc_ok(&c, json);
        double want = strtod(num, NULL);
        assert_memory_equal(&want, &t->price, sizeof(double));
        assert_span(t->price_text, num);
    }
    dc_free(&c);
}

/* The out-of-range rule (json_scan.h) computed independently, from strtod, strtoll and
 * the token's own digits: an integer token outside int64; any other token with an exponent
 * above 308, more than 308 digits before the point, a scale (digits after the point minus
 * the exponent) above 16383, a value that overflows or a nonzero one that reads as 0. */
static bool reference_out_of_range(const char *s) {
    const char *p = s + (*s == '-');
    size_t int_digits = strspn(p, "0123456789");
    const char *q = p + int_digits;
    size_t frac_digits = 0;
    if (*q == '.') {
        frac_digits = strspn(q + 1, "0123456789");
        q += 1 + frac_digits;
    }
    bool nonzero = strcspn(p, "123456789") < (size_t)(q - p);
    bool has_exp = *q == 'e' || *q == 'E';
    if (!has_exp && frac_digits == 0) {
        errno = 0;
        (void)strtoll(s, NULL, 10);
        return errno == ERANGE;
    }
    long long ex = has_exp ? strtoll(q + 1, NULL, 10) : 0; /* saturates: fine */
    if (ex > 308 || int_digits > 308) return true;
    if (ex < (long long)frac_digits - 16383) return true;
    double v = strtod(s, NULL);
    return isinf(v) || (v == 0.0 && nonzero);
}

/* A random number token near the edges of the rule: integers around 2^63 and 2^64, long
 * integers, exponents around +-308, +-324 and the scale limit, zeros with big exponents,
 * long integer parts and long fractions; else one of random_decimal()'s shapes. */
static size_t random_edge_token(prng *r, char *out, size_t cap) {
    static const char *const k_ints[] = {"9223372036854775807",  "9223372036854775808",
                                         "18446744073709551615", "18446744073709551616",
                                         "99999999999999999999", "1000000000000000000"};
    size_t n = 0;
    unsigned shape = below(r, 7);
    bool neg = below(r, 3) == 0;
    if (neg) out[n++] = '-';
    switch (shape) {
        case 0: { /* an integer near a limit, its last digits changed, one digit more or less */
            const char *b = k_ints[below(r, HM_ARRAY_LEN(k_ints))];
            n += (size_t)snprintf(out + n, cap - n, "%s", b);
            unsigned k = below(r, 4);
            for (unsigned i = 0; i < k; i++)
                out[n - 1 - i] = (char)('0' + below(r, 10));
            if (below(r, 4) == 0) out[n++] = (char)('0' + below(r, 10));
            if (below(r, 4) == 0 && n > (size_t)(2 + neg)) n--;
            break;
        }
        case 1: { /* an integer of 1..400 digits */
            unsigned d = 1 + below(r, 400);
            out[n++] = (char)('1' + below(r, 9));
            for (unsigned i = 1; i < d; i++)
                out[n++] = (char)('0' + below(r, 10));
            break;
        }
        case 2:   /* a short mantissa, an exponent near a limit */
        case 3: { /* a zero, an exponent near a limit */
            static const int k_exps[] = {308, 309,  310,   -307,   -308,   -323,  -324,  -325,
                                         400, -400, 16383, -16383, -16384, 16384, -99999};
            if (shape == 2)
                n += (size_t)snprintf(out + n, cap - n, "%u.%u", 1 + below(r, 9), below(r, 100));
            else if (below(r, 2))
                n += (size_t)snprintf(out + n, cap - n, "0");
            else
                n += (size_t)snprintf(out + n, cap - n, "0.%0*d", (int)(1 + below(r, 5)), 0);
            int ex = k_exps[below(r, HM_ARRAY_LEN(k_exps))] + (int)below(r, 5) - 2;
            n += (size_t)snprintf(out + n, cap - n, "e%d", ex);
            break;
        }
        case 4: { /* 300..320 digits before the point, then a fraction or an exponent */
            unsigned d = 300 + below(r, 21);
            out[n++] = (char)('1' + below(r, 9));
            for (unsigned i = 1; i < d; i++)
                out[n++] = below(r, 2) ? '0' : (char)('0' + below(r, 10));
            if (below(r, 2))
                n += (size_t)snprintf(out + n, cap - n, ".5");
            else
                n += (size_t)snprintf(out + n, cap - n, "e-%u", below(r, 400));
            break;
        }
        case 5: { /* a fraction of about 16383 digits, mostly zeros, maybe an exponent */
            unsigned d = 16370 + below(r, 30);
            out[n++] = below(r, 2) ? '0' : '1';
            out[n++] = '.';
            for (unsigned i = 0; i < d; i++)
                out[n++] = below(r, 1000) == 0 ? (char)('1' + below(r, 9)) : '0';
            if (below(r, 2)) n += (size_t)snprintf(out + n, cap - n, "e%d", (int)below(r, 40) - 20);
            break;
        }
        default:
            return random_decimal(r, out, cap);
    }
    out[n] = '\0';
    return n;
}

static void test_out_of_range_rule_matches_a_reference_and_is_stricter_than_jansson(void **state) {
    (void)state;
    prng r = {0x452821e638d01377ULL};
    enum { CAP = 17000 };
    char *tok = malloc(CAP), *json = malloc(CAP + 64);
    assert_non_null(tok);
    assert_non_null(json);
    dcase c = {0};
    int flagged = 0;
    for (int i = 0; i < 20000; i++) {
        size_t n = random_edge_token(&r, tok, CAP);
        bool want = reference_out_of_range(tok);
        int len = snprintf(json, CAP + 64, "{\"x\":[%s],\"price\":1}", tok);
        assert_int_equal(dc_decode_n(&c, json, (size_t)len, 0), 0);
        if (c.t.strict_json == want) {
            print_error("%.*s: strict_json %d, the reference says %s\n", (int)(n < 200 ? n : 200),
                        tok, c.t.strict_json, want ? "out of range" : "in range");
            fail();
        }
        flagged += want;
        /* whatever jansson refuses is out of range here too */
        json_error_t je;
        json_t *j = json_loadb(json, (size_t)len, JSON_REJECT_DUPLICATES, &je);
        if (!j && !want) {
            print_error("jansson refuses %.200s (%s), the rule lets it through\n", tok, je.text);
            fail();
        }
        json_decref(j);
    }
    /* both kinds were drawn often enough to mean something */
    assert_true(flagged > 3000 && flagged < 17000);
    dc_free(&c);
    free(tok);
    free(json);
}

static void test_parse_decimal_grammar(void **state) {
    (void)state;
    double v;
    assert_int_equal(hm_parse_decimal("+1.5", 4, &v), HM_F_OK);
    assert_true(v == 1.5);
    assert_int_equal(hm_parse_decimal("-0.25E+1", 8, &v), HM_F_OK);
    assert_true(v == -2.5);
    assert_int_equal(hm_parse_decimal("12abc", 2, &v), HM_F_OK); /* only n bytes count */
    assert_true(v == 12.0);
    const char *invalid[] = {"",    "+",     "-",    "1.",      ".5",         "01",  "1e",
                             "1e+", " 1",    "1 ",   "0x1",     "+-1",        "--1", "1,5",
                             "abc", "1.5.2", "nana", "infinit", "+Infinityx", "1e5x"};
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        if (hm_parse_decimal(invalid[i], strlen(invalid[i]), &v) != HM_F_INVALID) {
            print_error("accepted: '%s'\n", invalid[i]);
            fail();
        }
    }
    const char *nonfinite[] = {"NaN",  "nan", "-nan", "Infinity", "-Infinity",
                               "+inf", "INF", "-inf", "1e309",    "-1e309"};
    for (size_t i = 0; i < sizeof(nonfinite) / sizeof(nonfinite[0]); i++)
        assert_int_equal(hm_parse_decimal(nonfinite[i], strlen(nonfinite[i]), &v), HM_F_NONFINITE);
    assert_int_equal(hm_parse_decimal("-inf", 4, &v), HM_F_NONFINITE);
    assert_true(isinf(v) && v < 0);
    assert_int_equal(hm_parse_decimal("NaN", 3, &v), HM_F_NONFINITE);
    assert_true(isnan(v));
}

static void test_decimal_places_counts_significant_fraction_digits(void **state) {
    (void)state;
    struct {
        const char *s;
        int want;
    } cases[] = {
        {"1.2300", 2},   {"1e-9", 9},      {"1.5e1", 0},    {"0.000000001", 9}, {"12", 0},
        {"0", 0},        {"0.000", 0},     {"100", 0},      {"-0.50", 1},       {"1.5E-3", 4},
        {"2.50e+1", 0},  {"123.456e2", 1}, {"1200e-2", 0},  {"1200e-3", 1},     {"+7.25", 2},
        {"37012.53", 2}, {"0.01234", 5},   {"1e-400", 400}, {"5e3", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = hm_decimal_places(cases[i].s, strlen(cases[i].s));
        if (got != cases[i].want) {
            print_error("'%s': %d, want %d\n", cases[i].s, got, cases[i].want);
            fail();
        }
    }
    const char *bad[] = {"", "abc", "1.", ".5", "1e", "1.2.3", "NaN", "1x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(hm_decimal_places(bad[i], strlen(bad[i])), -EINVAL);
}

/* ---- names ------------------------------------------------------------------------------ */

static void test_names_of_fields_states_kinds_and_sides(void **state) {
    (void)state;
    assert_string_equal(hm_field_name(HM_FIELD_TIMESTAMP), "timestamp");
    assert_string_equal(hm_field_name(HM_FIELD_TRADE_ID), "trade_id");
    assert_string_equal(hm_field_name(HM_FIELD_TX_HASH), "tx_hash");
    assert_string_equal(hm_field_name(HM_FIELD_TO), "to");
    assert_string_equal(hm_fstate_name(HM_F_ABSENT), "absent");
    assert_string_equal(hm_fstate_name(HM_F_NULL), "null");
    assert_string_equal(hm_fstate_name(HM_F_WRONG_TYPE), "wrong type");
    assert_string_equal(hm_fstate_name(HM_F_NONFINITE), "non-finite");
    assert_string_equal(hm_kind_name(HM_KIND_LIQUIDATION), "liquidation");
    assert_string_equal(hm_kind_name(HM_KIND_TRANSFER), "transfer");
    assert_string_equal(hm_side_name(HM_SIDE_NONE), "");
    assert_string_equal(hm_side_name(HM_SIDE_SELL), "sell");
    /* every field name is a key the decoder recognises */
    for (int f = 0; f < HM_FIELD_COUNT_; f++)
        assert_int_equal(state_of((hm_field)f, "null"), HM_F_NULL);
}

static void test_exchange_lower_truncates_and_terminates(void **state) {
    (void)state;
    dcase c = {0};
    hm_tick *t = dc_ok(&c, "{\"exchange\": \"BiNaNcE-US\"}");
    char out[5];
    assert_int_equal(hm_tick_exchange_lower(t, out, sizeof(out)), 4);
    assert_string_equal(out, "bina");
    char full[32];
    assert_int_equal(hm_tick_exchange_lower(t, full, sizeof(full)), 10);
    assert_string_equal(full, "binance-us");
    assert_int_equal(hm_tick_exchange_lower(t, full, 0), 0);
    dc_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_trade_with_ms_timestamp_decodes_every_field),
        cmocka_unit_test(test_full_trade_with_iso_timestamp_converts_to_ms),
        cmocka_unit_test(test_numbers_given_as_strings_parse_and_span_the_contents),
        cmocka_unit_test(test_empty_object_has_every_field_absent),
        cmocka_unit_test(test_receive_time_in_any_unit_and_name),
        cmocka_unit_test(test_whitespace_everywhere_is_allowed_and_raw_is_trimmed),
        cmocka_unit_test(test_liquidation_record_sets_kind_and_side),
        cmocka_unit_test(test_transfer_amount_fills_absent_volume),
        cmocka_unit_test(test_amount_never_overrides_a_given_volume_in_either_order),
        cmocka_unit_test(test_unknown_nested_fields_are_skipped),
        cmocka_unit_test(test_bare_nan_and_infinity_tokens_clear_strict_json),
        cmocka_unit_test(test_timestamp_field_states),
        cmocka_unit_test(test_price_and_volume_field_states),
        cmocka_unit_test(test_number_overflowing_double_is_nonfinite_and_underflow_reads_zero),
        cmocka_unit_test(test_out_of_range_numbers_anywhere_make_the_record_not_strict),
        cmocka_unit_test(test_numbers_just_in_range_keep_the_record_strict),
        cmocka_unit_test(test_out_of_range_numbers_leave_the_field_states_as_they_were),
        cmocka_unit_test(test_out_of_range_rule_matches_a_reference_and_is_stricter_than_jansson),
        cmocka_unit_test(test_identifier_field_states),
        cmocka_unit_test(test_trade_id_field_states),
        cmocka_unit_test(test_negative_trade_id_is_invalid),
        cmocka_unit_test(test_big_trade_ids_keep_their_text_but_are_not_numeric),
        cmocka_unit_test(test_side_field_states_and_case),
        cmocka_unit_test(test_type_field_states_and_default_kind),
        cmocka_unit_test(test_escaped_known_key_is_recognised),
        cmocka_unit_test(test_empty_and_non_object_input_is_refused),
        cmocka_unit_test(test_trailing_characters_after_the_object_are_refused),
        cmocka_unit_test(test_string_errors_name_offset_and_field),
        cmocka_unit_test(test_literal_and_value_errors),
        cmocka_unit_test(test_number_errors),
        cmocka_unit_test(test_missing_colon_and_comma_errors),
        cmocka_unit_test(test_truncated_input_reports_unexpected_end),
        cmocka_unit_test(test_errors_inside_nested_values_name_the_top_level_key),
        cmocka_unit_test(test_truncation_at_every_byte_fails_cleanly),
        cmocka_unit_test(test_random_byte_mutations_never_crash),
        cmocka_unit_test(test_invalid_utf8_is_rejected_with_its_offset),
        cmocka_unit_test(test_oversized_record_is_refused_with_e2big),
        cmocka_unit_test(test_nesting_deeper_than_the_limit_is_refused),
        cmocka_unit_test(test_duplicate_known_key_is_refused_but_unknown_keys_may_repeat),
        cmocka_unit_test(test_null_err_pointer_is_tolerated),
        cmocka_unit_test(test_iso8601_accepts_zones_fractions_and_separators),
        cmocka_unit_test(test_iso8601_leap_days_and_leap_seconds),
        cmocka_unit_test(test_iso8601_refuses_bad_dates_times_and_missing_zones),
        cmocka_unit_test(test_iso8601_matches_timegm_for_every_day_1970_to_2200),
        cmocka_unit_test(test_decimal_parse_equals_strtod_on_100k_random_strings),
        cmocka_unit_test(test_decimal_parse_equals_strtod_on_halfway_cases),
        cmocka_unit_test(test_number_tokens_in_records_equal_strtod),
        cmocka_unit_test(test_parse_decimal_grammar),
        cmocka_unit_test(test_decimal_places_counts_significant_fraction_digits),
        cmocka_unit_test(test_names_of_fields_states_kinds_and_sides),
        cmocka_unit_test(test_exchange_lower_truncates_and_terminates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
