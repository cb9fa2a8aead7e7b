/*
 * test_quality.c: unit tests of the quality_scores record (common/src/quality.c): the
 * issue-code table, the writer, and the zero-copy decoder.
 *
 * The centre is the round trip a downstream service relies on: a raw record decoded by
 * hm_tick_decode, written by hm_quality_write, read back by hm_quality_decode, must give
 * back every tick field the validator accepted (and null for the others), the score, the
 * codes, processed_at and the original record, which itself decodes to the same tick.
 * Then generated hostile records (numbers out of range and NaN tokens in every position),
 * whose every written line must load in jansson with original_data giving back the input,
 * what the decoder must refuse (with offset, field and reason) and what it must
 * tolerate (unknown codes and members, nulls, wrong types). Every record is decoded from an
 * exactly-sized heap copy, so under ASan a read past the end is caught. Only common/ is
 * used: no service, no clock, no files.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/buf.h"
#include "himari/quality.h"
#include "himari/tick.h"

#define PA     "2023-11-14T22:13:21.004Z" /* processed_at of every record written here */
#define PA_MS  INT64_C(1700000001004)
#define T0     INT64_C(1700000000000)
#define ALL_QC ((hm_qcodeset)((UINT64_C(1) << HM_QCODE_COUNT) - 1))

/* ---- helpers ---------------------------------------------------------------------------- */

static char *copy_exact(const char *p, size_t n) {
    char *c = malloc(n ? n : 1);
    assert_non_null(c);
    if (n) memcpy(c, p, n);
    return c;
}

/* One round trip: raw -> hm_tick -> quality record -> hm_quality. */
typedef struct rt {
    char *raw; /* exactly-sized copy of the raw record; t's spans point into it */
    size_t raw_len;
    hm_tick t;
    hm_buf out; /* the quality record as written */
    char *rec;  /* exactly-sized copy of it; q's spans point into it */
    hm_quality q;
    hm_decode_err err;
} rt;

static void rt_free(rt *x) {
    free(x->raw);
    free(x->rec);
    hm_buf_free(&x->out);
    memset(x, 0, sizeof(*x));
}

/* Decode the quality record in x->out from an exact copy; insist on success. */
static void rt_decode_out(rt *x) {
    free(x->rec);
    x->rec = copy_exact(x->out.data, x->out.len);
    memset(&x->err, 0, sizeof(x->err));
    int rc = hm_quality_decode(x->rec, x->out.len, &x->q, &x->err);
    if (rc != 0) {
        print_error("hm_quality_decode failed on %s: %s (offset %zu, field '%s')\n", x->out.data,
                    x->err.msg, x->err.offset, x->err.field);
        fail();
    }
}

static void rt_run(rt *x, const char *raw, hm_qcodeset codes, double score) {
    memset(x, 0, sizeof(*x));
    x->raw_len = strlen(raw);
    x->raw = copy_exact(raw, x->raw_len);
    hm_decode_err err;
    if (hm_tick_decode(x->raw, x->raw_len, 0, &x->t, &err) != 0) {
        print_error("hm_tick_decode failed on %s: %s\n", raw, err.msg);
        fail();
    }
    hm_quality_write(&x->out, &x->t, codes, score, PA);
    rt_decode_out(x);
}

static void assert_span_is(hm_span s, const char *p, size_t n) {
    if (s.len != n || memcmp(s.p, p, n) != 0) {
        print_error("span '%.*s' != '%.*s'\n", (int)s.len, s.p, (int)n, p);
        fail();
    }
}

static void assert_spans_equal(hm_span a, hm_span b) {
    assert_span_is(a, b.p, b.len);
}

static bool is_transfer_field(hm_field f) {
    return f == HM_FIELD_ASSET || f == HM_FIELD_AMOUNT || f == HM_FIELD_FROM || f == HM_FIELD_TO ||
           f == HM_FIELD_TX_HASH;
}

/* Is the double bit-for-bit the same (0.1 == 0.1, not merely close)? */
static void assert_same_double(double a, double b) {
    if (memcmp(&a, &b, sizeof(a)) != 0) {
        print_error("%.17g != %.17g\n", a, b);
        fail();
    }
}

/* The value of an accepted field of a against the same field of b. */
static void assert_field_value_equal(hm_field f, const hm_tick *a, const hm_tick *b) {
    switch (f) {
        case HM_FIELD_TIMESTAMP:
            assert_int_equal(a->ts_ms, b->ts_ms);
            break;
        case HM_FIELD_SYMBOL:
            assert_spans_equal(a->symbol, b->symbol);
            break;
        case HM_FIELD_EXCHANGE: {
            char la[64], lb[64];
            hm_tick_exchange_lower(a, la, sizeof(la));
            hm_tick_exchange_lower(b, lb, sizeof(lb));
            assert_string_equal(la, lb);
            break;
        }
        case HM_FIELD_PRICE:
            assert_same_double(a->price, b->price);
            break;
        case HM_FIELD_VOLUME:
            assert_same_double(a->volume, b->volume);
            break;
        case HM_FIELD_TRADE_ID:
            assert_spans_equal(a->trade_id, b->trade_id);
            assert_int_equal(a->trade_id_numeric, b->trade_id_numeric);
            if (a->trade_id_numeric) assert_int_equal(a->trade_id_num, b->trade_id_num);
            break;
        case HM_FIELD_SIDE:
            assert_int_equal(a->side, b->side);
            break;
        case HM_FIELD_TYPE:
            assert_int_equal(a->kind, b->kind);
            break;
        case HM_FIELD_ASSET:
            assert_spans_equal(a->asset, b->asset);
            break;
        case HM_FIELD_AMOUNT:
            assert_same_double(a->amount, b->amount);
            break;
        case HM_FIELD_FROM:
            assert_spans_equal(a->from, b->from);
            break;
        case HM_FIELD_TO:
            assert_spans_equal(a->to, b->to);
            break;
        case HM_FIELD_TX_HASH:
            assert_spans_equal(a->tx_hash, b->tx_hash);
            break;
        case HM_FIELD_RECEIVED:
            assert_int_equal(a->received_ms, b->received_ms);
            break;
        case HM_FIELD_COUNT_:
            fail();
    }
}

/* What a quality record carries of the tick t: each accepted field with its value, null
 * for the others, the transfer fields only for transfers, and always the type. */
static void assert_carries_tick(const hm_tick *t, const hm_quality *q) {
    const hm_tick *c = &q->tick;
    for (int i = 0; i < HM_FIELD_COUNT_; i++) {
        hm_field f = (hm_field)i;
        hm_fstate want;
        if ((is_transfer_field(f) && t->kind != HM_KIND_TRANSFER) || f == HM_FIELD_RECEIVED)
            want = HM_F_ABSENT; /* a receive time stays in original_data */
        else if (f == HM_FIELD_TYPE || t->st[f] == HM_F_OK)
            want = HM_F_OK;
        else
            want = HM_F_NULL;
        if (c->st[f] != want) {
            print_error("%.*s\nfield %s: state %s in the quality record, want %s (tick: %s)\n",
                        (int)t->raw.len, t->raw.p, hm_field_name(f), hm_fstate_name(c->st[f]),
                        hm_fstate_name(want), hm_fstate_name(t->st[f]));
            fail();
        }
        if (want == HM_F_OK) assert_field_value_equal(f, t, c);
    }
    assert_true(c->strict_json);
}

