/*
 * himari/stage.h: the Kafka stage framework: the consume-process-commit loop every
 * Kafka service of HIMARI plugs its logic into.
 *
 *   input topic --consumer--> ops->process(record) --hm_stage_send--> output topics
 *                    ^                  |                               (in the open unit)
 *                    |                  '-- state: changelog / rebuilt / external sink
 *              committed offsets <------- commit: one unit of work at a time
 *
 * The framework owns the protocol: transactions or sink batches, offsets, restore,
 * assignment and revocation, back-pressure, the stop sequence, and the metrics and
 * status of all that. The service owns what is special about it, behind the hooks of
 * hm_stage_ops: what a record means, what its state is, where its sink is. Three
 * shapes share the machine (docs/ARCHITECTURE.md, "The stage framework"):
 *
 *   HM_STAGE_CHANGELOG  transactional outputs and a changelog of the state, written in
 *                       the same Kafka transaction as the outputs, with checkpoint
 *                       records naming the consumed offsets (or those sent to the group
 *                       coordinator in it: HM_STAGE_OFFSETS_GROUP); a new owner reads the
 *                       changelog partitions (same numbers as the input's) to their end
 *                       and resumes where the checkpoints say. (ingest-validator)
 *   HM_STAGE_REBUILD    transactional outputs; the state is rebuilt from the input
 *                       itself: a new owner seeks to the committed offset minus the
 *                       longest window (rebuild_window_ms, by record timestamp), feeds
 *                       those records to process() flagged `rebuilding` (their outputs
 *                       were committed before, so sends are suppressed), then goes live.
 *                       (feature-engine: windows are large, a changelog of them is not)
 *   HM_STAGE_SINK       an external sink (PostgreSQL, Neo4j): no Kafka transaction.
 *                       Records are handed to process(); when a unit is due the
 *                       framework calls sink_flush() and the service writes what it
 *                       processed since the last flush and calls hm_stage_sink_done().
 *                       Only then are the offsets committed. A failed flush is retried
 *                       with back-off while consumption is held; writes must be
 *                       idempotent, since a crash between the sink's commit and the
 *                       offset commit redelivers the unit. (archiver, graph-writer)
 *
 * Two small state machines, each one enum whose every change is asserted against a
 * table of allowed transitions (stage.c, k_stage_next / k_unit_next):
 *
 *   hm_stage_state (ownership and life cycle)
 *     INIT --init done--> IDLE --assigned--> RESTORING --restored--> RUNNING
 *       RUNNING --revoked--> REVOKING --unit closed--> IDLE
 *       RUNNING --abort done (rewind)--> RESTORING
 *       any --stop--> STOPPING --unit closed--> CLOSING --clients closed--> CLOSED
 *   hm_stage_unit (the unit of work between two commits)
 *     NONE --record--> OPEN --commit--> COMMITTING --ok--> NONE
 *       OPEN --send or delivery failed--> DOOMED --abort--> ABORTING --ok--> NONE
 *       COMMITTING --abortable error--> ABORTING;  any --fatal (fenced)--> FENCED
 *
 * Why the consumer is not read: a set of hold reasons (HM_STAGE_HOLD_*, a bitmask),
 * so that e.g. the end of a commit does not release a consumer that a full producer
 * queue still holds. Operator pause is separate (fetching stops, see hm_consumer_pause).
 *
 * Everything runs on the service's loop; hooks are called from it and must not block.
 * Nothing is lost: a record's offset is committed only in (or, for a sink, after) the
 * unit that carries its effects; a send that cannot be made now is stashed in order
 * and the consumer held until the producer has room.
 */
#ifndef HIMARI_STAGE_H
#define HIMARI_STAGE_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "himari/common.h"
#include "himari/control.h"
#include "himari/kafka.h"
#include "himari/service.h"

typedef enum hm_stage_shape {
    HM_STAGE_CHANGELOG = 1,
    HM_STAGE_REBUILD,
    HM_STAGE_SINK,
} hm_stage_shape;

