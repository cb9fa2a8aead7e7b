/*
 * engine.c: symbols, intervals and causal events over the markets (engine.h).
 *
 * Per record: find the symbol (a keyed open-addressing table, himari/hash.h), close
 * what this record's time closes (the previous interval's features_computed record and
 * its price-movement checks; a liquidation episode that went quiet), then apply the
 * record: a trade to the symbol's market and its exchange's, a liquidation to the
 * episode, a transfer to the whale rules. Everything emitted is a function of the
 * records in partition order, so a replay emits the same bytes.
 */
#include "engine.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "himari/hash.h"

/* A market's latest features (windows ending just after its newest tick), computed on
 * the first read after a change and then served to every reader until the next change:
 * the Redis view and each gRPC call of a loop turn share one computation. */
typedef struct fe_latest {
    fe_features f;
    bool ok;
} fe_latest;

typedef struct fe_exch {
    char name[FE_NAME_MAX];
    fe_market m;
    fe_latest latest;
} fe_exch;

/* A run of liquidations of one symbol, each within cascade_window_ms of the one before. */
typedef struct fe_episode {
    int64_t first_ts, last_ts;
    uint32_t count, buys, sells;
    double notional;
} fe_episode;

typedef struct fe_symbol {
    struct fe_symbol *newer, *older; /* the recency list: most recently updated first */
    char name[FE_NAME_MAX];
    size_t name_len;
    uint64_t hash;
    int32_t partition;
    bool changed; /* in e->changed, waiting for fe_engine_take_changed */
    bool interval_has_ticks;
    int64_t interval_end; /* the open interval ends here (exclusive); FE_NO_SEC: none */
    int64_t newest_ts;    /* newest timestamp of any record applied; FE_NO_SEC: none */
    bool move_fired[FE_MAX_MOVES];
    fe_episode episode;        /* count 0: none open */
    fe_history_entry *history; /* ring of the newest emitted intervals (history_max) */
    size_t history_cap, history_n, history_head; /* head: the oldest entry */
    fe_market all;
    fe_latest latest; /* of all, with the cross-exchange spread */
    fe_exch *ex[FE_MAX_EXCHANGES];
    size_t n_ex;
} fe_symbol;

#define TOMBSTONE ((fe_symbol *)(uintptr_t)1)

struct fe_engine {
    fe_params p;
    fe_sinks sinks;
    fe_stats stats;
    hm_hash_key key;
    fe_symbol **slots; /* open addressing, linear probing; NULL empty, TOMBSTONE deleted */
    size_t cap, used, live;
    fe_symbol *newest, *oldest; /* the recency list's ends (eviction takes the oldest) */
    fe_symbol **changed;
    size_t n_changed, cap_changed;
    hm_buf out;                  /* the record being emitted */
    hm_buf id;                   /* an event id being built */
    hm_qcodeset untrusted_codes; /* the codes that hold the validator's sequence state */
};

void fe_params_default(fe_params *p) {
    *p = (fe_params){
        .quality_floor = 0.7,
        .lateness_ms = 5000,
        .emit_interval_ms = 1000,
        .ema = {.fast_s = 30, .slow_s = 300},
        .cross_fresh_ms = 10000,
        .max_symbols = 500,
        .history_max = 1000,
        .moves = {{300, 0.01}, {3600, 0.02}},
        .n_moves = 2,
        .cascade_window_ms = 60000,
        .cascade_min_count = 5,
        .cascade_min_notional = 1e6,
        .severity_medium = 1e6,
        .severity_high = 5e6,
        .severity_critical = 2e7,
        .whales = {{"BTC", 100}, {"ETH", 1000}, {"USDT", 1e7}, {"USDC", 1e7}},
        .n_whales = 4,
    };
}

/* ---- the symbol table -------------------------------------------------------------------- */

static uint64_t hash_name(const fe_engine *e, const char *s, size_t n) {
    return hm_siphash13(&e->key, s, n);
}

static size_t find_slot(const fe_engine *e, const char *s, size_t n, uint64_t h) {
    size_t mask = e->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        fe_symbol *y = e->slots[i];
        if (!y) {
            return i;
        }
        if (y != TOMBSTONE && y->hash == h && y->name_len == n && !memcmp(y->name, s, n)) {
            return i;
        }
    }
}

static fe_symbol *lookup(const fe_engine *e, const char *s, size_t n) {
    if (n >= FE_NAME_MAX || !e->cap) {
        return NULL;
    }
    fe_symbol *y = e->slots[find_slot(e, s, n, hash_name(e, s, n))];
    return y == TOMBSTONE ? NULL : y;
}

