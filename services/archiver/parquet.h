/*
 * parquet.h: a focused Parquet file writer, the archiver's output format (one file per
 * date and exchange of trades).
 *
 * Flat schemas only (no nesting, no repetition): each column is REQUIRED or OPTIONAL and one
 * of six types. A writer buffers one row group of values in memory, then writes each column
 * chunk as an optional dictionary page and data pages (v1) with PLAIN or RLE_DICTIONARY
 * values, RLE definition levels and chunk statistics; the footer is Thrift compact
 * FileMetaData. The file is written to "<path>.tmp" and renamed over path only after fsync,
 * so a crash never leaves a half file at path. It never blocks on anything but the disk;
 * call it from a worker, not the loop thread.
 */
#ifndef ARCHIVER_PARQUET_H
#define ARCHIVER_PARQUET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "himari/buf.h"
#include "himari/common.h"

typedef enum ar_pq_codec { AR_PQ_NONE, AR_PQ_SNAPPY, AR_PQ_ZSTD } ar_pq_codec;

/** @brief "none" | "snappy" | "zstd" -> 0 and *out; anything else -> -EINVAL. */
int ar_pq_codec_parse(const char *name, ar_pq_codec *out) HM_MUST_CHECK;
/** @brief The codec's name as ar_pq_codec_parse takes it ("?" for a bad value). */
const char *ar_pq_codec_name(ar_pq_codec c);

typedef enum ar_pq_type {
    AR_PQ_INT32,
    AR_PQ_INT64,
    AR_PQ_TIMESTAMP_US, /* INT64, TIMESTAMP(isAdjustedToUTC=true, MICROS) */
    AR_PQ_FLOAT,
    AR_PQ_DOUBLE,
    AR_PQ_STRING, /* BYTE_ARRAY, STRING (UTF8); bytes are written as given */
} ar_pq_type;

/** One column of the schema; name is copied by ar_pq_open. */
typedef struct ar_pq_column {
    const char *name;
    ar_pq_type type;
    bool optional;   /* OPTIONAL (may be NULL) rather than REQUIRED */
    bool dictionary; /* try dictionary encoding; falls back to PLAIN per column chunk */
} ar_pq_column;

/** Writer options; a zero field takes its default. */
typedef struct ar_pq_options {
    ar_pq_codec codec;
    int zstd_level;            /* default 3 */
    int64_t row_group_rows;    /* rows buffered per row group; default 1,000,000 */
    size_t page_bytes;         /* target uncompressed data page size; default 1 MiB */
    size_t dict_max_bytes;     /* PLAIN size of a chunk's dictionary before fallback; 1 MiB */
    uint32_t dict_max_entries; /* distinct values before fallback; default 65,536 */
} ar_pq_options;

/** What ar_pq_close wrote. */
typedef struct ar_pq_stats {
    int64_t rows;
    int64_t row_groups;
    int64_t bytes;              /* file size */
    int64_t uncompressed_bytes; /* column chunks before compression, page headers included */
    int64_t dict_fallbacks;     /* column chunks that fell back from dictionary to PLAIN */
} ar_pq_stats;

typedef struct ar_pq_writer ar_pq_writer;

/**
 * @brief Create "<path>.tmp" and a writer for ncols columns. On success *out is owned by
 * the caller, who ends it with exactly one of ar_pq_close or ar_pq_abort. On failure
 * returns a negative errno, fills err (when not NULL) and creates nothing.
 */
int ar_pq_open(ar_pq_writer **out, const char *path, const ar_pq_column *cols, size_t ncols,
               const ar_pq_options *opt, char *err, size_t errlen) HM_MUST_CHECK;

/*
 * Values of the current row, one per column in any order. A put of the wrong type, to a
 * column out of range or to a column that already has a value in this row returns -EINVAL
 * and changes nothing; ar_pq_errmsg says why.
 */
