/*
 * pipeline.c: the archiver in Kafka mode (pipeline.h): the stage framework's sink hooks
 * over the PostgreSQL connection (pg.h).
 *
 *   quality_scores --process--> pending (COPY rows, rows.h)
 *                   sink_flush: pending becomes the flushing batch, sent as one
 *                   transaction: ensure partitions; claim the batch's offsets; COPY
 *                   market_data, market_data_rejects, the batch's partial candles and day
 *                   counts (rollups.h); merge those into the candles and the day counts
 *                   committed --> hm_stage_sink_done(0): the batch's offsets are committed
 *                   archived  --> some rows were archived already (the claim says up to
 *                                 which offset per partition): they leave the batch, the
 *                                 rest is sent at once
 *                   failed    --> hm_stage_sink_done(-EIO): the framework holds the input
 *                                 and asks again after a back-off; the same batch is sent
 *
 * A record is in market_data (or market_data_rejects) before its offset is committed to
 * Kafka, and its offset is in archiver_offsets in the same transaction as the record. A
 * crash after the database committed and before Kafka did re-delivers the batch; the claim
 * finds those offsets archived, so they are taken out and add nothing (candles included).
 * Maintenance (partitions ahead, retention) runs between batches on the same connection.
 */
#include "pipeline.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exporter.h"
#include "himari/log.h"
#include "pg.h"
#include "rollups.h"
#include "rows.h"

#define MS_PER_DAY 86400000LL

/* A partition's offsets in a batch: [first, next). */
typedef struct ar_claim {
    int32_t partition;
    int64_t first, next;
} ar_claim;

typedef struct ar_kafka {
    hm_stage stage; /* first: the framework's part */
    ar_config *cfg;
    ar_pg *pg;
    ar_exporter *exporter; /* the cold archive's day-close checks */
    ar_rows batches[2];
    ar_rollups folds[2]; /* folds[i]: the candles and day counts of batches[i] so far */
    ar_rows *pending;    /* records processed since the last sink_flush */
    ar_rows *flushing;   /* the batch sink_flush took; kept until it committed */
    int64_t pending_oldest_ms, flushing_oldest_ms; /* Kafka timestamps; INT64_MAX: none */
    bool flush_open;      /* sink_flush called, hm_stage_sink_done not yet */
    bool flush_waiting;   /* ... and waiting for the maintenance query to end */
    bool batch_in_flight; /* the flushing batch's query is in the connection */
    bool maint_due, maint_in_flight;
    uv_timer_t maint_timer;
    bool timer_open;
    hm_buf sql;
    hm_buf candles, days; /* the flushing batch's partial candles and day counts */
    ar_claim *claims;     /* per partition of the flushing batch */
    size_t n_claims, cap_claims;
    uint64_t flush_started_ns;
    uint64_t batches_committed, batch_failures;
    int64_t last_batch_rows;
    char last_commit[32];
    /* metrics */
    hm_counter *inserted, *duplicates, *rejected;
    hm_metric_family *rejects_f;
    hm_histogram *batch_seconds, *commit_delay;
    hm_gauge *postgres_up, *backlog_rows;
} ar_kafka;

static ar_kafka *of(hm_stage *st) {
    return (ar_kafka *)st;
}

static ar_rollups *fold_of(ar_kafka *k, const ar_rows *b) {
    return &k->folds[b - k->batches];
}

/* Empty a batch and its fold. */
static void reset_batch(ar_kafka *k, ar_rows *b) {
    ar_rows_reset(b);
    ar_rollups_reset(fold_of(k, b));
}

/* ---- records ------------------------------------------------------------------------- */

static ar_rows_limits limits_now(const ar_kafka *k) {
    int64_t now_ms = hm_now_ms();
    ar_rows_limits lim = {.min_ts_ms = INT64_MIN,
                          .max_ts_ms = now_ms + k->cfg->max_future_s * 1000};
    if (k->cfg->retention_days > 0)
        lim.min_ts_ms = ((int64_t)ar_day_of_ms(now_ms) - k->cfg->retention_days) * MS_PER_DAY;
    return lim;
}

