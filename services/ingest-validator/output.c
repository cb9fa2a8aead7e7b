/*
 * output.c: writes the ingest-validator's quality records (output.h).
 *
 * Field order is fixed (consumers and the replay-equals-Kafka test compare
 * bytes): symbol, exchange, timestamp, price, volume, trade_id, side, type,
 * [asset, amount, from, to, tx_hash for transfers], quality_score, issues,
 * issue_count, processed_at, [error], original_data.
 *
 * Hot path: numbers are copied from the input's own text when it is already
 * strict JSON (exact and cheaper than formatting a double), the original
 * object is copied verbatim, and code names are precomputed JSON literals.
 * Everything written is valid JSON: a value the decoder did not accept is null.
 */
#include "output.h"

#include <string.h>

/* "\"NAME\"" per code, built by the preprocessor. */
static const struct {
    const char *s;
    uint8_t n;
} k_code_json[IV_CODE_COUNT] = {
#define IV_CODE_JSON_(name, weight, holds) [IV_##name] = {"\"" #name "\"", sizeof(#name) + 1},
    IV_CODES(IV_CODE_JSON_)
#undef IV_CODE_JSON_
};

void iv_write_issues(hm_buf *b, iv_codeset codes) {
    hm_buf_putc(b, '[');
    bool first = true;
    for (iv_codeset m = codes; m; m &= m - 1) {
        int c = __builtin_ctzll(m);
        if (!first) hm_buf_putc(b, ',');
        first = false;
        hm_buf_append(b, k_code_json[c].s, k_code_json[c].n);
    }
    hm_buf_putc(b, ']');
}

/* A string field the decoder accepted (state OK): its bytes hold no quote, backslash
 * or control character (those need escapes, and escaped identifiers are INVALID) and
 * are valid UTF-8, but hm_json_str() is cheap on plain ASCII and keeps this safe
 * whatever a future decoder lets through. */
static void put_span_or_null(hm_buf *b, hm_fstate st, hm_span s) {
    if (st == HM_F_OK)
        hm_json_str(b, s.p, s.len);
    else
        HM_BUF_PUT_LIT(b, "null");
}