static int grow(fe_engine *e) {
    size_t cap = e->cap ? e->cap * 2 : 64;
    while (e->live * 2 >= cap) {
        cap *= 2;
    }
    fe_symbol **old = e->slots;
    size_t old_cap = e->cap;
    e->slots = calloc(cap, sizeof(*e->slots));
    if (!e->slots) {
        e->slots = old;
        return -ENOMEM;
    }
    e->cap = cap;
    e->used = e->live;
    for (size_t i = 0; i < old_cap; i++) {
        fe_symbol *y = old[i];
        if (y && y != TOMBSTONE) {
            e->slots[find_slot(e, y->name, y->name_len, y->hash)] = y;
        }
    }
    free(old);
    return 0;
}

static void unmark_changed(fe_engine *e, fe_symbol *y) {
    if (!y->changed) {
        return;
    }
    for (size_t i = 0; i < e->n_changed; i++) {
        if (e->changed[i] == y) {
            memmove(&e->changed[i], &e->changed[i + 1], (e->n_changed - i - 1) * sizeof(y));
            e->n_changed--;
            break;
        }
    }
    y->changed = false;
}

static void free_symbol(fe_symbol *y) {
    for (size_t i = 0; i < y->n_ex; i++) {
        free(y->ex[i]);
    }
    free(y->history);
    free(y);
}

/* Keep an emitted interval in the symbol's ring (grown up to history_max, then the
 * oldest is overwritten). Out of memory: the entry is not kept (the topic has it). */
static void remember(fe_engine *e, fe_symbol *y, int64_t start, int64_t end, const fe_features *f) {
    size_t max = e->p.history_max > 0 ? (size_t)e->p.history_max : 0;
    if (max == 0) {
        return;
    }
    if (y->history_n == y->history_cap && y->history_cap < max) {
        size_t cap = y->history_cap ? y->history_cap * 2 : 16;
        cap = cap > max ? max : cap;
        fe_history_entry *h = malloc(cap * sizeof(*h));
        if (!h) {
            return;
        }
        for (size_t i = 0; i < y->history_n; i++) { /* unroll the ring, oldest first */
            h[i] = y->history[(y->history_head + i) % y->history_cap];
        }
        free(y->history);
        y->history = h;
        y->history_cap = cap;
        y->history_head = 0;
    }
    fe_history_entry entry = {start, end, *f};
    if (y->history_n < y->history_cap) {
        y->history[(y->history_head + y->history_n++) % y->history_cap] = entry;
    } else if (y->history_cap > 0) {
        y->history[y->history_head] = entry; /* full: the oldest makes room */
        y->history_head = (y->history_head + 1) % y->history_cap;
    }
}

static void unlink_recency(fe_engine *e, fe_symbol *y) {
    if (y->newer) {
        y->newer->older = y->older;
    } else {
        e->newest = y->older;
    }
    if (y->older) {
        y->older->newer = y->newer;
    } else {
        e->oldest = y->newer;
    }
    y->newer = y->older = NULL;
}

static void push_newest(fe_engine *e, fe_symbol *y) {
    y->older = e->newest;
    y->newer = NULL;
    if (e->newest) {
        e->newest->newer = y;
    } else {
        e->oldest = y;
    }
    e->newest = y;
}

static void remove_symbol(fe_engine *e, fe_symbol *y) {
    size_t i = find_slot(e, y->name, y->name_len, y->hash);
    assert(e->slots[i] == y);
    e->slots[i] = TOMBSTONE;
    e->live--;
    unlink_recency(e, y);
    unmark_changed(e, y);
    free_symbol(y);
}

/* At max_symbols the symbol updated least recently (in input order, so a replay evicts
 * the same one) makes room: O(1), whatever a flood of new symbols does. */
static void evict_one(fe_engine *e) {
    if (e->oldest) {
        remove_symbol(e, e->oldest);
        e->stats.evicted++;
    }
}

