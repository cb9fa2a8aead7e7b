/*
 * config.h: the graph-writer's configuration: the common sections (service, log, admin,
 * grpc, kafka), its ingest and links ("graph_writer.*") and its Neo4j ("neo4j.*").
 * config/graph-writer.example.yaml is generated from these tables
 * (graph-writer --print-config-example) and checked in CI.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdint.h>

#include "himari/config.h"
#include "himari/service.h"
#include "neo4j.h"

typedef struct gw_config {
    hm_service_config base;
    /* graph_writer.* */
    char *input_topic;
    char *group_id;
    char *dlq_topic;
    int64_t batch_max_events;
    int64_t batch_interval_ms;
    int64_t whale_window_s;
    int64_t movement_window_s;
    int64_t cascade_window_s;
    gw_neo4j_config neo4j;
} gw_config;

#define GW_CONFIG_SECTIONS (HM_SERVICE_SECTIONS + 2)

extern const hm_service_schema gw_config_schema;

#endif
