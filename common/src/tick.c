/*
 * tick.c: the market-record JSON decoder (himari/tick.h), the hottest code in the system.
 *
 * Every record on raw_market_data passes through hm_tick_decode() once, so it is written
 * as one forward pass over the bytes: no allocation, no recursion (nested values are
 * skipped by an explicit loop bounded by HM_TICK_MAX_DEPTH), no copies (spans point into
 * the caller's buffer) and no strtod for ordinary numbers (see num_to_double()). The
 * scanner itself (strings, numbers, containers, errors) is json_scan.h, shared with the
 * quality-record decoder (quality.c), which runs this file's member loop through
 * hm_tick_decode_object() for the tick fields a quality record carries.
 *
 * It is strict about syntax (RFC 8259 plus the NaN/Infinity tokens Python emits) and
 * lenient about fields: a well-formed object always decodes and each known field gets a
 * state. It must never read a byte at or past json + len (the input is not NUL-terminated),
 * never accept a record that a strict JSON parser would reject without clearing
 * strict_json (those tokens, and numbers out of range wherever they are: json_scan.h's
 * number_out_of_range()), and never let one bad field make the whole record a parse error.
 *
 * Depth: the record's own object is level 1, so values may nest HM_TICK_MAX_DEPTH - 1
 * further levels of objects/arrays; an open bracket that would make level
 * HM_TICK_MAX_DEPTH + 1 is an error.
 *
 * Leap seconds: hm_parse_iso8601_ms() accepts second 60 and counts it as the first second
 * of the next minute (23:59:60.5Z == 00:00:00.5Z of the next day): simple, monotonic
 * enough for market data, and never refuses a timestamp an exchange really sent.
 */
#include "himari/tick.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "json_scan.h"

_Static_assert(HM_TICK_MAX_DEPTH <= 32, "the nesting stack is a 32-bit mask");
_Static_assert(HM_FIELD_COUNT_ <= 32, "seen keys are a 32-bit mask");

/* ---- names ---------------------------------------------------------------------------- */

static const char *const k_field_names[HM_FIELD_COUNT_] = {
    [HM_FIELD_TIMESTAMP] = "timestamp", [HM_FIELD_SYMBOL] = "symbol",
    [HM_FIELD_EXCHANGE] = "exchange",   [HM_FIELD_PRICE] = "price",
    [HM_FIELD_VOLUME] = "volume",       [HM_FIELD_TRADE_ID] = "trade_id",
    [HM_FIELD_SIDE] = "side",           [HM_FIELD_TYPE] = "type",
    [HM_FIELD_ASSET] = "asset",         [HM_FIELD_AMOUNT] = "amount",
    [HM_FIELD_FROM] = "from",           [HM_FIELD_TO] = "to",
    [HM_FIELD_TX_HASH] = "tx_hash",     [HM_FIELD_RECEIVED] = "local_timestamp",
};

const char *hm_field_name(hm_field f) {
    if ((unsigned)f >= HM_FIELD_COUNT_) return "unknown";
    return k_field_names[f];
}

const char *hm_fstate_name(hm_fstate s) {
    switch (s) {
        case HM_F_ABSENT:
            return "absent";
        case HM_F_OK:
            return "ok";
        case HM_F_NULL:
            return "null";
        case HM_F_WRONG_TYPE:
            return "wrong type";
        case HM_F_INVALID:
            return "invalid";
        case HM_F_NONFINITE:
            return "non-finite";
    }
    return "unknown";
}

const char *hm_kind_name(hm_kind k) {
    switch (k) {
        case HM_KIND_TRADE:
            return "trade";
        case HM_KIND_LIQUIDATION:
            return "liquidation";
        case HM_KIND_TRANSFER:
            return "transfer";
    }
    return "unknown";
}

const char *hm_side_name(hm_side s) {
    switch (s) {
        case HM_SIDE_NONE:
            return "";
        case HM_SIDE_BUY:
            return "buy";
        case HM_SIDE_SELL:
            return "sell";
    }
    return "unknown";
}

size_t hm_tick_exchange_lower(const hm_tick *t, char *out, size_t out_size) {
    assert(t && out);
    if (out_size == 0) return 0;
    size_t n = t->exchange.len;
    if (n > out_size - 1) n = out_size - 1;
    for (size_t i = 0; i < n; i++) {
        char c = t->exchange.p[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    out[n] = '\0';
    return n;
}

/* ---- numbers in text (tokens are json_scan.h's) ------------------------------------- */

static inline bool ascii_ieq(const char *s, const char *lower, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != lower[i]) return false;
    }
    return true;
}