static fe_symbol *get_symbol(fe_engine *e, int32_t partition, const char *s, size_t n) {
    if (n == 0 || n >= FE_NAME_MAX) {
        return NULL;
    }
    fe_symbol *y = lookup(e, s, n);
    if (y) {
        y->partition = partition; /* a symbol moves only if the topic is re-partitioned */
        if (e->newest != y) {
            unlink_recency(e, y);
            push_newest(e, y);
        }
        return y;
    }
    if ((int64_t)e->live >= e->p.max_symbols) {
        evict_one(e);
    }
    if ((e->used + 1) * 2 > e->cap && grow(e) != 0) {
        return NULL;
    }
    y = calloc(1, sizeof(*y));
    if (!y) {
        return NULL;
    }
    memcpy(y->name, s, n);
    y->name_len = n;
    y->hash = hash_name(e, s, n);
    y->partition = partition;
    y->interval_end = FE_NO_SEC;
    y->newest_ts = FE_NO_SEC;
    fe_market_init(&y->all);
    size_t i = find_slot(e, s, n, y->hash);
    if (!e->slots[i]) {
        e->used++;
    }
    e->slots[i] = y;
    e->live++;
    push_newest(e, y);
    return y;
}

static fe_exch *get_exchange(fe_symbol *y, const char *s, size_t n, bool create) {
    for (size_t i = 0; i < y->n_ex; i++) {
        if (strlen(y->ex[i]->name) == n && !memcmp(y->ex[i]->name, s, n)) {
            return y->ex[i];
        }
    }
    if (!create || y->n_ex == FE_MAX_EXCHANGES || n == 0 || n >= FE_NAME_MAX) {
        return NULL;
    }
    fe_exch *x = malloc(sizeof(*x));
    if (!x) {
        return NULL;
    }
    memcpy(x->name, s, n);
    x->name[n] = '\0';
    fe_market_init(&x->m);
    x->latest.ok = false;
    /* Kept in name order, so that JSON lists exchanges the same way in every run. */
    size_t at = y->n_ex;
    while (at > 0 && strcmp(y->ex[at - 1]->name, x->name) > 0) {
        y->ex[at] = y->ex[at - 1];
        at--;
    }
    y->ex[at] = x;
    y->n_ex++;
    return x;
}

fe_engine *fe_engine_new(const fe_params *p, const fe_sinks *sinks) {
    fe_engine *e = calloc(1, sizeof(*e));
    if (!e) {
        return NULL;
    }
    e->p = *p;
    if (sinks) {
        e->sinks = *sinks;
    }
    e->key = hm_hash_key_random();
    e->untrusted_codes = hm_qcodes_holding(HM_QHOLD_SEQ);
    return e;
}

void fe_engine_free(fe_engine *e) {
    if (!e) {
        return;
    }
    for (size_t i = 0; i < e->cap; i++) {
        if (e->slots[i] && e->slots[i] != TOMBSTONE) {
            free_symbol(e->slots[i]);
        }
    }
    free(e->slots);
    free(e->changed);
    hm_buf_free(&e->out);
    hm_buf_free(&e->id);
    free(e);
}

void fe_engine_set_sinks(fe_engine *e, const fe_sinks *sinks) {
    e->sinks = *sinks;
}

void fe_engine_set_params(fe_engine *e, const fe_params *p) {
    e->p = *p;
    /* The EMA constants and the spread's freshness bound are inputs of the latest view. */
    for (size_t i = 0; i < e->cap; i++) {
        fe_symbol *y = e->slots[i];
        if (y && y != TOMBSTONE) {
            y->latest.ok = false;
            for (size_t j = 0; j < y->n_ex; j++) {
                y->ex[j]->latest.ok = false;
            }
        }
    }
}

const fe_stats *fe_engine_stats(const fe_engine *e) {
    return &e->stats;
}

size_t fe_engine_symbols(const fe_engine *e) {
    return e->live;
}

void fe_engine_drop_partition(fe_engine *e, int32_t partition) {
    for (size_t i = 0; i < e->cap; i++) {
        fe_symbol *y = e->slots[i];
        if (y && y != TOMBSTONE && y->partition == partition) {
            remove_symbol(e, y);
        }
    }
}

/* ---- features as JSON ------------------------------------------------------------------- */

/* The spread between the freshest prices of the symbol's exchanges, bps of their mid. */
static void set_cross_spread(const fe_engine *e, const fe_symbol *y, int64_t as_of_ms,
                             fe_features *f) {
    double lo = INFINITY, hi = -INFINITY;
    int n = 0;
    for (size_t i = 0; i < y->n_ex; i++) {
        const fe_market *m = &y->ex[i]->m;
        if (m->last_ts_ms == FE_NO_SEC || m->last_ts_ms >= as_of_ms ||
            m->last_ts_ms < as_of_ms - e->p.cross_fresh_ms) {
            continue;
        }
        lo = fmin(lo, m->last_price);
        hi = fmax(hi, m->last_price);
        n++;
    }
    if (n >= 2) {
        fe_features_set(f, FE_F_CROSS_SPREAD_BPS, (hi - lo) / ((hi + lo) / 2) * 1e4);
    }
}

