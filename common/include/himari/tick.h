/*
 * himari/tick.h: the market record model and its JSON codec.
 *
 * Input on raw_market_data is one JSON object per record, the seed's raw format
 * extended with identity and kind fields:
 *
 *   {"timestamp": 1700000000123 | "2023-11-14T22:13:20.123Z",
 *    "symbol": "BTC/USDT", "exchange": "binance",
 *    "price": 37000.5 | "37000.5", "volume": 0.25 | "0.25",
 *    "trade_id": 123456 | "abc-1",            (optional)
 *    "side": "buy" | "sell",                  (optional)
 *    "type": "trade" | "liquidation" | "transfer"}   (optional, default trade)
 *
 *   liquidation: the same fields; side is the side of the forced order,
 *                volume its quantity.
 *   transfer:    {"type":"transfer","timestamp":..,"asset":"BTC","amount":250.0,
 *                 "from":"<address>","to":"<address>","exchange":"binance"
 *                 (the receiving exchange, optional),"tx_hash":"..",
 *                 "symbol" (optional: the pair it concerns)}
 *
 * The decoder is lenient about fields and strict about syntax. A syntactically
 * broken record (not JSON, not an object, bad UTF-8, too deep, duplicate key,
 * oversized) fails as a whole: that is a PARSE_ERROR and the bytes go to the
 * dead-letter topic. A well-formed object always decodes, and each known field
 * gets a state (absent, null, wrong type, invalid text, non-finite, ok) so the
 * validator can name exactly what is wrong with which field.
 *
 * Zero-copy: spans point into the caller's input buffer, which must outlive
 * the tick. Decoding allocates nothing. Field names are case-sensitive;
 * unknown fields are ignored (and stay in the original bytes).
 */
#ifndef HIMARI_TICK_H
#define HIMARI_TICK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "himari/common.h"

/** A view of bytes inside the input; not NUL-terminated. */
typedef struct hm_span {
    const char *p;
    uint32_t len;
} hm_span;

typedef enum hm_kind {
    HM_KIND_TRADE = 0,
    HM_KIND_LIQUIDATION,
    HM_KIND_TRANSFER,
} hm_kind;

typedef enum hm_side {
    HM_SIDE_NONE = 0, /* absent */
    HM_SIDE_BUY,
    HM_SIDE_SELL,
} hm_side;

/** What the decoder found in one field. */
typedef enum hm_fstate {
    HM_F_ABSENT = 0, /* key not present */
    HM_F_OK,         /* present and usable */
    HM_F_NULL,       /* present as JSON null */
    HM_F_WRONG_TYPE, /* e.g. an object where a number belongs, a number for symbol */
    HM_F_INVALID,    /* right JSON type, unusable text: "abc" as a price, bad ISO date,
                        unknown type/side word, empty string */
    HM_F_NONFINITE,  /* NaN, Infinity, or a number that overflows a double */
} hm_fstate;

/** Known fields, for naming them in errors and issue codes. */
typedef enum hm_field {
    HM_FIELD_TIMESTAMP = 0,
    HM_FIELD_SYMBOL,
    HM_FIELD_EXCHANGE,
    HM_FIELD_PRICE,
    HM_FIELD_VOLUME,
    HM_FIELD_TRADE_ID,
    HM_FIELD_SIDE,
    HM_FIELD_TYPE,
    HM_FIELD_ASSET,
    HM_FIELD_AMOUNT,
    HM_FIELD_FROM,
    HM_FIELD_TO,
    HM_FIELD_TX_HASH,
    HM_FIELD_RECEIVED, /* a capture's own receive time: "local_timestamp" (tardis),
                          "receipt_timestamp" (cryptofeed) or "local_ts" (hftbacktest) */
    HM_FIELD_COUNT_,
} hm_field;

/** @brief The JSON name of a field ("timestamp", "price", ...). */
const char *hm_field_name(hm_field f);
/** @brief "absent", "null", "wrong type", ... for messages. */
const char *hm_fstate_name(hm_fstate s);
const char *hm_kind_name(hm_kind k); /* "trade" | "liquidation" | "transfer" */
const char *hm_side_name(hm_side s); /* "" | "buy" | "sell" */

