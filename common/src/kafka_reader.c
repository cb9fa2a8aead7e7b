/*
 * kafka_reader.c: read partitions of a topic from the beginning to their end
 * (the last stable offset: committed records only) on the libuv loop, outside
 * any consumer group. Services restore their state from a changelog with it
 * before they take over the input partitions.
 *
 * End of a partition is librdkafka's PARTITION_EOF (enable.partition.eof),
 * which the event API delivers as an error event naming the partition; an
 * empty partition reports it at once. The client has a group.id only
 * because librdkafka wants one for its consumer queue; it never joins the
 * group (assign, not subscribe) and never commits.
 *
 * The end must also be final: read_committed stops at the last stable offset, and
 * a transaction not yet resolved (its commit markers still being written after the
 * commit returned, or one left open by a dead writer) hides what lies after it. A
 * restore that stopped there would miss committed state whose offsets are already
 * committed. So at each end the reader asks a second, read_uncommitted client for the
 * log end (high watermark): the partition is done only when the readable end reached
 * it, i.e. nothing is pending; otherwise it keeps reading and asks again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/log.h"
#include "kafka_int.h"

struct hm_reader {
    uv_loop_t *loop;
    rd_kafka_t *rk;
    hm_kq kq;
    hm_reader_handlers h;
    void *ud;
    char topic[256];
    rd_kafka_t *probe; /* read_uncommitted: sees the log end past open transactions */
    int32_t *parts;
    bool *at_end;
    int64_t *eof_at;  /* readable end seen at the last EOF; -1: none yet */
    int64_t *log_end; /* high watermark from the last check; -1: unknown */
    bool *checking;   /* a log-end query is in flight */
    bool *waiting;    /* pending transactions seen: checked again by the timer */
    int checks_active;
    uv_timer_t recheck;
    size_t n_parts, n_at_end;
    uint64_t count;
    bool done_reported;
    bool closing;
    uv_timer_t timer;
    int handles_open;
    hm_kafka_metrics km;
    hm_metrics *own_metrics;
    void (*close_done)(void *);
    void *close_ud;
};

static void report_done(hm_reader *r, int err, const char *reason) {
    if (r->done_reported) return;
    r->done_reported = true;
    uv_timer_stop(&r->timer);
    if (r->h.on_done) r->h.on_done(r, err, reason, r->ud);
}

static void maybe_destroy(hm_reader *r);

static void finish_partition(hm_reader *r, size_t i) {
    if (r->at_end[i]) return;
    r->at_end[i] = true;
    r->waiting[i] = false;
    if (++r->n_at_end == r->n_parts) report_done(r, 0, NULL);
}

/* A log-end query for one partition, on a worker. */
typedef struct end_check {
    hm_reader *r;
    size_t i;
    int64_t hwm; /* -1: the query failed */
} end_check;

static void end_check_run(void *arg) {
    end_check *c = arg;
    int64_t lo, hi;
    if (rd_kafka_query_watermark_offsets(c->r->probe, c->r->topic, c->r->parts[c->i], &lo, &hi,
                                         5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
        c->hwm = hi;
    else
        c->hwm = -1;
}

static void start_end_check(hm_reader *r, size_t i);

/* Partitions waiting for a transaction to resolve: where has reading got to, and where
 * is the log end now? (Reading past an abort's records and markers delivers nothing, so
 * the position, not a new EOF, tells that the reader moved.) */
static void on_recheck(uv_timer_t *t) {
    hm_reader *r = t->data;
    if (r->done_reported || r->closing) return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)r->n_parts);
    for (size_t i = 0; i < r->n_parts; i++)
        if (r->waiting[i]) rd_kafka_topic_partition_list_add(l, r->topic, r->parts[i]);
    if (rd_kafka_position(r->rk, l) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int j = 0; j < l->cnt; j++)
            for (size_t i = 0; i < r->n_parts; i++)
                if (r->parts[i] == l->elems[j].partition && l->elems[j].offset > r->eof_at[i])
                    r->eof_at[i] = l->elems[j].offset;
    }
    rd_kafka_topic_partition_list_destroy(l);
    for (size_t i = 0; i < r->n_parts; i++)
        if (r->waiting[i]) start_end_check(r, i);
}

static void end_check_done(void *arg) {
    end_check *c = arg;
    hm_reader *r = c->r;
    size_t i = c->i;
    int64_t hwm = c->hwm;
    free(c);
    r->checks_active--;
    r->checking[i] = false;
    if (r->closing) {
        maybe_destroy(r);
        return;
    }
    if (r->done_reported || r->at_end[i]) return;
    r->log_end[i] = hwm;
    if (hwm >= 0 && r->eof_at[i] >= hwm) {
        finish_partition(r, i);
        return;
    }
    if (!r->waiting[i])
        hm_log_warn("reader_waiting_for_transactions", HM_LS("topic", r->topic),
                    HM_LI("partition", r->parts[i]), HM_LI("readable_end", r->eof_at[i]),
                    HM_LI("log_end", hwm),
                    HM_LS("note", "a transaction on this partition is not resolved yet"));
    r->waiting[i] = true;
    if (!uv_is_active((uv_handle_t *)&r->recheck)) uv_timer_start(&r->recheck, on_recheck, 200, 0);
}