static const fe_features *exchange_latest(const fe_engine *e, fe_exch *x) {
    if (!x->latest.ok) {
        fe_features_compute(&x->m, x->m.max_ts_ms + 1, &e->p.ema, &x->latest.f);
        x->latest.ok = true;
    }
    return &x->latest.f;
}

static const fe_features *symbol_latest(const fe_engine *e, fe_symbol *y) {
    if (!y->latest.ok) {
        fe_features_compute(&y->all, y->all.max_ts_ms + 1, &e->p.ema, &y->latest.f);
        set_cross_spread(e, y, y->all.max_ts_ms + 1, &y->latest.f);
        y->latest.ok = true;
    }
    return &y->latest.f;
}

/* The symbol's features and each exchange's, as of as_of_ms (an emitted interval), or
 * with as_of_ms FE_NO_SEC each market's latest. *all gets the features across exchanges. */
static void write_markets(const fe_engine *e, fe_symbol *y, int64_t as_of_ms, hm_buf *b,
                          fe_features *all) {
    bool latest = as_of_ms == FE_NO_SEC;
    if (latest) {
        *all = *symbol_latest(e, y);
    } else {
        fe_features_compute(&y->all, as_of_ms, &e->p.ema, all);
        set_cross_spread(e, y, as_of_ms, all);
    }
    HM_BUF_PUT_LIT(b, "\"features\":");
    fe_features_write_json(b, all);
    HM_BUF_PUT_LIT(b, ",\"exchanges\":{");
    for (size_t i = 0; i < y->n_ex; i++) {
        if (i) {
            hm_buf_putc(b, ',');
        }
        hm_json_cstr(b, y->ex[i]->name);
        hm_buf_putc(b, ':');
        if (latest) {
            fe_features_write_json(b, exchange_latest(e, y->ex[i]));
        } else {
            fe_features f;
            fe_features_compute(&y->ex[i]->m, as_of_ms, &e->p.ema, &f);
            fe_features_write_json(b, &f);
        }
    }
    hm_buf_putc(b, '}');
}

static void put_symbol_head(hm_buf *b, const fe_symbol *y) {
    HM_BUF_PUT_LIT(b, "{\"symbol\":");
    hm_json_str(b, y->name, y->name_len);
}

/* ---- emission ---------------------------------------------------------------------------- */

static void emit(fe_engine *e, fe_out_fn fn, const fe_symbol *y) {
    if (fn) {
        fn(e->sinks.ud, y->partition, y->name, y->name_len, e->out.data, e->out.len);
    }
}

static void emit_event(fe_engine *e, const fe_symbol *y) {
    e->stats.events++;
    emit(e, e->sinks.event, y);
}

/* ,"event_id":"<type>:<symbol>:<a>:<b>"} (the symbol escaped as JSON needs). */
static void put_event_id(fe_engine *e, const char *type, const fe_symbol *y, int64_t a, int64_t b) {
    hm_buf *id = &e->id;
    hm_buf_reset(id);
    hm_buf_puts(id, type);
    hm_buf_putc(id, ':');
    hm_buf_append(id, y->name, y->name_len);
    hm_buf_putc(id, ':');
    hm_buf_i64(id, a);
    hm_buf_putc(id, ':');
    hm_buf_i64(id, b);
    HM_BUF_PUT_LIT(&e->out, ",\"event_id\":");
    hm_json_str(&e->out, id->data, id->len);
    hm_buf_putc(&e->out, '}');
}

/* Price movements at the end of an interval: once per crossing of a rule's threshold,
 * re-armed when the move falls back under half of it. */
