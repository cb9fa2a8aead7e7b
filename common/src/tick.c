/*
 * tick.c: the market-record JSON decoder (himari/tick.h), the hottest code in the system.
 *
 * Every record on raw_market_data passes through hm_tick_decode() once, so it is written
 * as one forward pass over the bytes: no allocation, no recursion (nested values are
 * skipped by an explicit loop bounded by HM_TICK_MAX_DEPTH), no copies (spans point into
 * the caller's buffer) and no strtod for ordinary numbers (see num_to_double()).
 *
 * It is strict about syntax (RFC 8259 plus the NaN/Infinity tokens Python emits) and
 * lenient about fields: a well-formed object always decodes and each known field gets a
 * state. It must never read a byte at or past json + len (the input is not NUL-terminated),
 * never accept a record that a strict JSON parser would reject other than for those
 * tokens, and never let one bad field make the whole record a parse error.
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
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The exact fast path in num_to_double() relies on each double operation being rounded
 * once, to nearest, in double precision (no x87 extended intermediates). */
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "tick.c needs FLT_EVAL_METHOD == 0 for exactly-rounded number conversion"
#endif

_Static_assert(HM_TICK_MAX_DEPTH <= 32, "the nesting stack is a 32-bit mask");
_Static_assert(HM_FIELD_COUNT_ <= 32, "seen keys are a 32-bit mask");

#define COLD __attribute__((cold, noinline))
/* The per-byte helpers of the hot path: GCC at -O2 keeps them out of line, which costs
 * ~15% in bench-tick-decode. */
#define HOT_INLINE inline __attribute__((always_inline))

/* ---- names ---------------------------------------------------------------------------- */

static const char *const k_field_names[HM_FIELD_COUNT_] = {
    [HM_FIELD_TIMESTAMP] = "timestamp", [HM_FIELD_SYMBOL] = "symbol",
    [HM_FIELD_EXCHANGE] = "exchange",   [HM_FIELD_PRICE] = "price",
    [HM_FIELD_VOLUME] = "volume",       [HM_FIELD_TRADE_ID] = "trade_id",
    [HM_FIELD_SIDE] = "side",           [HM_FIELD_TYPE] = "type",
    [HM_FIELD_ASSET] = "asset",         [HM_FIELD_AMOUNT] = "amount",
    [HM_FIELD_FROM] = "from",           [HM_FIELD_TO] = "to",
    [HM_FIELD_TX_HASH] = "tx_hash",
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

/* ---- numbers -------------------------------------------------------------------------- */

/* What scan_number() learnt about a JSON number token. When !many, the value is exactly
 * (neg ? -1 : 1) * mant * 10^exp10: mant keeps the first 19 significant digits (it cannot
 * overflow), and dropped digits are all zeros. many means a nonzero digit was dropped. */
typedef struct numscan {
    uint64_t mant;
    int64_t exp10;
    bool neg;
    bool is_int; /* no fraction and no exponent part */
    bool many;
} numscan;

#define MAX_MANT_DIGITS 19
/* Exponents in the text saturate here: with at most a few thousand digits kept, any
 * larger exponent over- or underflows a double all the same. */
#define EXP_SATURATE 100000000

static inline bool is_digit(unsigned char c) {
    return (unsigned)(c - '0') < 10;
}

/**
 * @brief Scan a number in JSON grammar starting at p (a '-' or a digit).
 * @return the first byte after the token, or NULL when the grammar is broken; then *bad is
 *         the offending position (== end when the input ran out mid-token).
 */
static HOT_INLINE const char *scan_number(const char *p, const char *end, numscan *ns,
                                          const char **bad) {
    uint64_t mant = 0;
    int64_t exp10 = 0;
    int ndig = 0;
    bool many = false;
    ns->neg = false;
    ns->is_int = true;
    if (p < end && *p == '-') {
        ns->neg = true;
        p++;
    }
    if (HM_UNLIKELY(p >= end || !is_digit((unsigned char)*p))) {
        *bad = p;
        return NULL;
    }
    if (*p == '0') {
        p++; /* a leading zero stands alone: "01" is not JSON */
        if (HM_UNLIKELY(p < end && is_digit((unsigned char)*p))) {
            *bad = p;
            return NULL;
        }
    } else {
        do {
            unsigned d = (unsigned)(*p - '0');
            if (HM_LIKELY(ndig < MAX_MANT_DIGITS)) {
                mant = mant * 10 + d;
                ndig++;
            } else {
                exp10++;
                many |= d != 0;
            }
            p++;
        } while (p < end && is_digit((unsigned char)*p));
    }
    if (p < end && *p == '.') {
        ns->is_int = false;
        p++;
        if (HM_UNLIKELY(p >= end || !is_digit((unsigned char)*p))) {
            *bad = p;
            return NULL;
        }
        do {
            unsigned d = (unsigned)(*p - '0');
            if (HM_LIKELY(ndig < MAX_MANT_DIGITS)) {
                mant = mant * 10 + d;
                ndig += mant != 0; /* leading zeros of "0.000123" are not significant */
                exp10--;
            } else {
                many |= d != 0;
            }
            p++;
        } while (p < end && is_digit((unsigned char)*p));
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        ns->is_int = false;
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-')) {
            eneg = *p == '-';
            p++;
        }
        if (HM_UNLIKELY(p >= end || !is_digit((unsigned char)*p))) {
            *bad = p;
            return NULL;
        }
        int64_t e = 0;
        do {
            if (e < EXP_SATURATE) e = e * 10 + (*p - '0');
            p++;
        } while (p < end && is_digit((unsigned char)*p));
        exp10 += eneg ? -e : e;
    }
    ns->mant = mant;
    ns->exp10 = exp10;
    ns->many = many;
    return p;
}

