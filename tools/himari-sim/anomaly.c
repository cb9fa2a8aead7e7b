/*
 * anomaly.c: himari-sim's anomaly injector (see anomaly.h for the rules).
 *
 * Sits between the market's draft and commit. Pure logic over its own state
 * and the market's; draws from its own random stream so that the clean
 * market's choices do not depend on whether anomalies are on. Must never
 * label a record it did not damage, nor damage one it does not label.
 */
#include "anomaly.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[SIM_AN_COUNT_] = {"",
#define NAME_(id, name, weight, help) name,
                                                      SIM_ANOMALY_KINDS(NAME_)
#undef NAME_
};

static const char *const kind_help[SIM_AN_COUNT_] = {"",
#define HELP_(id, name, weight, help) help,
                                                     SIM_ANOMALY_KINDS(HELP_)
#undef HELP_
};

static const double kind_weight[SIM_AN_COUNT_] = {0.0,
#define WEIGHT_(id, name, weight, help) weight,
                                                  SIM_ANOMALY_KINDS(WEIGHT_)
#undef WEIGHT_
};

const char *sim_anomaly_name(sim_anomaly_kind k) {
    assert(k < SIM_AN_COUNT_);
    return kind_names[k];
}

const char *sim_anomaly_help(sim_anomaly_kind k) {
    assert(k < SIM_AN_COUNT_);
    return kind_help[k];
}

double sim_anomaly_default_weight(sim_anomaly_kind k) {
    assert(k < SIM_AN_COUNT_);
    return kind_weight[k];
}

int sim_anomaly_parse(const char *name, size_t len, sim_anomaly_kind *out) {
    for (int k = 1; k < SIM_AN_COUNT_; k++) {
        if (strlen(kind_names[k]) == len && memcmp(kind_names[k], name, len) == 0) {
            *out = (sim_anomaly_kind)k;
            return 0;
        }
    }
    return -EINVAL;
}

int sim_anomaly_init(sim_anomaly *a, const sim_anomaly_opts *o, size_t n_feeds, hm_err *err) {
    memset(a, 0, sizeof(*a));
    if (!(o->rate >= 0 && o->rate <= 1))
        return hm_err_set(err, -EINVAL, "--anomaly-rate: must be in [0, 1], got %g", o->rate);
    double w[SIM_AN_COUNT_];
    double total = 0;
    for (int k = 1; k < SIM_AN_COUNT_; k++) {
        if (!(o->weights[k] >= 0) || !isfinite(o->weights[k]))
            return hm_err_set(err, -EINVAL, "anomaly weight of %s must be >= 0, got %g",
                              kind_names[k], o->weights[k]);
        total += o->weights[k];
    }
    const double *src = total > 0 ? o->weights : kind_weight;
    total = 0;
    for (int k = 1; k < SIM_AN_COUNT_; k++) {
        w[k] = src[k];
        total += w[k];
    }
    assert(total > 0);
    double cum = 0;
    for (int k = 1; k < SIM_AN_COUNT_; k++) {
        cum += w[k] / total;
        a->cum[k] = cum;
    }
    /* Leave the last *weighted* kind at exactly 1 so a draw of 0.9999... lands. */
    for (int k = SIM_AN_COUNT_ - 1; k >= 1; k--) {
        if (w[k] > 0) {
            a->cum[k] = 1.0;
            break;
        }
    }
    sim_rng_seed(&a->rng, o->seed, 2);
    a->rate = o->rate;
    a->n_feeds = n_feeds;
    a->feeds = hm_xcalloc(n_feeds, sizeof(*a->feeds));
    return 0;
}

void sim_anomaly_free(sim_anomaly *a) {
    free(a->feeds);
    a->feeds = NULL;
}

/* ---- field replacements ---------------------------------------------------- */

static void set_ov(sim_record *rec, sim_rfield f, sim_ovkind how, const char *text, size_t n) {
    assert(n < SIM_OV_TEXT_MAX);
    rec->ov_mask |= 1u << f;
    rec->ov[f].how = (uint8_t)how;
    rec->ov[f].len = (uint8_t)n;
    memcpy(rec->ov[f].text, text, n);
}

static void set_raw(sim_record *rec, sim_rfield f, const char *text) {
    set_ov(rec, f, SIM_OV_RAW, text, strlen(text));
}

static void omit(sim_record *rec, sim_rfield f) {
    set_ov(rec, f, SIM_OV_OMIT, "", 0);
}

static int64_t scale_ticks(int64_t ticks, double factor) {
    int64_t t = llround((double)ticks * factor);
    return t < 1 ? 1 : t;
}

/* The record no longer says which feed it belongs to: it must not use up an id. */
static void unattributable(sim_record *rec) {
    rec->commit_id = false;
}

