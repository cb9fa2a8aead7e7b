/*
 * pipeline.c: the ingest-validator in Kafka mode, exactly once.
 *
 * Consume-transform-produce in Kafka transactions:
 *
 *   raw_market_data[p] --consumer--> engine --producer (txn)--> quality_scores
 *                                      |                      -> raw_market_data.dlq
 *                                      |                      -> causal_events (events)
 *                                      '- dirty state ------> ingest-validator.changelog[p]
 *                                                             + consumed offsets (cgmd)
 *
 * A transaction is committed every commit_interval_ms or commit_max_records
 * records, whichever comes first. The consumer is held while a commit runs
 * (the producer refuses sends then). Because outputs, changelog and offsets
 * commit atomically, the state restored from the changelog always matches the
 * committed offsets: after a crash, a restart (same transactional id fences
 * the old instance) or a rebalance, processing resumes exactly where the last
 * commit left it, with the state it had then.
 *
 * State life cycle per partition: on assignment, read its changelog partition
 * to the end (hm_reader) into the engine, then complete the assignment; on
 * revocation, commit what is open, drop the state, then unassign. An abortable
 * transaction error aborts, forgets all state and re-restores ("rewind"); a
 * fatal one (fenced by a newer instance) stops the service with status 1.
 *
 * Never drops a record: a full producer queue holds the consumer and keeps the
 * unsent message until there is room; a record is only acknowledged to Kafka
 * (its offset committed) in the transaction that carries its outputs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "himari/log.h"
#include "himari/topics.h"
#include "pipeline.h"

#define RESTORE_TIMEOUT_MS    120000
#define MAX_EXCHANGE_CHILDREN 32

/* A message that could not be enqueued yet (producer queue full). */
typedef struct stash_msg {
    char *topic;
    int32_t partition;
    char *key;
    size_t key_len;
    char *val;
    size_t val_len;
    rd_kafka_headers_t *hdrs;
    void *opaque;
} stash_msg;

typedef enum pl_phase {
    PL_STARTING, /* transactions not initialised yet */
    PL_RUNNING,
    PL_STOPPING, /* committing the last transaction, leaving the group */
    PL_STOPPED,
} pl_phase;

struct iv_pipeline {
    hm_service *svc;
    iv_config *cfg;
    uv_loop_t *loop;
    iv_engine *engine;
    hm_consumer *consumer;
    hm_producer *producer;
    pl_phase phase;
    char txn_id[256];

    /* transactions */
    bool txn_ready; /* init_transactions done */
    bool fenced;    /* a newer instance took over: commit nothing more */
    bool txn_open;
    bool committing;
    bool aborting;
    uint64_t txn_records;
    uint64_t txn_opened_ms;
    uv_timer_t commit_timer;
    uint64_t last_sweep_ms; /* loop time of the last TTL sweep */

    /* assignment and restore */
    rd_kafka_topic_partition_list_t *assignment; /* the partitions we own (restored or not) */
    bool assigned;                               /* assignment completed on the consumer */
    bool revoke_pending;                         /* revoke waiting for a commit to finish */
    hm_reader *restorer;
    uint64_t restore_gen;

    /* output */
    hm_buf out;
    stash_msg *stash;
    size_t n_stash, cap_stash;
    bool waiting_writable;
    char last_error[512];
    uint64_t records_out; /* quality records acknowledged by the broker */
    uint64_t txn_committed, txn_aborted;
    uint64_t drained_records; /* records of the transaction committed while stopping */
    void (*drain_cb)(void *ud, uint64_t records);
    void *drain_ud;
    int32_t cur_partition; /* partition of the record being processed (event sink) */

    /* metrics */
    hm_metric_family *records_f, *issues_f, *quality_f, *events_f;
    hm_gauge *state_keys;
    hm_gauge *txn_open_records;
    hm_histogram *input_age;  /* Kafka timestamp -> judged, seconds */
    hm_histogram *commit_age; /* oldest record of a transaction -> committed */
    int64_t txn_oldest_ms;    /* Kafka timestamp of the transaction's oldest record */
    struct {
        char name[32];
        hm_histogram *h;
    } quality_by_exchange[MAX_EXCHANGE_CHILDREN];
    size_t n_quality;
    hm_histogram *quality_other;
};

static void pl_commit(iv_pipeline *p);
static bool commit_due(const iv_pipeline *p);
static void pl_start_restore(iv_pipeline *p);
static void pl_continue_stop(iv_pipeline *p);