/* Powers of ten that are exact doubles (10^22 < 2^53 * 2^22: 5^22 < 2^53). */
static const double k_p10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

#define TWO_53 (UINT64_C(1) << 53)
/* Digits kept for strtod on the slow path: an exact halfway point between two doubles
 * has at most 767 significant digits, so 780 digits plus a sticky '1' standing for any
 * nonzero digits dropped after them round exactly like the full text. */
#define SLOW_DIGITS 780

/**
 * @brief The slow path: rewrite the token [s, e) (JSON number grammar, optional leading
 * '-') as "<at most 781 digits>e<exp>" in a stack buffer and let strtod round it.
 */
static COLD double slow_strtod(const char *s, const char *e) {
    char buf[SLOW_DIGITS + 32];
    size_t k = 0;
    bool neg = false;
    if (s < e && *s == '-') {
        neg = true;
        s++;
    }
    int64_t exp_adj = 0;
    size_t kept = 0;
    bool sticky = false, started = false, frac = false;
    for (; s < e; s++) {
        char c = *s;
        if (c == '.') {
            frac = true;
            continue;
        }
        if (!is_digit((unsigned char)c)) break; /* 'e' or 'E' */
        if (!started && c == '0') {
            if (frac) exp_adj--;
            continue;
        }
        started = true;
        if (kept < SLOW_DIGITS) {
            buf[k++] = c;
            kept++;
            if (frac) exp_adj--;
        } else {
            sticky |= c != '0';
            if (!frac) exp_adj++;
        }
    }
    if (!started) return neg ? -0.0 : 0.0;
    if (sticky) {
        buf[k++] = '1';
        exp_adj--;
    }
    int64_t ex = 0;
    if (s < e) { /* exponent part */
        s++;
        bool eneg = false;
        if (*s == '+' || *s == '-') {
            eneg = *s == '-';
            s++;
        }
        for (; s < e; s++)
            if (ex < EXP_SATURATE) ex = ex * 10 + (*s - '0');
        if (eneg) ex = -ex;
    }
    ex += exp_adj;
    if (ex > 4 * (int64_t)EXP_SATURATE) ex = 4 * (int64_t)EXP_SATURATE;
    if (ex < -4 * (int64_t)EXP_SATURATE) ex = -4 * (int64_t)EXP_SATURATE;
    snprintf(buf + k, sizeof(buf) - k, "e%lld", (long long)ex);
    double v = strtod(buf, NULL);
    return neg ? -v : v;
}

