/*
 * archiver: quality records into PostgreSQL (warm storage, exact OHLCV candles).
 *
 *   quality_scores --> [pipeline: COPY batches, offsets committed after the database]
 *                        --> market_data, market_data_rejects, ohlcv_5min, ohlcv_1hour
 *
 * Offline: --migrate brings the database to the binary's schema and exits. This file is
 * the service's descriptor and the offline mode. (The daily Parquet archive is not built
 * yet: docs/ARCHIVER.md.)
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "himari/log.h"
#include "himari/service.h"
#include "pg.h"
#include "pipeline.h"

typedef struct ar_offline {
    bool migrate;
} ar_offline;

static const hm_service_option k_options[] = {
    {"migrate", NULL, "apply the sql/ migrations this binary holds to postgres.* and exit", true},
};

static int on_option(void *opts, size_t index, const char *arg) {
    HM_UNUSED(index);
    HM_UNUSED(arg);
    ((ar_offline *)opts)->migrate = true;
    return 0;
}

/* ---- --migrate: the service's own connection code, without the service ------------- */

typedef struct migrate_run {
    ar_pg *pg;
    int status;
} migrate_run;

static void on_migrate_state(ar_pg *pg, ar_pg_state state, void *ud) {
    migrate_run *r = ud;
    if (state == AR_PG_READY) {
        printf("migrate: storage %s, %zu migration(s) applied, database up to date\n",
               ar_pg_storage(pg), ar_pg_migrations_applied(pg));
        r->status = 0;
        ar_pg_close(pg);
    } else if (state == AR_PG_DOWN && ar_pg_fatal(pg)) {
        fprintf(stderr, "migrate: %s\n", ar_pg_last_error(pg));
        r->status = 1;
        ar_pg_close(pg);
    }
}

static int run_migrate(const ar_config *cfg) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    migrate_run r = {.status = 1};
    ar_pg_opts po = {.cfg = &cfg->pg, .migrate_only = true, .on_state = on_migrate_state, .ud = &r};
    r.pg = ar_pg_new(&loop, &po);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return r.status;
}

static int run_offline(void *cfg, void *opts) {
    HM_UNUSED(opts);
    return run_migrate(cfg);
}

/* ---- the service ------------------------------------------------------------------- */

static int start(hm_service *svc, void *cfg, void **ctx, hm_control_hooks *hooks, hm_err *err) {
    hm_stage *st = NULL;
    int rc = ar_pipeline_start(svc, cfg, &st, err);
    *ctx = st;
    *hooks = hm_stage_control_hooks;
    hooks->status = ar_pipeline_status;
    hooks->reconfigure = ar_pipeline_reconfigure;
    return rc;
}

static void free_stage(void *ctx) {
    hm_stage_free(ctx);
}

static const hm_service_desc k_service = {
    .id = HM_SVC_ARCHIVER,
    .summary = "Writes quality_scores into PostgreSQL (market_data, rejects, OHLCV candles),\n"
               "committing offsets only after the database committed.",
    .schema = &ar_config_schema,
    .options = k_options,
    .n_options = HM_ARRAY_LEN(k_options),
    .on_option = on_option,
    .run_offline = run_offline,
    .start = start,
    .free = free_stage,
};

int main(int argc, char **argv) {
    static ar_config cfg; /* lives as long as the process; the stage reads it */
    static ar_offline offline;
    return hm_service_main(argc, argv, &k_service, &cfg, &offline);
}
