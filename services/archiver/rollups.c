/*
 * rollups.c: a batch's partial candles and day counts (rollups.h). One open-addressing
 * table over (width, bucket, key) for the candles and (day, key's exchange) for the days;
 * a batch has few of either, so the table stays small however many rows it has.
 */
#include "rollups.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"

#define MS_PER_DAY 86400000LL

const char ar_rollups_candle_columns[] =
    "width_s, bucket, symbol, exchange, open, open_ts, open_partition, open_offset, close, "
    "close_ts, close_partition, close_offset, high, low, volume, trade_count, sum_quality, "
    "sum_price, sum_price_sq";
const char ar_rollups_day_columns[] = "date, exchange, rows";

static const int64_t k_widths_s[] = AR_CANDLE_WIDTHS_S;
#define DAY_KIND (-1) /* a slot counting rows of (day, exchange) */

typedef struct ar_partial {
    bool used;
    int32_t width_s; /* or DAY_KIND */
    uint32_t key;    /* ar_rows key; for a day, the first key of its exchange seen */
    int64_t bucket;  /* bucket start (ms), or the day number */
    int64_t count;
    int64_t open_ts, close_ts, open_offset, close_offset;
    int32_t open_partition, close_partition;
    double open, close, high, low;
    ar_dec volume, quality, price, price_sq;
} ar_partial;

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b < 0) ? q - 1 : q;
}

static uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static bool same_exchange(const ar_rows *r, uint32_t a, uint32_t b) {
    if (a == b) return true;
    const char *sa, *ea, *sb, *eb;
    ar_rows_key(r, a, &sa, &ea);
    ar_rows_key(r, b, &sb, &eb);
    return strcmp(ea, eb) == 0;
}

static uint64_t exchange_hash(const ar_rows *r, uint32_t key) {
    const char *s, *e;
    ar_rows_key(r, key, &s, &e);
    uint64_t h = 1469598103934665603ULL;
    for (; *e; e++)
        h = (h ^ (unsigned char)*e) * 1099511628211ULL;
    return h;
}

static void grow(ar_rollups *ru, const ar_rows *r);

/* The slot of (width_s, bucket, key); days match on the exchange alone. */
static ar_partial *slot(ar_rollups *ru, const ar_rows *r, int32_t width_s, int64_t bucket,
                        uint32_t key) {
    if (2 * (ru->used + 1) > ru->n_slots) grow(ru, r);
    uint64_t kh = width_s == DAY_KIND ? exchange_hash(r, key) : key;
    size_t i = mix(kh * 31 + (uint64_t)bucket * 7 + (uint64_t)width_s) & (ru->n_slots - 1);
    for (;; i = (i + 1) & (ru->n_slots - 1)) {
        ar_partial *p = &ru->slots[i];
        if (!p->used) {
            memset(p, 0, sizeof(*p));
            p->used = true;
            p->width_s = width_s;
            p->bucket = bucket;
            p->key = key;
            ru->used++;
            return p;
        }
        if (p->width_s == width_s && p->bucket == bucket &&
            (width_s == DAY_KIND ? same_exchange(r, p->key, key) : p->key == key))
            return p;
    }
}

static void grow(ar_rollups *ru, const ar_rows *r) {
    ar_partial *old = ru->slots;
    size_t n_old = ru->n_slots;
    ru->n_slots = n_old ? n_old * 2 : 64;
    ru->slots = hm_xcalloc(ru->n_slots, sizeof(*ru->slots));
    ru->used = 0;
    for (size_t i = 0; i < n_old; i++) {
        if (!old[i].used) continue;
        ar_partial *p = slot(ru, r, old[i].width_s, old[i].bucket, old[i].key);
        *p = old[i];
    }
    free(old);
}

/* (ts, partition, offset) order: the trade that opens or closes a bucket. */
static int cmp_key(int64_t ts_a, int32_t part_a, int64_t off_a, int64_t ts_b, int32_t part_b,
                   int64_t off_b) {
    if (ts_a != ts_b) return ts_a < ts_b ? -1 : 1;
    if (part_a != part_b) return part_a < part_b ? -1 : 1;
    if (off_a != off_b) return off_a < off_b ? -1 : 1;
    return 0;
}

static void tab(hm_buf *b) {
    hm_buf_putc(b, '\t');
}

static void put_candle(hm_buf *b, const ar_rows *r, const ar_partial *p) {
    const char *symbol, *exchange;
    ar_rows_key(r, p->key, &symbol, &exchange);
    hm_buf_i64(b, p->width_s);
    tab(b);
    ar_copy_time(b, p->bucket);
    tab(b);
    ar_copy_text(b, symbol, strlen(symbol));
    tab(b);
    ar_copy_text(b, exchange, strlen(exchange));
    tab(b);
    hm_json_double(b, p->open);
    tab(b);
    ar_copy_time(b, p->open_ts);
    tab(b);
    hm_buf_i64(b, p->open_partition);
    tab(b);
    hm_buf_i64(b, p->open_offset);
    tab(b);
    hm_json_double(b, p->close);
    tab(b);
    ar_copy_time(b, p->close_ts);
    tab(b);
    hm_buf_i64(b, p->close_partition);
    tab(b);
    hm_buf_i64(b, p->close_offset);
    tab(b);
    hm_json_double(b, p->high);
    tab(b);
    hm_json_double(b, p->low);
    tab(b);
    ar_dec_put(b, p->volume);
    tab(b);
    hm_buf_i64(b, p->count);
    tab(b);
    ar_dec_put(b, p->quality);
    tab(b);
    ar_dec_put(b, p->price);
    tab(b);
    ar_dec_put(b, p->price_sq);
    hm_buf_putc(b, '\n');
}

