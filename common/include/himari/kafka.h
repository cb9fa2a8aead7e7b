/*
 * himari/kafka.h: Kafka clients driven by the service's libuv loop.
 *
 * librdkafka does its network I/O on its own internal threads and hands
 * results to the application through queues. We never poll in a loop and
 * never start a thread to wait: each client's queue is given a pipe with
 * rd_kafka_queue_io_event_enable() (librdkafka writes a byte when the queue
 * goes from empty to non-empty) and a uv_poll on the pipe's read end wakes the
 * loop, which then drains events with rd_kafka_queue_poll(q, 0). Draining is
 * bounded per turn (so HTTP/gRPC are served between batches) and resumes from
 * a uv_idle handle while events remain. Every callback below therefore runs on
 * the loop thread.
 *
 * The only blocking librdkafka calls (init/commit/abort transaction, sending
 * offsets, watermark queries, destroy) run on libuv's worker pool via
 * uv_queue_work; librdkafka's API is thread-safe and the loop does not touch
 * the client in question until the after-work callback reports the result.
 *
 * Nothing here drops a message: a full local queue is reported as -EAGAIN to
 * the caller, who keeps the message and waits for on_writable.
 */
#ifndef HIMARI_KAFKA_H
#define HIMARI_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <uv.h>

#include "himari/common.h"
#include "himari/config.h"
#include "himari/metrics.h"

/** Connection settings shared by every client of a service (config section "kafka"). */
typedef struct hm_kafka_config {
    char *bootstrap_servers;
    char *security_protocol; /* plaintext | ssl | sasl_plaintext | sasl_ssl */
    char *sasl_mechanism;    /* PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512; empty: none */
    char *sasl_username;
    char *sasl_password; /* secret: kafka.sasl_password_file */
    char *ssl_ca_location;
    int64_t statistics_interval_ms;
    hm_str_map properties; /* any further librdkafka property, passed as is */
} hm_kafka_config;

/** The "kafka.*" keys; offsets are relative to an hm_kafka_config. */
extern const hm_cfg_key hm_kafka_config_keys[];
extern const size_t hm_kafka_config_keys_n;

/* ------------------------------------------------------------------------ */
/* Consumer                                                                  */

typedef struct hm_consumer hm_consumer;

typedef struct hm_consumer_handlers {
    /** One message (never an error event). Valid only during the call. */
    void (*on_message)(hm_consumer *c, const rd_kafka_message_t *msg, void *ud);
    /** After a drain turn that delivered messages: a moment to flush or commit. */
    void (*on_batch_end)(hm_consumer *c, void *ud);
    /**
     * Partitions were assigned. Call hm_consumer_assign(c, parts) now, or later
     * (e.g. after restoring their state). NULL: assigned at once from the
     * committed offsets.
     */
    void (*on_assign)(hm_consumer *c, const rd_kafka_topic_partition_list_t *parts, void *ud);
    /**
     * Partitions are being revoked: finish and commit their work, then call
     * hm_consumer_unassign(c). NULL: unassigned at once.
     */
    void (*on_revoke)(hm_consumer *c, const rd_kafka_topic_partition_list_t *parts, void *ud);
    /** The client hit a fatal error and cannot go on; reason names it. */
    void (*on_fatal)(hm_consumer *c, const char *reason, void *ud);
    /**
     * Records of one of our partitions could not be read (a batch that fails to
     * decompress or parse, an offset reset past records the broker deleted): err and
     * reason say why, offset where (-1 when librdkafka did not say). The consumer goes
     * on after them, so the owner must keep the gap (e.g. a dead letter) before the
     * next offset it commits. NULL: logged and counted only.
     */
    void (*on_consume_error)(hm_consumer *c, const char *topic, int32_t partition, int64_t offset,
                             rd_kafka_resp_err_t err, const char *reason, void *ud);
} hm_consumer_handlers;

typedef struct hm_consumer_opts {
    const char *group_id;
    const char *group_instance_id; /* static membership: a restart rejoins without a
                                      rebalance; NULL for dynamic membership */
    const char *const *topics;
    size_t n_topics;
    bool read_committed;           /* isolation.level=read_committed */
    bool auto_commit;              /* false for transactional pipelines and sinks */
    const char *auto_offset_reset; /* "earliest" (default) | "latest" */
    int session_timeout_ms;        /* 0: 10000 */
    int lag_refresh_ms;            /* 0: 2000; broker-side lag queries, see below */
    const char *client_id;         /* NULL: "himari" */
} hm_consumer_opts;