hm_fstate hm_parse_decimal(const char *s, size_t n, double *out) {
    assert(out);
    *out = 0.0;
    if (!s || n == 0) return HM_F_INVALID;
    const char *end = s + n;
    const char *p = s;
    bool neg = false, plus = false;
    if (*p == '+' || *p == '-') {
        neg = *p == '-';
        plus = *p == '+';
        p++;
    }
    size_t m = (size_t)(end - p);
    if ((m == 3 && ascii_ieq(p, "nan", 3))) {
        *out = NAN;
        return HM_F_NONFINITE;
    }
    if ((m == 3 && ascii_ieq(p, "inf", 3)) || (m == 8 && ascii_ieq(p, "infinity", 8))) {
        *out = neg ? -INFINITY : INFINITY;
        return HM_F_NONFINITE;
    }
    /* After the words, a '+' is only allowed before digits ("+-1" is not a number). */
    const char *tok = plus ? p : s;
    if (plus && (p >= end || !is_digit((unsigned char)*p))) return HM_F_INVALID;
    numscan ns;
    const char *bad;
    const char *q = scan_number(tok, end, &ns, &bad);
    if (!q || q != end) return HM_F_INVALID;
    double v = num_to_double(&ns, tok, end);
    *out = v;
    return isinf(v) ? HM_F_NONFINITE : HM_F_OK;
}

int hm_decimal_places(const char *s, size_t n) {
    if (!s || n == 0) return -EINVAL;
    const char *end = s + n;
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (p >= end || !is_digit((unsigned char)*p)) return -EINVAL;
    /* value = (all digits as an integer, trailing zeros stripped) * 10^q */
    int64_t frac_len = 0, trailing_zeros = 0;
    bool any_nonzero = false, frac = false;
    for (; p < end; p++) {
        char c = *p;
        if (c == '.') {
            if (frac) return -EINVAL;
            frac = true;
            if (p + 1 >= end || !is_digit((unsigned char)p[1])) return -EINVAL;
            continue;
        }
        if (!is_digit((unsigned char)c)) break;
        if (frac) frac_len++;
        if (c == '0') {
            trailing_zeros++;
        } else {
            trailing_zeros = 0;
            any_nonzero = true;
        }
    }
    int64_t ex = 0;
    if (p < end) {
        if (*p != 'e' && *p != 'E') return -EINVAL;
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-')) {
            eneg = *p == '-';
            p++;
        }
        if (p >= end) return -EINVAL;
        for (; p < end; p++) {
            if (!is_digit((unsigned char)*p)) return -EINVAL;
            if (ex < EXP_SATURATE) ex = ex * 10 + (*p - '0');
        }
        if (eneg) ex = -ex;
    }
    if (!any_nonzero) return 0;
    int64_t q = ex - frac_len + trailing_zeros;
    if (q >= 0) return 0;
    /* Beyond any double's reach; clamp so the count stays an int. */
    return -q > 100000 ? 100000 : (int)-q;
}

/* ---- ISO-8601 ------------------------------------------------------------------------- */

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Hinnant's
 * days_from_civil, written out for the years we accept). */
static int64_t days_from_civil(int y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int64_t)era * 146097 + (int64_t)doe - 719468;
}

static bool is_leap(int y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int y, unsigned m) {
    static const unsigned char k_dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : k_dim[m - 1];
}

/* n fixed digits at s into *v; false if any is not a digit. */
static bool fixed_digits(const char *s, int n, unsigned *v) {
    unsigned r = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i])) return false;
        r = r * 10 + (unsigned)(s[i] - '0');
    }
    *v = r;
    return true;
}

