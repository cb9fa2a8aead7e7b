/*
 * decimal.c: exact decimal sums (decimal.h). The text conversions are the C library's
 * snprintf, the same one PostgreSQL's float8_numeric and float4_numeric call.
 */
#include "decimal.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>

#define INT128_MAX_ ((__int128)(((unsigned __int128)1 << 127) - 1))

/* "%.*g" text to c x 10^e: digits with the point removed, the exponent adjusted. */
static ar_dec parse(const char *s) {
    ar_dec d = {0, 0};
    bool neg = *s == '-';
    if (neg || *s == '+') s++;
    int32_t frac = 0;
    bool point = false;
    for (; *s && *s != 'e' && *s != 'E'; s++) {
        if (*s == '.') {
            point = true;
            continue;
        }
        d.c = d.c * 10 + (*s - '0');
        if (point) frac++;
    }
    int32_t exp10 = *s ? (int32_t)strtol(s + 1, NULL, 10) : 0;
    d.e = exp10 - frac;
    if (neg) d.c = -d.c;
    return d;
}

ar_dec ar_dec_of_double(double v) {
    char buf[DBL_DIG + 32];
    snprintf(buf, sizeof(buf), "%.*g", DBL_DIG, v);
    return parse(buf);
}

ar_dec ar_dec_of_float(float v) {
    char buf[FLT_DIG + 32];
    snprintf(buf, sizeof(buf), "%.*g", FLT_DIG, (double)v);
    return parse(buf);
}

ar_dec ar_dec_square(ar_dec x) {
    return (ar_dec){x.c * x.c, 2 * x.e};
}

/* c * 10^k, false when it leaves 128 bits. */
static bool scale(__int128 c, int32_t k, __int128 *out) {
    for (int32_t i = 0; i < k; i++) {
        if (c > INT128_MAX_ / 10 || c < -(INT128_MAX_ / 10)) return false;
        c *= 10;
    }
    *out = c;
    return true;
}

bool ar_dec_add(ar_dec *acc, ar_dec x) {
    if (x.c == 0) return true;
    if (acc->c == 0) {
        *acc = x;
        return true;
    }
    __int128 a = acc->c, b = x.c;
    int32_t e = acc->e;
    if (x.e < e) {
        if (!scale(a, e - x.e, &a)) return false;
        e = x.e;
    } else if (x.e > e && !scale(b, x.e - e, &b)) {
        return false;
    }
    __int128 sum;
    if (__builtin_add_overflow(a, b, &sum)) return false;
    acc->c = sum;
    acc->e = e;
    return true;
}

void ar_dec_put(hm_buf *b, ar_dec x) {
    char digits[48];
    size_t n = 0;
    unsigned __int128 u = x.c < 0 ? (unsigned __int128)(-(x.c + 1)) + 1 : (unsigned __int128)x.c;
    do {
        digits[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    if (x.c < 0) hm_buf_putc(b, '-');
    while (n)
        hm_buf_putc(b, digits[--n]);
    if (x.e != 0 && x.c != 0) {
        hm_buf_putc(b, 'e');
        hm_buf_i64(b, x.e);
    }
}