static void set_error(iv_pipeline *p, const char *what, const char *msg) {
    /* Bounded: the message is already a bounded hm_err or librdkafka text. */
    snprintf(p->last_error, sizeof(p->last_error), "%.32s: %.470s", what, msg);
}

/* ---- sending ------------------------------------------------------------ */

static void stash_push(iv_pipeline *p, const char *topic, int32_t partition, const char *key,
                       size_t key_len, const char *val, size_t val_len, rd_kafka_headers_t *hdrs,
                       void *opaque) {
    if (p->n_stash == p->cap_stash) {
        p->cap_stash = p->cap_stash ? p->cap_stash * 2 : 16;
        p->stash = hm_xrealloc(p->stash, p->cap_stash * sizeof(*p->stash));
    }
    stash_msg *s = &p->stash[p->n_stash++];
    s->topic = hm_xstrdup(topic);
    s->partition = partition;
    s->key = key ? hm_xstrndup(key, key_len) : NULL;
    s->key_len = key_len;
    s->val = val ? hm_xstrndup(val, val_len) : NULL;
    s->val_len = val_len;
    s->hdrs = hdrs;
    s->opaque = opaque;
}

/* Marks the quality records among the messages a delivery report is about. */
static char quality_record_mark;

/* Send, or keep in the stash (in order) when the queue is full. */
static void pl_send(iv_pipeline *p, const char *topic, int32_t partition, const char *key,
                    size_t key_len, const char *val, size_t val_len, rd_kafka_headers_t *hdrs,
                    void *opaque) {
    hm_err err;
    if (p->n_stash == 0) {
        int rc = hm_producer_send(p->producer, topic, partition, key, key_len, val, val_len, hdrs,
                                  opaque, &err);
        if (rc == 0) return;
        if (rc != -EAGAIN) {
            /* Not a full queue: the transaction cannot be completed as is. */
            set_error(p, "send", err.msg);
            hm_log_error("send_failed", HM_LS("topic", topic), HM_LS("error", err.msg));
            if (hdrs) rd_kafka_headers_destroy(hdrs);
            p->aborting = true; /* the commit will fail and rewind */
            return;
        }
    }
    stash_push(p, topic, partition, key, key_len, val, val_len, hdrs, opaque);
    if (!p->waiting_writable) {
        p->waiting_writable = true;
        hm_consumer_hold(p->consumer);
    }
}

static void stash_free_at(iv_pipeline *p, size_t i) {
    free(p->stash[i].topic);
    free(p->stash[i].key);
    free(p->stash[i].val);
}

static void stash_clear(iv_pipeline *p) {
    for (size_t i = 0; i < p->n_stash; i++) {
        stash_free_at(p, i);
        if (p->stash[i].hdrs) rd_kafka_headers_destroy(p->stash[i].hdrs);
    }
    p->n_stash = 0;
}

static void on_writable(hm_producer *prod, void *ud) {
    iv_pipeline *p = ud;
    size_t i = 0;
    hm_err err;
    for (; i < p->n_stash; i++) {
        stash_msg *s = &p->stash[i];
        int rc = hm_producer_send(p->producer, s->topic, s->partition, s->key, s->key_len, s->val,
                                  s->val_len, s->hdrs, s->opaque, &err);
        if (rc == -EAGAIN) break;
        if (rc != 0) {
            set_error(p, "send", err.msg);
            if (s->hdrs) rd_kafka_headers_destroy(s->hdrs);
            p->aborting = true;
        }
        stash_free_at(p, i);
    }
    memmove(p->stash, p->stash + i, (p->n_stash - i) * sizeof(*p->stash));
    p->n_stash -= i;
    if (p->n_stash == 0 && p->waiting_writable) {
        p->waiting_writable = false;
        if (p->phase == PL_STOPPING)
            pl_continue_stop(p);
        else if (commit_due(p))
            pl_commit(p);
        else if (!p->committing && p->phase == PL_RUNNING)
            hm_consumer_release(p->consumer);
    }
}

/* ---- processing --------------------------------------------------------- */

static hm_histogram *quality_hist(iv_pipeline *p, const char *exchange) {
    for (size_t i = 0; i < p->n_quality; i++)
        if (strcmp(p->quality_by_exchange[i].name, exchange) == 0)
            return p->quality_by_exchange[i].h;
    /* Only configured exchanges get their own series: bounded label values. */
    if (p->n_quality < MAX_EXCHANGE_CHILDREN &&
        hm_str_list_contains(&p->cfg->checks.valid_exchanges, exchange, strlen(exchange))) {
        snprintf(p->quality_by_exchange[p->n_quality].name, 32, "%s", exchange);
        p->quality_by_exchange[p->n_quality].h = hm_metrics_histogram_child(p->quality_f, exchange);
        return p->quality_by_exchange[p->n_quality++].h;
    }
    return p->quality_other;
}

