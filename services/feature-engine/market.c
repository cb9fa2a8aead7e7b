/*
 * market.c: one market's rings of 1 s buckets and per-second closes (market.h).
 *
 * A ring slot holds the second it was last written for; a read checks the tag, so a slot
 * left from an older lap counts as empty and nothing ever has to be cleared as time
 * passes. Windows are summed on read (<= 300 buckets): exact, with no running sum to drift.
 * Prices of a bucket merge with Chan's formula for Welford's mean and M2, which keeps
 * the 5 min standard deviation accurate at BTC prices (p^2 ~ 1e9 would cancel badly).
 */
#include "market.h"

#include <assert.h>
#include <math.h>
#include <string.h>

static size_t bucket_slot(int64_t sec) {
    int64_t r = sec % FE_BUCKETS;
    return (size_t)(r < 0 ? r + FE_BUCKETS : r);
}

static size_t close_slot(int64_t sec) {
    int64_t r = sec % FE_CLOSE_SECONDS;
    return (size_t)(r < 0 ? r + FE_CLOSE_SECONDS : r);
}

void fe_market_init(fe_market *m) {
    memset(m, 0, sizeof(*m));
    for (size_t i = 0; i < FE_BUCKETS; i++) {
        m->buckets[i].sec = FE_NO_SEC;
    }
    for (size_t i = 0; i < FE_CLOSE_SECONDS; i++) {
        m->closes[i].ts_ms = FE_NO_SEC;
    }
    m->max_ts_ms = FE_NO_SEC;
    m->last_ts_ms = FE_NO_SEC;
    m->ema_sec = FE_NO_SEC;
    m->current_sec = FE_NO_SEC;
    m->first_sec = FE_NO_SEC;
}

/* Time-decayed EMA step: after dt seconds, the new value weighs 1 - e^(-dt/tau). */
static double ema_step(double ema, double x, double dt_s, double tau_s) {
    return ema + (1.0 - exp(-dt_s / tau_s)) * (x - ema);
}

static double close_price_of(const fe_market *m, int64_t sec) {
    const fe_close *c = &m->closes[close_slot(sec)];
    assert(c->ts_ms != FE_NO_SEC && fe_sec_of(c->ts_ms) == sec);
    return c->price;
}

/* Fold the current second's close into the EMAs (it is complete: a later second began). */
static void fold_current_second(fe_market *m, const fe_ema_params *ema) {
    double close = close_price_of(m, m->current_sec);
    if (m->ema_sec == FE_NO_SEC) {
        m->ema_fast = m->ema_slow = close;
    } else {
        double dt = (double)(m->current_sec - m->ema_sec);
        m->ema_fast = ema_step(m->ema_fast, close, dt, ema->fast_s);
        m->ema_slow = ema_step(m->ema_slow, close, dt, ema->slow_s);
    }
    m->ema_sec = m->current_sec;
}

static void apply_price(fe_market *m, const fe_tick_in *t, int64_t sec, const fe_ema_params *ema) {
    fe_close *c = &m->closes[close_slot(sec)];
    if (c->ts_ms == FE_NO_SEC || fe_sec_of(c->ts_ms) != sec || t->ts_ms >= c->ts_ms) {
        /* A slot from an older lap is this second's first close; within the second the
         * latest timestamp wins (a tie: the later arrival). A slot of a newer second
         * cannot be here: callers keep ticks within the ring. */
        assert(c->ts_ms == FE_NO_SEC || fe_sec_of(c->ts_ms) <= sec ||
               fe_sec_of(c->ts_ms) - sec >= FE_CLOSE_SECONDS);
        c->ts_ms = t->ts_ms;
        c->price = t->price;
    }
    if (m->last_ts_ms == FE_NO_SEC || t->ts_ms >= m->last_ts_ms) {
        m->last_ts_ms = t->ts_ms;
        m->last_price = t->price;
    }
    if (m->first_sec == FE_NO_SEC || sec < m->first_sec) {
        m->first_sec = sec;
    }
    if (m->current_sec == FE_NO_SEC) {
        m->current_sec = sec;
    } else if (sec > m->current_sec) {
        fold_current_second(m, ema);
        m->current_sec = sec;
    }
}

