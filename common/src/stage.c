/*
 * stage.c: the Kafka stage framework (see himari/stage.h for the shapes, the two
 * state machines and the hooks).
 *
 * Every event (a record, the end of a fetch batch, a timer, a delivery report, the
 * end of a commit, abort, restore or lookup, a rebalance, a stop) updates the state
 * and then calls step(), which decides what comes next from (state, unit) alone:
 * commit a due unit, finish a revoke, continue a stop. The holds on the consumer are
 * recomputed from the same facts after each step (update_holds). So there is no
 * "pending" flag to forget: a revoke waiting for a commit is the state REVOKING with
 * the unit COMMITTING, and the commit's end steps it forward.
 *
 * The protocol steps are one function each, named as in librdkafka's transactions
 * example: begin_unit, commit_transaction, abort_unit_and_rewind, rewind_consumer,
 * restore_state (restore_from_changelog, rebuild_from_input, assign_from_committed),
 * revoke_partitions, finish_revoke, drain_stage, close_clients; for sinks commit_sink
 * and commit_sink_offsets.
 *
 * It must never lose a record: an offset goes into a commit only once the records
 * before it were processed and their outputs are part of the same unit (or, for a
 * sink, written by the sink and their dead letters delivered). It must never block
 * the loop: every blocking librdkafka call runs on a worker (himari/kafka.h).
 */
#include "himari/stage.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/log.h"
#include "himari/topics.h"

#define DEFAULT_RESTORE_TIMEOUT_MS 120000
#define LOOKUP_TIMEOUT_MS          30000
/* Group offsets are for lag tools only (offsets in the changelog): one commit a second is
 * enough for them and spares the group coordinator a write per transaction. */
#define LAG_COMMIT_INTERVAL_MS  1000
#define SINK_RETRY_MIN_MS       100
#define SINK_RETRY_MAX_MS       5000
#define PRODUCER_CLOSE_FLUSH_MS 10000
/* A dead letter's key, headers and framing must fit beside its value in one message. */
#define DLQ_HEADROOM_BYTES 16384

/* A message that could not be enqueued yet (producer queue full). */
typedef struct stash_msg {
    char *topic;
    int32_t partition;
    char *key;
    size_t key_len;
    char *val;
    size_t val_len;
    rd_kafka_headers_t *hdrs;
    void *opaque;
} stash_msg;

/* What the stage keeps per assigned partition. */
typedef struct part_info {
    int32_t partition;
    int64_t rebuild_until; /* REBUILD: records below this offset rebuild state; -1: live */
    int64_t checkpoint;    /* CHANGELOG: the offset its changelog's last checkpoint names; -1 */
    int64_t committed;     /* the position sent in the last commit; -1: none yet */
    int64_t last_ts;       /* Kafka timestamp of the last record delivered; -1: none */
} part_info;

/* Where a sink's commit is (inside the unit state COMMITTING). */
typedef enum sink_step {
    SINK_IDLE,
    SINK_FLUSHING,   /* sink_flush called; waiting for hm_stage_sink_done */
    SINK_RETRY_WAIT, /* the flush failed; the retry timer runs */
    SINK_DELIVERING, /* the sink committed; waiting for our own sends (dead letters) */
    SINK_OFFSETS,    /* committing the offsets to the group */
} sink_step;

struct hm_stage_impl {
    /* options (strings owned) */
    hm_stage_shape shape;
    hm_stage_delivery delivery;
    hm_stage_offsets offsets; /* resolved: CHANGELOG or GROUP (AUTO never stays) */
    char *input_topic, *group_id, *changelog_topic, *dlq_topic;
    int64_t commit_interval_ms, commit_max_records, sweep_interval_ms, rebuild_window_ms;
    int64_t restore_timeout_ms;
    int transaction_timeout_ms;
    uint64_t drain_deadline_ms; /* loop time by which a stop must have committed */
    size_t dlq_max_bytes;       /* a dead letter's value is cut to this (the producer's limit) */
    char txn_id[256];

    /* the two state machines and the holds */
    hm_stage_state state;
    hm_stage_unit unit;
    unsigned holds;     /* HM_STAGE_HOLD_* currently applied */
    bool consumer_held; /* what the consumer was last told */
    int service_holds;  /* hm_stage_hold minus hm_stage_release */
    bool txn_init_busy; /* init_transactions in flight (its callback must come first) */
    bool processing_rebuild;

    hm_consumer *consumer;
    hm_producer *producer;
    uv_timer_t commit_timer, sweep_timer, retry_timer;
    int timers_open;

    /* ownership */
    rd_kafka_topic_partition_list_t *assignment; /* what the group gave us; NULL: nothing */
    part_info *parts;
    size_t n_parts;
    hm_reader *restorer;
    uint64_t restore_gen; /* a lookup whose generation is older was abandoned */

    /* the open unit */
    uint64_t unit_records;
    uint64_t unit_opened_ms;
    int64_t unit_oldest_ms; /* Kafka timestamp of the unit's oldest record */
    uint64_t unit_sends;
    bool unit_checkpointed; /* this unit's checkpoint records are sent (commit re-entered) */

    /* offsets in the changelog: the group learns them after each commit, for lag only */
    bool lag_commit_busy;
    uint64_t lag_committed_ms; /* loop time of the last lag commit sent */
    rd_kafka_topic_partition_list_t *lag_commit_next;
    /* the loop's own clock: a stall long enough for the group to move our partitions */
    uv_timer_t watchdog;
    uint64_t watchdog_last_ms;
    int64_t stall_limit_ms;

    stash_msg *stash;
    size_t n_stash, cap_stash;

    /* sink */
    sink_step sink;
    rd_kafka_topic_partition_list_t *unit_offsets; /* what the unit in flight commits:
                                                      positions when it began to commit */
    uint64_t sink_unit_records;                    /* records the flush covers */
    int64_t sink_retry_ms;
    uint64_t delivery_failures;
    uint64_t delivery_failures_at_flush;

    /* counts for status */
    uint64_t records_in, records_out, committed, aborted;
    uint64_t drained_records;
    void (*drain_cb)(void *arg, uint64_t records);
    void *drain_arg;
    char last_error[512];

    /* metrics */
    hm_gauge *unit_records_g;
    hm_histogram *input_age, *commit_age, *unit_open;
    hm_counter *stalls;
    hm_counter *suppressed, *sink_failures;
    hm_counter *dead_letters, *dead_letters_truncated, *consume_errors;
};

static void step(hm_stage *st);
static void restore_state(hm_stage *st);

/* ---- the state machines ----------------------------------------------------- */

#define S(x) (1u << HM_STAGE_##x)
static const unsigned k_stage_next[HM_STAGE_STATE_COUNT_] = {
    [HM_STAGE_INIT] = S(IDLE) | S(RESTORING) | S(STOPPING),
    [HM_STAGE_IDLE] = S(RESTORING) | S(STOPPING),
    [HM_STAGE_RESTORING] = S(RUNNING) | S(IDLE) | S(STOPPING),
    [HM_STAGE_RUNNING] = S(REVOKING) | S(RESTORING) | S(IDLE) | S(STOPPING),
    [HM_STAGE_REVOKING] = S(IDLE) | S(STOPPING),
    [HM_STAGE_STOPPING] = S(CLOSING),
    [HM_STAGE_CLOSING] = S(CLOSED),
    [HM_STAGE_CLOSED] = 0,
};
#undef S

#define U(x) (1u << HM_UNIT_##x)
static const unsigned k_unit_next[HM_UNIT_STATE_COUNT_] = {
    [HM_UNIT_NONE] = U(OPEN) | U(FENCED),
    [HM_UNIT_OPEN] = U(COMMITTING) | U(DOOMED) | U(FENCED),
    [HM_UNIT_DOOMED] = U(ABORTING) | U(FENCED),
    [HM_UNIT_COMMITTING] = U(NONE) | U(OPEN) | U(ABORTING) | U(FENCED),
    [HM_UNIT_ABORTING] = U(NONE) | U(FENCED),
    [HM_UNIT_FENCED] = 0,
};
#undef U

static const char *const k_state_names[HM_STAGE_STATE_COUNT_] = {
    "INIT", "IDLE", "RESTORING", "RUNNING", "REVOKING", "STOPPING", "CLOSING", "CLOSED"};
static const char *const k_unit_names[HM_UNIT_STATE_COUNT_] = {"NONE",       "OPEN",     "DOOMED",
                                                               "COMMITTING", "ABORTING", "FENCED"};

bool hm_stage_state_transition_ok(hm_stage_state from, hm_stage_state to) {
    if ((unsigned)from >= HM_STAGE_STATE_COUNT_ || (unsigned)to >= HM_STAGE_STATE_COUNT_)
        return false;
    return (k_stage_next[from] >> to) & 1u;
}

bool hm_stage_unit_transition_ok(hm_stage_unit from, hm_stage_unit to) {
    if ((unsigned)from >= HM_UNIT_STATE_COUNT_ || (unsigned)to >= HM_UNIT_STATE_COUNT_)
        return false;
    return (k_unit_next[from] >> to) & 1u;
}

const char *hm_stage_state_name(hm_stage_state s) {
    return (unsigned)s < HM_STAGE_STATE_COUNT_ ? k_state_names[s] : "?";
}

const char *hm_stage_unit_name(hm_stage_unit u) {
    return (unsigned)u < HM_UNIT_STATE_COUNT_ ? k_unit_names[u] : "?";
}

static void set_state(hm_stage *st, hm_stage_state to) {
    struct hm_stage_impl *s = st->impl;
    if (s->state == to) return;
    if (!hm_stage_state_transition_ok(s->state, to))
        hm_panic("stage: state %s -> %s is not a transition", hm_stage_state_name(s->state),
                 hm_stage_state_name(to));
    hm_log_debug("stage_state", HM_LS("from", hm_stage_state_name(s->state)),
                 HM_LS("to", hm_stage_state_name(to)));
    s->state = to;
}

static void set_unit(hm_stage *st, hm_stage_unit to) {
    struct hm_stage_impl *s = st->impl;
    if (s->unit == to) return;
    if (!hm_stage_unit_transition_ok(s->unit, to))
        hm_panic("stage: unit %s -> %s is not a transition", hm_stage_unit_name(s->unit),
                 hm_stage_unit_name(to));
    s->unit = to;
}

static bool transactional(const struct hm_stage_impl *s) {
    return s->shape != HM_STAGE_SINK && s->delivery == HM_STAGE_EXACTLY_ONCE;
}

static bool offsets_in_changelog(const struct hm_stage_impl *s) {
    return transactional(s) && s->offsets == HM_STAGE_OFFSETS_CHANGELOG;
}

static void set_error(hm_stage *st, const char *what, const char *msg) {
    /* Bounded: the message is already a bounded hm_err or librdkafka text. */
    snprintf(st->impl->last_error, sizeof(st->impl->last_error), "%.32s: %.470s", what, msg);
}

