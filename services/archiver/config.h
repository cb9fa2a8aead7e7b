/*
 * config.h: the archiver's configuration: the common sections (service, log, admin, grpc,
 * kafka), its ingest ("archiver.*"), its PostgreSQL ("postgres.*"), the cold archive
 * ("archive.*") and its S3-compatible store ("s3.*"). config/archiver.example.yaml is
 * generated from these tables (archiver --print-config-example) and checked in CI.
 */
#ifndef AR_CONFIG_H
#define AR_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "himari/config.h"
#include "himari/service.h"

/** Where the archiver's database is (section "postgres"). */
typedef struct ar_pg_config {
    char *host;
    int64_t port;
    char *dbname;
    char *user;
    char *password; /* secret: postgres.password_file */
    char *sslmode;
    int64_t connect_timeout_ms;
    int64_t statement_timeout_ms;
} ar_pg_config;

/** Where the S3-compatible store is (section "s3"); endpoint empty: no S3. */
typedef struct ar_s3_config {
    char *endpoint;
    char *region;
    char *bucket;
    char *access_key; /* secret: s3.access_key_file */
    char *secret_key; /* secret: s3.secret_key_file */
    int64_t part_size_mb;
    int64_t max_attempts;
    int64_t request_timeout_ms;
} ar_s3_config;

typedef struct ar_config {
    hm_service_config base;
    /* archiver.* */
    char *input_topic;
    char *group_id;
    int64_t batch_max_rows;
    int64_t batch_interval_ms;
    int64_t retention_days; /* 0: keep forever */
    int64_t partitions_ahead_days;
    int64_t max_future_s;
    int64_t maintenance_interval_s;
    /* archive.* */
    bool archive_enabled;
    char *archive_directory;
    char *archive_codec;
    int64_t archive_zstd_level;
    int64_t archive_row_group_rows;
    int64_t archive_grace_s;
    int64_t archive_check_interval_s;
    ar_pg_config pg;
    ar_s3_config s3;
} ar_config;

#define AR_CONFIG_SECTIONS (HM_SERVICE_SECTIONS + 4)

/** How the service's configuration is loaded, compared and freed (hm_service_main). */
extern const hm_service_schema ar_config_schema;

#endif
