/*
 * kafka_probe.c: the health-gateway's look at the cluster (himari/kafka.h, "Probe"):
 * librdkafka's admin API on a client of its own, its results pumped onto the loop.
 *
 * A round sends DescribeCluster and one ListConsumerGroupOffsets per group (librdkafka
 * takes one group per call) at once; when the groups have answered, one ListOffsets
 * (latest, read_committed) for every partition they committed; then the callback. Each
 * request carries the round's timeout, so a round always ends: librdkafka answers every
 * admin request, with a timeout if nothing else. It must never block the loop: the client
 * is destroyed on the worker pool.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_int.h"

/* What a result event is for: the round's slot (opaque of its request). */
typedef enum probe_req { REQ_CLUSTER, REQ_GROUP, REQ_OFFSETS } probe_req;

typedef struct probe_slot {
    struct hm_kafka_probe *p;
    probe_req req;
    size_t group; /* REQ_GROUP: index into groups */
} probe_slot;

typedef struct probe_group {
    char *name;
    rd_kafka_topic_partition_list_t *committed; /* NULL until answered */
    char error[160];
} probe_group;

struct hm_kafka_probe {
    uv_loop_t *loop;
    rd_kafka_t *rk;
    hm_kq kq;
    hm_metrics *own_metrics;
    hm_kafka_metrics km;
    bool closing;
    void (*close_done)(void *ud);
    void *close_ud;

    /* The round in flight (busy). */
    bool busy;
    int timeout_ms;
    size_t pending; /* requests not answered */
    hm_kafka_probe_cb cb;
    void *ud;
    probe_slot cluster_slot, offsets_slot;
    probe_slot *group_slots;
    probe_group *groups;
    size_t n_groups;
    int err;
    char error[256];
    int brokers;
    int32_t controller;
    rd_kafka_topic_partition_list_t *ends; /* log ends, once answered */
};

static rd_kafka_AdminOptions_t *options(hm_kafka_probe *p, rd_kafka_admin_op_t op,
                                        probe_slot *slot) {
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(p->rk, op);
    char errstr[128];
    (void)rd_kafka_AdminOptions_set_request_timeout(o, p->timeout_ms, errstr, sizeof(errstr));
    rd_kafka_AdminOptions_set_opaque(o, slot);
    return o;
}

static void round_free(hm_kafka_probe *p) {
    for (size_t i = 0; i < p->n_groups; i++) {
        free(p->groups[i].name);
        if (p->groups[i].committed) rd_kafka_topic_partition_list_destroy(p->groups[i].committed);
    }
    free(p->groups);
    free(p->group_slots);
    if (p->ends) rd_kafka_topic_partition_list_destroy(p->ends);
    p->groups = NULL;
    p->group_slots = NULL;
    p->ends = NULL;
    p->n_groups = 0;
}

static int64_t log_end_of(const hm_kafka_probe *p, const char *topic, int32_t partition) {
    if (!p->ends) return -1;
    const rd_kafka_topic_partition_t *e =
        rd_kafka_topic_partition_list_find(p->ends, topic, partition);
    return e && !e->err ? e->offset : -1;
}

static void round_report(hm_kafka_probe *p) {
    hm_kafka_group_lag *lags = hm_xcalloc(p->n_groups ? p->n_groups : 1, sizeof(*lags));
    for (size_t i = 0; i < p->n_groups; i++) {
        probe_group *g = &p->groups[i];
        lags[i].group = g->name;
        lags[i].error = g->error;
        for (int j = 0; g->committed && j < g->committed->cnt; j++) {
            const rd_kafka_topic_partition_t *tp = &g->committed->elems[j];
            if (tp->err || tp->offset < 0) continue;
            int64_t end = log_end_of(p, tp->topic, tp->partition);
            if (end < 0) continue;
            lags[i].partitions++;
            if (end > tp->offset) lags[i].lag += end - tp->offset;
        }
    }
    hm_kafka_probe_result r = {.err = p->err,
                               .error = p->error,
                               .brokers = p->brokers,
                               .controller = p->controller,
                               .groups = lags,
                               .n_groups = p->n_groups};
    hm_kafka_probe_cb cb = p->cb;
    void *ud = p->ud;
    p->busy = false;
    cb(ud, &r);
    free(lags);
    round_free(p);
}

