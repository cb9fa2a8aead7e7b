/*
 * kafka_consumer.c: a group consumer on the libuv loop.
 *
 * All of the client's events (messages, rebalances, logs, errors, statistics)
 * arrive on one queue: the main queue is forwarded to the consumer queue with
 * rd_kafka_poll_set_consumer(), and the pump (kafka_queue.c) drains it.
 * Rebalances are handed to the owner, who completes them when its work for
 * those partitions is done (commit before revoke, restore before assign).
 *
 * Positions (next offset per partition) are tracked here as messages are
 * delivered: they are what a transactional owner sends with its commit.
 * Lag is the broker's high watermark minus the position; the watermark is
 * queried on a worker every lag_refresh_ms, so it keeps growing while the
 * consumer is paused (cached watermarks would freeze with the fetcher).
 *
 * Never drops: a message is either delivered to on_message or left for the
 * next owner of its partition (fetched again from the committed offset).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/log.h"
#include "kafka_int.h"

typedef struct part_state {
    char *topic;
    int32_t partition;
    int64_t position; /* next offset to deliver; RD_KAFKA_OFFSET_INVALID: none yet */
    int64_t hwm;      /* broker high watermark; -1 unknown */
    hm_counter *consumed;
} part_state;

typedef struct lag_work {
    uv_work_t req;
    hm_consumer *c;
    rd_kafka_topic_partition_list_t *parts; /* offset field carries the result */
} lag_work;

struct hm_consumer {
    uv_loop_t *loop;
    rd_kafka_t *rk;
    hm_kq kq;
    hm_consumer_handlers h;
    void *ud;
    char client[64];

    part_state *parts; /* the current assignment */
    size_t n_parts;
    bool paused;
    bool closing;
    bool finishing; /* the group was left: closing our handles, then the client */

    uv_timer_t lag_timer;
    bool lag_work_active;
    int queries_active; /* hm_consumer_offsets in flight */
    int lag_refresh_ms;

    hm_metrics *metrics;
    hm_kafka_metrics km;
    hm_metric_family *consumed;
    hm_metric_family *lag;
    hm_metric_family *rebalances;

    void (*close_done)(void *ud);
    void *close_ud;
    int close_pending; /* handles and works still to finish before free */
};

/* ---- assignment bookkeeping -------------------------------------------- */

static part_state *find_part(const hm_consumer *c, const char *topic, int32_t partition) {
    for (size_t i = 0; i < c->n_parts; i++)
        if (c->parts[i].partition == partition && strcmp(c->parts[i].topic, topic) == 0)
            return &c->parts[i];
    return NULL;
}

static void clear_parts(hm_consumer *c) {
    for (size_t i = 0; i < c->n_parts; i++)
        free(c->parts[i].topic);
    free(c->parts);
    c->parts = NULL;
    c->n_parts = 0;
    hm_metrics_family_clear(c->lag);
}

static void set_parts(hm_consumer *c, const rd_kafka_topic_partition_list_t *l) {
    clear_parts(c);
    if (!l || l->cnt == 0) return;
    c->parts = hm_xcalloc((size_t)l->cnt, sizeof(*c->parts));
    for (int i = 0; i < l->cnt; i++) {
        c->parts[i].topic = hm_xstrdup(l->elems[i].topic);
        c->parts[i].partition = l->elems[i].partition;
        c->parts[i].position = RD_KAFKA_OFFSET_INVALID;
        c->parts[i].hwm = -1;
        c->parts[i].consumed = hm_metrics_counter_child(c->consumed, l->elems[i].topic);
    }
    c->n_parts = (size_t)l->cnt;
}

static rd_kafka_topic_partition_list_t *parts_list(const hm_consumer *c) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)c->n_parts);
    for (size_t i = 0; i < c->n_parts; i++)
        rd_kafka_topic_partition_list_add(l, c->parts[i].topic, c->parts[i].partition);
    return l;
}

