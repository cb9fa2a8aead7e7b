/*
 * parquet.c: the archiver's Parquet writer (see parquet.h for the contract).
 *
 * Flow: ar_pq_put_* append a row's values to per-column buffers (PLAIN bytes, definition
 * levels, and dictionary indices while the chunk's dictionary stays small); every
 * row_group_rows rows flush_row_group() writes each column chunk as [dictionary page]
 * data pages, and keeps the chunk's Thrift metadata for the footer; ar_pq_close writes
 * FileMetaData, fsyncs and renames. Memory is one row group of values plus its metadata.
 *
 * The dictionary decision is per column chunk: a chunk whose dictionary outgrows
 * dict_max_bytes or dict_max_entries drops it and is written PLAIN. Simpler than a
 * mid-chunk switch, and the PLAIN bytes are kept anyway, at the cost of buffering a
 * chunk's values twice (PLAIN and indices) while the dictionary lives.
 */
#include "parquet.h"

#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <snappy-c.h>
#include <zstd.h>

/* parquet.thrift enum values. */
enum { PQ_T_INT32 = 1, PQ_T_INT64 = 2, PQ_T_FLOAT = 4, PQ_T_DOUBLE = 5, PQ_T_BYTE_ARRAY = 6 };
enum { PQ_REQUIRED = 0, PQ_OPTIONAL = 1 };
enum { PQ_CT_UTF8 = 0, PQ_CT_TIMESTAMP_MICROS = 10 };
enum { PQ_ENC_PLAIN = 0, PQ_ENC_RLE = 3, PQ_ENC_RLE_DICTIONARY = 8 };
enum { PQ_PAGE_DATA = 0, PQ_PAGE_DICTIONARY = 2 };
enum { PQ_CODEC_UNCOMPRESSED = 0, PQ_CODEC_SNAPPY = 1, PQ_CODEC_ZSTD = 6 };

#define PQ_CREATED_BY      "himari archiver version " HM_VERSION
#define PQ_MAX_STRING      (64u << 20) /* bytes; a trade field is never near this */
#define PQ_OUT_FLUSH_BYTES (8u << 20)  /* staged output written to the fd past this */
#define PQ_RLE_MAX_GROUPS  63          /* bit-packed groups per run: a one-byte header */

/* ---- Thrift compact protocol ------------------------------------------------------- */

void ar_tc_varint(hm_buf *out, uint64_t v) {
    uint8_t tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    hm_buf_append(out, tmp, n);
}

void ar_tc_begin(ar_tc *t, hm_buf *out) {
    t->out = out;
    t->depth = 0;
    t->last_id[0] = 0;
}

void ar_tc_field(ar_tc *t, int16_t id, uint8_t type) {
    int delta = id - t->last_id[t->depth];
    if (delta > 0 && delta <= 15) {
        hm_buf_putc(t->out, (char)((delta << 4) | type));
    } else {
        hm_buf_putc(t->out, (char)type);
        ar_tc_varint(t->out, ar_tc_zigzag(id));
    }
    t->last_id[t->depth] = id;
}

void ar_tc_i32(ar_tc *t, int16_t id, int32_t v) {
    ar_tc_field(t, id, AR_TC_I32);
    ar_tc_varint(t->out, ar_tc_zigzag(v));
}

void ar_tc_i64(ar_tc *t, int16_t id, int64_t v) {
    ar_tc_field(t, id, AR_TC_I64);
    ar_tc_varint(t->out, ar_tc_zigzag(v));
}

void ar_tc_bool(ar_tc *t, int16_t id, bool v) {
    ar_tc_field(t, id, v ? AR_TC_TRUE : AR_TC_FALSE);
}

void ar_tc_binary(ar_tc *t, int16_t id, const void *p, size_t n) {
    ar_tc_field(t, id, AR_TC_BINARY);
    ar_tc_varint(t->out, n);
    hm_buf_append(t->out, p, n);
}

void ar_tc_list(ar_tc *t, int16_t id, uint8_t elem, size_t n) {
    ar_tc_field(t, id, AR_TC_LIST);
    if (n < 15) {
        hm_buf_putc(t->out, (char)((n << 4) | elem));
    } else {
        hm_buf_putc(t->out, (char)(0xF0 | elem));
        ar_tc_varint(t->out, n);
    }
}

void ar_tc_struct(ar_tc *t, int16_t id) {
    if (id > 0) ar_tc_field(t, id, AR_TC_STRUCT);
    if (t->depth + 1 >= AR_TC_MAX_DEPTH) hm_panic("parquet: thrift nesting deeper than %d", 8);
    t->last_id[++t->depth] = 0;
}

void ar_tc_end(ar_tc *t) {
    hm_buf_putc(t->out, AR_TC_STOP);
    if (t->depth > 0) t->depth--;
}

/* List elements carry no field header. */
static void tc_elem_i32(ar_tc *t, int32_t v) {
    ar_tc_varint(t->out, ar_tc_zigzag(v));
}

static void tc_elem_binary(ar_tc *t, const void *p, size_t n) {
    ar_tc_varint(t->out, n);
    hm_buf_append(t->out, p, n);
}

/* ---- RLE / bit-packed hybrid -------------------------------------------------------- */

static void rle_run(hm_buf *out, uint32_t value, size_t count, int bit_width) {
    ar_tc_varint(out, (uint64_t)count << 1);
    for (int i = 0; i < (bit_width + 7) / 8; i++)
        hm_buf_putc(out, (char)(value >> (8 * i)));
}

