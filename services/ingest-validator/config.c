/*
 * config.c: the ingest-validator's configuration schema (config.h) and its
 * loading: the common sections, "validator.*" (Kafka wiring, commit cadence,
 * freshness clock) and "checks.*" (every threshold of the checks, and
 * "checks.weights.<CODE>" generated from the code table, HM_QCODES in himari/quality.h).
 *
 * Runs at start-up and on ReloadConfig, never per record. Loading never
 * half-applies: everything is read into a scratch iv_config, validated across
 * fields, and only then moved into the caller's struct.
 */
#include "config.h"

#include "checks.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* Offsets of the "validator.*" keys: the section starts at input_topic so its
 * dst differs from the service section's (which starts at the struct's first
 * byte) and ends before checks, which has a section of its own. */
#define IV_VALIDATOR_BASE offsetof(iv_config, input_topic)
#define VC(field)         (offsetof(iv_config, field) - IV_VALIDATOR_BASE)
#define CC(field)         offsetof(iv_checks, field)

#define RL HM_CFG_RELOADABLE
/* Fractions are in (0, 10]; the loader's bounds are inclusive, so the lower one
 * is the smallest fraction anyone could mean. */
#define FRAC_MIN 1e-9
#define DAY_MS   86400000.0

static const hm_cfg_key k_validator_keys[] = {
    {"validator.input_topic", HM_CFG_STR, VC(input_topic), "raw_market_data", 0, 0, -1,
     "topic of raw ticks to judge"},
    {"validator.output_topic", HM_CFG_STR, VC(output_topic), "quality_scores", 0, 0, -1,
     "topic of quality records (one per input record, keyed by symbol)"},
    {"validator.dlq_topic", HM_CFG_STR, VC(dlq_topic), "raw_market_data.dlq", 0, 0, -1,
     "topic of unparseable input records, kept whole, error in a header"},
    {"validator.events_topic", HM_CFG_STR, VC(events_topic), "causal_events", 0, 0, -1,
     "topic of feed_silence / feed_resumed events"},
    {"validator.changelog_topic", HM_CFG_STR, VC(changelog_topic), "ingest-validator.changelog", 0,
     0, -1, "compacted topic holding the per-key check state (restored after a restart)"},
    {"validator.group_id", HM_CFG_STR, VC(group_id), "ingest-validator", 0, 0, -1,
     "Kafka consumer group of the validator instances"},
    {"validator.commit_interval_ms", HM_CFG_INT, VC(commit_interval_ms), "0", RL, 0, 60000,
     "commit the open transaction at least every N ms; 0: as soon as the previous commit "
     "ended and records are pending"},
    {"validator.commit_max_records", HM_CFG_INT, VC(commit_max_records), "20000", RL, 1, 1000000,
     "... or once it holds this many input records"},
    {"validator.delivery", HM_CFG_STR, VC(delivery), "exactly_once", 0, 0, -1,
     "exactly_once: quality records, state and offsets in one Kafka transaction; "
     "at_least_once: no transactions (lower latency; a crash repeats the records since the "
     "last commit, their outputs twice)"},
    {"validator.offsets", HM_CFG_STR, VC(offsets), "changelog", 0, 0, -1,
     "exactly_once: where the input offsets are kept: changelog (checkpoint records in the "
     "transaction; the group learns them after, for lag) or group (send_offsets_to_"
     "transaction: a group-coordinator round trip per transaction)"},
    {"validator.freshness_clock", HM_CFG_STR, VC(freshness_clock), "ingest", 0, 0, -1,
     "ingest: judge freshness against the Kafka record timestamp; event: against the "
     "symbol's watermark (replay always uses event)"},
};

/* The fixed keys; the weights follow, one per code, generated below. */
#define IV_CHECK_KEYS_FIXED 30
#define IV_CHECK_KEYS_N     (IV_CHECK_KEYS_FIXED + HM_QCODE_COUNT)