/* Two decodes of the same record: every state and every accepted value. */
static void assert_ticks_equal(const hm_tick *a, const hm_tick *b) {
    for (int i = 0; i < HM_FIELD_COUNT_; i++) {
        assert_int_equal(a->st[i], b->st[i]);
        if (a->st[i] == HM_F_OK) assert_field_value_equal((hm_field)i, a, b);
    }
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->strict_json, b->strict_json);
    assert_spans_equal(a->raw, b->raw);
}

/* The quality fields of a record written for a decoded tick. */
static void assert_quality_fields(const hm_quality *q, hm_qcodeset codes, double score) {
    assert_int_equal(q->st[HM_QFIELD_SCORE], HM_F_OK);
    assert_same_double(q->score, score);
    assert_int_equal(q->st[HM_QFIELD_ISSUES], HM_F_OK);
    assert_true(q->codes == codes);
    assert_int_equal(q->unknown_codes, 0);
    assert_int_equal(q->st[HM_QFIELD_ISSUE_COUNT], HM_F_OK);
    assert_int_equal(q->issue_count, __builtin_popcountll(codes));
    assert_int_equal(q->st[HM_QFIELD_PROCESSED_AT], HM_F_OK);
    assert_int_equal(q->processed_at_ms, PA_MS);
    assert_span_is(q->processed_at, PA, 24);
    assert_int_equal(q->st[HM_QFIELD_ERROR], HM_F_ABSENT);
    assert_int_equal(q->st[HM_QFIELD_ORIGINAL_BYTES], HM_F_ABSENT);
    assert_int_equal(q->st[HM_QFIELD_ORIGINAL], HM_F_OK);
}

/* A full round trip of raw, with the original embedded as the object itself. */
static void check_round_trip(const char *raw, hm_qcodeset codes, double score) {
    rt x;
    rt_run(&x, raw, codes, score);
    assert_carries_tick(&x.t, &x.q);
    assert_quality_fields(&x.q, codes, score);
    assert_false(x.q.original_is_string);
    assert_spans_equal(x.q.original, x.t.raw);
    /* the original decodes, in place, to the very tick it came from */
    hm_tick again;
    hm_decode_err err;
    assert_int_equal(hm_tick_decode(x.q.original.p, x.q.original.len, 0, &again, &err), 0);
    assert_ticks_equal(&again, &x.t);
    rt_free(&x);
}

/* The JSON string text s (with its quotes), unescaped by jansson; the caller frees. */
static char *unescape_json_string(hm_span s, size_t *len) {
    json_error_t je;
    json_t *j = json_loadb(s.p, s.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j || !json_is_string(j)) {
        print_error("not a JSON string: %.*s (%s)\n", (int)s.len, s.p, je.text);
        fail();
    }
    *len = json_string_length(j);
    char *out = copy_exact(json_string_value(j), *len);
    json_decref(j);
    return out;
}

/* Decode json (exact copy); return the code, leaving the error in *err. */
static int decode_copy(const char *json, size_t n, hm_quality *q, hm_decode_err *err) {
    char *c = copy_exact(json, n);
    memset(err, 0, sizeof(*err));
    int rc = hm_quality_decode(c, n, q, err);
    free(c); /* q's spans dangle now: callers of this helper look at states and numbers */
    return rc;
}

static void expect_error_at(const char *json, size_t n, size_t offset, const char *field,
                            const char *msg, int line) {
    hm_quality q;
    hm_decode_err err;
    int rc = decode_copy(json, n, &q, &err);
    if (rc != -EINVAL || err.offset != offset || strcmp(err.field, field) != 0 ||
        strcmp(err.msg, msg) != 0) {
        print_error("line %d: input %.*s\n  got rc=%d offset=%zu field='%s' msg='%s'\n"
                    "  want offset=%zu field='%s' msg='%s'\n",
                    line, (int)n, json, rc, err.offset, err.field, err.msg, offset, field, msg);
        fail();
    }
}
#define EXPECT_ERROR(lit, off, field, msg)                                                         \
    expect_error_at(lit, sizeof(lit) - 1, off, field, msg, __LINE__)

/* Decode a literal that must decode; q's spans are not used by callers. */
static hm_quality decode_ok(const char *json) {
    hm_quality q;
    hm_decode_err err;
    if (decode_copy(json, strlen(json), &q, &err) != 0) {
        print_error("unexpected failure for %s: %s (offset %zu, field '%s')\n", json, err.msg,
                    err.offset, err.field);
        fail();
    }
    return q;
}

/* ---- the code table --------------------------------------------------------------------- */

static void test_code_table_names_weights_and_holds(void **state) {
    (void)state;
    assert_int_equal(HM_QCODE_COUNT, 47);
    assert_string_equal(hm_qcode_name(HM_Q_LARGE_GAP), "LARGE_GAP");
    assert_string_equal(hm_qcode_name(HM_Q_PARSE_ERROR), "PARSE_ERROR");
    assert_string_equal(hm_qcode_name(HM_Q_NOTIONAL_OUTLIER), "NOTIONAL_OUTLIER");
    assert_string_equal(hm_qcode_name(HM_Q_NO_STATE), "NO_STATE");
    assert_int_equal(HM_Q_PARSE_ERROR, 0);
    /* a new code goes at the end: the numbers of the others do not move */
    assert_int_equal(HM_Q_NOTIONAL_OUTLIER, 45);
    assert_int_equal(HM_Q_NO_STATE, HM_QCODE_COUNT - 1);
    /* informational, and holds nothing: it is about the validator's capacity */
    assert_true(hm_qcode_default_weight(HM_Q_NO_STATE) == 0.0);
    assert_int_equal(hm_qcode_holds(HM_Q_NO_STATE), 0);
    assert_true(hm_qcode_default_weight(HM_Q_PARSE_ERROR) == 1.0);
    assert_true(hm_qcode_default_weight(HM_Q_UNKNOWN_EXCHANGE) == 0.15);
    assert_true(hm_qcode_default_weight(HM_Q_SPIKE_REVERTED) == 0.0);
    assert_int_equal(hm_qcode_holds(HM_Q_OUT_OF_ORDER), HM_QHOLD_ALL);
    assert_int_equal(hm_qcode_holds(HM_Q_INVALID_TRADE_ID), HM_QHOLD_SEQ);
    assert_int_equal(hm_qcode_holds(HM_Q_DELAYED_DATA), HM_QHOLD_VALUES);
    assert_int_equal(hm_qcode_holds(HM_Q_VOLUME_SPIKE), HM_QHOLD_VOLUME);
    assert_int_equal(hm_qcode_holds(HM_Q_TRADE_ID_GAP), 0);
    assert_int_equal(HM_QHOLD_ALL, HM_QHOLD_PRICE | HM_QHOLD_VOLUME | HM_QHOLD_SEQ);
    assert_true(HM_QBIT(HM_Q_LARGE_GAP) == UINT64_C(1) << 30);
    /* The set of codes holding a state is the table read once. */
    hm_qcodeset seq = hm_qcodes_holding(HM_QHOLD_SEQ);
    assert_true(seq & HM_QBIT(HM_Q_OUT_OF_ORDER));
    assert_true(seq & HM_QBIT(HM_Q_INVALID_TRADE_ID));
    assert_false(seq & HM_QBIT(HM_Q_DELAYED_DATA));
    assert_false(seq & HM_QBIT(HM_Q_TRADE_ID_GAP));
    for (int c = 0; c < HM_QCODE_COUNT; c++)
        assert_int_equal(!!(seq & HM_QBIT(c)), !!(hm_qcode_holds((hm_qcode)c) & HM_QHOLD_SEQ));
}