/* The holds follow from the state; recomputed after every step. */
static void update_holds(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    if (!s->consumer || s->state >= HM_STAGE_CLOSING) return; /* the close drives it now */
    unsigned h = 0;
    if (transactional(s) && (s->unit == HM_UNIT_COMMITTING || s->unit == HM_UNIT_ABORTING))
        h |= HM_STAGE_HOLD_COMMIT;
    if (s->unit == HM_UNIT_ABORTING) h |= HM_STAGE_HOLD_COMMIT; /* a sink's rewind too */
    if (s->n_stash) h |= HM_STAGE_HOLD_QUEUE;
    if (s->unit_records >= (uint64_t)s->commit_max_records) h |= HM_STAGE_HOLD_FULL;
    if (s->service_holds > 0) h |= HM_STAGE_HOLD_SERVICE;
    if (s->sink == SINK_RETRY_WAIT) h |= HM_STAGE_HOLD_RETRY;
    if (s->state == HM_STAGE_REVOKING || s->state == HM_STAGE_STOPPING) h |= HM_STAGE_HOLD_STOPPING;
    s->holds = h;
    bool hold = h != 0;
    if (hold == s->consumer_held) return;
    s->consumer_held = hold;
    if (hold)
        hm_consumer_hold(s->consumer);
    else
        hm_consumer_release(s->consumer);
}

/* ---- partitions ------------------------------------------------------------- */

static part_info *find_part(struct hm_stage_impl *s, int32_t partition) {
    for (size_t i = 0; i < s->n_parts; i++)
        if (s->parts[i].partition == partition) return &s->parts[i];
    return NULL;
}

static void set_assignment(hm_stage *st, const rd_kafka_topic_partition_list_t *l) {
    struct hm_stage_impl *s = st->impl;
    if (s->assignment) rd_kafka_topic_partition_list_destroy(s->assignment);
    s->assignment = l && l->cnt ? rd_kafka_topic_partition_list_copy(l) : NULL;
    free(s->parts);
    s->parts = NULL;
    s->n_parts = s->assignment ? (size_t)s->assignment->cnt : 0;
    if (!s->n_parts) return;
    s->parts = hm_xcalloc(s->n_parts, sizeof(*s->parts));
    for (size_t i = 0; i < s->n_parts; i++)
        s->parts[i] = (part_info){.partition = s->assignment->elems[i].partition,
                                  .rebuild_until = -1,
                                  .checkpoint = -1,
                                  .committed = -1,
                                  .last_ts = -1};
}

static int32_t *partition_numbers(const struct hm_stage_impl *s) {
    int32_t *v = hm_xcalloc(s->n_parts ? s->n_parts : 1, sizeof(*v));
    for (size_t i = 0; i < s->n_parts; i++)
        v[i] = s->parts[i].partition;
    return v;
}

static bool any_rebuilding(const struct hm_stage_impl *s) {
    for (size_t i = 0; i < s->n_parts; i++)
        if (s->parts[i].rebuild_until >= 0) return true;
    return false;
}

/* Forget the state of every partition we own, uncommitted changes included. */
static void drop_state(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    if (!st->ops->drop_state || !s->n_parts) return;
    int32_t *v = partition_numbers(s);
    st->ops->drop_state(st, v, s->n_parts);
    free(v);
}

/* ---- sending ---------------------------------------------------------------- */

/* Marks, as a delivery report's opaque, the messages that count in records_out. */
static char k_output_mark;

static void stash_push(struct hm_stage_impl *s, const char *topic, int32_t partition,
                       const void *key, size_t key_len, const void *val, size_t val_len,
                       rd_kafka_headers_t *hdrs, void *opaque) {
    if (s->n_stash == s->cap_stash) {
        s->cap_stash = s->cap_stash ? s->cap_stash * 2 : 16;
        s->stash = hm_xrealloc(s->stash, s->cap_stash * sizeof(*s->stash));
    }
    stash_msg *m = &s->stash[s->n_stash++];
    m->topic = hm_xstrdup(topic);
    m->partition = partition;
    m->key = key ? hm_xstrndup(key, key_len) : NULL;
    m->key_len = key_len;
    m->val = val ? hm_xstrndup(val, val_len) : NULL;
    m->val_len = val_len;
    m->hdrs = hdrs;
    m->opaque = opaque;
}

static void stash_free_at(struct hm_stage_impl *s, size_t i) {
    free(s->stash[i].topic);
    free(s->stash[i].key);
    free(s->stash[i].val);
}

static void stash_clear(struct hm_stage_impl *s) {
    for (size_t i = 0; i < s->n_stash; i++) {
        stash_free_at(s, i);
        if (s->stash[i].hdrs) rd_kafka_headers_destroy(s->stash[i].hdrs);
    }
    s->n_stash = 0;
}

/* A send that failed for good: the open unit cannot be completed as is. */
static void doom_unit(hm_stage *st, const char *what, const char *why) {
    struct hm_stage_impl *s = st->impl;
    set_error(st, what, why);
    if (s->unit == HM_UNIT_OPEN) {
        hm_log_error("unit_doomed", HM_LS("reason", s->last_error));
        set_unit(st, HM_UNIT_DOOMED);
    }
}

static void send_now_or_stash(hm_stage *st, const char *topic, int32_t partition, const void *key,
                              size_t key_len, const void *val, size_t val_len,
                              rd_kafka_headers_t *hdrs, void *opaque) {
    struct hm_stage_impl *s = st->impl;
    s->unit_sends++;
    if (s->n_stash == 0) {
        hm_err err;
        int rc = hm_producer_send(s->producer, topic, partition, key, key_len, val, val_len, hdrs,
                                  opaque, &err);
        if (rc == 0) return;
        if (rc != -EAGAIN) {
            if (hdrs) rd_kafka_headers_destroy(hdrs);
            hm_log_error("send_failed", HM_LS("topic", topic), HM_LS("error", err.msg));
            doom_unit(st, "send", err.msg);
            return;
        }
    }
    stash_push(s, topic, partition, key, key_len, val, val_len, hdrs, opaque);
    update_holds(st);
}

void hm_stage_send(hm_stage *st, const char *topic, int32_t partition, const void *key,
                   size_t key_len, const void *val, size_t val_len, rd_kafka_headers_t *hdrs,
                   unsigned flags) {
    struct hm_stage_impl *s = st->impl;
    if (s->processing_rebuild) {
        /* Committed before, by the unit that first processed this record. */
        if (hdrs) rd_kafka_headers_destroy(hdrs);
        hm_counter_inc(s->suppressed);
        return;
    }
    /* Transactional shapes send only inside a unit; a sink's sends (dead letters) are
     * awaited by its next offset commit whenever they are made. */
    assert(s->unit == HM_UNIT_OPEN || s->unit == HM_UNIT_DOOMED ||
           (!transactional(s) && s->unit != HM_UNIT_FENCED));
    if (s->unit == HM_UNIT_DOOMED) {
        /* It would be aborted anyway; the record is processed again after the rewind. */
        if (hdrs) rd_kafka_headers_destroy(hdrs);
        return;
    }
    send_now_or_stash(st, topic, partition, key, key_len, val, val_len, hdrs,
                      (flags & HM_STAGE_SEND_OUTPUT) ? &k_output_mark : NULL);
}

/* The headers of a dead letter: why, and where the record is. */
static rd_kafka_headers_t *dlq_headers(const char *error, const char *topic, int32_t partition,
                                       int64_t offset) {
    rd_kafka_headers_t *h = rd_kafka_headers_new(6);
    char num[32];
    rd_kafka_header_add(h, HM_DLQ_HEADER_ERROR, -1, error, -1);
    rd_kafka_header_add(h, HM_DLQ_HEADER_TOPIC, -1, topic, -1);
    snprintf(num, sizeof(num), "%d", (int)partition);
    rd_kafka_header_add(h, HM_DLQ_HEADER_PARTITION, -1, num, -1);
    snprintf(num, sizeof(num), "%lld", (long long)offset);
    rd_kafka_header_add(h, HM_DLQ_HEADER_OFFSET, -1, num, -1);
    return h;
}

void hm_stage_send_dlq(hm_stage *st, const rd_kafka_message_t *m, const char *error) {
    struct hm_stage_impl *s = st->impl;
    assert(s->dlq_topic);
    rd_kafka_headers_t *h =
        dlq_headers(error, rd_kafka_topic_name(m->rkt), m->partition, m->offset);
    char num[32];
    size_t len = m->len;
    if (len > s->dlq_max_bytes) {
        /* A record the producer cannot forward whole would fail its send, abort the unit
         * and be read again forever: one record would stop the stream. Keep its first
         * bytes and say so; the whole of it stays at its source for the retention. */
        len = s->dlq_max_bytes;
        rd_kafka_header_add(h, HM_DLQ_HEADER_TRUNCATED, -1, "true", -1);
        snprintf(num, sizeof(num), "%zu", m->len);
        rd_kafka_header_add(h, HM_DLQ_HEADER_ORIGINAL_BYTES, -1, num, -1);
        hm_counter_inc(s->dead_letters_truncated);
        hm_log_limited(HM_LOG_WARN, "dead_letter_truncated", 60,
                       HM_LS("topic", rd_kafka_topic_name(m->rkt)),
                       HM_LI("partition", m->partition), HM_LI("offset", m->offset),
                       HM_LI("bytes", m->len), HM_LI("kept", len));
    }
    hm_counter_inc(s->dead_letters);
    hm_stage_send(st, s->dlq_topic, RD_KAFKA_PARTITION_UA, m->key, m->key_len, m->payload, len, h,
                  0);
}

void hm_stage_send_changelog(hm_stage *st, int32_t partition, const void *key, size_t key_len,
                             const void *val, size_t val_len) {
    struct hm_stage_impl *s = st->impl;
    assert(s->shape == HM_STAGE_CHANGELOG);
    hm_stage_send(st, s->changelog_topic, partition, key, key_len, val, val_len, NULL, 0);
}

static void on_writable(hm_producer *prod, void *ud) {
    hm_stage *st = ud;
    struct hm_stage_impl *s = st->impl;
    size_t i = 0;
    hm_err err;
    for (; i < s->n_stash; i++) {
        stash_msg *m = &s->stash[i];
        int rc = hm_producer_send(s->producer, m->topic, m->partition, m->key, m->key_len, m->val,
                                  m->val_len, m->hdrs, m->opaque, &err);
        if (rc == -EAGAIN) break;
        if (rc != 0) {
            if (m->hdrs) rd_kafka_headers_destroy(m->hdrs);
            doom_unit(st, "send", err.msg);
        }
        stash_free_at(s, i);
    }
    memmove(s->stash, s->stash + i, (s->n_stash - i) * sizeof(*s->stash));
    s->n_stash -= i;
    if (s->n_stash == 0) step(st);
}