/**
 * @brief Create a consumer, subscribe to the topics and start draining its
 * queue on loop. Metrics (registered in m): himari_kafka_messages_consumed_total
 * {topic}, himari_kafka_consumer_lag{topic,partition},
 * himari_kafka_rebalances_total{event}, himari_kafka_errors_total{client,error}.
 */
int hm_consumer_new(uv_loop_t *loop, const hm_kafka_config *kc, const hm_consumer_opts *opts,
                    const hm_consumer_handlers *h, void *ud, hm_metrics *m, hm_consumer **out,
                    hm_err *err) HM_MUST_CHECK;

rd_kafka_t *hm_consumer_rk(hm_consumer *c);

/** @brief Complete an assignment (offsets INVALID = from the committed offset). */
int hm_consumer_assign(hm_consumer *c, const rd_kafka_topic_partition_list_t *parts) HM_MUST_CHECK;
/** @brief Complete a revocation. */
int hm_consumer_unassign(hm_consumer *c) HM_MUST_CHECK;
/** @brief The current assignment (a copy the caller destroys), or NULL when empty. */
rd_kafka_topic_partition_list_t *hm_consumer_assignment(hm_consumer *c);

/**
 * @brief Stop / restart fetching of every assigned partition (and of partitions
 * assigned later while paused). Messages already fetched but not delivered are
 * fetched again after resume from the last delivered offset: nothing is lost.
 * For operator Pause and for back-pressure from a slow sink.
 */
void hm_consumer_pause(hm_consumer *c);
void hm_consumer_resume(hm_consumer *c);
bool hm_consumer_paused(const hm_consumer *c);

/**
 * @brief Stop / restart delivering events to the handlers without pausing
 * fetching: for short holds (a transaction commit in flight, a full producer
 * queue). May be called from inside on_message; takes effect after it returns.
 */
void hm_consumer_hold(hm_consumer *c);
void hm_consumer_release(hm_consumer *c);

/**
 * @brief Go on at offset, past records that cannot be read (after on_consume_error
 * kept their gap): seek there and make it the position, so the next commit covers the
 * gap. -ENOENT when the partition is not assigned.
 */
int hm_consumer_skip_to(hm_consumer *c, const char *topic, int32_t partition,
                        int64_t offset) HM_MUST_CHECK;

/**
 * @brief Next offset to deliver for a partition (last delivered + 1), or
 * RD_KAFKA_OFFSET_INVALID if nothing was delivered since it was assigned.
 */
int64_t hm_consumer_position(const hm_consumer *c, const char *topic, int32_t partition);

/**
 * @brief Consumer lag of a partition in offsets: the broker's high watermark
 * (queried every lag_refresh_ms on a worker, so it also grows while paused)
 * minus the position. -1 when unknown. Includes transaction markers.
 */
int64_t hm_consumer_lag(const hm_consumer *c, const char *topic, int32_t partition);

/** What hm_consumer_offsets does with a partition list (on a worker). */
typedef enum hm_offsets_op {
    HM_OFFSETS_COMMITTED, /* look up the group's committed offsets (and their metadata) */
    HM_OFFSETS_FOR_TIMES, /* earliest offset whose timestamp is >= the offset field (ms);
                             -1 when no record is that recent */
    HM_OFFSETS_COMMIT,    /* commit these offsets (and metadata) to the group, synchronously */
} hm_offsets_op;

typedef void (*hm_offsets_cb)(hm_consumer *c, int err, const char *reason,
                              const rd_kafka_topic_partition_list_t *parts, void *ud);

/**
 * @brief Run op over a copy of parts on libuv's worker pool (these calls block in
 * librdkafka); cb runs on the loop with the result list (valid during the call; per
 * partition errors in its err fields) and err 0, or a negative code and a reason.
 * A close waits for queries in flight; cb is then still called.
 */
int hm_consumer_offsets(hm_consumer *c, hm_offsets_op op,
                        const rd_kafka_topic_partition_list_t *parts, int timeout_ms,
                        hm_offsets_cb cb, void *ud) HM_MUST_CHECK;

/**
 * @brief Leave the group (on_revoke runs for the last assignment, so work can
 * be committed), destroy the client and free c; done runs on the loop after.
 */