/** A decoded record. Numbers are valid only when their state is HM_F_OK. */
typedef struct hm_tick {
    hm_fstate st[HM_FIELD_COUNT_]; /* state of each known field */

    hm_kind kind;     /* HM_KIND_TRADE when "type" is absent */
    int64_t ts_ms;    /* event time, ms since the epoch (ISO input truncated to ms) */
    hm_span symbol;   /* as given, e.g. "BTC/USDT" */
    hm_span exchange; /* as given; see hm_tick_exchange_lower() */
    double price;
    hm_span price_text; /* the number's text (digits of a string value, or the token) */
    double volume;      /* trade/liquidation quantity; transfer: amount when no "volume" */
    hm_span volume_text;
    double amount; /* transfer: "amount" as given (the checks judge volume) */
    hm_span amount_text;
    hm_span trade_id;      /* text of a string id, or the digits of an integer id */
    bool trade_id_numeric; /* the id is a non-negative integer (<= 2^63-1) */
    uint64_t trade_id_num; /* its value when trade_id_numeric */
    hm_side side;
    hm_span asset;   /* transfer */
    hm_span from;    /* transfer: source address */
    hm_span to;      /* transfer: destination address */
    hm_span tx_hash; /* transfer */
    /* When a capture received the record (HM_FIELD_RECEIVED), ms since the epoch: a number
     * in s, ms, us or ns (told apart by size: below 1e11 s, 1e14 ms, 1e17 us, else ns), or
     * a string as "timestamp" takes it (ms digits or ISO-8601). Not carried into the
     * quality record (original_data has it). */
    int64_t received_ms;

    /* false when the raw bytes are not strict JSON, so that they must be embedded as a
     * string, not as an object: a NaN/Infinity token, or a number token out of range,
     * anywhere in the record (nested and unknown fields too): an integer outside int64,
     * a value that overflows a double or a nonzero one that underflows to zero, an
     * exponent above +308 or more than 308 digits before the point, or more than 16383
     * digits after the point once the exponent has moved it (docs/QUALITY_CHECKS.md,
     * "The output record"; json_scan.h's number_out_of_range()). */
    bool strict_json;
    hm_span raw; /* the whole object, surrounding whitespace trimmed */
} hm_tick;

/** Why a record could not be decoded at all (a PARSE_ERROR). */
typedef struct hm_decode_err {
    size_t offset;  /* byte offset of the problem in the input */
    char field[32]; /* the key being read, "" when not inside a value */
    char msg[160];  /* "expected ',' or '}' after value", "invalid UTF-8", ... */
} hm_decode_err;

/** Limits the decoder enforces. */
#define HM_TICK_MAX_DEPTH         16 /* nesting of objects/arrays inside a record */
#define HM_TICK_DEFAULT_MAX_BYTES 65536

/**
 * @brief Decode one record.
 * @param json     the bytes (not necessarily NUL-terminated)
 * @param len      their length
 * @param max_bytes records longer than this are refused (0: HM_TICK_DEFAULT_MAX_BYTES)
 * @param out      filled on success; spans point into json
 * @param err      filled on failure
 * @return 0 when json is one well-formed JSON object (fields may still be bad:
 *         see out->st), -EINVAL when it is not (err says where and why),
 *         -E2BIG when it is longer than max_bytes.
 */
int hm_tick_decode(const char *json, size_t len, size_t max_bytes, hm_tick *out,
                   hm_decode_err *err) HM_MUST_CHECK;

/**
 * @brief Parse an ISO-8601 date-time into ms since the epoch:
 * "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)" (also a space for 'T',
 * and +HHMM). A missing zone is refused: a market timestamp without a zone
 * is ambiguous. Fractions beyond ms are truncated.
 */
int hm_parse_iso8601_ms(const char *s, size_t n, int64_t *out_ms) HM_MUST_CHECK;

/**
 * @brief Parse a decimal number from text (JSON grammar, plus a leading '+'
 * and "NaN"/"Infinity"/"inf" words which yield HM_F_NONFINITE). Used for
 * numbers given as strings. Returns HM_F_OK, HM_F_INVALID or HM_F_NONFINITE.
 */
hm_fstate hm_parse_decimal(const char *s, size_t n, double *out);

/**
 * @brief Digits after the decimal point in a number's text, ignoring trailing
 * zeros and honouring an exponent ("1.2300" -> 2, "1e-9" -> 9, "12" -> 0).
 */
int hm_decimal_places(const char *s, size_t n);

/**
 * @brief Lower-case an ASCII exchange name into out (NUL-terminated,
 * truncated to out_size - 1). Returns the length written.
 */
size_t hm_tick_exchange_lower(const hm_tick *t, char *out, size_t out_size);

#endif