static void on_delivery(hm_producer *prod, rd_kafka_resp_err_t err, const rd_kafka_message_t *m,
                        void *opaque, void *ud) {
    hm_stage *st = ud;
    struct hm_stage_impl *s = st->impl;
    if (!err) {
        if (opaque == &k_output_mark) s->records_out++;
    } else if (s->unit == HM_UNIT_ABORTING) {
        /* Purged by the abort under way: those records are read again. */
    } else {
        /* The unit cannot commit with a lost message: abort and rewind; the records
         * are consumed again. (A transaction being committed fails by itself.) */
        s->delivery_failures++;
        doom_unit(st, "delivery", rd_kafka_err2str(err));
    }
    if (s->sink == SINK_DELIVERING || s->unit == HM_UNIT_DOOMED) step(st);
}

/* ---- the unit ---------------------------------------------------------------- */

/* NONE -> OPEN: transactional shapes begin a Kafka transaction (local, immediate). */
static int begin_unit(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    assert(s->unit == HM_UNIT_NONE);
    if (transactional(s)) {
        hm_err err;
        if (hm_producer_txn_begin(s->producer, &err) != 0) {
            set_error(st, "begin_transaction", err.msg);
            hm_log_error("transaction_begin_failed", HM_LS("error", err.msg));
            hm_service_stop(st->svc, 1);
            return -EIO;
        }
    }
    set_unit(st, HM_UNIT_OPEN);
    s->unit_records = 0;
    s->unit_sends = 0;
    s->unit_checkpointed = false;
    s->unit_opened_ms = uv_now(st->loop);
    s->unit_oldest_ms = INT64_MAX;
    return 0;
}

static bool commit_due(const hm_stage *st) {
    const struct hm_stage_impl *s = st->impl;
    if (s->unit == HM_UNIT_DOOMED) return true;
    if (s->unit != HM_UNIT_OPEN) return false;
    return s->unit_records >= (uint64_t)s->commit_max_records ||
           uv_now(st->loop) - s->unit_opened_ms >= (uint64_t)s->commit_interval_ms;
}

/* The offsets this unit moves: assigned partitions whose position advanced since the
 * last commit and that are live (a rebuilding partition's committed offset is ahead). */
static rd_kafka_topic_partition_list_t *offsets_to_commit(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)s->n_parts);
    for (size_t i = 0; i < s->n_parts; i++) {
        part_info *pi = &s->parts[i];
        int64_t pos = hm_consumer_position(s->consumer, s->input_topic, pi->partition);
        if (pos < 0 || pos <= pi->committed || pi->rebuild_until >= 0) continue;
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_add(l, s->input_topic, pi->partition);
        tp->offset = pos;
        if (s->shape == HM_STAGE_REBUILD && pi->last_ts >= 0) {
            /* The rebuild window of the next owner is measured back from here. */
            char md[32];
            int n = snprintf(md, sizeof(md), "ts=%lld", (long long)pi->last_ts);
            tp->metadata = hm_xstrndup(md, (size_t)n);
            tp->metadata_size = (size_t)n;
        }
    }
    return l;
}

static void remember_committed(hm_stage *st, const rd_kafka_topic_partition_list_t *l) {
    for (int i = 0; l && i < l->cnt; i++) {
        part_info *pi = find_part(st->impl, l->elems[i].partition);
        if (pi && l->elems[i].offset > pi->committed) pi->committed = l->elems[i].offset;
    }
}

/* The unit is over (committed or aborted). */
static void unit_closed(hm_stage *st, hm_stage_unit next) {
    struct hm_stage_impl *s = st->impl;
    set_unit(st, next);
    if (next == HM_UNIT_NONE) {
        s->unit_records = 0;
        s->unit_sends = 0;
    }
    hm_gauge_set(s->unit_records_g, (double)s->unit_records);
}

static void on_transaction_aborted(hm_producer *prod, const hm_txn_result *r, void *ud);
static void rewind_consumer(hm_stage *st);

/* What is left of the stop's time to commit, ms (at least 1 s). */
static uint64_t drain_budget_ms(const hm_stage *st) {
    uint64_t now = uv_now(st->loop);
    uint64_t left = st->impl->drain_deadline_ms > now ? st->impl->drain_deadline_ms - now : 0;
    return left > 1000 ? left : 1000;
}

/* A stop that cannot commit its last unit (the broker does not answer in time): say
 * what is left uncommitted and close; the broker aborts that transaction (or the next
 * instance's init fences it), and the records are read again by the next owner. */
static void give_up_drain(hm_stage *st, const char *reason) {
    struct hm_stage_impl *s = st->impl;
    hm_log_error("drain_incomplete", HM_LI("records_not_committed", s->unit_records),
                 HM_LS("unit", hm_stage_unit_name(s->unit)), HM_LS("reason", reason),
                 HM_LS("note", "not committed, so nothing is lost: read again by the next owner"));
    set_unit(st, HM_UNIT_FENCED); /* nothing more is committed */
    hm_service_stop(st->svc, 1);
    step(st);
}

/* DOOMED or COMMITTING(failed) -> ABORTING -> NONE, then the records are read again. */
static void abort_unit_and_rewind(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    hm_log_warn("unit_aborting", HM_LS("reason", s->last_error), HM_LI("records", s->unit_records));
    set_unit(st, HM_UNIT_ABORTING);
    stash_clear(s); /* unsent messages of this unit die with it */
    if (!transactional(s)) {
        s->aborted++;
        unit_closed(st, HM_UNIT_NONE);
        rewind_consumer(st);
        return;
    }
    update_holds(st);
    if (s->state == HM_STAGE_STOPPING)
        hm_producer_set_txn_op_timeout(s->producer, (int)drain_budget_ms(st));
    if (hm_producer_txn_abort(s->producer, on_transaction_aborted, st) != 0) {
        hm_log_error("transaction_abort_failed_to_start");
        set_unit(st, HM_UNIT_FENCED);
        hm_service_stop(st->svc, 1);
    }
}

static void on_transaction_aborted(hm_producer *prod, const hm_txn_result *r, void *ud) {
    hm_stage *st = ud;
    struct hm_stage_impl *s = st->impl;
    if (s->unit == HM_UNIT_FENCED) {
        step(st);
        return;
    }
    if (r->err && s->state == HM_STAGE_STOPPING) {
        set_error(st, "abort_transaction", r->msg);
        give_up_drain(st, r->msg);
        return;
    }
    if (r->err) {
        set_error(st, "abort_transaction", r->msg);
        hm_log_error("transaction_abort_failed", HM_LS("error", r->msg));
        set_unit(st, HM_UNIT_FENCED);
        hm_service_stop(st->svc, 1);
        step(st);
        return;
    }
    s->aborted++;
    unit_closed(st, HM_UNIT_NONE);
    rewind_consumer(st);
}

/*
 * After an abort: what the unit did to the state is forgotten and the records are
 * read again from the committed offsets, with the state restored as committed.
 */
static void rewind_consumer(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    hm_log_warn("rewinding", HM_LS("reason", s->last_error), HM_LI("partitions", s->n_parts));
    drop_state(st);
    if (s->state == HM_STAGE_RUNNING) {
        if (hm_consumer_unassign(s->consumer) != 0) hm_log_warn("rewind_unassign_failed");
        set_state(st, HM_STAGE_RESTORING);
        restore_state(st);
    }
    /* REVOKING or STOPPING: step() finishes those from here. */
    step(st);
}

static void on_transaction_committed(hm_producer *prod, const hm_txn_result *r, void *ud);

/*
 * Offsets in the changelog: one checkpoint record per partition this unit moves, to the
 * changelog partition of the same number, in the same transaction as the outputs and
 * the state. A restore reads state and position from the same committed transactions.
 * Never inlined: the EOS tests stop the process here (gdb) to kill it between a unit's
 * outputs and its offsets.
 */
__attribute__((noinline)) static void
write_checkpoints(hm_stage *st, const rd_kafka_topic_partition_list_t *offsets) {
    struct hm_stage_impl *s = st->impl;
    for (int i = 0; i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        part_info *pi = find_part(s, tp->partition);
        char val[96];
        int n = snprintf(val, sizeof(val), "{\"offset\":%lld,\"ts\":%lld}", (long long)tp->offset,
                         (long long)(pi ? pi->last_ts : -1));
        hm_stage_send(st, s->changelog_topic, tp->partition, HM_STAGE_CHECKPOINT_KEY,
                      sizeof(HM_STAGE_CHECKPOINT_KEY) - 1, val, (size_t)n, NULL, 0);
    }
}

static void send_lag_offsets(hm_stage *st, bool now);

static void on_lag_offsets_committed(hm_consumer *c, int err, const char *reason,
                                     const rd_kafka_topic_partition_list_t *parts, void *ud) {
    hm_stage *st = ud;
    struct hm_stage_impl *s = st->impl;
    s->lag_commit_busy = false;
    if (err) hm_log_limited(HM_LOG_WARN, "lag_offsets_commit_failed", 60, HM_LS("error", reason));
    send_lag_offsets(st, false);
}

/* The pending positions go to the group: one commit in flight, at most one a
 * LAG_COMMIT_INTERVAL_MS (the watchdog sends what waits), unless `now` (a revoke, a stop). */
static void send_lag_offsets(hm_stage *st, bool now) {
    struct hm_stage_impl *s = st->impl;
    if (s->lag_commit_busy || !s->lag_commit_next || !s->consumer || s->state >= HM_STAGE_CLOSING)
        return;
    if (!now && uv_now(st->loop) - s->lag_committed_ms < LAG_COMMIT_INTERVAL_MS) return;
    rd_kafka_topic_partition_list_t *next = s->lag_commit_next;
    s->lag_commit_next = NULL;
    if (hm_consumer_offsets(s->consumer, HM_OFFSETS_COMMIT, next, LOOKUP_TIMEOUT_MS,
                            on_lag_offsets_committed, st) == 0) {
        s->lag_commit_busy = true;
        s->lag_committed_ms = uv_now(st->loop);
    }
    rd_kafka_topic_partition_list_destroy(next);
}

/* After a commit, the group learns the positions (outside any transaction) so that lag
 * tools see them; a restore does not depend on them. Positions wait merged per partition
 * (a unit lists only the partitions it moved), so none is lost while one waits. */
static void commit_lag_offsets(hm_stage *st, const rd_kafka_topic_partition_list_t *offsets) {
    struct hm_stage_impl *s = st->impl;
    if (!offsets || !offsets->cnt || !s->consumer) return;
    if (!s->lag_commit_next) s->lag_commit_next = rd_kafka_topic_partition_list_new(offsets->cnt);
    for (int i = 0; i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *o = &offsets->elems[i];
        rd_kafka_topic_partition_t *p =
            rd_kafka_topic_partition_list_find(s->lag_commit_next, o->topic, o->partition);
        if (!p) p = rd_kafka_topic_partition_list_add(s->lag_commit_next, o->topic, o->partition);
        p->offset = o->offset;
    }
    send_lag_offsets(st, false);
}