/* count values as bit-packed runs; the last group is padded with zeros. */
static void bitpacked_runs(hm_buf *out, const uint32_t *v, size_t count, int bit_width) {
    size_t done = 0;
    while (done < count) {
        size_t groups = (count - done + 7) / 8;
        if (groups > PQ_RLE_MAX_GROUPS) groups = PQ_RLE_MAX_GROUPS;
        ar_tc_varint(out, (groups << 1) | 1);
        uint64_t acc = 0;
        int nbits = 0;
        for (size_t i = 0; i < groups * 8; i++) {
            uint64_t x = done + i < count ? v[done + i] : 0;
            acc |= x << nbits;
            nbits += bit_width;
            while (nbits >= 8) {
                hm_buf_putc(out, (char)(acc & 0xFF));
                acc >>= 8;
                nbits -= 8;
            }
        }
        assert(nbits == 0); /* 8 values of any width end on a byte boundary */
        done += groups * 8;
    }
}

void ar_pq_rle_encode(hm_buf *out, const uint32_t *v, size_t n, int bit_width) {
    assert(bit_width >= 0 && bit_width <= 32);
    size_t lit_start = 0, i = 0;
    while (i < n) {
        size_t run = 1;
        while (i + run < n && v[i + run] == v[i])
            run++;
        if (run < 8) {
            i += run; /* stays in the pending literals [lit_start, i) */
            continue;
        }
        /* A bit-packed run before an RLE run must hold whole groups of 8: lend it values. */
        size_t pad = (8 - (i - lit_start) % 8) % 8;
        if (run - pad < 8) {
            i += run;
            continue;
        }
        i += pad;
        run -= pad;
        if (i > lit_start) bitpacked_runs(out, v + lit_start, i - lit_start, bit_width);
        rle_run(out, v[i], run, bit_width);
        i += run;
        lit_start = i;
    }
    if (n > lit_start) bitpacked_runs(out, v + lit_start, n - lit_start, bit_width);
}

/* ---- codecs ------------------------------------------------------------------------- */

int ar_pq_codec_parse(const char *name, ar_pq_codec *out) {
    static const struct {
        const char *name;
        ar_pq_codec codec;
    } names[] = {{"none", AR_PQ_NONE}, {"snappy", AR_PQ_SNAPPY}, {"zstd", AR_PQ_ZSTD}};
    for (size_t i = 0; name && i < HM_ARRAY_LEN(names); i++) {
        if (strcmp(name, names[i].name) == 0) {
            *out = names[i].codec;
            return 0;
        }
    }
    return -EINVAL;
}

const char *ar_pq_codec_name(ar_pq_codec c) {
    switch (c) {
        case AR_PQ_NONE:
            return "none";
        case AR_PQ_SNAPPY:
            return "snappy";
        case AR_PQ_ZSTD:
            return "zstd";
    }
    return "?";
}

static int codec_thrift(ar_pq_codec c) {
    return c == AR_PQ_SNAPPY ? PQ_CODEC_SNAPPY
           : c == AR_PQ_ZSTD ? PQ_CODEC_ZSTD
                             : PQ_CODEC_UNCOMPRESSED;
}

/* ---- the writer's state ------------------------------------------------------------- */

typedef struct pq_dict_entry {
    uint32_t off; /* value bytes at plain.data + off (after a string's length prefix) */
    uint32_t len;
    uint32_t hash;
} pq_dict_entry;

/** A column chunk's dictionary: its PLAIN page and an open-addressing index over it. */
typedef struct pq_dict {
    hm_buf plain;
    pq_dict_entry *entries;
    uint32_t n, cap;
    uint32_t *slots; /* entry index + 1; 0 = empty */
    size_t nslots;   /* a power of two, at least twice n */
} pq_dict;

typedef union pq_scalar {
    int32_t i32;
    int64_t i64;
    float f;
    double d;
} pq_scalar;

typedef struct pq_col {
    char *name;
    ar_pq_type type;
    bool optional;
    bool want_dict;
    bool has_value; /* in the current row */
    /* this row group's values */
    size_t nrows;  /* values, NULLs included */
    hm_buf values; /* PLAIN bytes of the non-NULL values */
    hm_buf defs;   /* optional columns: one byte per row, 1 = value, 0 = NULL */
    bool dict_on;
    pq_dict dict;
    uint32_t *idx; /* dictionary index per non-NULL value while dict_on */
    size_t nidx, idx_cap;
    /* this row group's statistics */
    int64_t null_count;
    bool has_minmax;
    pq_scalar min, max;
    hm_buf smin, smax; /* strings */
} pq_col;

struct ar_pq_writer {
    char *path;
    char *tmp_path;
    int fd;
    ar_pq_options opt;
    pq_col *cols;
    size_t ncols;
    size_t nset; /* columns with a value in the current row */
    int64_t rg_rows;
    int64_t total_rows;
    int64_t nrowgroups;
    int64_t offset; /* file bytes so far, staged ones included */
    int64_t uncompressed;
    int64_t fallbacks;
    int failed; /* 0, or the error that ended the writer */
    hm_buf out; /* staged file bytes */
    hm_buf rowgroups;
    hm_buf page, zpage, hdr; /* scratch, reused for every page */
    uint32_t *levels;
    size_t levels_cap;
    ZSTD_CCtx *zctx;
    uint64_t hash_seed;
    char errmsg[256];
};

static int set_err(ar_pq_writer *w, int code, const char *fmt, ...) HM_PRINTF(3, 4);
static int set_err(ar_pq_writer *w, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->errmsg, sizeof(w->errmsg), fmt, ap);
    va_end(ap);
    return code;
}

/* An error after values were buffered: the writer cannot go on. */
static int fail(ar_pq_writer *w, int code) {
    w->failed = code;
    return code;
}

static void copy_err(char *err, size_t errlen, const char *msg) {
    if (err && errlen) snprintf(err, errlen, "%s", msg);
}