int hm_consumer_assign(hm_consumer *c, const rd_kafka_topic_partition_list_t *parts) {
    rd_kafka_resp_err_t e = rd_kafka_assign(c->rk, parts);
    if (e) {
        hm_log_error("kafka_assign_failed", HM_LS("client", c->client),
                     HM_LS("error", rd_kafka_err2str(e)));
        return -EIO;
    }
    set_parts(c, parts);
    if (c->paused && c->n_parts) {
        rd_kafka_topic_partition_list_t *l = parts_list(c);
        rd_kafka_pause_partitions(c->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
    }
    hm_log_info("kafka_partitions_assigned", HM_LS("client", c->client),
                HM_LI("partitions", c->n_parts), HM_LB("paused", c->paused));
    return 0;
}

int hm_consumer_unassign(hm_consumer *c) {
    rd_kafka_resp_err_t e = rd_kafka_assign(c->rk, NULL);
    clear_parts(c);
    if (e) {
        hm_log_error("kafka_unassign_failed", HM_LS("client", c->client),
                     HM_LS("error", rd_kafka_err2str(e)));
        return -EIO;
    }
    hm_log_info("kafka_partitions_revoked", HM_LS("client", c->client));
    return 0;
}

rd_kafka_topic_partition_list_t *hm_consumer_assignment(hm_consumer *c) {
    if (!c->n_parts) return NULL;
    return parts_list(c);
}

/* ---- events ------------------------------------------------------------- */

static void on_rebalance(hm_consumer *c, rd_kafka_event_t *ev) {
    rd_kafka_resp_err_t what = rd_kafka_event_error(ev);
    const rd_kafka_topic_partition_list_t *parts = rd_kafka_event_topic_partition_list(ev);
    if (what == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        hm_counter_inc(hm_metrics_counter_child(c->rebalances, "assign"));
        if (c->closing) {
            /* Leaving: take nothing new. */
            (void)rd_kafka_assign(c->rk, NULL);
        } else if (c->h.on_assign) {
            c->h.on_assign(c, parts, c->ud);
        } else if (hm_consumer_assign(c, parts) != 0) {
            if (c->h.on_fatal) c->h.on_fatal(c, "cannot complete a partition assignment", c->ud);
        }
    } else {
        hm_counter_inc(hm_metrics_counter_child(c->rebalances, "revoke"));
        if (c->h.on_revoke) {
            c->h.on_revoke(c, parts, c->ud);
        } else if (hm_consumer_unassign(c) != 0) {
            if (c->h.on_fatal) c->h.on_fatal(c, "cannot complete a partition revocation", c->ud);
        }
    }
}

/* Records of one of our partitions that will never be delivered: the owner keeps the
 * gap, since the next record moves the position past it. */
static void consume_error(hm_consumer *c, const char *topic, int32_t partition, int64_t offset,
                          rd_kafka_resp_err_t err, const char *reason) {
    /* Only errors about records: an unreadable batch (librdkafka 2.0 fetches it again
     * and again: the partition is stuck until the owner skips it) or an offset reset
     * (records gone). Others (an unknown topic, a transport error) lose nothing and are
     * retried by librdkafka. */
    bool about_records =
        err == RD_KAFKA_RESP_ERR__BAD_MSG || err == RD_KAFKA_RESP_ERR__BAD_COMPRESSION ||
        err == RD_KAFKA_RESP_ERR_INVALID_MSG || err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET;
    if (!about_records || !c->h.on_consume_error || c->closing || partition < 0 ||
        !find_part(c, topic, partition))
        return;
    c->h.on_consume_error(c, topic, partition, offset, err, reason, c->ud);
}

static void on_fetch(hm_consumer *c, rd_kafka_event_t *ev) {
    const rd_kafka_message_t *m;
    while ((m = rd_kafka_event_message_next(ev))) {
        if (m->err) {
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) continue;
            hm_counter_inc(
                hm_metrics_counter_child(c->km.errors, c->client, rd_kafka_err2name(m->err)));
            hm_log_limited(HM_LOG_WARN, "kafka_consume_error", 60, HM_LS("client", c->client),
                           HM_LS("topic", m->rkt ? rd_kafka_topic_name(m->rkt) : ""),
                           HM_LI("partition", m->partition), HM_LI("offset", m->offset),
                           HM_LS("error", rd_kafka_message_errstr(m)));
            if (m->rkt)
                consume_error(c, rd_kafka_topic_name(m->rkt), m->partition, m->offset, m->err,
                              rd_kafka_message_errstr(m));
            continue;
        }
        /* Leaving the group: undelivered messages are not ours any more; the
         * next owner fetches them again from the committed offset. */
        if (c->closing) continue;
        const char *topic = rd_kafka_topic_name(m->rkt);
        part_state *ps = find_part(c, topic, m->partition);
        if (!ps) continue; /* a stale message of a partition revoked meanwhile */
        /* Belt and braces: never hand out an offset below the position twice. */
        if (ps->position >= 0 && m->offset < ps->position) continue;
        ps->position = m->offset + 1;
        hm_counter_inc(ps->consumed);
        c->h.on_message(c, m, c->ud);
    }
}