static void ar_process(hm_stage *st, const hm_stage_record *rec) {
    ar_kafka *k = of(st);
    const rd_kafka_message_t *m = rec->msg;
    ar_source src = {.topic = k->cfg->input_topic, .partition = m->partition, .offset = m->offset};
    ar_rows_limits lim = limits_now(k);
    ar_reject why = {0};
    ar_rows_add(k->pending, &src, m->payload, m->len, &lim, &why);
    /* Folded now, while the database works on the batch before: the send only writes. */
    ar_rollups_fold(fold_of(k, k->pending), k->pending);
    if (why.reason) {
        hm_counter_inc(hm_metrics_counter_child(k->rejects_f, why.reason));
        hm_log_limited(HM_LOG_WARN, "record_rejected", 10, HM_LI("partition", m->partition),
                       HM_LI("offset", m->offset), HM_LS("reason", why.reason),
                       HM_LS("field", why.field ? why.field : ""), HM_LS("detail", why.detail));
    }
    if (rec->ingest_ms >= 0 && rec->ingest_ms < k->pending_oldest_ms)
        k->pending_oldest_ms = rec->ingest_ms;
}

/* ---- the batch's transaction ---------------------------------------------------------- */

static void flush_now(ar_kafka *k);
static void maybe_maintain(ar_kafka *k);

/* The flush asked for by sink_flush ends: err 0 committed, else it is asked again. */
static void flush_done(ar_kafka *k, int err, const char *reason) {
    if (err) k->batch_failures++;
    k->flush_open = false;
    hm_stage_sink_done(&k->stage, err, reason);
}

static int by_partition(const void *a, const void *b) {
    int32_t x = ((const ar_claim *)a)->partition, y = ((const ar_claim *)b)->partition;
    return (x > y) - (x < y);
}

/* The offsets of the flushing batch per partition, in ascending partition order (the
 * order himari_claim_offsets locks them in). */
static void collect_claims(ar_kafka *k) {
    const ar_rows *b = k->flushing;
    k->n_claims = 0;
    for (size_t i = 0; i < b->n_rows; i++) {
        const ar_row *row = &b->rows[i];
        size_t c = 0;
        while (c < k->n_claims && k->claims[c].partition != row->partition)
            c++;
        if (c == k->n_claims) {
            if (k->n_claims == k->cap_claims) {
                k->cap_claims = k->cap_claims ? 2 * k->cap_claims : 16;
                k->claims = hm_xrealloc(k->claims, k->cap_claims * sizeof(*k->claims));
            }
            k->claims[k->n_claims++] = (ar_claim){row->partition, row->offset, row->offset + 1};
        }
        ar_claim *cl = &k->claims[c];
        if (row->offset < cl->first) cl->first = row->offset;
        if (row->offset >= cl->next) cl->next = row->offset + 1;
    }
    qsort(k->claims, k->n_claims, sizeof(*k->claims), by_partition);
}

static void put_array(hm_buf *b, const ar_kafka *k, int what) {
    hm_buf_puts(b, "'{");
    for (size_t i = 0; i < k->n_claims; i++) {
        const ar_claim *c = &k->claims[i];
        if (i) hm_buf_putc(b, ',');
        hm_buf_i64(b, what == 0 ? c->partition : what == 1 ? c->first : c->next);
    }
    hm_buf_puts(b, "}'");
}

/* One simple query: one implicit transaction, one round trip plus the COPY data. Fills
 * copies (in the order of the statements' COPYs). */
