/*
 * engine.c: the ingest-validator's judging of one record (engine.h), shared by
 * Kafka mode (pipeline.c) and replay mode (replay.c).
 *
 * Per record: decode (hm_tick_decode), field checks (checks.c), then, for a
 * trade or liquidation of a known exchange with a well-formed symbol and a
 * valid timestamp, the stateful checks against its (exchange, symbol) key:
 *   sequence   OUT_OF_ORDER, DUPLICATE_TIMESTAMP, LARGE_GAP, trade-id checks;
 *   freshness  against the record's ingest time, or the symbol's watermark;
 *   values     price move vs the key's reference and EMA, deviation from the
 *              other exchanges' prices, log-volume spikes, notional;
 * and finally the state updates, which follow two rules:
 *   - the value state (reference, EMA, volume baseline) moves only with ticks
 *     that carry no code holding it (himari/quality.h), except that a confirmed level
 *     change is accepted even though its first tick is reported;
 *   - the sequence state moves with every tick whose identity is sound: the
 *     timestamp part unless a code holds HM_QHOLD_SEQ (out of order, stale,
 *     future, duplicate ...), the trade-id part unless the id itself is bad
 *     (invalid, duplicate, going back). A trade with a broken clock still
 *     happened: its id is consumed, so the next good trade is not a "gap".
 * Liquidations are judged against their key's trade state but never move it
 * (they are sparse, carry no trade id, and print off the market by design);
 * transfers have no per-key state. The state of a partition depends only on
 * that partition's records, in order.
 *
 * Must never: read a clock, do I/O, allocate per record on the hot path (a new
 * key, symbol, or growth of a scratch array excepted), or let a malformed input
 * produce invalid JSON or unbounded state. (The one system call is getrandom(2)
 * in iv_engine_new(), for the state maps' hash key, which decides no output.)
 */
#include "engine.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "himari/quality.h"
#include "state.h"

struct iv_engine {
    iv_checks ck;        /* a copy; ck.valid_exchanges is owned by the engine */
    iv_instruments inst; /* checks.instruments, parsed */
    iv_exchset xs;
    iv_hold_masks holds;
    double ln_spike_ratio, ln_extreme_ratio; /* log of the volume ratios */
    bool event_clock;

    iv_event_fn ev_fn;
    void *ev_ud;
    iv_stats stats;
    iv_state st;

    hm_buf ev;      /* one event being written */
    hm_buf scratch; /* changelog keys */
    double *peers;  /* other exchanges' prices of one symbol */
    size_t peers_cap;
    uint32_t *cand; /* keys going silent at one scan */
    size_t cand_cap;

    int64_t pa_ms; /* processed_at of the last record, and its text */
    char pa_iso[25];

    /* The last key looked up (bursts of one feed hit it). Checked against the
     * key's identity before use, and invalidated whenever keys are dropped. */
    bool c_valid;
    int32_t c_part;
    uint32_t c_key;
    uint64_t c_hash;
};

/* ---- set-up ------------------------------------------------------------------------------ */

static void checks_copy(iv_engine *e, const iv_checks *src) {
    e->ck = *src;
    size_t n = src->valid_exchanges.n;
    e->ck.valid_exchanges.items = hm_xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        e->ck.valid_exchanges.items[i] = hm_xstrdup(src->valid_exchanges.items[i]);
    e->ck.valid_exchanges.n = n;
    iv_exchset_init(&e->xs, &e->ck.valid_exchanges);
    /* The table, parsed (validated with the configuration); the list itself is not kept. */
    char why[300];
    int rc = iv_instruments_parse(&src->instruments, &e->inst, why, sizeof(why));
    if (rc != 0) hm_panic("checks.instruments passed validation but not parsing: %s", why);
    e->ck.instruments = (hm_str_list){0};
    e->ln_spike_ratio = log(e->ck.volume_spike_ratio);
    e->ln_extreme_ratio = log(e->ck.extreme_volume_ratio);
}

static void checks_release(iv_engine *e) {
    hm_str_list_free(&e->ck.valid_exchanges);
    iv_exchset_free(&e->xs);
}

iv_engine *iv_engine_new(const iv_checks *checks, bool event_clock) {
    assert(checks);
    iv_engine *e = hm_xcalloc(1, sizeof(*e));
    checks_copy(e, checks);
    e->holds = iv_hold_masks_of_table();
    e->event_clock = event_clock;
    e->pa_ms = INT64_MIN;
    /* A key of its own per engine (so per process): which symbols collide in the state
     * maps cannot be known from outside. Nothing that leaves the engine depends on it. */
    e->st.hkey = hm_hash_key_random();
    return e;
}

void iv_engine_free(iv_engine *e) {
    if (!e) return;
    checks_release(e);
    iv_state_free(&e->st);
    hm_buf_free(&e->ev);
    hm_buf_free(&e->scratch);
    free(e->peers);
    free(e->cand);
    free(e);
}

void iv_engine_set_checks(iv_engine *e, const iv_checks *checks) {
    checks_release(e);
    checks_copy(e, checks);
}