static void on_engine_event(void *ud, int32_t partition, const char *key, size_t key_len,
                            const char *json, size_t json_len) {
    iv_pipeline *p = ud;
    pl_send(p, p->cfg->events_topic, RD_KAFKA_PARTITION_UA, key, key_len, json, json_len, NULL,
            NULL);
}

static rd_kafka_headers_t *dlq_headers(const rd_kafka_message_t *m, const char *error) {
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    char num[32];
    rd_kafka_header_add(h, HM_DLQ_HEADER_ERROR, -1, error, -1);
    rd_kafka_header_add(h, HM_DLQ_HEADER_TOPIC, -1, rd_kafka_topic_name(m->rkt), -1);
    snprintf(num, sizeof(num), "%d", (int)m->partition);
    rd_kafka_header_add(h, HM_DLQ_HEADER_PARTITION, -1, num, -1);
    snprintf(num, sizeof(num), "%lld", (long long)m->offset);
    rd_kafka_header_add(h, HM_DLQ_HEADER_OFFSET, -1, num, -1);
    return h;
}

static void on_message(hm_consumer *c, const rd_kafka_message_t *m, void *ud) {
    iv_pipeline *p = ud;
    hm_err err;
    if (!p->txn_open) {
        if (hm_producer_txn_begin(p->producer, &err) != 0) {
            set_error(p, "begin_transaction", err.msg);
            hm_log_error("transaction_begin_failed", HM_LS("error", err.msg));
            hm_service_stop(p->svc, 1);
            return;
        }
        p->txn_open = true;
        p->txn_records = 0;
        p->txn_opened_ms = uv_now(p->loop);
        p->txn_oldest_ms = INT64_MAX;
    }
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    iv_input in = {.data = m->payload,
                   .len = m->len,
                   .ingest_ms = tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts,
                   .partition = m->partition};
    iv_output out = {.json = &p->out};
    hm_buf_reset(&p->out);
    p->cur_partition = m->partition;
    int64_t now_ms = hm_now_ms();
    if (in.ingest_ms >= 0) {
        hm_histogram_observe(p->input_age, (double)(now_ms - in.ingest_ms) / 1000.0);
        if (in.ingest_ms < p->txn_oldest_ms) p->txn_oldest_ms = in.ingest_ms;
    }
    iv_engine_process(p->engine, &in, now_ms, &out);

    pl_send(p, p->cfg->output_topic, RD_KAFKA_PARTITION_UA, out.key, out.key_len, p->out.data,
            p->out.len, NULL, &quality_record_mark);
    if (out.parse_error) {
        /* The bytes are kept whole, with where they came from and why. */
        hm_log_limited(HM_LOG_WARN, "record_unparseable", 60, HM_LS("topic", p->cfg->input_topic),
                       HM_LI("partition", m->partition), HM_LI("offset", m->offset),
                       HM_LS("error", out.error));
        pl_send(p, p->cfg->dlq_topic, RD_KAFKA_PARTITION_UA, m->key, m->key_len, m->payload, m->len,
                dlq_headers(m, out.error), NULL);
    }
    hm_histogram_observe(quality_hist(p, out.exchange), out.score);
    p->txn_records++;
    if (p->txn_records >= (uint64_t)p->cfg->commit_max_records) {
        /* Stop handing out records; on_batch_end commits. */
        hm_consumer_hold(p->consumer);
    }
}

static bool commit_due(const iv_pipeline *p) {
    return p->txn_open &&
           (p->txn_records >= (uint64_t)p->cfg->commit_max_records ||
            uv_now(p->loop) - p->txn_opened_ms >= (uint64_t)p->cfg->commit_interval_ms);
}

static void on_batch_end(hm_consumer *c, void *ud) {
    iv_pipeline *p = ud;
    if (commit_due(p)) pl_commit(p);
}

#define SWEEP_EVERY_MS 60000

static void on_commit_timer(uv_timer_t *t) {
    iv_pipeline *p = t->data;
    if (!p->committing && commit_due(p)) pl_commit(p);
    /* Forget keys idle past the TTL; their tombstones go out with a transaction. The
     * output does not depend on when this runs (an expired key is reset on its next
     * tick anyway), so a timer is fine. */
    if (p->txn_open && !p->committing && uv_now(p->loop) - p->last_sweep_ms >= SWEEP_EVERY_MS) {
        p->last_sweep_ms = uv_now(p->loop);
        size_t dropped = iv_engine_sweep(p->engine);
        if (dropped) hm_log_info("state_swept", HM_LI("keys", dropped));
    }
}