static void start_end_check(hm_reader *r, size_t i) {
    if (r->checking[i] || r->at_end[i]) return;
    end_check *c = hm_xcalloc(1, sizeof(*c));
    c->r = r;
    c->i = i;
    r->checking[i] = true;
    r->checks_active++;
    hm_kafka_offload(r->loop, end_check_run, end_check_done, c);
}

/* The readable end a partition reached. */
static void mark_end(hm_reader *r, int32_t partition, int64_t offset) {
    for (size_t i = 0; i < r->n_parts; i++) {
        if (r->parts[i] != partition || r->at_end[i]) continue;
        if (offset > r->eof_at[i]) r->eof_at[i] = offset;
        start_end_check(r, i);
        return;
    }
}

static void reader_on_event(hm_kq *kq, rd_kafka_event_t *ev) {
    hm_reader *r = kq->owner;
    char reason[512];
    bool fatal;
    if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_FETCH) {
        const rd_kafka_message_t *m;
        while ((m = rd_kafka_event_message_next(ev))) {
            if (r->done_reported || r->closing) continue;
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                mark_end(r, m->partition, m->offset);
            } else if (m->err) {
                snprintf(reason, sizeof(reason), "%s [%d]: %s", r->topic, (int)m->partition,
                         rd_kafka_message_errstr(m));
                report_done(r, -EIO, reason);
            } else {
                r->count++;
                r->h.on_message(r, m, r->ud);
            }
        }
    } else if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_ERROR &&
               rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        /* With the event API, end-of-partition comes as an error event that
         * carries its partition, not as a message. */
        rd_kafka_topic_partition_t *tp = rd_kafka_event_topic_partition(ev);
        if (tp) {
            if (!r->done_reported && !r->closing) mark_end(r, tp->partition, tp->offset);
            rd_kafka_topic_partition_destroy(tp);
        }
    } else if (hm_kafka_common_event(r->rk, "reader", &r->km, ev, reason, sizeof(reason), &fatal) &&
               fatal) {
        report_done(r, -EIO, reason);
    }
    rd_kafka_event_destroy(ev);
}

static void on_timeout(uv_timer_t *t) {
    hm_reader *r = t->data;
    char reason[400];
    int n = snprintf(reason, sizeof(reason),
                     "%s: not read to the end within the timeout (%zu of %zu partitions done)",
                     r->topic, r->n_at_end, r->n_parts);
    for (size_t i = 0; i < r->n_parts && n > 0 && (size_t)n < sizeof(reason); i++)
        if (r->waiting[i])
            n += snprintf(reason + n, sizeof(reason) - (size_t)n,
                          "; partition %d has an unresolved transaction (readable to %lld, log "
                          "end %lld)",
                          (int)r->parts[i], (long long)r->eof_at[i], (long long)r->log_end[i]);
    report_done(r, -ETIMEDOUT, reason);
}

/* The client that sees the log end: read_uncommitted, never assigned or subscribed, and
 * never polled (its few log events wait in its queue until it is destroyed). */
static rd_kafka_t *new_probe(const hm_kafka_config *kc, const char *group, hm_err *err) {
    rd_kafka_conf_t *conf = hm_kafka_conf_new(kc, "himari-reader-probe", 0, err);
    if (!conf) return NULL;
    if (hm_kafka_conf_set(conf, "group.id", group, err) ||
        hm_kafka_conf_set(conf, "enable.auto.commit", "false", err) ||
        hm_kafka_conf_set(conf, "statistics.interval.ms", "0", err) ||
        hm_kafka_conf_set(conf, "isolation.level", "read_uncommitted", err)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        hm_err_set(err, -EINVAL, "kafka reader: log-end client: %s", errstr);
    }
    return rk;
}

static void free_arrays(hm_reader *r) {
    free(r->parts);
    free(r->at_end);
    free(r->eof_at);
    free(r->log_end);
    free(r->checking);
    free(r->waiting);
}