typedef enum hm_stage_state {
    HM_STAGE_INIT = 0,  /* clients created; init_transactions in flight (not for sinks) */
    HM_STAGE_IDLE,      /* ready; the group has given us no partitions */
    HM_STAGE_RESTORING, /* partitions given; their state is being restored (changelog read,
                           committed offsets looked up); nothing is consumed yet */
    HM_STAGE_RUNNING,   /* partitions assigned to the consumer; records flow */
    HM_STAGE_REVOKING,  /* partitions being taken away: the open unit is being closed */
    HM_STAGE_STOPPING,  /* stop requested: the open unit is being closed */
    HM_STAGE_CLOSING,   /* consumer and producer closing */
    HM_STAGE_CLOSED,    /* everything closed; hm_service_finish() was called */
    HM_STAGE_STATE_COUNT_
} hm_stage_state;

typedef enum hm_stage_unit {
    HM_UNIT_NONE = 0,   /* nothing open */
    HM_UNIT_OPEN,       /* records processed (or outputs sent) since the last commit */
    HM_UNIT_DOOMED,     /* open, but cannot commit (a send or delivery failed): abort */
    HM_UNIT_COMMITTING, /* commit in flight (sink: flush, then offset commit) */
    HM_UNIT_ABORTING,   /* abort in flight; a rewind follows */
    HM_UNIT_FENCED,     /* terminal: the producer is finished, nothing more is committed */
    HM_UNIT_STATE_COUNT_
} hm_stage_unit;

/** Why the consumer is held (bits); it is released when none is left. */
enum {
    HM_STAGE_HOLD_COMMIT = 1u << 0,   /* a commit or abort is in flight */
    HM_STAGE_HOLD_QUEUE = 1u << 1,    /* the producer queue is full; sends are stashed */
    HM_STAGE_HOLD_FULL = 1u << 2,     /* the open unit reached commit_max_records */
    HM_STAGE_HOLD_SERVICE = 1u << 3,  /* the service asked (hm_stage_hold) */
    HM_STAGE_HOLD_RETRY = 1u << 4,    /* sink: a failed flush waits for its retry */
    HM_STAGE_HOLD_STOPPING = 1u << 5, /* a stop or revoke is under way */
};

/** What a transactional shape promises downstream. */
typedef enum hm_stage_delivery {
    HM_STAGE_EXACTLY_ONCE = 0, /* outputs, state and offsets in one Kafka transaction */
    HM_STAGE_AT_LEAST_ONCE,    /* no transactions: outputs are visible when delivered; the
                                  offsets follow the deliveries, so a crash repeats the
                                  records since the last commit (outputs twice, state
                                  changes applied again) */
} hm_stage_delivery;

/** Where an exactly-once stage keeps its input offsets (see docs/ARCHITECTURE.md). */
typedef enum hm_stage_offsets {
    HM_STAGE_OFFSETS_AUTO = 0,  /* in the changelog when the shape has one, else in the group */
    HM_STAGE_OFFSETS_CHANGELOG, /* checkpoint records in the changelog, in the transaction; the
                                   group gets them after the commit, for lag only */
    HM_STAGE_OFFSETS_GROUP,     /* send_offsets_to_transaction: a round trip to the group
                                   coordinator in every transaction */
} hm_stage_offsets;

/** A changelog key of the framework's own (a service's keys must not start with '!'). */
#define HM_STAGE_CHECKPOINT_KEY "!offset"

typedef struct hm_stage hm_stage;

/** One input record as the service sees it. */
typedef struct hm_stage_record {
    const rd_kafka_message_t *msg; /* valid only during the call */
    int64_t ingest_ms;             /* the Kafka record timestamp; -1 when it has none */
    bool rebuilding;               /* HM_STAGE_REBUILD: before the committed offset, so
                                      rebuild state only; sends are suppressed */
} hm_stage_record;

/**
 * The hooks. Only process is required; a shape needs the hooks named for it.
 * Every hook runs on the loop.
 */
