/*
 * config.h: the feature-engine's configuration: the common sections (service, log,
 * admin, grpc, kafka), its Kafka wiring and feature parameters ("features.*"), the
 * causal-event rules ("events.*") and where the latest view is written ("redis.*").
 * config/feature-engine.example.yaml is generated from these tables (feature-engine
 * --print-config-example) and checked in CI.
 */
#ifndef FE_CONFIG_H
#define FE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "himari/config.h"
#include "himari/redis.h"
#include "himari/service.h"

typedef struct fe_config {
    hm_service_config base;
    char *input_topic;  /* features.input_topic */
    char *output_topic; /* features.output_topic */
    char *events_topic; /* features.events_topic */
    char *dlq_topic;    /* features.dlq_topic */
    char *group_id;     /* features.group_id */
    int64_t commit_interval_ms;
    int64_t commit_max_records;
    char *delivery; /* "exactly_once" | "at_least_once" */
    double quality_floor;
    int64_t lateness_ms;
    int64_t emit_interval_ms;
    double ema_fast_s, ema_slow_s;
    int64_t cross_fresh_ms;
    int64_t max_symbols;
    int64_t redis_ttl_s; /* features.redis_ttl_s */
    int64_t history_max; /* features.history_max */
    /* events.* */
    hm_str_map price_moves; /* window seconds -> threshold fraction */
    int64_t cascade_window_ms;
    int64_t cascade_min_count;
    double cascade_min_notional;
    double severity_medium, severity_high, severity_critical;
    hm_str_map whale_thresholds; /* asset -> minimum amount */
    fe_params params;            /* derived: what the engine reads */
    hm_redis_config redis;       /* redis.* */
} fe_config;

#define FE_CONFIG_SECTIONS (HM_SERVICE_SECTIONS + 3)

/** How the service's configuration is loaded, compared and freed (hm_service_main). */
extern const hm_service_schema fe_config_schema;

#endif