int hm_parse_iso8601_ms(const char *s, size_t n, int64_t *out_ms) {
    assert(out_ms);
    unsigned y, mo, d, h, mi, sec;
    /* YYYY-MM-DDTHH:MM:SS then at least one byte of zone */
    if (!s || n < 20) return -EINVAL;
    if (!fixed_digits(s, 4, &y) || s[4] != '-' || !fixed_digits(s + 5, 2, &mo) || s[7] != '-' ||
        !fixed_digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !fixed_digits(s + 11, 2, &h) || s[13] != ':' || !fixed_digits(s + 14, 2, &mi) ||
        s[16] != ':' || !fixed_digits(s + 17, 2, &sec))
        return -EINVAL;
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > days_in_month((int)y, mo) ||
        h > 23 || mi > 59 || sec > 60)
        return -EINVAL;
    size_t i = 19;
    unsigned frac_ms = 0;
    if (s[i] == '.' || s[i] == ',') { /* ISO allows a comma; fractions past ms truncate */
        i++;
        size_t first = i;
        unsigned scale = 100;
        while (i < n && is_digit((unsigned char)s[i])) {
            frac_ms += (unsigned)(s[i] - '0') * scale;
            scale /= 10;
            i++;
        }
        if (i == first) return -EINVAL;
    }
    if (i >= n) return -EINVAL; /* no zone: ambiguous, refused */
    int64_t off_s = 0;
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        int sign = s[i] == '-' ? -1 : 1;
        unsigned oh, om;
        i++;
        if (n - i < 2 || !fixed_digits(s + i, 2, &oh)) return -EINVAL;
        i += 2;
        if (i < n && s[i] == ':') i++;
        if (n - i < 2 || !fixed_digits(s + i, 2, &om)) return -EINVAL;
        i += 2;
        if (oh > 23 || om > 59) return -EINVAL;
        off_s = sign * (int64_t)(oh * 3600 + om * 60);
    } else {
        return -EINVAL;
    }
    if (i != n) return -EINVAL;
    int64_t days = days_from_civil((int)y, mo, d);
    int64_t secs = days * 86400 + (int64_t)h * 3600 + mi * 60 + sec - off_s;
    *out_ms = secs * 1000 + frac_ms;
    return 0;
}

/* ---- fields --------------------------------------------------------------------------- */

/* Two member loops instantiate these (hm_tick_decode's and hm_tick_decode_object's): with
 * two call sites GCC would keep some out of line, so the hot ones are HOT_INLINE to keep
 * hm_tick_decode's code what it was with one. */

/* The known field named by key (raw bytes without escapes), or -1. */
static HOT_INLINE int match_key(const char *k, uint32_t n) {
#define IS(lit) (memcmp(k, lit, sizeof(lit) - 1) == 0)
    switch (n) {
        case 2:
            if (IS("to")) return HM_FIELD_TO;
            break;
        case 4:
            if (IS("side")) return HM_FIELD_SIDE;
            if (IS("type")) return HM_FIELD_TYPE;
            if (IS("from")) return HM_FIELD_FROM;
            break;
        case 5:
            if (IS("price")) return HM_FIELD_PRICE;
            if (IS("asset")) return HM_FIELD_ASSET;
            break;
        case 6:
            if (IS("symbol")) return HM_FIELD_SYMBOL;
            if (IS("volume")) return HM_FIELD_VOLUME;
            if (IS("amount")) return HM_FIELD_AMOUNT;
            break;
        case 7:
            if (IS("tx_hash")) return HM_FIELD_TX_HASH;
            break;
        case 8:
            if (IS("exchange")) return HM_FIELD_EXCHANGE;
            if (IS("trade_id")) return HM_FIELD_TRADE_ID;
            if (IS("local_ts")) return HM_FIELD_RECEIVED;
            break;
        case 9:
            if (IS("timestamp")) return HM_FIELD_TIMESTAMP;
            break;
        case 15:
            if (IS("local_timestamp")) return HM_FIELD_RECEIVED;
            break;
        case 17:
            if (IS("receipt_timestamp")) return HM_FIELD_RECEIVED;
            break;
        default:
            break;
    }
    return -1;
#undef IS
}

/* A key written with escapes ("pr\u0069ce" is "price"): decode the (already validated)
 * escapes into a small buffer and match that. Known keys are short ASCII. */
static COLD int match_escaped_key(const char *k, uint32_t n) {
    char buf[32]; /* the longest known key, "receipt_timestamp", is 17 */
    int o = unescape_name(k, n, buf, sizeof(buf));
    return o < 0 ? -1 : match_key(buf, (uint32_t)o);
}

