/*
 * json_scan.h: the JSON scanner the record decoders share (internal to common/src: only
 * tick.c and quality.c include it; nothing here is API).
 *
 * One forward pass over bytes that are not NUL-terminated: numbers (scan_number and an
 * exactly rounded num_to_double), strings (escapes, control characters and UTF-8 checked,
 * eight bytes at a time), literals, and containers skipped whole by an explicit loop
 * bounded by dec.max_depth (no recursion). Errors fill an hm_decode_err naming the byte
 * offset, the key being read and the reason.
 *
 * Everything is static inline so each decoder gets its own copy, inlined into its member
 * loop: the per-byte helpers are HOT_INLINE because an out-of-line call costs ~15% in
 * bench-tick-decode. It must never read at or past dec.end, allocate, or accept input a
 * strict JSON parser would refuse without saying so: the NaN/Infinity tokens Python emits
 * (which a decoder may refuse: dec.refuse_nonfinite) and number tokens that are RFC 8259
 * grammar but out of range (number_out_of_range()) are read and set dec.not_strict.
 *
 * The tick's member loop lives in tick.c; hm_tick_decode_object() (end of this file)
 * runs it for another decoder and hands it the keys a tick does not know.
 */
#ifndef HIMARI_JSON_SCAN_H
#define HIMARI_JSON_SCAN_H

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/tick.h"

/* The exact fast path in num_to_double() relies on each double operation being rounded
 * once, to nearest, in double precision (no x87 extended intermediates). */
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "json_scan.h needs FLT_EVAL_METHOD == 0 for exactly-rounded number conversion"
#endif

/* Out of line and off the hot path; "unused" because each decoder uses only some of them
 * (a static function in a header is compiled into every file that includes it). */
#define COLD __attribute__((cold, noinline, unused))
/* The per-byte helpers of the hot path: GCC at -O2 keeps them out of line, which costs
 * ~15% in bench-tick-decode. */
#define HOT_INLINE inline __attribute__((always_inline))

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

