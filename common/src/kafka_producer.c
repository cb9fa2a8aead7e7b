/*
 * kafka_producer.c: an idempotent or transactional producer on the libuv loop.
 *
 * Sending is a non-blocking enqueue (rd_kafka_producev with a copy of key and
 * payload). Delivery reports, logs, errors and statistics come back as events
 * on the main queue, drained by the pump (kafka_queue.c) on the loop.
 *
 * Transaction operations block inside librdkafka (init, send offsets, commit,
 * abort), so they run on libuv's worker pool. While one runs, the loop keeps
 * draining delivery reports (commit_transaction waits for every message to be
 * reported, and in event mode librdkafka leaves serving them to us) and
 * refuses new sends with -EBUSY: the owner holds its input meanwhile.
 *
 * Never drops: a full local queue is -EAGAIN to the caller, who keeps the
 * message; on_writable tells it when to try again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/log.h"
#include "kafka_int.h"

#define DEFAULT_TXN_OP_TIMEOUT_MS 30000

typedef struct topic_ref {
    char *name;
    rd_kafka_topic_t *rkt;
    hm_counter *produced;
    hm_counter *failed;
} topic_ref;

struct hm_producer {
    uv_loop_t *loop;
    rd_kafka_t *rk;
    hm_kq kq;
    hm_producer_handlers h;
    void *ud;
    char client[64];
    bool transactional;
    bool txn_busy;
    bool want_writable;
    bool fatal;
    size_t outstanding;
    int txn_op_timeout_ms;

    topic_ref *topics;
    size_t n_topics;

    hm_kafka_metrics km;
    hm_metric_family *produced_f;
    hm_metric_family *failed_f;
    hm_histogram *txn_seconds[3]; /* init, commit, abort */

    /* closing */
    int flush_timeout_ms;
    size_t undelivered;
    void (*close_done)(void *ud, size_t undelivered);
    void *close_ud;
};

enum { TXN_INIT, TXN_COMMIT, TXN_ABORT };
static const char *const txn_op_names[] = {"init", "commit", "abort"};

typedef struct txn_work {
    uv_work_t req;
    hm_producer *p;
    int op;
    rd_kafka_topic_partition_list_t *offsets;
    rd_kafka_consumer_group_metadata_t *cgmd;
    hm_txn_cb cb;
    void *ud;
    uint64_t t0;
    int timeout_ms;
    hm_txn_result res;
} txn_work;

/* ---- topics ------------------------------------------------------------- */

static topic_ref *topic_get(hm_producer *p, const char *name) {
    for (size_t i = 0; i < p->n_topics; i++)
        if (strcmp(p->topics[i].name, name) == 0) return &p->topics[i];
    p->topics = hm_xrealloc(p->topics, (p->n_topics + 1) * sizeof(*p->topics));
    topic_ref *t = &p->topics[p->n_topics++];
    t->name = hm_xstrdup(name);
    t->rkt = rd_kafka_topic_new(p->rk, name, NULL);
    t->produced = hm_metrics_counter_child(p->produced_f, name);
    t->failed = hm_metrics_counter_child(p->failed_f, name);
    return t;
}

static topic_ref *topic_by_rkt(hm_producer *p, const rd_kafka_topic_t *rkt) {
    for (size_t i = 0; i < p->n_topics; i++)
        if (p->topics[i].rkt == rkt) return &p->topics[i];
    return NULL;
}

/* ---- events ------------------------------------------------------------- */

static void on_delivery_event(hm_producer *p, rd_kafka_event_t *ev) {
    const rd_kafka_message_t *m;
    while ((m = rd_kafka_event_message_next(ev))) {
        if (p->outstanding) p->outstanding--;
        topic_ref *t = topic_by_rkt(p, m->rkt);
        if (t) hm_counter_inc(m->err ? t->failed : t->produced);
        if (m->err) {
            p->undelivered++;
            /* Purged: the owner aborted the transaction the message belonged to, on
             * purpose; its records are read again, so this is no delivery failure. */
            bool purged = m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
                          m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT;
            hm_log_limited(purged ? HM_LOG_DEBUG : HM_LOG_ERROR, "kafka_delivery_failed", 60,
                           HM_LS("client", p->client), HM_LS("topic", t ? t->name : ""),
                           HM_LI("partition", m->partition),
                           HM_LS("error", rd_kafka_err2str(m->err)));
        }
        if (p->h.on_delivery) p->h.on_delivery(p, m->err, m, m->_private, p->ud);
    }
}