/* price, volume, amount: a number or a string holding one. */
static HOT_INLINE hm_fstate number_field(const val *v, double *out, hm_span *text) {
    switch (v->type) {
        case V_NUMBER: {
            double x = num_to_double(&v->num, v->p, v->p + v->len);
            *text = span_of(v->p, v->len);
            *out = x;
            return HM_LIKELY(!isinf(x)) ? HM_F_OK : HM_F_NONFINITE;
        }
        case V_STRING: {
            *text = span_of(v->p, v->len);
            if (v->esc) return HM_F_INVALID;
            return hm_parse_decimal(v->p, v->len, out);
        }
        case V_NONFINITE:
            *text = span_of(v->p, v->len);
            *out = v->p[0] == 'N' ? NAN : v->p[0] == '-' ? -INFINITY : INFINITY;
            return HM_F_NONFINITE;
        case V_NULL:
            return HM_F_NULL;
        default:
            return HM_F_WRONG_TYPE;
    }
}

/* A string of 1..19 ASCII digits whose value fits int64. */
static HOT_INLINE bool all_digits_i64(const char *s, uint32_t n, uint64_t *out) {
    if (n == 0 || n > 19) return false;
    uint64_t r = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i])) return false;
        r = r * 10 + (uint64_t)(s[i] - '0');
    }
    if (r > (uint64_t)INT64_MAX) return false;
    *out = r;
    return true;
}

static HOT_INLINE hm_fstate timestamp_field(const val *v, int64_t *ms) {
    switch (v->type) {
        case V_NUMBER:
            return number_to_i64(&v->num, ms) ? HM_F_OK : HM_F_INVALID;
        case V_STRING: {
            uint64_t u;
            if (all_digits_i64(v->p, v->len, &u)) {
                *ms = (int64_t)u;
                return HM_F_OK;
            }
            if (v->esc) return HM_F_INVALID;
            return hm_parse_iso8601_ms(v->p, v->len, ms) == 0 ? HM_F_OK : HM_F_INVALID;
        }
        case V_NONFINITE:
            return HM_F_NONFINITE;
        case V_NULL:
            return HM_F_NULL;
        default:
            return HM_F_WRONG_TYPE;
    }
}

/* A capture's receive time: a number whose size gives its unit (a time since 1973 in
 * seconds is below 1e11; in ms below 1e14; in us below 1e17; else ns); anything else as
 * a timestamp (a string of ms digits, or ISO-8601). */
static hm_fstate received_field(const val *v, int64_t *ms) {
    if (v->type != V_NUMBER) return timestamp_field(v, ms);
    double x = num_to_double(&v->num, v->p, v->p + v->len);
    if (!(x >= 0) || isinf(x)) return HM_F_INVALID;
    double m = x < 1e11 ? x * 1e3 : x < 1e14 ? x : x < 1e17 ? x / 1e3 : x / 1e6;
    if (m >= 9.2e18) return HM_F_INVALID;
    *ms = (int64_t)m;
    return HM_F_OK;
}

/* symbol, exchange, asset, from, to, tx_hash: a plain, non-empty string. */
static inline hm_fstate ident_field(const val *v, hm_span *out) {
    if (HM_LIKELY(v->type == V_STRING)) {
        *out = span_of(v->p, v->len);
        return v->len == 0 || v->esc ? HM_F_INVALID : HM_F_OK;
    }
    return v->type == V_NULL ? HM_F_NULL : HM_F_WRONG_TYPE;
}

static HOT_INLINE hm_fstate trade_id_field(const val *v, hm_tick *t) {
    switch (v->type) {
        case V_NUMBER:
            t->trade_id = span_of(v->p, v->len);
            if (v->num.neg || !v->num.is_int) return HM_F_INVALID;
            /* a plain integer: mant holds it exactly when no digit was dropped */
            if (v->num.exp10 == 0 && v->num.mant <= (uint64_t)INT64_MAX) {
                t->trade_id_numeric = true;
                t->trade_id_num = v->num.mant;
            }
            return HM_F_OK;
        case V_STRING:
            t->trade_id = span_of(v->p, v->len);
            if (v->len == 0 || v->esc) return HM_F_INVALID;
            t->trade_id_numeric = all_digits_i64(v->p, v->len, &t->trade_id_num);
            return HM_F_OK;
        case V_NONFINITE:
            return HM_F_INVALID;
        case V_NULL:
            return HM_F_NULL;
        default:
            return HM_F_WRONG_TYPE;
    }
}