/* OPEN -> COMMITTING: the state changes, then the offsets and the commit. */
static void commit_transaction(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    assert(s->unit == HM_UNIT_OPEN);
    /* Unsent messages belong to this unit: commit once they are sent (on_writable
     * steps back here). */
    if (s->n_stash) return;
    if (s->shape == HM_STAGE_CHANGELOG && st->ops->flush_state) {
        st->ops->flush_state(st);
        if (s->n_stash || s->unit != HM_UNIT_OPEN) return; /* wait, or it was doomed */
    }
    rd_kafka_topic_partition_list_t *offsets = offsets_to_commit(st);
    if (offsets_in_changelog(s) && !s->unit_checkpointed) {
        write_checkpoints(st, offsets);
        s->unit_checkpointed = true;
        if (s->n_stash || s->unit != HM_UNIT_OPEN) {
            rd_kafka_topic_partition_list_destroy(offsets);
            return; /* wait for room, or it was doomed */
        }
    }
    set_unit(st, HM_UNIT_COMMITTING);
    update_holds(st);
    hm_histogram_observe(s->unit_open, (double)(uv_now(st->loop) - s->unit_opened_ms) / 1000.0);
    if (s->state == HM_STAGE_STOPPING)
        hm_producer_set_txn_op_timeout(s->producer, (int)drain_budget_ms(st));
    /* Offsets in the group: AddOffsetsToTxn + TxnOffsetCommit, a round trip to the group
     * coordinator in the transaction. In the changelog they are already in it. */
    bool to_group = !offsets_in_changelog(s) && offsets->cnt;
    rd_kafka_consumer_group_metadata_t *cgmd =
        to_group ? rd_kafka_consumer_group_metadata(hm_consumer_rk(s->consumer)) : NULL;
    int rc = hm_producer_txn_commit(s->producer, to_group ? offsets : NULL, cgmd,
                                    on_transaction_committed, st);
    /* What the commit moves, remembered as committed once it succeeded. */
    if (s->unit_offsets) rd_kafka_topic_partition_list_destroy(s->unit_offsets);
    s->unit_offsets = offsets;
    if (cgmd) rd_kafka_consumer_group_metadata_destroy(cgmd);
    if (rc != 0) {
        hm_log_error("transaction_commit_failed_to_start", HM_LI("rc", rc));
        set_unit(st, HM_UNIT_FENCED);
        hm_service_stop(st->svc, 1);
    }
}

static void on_transaction_committed(hm_producer *prod, const hm_txn_result *r, void *ud) {
    hm_stage *st = ud;
    struct hm_stage_impl *s = st->impl;
    if (s->unit == HM_UNIT_FENCED) {
        step(st); /* a fatal error arrived meanwhile: nothing more to do here */
        return;
    }
    if (r->err == 0) {
        if (s->unit_oldest_ms != INT64_MAX)
            hm_histogram_observe(s->commit_age, (double)(hm_now_ms() - s->unit_oldest_ms) / 1000.0);
        remember_committed(st, s->unit_offsets);
        if (offsets_in_changelog(s)) commit_lag_offsets(st, s->unit_offsets);
        s->committed++;
        if (s->state == HM_STAGE_STOPPING) s->drained_records = s->unit_records;
        unit_closed(st, HM_UNIT_NONE);
        step(st);
        return;
    }
    set_error(st, "commit_transaction", r->msg);
    if (s->state == HM_STAGE_STOPPING) {
        give_up_drain(st, r->msg);
        return;
    }
    if (r->fatal) {
        hm_log_error("transaction_fatal", HM_LS("error", r->msg));
        set_unit(st, HM_UNIT_FENCED);
        hm_service_stop(st->svc, 1);
        step(st);
        return;
    }
    if (r->retriable && !r->abortable) {
        /* e.g. a timeout: the same commit may be repeated. */
        set_unit(st, HM_UNIT_OPEN);
        commit_transaction(st);
        return;
    }
    abort_unit_and_rewind(st);
}

/* ---- the sink's unit ------------------------------------------------------------ */

static void commit_sink_offsets(hm_stage *st);

/* OPEN -> COMMITTING: ask the service to write what it processed since the last flush. */
static void commit_sink(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    assert(s->unit == HM_UNIT_OPEN ||
           (s->unit == HM_UNIT_COMMITTING && s->sink == SINK_RETRY_WAIT));
    if (s->unit == HM_UNIT_OPEN) {
        set_unit(st, HM_UNIT_COMMITTING);
        if (s->unit_offsets) rd_kafka_topic_partition_list_destroy(s->unit_offsets);
        s->unit_offsets = offsets_to_commit(st);
        s->sink_unit_records = s->unit_records;
        s->delivery_failures_at_flush = s->delivery_failures;
        s->unit_records = 0; /* records from here on belong to the next flush */
    }
    s->sink = SINK_FLUSHING;
    update_holds(st);
    if (s->shape == HM_STAGE_SINK) {
        st->ops->sink_flush(st);
        return;
    }
    /* At least once: the "sink" is our own producer. The state changes go out with the
     * outputs; the offsets follow once everything is delivered. */
    if (s->shape == HM_STAGE_CHANGELOG && st->ops->flush_state) st->ops->flush_state(st);
    hm_stage_sink_done(st, 0, NULL);
}

static void on_sink_retry(uv_timer_t *t) {
    hm_stage *st = t->data;
    struct hm_stage_impl *s = st->impl;
    if (s->sink != SINK_RETRY_WAIT) return;
    if (s->state == HM_STAGE_CLOSING || s->state == HM_STAGE_CLOSED) return;
    commit_sink(st);
}

void hm_stage_sink_done(hm_stage *st, int err, const char *reason) {
    struct hm_stage_impl *s = st->impl;
    assert(!transactional(s) && s->sink == SINK_FLUSHING);
    if (err) {
        /* Keep the records (the service keeps its batch), hold the input, retry. */
        set_error(st, "sink", reason ? reason : "flush failed");
        if (s->sink_failures) hm_counter_inc(s->sink_failures);
        s->sink_retry_ms = s->sink_retry_ms ? s->sink_retry_ms * 2 : SINK_RETRY_MIN_MS;
        if (s->sink_retry_ms > SINK_RETRY_MAX_MS) s->sink_retry_ms = SINK_RETRY_MAX_MS;
        hm_log_limited(HM_LOG_WARN, "sink_flush_failed", 60, HM_LS("error", s->last_error),
                       HM_LI("retry_in_ms", s->sink_retry_ms));
        s->sink = SINK_RETRY_WAIT;
        uv_timer_start(&s->retry_timer, on_sink_retry, (uint64_t)s->sink_retry_ms, 0);
        update_holds(st);
        return;
    }
    s->sink_retry_ms = 0;
    s->sink = SINK_DELIVERING;
    step(st);
}

static void on_sink_offsets_committed(hm_consumer *c, int err, const char *reason,
                                      const rd_kafka_topic_partition_list_t *parts, void *ud) {
    hm_stage *st = ud;
    struct hm_stage_impl *s = st->impl;
    s->sink = SINK_IDLE;
    if (err) {
        /* The sink holds the rows; a redelivery after a crash or rebalance is a no-op
         * there (idempotent writes), so the next commit carrying later offsets is
         * enough. */
        set_error(st, "commit_offsets", reason);
        hm_log_warn("offset_commit_failed", HM_LS("error", reason));
    } else {
        remember_committed(st, parts);
        s->committed++;
        if (s->state == HM_STAGE_STOPPING) s->drained_records = s->sink_unit_records;
    }
    unit_closed(st, s->unit_records ? HM_UNIT_OPEN : HM_UNIT_NONE);
    step(st);
}

/* The sink committed; our dead letters are delivered: the offsets can follow. */
static void commit_sink_offsets(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    assert(s->sink == SINK_DELIVERING);
    if (hm_producer_outstanding(s->producer) > 0) return; /* on_delivery steps back */
    if (s->delivery_failures != s->delivery_failures_at_flush) {
        /* A dead letter was lost: the offsets may not move past its record. */
        s->sink = SINK_IDLE;
        abort_unit_and_rewind(st);
        return;
    }
    if (!s->unit_offsets || s->unit_offsets->cnt == 0) {
        s->sink = SINK_OFFSETS;
        on_sink_offsets_committed(s->consumer, 0, "", s->unit_offsets, st);
        return;
    }
    s->sink = SINK_OFFSETS;
    if (hm_consumer_offsets(s->consumer, HM_OFFSETS_COMMIT, s->unit_offsets, LOOKUP_TIMEOUT_MS,
                            on_sink_offsets_committed, st) != 0)
        on_sink_offsets_committed(s->consumer, -EIO, "cannot start the offset commit",
                                  s->unit_offsets, st);
}

/* ---- what next ------------------------------------------------------------------ */

static void commit_unit(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    if (s->unit == HM_UNIT_DOOMED)
        abort_unit_and_rewind(st);
    else if (transactional(s))
        commit_transaction(st);
    else
        commit_sink(st);
}

static void finish_revoke(hm_stage *st);
static void close_clients(hm_stage *st);

/* Decide the next protocol step from (state, unit); see the file comment. */
static void step(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    if (s->sink == SINK_DELIVERING) commit_sink_offsets(st);
    bool busy = s->unit == HM_UNIT_COMMITTING || s->unit == HM_UNIT_ABORTING;
    switch (s->state) {
        case HM_STAGE_RUNNING:
            if (!busy && commit_due(st)) commit_unit(st);
            break;
        case HM_STAGE_REVOKING:
            if (busy) break;
            if (s->unit == HM_UNIT_OPEN || s->unit == HM_UNIT_DOOMED)
                commit_unit(st);
            else
                finish_revoke(st);
            break;
        case HM_STAGE_STOPPING:
            /* A transaction call on a worker must report before the producer closes. */
            if (busy || s->txn_init_busy || hm_producer_txn_busy(s->producer)) break;
            if (s->unit == HM_UNIT_OPEN || s->unit == HM_UNIT_DOOMED)
                commit_unit(st);
            else
                close_clients(st);
            break;
        default:
            break;
    }
    update_holds(st);
}

/* ---- records ------------------------------------------------------------------- */