void iv_engine_set_event_sink(iv_engine *e, iv_event_fn fn, void *ud) {
    e->ev_fn = fn;
    e->ev_ud = ud;
}

const iv_stats *iv_engine_stats(const iv_engine *e) {
    return &e->stats;
}

/* ---- events ------------------------------------------------------------------------------ */

static void put_event_head(hm_buf *b, const char *type, const iv_key *k, const iv_sym *y) {
    hm_buf_reset(b);
    HM_BUF_PUT_LIT(b, "{\"type\":\"");
    hm_buf_puts(b, type);
    HM_BUF_PUT_LIT(b, "\",\"exchange\":");
    hm_json_str(b, k->exch, k->exch_len);
    HM_BUF_PUT_LIT(b, ",\"symbol\":");
    hm_json_str(b, y->name, y->name_len);
    HM_BUF_PUT_LIT(b, ",\"last_timestamp\":");
    hm_buf_i64(b, k->last_ts);
}

static void put_event_id(hm_buf *b, const char *type, const iv_key *k, const iv_sym *y,
                         int64_t ts) {
    HM_BUF_PUT_LIT(b, ",\"event_id\":\"");
    hm_buf_puts(b, type);
    hm_buf_putc(b, ':');
    hm_buf_append(b, k->exch, k->exch_len); /* [a-z0-9._-]: nothing to escape */
    hm_buf_putc(b, ':');
    hm_buf_append(b, y->name, y->name_len); /* [A-Z0-9/] */
    hm_buf_putc(b, ':');
    hm_buf_i64(b, ts);
    HM_BUF_PUT_LIT(b, "\"}");
}

static void emit_event(iv_engine *e, int32_t partition, const iv_sym *y) {
    e->stats.events++;
    if (e->ev_fn) e->ev_fn(e->ev_ud, partition, y->name, y->name_len, e->ev.data, e->ev.len);
}

static void emit_silence(iv_engine *e, int32_t partition, const iv_key *k, const iv_sym *y) {
    hm_buf *b = &e->ev;
    put_event_head(b, "feed_silence", k, y);
    HM_BUF_PUT_LIT(b, ",\"watermark\":");
    hm_buf_i64(b, y->wm);
    HM_BUF_PUT_LIT(b, ",\"silent_ms\":");
    hm_buf_i64(b, y->wm - k->last_ts);
    put_event_id(b, "feed_silence", k, y, k->last_ts);
    emit_event(e, partition, y);
}

static void emit_resumed(iv_engine *e, int32_t partition, const iv_key *k, const iv_sym *y,
                         int64_t ts) {
    hm_buf *b = &e->ev;
    put_event_head(b, "feed_resumed", k, y);
    HM_BUF_PUT_LIT(b, ",\"timestamp\":");
    hm_buf_i64(b, ts);
    HM_BUF_PUT_LIT(b, ",\"gap_ms\":");
    hm_buf_i64(b, ts - k->last_ts);
    put_event_id(b, "feed_resumed", k, y, ts);
    emit_event(e, partition, y);
}

static int cmp_exch(const void *a, const void *b, void *ud) {
    const iv_part *p = ud;
    const iv_key *x = &p->keys[*(const uint32_t *)a], *y = &p->keys[*(const uint32_t *)b];
    size_t n = x->exch_len < y->exch_len ? x->exch_len : y->exch_len;
    int c = memcmp(x->exch, y->exch, n);
    return c ? c : (int)x->exch_len - (int)y->exch_len;
}

/*
 * Feed silence: run when a symbol's watermark enters a new second (so at most once
 * per event-time second per symbol, over that symbol's few keys). Keys more than
 * silence_ms behind the watermark are reported once each, in exchange order so
 * that an engine restored from the changelog emits the same bytes.
 */
static void silence_scan(iv_engine *e, int32_t partition, iv_part *p, uint32_t si,
                         uint32_t current) {
    iv_sym *y = &p->syms[si];
    int64_t sec = y->wm / 1000;
    if (sec == y->scan_sec) return;
    y->scan_sec = sec;
    if (e->cand_cap < y->n_keys) {
        e->cand_cap = y->n_keys * 2;
        e->cand = hm_xrealloc(e->cand, e->cand_cap * sizeof(*e->cand));
    }
    size_t n = 0;
    for (uint32_t j = y->first_key; j != IV_NONE; j = p->keys[j].next) {
        const iv_key *k = &p->keys[j];
        /* The key that just spoke is not silent, whatever its timestamp said. */
        if (j != current && !k->silent && y->wm - k->last_ts > e->ck.silence_ms) e->cand[n++] = j;
    }
    if (n > 1) qsort_r(e->cand, n, sizeof(*e->cand), cmp_exch, p);
    for (size_t i = 0; i < n; i++) {
        iv_key *k = &p->keys[e->cand[i]];
        emit_silence(e, partition, k, y);
        k->silent = true;
        iv_part_mark_key(p, e->cand[i]);
    }
}

/* ---- freshness --------------------------------------------------------------------------- */