static size_t build_batch_sql(ar_kafka *k, ar_pg_copy *copies) {
    const ar_rows *b = k->flushing;
    size_t n = 0;
    hm_buf_reset(&k->sql);
    hm_buf_reset(&k->candles);
    hm_buf_reset(&k->days);
    if (b->n_days) {
        hm_buf_puts(&k->sql, "SELECT himari_ensure_partitions('{");
        for (size_t i = 0; i < b->n_days; i++) {
            char day[11];
            ar_day_format(b->days[i], day);
            if (i) hm_buf_putc(&k->sql, ',');
            hm_buf_puts(&k->sql, day);
        }
        hm_buf_puts(&k->sql, "}'::date[]);");
    }
    collect_claims(k);
    hm_buf_puts(&k->sql, "SELECT himari_claim_offsets('");
    for (const char *p = k->cfg->input_topic; *p; p++) {
        if (*p == '\'') hm_buf_putc(&k->sql, '\'');
        hm_buf_putc(&k->sql, *p);
    }
    hm_buf_puts(&k->sql, "', ");
    put_array(&k->sql, k, 0);
    hm_buf_puts(&k->sql, ", ");
    put_array(&k->sql, k, 1);
    hm_buf_puts(&k->sql, ", ");
    put_array(&k->sql, k, 2);
    hm_buf_puts(&k->sql, ");");
    if (b->accepted) {
        hm_buf_printf(&k->sql, "COPY market_data (%s) FROM STDIN (FORMAT binary);",
                      ar_rows_columns);
        copies[n++] = (ar_pg_copy){b->copy.data, b->copy.len};
    }
    if (b->rejected) {
        hm_buf_printf(&k->sql, "COPY market_data_rejects (%s) FROM STDIN;", ar_rows_reject_columns);
        copies[n++] = (ar_pg_copy){b->rejects.data, b->rejects.len};
    }
    /* On TimescaleDB the continuous aggregates follow market_data by themselves. */
    bool fold = strcmp(ar_pg_storage(k->pg), "timescaledb") != 0;
    size_t partials = ar_rollups_write(fold_of(k, b), b, &k->candles, &k->days);
    if (k->days.len) {
        hm_buf_printf(&k->sql, "COPY ar_batch_days (%s) FROM STDIN;", ar_rollups_day_columns);
        copies[n++] = (ar_pg_copy){k->days.data, k->days.len};
    }
    if (fold && partials) {
        hm_buf_printf(&k->sql, "COPY ar_candles (%s) FROM STDIN;", ar_rollups_candle_columns);
        copies[n++] = (ar_pg_copy){k->candles.data, k->candles.len};
    }
    hm_buf_puts(&k->sql, "SELECT himari_note_days(), himari_apply_rollups()");
    hm_buf_putc(&k->sql, '\0');
    return n;
}

/* "... himari_offsets_archived 3:4567 5:100 ..." (sql/007): the floors, or 0 when the
 * message is not that one. */
static size_t archived_floors(const char *reason, ar_offset_floor *out, size_t cap) {
    const char *p = reason ? strstr(reason, "himari_offsets_archived") : NULL;
    if (!p) return 0;
    p += strlen("himari_offsets_archived");
    size_t n = 0;
    int32_t part;
    long long next;
    int used;
    while (n < cap && sscanf(p, " %" SCNd32 ":%lld%n", &part, &next, &used) == 2) {
        out[n++] = (ar_offset_floor){part, (int64_t)next};
        p += used;
    }
    return n;
}

static void on_batch(ar_pg *pg, int err, const char *reason, const PGresult *last, void *ud) {
    HM_UNUSED(pg);
    ar_kafka *k = ud;
    k->batch_in_flight = false;
    double secs = (double)(hm_mono_ns() - k->flush_started_ns) / 1e9;
    if (!err && (!last || PQntuples(last) != 1)) {
        err = -EPROTO;
        reason = "the batch's last statement returned no row";
    }
    if (err) {
        ar_offset_floor floors[64];
        size_t nf = archived_floors(reason, floors, HM_ARRAY_LEN(floors));
        size_t dropped = nf ? ar_rows_drop_archived(k->flushing, floors, nf) : 0;
        if (dropped) {
            ar_rollups *ru = fold_of(k, k->flushing);
            ar_rollups_reset(ru); /* folded again from the rows left */
            ar_rollups_fold(ru, k->flushing);
            /* A redelivery: what is archived leaves the batch; the rest goes at once. */
            hm_counter_add(k->duplicates, (double)dropped);
            hm_log_info("archived_rows_dropped", HM_LI("rows", (int64_t)dropped),
                        HM_LI("left", (int64_t)ar_rows_count(k->flushing)));
            flush_now(k);
            return;
        }
        flush_done(k, -EIO, reason ? reason : "postgres: batch failed");
        maybe_maintain(k);
        return;
    }
    uint64_t ins = k->flushing->accepted, rej = k->flushing->rejected;
    hm_counter_add(k->inserted, (double)ins);
    hm_counter_add(k->rejected, (double)rej);
    hm_histogram_observe(k->batch_seconds, secs);
    int64_t now_ms = hm_now_ms();
    if (k->flushing_oldest_ms != INT64_MAX)
        hm_histogram_observe(k->commit_delay, (double)(now_ms - k->flushing_oldest_ms) / 1e3);
    k->batches_committed++;
    k->last_batch_rows = (int64_t)ar_rows_count(k->flushing);
    hm_log_debug("batch_committed", HM_LI("rows", k->last_batch_rows), HM_LI("inserted", ins),
                 HM_LI("rejected", rej), HM_LD("seconds", secs));
    reset_batch(k, k->flushing);
    k->flushing_oldest_ms = INT64_MAX;
    flush_done(k, 0, NULL);
    maybe_maintain(k);
}