static const char *type_name(ar_pq_type t) {
    switch (t) {
        case AR_PQ_INT32:
            return "INT32";
        case AR_PQ_INT64:
            return "INT64";
        case AR_PQ_TIMESTAMP_US:
            return "TIMESTAMP_US";
        case AR_PQ_FLOAT:
            return "FLOAT";
        case AR_PQ_DOUBLE:
            return "DOUBLE";
        case AR_PQ_STRING:
            return "STRING";
    }
    return "?";
}

static int physical_type(ar_pq_type t) {
    switch (t) {
        case AR_PQ_INT32:
            return PQ_T_INT32;
        case AR_PQ_INT64:
        case AR_PQ_TIMESTAMP_US:
            return PQ_T_INT64;
        case AR_PQ_FLOAT:
            return PQ_T_FLOAT;
        case AR_PQ_DOUBLE:
            return PQ_T_DOUBLE;
        case AR_PQ_STRING:
            return PQ_T_BYTE_ARRAY;
    }
    return -1;
}

/** @brief PLAIN width of a fixed-size type; 0 for strings. */
static size_t fixed_width(ar_pq_type t) {
    switch (t) {
        case AR_PQ_INT32:
        case AR_PQ_FLOAT:
            return 4;
        case AR_PQ_INT64:
        case AR_PQ_TIMESTAMP_US:
        case AR_PQ_DOUBLE:
            return 8;
        case AR_PQ_STRING:
            return 0;
    }
    return 0;
}

/* ---- dictionary --------------------------------------------------------------------- */

/* Seeded per writer, so that a feed cannot pick trade ids that all probe one slot run. */
static uint32_t hash_bytes(uint64_t seed, const uint8_t *p, size_t n) {
    uint64_t h = (seed ^ n) * 0x9E3779B97F4A7C15ull;
    while (n >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        h = (h ^ x) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t x = 0;
    memcpy(&x, p, n);
    h = (h ^ x) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    return (uint32_t)h;
}

static void dict_free(pq_dict *d) {
    hm_buf_free(&d->plain);
    free(d->entries);
    free(d->slots);
    memset(d, 0, sizeof(*d));
}

static void dict_rehash(pq_dict *d, size_t nslots) {
    free(d->slots);
    d->slots = hm_xcalloc(nslots, sizeof(*d->slots));
    d->nslots = nslots;
    for (uint32_t i = 0; i < d->n; i++) {
        size_t s = d->entries[i].hash & (nslots - 1);
        while (d->slots[s])
            s = (s + 1) & (nslots - 1);
        d->slots[s] = i + 1;
    }
}

/* The column drops its dictionary; its chunk will be PLAIN. */
static void dict_fall_back(ar_pq_writer *w, pq_col *c) {
    dict_free(&c->dict);
    free(c->idx);
    c->idx = NULL;
    c->nidx = c->idx_cap = 0;
    c->dict_on = false;
    w->fallbacks++;
}

/**
 * @brief Record value p[0..n) in c's dictionary and its index in c->idx, or fall back to
 * PLAIN when a new entry would pass the limits.
 */
static void dict_add(ar_pq_writer *w, pq_col *c, const void *p, size_t n) {
    pq_dict *d = &c->dict;
    uint32_t h = hash_bytes(w->hash_seed, p, n);
    if (!d->slots) dict_rehash(d, 1024);
    size_t s = h & (d->nslots - 1);
    uint32_t found = 0;
    for (; d->slots[s]; s = (s + 1) & (d->nslots - 1)) {
        const pq_dict_entry *e = &d->entries[d->slots[s] - 1];
        if (e->hash == h && e->len == n && memcmp(d->plain.data + e->off, p, n) == 0) {
            found = d->slots[s];
            break;
        }
    }
    if (!found) {
        size_t plain_len = c->type == AR_PQ_STRING ? 4 + n : n;
        if (d->n + 1 > w->opt.dict_max_entries ||
            d->plain.len + plain_len > w->opt.dict_max_bytes) {
            dict_fall_back(w, c);
            return;
        }
        if (d->n == d->cap) {
            d->cap = d->cap ? d->cap * 2 : 256;
            d->entries = hm_xrealloc(d->entries, d->cap * sizeof(*d->entries));
        }
        if (c->type == AR_PQ_STRING) {
            uint8_t len4[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16),
                               (uint8_t)(n >> 24)};
            hm_buf_append(&d->plain, len4, 4);
        }
        d->entries[d->n] = (pq_dict_entry){(uint32_t)d->plain.len, (uint32_t)n, h};
        hm_buf_append(&d->plain, p, n);
        d->slots[s] = found = ++d->n;
        if ((size_t)d->n * 2 >= d->nslots) dict_rehash(d, d->nslots * 2);
    }
    if (c->nidx == c->idx_cap) {
        c->idx_cap = c->idx_cap ? c->idx_cap * 2 : 4096;
        c->idx = hm_xrealloc(c->idx, c->idx_cap * sizeof(*c->idx));
    }
    c->idx[c->nidx++] = found - 1;
}

/* ---- statistics --------------------------------------------------------------------- */

static int bytes_cmp(const void *a, size_t an, const void *b, size_t bn) {
    int r = memcmp(a, b, an < bn ? an : bn);
    return r ? r : (an > bn) - (an < bn);
}

static void stats_string(pq_col *c, const char *s, size_t n) {
    if (!c->has_minmax || bytes_cmp(s, n, c->smin.data, c->smin.len) < 0) {
        hm_buf_reset(&c->smin);
        hm_buf_append(&c->smin, s, n);
    }
    if (!c->has_minmax || bytes_cmp(s, n, c->smax.data, c->smax.len) > 0) {
        hm_buf_reset(&c->smax);
        hm_buf_append(&c->smax, s, n);
    }
    c->has_minmax = true;
}

