/*
 * config.h: the health-gateway's configuration: the common sections (service, log, admin,
 * grpc, kafka), what it probes and how often ("gateway.*"), and the dependencies it probes,
 * in the sections and keys the services that use them have (redis, postgres, neo4j, s3),
 * so one environment configures all of them. config/health-gateway.example.yaml is
 * generated from these tables (health-gateway --print-config-example) and checked in CI.
 */
#ifndef HG_CONFIG_H
#define HG_CONFIG_H

#include <stdint.h>

#include "himari/config.h"
#include "himari/redis.h"
#include "himari/service.h"

typedef struct hg_pg_config {
    char *host; /* empty: PostgreSQL is not probed */
    int64_t port;
    char *dbname;
    char *user;
    char *password; /* secret: postgres.password_file */
    char *sslmode;
} hg_pg_config;

typedef struct hg_neo4j_config {
    char *url; /* empty: Neo4j is not probed */
    char *database;
    char *user;
    char *password; /* secret: neo4j.password_file */
} hg_neo4j_config;

typedef struct hg_s3_config {
    char *endpoint; /* empty: S3 is not probed */
    char *region;
    char *bucket;
    char *access_key; /* secret: s3.access_key_file */
    char *secret_key; /* secret: s3.secret_key_file */
} hg_s3_config;

typedef struct hg_config {
    hm_service_config base;
    /* gateway.* */
    int64_t probe_interval_ms;
    int64_t probe_timeout_ms;
    int64_t history_seconds;
    int64_t max_errors;
    hm_str_list services; /* "name=http://host:port" */
    hm_str_list critical;
    hm_str_list kafka_groups;
    hm_redis_config redis;
    hg_pg_config postgres;
    hg_neo4j_config neo4j;
    hg_s3_config s3;
} hg_config;

#define HG_CONFIG_SECTIONS (HM_SERVICE_SECTIONS + 5)

extern const hm_service_schema hg_config_schema;

/**
 * @brief Split a gateway.services item "name=url" into name (at most name_size - 1
 * bytes) and *url. @return 0, or -EINVAL when it is not of that form.
 */
int hg_service_entry(const char *item, char *name, size_t name_size, const char **url);

#endif
