/*
 * codes.h: every issue code the ingest-validator can put on a record, in one
 * table (docs/QUALITY_CHECKS.md documents each: meaning, threshold, example).
 *
 * Columns: name, default weight (subtracted from a score of 1.0; the result is
 * clamped to [0, 1]), and what a tick carrying the code must not move:
 *   IV_HOLD_PRICE   the price state (reference price, EMA, level tracking)
 *   IV_HOLD_VOLUME  the volume baseline
 *   IV_HOLD_SEQ     the sequence state (last timestamp, last trade id)
 * A weight of 0 makes a code informational: it says something about the
 * stream without lowering the tick's score.
 */
#ifndef IV_CODES_H
#define IV_CODES_H

#include <stddef.h>

enum {
    IV_HOLD_PRICE = 1u << 0,
    IV_HOLD_VOLUME = 1u << 1,
    IV_HOLD_SEQ = 1u << 2,
    IV_HOLD_VALUES = IV_HOLD_PRICE | IV_HOLD_VOLUME,
    IV_HOLD_ALL = IV_HOLD_VALUES | IV_HOLD_SEQ,
};

/* X(name, weight, holds) */
#define IV_CODES(X)                                                                                \
    /* the record as a whole */                                                                    \
    X(PARSE_ERROR, 1.00, IV_HOLD_ALL)                                                              \
    X(INVALID_TYPE, 0.20, IV_HOLD_ALL)                                                             \
    /* identity fields */                                                                          \
    X(MISSING_TIMESTAMP, 0.30, IV_HOLD_ALL)                                                        \
    X(INVALID_TIMESTAMP, 0.30, IV_HOLD_ALL)                                                        \
    X(MISSING_SYMBOL, 0.30, IV_HOLD_ALL)                                                           \
    X(INVALID_SYMBOL, 0.30, IV_HOLD_ALL)                                                           \
    X(INVALID_SYMBOL_FORMAT, 0.15, IV_HOLD_ALL)                                                    \
    X(MISSING_EXCHANGE, 0.30, IV_HOLD_ALL)                                                         \
    X(INVALID_EXCHANGE, 0.30, IV_HOLD_ALL)                                                         \
    X(UNKNOWN_EXCHANGE, 0.15, IV_HOLD_ALL)                                                         \
    X(INVALID_TRADE_ID, 0.05, IV_HOLD_SEQ)                                                         \
    X(MISSING_SIDE, 0.05, 0)                                                                       \
    X(INVALID_SIDE, 0.05, 0)                                                                       \
    /* price and volume values */                                                                  \
    X(MISSING_PRICE, 0.30, IV_HOLD_PRICE)                                                          \
    X(INVALID_PRICE, 0.30, IV_HOLD_PRICE)                                                          \
    X(NON_FINITE_PRICE, 0.30, IV_HOLD_PRICE)                                                       \
    X(INVALID_PRICE_NEGATIVE, 0.25, IV_HOLD_PRICE)                                                 \
    X(ZERO_PRICE, 0.25, IV_HOLD_PRICE)                                                             \
    X(EXCESSIVE_PRECISION, 0.05, 0)                                                                \
    X(MISSING_VOLUME, 0.20, IV_HOLD_VOLUME)                                                        \
    X(INVALID_VOLUME, 0.20, IV_HOLD_VOLUME)                                                        \
    X(NON_FINITE_VOLUME, 0.20, IV_HOLD_VOLUME)                                                     \
    X(INVALID_VOLUME_NEGATIVE, 0.20, IV_HOLD_VOLUME)                                               \
    X(ZERO_VOLUME, 0.10, IV_HOLD_VOLUME)                                                           \
    /* transfers (on-chain whale movements) */                                                     \
    X(MISSING_ASSET, 0.30, IV_HOLD_ALL)                                                            \
    X(MISSING_AMOUNT, 0.30, IV_HOLD_ALL)                                                           \
    X(INVALID_AMOUNT, 0.30, IV_HOLD_ALL)                                                           \
    X(MISSING_ADDRESS, 0.20, 0)                                                                    \
    /* sequence and time, per (exchange, symbol) */                                                \
    X(OUT_OF_ORDER, 0.30, IV_HOLD_ALL)                                                             \
    X(DUPLICATE_TIMESTAMP, 0.10, 0)                                                                \
    X(LARGE_GAP, 0.05, 0)                                                                          \
    X(DUPLICATE_TRADE_ID, 0.30, IV_HOLD_ALL)                                                       \
    X(TRADE_ID_GAP, 0.05, 0)                                                                       \
    X(TRADE_ID_OUT_OF_ORDER, 0.20, IV_HOLD_ALL)                                                    \
    X(STALE_DATA, 0.15, IV_HOLD_ALL)                                                               \
    X(DELAYED_DATA, 0.05, IV_HOLD_VALUES)                                                          \
    X(FUTURE_TIMESTAMP, 0.20, IV_HOLD_ALL)                                                         \
    /* price behaviour */                                                                          \
    X(EXTREME_PRICE_MOVE, 0.20, IV_HOLD_PRICE)                                                     \
    X(LARGE_PRICE_MOVE, 0.05, IV_HOLD_PRICE)                                                       \
    X(PRICE_ANOMALY, 0.10, IV_HOLD_PRICE)                                                          \
    X(CROSS_EXCHANGE_DEVIATION, 0.15, IV_HOLD_PRICE)                                               \
    X(SPIKE_REVERTED, 0.00, 0)                                                                     \
    X(LEVEL_SHIFT_CONFIRMED, 0.00, 0)                                                              \
    /* volume behaviour */                                                                         \
    X(EXTREME_VOLUME_SPIKE, 0.15, IV_HOLD_VOLUME)                                                  \
    X(VOLUME_SPIKE, 0.05, IV_HOLD_VOLUME)                                                          \
    X(NOTIONAL_OUTLIER, 0.10, IV_HOLD_VOLUME)

typedef enum iv_code {
#define IV_CODE_ENUM_(name, weight, holds) IV_##name,
    IV_CODES(IV_CODE_ENUM_)
#undef IV_CODE_ENUM_
        IV_CODE_COUNT
} iv_code;

/** @brief "LARGE_GAP" for IV_LARGE_GAP. */
const char *iv_code_name(iv_code c);
/** @brief The code table's default weight. */
double iv_code_default_weight(iv_code c);
/** @brief IV_HOLD_* flags of a code. */
unsigned iv_code_holds(iv_code c);
/** @brief Look a code up by name (exact); -1 when unknown. */
int iv_code_by_name(const char *name);

#endif
