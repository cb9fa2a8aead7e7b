/*
 * rows.c: quality records to COPY rows of market_data (binary) and market_data_rejects
 * (text) (rows.h). The hot path of the archiver: one decode, a few appends per field, no
 * allocation once the buffers grew.
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

const char ar_rows_columns[] =
    "timestamp, symbol, exchange, price, volume, quality_score, issues, trade_id, side, type, "
    "processed_at, source_topic, source_partition, source_offset";
const char ar_rows_reject_columns[] =
    "source_topic, source_partition, source_offset, reason, field, detail, symbol, exchange, "
    "timestamp, record";

static void put_null(hm_buf *b) {
    hm_buf_append(b, "\\N", 2);
}

void ar_copy_text(hm_buf *b, const char *s, size_t n) {
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
    ar_copy_text(b, s, strlen(s));
}

void ar_copy_time(hm_buf *b, int64_t ms) {
    char iso[25];
    hm_format_iso8601_ms(ms, iso);
    hm_buf_append(b, iso, 24);
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

/* ---- COPY binary fields (market_data's rows) ------------------------------------------
 * The binary format spares the server parsing every timestamp, number and array from
 * text: about a third of its CPU per row (docs/BENCHMARKS.md, "Archiver"). Each field is
 * its length (int32, big-endian; -1: NULL) and the value as the type's send function
 * writes it. */

#define PG_EPOCH_MS 946684800000LL /* 2000-01-01T00:00:00Z, PostgreSQL's zero */
#define TEXT_OID    25
#define N_COLUMNS   14

/* "PGCOPY\n\377\r\n\0", flags 0, no header extension. */
static const char k_binary_header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0";

static void be16(hm_buf *b, uint16_t v) {
    unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    hm_buf_append(b, x, 2);
}

static void be32(hm_buf *b, uint32_t v) {
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    hm_buf_append(b, x, 4);
}

static void be64(hm_buf *b, uint64_t v) {
    be32(b, (uint32_t)(v >> 32));
    be32(b, (uint32_t)v);
}

static void patch32(hm_buf *b, size_t at, uint32_t v) {
    unsigned char *p = (unsigned char *)b->data + at;
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void bin_null(hm_buf *b) {
    be32(b, UINT32_MAX);
}

static void bin_bytes(hm_buf *b, const char *p, size_t n) {
    be32(b, (uint32_t)n);
    hm_buf_append(b, p, n);
}

static void bin_cstr(hm_buf *b, const char *s) {
    bin_bytes(b, s, strlen(s));
}

static void bin_time(hm_buf *b, int64_t ms) {
    be32(b, 8);
    be64(b, (uint64_t)((ms - PG_EPOCH_MS) * 1000));
}

static void bin_f8(hm_buf *b, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    be32(b, 8);
    be64(b, u);
}

static void bin_f4(hm_buf *b, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    be32(b, 4);
    be32(b, u);
}

static void bin_i4(hm_buf *b, int32_t v) {
    be32(b, 4);
    be32(b, (uint32_t)v);
}

static void bin_i8(hm_buf *b, int64_t v) {
    be32(b, 8);
    be64(b, (uint64_t)v);
}

static void bin_span(ar_rows *r, hm_buf *b, hm_span s) {
    if (unescaped(r, s) == 0)
        bin_bytes(b, r->scratch.data, r->scratch.len);
    else
        bin_null(b);
}

/* The issues as a one-dimensional text[] (array_send: ndim, flags, element type, then
 * size and lower bound, then the elements; no element: ndim 0): every name the record
 * carries, known or not (a newer validator's), in its order. */
static void bin_issues(ar_rows *r, const hm_quality *q) {
    hm_buf *b = &r->copy;
    size_t len_at = b->len;
    be32(b, 0); /* the field's length, patched below */
    size_t arr_at = b->len;
    be32(b, 1);
    be32(b, 0);
    be32(b, TEXT_OID);
    size_t count_at = b->len;
    be32(b, 0); /* the element count, patched below */
    be32(b, 1);
    uint32_t count = 0;
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
                bin_bytes(b, r->scratch.data, r->scratch.len);
                count++;
            }
            p++;
        }
    } else {
        for (hm_qcodeset c = q->codes; c; c &= c - 1) {
            bin_cstr(b, hm_qcode_name((hm_qcode)__builtin_ctzll(c)));
            count++;
        }
    }
    if (count == 0) {
        b->len = arr_at + 12; /* ndim 0, flags, type: the empty array */
        patch32(b, arr_at, 0);
    } else {
        patch32(b, count_at, count);
    }
    patch32(b, len_at, (uint32_t)(b->len - arr_at));
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

