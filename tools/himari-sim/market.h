/*
 * market.h: the simulated market behind himari-sim, records in arrival order.
 *
 * Model (all of it a function of the seed and the options, never of the wall
 * clock unless the caller passes "live" time):
 *   - per symbol a true price by geometric Brownian motion with zero drift and
 *     the annualised volatility of its asset's row in sim_asset_table;
 *   - each exchange quotes the true price times its own fixed offset
 *     (U(-0.02%, +0.02%)) plus a bid-ask bounce (buys up to +0.01%, sells up
 *     to -0.01%), rounded to the symbol's tick and printed with exactly the
 *     tick's decimals;
 *   - volumes lognormal around the asset's median with sigma 0.9, rounded to
 *     1e-6 (trailing zeros trimmed);
 *   - arrivals Poisson per (exchange, symbol) with shares from the asset and
 *     exchange weights, summing to `rate` records/s; in file mode the clock
 *     advances by the Poisson gaps, live mode passes the wall clock instead;
 *   - bursts: a trade now and then starts 2..6 trades at one millisecond with
 *     consecutive ids (clean data: a market order sweeping resting orders);
 *   - each exchange has a clock skew (-300..+300 ms) plus 0..20 ms of jitter
 *     per record, clamped so that a feed's clean timestamps never go back, and
 *     a trade-id sequence per symbol starting at a random 6..9-digit number;
 *   - liquidations and on-chain transfers at the given fractions of records.
 *
 * Generation is two-step so the anomaly injector (anomaly.h) can change a
 * record before it touches any state: sim_market_draft() fills a record and
 * moves only the clock and the true prices; sim_market_commit() then moves the
 * feed's clock and id sequence by what the (possibly perturbed) record says.
 * Pure logic: no I/O, no allocation after sim_market_new().
 */
#ifndef HIMARI_SIM_MARKET_H
#define HIMARI_SIM_MARKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "himari/buf.h"
#include "himari/common.h"
#include "rng.h"

#define SIM_MAX_SYMBOLS   64
#define SIM_MAX_EXCHANGES 32
#define SIM_NAME_MAX      32 /* bytes of a symbol or exchange name, NUL included */

/** Per-asset defaults, keyed by a symbol's base asset ("BTC" of "BTC/USDT"). */
typedef struct sim_asset_defaults {
    const char *base;     /* NULL: the row for every other asset */
    double price;         /* starting true price, quote units */
    int decimals;         /* tick = 10^-decimals */
    double vol;           /* annualised volatility of the GBM (0.6 = 60%) */
    double median_volume; /* median trade size, base units (lognormal, sigma 0.9) */
    double whale_min;     /* on-chain transfer amounts, log-uniform in [min, max] */
    double whale_max;
    double weight; /* share of the arrival rate */
} sim_asset_defaults;

/** Per-exchange defaults; an exchange not listed gets the last row's. */
typedef struct sim_exchange_defaults {
    const char *name;        /* NULL: every other exchange */
    double weight;           /* share of the arrival rate */
    bool numbers_as_strings; /* "price":"37000.12" (kraken style) */
    bool type_on_trades;     /* writes "type":"trade"; others omit it for trades */
    bool iso_when_mixed;     /* ISO-8601 timestamps under --timestamps mixed */
} sim_exchange_defaults;

extern const sim_asset_defaults sim_asset_table[];
extern const sim_exchange_defaults sim_exchange_table[];

typedef enum sim_ts_format { SIM_TS_MS = 0, SIM_TS_ISO, SIM_TS_MIXED } sim_ts_format;

/** What real markets do that the default model does not (--profile; all clean data). */
typedef enum sim_profile {
    SIM_PROFILE_SPARSE = 1u << 0,    /* lulls: 5% of arrival gaps 10..60 times longer */
    SIM_PROFILE_FAT_TAILS = 1u << 1, /* 1% of sizes times Pareto(1.1), up to 10,000x */
    SIM_PROFILE_BURSTS = 1u << 2,    /* a burst is 2..500 trades in one ms (log-uniform) */
    SIM_PROFILE_INSURANCE = 1u << 3, /* 0.05% of trades 1.5..2.5% off the book, against
                                        the taker (an insurance-fund fill), then back */
    SIM_PROFILE_INVERSE = 1u << 4,   /* exchanges named *coinm: sizes in contracts of 100
                                        USD (BTC) or 10 USD (other bases), whole numbers */
} sim_profile;

