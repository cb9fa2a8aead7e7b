/*
 * anomaly.h: himari-sim's anomaly injector and its labels.
 *
 * Between the market's draft and commit (market.h) the injector may replace or
 * perturb a trade so that it carries exactly one kind of defect, and says so
 * with a label: {"seq":N,"kind":"..","exchange":"..","symbol":".."}, where
 * exchange and symbol name the feed the record was generated for (so an
 * unknown_exchange label still says "binance"). The labels are the ground
 * truth the validator's accuracy is measured against, so the injector must
 * never label a clean record, never leave an injected one unlabelled, never
 * let two anomalies overlap, and never let a defect move the market's own
 * state (an out_of_order tick does not move its feed's clock, a
 * duplicate_trade_id does not consume an id; a trade_id_gap does move the id
 * sequence, that is its point).
 *
 * Rules that keep anomalies apart (per feed = exchange+symbol):
 *   - only trades are perturbed; never a record of a same-ms burst, never a
 *     feed's first three trades, never a record at the same ms as its feed's
 *     previous one (so no labelled record can look like part of a burst);
 *   - after an anomaly the feed needs SIM_ANOMALY_GAP clean records before the
 *     next; after a level_shift every feed of the symbol needs
 *     SIM_ANOMALY_LEVEL_GAP clean records after its own labelled tick;
 *   - at most one feed is silent at a time.
 * The share of labelled records tracks the requested rate: the chance to inject
 * rises while labels lag rate x records and drops to zero while they lead
 * (a level_shift promises one label per exchange at once).
 *
 * Records that an identity defect makes unattributable to their feed
 * (malformed_json, invalid_utf8, unknown_exchange, invalid_symbol, a missing
 * timestamp/symbol/exchange) do not consume a trade id: a validator cannot
 * advance that feed's sequence with them, so the next clean trade carries the
 * id this one showed. Value and timestamp defects keep their feed identity
 * and consume their id as a clean trade would.
 */
#ifndef HIMARI_SIM_ANOMALY_H
#define HIMARI_SIM_ANOMALY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "himari/buf.h"
#include "market.h"
#include "rng.h"

#define SIM_ANOMALY_GAP        3  /* clean records of a feed between two of its anomalies */
#define SIM_ANOMALY_LEVEL_GAP  20 /* ... after a level_shift, for every feed of the symbol */
#define SIM_ANOMALY_MIN_TRADES 3  /* a feed's first trades are never perturbed */

/*
 * Every kind: identifier, name, weight in the uniform-by-default draw, help.
 * level_shift writes one label per exchange and blocks a symbol for a while,
 * feed_silence removes a feed for minutes: both are drawn less often so the
 * labelled records spread evenly over the kinds.
 */
#define SIM_ANOMALY_KINDS(X)                                                                       \
    X(PRICE_SPIKE, "price_spike", 1.0,                                                             \
      "one trade at price x (1 +- U(8%,30%)); the next trades are normal again")                   \
    X(VOLUME_SPIKE, "volume_spike", 1.0, "volume x U(50, 500)")                                    \
    X(NEGATIVE_PRICE, "negative_price", 1.0, "price below zero")                                   \
    X(ZERO_PRICE, "zero_price", 1.0, "price 0")                                                    \
    X(NEGATIVE_VOLUME, "negative_volume", 1.0, "volume below zero")                                \
    X(ZERO_VOLUME, "zero_volume", 1.0, "volume 0")                                                 \
    X(MISSING_FIELD, "missing_field", 1.0,                                                         \
      "one of timestamp/symbol/exchange/price/volume left out")                                    \
    X(WRONG_TYPE, "wrong_type", 1.0, "price or volume written as true, false, {} or []")           \
    X(NON_FINITE, "non_finite", 1.0, "price as bare NaN or Infinity, or the string \"NaN\"")       \
    X(MALFORMED_JSON, "malformed_json", 1.0,                                                       \
      "a truncated or garbled line (still one line) that is not a JSON object")                    \
    X(INVALID_UTF8, "invalid_utf8", 1.0, "the symbol contains the invalid UTF-8 bytes C3 28")      \
    X(OUT_OF_ORDER, "out_of_order", 1.0, "timestamp 2..10 s before its feed's previous tick")      \
    X(DUPLICATE_TRADE_ID, "duplicate_trade_id", 1.0,                                               \
      "its feed's previous trade id again, with a new timestamp")                                  \
    X(TRADE_ID_GAP, "trade_id_gap", 1.0,                                                           \
      "trade id 10..1000 above the previous; the sequence continues from there")                   \
    X(STALE, "stale", 1.0, "timestamp 60..600 s behind the simulated now")                         \
    X(DELAYED, "delayed", 1.0, "timestamp 12..25 s behind the simulated now")                      \
    X(FUTURE, "future", 1.0, "timestamp 10..120 s ahead of the simulated now")                     \
    X(EXCESSIVE_PRECISION, "excessive_precision", 1.0,                                             \
      "price printed with 10..12 decimals, the last one nonzero")                                  \
    X(UNKNOWN_EXCHANGE, "unknown_exchange", 1.0, "exchange \"fakex\"")                             \
    X(INVALID_SYMBOL, "invalid_symbol", 1.0, "symbol like \"BTCUSDT\", \"btc/usdt\" or \"BTC/\"")  \
    X(INVALID_SIDE, "invalid_side", 1.0, "side \"long\"")                                          \
    X(CROSS_EXCHANGE, "cross_exchange", 1.0,                                                       \
      "one exchange's price 2%..4% away from the others for one trade")                            \
    X(LEVEL_SHIFT, "level_shift", 0.25,                                                            \
      "the true price jumps by +-U(6%,12%) and stays; labels the first trade of each "             \
      "exchange after the jump")                                                                   \
    X(FEED_SILENCE, "feed_silence", 0.5,                                                           \
      "one exchange+symbol silent for 90..300 simulated s; labels the first record after")