static void test_every_code_name_is_found_by_name_and_by_span(void **state) {
    (void)state;
    /* every name finding its own code by binary search also proves the name index sorted:
     * two neighbours out of order would send one of them the wrong way */
    for (int c = 0; c < HM_QCODE_COUNT; c++) {
        const char *name = hm_qcode_name((hm_qcode)c);
        assert_int_equal(hm_qcode_by_name(name), c);
        char buf[64];
        size_t n = strlen(name);
        memcpy(buf, name, n);
        memcpy(buf + n, "_X", 2); /* not NUL-terminated: only n bytes may count */
        assert_int_equal(hm_qcode_by_name_n(buf, n), c);
        assert_int_equal(hm_qcode_by_name_n(buf, n + 2), -ENOENT);
        assert_int_equal(hm_qcode_by_name_n(buf, n - 1) == c, 0);
    }
}

static void test_unknown_and_miscased_names_are_not_codes(void **state) {
    (void)state;
    assert_int_equal(hm_qcode_by_name("large_gap"), -ENOENT);
    assert_int_equal(hm_qcode_by_name("LARGE_GAPS"), -ENOENT);
    assert_int_equal(hm_qcode_by_name(""), -ENOENT);
    assert_int_equal(hm_qcode_by_name(NULL), -ENOENT);
    assert_int_equal(hm_qcode_by_name("AAA"), -ENOENT);  /* before the first name */
    assert_int_equal(hm_qcode_by_name("ZZZZ"), -ENOENT); /* after the last */
    /* a name that is a prefix of another is its own code, not the longer one */
    assert_int_equal(hm_qcode_by_name_n("INVALID_SYMBOL_FORMAT", 14), HM_Q_INVALID_SYMBOL);
    assert_int_equal(hm_qcode_by_name_n("INVALID_SYMBOL_FORMAT", 15), -ENOENT);
}

/* ---- the writer ------------------------------------------------------------------------- */

static void test_trade_record_is_written_in_the_documented_format(void **state) {
    (void)state;
    const char *raw = "{\"timestamp\":1700000000123,\"symbol\":\"BTC/USDT\",\"exchange\":"
                      "\"Binance\",\"price\":\"37012.50\",\"volume\":0.25,\"trade_id\":42,"
                      "\"side\":\"BUY\"}";
    rt x;
    rt_run(&x, raw, HM_QBIT(HM_Q_STALE_DATA) | HM_QBIT(HM_Q_LARGE_GAP), 0.85);
    char want[1024];
    snprintf(want, sizeof(want),
             "{\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"timestamp\":1700000000123,"
             "\"price\":37012.50,\"volume\":0.25,\"trade_id\":\"42\",\"side\":\"buy\","
             "\"type\":\"trade\",\"quality_score\":0.850,\"issues\":[\"LARGE_GAP\","
             "\"STALE_DATA\"],\"issue_count\":2,\"processed_at\":\"" PA "\","
             "\"original_data\":%s}",
             raw);
    assert_string_equal(x.out.data, want);
    rt_free(&x);
}

static void test_parse_error_record_is_written_in_the_documented_format(void **state) {
    (void)state;
    hm_buf b = HM_BUF_INIT;
    hm_quality_write_parse_error(&b, "{\"a\":", 5, false, "unexpected end of input at byte 5", PA);
    assert_string_equal(b.data,
                        "{\"symbol\":null,\"exchange\":null,\"timestamp\":null,\"price\":null,"
                        "\"volume\":null,\"trade_id\":null,\"side\":null,\"type\":null,"
                        "\"quality_score\":0.000,\"issues\":[\"PARSE_ERROR\"],\"issue_count\":1,"
                        "\"processed_at\":\"" PA "\",\"error\":\"unexpected end of input at "
                        "byte 5\",\"original_data\":\"{\\\"a\\\":\"}");
    hm_buf_reset(&b);
    hm_quality_write_parse_error(&b, NULL, 70000, true, "too long", PA);
    assert_non_null(strstr(b.data, ",\"original_data\":null,\"original_bytes\":70000}"));
    hm_buf_reset(&b);
    hm_quality_write_issues(&b, 0);
    assert_string_equal(b.data, "[]");
    hm_buf_reset(&b);
    hm_quality_write_issues(&b, HM_QBIT(HM_Q_NOTIONAL_OUTLIER) | HM_QBIT(HM_Q_PARSE_ERROR));
    assert_string_equal(b.data, "[\"PARSE_ERROR\",\"NOTIONAL_OUTLIER\"]");
    hm_buf_free(&b);
}

/* ---- round trips ------------------------------------------------------------------------ */

static void test_trade_round_trips_every_field(void **state) {
    (void)state;
    /* numbers as numbers and as strings, ISO and ms timestamps, numeric and string ids */
    check_round_trip("{\"timestamp\":1700000000123,\"symbol\":\"BTC/USDT\",\"exchange\":"
                     "\"binance\",\"price\":37012.53,\"volume\":0.01234,\"trade_id\":3000000001,"
                     "\"side\":\"buy\",\"type\":\"trade\"}",
                     0, 1.0);
    check_round_trip("{\"exchange\":\"Kraken\",\"price\":\"37000.50\",\"volume\":\"+0.25\","
                     "\"timestamp\":\"2023-11-14T22:13:20.123Z\",\"symbol\":\"ETH/BTC\","
                     "\"trade_id\":\"T-9\",\"side\":\"Sell\",\"extra\":[1,{\"a\":null}]}",
                     HM_QBIT(HM_Q_LARGE_GAP), 0.95);
    /* a 20-digit id given as a string is kept as text; the largest int64 is copied as is */
    check_round_trip("{\"timestamp\":1,\"symbol\":\"X/Y\",\"exchange\":\"okx\",\"price\":1e-7,"
                     "\"volume\":9223372036854775807,\"trade_id\":\"12345678901234567890\"}",
                     HM_QBIT(HM_Q_LARGE_GAP), 0.125);
    /* bad fields are written as null, and read back as null */
    check_round_trip("{\"timestamp\":\"yesterday\",\"symbol\":42,\"exchange\":\"\",\"price\":"
                     "\"abc\",\"volume\":null,\"trade_id\":-1,\"side\":\"up\",\"type\":\"swap\","
                     "\"symbol_alias\":\"BTC\\u002fUSDT\"}",
                     HM_QBIT(HM_Q_INVALID_TYPE) | HM_QBIT(HM_Q_INVALID_TIMESTAMP) |
                         HM_QBIT(HM_Q_INVALID_SYMBOL),
                     0.0);
    /* an empty object: every field absent in the input, null in the record */
    check_round_trip("{}", HM_QBIT(HM_Q_MISSING_TIMESTAMP), 0.7);
    /* escapes and non-ASCII: escaped identifiers are invalid (null), UTF-8 is kept */
    check_round_trip("{\"timestamp\":5,\"symbol\":\"BTC\\u002fUSDT\",\"exchange\":\"BÖRSE\","
                     "\"price\":1,\"volume\":1,\"trade_id\":\"a\\nb\",\"x\":\"\\u2028\"}",
                     HM_QBIT(HM_Q_UNKNOWN_EXCHANGE), 0.85);
}

