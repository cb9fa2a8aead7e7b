/*
 * himari/quality.h: the quality_scores record: its issue codes, its writer and its
 * zero-copy decoder.
 *
 * The ingest-validator writes one quality record per input record (hm_quality_write,
 * hm_quality_write_parse_error); every service downstream of quality_scores
 * (feature-engine, archiver, graph-writer) reads them back with hm_quality_decode. The
 * format is one JSON object, fields in this order (docs/QUALITY_CHECKS.md):
 *
 *   {"symbol":..,"exchange":..,"timestamp":..,"price":..,"volume":..,"trade_id":..,
 *    "side":..,"type":..,                     the tick's fields, null when not accepted
 *    ["asset":..,"amount":..,"from":..,"to":..,"tx_hash":..,]    transfers only
 *    "quality_score":0.875,"issues":["LARGE_GAP",..],"issue_count":1,
 *    "processed_at":"2023-11-14T22:13:21.004Z",["error":"..",]   parse errors only
 *    "original_data":{..} | ".." | null[,"original_bytes":N]}
 *
 * original_data is the input object byte for byte, or a JSON string of the input when it
 * was not strict JSON (hm_tick.strict_json: NaN tokens, a number out of range anywhere in
 * it, such as 1e400 or a 40-digit integer) or not a record at all (a parse error), or null
 * with original_bytes when it was longer than the validator's limit. Every record written
 * loads in strict parsers (jansson, Python with non-finite floats refused, PostgreSQL jsonb).
 *
 * Writing and decoding allocate nothing (beyond the hm_buf's growth) and keep no state.
 */
#ifndef HIMARI_QUALITY_H
#define HIMARI_QUALITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "himari/buf.h"
#include "himari/common.h"
#include "himari/tick.h"

/* ---- the issue codes ------------------------------------------------------------------ */

/**
 * What a tick carrying a code must not move, in the ingest-validator's state (the
 * validator's semantics; a reader may use them to decide which ticks to trust for what):
 *   HM_QHOLD_PRICE   the price state (reference price, EMA, level tracking)
 *   HM_QHOLD_VOLUME  the volume baseline
 *   HM_QHOLD_SEQ     the sequence state (last timestamp, last trade id)
 */
enum {
    HM_QHOLD_PRICE = 1u << 0,
    HM_QHOLD_VOLUME = 1u << 1,
    HM_QHOLD_SEQ = 1u << 2,
    HM_QHOLD_VALUES = HM_QHOLD_PRICE | HM_QHOLD_VOLUME,
    HM_QHOLD_ALL = HM_QHOLD_VALUES | HM_QHOLD_SEQ,
};

/**
 * Every issue code a quality record can carry, in code-table order (the order of the
 * "issues" array; docs/QUALITY_CHECKS.md documents each: meaning, threshold, example).
 * Columns: name, default weight (subtracted from a score of 1.0, the result clamped to
 * [0, 1]; 0 makes a code informational) and HM_QHOLD_* flags.
 * X(name, weight, holds). A new code also needs its place in k_by_name (quality.c, in
 * name order; a static assert counts the rows, test_quality checks the order).
 */
