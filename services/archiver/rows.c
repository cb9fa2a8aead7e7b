/*
 * rows.c: quality records to COPY text rows of ar_stage (rows.h). The hot path of the
 * archiver: one decode, a few appends per field, no allocation once the buffers grew.
 */
#include "rows.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/quality.h"

#define MS_PER_DAY 86400000LL

/* ---- days ------------------------------------------------------------------------- */

int32_t ar_day_of_ms(int64_t ms) {
    int64_t d = ms / MS_PER_DAY;
    if (ms % MS_PER_DAY < 0) d--;
    return (int32_t)d;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3u : 9u)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void ar_day_format(int32_t day, char out[11]) {
    int64_t z = (int64_t)day + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    char tmp[32]; /* the compiler cannot see that m <= 12 and d <= 31 */
    snprintf(tmp, sizeof(tmp), "%04d-%02u-%02u", (int)(y % 10000), m, d);
    memcpy(out, tmp, 10);
    out[10] = '\0';
}

int ar_day_parse(const char *s, int32_t *day) {
    unsigned y, m, d;
    char tail;
    if (strlen(s) != 10 || sscanf(s, "%4u-%2u-%2u%c", &y, &m, &d, &tail) != 3) return -EINVAL;
    static const unsigned k_mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > k_mdays[m - 1]) return -EINVAL;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (m == 2 && d == 29 && !leap) return -EINVAL;
    *day = (int32_t)days_from_civil(y, m, d);
    return 0;
}

static void note_day(ar_rows *r, int32_t day) {
    for (size_t i = r->n_days; i-- > 0;)
        if (r->days[i] == day) return;
    if (r->n_days == r->cap_days) {
        r->cap_days = r->cap_days ? r->cap_days * 2 : 8;
        r->days = hm_xrealloc(r->days, r->cap_days * sizeof(*r->days));
    }
    r->days[r->n_days++] = day;
}

/* ---- COPY text fields --------------------------------------------------------------- */

static void put_null(hm_buf *b) {
    hm_buf_append(b, "\\N", 2);
}

/* COPY text format: backslash, tab, newline and carriage return are escaped. */
static void put_text(hm_buf *b, const char *s, size_t n) {
    hm_buf_reserve(b, n);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        switch (c) {
            case '\\':
                hm_buf_append(b, "\\\\", 2);
                break;
            case '\t':
                hm_buf_append(b, "\\t", 2);
                break;
            case '\n':
                hm_buf_append(b, "\\n", 2);
                break;
            case '\r':
                hm_buf_append(b, "\\r", 2);
                break;
            default:
                hm_buf_putc(b, c);
        }
    }
}

static void put_cstr(hm_buf *b, const char *s) {
    put_text(b, s, strlen(s));
}

static void put_time(hm_buf *b, int64_t ms) {
    char iso[25];
    hm_format_iso8601_ms(ms, iso);
    hm_buf_append(b, iso, 24);
}

static void put_double(hm_buf *b, double v) {
    hm_json_double(b, v); /* shortest round-trip form; finite here */
}

static void put_bytea(hm_buf *b, const char *p, size_t n) {
    static const char k_hex[] = "0123456789abcdef";
    hm_buf_reserve(b, 3 + 2 * n);
    hm_buf_append(b, "\\\\x", 3); /* COPY text doubles the backslash of bytea's \x */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        hm_buf_putc(b, k_hex[c >> 4]);
        hm_buf_putc(b, k_hex[c & 15]);
    }
}

static void tab(hm_buf *b) {
    hm_buf_putc(b, '\t');
}

/* The text of a string field, unescaped into r->scratch. -EINVAL when it holds a NUL,
 * which a PostgreSQL text cannot. */
static int unescaped(ar_rows *r, hm_span s) {
    hm_buf_reset(&r->scratch);
    if (hm_json_unescape(&r->scratch, s.p, s.len) != 0) return -EINVAL;
    if (memchr(r->scratch.data, '\0', r->scratch.len)) return -EINVAL;
    return 0;
}

/* The issues as an array literal {"A","B"}: every name the record carries, known or not
 * (a newer validator's), in its order. Names are JSON strings; quoting every element keeps
 * a name such as NULL from becoming a null. */