static void test_liquidation_round_trips_with_its_kind_and_side(void **state) {
    (void)state;
    check_round_trip("{\"type\":\"liquidation\",\"timestamp\":1700000000500,\"symbol\":"
                     "\"BTC/USDT\",\"exchange\":\"bybit\",\"price\":36500.5,\"volume\":12.5,"
                     "\"side\":\"sell\"}",
                     0, 1.0);
    check_round_trip("{\"type\":\"liquidation\",\"timestamp\":1700000000500,\"symbol\":"
                     "\"BTC/USDT\",\"exchange\":\"bybit\",\"price\":36500.5,\"volume\":12.5}",
                     HM_QBIT(HM_Q_MISSING_SIDE), 0.95);
    rt x;
    rt_run(&x, "{\"type\":\"liquidation\",\"price\":1,\"volume\":2,\"side\":\"buy\"}", 0, 1.0);
    assert_int_equal(x.q.tick.kind, HM_KIND_LIQUIDATION);
    assert_int_equal(x.q.tick.side, HM_SIDE_BUY);
    rt_free(&x);
}

static void test_transfer_round_trips_its_own_fields(void **state) {
    (void)state;
    const char *raw = "{\"type\":\"transfer\",\"timestamp\":1700000000000,\"asset\":\"BTC\","
                      "\"amount\":250.0,\"from\":\"bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh\","
                      "\"to\":\"1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa\",\"tx_hash\":\"ab12cd\","
                      "\"exchange\":\"binance\"}";
    check_round_trip(raw, 0, 1.0);
    rt x;
    rt_run(&x, raw, 0, 1.0);
    assert_int_equal(x.q.tick.kind, HM_KIND_TRANSFER);
    assert_int_equal(x.q.tick.st[HM_FIELD_AMOUNT], HM_F_OK);
    assert_true(x.q.tick.volume == 250.0); /* the amount, written as volume and amount */
    assert_span_is(x.q.tick.asset, "BTC", 3);
    assert_span_is(x.q.tick.tx_hash, "ab12cd", 6);
    assert_int_equal(x.q.tick.st[HM_FIELD_SYMBOL], HM_F_NULL);
    assert_int_equal(x.q.tick.st[HM_FIELD_PRICE], HM_F_NULL);
    rt_free(&x);
    /* a transfer that gives a volume too: each is written as given, not one for both */
    rt_run(&x,
           "{\"type\":\"transfer\",\"timestamp\":1,\"asset\":\"ETH\",\"volume\":null,"
           "\"amount\":2.5,\"from\":\"a\",\"to\":\"b\"}",
           HM_QBIT(HM_Q_INVALID_AMOUNT), 0.7);
    assert_non_null(strstr(x.out.data, "\"volume\":null,"));
    assert_non_null(strstr(x.out.data, "\"amount\":2.5,"));
    assert_carries_tick(&x.t, &x.q);
    assert_true(x.q.tick.amount == 2.5);
    rt_free(&x);
    check_round_trip("{\"type\":\"transfer\",\"timestamp\":1,\"asset\":\"ETH\",\"amount\":4,"
                     "\"volume\":\"3.5\",\"from\":\"a\",\"to\":\"b\"}",
                     0, 1.0);
    /* a bad address and a string amount */
    check_round_trip("{\"type\":\"transfer\",\"timestamp\":1,\"asset\":\"ETH\",\"amount\":\"5.5\","
                     "\"from\":null,\"to\":7,\"tx_hash\":\"\"}",
                     HM_QBIT(HM_Q_MISSING_ADDRESS), 0.8);
}

static void test_parse_error_round_trips_error_and_original_string(void **state) {
    (void)state;
    static const char *inputs[] = {"not json at all", "{\"timestamp\":1700000000000,\"price\":tru",
                                   "{\"symbol\":\"BTC\\\"\"}}", "", "line\none\ttab \x01"};
    static const char *errors[] = {
        "expected '{' at byte 0, found 'n'",
        "unexpected end of input at byte 38 (field \"price\")",
        "trailing characters after the object at byte 18",
        "empty record",
        "expected '{' at byte 0, found 'l'",
    };
    for (size_t i = 0; i < HM_ARRAY_LEN(inputs); i++) {
        rt x = {0};
        hm_quality_write_parse_error(&x.out, inputs[i], strlen(inputs[i]), false, errors[i], PA);
        rt_decode_out(&x);
        const hm_quality *q = &x.q;
        for (int f = 0; f < HM_FIELD_COUNT_; f++)
            assert_int_equal(q->tick.st[f], is_transfer_field((hm_field)f) || f == HM_FIELD_RECEIVED
                                                ? HM_F_ABSENT
                                                : HM_F_NULL);
        assert_int_equal(q->tick.kind, HM_KIND_TRADE);
        assert_int_equal(q->st[HM_QFIELD_SCORE], HM_F_OK);
        assert_true(q->score == 0.0);
        assert_true(q->codes == HM_QBIT(HM_Q_PARSE_ERROR));
        assert_int_equal(q->issue_count, 1);
        assert_int_equal(q->processed_at_ms, PA_MS);
        assert_int_equal(q->st[HM_QFIELD_ERROR], HM_F_OK);
        assert_int_equal(q->error_escaped, strchr(errors[i], '"') != NULL);
        /* the error span is the JSON text between the quotes */
        size_t n;
        char *err = unescape_json_string((hm_span){q->error.p - 1, q->error.len + 2}, &n);
        assert_int_equal(n, strlen(errors[i]));
        assert_memory_equal(err, errors[i], n);
        free(err);
        assert_int_equal(q->st[HM_QFIELD_ORIGINAL], HM_F_OK);
        assert_true(q->original_is_string);
        char *orig = unescape_json_string(q->original, &n);
        assert_int_equal(n, strlen(inputs[i]));
        assert_memory_equal(orig, inputs[i], n);
        free(orig);
        assert_int_equal(q->st[HM_QFIELD_ORIGINAL_BYTES], HM_F_ABSENT);
        rt_free(&x);
    }
}

static void test_oversized_parse_error_round_trips_null_original_and_its_length(void **state) {
    (void)state;
    rt x = {0};
    hm_quality_write_parse_error(&x.out, NULL, 1234567, true,
                                 "record of 1234567 bytes exceeds the limit of 65536", PA);
    rt_decode_out(&x);
    assert_true(x.q.codes == HM_QBIT(HM_Q_PARSE_ERROR));
    assert_int_equal(x.q.st[HM_QFIELD_ORIGINAL], HM_F_NULL);
    assert_int_equal(x.q.original.len, 0);
    assert_int_equal(x.q.st[HM_QFIELD_ORIGINAL_BYTES], HM_F_OK);
    assert_int_equal(x.q.original_bytes, 1234567);
    assert_false(x.q.error_escaped);
    assert_span_is(x.q.error, "record of 1234567 bytes exceeds the limit of 65536", 50);
    rt_free(&x);
}