#define STATS_UPDATE(c, field, v)                                                                  \
    do {                                                                                           \
        if (!(c)->has_minmax || (v) < (c)->min.field) (c)->min.field = (v);                        \
        if (!(c)->has_minmax || (v) > (c)->max.field) (c)->max.field = (v);                        \
        (c)->has_minmax = true;                                                                    \
    } while (0)

/* ---- putting values ----------------------------------------------------------------- */

/** @brief Check a put of type t (or t2) into col; on success *out is the column. */
static int put_check(ar_pq_writer *w, size_t col, ar_pq_type t, ar_pq_type t2, pq_col **out) {
    if (w->failed) return w->failed;
    if (col >= w->ncols)
        return set_err(w, -EINVAL, "column %zu out of range (%zu columns)", col, w->ncols);
    pq_col *c = &w->cols[col];
    if (c->type != t && c->type != t2)
        return set_err(w, -EINVAL, "column '%s' is %s, not %s", c->name, type_name(c->type),
                       type_name(t));
    if (c->has_value)
        return set_err(w, -EINVAL, "column '%s' already has a value in this row", c->name);
    *out = c;
    return 0;
}

static void mark_value(ar_pq_writer *w, pq_col *c, bool present) {
    c->has_value = true;
    c->nrows++;
    w->nset++;
    if (c->optional) hm_buf_putc(&c->defs, present ? 1 : 0);
}

/* PLAIN bytes of one non-NULL value (a string without its length prefix). */
static void add_value(ar_pq_writer *w, pq_col *c, const void *p, size_t n) {
    if (c->type == AR_PQ_STRING) {
        uint8_t len4[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
        hm_buf_append(&c->values, len4, 4);
    }
    hm_buf_append(&c->values, p, n);
    if (c->dict_on) dict_add(w, c, p, n);
    mark_value(w, c, true);
}

int ar_pq_put_int64(ar_pq_writer *w, size_t col, int64_t v) {
    pq_col *c = NULL;
    int rc = put_check(w, col, AR_PQ_INT64, AR_PQ_TIMESTAMP_US, &c);
    if (rc) return rc;
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)((uint64_t)v >> (8 * i));
    STATS_UPDATE(c, i64, v);
    add_value(w, c, le, 8);
    return 0;
}

int ar_pq_put_int32(ar_pq_writer *w, size_t col, int32_t v) {
    pq_col *c = NULL;
    int rc = put_check(w, col, AR_PQ_INT32, AR_PQ_INT32, &c);
    if (rc) return rc;
    uint8_t le[4];
    for (int i = 0; i < 4; i++)
        le[i] = (uint8_t)((uint32_t)v >> (8 * i));
    STATS_UPDATE(c, i32, v);
    add_value(w, c, le, 4);
    return 0;
}

/* Floats are stored in host byte order: the writer assumes a little-endian host. */
int ar_pq_put_float(ar_pq_writer *w, size_t col, float v) {
    pq_col *c = NULL;
    int rc = put_check(w, col, AR_PQ_FLOAT, AR_PQ_FLOAT, &c);
    if (rc) return rc;
    if (v == v) STATS_UPDATE(c, f, v); /* NaN has no place in min/max */
    add_value(w, c, &v, 4);
    return 0;
}

int ar_pq_put_double(ar_pq_writer *w, size_t col, double v) {
    pq_col *c = NULL;
    int rc = put_check(w, col, AR_PQ_DOUBLE, AR_PQ_DOUBLE, &c);
    if (rc) return rc;
    if (v == v) STATS_UPDATE(c, d, v);
    add_value(w, c, &v, 8);
    return 0;
}

int ar_pq_put_string(ar_pq_writer *w, size_t col, const char *s, size_t len) {
    pq_col *c = NULL;
    int rc = put_check(w, col, AR_PQ_STRING, AR_PQ_STRING, &c);
    if (rc) return rc;
    if (len > PQ_MAX_STRING)
        return set_err(w, -EINVAL, "column '%s': a %zu-byte string is over the %u-byte limit",
                       c->name, len, PQ_MAX_STRING);
    if (!s && len) return set_err(w, -EINVAL, "column '%s': NULL string pointer", c->name);
    stats_string(c, s ? s : "", len);
    add_value(w, c, s ? s : "", len);
    return 0;
}

int ar_pq_put_null(ar_pq_writer *w, size_t col) {
    if (w->failed) return w->failed;
    if (col >= w->ncols)
        return set_err(w, -EINVAL, "column %zu out of range (%zu columns)", col, w->ncols);
    pq_col *c = &w->cols[col];
    if (!c->optional)
        return set_err(w, -EINVAL, "column '%s' is required: it cannot be NULL", c->name);
    if (c->has_value)
        return set_err(w, -EINVAL, "column '%s' already has a value in this row", c->name);
    c->null_count++;
    mark_value(w, c, false);
    return 0;
}

/* ---- writing the file --------------------------------------------------------------- */

