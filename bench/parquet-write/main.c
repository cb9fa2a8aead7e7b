/*
 * parquet-write: how fast the archiver's Parquet writer (services/archiver/parquet.c) turns
 * trades into a file, and how small the file is next to the same trades as JSON lines.
 *
 * Rows come from a deterministic generator (--seed): timestamps in µs, mostly increasing
 * with a few out of order; a handful of symbols, exchanges and sides (dictionary columns);
 * prices, volumes, a float quality score; issues (mostly NULL) and trade ids (distinct,
 * some NULL: the dictionary falls back to PLAIN when they outgrow it). The rows are made
 * twice from the same seed: once to measure their JSON-lines size (and write them with
 * --emit-json, the expected values for tests/integration/test_parquet_writer.py), once,
 * timed, into the writer. Prints one JSON object: rows, bytes, ratio, seconds, MB/s.
 *
 *   parquet-write [--rows N] [--codec zstd|snappy|none] [--row-group-rows N] [--seed S]
 *                 [--dict-max-entries N] [--page-bytes N] [--out FILE] [--emit-json FILE]
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/buf.h"
#include "himari/common.h"
#include "parquet.h"

enum {
    COL_TS,
    COL_SYMBOL,
    COL_EXCHANGE,
    COL_PRICE,
    COL_VOLUME,
    COL_QUALITY,
    COL_ISSUES,
    COL_TRADE_ID,
    COL_SIDE,
    COL_PARTITION,
    COL_OFFSET,
    NCOLS
};

static const ar_pq_column k_schema[NCOLS] = {
    [COL_TS] = {"ts", AR_PQ_TIMESTAMP_US, false, false},
    [COL_SYMBOL] = {"symbol", AR_PQ_STRING, false, true},
    [COL_EXCHANGE] = {"exchange", AR_PQ_STRING, false, true},
    [COL_PRICE] = {"price", AR_PQ_DOUBLE, false, false},
    [COL_VOLUME] = {"volume", AR_PQ_DOUBLE, false, false},
    [COL_QUALITY] = {"quality_score", AR_PQ_FLOAT, false, false},
    [COL_ISSUES] = {"issues", AR_PQ_STRING, true, true},
    [COL_TRADE_ID] = {"trade_id", AR_PQ_STRING, true, true},
    [COL_SIDE] = {"side", AR_PQ_STRING, false, true},
    [COL_PARTITION] = {"source_partition", AR_PQ_INT32, false, false},
    [COL_OFFSET] = {"source_offset", AR_PQ_INT64, false, false},
};

static const char *const k_symbols[] = {"BTC-USD", "ETH-USD",  "SOL-USD",
                                        "XRP-USD", "DOGE-USD", "ADA-USD"};
static const double k_base_price[] = {97000.0, 3400.0, 190.0, 2.3, 0.31, 0.95};
static const char *const k_exchanges[] = {"coinbase", "kraken", "bitstamp"};
static const char *const k_issues[] = {"price_jump", "stale", "crossed_book", "price_jump,stale"};
#define NPARTITIONS 12

/** One generated trade; strings point into the generator or its id buffer. */
typedef struct trade {
    int64_t ts_us;
    const char *symbol;
    const char *exchange;
    double price;
    double volume;
    float quality;
    const char *issues; /* NULL = NULL */
    const char *trade_id;
    const char *side;
    int32_t partition;
    int64_t offset;
} trade;

typedef struct trade_gen {
    uint64_t s;
    int64_t n;
    int64_t offsets[NPARTITIONS];
    char id[32];
} trade_gen;

static uint64_t rng_next(trade_gen *g) { /* xorshift64* */
    g->s ^= g->s >> 12;
    g->s ^= g->s << 25;
    g->s ^= g->s >> 27;
    return g->s * 0x2545F4914F6CDD1Dull;
}

static void trade_gen_init(trade_gen *g, uint64_t seed) {
    memset(g, 0, sizeof(*g));
    g->s = seed * 0x9E3779B97F4A7C15ull + 1;
}

