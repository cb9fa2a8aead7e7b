/*
 * pipeline.c: the graph-writer in Kafka mode (pipeline.h): the stage framework's sink
 * hooks over the Neo4j client (neo4j.h).
 *
 *   causal_events --process--> pending batch (events.h); a record the graph cannot hold
 *                              goes to the dead-letter topic with why
 *   at start: the cypher/ files, one transaction each, retried until applied; until
 *             then a flush fails (the input is held)
 *   sink_flush: pending becomes the flushing batch, sent as one transaction
 *     committed  --> hm_stage_sink_done(0): the offsets are committed
 *     transient  --> hm_stage_sink_done(-EIO): input held, the same batch asked again
 *     refused    --> the batch again one event at a time; an event refused alone is kept
 *                    as a RejectedEvent node with Neo4j's reason; then committed
 *
 * Every write is a MERGE on the event id, so a redelivered batch changes nothing.
 */
#include "pipeline.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "himari/log.h"
#include "neo4j.h"
#include "schema.h"

typedef struct gw_kafka {
    hm_stage stage; /* first: the framework's part */
    gw_config *cfg;
    gw_neo4j *neo4j;
    gw_batch batches[2];
    gw_batch *pending, *flushing;
    int64_t pending_oldest_ms, flushing_oldest_ms; /* Kafka timestamps; INT64_MAX: none */
    bool in_flight;                                /* a request to Neo4j is out */
    size_t schema_applied;                         /* cypher/ files applied since start */
    bool schema_in_flight;
    uint64_t schema_retry_ms;
    uv_timer_t schema_timer;
    hm_buf schema_body;
    size_t split_at;      /* refused batch: the event being sent alone; SIZE_MAX: whole */
    bool split_rejecting; /* ... and it was refused alone: its RejectedEvent is being sent */
    hm_buf body;
    uint64_t started_ns;
    bool neo4j_up;
    char neo4j_error[400];
    uint64_t transactions, failures, events_rejected_by_neo4j;
    int64_t last_batch_events;
    /* metrics */
    hm_counter *written, *rejected_input, *rejected_neo4j;
    hm_histogram *txn_seconds, *commit_delay;
    hm_gauge *up, *backlog;
} gw_kafka;

static gw_kafka *of(hm_stage *st) {
    return (gw_kafka *)st;
}

static gw_windows windows_of(const gw_config *c) {
    return (gw_windows){.whale_s = c->whale_window_s,
                        .movement_s = c->movement_window_s,
                        .cascade_s = c->cascade_window_s};
}

/* ---- records ------------------------------------------------------------------------ */

static void gw_process(hm_stage *st, const hm_stage_record *rec) {
    gw_kafka *k = of(st);
    const rd_kafka_message_t *m = rec->msg;
    gw_reject why;
    if (gw_batch_add(k->pending, m->payload, m->len, &why) != 0) {
        char reason[200];
        snprintf(reason, sizeof(reason), "%s%s%s", why.field, *why.field ? ": " : "", why.detail);
        hm_stage_send_dlq(st, m, reason);
        hm_counter_inc(k->rejected_input);
        hm_log_limited(HM_LOG_WARN, "event_rejected", 10, HM_LI("partition", m->partition),
                       HM_LI("offset", m->offset), HM_LS("field", why.field),
                       HM_LS("detail", why.detail));
        return;
    }
    if (rec->ingest_ms >= 0 && rec->ingest_ms < k->pending_oldest_ms)
        k->pending_oldest_ms = rec->ingest_ms;
}

/* ---- transactions ----------------------------------------------------------------------- */

static void send_next(gw_kafka *k);
static void send_body(gw_kafka *k);

static void flush_done(gw_kafka *k, int err, const char *reason) {
    if (err) k->failures++;
    hm_stage_sink_done(&k->stage, err, reason);
}

static void note(gw_kafka *k, const gw_neo4j_result *r) {
    k->neo4j_up = r->outcome != GW_NEO4J_TRANSIENT;
    hm_gauge_set(k->up, k->neo4j_up ? 1 : 0);
    if (r->outcome != GW_NEO4J_OK)
        snprintf(k->neo4j_error, sizeof(k->neo4j_error), "%s", r->message);
}

