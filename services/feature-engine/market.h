/*
 * market.h: the rolling state of one market (an exchange's symbol, or a symbol across its
 * exchanges) and the exact sliding windows the features are computed from.
 *
 * Time is event time (the tick's timestamp), cut into 1 s buckets: a window of W seconds
 * evaluated at second e holds every applied tick whose second is in (e - W, e]. Two rings:
 *   buckets  FE_BUCKETS one-second aggregates (count, volume, notional, buy and sell
 *            volume, Welford mean/M2 of prices, quality): windows up to 5 min;
 *   closes   FE_CLOSE_SECONDS per-second closing prices (the price of the latest tick of
 *            that second): log returns up to 1 h and realized volatility.
 * A window is summed from its buckets when asked (at most 300 of them), so nothing drifts:
 * there is no running sum to subtract from. The EMAs fold one close per second.
 *
 * Pure logic: no I/O, no clock; the caller passes each tick and decides which are late.
 * A market is a fixed-size struct (~80 KiB): memory is bounded by the number of markets.
 */
#ifndef FE_MARKET_H
#define FE_MARKET_H

#include <stdbool.h>
#include <stdint.h>

#include "himari/tick.h"

#define FE_BUCKETS       300  /* seconds: the longest bucketed window (5 min) */
#define FE_CLOSE_SECONDS 3602 /* seconds: the 1 h return looks 3600 s back, plus margin */
#define FE_NO_SEC        INT64_MIN

/** One second of ticks. */
typedef struct fe_bucket {
    int64_t sec;        /* the epoch second held; FE_NO_SEC: never used */
    uint32_t trades;    /* price ticks (quality >= floor) */
    uint32_t quality_n; /* every tick of the market, whatever its quality */
    uint32_t bad;       /* ... of them below the quality floor */
    double quality_sum; /* sum of their quality scores */
    double volume;      /* base units */
    double notional;    /* sum of price * volume (quote units) */
    double buy_volume;  /* volume of ticks with side "buy" */
    double sell_volume; /* ... "sell" */
    double price_mean;  /* Welford over the trades' prices */
    double price_m2;    /* sum of squared deviations from price_mean */
} fe_bucket;

/** The close of one second: the price of its latest tick (by timestamp; ties: later). */
typedef struct fe_close {
    int64_t ts_ms; /* that tick's timestamp; FE_NO_SEC: never used */
    double price;
} fe_close;

typedef struct fe_market {
    fe_bucket buckets[FE_BUCKETS];
    fe_close closes[FE_CLOSE_SECONDS];
    int64_t max_ts_ms;  /* latest timestamp applied (any tick); FE_NO_SEC: none */
    int64_t last_ts_ms; /* the last price's timestamp; FE_NO_SEC: no price yet */
    double last_price;
    /* EMAs over per-second closes: a second is folded when a tick of a later second
     * arrives; the current second's close is folded in on read (fe_market_ema). */
    double ema_fast, ema_slow;
    int64_t ema_sec;     /* the last folded second; FE_NO_SEC: none */
    int64_t current_sec; /* the second of the latest price tick; FE_NO_SEC: none */
    int64_t first_sec;   /* the second of the earliest price tick: nothing to find before */
    uint64_t ticks;      /* ticks applied */
} fe_market;

/** What one tick brings to a market. */
typedef struct fe_tick_in {
    int64_t ts_ms;
    double price;  /* > 0 and finite when is_price */
    double volume; /* >= 0 and finite when is_price */
    hm_side side;
    double quality;   /* the validator's score */
    bool below_floor; /* scored below the quality floor (counted in bad) */
    bool is_price;    /* at or above the floor with a usable price and volume: enters the
                         price features */
} fe_tick_in;

/** EMA time constants, seconds (> 0). */
typedef struct fe_ema_params {
    double fast_s, slow_s;
} fe_ema_params;

/** @brief An empty market. */
void fe_market_init(fe_market *m);

/**
 * @brief Apply one tick. Its second must not be older than the newest second applied
 * minus FE_BUCKETS - 1 (the caller's lateness bound keeps far less); ticks older than
 * the last price still enter the windows but do not change the last price.
 */
void fe_market_apply(fe_market *m, const fe_tick_in *t, const fe_ema_params *ema);

/** Sums over a window. */
typedef struct fe_window {
    uint32_t trades, quality_n, bad;
    double quality_sum, volume, notional, buy_volume, sell_volume;
    double price_mean, price_m2; /* over the window's trades */
} fe_window;

/** @brief Sum the buckets of the seconds (end_sec - seconds, end_sec]; seconds <= FE_BUCKETS. */
void fe_market_window(const fe_market *m, int64_t end_sec, int seconds, fe_window *out);

/**
 * @brief The last price at or before second sec (the close of the latest second <= sec
 * with a trade), looking back at most FE_CLOSE_SECONDS - 1 seconds from the newest.
 * @return true and *price, or false when there is none in the ring.
 */
bool fe_market_price_at(const fe_market *m, int64_t sec, double *price);

/**
 * @brief Realized volatility over (end_sec - seconds, end_sec]: sqrt of the sum of
 * squared log returns between consecutive per-second closes, the first measured from
 * the price at end_sec - seconds. @return false when the window has no return.
 */
bool fe_market_realized_vol(const fe_market *m, int64_t end_sec, int seconds, double *out);

/**
 * @brief The EMAs as of now: the folded value with the current second's close folded
 * in. @return false before the first price.
 */
bool fe_market_ema(const fe_market *m, const fe_ema_params *ema, double *fast, double *slow);

/** @brief floor(ts_ms / 1000), also for negative times. */
static inline int64_t fe_sec_of(int64_t ts_ms) {
    return ts_ms >= 0 ? ts_ms / 1000 : -((-ts_ms + 999) / 1000);
}

#endif