static void on_message(hm_consumer *c, const rd_kafka_message_t *m, void *ud) {
    hm_stage *st = ud;
    struct hm_stage_impl *s = st->impl;
    /* Records flow only while RUNNING (the consumer is held otherwise, and partitions
     * are assigned only then): a record seen elsewhere would have its offset skipped. */
    assert(s->state == HM_STAGE_RUNNING);
    /* A transaction is never committed in the middle of a batch: a commit starts from
     * the batch end, a timer or a producer event, and holds the consumer. */
    assert(!transactional(s) || s->unit == HM_UNIT_NONE || s->unit == HM_UNIT_OPEN ||
           s->unit == HM_UNIT_DOOMED);
    part_info *pi = find_part(s, m->partition);
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    hm_stage_record rec = {.msg = m,
                           .ingest_ms = tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts,
                           .rebuilding = false};
    if (pi) {
        pi->last_ts = rec.ingest_ms;
        if (pi->rebuild_until >= 0) {
            if (m->offset < pi->rebuild_until) {
                rec.rebuilding = true;
            } else {
                pi->rebuild_until = -1;
                hm_log_info("partition_rebuilt", HM_LS("topic", s->input_topic),
                            HM_LI("partition", m->partition), HM_LI("offset", m->offset));
            }
        }
    }
    if (rec.rebuilding) {
        s->processing_rebuild = true;
        st->ops->process(st, &rec);
        s->processing_rebuild = false;
        /* The last record below the committed offset ends the rebuild at once: waiting
         * for the next record would leave a quiet partition rebuilding (and the service
         * not ready) until traffic came. The committed offset is always the last
         * delivered record + 1 (hm_consumer_position), so that record is delivered again
         * here, whatever control records the broker keeps after it. */
        if (m->offset + 1 >= pi->rebuild_until) {
            pi->rebuild_until = -1;
            hm_log_info("partition_rebuilt", HM_LS("topic", s->input_topic),
                        HM_LI("partition", m->partition), HM_LI("offset", m->offset + 1));
        }
        return;
    }
    if (s->unit == HM_UNIT_NONE && begin_unit(st) != 0) return;
    if (s->unit == HM_UNIT_DOOMED) return; /* read again after the rewind */
    s->records_in++;
    if (s->unit_records == 0) s->unit_opened_ms = uv_now(st->loop);
    s->unit_records++;
    if (rec.ingest_ms >= 0) {
        hm_histogram_observe(s->input_age, (double)(hm_now_ms() - rec.ingest_ms) / 1000.0);
        if (rec.ingest_ms < s->unit_oldest_ms) s->unit_oldest_ms = rec.ingest_ms;
    }
    st->ops->process(st, &rec);
    if (s->unit_records >= (uint64_t)s->commit_max_records) update_holds(st);
}

/*
 * Records the consumer could not read (a corrupt batch, a failed decompression, an
 * offset reset past deleted records): the next record moves the position past them, so
 * the gap is kept here, as a dead letter without a value naming the error, topic,
 * partition and offset, in the unit that moves the offset. Without a DLQ the gap
 * cannot be kept, and the stage stops rather than skip it.
 */
static void on_consume_error(hm_consumer *c, const char *topic, int32_t partition, int64_t offset,
                             rd_kafka_resp_err_t err, const char *reason, void *ud) {
    hm_stage *st = ud;
    struct hm_stage_impl *s = st->impl;
    char why[400];
    snprintf(why, sizeof(why), "consume error %s: %s", rd_kafka_err2name(err), reason);
    hm_counter_inc(s->consume_errors);
    set_error(st, "consume", why);
    hm_log_error("records_unreadable", HM_LS("topic", topic), HM_LI("partition", partition),
                 HM_LI("offset", offset), HM_LS("error", why));
    if (!s->dlq_topic) {
        hm_service_stop(st->svc, 1);
        return;
    }
    if (s->state != HM_STAGE_RUNNING) return; /* not ours to commit any more: read again */
    /* The error names the batch's first offset; when the batch starts before our
     * position (we skipped into it), the record that cannot be read is at the position.
     * (After a seek librdkafka drops the errors of fetches made before it.) */
    int64_t pos = hm_consumer_position(c, topic, partition);
    if (offset >= 0 && pos > offset) offset = pos;
    part_info *pi = find_part(s, partition);
    bool rebuilding = pi && pi->rebuild_until >= 0 && offset >= 0 && offset < pi->rebuild_until;
    /* The gap goes with the unit that moves the offset past it (when rebuilding, it went
     * with the unit that first read these offsets). */
    if (!rebuilding) {
        if (s->unit == HM_UNIT_NONE && begin_unit(st) != 0) return;
        if (s->unit == HM_UNIT_DOOMED) return; /* read again after the rewind */
        hm_counter_inc(s->dead_letters);
        send_now_or_stash(st, s->dlq_topic, RD_KAFKA_PARTITION_UA, NULL, 0, NULL, 0,
                          dlq_headers(why, topic, partition, offset), NULL);
    }
    /* librdkafka would fetch the unreadable batch again and again: go on after it, one
     * offset at a time (each offset of a batch gets its gap record). An offset reset has
     * moved on by itself. */
    if (err != RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET && offset >= 0 &&
        hm_consumer_skip_to(c, topic, partition, offset + 1) != 0)
        hm_stage_fail_unit(st, "cannot seek past unreadable records");
}

static void on_batch_end(hm_consumer *c, void *ud) {
    hm_stage *st = ud;
    hm_gauge_set(st->impl->unit_records_g, (double)st->impl->unit_records);
    step(st);
}

static void on_commit_timer(uv_timer_t *t) {
    step(t->data);
}

static void rewind_consumer(hm_stage *st);

/*
 * Offsets in the changelog have no group fence in the transaction (the group coordinator
 * is not asked), so a member that the group dropped must never commit for partitions it
 * no longer owns. The group drops a member after session.timeout.ms without heartbeats,
 * which librdkafka sends from its own thread: that happens when the whole process was
 * frozen (or the loop blocked past max.poll.interval.ms). The loop sees such a gap on its
 * own clock, here, before it handles anything fetched before the gap (timers run before
 * I/O in a loop turn): it then gives up what it holds and restores again, and the group's
 * verdict (a revoke, or the same partitions) comes meanwhile. A transaction open across
 * the gap is also aborted by its coordinator (transaction.timeout.ms is kept below the
 * session timeout), which fences this producer's epoch.
 */
static void on_watchdog(uv_timer_t *t) {
    hm_stage *st = t->data;
    struct hm_stage_impl *s = st->impl;
    uint64_t now = uv_now(st->loop), gap = now - s->watchdog_last_ms;
    s->watchdog_last_ms = now;
    send_lag_offsets(st, false);
    if ((int64_t)gap < s->stall_limit_ms || s->state != HM_STAGE_RUNNING) return;
    hm_counter_inc(s->stalls);
    char why[128];
    snprintf(why, sizeof(why),
             "the loop stalled for %.1f s: the group may have moved our partitions",
             (double)gap / 1000.0);
    hm_log_error("loop_stalled", HM_LD("seconds", (double)gap / 1000.0),
                 HM_LS("unit", hm_stage_unit_name(s->unit)));
    if (s->unit == HM_UNIT_OPEN) {
        doom_unit(st, "stall", why);
        step(st);
    } else if (s->unit == HM_UNIT_NONE) {
        set_error(st, "stall", why);
        rewind_consumer(st);
    } /* COMMITTING / ABORTING: the transaction call's result decides (fenced or not) */
}

static void on_sweep_timer(uv_timer_t *t) {
    hm_stage *st = t->data;
    struct hm_stage_impl *s = st->impl;
    if (s->state != HM_STAGE_RUNNING || any_rebuilding(s)) return;
    if (s->unit == HM_UNIT_COMMITTING || s->unit == HM_UNIT_ABORTING || s->unit == HM_UNIT_DOOMED ||
        s->unit == HM_UNIT_FENCED)
        return; /* next time */
    if (transactional(s) && s->unit == HM_UNIT_NONE && begin_unit(st) != 0) return;
    st->ops->sweep(st, uv_now(st->loop));
    step(st);
}

/* ---- restore -------------------------------------------------------------------- */

static bool is_checkpoint(const rd_kafka_message_t *m) {
    return m->key_len == sizeof(HM_STAGE_CHECKPOINT_KEY) - 1 &&
           memcmp(m->key, HM_STAGE_CHECKPOINT_KEY, m->key_len) == 0;
}

/* A changelog record read back: the framework's checkpoints are its own (whatever the
 * offsets mode now: a mode may have changed), the rest is the service's state. */
static void on_restore_message(hm_reader *r, const rd_kafka_message_t *m, void *ud) {
    hm_stage *st = ud;
    if (!is_checkpoint(m)) {
        st->ops->restore(st, m);
        return;
    }
    part_info *pi = find_part(st->impl, m->partition);
    char buf[96];
    long long off;
    size_t n = m->len < sizeof(buf) - 1 ? m->len : sizeof(buf) - 1;
    memcpy(buf, m->payload, n);
    buf[n] = '\0';
    if (pi && sscanf(buf, "{\"offset\":%lld", &off) == 1 && off >= 0)
        pi->checkpoint = off;
    else
        hm_log_warn("checkpoint_unreadable", HM_LI("partition", m->partition),
                    HM_LI("offset", m->offset));
}

static void resume_after_restore(hm_stage *st);

/* RESTORING -> RUNNING: the consumer gets the partitions (at these offsets). */
static void assign_partitions(hm_stage *st, const rd_kafka_topic_partition_list_t *at) {
    struct hm_stage_impl *s = st->impl;
    assert(s->state == HM_STAGE_RESTORING);
    if (st->ops->restored) st->ops->restored(st);
    if (hm_consumer_assign(s->consumer, at) != 0) {
        set_error(st, "assign", "cannot complete the partition assignment");
        hm_service_stop(st->svc, 1);
        return;
    }
    set_state(st, HM_STAGE_RUNNING);
    step(st);
}

static void on_restore_done(hm_reader *r, int err, const char *reason, void *ud) {
    hm_stage *st = ud;
    struct hm_stage_impl *s = st->impl;
    uint64_t restored = hm_reader_count(r);
    s->restorer = NULL;
    hm_reader_close(r, NULL, NULL);
    if (err) {
        set_error(st, "restore", reason);
        hm_log_error("restore_failed", HM_LS("error", reason));
        hm_service_stop(st->svc, 1);
        return;
    }
    hm_log_info("state_restored", HM_LS("topic", s->changelog_topic), HM_LI("records", restored),
                HM_LI("partitions", s->n_parts));
    resume_after_restore(st);
}

/* CHANGELOG: read the changelog partitions (same numbers as ours) to their end. */
static void restore_from_changelog(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    int32_t *v = partition_numbers(s);
    hm_reader_handlers h = {.on_message = on_restore_message, .on_done = on_restore_done};
    hm_err err;
    int rc = hm_reader_start(st->loop, &st->svc->cfg->kafka, s->changelog_topic, v, s->n_parts,
                             (int)s->restore_timeout_ms, &h, st, &s->restorer, &err);
    free(v);
    if (rc != 0) {
        set_error(st, "restore", err.msg);
        hm_log_error("restore_start_failed", HM_LS("error", err.msg));
        hm_service_stop(st->svc, 1);
    }
}

/* A lookup of restore generation gen; abandoned when the restore it served was. */
typedef struct lookup {
    hm_stage *st;
    uint64_t gen;
} lookup;

static lookup *lookup_new(hm_stage *st) {
    lookup *l = hm_xcalloc(1, sizeof(*l));
    l->st = st;
    l->gen = st->impl->restore_gen;
    return l;
}

/* Done with a lookup: true when its restore is still the current one. */
static bool lookup_current(lookup *l, hm_stage **st) {
    *st = l->st;
    bool current = l->gen == l->st->impl->restore_gen && l->st->impl->state == HM_STAGE_RESTORING;
    free(l);
    return current;
}

/*
 * Where a restored partition goes on: the later of its changelog checkpoint (offsets kept
 * in the changelog: written with the state, in the same transactions) and the group's
 * committed offset (offsets kept in the group, or a run in another mode since: at least
 * once, or group offsets, advance only the group). With neither, librdkafka's
 * auto.offset.reset decides (a fresh group).
 */