int ar_pq_put_int64(ar_pq_writer *w, size_t col, int64_t v) HM_MUST_CHECK; /* + TIMESTAMP_US */
int ar_pq_put_int32(ar_pq_writer *w, size_t col, int32_t v) HM_MUST_CHECK;
int ar_pq_put_float(ar_pq_writer *w, size_t col, float v) HM_MUST_CHECK;
int ar_pq_put_double(ar_pq_writer *w, size_t col, double v) HM_MUST_CHECK;
int ar_pq_put_string(ar_pq_writer *w, size_t col, const char *s, size_t len) HM_MUST_CHECK;
/** @brief A NULL; only for optional columns (-EINVAL otherwise). */
int ar_pq_put_null(ar_pq_writer *w, size_t col) HM_MUST_CHECK;

/**
 * @brief End the row: every column must have exactly one value. A row missing a value
 * returns -EINVAL and fails the writer (its other values are already buffered): later
 * calls return the same error and only ar_pq_abort is left. A full row group is written
 * here, so an I/O error (negative errno) can surface here too, with the same effect.
 */
int ar_pq_end_row(ar_pq_writer *w) HM_MUST_CHECK;

/**
 * @brief Write the last row group and the footer, fsync, rename "<path>.tmp" to path and
 * fsync the directory. Frees w whatever the result; on failure the tmp file is removed,
 * err is filled and nothing is left at path by this writer. One exception: when only the
 * directory's fsync fails, the complete file is at path, *stats is filled and the error
 * is returned (the rename may not survive a crash).
 */
int ar_pq_close(ar_pq_writer *w, ar_pq_stats *stats, char *err, size_t errlen) HM_MUST_CHECK;

/** @brief Drop everything: unlink "<path>.tmp" and free w (NULL is fine). */
void ar_pq_abort(ar_pq_writer *w);

/** @brief The last error of w ("" if none); valid until the next call on w. */
const char *ar_pq_errmsg(const ar_pq_writer *w);

/* ---- encoding primitives (the writer's own; declared for the unit tests) ----------- */

/** Thrift compact protocol element types. */
enum {
    AR_TC_STOP = 0,
    AR_TC_TRUE = 1,
    AR_TC_FALSE = 2,
    AR_TC_BYTE = 3,
    AR_TC_I16 = 4,
    AR_TC_I32 = 5,
    AR_TC_I64 = 6,
    AR_TC_DOUBLE = 7,
    AR_TC_BINARY = 8,
    AR_TC_LIST = 9,
    AR_TC_STRUCT = 12,
};

#define AR_TC_MAX_DEPTH 8

/** A Thrift compact struct writer over an hm_buf; tracks field-id deltas per nesting level. */
typedef struct ar_tc {
    hm_buf *out;
    int depth;
    int16_t last_id[AR_TC_MAX_DEPTH];
} ar_tc;

/** @brief Start a top-level struct written into out. */
void ar_tc_begin(ar_tc *t, hm_buf *out);
/** @brief ULEB128 varint. */
void ar_tc_varint(hm_buf *out, uint64_t v);
/** @brief Zigzag: 0,-1,1,-2 -> 0,1,2,3. */
static inline uint64_t ar_tc_zigzag(int64_t v) {
    return v < 0 ? ~((uint64_t)v << 1) : (uint64_t)v << 1;
}
/** @brief A field header: short form (delta 1..15) or type byte + zigzag i16 id. */
void ar_tc_field(ar_tc *t, int16_t id, uint8_t type);
void ar_tc_i32(ar_tc *t, int16_t id, int32_t v);
void ar_tc_i64(ar_tc *t, int16_t id, int64_t v);
void ar_tc_bool(ar_tc *t, int16_t id, bool v);
void ar_tc_binary(ar_tc *t, int16_t id, const void *p, size_t n);
/** @brief A list field's header: n elements of type elem. */
void ar_tc_list(ar_tc *t, int16_t id, uint8_t elem, size_t n);
/** @brief A struct field (id > 0) or a struct list element (id == 0); end with ar_tc_end. */
void ar_tc_struct(ar_tc *t, int16_t id);
/** @brief End the innermost struct (writes STOP). */
void ar_tc_end(ar_tc *t);

/**
 * @brief Append n values of bit_width bits (0..32) in the RLE/bit-packed hybrid encoding,
 * without a length prefix. Runs of 8 or more equal values become RLE runs; the rest are
 * bit-packed in groups of 8, the last group padded with zeros.
 */
void ar_pq_rle_encode(hm_buf *out, const uint32_t *v, size_t n, int bit_width);

#endif
