/*
 * out_kafka.c: the producer behind himari-sim --kafka (see out_kafka.h).
 *
 * Sits at the top of the data flow, in place of the exchange connectors:
 * what it produces is raw_market_data. It must never drop a record silently:
 * a full local queue waits, a failed delivery is counted and reported, and
 * whatever is left after the final flush counts as failed.
 */
#include "out_kafka.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "himari/log.h"

struct sim_kafka {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    sim_kafka_stats stats;
};

/* Called exactly once per produced message, from rd_kafka_poll/flush. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    sim_kafka *k = opaque;
    if (msg->err) {
        k->stats.failed++;
        hm_log_limited(HM_LOG_ERROR, "delivery_failed", 10,
                       HM_LS("topic", rd_kafka_topic_name(msg->rkt)),
                       HM_LS("error", rd_kafka_err2str(msg->err)));
    } else {
        k->stats.delivered++;
    }
}

/* Client-level errors (broker down, ...); librdkafka retries by itself. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    hm_log_limited(HM_LOG_WARN, "kafka_error", 10,
                   HM_LS("error", rd_kafka_err2name((rd_kafka_resp_err_t)err)),
                   HM_LS("reason", reason));
}

/* librdkafka's own log lines, as our JSON lines. log.queue routes them to the
 * main queue, so this runs from rd_kafka_poll() on our thread: the rate
 * limiter in hm_log is not thread-safe. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    hm_log_limited(level <= 3 ? HM_LOG_ERROR : HM_LOG_WARN, "kafka_log", 30, HM_LS("facility", fac),
                   HM_LS("message", buf));
}

static int set(rd_kafka_conf_t *conf, const char *name, const char *value, hm_err *err) {
    char errstr[256];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
        return hm_err_set(err, -EINVAL, "kafka: %s=%s: %s", name, value, errstr);
    return 0;
}

int sim_kafka_new(const char *bootstrap, const char *topic, sim_kafka **out, hm_err *err) {
    *out = NULL;
    sim_kafka *k = hm_xcalloc(1, sizeof(*k));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    int rc;
    if ((rc = set(conf, "bootstrap.servers", bootstrap, err)) < 0 ||
        (rc = set(conf, "client.id", "himari-sim", err)) < 0 ||
        (rc = set(conf, "enable.idempotence", "true", err)) < 0 ||
        (rc = set(conf, "linger.ms", "5", err)) < 0 ||
        (rc = set(conf, "compression.type", "snappy", err)) < 0 ||
        /* Room for ~1 s at high rates; a full queue makes produce wait, not drop. */
        (rc = set(conf, "queue.buffering.max.messages", "1000000", err)) < 0 ||
        (rc = set(conf, "log.queue", "true", err)) < 0)
        goto err_conf;
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!k->rk) {
        rc =
            hm_err_set(err, -EINVAL, "kafka: cannot create producer for %s: %s", bootstrap, errstr);
        goto err_conf;
    }
    rd_kafka_set_log_queue(k->rk, NULL); /* NULL: the main queue, served by rd_kafka_poll */
    k->rkt = rd_kafka_topic_new(k->rk, topic, NULL);
    if (!k->rkt) {
        rc = hm_err_set(err, -EINVAL, "kafka: topic '%s': %s", topic,
                        rd_kafka_err2str(rd_kafka_last_error()));
        rd_kafka_destroy(k->rk);
        free(k);
        return rc;
    }
    *out = k;
    return 0;
err_conf:
    rd_kafka_conf_destroy(conf);
    free(k);
    return rc;
}

int sim_kafka_produce(sim_kafka *k, const char *value, size_t len, const char *key, size_t key_len,
                      hm_err *err) {
    for (;;) {
        if (rd_kafka_produce(k->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, (void *)value, len,
                             key, key ? key_len : 0, NULL) == 0) {
            k->stats.produced++;
            return 0;
        }
        rd_kafka_resp_err_t e = rd_kafka_last_error();
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            char reason[256];
            if (rd_kafka_fatal_error(k->rk, reason, sizeof(reason)))
                return hm_err_set(err, -EIO, "kafka: fatal producer error: %s", reason);
            return hm_err_set(err, -EIO, "kafka: produce: %s", rd_kafka_err2str(e));
        }
        rd_kafka_poll(k->rk, 10); /* wait for deliveries to make room */
    }
}

void sim_kafka_poll(sim_kafka *k) {
    rd_kafka_poll(k->rk, 0);
}

sim_kafka_stats sim_kafka_get_stats(const sim_kafka *k) {
    return k->stats;
}

void sim_kafka_close(sim_kafka *k, int flush_ms, sim_kafka_stats *stats) {
    rd_kafka_resp_err_t e = rd_kafka_flush(k->rk, flush_ms);
    int left = rd_kafka_outq_len(k->rk);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR || left > 0) {
        /* Still queued after the flush: never acknowledged, so failed. Purge
         * so destroy does not wait for them and their reports do not count twice. */
        hm_log_error("flush_timeout", HM_LI("undelivered", left), HM_LI("flush_ms", flush_ms));
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(k->rk, 0);
    }
    /* Purged messages report __PURGE_QUEUE errors through on_delivery, so
     * failed already includes them; anything unreported is counted here. */
    uint64_t reported = k->stats.delivered + k->stats.failed;
    if (reported < k->stats.produced) k->stats.failed += k->stats.produced - reported;
    *stats = k->stats;
    rd_kafka_topic_destroy(k->rkt);
    rd_kafka_destroy(k->rk);
    free(k);
}
