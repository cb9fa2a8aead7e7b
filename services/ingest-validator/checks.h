/*
 * checks.h: the ingest-validator's stateless judging: the field checks of one
 * decoded record (what is missing, invalid, out of range, malformed), code
 * sets and their holds, the score, and the small numeric helpers the stateful
 * checks in engine.c share (relative difference, median, log-volume baseline).
 *
 * Pure functions over a tick and the thresholds; no state, no I/O, no
 * allocation: they sit on the per-record hot path.
 */
#ifndef IV_CHECKS_H
#define IV_CHECKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "himari/quality.h"
#include "himari/tick.h"

/** Codes that report a price move; a confirmed level change replaces them. */
#define IV_MOVE_CODES                                                                              \
    (HM_QBIT(HM_Q_EXTREME_PRICE_MOVE) | HM_QBIT(HM_Q_LARGE_PRICE_MOVE) |                           \
     HM_QBIT(HM_Q_PRICE_ANOMALY) | HM_QBIT(HM_Q_CROSS_EXCHANGE_DEVIATION))

/**
 * Codes that keep a tick's trade id out of the id sequence: the id itself (or
 * the record) is not trustworthy. A tick with a timestamp defect (out of order,
 * stale, future) still carries a real, new trade id, so the id sequence moves
 * with it while the timestamp sequence does not (see engine.c).
 */
#define IV_ID_HOLD_CODES                                                                           \
    (HM_QBIT(HM_Q_INVALID_TYPE) | HM_QBIT(HM_Q_INVALID_TRADE_ID) |                                 \
     HM_QBIT(HM_Q_DUPLICATE_TRADE_ID) | HM_QBIT(HM_Q_TRADE_ID_OUT_OF_ORDER))

/** The codes of the table carrying each HM_QHOLD_* flag (computed once from himari/quality.h). */
typedef struct iv_hold_masks {
    hm_qcodeset price, volume, seq;
} iv_hold_masks;

/** @brief The hold masks of the code table. */
iv_hold_masks iv_hold_masks_of_table(void);

#define IV_EXCH_MAX 32 /* bytes of a lower-cased exchange name, NUL included */

/** The configured exchanges, lower-case, with their lengths (built from iv_checks). */
typedef struct iv_exchset {
    size_t n;
    char (*names)[IV_EXCH_MAX];
    uint8_t *lens;
} iv_exchset;

/** @brief Build from a list of names (longer ones cannot match and are skipped). */
void iv_exchset_init(iv_exchset *x, const hm_str_list *names);
void iv_exchset_free(iv_exchset *x);
/** @brief Is the lower-cased name s[0..n) one of the set? */
bool iv_exchset_has(const iv_exchset *x, const char *s, size_t n);

/* ---- instruments: how a market's trades are to be read (checks.instruments) -------- */

typedef enum iv_ids {
    IV_IDS_SEQUENTIAL = 0, /* numeric ids count up by one: gaps and order are checked */
    IV_IDS_UNORDERED,      /* ids identify trades but follow no sequence: duplicates only */
} iv_ids;

#define IV_INSTRUMENT_SYM_MAX 48
#define IV_MAX_INSTRUMENTS    64

typedef struct iv_instrument {
    char exch[IV_EXCH_MAX];             /* lower case */
    char symbol[IV_INSTRUMENT_SYM_MAX]; /* "" for every symbol of the exchange ("*") */
    bool inverse;    /* volume counts contracts worth `contract` quote units each */
    double contract; /* inverse: quote units a contract; else base units a contract (1) */
    iv_ids ids;
} iv_instrument;

typedef struct iv_instruments {
    size_t n;
    iv_instrument v[IV_MAX_INSTRUMENTS];
} iv_instruments;

/**
 * @brief Parse checks.instruments: each entry "EXCHANGE SYMBOL|* [inverse] [contract=N]
 * [ids=sequential|unordered]". @return 0, or -EINVAL with msg (msg_len bytes) naming the
 * entry and what is wrong with it.
 */
