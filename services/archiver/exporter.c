/*
 * exporter.c: the day-close scheduler (exporter.h).
 *
 *   timer (check_interval_s) --> pass: settings copied on the loop thread
 *     worker: connect, ar_export_due, [S3: open, ensure bucket], ar_export_one per day
 *     loop:   log each day, metrics, status; more due than one pass takes: next pass now
 */
#include "exporter.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"
#include "himari/log.h"

#define DAYS_PER_PASS 32
#define ERR_LEN       512

typedef struct day_done {
    ar_export_result res;
    int rc;
    char err[ERR_LEN];
} day_done;

typedef struct pass {
    uv_work_t req;
    ar_exporter *e;
    ar_export_settings s;
    int64_t grace_s, retention_days;
    day_done days[DAYS_PER_PASS];
    size_t n_days, n_due;
    int rc; /* the pass itself: connect, due query, S3 bucket */
    char err[ERR_LEN];
} pass;

struct ar_exporter {
    uv_loop_t *loop;
    const ar_config *cfg;
    uv_timer_t timer;
    ar_export_ctl ctl;
    pass *running;
    bool closing, timer_closed; /* freed when both the timer and a running pass ended */
    uint64_t exported, failed;
    int64_t rows_exported;
    char last_key[AR_EXPORT_KEY_MAX];
    char last_error[ERR_LEN];
    hm_counter *ok, *failures, *rows, *bytes;
    hm_gauge *last_success;
};

/* ---- the worker --------------------------------------------------------------------- */

static void on_day(void *ud, const ar_export_day *day, int rc, const ar_export_result *res,
                   const char *err) {
    pass *p = ud;
    day_done *d = &p->days[p->n_days++];
    d->res = *res;
    d->res.day = *day;
    d->rc = rc;
    snprintf(d->err, sizeof(d->err), "%s", err);
}

static void pass_run(uv_work_t *req) {
    pass *p = req->data;
    PGconn *c = NULL;
    ar_export_day *due = NULL;
    p->rc = ar_export_connect(&p->s, &c, p->err, sizeof(p->err));
    if (p->rc == 0)
        p->rc = ar_export_due(c, p->grace_s, p->retention_days, DAYS_PER_PASS, &due, &p->n_due,
                              p->err, sizeof(p->err));
    if (p->rc == 0)
        p->rc =
            ar_export_days(&c, &p->s, due, p->n_due, &p->e->ctl, on_day, p, p->err, sizeof(p->err));
    free(due);
    PQfinish(c);
}

/* ---- the loop ----------------------------------------------------------------------- */

static void start_pass(ar_exporter *e);

static void note_error(ar_exporter *e, const char *err) {
    snprintf(e->last_error, sizeof(e->last_error), "%s", err);
}

static void log_day(ar_exporter *e, const day_done *d) {
    const ar_export_result *r = &d->res;
    if (d->rc != 0) {
        e->failed++;
        if (e->failures) hm_counter_inc(e->failures);
        note_error(e, d->err);
        hm_log_error("archive_export_failed", HM_LS("date", r->day.date),
                     HM_LS("exchange", r->day.exchange), HM_LS("error", d->err));
        return;
    }
    e->exported++;
    e->rows_exported += r->rows;
    snprintf(e->last_key, sizeof(e->last_key), "%s", r->key);
    if (e->ok) {
        hm_counter_inc(e->ok);
        hm_counter_add(e->rows, (double)r->rows);
        hm_counter_add(e->bytes, (double)r->bytes);
        hm_gauge_set(e->last_success, (double)hm_now_ms() / 1000.0);
    }
    hm_log_info("archive_exported", HM_LS("date", r->day.date), HM_LS("exchange", r->day.exchange),
                HM_LS("destination", r->destination), HM_LI("rows", r->rows),
                HM_LI("bytes", r->bytes), HM_LI("json_bytes", r->json_bytes),
                HM_LI("parts", r->put.parts), HM_LI("retries", r->put.retries),
                HM_LD("query_s", r->query_s), HM_LD("write_s", r->write_s),
                HM_LD("upload_s", r->upload_s));
}

static void pass_done(uv_work_t *req, int status) {
    HM_UNUSED(status);
    pass *p = req->data;
    ar_exporter *e = p->e;
    e->running = NULL;
    for (size_t i = 0; i < p->n_days; i++)
        log_day(e, &p->days[i]);
    if (p->rc != 0) {
        note_error(e, p->err);
        hm_log_error("archive_check_failed", HM_LS("error", p->err));
    }
    bool more = p->rc == 0 && p->n_due == DAYS_PER_PASS;
    ar_export_settings_free(&p->s);
    free(p);
    if (e->closing) {
        if (e->timer_closed) free(e);
        return;
    }
    if (more) start_pass(e); /* a backlog of days: go on at once */
}