static void start(ar_partial *p, const ar_row *row) {
    p->count = 0;
    p->open_ts = p->close_ts = row->ts_ms;
    p->open_partition = p->close_partition = row->partition;
    p->open_offset = p->close_offset = row->offset;
    p->open = p->close = p->high = p->low = row->price;
    p->volume = p->quality = p->price = p->price_sq = (ar_dec){0, 0};
}

/* A trade's sums, as NUMERIC makes them (converted once for every width it folds into). */
typedef struct trade_sums {
    ar_dec price, volume, quality, price_sq;
} trade_sums;

/* Fold one trade; a sum that leaves 128 bits sends the partial as it is (to the spill)
 * and starts anew (the database adds the two). */
static void fold(ar_rollups *ru, const ar_rows *r, ar_partial *p, const ar_row *row,
                 const trade_sums *t) {
    ar_dec price = t->price, vol = t->volume, q = t->quality, sq = t->price_sq;
    if (p->count > 0) {
        ar_partial next = *p;
        if (ar_dec_add(&next.volume, vol) && ar_dec_add(&next.quality, q) &&
            ar_dec_add(&next.price, price) && ar_dec_add(&next.price_sq, sq)) {
            p->volume = next.volume;
            p->quality = next.quality;
            p->price = next.price;
            p->price_sq = next.price_sq;
            p->count++;
            if (cmp_key(row->ts_ms, row->partition, row->offset, p->open_ts, p->open_partition,
                        p->open_offset) < 0) {
                p->open_ts = row->ts_ms;
                p->open_partition = row->partition;
                p->open_offset = row->offset;
                p->open = row->price;
            }
            if (cmp_key(row->ts_ms, row->partition, row->offset, p->close_ts, p->close_partition,
                        p->close_offset) > 0) {
                p->close_ts = row->ts_ms;
                p->close_partition = row->partition;
                p->close_offset = row->offset;
                p->close = row->price;
            }
            if (row->price > p->high) p->high = row->price;
            if (row->price < p->low) p->low = row->price;
            return;
        }
        put_candle(&ru->spill, r, p);
        ru->n_spill++;
    }
    start(p, row);
    p->count = 1;
    p->volume = vol;
    p->quality = q;
    p->price = price;
    p->price_sq = sq;
}

void ar_rollups_reset(ar_rollups *ru) {
    if (ru->slots) memset(ru->slots, 0, ru->n_slots * sizeof(*ru->slots));
    ru->used = 0;
    ru->folded = 0;
    hm_buf_reset(&ru->spill);
    ru->n_spill = 0;
}

void ar_rollups_fold(ar_rollups *ru, const ar_rows *r) {
    for (; ru->folded < r->n_rows; ru->folded++) {
        const ar_row *row = &r->rows[ru->folded];
        if (row->rejected) continue;
        slot(ru, r, DAY_KIND, floor_div(row->ts_ms, MS_PER_DAY), row->key)->count++;
        if (!row->trade) continue;
        trade_sums t = {.price = ar_dec_of_double(row->price),
                        .volume = row->has_volume ? ar_dec_of_double(row->volume) : (ar_dec){0, 0},
                        .quality = ar_dec_of_float(row->quality)};
        t.price_sq = ar_dec_square(t.price);
        for (size_t w = 0; w < HM_ARRAY_LEN(k_widths_s); w++) {
            int64_t width_ms = k_widths_s[w] * 1000;
            int64_t bucket = floor_div(row->ts_ms, width_ms) * width_ms;
            fold(ru, r, slot(ru, r, (int32_t)k_widths_s[w], bucket, row->key), row, &t);
        }
    }
}

size_t ar_rollups_write(const ar_rollups *ru, const ar_rows *r, hm_buf *candles, hm_buf *days) {
    size_t written = ru->n_spill;
    if (ru->spill.len) hm_buf_append(candles, ru->spill.data, ru->spill.len);
    for (size_t i = 0; i < ru->n_slots; i++) {
        const ar_partial *p = &ru->slots[i];
        if (!p->used) continue;
        if (p->width_s != DAY_KIND) {
            put_candle(candles, r, p);
            written++;
            continue;
        }
        char day[11];
        const char *symbol, *exchange;
        ar_day_format((int32_t)p->bucket, day);
        ar_rows_key(r, p->key, &symbol, &exchange);
        hm_buf_puts(days, day);
        tab(days);
        ar_copy_text(days, exchange, strlen(exchange));
        tab(days);
        hm_buf_i64(days, p->count);
        hm_buf_putc(days, '\n');
    }
    return written;
}

void ar_rollups_free(ar_rollups *ru) {
    free(ru->slots);
    hm_buf_free(&ru->spill);
    memset(ru, 0, sizeof(*ru));
}