static void put_issues(ar_rows *r, const hm_quality *q) {
    hm_buf *b = &r->copy;
    hm_buf_putc(b, '{');
    bool first = true;
    if (q->st[HM_QFIELD_ISSUES] == HM_F_OK && q->issues_text.len >= 2) {
        const char *p = q->issues_text.p + 1, *end = q->issues_text.p + q->issues_text.len - 1;
        while (p < end) {
            if (*p != '"') {
                p++;
                continue;
            }
            const char *s = ++p;
            while (p < end && *p != '"')
                p += *p == '\\' ? 2 : 1;
            hm_buf_reset(&r->scratch);
            if (hm_json_unescape(&r->scratch, s, (size_t)(p - s)) == 0 &&
                !memchr(r->scratch.data, '\0', r->scratch.len)) {
                if (!first) hm_buf_putc(b, ',');
                first = false;
                hm_buf_putc(b, '"');
                for (size_t i = 0; i < r->scratch.len; i++) {
                    char c = r->scratch.data[i];
                    if (c == '"' || c == '\\') put_text(b, "\\", 1);
                    put_text(b, &c, 1);
                }
                hm_buf_putc(b, '"');
            }
            p++;
        }
    } else {
        for (hm_qcodeset c = q->codes; c; c &= c - 1) {
            if (!first) hm_buf_putc(b, ',');
            first = false;
            hm_buf_putc(b, '"');
            hm_buf_puts(b, hm_qcode_name((hm_qcode)__builtin_ctzll(c)));
            hm_buf_putc(b, '"');
        }
    }
    hm_buf_putc(b, '}');
}

/* ---- classification ----------------------------------------------------------------- */

static bool reject(ar_reject *why, const char *reason, const char *field, const char *fmt, ...)
    HM_PRINTF(4, 5);
static bool reject(ar_reject *why, const char *reason, const char *field, const char *fmt, ...) {
    why->reason = reason;
    why->field = field;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->detail, sizeof(why->detail), fmt, ap);
    va_end(ap);
    return false;
}

static bool text_field_ok(ar_rows *r, const hm_quality *q, hm_field f, const char *name,
                          ar_reject *why) {
    if (q->tick.st[f] != HM_F_OK)
        return reject(why, "missing_field", name,
                      "%s is missing or null: the validator did "
                      "not accept it",
                      name);
    hm_span s = f == HM_FIELD_SYMBOL ? q->tick.symbol : q->tick.exchange;
    if (unescaped(r, s) != 0)
        return reject(why, "nul_in_text", name, "%s holds a NUL character", name);
    return true;
}

/* Can market_data take the record? Fills why when not. */
static bool acceptable(ar_rows *r, const hm_quality *q, const ar_rows_limits *lim, ar_reject *why) {
    const hm_tick *t = &q->tick;
    if (q->codes & HM_QBIT(HM_Q_PARSE_ERROR))
        return reject(why, "parse_error", NULL,
                      "the validator could not parse the input (PARSE_ERROR)");
    if (t->kind == HM_KIND_TRANSFER)
        return reject(why, "not_a_trade", "type",
                      "a transfer is not market data (it feeds causal_events)");
    if (q->st[HM_QFIELD_SCORE] != HM_F_OK)
        return reject(why, "missing_field", "quality_score",
                      "quality_score is missing or "
                      "not in [0, 1]");
    if (t->st[HM_FIELD_TIMESTAMP] != HM_F_OK)
        return reject(why, "missing_field", "timestamp",
                      "timestamp is missing or null: the validator did not accept it");
    if (t->ts_ms < lim->min_ts_ms) {
        char iso[25];
        hm_format_iso8601_ms(t->ts_ms, iso);
        return reject(why, "older_than_retention", "timestamp",
                      "timestamp %s is older than archiver.retention_days", iso);
    }
    if (t->ts_ms > lim->max_ts_ms) {
        char iso[25];
        hm_format_iso8601_ms(t->ts_ms, iso);
        return reject(why, "timestamp_in_future", "timestamp",
                      "timestamp %s is further ahead than archiver.max_future_s", iso);
    }
    if (!text_field_ok(r, q, HM_FIELD_SYMBOL, "symbol", why)) return false;
    if (!text_field_ok(r, q, HM_FIELD_EXCHANGE, "exchange", why)) return false;
    if (t->st[HM_FIELD_PRICE] != HM_F_OK)
        return reject(why, "missing_price", "price",
                      "price is missing or null: the validator did not accept it");
    if (!isfinite(t->price) || t->price <= 0)
        return reject(why, "price_not_positive", "price", "price %.17g is not above 0", t->price);
    if (t->st[HM_FIELD_VOLUME] == HM_F_OK && (!isfinite(t->volume) || t->volume < 0))
        return reject(why, "volume_negative", "volume", "volume %.17g is below 0", t->volume);
    if (t->st[HM_FIELD_TRADE_ID] == HM_F_OK && unescaped(r, t->trade_id) != 0)
        return reject(why, "nul_in_text", "trade_id", "trade_id holds a NUL character");
    return true;
}

/* ---- rows ----------------------------------------------------------------------------- */