static ar_row *new_row(ar_rows *r, const ar_source *src, bool rejected, const hm_buf *b) {
    if (r->n_rows == r->cap_rows) {
        r->cap_rows = r->cap_rows ? r->cap_rows * 2 : 1024;
        r->rows = hm_xrealloc(r->rows, r->cap_rows * sizeof(*r->rows));
    }
    ar_row *row = &r->rows[r->n_rows++];
    memset(row, 0, sizeof(*row));
    row->offset = src->offset;
    row->partition = src->partition;
    row->rejected = rejected;
    row->start = (uint32_t)b->len;
    return row;
}

static void put_source(hm_buf *b, const ar_source *src) {
    put_cstr(b, src->topic);
    tab(b);
    hm_buf_i64(b, src->partition);
    tab(b);
    hm_buf_i64(b, src->offset);
}

static void put_span_text(ar_rows *r, hm_buf *b, hm_span s) {
    if (unescaped(r, s) == 0)
        ar_copy_text(b, r->scratch.data, r->scratch.len);
    else
        put_null(b);
}

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

static const char *key_bytes(const ar_rows *r, uint32_t k, size_t *len) {
    uint32_t at = r->key_at[k];
    uint32_t end = k + 1 < r->n_keys ? r->key_at[k + 1] : (uint32_t)r->key_text.len;
    *len = end - at;
    return r->key_text.data + at;
}

static void key_slots_grow(ar_rows *r) {
    free(r->key_slots);
    r->n_slots = r->n_slots ? r->n_slots * 2 : 64;
    r->key_slots = hm_xcalloc(r->n_slots, sizeof(*r->key_slots));
    for (uint32_t k = 0; k < r->n_keys; k++) {
        size_t len;
        const char *p = key_bytes(r, k, &len);
        size_t i = hash_bytes(p, len) & (r->n_slots - 1);
        while (r->key_slots[i])
            i = (i + 1) & (r->n_slots - 1);
        r->key_slots[i] = k + 1;
    }
}

/* The index of r->key_tmp ("symbol\0exchange\0") among the batch's keys, added if new. */
static uint32_t intern_key(ar_rows *r) {
    if (2 * (r->n_keys + 1) > r->n_slots) key_slots_grow(r);
    const char *p = r->key_tmp.data;
    size_t n = r->key_tmp.len;
    size_t i = hash_bytes(p, n) & (r->n_slots - 1);
    for (; r->key_slots[i]; i = (i + 1) & (r->n_slots - 1)) {
        size_t len;
        const char *q = key_bytes(r, r->key_slots[i] - 1, &len);
        if (len == n && memcmp(p, q, n) == 0) return r->key_slots[i] - 1;
    }
    if (r->n_keys == r->cap_keys) {
        r->cap_keys = r->cap_keys ? r->cap_keys * 2 : 16;
        r->key_at = hm_xrealloc(r->key_at, r->cap_keys * sizeof(*r->key_at));
    }
    r->key_at[r->n_keys] = (uint32_t)r->key_text.len;
    hm_buf_append(&r->key_text, p, n);
    r->key_slots[i] = (uint32_t)r->n_keys + 1;
    return (uint32_t)r->n_keys++;
}

void ar_rows_key(const ar_rows *r, uint32_t k, const char **symbol, const char **exchange) {
    *symbol = r->key_text.data + r->key_at[k];
    *exchange = *symbol + strlen(*symbol) + 1;
}

/* symbol (unescaped in r->scratch) and the exchange's text become the row's key. */
static void note_key(ar_rows *r, ar_row *row, const hm_tick *t) {
    hm_buf_reset(&r->key_tmp);
    if (unescaped(r, t->symbol) == 0) hm_buf_append(&r->key_tmp, r->scratch.data, r->scratch.len);
    hm_buf_putc(&r->key_tmp, '\0');
    if (unescaped(r, t->exchange) == 0) hm_buf_append(&r->key_tmp, r->scratch.data, r->scratch.len);
    hm_buf_putc(&r->key_tmp, '\0');
    row->key = intern_key(r);
}