/**
 * @brief The value of a scanned number, bit-for-bit what strtod gives for its text.
 * Fast path (Clinger): an integer mantissa below 2^53 times or divided by an exact power
 * of ten is one correctly rounded IEEE operation on exact operands.
 */
static inline double num_to_double(const numscan *ns, const char *s, const char *e) {
    if (HM_LIKELY(!ns->many)) {
        uint64_t m = ns->mant;
        int64_t x = ns->exp10;
        if (m == 0) return ns->neg ? -0.0 : 0.0;
        if (HM_LIKELY(m <= TWO_53)) {
            double v;
            if (x >= 0 && x <= 22) {
                v = (double)m * k_p10[x];
                return ns->neg ? -v : v;
            }
            if (x < 0 && x >= -22) {
                v = (double)m / k_p10[-x];
                return ns->neg ? -v : v;
            }
            /* 12e30: move zeros into the mantissa while it stays exact. */
            while (x > 22 && x <= 22 + 16 && m <= TWO_53 / 10) {
                m *= 10;
                x--;
            }
            if (x >= 0 && x <= 22) {
                v = (double)m * k_p10[x];
                return ns->neg ? -v : v;
            }
        }
    }
    return slow_strtod(s, e);
}

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

/* ---- the scanner ---------------------------------------------------------------------- */

typedef struct dec {
    const char *base; /* json */
    const char *end;  /* json + len: never dereferenced */
    hm_decode_err *err;
    hm_tick *t;
    const char *key; /* the key whose value is being read (raw bytes), NULL when none */
    uint32_t key_len;
    double amount; /* "amount" waits here until we know whether "volume" was given */
    hm_span amount_text;
} dec;

/* Byte classes inside a string. */
enum { SC_PLAIN = 0, SC_QUOTE, SC_BSLASH, SC_CTRL, SC_HIGH };
static const unsigned char k_str_class[256] = {
    [0 ... 0x1f] = SC_CTRL,
    ['"'] = SC_QUOTE,
    ['\\'] = SC_BSLASH,
    [0x80 ... 0xff] = SC_HIGH,
};

static COLD void describe_at(const dec *d, const char *at, char out[24]) {
    if (at >= d->end) {
        snprintf(out, 24, "end of input");
        return;
    }
    unsigned char c = (unsigned char)*at;
    if (c >= 0x20 && c < 0x7f)
        snprintf(out, 24, "'%c'", c);
    else
        snprintf(out, 24, "byte 0x%02x", c);
}

/* Fill the error and return NULL, for `return fail(...)`. The field is the current key:
 * set from the moment a key has been read until its value ends, so a missing ':' or an
 * error deep inside an unknown nested value names the top-level key it belongs to. */
static COLD HM_PRINTF(3, 4) const char *fail(dec *d, const char *at, const char *fmt, ...) {
    hm_decode_err *e = d->err;
    e->offset = (size_t)(at - d->base);
    e->field[0] = '\0';
    if (d->key) {
        size_t n = d->key_len;
        if (n > sizeof(e->field) - 1) {
            n = sizeof(e->field) - 1;
            /* do not cut a UTF-8 sequence in half */
            while (n > 0 && ((unsigned char)d->key[n] & 0xC0) == 0x80)
                n--;
        }
        memcpy(e->field, d->key, n);
        e->field[n] = '\0';
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return NULL;
}

static COLD const char *fail_eof(dec *d) {
    return fail(d, d->end, "unexpected end of input at byte %zu", (size_t)(d->end - d->base));
}

static COLD const char *fail_expected(dec *d, const char *at, const char *what) {
    char found[24];
    describe_at(d, at, found);
    return fail(d, at, "expected %s at byte %zu, found %s", what, (size_t)(at - d->base), found);
}

static inline const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/**
 * @brief Length of the well-formed UTF-8 sequence at p (lead byte >= 0x80): 0 when it is
 * invalid (overlong, surrogate, > U+10FFFF, bad continuation), -1 when the input ends
 * inside an otherwise valid prefix.
 */
static inline int utf8_seq(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0];
    size_t avail = (size_t)(end - p);
    unsigned lo = 0x80, hi = 0xBF;
    int len;
    if (c < 0xC2) return 0; /* stray continuation, or C0/C1 (overlong) */
    if (c < 0xE0) {
        len = 2;
    } else if (c < 0xF0) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* U+D800..U+DFFF */
    } else if (c < 0xF5) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* > U+10FFFF */
    } else {
        return 0;
    }
    if (avail < 2) return -1;
    if (p[1] < lo || p[1] > hi) return 0;
    for (int i = 2; i < len; i++) {
        if ((size_t)i >= avail) return -1;
        if ((p[i] & 0xC0) != 0x80) return 0;
    }
    return len;
}