static inline hm_qcodeset latency_codes(const iv_checks *ck, int64_t lat) {
    if (lat > ck->stale_ms) return HM_QBIT(HM_Q_STALE_DATA);
    if (lat > ck->delayed_ms) return HM_QBIT(HM_Q_DELAYED_DATA);
    if (lat < -ck->future_ms) return HM_QBIT(HM_Q_FUTURE_TIMESTAMP);
    return 0;
}

/*
 * The ingest clock's reference for this record, or -1 for the event clock: the Kafka
 * record time on the ingest clock; on the event clock (replay), the capture's own
 * receive time when the record carries one ("local_timestamp", "receipt_timestamp",
 * "local_ts"), so a recorded feed replays judged as it was live. Timestamps that reach
 * here are >= 0 (checks.c), as are these references and watermarks, so the differences
 * below cannot overflow.
 */
static inline int64_t ingest_ref(const iv_engine *e, const iv_input *in, const hm_tick *t) {
    if (!e->event_clock && in->ingest_ms >= 0) return in->ingest_ms;
    if (t->st[HM_FIELD_RECEIVED] == HM_F_OK && t->received_ms >= 0) return t->received_ms;
    return -1;
}

/* The rhythm's memory: the longest recent gap decays by this per watermark advance
 * (half of it is forgotten after ~700 advances: 15 min of a market trading every 1.3 s,
 * seconds of a dense one). */
#define IV_RHYTHM_DECAY 0.999

/*
 * Event clock: how far ahead of a symbol's watermark its next tick may be and still be
 * the end of a lull rather than a clock from the future. A market trading every few ms
 * that jumps 10 s is suspect; a market that has gone quiet for a minute now and then may
 * do it again. So: future_lull_factor times the longest recent gap between the symbol's
 * trading moments (its watermark advances; real gaps are bursty, so their recent maximum,
 * not their mean, says what a lull looks like), at least future_ms, at most
 * future_lull_max_ms; a symbol whose watermark has not advanced yet has future_ms alone.
 */
static int64_t lull_bound(const iv_checks *ck, const iv_sym *y) {
    if (y->gap_max <= 0 || ck->future_lull_factor <= 0) return ck->future_ms;
    double b = ck->future_lull_factor * y->gap_max;
    if (b > (double)ck->future_lull_max_ms) b = (double)ck->future_lull_max_ms;
    return b > (double)ck->future_ms ? (int64_t)b : ck->future_ms;
}

/* The watermark moved forward by gap ms: the symbol's rhythm follows. */
static void rhythm_add(iv_sym *y, int64_t gap) {
    double decayed = y->gap_max * IV_RHYTHM_DECAY;
    y->gap_max = (double)gap > decayed ? (double)gap : decayed;
}

/*
 * Event clock: a tick more than the lull bound ahead of the watermark joins the symbol's
 * run of such ticks: ticks in a row (nothing at the watermark between them) each within
 * the larger of the bound and future_lull_max_ms of the run's newest, so that a market
 * trading every few minutes can show it moved on as a dense one does in milliseconds
 * (a new run otherwise). @return true when the run is long enough to be the stream
 * itself having moved on, not a bad clock: a bad clock between good ticks breaks its run.
 */
static bool future_run_confirms(const iv_checks *ck, iv_sym *y, int64_t ts, int64_t bound) {
    int64_t window = bound > ck->future_lull_max_ms ? bound : ck->future_lull_max_ms;
    if (y->fut_n > 0 && ts - y->fut_max <= window && y->fut_max - ts <= window) {
        y->fut_n++;
        if (ts > y->fut_max) y->fut_max = ts;
        return y->fut_n >= ck->future_confirm_ticks;
    }
    y->fut_n = 1;
    y->fut_max = ts;
    return y->fut_n >= ck->future_confirm_ticks;
}

/* Freshness of a record without key state: never moves anything. */
static hm_qcodeset unkeyed_freshness(iv_engine *e, const iv_input *in, const hm_tick *t,
                                     const iv_fields *f) {
    if (!f->ts_ok) return 0;
    int64_t ref = ingest_ref(e, in, t);
    if (ref >= 0) return latency_codes(&e->ck, ref - t->ts_ms);
    if (!f->symbol_ok) return 0;
    iv_part *p = iv_state_part(&e->st, in->partition, false);
    if (!p) return 0;
    uint32_t si =
        iv_part_find_sym(p, iv_sym_hash(p, t->symbol.p, t->symbol.len), t->symbol.p, t->symbol.len);
    if (si == IV_NONE || !p->syms[si].has_wm) return 0;
    return latency_codes(&e->ck, p->syms[si].wm - t->ts_ms);
}

/* ---- sequence ---------------------------------------------------------------------------- */