static const hm_cfg_key k_check_keys[IV_CHECK_KEYS_N] = {
    {"checks.valid_exchanges", HM_CFG_STR_LIST, CC(valid_exchanges),
     "[binance, kraken, bybit, deribit, coinbase]", RL, 0, -1,
     "lower-case exchange names; ticks of others are UNKNOWN_EXCHANGE and get no state"},
    /* At most 131072: a rejected record is embedded in its quality record escaped (up to
     * 6 bytes a byte), and that must fit one Kafka message (1,000,000 bytes). */
    {"checks.max_record_bytes", HM_CFG_INT, CC(max_record_bytes), "65536", RL, 64, 131072,
     "bytes: a longer record is a PARSE_ERROR (its bytes go to the DLQ, cut to the producer's "
     "message size)"},
    {"checks.large_gap_ms", HM_CFG_INT, CC(large_gap_ms), "60000", RL, 1, 7 * DAY_MS,
     "ms: LARGE_GAP when a tick follows its (exchange, symbol)'s previous one by more"},
    {"checks.stale_ms", HM_CFG_INT, CC(stale_ms), "30000", RL, 1, DAY_MS,
     "ms: STALE_DATA when a tick is older than the reference time by more"},
    {"checks.delayed_ms", HM_CFG_INT, CC(delayed_ms), "10000", RL, 1, DAY_MS,
     "ms: DELAYED_DATA when older by more (and not stale); must be below stale_ms"},
    {"checks.future_ms", HM_CFG_INT, CC(future_ms), "5000", RL, 1, DAY_MS,
     "ms: FUTURE_TIMESTAMP when a tick is ahead of the reference time by more"},
    {"checks.future_confirm_ticks", HM_CFG_INT, CC(future_confirm_ticks), "3", RL, 1, 1000,
     "ticks: event clock: this many ticks of a symbol in a row, ahead and within the lull "
     "bound of each other, move the watermark (the stream really jumped)"},
    {"checks.future_lull_factor", HM_CFG_DOUBLE, CC(future_lull_factor), "3", RL, 0, 1e6,
     "event clock: a tick ahead of its symbol's watermark by up to this many times the "
     "longest recent gap between the symbol's trading moments (and at least future_ms) is the "
     "end of a lull, not FUTURE_TIMESTAMP; 0: future_ms alone"},
    {"checks.future_lull_max_ms", HM_CFG_INT, CC(future_lull_max_ms), "21600000", RL, 1, DAY_MS,
     "ms: event clock: a lead longer than this is never a lull (it needs future_confirm_ticks)"},
    {"checks.extreme_move", HM_CFG_DOUBLE, CC(extreme_move), "0.10", RL, FRAC_MIN, 10,
     "fraction: EXTREME_PRICE_MOVE when |price / reference - 1| is above"},
    {"checks.large_move", HM_CFG_DOUBLE, CC(large_move), "0.05", RL, FRAC_MIN, 10,
     "fraction: LARGE_PRICE_MOVE when above (and not extreme); must be below extreme_move"},
    {"checks.anomaly_deviation", HM_CFG_DOUBLE, CC(anomaly_deviation), "0.15", RL, FRAC_MIN, 10,
     "fraction: PRICE_ANOMALY when |price / EMA - 1| is above"},
    {"checks.ema_alpha", HM_CFG_DOUBLE, CC(ema_alpha), "0.1", RL, FRAC_MIN, 1,
     "smoothing factor (0, 1] of the price EMA, per accepted tick"},
    {"checks.volume_alpha", HM_CFG_DOUBLE, CC(volume_alpha), "0.05", RL, FRAC_MIN, 1,
     "smoothing factor (0, 1] of the mean and variance of log volume, per accepted tick"},
    {"checks.volume_spike_ratio", HM_CFG_DOUBLE, CC(volume_spike_ratio), "5", RL, 1, 1e12,
     "ratio: VOLUME_SPIKE needs volume above this multiple of the baseline (and the sigmas)"},
    {"checks.extreme_volume_ratio", HM_CFG_DOUBLE, CC(extreme_volume_ratio), "100000", RL, 1, 1e12,
     "ratio: EXTREME_VOLUME_SPIKE; must be above volume_spike_ratio"},
    {"checks.volume_spike_sigmas", HM_CFG_DOUBLE, CC(volume_spike_sigmas), "2.5", RL, 0, 100,
     "standard deviations of log volume a spike must also exceed (extreme: this + 2)"},
    {"checks.volume_warmup_ticks", HM_CFG_INT, CC(volume_warmup_ticks), "5", RL, 1, 1000000000,
     "ticks: accepted volumes of a key before its volume checks start"},
    {"checks.max_price_decimals", HM_CFG_INT, CC(max_price_decimals), "8", RL, 0, 30,
     "digits: EXCESSIVE_PRECISION when a price has more decimals (trailing zeros ignored)"},
    {"checks.cross_exchange_deviation", HM_CFG_DOUBLE, CC(cross_exchange_deviation), "0.01", RL,
     FRAC_MIN, 10,
     "fraction: CROSS_EXCHANGE_DEVIATION when |price / median of the other exchanges - 1| is "
     "above"},
    {"checks.cross_exchange_window_ms", HM_CFG_INT, CC(cross_exchange_window_ms), "30000", RL, 1,
     DAY_MS, "ms: other exchanges' prices older than this (symbol event time) are ignored"},
    {"checks.cross_exchange_min_peers", HM_CFG_INT, CC(cross_exchange_min_peers), "2", RL, 1, 1000,
     "exchanges: fewer fresh prices of other exchanges and the check is skipped"},
    {"checks.level_confirm_ticks", HM_CFG_INT, CC(level_confirm_ticks), "2", RL, 1, 1000,
     "ticks: of one (exchange, symbol) at a new price level that confirm it"},
    {"checks.level_confirm_tolerance", HM_CFG_DOUBLE, CC(level_confirm_tolerance), "0.01", RL,
     FRAC_MIN, 10, "fraction: prices this close count as the same level"},
    {"checks.spike_revert_tolerance", HM_CFG_DOUBLE, CC(spike_revert_tolerance), "0.01", RL,
     FRAC_MIN, 10,
     "fraction: SPIKE_REVERTED when a tick is back this close to the reference after a "
     "flagged move"},
    {"checks.silence_ms", HM_CFG_INT, CC(silence_ms), "60000", RL, 1, 30 * DAY_MS,
     "ms: feed_silence event when an (exchange, symbol) is this far behind its symbol's "
     "watermark"},
    {"checks.state_ttl_ms", HM_CFG_INT, CC(state_ttl_ms), "86400000", RL, 1000, 365 * DAY_MS,
     "ms: the state of an (exchange, symbol) idle this long (its partition's event time) is "
     "forgotten"},
    {"checks.max_keys", HM_CFG_INT, CC(max_keys), "100000", RL, 1, 100000000,
     "keys: bound on (exchange, symbol) states per partition; at it a new key evicts the "
     "least recently seen key of the exchange holding the most, and its tick carries NO_STATE"},
    {"checks.notional_max", HM_CFG_DOUBLE, CC(notional_max), "10000000", RL, FRAC_MIN, 1e18,
     "quote units: NOTIONAL_OUTLIER when a trade's notional is above (price x volume; see "
     "checks.instruments)"},
    {"checks.instruments", HM_CFG_STR_LIST, CC(instruments), "[]", RL, 0, -1,
     "per-market conventions, 'EXCHANGE SYMBOL|* [inverse] [contract=N] "
     "[ids=sequential|unordered]': inverse contracts count contracts of N quote units "
     "(notional = contracts x N), linear ones N base units a contract (default 1); unordered "
     "ids are checked for duplicates only. Absent: an exchange named *coinm is inverse (100 "
     "USD a contract for BTC, 10 otherwise), others linear with sequential ids"},
#define IV_WEIGHT_KEY_(name, weight, holds)                                                        \
    {"checks.weights." #name,                                                                      \
     HM_CFG_DOUBLE,                                                                                \
     CC(weights) + (size_t)HM_Q_##name * sizeof(double),                                           \
     #weight,                                                                                      \
     RL,                                                                                           \
     0,                                                                                            \
     1,                                                                                            \
     "score points [0, 1] a record carrying " #name " loses"},
    HM_QCODES(IV_WEIGHT_KEY_)
#undef IV_WEIGHT_KEY_
};

_Static_assert(sizeof(k_check_keys) / sizeof(k_check_keys[0]) == IV_CHECK_KEYS_N,
               "IV_CHECK_KEYS_FIXED must count the fixed check keys");

void iv_config_sections(iv_config *cfg, hm_cfg_section out[IV_CONFIG_SECTIONS]) {
    hm_service_config_sections(&cfg->base, HM_SVC_INGEST_VALIDATOR, out);
    out[HM_SERVICE_SECTIONS] = (hm_cfg_section){k_validator_keys, HM_ARRAY_LEN(k_validator_keys),
                                                (char *)cfg + IV_VALIDATOR_BASE,
                                                offsetof(iv_config, checks) - IV_VALIDATOR_BASE};
    out[HM_SERVICE_SECTIONS + 1] = (hm_cfg_section){k_check_keys, HM_ARRAY_LEN(k_check_keys),
                                                    &cfg->checks, sizeof(cfg->checks)};
}

/* An exchange name as the checks compare it: what hm_tick_exchange_lower()
 * produces, short enough for a key's fixed buffer, and free of '|', which
 * separates exchange from symbol in changelog keys. */
static bool exchange_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 31) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
        if (!ok) return false;
    }
    return true;
}

