/*
 * market.c: himari-sim's market model and record writer (see market.h).
 *
 * Sits at the very start of the data flow: what it writes is what exchange
 * connectors would put on raw_market_data. It is pure logic over its own
 * state: no I/O, no clock reads, no allocation after sim_market_new(), so the
 * same seed and options always give the same bytes. It must never write a
 * clean record that a correct validator would flag: clean prices stay within
 * the exchange offset and bounce of the true price, clean timestamps of a feed
 * never go back, clean trade ids of a feed only go up.
 */
#include "market.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/*
 * The defaults table. Volatility ~60% a year is what BTC has shown over long
 * windows; ETH and SOL run hotter. Medians and whale ranges are plausible
 * sizes, not measurements. Weights decide each symbol's share of the rate.
 */
const sim_asset_defaults sim_asset_table[] = {
    {"BTC", 37000.0, 2, 0.60, 0.05, 50.0, 2000.0, 0.45},
    {"ETH", 2000.0, 2, 0.65, 0.8, 500.0, 20000.0, 0.35},
    {"SOL", 60.0, 3, 0.80, 12.0, 20000.0, 500000.0, 0.20},
    {NULL, 1.0, 4, 0.60, 500.0, 1.0e5, 1.0e7, 0.15},
};

/* Exchanges differ in how they write a record, so every reader path is
 * exercised: kraken quotes numbers, some omit "type" on trades, and under
 * --timestamps mixed some write ISO-8601. */
const sim_exchange_defaults sim_exchange_table[] = {
    {"binance", 0.35, false, false, false}, {"kraken", 0.15, true, true, true},
    {"bybit", 0.20, false, true, false},    {"coinbase", 0.20, false, false, true},
    {"deribit", 0.10, false, true, false},  {NULL, 0.15, false, true, false},
};

/* Half-widths of the clean price noise (fractions of the price). */
#define SIM_EXCH_OFFSET      0.0002 /* fixed per exchange */
#define SIM_BOUNCE           0.0001 /* per trade, signed by side */
#define SIM_LIQ_SPREAD       0.0003 /* liquidations fill a little off the market */
#define SIM_VOLUME_SIGMA     0.9
#define SIM_LIQ_SIZE         15.0 /* liquidation median = 15 x the trade median */
#define SIM_SKEW_MS          300
#define SIM_JITTER_MS        20
#define SIM_BURST_PROB       0.004 /* per trade: starts a burst of 2..6 */
#define SIM_BURST_MEAN_EXTRA 3.0   /* records a burst adds after its first (1..5) */
#define SIM_NS_PER_YEAR      (365.25 * 86400.0 * 1e9)
#define SIM_SILENT_REDRAWS   8
/* --profile: see sim_profile in market.h */
#define SIM_LULL_PROB      0.05
#define SIM_LULL_MIN       10.0
#define SIM_LULL_MAX       60.0
#define SIM_TAIL_PROB      0.01
#define SIM_TAIL_ALPHA     1.1
#define SIM_TAIL_MAX       10000.0
#define SIM_BIG_BURST_MAX  499 /* records after a burst's first */
#define SIM_INSURANCE_PROB 0.0005
#define SIM_INSURANCE_MIN  0.015
#define SIM_INSURANCE_MAX  0.025

unsigned sim_profile_parse(const char *name, size_t len) {
#define PARSE_(id, str, help)                                                                      \
    if (len == sizeof(str) - 1 && memcmp(name, str, len) == 0) return id;
    SIM_PROFILES(PARSE_)
#undef PARSE_
    return 0;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static bool valid_part(const char *s, size_t n, bool upper) {
    if (n == 0 || n > 12) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok =
            (c >= '0' && c <= '9') || (upper ? (c >= 'A' && c <= 'Z') : (c >= 'a' && c <= 'z'));
        if (!ok) return false;
    }
    return true;
}

