/*
 * himari/common.h: what every module of common/ and every service shares.
 *
 * Conventions (docs/CONVENTIONS.md): functions return 0 or a negative errno-style
 * code (-EINVAL, -ENOMEM, -EAGAIN, ...); a failure a person will read carries a
 * message in an hm_err naming the file, record or field and the reason.
 * Out-parameters come last.
 */
#ifndef HIMARI_COMMON_H
#define HIMARI_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HM_MUST_CHECK                __attribute__((warn_unused_result))
#define HM_PRINTF(fmt_idx, args_idx) __attribute__((format(printf, fmt_idx, args_idx)))
#define HM_ARRAY_LEN(a)              (sizeof(a) / sizeof((a)[0]))
#define HM_UNUSED(x)                 ((void)(x))
#define HM_LIKELY(x)                 __builtin_expect(!!(x), 1)
#define HM_UNLIKELY(x)               __builtin_expect(!!(x), 0)

/* The version every binary reports (GetStatus, /status, --version). */
#define HM_VERSION "0.1.0"

/** A human-readable error: what failed, where, and why. */
typedef struct hm_err {
    char msg[512];
} hm_err;

/**
 * @brief Format a message into err (when err is not NULL) and return code.
 * Lets a failing path read `return hm_err_set(err, -EINVAL, "...", ...);`.
 */
int hm_err_set(hm_err *err, int code, const char *fmt, ...) HM_PRINTF(3, 4);

/** @brief Wall-clock time in milliseconds since the Unix epoch. */
int64_t hm_now_ms(void);

/** @brief Monotonic time in nanoseconds (for latencies; not a date). */
uint64_t hm_mono_ns(void);

/**
 * @brief Format ms since the epoch as ISO-8601 UTC with milliseconds,
 * "2024-01-02T03:04:05.678Z" (24 chars + NUL). out must hold 25 bytes.
 */
void hm_format_iso8601_ms(int64_t ms, char out[25]);

/**
 * @brief Read a whole small file (a secret, a config) into a NUL-terminated
 * malloc'd buffer; the caller frees *out. Files larger than max_bytes are refused.
 */
int hm_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len,
                 hm_err *err) HM_MUST_CHECK;

/**
 * @brief Is host (an IP literal or "localhost", as admin.bind and grpc.bind
 * take it) a loopback address: 127.0.0.0/8, ::1, ::ffff:127.x.y.z or
 * "localhost"? NULL and "" are the default bind, 127.0.0.1. Wildcards (0.0.0.0,
 * ::) and every name other than "localhost" are not: no DNS is asked.
 */
bool hm_addr_is_loopback(const char *host);

/** @brief Abort with a message: for broken invariants, never for bad input. */
void hm_panic(const char *fmt, ...) HM_PRINTF(1, 2) __attribute__((noreturn));

/** Allocation that cannot fail (aborts on OOM): for small, bounded objects. */
void *hm_xmalloc(size_t n);
void *hm_xcalloc(size_t n, size_t size);
void *hm_xrealloc(void *p, size_t n);
char *hm_xstrdup(const char *s);
char *hm_xstrndup(const char *s, size_t n);

#endif