static void check_moves(fe_engine *e, fe_symbol *y, int64_t end_ms) {
    int64_t end_sec = fe_sec_of(end_ms - 1);
    double now;
    if (!fe_market_price_at(&y->all, end_sec, &now)) {
        return;
    }
    for (size_t i = 0; i < e->p.n_moves; i++) {
        const fe_move_rule *r = &e->p.moves[i];
        double then;
        if (!fe_market_price_at(&y->all, end_sec - r->window_s, &then)) {
            continue;
        }
        double change = now / then - 1.0;
        if (fabs(change) < r->threshold / 2) {
            y->move_fired[i] = false;
        }
        if (fabs(change) < r->threshold || y->move_fired[i]) {
            continue;
        }
        y->move_fired[i] = true;
        hm_buf *b = &e->out;
        hm_buf_reset(b);
        HM_BUF_PUT_LIT(b, "{\"type\":\"price_movement\",\"symbol\":");
        hm_json_str(b, y->name, y->name_len);
        HM_BUF_PUT_LIT(b, ",\"timestamp\":");
        hm_buf_i64(b, end_ms);
        HM_BUF_PUT_LIT(b, ",\"window_s\":");
        hm_buf_i64(b, r->window_s);
        HM_BUF_PUT_LIT(b, ",\"change_percent\":");
        hm_json_double(b, change * 100);
        HM_BUF_PUT_LIT(b, ",\"price_from\":");
        hm_json_double(b, then);
        HM_BUF_PUT_LIT(b, ",\"price_to\":");
        hm_json_double(b, now);
        HM_BUF_PUT_LIT(b, ",\"threshold_percent\":");
        hm_json_double(b, r->threshold * 100);
        put_event_id(e, "price_movement", y, r->window_s, end_ms);
        emit_event(e, y);
    }
}

static void emit_interval(fe_engine *e, fe_symbol *y) {
    int64_t end = y->interval_end;
    hm_buf *b = &e->out;
    hm_buf_reset(b);
    put_symbol_head(b, y);
    HM_BUF_PUT_LIT(b, ",\"interval_start\":");
    hm_buf_i64(b, end - e->p.emit_interval_ms);
    HM_BUF_PUT_LIT(b, ",\"interval_end\":");
    hm_buf_i64(b, end);
    hm_buf_putc(b, ',');
    fe_features all;
    write_markets(e, y, end, b, &all);
    hm_buf_putc(b, '}');
    remember(e, y, end - e->p.emit_interval_ms, end, &all);
    e->stats.emitted++;
    if (e->sinks.features) {
        e->sinks.features(e->sinks.ud, y->partition, y->name, y->name_len, end, e->out.data,
                          e->out.len);
    }
    check_moves(e, y, end);
}

static const char *severity_of(const fe_params *p, double notional) {
    if (notional >= p->severity_critical) return "critical";
    if (notional >= p->severity_high) return "high";
    if (notional >= p->severity_medium) return "medium";
    return "low";
}

static void close_episode(fe_engine *e, fe_symbol *y) {
    fe_episode *ep = &y->episode;
    bool cascade =
        ep->count >= (uint64_t)e->p.cascade_min_count || ep->notional >= e->p.cascade_min_notional;
    if (ep->count > 0 && cascade) {
        hm_buf *b = &e->out;
        hm_buf_reset(b);
        HM_BUF_PUT_LIT(b, "{\"type\":\"liquidation_cascade\",\"symbol\":");
        hm_json_str(b, y->name, y->name_len);
        HM_BUF_PUT_LIT(b, ",\"timestamp\":");
        hm_buf_i64(b, ep->first_ts);
        HM_BUF_PUT_LIT(b, ",\"end_timestamp\":");
        hm_buf_i64(b, ep->last_ts);
        HM_BUF_PUT_LIT(b, ",\"count\":");
        hm_buf_u64(b, ep->count);
        HM_BUF_PUT_LIT(b, ",\"buy_count\":");
        hm_buf_u64(b, ep->buys);
        HM_BUF_PUT_LIT(b, ",\"sell_count\":");
        hm_buf_u64(b, ep->sells);
        HM_BUF_PUT_LIT(b, ",\"total_liquidation_value\":");
        hm_json_double(b, ep->notional);
        HM_BUF_PUT_LIT(b, ",\"severity\":\"");
        hm_buf_puts(b, severity_of(&e->p, ep->notional));
        hm_buf_putc(b, '"');
        put_event_id(e, "liquidation_cascade", y, ep->first_ts, ep->last_ts);
        emit_event(e, y);
    }
    *ep = (fe_episode){0};
}

/* What a record at ts closes before it is applied: the open interval, a quiet episode. */
static void advance_to(fe_engine *e, fe_symbol *y, int64_t ts) {
    int64_t iv = e->p.emit_interval_ms;
    if (y->interval_end != FE_NO_SEC && ts >= y->interval_end) {
        if (y->interval_has_ticks) {
            emit_interval(e, y);
        }
        y->interval_has_ticks = false;
    }
    if (y->interval_end == FE_NO_SEC || ts >= y->interval_end) {
        int64_t q = ts / iv - (ts % iv < 0);
        y->interval_end = (q + 1) * iv;
    }
    if (y->episode.count > 0 && ts > y->episode.last_ts + e->p.cascade_window_ms) {
        close_episode(e, y);
    }
}