static void test_non_strict_original_round_trips_as_a_string(void **state) {
    (void)state;
    static const char *raws[] = {
        "{\"timestamp\":1,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"price\":NaN,"
        "\"volume\":1}",
        "{\"timestamp\":2,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"price\":1,"
        "\"volume\":-1e999}",
        "{\"timestamp\":3,\"symbol\":\"BTC/USDT\",\"price\":2,\"volume\":3,\"x\":[-Infinity]}",
        /* numbers out of range, in a known field, an unknown one, nested */
        "{\"timestamp\":4,\"symbol\":\"BTC/USDT\",\"price\":2,\"volume\":3,"
        "\"trade_id\":1234567890123456789012345678901234567890}",
        "{\"timestamp\":5,\"symbol\":\"BTC/USDT\",\"price\":2,\"volume\":1e-999}",
        "{\"timestamp\":6,\"price\":2,\"volume\":3,\"seq\":18446744073709551616}",
        "{\"timestamp\":7,\"price\":2,\"volume\":3,\"x\":{\"y\":[1,-1e999]}}",
    };
    for (size_t i = 0; i < HM_ARRAY_LEN(raws); i++) {
        rt x;
        rt_run(&x, raws[i], HM_QBIT(HM_Q_NON_FINITE_PRICE), 0.7);
        assert_carries_tick(&x.t, &x.q);
        assert_quality_fields(&x.q, HM_QBIT(HM_Q_NON_FINITE_PRICE), 0.7);
        assert_true(x.q.original_is_string);
        size_t n;
        char *orig = unescape_json_string(x.q.original, &n);
        assert_int_equal(n, x.raw_len);
        assert_memory_equal(orig, x.raw, n);
        /* the unescaped original decodes to the same tick as the input did */
        hm_tick again;
        hm_decode_err err;
        assert_int_equal(hm_tick_decode(orig, n, 0, &again, &err), 0);
        assert_int_equal(again.st[HM_FIELD_PRICE], x.t.st[HM_FIELD_PRICE]);
        assert_int_equal(again.st[HM_FIELD_VOLUME], x.t.st[HM_FIELD_VOLUME]);
        assert_int_equal(again.ts_ms, (int64_t)i + 1);
        free(orig);
        rt_free(&x);
    }
    /* neighbour: "NaN" as a string is strict JSON and stays an object */
    rt x;
    rt_run(&x, "{\"timestamp\":4,\"price\":\"NaN\",\"volume\":1}", 0, 1.0);
    assert_false(x.q.original_is_string);
    assert_spans_equal(x.q.original, x.t.raw);
    assert_int_equal(x.q.tick.st[HM_FIELD_PRICE], HM_F_NULL);
    rt_free(&x);
}

static void test_many_codes_and_every_single_code_round_trip(void **state) {
    (void)state;
    const char *raw = "{\"timestamp\":1,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\","
                      "\"price\":1,\"volume\":1}";
    check_round_trip(raw, ALL_QC, 0.0);
    check_round_trip(raw, ALL_QC & ~HM_QBIT(HM_Q_PARSE_ERROR) & ~HM_QBIT(HM_Q_ZERO_VOLUME), 0.0);
    for (int c = 0; c < HM_QCODE_COUNT; c++) {
        rt x;
        rt_run(&x, raw, HM_QBIT(c), 0.5);
        assert_true(x.q.codes == HM_QBIT(c));
        assert_int_equal(x.q.unknown_codes, 0);
        assert_int_equal(x.q.issue_count, 1);
        rt_free(&x);
    }
}

static void test_truncation_of_a_record_at_every_byte_is_refused(void **state) {
    (void)state;
    rt x;
    rt_run(&x,
           "{\"timestamp\":1,\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"price\":1.5,"
           "\"volume\":2,\"trade_id\":\"x\",\"side\":\"buy\"}",
           HM_QBIT(HM_Q_LARGE_GAP) | HM_QBIT(HM_Q_VOLUME_SPIKE), 0.9);
    for (size_t n = 0; n < x.out.len; n++) {
        hm_quality q;
        hm_decode_err err;
        int rc = decode_copy(x.out.data, n, &q, &err);
        if (rc != -EINVAL || err.msg[0] == '\0' || err.offset > n) {
            print_error("prefix of %zu bytes: rc=%d msg='%s' offset=%zu\n", n, rc, err.msg,
                        err.offset);
            fail();
        }
    }
    rt_free(&x);
}

static void test_price_volume_and_amount_out_of_range_are_written_as_doubles(void **state) {
    (void)state;
    static const struct {
        const char *raw, *want; /* want: the fields written for price, volume (or amount) */
        bool strict;
    } cases[] = {
        /* a 40-digit token: the shortest double, and the original as a string */
        {"{\"price\":1234567890123456789012345678901234567890,\"volume\":1}",
         "\"price\":1.2345678901234568e+39,\"volume\":1,", false},
        /* numeric strings are strict text, but their digits are no number to copy */
        {"{\"price\":\"1e-999\",\"volume\":\"12345678901234567890\"}",
         "\"price\":0,\"volume\":1.2345678901234567e+19,", true},
        {"{\"price\":\"0e400\",\"volume\":\"-9223372036854775809\"}",
         "\"price\":0,\"volume\":-9.223372036854776e+18,", true},
        /* neighbours in range are copied as given, though they take the exact test */
        {"{\"price\":-9223372036854775808,\"volume\":\"0.000\"}",
         "\"price\":-9223372036854775808,\"volume\":0.000,", true},
        {"{\"price\":5e-324,\"volume\":1.7976931348623157e308}",
         "\"price\":5e-324,\"volume\":1.7976931348623157e308,", true},
        {"{\"type\":\"transfer\",\"amount\":99999999999999999999}", "\"amount\":1e+20,", false},
    };
    for (size_t i = 0; i < HM_ARRAY_LEN(cases); i++) {
        rt x;
        rt_run(&x, cases[i].raw, 0, 1.0);
        if (!strstr(x.out.data, cases[i].want)) {
            print_error("%s\n  written: %s\n  want the fields: %s\n", cases[i].raw, x.out.data,
                        cases[i].want);
            fail();
        }
        assert_int_equal(x.t.strict_json, cases[i].strict);
        assert_int_equal(x.q.original_is_string, !cases[i].strict);
        /* the record is strict JSON itself, and reads back the same doubles */
        assert_true(x.q.tick.strict_json);
        assert_same_double(x.q.tick.price, x.t.price);
        assert_same_double(x.q.tick.volume, x.t.volume);
        json_error_t je;
        json_t *j = json_loadb(x.out.data, x.out.len, JSON_REJECT_DUPLICATES, &je);
        if (!j) {
            print_error("jansson refuses %s: %s\n", x.out.data, je.text);
            fail();
        }
        json_decref(j);
        rt_free(&x);
    }
}

/* A small deterministic generator (xorshift64*) for the generated records. */
typedef struct prng {
    uint64_t s;
} prng;

static unsigned below(prng *r, unsigned n) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return (unsigned)((r->s * 2685821657736338717ULL) % n);
}

/* Values strict parsers refuse or misread as numbers, and the tokens Python emits. */
static const char *const k_hostile[] = {
    "1e999", "-1e999", "1e-999", "-1.5e-400", "1234567890123456789012345678901234567890",
    "-1234567890123456789012345678901234567890", "18446744073709551616", "99999999999999999999",
    "9223372036854775808", "-9223372036854775809", "1.7976931348623159e308", "0e400", "0e-16384",
    "NaN", "Infinity", "-Infinity",
    /* the same as numeric strings: strict text, but no number to copy */
    "\"1e999\"", "\"1e-999\"", "\"1234567890123456789012345678901234567890\"",
    "\"18446744073709551616\"", "\"0e400\"", "\"NaN\"", "\"-Infinity\""};
/* Values at the edge, in range: they must stay objects in original_data. */
static const char *const k_edge[] = {"0",
                                     "-0",
                                     "0.0",
                                     "37012.53",
                                     "1e-05",
                                     "9223372036854775807",
                                     "-9223372036854775808",
                                     "12345678901234567890.5",
                                     "1e19",
                                     "5e-324",
                                     "1.7976931348623157e308",
                                     "0e308",
                                     "null",
                                     "true",
                                     "\"x\"",
                                     "[]",
                                     "{}"};

/* One record's value for a field: hostile (a third of the time, in a hostile record), at
 * the edge, or usual. */