static void consumer_on_event(hm_kq *kq, rd_kafka_event_t *ev) {
    hm_consumer *c = kq->owner;
    char reason[512];
    bool fatal;
    switch (rd_kafka_event_type(ev)) {
        case RD_KAFKA_EVENT_FETCH:
            on_fetch(c, ev);
            break;
        case RD_KAFKA_EVENT_REBALANCE:
            on_rebalance(c, ev);
            break;
        case RD_KAFKA_EVENT_ERROR: {
            /* A partition's read failed (a corrupt or undecompressable batch, an offset
             * reset): the event API gives it as an error event naming the partition. */
            rd_kafka_topic_partition_t *tp = rd_kafka_event_topic_partition(ev);
            if (tp && rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                hm_counter_inc(hm_metrics_counter_child(
                    c->km.errors, c->client, rd_kafka_err2name(rd_kafka_event_error(ev))));
                hm_log_limited(HM_LOG_WARN, "kafka_consume_error", 60, HM_LS("client", c->client),
                               HM_LS("topic", tp->topic), HM_LI("partition", tp->partition),
                               HM_LI("offset", tp->offset),
                               HM_LS("error", rd_kafka_event_error_string(ev)));
                consume_error(c, tp->topic, tp->partition, tp->offset, rd_kafka_event_error(ev),
                              rd_kafka_event_error_string(ev));
            } else if (hm_kafka_common_event(c->rk, c->client, &c->km, ev, reason, sizeof(reason),
                                             &fatal) &&
                       fatal && c->h.on_fatal) {
                c->h.on_fatal(c, reason, c->ud);
            }
            if (tp) rd_kafka_topic_partition_destroy(tp);
            break;
        }
        case RD_KAFKA_EVENT_OFFSET_COMMIT:
            if (rd_kafka_event_error(ev))
                hm_log_warn("kafka_commit_failed", HM_LS("client", c->client),
                            HM_LS("error", rd_kafka_event_error_string(ev)));
            break;
        default:
            if (hm_kafka_common_event(c->rk, c->client, &c->km, ev, reason, sizeof(reason),
                                      &fatal) &&
                fatal && c->h.on_fatal)
                c->h.on_fatal(c, reason, c->ud);
            break;
    }
    rd_kafka_event_destroy(ev);
}

static void finish_close(hm_consumer *c);

static void consumer_on_turn(hm_kq *kq, size_t n) {
    hm_consumer *c = kq->owner;
    if (c->closing) {
        if (rd_kafka_consumer_closed(c->rk)) finish_close(c);
        return;
    }
    if (n && c->h.on_batch_end) c->h.on_batch_end(c, c->ud);
}

/* ---- lag ---------------------------------------------------------------- */

static void lag_work_run(uv_work_t *req) {
    lag_work *w = req->data;
    for (int i = 0; i < w->parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &w->parts->elems[i];
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(w->c->rk, p->topic, p->partition, &lo, &hi, 2000) ==
            RD_KAFKA_RESP_ERR_NO_ERROR)
            p->offset = hi;
        else
            p->offset = -1;
    }
}

static void consumer_close_step(hm_consumer *c);

static void lag_work_done(uv_work_t *req, int status) {
    lag_work *w = req->data;
    hm_consumer *c = w->c;
    c->lag_work_active = false;
    if (status == 0 && !c->closing) {
        for (int i = 0; i < w->parts->cnt; i++) {
            part_state *ps = find_part(c, w->parts->elems[i].topic, w->parts->elems[i].partition);
            if (ps && w->parts->elems[i].offset >= 0) ps->hwm = w->parts->elems[i].offset;
        }
    }
    rd_kafka_topic_partition_list_destroy(w->parts);
    free(w);
    /* Before finish_close counts the handles, there is nothing to step. */
    if (c->finishing) consumer_close_step(c);
}

