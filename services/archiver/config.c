/*
 * config.c: the archiver's configuration schema (config.h), validated across keys. Runs at
 * start-up and on ReloadConfig, never per record; loading never half-applies.
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "parquet.h"

#define ARCHIVER_BASE offsetof(ar_config, input_topic)
#define ARCHIVE_BASE  offsetof(ar_config, archive_enabled)
#define AC(field)     (offsetof(ar_config, field) - ARCHIVER_BASE)
#define XC(field)     (offsetof(ar_config, field) - ARCHIVE_BASE)
#define PC(field)     offsetof(ar_pg_config, field)
#define SC(field)     offsetof(ar_s3_config, field)
#define RL            HM_CFG_RELOADABLE

static const hm_cfg_key k_archiver_keys[] = {
    {"archiver.input_topic", HM_CFG_STR, AC(input_topic), "quality_scores", 0, 0, -1,
     "topic of quality records to store (read_committed)"},
    {"archiver.group_id", HM_CFG_STR, AC(group_id), "archiver", 0, 0, -1,
     "Kafka consumer group of the archiver instances"},
    {"archiver.batch_max_rows", HM_CFG_INT, AC(batch_max_rows), "20000", RL, 1, 1000000,
     "write a batch to PostgreSQL once it holds this many records ..."},
    {"archiver.batch_interval_ms", HM_CFG_INT, AC(batch_interval_ms), "1000", RL, 0, 10000,
     "... or once its oldest record waited this long, ms; 0: as soon as the previous batch "
     "committed (the lowest delay; batches still grow under load)"},
    {"archiver.retention_days", HM_CFG_INT, AC(retention_days), "365", RL, 0, 36500,
     "daily partitions of market_data older than this are dropped, and records older than "
     "this are rejected (reason older_than_retention); 0: keep everything"},
    {"archiver.partitions_ahead_days", HM_CFG_INT, AC(partitions_ahead_days), "3", RL, 0, 366,
     "daily partitions created ahead of today (UTC); a batch creates any other day it needs"},
    {"archiver.max_future_s", HM_CFG_INT, AC(max_future_s), "86400", RL, 0, 31622400,
     "records timestamped further than this ahead of the archiver's clock are rejected "
     "(reason timestamp_in_future), seconds"},
    {"archiver.maintenance_interval_s", HM_CFG_INT, AC(maintenance_interval_s), "3600", RL, 1,
     86400, "how often partitions are created ahead and dropped past retention, seconds"},
};

static const hm_cfg_key k_archive_keys[] = {
    {"archive.enabled", HM_CFG_BOOL, XC(archive_enabled), "true", RL, 0, -1,
     "export each closed day to Parquet, one file per (date, exchange)"},
    {"archive.directory", HM_CFG_STR, XC(archive_directory), "archive", RL, 0, -1,
     "with no s3.endpoint: the Hive-style tree market_data/date=.../exchange=.../ is written "
     "under this directory; with S3: where files are staged before the upload"},
    {"archive.codec", HM_CFG_STR, XC(archive_codec), "zstd", RL, 0, -1,
     "Parquet page compression: zstd, snappy or none"},
    {"archive.zstd_level", HM_CFG_INT, XC(archive_zstd_level), "3", RL, 1, 19,
     "zstd level (higher: smaller and slower)"},
    {"archive.row_group_rows", HM_CFG_INT, XC(archive_row_group_rows), "1000000", RL, 1000,
     100000000, "rows per Parquet row group (memory while writing: about 100 bytes a row)"},
    {"archive.grace_s", HM_CFG_INT, XC(archive_grace_s), "900", RL, 0, 86400,
     "a day (UTC) is exported this long after it ends, seconds; rows arriving later make the "
     "next check export it again"},
    {"archive.check_interval_s", HM_CFG_INT, XC(archive_check_interval_s), "300", RL, 1, 86400,
     "how often closed days not yet exported (or changed since) are looked for, seconds"},
};

static const hm_cfg_key k_pg_keys[] = {
    {"postgres.host", HM_CFG_STR, PC(host), "127.0.0.1", 0, 0, -1, "PostgreSQL server address"},
    {"postgres.port", HM_CFG_INT, PC(port), "5432", 0, 1, 65535, "PostgreSQL server port"},
    {"postgres.dbname", HM_CFG_STR, PC(dbname), "himari_analytics", 0, 0, -1, "database"},
    {"postgres.user", HM_CFG_STR, PC(user), "himari", 0, 0, -1, "role to log in as"},
    {"postgres.password", HM_CFG_SECRET, PC(password), NULL, 0, 0, -1,
     "password for scram-sha-256 (prefer password_file); unset: none"},
    {"postgres.sslmode", HM_CFG_STR, PC(sslmode), "prefer", 0, 0, -1,
     "libpq sslmode: disable, prefer, require, verify-ca, verify-full"},
    {"postgres.connect_timeout_ms", HM_CFG_INT, PC(connect_timeout_ms), "5000", 0, 100, 600000,
     "a connect (TCP, TLS, auth, session setup) slower than this is dropped and retried"},
    {"postgres.statement_timeout_ms", HM_CFG_INT, PC(statement_timeout_ms), "60000", 0, 100,
     3600000,
     "a batch's transaction not answered within this is cancelled (the batch is retried), "
     "and the connection remade"},
};

static const hm_cfg_key k_s3_keys[] = {
    {"s3.endpoint", HM_CFG_STR, SC(endpoint), "", RL, 0, -1,
     "S3-compatible endpoint (http://127.0.0.1:9000); empty: archive to archive.directory"},
    {"s3.region", HM_CFG_STR, SC(region), "us-east-1", RL, 0, -1, "SigV4 signing region"},
    {"s3.bucket", HM_CFG_STR, SC(bucket), "himari-archive", RL, 0, -1,
     "bucket of the archive (created when missing)"},
    {"s3.access_key", HM_CFG_SECRET, SC(access_key), NULL, RL, 0, -1,
     "access key id (prefer access_key_file)"},
    {"s3.secret_key", HM_CFG_SECRET, SC(secret_key), NULL, RL, 0, -1,
     "secret access key (prefer secret_key_file)"},
    {"s3.part_size_mb", HM_CFG_INT, SC(part_size_mb), "8", RL, 5, 5120,
     "files larger than this go up in parts of this size (multipart upload), MiB"},
    {"s3.max_attempts", HM_CFG_INT, SC(max_attempts), "8", RL, 1, 100,
     "tries per request (a part, a PUT) before the export fails and waits for the next check"},
    {"s3.request_timeout_ms", HM_CFG_INT, SC(request_timeout_ms), "120000", RL, 1000, 3600000,
     "one request slower than this is abandoned and retried, ms"},
};

static void sections_of(void *cfg, hm_cfg_section *out) {
    ar_config *c = cfg;
    hm_service_config_sections(&c->base, HM_SVC_ARCHIVER, out);
    out[HM_SERVICE_SECTIONS] =
        (hm_cfg_section){k_archiver_keys, HM_ARRAY_LEN(k_archiver_keys), (char *)c + ARCHIVER_BASE,
                         ARCHIVE_BASE - ARCHIVER_BASE};
    out[HM_SERVICE_SECTIONS + 1] =
        (hm_cfg_section){k_archive_keys, HM_ARRAY_LEN(k_archive_keys), (char *)c + ARCHIVE_BASE,
                         offsetof(ar_config, pg) - ARCHIVE_BASE};
    out[HM_SERVICE_SECTIONS + 2] =
        (hm_cfg_section){k_pg_keys, HM_ARRAY_LEN(k_pg_keys), &c->pg, sizeof(c->pg)};
    out[HM_SERVICE_SECTIONS + 3] =
        (hm_cfg_section){k_s3_keys, HM_ARRAY_LEN(k_s3_keys), &c->s3, sizeof(c->s3)};
}

static int validate(void *cfg, const char *path, hm_err *err) {
    ar_config *c = cfg;
    const char *file = path ? path : "(no config file)";
    const char *required[][2] = {{"archiver.input_topic", c->input_topic},
                                 {"archiver.group_id", c->group_id},
                                 {"postgres.host", c->pg.host},
                                 {"postgres.dbname", c->pg.dbname},
                                 {"postgres.user", c->pg.user},
                                 {"archive.directory", c->archive_directory}};
    for (size_t i = 0; i < HM_ARRAY_LEN(required); i++) {
        if (!required[i][1] || !*required[i][1]) {
            return hm_err_set(err, -EINVAL, "%s: %s: must not be empty", file, required[i][0]);
        }
    }
    static const char *const k_sslmodes[] = {"disable", "allow",     "prefer",
                                             "require", "verify-ca", "verify-full"};
    bool ssl_ok = false;
    for (size_t i = 0; i < HM_ARRAY_LEN(k_sslmodes); i++)
        ssl_ok |= c->pg.sslmode && strcmp(c->pg.sslmode, k_sslmodes[i]) == 0;
    if (!ssl_ok) {
        return hm_err_set(err, -EINVAL, "%s: postgres.sslmode: '%s' is not a libpq sslmode", file,
                          c->pg.sslmode ? c->pg.sslmode : "");
    }
    ar_pq_codec codec;
    if (ar_pq_codec_parse(c->archive_codec ? c->archive_codec : "", &codec) != 0) {
        return hm_err_set(err, -EINVAL, "%s: archive.codec: '%s' is not zstd, snappy or none", file,
                          c->archive_codec ? c->archive_codec : "");
    }
    if (c->s3.endpoint && *c->s3.endpoint) {
        if (strncmp(c->s3.endpoint, "http://", 7) != 0 &&
            strncmp(c->s3.endpoint, "https://", 8) != 0) {
            return hm_err_set(err, -EINVAL,
                              "%s: s3.endpoint: '%s' must start with http:// or https://", file,
                              c->s3.endpoint);
        }
        if (!c->s3.bucket || !*c->s3.bucket || !c->s3.access_key || !c->s3.secret_key) {
            return hm_err_set(err, -EINVAL,
                              "%s: s3.endpoint is set: s3.bucket, s3.access_key(_file) and "
                              "s3.secret_key(_file) are needed too",
                              file);
        }
    }
    return 0;
}

const hm_service_schema ar_config_schema = {
    .size = sizeof(ar_config),
    .n_sections = AR_CONFIG_SECTIONS,
    .sections = sections_of,
    .validate = validate,
};