static void inject_missing_field(sim_anomaly *a, sim_record *rec) {
    static const sim_rfield fields[] = {SIM_RF_TS, SIM_RF_SYMBOL, SIM_RF_EXCHANGE, SIM_RF_PRICE,
                                        SIM_RF_VOLUME};
    sim_rfield f = fields[sim_rng_range(&a->rng, 0, HM_ARRAY_LEN(fields) - 1)];
    omit(rec, f);
    if (f == SIM_RF_TS || f == SIM_RF_SYMBOL || f == SIM_RF_EXCHANGE) unattributable(rec);
}

static void inject_invalid_symbol(sim_anomaly *a, const sim_market *m, sim_record *rec) {
    const sim_symbol *s = &m->sym[rec->sym];
    char text[SIM_OV_TEXT_MAX];
    size_t n = 0;
    text[n++] = '"';
    switch (sim_rng_range(&a->rng, 0, 2)) {
        case 0: /* "BTCUSDT": no separator */
            for (size_t i = 0; i < s->name_len; i++)
                if (s->name[i] != '/') text[n++] = s->name[i];
            break;
        case 1: /* "btc/usdt": lower case */
            for (size_t i = 0; i < s->name_len; i++) {
                char c = s->name[i];
                text[n++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
            }
            break;
        default: /* "BTC/": no quote asset */
            memcpy(text + n, s->base, s->base_len);
            n += s->base_len;
            text[n++] = '/';
            break;
    }
    text[n++] = '"';
    set_ov(rec, SIM_RF_SYMBOL, SIM_OV_RAW, text, n);
    unattributable(rec);
}

static void inject_invalid_utf8(const sim_market *m, sim_record *rec) {
    const sim_symbol *s = &m->sym[rec->sym];
    char text[SIM_OV_TEXT_MAX];
    size_t n = 0;
    text[n++] = '"';
    memcpy(text + n, s->base, s->base_len);
    n += s->base_len;
    /* 0xC3 opens a two-byte sequence; '(' (0x28) is no continuation byte. */
    text[n++] = (char)0xC3;
    text[n++] = (char)0x28;
    memcpy(text + n, s->name + s->base_len + 1, s->name_len - s->base_len - 1u);
    n += s->name_len - s->base_len - 1u;
    text[n++] = '"';
    set_ov(rec, SIM_RF_SYMBOL, SIM_OV_RAW, text, n);
    unattributable(rec);
}

static void inject_excessive_precision(sim_anomaly *a, const sim_market *m, sim_record *rec) {
    const sim_symbol *s = &m->sym[rec->sym];
    char text[SIM_OV_TEXT_MAX];
    size_t n = sim_format_ticks(rec->price_ticks, s->decimals, text, sizeof(text));
    if (s->decimals == 0) text[n++] = '.';
    int want = (int)sim_rng_range(&a->rng, 10, 12);
    for (int d = s->decimals; d < want - 1; d++)
        text[n++] = (char)('0' + sim_rng_range(&a->rng, 0, 9));
    text[n++] = (char)('0' + sim_rng_range(&a->rng, 1, 9)); /* nonzero last digit */
    set_ov(rec, SIM_RF_PRICE, SIM_OV_NUMTEXT, text, n);
}

/* ---- the decision ------------------------------------------------------------ */

static bool kind_fits(const sim_anomaly *a, const sim_market *m, const sim_record *rec,
                      sim_anomaly_kind k) {
    switch (k) {
        case SIM_AN_CROSS_EXCHANGE:
            return m->n_exch >= 2; /* "away from the others" needs others */
        case SIM_AN_LEVEL_SHIFT:
            for (size_t e = 0; e < m->n_exch; e++) {
                uint32_t fi = (uint32_t)(rec->sym * m->n_exch + e);
                if (a->feeds[fi].pending || a->feeds[fi].cooldown || sim_market_feed_silent(m, fi))
                    return false;
            }
            return true;
        case SIM_AN_FEED_SILENCE:
            return a->silence_ends_ns <= m->now_ns;
        default:
            return true;
    }
}

static sim_anomaly_kind draw_kind(sim_anomaly *a) {
    double u = sim_rng_unit(&a->rng);
    for (int k = 1; k < SIM_AN_COUNT_; k++)
        if (u < a->cum[k]) return (sim_anomaly_kind)k;
    return (sim_anomaly_kind)(SIM_AN_COUNT_ - 1);
}

static sim_anomaly_kind written(sim_anomaly *a, sim_anomaly_kind k) {
    a->labelled++;
    a->by_kind[k]++;
    return k;
}

/* Damage rec with kind k. Returns the label for this record (feed_silence
 * labels a later one). */
static sim_anomaly_kind inject(sim_anomaly *a, sim_market *m, sim_record *rec, sim_anomaly_kind k) {
    sim_anomaly_feed *af = &a->feeds[rec->feed];
    const sim_feed *f = &m->feeds[rec->feed];
    const int64_t exch_now = rec->sim_ms + m->exch[rec->exch].skew_ms;
    static const char *const wrong_values[] = {"true", "false", "{}", "[]"};
    static const char *const non_finite[] = {"NaN", "Infinity", "\"NaN\""};
    af->cooldown = SIM_ANOMALY_GAP;
    a->promised++;
    switch (k) {
        case SIM_AN_PRICE_SPIKE:
            rec->price_ticks =
                scale_ticks(rec->price_ticks,
                            1.0 + sim_rng_sign(&a->rng) * sim_rng_uniform(&a->rng, 0.08, 0.30));
            break;
        case SIM_AN_VOLUME_SPIKE:
            rec->vol_micro = llround((double)rec->vol_micro * sim_rng_uniform(&a->rng, 50, 500));
            break;
        case SIM_AN_NEGATIVE_PRICE:
            rec->price_ticks = -rec->price_ticks;
            break;
        case SIM_AN_ZERO_PRICE:
            rec->price_ticks = 0;
            break;
        case SIM_AN_NEGATIVE_VOLUME:
            rec->vol_micro = -rec->vol_micro;
            break;
        case SIM_AN_ZERO_VOLUME:
            rec->vol_micro = 0;
            break;
        case SIM_AN_MISSING_FIELD:
            inject_missing_field(a, rec);
            break;
        case SIM_AN_WRONG_TYPE:
            set_raw(rec, sim_rng_chance(&a->rng, 0.5) ? SIM_RF_PRICE : SIM_RF_VOLUME,
                    wrong_values[sim_rng_range(&a->rng, 0, 3)]);
            break;
        case SIM_AN_NON_FINITE:
            set_raw(rec, SIM_RF_PRICE, non_finite[sim_rng_range(&a->rng, 0, 2)]);
            break;
        case SIM_AN_MALFORMED_JSON:
            rec->garble = (uint8_t)sim_rng_range(&a->rng, 1, 3);
            rec->garble_at = sim_rng_unit(&a->rng);
            unattributable(rec);
            break;
        case SIM_AN_INVALID_UTF8:
            inject_invalid_utf8(m, rec);
            break;
        case SIM_AN_OUT_OF_ORDER:
            rec->ts_ms = f->last_ts_ms - sim_rng_range(&a->rng, 2000, 10000);
            rec->commit_clock = false;
            break;
        case SIM_AN_DUPLICATE_TRADE_ID:
            assert(f->n_trades > 0);
            rec->trade_id = f->next_id - 1;
            rec->commit_id = false;
            break;
        case SIM_AN_TRADE_ID_GAP:
            rec->trade_id = f->next_id - 1 + (uint64_t)sim_rng_range(&a->rng, 10, 1000);
            rec->commit_next_id = rec->trade_id + 1;
            break;
        case SIM_AN_STALE:
            rec->ts_ms = exch_now - sim_rng_range(&a->rng, 60000, 600000);
            rec->commit_clock = false;
            break;
        case SIM_AN_DELAYED:
            rec->ts_ms = exch_now - sim_rng_range(&a->rng, 12000, 25000);
            rec->commit_clock = false;
            break;
        case SIM_AN_FUTURE:
            rec->ts_ms = exch_now + sim_rng_range(&a->rng, 10000, 120000);
            rec->commit_clock = false;
            break;
        case SIM_AN_EXCESSIVE_PRECISION:
            inject_excessive_precision(a, m, rec);
            break;
        case SIM_AN_UNKNOWN_EXCHANGE:
            set_raw(rec, SIM_RF_EXCHANGE, "\"fakex\"");
            unattributable(rec);
            break;
        case SIM_AN_INVALID_SYMBOL:
            inject_invalid_symbol(a, m, rec);
            break;
        case SIM_AN_INVALID_SIDE:
            set_raw(rec, SIM_RF_SIDE, "\"long\"");
            break;
        case SIM_AN_CROSS_EXCHANGE:
            rec->price_ticks =
                scale_ticks(rec->price_ticks,
                            1.0 + sim_rng_sign(&a->rng) * sim_rng_uniform(&a->rng, 0.02, 0.04));
            break;
        case SIM_AN_LEVEL_SHIFT: {
            double factor = 1.0 + sim_rng_sign(&a->rng) * sim_rng_uniform(&a->rng, 0.06, 0.12);
            sim_market_shift_level(m, rec->sym, factor);
            rec->price_ticks = scale_ticks(rec->price_ticks, factor);
            af->cooldown = SIM_ANOMALY_LEVEL_GAP;
            /* Every other exchange's next record of the symbol is its first
             * at the new level: label it then, and hold bursts until then. */
            for (size_t e = 0; e < m->n_exch; e++) {
                uint32_t fi = (uint32_t)(rec->sym * m->n_exch + e);
                if (fi == rec->feed) continue;
                a->feeds[fi].pending = SIM_AN_LEVEL_SHIFT;
                a->feeds[fi].pending_cooldown = SIM_ANOMALY_LEVEL_GAP;
                m->feeds[fi].no_burst = true;
                a->promised++;
            }
            break;
        }
        case SIM_AN_FEED_SILENCE: {
            /* This record is clean; the feed's first one after the silence is
             * labelled. */
            int64_t until = m->now_ns + sim_rng_range(&a->rng, 90000, 300000) * 1000000;
            sim_market_silence(m, rec->feed, until);
            a->silence_ends_ns = until;
            af->cooldown = 0;
            af->pending = SIM_AN_FEED_SILENCE;
            af->pending_cooldown = SIM_ANOMALY_GAP;
            m->feeds[rec->feed].no_burst = true;
            return SIM_AN_NONE;
        }
        case SIM_AN_NONE:
        case SIM_AN_COUNT_:
            hm_panic("anomaly.c: inject(%d)", (int)k);
    }
    return written(a, k);
}

sim_anomaly_kind sim_anomaly_apply(sim_anomaly *a, sim_market *m, sim_record *rec) {
    if (a->rate <= 0) return SIM_AN_NONE;
    a->records++;
    if (rec->kind == SIM_R_TRANSFER) return SIM_AN_NONE;
    assert(rec->feed < a->n_feeds);
    sim_anomaly_feed *af = &a->feeds[rec->feed];
    if (af->pending) {
        /* First record of this feed after a level shift or a silence: it is
         * the one that shows the anomaly, and is left otherwise clean. */
        sim_anomaly_kind k = (sim_anomaly_kind)af->pending;
        af->pending = SIM_AN_NONE;
        af->cooldown = af->pending_cooldown;
        m->feeds[rec->feed].no_burst = false;
        return written(a, k);
    }
    if (af->cooldown > 0) {
        af->cooldown--;
        return SIM_AN_NONE;
    }
    const sim_feed *f = &m->feeds[rec->feed];
    if (rec->kind != SIM_R_TRADE || rec->in_burst || f->n_trades < SIM_ANOMALY_MIN_TRADES ||
        rec->ts_ms <= f->last_ts_ms)
        return SIM_AN_NONE;
    /* Labels lag (or lead) the wanted share by `deficit`: lean into it. */
    double deficit = a->rate * (double)a->records - (double)a->promised;
    double p = a->rate * (1.0 + deficit);
    if (p <= 0 || !sim_rng_chance(&a->rng, p)) return SIM_AN_NONE;
    for (int tries = 0; tries < 8; tries++) {
        sim_anomaly_kind k = draw_kind(a);
        if (kind_fits(a, m, rec, k)) return inject(a, m, rec, k);
    }
    return SIM_AN_NONE;
}

void sim_anomaly_garble(const sim_record *rec, char *line, size_t *len) {
    size_t n = *len;
    assert(n >= 8 && line[0] == '{' && line[n - 1] == '}');
    switch (rec->garble) {
        case 1: { /* cut short: an object without its end */
            size_t keep = 1 + (size_t)(rec->garble_at * (double)(n - 2));
            assert(keep >= 1 && keep <= n - 1);
            *len = keep;
            break;
        }
        case 2: { /* a separator gone wrong: the first ',' becomes ';' */
            char *comma = memchr(line, ',', n);
            assert(comma);
            *comma = ';';
            break;
        }
        default: /* the opening brace lost */
            memmove(line, line + 1, n - 1);
            *len = n - 1;
            break;
    }
}

void sim_anomaly_label(const sim_market *m, const sim_record *rec, sim_anomaly_kind kind,
                       uint64_t seq, hm_buf *out) {
    const sim_exchange *e = &m->exch[rec->exch];
    const sim_symbol *s = &m->sym[rec->sym];
    hm_buf_append(out, "{\"seq\":", 7);
    hm_buf_u64(out, seq);
    hm_buf_append(out, ",\"kind\":\"", 9);
    hm_buf_puts(out, kind_names[kind]);
    hm_buf_append(out, "\",\"exchange\":", 13);
    hm_json_str(out, e->name, e->name_len);
    hm_buf_append(out, ",\"symbol\":", 10);
    hm_json_str(out, s->name, s->name_len);
    hm_buf_append(out, "}\n", 2);
}
