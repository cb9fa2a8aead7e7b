/*
 * archiver: quality records into PostgreSQL (warm storage, exact OHLCV candles).
 *
 *   quality_scores --> [pipeline: COPY batches, offsets committed after the database]
 *                        --> market_data, market_data_rejects, ohlcv_5min, ohlcv_1hour
 *
 *   closed days --> [exporter: worker thread] --> Parquet per (date, exchange) --> S3 | dir
 *
 * Offline: --migrate brings the database to the binary's schema and exits; --export-day
 * DATE [--exchange X] writes that day's files now (a day still open included) and exits.
 * This file is the service's descriptor and the offline modes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "export.h"
#include "himari/log.h"
#include "himari/service.h"
#include "pg.h"
#include "pipeline.h"

typedef struct ar_offline {
    bool migrate;
    const char *export_day; /* YYYY-MM-DD */
    const char *exchange;   /* NULL: every exchange of the day */
} ar_offline;

enum { OPT_MIGRATE, OPT_EXPORT_DAY, OPT_EXCHANGE };
static const hm_service_option k_options[] = {
    [OPT_MIGRATE] = {"migrate", NULL,
                     "apply the sql/ migrations this binary holds to postgres.* and exit", true},
    [OPT_EXPORT_DAY] = {"export-day", "DATE",
                        "write the Parquet files of DATE (YYYY-MM-DD, UTC) to the archive now "
                        "and exit",
                        true},
    [OPT_EXCHANGE] = {"exchange", "NAME", "with --export-day: only this exchange's file", false},
};

static int on_option(void *opts, size_t index, const char *arg) {
    ar_offline *o = opts;
    switch (index) {
        case OPT_MIGRATE:
            o->migrate = true;
            return 0;
        case OPT_EXPORT_DAY:
            if (!ar_export_date_valid(arg)) {
                fprintf(stderr, "archiver: --export-day: '%s' is not a date (YYYY-MM-DD)\n", arg);
                return -1;
            }
            o->export_day = arg;
            return 0;
        default:
            o->exchange = arg;
            return 0;
    }
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

/* ---- --export-day: the exporter's code, on this thread, with progress on stdout ------ */

typedef struct export_tally {
    const ar_export_settings *s;
    int written, failed;
} export_tally;

static void print_day(void *ud, const ar_export_day *day, int rc, const ar_export_result *r,
                      const char *err) {
    export_tally *t = ud;
    if (rc != 0) {
        fprintf(stderr, "export: %s %s: %s\n", day->date, day->exchange, err);
        t->failed++;
        return;
    }
    t->written++;
    printf("export: %s %s: %" PRId64 " rows, %.2f MB %s (%.1f:1 vs the rows as JSON lines) -> %s "
           "(query %.2f s, write %.2f s, upload %.2f s, %d part(s), %d retries)\n",
           day->date, day->exchange, r->rows, (double)r->bytes / 1e6, ar_pq_codec_name(t->s->codec),
           r->bytes > 0 ? (double)r->json_bytes / (double)r->bytes : 0.0, r->destination,
           r->query_s, r->write_s, r->upload_s, r->put.parts, r->put.retries);
    fflush(stdout);
}

static int export_days(const ar_export_settings *s, PGconn **c, const ar_export_day *days,
                       size_t n) {
    printf("export: %zu file(s) to write for %s, to %s\n", n, days[0].date,
           ar_export_uses_s3(s) ? s->s3.endpoint : s->directory);
    fflush(stdout);
    ar_export_ctl ctl;
    atomic_init(&ctl.cancel, false);
    atomic_init(&ctl.rows_done, 0);
    export_tally t = {.s = s};
    char err[512];
    int rc = ar_export_days(c, s, days, n, &ctl, print_day, &t, err, sizeof(err));
    if (rc != 0) fprintf(stderr, "export: stopped: %s\n", err);
    printf("export: %d file(s) written, %d failed\n", t.written, (int)n - t.written);
    return rc != 0 || t.failed ? 1 : 0;
}

static int run_export(const ar_config *cfg, const ar_offline *o) {
    ar_export_settings s;
    if (ar_export_settings_init(&s, cfg) != 0) {
        fprintf(stderr, "export: out of memory\n");
        return 1;
    }
    char err[512];
    PGconn *c = NULL;
    ar_export_day *days = NULL;
    size_t n = 0;
    int status = 1;
    if (ar_export_connect(&s, &c, err, sizeof(err)) != 0 ||
        ar_export_days_of(c, o->export_day, o->exchange, &days, &n, err, sizeof(err)) != 0) {
        fprintf(stderr, "export: %s (is the database migrated? archiver --migrate)\n", err);
    } else if (n == 0) {
        fprintf(stderr, "export: no rows in market_data on %s%s%s: nothing to write\n",
                o->export_day, o->exchange ? " for " : "", o->exchange ? o->exchange : "");
    } else {
        status = export_days(&s, &c, days, n);
    }
    free(days);
    PQfinish(c);
    ar_export_settings_free(&s);
    return status;
}

static int run_offline(void *cfg, void *opts) {
    const ar_offline *o = opts;
    if (o->migrate && o->export_day) {
        fprintf(stderr, "archiver: --migrate and --export-day are two runs\n");
        return 2;
    }
    if (o->exchange && !o->export_day) {
        fprintf(stderr, "archiver: --exchange goes with --export-day\n");
        return 2;
    }
    return o->export_day ? run_export(cfg, o) : run_migrate(cfg);
}

/* ---- the service ------------------------------------------------------------------- */

static int start(hm_service *svc, void *cfg, void **ctx, hm_control_hooks *hooks, hm_err *err) {
    hm_stage *st = NULL;
    int rc = ar_pipeline_start(svc, cfg, &st, err);
    return hm_stage_service_started(rc, st, ctx, hooks, ar_pipeline_status,
                                    ar_pipeline_reconfigure);
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
    .free = hm_stage_service_free,
};

int main(int argc, char **argv) {
    static ar_config cfg; /* lives as long as the process; the stage reads it */
    static ar_offline offline;
    return hm_service_main(argc, argv, &k_service, &cfg, &offline);
}