static void put_exchange(hm_buf *b, const hm_tick *t) {
    if (t->st[HM_FIELD_EXCHANGE] != HM_F_OK) {
        HM_BUF_PUT_LIT(b, "null");
        return;
    }
    char small[64];
    if (t->exchange.len <= sizeof(small)) {
        for (uint32_t i = 0; i < t->exchange.len; i++) {
            char c = t->exchange.p[i];
            small[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        hm_json_str(b, small, t->exchange.len);
        return;
    }
    /* A long name (never a configured one): lower-case a heap copy. */
    hm_buf tmp = HM_BUF_INIT;
    hm_buf_append(&tmp, t->exchange.p, t->exchange.len);
    for (size_t i = 0; i < tmp.len; i++)
        if (tmp.data[i] >= 'A' && tmp.data[i] <= 'Z') tmp.data[i] = (char)(tmp.data[i] + 32);
    hm_json_str(b, tmp.data, tmp.len);
    hm_buf_free(&tmp);
}

static void put_number(hm_buf *b, hm_fstate st, double v, hm_span text) {
    if (st != HM_F_OK) {
        HM_BUF_PUT_LIT(b, "null");
        return;
    }
    if (hm_json_is_number(text.p, text.len))
        hm_buf_append(b, text.p, text.len);
    else
        hm_json_double(b, v);
}

/* A number token (not a quoted string) that overflows a double. A value's text is
 * always preceded by at least "{\"k\":" inside the record, so p[-1] is readable. */
static bool overflow_literal(hm_fstate st, hm_span text) {
    return st == HM_F_NONFINITE && text.len > 0 && text.p[-1] != '"';
}

static void put_iso(hm_buf *b, const char *iso) {
    hm_buf_putc(b, '"');
    hm_buf_append(b, iso, 24);
    hm_buf_putc(b, '"');
}

void iv_write_record(hm_buf *b, const hm_tick *t, iv_codeset codes, double score,
                     const char *processed_at) {
    hm_buf_reserve(b, 256 + t->raw.len);
    HM_BUF_PUT_LIT(b, "{\"symbol\":");
    put_span_or_null(b, t->st[HM_FIELD_SYMBOL], t->symbol);
    HM_BUF_PUT_LIT(b, ",\"exchange\":");
    put_exchange(b, t);
    HM_BUF_PUT_LIT(b, ",\"timestamp\":");
    if (t->st[HM_FIELD_TIMESTAMP] == HM_F_OK)
        hm_buf_i64(b, t->ts_ms);
    else
        HM_BUF_PUT_LIT(b, "null");
    bool transfer = t->kind == HM_KIND_TRANSFER;
    HM_BUF_PUT_LIT(b, ",\"price\":");
    put_number(b, t->st[HM_FIELD_PRICE], t->price, t->price_text);
    HM_BUF_PUT_LIT(b, ",\"volume\":");
    put_number(b, t->st[HM_FIELD_VOLUME], t->volume, t->volume_text);
    HM_BUF_PUT_LIT(b, ",\"trade_id\":");
    put_span_or_null(b, t->st[HM_FIELD_TRADE_ID], t->trade_id);
    HM_BUF_PUT_LIT(b, ",\"side\":");
    if (t->st[HM_FIELD_SIDE] == HM_F_OK)
        hm_json_cstr(b, hm_side_name(t->side));
    else
        HM_BUF_PUT_LIT(b, "null");
    HM_BUF_PUT_LIT(b, ",\"type\":\"");
    hm_buf_puts(b, hm_kind_name(t->kind));
    hm_buf_putc(b, '"');
    if (transfer) {
        HM_BUF_PUT_LIT(b, ",\"asset\":");
        put_span_or_null(b, t->st[HM_FIELD_ASSET], t->asset);
        /* The decoder keeps the amount in volume when "volume" is absent. */
        HM_BUF_PUT_LIT(b, ",\"amount\":");
        put_number(b, t->st[HM_FIELD_AMOUNT], t->volume, t->volume_text);
        HM_BUF_PUT_LIT(b, ",\"from\":");
        put_span_or_null(b, t->st[HM_FIELD_FROM], t->from);
        HM_BUF_PUT_LIT(b, ",\"to\":");
        put_span_or_null(b, t->st[HM_FIELD_TO], t->to);
        HM_BUF_PUT_LIT(b, ",\"tx_hash\":");
        put_span_or_null(b, t->st[HM_FIELD_TX_HASH], t->tx_hash);
    }
    HM_BUF_PUT_LIT(b, ",\"quality_score\":");
    hm_json_fixed3(b, score);
    HM_BUF_PUT_LIT(b, ",\"issues\":");
    iv_write_issues(b, codes);
    HM_BUF_PUT_LIT(b, ",\"issue_count\":");
    hm_buf_u64(b, (uint64_t)__builtin_popcountll(codes));
    HM_BUF_PUT_LIT(b, ",\"processed_at\":");
    put_iso(b, processed_at);
    HM_BUF_PUT_LIT(b, ",\"original_data\":");
    /* NaN/Infinity tokens are not JSON, and a number literal beyond a double's range
     * (1e400), though RFC 8259 grammar, is refused by common parsers (jansson): such a
     * record is embedded as a string. An overflowing literal in a field the decoder does
     * not know is not looked for (that would cost a scan of every record). */
    bool plain = t->strict_json && !overflow_literal(t->st[HM_FIELD_PRICE], t->price_text) &&
                 !overflow_literal(t->st[HM_FIELD_VOLUME], t->volume_text);
    if (plain)
        hm_buf_append(b, t->raw.p, t->raw.len);
    else
        hm_json_str(b, t->raw.p, t->raw.len);
    hm_buf_putc(b, '}');
}

void iv_write_parse_error(hm_buf *b, const char *data, size_t len, bool oversized,
                          const char *error, const char *processed_at) {
    HM_BUF_PUT_LIT(b, "{\"symbol\":null,\"exchange\":null,\"timestamp\":null,\"price\":null,"
                      "\"volume\":null,\"trade_id\":null,\"side\":null,\"type\":null,"
                      "\"quality_score\":0.000,\"issues\":[\"PARSE_ERROR\"],\"issue_count\":1,"
                      "\"processed_at\":");
    put_iso(b, processed_at);
    HM_BUF_PUT_LIT(b, ",\"error\":");
    hm_json_cstr(b, error);
    HM_BUF_PUT_LIT(b, ",\"original_data\":");
    if (oversized) {
        /* The bytes are on the dead-letter topic; a copy here would defeat the limit. */
        HM_BUF_PUT_LIT(b, "null,\"original_bytes\":");
        hm_buf_u64(b, len);
    } else {
        hm_json_str(b, data, len);
    }
    hm_buf_putc(b, '}');
}