static void flush_now(ar_kafka *k) {
    k->flush_waiting = false;
    if (ar_rows_count(k->flushing) == 0) {
        reset_batch(k, k->flushing); /* e.g. all of it was archived already */
        flush_done(k, 0, NULL);
        return;
    }
    ar_pg_state s = ar_pg_get_state(k->pg);
    if (s != AR_PG_READY) {
        /* Down, connecting or migrating: the framework holds the input and retries. */
        char why[600];
        const char *e = ar_pg_last_error(k->pg);
        snprintf(why, sizeof(why), "postgres %s%s%s", ar_pg_state_name(s), *e ? ": " : "", e);
        flush_done(k, -EIO, why);
        return;
    }
    ar_pg_copy copies[AR_PG_MAX_COPIES];
    size_t n_copies = build_batch_sql(k, copies);
    k->flush_started_ns = hm_mono_ns();
    k->batch_in_flight = true;
    if (ar_pg_query(k->pg, k->sql.data, copies, n_copies, on_batch, k) != 0) {
        k->batch_in_flight = false;
        flush_done(k, -EIO, "postgres: the batch could not be sent");
    }
}

static void ar_sink_flush(hm_stage *st) {
    ar_kafka *k = of(st);
    k->flush_open = true;
    if (ar_rows_count(k->flushing) == 0) {
        /* A new flush (a retry keeps the batch it failed with: the same offsets). */
        ar_rows *t = k->flushing;
        k->flushing = k->pending;
        k->pending = t;
        k->flushing_oldest_ms = k->pending_oldest_ms;
        k->pending_oldest_ms = INT64_MAX;
    }
    if (k->maint_in_flight) {
        k->flush_waiting = true; /* on_maintained sends it */
        return;
    }
    flush_now(k);
}

/* ---- maintenance: partitions ahead, retention ---------------------------------------- */

static void on_maintained(ar_pg *pg, int err, const char *reason, const PGresult *last, void *ud) {
    HM_UNUSED(pg);
    ar_kafka *k = ud;
    k->maint_in_flight = false;
    if (err) {
        hm_log_warn("maintenance_failed", HM_LS("error", reason ? reason : ""));
        k->maint_due = true; /* again when the connection is back */
    } else if (k->cfg->retention_days > 0 && last && PQntuples(last) == 1 &&
               atoll(PQgetvalue(last, 0, 0)) > 0) { /* the last result: partitions dropped */
        hm_log_info("partitions_dropped", HM_LS("count", PQgetvalue(last, 0, 0)),
                    HM_LI("retention_days", k->cfg->retention_days));
    }
    if (k->flush_waiting) flush_now(k);
}

static void maybe_maintain(ar_kafka *k) {
    if (!k->maint_due || k->flush_open || k->maint_in_flight ||
        ar_pg_get_state(k->pg) != AR_PG_READY)
        return;
    char sql[400];
    int64_t keep = k->cfg->retention_days;
    int n = snprintf(sql, sizeof(sql),
                     "SELECT himari_ensure_partitions(ARRAY(SELECT current_date + i FROM "
                     "generate_series(0, %" PRId64 ") AS i))",
                     k->cfg->partitions_ahead_days);
    if (keep > 0)
        snprintf(sql + n, sizeof(sql) - (size_t)n,
                 ";DELETE FROM market_data_days WHERE date < current_date - %" PRId64
                 ";SELECT count(*) FROM himari_drop_partitions_before(current_date - %" PRId64 ")",
                 keep, keep);
    k->maint_due = false;
    k->maint_in_flight = true;
    if (ar_pg_query(k->pg, sql, NULL, 0, on_maintained, k) != 0) {
        k->maint_in_flight = false;
        k->maint_due = true;
    }
}

static void on_maint_timer(uv_timer_t *t) {
    ar_kafka *k = t->data;
    k->maint_due = true;
    maybe_maintain(k);
}

