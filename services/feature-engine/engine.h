/*
 * engine.h: the feature-engine's logic, one call per quality record, shared by Kafka
 * mode (pipeline.c) and --replay (replay.c).
 *
 *   quality record --> per symbol: one market across its exchanges + one per exchange
 *                        |  (market.h: exact 1 s-bucket windows; feature_set.h)
 *                        |--> features_computed: one record per (symbol, interval),
 *                        |    emitted when the symbol's first tick of a later interval
 *                        |    arrives (so it is a function of the input alone)
 *                        |--> the latest view (Redis, gRPC): the symbols a record changed
 *                        '--> causal events: price_movement, liquidation_cascade,
 *                             whale_transfer, each with an id stable across replays
 *
 * Input arrives keyed by symbol, so a symbol's ticks from every exchange are on one
 * partition, in order: the per-partition order is the whole truth, and a replay of the
 * same records in the same order emits the same bytes. Symbols are kept per partition
 * (a revoke drops them). Memory is bounded: at most max_symbols symbols (the one updated
 * least recently makes room, and is counted) and FE_MAX_EXCHANGES exchanges each. Pure
 * logic: no I/O, no clock.
 */
#ifndef FE_ENGINE_H
#define FE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "feature_set.h"
#include "himari/quality.h"
#include "market.h"

#define FE_MAX_EXCHANGES 8  /* per symbol; a ninth exchange's ticks are counted, not used */
#define FE_MAX_MOVES     8  /* price-movement rules */
#define FE_MAX_WHALES    32 /* per-asset whale thresholds */
#define FE_NAME_MAX      48 /* symbol, exchange and asset names, bytes */

/** A price movement: |simple return| over window_s at or above threshold (a fraction). */
typedef struct fe_move_rule {
    int window_s; /* 1..3600 */
    double threshold;
} fe_move_rule;

typedef struct fe_whale_rule {
    char asset[FE_NAME_MAX]; /* upper case, "BTC" */
    double min_amount;       /* in the asset's units */
} fe_whale_rule;

/** Everything the logic reads from the configuration. */
typedef struct fe_params {
    double quality_floor;     /* ticks scored below are out of the price features */
    int64_t lateness_ms;      /* ticks older than the symbol's newest by more are late */
    int64_t emit_interval_ms; /* features_computed cadence, whole seconds, divides 1 h */
    fe_ema_params ema;
    int64_t cross_fresh_ms; /* exchanges whose last price is older are out of the spread */
    int64_t max_symbols;    /* bound on symbols with state, every partition together */
    int64_t history_max;    /* emitted intervals kept per symbol for GetHistory (memory) */
    fe_move_rule moves[FE_MAX_MOVES];
    size_t n_moves;
    int64_t cascade_window_ms;   /* liquidations within this of each other form an episode */
    int64_t cascade_min_count;   /* an episode is a cascade with this many liquidations ... */
    double cascade_min_notional; /* ... or this much notional (quote units, e.g. USD) */
    double severity_medium, severity_high, severity_critical; /* notional thresholds */
    fe_whale_rule whales[FE_MAX_WHALES];
    size_t n_whales;
} fe_params;

/** @brief The defaults the config's defaults describe (tests start from these). */
void fe_params_default(fe_params *p);

typedef struct fe_engine fe_engine;

/** Where output goes. key: the symbol (or asset for a transfer without one). */
typedef void (*fe_out_fn)(void *ud, int32_t partition, const char *key, size_t key_len,
                          const char *json, size_t len);

/** A features_computed record of the interval ending at interval_end_ms (key: symbol). */
typedef void (*fe_features_fn)(void *ud, int32_t partition, const char *key, size_t key_len,
                               int64_t interval_end_ms, const char *json, size_t len);

typedef struct fe_sinks {
    fe_features_fn features; /* a features_computed record */
    fe_out_fn event;         /* a causal event */
    void *ud;
} fe_sinks;

/** Counters (totals since the engine was made). */
typedef struct fe_stats {
    uint64_t records;        /* quality records processed */
    uint64_t applied;        /* ticks applied to markets */
    uint64_t below_floor;    /* ... of them below the quality floor */
    uint64_t late;           /* ticks older than the lateness bound: not applied */
    uint64_t unusable;       /* no symbol, no exchange, no timestamp, parse errors */
    uint64_t untrusted;      /* carrying a code that holds the validator's sequence state */
    uint64_t liquidations;   /* liquidation records (they feed cascades only) */
    uint64_t transfers;      /* transfer records (they feed whale events only) */
    uint64_t exchanges_full; /* ticks of a symbol's exchange beyond FE_MAX_EXCHANGES */
    uint64_t evicted;        /* symbols dropped at max_symbols */
    uint64_t emitted;        /* features_computed records */
    uint64_t events;         /* causal events */
} fe_stats;