static void on_group_offsets_found(hm_consumer *c, int err, const char *reason,
                                   const rd_kafka_topic_partition_list_t *committed, void *ud) {
    hm_stage *st;
    if (!lookup_current(ud, &st)) return;
    struct hm_stage_impl *s = st->impl;
    if (err) {
        set_error(st, "committed_offsets", reason);
        hm_log_error("restore_lookup_failed", HM_LS("error", reason));
        hm_service_stop(st->svc, 1);
        return;
    }
    rd_kafka_topic_partition_list_t *at = rd_kafka_topic_partition_list_copy(s->assignment);
    for (int i = 0; i < at->cnt; i++) {
        part_info *pi = find_part(s, at->elems[i].partition);
        int64_t group = RD_KAFKA_OFFSET_INVALID;
        for (int j = 0; committed && j < committed->cnt; j++)
            if (committed->elems[j].partition == at->elems[i].partition &&
                !committed->elems[j].err && committed->elems[j].offset >= 0)
                group = committed->elems[j].offset;
        /* (-1 is "none" for a checkpoint but RD_KAFKA_OFFSET_END for librdkafka) */
        int64_t from = pi && pi->checkpoint >= 0 && pi->checkpoint > group ? pi->checkpoint : group;
        at->elems[i].offset = from;
        if (pi && from >= 0) pi->committed = from;
        if (pi && pi->checkpoint >= 0 && group >= 0 && pi->checkpoint != group &&
            !offsets_in_changelog(s))
            hm_log_info("resume_from_checkpoint", HM_LI("partition", pi->partition),
                        HM_LI("checkpoint", pi->checkpoint), HM_LI("group", group));
    }
    assign_partitions(st, at);
    rd_kafka_topic_partition_list_destroy(at);
}

static void resume_after_restore(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    if (hm_consumer_offsets(s->consumer, HM_OFFSETS_COMMITTED, s->assignment, LOOKUP_TIMEOUT_MS,
                            on_group_offsets_found, lookup_new(st)) != 0) {
        set_error(st, "committed_offsets", "cannot start the lookup");
        hm_service_stop(st->svc, 1);
    }
}

static void on_rebuild_start_found(hm_consumer *c, int err, const char *reason,
                                   const rd_kafka_topic_partition_list_t *found, void *ud) {
    hm_stage *st;
    if (!lookup_current(ud, &st)) return;
    struct hm_stage_impl *s = st->impl;
    rd_kafka_topic_partition_list_t *at = rd_kafka_topic_partition_list_copy(s->assignment);
    for (int i = 0; i < at->cnt; i++) {
        part_info *pi = find_part(s, at->elems[i].partition);
        if (!pi || pi->rebuild_until < 0) continue; /* from the committed offset */
        int64_t start = RD_KAFKA_OFFSET_BEGINNING;
        if (s->rebuild_window_ms >= 0 && !err) {
            for (int j = 0; found && j < found->cnt; j++) {
                if (found->elems[j].partition != pi->partition) continue;
                if (found->elems[j].err) break; /* unknown: the whole log, never too little */
                /* -1: no record that recent; the window holds nothing before C */
                start = found->elems[j].offset < 0 ? pi->rebuild_until : found->elems[j].offset;
            }
        }
        if (start >= 0 && start >= pi->rebuild_until) {
            start = pi->rebuild_until;
            pi->rebuild_until = -1;
        }
        at->elems[i].offset = start;
        hm_log_info("partition_rebuilding", HM_LS("topic", s->input_topic),
                    HM_LI("partition", pi->partition), HM_LI("from", start),
                    HM_LI("until", pi->rebuild_until));
    }
    assign_partitions(st, at);
    rd_kafka_topic_partition_list_destroy(at);
}

static int64_t parse_ts_metadata(const rd_kafka_topic_partition_t *tp) {
    if (!tp->metadata || tp->metadata_size < 4 || tp->metadata_size > 30) return -1;
    char buf[32];
    memcpy(buf, tp->metadata, tp->metadata_size);
    buf[tp->metadata_size] = '\0';
    long long v;
    return sscanf(buf, "ts=%lld", &v) == 1 ? (int64_t)v : -1;
}

static void on_committed_found(hm_consumer *c, int err, const char *reason,
                               const rd_kafka_topic_partition_list_t *committed, void *ud) {
    hm_stage *st;
    if (!lookup_current(ud, &st)) return;
    struct hm_stage_impl *s = st->impl;
    if (err) {
        set_error(st, "committed_offsets", reason);
        hm_log_error("rebuild_lookup_failed", HM_LS("error", reason));
        hm_service_stop(st->svc, 1);
        return;
    }
    rd_kafka_topic_partition_list_t *times = rd_kafka_topic_partition_list_new(committed->cnt);
    int64_t now = hm_now_ms();
    for (int i = 0; i < committed->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &committed->elems[i];
        part_info *pi = find_part(s, tp->partition);
        if (!pi || tp->err || tp->offset < 0) continue; /* nothing committed: no rebuild */
        pi->rebuild_until = tp->offset;
        pi->committed = tp->offset;
        int64_t ref = parse_ts_metadata(tp);
        if (ref < 0) ref = now;
        rd_kafka_topic_partition_list_add(times, tp->topic, tp->partition)->offset =
            ref - s->rebuild_window_ms;
    }
    if (times->cnt == 0 || s->rebuild_window_ms < 0) {
        on_rebuild_start_found(c, 0, "", NULL, lookup_new(st));
    } else if (hm_consumer_offsets(c, HM_OFFSETS_FOR_TIMES, times, LOOKUP_TIMEOUT_MS,
                                   on_rebuild_start_found, lookup_new(st)) != 0) {
        on_rebuild_start_found(c, -EIO, "cannot start the lookup", NULL, lookup_new(st));
    }
    rd_kafka_topic_partition_list_destroy(times);
}

/* REBUILD: find the committed offsets, then the window before them, then replay it. */
static void rebuild_from_input(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    if (hm_consumer_offsets(s->consumer, HM_OFFSETS_COMMITTED, s->assignment, LOOKUP_TIMEOUT_MS,
                            on_committed_found, lookup_new(st)) != 0) {
        set_error(st, "committed_offsets", "cannot start the lookup");
        hm_service_stop(st->svc, 1);
    }
}

/* RESTORING: bring the partitions' state back, then assign them (by shape). */
static void restore_state(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    assert(s->state == HM_STAGE_RESTORING && s->assignment);
    s->restore_gen++;
    switch (s->shape) {
        case HM_STAGE_CHANGELOG:
            restore_from_changelog(st);
            break;
        case HM_STAGE_REBUILD:
            rebuild_from_input(st);
            break;
        case HM_STAGE_SINK:
            assign_partitions(st, s->assignment); /* from the committed offsets */
            break;
    }
}

/* Abandon a restore in progress (revoked or stopping). What it loaded is dropped with
 * the partitions (finish_revoke). */
static void cancel_restore(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    s->restore_gen++; /* lookups in flight find themselves abandoned */
    if (s->restorer) {
        hm_reader_close(s->restorer, NULL, NULL);
        s->restorer = NULL;
    }
}

/* ---- assignment and revocation ---------------------------------------------------- */

static void on_assign(hm_consumer *c, const rd_kafka_topic_partition_list_t *parts, void *ud) {
    hm_stage *st = ud;
    struct hm_stage_impl *s = st->impl;
    hm_log_info("partitions_assigned", HM_LI("count", parts->cnt));
    set_assignment(st, parts);
    if (s->state == HM_STAGE_INIT) return; /* restored once transactions are ready */
    if (s->state != HM_STAGE_IDLE) {
        /* Eager rebalancing revokes before it assigns; a stop takes nothing new. */
        hm_log_warn("assignment_ignored", HM_LS("state", hm_stage_state_name(s->state)));
        return;
    }
    set_state(st, HM_STAGE_RESTORING);
    restore_state(st);
}

/* Nothing is open any more: forget the partitions' state and let them go. */
static void finish_revoke(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    send_lag_offsets(st, true); /* while the partitions are still ours */
    drop_state(st);
    set_assignment(st, NULL);
    if (hm_consumer_unassign(s->consumer) != 0) hm_service_stop(st->svc, 1);
    if (s->state == HM_STAGE_REVOKING || s->state == HM_STAGE_RUNNING ||
        s->state == HM_STAGE_RESTORING)
        set_state(st, HM_STAGE_IDLE);
}

static void revoke_partitions(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    switch (s->state) {
        case HM_STAGE_INIT:
            set_assignment(st, NULL);
            if (hm_consumer_unassign(s->consumer) != 0) hm_service_stop(st->svc, 1);
            break;
        case HM_STAGE_IDLE:
            if (hm_consumer_unassign(s->consumer) != 0) hm_service_stop(st->svc, 1);
            break;
        case HM_STAGE_RESTORING:
            /* Nothing was processed, nothing to commit. */
            cancel_restore(st);
            finish_revoke(st);
            break;
        case HM_STAGE_RUNNING:
            set_state(st, HM_STAGE_REVOKING); /* step() commits, then finishes */
            break;
        case HM_STAGE_REVOKING:
            break;
        case HM_STAGE_STOPPING:
        case HM_STAGE_CLOSING:
        case HM_STAGE_CLOSED:
            /* The group is being left (the last unit was committed or cannot be). */
            if (s->unit == HM_UNIT_NONE || s->unit == HM_UNIT_FENCED ||
                s->state != HM_STAGE_STOPPING)
                finish_revoke(st);
            break;
        case HM_STAGE_STATE_COUNT_:
            assert(0);
            break;
    }
    step(st);
}

static void on_revoke(hm_consumer *c, const rd_kafka_topic_partition_list_t *parts, void *ud) {
    hm_stage *st = ud;
    hm_log_info("partitions_revoked", HM_LI("count", parts->cnt),
                HM_LS("state", hm_stage_state_name(st->impl->state)),
                HM_LS("unit", hm_stage_unit_name(st->impl->unit)));
    revoke_partitions(st);
}

/* ---- start and stop -------------------------------------------------------------- */

static void on_consumer_fatal(hm_consumer *c, const char *reason, void *ud) {
    hm_stage *st = ud;
    set_error(st, "consumer", reason);
    hm_service_stop(st->svc, 1);
}

static void on_producer_fatal(hm_producer *prod, const char *reason, void *ud) {
    hm_stage *st = ud;
    set_error(st, "producer", reason);
    /* e.g. fenced by a newer instance: nothing may be committed any more */
    set_unit(st, HM_UNIT_FENCED);
    hm_service_stop(st->svc, 1);
    step(st);
}