/* ---- transactions -------------------------------------------------------- */

static void send_changelog(void *ud, int32_t partition, const char *key, size_t key_len,
                           const char *val, size_t val_len) {
    iv_pipeline *p = ud;
    pl_send(p, p->cfg->changelog_topic, partition, key, key_len, val, val_len, NULL, NULL);
}

static rd_kafka_topic_partition_list_t *committed_positions(iv_pipeline *p) {
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(p->assignment ? p->assignment->cnt : 0);
    for (int i = 0; p->assignment && i < p->assignment->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &p->assignment->elems[i];
        int64_t pos = hm_consumer_position(p->consumer, tp->topic, tp->partition);
        if (pos >= 0) rd_kafka_topic_partition_list_add(l, tp->topic, tp->partition)->offset = pos;
    }
    return l;
}

/* Forget the state of every partition we own, uncommitted changes included:
 * the changelog holds what was committed. */
static void forget_state(iv_pipeline *p) {
    iv_engine_clear_dirty(p->engine);
    for (int i = 0; p->assignment && i < p->assignment->cnt; i++)
        iv_engine_drop_partition(p->engine, p->assignment->elems[i].partition);
}

/* Complete a revocation (nothing open any more): forget, let the partitions go. */
static void finish_revoke(iv_pipeline *p) {
    forget_state(p);
    if (p->assignment) rd_kafka_topic_partition_list_destroy(p->assignment);
    p->assignment = NULL;
    p->assigned = false;
    if (hm_consumer_unassign(p->consumer) != 0) hm_service_stop(p->svc, 1);
}

/* The open transaction is over (committed or aborted). Returns false when a
 * stop in progress took over from here. */
static bool txn_closed(iv_pipeline *p) {
    p->txn_open = false;
    p->txn_records = 0;
    p->committing = false;
    if (p->phase == PL_STOPPING) {
        pl_continue_stop(p);
        return false;
    }
    return true;
}

static void after_txn_settled(iv_pipeline *p) {
    if (!txn_closed(p)) return;
    if (p->revoke_pending) {
        p->revoke_pending = false;
        finish_revoke(p);
    }
    if (!p->waiting_writable) hm_consumer_release(p->consumer);
}

static void on_aborted(hm_producer *prod, const hm_txn_result *r, void *ud);

static void pl_rewind(iv_pipeline *p, const char *why) {
    /* The aborted records will be consumed again from the committed offsets,
     * and the state they touched is restored as it was committed. */
    hm_log_warn("transaction_aborted_rewinding", HM_LS("reason", why));
    stash_clear(p);
    p->waiting_writable = false;
    p->aborting = false;
    forget_state(p);
    if (p->assigned) {
        if (hm_consumer_unassign(p->consumer) != 0)
            hm_log_warn("rewind_unassign_failed"); /* re-assigning below resets it anyway */
        p->assigned = false;
    }
    if (!txn_closed(p)) return;
    if (p->revoke_pending) {
        p->revoke_pending = false;
        if (p->assignment) rd_kafka_topic_partition_list_destroy(p->assignment);
        p->assignment = NULL;
        hm_consumer_release(p->consumer);
        return;
    }
    pl_start_restore(p);
}

static void pl_abort(iv_pipeline *p) {
    p->committing = true;
    if (hm_producer_txn_abort(p->producer, on_aborted, p) != 0) {
        hm_log_error("transaction_abort_failed_to_start");
        hm_service_stop(p->svc, 1);
    }
}

static void on_aborted(hm_producer *prod, const hm_txn_result *r, void *ud) {
    iv_pipeline *p = ud;
    if (r->err) {
        set_error(p, "abort_transaction", r->msg);
        hm_log_error("transaction_abort_failed", HM_LS("error", r->msg));
        hm_service_stop(p->svc, 1);
        return;
    }
    p->txn_aborted++;
    pl_rewind(p, p->last_error);
}