void hm_consumer_close(hm_consumer *c, void (*done)(void *ud), void *ud);

/* ------------------------------------------------------------------------ */
/* Producer                                                                  */

typedef struct hm_producer hm_producer;

typedef struct hm_producer_handlers {
    /** Delivery result of one message; err 0 means persisted by the broker. */
    void (*on_delivery)(hm_producer *p, rd_kafka_resp_err_t err, const rd_kafka_message_t *m,
                        void *msg_opaque, void *ud);
    /** The local queue has room again after hm_producer_send returned -EAGAIN. */
    void (*on_writable)(hm_producer *p, void *ud);
    /** Fatal error (e.g. fenced by a newer instance): this producer is finished. */
    void (*on_fatal)(hm_producer *p, const char *reason, void *ud);
} hm_producer_handlers;

typedef struct hm_producer_opts {
    const char *transactional_id; /* NULL: idempotent producer without transactions */
    int transaction_timeout_ms;   /* 0: 10000; a dead instance's open transaction is
                                     aborted by the broker after this long */
    int txn_op_timeout_ms;        /* 0: 30000; how long init/commit/abort may block */
    int linger_ms;                /* 0: 5 */
    const char *compression;      /* NULL: "snappy" (the seed's topics are snappy) */
    const char *client_id;        /* NULL: "himari" */
} hm_producer_opts;

int hm_producer_new(uv_loop_t *loop, const hm_kafka_config *kc, const hm_producer_opts *opts,
                    const hm_producer_handlers *h, void *ud, hm_metrics *m, hm_producer **out,
                    hm_err *err) HM_MUST_CHECK;

rd_kafka_t *hm_producer_rk(hm_producer *p);

/**
 * @brief Enqueue one message (payload and key copied). hdrs, when not NULL, is
 * taken over on success and left to the caller on failure.
 * @return 0; -EAGAIN when the local queue is full (keep the message, wait for
 * on_writable); -EBUSY while a transaction operation is in flight; -EIO for
 * other errors (err says which).
 */
int hm_producer_send(hm_producer *p, const char *topic, int32_t partition, const void *key,
                     size_t key_len, const void *val, size_t val_len, rd_kafka_headers_t *hdrs,
                     void *msg_opaque, hm_err *err) HM_MUST_CHECK;

/** @brief Messages enqueued and not yet reported delivered or failed. */
size_t hm_producer_outstanding(const hm_producer *p);

/** The outcome of a transaction operation, delivered on the loop. */
typedef struct hm_txn_result {
    int err;        /* 0: success */
    bool retriable; /* the same call may be repeated */
    bool abortable; /* abort the transaction, rewind the input, go on */
    bool fatal;     /* the producer is finished (fenced, ...): exit */
    double seconds; /* how long the operation took */
    char msg[256];
} hm_txn_result;

typedef void (*hm_txn_cb)(hm_producer *p, const hm_txn_result *r, void *ud);

/** @brief init_transactions (fences an older instance with the same id). */
int hm_producer_txn_init(hm_producer *p, hm_txn_cb cb, void *ud) HM_MUST_CHECK;
/** @brief begin_transaction: local and immediate. */
int hm_producer_txn_begin(hm_producer *p, hm_err *err) HM_MUST_CHECK;
/**
 * @brief send_offsets_to_transaction (when offsets is not NULL) then
 * commit_transaction, on a worker. offsets and cgmd are copied. Until cb runs,
 * hm_producer_send returns -EBUSY.
 */
int hm_producer_txn_commit(hm_producer *p, const rd_kafka_topic_partition_list_t *offsets,
                           const rd_kafka_consumer_group_metadata_t *cgmd, hm_txn_cb cb,
                           void *ud) HM_MUST_CHECK;
int hm_producer_txn_abort(hm_producer *p, hm_txn_cb cb, void *ud) HM_MUST_CHECK;
bool hm_producer_txn_busy(const hm_producer *p);
/** @brief How long the next transaction operations may block (e.g. what is left of a stop). */
void hm_producer_set_txn_op_timeout(hm_producer *p, int timeout_ms);

/**
 * @brief Flush (up to flush_timeout_ms), destroy and free p; done runs on the
 * loop afterwards with the number of messages that could not be delivered.
 */
void hm_producer_close(hm_producer *p, int flush_timeout_ms,
                       void (*done)(void *ud, size_t undelivered), void *ud);