static int add_symbol(sim_market *m, const char *name, hm_err *err) {
    size_t n = strlen(name);
    const char *slash = strchr(name, '/');
    if (n >= SIM_NAME_MAX || !slash || !valid_part(name, (size_t)(slash - name), true) ||
        !valid_part(slash + 1, n - (size_t)(slash - name) - 1, true))
        return hm_err_set(err, -EINVAL,
                          "--symbols: '%s' is not BASE/QUOTE in upper-case letters and digits",
                          name);
    for (size_t i = 0; i < m->n_sym; i++)
        if (strcmp(m->sym[i].name, name) == 0)
            return hm_err_set(err, -EINVAL, "--symbols: '%s' is listed twice", name);
    sim_symbol *s = &m->sym[m->n_sym++];
    memcpy(s->name, name, n + 1);
    s->name_len = (uint8_t)n;
    s->base_len = (uint8_t)(slash - name);
    memcpy(s->base, name, s->base_len);
    s->base[s->base_len] = '\0';
    const sim_asset_defaults *d = sim_asset_table;
    while (d->base && strcmp(d->base, s->base) != 0)
        d++;
    s->def = d;
    s->decimals = d->decimals;
    s->pow10 = 1;
    for (int i = 0; i < d->decimals; i++)
        s->pow10 *= 10;
    s->true_price = d->price;
    s->var_per_ns = d->vol * d->vol / SIM_NS_PER_YEAR;
    return 0;
}

static int add_exchange(sim_market *m, const char *name, hm_err *err) {
    size_t n = strlen(name);
    bool ok = n > 0 && n < SIM_NAME_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        char c = name[i];
        ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    }
    if (!ok)
        return hm_err_set(err, -EINVAL,
                          "--exchanges: '%s' is not 1..31 of lower-case letters, digits, '_', '-'",
                          name);
    /* "fakex" is what the unknown_exchange anomaly writes; a real feed of that
     * name would make those labels wrong. */
    if (strcmp(name, "fakex") == 0)
        return hm_err_set(err, -EINVAL,
                          "--exchanges: 'fakex' is reserved for the unknown_exchange "
                          "anomaly");
    for (size_t i = 0; i < m->n_exch; i++)
        if (strcmp(m->exch[i].name, name) == 0)
            return hm_err_set(err, -EINVAL, "--exchanges: '%s' is listed twice", name);
    sim_exchange *e = &m->exch[m->n_exch++];
    memcpy(e->name, name, n + 1);
    e->name_len = (uint8_t)n;
    const sim_exchange_defaults *d = sim_exchange_table;
    while (d->name && strcmp(d->name, name) != 0)
        d++;
    e->numbers_as_strings = d->numbers_as_strings;
    e->type_on_trades = d->type_on_trades;
    e->iso_ts = d->iso_when_mixed;
    return 0;
}