/* Every group answered: ask for the log ends of what they committed. */
static void send_offsets(hm_kafka_probe *p) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    for (size_t i = 0; i < p->n_groups; i++) {
        const rd_kafka_topic_partition_list_t *c = p->groups[i].committed;
        for (int j = 0; c && j < c->cnt; j++) {
            if (c->elems[j].err || c->elems[j].offset < 0) continue;
            if (rd_kafka_topic_partition_list_find(l, c->elems[j].topic, c->elems[j].partition))
                continue;
            rd_kafka_topic_partition_list_add(l, c->elems[j].topic, c->elems[j].partition)->offset =
                RD_KAFKA_OFFSET_SPEC_LATEST;
        }
    }
    if (l->cnt == 0) {
        rd_kafka_topic_partition_list_destroy(l);
        return;
    }
    p->offsets_slot = (probe_slot){p, REQ_OFFSETS, 0};
    rd_kafka_AdminOptions_t *o = options(p, RD_KAFKA_ADMIN_OP_LISTOFFSETS, &p->offsets_slot);
    (void)rd_kafka_AdminOptions_set_isolation_level(o, RD_KAFKA_ISOLATION_LEVEL_READ_COMMITTED);
    p->pending++;
    rd_kafka_ListOffsets(p->rk, l, o, p->kq.q);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_topic_partition_list_destroy(l);
}

static void set_error(hm_kafka_probe *p, rd_kafka_resp_err_t e, const char *what, const char *msg) {
    if (p->err) return; /* the first error says it */
    p->err = e == RD_KAFKA_RESP_ERR__TIMED_OUT ? -ETIMEDOUT : -EIO;
    snprintf(p->error, sizeof(p->error), "%s: %s", what, msg && *msg ? msg : rd_kafka_err2str(e));
}

static void on_cluster(hm_kafka_probe *p, rd_kafka_event_t *ev) {
    rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
    if (e) {
        set_error(p, e, "DescribeCluster", rd_kafka_event_error_string(ev));
        return;
    }
    const rd_kafka_DescribeCluster_result_t *res = rd_kafka_event_DescribeCluster_result(ev);
    size_t n = 0;
    (void)rd_kafka_DescribeCluster_result_nodes(res, &n);
    p->brokers = (int)n;
    const rd_kafka_Node_t *c = rd_kafka_DescribeCluster_result_controller(res);
    p->controller = c ? rd_kafka_Node_id(c) : -1;
}

static void on_group(hm_kafka_probe *p, probe_group *g, rd_kafka_event_t *ev) {
    rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
    if (e) {
        snprintf(g->error, sizeof(g->error), "%s", rd_kafka_event_error_string(ev));
        if (e == RD_KAFKA_RESP_ERR__TIMED_OUT)
            set_error(p, e, "ListConsumerGroupOffsets", g->error);
        return;
    }
    size_t n = 0;
    const rd_kafka_group_result_t **gr = rd_kafka_ListConsumerGroupOffsets_result_groups(
        rd_kafka_event_ListConsumerGroupOffsets_result(ev), &n);
    if (n < 1) {
        snprintf(g->error, sizeof(g->error), "no result for the group");
        return;
    }
    const rd_kafka_error_t *ge = rd_kafka_group_result_error(gr[0]);
    if (ge) {
        snprintf(g->error, sizeof(g->error), "%s", rd_kafka_error_string(ge));
        return;
    }
    const rd_kafka_topic_partition_list_t *parts = rd_kafka_group_result_partitions(gr[0]);
    if (parts) g->committed = rd_kafka_topic_partition_list_copy(parts);
}

