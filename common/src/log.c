/*
 * log.c: structured logs, one JSON object per line, each line one write(2).
 *
 *   {"ts":"2026-11-26T01:02:03.456Z","level":"info","service":"ingest-validator",
 *    "event":"partition_assigned","topic":"raw_market_data","partition":3}
 *
 * Every service and tool logs through here. The logger's own state (service
 * name, minimum level, output fd, clock, rate-limit table) is the one block of
 * mutable globals in common/, allowed because a process has exactly one log
 * stream. It is NOT thread-safe by design: only the loop thread logs (helper
 * threads hand their news to the loop). A line must never be split, never
 * block the loop waiting on a slow reader beyond the write(2) itself, and
 * never abort the process: a line that cannot be written is dropped.
 */
#include "himari/log.h"

#include <assert.h>
#include <string.h>
#include <unistd.h>

#include "himari/buf.h"

/* Slots in the rate-limit table; more distinct events share the last resort slot. */
#define HM_LOG_RL_SLOTS     64
#define HM_LOG_RL_WINDOW_MS 60000

typedef struct hm_log_rl_slot {
    const char *event;    /* key: the event-name pointer; NULL = free */
    int64_t window_start; /* ms since the epoch */
    int emitted;          /* lines emitted in the current window */
    int64_t suppressed;   /* lines dropped since the last emitted line */
} hm_log_rl_slot;

static struct {
    char service[64];
    hm_log_level min_level;
    int fd;
    int64_t (*now_ms)(void);
    hm_log_rl_slot rl[HM_LOG_RL_SLOTS];
    hm_log_rl_slot rl_overflow; /* shared by events that find the table full */
} g_log = {
    .service = "himari",
    .min_level = HM_LOG_INFO,
    .fd = 2,
    .now_ms = hm_now_ms,
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void hm_log_init(const char *service, hm_log_level min_level) {
    assert(service != NULL);
    /* Copied (truncated at 63 bytes) so the caller's string may be temporary. */
    size_t n = strlen(service);
    if (n >= sizeof(g_log.service)) n = sizeof(g_log.service) - 1;
    memcpy(g_log.service, service, n);
    g_log.service[n] = '\0';
    hm_log_set_level(min_level);
}

void hm_log_set_level(hm_log_level min_level) {
    assert(min_level >= HM_LOG_DEBUG && min_level <= HM_LOG_ERROR);
    g_log.min_level = min_level;
}

int hm_log_level_parse(const char *name, hm_log_level *out) {
    for (size_t i = 0; i < HM_ARRAY_LEN(level_names); i++) {
        if (name && strcmp(name, level_names[i]) == 0) {
            *out = (hm_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void hm_log_set_fd(int fd) {
    g_log.fd = fd;
}

void hm_log_set_clock(int64_t (*now_ms)(void)) {
    g_log.now_ms = now_ms ? now_ms : hm_now_ms;
}

/* Write all of p, retrying on EINTR and short writes; give up on any other error. */
static void write_line(const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(g_log.fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return; /* EAGAIN, EPIPE, EBADF: nowhere to report it, drop the line */
        }
        p += w;
        n -= (size_t)w;
    }
}

static void emit(hm_log_level level, const char *event, const hm_log_field *fields, int64_t now,
                 int64_t suppressed) {
    /* Logging from an error path must not disturb the errno the caller is about to use. */
    int saved_errno = errno;
    char ts[25];
    hm_format_iso8601_ms(now, ts);

    hm_buf line = HM_BUF_INIT;
    hm_buf_reserve(&line, 256);
    hm_buf_append(&line, "{\"ts\":\"", 7);
    hm_buf_append(&line, ts, 24);
    hm_buf_append(&line, "\",\"level\":\"", 11);
    hm_buf_puts(&line, level_names[level]);
    hm_buf_append(&line, "\",\"service\":", 12);
    hm_json_cstr(&line, g_log.service);
    hm_buf_append(&line, ",\"event\":", 9);
    if (event)
        hm_json_cstr(&line, event);
    else
        hm_buf_append(&line, "null", 4);

    for (const hm_log_field *f = fields; f && f->type != HM_LT_END; f++) {
        hm_buf_putc(&line, ',');
        /* Keys are literals in our code, but escaping them costs nothing and
         * keeps the line valid JSON whatever a caller passes. */
        hm_json_cstr(&line, f->key ? f->key : "");
        hm_buf_putc(&line, ':');
        switch (f->type) {
            case HM_LT_STR:
                if (f->v.s)
                    hm_json_cstr(&line, f->v.s);
                else
                    hm_buf_append(&line, "null", 4);
                break;
            case HM_LT_I64:
                hm_buf_i64(&line, f->v.i);
                break;
            case HM_LT_DBL:
                hm_json_double(&line, f->v.d);
                break;
            case HM_LT_BOOL:
                if (f->v.b)
                    hm_buf_append(&line, "true", 4);
                else
                    hm_buf_append(&line, "false", 5);
                break;
            default:
                hm_panic("hm_log: field \"%s\" of event \"%s\" has unknown type %d",
                         f->key ? f->key : "", event ? event : "", (int)f->type);
        }
    }
    if (suppressed > 0) {
        hm_buf_append(&line, ",\"suppressed\":", 14);
        hm_buf_i64(&line, suppressed);
    }
    hm_buf_append(&line, "}\n", 2);
    write_line(line.data, line.len);
    hm_buf_free(&line);
    errno = saved_errno;
}

static bool level_enabled(hm_log_level level) {
    assert(level >= HM_LOG_DEBUG && level <= HM_LOG_ERROR);
    return level >= g_log.min_level;
}

void hm_log_emit(hm_log_level level, const char *event, const hm_log_field *fields) {
    if (!level_enabled(level)) return;
    emit(level, event, fields, g_log.now_ms(), 0);
}

/* Open addressing on the pointer; the table never shrinks, events are literals. */
static hm_log_rl_slot *rl_slot(const char *event) {
    uintptr_t h = (uintptr_t)event;
    h ^= h >> 17;
    h *= (uintptr_t)0x9E3779B97F4A7C15ull;
    size_t start = (size_t)(h >> 7) % HM_LOG_RL_SLOTS;
    for (size_t k = 0; k < HM_LOG_RL_SLOTS; k++) {
        hm_log_rl_slot *s = &g_log.rl[(start + k) % HM_LOG_RL_SLOTS];
        if (s->event == event) return s;
        if (s->event == NULL) {
            s->event = event;
            return s;
        }
    }
    /* More than 64 rate-limited event names is a sign of dynamic names; they
     * are limited together rather than not at all. */
    return &g_log.rl_overflow;
}

void hm_log_ratelimited(hm_log_level level, const char *event, int per_minute,
                        const hm_log_field *fields) {
    assert(per_minute > 0);
    if (per_minute < 1) per_minute = 1;
    if (!level_enabled(level)) return;
    int64_t now = g_log.now_ms();
    hm_log_rl_slot *s = rl_slot(event);
    /* A fixed window opened by the first line after the previous one expired;
     * a clock stepping backwards also opens a new window rather than silencing. */
    if (s->emitted == 0 || now - s->window_start >= HM_LOG_RL_WINDOW_MS || now < s->window_start) {
        s->window_start = now;
        s->emitted = 0;
    }
    if (s->emitted >= per_minute) {
        s->suppressed++;
        return;
    }
    s->emitted++;
    int64_t suppressed = s->suppressed;
    s->suppressed = 0;
    emit(level, event, fields, now, suppressed);
}