int sim_market_new(const sim_market_opts *o, sim_market **out, hm_err *err) {
    *out = NULL;
    if (o->n_symbols == 0 || o->n_symbols > SIM_MAX_SYMBOLS)
        return hm_err_set(err, -EINVAL, "--symbols: need 1..%d symbols, got %zu", SIM_MAX_SYMBOLS,
                          o->n_symbols);
    if (o->n_exchanges == 0 || o->n_exchanges > SIM_MAX_EXCHANGES)
        return hm_err_set(err, -EINVAL, "--exchanges: need 1..%d exchanges, got %zu",
                          SIM_MAX_EXCHANGES, o->n_exchanges);
    if (!(o->rate > 0) || !isfinite(o->rate))
        return hm_err_set(err, -EINVAL, "--rate: must be a positive number, got %g", o->rate);
    if (!(o->liquidation_rate >= 0) || !(o->transfer_rate >= 0) ||
        !(o->liquidation_rate + o->transfer_rate < 1.0))
        return hm_err_set(err, -EINVAL,
                          "liquidation rate %g and transfer rate %g must be >= 0 and sum below 1",
                          o->liquidation_rate, o->transfer_rate);

    sim_market *m = hm_xcalloc(1, sizeof(*m));
    int rc;
    for (size_t i = 0; i < o->n_symbols; i++)
        if ((rc = add_symbol(m, o->symbols[i], err)) < 0) goto err;
    for (size_t i = 0; i < o->n_exchanges; i++)
        if ((rc = add_exchange(m, o->exchanges[i], err)) < 0) goto err;

    sim_rng_seed(&m->rng, o->seed, 1);
    /* Bursts add 3 records on average without advancing the clock (bursts profile: the
     * mean of a log-uniform 1..499): thin the Poisson events so that records (not
     * events) arrive at `rate`. */
    double extra = SIM_BURST_MEAN_EXTRA;
    if (o->profiles & SIM_PROFILE_BURSTS)
        extra = (SIM_BIG_BURST_MAX - 1) / log((double)SIM_BIG_BURST_MAX);
    m->rate =
        o->rate / (1.0 + SIM_BURST_PROB * extra * (1.0 - o->liquidation_rate - o->transfer_rate));
    m->profiles = o->profiles;
    m->gap_scale = 1.0;
    if (o->profiles & SIM_PROFILE_SPARSE)
        m->gap_scale = 1.0 - SIM_LULL_PROB + SIM_LULL_PROB * (SIM_LULL_MIN + SIM_LULL_MAX) / 2;
    for (size_t e = 0; e < m->n_exch; e++)
        m->exch[e].inverse =
            (o->profiles & SIM_PROFILE_INVERSE) && ends_with(m->exch[e].name, "coinm");
    m->liquidation_rate = o->liquidation_rate;
    m->transfer_rate = o->transfer_rate;
    m->ts_format = o->ts_format;
    m->now_ns = o->start_ms * 1000000;
    m->committed = true;
    for (size_t e = 0; e < m->n_exch; e++) {
        m->exch[e].skew_ms = sim_rng_range(&m->rng, -SIM_SKEW_MS, SIM_SKEW_MS);
        m->exch[e].price_offset = sim_rng_uniform(&m->rng, -SIM_EXCH_OFFSET, SIM_EXCH_OFFSET);
    }
    for (size_t s = 0; s < m->n_sym; s++)
        m->sym[s].updated_ns = m->now_ns;

    m->n_feeds = m->n_sym * m->n_exch;
    m->feeds = hm_xcalloc(m->n_feeds, sizeof(*m->feeds));
    m->feed_cum = hm_xcalloc(m->n_feeds, sizeof(*m->feed_cum));
    double total = 0;
    for (size_t s = 0; s < m->n_sym; s++) {
        for (size_t e = 0; e < m->n_exch; e++) {
            size_t i = s * m->n_exch + e;
            sim_feed *f = &m->feeds[i];
            f->sym = (uint16_t)s;
            f->exch = (uint16_t)e;
            f->last_ts_ms = INT64_MIN;
            /* A 6..9-digit start, the digit count itself uniform. */
            int digits = (int)sim_rng_range(&m->rng, 6, 9);
            int64_t lo = 1;
            for (int d = 1; d < digits; d++)
                lo *= 10;
            f->next_id = (uint64_t)sim_rng_range(&m->rng, lo, lo * 10 - 1);
            if (o->first_id) f->next_id = o->first_id;
            const sim_exchange_defaults *ed = sim_exchange_table;
            while (ed->name && strcmp(ed->name, m->exch[e].name) != 0)
                ed++;
            total += m->sym[s].def->weight * ed->weight;
            m->feed_cum[i] = total;
        }
    }
    for (size_t i = 0; i < m->n_feeds; i++)
        m->feed_cum[i] /= total;
    m->feed_cum[m->n_feeds - 1] = 1.0;
    *out = m;
    return 0;
err:
    sim_market_free(m);
    return rc;
}

void sim_market_free(sim_market *m) {
    if (!m) return;
    free(m->feeds);
    free(m->feed_cum);
    free(m);
}