static void committed(gw_kafka *k) {
    hm_histogram_observe(k->txn_seconds, (double)(hm_mono_ns() - k->started_ns) / 1e9);
    if (k->flushing_oldest_ms != INT64_MAX)
        hm_histogram_observe(k->commit_delay, (double)(hm_now_ms() - k->flushing_oldest_ms) / 1e3);
    hm_counter_add(k->written, (double)k->flushing->total);
    k->transactions++;
    k->last_batch_events = (int64_t)k->flushing->total;
    gw_batch_reset(k->flushing);
    k->flushing_oldest_ms = INT64_MAX;
    k->split_at = SIZE_MAX;
    flush_done(k, 0, NULL);
}

static void on_answer(void *ud, const gw_neo4j_result *r) {
    gw_kafka *k = ud;
    k->in_flight = false;
    note(k, r);
    if (r->outcome == GW_NEO4J_TRANSIENT) {
        k->split_at = SIZE_MAX; /* the retry starts from the whole batch again */
        k->split_rejecting = false;
        flush_done(k, -EIO, r->message);
        return;
    }
    if (r->outcome == GW_NEO4J_OK) {
        if (k->split_at == SIZE_MAX) {
            committed(k);
            return;
        }
        k->split_rejecting = false;
        if (++k->split_at >= k->flushing->total) {
            committed(k);
            return;
        }
        send_next(k);
        return;
    }
    /* Refused. */
    if (k->split_at == SIZE_MAX) {
        hm_log_warn("batch_refused", HM_LI("events", k->flushing->total),
                    HM_LS("error", r->message));
        k->split_at = 0; /* one event at a time */
    } else if (!k->split_rejecting) {
        const gw_event *e = &k->flushing->ev[k->split_at];
        hm_log_error("event_refused_by_neo4j", HM_LS("kind", gw_kind_name(e->kind)),
                     HM_LS("error", r->message));
        k->events_rejected_by_neo4j++;
        hm_counter_inc(k->rejected_neo4j);
        k->split_rejecting = true;
        hm_buf_reset(&k->body);
        gw_rejected_body(k->flushing, k->split_at, r->message, &k->body);
        send_body(k);
        return;
    } else {
        /* Even the RejectedEvent was refused: nothing is dropped; held and retried. */
        k->split_rejecting = false;
        k->split_at = SIZE_MAX;
        flush_done(k, -EIO, r->message);
        return;
    }
    send_next(k);
}

static void send_body(gw_kafka *k) {
    k->in_flight = true;
    if (gw_neo4j_commit(k->neo4j, k->body.data, k->body.len, on_answer, k) != 0) {
        k->in_flight = false;
        flush_done(k, -EIO, "neo4j: the request could not be made");
    }
}

/* The next request of the flush: the batch, or one event of a split. */
static void send_next(gw_kafka *k) {
    hm_buf_reset(&k->body);
    gw_windows w = windows_of(k->cfg);
    if (k->split_at == SIZE_MAX) {
        gw_batch_body(k->flushing, &w, &k->body);
    } else {
        gw_batch_body_range(k->flushing, k->split_at, k->split_at + 1, &w, &k->body);
    }
    send_body(k);
}

static void gw_sink_flush(hm_stage *st) {
    gw_kafka *k = of(st);
    if (k->flushing->total == 0) {
        /* A new flush (a retry keeps the batch it failed with: the same offsets). */
        gw_batch *t = k->flushing;
        k->flushing = k->pending;
        k->pending = t;
        k->flushing_oldest_ms = k->pending_oldest_ms;
        k->pending_oldest_ms = INT64_MAX;
    }
    if (k->flushing->total == 0) {
        flush_done(k, 0, NULL);
        return;
    }
    if (k->schema_applied < gw_cypher_file_count) {
        /* Writes wait for the constraints that make them idempotent. */
        char why[480];
        snprintf(why, sizeof(why), "neo4j schema not applied yet%s%s", *k->neo4j_error ? ": " : "",
                 k->neo4j_error);
        flush_done(k, -EIO, why);
        return;
    }
    k->started_ns = hm_mono_ns();
    k->split_at = SIZE_MAX;
    k->split_rejecting = false;
    send_next(k);
}

/* ---- the schema: cypher/ files at start, one transaction each, retried until done --------- */

static void schema_next(gw_kafka *k);

static void on_schema_timer(uv_timer_t *t) {
    schema_next(t->data);
}

