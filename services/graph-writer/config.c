/*
 * config.c: the graph-writer's configuration schema (config.h), validated across keys.
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#define GW_BASE   offsetof(gw_config, input_topic)
#define GC(field) (offsetof(gw_config, field) - GW_BASE)
#define NC(field) offsetof(gw_neo4j_config, field)
#define RL        HM_CFG_RELOADABLE

static const hm_cfg_key k_gw_keys[] = {
    {"graph_writer.input_topic", HM_CFG_STR, GC(input_topic), "causal_events", 0, 0, -1,
     "topic of causal events to merge into the graph (read_committed)"},
    {"graph_writer.group_id", HM_CFG_STR, GC(group_id), "graph-writer", 0, 0, -1,
     "Kafka consumer group of the graph-writer instances"},
    {"graph_writer.dlq_topic", HM_CFG_STR, GC(dlq_topic), "causal_events.dlq", 0, 0, -1,
     "records the graph cannot hold (not an event, a field missing, refused by Neo4j), kept "
     "whole with the reason in their headers"},
    {"graph_writer.batch_max_events", HM_CFG_INT, GC(batch_max_events), "2000", RL, 1, 100000,
     "write a transaction to Neo4j once it holds this many events ..."},
    {"graph_writer.batch_interval_ms", HM_CFG_INT, GC(batch_interval_ms), "500", RL, 0, 10000,
     "... or once its oldest event waited this long, ms; 0: as soon as the previous one "
     "committed"},
    {"graph_writer.whale_window_s", HM_CFG_INT, GC(whale_window_s), "3600", RL, 1, 604800,
     "a whale transfer PRECEDED a price movement of a pair of its asset up to this much "
     "later, seconds (the guide's Query 1: 1 h)"},
    {"graph_writer.movement_window_s", HM_CFG_INT, GC(movement_window_s), "3600", RL, 1, 604800,
     "a price movement PRECEDED a liquidation cascade of its pair up to this much later, s"},
    {"graph_writer.cascade_window_s", HM_CFG_INT, GC(cascade_window_s), "3600", RL, 1, 604800,
     "a liquidation cascade PRECEDED another of its pair up to this much later, seconds "
     "(the guide's Query 2: 1 h)"},
};

static const hm_cfg_key k_neo4j_keys[] = {
    {"neo4j.url", HM_CFG_STR, NC(url), "http://127.0.0.1:7474", RL, 0, -1,
     "Neo4j's HTTP endpoint (the transactional API: <url>/db/<database>/tx/commit)"},
    {"neo4j.database", HM_CFG_STR, NC(database), "neo4j", RL, 0, -1, "database name"},
    {"neo4j.user", HM_CFG_STR, NC(user), "neo4j", RL, 0, -1, "user (basic auth)"},
    {"neo4j.password", HM_CFG_SECRET, NC(password), NULL, RL, 0, -1,
     "password (prefer password_file)"},
    {"neo4j.request_timeout_ms", HM_CFG_INT, NC(request_timeout_ms), "30000", RL, 100, 600000,
     "a transaction not answered in this long is abandoned and sent again, ms"},
};

static void sections_of(void *cfg, hm_cfg_section *out) {
    gw_config *c = cfg;
    hm_service_config_sections(&c->base, HM_SVC_GRAPH_WRITER, out);
    out[HM_SERVICE_SECTIONS] =
        (hm_cfg_section){k_gw_keys, HM_ARRAY_LEN(k_gw_keys), (char *)c + GW_BASE,
                         offsetof(gw_config, neo4j) - GW_BASE};
    out[HM_SERVICE_SECTIONS + 1] =
        (hm_cfg_section){k_neo4j_keys, HM_ARRAY_LEN(k_neo4j_keys), &c->neo4j, sizeof(c->neo4j)};
}

static int validate(void *cfg, const char *path, hm_err *err) {
    gw_config *c = cfg;
    const char *file = path ? path : "(no config file)";
    const char *required[][2] = {
        {"graph_writer.input_topic", c->input_topic}, {"graph_writer.group_id", c->group_id},
        {"graph_writer.dlq_topic", c->dlq_topic},     {"neo4j.url", c->neo4j.url},
        {"neo4j.database", c->neo4j.database},        {"neo4j.user", c->neo4j.user}};
    for (size_t i = 0; i < HM_ARRAY_LEN(required); i++) {
        if (!required[i][1] || !*required[i][1])
            return hm_err_set(err, -EINVAL, "%s: %s: must not be empty", file, required[i][0]);
    }
    if (strncmp(c->neo4j.url, "http://", 7) != 0 && strncmp(c->neo4j.url, "https://", 8) != 0)
        return hm_err_set(err, -EINVAL, "%s: neo4j.url: '%s' must start with http:// or https://",
                          file, c->neo4j.url);
    size_t n = strlen(c->neo4j.url);
    if (c->neo4j.url[n - 1] == '/')
        return hm_err_set(err, -EINVAL, "%s: neo4j.url: '%s' must not end with '/'", file,
                          c->neo4j.url);
    for (const char *p = c->neo4j.database; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
            return hm_err_set(err, -EINVAL,
                              "%s: neo4j.database: '%s' is not a Neo4j database name (a-z, 0-9, "
                              "'.', '-')",
                              file, c->neo4j.database);
    }
    return 0;
}

const hm_service_schema gw_config_schema = {
    .size = sizeof(gw_config),
    .n_sections = GW_CONFIG_SECTIONS,
    .sections = sections_of,
    .validate = validate,
};