static HOT_INLINE hm_fstate side_field(const val *v, hm_side *side) {
    if (v->type == V_STRING) {
        if (v->len == 3 && ascii_ieq(v->p, "buy", 3)) {
            *side = HM_SIDE_BUY;
            return HM_F_OK;
        }
        if (v->len == 4 && ascii_ieq(v->p, "sell", 4)) {
            *side = HM_SIDE_SELL;
            return HM_F_OK;
        }
        return HM_F_INVALID;
    }
    return v->type == V_NULL ? HM_F_NULL : HM_F_WRONG_TYPE;
}

static HOT_INLINE hm_fstate type_field(const val *v, hm_kind *kind) {
    if (v->type == V_STRING) {
        if (v->len == 5 && memcmp(v->p, "trade", 5) == 0) {
            *kind = HM_KIND_TRADE;
            return HM_F_OK;
        }
        if (v->len == 11 && memcmp(v->p, "liquidation", 11) == 0) {
            *kind = HM_KIND_LIQUIDATION;
            return HM_F_OK;
        }
        if (v->len == 8 && memcmp(v->p, "transfer", 8) == 0) {
            *kind = HM_KIND_TRANSFER;
            return HM_F_OK;
        }
        return HM_F_INVALID;
    }
    return v->type == V_NULL ? HM_F_NULL : HM_F_WRONG_TYPE;
}

static HOT_INLINE void apply_field(dec *d, int f, const val *v) {
    hm_tick *t = d->t;
    hm_fstate *st = &t->st[f];
    switch ((hm_field)f) {
        case HM_FIELD_TIMESTAMP:
            *st = timestamp_field(v, &t->ts_ms);
            break;
        case HM_FIELD_SYMBOL:
            *st = ident_field(v, &t->symbol);
            break;
        case HM_FIELD_EXCHANGE:
            *st = ident_field(v, &t->exchange);
            break;
        case HM_FIELD_PRICE:
            *st = number_field(v, &t->price, &t->price_text);
            break;
        case HM_FIELD_VOLUME:
            *st = number_field(v, &t->volume, &t->volume_text);
            break;
        case HM_FIELD_AMOUNT:
            *st = number_field(v, &t->amount, &t->amount_text);
            break;
        case HM_FIELD_TRADE_ID:
            *st = trade_id_field(v, t);
            break;
        case HM_FIELD_SIDE:
            *st = side_field(v, &t->side);
            break;
        case HM_FIELD_TYPE:
            *st = type_field(v, &t->kind);
            break;
        case HM_FIELD_ASSET:
            *st = ident_field(v, &t->asset);
            break;
        case HM_FIELD_FROM:
            *st = ident_field(v, &t->from);
            break;
        case HM_FIELD_TO:
            *st = ident_field(v, &t->to);
            break;
        case HM_FIELD_TX_HASH:
            *st = ident_field(v, &t->tx_hash);
            break;
        case HM_FIELD_RECEIVED:
            *st = received_field(v, &t->received_ms);
            break;
        case HM_FIELD_COUNT_:
            assert(0);
            break;
    }
}

/* ---- the record ----------------------------------------------------------------------- */

/**
 * @brief The record's members, from the first byte after its '{'; each known key is
 * applied to d->t as its value is read, any other is handed to other (NULL: skipped).
 * Always inlined: hm_tick_decode's copy has other == NULL folded away, so the hook
 * costs the tick decoder nothing. @return the byte after the closing '}', or NULL.
 */
