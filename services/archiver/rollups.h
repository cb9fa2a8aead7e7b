/*
 * rollups.h: what a batch adds to the candles and to the day counts, folded here rather
 * than in the database, as COPY text of the session tables ar_candles and ar_batch_days
 * (sql/007), which himari_apply_rollups() and himari_note_days() merge in the batch's
 * transaction.
 *
 *   ar_rows (trades) --ar_rollups_fold--> candles: one partial candle per (width, bucket,
 *                                                   symbol, exchange): open/close with the
 *                                                   key of their trade, high, low, count and
 *                                                   exact NUMERIC sums (decimal.h)
 *                                          days:    accepted rows per (UTC day, exchange)
 *
 * Every row of the batch is new to the database (the batch's offsets were claimed: sql/007),
 * so each counts once. The database merges partials with the same rules as rows (earliest
 * and latest by (timestamp, partition, offset), sums added), so a candle does not depend on
 * how its trades were split into batches or the order they came in. Pure.
 */
#ifndef AR_ROLLUPS_H
#define AR_ROLLUPS_H

#include <stddef.h>

#include "himari/buf.h"
#include "rows.h"

/** The candle widths, in seconds: ohlcv_5min and ohlcv_1hour. */
#define AR_CANDLE_WIDTHS_S                                                                         \
    { 300, 3600 }

/** The columns of the two COPYs, in the order rows are written. */
extern const char ar_rollups_candle_columns[];
extern const char ar_rollups_day_columns[];

/**
 * A batch's fold, kept beside its rows and advanced as they arrive (ar_rollups_fold), so
 * that sending the batch only writes the partials out. Zero-initialise; ar_rollups_reset
 * with the batch's ar_rows_reset; free with ar_rollups_free.
 */
typedef struct ar_rollups {
    struct ar_partial *slots;
    size_t n_slots, used;
    size_t folded;  /* r->rows[0..folded) are in the fold */
    hm_buf spill;   /* partial candles written early (a sum would leave 128 bits) */
    size_t n_spill; /* ... how many */
} ar_rollups;

/** @brief Empty the fold (a new batch, or its rows changed), keeping its memory. */
void ar_rollups_reset(ar_rollups *ru);

/** @brief Fold the rows added to r since the last call (r->rows[ru->folded..n_rows)). */
void ar_rollups_fold(ar_rollups *ru, const ar_rows *r);

/**
 * @brief The partial candles of the rows folded (appended to candles) and their rows per
 * (day, exchange) (appended to days); the fold is unchanged, so a batch sent again writes
 * the same. @return the number of candle rows written.
 */
size_t ar_rollups_write(const ar_rollups *ru, const ar_rows *r, hm_buf *candles, hm_buf *days);

void ar_rollups_free(ar_rollups *ru);

#endif
