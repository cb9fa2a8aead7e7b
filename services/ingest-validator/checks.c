/*
 * checks.c: the stateless half of the ingest-validator's judging (checks.h):
 * which fields of a record are missing, invalid or out of range, by record
 * kind, and the arithmetic the stateful checks share.
 *
 * Hot path: runs once per record right after hm_tick_decode(); no allocation,
 * no state, no I/O. Codes are collected as bits so that the issue list comes
 * out in code-table order, each code once, whatever order the checks ran in.
 */
#include "checks.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/common.h"

iv_hold_masks iv_hold_masks_of_table(void) {
    return (iv_hold_masks){.price = hm_qcodes_holding(HM_QHOLD_PRICE),
                           .volume = hm_qcodes_holding(HM_QHOLD_VOLUME),
                           .seq = hm_qcodes_holding(HM_QHOLD_SEQ)};
}

/* ---- exchanges ------------------------------------------------------------------------- */

void iv_exchset_init(iv_exchset *x, const hm_str_list *names) {
    memset(x, 0, sizeof(*x));
    size_t n = names ? names->n : 0;
    x->names = hm_xcalloc(n ? n : 1, sizeof(*x->names));
    x->lens = hm_xcalloc(n ? n : 1, sizeof(*x->lens));
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(names->items[i]);
        if (len == 0 || len >= IV_EXCH_MAX) continue; /* config.c refuses these */
        memcpy(x->names[x->n], names->items[i], len + 1);
        x->lens[x->n] = (uint8_t)len;
        x->n++;
    }
}

void iv_exchset_free(iv_exchset *x) {
    free(x->names);
    free(x->lens);
    memset(x, 0, sizeof(*x));
}

bool iv_exchset_has(const iv_exchset *x, const char *s, size_t n) {
    for (size_t i = 0; i < x->n; i++)
        if (x->lens[i] == n && memcmp(x->names[i], s, n) == 0) return true;
    return false;
}

/* ---- instruments ------------------------------------------------------------------------- */

static int instrument_error(char *msg, size_t msg_len, size_t i, const char *entry,
                            const char *why) {
    snprintf(msg, msg_len, "checks.instruments[%zu]: '%s': %s", i, entry, why);
    return -EINVAL;
}

int iv_instruments_parse(const hm_str_list *src, iv_instruments *out, char *msg, size_t msg_len) {
    memset(out, 0, sizeof(*out));
    if (src->n > IV_MAX_INSTRUMENTS)
        return instrument_error(msg, msg_len, IV_MAX_INSTRUMENTS, "...", "at most 64 entries");
    for (size_t i = 0; i < src->n; i++) {
        const char *entry = src->items[i];
        iv_instrument *in = &out->v[out->n];
        *in = (iv_instrument){.contract = 1, .ids = IV_IDS_SEQUENTIAL};
        bool contract_given = false;
        char buf[256];
        if (strlen(entry) >= sizeof(buf))
            return instrument_error(msg, msg_len, i, entry, "longer than 255 bytes");
        memcpy(buf, entry, strlen(entry) + 1);
        char *save = NULL;
        char *exch = strtok_r(buf, " \t", &save);
        char *sym = exch ? strtok_r(NULL, " \t", &save) : NULL;
        if (!exch || !sym)
            return instrument_error(msg, msg_len, i, entry,
                                    "want 'EXCHANGE SYMBOL|* [inverse] [contract=N] "
                                    "[ids=sequential|unordered]'");
        size_t el = strlen(exch);
        if (el >= IV_EXCH_MAX)
            return instrument_error(msg, msg_len, i, entry, "exchange name too long");
        for (size_t c = 0; c < el; c++)
            in->exch[c] = (char)tolower((unsigned char)exch[c]);
        if (strcmp(sym, "*") != 0) {
            if (strlen(sym) >= IV_INSTRUMENT_SYM_MAX)
                return instrument_error(msg, msg_len, i, entry, "symbol too long");
            strcpy(in->symbol, sym);
        }
        for (char *w; (w = strtok_r(NULL, " \t", &save));) {
            if (!strcmp(w, "inverse")) {
                in->inverse = true;
            } else if (!strncmp(w, "contract=", 9)) {
                char *end;
                errno = 0;
                in->contract = strtod(w + 9, &end);
                if (errno || *end || end == w + 9 || !(in->contract > 0) || !isfinite(in->contract))
                    return instrument_error(msg, msg_len, i, entry, "contract= wants a number > 0");
                contract_given = true;
            } else if (!strcmp(w, "ids=sequential")) {
                in->ids = IV_IDS_SEQUENTIAL;
            } else if (!strcmp(w, "ids=unordered")) {
                in->ids = IV_IDS_UNORDERED;
            } else {
                return instrument_error(
                    msg, msg_len, i, entry,
                    "unknown word (inverse, contract=N, ids=sequential|unordered)");
            }
        }
        if (in->inverse && !contract_given)
            return instrument_error(
                msg, msg_len, i, entry,
                "an inverse contract needs contract=N (quote units a contract)");
        for (size_t k = 0; k < out->n; k++)
            if (!strcmp(out->v[k].exch, in->exch) && !strcmp(out->v[k].symbol, in->symbol))
                return instrument_error(msg, msg_len, i, entry, "listed twice");
        out->n++;
    }
    return 0;
}

