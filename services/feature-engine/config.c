/*
 * config.c: the feature-engine's configuration schema (config.h): "features.*" (Kafka
 * wiring, commit cadence, the feature parameters) and "events.*" (price-movement rules,
 * liquidation cascades, whale thresholds), validated across keys and turned into the
 * fe_params the engine reads. Runs at start-up and on ReloadConfig, never per record;
 * loading never half-applies (himari/service.h).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define FEATURES_BASE offsetof(fe_config, input_topic)
#define EVENTS_BASE   offsetof(fe_config, price_moves)
#define FC(field)     (offsetof(fe_config, field) - FEATURES_BASE)
#define EC(field)     (offsetof(fe_config, field) - EVENTS_BASE)
#define RL            HM_CFG_RELOADABLE

static const hm_cfg_key k_feature_keys[] = {
    {"features.input_topic", HM_CFG_STR, FC(input_topic), "quality_scores", 0, 0, -1,
     "topic of quality records to compute features from (read_committed)"},
    {"features.output_topic", HM_CFG_STR, FC(output_topic), "features_computed", 0, 0, -1,
     "topic of feature records: one per (symbol, interval), keyed by symbol"},
    {"features.events_topic", HM_CFG_STR, FC(events_topic), "causal_events", 0, 0, -1,
     "topic of price_movement, liquidation_cascade and whale_transfer events"},
    {"features.dlq_topic", HM_CFG_STR, FC(dlq_topic), "quality_scores.dlq", 0, 0, -1,
     "topic of input records that are not quality records, kept whole, error in a header"},
    {"features.group_id", HM_CFG_STR, FC(group_id), "feature-engine", 0, 0, -1,
     "Kafka consumer group of the feature-engine instances"},
    {"features.commit_interval_ms", HM_CFG_INT, FC(commit_interval_ms), "0", RL, 0, 60000,
     "commit the open transaction at least every N ms; 0: as soon as the previous commit "
     "ended and records are pending"},
    {"features.commit_max_records", HM_CFG_INT, FC(commit_max_records), "20000", RL, 1, 1000000,
     "... or once it holds this many input records"},
    {"features.delivery", HM_CFG_STR, FC(delivery), "exactly_once", 0, 0, -1,
     "exactly_once: features, events and offsets in one Kafka transaction; at_least_once: "
     "no transactions (a crash repeats the records since the last commit)"},
    {"features.quality_floor", HM_CFG_DOUBLE, FC(quality_floor), "0.7", RL, 0, 1,
     "records scored below are left out of the price features and counted in the quality "
     "features"},
    {"features.lateness_ms", HM_CFG_INT, FC(lateness_ms), "5000", 0, 0, 60000,
     "ticks older than their symbol's newest by more than this are late: counted, not "
     "applied"},
    {"features.emit_interval_ms", HM_CFG_INT, FC(emit_interval_ms), "1000", 0, 1000, 3600000,
     "one features_computed record per symbol and interval of event time (whole seconds "
     "that divide an hour)"},
    {"features.ema_fast_s", HM_CFG_DOUBLE, FC(ema_fast_s), "30", 0, 1, 86400,
     "time constant of the fast EMA of per-second closes, seconds"},
    {"features.ema_slow_s", HM_CFG_DOUBLE, FC(ema_slow_s), "300", 0, 1, 86400,
     "time constant of the slow EMA, seconds (above the fast one)"},
    {"features.cross_fresh_ms", HM_CFG_INT, FC(cross_fresh_ms), "10000", RL, 1, 3600000,
     "an exchange's last price older than this is left out of the cross-exchange spread"},
    {"features.max_symbols", HM_CFG_INT, FC(max_symbols), "500", 0, 1, 100000,
     "symbols with state (about 80 KiB per symbol and per exchange of it); at the bound the "
     "one updated least recently makes room"},
    {"features.redis_ttl_s", HM_CFG_INT, FC(redis_ttl_s), "3600", RL, 1, 604800,
     "expiry of the features:*:latest keys, seconds (refreshed on every write)"},
    {"features.history_max", HM_CFG_INT, FC(history_max), "1000", 0, 1, 100000,
     "features:{symbol}:history in Redis and GetHistory (in memory, about 220 bytes each) keep "
     "the newest N features_computed records of a symbol"},
};

static const hm_cfg_key k_event_keys[] = {
    {"events.price_moves", HM_CFG_STR_MAP, EC(price_moves), "{300: 0.01, 3600: 0.02}", RL, 0, -1,
     "price_movement rules: window in seconds (1..3600) -> |simple return| threshold (a "
     "fraction), on the symbol across its exchanges"},
    {"events.cascade_window_ms", HM_CFG_INT, EC(cascade_window_ms), "60000", RL, 1, 3600000,
     "liquidations within this of the previous one form one episode"},
    {"events.cascade_min_count", HM_CFG_INT, EC(cascade_min_count), "5", RL, 1, 1000000,
     "an episode with this many liquidations is a liquidation_cascade ..."},
    {"events.cascade_min_notional", HM_CFG_DOUBLE, EC(cascade_min_notional), "1000000", RL, 0, 1e15,
     "... as is one with this much notional (price x volume, quote units)"},
    {"events.severity_medium", HM_CFG_DOUBLE, EC(severity_medium), "1000000", RL, 0, 1e15,
     "cascade severity medium from this notional (below: low)"},
    {"events.severity_high", HM_CFG_DOUBLE, EC(severity_high), "5000000", RL, 0, 1e15,
     "severity high from this notional"},
    {"events.severity_critical", HM_CFG_DOUBLE, EC(severity_critical), "20000000", RL, 0, 1e15,
     "severity critical from this notional"},
    {"events.whale_thresholds", HM_CFG_STR_MAP, EC(whale_thresholds),
     "{BTC: 100, ETH: 1000, USDT: 10000000, USDC: 10000000}", RL, 0, -1,
     "whale_transfer: asset -> minimum amount moved (in the asset's units); other assets "
     "raise no event"},
};

static void sections_of(void *cfg, hm_cfg_section *out) {
    fe_config *c = cfg;
    hm_service_config_sections(&c->base, HM_SVC_FEATURE_ENGINE, out);
    out[HM_SERVICE_SECTIONS] =
        (hm_cfg_section){k_feature_keys, HM_ARRAY_LEN(k_feature_keys), (char *)c + FEATURES_BASE,
                         EVENTS_BASE - FEATURES_BASE};
    out[HM_SERVICE_SECTIONS + 1] =
        (hm_cfg_section){k_event_keys, HM_ARRAY_LEN(k_event_keys), (char *)c + EVENTS_BASE,
                         offsetof(fe_config, params) - EVENTS_BASE};
    out[HM_SERVICE_SECTIONS + 2] =
        (hm_cfg_section){hm_redis_config_keys, hm_redis_config_keys_n, &c->redis, sizeof(c->redis)};
}

static int parse_number(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v == v)) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int derive_moves(fe_config *c, const char *file, hm_err *err) {
    fe_params *p = &c->params;
    if (c->price_moves.n > FE_MAX_MOVES) {
        return hm_err_set(err, -EINVAL, "%s: events.price_moves: %zu rules, at most %d", file,
                          c->price_moves.n, FE_MAX_MOVES);
    }
    p->n_moves = c->price_moves.n;
    for (size_t i = 0; i < c->price_moves.n; i++) {
        double w, t;
        if (parse_number(c->price_moves.keys[i], &w) != 0 || w != (int)w || w < 1 || w > 3600) {
            return hm_err_set(err, -EINVAL,
                              "%s: events.price_moves: window '%s' is not a whole number of "
                              "seconds in 1..3600",
                              file, c->price_moves.keys[i]);
        }
        if (parse_number(c->price_moves.vals[i], &t) != 0 || t <= 0 || t > 10) {
            return hm_err_set(err, -EINVAL,
                              "%s: events.price_moves.%s: threshold '%s' is not a fraction in "
                              "(0, 10]",
                              file, c->price_moves.keys[i], c->price_moves.vals[i]);
        }
        p->moves[i] = (fe_move_rule){(int)w, t};
    }
    return 0;
}

static int derive_whales(fe_config *c, const char *file, hm_err *err) {
    fe_params *p = &c->params;
    if (c->whale_thresholds.n > FE_MAX_WHALES) {
        return hm_err_set(err, -EINVAL, "%s: events.whale_thresholds: %zu assets, at most %d", file,
                          c->whale_thresholds.n, FE_MAX_WHALES);
    }
    p->n_whales = c->whale_thresholds.n;
    for (size_t i = 0; i < c->whale_thresholds.n; i++) {
        const char *a = c->whale_thresholds.keys[i];
        size_t n = strlen(a);
        double v;
        if (n == 0 || n >= FE_NAME_MAX) {
            return hm_err_set(err, -EINVAL,
                              "%s: events.whale_thresholds: asset '%s' must be 1..%d bytes", file,
                              a, FE_NAME_MAX - 1);
        }
        if (parse_number(c->whale_thresholds.vals[i], &v) != 0 || v <= 0) {
            return hm_err_set(err, -EINVAL,
                              "%s: events.whale_thresholds.%s: '%s' is not an amount above 0", file,
                              a, c->whale_thresholds.vals[i]);
        }
        for (size_t j = 0; j <= n; j++) {
            p->whales[i].asset[j] = (char)toupper((unsigned char)a[j]);
        }
        p->whales[i].min_amount = v;
    }
    return 0;
}

static int validate(void *cfg, const char *path, hm_err *err) {
    fe_config *c = cfg;
    const char *file = path ? path : "(no config file)";
    const char *topics[][2] = {{"features.input_topic", c->input_topic},
                               {"features.output_topic", c->output_topic},
                               {"features.events_topic", c->events_topic},
                               {"features.dlq_topic", c->dlq_topic},
                               {"features.group_id", c->group_id}};
    for (size_t i = 0; i < HM_ARRAY_LEN(topics); i++) {
        if (!topics[i][1] || !*topics[i][1]) {
            return hm_err_set(err, -EINVAL, "%s: %s: must not be empty", file, topics[i][0]);
        }
    }
    if (!c->delivery ||
        (strcmp(c->delivery, "exactly_once") != 0 && strcmp(c->delivery, "at_least_once") != 0)) {
        return hm_err_set(err, -EINVAL,
                          "%s: features.delivery: '%s' is not exactly_once or at_least_once", file,
                          c->delivery ? c->delivery : "");
    }
    if (c->emit_interval_ms % 1000 != 0 || 3600000 % c->emit_interval_ms != 0) {
        return hm_err_set(err, -EINVAL,
                          "%s: features.emit_interval_ms: %lld is not whole seconds that divide "
                          "an hour (1000, 2000, 5000, 60000, ...)",
                          file, (long long)c->emit_interval_ms);
    }
    if (!(c->ema_fast_s < c->ema_slow_s)) {
        return hm_err_set(err, -EINVAL,
                          "%s: features.ema_fast_s (%g) must be below features.ema_slow_s (%g)",
                          file, c->ema_fast_s, c->ema_slow_s);
    }
    if (!(c->severity_medium <= c->severity_high && c->severity_high <= c->severity_critical)) {
        return hm_err_set(err, -EINVAL,
                          "%s: events.severity_medium <= severity_high <= severity_critical "
                          "must hold (%g, %g, %g)",
                          file, c->severity_medium, c->severity_high, c->severity_critical);
    }
    fe_params *p = &c->params;
    *p = (fe_params){
        .quality_floor = c->quality_floor,
        .lateness_ms = c->lateness_ms,
        .emit_interval_ms = c->emit_interval_ms,
        .ema = {.fast_s = c->ema_fast_s, .slow_s = c->ema_slow_s},
        .cross_fresh_ms = c->cross_fresh_ms,
        .max_symbols = c->max_symbols,
        .history_max = c->history_max,
        .cascade_window_ms = c->cascade_window_ms,
        .cascade_min_count = c->cascade_min_count,
        .cascade_min_notional = c->cascade_min_notional,
        .severity_medium = c->severity_medium,
        .severity_high = c->severity_high,
        .severity_critical = c->severity_critical,
    };
    int rc = derive_moves(c, file, err);
    return rc ? rc : derive_whales(c, file, err);
}

const hm_service_schema fe_config_schema = {
    .size = sizeof(fe_config),
    .n_sections = FE_CONFIG_SECTIONS,
    .sections = sections_of,
    .validate = validate,
};