/**
 * @brief A new engine over p (copied). sinks may be changed with fe_engine_set_sinks.
 * @return the engine (free with fe_engine_free), or NULL when out of memory.
 */
fe_engine *fe_engine_new(const fe_params *p, const fe_sinks *sinks);
void fe_engine_free(fe_engine *e);
void fe_engine_set_sinks(fe_engine *e, const fe_sinks *sinks);
/** @brief New parameters (ReloadConfig); state is kept. */
void fe_engine_set_params(fe_engine *e, const fe_params *p);

/**
 * @brief Process one decoded quality record of a partition. Calls the sinks for what
 * it emits (features of intervals this record closed, events) before returning.
 */
void fe_engine_process(fe_engine *e, int32_t partition, const hm_quality *q);

/** @brief Forget every symbol of a partition (revoked, or rewound to be rebuilt). */
void fe_engine_drop_partition(fe_engine *e, int32_t partition);

const fe_stats *fe_engine_stats(const fe_engine *e);
size_t fe_engine_symbols(const fe_engine *e);

/* ---- the latest view (Redis, gRPC) --------------------------------------------------- */

/**
 * @brief Visit the symbols changed since the last call (and clear the mark), in first-
 * change order: the pipeline writes their latest view after each batch of input.
 * fn gets the symbol's name. Returns how many were visited.
 */
size_t fe_engine_take_changed(fe_engine *e, void (*fn)(void *ud, const char *symbol), void *ud);

/**
 * @brief Visit the exchanges of a symbol (lower case, in name order). @return how many
 * (0 for an unknown symbol).
 */
size_t fe_engine_each_exchange(const fe_engine *e, const char *symbol,
                               void (*fn)(void *ud, const char *exchange), void *ud);

/**
 * @brief The latest features of a symbol across its exchanges (exchange NULL) or on one
 * exchange (lower case), windows ending just after its newest tick.
 * Computed on the first read after the market changed and kept until its next change
 * (or new parameters), so every reader of a loop turn shares one computation.
 * @return 0, or -ENOENT for an unknown symbol or exchange.
 */
int fe_engine_latest(fe_engine *e, const char *symbol, const char *exchange, fe_features *out);

/**
 * @brief The latest view as JSON, appended to b: {"symbol":..,"timestamp":<newest tick
 * ms>,"features":{..},"exchanges":{"binance":{..},..}}; with an exchange, that one's:
 * {"symbol":..,"exchange":..,"timestamp":..,"features":{..}}. @return 0 or -ENOENT.
 */
int fe_engine_latest_json(fe_engine *e, const char *symbol, hm_buf *b);
int fe_engine_latest_exchange_json(fe_engine *e, const char *symbol, const char *exchange,
                                   hm_buf *b);

/** One emitted interval of a symbol, across its exchanges (GetHistory). */
typedef struct fe_history_entry {
    int64_t interval_start_ms, interval_end_ms;
    fe_features features;
} fe_history_entry;

/**
 * @brief Visit the symbol's newest emitted intervals with interval_end in [from, to]
 * (0: unbounded), at most limit of them (the newest), oldest first. @return how many,
 * or -ENOENT for an unknown symbol.
 */
int fe_engine_history(const fe_engine *e, const char *symbol, int64_t from_ms, int64_t to_ms,
                      size_t limit, void (*fn)(void *ud, const fe_history_entry *h), void *ud);

/**
 * @brief The latest features of a symbol across its exchanges and of each exchange, the
 * exchanges' names in name order. @return the number of exchanges written (at most
 * max_exchanges), or -ENOENT.
 */
int fe_engine_latest_all(fe_engine *e, const char *symbol, fe_features *all,
                         fe_features *per_exchange, const char **exchange_names,
                         size_t max_exchanges);

/** @brief Visit every symbol's name (ListSymbols), in no particular order. */
void fe_engine_each_symbol(const fe_engine *e, void (*fn)(void *ud, const char *symbol), void *ud);

#endif