static bool ends_with(const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

const iv_instrument *iv_instrument_of(const iv_instruments *t, const char *exch, size_t exch_len,
                                      const char *sym, size_t sym_len, iv_instrument *scratch) {
    const iv_instrument *any = NULL;
    for (size_t i = 0; i < t->n; i++) {
        const iv_instrument *in = &t->v[i];
        if (strlen(in->exch) != exch_len || memcmp(in->exch, exch, exch_len) != 0) continue;
        if (in->symbol[0] == '\0') {
            any = in;
        } else if (strlen(in->symbol) == sym_len && memcmp(in->symbol, sym, sym_len) == 0) {
            return in;
        }
    }
    if (any) return any;
    if (!ends_with(exch, exch_len, "coinm")) return NULL;
    bool btc = sym_len > 4 && memcmp(sym, "BTC/", 4) == 0;
    *scratch =
        (iv_instrument){.inverse = true, .contract = btc ? 100 : 10, .ids = IV_IDS_SEQUENTIAL};
    return scratch;
}

double iv_notional(const iv_instrument *in, double price, double volume) {
    if (!in) return price * volume;
    return in->inverse ? volume * in->contract : price * volume * in->contract;
}

/* ---- field checks ---------------------------------------------------------------------- */

static inline bool sym_part_ok(const char *s, size_t n) {
    if (n == 0 || n > 20) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return false;
    }
    return true;
}

bool iv_symbol_well_formed(const char *s, size_t n) {
    const char *slash = n ? memchr(s, '/', n) : NULL;
    if (!slash) return false;
    size_t base = (size_t)(slash - s);
    return sym_part_ok(s, base) && sym_part_ok(slash + 1, n - base - 1);
}

/* ABSENT -> missing, OK -> nothing, anything else -> invalid (non-finite as given). */
static inline void field_code(hm_qcodeset *codes, hm_fstate st, hm_qcode missing, hm_qcode invalid,
                              hm_qcode nonfinite) {
    if (HM_LIKELY(st == HM_F_OK)) return;
    if (st == HM_F_ABSENT)
        *codes |= HM_QBIT(missing);
    else if (st == HM_F_NONFINITE)
        *codes |= HM_QBIT(nonfinite);
    else
        *codes |= HM_QBIT(invalid);
}

static void check_timestamp(const hm_tick *t, iv_fields *f) {
    hm_fstate st = t->st[HM_FIELD_TIMESTAMP];
    field_code(&f->codes, st, HM_Q_MISSING_TIMESTAMP, HM_Q_INVALID_TIMESTAMP,
               HM_Q_INVALID_TIMESTAMP);
    /* Before 1970 is no market's time; a negative value is a broken clock or field. */
    if (st == HM_F_OK && t->ts_ms < 0) f->codes |= HM_QBIT(HM_Q_INVALID_TIMESTAMP);
    f->ts_ok = st == HM_F_OK && t->ts_ms >= 0;
}