/* ------------------------------------------------------------------------ */
/* Reader: a partition's log from the beginning to its end                   */

typedef struct hm_reader hm_reader;

typedef struct hm_reader_handlers {
    /** One record, in log order per partition. Valid only during the call. */
    void (*on_message)(hm_reader *r, const rd_kafka_message_t *msg, void *ud);
    /**
     * Every partition has been read to its end (read_committed: the last
     * stable offset), or reading failed (err != 0, reason says why, e.g. the
     * broker did not answer within the timeout). Called once.
     */
    void (*on_done)(hm_reader *r, int err, const char *reason, void *ud);
} hm_reader_handlers;

/**
 * @brief Read topic's partitions from their beginning, committed records only,
 * outside any consumer group (for restoring state from a changelog). Driven by
 * the loop like the consumer. timeout_ms bounds the whole read.
 */
int hm_reader_start(uv_loop_t *loop, const hm_kafka_config *kc, const char *topic,
                    const int32_t *partitions, size_t n_partitions, int timeout_ms,
                    const hm_reader_handlers *h, void *ud, hm_reader **out,
                    hm_err *err) HM_MUST_CHECK;

/** @brief Records delivered so far. */
uint64_t hm_reader_count(const hm_reader *r);

/** @brief Stop (if still reading), destroy and free r; done (may be NULL) runs after. */
void hm_reader_close(hm_reader *r, void (*done)(void *ud), void *ud);

/* ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------ */
/* Probe: is the cluster there, and how far behind are these groups?         */

typedef struct hm_kafka_probe hm_kafka_probe;

/** One consumer group's lag: the log end (read_committed) minus its committed offset,
 *  summed over the partitions it has committed. */
typedef struct hm_kafka_group_lag {
    const char *group;
    int64_t lag;
    int partitions;    /* partitions with a committed offset */
    const char *error; /* "" or why this group's lag is unknown */
} hm_kafka_group_lag;

typedef struct hm_kafka_probe_result {
    int err;           /* 0: the cluster answered; -ETIMEDOUT, -EIO */
    const char *error; /* "" when err is 0 */
    int brokers;
    int32_t controller; /* -1: none known */
    const hm_kafka_group_lag *groups;
    size_t n_groups;
} hm_kafka_probe_result;

/** The end of a probe round; r and what it points to are valid during the call. */
typedef void (*hm_kafka_probe_cb)(void *ud, const hm_kafka_probe_result *r);

/**
 * @brief An admin client on loop (librdkafka's admin API, its results pumped onto the
 * loop). Close with hm_kafka_probe_close.
 */
int hm_kafka_probe_new(uv_loop_t *loop, const hm_kafka_config *kc, hm_kafka_probe **out,
                       hm_err *err) HM_MUST_CHECK;
/**
 * @brief One round: DescribeCluster and each group's committed offsets at once, then the
 * log ends of their partitions; every request bounded by timeout_ms. cb runs once, on the
 * loop, never from within this call. groups are copied.
 * @return 0, or -EBUSY while the previous round has not ended (cb not called).
 */
int hm_kafka_probe_run(hm_kafka_probe *p, const char *const *groups, size_t n_groups,
                       int timeout_ms, hm_kafka_probe_cb cb, void *ud) HM_MUST_CHECK;
/** @brief Stop (a round in flight never calls back) and free; done(ud) when all is gone. */
void hm_kafka_probe_close(hm_kafka_probe *p, void (*done)(void *ud), void *ud);

/**
 * @brief Apply hm_kafka_config (bootstrap, security, SASL, properties) to a
 * librdkafka conf. Used by the clients above and by tools.
 */
int hm_kafka_conf_apply(rd_kafka_conf_t *conf, const hm_kafka_config *kc,
                        hm_err *err) HM_MUST_CHECK;
/**
 * @brief What every consumer of ours sets unless kc's properties say otherwise:
 * fetch.queue.backoff.ms 10 (librdkafka's 1 s starves a consumer that drains its queue
 * fast). A value in kc's properties (already applied by hm_kafka_conf_new) is left as is.
 */
int hm_kafka_conf_consumer_defaults(rd_kafka_conf_t *conf, const hm_kafka_config *kc,
                                    hm_err *err) HM_MUST_CHECK;
/** @brief rd_kafka_conf_set that turns a failure into an hm_err. */
int hm_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
                      hm_err *err) HM_MUST_CHECK;

#endif