static void trade_next(trade_gen *g, trade *t) {
    uint64_t r = rng_next(g);
    int64_t i = g->n++;
    t->ts_us = 1767225600000000 + i * 1000 + (int64_t)(r % 1000); /* 2026-01-01 UTC on */
    if (r % 50 == 0) t->ts_us -= (int64_t)(rng_next(g) % 50000);  /* 2% up to 50 ms late */
    size_t sym = rng_next(g) % HM_ARRAY_LEN(k_symbols);
    t->symbol = k_symbols[sym];
    t->exchange = k_exchanges[rng_next(g) % HM_ARRAY_LEN(k_exchanges)];
    double move = (double)(rng_next(g) % 20001) / 10000.0 - 1.0; /* ±1% */
    t->price = (double)llround(k_base_price[sym] * (1 + move / 100) * 100) / 100;
    t->volume = (double)(rng_next(g) % 1000000000) / 1e8;
    t->quality = (float)(rng_next(g) % 1001) / 1000.0f;
    uint64_t q = rng_next(g);
    t->issues = q % 20 == 0 ? k_issues[(q / 20) % HM_ARRAY_LEN(k_issues)] : NULL;
    if (q % 33 == 1) {
        t->trade_id = NULL;
    } else {
        snprintf(g->id, sizeof(g->id), "%" PRId64 "-%04x", 900000000 + i,
                 (unsigned)(rng_next(g) & 0xFFFF));
        t->trade_id = g->id;
    }
    t->side = rng_next(g) & 1 ? "buy" : "sell";
    t->partition = (int32_t)(rng_next(g) % NPARTITIONS);
    t->offset = g->offsets[t->partition]++;
}

/* The same trade as one JSON line (the expected values a reader must find). */
static void trade_json(hm_buf *b, const trade *t) {
    hm_buf_puts(b, "{\"ts\":");
    hm_buf_i64(b, t->ts_us);
    hm_buf_puts(b, ",\"symbol\":");
    hm_json_cstr(b, t->symbol);
    hm_buf_puts(b, ",\"exchange\":");
    hm_json_cstr(b, t->exchange);
    hm_buf_puts(b, ",\"price\":");
    hm_json_double(b, t->price);
    hm_buf_puts(b, ",\"volume\":");
    hm_json_double(b, t->volume);
    hm_buf_printf(b, ",\"quality_score\":%.9g", (double)t->quality);
    hm_buf_puts(b, ",\"issues\":");
    if (t->issues)
        hm_json_cstr(b, t->issues);
    else
        hm_buf_puts(b, "null");
    hm_buf_puts(b, ",\"trade_id\":");
    if (t->trade_id)
        hm_json_cstr(b, t->trade_id);
    else
        hm_buf_puts(b, "null");
    hm_buf_puts(b, ",\"side\":");
    hm_json_cstr(b, t->side);
    hm_buf_puts(b, ",\"source_partition\":");
    hm_buf_i64(b, t->partition);
    hm_buf_puts(b, ",\"source_offset\":");
    hm_buf_i64(b, t->offset);
    hm_buf_puts(b, "}\n");
}

static int put_opt_string(ar_pq_writer *w, size_t col, const char *s) {
    return s ? ar_pq_put_string(w, col, s, strlen(s)) : ar_pq_put_null(w, col);
}

static int trade_put(ar_pq_writer *w, const trade *t) {
    int rc = 0;
    if (!rc) rc = ar_pq_put_int64(w, COL_TS, t->ts_us);
    if (!rc) rc = ar_pq_put_string(w, COL_SYMBOL, t->symbol, strlen(t->symbol));
    if (!rc) rc = ar_pq_put_string(w, COL_EXCHANGE, t->exchange, strlen(t->exchange));
    if (!rc) rc = ar_pq_put_double(w, COL_PRICE, t->price);
    if (!rc) rc = ar_pq_put_double(w, COL_VOLUME, t->volume);
    if (!rc) rc = ar_pq_put_float(w, COL_QUALITY, t->quality);
    if (!rc) rc = put_opt_string(w, COL_ISSUES, t->issues);
    if (!rc) rc = put_opt_string(w, COL_TRADE_ID, t->trade_id);
    if (!rc) rc = ar_pq_put_string(w, COL_SIDE, t->side, strlen(t->side));
    if (!rc) rc = ar_pq_put_int32(w, COL_PARTITION, t->partition);
    if (!rc) rc = ar_pq_put_int64(w, COL_OFFSET, t->offset);
    if (!rc) rc = ar_pq_end_row(w);
    return rc;
}

typedef struct args {
    int64_t rows;
    ar_pq_options opt;
    uint64_t seed;
    const char *out;
    const char *emit_json;
} args;

static void usage(void) {
    fprintf(stderr, "usage: parquet-write [--rows N] [--codec zstd|snappy|none] "
                    "[--row-group-rows N] [--seed S] [--dict-max-entries N] [--page-bytes N] "
                    "[--out FILE] "
                    "[--emit-json FILE]\n");
    exit(2);
}