/* A feed by its arrival share: binary search of the cumulative weights. */
static uint32_t draw_feed(sim_market *m) {
    double u = sim_rng_unit(&m->rng);
    size_t lo = 0, hi = m->n_feeds - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (m->feed_cum[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return (uint32_t)lo;
}

/*
 * The arriving feed. A silent feed's arrivals go to the others (redraw), so the
 * total rate holds; if every feed is silent the clock jumps to the first end.
 */
static uint32_t pick_feed(sim_market *m) {
    uint32_t f = draw_feed(m);
    for (int i = 0; i < SIM_SILENT_REDRAWS && sim_market_feed_silent(m, f); i++)
        f = draw_feed(m);
    if (!sim_market_feed_silent(m, f)) return f;
    int64_t soonest = INT64_MAX;
    for (size_t i = 0; i < m->n_feeds; i++) {
        if (!sim_market_feed_silent(m, (uint32_t)i)) return (uint32_t)i;
        if (m->feeds[i].silent_until_ns < soonest) {
            soonest = m->feeds[i].silent_until_ns;
            f = (uint32_t)i;
        }
    }
    m->now_ns = soonest;
    return f;
}

/* Move a symbol's true price to now: GBM, zero drift, exact for any gap. */
static void evolve(sim_market *m, sim_symbol *s) {
    int64_t dt = m->now_ns - s->updated_ns;
    if (dt <= 0) return;
    double var = s->var_per_ns * (double)dt;
    s->true_price *= exp(sqrt(var) * sim_rng_normal(&m->rng) - 0.5 * var);
    s->updated_ns = m->now_ns;
}

static int64_t to_ticks(const sim_symbol *s, double price) {
    int64_t t = llround(price * (double)s->pow10);
    return t < 1 ? 1 : t;
}

static int64_t lognormal_micro(sim_market *m, double median) {
    double v = median * exp(SIM_VOLUME_SIGMA * sim_rng_normal(&m->rng));
    int64_t micro = llround(v * 1e6);
    return micro < 1 ? 1 : micro;
}

/* A trade's size on exchange e at price ticks: lognormal, with the fat-tails profile's
 * Pareto factor now and then, in whole contracts on an inverse exchange. */
static int64_t trade_size_micro(sim_market *m, const sim_symbol *s, const sim_exchange *e,
                                double median, int64_t price_ticks) {
    int64_t micro = lognormal_micro(m, median);
    if ((m->profiles & SIM_PROFILE_FAT_TAILS) && sim_rng_chance(&m->rng, SIM_TAIL_PROB)) {
        double f = pow(1.0 - sim_rng_unit(&m->rng), -1.0 / SIM_TAIL_ALPHA);
        micro = llround((double)micro * (f < SIM_TAIL_MAX ? f : SIM_TAIL_MAX));
    }
    if (e->inverse) {
        double usd = (double)micro / 1e6 * (double)price_ticks / (double)s->pow10;
        double contract = strcmp(s->base, "BTC") == 0 ? 100.0 : 10.0;
        double n = llround(usd / contract);
        micro = (int64_t)(n < 1 ? 1 : n) * 1000000;
    }
    return micro;
}

static void random_hex(sim_market *m, char *out, size_t n_hex) {
    static const char hex[] = "0123456789abcdef";
    out[0] = '0';
    out[1] = 'x';
    uint64_t bits = 0;
    for (size_t i = 0; i < n_hex; i++) {
        if (i % 16 == 0) bits = sim_rng_u64(&m->rng);
        out[2 + i] = hex[bits & 15];
        bits >>= 4;
    }
    out[2 + n_hex] = '\0';
}

static void draft_transfer(sim_market *m, const sim_symbol *s, sim_record *rec) {
    rec->kind = SIM_R_TRANSFER;
    rec->ts_ms = rec->sim_ms; /* chain time: no exchange clock */
    double lo = log(s->def->whale_min), hi = log(s->def->whale_max);
    rec->vol_micro = llround(exp(sim_rng_uniform(&m->rng, lo, hi)) * 1e6);
    rec->transfer_to_exch = sim_rng_chance(&m->rng, 0.5);
    random_hex(m, rec->from, 40);
    random_hex(m, rec->to, 40);
    random_hex(m, rec->tx_hash, 64);
    rec->commit_clock = false;
    rec->commit_id = false;
}

void sim_market_draft(sim_market *m, int64_t live_now_ms, sim_record *rec) {
    assert(m->committed && "sim_market_draft without a commit of the previous draft");
    m->committed = false;
    rec->ov_mask = 0;
    rec->garble = 0;
    rec->in_burst = false;
    rec->transfer_to_exch = false;
    rec->trade_id = 0;

    if (m->burst_left > 0) {
        /* The rest of a burst: same feed, same ms, same price level, next ids. */
        const sim_feed *f = &m->feeds[m->burst_feed];
        m->burst_left--;
        rec->kind = SIM_R_TRADE;
        rec->feed = m->burst_feed;
        rec->sym = f->sym;
        rec->exch = f->exch;
        rec->sim_ms = sim_market_now_ms(m);
        rec->ts_ms = m->burst_ts;
        rec->price_ticks = m->burst_price_ticks;
        rec->vol_micro = trade_size_micro(m, &m->sym[f->sym], &m->exch[f->exch],
                                          m->sym[f->sym].def->median_volume, rec->price_ticks);
        rec->buy = m->burst_buy;
        rec->trade_id = f->next_id;
        rec->in_burst = true;
        rec->commit_clock = true;
        rec->commit_ts = rec->ts_ms;
        rec->commit_id = true;
        rec->commit_next_id = rec->trade_id + 1;
        return;
    }

    if (live_now_ms >= 0) {
        int64_t t = live_now_ms * 1000000;
        if (t > m->now_ns) m->now_ns = t;
    } else {
        double gap = sim_rng_exp(&m->rng);
        if ((m->profiles & SIM_PROFILE_SPARSE) && sim_rng_chance(&m->rng, SIM_LULL_PROB))
            gap *= sim_rng_uniform(&m->rng, SIM_LULL_MIN, SIM_LULL_MAX);
        m->now_ns += llround(gap / m->gap_scale * 1e9 / m->rate);
    }
    uint32_t fi = pick_feed(m);
    sim_feed *f = &m->feeds[fi];
    sim_symbol *s = &m->sym[f->sym];
    const sim_exchange *e = &m->exch[f->exch];
    evolve(m, s);
    rec->feed = fi;
    rec->sym = f->sym;
    rec->exch = f->exch;
    rec->sim_ms = sim_market_now_ms(m);

    double u = sim_rng_unit(&m->rng);
    if (u < m->transfer_rate) {
        draft_transfer(m, s, rec);
        return;
    }
    int64_t ts = rec->sim_ms + e->skew_ms + sim_rng_range(&m->rng, 0, SIM_JITTER_MS);
    rec->ts_ms = ts > f->last_ts_ms ? ts : f->last_ts_ms;
    rec->buy = sim_rng_chance(&m->rng, 0.5);
    rec->commit_clock = true;
    rec->commit_ts = rec->ts_ms;
    double quote = s->true_price * (1.0 + e->price_offset);
    if (u < m->transfer_rate + m->liquidation_rate) {
        rec->kind = SIM_R_LIQUIDATION;
        quote *= 1.0 + sim_rng_uniform(&m->rng, -SIM_LIQ_SPREAD, SIM_LIQ_SPREAD);
        rec->price_ticks = to_ticks(s, quote);
        rec->vol_micro =
            trade_size_micro(m, s, e, s->def->median_volume * SIM_LIQ_SIZE, rec->price_ticks);
        rec->commit_id = false;
        return;
    }
    rec->kind = SIM_R_TRADE;
    double bounce = sim_rng_uniform(&m->rng, 0.0, SIM_BOUNCE);
    quote *= 1.0 + (rec->buy ? bounce : -bounce);
    bool insurance =
        (m->profiles & SIM_PROFILE_INSURANCE) && sim_rng_chance(&m->rng, SIM_INSURANCE_PROB);
    if (insurance) {
        double off = sim_rng_uniform(&m->rng, SIM_INSURANCE_MIN, SIM_INSURANCE_MAX);
        quote *= 1.0 + (rec->buy ? off : -off); /* against the taker, once */
    }
    rec->price_ticks = to_ticks(s, quote);
    rec->vol_micro = trade_size_micro(m, s, e, s->def->median_volume, rec->price_ticks);
    rec->trade_id = f->next_id;
    rec->commit_id = true;
    rec->commit_next_id = rec->trade_id + 1;
    if (!f->no_burst && !insurance && sim_rng_chance(&m->rng, SIM_BURST_PROB)) {
        rec->in_burst = true;
        m->burst_left =
            (m->profiles & SIM_PROFILE_BURSTS)
                ? (int)llround(exp(sim_rng_uniform(&m->rng, 0.0, log((double)SIM_BIG_BURST_MAX))))
                : (int)sim_rng_range(&m->rng, 1, 5);
        m->burst_feed = fi;
        m->burst_ts = rec->ts_ms;
        m->burst_price_ticks = rec->price_ticks;
        m->burst_buy = rec->buy;
    }
}

void sim_market_commit(sim_market *m, const sim_record *rec) {
    assert(!m->committed);
    m->committed = true;
    if (rec->kind == SIM_R_TRANSFER) return;
    sim_feed *f = &m->feeds[rec->feed];
    if (rec->commit_clock && rec->commit_ts > f->last_ts_ms) f->last_ts_ms = rec->commit_ts;
    if (rec->kind == SIM_R_TRADE && rec->commit_id) {
        assert(rec->commit_next_id >= f->next_id);
        f->next_id = rec->commit_next_id;
        f->n_trades++;
    }
}

void sim_market_shift_level(sim_market *m, uint16_t sym, double factor) {
    assert(sym < m->n_sym && factor > 0);
    m->sym[sym].true_price *= factor;
}

void sim_market_silence(sim_market *m, uint32_t feed, int64_t until_ns) {
    assert(feed < m->n_feeds);
    m->feeds[feed].silent_until_ns = until_ns;
}

/* ---- writing ------------------------------------------------------------ */

size_t sim_format_ticks(int64_t ticks, int decimals, char *out, size_t out_size) {
    char tmp[32];
    char *end = tmp + sizeof(tmp), *p = end;
    uint64_t v = ticks < 0 ? -(uint64_t)ticks : (uint64_t)ticks;
    for (int i = 0; i < decimals; i++) {
        *--p = (char)('0' + v % 10);
        v /= 10;
    }
    if (decimals > 0) *--p = '.';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (ticks < 0) *--p = '-';
    size_t n = (size_t)(end - p);
    assert(n < out_size);
    memcpy(out, p, n);
    out[n] = '\0';
    return n;
}

size_t sim_format_micro(int64_t micro, char *out, size_t out_size) {
    size_t n = sim_format_ticks(micro, 6, out, out_size);
    while (out[n - 1] == '0')
        n--;
    if (out[n - 1] == '.') n--;
    out[n] = '\0';
    return n;
}

static void put_quoted(hm_buf *b, const char *s, size_t n) {
    hm_buf_putc(b, '"');
    hm_buf_append(b, s, n);
    hm_buf_putc(b, '"');
}

static void put_number(hm_buf *b, const char *s, size_t n, bool as_string) {
    if (as_string)
        put_quoted(b, s, n);
    else
        hm_buf_append(b, s, n);
}

static void put_ts(const sim_market *m, hm_buf *b, int64_t ts, bool exch_iso) {
    bool iso = m->ts_format == SIM_TS_ISO || (m->ts_format == SIM_TS_MIXED && exch_iso);
    if (iso) {
        char t[25];
        hm_format_iso8601_ms(ts, t);
        put_quoted(b, t, 24);
    } else {
        hm_buf_i64(b, ts);
    }
}

/*
 * Write `,"key":` (no comma before the object's first field) unless the field
 * is omitted; returns whether the caller still has to write the normal value
 * (false when the field is omitted or an override value was written).
 * obj_start is the offset of the record's '{' in b.
 */
static bool put_field(hm_buf *b, size_t obj_start, const sim_record *rec, sim_rfield fld,
                      const char *key_lit, size_t key_len, bool numbers_as_strings) {
    const sim_override *ov = (rec->ov_mask & (1u << fld)) ? &rec->ov[fld] : NULL;
    if (ov && ov->how == SIM_OV_OMIT) return false;
    if (b->len == obj_start + 1) /* key_lit is `,"key":` */
        hm_buf_append(b, key_lit + 1, key_len - 1);
    else
        hm_buf_append(b, key_lit, key_len);
    if (!ov) return true;
    if (ov->how == SIM_OV_RAW)
        hm_buf_append(b, ov->text, ov->len);
    else
        put_number(b, ov->text, ov->len, numbers_as_strings);
    return false;
}

#define FIELD(fld, lit) put_field(b, obj_start, rec, (fld), (lit), sizeof(lit) - 1, nas)

static void format_transfer(const sim_market *m, const sim_record *rec, hm_buf *b) {
    const sim_symbol *s = &m->sym[rec->sym];
    const sim_exchange *e = &m->exch[rec->exch];
    char num[40];
    HM_BUF_PUT_LIT(b, "{\"type\":\"transfer\",\"timestamp\":");
    put_ts(m, b, rec->ts_ms, rec->transfer_to_exch && e->iso_ts);
    HM_BUF_PUT_LIT(b, ",\"asset\":");
    put_quoted(b, s->base, s->base_len);
    HM_BUF_PUT_LIT(b, ",\"amount\":");
    hm_buf_append(b, num, sim_format_micro(rec->vol_micro, num, sizeof(num)));
    HM_BUF_PUT_LIT(b, ",\"from\":");
    put_quoted(b, rec->from, 42);
    HM_BUF_PUT_LIT(b, ",\"to\":");
    put_quoted(b, rec->to, 42);
    HM_BUF_PUT_LIT(b, ",\"tx_hash\":");
    put_quoted(b, rec->tx_hash, 66);
    if (rec->transfer_to_exch) {
        HM_BUF_PUT_LIT(b, ",\"exchange\":");
        put_quoted(b, e->name, e->name_len);
    }
    HM_BUF_PUT_LIT(b, "}\n");
}

void sim_record_format(const sim_market *m, const sim_record *rec, hm_buf *b) {
    if (rec->kind == SIM_R_TRANSFER) {
        format_transfer(m, rec, b);
        return;
    }
    const sim_symbol *s = &m->sym[rec->sym];
    const sim_exchange *e = &m->exch[rec->exch];
    const bool nas = e->numbers_as_strings;
    char num[40];
    hm_buf_reserve(b, 256);
    const size_t obj_start = b->len;
    hm_buf_putc(b, '{');
    if (rec->kind == SIM_R_LIQUIDATION)
        HM_BUF_PUT_LIT(b, "\"type\":\"liquidation\"");
    else if (e->type_on_trades)
        HM_BUF_PUT_LIT(b, "\"type\":\"trade\"");
    if (FIELD(SIM_RF_TS, ",\"timestamp\":")) put_ts(m, b, rec->ts_ms, e->iso_ts);
    if (FIELD(SIM_RF_EXCHANGE, ",\"exchange\":")) put_quoted(b, e->name, e->name_len);
    if (FIELD(SIM_RF_SYMBOL, ",\"symbol\":")) put_quoted(b, s->name, s->name_len);
    if (FIELD(SIM_RF_PRICE, ",\"price\":"))
        put_number(b, num, sim_format_ticks(rec->price_ticks, s->decimals, num, sizeof(num)), nas);
    if (FIELD(SIM_RF_VOLUME, ",\"volume\":"))
        put_number(b, num, sim_format_micro(rec->vol_micro, num, sizeof(num)), nas);
    if (rec->kind == SIM_R_TRADE && FIELD(SIM_RF_TRADE_ID, ",\"trade_id\":"))
        hm_buf_u64(b, rec->trade_id);
    if (FIELD(SIM_RF_SIDE, ",\"side\":")) {
        if (rec->buy)
            HM_BUF_PUT_LIT(b, "\"buy\"");
        else
            HM_BUF_PUT_LIT(b, "\"sell\"");
    }
    HM_BUF_PUT_LIT(b, "}\n");
}