static void mark_changed(fe_engine *e, fe_symbol *y) {
    if (y->changed) {
        return;
    }
    if (e->n_changed == e->cap_changed) {
        size_t cap = e->cap_changed ? e->cap_changed * 2 : 64;
        fe_symbol **c = realloc(e->changed, cap * sizeof(*c));
        if (!c) {
            return; /* the latest view of this symbol waits for its next change */
        }
        e->changed = c;
        e->cap_changed = cap;
    }
    e->changed[e->n_changed++] = y;
    y->changed = true;
}

/* ---- records ------------------------------------------------------------------------------ */

static bool span_ok(const hm_quality *q, hm_field f, size_t max) {
    const hm_span *s = f == HM_FIELD_SYMBOL     ? &q->tick.symbol
                       : f == HM_FIELD_EXCHANGE ? &q->tick.exchange
                                                : &q->tick.asset;
    return q->tick.st[f] == HM_F_OK && s->len > 0 && s->len < max;
}

static const fe_whale_rule *whale_rule(const fe_params *p, const hm_span *asset) {
    char up[FE_NAME_MAX];
    if (asset->len >= sizeof(up)) {
        return NULL;
    }
    for (uint32_t i = 0; i < asset->len; i++) {
        up[i] = (char)toupper((unsigned char)asset->p[i]);
    }
    up[asset->len] = '\0';
    for (size_t i = 0; i < p->n_whales; i++) {
        if (!strcmp(p->whales[i].asset, up)) {
            return &p->whales[i];
        }
    }
    return NULL;
}

static void put_span_field(hm_buf *b, const char *key, hm_fstate st, const hm_span *s) {
    hm_buf_putc(b, ',');
    hm_json_key(b, key);
    if (st == HM_F_OK) {
        hm_json_str(b, s->p, s->len);
    } else {
        hm_buf_puts(b, "null");
    }
}

static void process_transfer(fe_engine *e, int32_t partition, const hm_quality *q) {
    const hm_tick *t = &q->tick;
    e->stats.transfers++;
    if (q->score < e->p.quality_floor || !span_ok(q, HM_FIELD_ASSET, FE_NAME_MAX) ||
        t->st[HM_FIELD_AMOUNT] != HM_F_OK || t->st[HM_FIELD_TIMESTAMP] != HM_F_OK) {
        return;
    }
    const fe_whale_rule *r = whale_rule(&e->p, &t->asset);
    if (!r || !(t->amount >= r->min_amount)) {
        return;
    }
    hm_buf *b = &e->out;
    hm_buf_reset(b);
    HM_BUF_PUT_LIT(b, "{\"type\":\"whale_transfer\",\"asset\":\"");
    hm_buf_puts(b, r->asset);
    HM_BUF_PUT_LIT(b, "\",\"timestamp\":");
    hm_buf_i64(b, t->ts_ms);
    HM_BUF_PUT_LIT(b, ",\"amount\":");
    hm_json_double(b, t->amount);
    put_span_field(b, "from", t->st[HM_FIELD_FROM], &t->from);
    put_span_field(b, "to", t->st[HM_FIELD_TO], &t->to);
    put_span_field(b, "exchange", t->st[HM_FIELD_EXCHANGE], &t->exchange);
    put_span_field(b, "symbol", t->st[HM_FIELD_SYMBOL], &t->symbol);
    put_span_field(b, "tx_hash", t->st[HM_FIELD_TX_HASH], &t->tx_hash);
    /* The id: the chain's transaction hash when there is one, else the record's time,
     * asset and source address (what makes a transfer itself). */
    hm_buf *id = &e->id;
    hm_buf_reset(id);
    HM_BUF_PUT_LIT(id, "whale_transfer:");
    if (t->st[HM_FIELD_TX_HASH] == HM_F_OK) {
        hm_buf_append(id, t->tx_hash.p, t->tx_hash.len);
    } else {
        hm_buf_puts(id, r->asset);
        hm_buf_putc(id, ':');
        hm_buf_i64(id, t->ts_ms);
        hm_buf_putc(id, ':');
        if (t->st[HM_FIELD_FROM] == HM_F_OK) {
            hm_buf_append(id, t->from.p, t->from.len);
        }
    }
    HM_BUF_PUT_LIT(b, ",\"event_id\":");
    hm_json_str(b, id->data, id->len);
    hm_buf_putc(b, '}');
    e->stats.events++;
    const hm_span *key = t->st[HM_FIELD_SYMBOL] == HM_F_OK ? &t->symbol : &t->asset;
    if (e->sinks.event) {
        e->sinks.event(e->sinks.ud, partition, key->p, key->len, b->data, b->len);
    }
}