static int validate(void *cfg, const char *path, hm_err *err) {
    iv_config *c = cfg;
    const char *file = path ? path : "(no config file)";
    const iv_checks *k = &c->checks;
    static const struct {
        const char *name;
        size_t off;
    } topics[] = {
        {"validator.input_topic", offsetof(iv_config, input_topic)},
        {"validator.output_topic", offsetof(iv_config, output_topic)},
        {"validator.dlq_topic", offsetof(iv_config, dlq_topic)},
        {"validator.events_topic", offsetof(iv_config, events_topic)},
        {"validator.changelog_topic", offsetof(iv_config, changelog_topic)},
        {"validator.group_id", offsetof(iv_config, group_id)},
    };
    for (size_t i = 0; i < HM_ARRAY_LEN(topics); i++) {
        const char *v = *(char *const *)((const char *)c + topics[i].off);
        if (!v || !*v)
            return hm_err_set(err, -EINVAL, "%s: %s: must not be empty", file, topics[i].name);
    }
    if (!c->delivery ||
        (strcmp(c->delivery, "exactly_once") != 0 && strcmp(c->delivery, "at_least_once") != 0))
        return hm_err_set(err, -EINVAL,
                          "%s: validator.delivery: '%s' is not exactly_once or at_least_once", file,
                          c->delivery ? c->delivery : "");
    if (!c->offsets || (strcmp(c->offsets, "changelog") != 0 && strcmp(c->offsets, "group") != 0))
        return hm_err_set(err, -EINVAL, "%s: validator.offsets: '%s' is not changelog or group",
                          file, c->offsets ? c->offsets : "");
    if (!c->freshness_clock ||
        (strcmp(c->freshness_clock, "ingest") != 0 && strcmp(c->freshness_clock, "event") != 0))
        return hm_err_set(err, -EINVAL,
                          "%s: validator.freshness_clock: '%s' is not ingest or event", file,
                          c->freshness_clock ? c->freshness_clock : "");
    if (!(k->large_move < k->extreme_move))
        return hm_err_set(err, -EINVAL,
                          "%s: checks.large_move (%g) must be below checks.extreme_move (%g)", file,
                          k->large_move, k->extreme_move);
    if (!(k->volume_spike_ratio < k->extreme_volume_ratio))
        return hm_err_set(err, -EINVAL,
                          "%s: checks.volume_spike_ratio (%g) must be below "
                          "checks.extreme_volume_ratio (%g)",
                          file, k->volume_spike_ratio, k->extreme_volume_ratio);
    if (!(k->delayed_ms < k->stale_ms))
        return hm_err_set(err, -EINVAL,
                          "%s: checks.delayed_ms (%lld) must be below checks.stale_ms (%lld)", file,
                          (long long)k->delayed_ms, (long long)k->stale_ms);
    if (k->valid_exchanges.n == 0)
        return hm_err_set(err, -EINVAL,
                          "%s: checks.valid_exchanges: must name at least one "
                          "exchange",
                          file);
    char why[300];
    iv_instruments inst;
    if (iv_instruments_parse(&k->instruments, &inst, why, sizeof(why)) != 0)
        return hm_err_set(err, -EINVAL, "%s: %s", file, why);
    for (size_t i = 0; i < k->valid_exchanges.n; i++) {
        const char *x = k->valid_exchanges.items[i];
        if (!exchange_name_ok(x))
            return hm_err_set(err, -EINVAL,
                              "%s: checks.valid_exchanges: '%s' is not 1..31 lower-case letters, "
                              "digits, '_', '-' or '.'",
                              file, x);
    }
    return 0;
}

/* Cross-field rules, then the derived flag. */
static int validate_and_derive(void *cfg, const char *path, hm_err *err) {
    int rc = validate(cfg, path, err);
    if (rc != 0) return rc;
    iv_config *c = cfg;
    c->event_clock = strcmp(c->freshness_clock, "event") == 0;
    return 0;
}

static void sections_of(void *cfg, hm_cfg_section *out) {
    iv_config_sections(cfg, out);
}

const hm_service_schema iv_config_schema = {
    .size = sizeof(iv_config),
    .n_sections = IV_CONFIG_SECTIONS,
    .sections = sections_of,
    .validate = validate_and_derive,
};

int iv_config_load(iv_config *cfg, const char *path, hm_err *err) {
    return hm_service_config_load(&iv_config_schema, cfg, path, err);
}

void iv_config_free(iv_config *cfg) {
    if (!cfg) return;
    hm_service_config_free(&iv_config_schema, cfg);
    cfg->event_clock = false;
}
