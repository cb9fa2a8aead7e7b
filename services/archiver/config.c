/*
 * config.c: the archiver's configuration schema (config.h), validated across keys. Runs at
 * start-up and on ReloadConfig, never per record; loading never half-applies.
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#define ARCHIVER_BASE offsetof(ar_config, input_topic)
#define AC(field)     (offsetof(ar_config, field) - ARCHIVER_BASE)
#define PC(field)     offsetof(ar_pg_config, field)
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

static void sections_of(void *cfg, hm_cfg_section *out) {
    ar_config *c = cfg;
    hm_service_config_sections(&c->base, HM_SVC_ARCHIVER, out);
    out[HM_SERVICE_SECTIONS] =
        (hm_cfg_section){k_archiver_keys, HM_ARRAY_LEN(k_archiver_keys), (char *)c + ARCHIVER_BASE,
                         offsetof(ar_config, pg) - ARCHIVER_BASE};
    out[HM_SERVICE_SECTIONS + 1] =
        (hm_cfg_section){k_pg_keys, HM_ARRAY_LEN(k_pg_keys), &c->pg, sizeof(c->pg)};
}

static int validate(void *cfg, const char *path, hm_err *err) {
    ar_config *c = cfg;
    const char *file = path ? path : "(no config file)";
    const char *required[][2] = {{"archiver.input_topic", c->input_topic},
                                 {"archiver.group_id", c->group_id},
                                 {"postgres.host", c->pg.host},
                                 {"postgres.dbname", c->pg.dbname},
                                 {"postgres.user", c->pg.user}};
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
    return 0;
}

const hm_service_schema ar_config_schema = {
    .size = sizeof(ar_config),
    .n_sections = AR_CONFIG_SECTIONS,
    .sections = sections_of,
    .validate = validate,
};