/* An exactly-integral JSON number that fits int64 (1.7e12 yes, 1.5 or 1e19 no). */
static inline bool number_to_i64(const numscan *ns, int64_t *out) {
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

/* ---- numbers that strict parsers refuse -------------------------------------------------- */

/*
 * A number token is out of range, and the record holding it (anywhere: a known field, an
 * unknown one, deep inside an array) is not strict JSON, when any of these holds. Each
 * rule is there because a common parser refuses such a token, or reads another number
 * than the one written:
 *   1. an integer (no fraction, no exponent) outside int64, [-2^63, 2^63-1]
 *      (9223372036854775808, a 40-digit id): jansson refuses it ("too big integer"),
 *      Python's json beyond 4300 digits;
 *   2. a value that overflows a double, rounding to +-infinity (1e999, -1e400, 400 digits
 *      with a fraction): jansson ("real number overflow"), Go and RapidJSON refuse it,
 *      Python reads inf;
 *   3. a nonzero value that underflows to zero (1e-999): a double reader gets 0, not the
 *      number written; strtod reports ERANGE and PostgreSQL's float8 calls it out of
 *      range (a subnormal such as 5e-324 is a double, and stays in range);
 *   4. an exponent above +308, or more than 308 digits before the point, whatever the
 *      rest (0e400, 1<400 digits>e-300): RapidJSON refuses both ("number too big");
 *   5. more than 16383 digits after the point once the exponent has moved it (digits
 *      after '.' minus the exponent: 0e-16384, 1.<16383 zeros>1): PostgreSQL's numeric,
 *      and so jsonb, refuses it ("value overflows numeric format").
 * Ordinary numbers pay two compares (number_check_range()); the exact test
 * (number_out_of_range()) runs only for long tokens and extreme exponents.
 */
#define STRICT_MAX_EXP   308   /* rule 4, the exponent and the digits before the point */
#define STRICT_MAX_SCALE 16383 /* rule 5: PostgreSQL's NUMERIC_DSCALE_MAX */
/* The quick filter: a token shorter than SAFE_LEN bytes whose exp10 (numscan) is within
 * +-SAFE_EXP10 breaks no rule. An integer has at most 18 digits. Any other token keeps all
 * its digits (exp10 is exact) and has at most 16 after the point, so its written exponent
 * is exp10 plus at most 16 (within [-270, 286]), its scale below 300, and its value zero
 * or within [1e-270, 1e289]. */
#define SAFE_LEN   19
#define SAFE_EXP10 270

/**
 * @brief The exact test of the rules above for the token [s, e) (JSON number grammar) that
 * scan_number() read into ns. @return true when it is out of range.
 */
static COLD bool number_out_of_range(const numscan *ns, const char *s, const char *e) {
    if (ns->is_int) /* rule 1: more than 19 digits, or 19 beyond the limit */
        return ns->exp10 != 0 || ns->mant > (uint64_t)INT64_MAX + ns->neg;
    const char *p = s + (*s == '-');
    const char *int_part = p;
    while (p < e && is_digit((unsigned char)*p))
        p++;
    if (p - int_part > STRICT_MAX_EXP) return true; /* rule 4 */
    int64_t frac_digits = 0;
    if (p < e && *p == '.') {
        const char *f = ++p;
        while (p < e && is_digit((unsigned char)*p))
            p++;
        frac_digits = p - f;
    }
    int64_t ex = 0;
    if (p < e) { /* 'e' or 'E', then an optional sign and digits */
        p++;
        bool eneg = *p == '-';
        if (*p == '+' || *p == '-') p++;
        for (; p < e; p++)
            if (ex < EXP_SATURATE) ex = ex * 10 + (*p - '0');
        if (eneg) ex = -ex;
    }
    if (ex > STRICT_MAX_EXP || frac_digits - ex > STRICT_MAX_SCALE) return true; /* rules 4, 5 */
    double v = num_to_double(ns, s, e);
    return isinf(v) || (v == 0.0 && ns->mant != 0); /* rules 2, 3 (mant: a nonzero digit) */
}

/* Whether the token of len bytes may be out of range (number_out_of_range() decides):
 * two compares, one branch taken only by long tokens and extreme exponents. */
static HOT_INLINE bool number_check_range(const numscan *ns, uint32_t len) {
    return len >= SAFE_LEN || (uint64_t)(ns->exp10 + SAFE_EXP10) > 2 * SAFE_EXP10;
}

/* ---- the scanner ---------------------------------------------------------------------- */

/**
 * The state of one decode. The scanner uses base..err, key, max_depth, refuse_nonfinite
 * and not_strict; t belongs to the tick's member loop (tick.c).
 * A decoder with more state of its own embeds a dec as its first member and casts back
 * in its member hook (quality.c).
 */
typedef struct dec {
    const char *base; /* json */
    const char *end;  /* json + len: never dereferenced */
    hm_decode_err *err;
    const char *key; /* the key whose value is being read (raw bytes), NULL when none */
    uint32_t key_len;
    int max_depth;         /* nesting limit; the outermost object is level 1 */
    bool refuse_nonfinite; /* NaN/Infinity tokens are a syntax error */
    bool not_strict;       /* a NaN/Infinity token or an out-of-range number was read */

    hm_tick *t; /* the tick the member loop fills */
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

static COLD const char *skip_container(dec *d, const char *p, int outer);

static COLD const char *fail_nonfinite(dec *d, const char *at) {
    return fail(d, at, "NaN/Infinity token at byte %zu is not JSON", (size_t)(at - d->base));
}

/**
 * @brief Read one value starting at p (< end, not whitespace) into v. Containers are
 * skipped whole (validated, bounded by the depth limit, as members of the outermost
 * object). @return the byte after it.
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
            if (HM_UNLIKELY(number_check_range(&v->num, v->len)))
                d->not_strict |= number_out_of_range(&v->num, p, q);
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
            return skip_container(d, p, 1);
        case '[':
            v->type = V_ARRAY;
            return skip_container(d, p, 1);
        default:
            return fail_expected(d, p, "a value");
    }
nonfinite:
    if (!q) return NULL;
    if (HM_UNLIKELY(d->refuse_nonfinite)) return fail_nonfinite(d, p);
    d->not_strict = true;
    v->type = V_NONFINITE;
    v->p = p;
    v->len = (uint32_t)(q - p);
    return q;
}

/**
 * @brief Skip the object or array at p (its '{' or '['), nested to d->max_depth,
 * without recursion: bit i of is_obj says whether open level i is an object.
 * outer: the levels already open around it (1 for a member of the record).
 */
static COLD const char *skip_container(dec *d, const char *p, int outer) {
    const char *end = d->end;
    uint32_t is_obj = 0;
    int lvl = 0; /* containers open inside the outer ones */
    val v = {0}; /* read_value fills only what the value type uses */
open:
    if (outer + lvl + 1 > d->max_depth)
        return fail(d, p, "nesting deeper than %d levels at byte %zu", d->max_depth,
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

/**
 * @brief Decode the (already validated) escapes of a short string's raw bytes k[0..n)
 * into buf (cap bytes), to match a key or a name written with escapes ("pr\u0069ce" is
 * "price"). @return the decoded length, or -1 when it does not fit or holds a non-ASCII
 * or control character (never part of a name a decoder matches).
 */
static COLD int unescape_name(const char *k, uint32_t n, char *buf, uint32_t cap) {
    uint32_t o = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (o >= cap) return -1;
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
                if (cp >= 0x80 || cp < 0x20) return -1;
                buf[o++] = (char)cp;
                break;
            }
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                return -1; /* control characters */
            default:
                buf[o++] = e; /* '"', '\\', '/' */
                break;
        }
    }
    return (int)o;
}

static inline hm_span span_of(const char *p, uint32_t len) {
    return (hm_span){p, len};
}

/* ---- the tick's member loop, for decoders of records that carry a tick's fields -------- */

/**
 * A member whose key the tick does not know: key[0..key_len) are its raw bytes (esc: they
 * hold escapes), p its value's first byte (< end, not whitespace). The hook reads the
 * value and returns the byte after it, or NULL with the error set (fail()).
 */
typedef const char *(*dec_member_fn)(dec *d, const char *key, uint32_t key_len, bool esc,
                                     const char *p);

/**
 * @brief Decode the object at obj (its '{') into d->t with the tick's field semantics
 * (hm_tick_decode's), handing members it does not know to other (NULL: skip them).
 * d->t must be zeroed with kind HM_KIND_TRADE; sets d->t->raw to the object and
 * d->t->strict_json from what was read. Trailing bytes are the caller's to check.
 * @return the byte after the '}', or NULL (error set).
 */
const char *hm_tick_decode_object(dec *d, const char *obj, dec_member_fn other);

#endif