static hm_qcodeset sequence_codes(const iv_checks *ck, const iv_key *k, int64_t ts,
                                  const iv_fields *f, bool ordered_ids) {
    hm_qcodeset c = 0;
    if (k->has_ts) {
        if (ts < k->last_ts)
            c |= HM_QBIT(HM_Q_OUT_OF_ORDER);
        else if (ts == k->last_ts) {
            /* Same-ms trades with distinct ids are a burst (one order sweeping the
             * book); without ids there is no telling them from a repeat. */
            if (!f->has_id || !k->last_ts_had_id) c |= HM_QBIT(HM_Q_DUPLICATE_TIMESTAMP);
        } else if (ts - k->last_ts > ck->large_gap_ms)
            c |= HM_QBIT(HM_Q_LARGE_GAP);
    }
    if (f->has_id && k->has_id) {
        bool dup = false;
        for (uint32_t i = 0; i < k->recent_n; i++) {
            if (k->recent[i] == f->id && (bool)((k->recent_numeric >> i) & 1u) == f->id_numeric) {
                dup = true;
                break;
            }
        }
        if (dup)
            c |= HM_QBIT(HM_Q_DUPLICATE_TRADE_ID);
        else if (ordered_ids && f->id_numeric && k->last_id_numeric) {
            if (f->id > k->last_id + 1)
                c |= HM_QBIT(HM_Q_TRADE_ID_GAP);
            else if (f->id < k->last_id)
                c |= HM_QBIT(HM_Q_TRADE_ID_OUT_OF_ORDER);
        }
    }
    return c;
}

/* ---- values ------------------------------------------------------------------------------ */

static inline bool peer_fresh(const iv_checks *ck, int64_t now_ev, int64_t at) {
    return now_ev - at <= ck->cross_exchange_window_ms;
}

static hm_qcodeset price_codes(iv_engine *e, const iv_part *p, uint32_t ki, const iv_sym *y,
                               double price, int64_t now_ev) {
    const iv_checks *ck = &e->ck;
    const iv_key *k = &p->keys[ki];
    hm_qcodeset c = 0;
    if (k->has_ref) {
        double mv = iv_rel(price, k->ref);
        if (mv > ck->extreme_move)
            c |= HM_QBIT(HM_Q_EXTREME_PRICE_MOVE);
        else if (mv > ck->large_move)
            c |= HM_QBIT(HM_Q_LARGE_PRICE_MOVE);
        if (iv_rel(price, k->ema) > ck->anomaly_deviation) c |= HM_QBIT(HM_Q_PRICE_ANOMALY);
    }
    if ((int64_t)y->n_keys - 1 < ck->cross_exchange_min_peers) return c;
    /* A level this key confirmed lately is not a deviation while the other exchanges
     * have the cross-exchange window to follow (their first ticks there are flagged
     * as moves); a key still alone at its level after that is an outlier again. */
    if (k->has_level && peer_fresh(ck, now_ev, k->level_ts) && k->has_ref &&
        iv_rel(price, k->ref) <= ck->level_confirm_tolerance)
        return c;
    if (e->peers_cap < y->n_keys) {
        e->peers_cap = y->n_keys * 2;
        e->peers = hm_xrealloc(e->peers, e->peers_cap * sizeof(*e->peers));
    }
    size_t n = 0;
    for (uint32_t j = y->first_key; j != IV_NONE; j = p->keys[j].next) {
        const iv_key *o = &p->keys[j];
        if (j == ki || !o->has_ref || !peer_fresh(ck, now_ev, o->ref_ts)) continue;
        /* A tick that trades where another exchange trades is not an outlier: the
         * peers disagree among themselves (a level change under way), and the median
         * of a split market is a price nobody trades at. Only accepted prices count:
         * a peer's unconfirmed level may be a glitch of its own. */
        if (iv_rel(price, o->ref) <= ck->cross_exchange_deviation) return c;
        e->peers[n++] = o->ref;
    }
    if ((int64_t)n >= ck->cross_exchange_min_peers &&
        iv_rel(price, iv_median(e->peers, n)) > ck->cross_exchange_deviation)
        c |= HM_QBIT(HM_Q_CROSS_EXCHANGE_DEVIATION);
    return c;
}

/*
 * Does another exchange of the symbol already trade at this level (an accepted,
 * fresh price)? Another exchange's pending level does not count: two unrelated
 * spikes of the same sign and size on two exchanges would confirm each other,
 * and the level would be accepted one tick later by count anyway.
 */
static bool peer_level_agrees(const iv_engine *e, const iv_part *p, uint32_t ki, const iv_sym *y,
                              double price, int64_t now_ev) {
    const iv_checks *ck = &e->ck;
    for (uint32_t j = y->first_key; j != IV_NONE; j = p->keys[j].next) {
        const iv_key *o = &p->keys[j];
        if (j != ki && o->has_ref && peer_fresh(ck, now_ev, o->ref_ts) &&
            iv_rel(price, o->ref) <= ck->level_confirm_tolerance)
            return true;
    }
    return false;
}

