/*
 * config.h: the ingest-validator's configuration: the common sections
 * (service, log, admin, kafka), its Kafka wiring ("validator.*") and the
 * thresholds and weights of its checks ("checks.*", "checks.weights.<CODE>").
 * config/ingest-validator.example.yaml is generated from these tables
 * (ingest-validator --print-config-example) and checked in CI.
 */
#ifndef IV_CONFIG_H
#define IV_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "himari/config.h"
#include "himari/quality.h"
#include "himari/service.h"

/** Thresholds and weights of the checks (pure logic reads only this). */
typedef struct iv_checks {
    hm_str_list valid_exchanges;      /* lower-case names; others are UNKNOWN_EXCHANGE */
    int64_t max_record_bytes;         /* larger records are PARSE_ERROR (kept in the DLQ) */
    int64_t large_gap_ms;             /* LARGE_GAP: gap to the key's previous tick */
    int64_t stale_ms;                 /* STALE_DATA: older than the reference time by more */
    int64_t delayed_ms;               /* DELAYED_DATA */
    int64_t future_ms;                /* FUTURE_TIMESTAMP: ahead of the reference by more */
    int64_t future_confirm_ticks;     /* event clock: ticks that confirm a jump of the
                                         watermark (a real gap, not a bad clock) */
    double future_lull_factor;        /* event clock: a lead up to this many times the
                                         symbol's longest recent gap is a lull */
    int64_t future_lull_max_ms;       /* ... but never a lead longer than this */
    double extreme_move;              /* EXTREME_PRICE_MOVE: |p/ref - 1| above (fraction) */
    double large_move;                /* LARGE_PRICE_MOVE */
    double anomaly_deviation;         /* PRICE_ANOMALY: |p/ema - 1| above */
    double ema_alpha;                 /* smoothing of the price EMA */
    double volume_alpha;              /* smoothing of the log-volume baseline */
    double volume_spike_ratio;        /* VOLUME_SPIKE: volume / baseline above */
    double extreme_volume_ratio;      /* EXTREME_VOLUME_SPIKE */
    double volume_spike_sigmas;       /* ... and also this many sigmas of log volume above */
    int64_t volume_warmup_ticks;      /* accepted ticks before volume checks start */
    int64_t max_price_decimals;       /* EXCESSIVE_PRECISION */
    double cross_exchange_deviation;  /* CROSS_EXCHANGE_DEVIATION: vs the peers' median */
    int64_t cross_exchange_window_ms; /* peers' prices older than this are ignored */
    int64_t cross_exchange_min_peers; /* fewer fresh peers: no cross-exchange check */
    int64_t level_confirm_ticks;      /* ticks of one key at a new level that confirm it */
    double level_confirm_tolerance;   /* "at the same level": within this fraction */
    double spike_revert_tolerance;    /* SPIKE_REVERTED: back within this of the reference */
    int64_t silence_ms;               /* feed_silence event: key quiet this long (event time) */
    int64_t state_ttl_ms;             /* state of a key idle this long is forgotten */
    int64_t max_keys;                 /* bound on keys with state per partition */
    double notional_max;              /* NOTIONAL_OUTLIER: notional above */
    hm_str_list instruments;          /* per-instrument conventions (checks.h, iv_instruments) */
    double weights[HM_QCODE_COUNT];   /* checks.weights.<CODE> */
} iv_checks;

typedef struct iv_config {
    hm_service_config base;
    char *input_topic;     /* validator.input_topic */
    char *output_topic;    /* validator.output_topic */
    char *dlq_topic;       /* validator.dlq_topic */
    char *events_topic;    /* validator.events_topic */
    char *changelog_topic; /* validator.changelog_topic */
    char *group_id;        /* validator.group_id */
    int64_t commit_interval_ms;
    int64_t commit_max_records;
    char *delivery;        /* "exactly_once" | "at_least_once" */
    char *offsets;         /* "changelog" | "group" */
    char *freshness_clock; /* "ingest" | "event" */
    bool event_clock;      /* derived: freshness_clock == "event" */
    iv_checks checks;
} iv_config;

#define IV_CONFIG_SECTIONS (HM_SERVICE_SECTIONS + 2)

/** @brief The section table over cfg (fills out[IV_CONFIG_SECTIONS]). */
void iv_config_sections(iv_config *cfg, hm_cfg_section out[IV_CONFIG_SECTIONS]);

/** How the service's configuration is loaded, compared and freed (hm_service_main). */
extern const hm_service_schema iv_config_schema;

/**
 * @brief Load (defaults, file, env), validate cross-field rules (e.g.
 * large_move < extreme_move, freshness_clock is ingest|event), derive
 * event_clock. On error cfg is unchanged and err says why.
 */
int iv_config_load(iv_config *cfg, const char *path, hm_err *err) HM_MUST_CHECK;
void iv_config_free(iv_config *cfg);

#endif