static void put_value(hm_buf *b, prng *r, bool hostile, const char *usual, const char *long_int) {
    unsigned k = below(r, 12);
    if (!hostile && k < 5) k += 5;
    if (k < 4)
        hm_buf_puts(b, k_hostile[below(r, HM_ARRAY_LEN(k_hostile))]);
    else if (k == 4)
        hm_buf_puts(b, long_int); /* 400 digits */
    else if (k < 7)
        hm_buf_puts(b, k_edge[below(r, HM_ARRAY_LEN(k_edge))]);
    else
        hm_buf_puts(b, usual);
}

/* A raw record with hostile values mixed into every position: each known field, unknown
 * fields, arrays and objects nested in them; fields sometimes absent, kinds mixed. One in
 * four records has only values in range (at the edge or usual). */
static void generate_hostile_record(hm_buf *b, prng *r, const char *long_int) {
    bool hostile = below(r, 4) != 0;
    static const char *const k_fields[][2] = {{"timestamp", "1700000000123"},
                                              {"symbol", "\"BTC/USDT\""},
                                              {"exchange", "\"binance\""},
                                              {"price", "37012.53"},
                                              {"volume", "0.25"},
                                              {"trade_id", "3000000001"},
                                              {"side", "\"buy\""},
                                              {"amount", "2.5"},
                                              {"asset", "\"BTC\""},
                                              {"quote_volume", "9253.1"},
                                              {"ingest_ts", "1700000000130"}};
    static const char *const k_types[] = {"\"trade\"", "\"liquidation\"", "\"transfer\""};
    hm_buf_puts(b, "{\"type\":");
    hm_buf_puts(b, k_types[below(r, 3)]);
    for (size_t f = 0; f < HM_ARRAY_LEN(k_fields); f++) {
        if (below(r, 8) == 0) continue; /* absent */
        hm_buf_printf(b, ",%s\"%s\":", below(r, 4) ? "" : " ", k_fields[f][0]);
        put_value(b, r, hostile, k_fields[f][1], long_int);
    }
    if (below(r, 2)) { /* nested: an array holding an object holding an array */
        hm_buf_puts(b, ",\"meta\":[1,{\"fills\":[");
        put_value(b, r, hostile, "2.5", long_int);
        hm_buf_puts(b, ",{\"q\":");
        put_value(b, r, hostile, "0.1", long_int);
        hm_buf_puts(b, "}]},\"s\"]");
    }
    hm_buf_putc(b, '}');
}

static void
test_generated_hostile_records_all_load_in_jansson_and_keep_their_original(void **state) {
    (void)state;
    prng r = {0x9e3779b97f4a7c15ULL};
    char long_int[401];
    memset(long_int, '7', 400);
    long_int[400] = '\0';
    hm_buf in = HM_BUF_INIT;
    int strict = 0, embedded = 0;
    for (int i = 0; i < 3000; i++) {
        hm_buf_reset(&in);
        generate_hostile_record(&in, &r, long_int);
        rt x;
        rt_run(&x, in.data, HM_QBIT(HM_Q_NON_FINITE_PRICE), 0.7);
        /* the whole line loads in jansson, duplicate keys refused */
        json_error_t je;
        json_t *j = json_loadb(x.out.data, x.out.len, JSON_REJECT_DUPLICATES, &je);
        if (!j) {
            print_error("record %d: jansson refuses the output (%s at %d)\n  input:  %s\n"
                        "  output: %s\n",
                        i, je.text, je.position, x.raw, x.out.data);
            fail();
        }
        json_t *orig = json_object_get(j, "original_data");
        if (x.t.strict_json) {
            /* an object, the input byte for byte, which jansson loads on its own too */
            strict++;
            assert_true(json_is_object(orig));
            assert_false(x.q.original_is_string);
            assert_spans_equal(x.q.original, x.t.raw);
            json_t *alone = json_loadb(x.raw, x.raw_len, JSON_REJECT_DUPLICATES, &je);
            if (!alone) {
                print_error("record %d: called strict, jansson refuses it: %s (%s)\n", i, x.raw,
                            je.text);
                fail();
            }
            json_decref(alone);
        } else {
            /* a string holding the input byte for byte */
            embedded++;
            assert_true(json_is_string(orig));
            assert_int_equal(json_string_length(orig), x.raw_len);
            assert_memory_equal(json_string_value(orig), x.raw, x.raw_len);
            assert_true(x.q.original_is_string);
            size_t n;
            char *back = unescape_json_string(x.q.original, &n);
            assert_int_equal(n, x.raw_len);
            assert_memory_equal(back, x.raw, n);
            free(back);
        }
        json_decref(j);
        /* hm_quality_decode reads it back: the fields the validator accepted, and a record
         * that is strict JSON itself (no number out of range was written) */
        assert_carries_tick(&x.t, &x.q);
        assert_quality_fields(&x.q, HM_QBIT(HM_Q_NON_FINITE_PRICE), 0.7);
        rt_free(&x);
    }
    /* both outcomes were exercised in bulk */
    print_message("%d records embedded as strings, %d as objects\n", embedded, strict);
    assert_true(strict > 500);
    assert_true(embedded > 1500);
    hm_buf_free(&in);
}

/* ---- what the decoder refuses ----------------------------------------------------------- */

static void test_malformed_json_is_refused_naming_offset_field_and_reason(void **state) {
    (void)state;
    EXPECT_ERROR("", 0, "", "empty input");
    EXPECT_ERROR("  ", 2, "", "empty input");
    EXPECT_ERROR("[1]", 0, "", "expected '{' at byte 0, found '['");
    EXPECT_ERROR("{\"quality_score\":1.000,}", 23, "",
                 "expected '\"' to start a key at byte 23, found '}'");
    EXPECT_ERROR("{\"quality_score\":1.000} x", 24, "",
                 "trailing characters after the object at byte 24");
    EXPECT_ERROR("{\"issues\":[\"LARGE_GAP\",]}", 23, "issues",
                 "expected a value at byte 23, found ']'");
    EXPECT_ERROR("{\"issues\":[\"LARGE_GAP\" \"X\"]}", 23, "issues",
                 "expected ',' or ']' after value at byte 23, found '\"'");
    EXPECT_ERROR("{\"issues\":[\"LARGE_GAP\"", 22, "issues", "unexpected end of input at byte 22");
    EXPECT_ERROR("{\"original_data\":{\"a\":1,}}", 24, "original_data",
                 "expected '\"' to start a key at byte 24, found '}'");
    EXPECT_ERROR("{\"error\":\"bad \\x\"}", 14, "error",
                 "invalid escape at byte 14: backslash followed by 'x'");
    EXPECT_ERROR("{\"symbol\":\"BTC\xC3\x28\"}", 14, "symbol", "invalid UTF-8 at byte 14");
}

static void test_nan_tokens_are_refused_because_quality_records_are_strict_json(void **state) {
    (void)state;
    EXPECT_ERROR("{\"price\":NaN}", 9, "price", "NaN/Infinity token at byte 9 is not JSON");
    EXPECT_ERROR("{\"original_data\":{\"price\":-Infinity}}", 26, "original_data",
                 "NaN/Infinity token at byte 26 is not JSON");
    EXPECT_ERROR("{\"quality_score\":Infinity}", 17, "quality_score",
                 "NaN/Infinity token at byte 17 is not JSON");
    /* neighbour: the same words inside strings are only text */
    hm_quality q = decode_ok("{\"price\":\"NaN\",\"original_data\":\"{\\\"price\\\":NaN}\"}");
    assert_int_equal(q.tick.st[HM_FIELD_PRICE], HM_F_NONFINITE);
    assert_true(q.original_is_string);
}

