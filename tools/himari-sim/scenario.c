/*
 * scenario.c: scripted market stories (scenario.h).
 *
 * The story's records are drafted records rewritten in place: the market's clock and
 * arrival pattern stay as they were, only what the record says changes. A liquidation
 * is timestamped on its feed's clock (never before the feed's last record), so that the
 * validator has nothing to flag in it.
 */
#include "scenario.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define WHALE_DUMP_WARMUP_MS 3660000 /* an hour of history and a minute */
#define DROP_START_MS        60000
#define DROP_END_MS          660000
#define DROP_FRACTION        0.03
#define LIQ_AT_MS            720000
#define LIQ_COUNT            25
#define LIQ_BTC              10.0
#define WHALE_BTC            850.0
#define CALM_VOL_FACTOR      0.3

int sim_scenario_parse(const char *name, sim_scenario_kind *out) {
    if (strcmp(name, "whale-dump") == 0) {
        *out = SIM_SCENARIO_WHALE_DUMP;
        return 0;
    }
    return -ENOENT;
}

const char *sim_scenario_help(void) {
    return "  whale-dump  calm market for 61 min, then on BTC/USDT: a whale transfer of 850 BTC\n"
           "              to binance, a 3% fall over 10 min, 25 liquidations on binance (sell,\n"
           "              10 BTC each); story over 74 min after the start (--duration 4500)\n";
}

int sim_scenario_init(sim_scenario *s, sim_scenario_kind kind, sim_market *m, hm_err *err) {
    *s = (sim_scenario){.kind = kind};
    if (kind == SIM_SCENARIO_NONE) return 0;
    int sym = -1, exch = -1;
    for (size_t i = 0; i < m->n_sym; i++) {
        if (strcmp(m->sym[i].name, "BTC/USDT") == 0) sym = (int)i;
    }
    for (size_t i = 0; i < m->n_exch; i++) {
        if (strcmp(m->exch[i].name, "binance") == 0) exch = (int)i;
    }
    if (sym < 0 || exch < 0)
        return hm_err_set(err, -EINVAL,
                          "--scenario whale-dump needs BTC/USDT in --symbols and "
                          "binance in --exchanges");
    s->sym = (uint16_t)sym;
    s->exch = (uint16_t)exch;
    s->t_ms = sim_market_now_ms(m) + WHALE_DUMP_WARMUP_MS;
    s->liquidations_left = LIQ_COUNT;
    for (size_t i = 0; i < m->n_sym; i++) {
        m->sym[i].var_per_ns *= CALM_VOL_FACTOR * CALM_VOL_FACTOR;
    }
    return 0;
}

/* The price falls log-linearly over the drop window: apply what is due by now. */
static void drop_to_now(sim_scenario *s, sim_market *m, int64_t now_ms) {
    int64_t into = now_ms - s->t_ms - DROP_START_MS;
    if (into <= 0) return;
    double span = DROP_END_MS - DROP_START_MS;
    double due = log(1.0 - DROP_FRACTION) * fmin(1.0, (double)into / span);
    if (due < s->drop_applied) {
        sim_market_shift_level(m, s->sym, exp(due - s->drop_applied));
        s->drop_applied = due;
    }
}

static int64_t ticks_of(const sim_market *m, uint16_t sym) {
    const sim_symbol *y = &m->sym[sym];
    return llround(y->true_price * (double)y->pow10);
}

static void rewrite_whale(const sim_scenario *s, const sim_market *m, sim_record *rec) {
    rec->kind = SIM_R_TRANSFER;
    rec->sym = s->sym;
    rec->exch = s->exch;
    rec->ts_ms = rec->sim_ms;
    rec->vol_micro = llround(WHALE_BTC * 1e6);
    rec->transfer_to_exch = true;
    strcpy(rec->from, "0x5c3a00000000000000000000000000000000a11e");
    strcpy(rec->to, "0x28c6c06298d514db089934071355e5743bf21d60");
    snprintf(rec->tx_hash, sizeof(rec->tx_hash), "0x%064llx", (unsigned long long)rec->sim_ms);
    rec->commit_clock = false;
    rec->commit_id = false;
    (void)m;
}

static void rewrite_liquidation(const sim_scenario *s, const sim_market *m, sim_record *rec) {
    uint32_t feed = (uint32_t)s->sym * (uint32_t)m->n_exch + s->exch;
    const sim_feed *f = &m->feeds[feed];
    int64_t ts = rec->sim_ms + m->exch[s->exch].skew_ms;
    rec->kind = SIM_R_LIQUIDATION;
    rec->feed = feed;
    rec->sym = s->sym;
    rec->exch = s->exch;
    rec->ts_ms = ts > f->last_ts_ms ? ts : f->last_ts_ms;
    rec->price_ticks = ticks_of(m, s->sym);
    rec->vol_micro = llround(LIQ_BTC * 1e6);
    rec->buy = false;
    rec->trade_id = 0;
    rec->commit_clock = true;
    rec->commit_ts = rec->ts_ms;
    rec->commit_id = false;
}

bool sim_scenario_apply(sim_scenario *s, sim_market *m, sim_record *rec) {
    if (s->kind == SIM_SCENARIO_NONE || rec->in_burst) return false;
    int64_t now = rec->sim_ms;
    drop_to_now(s, m, now);
    if (!s->whale_done && now >= s->t_ms) {
        s->whale_done = true;
        rewrite_whale(s, m, rec);
        return true;
    }
    if (s->liquidations_left > 0 && now >= s->t_ms + LIQ_AT_MS) {
        s->liquidations_left--;
        rewrite_liquidation(s, m, rec);
        return true;
    }
    return false;
}