static void on_offsets(hm_kafka_probe *p, rd_kafka_event_t *ev) {
    rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
    if (e) {
        set_error(p, e, "ListOffsets", rd_kafka_event_error_string(ev));
        return;
    }
    size_t n = 0;
    const rd_kafka_ListOffsetsResultInfo_t **infos =
        rd_kafka_ListOffsets_result_infos(rd_kafka_event_ListOffsets_result(ev), &n);
    p->ends = rd_kafka_topic_partition_list_new((int)(n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        const rd_kafka_topic_partition_t *tp =
            rd_kafka_ListOffsetsResultInfo_topic_partition(infos[i]);
        rd_kafka_topic_partition_t *d =
            rd_kafka_topic_partition_list_add(p->ends, tp->topic, tp->partition);
        d->offset = tp->offset;
        d->err = tp->err;
    }
}

static void on_event(hm_kq *kq, rd_kafka_event_t *ev) {
    hm_kafka_probe *p = kq->owner;
    char fatal_buf[256];
    bool fatal;
    if (hm_kafka_common_event(p->rk, "kafka-probe", &p->km, ev, fatal_buf, sizeof(fatal_buf),
                              &fatal)) {
        rd_kafka_event_destroy(ev);
        return;
    }
    probe_slot *slot = rd_kafka_event_opaque(ev);
    if (!slot || !p->busy || p->closing) {
        rd_kafka_event_destroy(ev);
        return;
    }
    switch (slot->req) {
        case REQ_CLUSTER:
            on_cluster(p, ev);
            break;
        case REQ_GROUP:
            on_group(p, &p->groups[slot->group], ev);
            break;
        case REQ_OFFSETS:
            on_offsets(p, ev);
            break;
    }
    rd_kafka_event_destroy(ev);
    p->pending--;
    if (slot->req == REQ_GROUP) {
        bool all = true;
        for (size_t i = 0; i < p->n_groups && all; i++)
            all = p->groups[i].committed || p->groups[i].error[0];
        if (all && !p->err) send_offsets(p);
    }
    if (p->pending == 0) round_report(p);
}

int hm_kafka_probe_new(uv_loop_t *loop, const hm_kafka_config *kc, hm_kafka_probe **out,
                       hm_err *err) {
    rd_kafka_conf_t *conf = hm_kafka_conf_new(kc, "himari-kafka-probe", 0, err);
    if (!conf) return -EINVAL;
    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return hm_err_set(err, -EINVAL, "kafka probe: %s", errstr);
    }
    hm_kafka_probe *p = hm_xcalloc(1, sizeof(*p));
    p->loop = loop;
    p->rk = rk;
    p->own_metrics = hm_metrics_new();
    hm_kafka_metrics_init(&p->km, p->own_metrics);
    int rc = hm_kq_start(&p->kq, loop, rd_kafka_queue_get_main(rk), 1000, p, on_event, NULL, err);
    if (rc) {
        rd_kafka_destroy(rk);
        hm_metrics_free(p->own_metrics);
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int hm_kafka_probe_run(hm_kafka_probe *p, const char *const *groups, size_t n_groups,
                       int timeout_ms, hm_kafka_probe_cb cb, void *ud) {
    if (p->busy || p->closing) return -EBUSY;
    p->busy = true;
    p->cb = cb;
    p->ud = ud;
    p->timeout_ms = timeout_ms > 0 ? timeout_ms : 1000;
    p->err = 0;
    p->error[0] = '\0';
    p->brokers = 0;
    p->controller = -1;
    p->n_groups = n_groups;
    p->groups = hm_xcalloc(n_groups ? n_groups : 1, sizeof(*p->groups));
    p->group_slots = hm_xcalloc(n_groups ? n_groups : 1, sizeof(*p->group_slots));
    p->pending = 1 + n_groups;

    p->cluster_slot = (probe_slot){p, REQ_CLUSTER, 0};
    rd_kafka_AdminOptions_t *o = options(p, RD_KAFKA_ADMIN_OP_DESCRIBECLUSTER, &p->cluster_slot);
    rd_kafka_DescribeCluster(p->rk, o, p->kq.q);
    rd_kafka_AdminOptions_destroy(o);
    for (size_t i = 0; i < n_groups; i++) {
        p->groups[i].name = hm_xstrdup(groups[i]);
        p->group_slots[i] = (probe_slot){p, REQ_GROUP, i};
        o = options(p, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS, &p->group_slots[i]);
        rd_kafka_ListConsumerGroupOffsets_t *req =
            rd_kafka_ListConsumerGroupOffsets_new(groups[i], NULL);
        rd_kafka_ListConsumerGroupOffsets(p->rk, &req, 1, o, p->kq.q);
        rd_kafka_ListConsumerGroupOffsets_destroy(req);
        rd_kafka_AdminOptions_destroy(o);
    }
    return 0;
}

static void destroy_client(void *arg) {
    hm_kafka_probe *p = arg;
    rd_kafka_destroy(p->rk);
}

static void free_probe(void *arg) {
    hm_kafka_probe *p = arg;
    void (*done)(void *) = p->close_done;
    void *ud = p->close_ud;
    round_free(p);
    hm_metrics_free(p->own_metrics);
    free(p);
    if (done) done(ud);
}

static void on_kq_closed(hm_kq *kq) {
    hm_kafka_probe *p = kq->owner;
    hm_kafka_offload(p->loop, destroy_client, free_probe, p);
}

void hm_kafka_probe_close(hm_kafka_probe *p, void (*done)(void *ud), void *ud) {
    p->closing = true;
    p->busy = false;
    p->close_done = done;
    p->close_ud = ud;
    hm_kq_close(&p->kq, on_kq_closed);
}