static hm_qcodeset volume_codes(const iv_engine *e, const iv_volstat *v, double volume) {
    const iv_checks *ck = &e->ck;
    double r = log(volume) - v->mean;
    double sd = iv_volstat_sd(v);
    double extreme = (ck->volume_spike_sigmas + 2) * sd;
    if (extreme < e->ln_extreme_ratio) extreme = e->ln_extreme_ratio;
    if (r > extreme) return HM_QBIT(HM_Q_EXTREME_VOLUME_SPIKE);
    double spike = ck->volume_spike_sigmas * sd;
    if (spike < e->ln_spike_ratio) spike = e->ln_spike_ratio;
    return r > spike ? HM_QBIT(HM_Q_VOLUME_SPIKE) : 0;
}

/*
 * A trade's price verdict and price-state update: level confirmation, spike
 * reversion, reference and EMA. Returns the codes, possibly with the move codes
 * replaced by LEVEL_SHIFT_CONFIRMED, or SPIKE_REVERTED added.
 */
static hm_qcodeset settle_price(iv_engine *e, iv_part *p, uint32_t ki, const iv_sym *y,
                                double price, int64_t ts, int64_t now_ev, hm_qcodeset codes) {
    const iv_checks *ck = &e->ck;
    iv_key *k = &p->keys[ki];
    /* A tick held for anything but its move (stale, out of order, ...) says nothing
     * about levels. */
    if (codes & e->holds.price & ~IV_MOVE_CODES) return codes;
    hm_qcodeset moved = codes & IV_MOVE_CODES;
    bool accept = false, restart = false;
    if (k->has_pending && k->has_ref && iv_rel(price, k->ref) <= ck->spike_revert_tolerance) {
        k->has_pending = false; /* the flagged tick was a transient spike */
        codes |= HM_QBIT(HM_Q_SPIKE_REVERTED);
        accept = !moved;
    } else if (moved) {
        bool consistent =
            k->has_pending && iv_rel(price, k->pending) <= ck->level_confirm_tolerance;
        int64_t count = consistent ? k->pending_count + 1 : 1;
        if (count >= ck->level_confirm_ticks || peer_level_agrees(e, p, ki, y, price, now_ev)) {
            /* A real level: accept it. The first tick at the level stays reported (it
             * was the surprise); a tick confirming a pending level is not. */
            accept = true;
            restart = true;
            k->has_pending = false;
            k->has_level = true;
            k->level_ts = ts;
            if (consistent) codes = (codes & ~IV_MOVE_CODES) | HM_QBIT(HM_Q_LEVEL_SHIFT_CONFIRMED);
        } else {
            k->has_pending = true;
            k->pending = price;
            k->pending_count = count;
            k->pending_ts = ts;
        }
    } else {
        accept = true;
        k->has_pending = false; /* trading near the reference again */
    }
    if (accept) {
        if (restart || !k->has_ref)
            k->ema = price;
        else
            k->ema += ck->ema_alpha * (price - k->ema);
        k->ref = price;
        k->ref_ts = ts;
        k->has_ref = true;
    }
    return codes;
}

static void advance_sequence(iv_engine *e, iv_key *k, int64_t ts, const iv_fields *f,
                             hm_qcodeset codes) {
    if (!(codes & e->holds.seq)) {
        if (!k->has_ts || ts >= k->last_ts) {
            k->last_ts = ts;
            k->last_ts_had_id = f->has_id;
        }
        k->has_ts = true;
    }
    if (f->has_id && !(codes & IV_ID_HOLD_CODES)) {
        k->has_id = true;
        k->last_id = f->id;
        k->last_id_numeric = f->id_numeric;
        uint16_t bit = (uint16_t)(1u << k->recent_pos);
        k->recent[k->recent_pos] = f->id;
        k->recent_numeric = f->id_numeric ? (uint16_t)(k->recent_numeric | bit)
                                          : (uint16_t)(k->recent_numeric & ~bit);
        k->recent_pos = (uint8_t)((k->recent_pos + 1) % IV_RECENT_IDS);
        if (k->recent_n < IV_RECENT_IDS) k->recent_n++;
    }
}

/* ---- the keyed path ---------------------------------------------------------------------- */

static uint32_t lookup_key(iv_engine *e, const iv_part *p, int32_t partition, uint64_t h,
                           const iv_fields *f, const hm_tick *t) {
    if (e->c_valid && e->c_part == partition && e->c_hash == h && e->c_key < p->keys_len) {
        const iv_key *k = &p->keys[e->c_key];
        const iv_sym *y = &p->syms[k->sym];
        if (k->in_use && k->hash == h && k->exch_len == f->exch_len &&
            memcmp(k->exch, f->exch, f->exch_len) == 0 && y->name_len == t->symbol.len &&
            memcmp(y->name, t->symbol.p, t->symbol.len) == 0)
            return e->c_key;
    }
    return iv_part_find_key(p, h, f->exch, f->exch_len, t->symbol.p, t->symbol.len);
}

static void count_eviction(iv_stats *st, const char *exch, size_t len) {
    st->evictions++;
    uint32_t i = 0;
    while (i < st->n_evictions_by && !(strlen(st->evictions_by[i].exchange) == len &&
                                       memcmp(st->evictions_by[i].exchange, exch, len) == 0))
        i++;
    if (i == st->n_evictions_by) {
        if (i == IV_STATS_EXCHANGES) {
            i = IV_STATS_EXCHANGES - 1; /* full: the last entry counts the rest */
            snprintf(st->evictions_by[i].exchange, sizeof(st->evictions_by[i].exchange), "other");
        } else {
            snprintf(st->evictions_by[i].exchange, sizeof(st->evictions_by[i].exchange), "%.*s",
                     (int)len, exch);
            st->n_evictions_by++;
        }
    }
    st->evictions_by[i].n++;
}

