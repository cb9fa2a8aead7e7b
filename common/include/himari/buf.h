/*
 * himari/buf.h: a growable byte buffer and the JSON writer built on it.
 *
 * Every record a service emits (quality scores, logs, /metrics, /status) is
 * written into an hm_buf. The JSON helpers never allocate beyond the buffer
 * and escape per RFC 8259; invalid UTF-8 in a string is written as U+FFFD so
 * the output is always valid JSON (the original bytes are kept elsewhere,
 * e.g. on the dead-letter topic).
 */
#ifndef HIMARI_BUF_H
#define HIMARI_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "himari/common.h"

/** A byte buffer; data is always NUL-terminated (not counted in len). */
typedef struct hm_buf {
    char *data;
    size_t len;
    size_t cap;
} hm_buf;

#define HM_BUF_INIT                                                                                \
    { NULL, 0, 0 }

/** @brief Ensure room for extra more bytes (+1 for the NUL). Aborts on OOM. */
void hm_buf_reserve(hm_buf *b, size_t extra);
/** @brief Forget the contents, keep the memory. */
static inline void hm_buf_reset(hm_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}
/** @brief Free the memory; the buffer is HM_BUF_INIT afterwards. */
void hm_buf_free(hm_buf *b);

static inline void hm_buf_append(hm_buf *b, const void *p, size_t n) {
    if (HM_UNLIKELY(b->len + n + 1 > b->cap)) hm_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}
static inline void hm_buf_putc(hm_buf *b, char c) {
    if (HM_UNLIKELY(b->len + 2 > b->cap)) hm_buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}
static inline void hm_buf_puts(hm_buf *b, const char *s) {
    hm_buf_append(b, s, strlen(s));
}
/**
 * @brief Append a string literal, its length known at compile time (hot paths: JSON
 * keys and punctuation). `"" lit` makes anything but a literal a compile error, so
 * sizeof never measures a pointer.
 */
#define HM_BUF_PUT_LIT(b, lit) hm_buf_append((b), "" lit, sizeof(lit) - 1)
void hm_buf_printf(hm_buf *b, const char *fmt, ...) HM_PRINTF(2, 3);

/** @brief Decimal integers, without printf (hot path). */
void hm_buf_i64(hm_buf *b, int64_t v);
void hm_buf_u64(hm_buf *b, uint64_t v);

/* ---- JSON writing ------------------------------------------------------ */

/** @brief A JSON string literal with quotes; bytes are escaped, bad UTF-8 -> U+FFFD. */
void hm_json_str(hm_buf *b, const char *s, size_t n);
static inline void hm_json_cstr(hm_buf *b, const char *s) {
    hm_json_str(b, s, strlen(s));
}
/** @brief `"key":` (key is trusted ASCII without characters to escape). */
static inline void hm_json_key(hm_buf *b, const char *key) {
    hm_buf_putc(b, '"');
    hm_buf_puts(b, key);
    hm_buf_append(b, "\":", 2);
}
/**
 * @brief A finite double in the shortest form that reads back to the same
 * value ("%.17g" only when shorter forms do not round-trip); non-finite
 * values are written as null because JSON has no NaN.
 */
void hm_json_double(hm_buf *b, double v);
/** @brief A value in [0, 1] with exactly three decimals, "0.875" (no printf). */
void hm_json_fixed3(hm_buf *b, double v);

/* `,"key":value`: a member of an object after its first (key as for hm_json_key). */
static inline void hm_json_member_str(hm_buf *b, const char *key, const char *v) {
    hm_buf_putc(b, ',');
    hm_json_key(b, key);
    hm_json_cstr(b, v);
}
static inline void hm_json_member_i64(hm_buf *b, const char *key, int64_t v) {
    hm_buf_putc(b, ',');
    hm_json_key(b, key);
    hm_buf_i64(b, v);
}
static inline void hm_json_member_double(hm_buf *b, const char *key, double v) {
    hm_buf_putc(b, ',');
    hm_json_key(b, key);
    hm_json_double(b, v);
}
static inline void hm_json_member_bool(hm_buf *b, const char *key, bool v) {
    hm_buf_putc(b, ',');
    hm_json_key(b, key);
    if (v)
        hm_buf_append(b, "true", 4);
    else
        hm_buf_append(b, "false", 5);
}

/**
 * @brief Is s[0..n) a number in strict JSON grammar (RFC 8259 section 6)?
 * Lets a writer copy a number's original text instead of re-formatting it.
 */
bool hm_json_is_number(const char *s, size_t n);

/**
 * @brief Append the text of a JSON string's contents s[0..n) (between the quotes, as a
 * decoder validated it) with its escapes resolved; a lone surrogate escape becomes U+FFFD.
 * \u0000 yields a NUL byte: a caller whose sink cannot hold one checks for it.
 * @return 0, or -EINVAL on a malformed escape (b then holds what came before it).
 */
int hm_json_unescape(hm_buf *b, const char *s, size_t n);

/**
 * @brief Is s[0..n) valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF)?
 * On failure *bad_at is the offset of the first bad byte (when not NULL).
 */
bool hm_utf8_valid(const char *s, size_t n, size_t *bad_at);

#endif