static HOT_INLINE const char *decode_members(dec *d, const char *p, dec_member_fn other) {
    const char *end = d->end;
    uint32_t seen = 0;
    val v = {0}; /* read_value fills only what the value type uses */

    p = skip_ws(p, end);
    if (p >= end) return fail_eof(d);
    if (*p == '}') return p + 1;
    for (;;) {
        if (HM_UNLIKELY(*p != '"')) return fail_expected(d, p, "'\"' to start a key");
        bool esc = false;
        const char *q = scan_string(d, p, &esc);
        if (HM_UNLIKELY(!q)) return NULL;
        const char *key = p + 1;
        uint32_t key_len = (uint32_t)(q - key);
        int f = HM_LIKELY(!esc) ? match_key(key, key_len) : match_escaped_key(key, key_len);
        d->key = key;
        d->key_len = key_len;
        if (f >= 0) {
            if (HM_UNLIKELY(seen & (UINT32_C(1) << f))) {
                /* A second receive time under another capture's name: the first counts. */
                if (f != HM_FIELD_RECEIVED)
                    return fail(d, p, "duplicate key '%s'", hm_field_name((hm_field)f));
                f = -1;
            }
            if (f >= 0) seen |= UINT32_C(1) << f;
        }
        p = q + 1;
        if (HM_LIKELY(p < end && *p == ':')) {
            p++;
        } else {
            p = skip_ws(p, end);
            if (p >= end) return fail_eof(d);
            if (*p != ':') return fail_expected(d, p, "':' after key");
            p++;
        }
        p = skip_ws(p, end);
        if (HM_UNLIKELY(p >= end)) return fail_eof(d);
        if (other && f < 0) {
            p = other(d, key, key_len, esc, p);
            if (HM_UNLIKELY(!p)) return NULL;
        } else {
            p = read_value(d, p, &v);
            if (HM_UNLIKELY(!p)) return NULL;
            if (f >= 0) apply_field(d, f, &v);
        }
        d->key = NULL;
        p = skip_ws(p, end);
        if (HM_UNLIKELY(p >= end)) return fail_eof(d);
        if (*p == ',') {
            p = skip_ws(p + 1, end);
            if (HM_UNLIKELY(p >= end)) return fail_eof(d);
            continue;
        }
        if (HM_LIKELY(*p == '}')) return p + 1;
        return fail_expected(d, p, "',' or '}' after value");
    }
}

/* The object at obj (its '{'): members, then what depends on the whole record. */
static HOT_INLINE const char *decode_object(dec *d, const char *obj, dec_member_fn other) {
    const char *p = decode_members(d, obj + 1, other);
    if (HM_UNLIKELY(!p)) return NULL;
    hm_tick *t = d->t;
    t->raw = span_of(obj, (uint32_t)(p - obj));
    t->strict_json = !d->not_strict;
    /* A transfer's "amount" is its quantity: it stands in for an absent "volume". */
    if (t->st[HM_FIELD_AMOUNT] != HM_F_ABSENT && t->st[HM_FIELD_VOLUME] == HM_F_ABSENT) {
        t->st[HM_FIELD_VOLUME] = t->st[HM_FIELD_AMOUNT];
        t->volume = t->amount;
        t->volume_text = t->amount_text;
    }
    return p;
}

const char *hm_tick_decode_object(dec *d, const char *obj, dec_member_fn other) {
    assert(d && d->t && obj < d->end && *obj == '{');
    return decode_object(d, obj, other);
}

int hm_tick_decode(const char *json, size_t len, size_t max_bytes, hm_tick *out,
                   hm_decode_err *err) {
    assert(out);
    hm_decode_err scratch;
    if (!err) err = &scratch;
    size_t limit = max_bytes ? max_bytes : HM_TICK_DEFAULT_MAX_BYTES;
    if (limit > UINT32_MAX) limit = UINT32_MAX; /* spans hold 32-bit lengths */
    if (HM_UNLIKELY(len > limit)) {             /* offset: where the limit was crossed */
        err->offset = limit;
        err->field[0] = '\0';
        snprintf(err->msg, sizeof(err->msg), "record of %zu bytes exceeds the limit of %zu", len,
                 limit);
        return -E2BIG;
    }
    assert(json || len == 0);

    memset(out, 0, sizeof(*out));
    out->strict_json = true;
    out->kind = HM_KIND_TRADE;
    if (HM_UNLIKELY(len == 0)) { /* also keeps NULL + 0 out of the pointer arithmetic */
        err->offset = 0;
        err->field[0] = '\0';
        snprintf(err->msg, sizeof(err->msg), "empty input");
        return -EINVAL;
    }

    dec d = {.base = json, .end = json + len, .err = err, .max_depth = HM_TICK_MAX_DEPTH, .t = out};
    const char *p = skip_ws(json, d.end);
    if (HM_UNLIKELY(p >= d.end)) {
        fail(&d, d.end, "empty input");
        return -EINVAL;
    }
    if (HM_UNLIKELY(*p != '{')) {
        fail_expected(&d, p, "'{'");
        return -EINVAL;
    }
    p = decode_object(&d, p, NULL);
    if (HM_UNLIKELY(!p)) return -EINVAL;
    const char *tail = skip_ws(p, d.end);
    if (HM_UNLIKELY(tail != d.end)) {
        fail(&d, tail, "trailing characters after the object at byte %zu", (size_t)(tail - json));
        return -EINVAL;
    }
    return 0;
}