/*
 * The partition is full and a trade needs a new key (of f's exchange, symbol keep_si
 * when it exists): evict one key (iv_part_eviction_victim: the least recently seen of
 * the exchange holding the most keys), with its tombstone, and its symbol when that has
 * no key left (else symbols would pile up), unless it is keep_si, which the new key joins.
 */
static void evict_one(iv_engine *e, iv_part *p, const iv_fields *f, uint32_t keep_si,
                      iv_output *out) {
    uint32_t vi = iv_part_eviction_victim(p, f->exch, f->exch_len);
    assert(vi != IV_NONE && "a full partition has keys");
    const iv_key *v = &p->keys[vi];
    const uint32_t vsi = v->sym;
    const iv_sym *vy = &p->syms[vsi];
    count_eviction(&e->stats, v->exch, v->exch_len);
    out->evictions++;
    snprintf(out->evicted_key, sizeof(out->evicted_key), "%.*s|%.*s", (int)v->exch_len, v->exch,
             (int)vy->name_len, vy->name);
    iv_part_drop_key(p, vi, true);
    if (vsi != keep_si && p->syms[vsi].n_keys == 0) iv_part_drop_sym(p, vsi, true);
    e->c_valid = false;
}

/*
 * A trade or liquidation of a known exchange, a well-formed symbol and a valid
 * timestamp. Trades may create their key and move its state; liquidations only
 * read it. A partition holds at most max_keys keys: at the bound a trade of a new
 * key evicts one (evict_one) and carries NO_STATE, as does a liquidation without
 * a key then (its key may have been evicted): they were judged without history
 * because of our capacity, not because of anything the tick did.
 */
static hm_qcodeset judge_keyed(iv_engine *e, const iv_input *in, const hm_tick *t,
                               const iv_fields *f, hm_qcodeset codes, iv_output *out) {
    const iv_checks *ck = &e->ck;
    const bool trade = t->kind == HM_KIND_TRADE;
    const int64_t ts = t->ts_ms;
    iv_part *p = iv_state_part(&e->st, in->partition, trade);
    if (!p) return codes | unkeyed_freshness(e, in, t, f);
    uint64_t h = iv_key_hash(p, f->exch, f->exch_len, t->symbol.p, t->symbol.len);
    uint32_t ki = lookup_key(e, p, in->partition, h, f, t);
    if (ki == IV_NONE) {
        if ((int64_t)p->n_keys >= ck->max_keys) codes |= HM_QBIT(HM_Q_NO_STATE);
        if (!trade) return codes | unkeyed_freshness(e, in, t, f);
        uint64_t sh = iv_sym_hash(p, t->symbol.p, t->symbol.len);
        uint32_t si = iv_part_find_sym(p, sh, t->symbol.p, t->symbol.len);
        /* A loop: max_keys may have been lowered by a reload since the last new key. */
        while ((int64_t)p->n_keys >= ck->max_keys)
            evict_one(e, p, f, si, out);
        if (si == IV_NONE) si = iv_part_add_sym(p, sh, t->symbol.p, t->symbol.len);
        ki = iv_part_add_key(p, h, si, f->exch, f->exch_len);
        p->keys[ki].last_ts = ts; /* idle time counts from here until a tick is accepted */
    }
    if (trade) iv_part_touch_key(p, ki);
    e->c_valid = true;
    e->c_part = in->partition;
    e->c_key = ki;
    e->c_hash = h;

    iv_key *k = &p->keys[ki];
    const uint32_t si = k->sym;
    iv_sym *y = &p->syms[si];
    iv_instrument scratch;
    const iv_instrument *instr =
        iv_instrument_of(&e->inst, f->exch, f->exch_len, t->symbol.p, t->symbol.len, &scratch);

    if (trade) {
        /* Idle past the TTL: forget it, exactly as if iv_engine_sweep() had dropped it. */
        if (ts > k->last_ts && ts - k->last_ts > ck->state_ttl_ms) {
            iv_key_reset(k);
            k->last_ts = ts;
        }
        if (k->silent) {
            emit_resumed(e, in->partition, k, y, ts);
            k->silent = false;
        }
        codes |= sequence_codes(ck, k, ts, f, !instr || instr->ids == IV_IDS_SEQUENTIAL);
    }

    /* Freshness. The event clock's reference is the watermark before this tick. */
    bool jump = false;
    const int64_t ref = ingest_ref(e, in, t);
    if (ref >= 0) {
        codes |= latency_codes(ck, ref - ts);
    } else if (y->has_wm) {
        int64_t lat = y->wm - ts, bound = lull_bound(ck, y);
        if (lat < -bound) {
            if (trade && future_run_confirms(ck, y, ts, bound)) {
                jump = true; /* the stream moved on: the watermark follows below */
                codes |= latency_codes(ck, y->fut_max - ts);
            } else {
                codes |= HM_QBIT(HM_Q_FUTURE_TIMESTAMP);
            }
            if (trade) iv_part_mark_sym(p, si);
        } else {
            if (trade && y->fut_n) {
                y->fut_n = 0; /* the run of ticks from the future is broken */
                iv_part_mark_sym(p, si);
            }
            if (lat > 0) codes |= latency_codes(ck, lat); /* ahead within the bound: a lull */
        }
    }

    /* Values, against the key's accepted state and its peers' (event time: the
     * watermark before this tick, or the tick's own time for a symbol's first). */
    const int64_t now_ev = y->has_wm ? y->wm : ts;
    if (f->price_ok) codes |= price_codes(e, p, ki, y, t->price, now_ev);
    if (f->volume_ok && trade && k->vol.n >= ck->volume_warmup_ticks)
        codes |= volume_codes(e, &k->vol, t->volume);
    if (f->price_ok && f->volume_ok && iv_notional(instr, t->price, t->volume) > ck->notional_max)
        codes |= HM_QBIT(HM_Q_NOTIONAL_OUTLIER);

    if (!trade) {
        /* A liquidation at the level its own exchange already moved to is consistent
         * with the market even though the key's (trade) state has not moved yet. */
        if (f->price_ok && (codes & IV_MOVE_CODES) && k->has_pending &&
            iv_rel(t->price, k->pending) <= ck->level_confirm_tolerance)
            codes = (codes & ~IV_MOVE_CODES) | HM_QBIT(HM_Q_LEVEL_SHIFT_CONFIRMED);
        return codes;
    }

    if (f->price_ok) codes = settle_price(e, p, ki, y, t->price, ts, now_ev, codes);
    if (f->volume_ok && !(codes & e->holds.volume))
        iv_volstat_add(&k->vol, t->volume, ck->volume_alpha);
    advance_sequence(e, k, ts, f, codes);
    iv_part_mark_key(p, ki);

    /* The watermark: max timestamp of the symbol's ticks not judged to be from the
     * future (a confirmed jump moves it to the newest tick of the run). */
    if (!(codes & HM_QBIT(HM_Q_FUTURE_TIMESTAMP))) {
        int64_t nw = ts;
        if (jump) {
            nw = y->fut_max > ts ? y->fut_max : ts;
            y->fut_n = 0;
        }
        if (!y->has_wm || nw > y->wm) {
            if (y->has_wm && trade) rhythm_add(y, nw - y->wm);
            y->has_wm = true;
            y->wm = nw;
            iv_part_mark_sym(p, si);
            silence_scan(e, in->partition, p, si, ki);
        }
    }
    return codes;
}