static int write_all(ar_pq_writer *w, const char *p, size_t n) {
    while (n > 0) {
        ssize_t k = write(w->fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            return set_err(w, -e, "%s: write: %s", w->tmp_path, strerror(e));
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int out_flush(ar_pq_writer *w) {
    int rc = write_all(w, w->out.data, w->out.len);
    hm_buf_reset(&w->out);
    return rc;
}

/* hm_buf_append, for slices of buffers that may never have been allocated (n == 0). */
static void append_bytes(hm_buf *b, const void *p, size_t n) {
    if (n) hm_buf_append(b, p, n);
}

static void out_append(ar_pq_writer *w, const void *p, size_t n) {
    hm_buf_append(&w->out, p, n);
    w->offset += (int64_t)n;
}

/** @brief Compress src into w->zpage; *dst is what goes into the file. */
static int compress_page(ar_pq_writer *w, pq_col *c, const hm_buf *src, const hm_buf **dst) {
    hm_buf *z = &w->zpage;
    hm_buf_reset(z);
    if (w->opt.codec == AR_PQ_NONE) {
        *dst = src;
        return 0;
    }
    if (w->opt.codec == AR_PQ_SNAPPY) {
        size_t cap = snappy_max_compressed_length(src->len);
        hm_buf_reserve(z, cap);
        size_t n = cap;
        if (snappy_compress(src->data, src->len, z->data, &n) != SNAPPY_OK)
            return set_err(w, -EIO, "column '%s': snappy compression failed", c->name);
        z->len = n;
    } else {
        size_t cap = ZSTD_compressBound(src->len);
        hm_buf_reserve(z, cap);
        size_t n = ZSTD_compressCCtx(w->zctx, z->data, cap, src->data, src->len, w->opt.zstd_level);
        if (ZSTD_isError(n))
            return set_err(w, -EIO, "column '%s': zstd: %s", c->name, ZSTD_getErrorName(n));
        z->len = n;
    }
    *dst = z;
    return 0;
}

typedef struct pq_chunk_sizes {
    int64_t uncompressed;
    int64_t compressed;
} pq_chunk_sizes;

/** @brief One page (header + body in w->page) into the file; adds to *sz. */
static int write_page(ar_pq_writer *w, pq_col *c, int page_type, int32_t num_values, int encoding,
                      pq_chunk_sizes *sz) {
    if (w->page.len > INT32_MAX)
        return set_err(w, -EFBIG, "column '%s': a page of %zu bytes is over 2 GiB", c->name,
                       w->page.len);
    const hm_buf *body = NULL;
    int rc = compress_page(w, c, &w->page, &body);
    if (rc) return rc;
    hm_buf_reset(&w->hdr);
    ar_tc t;
    ar_tc_begin(&t, &w->hdr);
    ar_tc_i32(&t, 1, page_type);
    ar_tc_i32(&t, 2, (int32_t)w->page.len);
    ar_tc_i32(&t, 3, (int32_t)body->len);
    if (page_type == PQ_PAGE_DATA) {
        ar_tc_struct(&t, 5); /* DataPageHeader */
        ar_tc_i32(&t, 1, num_values);
        ar_tc_i32(&t, 2, encoding);
        ar_tc_i32(&t, 3, PQ_ENC_RLE); /* definition levels */
        ar_tc_i32(&t, 4, PQ_ENC_RLE); /* repetition levels (none: flat schema) */
        ar_tc_end(&t);
    } else {
        ar_tc_struct(&t, 7); /* DictionaryPageHeader */
        ar_tc_i32(&t, 1, num_values);
        ar_tc_i32(&t, 2, PQ_ENC_PLAIN);
        ar_tc_end(&t);
    }
    ar_tc_end(&t);
    sz->uncompressed += (int64_t)(w->hdr.len + w->page.len);
    sz->compressed += (int64_t)(w->hdr.len + body->len);
    out_append(w, w->hdr.data, w->hdr.len);
    out_append(w, body->data, body->len);
    return w->out.len >= PQ_OUT_FLUSH_BYTES ? out_flush(w) : 0;
}

static int bit_width_for(uint32_t max_value) {
    int bw = 0;
    while (bw < 32 && (max_value >> bw))
        bw++;
    return bw ? bw : 1; /* width 0 is legal but not every reader takes it */
}

static uint32_t *levels_scratch(ar_pq_writer *w, size_t n) {
    if (n > w->levels_cap) {
        w->levels_cap = n;
        w->levels = hm_xrealloc(w->levels, n * sizeof(*w->levels));
    }
    return w->levels;
}

/** A data page's slice of a chunk: rows [r0, r1), non-NULL values [v0, v1), bytes [b0, b1). */
typedef struct pq_slice {
    size_t r0, r1, v0, v1, b0, b1;
} pq_slice;

/* Extend s from its start until the page holds about page_bytes (at least one row). */
static void next_slice(const ar_pq_writer *w, const pq_col *c, int bw, pq_slice *s) {
    const uint8_t *defs = (const uint8_t *)c->defs.data;
    const uint8_t *vals = (const uint8_t *)c->values.data;
    size_t width = fixed_width(c->type);
    uint64_t bits = 0, limit = (uint64_t)w->opt.page_bytes * 8;
    s->r1 = s->r0;
    s->v1 = s->v0;
    s->b1 = s->b0;
    while (s->r1 < c->nrows && (bits < limit || s->r1 == s->r0)) {
        if (!c->optional || defs[s->r1]) {
            size_t n = width;
            if (!width) {
                const uint8_t *p = vals + s->b1;
                n = 4 +
                    ((size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24);
            }
            s->b1 += n;
            s->v1++;
            bits += c->dict_on ? (uint64_t)bw : 8 * (uint64_t)n;
        }
        if (c->optional) bits++;
        s->r1++;
    }
}

/* Data page body into w->page: [4-byte length + RLE definition levels] values. */
static void build_data_page(ar_pq_writer *w, const pq_col *c, int bw, const pq_slice *s) {
    hm_buf *p = &w->page;
    hm_buf_reset(p);
    if (c->optional) {
        size_t n = s->r1 - s->r0;
        uint32_t *lv = levels_scratch(w, n);
        for (size_t i = 0; i < n; i++)
            lv[i] = (uint8_t)c->defs.data[s->r0 + i];
        hm_buf_append(p, "\0\0\0\0", 4);
        ar_pq_rle_encode(p, lv, n, 1);
        uint32_t len = (uint32_t)(p->len - 4);
        for (int i = 0; i < 4; i++)
            p->data[i] = (char)(len >> (8 * i));
    }
    if (c->dict_on) {
        hm_buf_putc(p, (char)bw);
        ar_pq_rle_encode(p, c->idx + s->v0, s->v1 - s->v0, bw);
    } else {
        append_bytes(p, c->values.data + s->b0, s->b1 - s->b0);
    }
}

/* Statistics' min/max as PLAIN bytes; float zeros widened per the format's rules. */
static size_t stat_bytes(const pq_col *c, bool is_max, uint8_t out[8]) {
    pq_scalar v = is_max ? c->max : c->min;
    switch (c->type) {
        case AR_PQ_INT32:
            for (int i = 0; i < 4; i++)
                out[i] = (uint8_t)((uint32_t)v.i32 >> (8 * i));
            return 4;
        case AR_PQ_INT64:
        case AR_PQ_TIMESTAMP_US:
            for (int i = 0; i < 8; i++)
                out[i] = (uint8_t)((uint64_t)v.i64 >> (8 * i));
            return 8;
        case AR_PQ_FLOAT:
            if (v.f == 0) v.f = is_max ? 0.0f : -0.0f;
            memcpy(out, &v.f, 4);
            return 4;
        case AR_PQ_DOUBLE:
            if (v.d == 0) v.d = is_max ? 0.0 : -0.0;
            memcpy(out, &v.d, 8);
            return 8;
        case AR_PQ_STRING:
            break;
    }
    return 0;
}

static void write_statistics(ar_tc *t, const pq_col *c) {
    ar_tc_struct(t, 12);
    ar_tc_i64(t, 3, c->null_count);
    if (c->has_minmax) {
        uint8_t b[8];
        if (c->type == AR_PQ_STRING) {
            ar_tc_binary(t, 5, c->smax.data, c->smax.len);
            ar_tc_binary(t, 6, c->smin.data, c->smin.len);
        } else {
            ar_tc_binary(t, 5, b, stat_bytes(c, true, b));
            ar_tc_binary(t, 6, b, stat_bytes(c, false, b));
        }
    }
    ar_tc_end(t);
}

/** @brief Write c's chunk (dictionary page, data pages) and its ColumnChunk into *t. */
static int write_chunk(ar_pq_writer *w, pq_col *c, ar_tc *t, pq_chunk_sizes *sz) {
    int64_t start = w->offset, dict_offset = -1;
    int bw = 0, rc;
    if (c->dict_on && c->dict.n == 0) c->dict_on = false; /* all NULL: nothing to index */
    if (c->dict_on) {
        hm_buf_reset(&w->page);
        append_bytes(&w->page, c->dict.plain.data, c->dict.plain.len);
        dict_offset = w->offset;
        rc = write_page(w, c, PQ_PAGE_DICTIONARY, (int32_t)c->dict.n, PQ_ENC_PLAIN, sz);
        if (rc) return rc;
        bw = bit_width_for(c->dict.n - 1);
    }
    int64_t data_offset = w->offset;
    int encoding = c->dict_on ? PQ_ENC_RLE_DICTIONARY : PQ_ENC_PLAIN;
    pq_slice s = {0};
    while (s.r0 < c->nrows) {
        next_slice(w, c, bw, &s);
        build_data_page(w, c, bw, &s);
        rc = write_page(w, c, PQ_PAGE_DATA, (int32_t)(s.r1 - s.r0), encoding, sz);
        if (rc) return rc;
        s.r0 = s.r1;
        s.v0 = s.v1;
        s.b0 = s.b1;
    }

    ar_tc_struct(t, 0); /* ColumnChunk */
    ar_tc_i64(t, 2, start);
    ar_tc_struct(t, 3); /* ColumnMetaData */
    ar_tc_i32(t, 1, physical_type(c->type));
    int encodings[3], nenc = 0;
    encodings[nenc++] = PQ_ENC_PLAIN;
    if (c->optional) encodings[nenc++] = PQ_ENC_RLE;
    if (c->dict_on) encodings[nenc++] = PQ_ENC_RLE_DICTIONARY;
    ar_tc_list(t, 2, AR_TC_I32, (size_t)nenc);
    for (int i = 0; i < nenc; i++)
        tc_elem_i32(t, encodings[i]);
    ar_tc_list(t, 3, AR_TC_BINARY, 1);
    tc_elem_binary(t, c->name, strlen(c->name));
    ar_tc_i32(t, 4, codec_thrift(w->opt.codec));
    ar_tc_i64(t, 5, (int64_t)c->nrows);
    ar_tc_i64(t, 6, sz->uncompressed);
    ar_tc_i64(t, 7, sz->compressed);
    ar_tc_i64(t, 9, data_offset);
    if (dict_offset >= 0) ar_tc_i64(t, 11, dict_offset);
    write_statistics(t, c);
    ar_tc_end(t);
    ar_tc_end(t);
    return 0;
}

/* Forget a column's row group, keep its memory; its dictionary starts afresh. */
static void col_reset(pq_col *c) {
    hm_buf_reset(&c->values);
    hm_buf_reset(&c->defs);
    dict_free(&c->dict);
    c->nidx = 0;
    c->dict_on = c->want_dict;
    c->nrows = 0;
    c->null_count = 0;
    c->has_minmax = false;
    hm_buf_reset(&c->smin);
    hm_buf_reset(&c->smax);
}

/** @brief Write the buffered row group and append its RowGroup to w->rowgroups. */
static int flush_row_group(ar_pq_writer *w) {
    if (w->rg_rows == 0) return 0;
    ar_tc t;
    ar_tc_begin(&t, &w->rowgroups);
    int64_t first = w->offset, total_unc = 0, total_comp = 0;
    ar_tc_list(&t, 1, AR_TC_STRUCT, w->ncols);
    for (size_t i = 0; i < w->ncols; i++) {
        pq_col *c = &w->cols[i];
        assert(c->nrows == (size_t)w->rg_rows);
        pq_chunk_sizes sz = {0, 0};
        int rc = write_chunk(w, c, &t, &sz);
        if (rc) return fail(w, rc);
        total_unc += sz.uncompressed;
        total_comp += sz.compressed;
        col_reset(c);
    }
    ar_tc_i64(&t, 2, total_unc);
    ar_tc_i64(&t, 3, w->rg_rows);
    ar_tc_i64(&t, 5, first);
    ar_tc_i64(&t, 6, total_comp);
    ar_tc_end(&t);
    w->uncompressed += total_unc;
    w->nrowgroups++;
    w->rg_rows = 0;
    return 0;
}

int ar_pq_end_row(ar_pq_writer *w) {
    if (w->failed) return w->failed;
    if (w->nset != w->ncols) {
        for (size_t i = 0; i < w->ncols; i++) {
            if (!w->cols[i].has_value) {
                set_err(w, -EINVAL, "row %" PRId64 ": column '%s' has no value (put NULL?)",
                        w->total_rows, w->cols[i].name);
                return fail(w, -EINVAL);
            }
        }
    }
    for (size_t i = 0; i < w->ncols; i++)
        w->cols[i].has_value = false;
    w->nset = 0;
    w->rg_rows++;
    w->total_rows++;
    if (w->rg_rows >= w->opt.row_group_rows) return flush_row_group(w);
    return 0;
}

/* ---- footer ------------------------------------------------------------------------- */

static void write_schema_element(ar_tc *t, const pq_col *c) {
    ar_tc_struct(t, 0);
    ar_tc_i32(t, 1, physical_type(c->type));
    ar_tc_i32(t, 3, c->optional ? PQ_OPTIONAL : PQ_REQUIRED);
    ar_tc_binary(t, 4, c->name, strlen(c->name));
    if (c->type == AR_PQ_STRING) {
        ar_tc_i32(t, 6, PQ_CT_UTF8);
        ar_tc_struct(t, 10); /* LogicalType */
        ar_tc_struct(t, 1);  /* STRING */
        ar_tc_end(t);
        ar_tc_end(t);
    } else if (c->type == AR_PQ_TIMESTAMP_US) {
        ar_tc_i32(t, 6, PQ_CT_TIMESTAMP_MICROS);
        ar_tc_struct(t, 10); /* LogicalType */
        ar_tc_struct(t, 8);  /* TIMESTAMP */
        ar_tc_bool(t, 1, true);
        ar_tc_struct(t, 2); /* TimeUnit */
        ar_tc_struct(t, 2); /* MICROS */
        ar_tc_end(t);
        ar_tc_end(t);
        ar_tc_end(t);
        ar_tc_end(t);
    }
    ar_tc_end(t);
}

/* FileMetaData, its length and the closing magic. */
static void write_footer(ar_pq_writer *w) {
    hm_buf meta = HM_BUF_INIT;
    ar_tc t;
    ar_tc_begin(&t, &meta);
    ar_tc_i32(&t, 1, 2);
    ar_tc_list(&t, 2, AR_TC_STRUCT, w->ncols + 1);
    ar_tc_struct(&t, 0); /* the root */
    ar_tc_binary(&t, 4, "schema", 6);
    ar_tc_i32(&t, 5, (int32_t)w->ncols);
    ar_tc_end(&t);
    for (size_t i = 0; i < w->ncols; i++)
        write_schema_element(&t, &w->cols[i]);
    ar_tc_i64(&t, 3, w->total_rows);
    ar_tc_list(&t, 4, AR_TC_STRUCT, (size_t)w->nrowgroups);
    append_bytes(&meta, w->rowgroups.data, w->rowgroups.len);
    ar_tc_binary(&t, 6, PQ_CREATED_BY, strlen(PQ_CREATED_BY));
    ar_tc_list(&t, 7, AR_TC_STRUCT, w->ncols); /* min/max are in each type's order */
    for (size_t i = 0; i < w->ncols; i++) {
        ar_tc_struct(&t, 0); /* ColumnOrder */
        ar_tc_struct(&t, 1); /* TYPE_ORDER */
        ar_tc_end(&t);
        ar_tc_end(&t);
    }
    ar_tc_end(&t);
    uint32_t len = (uint32_t)meta.len;
    uint8_t len4[4] = {(uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16),
                       (uint8_t)(len >> 24)};
    out_append(w, meta.data, meta.len);
    out_append(w, len4, 4);
    out_append(w, "PAR1", 4);
    hm_buf_free(&meta);
}

/* ---- open / close ------------------------------------------------------------------- */

static void writer_free(ar_pq_writer *w) {
    if (w->fd >= 0) close(w->fd);
    for (size_t i = 0; i < w->ncols; i++) {
        pq_col *c = &w->cols[i];
        free(c->name);
        hm_buf_free(&c->values);
        hm_buf_free(&c->defs);
        dict_free(&c->dict);
        free(c->idx);
        hm_buf_free(&c->smin);
        hm_buf_free(&c->smax);
    }
    free(w->cols);
    hm_buf_free(&w->out);
    hm_buf_free(&w->rowgroups);
    hm_buf_free(&w->page);
    hm_buf_free(&w->zpage);
    hm_buf_free(&w->hdr);
    free(w->levels);
    ZSTD_freeCCtx(w->zctx);
    free(w->path);
    free(w->tmp_path);
    free(w);
}

static int check_columns(const ar_pq_column *cols, size_t ncols, char *err, size_t errlen) {
    if (ncols == 0 || ncols > INT32_MAX) {
        copy_err(err, errlen, "a Parquet schema needs at least one column");
        return -EINVAL;
    }
    for (size_t i = 0; i < ncols; i++) {
        if (!cols[i].name || !cols[i].name[0]) {
            if (err) snprintf(err, errlen, "column %zu has no name", i);
            return -EINVAL;
        }
        if (physical_type(cols[i].type) < 0) {
            if (err)
                snprintf(err, errlen, "column '%s': unknown type %d", cols[i].name,
                         (int)cols[i].type);
            return -EINVAL;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cols[i].name, cols[j].name) == 0) {
                if (err) snprintf(err, errlen, "column '%s' appears twice", cols[i].name);
                return -EINVAL;
            }
        }
    }
    return 0;
}

static void apply_defaults(ar_pq_options *o, const ar_pq_options *given) {
    *o = given ? *given : (ar_pq_options){0};
    if (o->zstd_level == 0) o->zstd_level = 3;
    if (o->row_group_rows <= 0) o->row_group_rows = 1000000;
    if (o->page_bytes == 0) o->page_bytes = 1u << 20;
    if (o->dict_max_bytes == 0 || o->dict_max_bytes > (1u << 30)) o->dict_max_bytes = 1u << 20;
    if (o->dict_max_entries == 0) o->dict_max_entries = 65536;
}

int ar_pq_open(ar_pq_writer **out, const char *path, const ar_pq_column *cols, size_t ncols,
               const ar_pq_options *opt, char *err, size_t errlen) {
    *out = NULL;
    if (!path || !path[0]) {
        copy_err(err, errlen, "no output path");
        return -EINVAL;
    }
    int rc = check_columns(cols, ncols, err, errlen);
    if (rc) return rc;
    if (opt && (unsigned)opt->codec > AR_PQ_ZSTD) {
        if (err) snprintf(err, errlen, "%s: unknown codec %d", path, (int)opt->codec);
        return -EINVAL;
    }
    ar_pq_writer *w = hm_xcalloc(1, sizeof(*w));
    w->fd = -1;
    apply_defaults(&w->opt, opt);
    w->hash_seed = hm_mono_ns() ^ (uint64_t)(uintptr_t)w;
    w->path = hm_xstrdup(path);
    size_t n = strlen(path) + 5;
    w->tmp_path = hm_xmalloc(n);
    snprintf(w->tmp_path, n, "%s.tmp", path);
    w->ncols = ncols;
    w->cols = hm_xcalloc(ncols, sizeof(*w->cols));
    for (size_t i = 0; i < ncols; i++) {
        pq_col *c = &w->cols[i];
        c->name = hm_xstrdup(cols[i].name);
        c->type = cols[i].type;
        c->optional = cols[i].optional;
        c->want_dict = c->dict_on = cols[i].dictionary;
    }
    if (w->opt.codec == AR_PQ_ZSTD && !(w->zctx = ZSTD_createCCtx())) {
        copy_err(err, errlen, "zstd: cannot create a compression context");
        rc = -ENOMEM;
        goto err;
    }
    w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        rc = -errno;
        if (err) snprintf(err, errlen, "%s: open: %s", w->tmp_path, strerror(-rc));
        goto err;
    }
    out_append(w, "PAR1", 4);
    *out = w;
    return 0;
err:
    writer_free(w);
    return rc;
}

static int fsync_dir_of(ar_pq_writer *w) {
    char *dir = hm_xstrdup(w->path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    const char *d = slash ? dir : ".";
    int rc = 0, fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        rc = -errno;
        set_err(w, rc, "%s: fsync of the directory: %s", d, strerror(-rc));
    }
    if (fd >= 0) close(fd);
    free(dir);
    return rc;
}

/* Everything up to the rename; on failure the tmp file is still there. */
static int finish_file(ar_pq_writer *w) {
    int rc = flush_row_group(w);
    if (rc) return rc;
    write_footer(w);
    if ((rc = out_flush(w))) return rc;
    if (fsync(w->fd) != 0) {
        rc = -errno;
        return set_err(w, rc, "%s: fsync: %s", w->tmp_path, strerror(-rc));
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) {
        rc = -errno;
        return set_err(w, rc, "%s: close: %s", w->tmp_path, strerror(-rc));
    }
    return 0;
}

int ar_pq_close(ar_pq_writer *w, ar_pq_stats *stats, char *err, size_t errlen) {
    int rc = w->failed;
    if (!rc && w->nset != 0) {
        rc =
            set_err(w, -EINVAL, "%s: closed in the middle of row %" PRId64, w->path, w->total_rows);
    }
    if (!rc) rc = finish_file(w);
    if (!rc && rename(w->tmp_path, w->path) != 0) {
        rc = -errno;
        set_err(w, rc, "rename %s -> %s: %s", w->tmp_path, w->path, strerror(-rc));
    }
    if (rc) {
        copy_err(err, errlen, w->errmsg);
        ar_pq_abort(w);
        return rc;
    }
    rc = fsync_dir_of(w); /* the file is complete; only its durability is in doubt */
    if (rc) copy_err(err, errlen, w->errmsg);
    if (stats) {
        *stats = (ar_pq_stats){.rows = w->total_rows,
                               .row_groups = w->nrowgroups,
                               .bytes = w->offset,
                               .uncompressed_bytes = w->uncompressed,
                               .dict_fallbacks = w->fallbacks};
    }
    writer_free(w);
    return rc;
}

void ar_pq_abort(ar_pq_writer *w) {
    if (!w) return;
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
    }
    unlink(w->tmp_path);
    writer_free(w);
}

const char *ar_pq_errmsg(const ar_pq_writer *w) {
    return w->errmsg;
}
