/*
 * himari/log.h: structured logs, one JSON object per line on stderr.
 *
 *   {"ts":"2026-11-26T01:02:03.456Z","level":"info","service":"ingest-validator",
 *    "event":"partition_assigned","topic":"raw_market_data","partition":3}
 *
 * Fields are typed (string, integer, double, bool) and written with the JSON
 * writer, so a value can never break the line. Each line is one write(2), so
 * lines from one process never interleave. Logging is for events, not for
 * records: a per-record problem is counted in metrics and kept (dead-letter
 * topic), and its log line goes through hm_log_ratelimited().
 */
#ifndef HIMARI_LOG_H
#define HIMARI_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "himari/common.h"

typedef enum hm_log_level {
    HM_LOG_DEBUG = 0,
    HM_LOG_INFO = 1,
    HM_LOG_WARN = 2,
    HM_LOG_ERROR = 3,
} hm_log_level;

typedef enum hm_log_type { HM_LT_END = 0, HM_LT_STR, HM_LT_I64, HM_LT_DBL, HM_LT_BOOL } hm_log_type;

/** One key/value of a log line; build with HM_LS/HM_LI/HM_LD/HM_LB. */
typedef struct hm_log_field {
    const char *key;
    hm_log_type type;
    union {
        const char *s; /* NULL is written as null */
        int64_t i;
        double d;
        bool b;
    } v;
} hm_log_field;

#define HM_LS(k, val) ((hm_log_field){.key = (k), .type = HM_LT_STR, .v.s = (val)})
#define HM_LI(k, val) ((hm_log_field){.key = (k), .type = HM_LT_I64, .v.i = (int64_t)(val)})
#define HM_LD(k, val) ((hm_log_field){.key = (k), .type = HM_LT_DBL, .v.d = (double)(val)})
#define HM_LB(k, val) ((hm_log_field){.key = (k), .type = HM_LT_BOOL, .v.b = (bool)(val)})

/**
 * @brief Set the process's service name and minimum level. Call once at start;
 * before it, lines carry "service":"himari" and level info.
 */
void hm_log_init(const char *service, hm_log_level min_level);
void hm_log_set_level(hm_log_level min_level);
/** @brief "debug"|"info"|"warn"|"error" -> level; -EINVAL for anything else. */
int hm_log_level_parse(const char *name, hm_log_level *out) HM_MUST_CHECK;

/**
 * @brief Redirect lines to fd (default 2). Tests use a pipe or a file.
 */
void hm_log_set_fd(int fd);

/**
 * @brief Replace the clock (ms since the epoch) behind "ts" and the rate-limit
 * window; NULL restores hm_now_ms. Lets tests step through minutes.
 */
void hm_log_set_clock(int64_t (*now_ms)(void));

/** @brief Emit one line; fields ends with an HM_LT_END entry. */
void hm_log_emit(hm_log_level level, const char *event, const hm_log_field *fields);

/**
 * @brief Like hm_log_emit, but at most `per_minute` lines a minute for this
 * event name; when lines were suppressed the next emitted one carries
 * "suppressed":N. State is per event-name pointer (use string literals).
 */
void hm_log_ratelimited(hm_log_level level, const char *event, int per_minute,
                        const hm_log_field *fields);

/* The leading {0} makes an empty field list valid C ("hm_log_info(ev)"), with
 * GNU comma elision, which cppcheck parses (unlike __VA_OPT__); "+ 1" skips it. */
#define HM_LOG_FIELDS_(...)      ((const hm_log_field[]){{0}, ##__VA_ARGS__, {0}} + 1)
#define hm_log_debug(event, ...) hm_log_emit(HM_LOG_DEBUG, (event), HM_LOG_FIELDS_(__VA_ARGS__))
#define hm_log_info(event, ...)  hm_log_emit(HM_LOG_INFO, (event), HM_LOG_FIELDS_(__VA_ARGS__))
#define hm_log_warn(event, ...)  hm_log_emit(HM_LOG_WARN, (event), HM_LOG_FIELDS_(__VA_ARGS__))
#define hm_log_error(event, ...) hm_log_emit(HM_LOG_ERROR, (event), HM_LOG_FIELDS_(__VA_ARGS__))
#define hm_log_limited(level, event, per_minute, ...)                                              \
    hm_log_ratelimited((level), (event), (per_minute), HM_LOG_FIELDS_(__VA_ARGS__))

#endif