/* ---- one record -------------------------------------------------------------------------- */

static const char *processed_at(iv_engine *e, int64_t ms) {
    if (ms != e->pa_ms) {
        hm_format_iso8601_ms(ms, e->pa_iso);
        e->pa_ms = ms;
    }
    return e->pa_iso;
}

static void parse_error(iv_engine *e, const iv_input *in, int rc, const hm_decode_err *de,
                        const char *iso, iv_output *out) {
    if (in->len == 0 || strcmp(de->msg, "empty input") == 0) {
        snprintf(out->error, sizeof(out->error), "empty record");
    } else {
        const char *at = strstr(de->msg, "at byte") ? "" : " at byte ";
        char off[24] = "";
        if (*at) snprintf(off, sizeof(off), "%zu", de->offset);
        if (de->field[0])
            snprintf(out->error, sizeof(out->error), "%s%s%s (field \"%s\")", de->msg, at, off,
                     de->field);
        else
            snprintf(out->error, sizeof(out->error), "%s%s%s", de->msg, at, off);
    }
    hm_quality_write_parse_error(out->json, in->data, in->len, rc == -E2BIG, out->error, iso);
    out->parse_error = true;
    out->score = 0;
    out->issues[0] = HM_Q_PARSE_ERROR;
    out->n_issues = 1;
    e->stats.rejected++;
    e->stats.parse_errors++;
    e->stats.issues[HM_Q_PARSE_ERROR]++;
}