#define SIM_PROFILES(X)                                                                            \
    X(SIM_PROFILE_SPARSE, "sparse",                                                                \
      "5% of arrival gaps 10..60x longer (lulls; --rate stays the mean)")                          \
    X(SIM_PROFILE_FAT_TAILS, "fat-tails",                                                          \
      "1% of trade sizes times a Pareto(1.1) factor, up to 10,000x")                               \
    X(SIM_PROFILE_BURSTS, "bursts", "bursts of 2..500 trades in one ms, log-uniform")              \
    X(SIM_PROFILE_INSURANCE, "insurance-fund",                                                     \
      "0.05% of trades print 1.5..2.5% off the book against the taker; the next is back")          \
    X(SIM_PROFILE_INVERSE, "inverse",                                                              \
      "exchanges named *coinm trade inverse contracts: sizes in whole contracts of 100 USD (BTC) " \
      "or 10 USD")

/** @brief The profile named name (len bytes), 0 when none is. */
unsigned sim_profile_parse(const char *name, size_t len);

typedef struct sim_market_opts {
    uint64_t seed;
    const char *const *symbols; /* "BTC/USDT", ...: upper-case BASE/QUOTE */
    size_t n_symbols;
    const char *const *exchanges; /* lower-case names */
    size_t n_exchanges;
    double rate;             /* records/s over all feeds (> 0) */
    double liquidation_rate; /* fraction of records */
    double transfer_rate;    /* fraction of records */
    sim_ts_format ts_format;
    int64_t start_ms;  /* the simulated clock's start */
    unsigned profiles; /* sim_profile bits */
    uint64_t first_id; /* every feed's first trade id; 0: a 6..9-digit one of the seed's */
} sim_market_opts;

typedef struct sim_symbol {
    char name[SIM_NAME_MAX];
    uint8_t name_len;
    char base[SIM_NAME_MAX]; /* "BTC" */
    uint8_t base_len;
    const sim_asset_defaults *def;
    int decimals;
    int64_t pow10;      /* 10^decimals: ticks per quote unit */
    double true_price;  /* the GBM's current value */
    int64_t updated_ns; /* when true_price was last moved */
    double var_per_ns;  /* vol^2 per nanosecond */
} sim_symbol;

typedef struct sim_exchange {
    char name[SIM_NAME_MAX];
    uint8_t name_len;
    bool numbers_as_strings;
    bool type_on_trades;
    bool iso_ts;
    int64_t skew_ms;     /* constant clock offset, -300..+300 */
    double price_offset; /* fixed relative quote offset, -0.0002..+0.0002 */
    bool inverse;        /* SIM_PROFILE_INVERSE on a *coinm exchange: sizes in contracts */
} sim_exchange;

/** One (exchange, symbol): its clock, id sequence and silence. */
typedef struct sim_feed {
    uint16_t sym;
    uint16_t exch;
    int64_t last_ts_ms;      /* timestamp of its last committed record; INT64_MIN before */
    uint64_t next_id;        /* the id its next clean trade carries */
    uint64_t n_trades;       /* committed trades */
    int64_t silent_until_ns; /* no arrivals before this (feed_silence); 0: none */
    bool no_burst;           /* set while a label waits for this feed's next record */
} sim_feed;

typedef enum sim_rkind { SIM_R_TRADE = 0, SIM_R_LIQUIDATION, SIM_R_TRANSFER } sim_rkind;

/** The fields of a trade or liquidation an anomaly may replace, in written order
 * (after "type", which is never replaced). */
typedef enum sim_rfield {
    SIM_RF_TS = 0,
    SIM_RF_EXCHANGE,
    SIM_RF_SYMBOL,
    SIM_RF_PRICE,
    SIM_RF_VOLUME,
    SIM_RF_TRADE_ID,
    SIM_RF_SIDE,
    SIM_RF_COUNT_,
} sim_rfield;

/** How the anomaly injector replaced a field. */
typedef enum sim_ovkind {
    SIM_OV_OMIT = 1, /* the key is not written */
    SIM_OV_RAW,      /* text is the JSON value, written verbatim */
    SIM_OV_NUMTEXT,  /* text is a number, quoted when the exchange quotes numbers */
} sim_ovkind;

#define SIM_OV_TEXT_MAX 48

typedef struct sim_override {
    uint8_t how; /* sim_ovkind */
    uint8_t len;
    char text[SIM_OV_TEXT_MAX];
} sim_override;