static inline int hex_val(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

#define ONES  UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* A mask whose lowest set bit marks the first byte of v (little-endian) that is '"', '\\',
 * below 0x20 or above 0x7f. Higher bits may be false positives (borrows); the lowest is
 * exact because no borrow reaches the first special byte from below. */
static inline uint64_t swar_special(uint64_t v) {
    uint64_t q = v ^ (ONES * '"');
    uint64_t b = v ^ (ONES * '\\');
    uint64_t zq = (q - ONES) & ~q;
    uint64_t zb = (b - ONES) & ~b;
    uint64_t lt = (v - ONES * 0x20) & ~v;
    return (zq | zb | lt | v) & HIGHS;
}

static COLD const char *fail_unterminated(dec *d, const char *open) {
    return fail(d, d->end,
                "unterminated string starting at byte %zu: unexpected end of input at byte %zu",
                (size_t)(open - d->base), (size_t)(d->end - d->base));
}

/* Check the escape at p (a backslash); return the byte after it or NULL. */
static COLD const char *scan_escape(dec *d, const char *p, const char *open) {
    const char *end = d->end;
    if (end - p < 2) return fail_unterminated(d, open);
    switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            return p + 2;
        case 'u':
            break;
        default: {
            char found[24];
            describe_at(d, p + 1, found);
            return fail(d, p, "invalid escape at byte %zu: backslash followed by %s",
                        (size_t)(p - d->base), found);
        }
    }
    unsigned cp = 0;
    for (int i = 2; i < 6; i++) {
        if (p + i >= end) return fail_unterminated(d, open);
        int h = hex_val((unsigned char)p[i]);
        if (h < 0)
            return fail(d, p, "invalid \\u escape at byte %zu: expected 4 hex digits",
                        (size_t)(p - d->base));
        cp = cp << 4 | (unsigned)h;
    }
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return fail(d, p, "unpaired surrogate escape \\u%04x at byte %zu", cp,
                    (size_t)(p - d->base));
    if (cp < 0xD800 || cp > 0xDBFF) return p + 6;
    /* A high surrogate must be followed by an escaped low one. */
    const char *q = p + 6;
    unsigned lo = 0;
    for (int i = 0; i < 6; i++) {
        if (q + i >= end) return fail_unterminated(d, open);
        int h = i >= 2 ? hex_val((unsigned char)q[i]) : 0;
        if ((i == 0 && q[i] != '\\') || (i == 1 && q[i] != 'u') || h < 0) {
            return fail(d, p, "unpaired surrogate escape \\u%04x at byte %zu", cp,
                        (size_t)(p - d->base));
        }
        if (i >= 2) lo = lo << 4 | (unsigned)h;
    }
    if (lo < 0xDC00 || lo > 0xDFFF)
        return fail(d, p, "unpaired surrogate escape \\u%04x at byte %zu", cp,
                    (size_t)(p - d->base));
    return q + 6;
}

/**
 * @brief Scan a string whose opening quote is at open; validate escapes, control
 * characters and UTF-8. @return the closing quote, or NULL (error set).
 */