static void parse_args(int argc, char **argv, args *a) {
    *a = (args){.rows = 1000000, .seed = 1, .out = "/tmp/parquet-write.parquet"};
    a->opt.codec = AR_PQ_ZSTD;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        i++;
        if (strcmp(k, "--rows") == 0)
            a->rows = strtoll(v, NULL, 10);
        else if (strcmp(k, "--row-group-rows") == 0)
            a->opt.row_group_rows = strtoll(v, NULL, 10);
        else if (strcmp(k, "--seed") == 0)
            a->seed = strtoull(v, NULL, 10);
        else if (strcmp(k, "--dict-max-entries") == 0)
            a->opt.dict_max_entries = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(k, "--page-bytes") == 0)
            a->opt.page_bytes = strtoull(v, NULL, 10);
        else if (strcmp(k, "--out") == 0)
            a->out = v;
        else if (strcmp(k, "--emit-json") == 0)
            a->emit_json = v;
        else if (strcmp(k, "--codec") == 0) {
            if (ar_pq_codec_parse(v, &a->opt.codec) != 0) {
                fprintf(stderr, "parquet-write: unknown codec '%s'\n", v);
                exit(2);
            }
        } else
            usage();
    }
    if (a->rows < 0) usage();
}

/* Pass 1: the rows' JSON-lines size, written to path when not NULL. */
static int json_pass(const args *a, int64_t *bytes) {
    FILE *f = NULL;
    if (a->emit_json && !(f = fopen(a->emit_json, "w"))) {
        fprintf(stderr, "parquet-write: %s: %s\n", a->emit_json, strerror(errno));
        return -errno;
    }
    trade_gen g;
    trade_gen_init(&g, a->seed);
    hm_buf b = HM_BUF_INIT;
    *bytes = 0;
    for (int64_t i = 0; i < a->rows; i++) {
        trade t;
        trade_next(&g, &t);
        trade_json(&b, &t);
        if (b.len >= (1u << 20) || i + 1 == a->rows) {
            *bytes += (int64_t)b.len;
            if (f) fwrite(b.data, 1, b.len, f);
            hm_buf_reset(&b);
        }
    }
    hm_buf_free(&b);
    if (f && fclose(f) != 0) {
        fprintf(stderr, "parquet-write: %s: %s\n", a->emit_json, strerror(errno));
        return -EIO;
    }
    return 0;
}

/* Pass 2, timed: the same rows into the writer. */
static int parquet_pass(const args *a, ar_pq_stats *st, double *seconds) {
    char err[512] = "";
    ar_pq_writer *w;
    uint64_t t0 = hm_mono_ns();
    int rc = ar_pq_open(&w, a->out, k_schema, NCOLS, &a->opt, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "parquet-write: %s\n", err);
        return rc;
    }
    trade_gen g;
    trade_gen_init(&g, a->seed);
    for (int64_t i = 0; i < a->rows; i++) {
        trade t;
        trade_next(&g, &t);
        if ((rc = trade_put(w, &t)) != 0) {
            fprintf(stderr, "parquet-write: row %" PRId64 ": %s\n", i, ar_pq_errmsg(w));
            ar_pq_abort(w);
            return rc;
        }
    }
    if ((rc = ar_pq_close(w, st, err, sizeof(err))) != 0) {
        fprintf(stderr, "parquet-write: %s\n", err);
        return rc;
    }
    *seconds = (double)(hm_mono_ns() - t0) / 1e9;
    return 0;
}

int main(int argc, char **argv) {
    args a;
    parse_args(argc, argv, &a);
    int64_t json_bytes = 0;
    if (json_pass(&a, &json_bytes) != 0) return 1;
    ar_pq_stats st;
    double seconds;
    if (parquet_pass(&a, &st, &seconds) != 0) return 1;
    printf("{\"rows\":%" PRId64 ",\"row_groups\":%" PRId64 ",\"codec\":\"%s\",\"bytes\":%" PRId64
           ",\"uncompressed_bytes\":%" PRId64 ",\"json_bytes\":%" PRId64
           ",\"ratio\":%.2f,\"seconds\":%.3f,\"mb_per_s\":%.1f,\"dict_fallbacks\":%" PRId64
           ",\"out\":\"%s\"}\n",
           st.rows, st.row_groups, ar_pq_codec_name(a.opt.codec), st.bytes, st.uncompressed_bytes,
           json_bytes, st.bytes ? (double)json_bytes / (double)st.bytes : 0, seconds,
           seconds > 0 ? (double)json_bytes / 1e6 / seconds : 0, st.dict_fallbacks, a.out);
    return 0;
}
