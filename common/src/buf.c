/*
 * buf.c: the growable byte buffer and the JSON writer every service's output
 * goes through (quality records, log lines, /metrics, /status).
 *
 * The integer and string writers sit on the per-record hot path (~1M records/s),
 * so they avoid printf and copy plain-ASCII runs with one memcpy. Everything
 * written is valid JSON: invalid UTF-8 becomes U+FFFD, non-finite doubles
 * become null. Nothing here may block, keep state between calls, or fail on
 * bad input: the only failure is out-of-memory, which aborts via hm_xrealloc.
 *
 * Doubles go through snprintf/strtod, which honour LC_NUMERIC; services never
 * call setlocale(), so the "C" locale's '.' decimal point is what we get.
 */
#include "himari/buf.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* The smallest allocation, so short-lived buffers do not realloc 1, 2, 4, ... */
#define HM_BUF_MIN_CAP 64

void hm_buf_reserve(hm_buf *b, size_t extra) {
    assert(b->len <= b->cap);
    if (extra > SIZE_MAX - b->len - 1) hm_panic("hm_buf: size overflow (%zu + %zu)", b->len, extra);
    size_t need = b->len + extra + 1;
    if (b->data && need <= b->cap) return;
    /* Doubling keeps appends amortised O(1); `need` wins for one huge append. */
    size_t cap = b->cap ? b->cap : HM_BUF_MIN_CAP;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    b->data = hm_xrealloc(b->data, cap);
    b->cap = cap;
    b->data[b->len] = '\0';
}

void hm_buf_free(hm_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void hm_buf_printf(hm_buf *b, const char *fmt, ...) {
    va_list ap;
    hm_buf_reserve(b, 0);
    size_t room = b->cap - b->len;
    va_start(ap, fmt);
    int n = vsnprintf(b->data + b->len, room, fmt, ap);
    va_end(ap);
    if (n < 0) hm_panic("hm_buf_printf: bad format \"%s\"", fmt);
    if ((size_t)n >= room) {
        /* Did not fit: grow to the exact size and format again. */
        hm_buf_reserve(b, (size_t)n);
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
    assert(b->data[b->len] == '\0');
}

/* "00".."99": two digits per division halves the divides of the naive loop. */
static const char digit_pairs[201] = "00010203040506070809"
                                     "10111213141516171819"
                                     "20212223242526272829"
                                     "30313233343536373839"
                                     "40414243444546474849"
                                     "50515253545556575859"
                                     "60616263646566676869"
                                     "70717273747576777879"
                                     "80818283848586878889"
                                     "90919293949596979899";

/* Writes v's digits ending just before end; returns the first digit's address. */
static char *u64_digits(char *end, uint64_t v) {
    char *p = end;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        p -= 2;
        p[0] = digit_pairs[2 * r];
        p[1] = digit_pairs[2 * r + 1];
    }
    if (v >= 10) {
        p -= 2;
        p[0] = digit_pairs[2 * v];
        p[1] = digit_pairs[2 * v + 1];
    } else {
        *--p = (char)('0' + v);
    }
    return p;
}

void hm_buf_u64(hm_buf *b, uint64_t v) {
    char tmp[20]; /* UINT64_MAX has 20 digits */
    char *p = u64_digits(tmp + sizeof(tmp), v);
    hm_buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

void hm_buf_i64(hm_buf *b, int64_t v) {
    char tmp[21]; /* sign + 19 digits */
    /* Negate in unsigned arithmetic so INT64_MIN does not overflow. */
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char *p = u64_digits(tmp + sizeof(tmp), mag);
    if (v < 0) *--p = '-';
    hm_buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* ---- UTF-8 --------------------------------------------------------------- */

/*
 * Length of the UTF-8 sequence at s[0..n) (n >= 1). On success *ok is true.
 * On failure the length is that of the "maximal subpart" (Unicode 3.9, table
 * 3-8 practice): the longest prefix that could still have started a valid
 * sequence, at least 1 byte. So a truncated "E2 82" followed by 'A' is one bad
 * sequence and 'A' survives, while each stray continuation byte is its own.
 */
static size_t utf8_seq(const unsigned char *s, size_t n, bool *ok) {
    unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* range allowed for the second byte */
    *ok = false;
    if (c < 0x80) {
        *ok = true;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0; /* overlong below U+0800 */
        if (c == 0xED) hi = 0x9F; /* surrogates U+D800..U+DFFF */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90; /* overlong below U+10000 */
        if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else {
        return 1; /* continuation byte, C0/C1 overlong lead, or F5..FF */
    }
    if (n < 2 || s[1] < lo || s[1] > hi) return 1;
    for (size_t i = 2; i < len; i++) {
        if (i >= n || (s[i] & 0xC0) != 0x80) return i;
    }
    *ok = true;
    return len;
}

bool hm_utf8_valid(const char *s, size_t n, size_t *bad_at) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        bool ok;
        size_t len = utf8_seq(u + i, n - i, &ok);
        if (!ok) {
            if (bad_at) *bad_at = i;
            return false;
        }
        i += len;
    }
    return true;
}

/* ---- JSON ---------------------------------------------------------------- */

/* 0: copy as is; 1: ASCII that needs an escape; 2: first byte of non-ASCII. */
static const unsigned char json_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20: '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x50: '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x70 (DEL needs no escape) */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

static void json_escape_ascii(hm_buf *b, unsigned char c) {
    static const char hex[] = "0123456789abcdef";
    char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
    switch (c) {
        case '"':
            hm_buf_append(b, "\\\"", 2);
            return;
        case '\\':
            hm_buf_append(b, "\\\\", 2);
            return;
        case '\b':
            hm_buf_append(b, "\\b", 2);
            return;
        case '\f':
            hm_buf_append(b, "\\f", 2);
            return;
        case '\n':
            hm_buf_append(b, "\\n", 2);
            return;
        case '\r':
            hm_buf_append(b, "\\r", 2);
            return;
        case '\t':
            hm_buf_append(b, "\\t", 2);
            return;
        default:
            assert(c < 0x20);
            hm_buf_append(b, esc, sizeof(esc));
    }
}

void hm_json_str(hm_buf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    /* Most strings need no escape: one reservation, then straight copies. */
    hm_buf_reserve(b, n + 2);
    hm_buf_putc(b, '"');
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && json_class[u[run]] == 0)
            run++;
        if (run > i) {
            hm_buf_append(b, s + i, run - i);
            i = run;
            if (i == n) break;
        }
        if (json_class[u[i]] == 1) {
            json_escape_ascii(b, u[i]);
            i++;
            continue;
        }
        bool ok;
        size_t len = utf8_seq(u + i, n - i, &ok);
        if (ok)
            hm_buf_append(b, s + i, len);
        else
            hm_buf_append(b, "\\ufffd", 6);
        i += len;
    }
    hm_buf_putc(b, '"');
}