void fe_market_apply(fe_market *m, const fe_tick_in *t, const fe_ema_params *ema) {
    int64_t sec = fe_sec_of(t->ts_ms);
    fe_bucket *b = &m->buckets[bucket_slot(sec)];
    if (b->sec != sec) {
        assert(b->sec == FE_NO_SEC || b->sec < sec); /* the caller's lateness bound */
        memset(b, 0, sizeof(*b));
        b->sec = sec;
    }
    b->quality_n++;
    b->quality_sum += t->quality;
    b->bad += t->below_floor;
    if (t->is_price) {
        b->trades++;
        b->volume += t->volume;
        b->notional += t->price * t->volume;
        if (t->side == HM_SIDE_BUY) {
            b->buy_volume += t->volume;
        } else if (t->side == HM_SIDE_SELL) {
            b->sell_volume += t->volume;
        }
        double d = t->price - b->price_mean;
        b->price_mean += d / b->trades;
        b->price_m2 += d * (t->price - b->price_mean);
        apply_price(m, t, sec, ema);
    }
    if (m->max_ts_ms == FE_NO_SEC || t->ts_ms > m->max_ts_ms) {
        m->max_ts_ms = t->ts_ms;
    }
    m->ticks++;
}

void fe_market_window(const fe_market *m, int64_t end_sec, int seconds, fe_window *out) {
    assert(seconds > 0 && seconds <= FE_BUCKETS);
    memset(out, 0, sizeof(*out));
    for (int64_t s = end_sec - seconds + 1; s <= end_sec; s++) {
        const fe_bucket *b = &m->buckets[bucket_slot(s)];
        if (b->sec != s) {
            continue;
        }
        out->quality_n += b->quality_n;
        out->bad += b->bad;
        out->quality_sum += b->quality_sum;
        out->volume += b->volume;
        out->notional += b->notional;
        out->buy_volume += b->buy_volume;
        out->sell_volume += b->sell_volume;
        if (b->trades > 0) {
            /* Chan et al.: merge (n_a, mean_a, M2_a) with (n_b, mean_b, M2_b). */
            double na = out->trades, nb = b->trades, n = na + nb;
            double delta = b->price_mean - out->price_mean;
            out->price_mean += delta * nb / n;
            out->price_m2 += b->price_m2 + delta * delta * na * nb / n;
            out->trades += b->trades;
        }
    }
}

/* The newest second the ring can answer for, and how far back it reaches. */
static bool close_in_ring(const fe_market *m, int64_t sec) {
    return m->current_sec != FE_NO_SEC && sec > m->current_sec - FE_CLOSE_SECONDS;
}

bool fe_market_price_at(const fe_market *m, int64_t sec, double *price) {
    if (m->current_sec == FE_NO_SEC) {
        return false;
    }
    if (sec > m->current_sec) {
        sec = m->current_sec;
    }
    /* Before the first price there is nothing: no scan of an hour of empty slots (the
     * 1 h return of a market younger than an hour asks for exactly that). */
    for (int64_t s = sec; s >= m->first_sec && close_in_ring(m, s); s--) {
        const fe_close *c = &m->closes[close_slot(s)];
        if (c->ts_ms != FE_NO_SEC && fe_sec_of(c->ts_ms) == s) {
            *price = c->price;
            return true;
        }
    }
    return false;
}

bool fe_market_realized_vol(const fe_market *m, int64_t end_sec, int seconds, double *out) {
    double prev = 0, sum = 0;
    bool have_prev = fe_market_price_at(m, end_sec - seconds, &prev);
    int returns = 0;
    for (int64_t s = end_sec - seconds + 1; s <= end_sec; s++) {
        if (!close_in_ring(m, s)) {
            continue;
        }
        const fe_close *c = &m->closes[close_slot(s)];
        if (c->ts_ms == FE_NO_SEC || fe_sec_of(c->ts_ms) != s) {
            continue;
        }
        if (have_prev) {
            double r = log(c->price / prev);
            sum += r * r;
            returns++;
        }
        prev = c->price;
        have_prev = true;
    }
    if (returns == 0) {
        return false;
    }
    *out = sqrt(sum);
    return true;
}

bool fe_market_ema(const fe_market *m, const fe_ema_params *ema, double *fast, double *slow) {
    if (m->current_sec == FE_NO_SEC) {
        return false;
    }
    double close = close_price_of(m, m->current_sec);
    if (m->ema_sec == FE_NO_SEC) {
        *fast = *slow = close;
        return true;
    }
    double dt = (double)(m->current_sec - m->ema_sec);
    *fast = ema_step(m->ema_fast, close, dt, ema->fast_s);
    *slow = ema_step(m->ema_slow, close, dt, ema->slow_s);
    return true;
}