static void on_txn_init(hm_producer *prod, const hm_txn_result *r, void *ud) {
    hm_stage *st = ud;
    struct hm_stage_impl *s = st->impl;
    s->txn_init_busy = false;
    if (r->err) {
        set_error(st, "init_transactions", r->msg);
        hm_log_error("transactions_init_failed", HM_LS("error", r->msg));
        set_unit(st, HM_UNIT_FENCED);
        hm_service_stop(st->svc, 1);
        step(st);
        return;
    }
    hm_log_info("transactions_ready", HM_LS("transactional_id", s->txn_id),
                HM_LD("seconds", r->seconds));
    if (s->state == HM_STAGE_STOPPING) {
        step(st);
        return;
    }
    if (s->assignment) {
        set_state(st, HM_STAGE_RESTORING);
        restore_state(st);
    } else {
        set_state(st, HM_STAGE_IDLE);
    }
}

static void on_producer_closed(void *ud, size_t undelivered) {
    hm_stage *st = ud;
    struct hm_stage_impl *s = st->impl;
    if (undelivered)
        hm_log_warn("producer_closed_with_undelivered", HM_LI("messages", undelivered),
                    HM_LS("note", "not committed: consumed again by the next owner"));
    s->producer = NULL;
    set_state(st, HM_STAGE_CLOSED);
    /* The stage itself stays (status calls may still read it) until hm_stage_free. */
    hm_service_finish(st->svc);
}

static void on_consumer_closed(void *ud) {
    hm_stage *st = ud;
    st->impl->consumer = NULL;
    /* The flush waits for delivery reports: never longer than the stop has left. */
    uint64_t left = drain_budget_ms(st);
    hm_producer_close(st->impl->producer,
                      (int)(left < PRODUCER_CLOSE_FLUSH_MS ? left : PRODUCER_CLOSE_FLUSH_MS),
                      on_producer_closed, st);
}

static void on_timer_closed(uv_handle_t *h) {
    hm_stage *st = h->data;
    if (--st->impl->timers_open > 0) return;
    hm_consumer_close(st->impl->consumer, on_consumer_closed, st);
}

/* STOPPING -> CLOSING: the last unit is committed (or cannot be); close everything. */
static void close_clients(hm_stage *st) {
    struct hm_stage_impl *s = st->impl;
    send_lag_offsets(st, true); /* the consumer's close waits for it */
    /* Hold the input before CLOSING, where update_holds stops deciding. A drain with no
     * unit open comes here in the same step that left RUNNING, before any hold was
     * applied; the consumer's close starts only when the timers below have closed, and
     * until then a fetch event handled in the same loop turn would hand a record to
     * on_message outside RUNNING (seen: SIGABRT at its assert after a gRPC Drain). The
     * close releases the queue again for the last revoke and drops records itself. */
    update_holds(st);
    set_state(st, HM_STAGE_CLOSING);
    hm_log_info("drained", HM_LI("records_in_last_transaction", s->drained_records),
                HM_LB("fenced", s->unit == HM_UNIT_FENCED));
    if (s->drain_cb) {
        void (*cb)(void *, uint64_t) = s->drain_cb;
        s->drain_cb = NULL;
        cb(s->drain_arg, s->drained_records);
    }
    if (s->restorer) {
        hm_reader_close(s->restorer, NULL, NULL);
        s->restorer = NULL;
    }
    if (st->ops->closing) st->ops->closing(st);
    s->timers_open = 4;
    uv_close((uv_handle_t *)&s->watchdog, on_timer_closed);
    uv_close((uv_handle_t *)&s->commit_timer, on_timer_closed);
    uv_close((uv_handle_t *)&s->sweep_timer, on_timer_closed);
    uv_close((uv_handle_t *)&s->retry_timer, on_timer_closed);
}

/* The service's stop: hold, commit what is open, leave the group, close. */
static void drain_stage(hm_service *svc, void *ud) {
    hm_stage *st = ud;
    struct hm_stage_impl *s = st->impl;
    hm_log_info("draining", HM_LS("state", hm_stage_state_name(s->state)),
                HM_LS("unit", hm_stage_unit_name(s->unit)),
                HM_LI("records_in_unit", s->unit_records));
    /* Commit within four fifths of the service's stop timeout; the rest is for closing. */
    s->drain_deadline_ms = uv_now(st->loop) + (uint64_t)st->svc->cfg->stop_timeout_ms * 4 / 5;
    if (s->state == HM_STAGE_RESTORING) cancel_restore(st);
    if (s->sink == SINK_RETRY_WAIT) {
        /* The sink is down: what it did not take is read again by the next owner. */
        uv_timer_stop(&s->retry_timer);
        s->sink = SINK_IDLE;
        set_unit(st, HM_UNIT_FENCED);
    }
    set_state(st, HM_STAGE_STOPPING);
    step(st);
}

hm_stage *hm_stage_new(hm_service *svc, const hm_stage_opts *o, const hm_stage_ops *ops,
                       size_t size, hm_err *err) {
    assert(size >= sizeof(hm_stage));
    if (!ops || !ops->process) {
        hm_err_set(err, -EINVAL, "stage: the process hook is required");
        return NULL;
    }
    if (!o->input_topic || !*o->input_topic || !o->group_id || !*o->group_id) {
        hm_err_set(err, -EINVAL, "stage: input_topic and group_id are required");
        return NULL;
    }
    if (o->shape == HM_STAGE_CHANGELOG &&
        (!o->changelog_topic || !*o->changelog_topic || !ops->restore || !ops->flush_state)) {
        hm_err_set(err, -EINVAL,
                   "stage: a changelog stage needs changelog_topic, restore and flush_state");
        return NULL;
    }
    if (o->shape == HM_STAGE_SINK && !ops->sink_flush) {
        hm_err_set(err, -EINVAL, "stage: a sink stage needs the sink_flush hook");
        return NULL;
    }
    if (o->shape < HM_STAGE_CHANGELOG || o->shape > HM_STAGE_SINK) {
        hm_err_set(err, -EINVAL, "stage: unknown shape %d", (int)o->shape);
        return NULL;
    }
    if (o->offsets == HM_STAGE_OFFSETS_CHANGELOG && o->shape != HM_STAGE_CHANGELOG) {
        hm_err_set(err, -EINVAL,
                   "stage: offsets can be kept in the changelog only by a changelog stage");
        return NULL;
    }
    if (o->commit_interval_ms < 0 || o->commit_max_records < 1 ||
        (o->sweep_interval_ms && !ops->sweep)) {
        hm_err_set(err, -EINVAL, "stage: commit policy must be positive; a sweep needs its hook");
        return NULL;
    }
    hm_stage *st = hm_xcalloc(1, size);
    struct hm_stage_impl *s = hm_xcalloc(1, sizeof(*s));
    st->svc = svc;
    st->loop = svc->loop;
    st->ops = ops;
    st->impl = s;
    s->shape = o->shape;
    s->delivery = o->delivery;
    s->offsets = o->offsets != HM_STAGE_OFFSETS_AUTO ? o->offsets
                 : o->shape == HM_STAGE_CHANGELOG    ? HM_STAGE_OFFSETS_CHANGELOG
                                                     : HM_STAGE_OFFSETS_GROUP;
    s->input_topic = hm_xstrdup(o->input_topic);
    s->group_id = hm_xstrdup(o->group_id);
    s->changelog_topic = o->changelog_topic ? hm_xstrdup(o->changelog_topic) : NULL;
    s->dlq_topic = o->dlq_topic ? hm_xstrdup(o->dlq_topic) : NULL;
    s->commit_interval_ms = o->commit_interval_ms;
    s->commit_max_records = o->commit_max_records;
    s->sweep_interval_ms = o->sweep_interval_ms;
    s->rebuild_window_ms = o->rebuild_window_ms;
    s->restore_timeout_ms =
        o->restore_timeout_ms ? o->restore_timeout_ms : DEFAULT_RESTORE_TIMEOUT_MS;
    /* Offsets in the changelog: a dropped member's open transaction must be aborted (and
     * its producer fenced) before the group can give its partitions away, so the
     * transaction timeout stays below the consumer's session timeout (10 s). */
    s->transaction_timeout_ms = o->transaction_timeout_ms ? o->transaction_timeout_ms : 6000;
    s->state = HM_STAGE_INIT;
    s->unit = HM_UNIT_NONE;
    snprintf(s->txn_id, sizeof(s->txn_id), "%s-%s", svc->name,
             svc->cfg->instance_id ? svc->cfg->instance_id : "");

    const char *prefix = o->metrics_prefix ? o->metrics_prefix : "himari_stage";
    char name[128];
    hm_metrics *m = svc->metrics;
    snprintf(name, sizeof(name), "%s_transaction_records", prefix);
    s->unit_records_g = hm_metrics_gauge_child(
        hm_metrics_gauge(m, name, "Records in the open transaction (or sink batch).", NULL));
    snprintf(name, sizeof(name), "%s_input_age_seconds", prefix);
    s->input_age = hm_metrics_histogram_child(hm_metrics_histogram(
        m, name, "Time from a record's Kafka timestamp to its processing (fetch and queueing).",
        NULL, hm_latency_buckets, hm_latency_buckets_n));
    snprintf(name, sizeof(name), "%s_commit_age_seconds", prefix);
    s->commit_age = hm_metrics_histogram_child(hm_metrics_histogram(
        m, name,
        "Age of a transaction's oldest record when the transaction committed: the longest "
        "a record of it waited to become visible downstream.",
        NULL, hm_latency_buckets, hm_latency_buckets_n));
    snprintf(name, sizeof(name), "%s_dead_letters_total", prefix);
    s->dead_letters = hm_metrics_counter_child(
        hm_metrics_counter(m, name, "Input records put on the dead-letter topic.", NULL));
    snprintf(name, sizeof(name), "%s_consume_errors_total", prefix);
    s->consume_errors = hm_metrics_counter_child(hm_metrics_counter(
        m, name,
        "Input records that could not be read (corrupt batch, decompression, offset reset); "
        "each gap is kept as a dead letter without a value.",
        NULL));
    snprintf(name, sizeof(name), "%s_dead_letters_truncated_total", prefix);
    s->dead_letters_truncated = hm_metrics_counter_child(hm_metrics_counter(
        m, name,
        "Dead letters cut to the producer's message size (headers give the original size; the "
        "whole record stays at its source offset).",
        NULL));
    snprintf(name, sizeof(name), "%s_transaction_open_seconds", prefix);
    s->unit_open = hm_metrics_histogram_child(hm_metrics_histogram(
        m, name,
        "How long a transaction (or batch) was open before its commit began: the wait a "
        "record adds before the commit itself.",
        NULL, hm_latency_buckets, hm_latency_buckets_n));
    snprintf(name, sizeof(name), "%s_loop_stalls_total", prefix);
    s->stalls = hm_metrics_counter_child(hm_metrics_counter(
        m, name,
        "Gaps in the loop's progress long enough for the group to move partitions; each one "
        "aborts the open transaction and restores again (offsets in the changelog).",
        NULL));
    if (s->shape == HM_STAGE_REBUILD) {
        snprintf(name, sizeof(name), "%s_rebuild_sends_suppressed_total", prefix);
        s->suppressed = hm_metrics_counter_child(hm_metrics_counter(
            m, name, "Outputs not sent again while rebuilding state from committed input.", NULL));
    }
    if (s->shape == HM_STAGE_SINK) {
        snprintf(name, sizeof(name), "%s_sink_failures_total", prefix);
        s->sink_failures = hm_metrics_counter_child(
            hm_metrics_counter(m, name, "Sink flushes that failed and were retried.", NULL));
    }
    return st;
}