static void on_committed(hm_producer *prod, const hm_txn_result *r, void *ud) {
    iv_pipeline *p = ud;
    if (r->err == 0) {
        if (p->txn_oldest_ms != INT64_MAX)
            hm_histogram_observe(p->commit_age, (double)(hm_now_ms() - p->txn_oldest_ms) / 1000.0);
        p->txn_committed++;
        if (p->phase == PL_STOPPING) p->drained_records = p->txn_records;
        after_txn_settled(p);
        return;
    }
    set_error(p, "commit_transaction", r->msg);
    if (r->fatal) {
        hm_log_error("transaction_fatal", HM_LS("error", r->msg));
        p->fenced = true;
        p->committing = false;
        p->txn_open = false;
        if (p->phase == PL_STOPPING)
            pl_continue_stop(p);
        else
            hm_service_stop(p->svc, 1);
        return;
    }
    if (r->retriable && !r->abortable) {
        /* e.g. a timeout: the same commit may be repeated. */
        p->committing = false;
        pl_commit(p);
        return;
    }
    pl_abort(p);
}

static void pl_commit(iv_pipeline *p) {
    if (p->committing || !p->txn_open || p->fenced) return;
    if (p->aborting) {
        pl_abort(p);
        return;
    }
    hm_consumer_hold(p->consumer);
    /* Unsent messages belong to this transaction: commit once they are sent
     * (on_writable calls back here). */
    if (p->n_stash) return;
    iv_engine_flush_dirty(p->engine, send_changelog, p);
    if (p->n_stash) return;
    p->committing = true;
    rd_kafka_topic_partition_list_t *offsets = committed_positions(p);
    rd_kafka_consumer_group_metadata_t *cgmd =
        rd_kafka_consumer_group_metadata(hm_consumer_rk(p->consumer));
    int rc = hm_producer_txn_commit(p->producer, offsets, cgmd, on_committed, p);
    rd_kafka_topic_partition_list_destroy(offsets);
    rd_kafka_consumer_group_metadata_destroy(cgmd);
    if (rc != 0) {
        hm_log_error("transaction_commit_failed_to_start", HM_LI("rc", rc));
        p->committing = false;
        hm_service_stop(p->svc, 1);
    }
}

/* ---- assignment, restore, revoke ---------------------------------------- */

static void on_restore_message(hm_reader *r, const rd_kafka_message_t *m, void *ud) {
    iv_pipeline *p = ud;
    hm_err err;
    if (iv_engine_restore(p->engine, m->partition, m->key, m->key_len, m->payload, m->len, &err) !=
        0)
        hm_log_limited(HM_LOG_WARN, "changelog_record_unreadable", 60,
                       HM_LI("partition", m->partition), HM_LI("offset", m->offset),
                       HM_LS("error", err.msg));
}

static void on_restorer_closed(void *ud) {
    HM_UNUSED(ud);
}

static void on_restore_done(hm_reader *r, int err, const char *reason, void *ud) {
    iv_pipeline *p = ud;
    uint64_t restored = hm_reader_count(r);
    p->restorer = NULL;
    hm_reader_close(r, on_restorer_closed, NULL);
    if (err) {
        set_error(p, "restore", reason);
        hm_log_error("restore_failed", HM_LS("error", reason));
        hm_service_stop(p->svc, 1);
        return;
    }
    /* The restore reads changelog records back; they are not changes. */
    iv_engine_clear_dirty(p->engine);
    hm_log_info("state_restored", HM_LS("topic", p->cfg->changelog_topic),
                HM_LI("records", restored), HM_LI("keys", iv_engine_state_keys(p->engine)),
                HM_LI("partitions", p->assignment ? p->assignment->cnt : 0));
    if (p->phase != PL_RUNNING || !p->assignment) return;
    if (hm_consumer_assign(p->consumer, p->assignment) != 0) {
        hm_service_stop(p->svc, 1);
        return;
    }
    p->assigned = true;
    hm_consumer_release(p->consumer);
}

static void pl_start_restore(iv_pipeline *p) {
    if (!p->txn_ready || !p->assignment || p->restorer) return;
    int32_t parts[256];
    size_t n = 0;
    for (int i = 0; i < p->assignment->cnt && n < HM_ARRAY_LEN(parts); i++)
        parts[n++] = p->assignment->elems[i].partition;
    hm_reader_handlers h = {.on_message = on_restore_message, .on_done = on_restore_done};
    hm_err err;
    if (hm_reader_start(p->loop, &p->cfg->base.kafka, p->cfg->changelog_topic, parts, n,
                        RESTORE_TIMEOUT_MS, &h, p, &p->restorer, &err) != 0) {
        set_error(p, "restore", err.msg);
        hm_log_error("restore_start_failed", HM_LS("error", err.msg));
        hm_service_stop(p->svc, 1);
    }
}

