/*
 * out_kafka.h: himari-sim's Kafka output, a librdkafka idempotent producer.
 *
 * The simulator's only network I/O. Records go to one topic keyed by symbol
 * (NULL key allowed) with enable.idempotence=true, linger.ms=5 and snappy
 * compression (Debian's librdkafka 2.0.2 lists snappy in builtin.features).
 * Delivery reports are counted, never dropped: a record the broker did not
 * take is a failure in the summary. Single-threaded use only; delivery
 * reports are served from sim_kafka_poll()/produce on the caller's thread.
 */
#ifndef HIMARI_SIM_OUT_KAFKA_H
#define HIMARI_SIM_OUT_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include "himari/common.h"

typedef struct sim_kafka sim_kafka;

typedef struct sim_kafka_stats {
    uint64_t produced;  /* handed to librdkafka */
    uint64_t delivered; /* acknowledged by the broker */
    uint64_t failed;    /* delivery reports with an error, or still queued after the flush */
} sim_kafka_stats;

/**
 * @brief Create a producer for bootstrap (host:port,...) and topic.
 * The caller closes it with sim_kafka_close().
 */
int sim_kafka_new(const char *bootstrap, const char *topic, sim_kafka **out,
                  hm_err *err) HM_MUST_CHECK;

/**
 * @brief Produce one record (copied). When librdkafka's local queue is full it
 * serves delivery reports in 10 ms waits until there is room, so nothing is
 * dropped. Returns 0, or a negative code (fatal producer error) with err set.
 */
int sim_kafka_produce(sim_kafka *k, const char *value, size_t len, const char *key, size_t key_len,
                      hm_err *err) HM_MUST_CHECK;

/** @brief Serve delivery reports without waiting. */
void sim_kafka_poll(sim_kafka *k);

/** @brief The counts so far. */
sim_kafka_stats sim_kafka_get_stats(const sim_kafka *k);

/**
 * @brief Flush (waiting at most flush_ms), count what is still queued as
 * failed, destroy the producer and return the final counts in *stats.
 */
void sim_kafka_close(sim_kafka *k, int flush_ms, sim_kafka_stats *stats);

#endif