/** One record, drafted by the market and perhaps perturbed by an anomaly. */
typedef struct sim_record {
    sim_rkind kind;
    uint32_t feed; /* index into sim_market.feeds (transfers: the feed that chose them) */
    uint16_t sym;
    uint16_t exch;
    int64_t sim_ms;      /* the simulated "now" when it arrived (no skew) */
    int64_t ts_ms;       /* the timestamp written */
    int64_t price_ticks; /* price in ticks of the symbol (may go negative: anomalies) */
    int64_t vol_micro;   /* volume (transfers: amount) in 1e-6 units */
    uint64_t trade_id;   /* trades only */
    bool buy;
    bool in_burst;         /* part of a same-ms burst: never perturbed */
    bool transfer_to_exch; /* transfers: "exchange" is written */
    char from[43];         /* transfers: "0x" + 40 hex */
    char to[43];
    char tx_hash[67]; /* "0x" + 64 hex */

    /* What sim_market_commit() does with the feed (the injector may change it). */
    bool commit_clock; /* feed clock moves to commit_ts */
    int64_t commit_ts;
    bool commit_id; /* feed id sequence moves to commit_next_id */
    uint64_t commit_next_id;

    /* Anomaly hooks: replaced fields and line-level damage. */
    uint32_t ov_mask; /* bit sim_rfield set: ov[field] applies */
    sim_override ov[SIM_RF_COUNT_];
    uint8_t garble;   /* 0 none; else a malformed_json variant (anomaly.c) */
    double garble_at; /* [0, 1): where the damage goes */
} sim_record;

typedef struct sim_market {
    sim_rng rng;
    double rate; /* Poisson events/s: records/s less the burst records */
    double liquidation_rate;
    double transfer_rate;
    sim_ts_format ts_format;
    unsigned profiles;
    double gap_scale; /* sparse: arrival gaps divided by this, so --rate stays the mean */
    int64_t now_ns;   /* the simulated clock, ns since the epoch */

    size_t n_sym;
    size_t n_exch;
    size_t n_feeds; /* n_sym * n_exch; feed = sym * n_exch + exch */
    sim_symbol sym[SIM_MAX_SYMBOLS];
    sim_exchange exch[SIM_MAX_EXCHANGES];
    sim_feed *feeds;
    double *feed_cum; /* cumulative arrival weights, last = 1 */

    /* A burst in progress: burst_left more trades of burst_feed at burst_ts. */
    int burst_left;
    uint32_t burst_feed;
    int64_t burst_ts;
    int64_t burst_price_ticks;
    bool burst_buy;
    bool committed; /* the last draft was committed (drafts must alternate with commits) */
} sim_market;

/**
 * @brief Build a market. Symbols must be BASE/QUOTE of [A-Z0-9], exchanges
 * [a-z0-9_-]; names unique. On error err names the offending value.
 * The caller frees *out with sim_market_free().
 */
int sim_market_new(const sim_market_opts *o, sim_market **out, hm_err *err) HM_MUST_CHECK;
void sim_market_free(sim_market *m);

/**
 * @brief Draft the next record in arrival order. live_now_ms < 0: file mode,
 * the clock advances by a Poisson gap; otherwise the clock is set to
 * max(clock, live_now_ms) (live mode: timestamps follow the wall clock).
 * Must be followed by sim_market_commit() before the next draft.
 */
void sim_market_draft(sim_market *m, int64_t live_now_ms, sim_record *rec);

/** @brief Apply a drafted record's commit_* to its feed. */
void sim_market_commit(sim_market *m, const sim_record *rec);

/**
 * @brief Append the record as one JSON line (with '\n') to out. Numbers are
 * formatted without printf. Line-level damage (rec->garble) is not applied here.
 */
void sim_record_format(const sim_market *m, const sim_record *rec, hm_buf *out);

/** @brief The price's text with exactly the tick's decimals ("-37000.10"). Returns length. */
size_t sim_format_ticks(int64_t ticks, int decimals, char *out, size_t out_size);
/** @brief A 1e-6 fixed-point value, trailing zeros trimmed ("0.05", "3"). Returns length. */
size_t sim_format_micro(int64_t micro, char *out, size_t out_size);

/** @brief The simulated clock in ms since the epoch. */
static inline int64_t sim_market_now_ms(const sim_market *m) {
    return m->now_ns / 1000000;
}

/**
 * @brief Multiply a symbol's true price by factor from now on (level_shift):
 * every exchange's quotes follow.
 */
void sim_market_shift_level(sim_market *m, uint16_t sym, double factor);

/** @brief Silence a feed: no arrivals before until_ns (feed_silence). */
void sim_market_silence(sim_market *m, uint32_t feed, int64_t until_ns);

/** @brief Is a feed silent at the simulated now? */
static inline bool sim_market_feed_silent(const sim_market *m, uint32_t feed) {
    return m->feeds[feed].silent_until_ns > m->now_ns;
}

#endif