static void on_assign(hm_consumer *c, const rd_kafka_topic_partition_list_t *parts, void *ud) {
    iv_pipeline *p = ud;
    if (p->assignment) rd_kafka_topic_partition_list_destroy(p->assignment);
    p->assignment = rd_kafka_topic_partition_list_copy(parts);
    hm_log_info("partitions_assigned", HM_LI("count", parts->cnt));
    pl_start_restore(p); /* waits for init_transactions if that is still running */
}

static void on_revoke(hm_consumer *c, const rd_kafka_topic_partition_list_t *parts, void *ud) {
    iv_pipeline *p = ud;
    hm_log_info("partitions_revoked", HM_LI("count", parts->cnt));
    hm_consumer_hold(p->consumer);
    if (p->restorer) {
        /* Revoked while restoring: nothing was processed, nothing to commit. */
        hm_reader_close(p->restorer, on_restorer_closed, NULL);
        p->restorer = NULL;
    }
    if (p->txn_open || p->committing) {
        p->revoke_pending = true; /* after_txn_settled finishes the revoke */
        if (!p->committing) pl_commit(p);
        return;
    }
    finish_revoke(p);
    if (p->phase == PL_RUNNING) hm_consumer_release(p->consumer);
}

/* ---- start and stop ------------------------------------------------------ */

static void on_consumer_fatal(hm_consumer *c, const char *reason, void *ud) {
    iv_pipeline *p = ud;
    set_error(p, "consumer", reason);
    hm_service_stop(p->svc, 1);
}

static void on_producer_fatal(hm_producer *prod, const char *reason, void *ud) {
    iv_pipeline *p = ud;
    set_error(p, "producer", reason);
    p->fenced = true; /* e.g. fenced by a newer instance: nothing may be committed */
    hm_service_stop(p->svc, 1);
}

static void on_delivery(hm_producer *prod, rd_kafka_resp_err_t err, const rd_kafka_message_t *m,
                        void *opaque, void *ud) {
    iv_pipeline *p = ud;
    if (!err && opaque == &quality_record_mark) p->records_out++;
    if (err) {
        /* The open transaction cannot commit with a lost message: abort and
         * rewind; the records are consumed again. */
        set_error(p, "delivery", rd_kafka_err2str(err));
        p->aborting = true;
    }
}

static void on_txn_init(hm_producer *prod, const hm_txn_result *r, void *ud) {
    iv_pipeline *p = ud;
    if (r->err) {
        set_error(p, "init_transactions", r->msg);
        hm_log_error("transactions_init_failed", HM_LS("error", r->msg));
        hm_service_stop(p->svc, 1);
        return;
    }
    p->txn_ready = true;
    hm_log_info("transactions_ready", HM_LS("transactional_id", p->txn_id),
                HM_LD("seconds", r->seconds));
    pl_start_restore(p);
}

static void collect(hm_metrics *m, void *ud) {
    iv_pipeline *p = ud;
    const iv_stats *st = iv_engine_stats(p->engine);
    hm_metrics_counter_child(p->records_f, "ok")->value = (double)st->ok;
    hm_metrics_counter_child(p->records_f, "flagged")->value = (double)st->flagged;
    hm_metrics_counter_child(p->records_f, "rejected")->value = (double)st->rejected;
    for (int c = 0; c < HM_QCODE_COUNT; c++)
        if (st->issues[c])
            hm_metrics_counter_child(p->issues_f, hm_qcode_name((hm_qcode)c))->value =
                (double)st->issues[c];
    hm_metrics_counter_child(p->events_f)->value = (double)st->events;
    hm_gauge_set(p->state_keys, (double)iv_engine_state_keys(p->engine));
    hm_gauge_set(p->txn_open_records, (double)p->txn_records);
}

static bool ready(void *ud, char *reason, size_t size) {
    iv_pipeline *p = ud;
    if (!p->txn_ready) {
        snprintf(reason, size, "initialising Kafka transactions");
        return false;
    }
    if (!p->assigned) {
        snprintf(reason, size, p->restorer ? "restoring state" : "waiting for partitions");
        return false;
    }
    return true;
}

static void on_producer_closed(void *ud, size_t undelivered) {
    iv_pipeline *p = ud;
    if (undelivered)
        hm_log_warn("producer_closed_with_undelivered", HM_LI("messages", undelivered),
                    HM_LS("note", "not committed: consumed again by the next owner"));
    p->producer = NULL;
    /* The pipeline itself stays (status calls may still read it) until
     * iv_pipeline_free after the loop has ended. */
    hm_service_finish(p->svc);
}

