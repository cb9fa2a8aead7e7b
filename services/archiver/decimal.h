/*
 * decimal.h: exact decimal sums of doubles as PostgreSQL's NUMERIC makes them, for the
 * candles the archiver folds before it sends them (candles.h).
 *
 *   double --%.15g, as float8::numeric--> c x 10^e (c < 10^15) --add--> c x 10^e (int128)
 *
 * PostgreSQL turns a float8 into NUMERIC through its "%.15g" text (a real: "%.6g"), so a
 * sum of x::NUMERIC is the exact sum of those decimals. Doing the same here gives the same
 * candle sums whatever the order rows arrive in, and lets one row per candle travel instead
 * of every trade. A sum that would leave the 128-bit coefficient says so (the caller then
 * starts a second partial sum: the database adds partials in NUMERIC). Pure.
 */
#ifndef AR_DECIMAL_H
#define AR_DECIMAL_H

#include <stdbool.h>
#include <stdint.h>

#include "himari/buf.h"
#include "himari/common.h"

/** c x 10^e. */
typedef struct ar_dec {
    __int128 c;
    int32_t e;
} ar_dec;

/** @brief v as float8::numeric makes it: its "%.15g" text (finite v only). */
ar_dec ar_dec_of_double(double v);
/** @brief v as real::numeric makes it: its "%.6g" text (finite v only). */
ar_dec ar_dec_of_float(float v);
/** @brief x * x, exactly (x from ar_dec_of_double: |c| < 10^15, so c^2 < 10^30). */
ar_dec ar_dec_square(ar_dec x);
/** @brief *acc += x exactly. @return false (acc unchanged) when the sum leaves 128 bits. */
bool ar_dec_add(ar_dec *acc, ar_dec x) HM_MUST_CHECK;
/** @brief Append x as NUMERIC input text: "<c>" or "<c>e<e>". */
void ar_dec_put(hm_buf *b, ar_dec x);

#endif
