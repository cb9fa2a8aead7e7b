/*
 * rows.h: a batch of quality records as the rows of one COPY into the staging table
 * ar_stage (sql/003), in PostgreSQL's COPY text format, and the decision of which records
 * market_data cannot take (each becomes a reject row with a reason code, the field at
 * fault, a sentence and the record's bytes).
 *
 *   quality record --ar_rows_add--> "ts\tsymbol\t...\t\N\t\N\t\N\n"        (market_data)
 *                               '-> "ts\t...\tprice_not_positive\tprice\t...\t\\x7b..\n"
 *
 * Pure: no I/O, no clock (now is passed in). Every row it writes is one the staging COPY
 * and then market_data accept: texts are valid UTF-8 without NUL, numbers finite and in
 * the table's CHECK ranges, timestamps inside the configured window. So one bad record can
 * never fail its batch; it is a reject row instead.
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

/** A batch. Zero-initialise; ar_rows_reset between batches, ar_rows_free at the end. */
typedef struct ar_rows {
    hm_buf copy;       /* COPY text rows, one per record */
    uint64_t accepted; /* rows for market_data */
    uint64_t rejected; /* rows for market_data_rejects */
    int32_t *days;     /* distinct UTC days (days since 1970-01-01) of accepted rows */
    size_t n_days, cap_days;
    hm_buf scratch; /* unescaped text of one field */
} ar_rows;

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