#define HM_QCODES(X)                                                                               \
    /* the record as a whole */                                                                    \
    X(PARSE_ERROR, 1.00, HM_QHOLD_ALL)                                                             \
    X(INVALID_TYPE, 0.20, HM_QHOLD_ALL)                                                            \
    /* identity fields */                                                                          \
    X(MISSING_TIMESTAMP, 0.30, HM_QHOLD_ALL)                                                       \
    X(INVALID_TIMESTAMP, 0.30, HM_QHOLD_ALL)                                                       \
    X(MISSING_SYMBOL, 0.30, HM_QHOLD_ALL)                                                          \
    X(INVALID_SYMBOL, 0.30, HM_QHOLD_ALL)                                                          \
    X(INVALID_SYMBOL_FORMAT, 0.15, HM_QHOLD_ALL)                                                   \
    X(MISSING_EXCHANGE, 0.30, HM_QHOLD_ALL)                                                        \
    X(INVALID_EXCHANGE, 0.30, HM_QHOLD_ALL)                                                        \
    X(UNKNOWN_EXCHANGE, 0.15, HM_QHOLD_ALL)                                                        \
    X(INVALID_TRADE_ID, 0.05, HM_QHOLD_SEQ)                                                        \
    X(MISSING_SIDE, 0.05, 0)                                                                       \
    X(INVALID_SIDE, 0.05, 0)                                                                       \
    /* price and volume values */                                                                  \
    X(MISSING_PRICE, 0.30, HM_QHOLD_PRICE)                                                         \
    X(INVALID_PRICE, 0.30, HM_QHOLD_PRICE)                                                         \
    X(NON_FINITE_PRICE, 0.30, HM_QHOLD_PRICE)                                                      \
    X(INVALID_PRICE_NEGATIVE, 0.25, HM_QHOLD_PRICE)                                                \
    X(ZERO_PRICE, 0.25, HM_QHOLD_PRICE)                                                            \
    X(EXCESSIVE_PRECISION, 0.05, 0)                                                                \
    X(MISSING_VOLUME, 0.20, HM_QHOLD_VOLUME)                                                       \
    X(INVALID_VOLUME, 0.20, HM_QHOLD_VOLUME)                                                       \
    X(NON_FINITE_VOLUME, 0.20, HM_QHOLD_VOLUME)                                                    \
    X(INVALID_VOLUME_NEGATIVE, 0.20, HM_QHOLD_VOLUME)                                              \
    X(ZERO_VOLUME, 0.10, HM_QHOLD_VOLUME)                                                          \
    /* transfers (on-chain whale movements) */                                                     \
    X(MISSING_ASSET, 0.30, HM_QHOLD_ALL)                                                           \
    X(MISSING_AMOUNT, 0.30, HM_QHOLD_ALL)                                                          \
    X(INVALID_AMOUNT, 0.30, HM_QHOLD_ALL)                                                          \
    X(MISSING_ADDRESS, 0.20, 0)                                                                    \
    /* sequence and time, per (exchange, symbol) */                                                \
    X(OUT_OF_ORDER, 0.30, HM_QHOLD_ALL)                                                            \
    X(DUPLICATE_TIMESTAMP, 0.10, 0)                                                                \
    X(LARGE_GAP, 0.00, 0)                                                                          \
    X(DUPLICATE_TRADE_ID, 0.30, HM_QHOLD_ALL)                                                      \
    X(TRADE_ID_GAP, 0.05, 0)                                                                       \
    X(TRADE_ID_OUT_OF_ORDER, 0.20, HM_QHOLD_ALL)                                                   \
    X(STALE_DATA, 0.15, HM_QHOLD_ALL)                                                              \
    X(DELAYED_DATA, 0.05, HM_QHOLD_VALUES)                                                         \
    X(FUTURE_TIMESTAMP, 0.20, HM_QHOLD_ALL)                                                        \
    /* price behaviour */                                                                          \
    X(EXTREME_PRICE_MOVE, 0.20, HM_QHOLD_PRICE)                                                    \
    X(LARGE_PRICE_MOVE, 0.05, HM_QHOLD_PRICE)                                                      \
    X(PRICE_ANOMALY, 0.10, HM_QHOLD_PRICE)                                                         \
    X(CROSS_EXCHANGE_DEVIATION, 0.15, HM_QHOLD_PRICE)                                              \
    X(SPIKE_REVERTED, 0.00, 0)                                                                     \
    X(LEVEL_SHIFT_CONFIRMED, 0.00, 0)                                                              \
    /* volume behaviour */                                                                         \
    X(EXTREME_VOLUME_SPIKE, 0.15, HM_QHOLD_VOLUME)                                                 \
    X(VOLUME_SPIKE, 0.00, HM_QHOLD_VOLUME)                                                         \
    X(NOTIONAL_OUTLIER, 0.00, HM_QHOLD_VOLUME)                                                     \
    /* the validator's own capacity (a statement about the judging, not the tick) */               \
    X(NO_STATE, 0.00, 0)

typedef enum hm_qcode {
#define HM_QCODE_ENUM_(name, weight, holds) HM_Q_##name,
    HM_QCODES(HM_QCODE_ENUM_)
#undef HM_QCODE_ENUM_
        HM_QCODE_COUNT
} hm_qcode;

/** A set of issue codes; bit c is code c, so iterating bits upwards is code-table order. */
typedef uint64_t hm_qcodeset;
_Static_assert(HM_QCODE_COUNT <= 64, "an hm_qcodeset holds every code in one 64-bit word");

#define HM_QBIT(c) ((hm_qcodeset)1 << (c))

/** @brief "LARGE_GAP" for HM_Q_LARGE_GAP ("UNKNOWN" outside the table). */
const char *hm_qcode_name(hm_qcode c);
/** @brief The code table's default weight. */
double hm_qcode_default_weight(hm_qcode c);
/** @brief HM_QHOLD_* flags of a code. */
unsigned hm_qcode_holds(hm_qcode c);
/** @brief Every code whose HM_QHOLD_* flags include one of holds (a set to test records
 *  against with one AND: compute it once, not per record). */
hm_qcodeset hm_qcodes_holding(unsigned holds);
/** @brief Look a code up by its exact name (NUL-terminated); -ENOENT when unknown. */
int hm_qcode_by_name(const char *name);
/**
 * @brief Look a code up by the name s[0..n) (not NUL-terminated): a binary search over
 * the names, ~6 short compares (the decoder's per-issue lookup). -ENOENT when unknown.
 */
int hm_qcode_by_name_n(const char *s, size_t n);