static void on_schema(void *ud, const gw_neo4j_result *r) {
    gw_kafka *k = ud;
    k->schema_in_flight = false;
    if (!k->neo4j) return; /* closing */
    note(k, r);
    const char *name = gw_cypher_files[k->schema_applied].name;
    if (r->outcome != GW_NEO4J_OK) {
        k->schema_retry_ms = k->schema_retry_ms ? k->schema_retry_ms * 2 : 250;
        if (k->schema_retry_ms > 5000) k->schema_retry_ms = 5000;
        hm_log_limited(r->outcome == GW_NEO4J_REFUSED ? HM_LOG_ERROR : HM_LOG_WARN,
                       "schema_not_applied", 6, HM_LS("file", name), HM_LS("error", r->message),
                       HM_LI("retry_ms", k->schema_retry_ms));
        uv_timer_start(&k->schema_timer, on_schema_timer, k->schema_retry_ms, 0);
        return;
    }
    k->schema_retry_ms = 0;
    hm_log_info("schema_applied", HM_LS("file", name), HM_LD("seconds", r->seconds));
    k->schema_applied++;
    schema_next(k);
}

static void schema_next(gw_kafka *k) {
    if (!k->neo4j || k->schema_in_flight || k->schema_applied >= gw_cypher_file_count) return;
    const hm_embedded_file *f = &gw_cypher_files[k->schema_applied];
    hm_buf_reset(&k->schema_body);
    gw_schema_body(f->text, f->len, &k->schema_body);
    k->schema_in_flight = true;
    if (gw_neo4j_commit(k->neo4j, k->schema_body.data, k->schema_body.len, on_schema, k) != 0) {
        k->schema_in_flight = false;
        uv_timer_start(&k->schema_timer, on_schema_timer, 1000, 0);
    }
}

/* ---- the other hooks ------------------------------------------------------------------ */

static void gw_drop_state(hm_stage *st, const int32_t *partitions, size_t n) {
    HM_UNUSED(partitions);
    HM_UNUSED(n);
    gw_kafka *k = of(st);
    gw_batch_reset(k->pending);
    k->pending_oldest_ms = INT64_MAX;
    if (!k->in_flight) {
        gw_batch_reset(k->flushing);
        k->flushing_oldest_ms = INT64_MAX;
    }
}

static void collect(hm_metrics *m, void *ud) {
    HM_UNUSED(m);
    gw_kafka *k = ud;
    hm_gauge_set(k->backlog, (double)(k->pending->total + k->flushing->total));
}

static void gw_closing(hm_stage *st) {
    gw_kafka *k = of(st);
    if (!uv_is_closing((uv_handle_t *)&k->schema_timer))
        uv_close((uv_handle_t *)&k->schema_timer, NULL);
    gw_neo4j *n = k->neo4j;
    k->neo4j = NULL;
    gw_neo4j_close(n); /* an answer in flight is called back now, as transient */
}

static void gw_destroy(hm_stage *st) {
    gw_kafka *k = of(st);
    if (st->svc->metrics) hm_metrics_remove_collect(st->svc->metrics, collect, k);
    gw_batch_free(&k->batches[0]);
    gw_batch_free(&k->batches[1]);
    hm_buf_free(&k->body);
    hm_buf_free(&k->schema_body);
}

static const hm_stage_ops k_ops = {
    .process = gw_process,
    .drop_state = gw_drop_state,
    .sink_flush = gw_sink_flush,
    .closing = gw_closing,
    .destroy = gw_destroy,
};

/* ---- status, readiness ------------------------------------------------------------------- */

void gw_pipeline_status(void *ud, hm_control_status *out) {
    gw_kafka *k = ud;
    hm_stage_control_hooks.status(ud, out);
    hm_control_status_detail(out, "neo4j", "%s", k->neo4j_up ? "up" : "down");
    hm_control_status_detail(out, "schema", "%s",
                             k->schema_applied == gw_cypher_file_count ? "applied" : "pending");
    hm_control_status_detail(out, "backlog_events", "%zu", k->pending->total + k->flushing->total);
    hm_control_status_detail(out, "transactions_committed", "%" PRIu64, k->transactions);
    hm_control_status_detail(out, "transaction_failures", "%" PRIu64, k->failures);
    hm_control_status_detail(out, "events_rejected_by_neo4j", "%" PRIu64,
                             k->events_rejected_by_neo4j);
    hm_control_status_detail(out, "last_batch_events", "%" PRId64, k->last_batch_events);
    if (*k->neo4j_error) hm_control_status_detail(out, "neo4j_error", "%s", k->neo4j_error);
}