typedef struct hm_stage_ops {
    /** One record, in offset order per partition. Send outputs with hm_stage_send. */
    void (*process)(hm_stage *st, const hm_stage_record *rec);
    /**
     * CHANGELOG: just before a commit, hand the state changed in this unit to
     * hm_stage_send_changelog (one record per changed key; NULL value: tombstone).
     * May run more than once per unit (after a full queue); send each change once.
     */
    void (*flush_state)(hm_stage *st);
    /** CHANGELOG: one changelog record read back for a partition (value NULL: tombstone). */
    void (*restore)(hm_stage *st, const rd_kafka_message_t *msg);
    /** After a restore (or the committed-offset lookup) finished, before records flow. */
    void (*restored)(hm_stage *st);
    /**
     * Forget the state of these partitions, including changes not committed: they were
     * revoked, or the unit was aborted and they will be restored again.
     */
    void (*drop_state)(hm_stage *st, const int32_t *partitions, size_t n);
    /**
     * Every sweep_interval_ms while RUNNING and no partition is rebuilding: periodic
     * work (TTL expiry, emission of windows). Transactional shapes run it inside a
     * unit (opened for it if needed), so it may send.
     */
    void (*sweep)(hm_stage *st, uint64_t now_ms);
    /**
     * SINK: write every record processed since the previous call to the sink and call
     * hm_stage_sink_done() when the sink committed (or failed). Records may keep coming
     * meanwhile; they belong to the next flush.
     */
    void (*sink_flush)(hm_stage *st);
    /**
     * The stage is closing (its last unit is closed, the clients close next): close what
     * the service keeps open on the loop (a Redis connection, its timers), since the
     * loop runs until every handle is closed. NULL: nothing to close.
     */
    void (*closing)(hm_stage *st);
    /** hm_stage_free: free what the service keeps in its struct (not the struct). */
    void (*destroy)(hm_stage *st);
} hm_stage_ops;

/** What a stage needs to know; strings are copied. */
typedef struct hm_stage_opts {
    hm_stage_shape shape;
    const char *input_topic;
    const char *group_id;
    const char *changelog_topic; /* CHANGELOG: same partition count as the input */
    const char *dlq_topic;       /* where hm_stage_send_dlq puts records; NULL: none */
    const char *metrics_prefix;  /* "himari_validator": <prefix>_transaction_records, ... */
    hm_stage_delivery delivery;  /* transactional shapes; sinks are at least once by nature */
    hm_stage_offsets offsets;    /* exactly once: where the input offsets are kept */
    int64_t commit_interval_ms;  /* close a unit at least this often; 0: as soon as the
                                    previous commit ended and something is pending */
    int64_t commit_max_records;  /* ... or when it holds this many input records */
    int64_t sweep_interval_ms;   /* 0: no sweep */
    int64_t rebuild_window_ms;   /* REBUILD: longest window; -1: the whole retained log */
    int64_t restore_timeout_ms;  /* 0: 120000 */
    int transaction_timeout_ms;  /* 0: 10000 (see hm_producer_opts) */
} hm_stage_opts;

/**
 * The framework's part of the service's struct: put it first
 * (`typedef struct iv_kafka { hm_stage stage; iv_engine *engine; } iv_kafka;`).
 * The fields here are for reading; the framework's own state is behind impl.
 */
struct hm_stage {
    hm_service *svc;
    uv_loop_t *loop;
    const hm_stage_ops *ops;
    struct hm_stage_impl *impl;
};

/**
 * @brief Allocate a stage of size bytes (>= sizeof(hm_stage), zeroed) with its
 * options and hooks; nothing is started and nothing can call back until
 * hm_stage_start(). ops must outlive the stage. Free with hm_stage_free().
 * @return the stage, or NULL with err saying which option is wrong.
 */
hm_stage *hm_stage_new(hm_service *svc, const hm_stage_opts *opts, const hm_stage_ops *ops,
                       size_t size, hm_err *err);

/**
 * @brief Create the clients, initialise transactions, subscribe. From here on the
 * service's stop (signal, Drain) closes the stage: the open unit is committed,
 * the group left, the clients closed, then hm_service_finish() is called.
 * The transactional id is "<service name>-<instance id>".
 */