void iv_pipeline_free(iv_pipeline *p) {
    if (!p) return;
    if (p->svc->metrics) hm_metrics_remove_collect(p->svc->metrics, collect, p);
    iv_engine_free(p->engine);
    hm_buf_free(&p->out);
    stash_clear(p);
    free(p->stash);
    if (p->assignment) rd_kafka_topic_partition_list_destroy(p->assignment);
    free(p);
}

static void on_consumer_closed(void *ud) {
    iv_pipeline *p = ud;
    p->consumer = NULL;
    hm_producer_close(p->producer, 10000, on_producer_closed, p);
}

static void on_commit_timer_closed(uv_handle_t *h) {
    iv_pipeline *p = h->data;
    hm_consumer_close(p->consumer, on_consumer_closed, p);
}

/* Step the stop forward: wait for an operation in flight, commit what is open
 * (unless fenced), then close the clients. */
static void pl_continue_stop(iv_pipeline *p) {
    if (p->committing || p->phase == PL_STOPPED) return;
    if (p->txn_open && !p->fenced && p->txn_ready) {
        pl_commit(p);
        return;
    }
    p->txn_open = false;
    p->phase = PL_STOPPED;
    hm_log_info("drained", HM_LI("records_in_last_transaction", p->drained_records),
                HM_LB("fenced", p->fenced));
    if (p->drain_cb) {
        void (*cb)(void *, uint64_t) = p->drain_cb;
        p->drain_cb = NULL;
        cb(p->drain_ud, p->drained_records);
    }
    if (p->restorer) {
        hm_reader_close(p->restorer, on_restorer_closed, NULL);
        p->restorer = NULL;
    }
    uv_close((uv_handle_t *)&p->commit_timer, on_commit_timer_closed);
}

static void on_stop(hm_service *svc, void *ud) {
    iv_pipeline *p = ud;
    p->phase = PL_STOPPING;
    hm_consumer_hold(p->consumer);
    hm_log_info("draining", HM_LB("transaction_open", p->txn_open),
                HM_LI("records_in_transaction", p->txn_records));
    pl_continue_stop(p);
}