static void on_pg_state(ar_pg *pg, ar_pg_state state, void *ud) {
    HM_UNUSED(pg);
    ar_kafka *k = ud;
    hm_gauge_set(k->postgres_up, state == AR_PG_READY || state == AR_PG_BUSY ? 1 : 0);
    if (state == AR_PG_READY) maybe_maintain(k);
}

/* ---- the other hooks ----------------------------------------------------------------- */

static void ar_drop_state(hm_stage *st, const int32_t *partitions, size_t n) {
    HM_UNUSED(partitions);
    HM_UNUSED(n);
    /* Called with every partition we own, once nothing is in flight: what was not
     * committed is read again by the partitions' next owner. */
    ar_kafka *k = of(st);
    reset_batch(k, k->pending);
    k->pending_oldest_ms = INT64_MAX;
    if (!k->batch_in_flight) {
        reset_batch(k, k->flushing);
        k->flushing_oldest_ms = INT64_MAX;
    }
}

static void collect(hm_metrics *m, void *ud) {
    HM_UNUSED(m);
    ar_kafka *k = ud;
    hm_gauge_set(k->backlog_rows, (double)(ar_rows_count(k->pending) + ar_rows_count(k->flushing)));
}

static void ar_closing(hm_stage *st) {
    ar_kafka *k = of(st);
    if (k->timer_open) {
        uv_close((uv_handle_t *)&k->maint_timer, NULL);
        k->timer_open = false;
    }
    if (k->pg) {
        ar_pg_close(k->pg);
        k->pg = NULL;
    }
    ar_exporter_close(k->exporter);
    k->exporter = NULL;
}

static void ar_destroy(hm_stage *st) {
    ar_kafka *k = of(st);
    if (st->svc->metrics) hm_metrics_remove_collect(st->svc->metrics, collect, k);
    ar_rows_free(&k->batches[0]);
    ar_rows_free(&k->batches[1]);
    ar_rollups_free(&k->folds[0]);
    ar_rollups_free(&k->folds[1]);
    hm_buf_free(&k->sql);
    hm_buf_free(&k->candles);
    hm_buf_free(&k->days);
    free(k->claims);
}

static const hm_stage_ops k_ops = {
    .process = ar_process,
    .drop_state = ar_drop_state,
    .sink_flush = ar_sink_flush,
    .closing = ar_closing,
    .destroy = ar_destroy,
};

/* ---- status, readiness ---------------------------------------------------------------- */

void ar_pipeline_status(void *ud, hm_control_status *out) {
    ar_kafka *k = ud;
    hm_stage_control_hooks.status(ud, out);
    ar_pg_state s = k->pg ? ar_pg_get_state(k->pg) : AR_PG_CLOSED;
    hm_control_status_detail(out, "postgres", "%s", ar_pg_state_name(s));
    hm_control_status_detail(out, "storage", "%s", k->pg ? ar_pg_storage(k->pg) : "");
    hm_control_status_detail(out, "backlog_rows", "%" PRIu64,
                             ar_rows_count(k->pending) + ar_rows_count(k->flushing));
    hm_control_status_detail(out, "pending_rows", "%" PRIu64, ar_rows_count(k->pending));
    hm_control_status_detail(out, "flushing_rows", "%" PRIu64, ar_rows_count(k->flushing));
    hm_control_status_detail(out, "batches_committed", "%" PRIu64, k->batches_committed);
    hm_control_status_detail(out, "batch_failures", "%" PRIu64, k->batch_failures);
    hm_control_status_detail(out, "last_batch_rows", "%" PRId64, k->last_batch_rows);
    if (k->pg && *ar_pg_last_error(k->pg))
        hm_control_status_detail(out, "postgres_error", "%s", ar_pg_last_error(k->pg));
    ar_exporter_status(k->exporter, out);
}

static bool ready(void *ud, char *reason, size_t size) {
    ar_kafka *k = ud;
    ar_pg_state s = k->pg ? ar_pg_get_state(k->pg) : AR_PG_CLOSED;
    if (s != AR_PG_READY && s != AR_PG_BUSY) {
        snprintf(reason, size, "postgres %s: %s", ar_pg_state_name(s),
                 k->pg ? ar_pg_last_error(k->pg) : "closed");
        return false;
    }
    return hm_stage_ready(ud, reason, size);
}

