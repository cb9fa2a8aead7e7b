/*
 * scenario.h: scripted market stories for himari-sim (--scenario NAME): the records the
 * graph and the feature-engine's tests need, on top of the simulated market.
 *
 *   whale-dump  a calm market (every symbol's volatility x 0.3) for an hour and a minute
 *               (so that 1 h returns exist), then on BTC/USDT:
 *                 T          a whale transfer of 850 BTC to binance
 *                 T+60..660  the BTC price falls 3% (log-linear, every exchange follows)
 *                 T+720      25 liquidations on binance (sell, 10 BTC each) as fast as
 *                            the feed's arrivals come
 *               with T = start + 3660 s; the story is over at T+780 s (run --duration
 *               4500 or more). The feature-engine's defaults then raise exactly:
 *               one whale_transfer, one price_movement per rule (300 s / 1% and
 *               3600 s / 2%) on BTC/USDT, one liquidation_cascade (severity high).
 *
 * A scenario rewrites drafted records (before anomalies) and moves true prices; it is a
 * function of the simulated clock only, so file mode replays the same story.
 */
#ifndef HIMARI_SIM_SCENARIO_H
#define HIMARI_SIM_SCENARIO_H

#include <stdbool.h>
#include <stdint.h>

#include "himari/common.h"
#include "market.h"

typedef enum sim_scenario_kind { SIM_SCENARIO_NONE = 0, SIM_SCENARIO_WHALE_DUMP } sim_scenario_kind;

typedef struct sim_scenario {
    sim_scenario_kind kind;
    int64_t t_ms;       /* T: the story's start (simulated ms) */
    uint16_t sym, exch; /* BTC/USDT, binance */
    bool whale_done;
    double drop_applied; /* log of the price factor applied so far (<= 0) */
    int liquidations_left;
} sim_scenario;

/** @brief "whale-dump" -> the kind; -ENOENT for an unknown name. */
int sim_scenario_parse(const char *name, sim_scenario_kind *out);
/** @brief Names and one line each, for --help. */
const char *sim_scenario_help(void);

/**
 * @brief Set up the story on m (which must have BTC/USDT and binance): calms the market.
 * err names what is missing.
 */
int sim_scenario_init(sim_scenario *s, sim_scenario_kind kind, sim_market *m,
                      hm_err *err) HM_MUST_CHECK;

/**
 * @brief Apply the story to a drafted record: may move the true price and may rewrite
 * the record. @return true when the record is the story's own (no anomaly on it).
 */
bool sim_scenario_apply(sim_scenario *s, sim_market *m, sim_record *rec);

#endif