static void start_pass(ar_exporter *e) {
    if (e->running || e->closing || !e->cfg->archive_enabled) return;
    pass *p = calloc(1, sizeof(*p));
    if (!p || ar_export_settings_init(&p->s, e->cfg) != 0) {
        free(p);
        note_error(e, "out of memory starting an export pass");
        return;
    }
    p->e = e;
    p->req.data = p;
    p->grace_s = e->cfg->archive_grace_s;
    p->retention_days = e->cfg->retention_days;
    int rc = uv_queue_work(e->loop, &p->req, pass_run, pass_done);
    if (rc != 0) {
        note_error(e, uv_strerror(rc));
        ar_export_settings_free(&p->s);
        free(p);
        return;
    }
    e->running = p;
}

static void on_timer(uv_timer_t *t) {
    start_pass(t->data);
}

static void register_metrics(ar_exporter *e, hm_metrics *m) {
    hm_metric_family *days = hm_metrics_counter(
        m, "himari_archiver_archive_exports_total",
        "Day files (date, exchange) written to the cold archive, by result.", "result");
    e->ok = hm_metrics_counter_child(days, "ok");
    e->failures = hm_metrics_counter_child(days, "failed");
    e->rows = hm_metrics_counter_child(hm_metrics_counter(
        m, "himari_archiver_archive_rows_total", "Rows written to cold archive files.", NULL));
    e->bytes = hm_metrics_counter_child(
        hm_metrics_counter(m, "himari_archiver_archive_bytes_total",
                           "Bytes of Parquet files written to the cold archive.", NULL));
    e->last_success = hm_metrics_gauge_child(hm_metrics_gauge(
        m, "himari_archiver_archive_last_export_timestamp_seconds",
        "When the last day file was stored (Unix time; 0: none since start).", NULL));
}

ar_exporter *ar_exporter_new(uv_loop_t *loop, const ar_config *cfg, hm_metrics *m) {
    ar_exporter *e = calloc(1, sizeof(*e));
    if (!e) return NULL;
    e->loop = loop;
    e->cfg = cfg;
    atomic_init(&e->ctl.cancel, false);
    atomic_init(&e->ctl.rows_done, 0);
    if (m) register_metrics(e, m);
    uv_timer_init(loop, &e->timer);
    e->timer.data = e;
    uint64_t every_ms = (uint64_t)cfg->archive_check_interval_s * 1000u;
    uv_timer_start(&e->timer, on_timer, 1000, every_ms);
    return e;
}

void ar_exporter_reconfigure(ar_exporter *e) {
    if (!e) return;
    uint64_t every_ms = (uint64_t)e->cfg->archive_check_interval_s * 1000u;
    uv_timer_start(&e->timer, on_timer, every_ms, every_ms);
}

void ar_exporter_status(const ar_exporter *e, hm_control_status *out) {
    if (!e) return;
    const ar_config *c = e->cfg;
    hm_control_status_detail(out, "archive", "%s",
                             !c->archive_enabled ? "disabled"
                             : e->running        ? "exporting"
                                                 : "idle");
    if (c->s3.endpoint && *c->s3.endpoint)
        hm_control_status_detail(out, "archive_destination", "s3://%s at %s", c->s3.bucket,
                                 c->s3.endpoint);
    else
        hm_control_status_detail(out, "archive_destination", "%s", c->archive_directory);
    hm_control_status_detail(out, "archive_files_exported", "%" PRIu64, e->exported);
    hm_control_status_detail(out, "archive_export_failures", "%" PRIu64, e->failed);
    hm_control_status_detail(out, "archive_rows_exported", "%" PRId64, e->rows_exported);
    if (e->running)
        hm_control_status_detail(out, "archive_rows_in_progress", "%" PRId64,
                                 (int64_t)atomic_load(&e->ctl.rows_done));
    if (*e->last_key) hm_control_status_detail(out, "archive_last_file", "%s", e->last_key);
    if (*e->last_error) hm_control_status_detail(out, "archive_last_error", "%s", e->last_error);
}

static void free_after_close(uv_handle_t *h) {
    ar_exporter *e = h->data;
    e->timer_closed = true;
    if (!e->running) free(e); /* else pass_done frees it */
}

void ar_exporter_close(ar_exporter *e) {
    if (!e || e->closing) return;
    e->closing = true;
    atomic_store(&e->ctl.cancel, true);
    uv_close((uv_handle_t *)&e->timer, free_after_close);
}