void iv_engine_process(iv_engine *e, const iv_input *in, int64_t processed_at_ms, iv_output *out) {
    assert(e && in && out && out->json);
    assert(in->partition >= 0);
    out->key = NULL;
    out->key_len = 0;
    out->parse_error = false;
    out->error[0] = '\0';
    out->n_issues = 0;
    out->exchange[0] = '\0';
    out->evictions = 0;
    out->evicted_key[0] = '\0';
    const char *iso = processed_at(e, processed_at_ms);
    e->stats.records++;

    /* An oversized record is refused on its length alone, before any byte is read,
     * so a caller may pass only its first max_record_bytes + 1 bytes with the true
     * length (replay.c streams long lines this way). */
    hm_tick t;
    hm_decode_err de;
    int rc = hm_tick_decode(in->data, in->len, (size_t)e->ck.max_record_bytes, &t, &de);
    if (HM_UNLIKELY(rc != 0)) {
        parse_error(e, in, rc, &de, iso, out);
        return;
    }

    iv_fields f;
    iv_check_fields(&e->ck, &e->xs, &t, &f);
    hm_qcodeset codes = f.codes;
    if (t.kind != HM_KIND_TRANSFER && f.exchange_known && f.symbol_ok && f.ts_ok)
        codes = judge_keyed(e, in, &t, &f, codes, out);
    else
        codes |= unkeyed_freshness(e, in, &t, &f);

    double score = iv_score(e->ck.weights, codes);
    hm_quality_write(out->json, &t, codes, score, iso);

    out->score = floor(score * 1000.0 + 0.5 + 1e-9) / 1000.0; /* as hm_json_fixed3 prints it */
    for (hm_qcodeset m = codes; m; m &= m - 1) {
        int c = __builtin_ctzll(m);
        out->issues[out->n_issues++] = (hm_qcode)c;
        e->stats.issues[c]++;
    }
    if (t.st[HM_FIELD_SYMBOL] == HM_F_OK) {
        out->key = t.symbol.p;
        out->key_len = t.symbol.len;
    } else if (t.kind == HM_KIND_TRANSFER && t.st[HM_FIELD_ASSET] == HM_F_OK) {
        out->key = t.asset.p;
        out->key_len = t.asset.len;
    }
    if (f.exchange_ok) memcpy(out->exchange, f.exch, (size_t)f.exch_len + 1);
    if (score >= 1.0)
        e->stats.ok++;
    else if (score <= 0.0)
        e->stats.rejected++;
    else
        e->stats.flagged++;
}

/* ---- state ownership --------------------------------------------------------------------- */

void iv_engine_drop_partition(iv_engine *e, int32_t partition) {
    iv_state_drop_part(&e->st, partition);
    e->c_valid = false;
}

size_t iv_engine_state_keys(const iv_engine *e) {
    size_t n = 0;
    for (size_t i = 0; i < e->st.n_parts; i++)
        if (e->st.parts[i]) n += e->st.parts[i]->n_keys;
    return n;
}

size_t iv_engine_state_symbols(const iv_engine *e) {
    size_t n = 0;
    for (size_t i = 0; i < e->st.n_parts; i++)
        if (e->st.parts[i]) n += e->st.parts[i]->n_syms;
    return n;
}

void iv_engine_flush_dirty(iv_engine *e, iv_changelog_fn fn, void *ud) {
    for (size_t i = 0; i < e->st.n_parts; i++)
        if (e->st.parts[i]) iv_part_flush(e->st.parts[i], (int32_t)i, &e->scratch, fn, ud);
}

void iv_engine_clear_dirty(iv_engine *e) {
    for (size_t i = 0; i < e->st.n_parts; i++)
        if (e->st.parts[i]) iv_part_clear_dirty(e->st.parts[i]);
}

int iv_engine_restore(iv_engine *e, int32_t partition, const char *key, size_t key_len,
                      const char *val, size_t val_len, hm_err *err) {
    if (partition < 0)
        return hm_err_set(err, -EINVAL, "changelog record for partition %d: no such partition",
                          (int)partition);
    iv_part *p = iv_state_part(&e->st, partition, true);
    e->c_valid = false;
    return iv_part_restore(p, key, key_len, val, val_len, err);
}

/*
 * Idle is measured against the partition's event time (the latest watermark of its
 * symbols), not only the key's own symbol's: a symbol that stops trading altogether
 * (delisted) never moves its own watermark again, and its state would stay forever.
 * While a symbol trades, its watermark is the partition's within clock skew.
 */
size_t iv_engine_sweep(iv_engine *e) {
    size_t dropped = 0;
    const int64_t ttl = e->ck.state_ttl_ms;
    for (size_t pi = 0; pi < e->st.n_parts; pi++) {
        iv_part *p = e->st.parts[pi];
        if (!p) continue;
        bool any = false;
        int64_t part_wm = 0;
        for (uint32_t si = 0; si < p->syms_len; si++) {
            const iv_sym *y = &p->syms[si];
            if (y->in_use && y->has_wm && (!any || y->wm > part_wm)) {
                part_wm = y->wm;
                any = true;
            }
        }
        if (!any) continue;
        for (uint32_t si = 0; si < p->syms_len; si++) {
            iv_sym *y = &p->syms[si];
            if (!y->in_use) continue;
            size_t before = dropped;
            for (uint32_t j = y->first_key; j != IV_NONE;) {
                uint32_t next = p->keys[j].next;
                if (part_wm - p->keys[j].last_ts > ttl) {
                    iv_part_drop_key(p, j, true);
                    dropped++;
                }
                j = next;
            }
            if (y->n_keys == 0 && (dropped > before || !y->has_wm || part_wm - y->wm > ttl))
                iv_part_drop_sym(p, si, true);
        }
    }
    if (dropped) e->c_valid = false;
    return dropped;
}