int iv_instruments_parse(const hm_str_list *src, iv_instruments *out, char *msg, size_t msg_len);

/**
 * @brief The instrument of a market: the table's entry for (exchange, symbol), else its
 * entry for (exchange, *), else inferred: an exchange named *coinm is Binance's COIN-M
 * futures (inverse; 100 USD a contract for BTC, 10 USD for other bases), written into
 * *scratch; else NULL (linear, 1 base unit a contract, sequential ids).
 */
const iv_instrument *iv_instrument_of(const iv_instruments *t, const char *exch, size_t exch_len,
                                      const char *sym, size_t sym_len, iv_instrument *scratch);

/** @brief A trade's notional in quote units: inverse contracts x their size, else
 * price x volume x contract size. in NULL: price x volume. */
double iv_notional(const iv_instrument *in, double price, double volume);

/** What the field checks learnt about a record, for the stateful checks. */
typedef struct iv_fields {
    hm_qcodeset codes;
    bool ts_ok;          /* timestamp present, valid, >= 0 */
    bool symbol_ok;      /* symbol present and BASE/QUOTE of [A-Z0-9]{1,20} */
    bool exchange_ok;    /* exchange present and a valid string */
    bool exchange_known; /* ... and one of valid_exchanges */
    bool price_ok;       /* price usable and > 0 */
    bool volume_ok;      /* volume (transfers: amount) usable and > 0 */
    bool has_id;         /* a valid trade id */
    bool id_numeric;     /* ... a non-negative integer */
    uint64_t id;         /* its value, or a 64-bit hash of a string id */
    uint8_t exch_len;    /* exch: lower-cased, truncated to IV_EXCH_MAX - 1 */
    char exch[IV_EXCH_MAX];
} iv_fields;

/**
 * @brief The field checks of a decoded record: fills f (codes in f->codes).
 * An invalid "type" raises INVALID_TYPE and the record is judged as a trade.
 */
void iv_check_fields(const iv_checks *ck, const iv_exchset *xs, const hm_tick *t, iv_fields *f);

/** @brief BASE/QUOTE, each 1..20 of [A-Z0-9]. */
bool iv_symbol_well_formed(const char *s, size_t n);

/** @brief clamp(1 - sum of weights of codes, 0, 1); PARSE_ERROR scores 0. */
double iv_score(const double weights[HM_QCODE_COUNT], hm_qcodeset codes);

/** @brief |a / b - 1| (b > 0). */
static inline double iv_rel(double a, double b) {
    double r = a / b - 1.0;
    return r < 0 ? -r : r;
}

/** @brief Median of v[0..n) (n >= 1); sorts v in place. */
double iv_median(double *v, size_t n);

/**
 * @brief A fixed, unkeyed 64-bit hash of bytes; seed chains calls.
 *
 * Deterministic on purpose: it hashes string trade ids into a key's ring of recent ids,
 * which is written to the changelog and compared with the ids of ticks judged after a
 * restart, possibly by another process (and another build): a keyed or changed hash would
 * let a DUPLICATE_TRADE_ID across a restart go unseen. It must never change, and never
 * index a map fed by input: anyone can search for inputs it collides (hash flooding); the
 * state maps use the keyed hash of hash.h. A chosen collision in the ring costs nothing
 * but a false DUPLICATE_TRADE_ID on the sender's own feed (16 entries, compared in turn).
 */
uint64_t iv_hash_bytes(uint64_t seed, const char *p, size_t n);

/** The log-volume baseline of a key: exponentially weighted mean and variance. */
typedef struct iv_volstat {
    int64_t n;   /* accepted volumes */
    double mean; /* EW mean of ln(volume) */
    double var;  /* EW variance of ln(volume), started at 0 */
    double w;    /* (1 - alpha)^(n - 1): the weight the zero start still has */
} iv_volstat;

/** @brief Add an accepted volume (> 0) with smoothing alpha. */
void iv_volstat_add(iv_volstat *v, double volume, double alpha);
/** @brief Standard deviation, corrected for the zero start of the variance. */
double iv_volstat_sd(const iv_volstat *v);

#endif