int iv_pipeline_start(hm_service *svc, iv_config *cfg, iv_pipeline **out, hm_err *err) {
    iv_pipeline *p = hm_xcalloc(1, sizeof(*p));
    p->svc = svc;
    p->cfg = cfg;
    p->loop = svc->loop;
    p->phase = PL_RUNNING;
    p->engine = iv_engine_new(&cfg->checks, cfg->event_clock);
    iv_engine_set_event_sink(p->engine, on_engine_event, p);

    char host[128] = "";
    const char *instance = cfg->base.instance_id;
    if (!instance || !*instance) {
        gethostname(host, sizeof(host) - 1);
        instance = host;
    }
    snprintf(p->txn_id, sizeof(p->txn_id), "ingest-validator-%s", instance);

    hm_metrics *m = svc->metrics;
    p->records_f = hm_metrics_counter(m, "himari_validator_records_total",
                                      "Records judged, by result: ok (score 1), flagged "
                                      "(0 < score < 1), rejected (score 0).",
                                      "result");
    p->issues_f = hm_metrics_counter(m, "himari_validator_issues_total",
                                     "Records carrying each issue code.", "code");
    p->events_f = hm_metrics_counter(m, "himari_validator_events_total",
                                     "Feed silence and resumption events emitted.", NULL);
    static const double score_buckets[] = {0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0};
    p->quality_f = hm_metrics_histogram(m, "himari_validator_quality_score",
                                        "Quality score of judged records, by exchange.", "exchange",
                                        score_buckets, HM_ARRAY_LEN(score_buckets));
    p->quality_other = hm_metrics_histogram_child(p->quality_f, "other");
    p->state_keys = hm_metrics_gauge_child(hm_metrics_gauge(
        m, "himari_validator_state_keys", "(exchange, symbol) keys with state.", NULL));
    p->txn_open_records = hm_metrics_gauge_child(hm_metrics_gauge(
        m, "himari_validator_transaction_records", "Records in the open transaction.", NULL));
    p->input_age = hm_metrics_histogram_child(hm_metrics_histogram(
        m, "himari_validator_input_age_seconds",
        "Time from a record's Kafka timestamp to its judging (fetch and queueing delay).", NULL,
        hm_latency_buckets, hm_latency_buckets_n));
    p->commit_age = hm_metrics_histogram_child(hm_metrics_histogram(
        m, "himari_validator_commit_age_seconds",
        "Age of a transaction's oldest record when the transaction committed: the longest "
        "a record of it waited to become visible downstream.",
        NULL, hm_latency_buckets, hm_latency_buckets_n));
    hm_metrics_on_collect(m, collect, p);

    char client[300];
    snprintf(client, sizeof(client), "ingest-validator-%s", instance);
    hm_producer_opts po = {.transactional_id = p->txn_id, .client_id = client};
    hm_producer_handlers ph = {
        .on_delivery = on_delivery, .on_writable = on_writable, .on_fatal = on_producer_fatal};
    const char *topics[] = {cfg->input_topic};
    hm_consumer_opts co = {.group_id = cfg->group_id,
                           .group_instance_id = instance,
                           .topics = topics,
                           .n_topics = 1,
                           .read_committed = true,
                           .auto_commit = false,
                           .client_id = client};
    hm_consumer_handlers ch = {.on_message = on_message,
                               .on_batch_end = on_batch_end,
                               .on_assign = on_assign,
                               .on_revoke = on_revoke,
                               .on_fatal = on_consumer_fatal};
    int rc = hm_producer_new(p->loop, &cfg->base.kafka, &po, &ph, p, m, &p->producer, err);
    if (rc) goto fail;
    rc = hm_consumer_new(p->loop, &cfg->base.kafka, &co, &ch, p, m, &p->consumer, err);
    if (rc) goto fail_producer;
    /* Nothing is processed before transactions are initialised and state restored:
     * partitions are only assigned (fetched) once their state is restored. The
     * consumer is not held meanwhile, so rebalance events keep flowing. */
    uv_timer_init(p->loop, &p->commit_timer);
    p->commit_timer.data = p;
    uint64_t tick = (uint64_t)(cfg->commit_interval_ms > 10 ? cfg->commit_interval_ms / 2 : 5);
    uv_timer_start(&p->commit_timer, on_commit_timer, tick, tick);
    if ((rc = hm_producer_txn_init(p->producer, on_txn_init, p)) != 0) {
        hm_err_set(err, rc, "cannot start init_transactions");
        /* Handles are open now: let the service's stop close them. */
        hm_service_on_stop(svc, on_stop, p);
        hm_service_set_ready(svc, ready, p);
        *out = p;
        return rc;
    }
    hm_service_on_stop(svc, on_stop, p);
    hm_service_set_ready(svc, ready, p);
    hm_log_info("pipeline_started", HM_LS("input", cfg->input_topic),
                HM_LS("output", cfg->output_topic), HM_LS("group", cfg->group_id),
                HM_LS("transactional_id", p->txn_id),
                HM_LS("freshness_clock", cfg->event_clock ? "event" : "ingest"));
    *out = p;
    return 0;
fail_producer:
    hm_producer_close(p->producer, 0, NULL, NULL);
fail:
    hm_metrics_remove_collect(m, collect, p);
    iv_engine_free(p->engine);
    free(p);
    return rc;
}

/* ---- control (ControlService, /status) ----------------------------------- */

void iv_pipeline_get_status(iv_pipeline *p, iv_pipeline_status *out) {
    const iv_stats *st = iv_engine_stats(p->engine);
    if (p->phase != PL_RUNNING)
        out->state = IV_DRAINING;
    else if (!p->txn_ready || !p->assigned)
        out->state = IV_STARTING;
    else if (hm_consumer_paused(p->consumer))
        out->state = IV_PAUSED;
    else
        out->state = IV_RUNNING;
    out->records_in = st->records;
    out->records_out = p->records_out;
    out->transactions_committed = p->txn_committed;
    out->transactions_aborted = p->txn_aborted;
    out->last_error = p->last_error;
    out->transactional_id = p->txn_id;
}

hm_consumer *iv_pipeline_consumer(iv_pipeline *p) {
    return p->consumer;
}

void iv_pipeline_pause(iv_pipeline *p) {
    if (p->phase == PL_RUNNING) hm_consumer_pause(p->consumer);
}

void iv_pipeline_resume(iv_pipeline *p) {
    if (p->phase == PL_RUNNING) hm_consumer_resume(p->consumer);
}

void iv_pipeline_drain(iv_pipeline *p, void (*done)(void *ud, uint64_t records), void *ud) {
    p->drain_cb = done;
    p->drain_ud = ud;
    hm_service_stop(p->svc, 0); /* on_stop: hold, commit, leave */
}

void iv_pipeline_reconfigure(iv_pipeline *p) {
    iv_engine_set_checks(p->engine, &p->cfg->checks);
    hm_log_info("reconfigured", HM_LI("commit_interval_ms", p->cfg->commit_interval_ms),
                HM_LI("commit_max_records", p->cfg->commit_max_records));
}