int hm_stage_start(hm_stage *st, hm_err *err) HM_MUST_CHECK;

/** @brief After the loop has ended (hm_service_run returned); NULL is fine. */
void hm_stage_free(hm_stage *st);

/* ---- from the hooks ------------------------------------------------------- */

/** Flags of hm_stage_send. */
enum {
    HM_STAGE_SEND_OUTPUT = 1u << 0, /* counts in records_out when delivered (the
                                       service's main output, one per input record) */
};

/**
 * @brief Send one message in the open unit (key and value are copied; hdrs is taken
 * over). A full producer queue stashes it, in order, and holds the consumer; the unit
 * commits only after it is sent. A message that cannot be sent at all dooms the unit
 * (abort and rewind). Suppressed (counted, not sent) while processing a rebuilding
 * record.
 */
void hm_stage_send(hm_stage *st, const char *topic, int32_t partition, const void *key,
                   size_t key_len, const void *val, size_t val_len, rd_kafka_headers_t *hdrs,
                   unsigned flags);
/**
 * @brief The record whole to opts.dlq_topic, with headers naming the error and the
 * record's topic, partition and offset.
 */
void hm_stage_send_dlq(hm_stage *st, const rd_kafka_message_t *msg, const char *error);
/** @brief CHANGELOG, from flush_state: one state record of a partition (val NULL: tombstone). */
void hm_stage_send_changelog(hm_stage *st, int32_t partition, const void *key, size_t key_len,
                             const void *val, size_t val_len);
/**
 * @brief The open unit cannot be committed (e.g. the service's own invariant broke):
 * abort it and rewind. reason goes to the log and last_error.
 */
void hm_stage_fail_unit(hm_stage *st, const char *reason);

/** @brief SINK: the flush asked for by sink_flush finished; err 0 when the sink committed. */
void hm_stage_sink_done(hm_stage *st, int err, const char *reason);

/** @brief Service back-pressure (e.g. a sink buffer is full): hold / release the consumer. */
void hm_stage_hold(hm_stage *st);
void hm_stage_release(hm_stage *st);

/** @brief Change the commit policy (ReloadConfig). */
void hm_stage_set_commit_policy(hm_stage *st, int64_t interval_ms, int64_t max_records);

/* ---- control -------------------------------------------------------------- */

hm_stage_state hm_stage_get_state(const hm_stage *st);
hm_stage_unit hm_stage_get_unit(const hm_stage *st);
unsigned hm_stage_holds(const hm_stage *st);
/** @brief "RUNNING", "COMMITTING", ...: for logs and tests. */
const char *hm_stage_state_name(hm_stage_state s);
const char *hm_stage_unit_name(hm_stage_unit u);

/**
 * @brief Is the transition allowed? The tables the framework asserts against, for
 * tests and for reading.
 */
bool hm_stage_state_transition_ok(hm_stage_state from, hm_stage_state to);
bool hm_stage_unit_transition_ok(hm_stage_unit from, hm_stage_unit to);

/** The consumer (positions, lag), or NULL once closed. */
hm_consumer *hm_stage_consumer(hm_stage *st);

/**
 * @brief ControlService hooks over the stage (status, pause, resume, drain); the
 * service sets .reconfigure itself. ud is the stage.
 */
extern const hm_control_hooks hm_stage_control_hooks;

/**
 * @brief The end of the .start of a service whose work is one stage (its descriptor,
 * himari/service.h): rc and st are what its pipeline's start returned. Sets *ctx to the
 * stage and *hooks to hm_stage_control_hooks with status and reconfigure replaced where
 * not NULL. @return rc.
 */
int hm_stage_service_started(int rc, hm_stage *st, void **ctx, hm_control_hooks *hooks,
                             void (*status)(void *ud, hm_control_status *out),
                             void (*reconfigure)(void *ud));
/** @brief The .free of such a service: hm_stage_free of its ctx. */
void hm_stage_service_free(void *ctx);

/** @brief Readiness for /readyz and grpc.health (set by hm_stage_start). */
bool hm_stage_ready(void *stage, char *reason, size_t size);

#endif
