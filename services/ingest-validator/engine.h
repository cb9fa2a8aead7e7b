/*
 * engine.h: the ingest-validator's logic, one function per input record,
 * shared by Kafka mode (pipeline.c) and replay mode (replay.c) so both give
 * the same output for the same input (only processed_at differs).
 *
 * Pure: no I/O, no clock, no loop. Time comes in with the record (its ingest
 * time, when known) and processed_at is passed by the caller.
 *
 * State:
 *   per (partition, exchange, symbol): the key's sequence state (last
 *     timestamp, recent trade ids) and value state (reference price, EMA,
 *     volume baseline, pending level); created only for known exchanges and
 *     well-formed symbols, at most checks.max_keys per partition: at the bound
 *     the least recently seen key of the exchange holding the most keys is
 *     evicted (tombstoned) to make room, and the tick that needed the room
 *     carries NO_STATE, so junk input cannot grow memory nor silence the checks
 *     of established feeds;
 *   per (partition, symbol): the symbol's event-time watermark (max timestamp
 *     of ticks that were not judged to be from the future) and the list of its
 *     keys (cross-exchange prices, feed-silence detection).
 * Records are keyed by symbol on Kafka, so a symbol's ticks from every exchange
 * arrive on one partition, in order, in both modes: the state of a partition
 * depends only on that partition's records, which is what makes Kafka mode
 * equal replay and lets the state move with its partition on a rebalance.
 *
 * Every key changed since the last flush is "dirty"; iv_engine_flush_dirty()
 * hands out their serialised state (the changelog records, written in the same
 * Kafka transaction as the outputs and offsets) and iv_engine_restore() applies
 * such records after a restart or rebalance.
 */
#ifndef IV_ENGINE_H
#define IV_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "himari/buf.h"
#include "himari/quality.h"

typedef struct iv_engine iv_engine;

/** One input record. */
typedef struct iv_input {
    const char *data; /* the record's bytes (not NUL-terminated) */
    size_t len;
    int64_t ingest_ms; /* Kafka record timestamp; -1 when unknown */
    int32_t partition; /* state partition: the Kafka partition; 0 in replay */
} iv_input;

/** What processing one record produced. */
typedef struct iv_output {
    hm_buf *json;    /* the quality record is appended here (no newline) */
    const char *key; /* Kafka key for the output: the symbol (for transfers without
                        one, the asset); points into the input or the engine; NULL
                        when the record has none */
    size_t key_len;
    bool parse_error; /* the input could not be decoded: send its bytes to the DLQ */
    char error[256];  /* for a parse error: where and why (DLQ header, logs) */
    double score;     /* quality_score as written */
    hm_qcode issues[HM_QCODE_COUNT];
    uint32_t n_issues;
    char exchange[32];    /* lower-cased exchange ("" when none), for metrics */
    uint32_t evictions;   /* keys evicted (max_keys) to make room for this record's key */
    char evicted_key[96]; /* the last of them, "<exchange>|<symbol>" ("" when none) */
} iv_output;

/**
 * Counters the service exports as metrics; the engine only adds to them.
 * issues[c]: records carrying code c. by_result: ok (score 1), flagged
 * (0 < score < 1), rejected (score 0, includes parse errors).
 */
#define IV_STATS_EXCHANGES 32 /* exchanges counted by name; the rest as "other" */

typedef struct iv_exch_count {
    char exchange[32]; /* lower-case */
    uint64_t n;
} iv_exch_count;

typedef struct iv_stats {
    uint64_t records;
    uint64_t ok, flagged, rejected;
    uint64_t parse_errors;
    uint64_t issues[HM_QCODE_COUNT];
    uint64_t events;
    uint64_t evictions; /* keys evicted at max_keys, every exchange */
    /* ... by the evicted key's exchange, in order of first eviction; when the table is
     * full its last entry is "other" (bounded metric labels) */
    iv_exch_count evictions_by[IV_STATS_EXCHANGES];
    uint32_t n_evictions_by;
} iv_stats;

/**
 * @brief A new engine judging with checks (copied; see iv_engine_set_checks)
 * and the freshness clock: event_clock false judges freshness against the
 * record's ingest time when it has one (Kafka mode default), true against the
 * symbol's watermark (replay, and Kafka mode when configured so).
 */
iv_engine *iv_engine_new(const iv_checks *checks, bool event_clock);
void iv_engine_free(iv_engine *e);

/** @brief Replace thresholds and weights (ReloadConfig); state is kept. */
void iv_engine_set_checks(iv_engine *e, const iv_checks *checks);

/**
 * @brief Judge one record, update state, write its quality record.
 * processed_at_ms goes into "processed_at" (the only field that depends on
 * when it runs). out->json is appended to, not reset.
 */
void iv_engine_process(iv_engine *e, const iv_input *in, int64_t processed_at_ms, iv_output *out);

/**
 * @brief Where events (feed_silence, feed_resumed) go: called during
 * iv_engine_process with the event's key (symbol) and JSON object.
 */
typedef void (*iv_event_fn)(void *ud, int32_t partition, const char *key, size_t key_len,
                            const char *json, size_t json_len);
void iv_engine_set_event_sink(iv_engine *e, iv_event_fn fn, void *ud);

/** @brief Read access to the counters. */
const iv_stats *iv_engine_stats(const iv_engine *e);

/* ---- state ownership (Kafka mode) ------------------------------------- */

/** @brief Forget a partition's state (revoked, or rewound after an abort). */
void iv_engine_drop_partition(iv_engine *e, int32_t partition);

/** @brief Keys with state, over all partitions. */
size_t iv_engine_state_keys(const iv_engine *e);
/** @brief Symbols with state (a watermark, a list of keys), over all partitions. */
size_t iv_engine_state_symbols(const iv_engine *e);

/**
 * @brief A changelog record: key bytes, and value bytes (NULL: tombstone,
 * the key's state was dropped). Called once per dirty key by flush.
 */
typedef void (*iv_changelog_fn)(void *ud, int32_t partition, const char *key, size_t key_len,
                                const char *val, size_t val_len);

/** @brief Serialise every dirty key (and tombstones of expired or evicted ones); clear dirty. */
void iv_engine_flush_dirty(iv_engine *e, iv_changelog_fn fn, void *ud);

/** @brief Forget the dirty marks without serialising (after an abort + drop). */
void iv_engine_clear_dirty(iv_engine *e);

/**
 * @brief Apply one changelog record read back for a partition (val NULL:
 * tombstone). Restoring every record of a partition, in log order, gives the
 * state as it was at the last committed transaction.
 * @return 0, or -EINVAL for a record that cannot be read (err says which).
 */
int iv_engine_restore(iv_engine *e, int32_t partition, const char *key, size_t key_len,
                      const char *val, size_t val_len, hm_err *err) HM_MUST_CHECK;

/**
 * @brief Drop keys idle for longer than state_ttl_ms of their partition's
 * latest watermark, and symbols left without keys (their tombstones go out
 * with the next flush). Output is unaffected below max_keys: a key found
 * expired on its next tick would be reset anyway (at the bound, the room a
 * sweep makes spares the next new key an eviction).
 * @return keys dropped.
 */
size_t iv_engine_sweep(iv_engine *e);

#endif