static bool ready(void *ud, char *reason, size_t size) {
    gw_kafka *k = ud;
    if (!k->neo4j_up) {
        snprintf(reason, size, "neo4j down: %s",
                 *k->neo4j_error ? k->neo4j_error : "not reached yet");
        return false;
    }
    return hm_stage_ready(ud, reason, size);
}

void gw_pipeline_reconfigure(void *ud) {
    gw_kafka *k = ud;
    hm_stage_set_commit_policy(&k->stage, k->cfg->batch_interval_ms, k->cfg->batch_max_events);
    /* The link windows and neo4j.* are read at each transaction. */
}

/* ---- start ---------------------------------------------------------------------------------- */

static void register_metrics(gw_kafka *k, hm_metrics *m) {
    hm_metric_family *ev = hm_metrics_counter(
        m, "himari_graph_events_total",
        "Events by result: written (committed in a graph transaction; a redelivery counts "
        "again and changes nothing), rejected_input (not an event the graph holds: to the "
        "dead-letter topic), rejected_by_neo4j (kept as a RejectedEvent node).",
        "result");
    k->written = hm_metrics_counter_child(ev, "written");
    k->rejected_input = hm_metrics_counter_child(ev, "rejected_input");
    k->rejected_neo4j = hm_metrics_counter_child(ev, "rejected_by_neo4j");
    static const double k_secs[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    k->txn_seconds = hm_metrics_histogram_child(hm_metrics_histogram(
        m, "himari_graph_transaction_seconds", "Time from sending a batch to Neo4j to its commit.",
        NULL, k_secs, HM_ARRAY_LEN(k_secs)));
    static const double k_delay[] = {0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300};
    k->commit_delay = hm_metrics_histogram_child(hm_metrics_histogram(
        m, "himari_graph_commit_delay_seconds",
        "Per batch: from the Kafka timestamp of its oldest event to its commit (the worst "
        "delay until an event is queryable).",
        NULL, k_delay, HM_ARRAY_LEN(k_delay)));
    k->up = hm_metrics_gauge_child(hm_metrics_gauge(
        m, "himari_graph_neo4j_up", "1 when Neo4j answered the last request.", NULL));
    k->backlog = hm_metrics_gauge_child(
        hm_metrics_gauge(m, "himari_graph_backlog_events",
                         "Events read from Kafka and not yet committed to Neo4j.", NULL));
    hm_metrics_on_collect(m, collect, k);
}

int gw_pipeline_start(hm_service *svc, gw_config *cfg, hm_stage **out, hm_err *err) {
    hm_stage_opts o = {.shape = HM_STAGE_SINK,
                       .input_topic = cfg->input_topic,
                       .group_id = cfg->group_id,
                       .dlq_topic = cfg->dlq_topic,
                       .metrics_prefix = "himari_graph",
                       .commit_interval_ms = cfg->batch_interval_ms,
                       .commit_max_records = cfg->batch_max_events};
    hm_stage *st = hm_stage_new(svc, &o, &k_ops, sizeof(gw_kafka), err);
    *out = st;
    if (!st) return -EINVAL;
    gw_kafka *k = of(st);
    k->cfg = cfg;
    gw_batch_init(&k->batches[0]);
    gw_batch_init(&k->batches[1]);
    k->pending = &k->batches[0];
    k->flushing = &k->batches[1];
    k->pending_oldest_ms = k->flushing_oldest_ms = INT64_MAX;
    k->split_at = SIZE_MAX;
    register_metrics(k, svc->metrics);
    uv_timer_init(svc->loop, &k->schema_timer);
    k->schema_timer.data = k;
    k->neo4j = gw_neo4j_new(svc->loop, &cfg->neo4j);
    if (!k->neo4j) {
        uv_close((uv_handle_t *)&k->schema_timer, NULL);
        return hm_err_set(err, -ENOMEM, "neo4j client: out of memory");
    }
    schema_next(k);
    int rc = hm_stage_start(st, err);
    if (rc != 0) {
        gw_closing(st);
        return rc;
    }
    hm_service_set_ready(svc, ready, k);
    hm_log_info("pipeline_started", HM_LS("input", cfg->input_topic), HM_LS("group", cfg->group_id),
                HM_LS("neo4j", cfg->neo4j.url), HM_LI("batch_max_events", cfg->batch_max_events),
                HM_LI("batch_interval_ms", cfg->batch_interval_ms));
    return 0;
}