static HOT_INLINE const char *scan_string(dec *d, const char *open, bool *had_esc) {
    const char *p = open + 1;
    const char *end = d->end;
    for (;;) {
        while (end - p >= 8) {
            uint64_t v;
            memcpy(&v, p, 8);
            uint64_t m = swar_special(v);
            if (m) {
                p += __builtin_ctzll(m) >> 3;
                goto special;
            }
            p += 8;
        }
        while (p < end && k_str_class[(unsigned char)*p] == SC_PLAIN)
            p++;
        if (HM_UNLIKELY(p >= end)) return fail_unterminated(d, open);
    special:
        switch (k_str_class[(unsigned char)*p]) {
            case SC_QUOTE:
                return p;
            case SC_BSLASH:
                *had_esc = true;
                p = scan_escape(d, p, open);
                if (!p) return NULL;
                break;
            case SC_HIGH: {
                int n = utf8_seq((const unsigned char *)p, (const unsigned char *)end);
                if (HM_UNLIKELY(n <= 0)) {
                    if (n < 0) return fail_unterminated(d, open);
                    return fail(d, p, "invalid UTF-8 at byte %zu", (size_t)(p - d->base));
                }
                p += n;
                break;
            }
            case SC_CTRL:
                return fail(d, p, "control character 0x%02x in string at byte %zu",
                            (unsigned char)*p, (size_t)(p - d->base));
            default:
                /* the SWAR mask and the table agree on what is special */
                assert(0);
                p++;
                break;
        }
    }
}

/* What a value turned out to be. */
typedef enum vtype {
    V_STRING,
    V_NUMBER,
    V_TRUE,
    V_FALSE,
    V_NULL,
    V_NONFINITE, /* NaN, Infinity, -Infinity tokens */
    V_OBJECT,
    V_ARRAY,
} vtype;

typedef struct val {
    vtype type;
    bool esc;      /* V_STRING: it contains a backslash escape */
    const char *p; /* V_STRING: contents; V_NUMBER, V_NONFINITE: the token */
    uint32_t len;
    numscan num; /* V_NUMBER */
} val;

static COLD const char *fail_literal(dec *d, const char *p, const char *lit, size_t n) {
    size_t avail = (size_t)(d->end - p);
    if (avail < n && memcmp(p, lit, avail) == 0) return fail_eof(d);
    return fail(d, p, "invalid literal at byte %zu (expected %s)", (size_t)(p - d->base), lit);
}

/* The literal lit (n bytes) at p, or an error. */
static inline const char *expect_literal(dec *d, const char *p, const char *lit, size_t n) {
    if (HM_LIKELY((size_t)(d->end - p) >= n && memcmp(p, lit, n) == 0)) return p + n;
    return fail_literal(d, p, lit, n);
}

static COLD const char *fail_number(dec *d, const char *bad) {
    if (bad >= d->end) return fail_eof(d);
    char found[24];
    describe_at(d, bad, found);
    return fail(d, bad, "invalid number at byte %zu: unexpected %s", (size_t)(bad - d->base),
                found);
}

static const char *skip_container(dec *d, const char *p);

/**
 * @brief Read one value starting at p (< end, not whitespace) into v. Containers are
 * skipped whole (validated, bounded by the depth limit). @return the byte after it.
 */