void hm_json_double(hm_buf *b, double v) {
    if (!isfinite(v)) {
        hm_buf_append(b, "null", 4);
        return;
    }
    /* Integral values of moderate size are common (prices in ticks, sizes, 37000):
     * write them as integers without the printf round trip. */
    if (v == floor(v) && fabs(v) < 1e15) {
        if (v == 0 && signbit(v))
            hm_buf_append(b, "-0", 2);
        else
            hm_buf_i64(b, (int64_t)v);
        return;
    }
    /* %.17g always round-trips an IEEE double; shorter forms are tried first
     * because 0.1 should read "0.1", not "0.10000000000000001". */
    char tmp[32];
    int len = 0;
    for (int prec = 15; prec <= 17; prec++) {
        len = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
        assert(len > 0 && (size_t)len < sizeof(tmp));
        if (prec == 17 || strtod(tmp, NULL) == v) break;
    }
    hm_buf_append(b, tmp, (size_t)len);
}

/*
 * Rounding is half up on the decimal value the caller meant: 0.8755 is stored
 * as 0.87549999999999994..., so a tolerance of 1e-9 thousandths (far above the
 * ~1e-13 representation error in [0, 1], far below anything a score resolves)
 * sends it to 0.876. Values outside [0, 1] are clamped; NaN is written as
 * 0.000, the lowest score, since the format has no room for "unknown".
 */
void hm_json_fixed3(hm_buf *b, double v) {
    if (!(v > 0)) v = 0; /* also catches NaN */
    if (v > 1) v = 1;
    unsigned milli = (unsigned)floor(v * 1000.0 + 0.5 + 1e-9);
    if (milli > 1000) milli = 1000;
    char out[5];
    out[0] = milli == 1000 ? '1' : '0';
    out[1] = '.';
    if (milli == 1000) milli = 0;
    out[2] = (char)('0' + milli / 100);
    out[3] = (char)('0' + milli / 10 % 10);
    out[4] = (char)('0' + milli % 10);
    hm_buf_append(b, out, sizeof(out));
}

static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* number = [ minus ] int [ frac ] [ exp ]; int = zero / ( digit1-9 *DIGIT ) */
bool hm_json_is_number(const char *s, size_t n) {
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i >= n) return false;
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        while (i < n && is_digit(s[i]))
            i++;
    } else {
        return false;
    }
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !is_digit(s[i])) return false;
        while (i < n && is_digit(s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || !is_digit(s[i])) return false;
        while (i < n && is_digit(s[i]))
            i++;
    }
    return i == n;
}

static int hex4(const char *s, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return -EINVAL;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return 0;
}

static void put_utf8(hm_buf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18);
        u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    hm_buf_append(b, u, n);
}

int hm_json_unescape(hm_buf *b, const char *s, size_t n) {
    const char *end = s + n;
    while (s < end) {
        const char *bs = memchr(s, '\\', (size_t)(end - s));
        if (!bs) {
            hm_buf_append(b, s, (size_t)(end - s));
            return 0;
        }
        hm_buf_append(b, s, (size_t)(bs - s));
        if (end - bs < 2) return -EINVAL;
        char c = bs[1];
        s = bs + 2;
        switch (c) {
            case '"':
            case '\\':
            case '/':
                hm_buf_putc(b, c);
                continue;
            case 'b':
                hm_buf_putc(b, '\b');
                continue;
            case 'f':
                hm_buf_putc(b, '\f');
                continue;
            case 'n':
                hm_buf_putc(b, '\n');
                continue;
            case 'r':
                hm_buf_putc(b, '\r');
                continue;
            case 't':
                hm_buf_putc(b, '\t');
                continue;
            case 'u':
                break;
            default:
                return -EINVAL;
        }
        uint32_t cp;
        if (end - s < 4 || hex4(s, &cp) != 0) return -EINVAL;
        s += 4;
        if (cp >= 0xD800 && cp < 0xDC00) {
            uint32_t lo;
            if (end - s >= 6 && s[0] == '\\' && s[1] == 'u' && hex4(s + 2, &lo) == 0 &&
                lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                s += 6;
            } else {
                cp = 0xFFFD;
            }
        } else if (cp >= 0xDC00 && cp < 0xE000) {
            cp = 0xFFFD;
        }
        put_utf8(b, cp);
    }
    return 0;
}
