/*
 * kafka_int.h: pieces shared by the consumer and producer implementations,
 * not part of the public API.
 *
 * hm_kq is the pump that moves a librdkafka queue onto the libuv loop:
 * librdkafka writes one byte to a non-blocking pipe when the queue goes from
 * empty to non-empty; a uv_poll on the read end wakes the loop; the pump then
 * pops events with rd_kafka_queue_poll(q, 0) up to a budget per turn and, if
 * events remain, keeps a uv_idle handle active so the next turn goes on
 * without waiting for another byte (none would come: the queue never emptied).
 */
#ifndef HIMARI_KAFKA_INT_H
#define HIMARI_KAFKA_INT_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <uv.h>

#include "himari/kafka.h"
#include "himari/metrics.h"

typedef struct hm_kq hm_kq;

/** Handle one event; the callee destroys ev. */
typedef void (*hm_kq_event_fn)(hm_kq *kq, rd_kafka_event_t *ev);
/** After every drain turn, with the number of events it handled (may be 0:
 * some ops, e.g. a close's TERMINATE, are consumed inside rd_kafka_queue_poll). */
typedef void (*hm_kq_turn_fn)(hm_kq *kq, size_t n_events);

struct hm_kq {
    uv_loop_t *loop;
    rd_kafka_queue_t *q; /* owned: destroyed at close */
    int fds[2];          /* pipe: [0] read end (polled), [1] given to librdkafka */
    uv_poll_t poll;
    uv_idle_t idle;
    size_t budget; /* events per turn before yielding to other handles */
    bool held;     /* owner asked us to stop handing out events */
    bool closing;
    int handles_open;
    hm_kq_event_fn on_event;
    hm_kq_turn_fn on_turn;
    void (*on_closed)(hm_kq *kq);
    void *owner;
};

/** @brief Start pumping q (taken over) on loop. */
int hm_kq_start(hm_kq *kq, uv_loop_t *loop, rd_kafka_queue_t *q, size_t budget, void *owner,
                hm_kq_event_fn on_event, hm_kq_turn_fn on_turn, hm_err *err) HM_MUST_CHECK;
void hm_kq_hold(hm_kq *kq);
/** Release and schedule a drain on the next loop turn. */
void hm_kq_release(hm_kq *kq);
/** Drain now (e.g. from outside a callback, after a state change). */
void hm_kq_kick(hm_kq *kq);
/** Stop pumping, close the uv handles and the pipe, destroy the queue; on_closed after. */
void hm_kq_close(hm_kq *kq, void (*on_closed)(hm_kq *kq));

/**
 * @brief A consumer client from conf (taken over, also on failure), with the
 * main queue forwarded to the consumer queue so every event arrives on one
 * queue. NULL on failure, err naming what (e.g. "kafka reader").
 */
rd_kafka_t *hm_kafka_new_consumer(rd_kafka_conf_t *conf, const char *what, hm_err *err);

/**
 * @brief Run work(arg) on libuv's worker pool, then done(arg) on the loop
 * (for librdkafka calls that block: flush, destroy). If the pool refuses the
 * job, both run at once on the caller's thread.
 */
void hm_kafka_offload(uv_loop_t *loop, void (*work)(void *arg), void (*done)(void *arg), void *arg);

/** Metrics every client reports, created on first use per registry. */
typedef struct hm_kafka_metrics {
    hm_metric_family *errors;     /* himari_kafka_errors_total{client,error} */
    hm_metric_family *broker_rtt; /* himari_kafka_broker_rtt_seconds{client,broker} */
    hm_metric_family *queue_msgs; /* himari_kafka_client_queue_messages{client} */
    hm_metric_family *tx_msgs;    /* himari_kafka_client_tx_messages_total{client} */
    hm_metric_family *rx_msgs;    /* himari_kafka_client_rx_messages_total{client} */
} hm_kafka_metrics;

void hm_kafka_metrics_init(hm_kafka_metrics *km, hm_metrics *m);

/**
 * @brief Handle the events every client may see (LOG, ERROR, STATS).
 * @return true when ev was one of them (and was handled, not destroyed);
 * *fatal_reason is set (static or rk-owned text copied to buf) on a fatal error.
 */
bool hm_kafka_common_event(rd_kafka_t *rk, const char *client, hm_kafka_metrics *km,
                           rd_kafka_event_t *ev, char *fatal_buf, size_t fatal_buf_size,
                           bool *fatal);

/**
 * @brief A conf with the connection settings, the event mask, logs routed to
 * the main queue, and statistics when configured. The caller adds its own
 * properties and passes it to rd_kafka_new (which takes it on success).
 */
rd_kafka_conf_t *hm_kafka_conf_new(const hm_kafka_config *kc, const char *client_id, int events,
                                   hm_err *err);

#endif