/* An integer property of a client's effective configuration, or def. */
static long long conf_int(rd_kafka_t *rk, const char *name, long long def) {
    char buf[32];
    size_t n = sizeof(buf);
    if (rd_kafka_conf_get(rd_kafka_conf(rk), name, buf, &n) != RD_KAFKA_CONF_OK) return def;
    return atoll(buf);
}

/* The largest dead-letter value the producer accepts whole: its message.max.bytes
 * (librdkafka's default 1,000,000, or what kafka.properties set) less the headroom. */
static size_t dlq_limit(hm_producer *p) {
    long long max = conf_int(hm_producer_rk(p), "message.max.bytes", 1000000);
    return max > 2 * DLQ_HEADROOM_BYTES ? (size_t)(max - DLQ_HEADROOM_BYTES) : DLQ_HEADROOM_BYTES;
}

int hm_stage_start(hm_stage *st, hm_err *err) {
    struct hm_stage_impl *s = st->impl;
    const hm_kafka_config *kc = &st->svc->cfg->kafka;
    const char *instance = st->svc->cfg->instance_id;
    /* No transaction call may block longer than a stop may take. */
    hm_producer_opts po = {.transactional_id = transactional(s) ? s->txn_id : NULL,
                           .transaction_timeout_ms = s->transaction_timeout_ms,
                           .txn_op_timeout_ms = (int)(st->svc->cfg->stop_timeout_ms * 2 / 3),
                           .client_id = s->txn_id};
    hm_producer_handlers ph = {
        .on_delivery = on_delivery, .on_writable = on_writable, .on_fatal = on_producer_fatal};
    const char *topics[] = {s->input_topic};
    hm_consumer_opts co = {.group_id = s->group_id,
                           .group_instance_id = instance && *instance ? instance : NULL,
                           .topics = topics,
                           .n_topics = 1,
                           .read_committed = true,
                           .auto_commit = false,
                           .client_id = s->txn_id};
    hm_consumer_handlers ch = {.on_message = on_message,
                               .on_batch_end = on_batch_end,
                               .on_assign = on_assign,
                               .on_revoke = on_revoke,
                               .on_fatal = on_consumer_fatal,
                               .on_consume_error = on_consume_error};
    int rc = hm_producer_new(st->loop, kc, &po, &ph, st, st->svc->metrics, &s->producer, err);
    if (rc) return rc;
    s->dlq_max_bytes = dlq_limit(s->producer);
    rc = hm_consumer_new(st->loop, kc, &co, &ch, st, st->svc->metrics, &s->consumer, err);
    if (rc) {
        hm_producer_close(s->producer, 0, NULL, NULL);
        s->producer = NULL;
        return rc;
    }
    if (offsets_in_changelog(s)) {
        long long session = conf_int(hm_consumer_rk(s->consumer), "session.timeout.ms", 10000);
        long long txn = conf_int(hm_producer_rk(s->producer), "transaction.timeout.ms", 60000);
        if (txn >= session) {
            hm_consumer_close(s->consumer, NULL, NULL);
            hm_producer_close(s->producer, 0, NULL, NULL);
            s->consumer = NULL;
            s->producer = NULL;
            return hm_err_set(err, -EINVAL,
                              "kafka: transaction.timeout.ms (%lld) must be below the consumer's "
                              "session.timeout.ms (%lld) when offsets are kept in the changelog: "
                              "a member the group drops must have been fenced first",
                              txn, session);
        }
        s->stall_limit_ms = session / 2;
    }
    /* From here the service's stop closes what was opened. */
    uv_timer_init(st->loop, &s->commit_timer);
    uv_timer_init(st->loop, &s->sweep_timer);
    uv_timer_init(st->loop, &s->retry_timer);
    uv_timer_init(st->loop, &s->watchdog);
    s->commit_timer.data = s->sweep_timer.data = s->retry_timer.data = s->watchdog.data = st;
    if (s->stall_limit_ms > 0) {
        s->watchdog_last_ms = uv_now(st->loop);
        uv_timer_start(&s->watchdog, on_watchdog, 100, 100);
    }
    uint64_t tick = (uint64_t)(s->commit_interval_ms > 10 ? s->commit_interval_ms / 2 : 5);
    /* (With an interval of 0 a unit commits at the end of each fetch batch and whenever
     * the previous commit ends; the timer only catches a unit a batch end missed.) */
    uv_timer_start(&s->commit_timer, on_commit_timer, tick, tick);
    if (s->sweep_interval_ms > 0)
        uv_timer_start(&s->sweep_timer, on_sweep_timer, (uint64_t)s->sweep_interval_ms,
                       (uint64_t)s->sweep_interval_ms);
    hm_service_on_stop(st->svc, drain_stage, st);
    hm_service_set_ready(st->svc, hm_stage_ready, st);
    if (transactional(s)) {
        /* Nothing is processed before transactions are initialised and state restored:
         * partitions are assigned to the consumer only once restored. The consumer is
         * not held meanwhile, so rebalance events keep flowing. */
        s->txn_init_busy = true;
        if ((rc = hm_producer_txn_init(s->producer, on_txn_init, st)) != 0) {
            s->txn_init_busy = false;
            return hm_err_set(err, rc, "cannot start init_transactions");
        }
    } else {
        set_state(st, HM_STAGE_IDLE);
    }
    hm_log_info("stage_started", HM_LS("input", s->input_topic), HM_LS("group", s->group_id),
                HM_LS("transactional_id", transactional(s) ? s->txn_id : ""),
                HM_LI("shape", s->shape), HM_LS("librdkafka", rd_kafka_version_str()));
    return 0;
}

void hm_stage_free(hm_stage *st) {
    if (!st) return;
    struct hm_stage_impl *s = st->impl;
    if (st->ops->destroy) st->ops->destroy(st);
    stash_clear(s);
    free(s->stash);
    if (s->assignment) rd_kafka_topic_partition_list_destroy(s->assignment);
    if (s->unit_offsets) rd_kafka_topic_partition_list_destroy(s->unit_offsets);
    if (s->lag_commit_next) rd_kafka_topic_partition_list_destroy(s->lag_commit_next);
    free(s->parts);
    free(s->input_topic);
    free(s->group_id);
    free(s->changelog_topic);
    free(s->dlq_topic);
    free(s);
    free(st);
}

/* ---- the service's levers ----------------------------------------------------------- */

void hm_stage_fail_unit(hm_stage *st, const char *reason) {
    doom_unit(st, "service", reason);
}

void hm_stage_hold(hm_stage *st) {
    st->impl->service_holds++;
    update_holds(st);
}

void hm_stage_release(hm_stage *st) {
    /* No step here: this may run inside process(), in the middle of a fetch batch,
     * where a commit must not start; the batch end or the commit timer steps. */
    if (st->impl->service_holds > 0) st->impl->service_holds--;
    update_holds(st);
}

void hm_stage_set_commit_policy(hm_stage *st, int64_t interval_ms, int64_t max_records) {
    st->impl->commit_interval_ms = interval_ms > 0 ? interval_ms : 0;
    st->impl->commit_max_records = max_records > 0 ? max_records : 1;
    hm_log_info("commit_policy", HM_LI("commit_interval_ms", st->impl->commit_interval_ms),
                HM_LI("commit_max_records", st->impl->commit_max_records));
    step(st);
}

hm_stage_state hm_stage_get_state(const hm_stage *st) {
    return st->impl->state;
}

hm_stage_unit hm_stage_get_unit(const hm_stage *st) {
    return st->impl->unit;
}

unsigned hm_stage_holds(const hm_stage *st) {
    return st->impl->holds;
}

hm_consumer *hm_stage_consumer(hm_stage *st) {
    return st->impl->consumer;
}

bool hm_stage_ready(void *ud, char *reason, size_t size) {
    const struct hm_stage_impl *s = ((hm_stage *)ud)->impl;
    switch (s->state) {
        case HM_STAGE_INIT:
            snprintf(reason, size, "initialising Kafka transactions");
            return false;
        case HM_STAGE_IDLE:
            snprintf(reason, size, "waiting for partitions");
            return false;
        case HM_STAGE_RESTORING:
            snprintf(reason, size, "restoring state");
            return false;
        case HM_STAGE_RUNNING:
        case HM_STAGE_REVOKING:
            if (any_rebuilding(s)) {
                snprintf(reason, size, "rebuilding state from the input");
                return false;
            }
            return true;
        default:
            snprintf(reason, size, "stopping");
            return false;
    }
}

/* ---- control hooks --------------------------------------------------------------- */

static void control_status(void *ud, hm_control_status *out) {
    hm_stage *st = ud;
    struct hm_stage_impl *s = st->impl;
    switch (s->state) {
        case HM_STAGE_INIT:
        case HM_STAGE_IDLE:
        case HM_STAGE_RESTORING:
            out->state = HM_SERVICE_STARTING;
            break;
        case HM_STAGE_RUNNING:
        case HM_STAGE_REVOKING:
            out->state = s->consumer && hm_consumer_paused(s->consumer) ? HM_SERVICE_PAUSED
                                                                        : HM_SERVICE_RUNNING;
            break;
        default:
            out->state = HM_SERVICE_DRAINING;
            break;
    }
    out->records_in = s->records_in;
    out->records_out = s->records_out;
    out->transactions_committed = s->committed;
    out->transactions_aborted = s->aborted;
    out->last_error = s->last_error;
    out->consumer = s->consumer;
}

static bool accepting(const struct hm_stage_impl *s) {
    return s->consumer && s->state < HM_STAGE_STOPPING;
}

static void control_pause(void *ud) {
    hm_stage *st = ud;
    if (accepting(st->impl)) hm_consumer_pause(st->impl->consumer);
}

static void control_resume(void *ud) {
    hm_stage *st = ud;
    if (accepting(st->impl)) hm_consumer_resume(st->impl->consumer);
}

static void control_drain(void *ud, void (*done)(void *arg, uint64_t records), void *arg) {
    hm_stage *st = ud;
    st->impl->drain_cb = done;
    st->impl->drain_arg = arg;
    hm_service_stop(st->svc, 0); /* drain_stage: hold, commit, leave */
}

const hm_control_hooks hm_stage_control_hooks = {
    .status = control_status,
    .pause = control_pause,
    .resume = control_resume,
    .drain = control_drain,
};

int hm_stage_service_started(int rc, hm_stage *st, void **ctx, hm_control_hooks *hooks,
                             void (*status)(void *ud, hm_control_status *out),
                             void (*reconfigure)(void *ud)) {
    *ctx = st;
    *hooks = hm_stage_control_hooks;
    if (status) hooks->status = status;
    if (reconfigure) hooks->reconfigure = reconfigure;
    return rc;
}

void hm_stage_service_free(void *ctx) {
    hm_stage_free(ctx);
}
