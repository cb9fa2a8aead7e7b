/*
 * feature_set.h: the feature set of one market at one moment, computed from its windows
 * (market.h), and its JSON form, the one Redis, features_computed and replay carry.
 *
 * docs/FEATURES.md gives every feature's formula, unit and window. A feature that cannot
 * be computed (no price yet, an empty window, no history an hour back) is absent from
 * fe_features (its bit in `have` is clear) and null in JSON: never a 0 that looks real.
 * Pure logic: no I/O, no clock.
 */
#ifndef FE_FEATURE_SET_H
#define FE_FEATURE_SET_H

#include <stdbool.h>
#include <stdint.h>

#include "himari/buf.h"
#include "market.h"

/*
 * X(id, json key): every feature, in JSON order. Every value is a double (counts are
 * whole numbers).
 */
#define FE_FEATURES(X)                                                                             \
    X(LAST_PRICE, "last_price")                                                                    \
    X(VWAP_1M, "vwap_1m")                                                                          \
    X(VWAP_5M, "vwap_5m")                                                                          \
    X(RETURN_1S, "log_return_1s")                                                                  \
    X(RETURN_10S, "log_return_10s")                                                                \
    X(RETURN_1M, "log_return_1m")                                                                  \
    X(RETURN_5M, "log_return_5m")                                                                  \
    X(RETURN_1H, "log_return_1h")                                                                  \
    X(RVOL_1M, "realized_vol_1m")                                                                  \
    X(RVOL_5M, "realized_vol_5m")                                                                  \
    X(EMA_FAST, "ema_fast")                                                                        \
    X(EMA_SLOW, "ema_slow")                                                                        \
    X(EMA_SPREAD_BPS, "ema_spread_bps")                                                            \
    X(TRADES_1M, "trade_count_1m")                                                                 \
    X(TRADES_5M, "trade_count_5m")                                                                 \
    X(VOLUME_1M, "volume_1m")                                                                      \
    X(VOLUME_5M, "volume_5m")                                                                      \
    X(IMBALANCE_1M, "buy_sell_imbalance_1m")                                                       \
    X(INTENSITY_1M, "trade_intensity_1m")                                                          \
    X(MEAN_QUALITY_1M, "mean_quality_1m")                                                          \
    X(BAD_TICK_RATIO_1M, "bad_tick_ratio_1m")                                                      \
    X(ZSCORE_5M, "price_zscore_5m")                                                                \
    X(CROSS_SPREAD_BPS, "cross_exchange_spread_bps")

typedef enum fe_feature {
#define FE_FEATURE_ENUM_(id, key) FE_F_##id,
    FE_FEATURES(FE_FEATURE_ENUM_)
#undef FE_FEATURE_ENUM_
        FE_FEATURE_COUNT
} fe_feature;

_Static_assert(FE_FEATURE_COUNT <= 32, "fe_features.have is one 32-bit word");

typedef struct fe_features {
    double v[FE_FEATURE_COUNT];
    uint32_t have;         /* bit f: v[f] is set */
    int64_t last_trade_ms; /* the last price's timestamp (FE_NO_SEC: none) */
    int64_t as_of_ms;      /* the windows end here (exclusive) */
    uint64_t ticks;        /* ticks applied to the market so far */
} fe_features;

/** @brief The JSON key of a feature ("vwap_1m"). */
const char *fe_feature_key(fe_feature f);

static inline void fe_features_set(fe_features *f, fe_feature id, double v) {
    f->v[id] = v;
    f->have |= 1u << id;
}
static inline bool fe_features_has(const fe_features *f, fe_feature id) {
    return (f->have >> id) & 1u;
}

/**
 * @brief Compute every feature of m with its windows ending at as_of_ms, exclusive: a
 * window of W seconds holds the W seconds up to and including the second of
 * as_of_ms - 1 (for an interval ending on a whole second E: the W seconds before E; for
 * the latest view, as_of = the latest tick + 1 ms). The cross-exchange spread needs the
 * other markets and is left to the caller.
 */
void fe_features_compute(const fe_market *m, int64_t as_of_ms, const fe_ema_params *ema,
                         fe_features *out);

/**
 * @brief Append the features as a JSON object: {"last_price":..,..,"last_trade_ts":..,
 * "ticks":..}; unset features are null; numbers in shortest round-trip form.
 */
void fe_features_write_json(hm_buf *b, const fe_features *f);

#endif