static void add_accepted(ar_rows *r, const ar_source *src, const hm_quality *q) {
    hm_buf *b = &r->copy;
    const hm_tick *t = &q->tick;
    if (b->len == 0) hm_buf_append(b, k_binary_header, sizeof(k_binary_header));
    ar_row *row = new_row(r, src, false, b);
    row->ts_ms = t->ts_ms;
    row->price = t->price;
    row->trade = t->kind != HM_KIND_LIQUIDATION;
    row->quality = (float)q->score;
    be16(b, N_COLUMNS);
    bin_time(b, t->ts_ms);
    bin_span(r, b, t->symbol);
    bin_span(r, b, t->exchange);
    bin_f8(b, t->price);
    if (t->st[HM_FIELD_VOLUME] == HM_F_OK) {
        bin_f8(b, t->volume);
        row->volume = t->volume;
        row->has_volume = true;
    } else {
        bin_null(b);
    }
    bin_f4(b, row->quality);
    bin_issues(r, q);
    if (t->st[HM_FIELD_TRADE_ID] == HM_F_OK)
        bin_span(r, b, t->trade_id);
    else
        bin_null(b);
    if (t->side != HM_SIDE_NONE)
        bin_cstr(b, hm_side_name(t->side));
    else
        bin_null(b);
    bin_cstr(b, row->trade ? "trade" : "liquidation");
    if (q->st[HM_QFIELD_PROCESSED_AT] == HM_F_OK)
        bin_time(b, q->processed_at_ms);
    else
        bin_null(b);
    bin_cstr(b, src->topic);
    bin_i4(b, src->partition);
    bin_i8(b, src->offset);
    row->len = (uint32_t)(b->len - row->start);
    note_key(r, row, t);
    r->accepted++;
    note_day(r, ar_day_of_ms(t->ts_ms));
}

/* A reject row keeps what is known of the record (symbol, exchange, timestamp when they
 * are usable) beside the reason and the record's bytes. */
static void add_rejected(ar_rows *r, const ar_source *src, const hm_quality *q, bool decoded,
                         const ar_rows_limits *lim, const char *payload, size_t len,
                         const ar_reject *why) {
    hm_buf *b = &r->rejects;
    const hm_tick *t = &q->tick;
    ar_row *row = new_row(r, src, true, b);
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
    if (decoded && t->st[HM_FIELD_SYMBOL] == HM_F_OK)
        put_span_text(r, b, t->symbol);
    else
        put_null(b);
    tab(b);
    if (decoded && t->st[HM_FIELD_EXCHANGE] == HM_F_OK)
        put_span_text(r, b, t->exchange);
    else
        put_null(b);
    tab(b);
    if (decoded && t->st[HM_FIELD_TIMESTAMP] == HM_F_OK && t->ts_ms >= lim->min_ts_ms &&
        t->ts_ms <= lim->max_ts_ms)
        ar_copy_time(b, t->ts_ms);
    else
        put_null(b);
    tab(b);
    put_bytea(b, payload, len);
    hm_buf_putc(b, '\n');
    row->len = (uint32_t)(b->len - row->start);
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

static int64_t floor_of(const ar_offset_floor *floors, size_t n, int32_t partition) {
    for (size_t i = 0; i < n; i++)
        if (floors[i].partition == partition) return floors[i].next_offset;
    return INT64_MIN;
}

/* Rows keep their order in both buffers, so the kept ones move down in place (after the
 * binary COPY's header). */
size_t ar_rows_drop_archived(ar_rows *r, const ar_offset_floor *floors, size_t n) {
    size_t kept = 0;
    uint32_t copy_len = r->copy.len ? (uint32_t)sizeof(k_binary_header) : 0, rejects_len = 0;
    r->accepted = r->rejected = 0;
    for (size_t i = 0; i < r->n_rows; i++) {
        ar_row row = r->rows[i];
        if (row.offset < floor_of(floors, n, row.partition)) continue;
        hm_buf *b = row.rejected ? &r->rejects : &r->copy;
        uint32_t *at = row.rejected ? &rejects_len : &copy_len;
        memmove(b->data + *at, b->data + row.start, row.len);
        row.start = *at;
        *at += row.len;
        if (row.rejected)
            r->rejected++;
        else
            r->accepted++;
        r->rows[kept++] = row;
    }
    r->copy.len = copy_len;
    r->rejects.len = rejects_len;
    size_t dropped = r->n_rows - kept;
    r->n_rows = kept;
    return dropped;
}

void ar_rows_reset(ar_rows *r) {
    hm_buf_reset(&r->copy);
    hm_buf_reset(&r->rejects);
    hm_buf_reset(&r->key_text);
    r->n_rows = 0;
    r->accepted = r->rejected = 0;
    r->n_days = 0;
    r->n_keys = 0;
    if (r->key_slots) memset(r->key_slots, 0, r->n_slots * sizeof(*r->key_slots));
}

void ar_rows_free(ar_rows *r) {
    hm_buf_free(&r->copy);
    hm_buf_free(&r->rejects);
    hm_buf_free(&r->key_text);
    hm_buf_free(&r->scratch);
    hm_buf_free(&r->key_tmp);
    free(r->rows);
    free(r->days);
    free(r->key_at);
    free(r->key_slots);
    memset(r, 0, sizeof(*r));
}