void ar_pipeline_reconfigure(void *ud) {
    ar_kafka *k = ud;
    hm_stage_set_commit_policy(&k->stage, k->cfg->batch_interval_ms, k->cfg->batch_max_rows);
    uint64_t every_ms = (uint64_t)k->cfg->maintenance_interval_s * 1000u;
    uv_timer_start(&k->maint_timer, on_maint_timer, every_ms, every_ms);
    ar_exporter_reconfigure(k->exporter);
    /* retention_days, partitions_ahead_days and max_future_s are read where they are used. */
}

/* ---- start ------------------------------------------------------------------------- */

static void register_metrics(ar_kafka *k, hm_metrics *m) {
    hm_metric_family *rows = hm_metrics_counter(
        m, "himari_archiver_rows_total",
        "Records by result: inserted (new in market_data), rejected (new in "
        "market_data_rejects), duplicate (archived already, in either: a redelivery, left "
        "out of its batch).",
        "result");
    k->inserted = hm_metrics_counter_child(rows, "inserted");
    k->duplicates = hm_metrics_counter_child(rows, "duplicate");
    k->rejected = hm_metrics_counter_child(rows, "rejected");
    k->rejects_f = hm_metrics_counter(
        m, "himari_archiver_rejects_total",
        "Records market_data cannot take, by reason (counted when read; a redelivered one "
        "counts again).",
        "reason");
    static const double k_secs[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    k->batch_seconds = hm_metrics_histogram_child(
        hm_metrics_histogram(m, "himari_archiver_batch_seconds",
                             "Time from sending a batch to PostgreSQL to its commit.", NULL, k_secs,
                             HM_ARRAY_LEN(k_secs)));
    static const double k_delay[] = {0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300};
    k->commit_delay = hm_metrics_histogram_child(hm_metrics_histogram(
        m, "himari_archiver_commit_delay_seconds",
        "Per batch: from the Kafka timestamp of its oldest record to its commit (the worst "
        "delay until a row is queryable).",
        NULL, k_delay, HM_ARRAY_LEN(k_delay)));
    k->postgres_up = hm_metrics_gauge_child(hm_metrics_gauge(
        m, "himari_archiver_postgres_up", "1 when the PostgreSQL connection is usable.", NULL));
    k->backlog_rows = hm_metrics_gauge_child(
        hm_metrics_gauge(m, "himari_archiver_backlog_rows",
                         "Rows read from Kafka and not yet committed to PostgreSQL.", NULL));
    hm_metrics_on_collect(m, collect, k);
}

int ar_pipeline_start(hm_service *svc, ar_config *cfg, hm_stage **out, hm_err *err) {
    hm_stage_opts o = {.shape = HM_STAGE_SINK,
                       .input_topic = cfg->input_topic,
                       .group_id = cfg->group_id,
                       .metrics_prefix = "himari_archiver",
                       .commit_interval_ms = cfg->batch_interval_ms,
                       .commit_max_records = cfg->batch_max_rows};
    hm_stage *st = hm_stage_new(svc, &o, &k_ops, sizeof(ar_kafka), err);
    *out = st;
    if (!st) return -EINVAL;
    ar_kafka *k = of(st);
    k->cfg = cfg;
    k->pending = &k->batches[0];
    k->flushing = &k->batches[1];
    k->pending_oldest_ms = k->flushing_oldest_ms = INT64_MAX;
    register_metrics(k, svc->metrics);
    ar_pg_opts po = {.cfg = &cfg->pg, .on_state = on_pg_state, .ud = k};
    k->pg = ar_pg_new(svc->loop, &po);
    k->maint_due = true;
    uv_timer_init(svc->loop, &k->maint_timer);
    k->maint_timer.data = k;
    uint64_t every_ms = (uint64_t)cfg->maintenance_interval_s * 1000u;
    uv_timer_start(&k->maint_timer, on_maint_timer, every_ms, every_ms);
    k->timer_open = true;
    k->exporter = ar_exporter_new(svc->loop, cfg, svc->metrics);
    int rc = hm_stage_start(st, err);
    if (rc != 0) {
        ar_closing(st); /* the loop must run out: close what was opened here */
        return rc;
    }
    hm_service_set_ready(svc, ready, k);
    hm_log_info("pipeline_started", HM_LS("input", cfg->input_topic), HM_LS("group", cfg->group_id),
                HM_LS("postgres", cfg->pg.host), HM_LI("batch_max_rows", cfg->batch_max_rows),
                HM_LI("batch_interval_ms", cfg->batch_interval_ms));
    return 0;
}