static void test_duplicate_known_keys_are_refused(void **state) {
    (void)state;
    EXPECT_ERROR("{\"issues\":[],\"issues\":[]}", 13, "issues", "duplicate key 'issues'");
    EXPECT_ERROR("{\"quality_score\":1,\"quality\\u005fscore\":0}", 19, "quality\\u005fscore",
                 "duplicate key 'quality_score'");
    EXPECT_ERROR("{\"price\":1,\"quality_score\":1,\"price\":2}", 29, "price",
                 "duplicate key 'price'");
    /* neighbour: unknown members may repeat, as in a raw record */
    hm_quality q = decode_ok("{\"extra\":1,\"extra\":2,\"quality_score\":0.5}");
    assert_int_equal(q.st[HM_QFIELD_SCORE], HM_F_OK);
    assert_true(q.score == 0.5);
}

static void test_oversized_input_is_refused_before_reading_it(void **state) {
    (void)state;
    hm_quality q;
    hm_decode_err err;
    /* the length alone is refused: no byte past the two given is read */
    assert_int_equal(hm_quality_decode("{}", (size_t)UINT32_MAX + 1, &q, &err), -E2BIG);
    assert_non_null(strstr(err.msg, "exceeds the limit of 4294967295"));
    assert_int_equal(hm_quality_decode("{}", 2, &q, NULL), 0);
}

/* ---- nesting ---------------------------------------------------------------------------- */

/* "{\"a\":" + levels alternating objects and arrays + "1" + closers + "}" */
static size_t nested_record(char *out, int inner) {
    size_t n = (size_t)sprintf(out, "{\"a\":");
    for (int i = 0; i < inner; i++) {
        if (i % 2)
            out[n++] = '[';
        else
            n += (size_t)sprintf(out + n, "{\"k\":");
    }
    out[n++] = '1';
    for (int i = inner - 1; i >= 0; i--)
        out[n++] = i % 2 ? ']' : '}';
    out[n++] = '}';
    out[n] = '\0';
    return n;
}

static void test_raw_record_at_the_depth_limit_decodes_as_original_data(void **state) {
    (void)state;
    char raw[256];
    nested_record(raw, HM_TICK_MAX_DEPTH - 1); /* the record is level 1 */
    check_round_trip(raw, 0, 1.0);
    /* one level more is no raw record, so it can only arrive as a parse error's string */
    nested_record(raw, HM_TICK_MAX_DEPTH);
    hm_tick t;
    hm_decode_err err;
    assert_int_equal(hm_tick_decode(raw, strlen(raw), 0, &t, &err), -EINVAL);
}

static void test_quality_record_nesting_limit_is_the_tick_limit_plus_one(void **state) {
    (void)state;
    char json[128];
    assert_int_equal(HM_QUALITY_MAX_DEPTH, HM_TICK_MAX_DEPTH + 1);
    /* HM_QUALITY_MAX_DEPTH levels in all: accepted */
    size_t n = (size_t)sprintf(json, "{\"a\":");
    for (int i = 0; i < HM_QUALITY_MAX_DEPTH - 1; i++)
        json[n++] = '[';
    for (int i = 0; i < HM_QUALITY_MAX_DEPTH - 1; i++)
        json[n++] = ']';
    json[n++] = '}';
    json[n] = '\0';
    decode_ok(json);
    /* one more: refused where the bracket opens */
    n = (size_t)sprintf(json, "{\"a\":");
    for (int i = 0; i < HM_QUALITY_MAX_DEPTH; i++)
        json[n++] = '[';
    char msg[96];
    snprintf(msg, sizeof(msg), "nesting deeper than %d levels at byte %d", HM_QUALITY_MAX_DEPTH,
             5 + HM_QUALITY_MAX_DEPTH - 1);
    expect_error_at(json, n, 5 + HM_QUALITY_MAX_DEPTH - 1, "a", msg, __LINE__);
    /* inside "issues" the array itself is a level: the same limit counts from there */
    n = (size_t)sprintf(json, "{\"issues\":[");
    for (int i = 0; i < HM_QUALITY_MAX_DEPTH - 2; i++)
        json[n++] = '[';
    for (int i = 0; i < HM_QUALITY_MAX_DEPTH - 2; i++)
        json[n++] = ']';
    n += (size_t)sprintf(json + n, "]}");
    hm_quality q = decode_ok(json);
    assert_int_equal(q.st[HM_QFIELD_ISSUES], HM_F_INVALID);
    n = (size_t)sprintf(json, "{\"issues\":[");
    for (int i = 0; i < HM_QUALITY_MAX_DEPTH - 1; i++)
        json[n++] = '[';
    snprintf(msg, sizeof(msg), "nesting deeper than %d levels at byte %d", HM_QUALITY_MAX_DEPTH,
             11 + HM_QUALITY_MAX_DEPTH - 2);
    expect_error_at(json, n, 11 + HM_QUALITY_MAX_DEPTH - 2, "issues", msg, __LINE__);
}

/* ---- what the decoder tolerates --------------------------------------------------------- */

static void test_unknown_code_names_are_counted_not_errors(void **state) {
    (void)state;
    hm_quality q = decode_ok("{\"issues\":[\"LARGE_GAP\",\"SOME_NEW_CODE\",\"ZERO_VOLUME\","
                             "\"large_gap\",\"\",\"LARGE\\u005fPRICE_MOVE\"],\"issue_count\":6}");
    assert_int_equal(q.st[HM_QFIELD_ISSUES], HM_F_OK);
    assert_true(q.codes == (HM_QBIT(HM_Q_LARGE_GAP) | HM_QBIT(HM_Q_ZERO_VOLUME) |
                            HM_QBIT(HM_Q_LARGE_PRICE_MOVE)));
    assert_int_equal(q.unknown_codes, 3);
    assert_int_equal(q.issue_count, 6);
    /* an element that is not a string: the field is invalid, the names still count */
    q = decode_ok("{\"issues\":[\"STALE_DATA\",7,{\"x\":[]},null,\"NOPE\"]}");
    assert_int_equal(q.st[HM_QFIELD_ISSUES], HM_F_INVALID);
    assert_true(q.codes == HM_QBIT(HM_Q_STALE_DATA));
    assert_int_equal(q.unknown_codes, 1);
    /* neighbour: an empty array is a clean record */
    q = decode_ok("{\"issues\":[ ]}");
    assert_int_equal(q.st[HM_QFIELD_ISSUES], HM_F_OK);
    assert_true(q.codes == 0);
    assert_int_equal(q.unknown_codes, 0);
}

static void test_unknown_members_are_skipped(void **state) {
    (void)state;
    hm_quality q = decode_ok("{\"schema\":2,\"quality_score\":0.25,\"lineage\":{\"a\":[1,2]},"
                             "\"issues\":[],\"validator\":\"v9\"}");
    assert_int_equal(q.st[HM_QFIELD_SCORE], HM_F_OK);
    assert_true(q.score == 0.25);
    assert_int_equal(q.st[HM_QFIELD_ISSUES], HM_F_OK);
    assert_int_equal(q.st[HM_QFIELD_PROCESSED_AT], HM_F_ABSENT);
}