static HOT_INLINE const char *read_value(dec *d, const char *p, val *v) {
    const char *end = d->end;
    const char *q;
    switch (*p) {
        case '"':
            v->type = V_STRING;
            v->esc = false;
            q = scan_string(d, p, &v->esc);
            if (!q) return NULL;
            v->p = p + 1;
            v->len = (uint32_t)(q - (p + 1));
            return q + 1;
        case '-':
            if (p + 1 < end && p[1] == 'I') {
                q = expect_literal(d, p, "-Infinity", 9);
                goto nonfinite;
            }
            /* fall through */
        case '0':
        case '1':
        case '2':
        case '3':
        case '4':
        case '5':
        case '6':
        case '7':
        case '8':
        case '9': {
            const char *bad;
            q = scan_number(p, end, &v->num, &bad);
            if (HM_UNLIKELY(!q)) return fail_number(d, bad);
            v->type = V_NUMBER;
            v->p = p;
            v->len = (uint32_t)(q - p);
            return q;
        }
        case 't':
            v->type = V_TRUE;
            return expect_literal(d, p, "true", 4);
        case 'f':
            v->type = V_FALSE;
            return expect_literal(d, p, "false", 5);
        case 'n':
            v->type = V_NULL;
            return expect_literal(d, p, "null", 4);
        case 'N':
            q = expect_literal(d, p, "NaN", 3);
            goto nonfinite;
        case 'I':
            q = expect_literal(d, p, "Infinity", 8);
            goto nonfinite;
        case '{':
            v->type = V_OBJECT;
            return skip_container(d, p);
        case '[':
            v->type = V_ARRAY;
            return skip_container(d, p);
        default:
            return fail_expected(d, p, "a value");
    }
nonfinite:
    if (!q) return NULL;
    d->t->strict_json = false;
    v->type = V_NONFINITE;
    v->p = p;
    v->len = (uint32_t)(q - p);
    return q;
}

/**
 * @brief Skip the object or array at p (its '{' or '['), nested to the depth limit,
 * without recursion: bit i of is_obj says whether open level i is an object.
 */
static COLD const char *skip_container(dec *d, const char *p) {
    const char *end = d->end;
    uint32_t is_obj = 0;
    int lvl = 0; /* containers open inside the record (which is level 1) */
    val v = {0}; /* read_value fills only what the value type uses */
open:
    if (1 + lvl + 1 > HM_TICK_MAX_DEPTH)
        return fail(d, p, "nesting deeper than %d levels at byte %zu", HM_TICK_MAX_DEPTH,
                    (size_t)(p - d->base));
    if (*p == '{')
        is_obj |= UINT32_C(1) << lvl;
    else
        is_obj &= ~(UINT32_C(1) << lvl);
    lvl++;
    p = skip_ws(p + 1, end);
    if (p >= end) return fail_eof(d);
    if (*p == ((is_obj >> (lvl - 1) & 1) ? '}' : ']')) {
        p++;
        goto closed;
    }
member:
    if (is_obj >> (lvl - 1) & 1) {
        if (*p != '"') return fail_expected(d, p, "'\"' to start a key");
        bool esc = false;
        const char *q = scan_string(d, p, &esc);
        if (!q) return NULL;
        p = skip_ws(q + 1, end);
        if (p >= end) return fail_eof(d);
        if (*p != ':') return fail_expected(d, p, "':' after key");
        p = skip_ws(p + 1, end);
        if (p >= end) return fail_eof(d);
    }
    if (*p == '{' || *p == '[') goto open;
    p = read_value(d, p, &v);
    if (!p) return NULL;
after:
    p = skip_ws(p, end);
    if (p >= end) return fail_eof(d);
    if (*p == ',') {
        p = skip_ws(p + 1, end);
        if (p >= end) return fail_eof(d);
        goto member;
    }
    if (is_obj >> (lvl - 1) & 1) {
        if (*p != '}') return fail_expected(d, p, "',' or '}' after value");
    } else {
        if (*p != ']') return fail_expected(d, p, "',' or ']' after value");
    }
    p++;
closed:
    lvl--;
    if (lvl == 0) return p;
    goto after;
}

/* ---- fields --------------------------------------------------------------------------- */