static void check_symbol(const hm_tick *t, iv_fields *f, bool required) {
    hm_fstate st = t->st[HM_FIELD_SYMBOL];
    if (st == HM_F_ABSENT && !required) return;
    field_code(&f->codes, st, HM_Q_MISSING_SYMBOL, HM_Q_INVALID_SYMBOL, HM_Q_INVALID_SYMBOL);
    if (st != HM_F_OK) return;
    f->symbol_ok = iv_symbol_well_formed(t->symbol.p, t->symbol.len);
    if (!f->symbol_ok) f->codes |= HM_QBIT(HM_Q_INVALID_SYMBOL_FORMAT);
}

static void check_exchange(const iv_exchset *xs, const hm_tick *t, iv_fields *f, bool required) {
    hm_fstate st = t->st[HM_FIELD_EXCHANGE];
    if (st == HM_F_ABSENT && !required) return;
    field_code(&f->codes, st, HM_Q_MISSING_EXCHANGE, HM_Q_INVALID_EXCHANGE, HM_Q_INVALID_EXCHANGE);
    if (st != HM_F_OK) return;
    f->exchange_ok = true;
    f->exch_len = (uint8_t)hm_tick_exchange_lower(t, f->exch, sizeof(f->exch));
    /* A name longer than the buffer cannot be a configured one. */
    f->exchange_known = t->exchange.len < IV_EXCH_MAX && iv_exchset_has(xs, f->exch, f->exch_len);
    if (!f->exchange_known) f->codes |= HM_QBIT(HM_Q_UNKNOWN_EXCHANGE);
}

static void check_trade_id(const hm_tick *t, iv_fields *f) {
    hm_fstate st = t->st[HM_FIELD_TRADE_ID];
    if (st == HM_F_ABSENT) return; /* optional */
    if (st != HM_F_OK) {
        f->codes |= HM_QBIT(HM_Q_INVALID_TRADE_ID);
        return;
    }
    f->has_id = true;
    f->id_numeric = t->trade_id_numeric;
    /* The fixed hash, not the maps' keyed one: the id goes into the changelog and is compared
     * after a restart (checks.h). */
    f->id = t->trade_id_numeric ? t->trade_id_num
                                : iv_hash_bytes(0x7472616465ULL, t->trade_id.p, t->trade_id.len);
}

static void check_trade_fields(const iv_checks *ck, const iv_exchset *xs, const hm_tick *t,
                               iv_fields *f) {
    check_timestamp(t, f);
    check_symbol(t, f, true);
    check_exchange(xs, t, f, true);

    hm_fstate pst = t->st[HM_FIELD_PRICE];
    field_code(&f->codes, pst, HM_Q_MISSING_PRICE, HM_Q_INVALID_PRICE, HM_Q_NON_FINITE_PRICE);
    if (pst == HM_F_OK) {
        if (t->price < 0)
            f->codes |= HM_QBIT(HM_Q_INVALID_PRICE_NEGATIVE);
        else if (t->price == 0)
            f->codes |= HM_QBIT(HM_Q_ZERO_PRICE);
        else
            f->price_ok = true;
        if (hm_decimal_places(t->price_text.p, t->price_text.len) > ck->max_price_decimals)
            f->codes |= HM_QBIT(HM_Q_EXCESSIVE_PRECISION);
    }

    hm_fstate vst = t->st[HM_FIELD_VOLUME];
    field_code(&f->codes, vst, HM_Q_MISSING_VOLUME, HM_Q_INVALID_VOLUME, HM_Q_NON_FINITE_VOLUME);
    if (vst == HM_F_OK) {
        if (t->volume < 0)
            f->codes |= HM_QBIT(HM_Q_INVALID_VOLUME_NEGATIVE);
        else if (t->volume == 0)
            f->codes |= HM_QBIT(HM_Q_ZERO_VOLUME);
        else
            f->volume_ok = true;
    }

    check_trade_id(t, f);

    hm_fstate sst = t->st[HM_FIELD_SIDE];
    if (sst == HM_F_ABSENT) {
        /* A liquidation without a side cannot say which positions were closed. */
        if (t->kind == HM_KIND_LIQUIDATION) f->codes |= HM_QBIT(HM_Q_MISSING_SIDE);
    } else if (sst != HM_F_OK) {
        f->codes |= HM_QBIT(HM_Q_INVALID_SIDE);
    }
}