static void test_missing_and_null_fields_have_states_not_errors(void **state) {
    (void)state;
    hm_quality q = decode_ok("{}");
    for (int f = 0; f < HM_QFIELD_COUNT_; f++)
        assert_int_equal(q.st[f], HM_F_ABSENT);
    for (int f = 0; f < HM_FIELD_COUNT_; f++)
        assert_int_equal(q.tick.st[f], HM_F_ABSENT);
    assert_true(q.codes == 0);

    q = decode_ok("{\"symbol\":null,\"exchange\":null,\"timestamp\":null,\"price\":null,"
                  "\"volume\":null,\"trade_id\":null,\"side\":null,\"type\":null,"
                  "\"quality_score\":null,\"issues\":null,\"issue_count\":null,"
                  "\"processed_at\":null,\"error\":null,\"original_data\":null,"
                  "\"original_bytes\":null}");
    for (int f = 0; f < HM_QFIELD_COUNT_; f++)
        assert_int_equal(q.st[f], HM_F_NULL);
    for (int f = 0; f < HM_FIELD_COUNT_; f++)
        assert_int_equal(q.tick.st[f], is_transfer_field((hm_field)f) || f == HM_FIELD_RECEIVED
                                           ? HM_F_ABSENT
                                           : HM_F_NULL);
}

static void test_wrong_types_and_bad_values_have_their_states(void **state) {
    (void)state;
    hm_quality q = decode_ok("{\"quality_score\":\"0.5\",\"issues\":\"LARGE_GAP\","
                             "\"issue_count\":\"1\",\"processed_at\":1700000000000,"
                             "\"error\":false,\"original_data\":[1],\"original_bytes\":\"9\"}");
    for (int f = 0; f < HM_QFIELD_COUNT_; f++)
        assert_int_equal(q.st[f], HM_F_WRONG_TYPE);
    assert_true(q.codes == 0);

    q = decode_ok("{\"quality_score\":1.5,\"issue_count\":-1,\"processed_at\":\"yesterday\","
                  "\"original_bytes\":2.5}");
    assert_int_equal(q.st[HM_QFIELD_SCORE], HM_F_INVALID);
    assert_int_equal(q.st[HM_QFIELD_ISSUE_COUNT], HM_F_INVALID);
    assert_int_equal(q.st[HM_QFIELD_PROCESSED_AT], HM_F_INVALID);
    assert_int_equal(q.st[HM_QFIELD_ORIGINAL_BYTES], HM_F_INVALID);

    /* neighbours just inside: the ends of the score range, zero counts, a zone offset */
    q = decode_ok("{\"quality_score\":0,\"issue_count\":0,\"processed_at\":"
                  "\"2023-11-14T23:13:21.004+01:00\",\"original_bytes\":0}");
    assert_int_equal(q.st[HM_QFIELD_SCORE], HM_F_OK);
    assert_true(q.score == 0.0);
    assert_int_equal(q.st[HM_QFIELD_ISSUE_COUNT], HM_F_OK);
    assert_int_equal(q.st[HM_QFIELD_PROCESSED_AT], HM_F_OK);
    assert_int_equal(q.processed_at_ms, PA_MS);
    assert_int_equal(q.st[HM_QFIELD_ORIGINAL_BYTES], HM_F_OK);
    q = decode_ok("{\"quality_score\":1e0}");
    assert_int_equal(q.st[HM_QFIELD_SCORE], HM_F_OK);
    assert_true(q.score == 1.0);
}

static void test_escaped_keys_are_recognised(void **state) {
    (void)state;
    hm_quality q = decode_ok("{\"quality\\u005fscore\":0.5,\"\\u0069ssues\":[\"LARGE_GAP\"],"
                             "\"pr\\u0069ce\":2}");
    assert_int_equal(q.st[HM_QFIELD_SCORE], HM_F_OK);
    assert_true(q.score == 0.5);
    assert_true(q.codes == HM_QBIT(HM_Q_LARGE_GAP));
    assert_int_equal(q.tick.st[HM_FIELD_PRICE], HM_F_OK);
    assert_true(q.tick.price == 2.0);
}

static void test_names_of_quality_fields(void **state) {
    (void)state;
    assert_string_equal(hm_qfield_name(HM_QFIELD_SCORE), "quality_score");
    assert_string_equal(hm_qfield_name(HM_QFIELD_ISSUES), "issues");
    assert_string_equal(hm_qfield_name(HM_QFIELD_ISSUE_COUNT), "issue_count");
    assert_string_equal(hm_qfield_name(HM_QFIELD_PROCESSED_AT), "processed_at");
    assert_string_equal(hm_qfield_name(HM_QFIELD_ERROR), "error");
    assert_string_equal(hm_qfield_name(HM_QFIELD_ORIGINAL), "original_data");
    assert_string_equal(hm_qfield_name(HM_QFIELD_ORIGINAL_BYTES), "original_bytes");
    assert_string_equal(hm_qfield_name(HM_QFIELD_COUNT_), "unknown");
}

static void test_issues_text_is_the_array_as_written(void **state) {
    (void)state;
    static const char rec[] =
        "{\"symbol\":\"BTC/USDT\",\"exchange\":\"binance\",\"timestamp\":1700000000000,"
        "\"price\":1.5,\"volume\":2,\"type\":\"trade\",\"quality_score\":0.9,"
        "\"issues\":[\"PRICE_SPIKE\", \"LATE\"],\"issue_count\":2,"
        "\"processed_at\":\"2026-12-01T00:00:00.000Z\",\"original_data\":{}}";
    hm_quality q;
    hm_decode_err err = {0};
    assert_int_equal(hm_quality_decode(rec, sizeof(rec) - 1, &q, &err), 0);
    static const char want[] = "[\"PRICE_SPIKE\", \"LATE\"]";
    assert_int_equal(q.issues_text.len, sizeof(want) - 1);
    assert_memory_equal(q.issues_text.p, want, sizeof(want) - 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_table_names_weights_and_holds),
        cmocka_unit_test(test_every_code_name_is_found_by_name_and_by_span),
        cmocka_unit_test(test_unknown_and_miscased_names_are_not_codes),
        cmocka_unit_test(test_issues_text_is_the_array_as_written),
        cmocka_unit_test(test_trade_record_is_written_in_the_documented_format),
        cmocka_unit_test(test_parse_error_record_is_written_in_the_documented_format),
        cmocka_unit_test(test_trade_round_trips_every_field),
        cmocka_unit_test(test_liquidation_round_trips_with_its_kind_and_side),
        cmocka_unit_test(test_transfer_round_trips_its_own_fields),
        cmocka_unit_test(test_parse_error_round_trips_error_and_original_string),
        cmocka_unit_test(test_oversized_parse_error_round_trips_null_original_and_its_length),
        cmocka_unit_test(test_non_strict_original_round_trips_as_a_string),
        cmocka_unit_test(test_price_volume_and_amount_out_of_range_are_written_as_doubles),
        cmocka_unit_test(
            test_generated_hostile_records_all_load_in_jansson_and_keep_their_original),
        cmocka_unit_test(test_many_codes_and_every_single_code_round_trip),
        cmocka_unit_test(test_truncation_of_a_record_at_every_byte_is_refused),
        cmocka_unit_test(test_malformed_json_is_refused_naming_offset_field_and_reason),
        cmocka_unit_test(test_nan_tokens_are_refused_because_quality_records_are_strict_json),
        cmocka_unit_test(test_duplicate_known_keys_are_refused),
        cmocka_unit_test(test_oversized_input_is_refused_before_reading_it),
        cmocka_unit_test(test_raw_record_at_the_depth_limit_decodes_as_original_data),
        cmocka_unit_test(test_quality_record_nesting_limit_is_the_tick_limit_plus_one),
        cmocka_unit_test(test_unknown_code_names_are_counted_not_errors),
        cmocka_unit_test(test_unknown_members_are_skipped),
        cmocka_unit_test(test_missing_and_null_fields_have_states_not_errors),
        cmocka_unit_test(test_wrong_types_and_bad_values_have_their_states),
        cmocka_unit_test(test_escaped_keys_are_recognised),
        cmocka_unit_test(test_names_of_quality_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