static void on_lag_timer(uv_timer_t *t) {
    hm_consumer *c = t->data;
    if (c->closing) {
        /* Belt and braces: notice the end of a close even without an event. */
        if (rd_kafka_consumer_closed(c->rk)) finish_close(c);
        return;
    }
    if (c->lag_work_active || c->closing || !c->n_parts) return;
    lag_work *w = hm_xcalloc(1, sizeof(*w));
    w->c = c;
    w->parts = parts_list(c);
    w->req.data = w;
    c->lag_work_active = true;
    if (uv_queue_work(c->loop, &w->req, lag_work_run, lag_work_done) != 0) {
        c->lag_work_active = false;
        rd_kafka_topic_partition_list_destroy(w->parts);
        free(w);
    }
}

/* ---- offset queries ------------------------------------------------------ */

typedef struct offsets_work {
    uv_work_t req;
    hm_consumer *c;
    hm_offsets_op op;
    int timeout_ms;
    rd_kafka_topic_partition_list_t *parts;
    rd_kafka_resp_err_t err;
    hm_offsets_cb cb;
    void *ud;
} offsets_work;

static void offsets_work_run(uv_work_t *req) {
    offsets_work *w = req->data;
    switch (w->op) {
        case HM_OFFSETS_COMMITTED:
            w->err = rd_kafka_committed(w->c->rk, w->parts, w->timeout_ms);
            break;
        case HM_OFFSETS_FOR_TIMES:
            w->err = rd_kafka_offsets_for_times(w->c->rk, w->parts, w->timeout_ms);
            break;
        case HM_OFFSETS_COMMIT:
            w->err = rd_kafka_commit(w->c->rk, w->parts, 0);
            break;
    }
}

static void offsets_work_done(uv_work_t *req, int status) {
    offsets_work *w = req->data;
    hm_consumer *c = w->c;
    c->queries_active--;
    char reason[160] = "";
    int err = 0;
    if (status != 0) {
        err = status;
        snprintf(reason, sizeof(reason), "worker: %s", uv_strerror(status));
    } else if (w->err) {
        err = -EIO;
        snprintf(reason, sizeof(reason), "%s", rd_kafka_err2str(w->err));
    }
    w->cb(c, err, reason, w->parts, w->ud);
    rd_kafka_topic_partition_list_destroy(w->parts);
    free(w);
    if (c->finishing) consumer_close_step(c);
}

int hm_consumer_offsets(hm_consumer *c, hm_offsets_op op,
                        const rd_kafka_topic_partition_list_t *parts, int timeout_ms,
                        hm_offsets_cb cb, void *ud) {
    offsets_work *w = hm_xcalloc(1, sizeof(*w));
    w->c = c;
    w->op = op;
    w->timeout_ms = timeout_ms;
    w->parts = rd_kafka_topic_partition_list_copy(parts);
    w->cb = cb;
    w->ud = ud;
    w->req.data = w;
    int rc = uv_queue_work(c->loop, &w->req, offsets_work_run, offsets_work_done);
    if (rc != 0) {
        rd_kafka_topic_partition_list_destroy(w->parts);
        free(w);
        return rc;
    }
    c->queries_active++;
    return 0;
}

int hm_consumer_skip_to(hm_consumer *c, const char *topic, int32_t partition, int64_t offset) {
    part_state *ps = find_part(c, topic, partition);
    if (!ps) return -ENOENT;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 0); /* 0: asynchronous */
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        hm_log_error("kafka_seek_failed", HM_LS("client", c->client), HM_LS("topic", topic),
                     HM_LI("partition", partition), HM_LS("error", rd_kafka_error_string(e)));
        rd_kafka_error_destroy(e);
        return -EIO;
    }
    ps->position = offset;
    return 0;
}

int64_t hm_consumer_position(const hm_consumer *c, const char *topic, int32_t partition) {
    const part_state *ps = find_part(c, topic, partition);
    return ps ? ps->position : RD_KAFKA_OFFSET_INVALID;
}