typedef enum sim_anomaly_kind {
    SIM_AN_NONE = 0,
#define SIM_AN_ENUM_(id, name, weight, help) SIM_AN_##id,
    SIM_ANOMALY_KINDS(SIM_AN_ENUM_)
#undef SIM_AN_ENUM_
        SIM_AN_COUNT_
} sim_anomaly_kind;

/** @brief "price_spike", ...; "" for SIM_AN_NONE. */
const char *sim_anomaly_name(sim_anomaly_kind k);
/** @brief The one-line description used by --help. */
const char *sim_anomaly_help(sim_anomaly_kind k);
/** @brief The default weight of a kind in the draw. */
double sim_anomaly_default_weight(sim_anomaly_kind k);
/** @brief Name -> kind; -EINVAL for an unknown name. */
int sim_anomaly_parse(const char *name, size_t len, sim_anomaly_kind *out) HM_MUST_CHECK;

typedef struct sim_anomaly_opts {
    uint64_t seed;
    double rate;                   /* wanted share of labelled records, 0..1 */
    double weights[SIM_AN_COUNT_]; /* per kind; all zero: the defaults */
} sim_anomaly_opts;

/** Per-feed injector state. */
typedef struct sim_anomaly_feed {
    uint16_t cooldown;         /* clean records still needed before the next anomaly */
    uint8_t pending;           /* sim_anomaly_kind labelled on this feed's next record */
    uint16_t pending_cooldown; /* cooldown once that label is written */
} sim_anomaly_feed;

typedef struct sim_anomaly {
    sim_rng rng;
    double rate;
    double cum[SIM_AN_COUNT_]; /* cumulative normalised weights; cum[0] unused */
    size_t n_feeds;
    sim_anomaly_feed *feeds;
    uint64_t records;  /* records seen */
    uint64_t promised; /* labels written + labels waiting for their feed */
    uint64_t labelled; /* labels written */
    uint64_t by_kind[SIM_AN_COUNT_];
    int64_t silence_ends_ns; /* when the one silent feed speaks again; 0: none */
} sim_anomaly;

/**
 * @brief Set up an injector for a market of n_feeds feeds. Weights must be
 * >= 0 and not all zero (when rate > 0). The caller releases it with
 * sim_anomaly_free().
 */
int sim_anomaly_init(sim_anomaly *a, const sim_anomaly_opts *o, size_t n_feeds,
                     hm_err *err) HM_MUST_CHECK;
void sim_anomaly_free(sim_anomaly *a);

/**
 * @brief Look at a drafted record, perhaps inject, and say what its label is
 * (SIM_AN_NONE: clean). Called once per record, between sim_market_draft()
 * and sim_market_commit(). May change the market (level_shift, feed_silence).
 */
sim_anomaly_kind sim_anomaly_apply(sim_anomaly *a, sim_market *m, sim_record *rec);

/**
 * @brief Damage a formatted line for malformed_json (rec->garble != 0):
 * line[0..*len) is one record without its '\n'; it is changed in place and
 * *len may shrink. The result is never a JSON object and has no newline.
 */
void sim_anomaly_garble(const sim_record *rec, char *line, size_t *len);

/**
 * @brief Append one label line for the record at 0-based line index seq.
 */
void sim_anomaly_label(const sim_market *m, const sim_record *rec, sim_anomaly_kind kind,
                       uint64_t seq, hm_buf *out);

#endif