static void producer_on_event(hm_kq *kq, rd_kafka_event_t *ev) {
    hm_producer *p = kq->owner;
    char reason[512];
    bool fatal;
    if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DR) {
        on_delivery_event(p, ev);
    } else if (hm_kafka_common_event(p->rk, p->client, &p->km, ev, reason, sizeof(reason),
                                     &fatal) &&
               fatal) {
        p->fatal = true;
        if (p->h.on_fatal) p->h.on_fatal(p, reason, p->ud);
    }
    rd_kafka_event_destroy(ev);
}

static void producer_on_turn(hm_kq *kq, size_t n) {
    hm_producer *p = kq->owner;
    if (n && p->want_writable && !p->txn_busy) {
        p->want_writable = false;
        if (p->h.on_writable) p->h.on_writable(p, p->ud);
    }
}

/* ---- life cycle --------------------------------------------------------- */

int hm_producer_new(uv_loop_t *loop, const hm_kafka_config *kc, const hm_producer_opts *o,
                    const hm_producer_handlers *h, void *ud, hm_metrics *m, hm_producer **out,
                    hm_err *err) {
    rd_kafka_conf_t *conf = hm_kafka_conf_new(kc, o->client_id, RD_KAFKA_EVENT_DR, err);
    if (!conf) return -EINVAL;
    char linger[16], txn_timeout[16];
    snprintf(linger, sizeof(linger), "%d", o->linger_ms ? o->linger_ms : 1);
    snprintf(txn_timeout, sizeof(txn_timeout), "%d",
             o->transaction_timeout_ms ? o->transaction_timeout_ms : 10000);
    if (hm_kafka_conf_set(conf, "enable.idempotence", "true", err) ||
        hm_kafka_conf_set(conf, "linger.ms", linger, err) ||
        hm_kafka_conf_set(conf, "compression.type", o->compression ? o->compression : "snappy",
                          err) ||
        (o->transactional_id &&
         (hm_kafka_conf_set(conf, "transactional.id", o->transactional_id, err) ||
          hm_kafka_conf_set(conf, "transaction.timeout.ms", txn_timeout, err) ||
          /* Back-to-back transactions: the coordinator answers
           * CONCURRENT_TRANSACTIONS while it still writes the previous commit's
           * markers, and librdkafka retries after retry.backoff.ms. The default
           * (100 ms) put 100-250 ms stalls in the p99 of end-to-end latency. */
          hm_kafka_conf_set(conf, "retry.backoff.ms", "10", err)))) {
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
    }
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return hm_err_set(err, -EINVAL, "kafka producer: %s", errstr);
    }
    hm_producer *p = hm_xcalloc(1, sizeof(*p));
    p->loop = loop;
    p->rk = rk;
    p->h = *h;
    p->ud = ud;
    p->transactional = o->transactional_id != NULL;
    snprintf(p->client, sizeof(p->client), "%s", o->client_id ? o->client_id : "himari");
    p->txn_op_timeout_ms =
        o->txn_op_timeout_ms > 0 ? o->txn_op_timeout_ms : DEFAULT_TXN_OP_TIMEOUT_MS;
    hm_kafka_metrics_init(&p->km, m);
    p->produced_f = hm_metrics_counter(m, "himari_kafka_messages_produced_total",
                                       "Messages the broker acknowledged, by topic.", "topic");
    p->failed_f = hm_metrics_counter(m, "himari_kafka_messages_failed_total",
                                     "Messages whose delivery failed, by topic.", "topic");
    hm_metric_family *txn = hm_metrics_histogram(
        m, "himari_kafka_transaction_seconds",
        "Duration of transaction operations (init, commit = send offsets + commit, abort).", "op",
        hm_latency_buckets, hm_latency_buckets_n);
    for (int i = 0; i < 3; i++)
        p->txn_seconds[i] = hm_metrics_histogram_child(txn, txn_op_names[i]);
    int rc = hm_kq_start(&p->kq, loop, rd_kafka_queue_get_main(rk), 5000, p, producer_on_event,
                         producer_on_turn, err);
    if (rc) {
        rd_kafka_destroy(rk);
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

rd_kafka_t *hm_producer_rk(hm_producer *p) {
    return p->rk;
}
size_t hm_producer_outstanding(const hm_producer *p) {
    return p->outstanding;
}
bool hm_producer_txn_busy(const hm_producer *p) {
    return p->txn_busy;
}

void hm_producer_set_txn_op_timeout(hm_producer *p, int timeout_ms) {
    p->txn_op_timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TXN_OP_TIMEOUT_MS;
}

int hm_producer_send(hm_producer *p, const char *topic, int32_t partition, const void *key,
                     size_t key_len, const void *val, size_t val_len, rd_kafka_headers_t *hdrs,
                     void *msg_opaque, hm_err *err) {
    if (p->txn_busy)
        return hm_err_set(err, -EBUSY, "kafka producer: a transaction operation is in flight");
    if (p->fatal) return hm_err_set(err, -EIO, "kafka producer: fatal error raised before");
    topic_ref *t = topic_get(p, topic);
    rd_kafka_resp_err_t e =
        rd_kafka_producev(p->rk, RD_KAFKA_V_RKT(t->rkt), RD_KAFKA_V_PARTITION(partition),
                          RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)val, val_len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
                          RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        p->outstanding++;
        return 0;
    }
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        p->want_writable = true;
        return -EAGAIN;
    }
    return hm_err_set(err, -EIO, "kafka producer: %s: %s", topic, rd_kafka_err2str(e));
}