int64_t hm_consumer_lag(const hm_consumer *c, const char *topic, int32_t partition) {
    const part_state *ps = find_part(c, topic, partition);
    if (!ps || ps->hwm < 0) return -1;
    int64_t pos = ps->position;
    if (pos < 0) {
        /* Nothing delivered since assignment: use the committed offset. */
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, topic, partition);
        if (rd_kafka_position(c->rk, l) == RD_KAFKA_RESP_ERR_NO_ERROR) pos = l->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(l);
        if (pos < 0) return -1;
    }
    return ps->hwm > pos ? ps->hwm - pos : 0;
}

static void collect_lag(hm_metrics *m, void *ud) {
    hm_consumer *c = ud;
    for (size_t i = 0; i < c->n_parts; i++) {
        int64_t lag = hm_consumer_lag(c, c->parts[i].topic, c->parts[i].partition);
        if (lag < 0) continue;
        char p[16];
        snprintf(p, sizeof(p), "%d", (int)c->parts[i].partition);
        hm_gauge_set(hm_metrics_gauge_child(c->lag, c->parts[i].topic, p), (double)lag);
    }
}

/* ---- life cycle --------------------------------------------------------- */

int hm_consumer_new(uv_loop_t *loop, const hm_kafka_config *kc, const hm_consumer_opts *o,
                    const hm_consumer_handlers *h, void *ud, hm_metrics *m, hm_consumer **out,
                    hm_err *err) {
    if (!o->group_id || !o->n_topics || !h->on_message)
        return hm_err_set(err, -EINVAL, "kafka consumer: group_id, topics and on_message needed");
    rd_kafka_conf_t *conf = hm_kafka_conf_new(
        kc, o->client_id, RD_KAFKA_EVENT_REBALANCE | RD_KAFKA_EVENT_OFFSET_COMMIT, err);
    if (!conf) return -EINVAL;
    char session[16];
    snprintf(session, sizeof(session), "%d", o->session_timeout_ms ? o->session_timeout_ms : 10000);
    if (hm_kafka_conf_consumer_defaults(conf, kc, err) ||
        hm_kafka_conf_set(conf, "group.id", o->group_id, err) ||
        (o->group_instance_id &&
         hm_kafka_conf_set(conf, "group.instance.id", o->group_instance_id, err)) ||
        hm_kafka_conf_set(conf, "isolation.level",
                          o->read_committed ? "read_committed" : "read_uncommitted", err) ||
        hm_kafka_conf_set(conf, "enable.auto.commit", o->auto_commit ? "true" : "false", err) ||
        hm_kafka_conf_set(conf, "auto.offset.reset",
                          o->auto_offset_reset ? o->auto_offset_reset : "earliest", err) ||
        hm_kafka_conf_set(conf, "session.timeout.ms", session, err) ||
        /* Eager protocol: a revoke takes every partition, so state moves whole. */
        hm_kafka_conf_set(conf, "partition.assignment.strategy", "range", err)) {
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
    }
    rd_kafka_t *rk = hm_kafka_new_consumer(conf, "kafka consumer", err);
    if (!rk) return -EINVAL;

    hm_consumer *c = hm_xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->rk = rk;
    c->h = *h;
    c->ud = ud;
    snprintf(c->client, sizeof(c->client), "%s", o->client_id ? o->client_id : "himari");
    c->lag_refresh_ms = o->lag_refresh_ms ? o->lag_refresh_ms : 2000;
    c->metrics = m;
    hm_kafka_metrics_init(&c->km, m);
    c->consumed = hm_metrics_counter(m, "himari_kafka_messages_consumed_total",
                                     "Messages delivered to the service, by topic.", "topic");
    c->lag = hm_metrics_gauge(m, "himari_kafka_consumer_lag",
                              "Offsets between the broker's high watermark and the position.",
                              "topic,partition");
    c->rebalances = hm_metrics_counter(m, "himari_kafka_rebalances_total",
                                       "Partition assignments and revocations.", "event");
    hm_metrics_on_collect(m, collect_lag, c);

    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new((int)o->n_topics);
    for (size_t i = 0; i < o->n_topics; i++)
        rd_kafka_topic_partition_list_add(subs, o->topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    int rc;
    if (e) {
        rc = hm_err_set(err, -EINVAL, "kafka consumer: subscribe: %s", rd_kafka_err2str(e));
        goto fail;
    }
    if ((rc = hm_kq_start(&c->kq, loop, rd_kafka_queue_get_consumer(rk), 2000, c, consumer_on_event,
                          consumer_on_turn, err)))
        goto fail;
    uv_timer_init(loop, &c->lag_timer);
    c->lag_timer.data = c;
    uv_timer_start(&c->lag_timer, on_lag_timer, (uint64_t)c->lag_refresh_ms,
                   (uint64_t)c->lag_refresh_ms);
    *out = c;
    return 0;
fail:
    hm_metrics_remove_collect(m, collect_lag, c);
    rd_kafka_destroy(rk);
    free(c);
    return rc;
}

rd_kafka_t *hm_consumer_rk(hm_consumer *c) {
    return c->rk;
}

void hm_consumer_pause(hm_consumer *c) {
    if (c->paused) return;
    c->paused = true;
    if (c->n_parts) {
        rd_kafka_topic_partition_list_t *l = parts_list(c);
        rd_kafka_pause_partitions(c->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
    }
    hm_log_info("kafka_consumer_paused", HM_LS("client", c->client));
}

void hm_consumer_resume(hm_consumer *c) {
    if (!c->paused) return;
    c->paused = false;
    if (c->n_parts) {
        rd_kafka_topic_partition_list_t *l = parts_list(c);
        rd_kafka_resume_partitions(c->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
    }
    hm_log_info("kafka_consumer_resumed", HM_LS("client", c->client));
}

bool hm_consumer_paused(const hm_consumer *c) {
    return c->paused;
}
void hm_consumer_hold(hm_consumer *c) {
    hm_kq_hold(&c->kq);
}
void hm_consumer_release(hm_consumer *c) {
    hm_kq_release(&c->kq);
}

/*
 * Closing: rd_kafka_consumer_close_queue() leaves the group in the background
 * and posts the final revoke on our queue, which the pump keeps draining (the
 * owner's on_revoke commits). When librdkafka reports closed, the pump and the
 * timer are closed, an in-flight lag query is awaited, and the client is
 * destroyed on a worker (rd_kafka_destroy joins librdkafka's threads).
 */
static void destroy_client(void *arg) {
    hm_consumer *c = arg;
    rd_kafka_destroy(c->rk);
}

static void free_consumer(void *arg) {
    hm_consumer *c = arg;
    void (*done)(void *) = c->close_done;
    void *ud = c->close_ud;
    clear_parts(c);
    free(c);
    if (done) done(ud);
}

static void consumer_close_step(hm_consumer *c) {
    if (c->close_pending > 0 || c->lag_work_active || c->queries_active) return;
    c->close_pending = -1; /* only once */
    hm_kafka_offload(c->loop, destroy_client, free_consumer, c);
}

static void on_close_handle(uv_handle_t *h) {
    hm_consumer *c = h->data;
    c->close_pending--;
    consumer_close_step(c);
}

static void on_kq_closed(hm_kq *kq) {
    hm_consumer *c = kq->owner;
    c->close_pending--;
    consumer_close_step(c);
}

static void finish_close(hm_consumer *c) {
    if (c->finishing) return;
    c->finishing = true;
    c->close_pending = 2;
    uv_timer_stop(&c->lag_timer);
    hm_kq_close(&c->kq, on_kq_closed);
    uv_close((uv_handle_t *)&c->lag_timer, on_close_handle);
}

void hm_consumer_close(hm_consumer *c, void (*done)(void *ud), void *ud) {
    c->closing = true;
    c->close_done = done;
    c->close_ud = ud;
    hm_metrics_remove_collect(c->metrics, collect_lag, c);
    uv_timer_start(&c->lag_timer, on_lag_timer, 100, 100);
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(c->rk, c->kq.q);
    if (e) {
        hm_log_warn("kafka_close_failed", HM_LS("client", c->client),
                    HM_LS("error", rd_kafka_error_string(e)));
        rd_kafka_error_destroy(e);
        finish_close(c);
        return;
    }
    hm_kq_release(&c->kq); /* keep draining: the last revoke arrives there */
}