static bool value_ok(const hm_tick *t, hm_field f, double v, bool positive) {
    return t->st[f] == HM_F_OK && isfinite(v) && (positive ? v > 0 : v >= 0);
}

void fe_engine_process(fe_engine *e, int32_t partition, const hm_quality *q) {
    const hm_tick *t = &q->tick;
    e->stats.records++;
    if (q->st[HM_QFIELD_SCORE] != HM_F_OK) {
        e->stats.unusable++;
        return;
    }
    /* A record whose symbol, exchange or time the validator did not trust (an unknown
     * exchange, a malformed symbol, a future or stale timestamp, out of order) or that
     * repeats a trade (a duplicate trade id) would make a symbol of a typo, move the
     * symbol's clock by a bad timestamp (every later tick would be late) or count a
     * trade twice: like the validator's own state, the features do not move with it. */
    if (q->codes & e->untrusted_codes) {
        e->stats.untrusted++;
        return;
    }
    if (t->kind == HM_KIND_TRANSFER) {
        process_transfer(e, partition, q);
        return;
    }
    if (!span_ok(q, HM_FIELD_SYMBOL, FE_NAME_MAX) || !span_ok(q, HM_FIELD_EXCHANGE, FE_NAME_MAX) ||
        t->st[HM_FIELD_TIMESTAMP] != HM_F_OK) {
        e->stats.unusable++;
        return;
    }
    fe_symbol *y = get_symbol(e, partition, t->symbol.p, t->symbol.len);
    if (!y) {
        e->stats.unusable++;
        return;
    }
    if (y->newest_ts != FE_NO_SEC && t->ts_ms < y->newest_ts - e->p.lateness_ms) {
        e->stats.late++;
        return;
    }
    advance_to(e, y, t->ts_ms);
    if (y->newest_ts == FE_NO_SEC || t->ts_ms > y->newest_ts) {
        y->newest_ts = t->ts_ms;
    }
    bool good = q->score >= e->p.quality_floor;
    bool priced = good && value_ok(t, HM_FIELD_PRICE, t->price, true) &&
                  value_ok(t, HM_FIELD_VOLUME, t->volume, false);
    if (t->kind == HM_KIND_LIQUIDATION) {
        e->stats.liquidations++;
        if (priced) {
            fe_episode *ep = &y->episode;
            if (ep->count == 0) {
                ep->first_ts = t->ts_ms;
            }
            ep->last_ts = t->ts_ms > ep->last_ts ? t->ts_ms : ep->last_ts;
            ep->count++;
            ep->buys += t->side == HM_SIDE_BUY;
            ep->sells += t->side == HM_SIDE_SELL;
            ep->notional += t->price * t->volume;
        }
        return;
    }
    fe_exch *x = get_exchange(y, t->exchange.p, t->exchange.len, true);
    if (!x) {
        e->stats.exchanges_full++;
        return;
    }
    fe_tick_in in = {.ts_ms = t->ts_ms,
                     .price = t->price,
                     .volume = t->volume,
                     .side = t->side,
                     .quality = q->score,
                     .below_floor = !good,
                     .is_price = priced};
    fe_market_apply(&y->all, &in, &e->p.ema);
    fe_market_apply(&x->m, &in, &e->p.ema);
    y->latest.ok = x->latest.ok = false;
    e->stats.applied++;
    e->stats.below_floor += !good;
    y->interval_has_ticks = true;
    mark_changed(e, y);
}

/* ---- the latest view ---------------------------------------------------------------------- */

size_t fe_engine_take_changed(fe_engine *e, void (*fn)(void *ud, const char *symbol), void *ud) {
    size_t n = e->n_changed;
    for (size_t i = 0; i < n; i++) {
        e->changed[i]->changed = false;
        fn(ud, e->changed[i]->name);
    }
    e->n_changed = 0;
    return n;
}