int hm_reader_start(uv_loop_t *loop, const hm_kafka_config *kc, const char *topic,
                    const int32_t *partitions, size_t n_partitions, int timeout_ms,
                    const hm_reader_handlers *h, void *ud, hm_reader **out, hm_err *err) {
    rd_kafka_conf_t *conf = hm_kafka_conf_new(kc, "himari-reader", 0, err);
    if (!conf) return -EINVAL;
    char group[300];
    snprintf(group, sizeof(group), "himari-reader-%s", topic);
    if (hm_kafka_conf_consumer_defaults(conf, kc, err) ||
        hm_kafka_conf_set(conf, "group.id", group, err) ||
        hm_kafka_conf_set(conf, "enable.partition.eof", "true", err) ||
        hm_kafka_conf_set(conf, "enable.auto.commit", "false", err) ||
        hm_kafka_conf_set(conf, "enable.auto.offset.store", "false", err) ||
        hm_kafka_conf_set(conf, "isolation.level", "read_committed", err)) {
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
    }
    rd_kafka_t *rk = hm_kafka_new_consumer(conf, "kafka reader", err);
    if (!rk) return -EINVAL;
    rd_kafka_t *probe = new_probe(kc, group, err);
    if (!probe) {
        rd_kafka_destroy(rk);
        return -EINVAL;
    }
    hm_reader *r = hm_xcalloc(1, sizeof(*r));
    r->probe = probe;
    r->loop = loop;
    r->rk = rk;
    r->h = *h;
    r->ud = ud;
    snprintf(r->topic, sizeof(r->topic), "%s", topic);
    r->n_parts = n_partitions;
    r->parts = hm_xcalloc(n_partitions ? n_partitions : 1, sizeof(*r->parts));
    r->at_end = hm_xcalloc(n_partitions ? n_partitions : 1, sizeof(*r->at_end));
    r->eof_at = hm_xcalloc(n_partitions ? n_partitions : 1, sizeof(*r->eof_at));
    r->log_end = hm_xcalloc(n_partitions ? n_partitions : 1, sizeof(*r->log_end));
    r->checking = hm_xcalloc(n_partitions ? n_partitions : 1, sizeof(*r->checking));
    r->waiting = hm_xcalloc(n_partitions ? n_partitions : 1, sizeof(*r->waiting));
    for (size_t i = 0; i < n_partitions; i++)
        r->eof_at[i] = r->log_end[i] = -1;
    memcpy(r->parts, partitions, n_partitions * sizeof(*partitions));
    /* The reader's client metrics are its own: it is short-lived. */
    r->own_metrics = hm_metrics_new();
    hm_kafka_metrics_init(&r->km, r->own_metrics);

    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n_partitions);
    for (size_t i = 0; i < n_partitions; i++)
        rd_kafka_topic_partition_list_add(l, topic, partitions[i])->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    int rc;
    if (e) {
        rc = hm_err_set(err, -EIO, "kafka reader: assign %s: %s", topic, rd_kafka_err2str(e));
        goto fail;
    }
    if ((rc = hm_kq_start(&r->kq, loop, rd_kafka_queue_get_consumer(rk), 5000, r, reader_on_event,
                          NULL, err)))
        goto fail;
    uv_timer_init(loop, &r->timer);
    uv_timer_init(loop, &r->recheck);
    r->timer.data = r->recheck.data = r;
    r->handles_open = 2;
    uv_timer_start(&r->timer, on_timeout, (uint64_t)timeout_ms, 0);
    *out = r;
    if (n_partitions == 0) report_done(r, 0, NULL);
    return 0;
fail:
    rd_kafka_destroy(rk);
    rd_kafka_destroy(probe);
    hm_metrics_free(r->own_metrics);
    free_arrays(r);
    free(r);
    return rc;
}

uint64_t hm_reader_count(const hm_reader *r) {
    return r->count;
}

static void destroy_client(void *arg) {
    hm_reader *r = arg;
    /* Never joined a group: nothing to leave, so destroy without the close. */
    rd_kafka_destroy_flags(r->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    rd_kafka_destroy_flags(r->probe, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

static void free_reader(void *arg) {
    hm_reader *r = arg;
    void (*done)(void *) = r->close_done;
    void *ud = r->close_ud;
    hm_metrics_free(r->own_metrics);
    free_arrays(r);
    free(r);
    if (done) done(ud);
}

static void maybe_destroy(hm_reader *r) {
    if (r->handles_open > 0 || r->checks_active > 0) return;
    r->handles_open = -1; /* only once */
    hm_kafka_offload(r->loop, destroy_client, free_reader, r);
}

static void on_timer_closed(uv_handle_t *h) {
    hm_reader *r = h->data;
    r->handles_open--;
    maybe_destroy(r);
}

static void on_kq_closed(hm_kq *kq) {
    hm_reader *r = kq->owner;
    r->handles_open--;
    maybe_destroy(r);
}

void hm_reader_close(hm_reader *r, void (*done)(void *ud), void *ud) {
    r->closing = true;
    r->done_reported = true; /* no on_done after close */
    r->close_done = done;
    r->close_ud = ud;
    r->handles_open = 3;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
    uv_close((uv_handle_t *)&r->recheck, on_timer_closed);
    hm_kq_close(&r->kq, on_kq_closed);
}