static inline hm_span span_of(const char *p, uint32_t len) {
    return (hm_span){p, len};
}

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
            break;
        case 9:
            if (IS("timestamp")) return HM_FIELD_TIMESTAMP;
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
    char buf[16];
    uint32_t o = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (o >= sizeof(buf)) return -1;
        char c = k[i];
        if (c != '\\') {
            buf[o++] = c;
            continue;
        }
        char e = k[++i];
        switch (e) {
            case 'u': {
                unsigned cp = 0;
                for (int j = 1; j <= 4; j++)
                    cp = cp << 4 | (unsigned)hex_val((unsigned char)k[i + (uint32_t)j]);
                i += 4;
                if (cp >= 0x80) return -1; /* no known key has non-ASCII */
                buf[o++] = (char)cp;
                break;
            }
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                return -1; /* control characters: never a known key */
            default:
                buf[o++] = e; /* '"', '\\', '/' */
                break;
        }
    }
    return match_key(buf, o);
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
static bool all_digits_i64(const char *s, uint32_t n, uint64_t *out) {
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

/* An exactly-integral JSON number that fits int64 (1.7e12 yes, 1.5 or 1e19 no). */
static bool number_to_i64(const numscan *ns, int64_t *out) {
    if (ns->many) return false; /* > 19 significant digits: beyond int64 or fractional */
    uint64_t m = ns->mant;
    int64_t x = ns->exp10;
    if (m == 0) {
        *out = 0;
        return true;
    }
    while (x < 0 && m % 10 == 0) {
        m /= 10;
        x++;
    }
    if (x < 0) return false;
    for (; x > 0; x--) {
        if (m > UINT64_MAX / 10) return false;
        m *= 10;
    }
    if (ns->neg) {
        if (m > (uint64_t)INT64_MAX + 1) return false;
        *out = m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m;
    } else {
        if (m > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)m;
    }
    return true;
}

static hm_fstate timestamp_field(const val *v, int64_t *ms) {
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

/* symbol, exchange, asset, from, to, tx_hash: a plain, non-empty string. */
static inline hm_fstate ident_field(const val *v, hm_span *out) {
    if (HM_LIKELY(v->type == V_STRING)) {
        *out = span_of(v->p, v->len);
        return v->len == 0 || v->esc ? HM_F_INVALID : HM_F_OK;
    }
    return v->type == V_NULL ? HM_F_NULL : HM_F_WRONG_TYPE;
}

static hm_fstate trade_id_field(const val *v, hm_tick *t) {
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

static hm_fstate side_field(const val *v, hm_side *side) {
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

static hm_fstate type_field(const val *v, hm_kind *kind) {
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

static inline void apply_field(dec *d, int f, const val *v) {
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
            *st = number_field(v, &d->amount, &d->amount_text);
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
        case HM_FIELD_COUNT_:
            assert(0);
            break;
    }
}

/* ---- the record ----------------------------------------------------------------------- */

/**
 * @brief The record's members, from the first byte after its '{'; each known key is
 * applied to d->t as its value is read. @return the byte after the closing '}', or NULL.
 */
static HOT_INLINE const char *decode_members(dec *d, const char *p) {
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
            if (HM_UNLIKELY(seen & (UINT32_C(1) << f)))
                return fail(d, p, "duplicate key '%s'", hm_field_name((hm_field)f));
            seen |= UINT32_C(1) << f;
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
        p = read_value(d, p, &v);
        if (HM_UNLIKELY(!p)) return NULL;
        if (f >= 0) apply_field(d, f, &v);
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

    dec d = {.base = json, .end = json + len, .err = err, .t = out};
    const char *p = skip_ws(json, d.end);
    if (HM_UNLIKELY(p >= d.end)) {
        fail(&d, d.end, "empty input");
        return -EINVAL;
    }
    if (HM_UNLIKELY(*p != '{')) {
        fail_expected(&d, p, "'{'");
        return -EINVAL;
    }
    const char *obj = p;
    p = decode_members(&d, p + 1);
    if (HM_UNLIKELY(!p)) return -EINVAL;
    out->raw = span_of(obj, (uint32_t)(p - obj));
    const char *tail = skip_ws(p, d.end);
    if (HM_UNLIKELY(tail != d.end)) {
        fail(&d, tail, "trailing characters after the object at byte %zu", (size_t)(tail - json));
        return -EINVAL;
    }
    /* A transfer's "amount" is its quantity: it stands in for an absent "volume". */
    if (out->st[HM_FIELD_AMOUNT] != HM_F_ABSENT && out->st[HM_FIELD_VOLUME] == HM_F_ABSENT) {
        out->st[HM_FIELD_VOLUME] = out->st[HM_FIELD_AMOUNT];
        out->volume = d.amount;
        out->volume_text = d.amount_text;
    }
    return 0;
}
