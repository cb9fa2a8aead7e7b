/*
 * rows.h: a batch of quality records as the rows of two COPYs, straight into market_data
 * (PostgreSQL's binary COPY format) and market_data_rejects (its text format; rare rows),
 * sql/001 and sql/003, and the decision of which records market_data cannot take (each
 * becomes a reject row with a reason code, the field at fault, a sentence and the
 * record's bytes).
 *
 *   quality record --ar_rows_add--> copy:    header, then per row: 14, len, ts, len, "BTC/USDT"..
 *                               '-> rejects: "quality_scores\t3\t78\tprice_not_positive\t...\n"
 *                               '-> rows[]:  coordinates, and a trade's candle inputs
 *
 * Each row is also kept as an ar_row (its Kafka coordinates and, for a trade, the values
 * its candles need: rollups.h), so that rows already archived by an earlier delivery can
 * be taken out of the batch (ar_rows_drop_archived) before it is sent again.
 *
 * Pure: no I/O, no clock (now is passed in). Every row it writes is one market_data
 * accepts: texts are valid UTF-8 without NUL, numbers finite and in the table's CHECK
 * ranges, timestamps inside the configured window. So one bad record can never fail its
 * batch; it is a reject row instead.
 */
#ifndef AR_ROWS_H
#define AR_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "himari/buf.h"
#include "himari/common.h"

/** What a batch needs to know beside the records. */
typedef struct ar_rows_limits {
    int64_t min_ts_ms; /* older records are rejected (older_than_retention); INT64_MIN: none */
    int64_t max_ts_ms; /* newer ones too (timestamp_in_future) */
} ar_rows_limits;

/** Where a record came from: its Kafka coordinates (the unique key of market_data). */
typedef struct ar_source {
    const char *topic;
    int32_t partition;
    int64_t offset;
} ar_source;

/** The columns of the two COPYs, in the order rows are written. */
extern const char ar_rows_columns[];
extern const char ar_rows_reject_columns[];

/** One record of the batch. */
typedef struct ar_row {
    int64_t offset;
    int32_t partition;
    bool rejected;        /* its text is in rejects, else in copy */
    bool trade;           /* accepted and of type trade: a candle input */
    bool has_volume;      /* volume is not NULL */
    uint32_t start, len;  /* its COPY data */
    uint32_t key;         /* accepted: its (symbol, exchange), ar_rows_key */
    int64_t ts_ms;        /* accepted: */
    double price, volume; /*   as the float8 columns hold them */
    float quality;        /*   as the REAL column holds it */
} ar_row;

/** A batch. Zero-initialise; ar_rows_reset between batches, ar_rows_free at the end. */
typedef struct ar_rows {
    hm_buf copy;    /* COPY binary data of market_data: its header, then the rows */
    hm_buf rejects; /* COPY text rows of market_data_rejects */
    ar_row *rows;   /* every record, in arrival order */
    size_t n_rows, cap_rows;
    uint64_t accepted; /* rows for market_data */
    uint64_t rejected; /* rows for market_data_rejects */
    int32_t *days;     /* distinct UTC days (days since 1970-01-01) of accepted rows */
    size_t n_days, cap_days;
    /* (symbol, exchange) pairs of accepted rows: "symbol\0exchange\0" at key_at[i] */
    hm_buf key_text;
    uint32_t *key_at;
    size_t n_keys, cap_keys;
    uint32_t *key_slots; /* open addressing over key_at indices + 1; 0: empty */
    size_t n_slots;
    hm_buf scratch, key_tmp; /* unescaped text of one field; the key being looked up */
} ar_rows;

/** The next offset not yet archived of a partition (sql/007 archiver_offsets). */
typedef struct ar_offset_floor {
    int32_t partition;
    int64_t next_offset;
} ar_offset_floor;

/** Why a record was rejected: a code (sql/003 market_data_rejects.reason) and the field. */
typedef struct ar_reject {
    const char *reason; /* "parse_error", "price_not_positive", ...; NULL: accepted */
    const char *field;  /* "price", ...; NULL when the record as a whole */
    char detail[200];
} ar_reject;

/**
 * @brief Add one record (the Kafka value, payload[0..len)) as a row. Never fails: a record
 * that is not a quality record, or one market_data cannot hold, becomes a reject row.
 * @param why when not NULL, filled with the reject's reason (reason NULL: accepted)
 */
void ar_rows_add(ar_rows *r, const ar_source *src, const char *payload, size_t len,
                 const ar_rows_limits *lim, ar_reject *why);

/**
 * @brief Take out of the batch every row whose offset is below its partition's floor (it
 * was archived by an earlier delivery). @return the number of rows taken out.
 */
size_t ar_rows_drop_archived(ar_rows *r, const ar_offset_floor *floors, size_t n);

/** @brief The symbol and the exchange of key k. */
void ar_rows_key(const ar_rows *r, uint32_t k, const char **symbol, const char **exchange);

/** @brief Append s[0..n) as COPY text (backslash, tab, newline, carriage return escaped). */
void ar_copy_text(hm_buf *b, const char *s, size_t n);
/** @brief Append a time in ms as COPY text of a timestamptz ("2026-12-01T00:00:00.000Z"). */
void ar_copy_time(hm_buf *b, int64_t ms);

/** @brief Empty the batch, keeping its memory. */
void ar_rows_reset(ar_rows *r);
/** @brief Free what the batch holds (it can be used again after). */
void ar_rows_free(ar_rows *r);

/** @brief The number of rows (accepted + rejected). */
static inline uint64_t ar_rows_count(const ar_rows *r) {
    return r->accepted + r->rejected;
}

/** @brief Days since 1970-01-01 (UTC) of a time in ms; floor for times before 1970. */
int32_t ar_day_of_ms(int64_t ms);
/** @brief "2026-12-01" for a day number; out must hold 11 bytes. */
void ar_day_format(int32_t day, char out[11]);
/** @brief Parse "YYYY-MM-DD" (a real date). @return 0 or -EINVAL. */
int ar_day_parse(const char *s, int32_t *day) HM_MUST_CHECK;

#endif