/* ---- transactions ------------------------------------------------------- */

static void txn_result_from(hm_txn_result *r, rd_kafka_error_t *e) {
    if (!e) return;
    r->err = rd_kafka_error_code(e) ? (int)rd_kafka_error_code(e) : -1;
    r->retriable = rd_kafka_error_is_retriable(e);
    r->abortable = rd_kafka_error_txn_requires_abort(e);
    r->fatal = rd_kafka_error_is_fatal(e);
    snprintf(r->msg, sizeof(r->msg), "%s: %s", rd_kafka_error_name(e), rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
}

static void txn_work_run(uv_work_t *req) {
    txn_work *w = req->data;
    rd_kafka_t *rk = w->p->rk;
    rd_kafka_error_t *e = NULL;
    switch (w->op) {
        case TXN_INIT:
            e = rd_kafka_init_transactions(rk, w->timeout_ms);
            break;
        case TXN_COMMIT:
            if (w->offsets && w->offsets->cnt > 0)
                e = rd_kafka_send_offsets_to_transaction(rk, w->offsets, w->cgmd, w->timeout_ms);
            if (!e) e = rd_kafka_commit_transaction(rk, w->timeout_ms);
            break;
        case TXN_ABORT:
            e = rd_kafka_abort_transaction(rk, w->timeout_ms);
            break;
    }
    txn_result_from(&w->res, e);
}

static void txn_work_done(uv_work_t *req, int status) {
    txn_work *w = req->data;
    hm_producer *p = w->p;
    p->txn_busy = false;
    w->res.seconds = (double)(hm_mono_ns() - w->t0) / 1e9;
    hm_histogram_observe(p->txn_seconds[w->op], w->res.seconds);
    if (w->res.fatal) p->fatal = true;
    if (w->res.err)
        hm_log_warn("kafka_transaction_failed", HM_LS("client", p->client),
                    HM_LS("op", txn_op_names[w->op]), HM_LS("error", w->res.msg),
                    HM_LB("retriable", w->res.retriable), HM_LB("abortable", w->res.abortable),
                    HM_LB("fatal", w->res.fatal));
    if (w->offsets) rd_kafka_topic_partition_list_destroy(w->offsets);
    if (w->cgmd) rd_kafka_consumer_group_metadata_destroy(w->cgmd);
    hm_txn_cb cb = w->cb;
    void *ud = w->ud;
    hm_txn_result res = w->res;
    free(w);
    if (cb) cb(p, &res, ud);
    if (!p->txn_busy && p->want_writable) hm_kq_kick(&p->kq);
}

static int txn_start(hm_producer *p, int op, const rd_kafka_topic_partition_list_t *offsets,
                     const rd_kafka_consumer_group_metadata_t *cgmd, hm_txn_cb cb, void *ud) {
    if (!p->transactional) return -EINVAL;
    if (p->txn_busy) return -EBUSY;
    txn_work *w = hm_xcalloc(1, sizeof(*w));
    w->p = p;
    w->op = op;
    w->cb = cb;
    w->ud = ud;
    w->t0 = hm_mono_ns();
    w->timeout_ms = p->txn_op_timeout_ms;
    if (offsets) w->offsets = rd_kafka_topic_partition_list_copy(offsets);
    if (cgmd) {
        /* Copy through the serialised form: the API has no copy function. */
        void *buf;
        size_t size;
        rd_kafka_error_t *e = rd_kafka_consumer_group_metadata_write(cgmd, &buf, &size);
        if (!e) {
            e = rd_kafka_consumer_group_metadata_read(&w->cgmd, buf, size);
            rd_kafka_mem_free(NULL, buf);
        }
        if (e) {
            rd_kafka_error_destroy(e);
            if (w->offsets) rd_kafka_topic_partition_list_destroy(w->offsets);
            free(w);
            return -EINVAL;
        }
    }
    w->req.data = w;
    p->txn_busy = true;
    int rc = uv_queue_work(p->loop, &w->req, txn_work_run, txn_work_done);
    if (rc) {
        p->txn_busy = false;
        if (w->offsets) rd_kafka_topic_partition_list_destroy(w->offsets);
        if (w->cgmd) rd_kafka_consumer_group_metadata_destroy(w->cgmd);
        free(w);
        return rc;
    }
    return 0;
}

int hm_producer_txn_init(hm_producer *p, hm_txn_cb cb, void *ud) {
    return txn_start(p, TXN_INIT, NULL, NULL, cb, ud);
}

int hm_producer_txn_commit(hm_producer *p, const rd_kafka_topic_partition_list_t *offsets,
                           const rd_kafka_consumer_group_metadata_t *cgmd, hm_txn_cb cb, void *ud) {
    return txn_start(p, TXN_COMMIT, offsets, cgmd, cb, ud);
}

int hm_producer_txn_abort(hm_producer *p, hm_txn_cb cb, void *ud) {
    return txn_start(p, TXN_ABORT, NULL, NULL, cb, ud);
}

int hm_producer_txn_begin(hm_producer *p, hm_err *err) {
    if (p->txn_busy) return hm_err_set(err, -EBUSY, "kafka producer: transaction op in flight");
    rd_kafka_error_t *e = rd_kafka_begin_transaction(p->rk);
    if (e) {
        hm_err_set(err, -EIO, "kafka producer: begin_transaction: %s", rd_kafka_error_string(e));
        if (rd_kafka_error_is_fatal(e)) p->fatal = true;
        rd_kafka_error_destroy(e);
        return -EIO;
    }
    return 0;
}

/* ---- close -------------------------------------------------------------- */

static void flush_client(void *arg) {
    hm_producer *p = arg;
    /* In event mode flush waits for the loop to drain the reports (see above). */
    rd_kafka_flush(p->rk, p->flush_timeout_ms);
}

static void on_close_kq(hm_kq *kq);

static void flushed(void *arg) {
    hm_producer *p = arg;
    /* Whatever has no delivery report by now will not be delivered. */
    p->undelivered += p->outstanding;
    hm_kq_close(&p->kq, on_close_kq);
}

static void destroy_client(void *arg) {
    hm_producer *p = arg;
    for (size_t i = 0; i < p->n_topics; i++)
        rd_kafka_topic_destroy(p->topics[i].rkt);
    rd_kafka_destroy(p->rk);
}

static void free_producer(void *arg) {
    hm_producer *p = arg;
    for (size_t i = 0; i < p->n_topics; i++)
        free(p->topics[i].name);
    free(p->topics);
    void (*done)(void *, size_t) = p->close_done;
    void *ud = p->close_ud;
    size_t undelivered = p->undelivered;
    free(p);
    if (done) done(ud, undelivered);
}

static void on_close_kq(hm_kq *kq) {
    hm_producer *p = kq->owner;
    hm_kafka_offload(p->loop, destroy_client, free_producer, p);
}

void hm_producer_close(hm_producer *p, int flush_timeout_ms,
                       void (*done)(void *ud, size_t undelivered), void *ud) {
    p->close_done = done;
    p->close_ud = ud;
    p->flush_timeout_ms = flush_timeout_ms;
    p->undelivered = 0;
    hm_kafka_offload(p->loop, flush_client, flushed, p);
}