int fe_engine_latest(fe_engine *e, const char *symbol, const char *exchange, fe_features *out) {
    fe_symbol *y = lookup(e, symbol, strlen(symbol));
    if (!y) {
        return -ENOENT;
    }
    if (!exchange) {
        *out = *symbol_latest(e, y);
        return 0;
    }
    fe_exch *x = get_exchange(y, exchange, strlen(exchange), false);
    if (!x) {
        return -ENOENT;
    }
    *out = *exchange_latest(e, x);
    return 0;
}

int fe_engine_latest_json(fe_engine *e, const char *symbol, hm_buf *b) {
    fe_symbol *y = lookup(e, symbol, strlen(symbol));
    if (!y) {
        return -ENOENT;
    }
    put_symbol_head(b, y);
    HM_BUF_PUT_LIT(b, ",\"timestamp\":");
    hm_buf_i64(b, y->all.max_ts_ms);
    hm_buf_putc(b, ',');
    fe_features all;
    write_markets(e, y, FE_NO_SEC, b, &all);
    hm_buf_putc(b, '}');
    return 0;
}

int fe_engine_latest_exchange_json(fe_engine *e, const char *symbol, const char *exchange,
                                   hm_buf *b) {
    fe_symbol *y = lookup(e, symbol, strlen(symbol));
    fe_exch *x = y ? get_exchange(y, exchange, strlen(exchange), false) : NULL;
    if (!x) {
        return -ENOENT;
    }
    put_symbol_head(b, y);
    HM_BUF_PUT_LIT(b, ",\"exchange\":");
    hm_json_cstr(b, x->name);
    HM_BUF_PUT_LIT(b, ",\"timestamp\":");
    hm_buf_i64(b, x->m.max_ts_ms);
    HM_BUF_PUT_LIT(b, ",\"features\":");
    fe_features_write_json(b, exchange_latest(e, x));
    hm_buf_putc(b, '}');
    return 0;
}

int fe_engine_history(const fe_engine *e, const char *symbol, int64_t from_ms, int64_t to_ms,
                      size_t limit, void (*fn)(void *ud, const fe_history_entry *h), void *ud) {
    const fe_symbol *y = lookup(e, symbol, strlen(symbol));
    if (!y) {
        return -ENOENT;
    }
    /* The newest `limit` entries in range: find where they start, then visit forwards. */
    size_t in_range = 0, first = y->history_n;
    for (size_t i = y->history_n; i-- > 0;) {
        const fe_history_entry *h = &y->history[(y->history_head + i) % y->history_cap];
        if ((to_ms && h->interval_end_ms > to_ms) || h->interval_end_ms < from_ms) {
            continue;
        }
        if (in_range == limit) {
            break;
        }
        in_range++;
        first = i;
    }
    int n = 0;
    for (size_t i = first; i < y->history_n && (size_t)n < in_range; i++) {
        const fe_history_entry *h = &y->history[(y->history_head + i) % y->history_cap];
        if ((to_ms && h->interval_end_ms > to_ms) || h->interval_end_ms < from_ms) {
            continue;
        }
        fn(ud, h);
        n++;
    }
    return n;
}

int fe_engine_latest_all(fe_engine *e, const char *symbol, fe_features *all,
                         fe_features *per_exchange, const char **exchange_names,
                         size_t max_exchanges) {
    fe_symbol *y = lookup(e, symbol, strlen(symbol));
    if (!y) {
        return -ENOENT;
    }
    *all = *symbol_latest(e, y);
    size_t n = y->n_ex < max_exchanges ? y->n_ex : max_exchanges;
    for (size_t i = 0; i < n; i++) {
        per_exchange[i] = *exchange_latest(e, y->ex[i]);
        exchange_names[i] = y->ex[i]->name;
    }
    return (int)n;
}

size_t fe_engine_each_exchange(const fe_engine *e, const char *symbol,
                               void (*fn)(void *ud, const char *exchange), void *ud) {
    const fe_symbol *y = lookup(e, symbol, strlen(symbol));
    if (!y) {
        return 0;
    }
    for (size_t i = 0; i < y->n_ex; i++) {
        fn(ud, y->ex[i]->name);
    }
    return y->n_ex;
}

void fe_engine_each_symbol(const fe_engine *e, void (*fn)(void *ud, const char *symbol), void *ud) {
    for (size_t i = 0; i < e->cap; i++) {
        const fe_symbol *y = e->slots[i];
        if (y && y != TOMBSTONE) {
            fn(ud, y->name);
        }
    }
}