/* ---- writing -------------------------------------------------------------------------- */

/**
 * @brief Append the quality record of a decoded tick to b (no newline).
 * processed_at is the ISO-8601 text, exactly 24 chars (hm_format_iso8601_ms). The tick's
 * raw bytes (t->raw) become original_data. Always valid JSON, whatever the input held.
 */
void hm_quality_write(hm_buf *b, const hm_tick *t, hm_qcodeset codes, double score,
                      const char *processed_at);

/**
 * @brief Append the quality record of an input that could not be decoded: every field
 * null, PARSE_ERROR, the error text, and the original bytes data[0..len) as a JSON string
 * (or, when oversized, null plus "original_bytes":len, and data is not read).
 */
void hm_quality_write_parse_error(hm_buf *b, const char *data, size_t len, bool oversized,
                                  const char *error, const char *processed_at);

/** @brief Append the "issues" array of a code set, in code-table order. */
void hm_quality_write_issues(hm_buf *b, hm_qcodeset codes);

/* ---- decoding ------------------------------------------------------------------------- */

/** The quality record's own fields (the tick's are hm_field). */
typedef enum hm_qfield {
    HM_QFIELD_SCORE = 0,      /* "quality_score" */
    HM_QFIELD_ISSUES,         /* "issues" */
    HM_QFIELD_ISSUE_COUNT,    /* "issue_count" */
    HM_QFIELD_PROCESSED_AT,   /* "processed_at" */
    HM_QFIELD_ERROR,          /* "error" */
    HM_QFIELD_ORIGINAL,       /* "original_data" */
    HM_QFIELD_ORIGINAL_BYTES, /* "original_bytes" */
    HM_QFIELD_COUNT_,
} hm_qfield;

/** @brief The JSON name of a quality field ("quality_score", ...). */
const char *hm_qfield_name(hm_qfield f);

/** Records nest one level deeper than the tick they carry (original_data is inside). */
#define HM_QUALITY_MAX_DEPTH (HM_TICK_MAX_DEPTH + 1)

/**
 * A decoded quality record. Spans point into the decoded bytes, which must outlive it.
 * A value is valid only when its field's state is HM_F_OK.
 */
typedef struct hm_quality {
    /* The tick's fields with hm_tick_decode's semantics and states. A field the validator
     * did not accept was written as null, so it reads HM_F_NULL whatever its state was in
     * the input; exchange is lower-case, trade_id a string, price/volume numbers; the
     * transfer fields are HM_F_ABSENT for trades and liquidations; "type" is null (kind
     * HM_KIND_TRADE) only on parse errors. tick.raw is the whole quality record, and
     * tick.strict_json is true unless it holds a number out of range (which the writer
     * never writes: price and volume are then written as the double's shortest form). */
    hm_tick tick;

    hm_fstate st[HM_QFIELD_COUNT_]; /* state of each quality field */
    double score;                   /* quality_score in [0, 1] (else HM_F_INVALID) */
    /* The issues the decoder knows. The field is HM_F_INVALID when an element is not a
     * string (the strings still count); names not in the table (a newer validator's) are
     * counted in unknown_codes and kept out of codes, not an error. */
    hm_qcodeset codes;
    uint32_t unknown_codes;
    hm_span issues_text;     /* the array's JSON text, brackets included (field HM_F_OK or
                                HM_F_INVALID), for readers that keep every name */
    int64_t issue_count;     /* as written (>= 0); not checked against issues */
    int64_t processed_at_ms; /* ms since the epoch */
    hm_span processed_at;    /* its text */
    /* Parse errors: the text between the quotes, still JSON-escaped when error_escaped. */
    hm_span error;
    bool error_escaped;
    /* original_data as JSON text: the object itself, or (original_is_string) the string
     * with its quotes, holding the original bytes JSON-escaped. */
    hm_span original;
    bool original_is_string;
    uint64_t original_bytes; /* oversized parse errors: the input's length */
} hm_quality;

/**
 * @brief Decode one quality record.
 * @param json the bytes (not necessarily NUL-terminated), at most UINT32_MAX of them
 * @param len  their length
 * @param out  filled on success; spans point into json
 * @param err  filled on failure (NULL: not wanted)
 * @return 0 when json is one well-formed JSON object, whatever its fields hold (see
 *         out->tick.st and out->st: a missing quality_score or issues is HM_F_ABSENT);
 *         -EINVAL when it is not JSON (NaN/Infinity tokens included; numbers out of range
 *         are RFC 8259 and read, clearing out->tick.strict_json), is nested
 *         deeper than HM_QUALITY_MAX_DEPTH or repeats a known key (err says where and why);
 *         -E2BIG when longer than UINT32_MAX.
 */
int hm_quality_decode(const char *json, size_t len, hm_quality *out,
                      hm_decode_err *err) HM_MUST_CHECK;

#endif
