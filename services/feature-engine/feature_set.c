/*
 * feature_set.c: the feature set of a market from its windows (feature_set.h; the formulas
 * are in docs/FEATURES.md, in the same order as here).
 */
#include "feature_set.h"

#include <math.h>

static const char *const k_keys[FE_FEATURE_COUNT] = {
#define FE_FEATURE_KEY_(id, key) [FE_F_##id] = key,
    FE_FEATURES(FE_FEATURE_KEY_)
#undef FE_FEATURE_KEY_
};

const char *fe_feature_key(fe_feature f) {
    return (unsigned)f < FE_FEATURE_COUNT ? k_keys[f] : "unknown";
}

static void set_return(fe_features *out, fe_feature id, const fe_market *m, int64_t end_sec,
                       int seconds, double last) {
    double then;
    if (fe_market_price_at(m, end_sec - seconds, &then)) {
        fe_features_set(out, id, log(last / then));
    }
}

static void set_window(fe_features *out, const fe_market *m, int64_t end_sec, int seconds,
                       fe_feature vwap, fe_feature trades, fe_feature volume, fe_window *w) {
    fe_market_window(m, end_sec, seconds, w);
    fe_features_set(out, trades, w->trades);
    fe_features_set(out, volume, w->volume);
    if (w->volume > 0) {
        fe_features_set(out, vwap, w->notional / w->volume);
    }
}

void fe_features_compute(const fe_market *m, int64_t as_of_ms, const fe_ema_params *ema,
                         fe_features *out) {
    *out = (fe_features){.last_trade_ms = m->last_ts_ms, .as_of_ms = as_of_ms, .ticks = m->ticks};
    int64_t end = fe_sec_of(as_of_ms - 1);
    double last = 0;
    bool priced = fe_market_price_at(m, end, &last);
    if (priced) {
        fe_features_set(out, FE_F_LAST_PRICE, last);
        set_return(out, FE_F_RETURN_1S, m, end, 1, last);
        set_return(out, FE_F_RETURN_10S, m, end, 10, last);
        set_return(out, FE_F_RETURN_1M, m, end, 60, last);
        set_return(out, FE_F_RETURN_5M, m, end, 300, last);
        set_return(out, FE_F_RETURN_1H, m, end, 3600, last);
    }
    double rv;
    if (fe_market_realized_vol(m, end, 60, &rv)) {
        fe_features_set(out, FE_F_RVOL_1M, rv);
    }
    if (fe_market_realized_vol(m, end, 300, &rv)) {
        fe_features_set(out, FE_F_RVOL_5M, rv);
    }
    double fast, slow;
    if (priced && fe_market_ema(m, ema, &fast, &slow)) {
        fe_features_set(out, FE_F_EMA_FAST, fast);
        fe_features_set(out, FE_F_EMA_SLOW, slow);
        fe_features_set(out, FE_F_EMA_SPREAD_BPS, (fast - slow) / slow * 1e4);
    }

    fe_window w1, w5;
    set_window(out, m, end, 60, FE_F_VWAP_1M, FE_F_TRADES_1M, FE_F_VOLUME_1M, &w1);
    set_window(out, m, end, 300, FE_F_VWAP_5M, FE_F_TRADES_5M, FE_F_VOLUME_5M, &w5);
    double sided = w1.buy_volume + w1.sell_volume;
    if (sided > 0) {
        fe_features_set(out, FE_F_IMBALANCE_1M, (w1.buy_volume - w1.sell_volume) / sided);
    }
    fe_features_set(out, FE_F_INTENSITY_1M, w1.trades / 60.0);
    if (w1.quality_n > 0) {
        fe_features_set(out, FE_F_MEAN_QUALITY_1M, w1.quality_sum / w1.quality_n);
        fe_features_set(out, FE_F_BAD_TICK_RATIO_1M, (double)w1.bad / w1.quality_n);
    }
    if (priced && w5.trades >= 2) {
        double sd = sqrt(w5.price_m2 / w5.trades); /* population: the window is all there is */
        if (sd > 0) {
            fe_features_set(out, FE_F_ZSCORE_5M, (last - w5.price_mean) / sd);
        }
    }
}

void fe_features_write_json(hm_buf *b, const fe_features *f) {
    hm_buf_putc(b, '{');
    for (int i = 0; i < FE_FEATURE_COUNT; i++) {
        hm_json_key(b, k_keys[i]);
        if (fe_features_has(f, (fe_feature)i)) {
            hm_json_double(b, f->v[i]);
        } else {
            hm_buf_puts(b, "null");
        }
        hm_buf_putc(b, ',');
    }
    hm_json_key(b, "last_trade_ts");
    if (f->last_trade_ms == FE_NO_SEC) {
        hm_buf_puts(b, "null");
    } else {
        hm_buf_i64(b, f->last_trade_ms);
    }
    hm_buf_putc(b, ',');
    hm_json_key(b, "ticks");
    hm_buf_u64(b, f->ticks);
    hm_buf_putc(b, '}');
}