static void put_source(hm_buf *b, const ar_source *src) {
    put_cstr(b, src->topic);
    tab(b);
    hm_buf_i64(b, src->partition);
    tab(b);
    hm_buf_i64(b, src->offset);
}

static void put_span_text(ar_rows *r, hm_span s) {
    if (unescaped(r, s) == 0)
        put_text(&r->copy, r->scratch.data, r->scratch.len);
    else
        put_null(&r->copy);
}

static void add_accepted(ar_rows *r, const ar_source *src, const hm_quality *q) {
    hm_buf *b = &r->copy;
    const hm_tick *t = &q->tick;
    put_time(b, t->ts_ms);
    tab(b);
    put_span_text(r, t->symbol);
    tab(b);
    put_span_text(r, t->exchange);
    tab(b);
    put_double(b, t->price);
    tab(b);
    if (t->st[HM_FIELD_VOLUME] == HM_F_OK)
        put_double(b, t->volume);
    else
        put_null(b);
    tab(b);
    put_double(b, q->score);
    tab(b);
    put_issues(r, q);
    tab(b);
    if (t->st[HM_FIELD_TRADE_ID] == HM_F_OK)
        put_span_text(r, t->trade_id);
    else
        put_null(b);
    tab(b);
    if (t->side != HM_SIDE_NONE)
        put_cstr(b, hm_side_name(t->side));
    else
        put_null(b);
    tab(b);
    put_cstr(b, t->kind == HM_KIND_LIQUIDATION ? "liquidation" : "trade");
    tab(b);
    if (q->st[HM_QFIELD_PROCESSED_AT] == HM_F_OK)
        put_time(b, q->processed_at_ms);
    else
        put_null(b);
    tab(b);
    put_source(b, src);
    hm_buf_append(b, "\t\\N\t\\N\t\\N\t\\N\n", 13);
    r->accepted++;
    note_day(r, ar_day_of_ms(t->ts_ms));
}

/* A reject row keeps what is known of the record (symbol, exchange, timestamp when they
 * are usable) beside the reason and the record's bytes. */
static void add_rejected(ar_rows *r, const ar_source *src, const hm_quality *q, bool decoded,
                         const ar_rows_limits *lim, const char *payload, size_t len,
                         const ar_reject *why) {
    hm_buf *b = &r->copy;
    const hm_tick *t = &q->tick;
    if (decoded && t->st[HM_FIELD_TIMESTAMP] == HM_F_OK && t->ts_ms >= lim->min_ts_ms &&
        t->ts_ms <= lim->max_ts_ms)
        put_time(b, t->ts_ms);
    else
        put_null(b);
    tab(b);
    if (decoded && t->st[HM_FIELD_SYMBOL] == HM_F_OK)
        put_span_text(r, t->symbol);
    else
        put_null(b);
    tab(b);
    if (decoded && t->st[HM_FIELD_EXCHANGE] == HM_F_OK)
        put_span_text(r, t->exchange);
    else
        put_null(b);
    /* price, volume, quality_score, issues, trade_id, side, type, processed_at */
    hm_buf_append(b, "\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t", 25);
    put_source(b, src);
    tab(b);
    put_cstr(b, why->reason);
    tab(b);
    if (why->field)
        put_cstr(b, why->field);
    else
        put_null(b);
    tab(b);
    put_cstr(b, why->detail);
    tab(b);
    put_bytea(b, payload, len);
    hm_buf_putc(b, '\n');
    r->rejected++;
}

void ar_rows_add(ar_rows *r, const ar_source *src, const char *payload, size_t len,
                 const ar_rows_limits *lim, ar_reject *why) {
    ar_reject local;
    if (!why) why = &local;
    why->reason = NULL;
    why->field = NULL;
    why->detail[0] = '\0';
    hm_quality q;
    hm_decode_err derr = {0};
    if (!payload || hm_quality_decode(payload, len, &q, &derr) != 0) {
        memset(&q, 0, sizeof(q));
        reject(why, "not_a_quality_record", NULL, "not a quality record: %s",
               payload ? derr.msg : "empty value");
        add_rejected(r, src, &q, false, lim, payload ? payload : "", payload ? len : 0, why);
        return;
    }
    if (!acceptable(r, &q, lim, why)) {
        add_rejected(r, src, &q, true, lim, payload, len, why);
        return;
    }
    add_accepted(r, src, &q);
}

void ar_rows_reset(ar_rows *r) {
    hm_buf_reset(&r->copy);
    r->accepted = r->rejected = 0;
    r->n_days = 0;
}

void ar_rows_free(ar_rows *r) {
    hm_buf_free(&r->copy);
    hm_buf_free(&r->scratch);
    free(r->days);
    memset(r, 0, sizeof(*r));
}