/*
 * Transfers: timestamp, asset, amount and both addresses are required; the
 * exchange (the receiving one) and symbol are optional but checked when given.
 * Price, volume, trade id and side mean nothing for a transfer and are ignored.
 */
static void check_transfer_fields(const iv_exchset *xs, const hm_tick *t, iv_fields *f) {
    check_timestamp(t, f);
    check_symbol(t, f, false);
    check_exchange(xs, t, f, false);
    if (t->st[HM_FIELD_ASSET] != HM_F_OK) f->codes |= HM_QBIT(HM_Q_MISSING_ASSET);
    hm_fstate ast = t->st[HM_FIELD_AMOUNT];
    if (ast == HM_F_ABSENT) {
        f->codes |= HM_QBIT(HM_Q_MISSING_AMOUNT);
    } else if (ast != HM_F_OK || !(t->volume > 0)) {
        /* The decoder puts the amount in volume when "volume" is absent; a transfer
         * that carries both is judged on the volume. */
        f->codes |= HM_QBIT(HM_Q_INVALID_AMOUNT);
    } else {
        f->volume_ok = true;
    }
    if (t->st[HM_FIELD_FROM] != HM_F_OK || t->st[HM_FIELD_TO] != HM_F_OK)
        f->codes |= HM_QBIT(HM_Q_MISSING_ADDRESS);
}

void iv_check_fields(const iv_checks *ck, const iv_exchset *xs, const hm_tick *t, iv_fields *f) {
    memset(f, 0, offsetof(iv_fields, exch));
    f->exch[0] = '\0';
    hm_fstate tst = t->st[HM_FIELD_TYPE];
    if (tst != HM_F_ABSENT && tst != HM_F_OK) f->codes |= HM_QBIT(HM_Q_INVALID_TYPE);
    if (t->kind == HM_KIND_TRANSFER)
        check_transfer_fields(xs, t, f);
    else
        check_trade_fields(ck, xs, t, f);
}

/* ---- arithmetic ------------------------------------------------------------------------ */

double iv_score(const double weights[HM_QCODE_COUNT], hm_qcodeset codes) {
    if (codes & HM_QBIT(HM_Q_PARSE_ERROR)) return 0.0;
    double s = 1.0;
    /* Summed in code-table order so the same codes always give the same bits. */
    for (hm_qcodeset m = codes; m; m &= m - 1)
        s -= weights[__builtin_ctzll(m)];
    if (!(s > 0)) return 0.0;
    return s > 1 ? 1.0 : s;
}

double iv_median(double *v, size_t n) {
    assert(n >= 1);
    /* Insertion sort: n is the number of exchanges of one symbol, a handful. */
    for (size_t i = 1; i < n; i++) {
        double x = v[i];
        size_t j = i;
        while (j > 0 && v[j - 1] > x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Eight bytes at a time, each folded in with a multiply by 2^64 / golden ratio and an
 * xor-shift; the length goes into the seed so "ab"+"c" and "a"+"bc" differ when chained. */
uint64_t iv_hash_bytes(uint64_t seed, const char *p, size_t n) {
    const uint64_t k = 0x9E3779B97F4A7C15ULL;
    uint64_t h = (seed ^ ((uint64_t)n * 0xD6E8FEB86659FD93ULL)) * k;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * k;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = (h ^ w) * k;
        h ^= h >> 31;
    }
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 32;
    return h;
}

void iv_volstat_add(iv_volstat *v, double volume, double alpha) {
    assert(volume > 0);
    double x = log(volume);
    if (v->n == 0) {
        v->mean = x;
        v->var = 0;
        v->w = 1.0;
    } else {
        double d = x - v->mean;
        v->mean += alpha * d;
        v->var = (1.0 - alpha) * (v->var + alpha * d * d);
        v->w *= 1.0 - alpha;
    }
    v->n++;
}

double iv_volstat_sd(const iv_volstat *v) {
    /* The variance started at 0 and still carries weight w of that start; dividing
     * by (1 - w) removes the bias (as bias-corrected moving averages do), so the
     * first volume checks after warm-up are not judged against a too-small spread. */
    if (v->n < 2 || !(v->w < 1.0)) return 0.0;
    double var = v->var / (1.0 - v->w);
    return var > 0 ? sqrt(var) : 0.0;
}
