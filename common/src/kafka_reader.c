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
    int32_t *parts;
    bool *at_end;
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

static void mark_end(hm_reader *r, int32_t partition) {
    for (size_t i = 0; i < r->n_parts; i++) {
        if (r->parts[i] != partition || r->at_end[i]) continue;
        r->at_end[i] = true;
        if (++r->n_at_end == r->n_parts) report_done(r, 0, NULL);
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
                mark_end(r, m->partition);
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
            if (!r->done_reported && !r->closing) mark_end(r, tp->partition);
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
    snprintf(reason, sizeof(reason),
             "%s: not read to the end within the timeout (%zu of %zu "
             "partitions done)",
             r->topic, r->n_at_end, r->n_parts);
    report_done(r, -ETIMEDOUT, reason);
}

int hm_reader_start(uv_loop_t *loop, const hm_kafka_config *kc, const char *topic,
                    const int32_t *partitions, size_t n_partitions, int timeout_ms,
                    const hm_reader_handlers *h, void *ud, hm_reader **out, hm_err *err) {
    rd_kafka_conf_t *conf = hm_kafka_conf_new(kc, "himari-reader", 0, err);
    if (!conf) return -EINVAL;
    char group[300];
    snprintf(group, sizeof(group), "himari-reader-%s", topic);
    if (hm_kafka_conf_set(conf, "group.id", group, err) ||
        hm_kafka_conf_set(conf, "enable.partition.eof", "true", err) ||
        hm_kafka_conf_set(conf, "enable.auto.commit", "false", err) ||
        hm_kafka_conf_set(conf, "enable.auto.offset.store", "false", err) ||
        hm_kafka_conf_set(conf, "isolation.level", "read_committed", err)) {
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
    }
    rd_kafka_t *rk = hm_kafka_new_consumer(conf, "kafka reader", err);
    if (!rk) return -EINVAL;
    hm_reader *r = hm_xcalloc(1, sizeof(*r));
    r->loop = loop;
    r->rk = rk;
    r->h = *h;
    r->ud = ud;
    snprintf(r->topic, sizeof(r->topic), "%s", topic);
    r->n_parts = n_partitions;
    r->parts = hm_xcalloc(n_partitions ? n_partitions : 1, sizeof(*r->parts));
    r->at_end = hm_xcalloc(n_partitions ? n_partitions : 1, sizeof(*r->at_end));
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
    r->timer.data = r;
    r->handles_open = 1;
    uv_timer_start(&r->timer, on_timeout, (uint64_t)timeout_ms, 0);
    *out = r;
    if (n_partitions == 0) report_done(r, 0, NULL);
    return 0;
fail:
    rd_kafka_destroy(rk);
    hm_metrics_free(r->own_metrics);
    free(r->parts);
    free(r->at_end);
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
}

static void free_reader(void *arg) {
    hm_reader *r = arg;
    void (*done)(void *) = r->close_done;
    void *ud = r->close_ud;
    hm_metrics_free(r->own_metrics);
    free(r->parts);
    free(r->at_end);
    free(r);
    if (done) done(ud);
}

static void maybe_destroy(hm_reader *r) {
    if (r->handles_open > 0) return;
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
    r->handles_open = 2;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
    hm_kq_close(&r->kq, on_kq_closed);
}
