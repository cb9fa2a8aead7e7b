/*
 * events.h: causal_events records into one Neo4j transaction's statements (pure: no I/O).
 *
 * A batch collects events by kind, each checked and reduced to the parameters its
 * statement needs; gw_batch_body() renders the body of one request to Neo4j's HTTP
 * transactional endpoint (POST /db/<name>/tx/commit): one parameterised UNWIND ... MERGE
 * statement per kind present, in the order whale transfers, price movements, cascades,
 * feed events. Every node is merged on its event id, every relationship with MERGE, so a
 * batch sent twice (a redelivery) changes nothing. Causal links are made from both ends
 * (an event links to the earlier ones already in the graph and to the later ones already
 * there), so the order events arrive in does not change the graph.
 *
 * Graph model (docs/GRAPH.md):
 *   (Wallet)-[:TRANSFERRED]->(WhaleTransfer)-[:TO]->(Exchange),
 * (WhaleTransfer)-[:OF_ASSET]->(Asset) (PriceMovement)-[:ON_PAIR]->(Pair),
 * (CascadeEvent)-[:ON_PAIR]->(Pair) (Pair)-[:BASE_ASSET]->(Asset), (Pair)-[:QUOTE_ASSET]->(Asset)
 *   (WhaleTransfer)-[:PRECEDED {lag_s}]->(PriceMovement)   same base asset, within whale_s
 *   (PriceMovement)-[:PRECEDED {lag_s}]->(CascadeEvent)    same pair, within movement_s
 *   (CascadeEvent)-[:PRECEDED {lag_s}]->(CascadeEvent)     same pair, within cascade_s
 *   (FeedEvent)-[:ON_PAIR]->(Pair), (FeedEvent)-[:AT]->(Exchange)  feed_silence / feed_resumed
 */
#ifndef GW_EVENTS_H
#define GW_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "himari/buf.h"
#include "himari/common.h"

typedef enum gw_kind {
    GW_WHALE_TRANSFER,
    GW_PRICE_MOVEMENT,
    GW_CASCADE,
    GW_FEED_EVENT,
    GW_KIND_COUNT
} gw_kind;

/** How far apart two events may be for a PRECEDED link, seconds. */
typedef struct gw_windows {
    int64_t whale_s;    /* whale transfer -> price movement (the guide's 1 h) */
    int64_t movement_s; /* price movement -> cascade */
    int64_t cascade_s;  /* cascade -> cascade (the guide's Query 2: 1 h) */
} gw_windows;

/** One event of a batch: its kind and its statement's parameter row (a JSON object). */
typedef struct gw_event {
    gw_kind kind;
    char *row;
    size_t row_len;
} gw_event;

/** One batch of events, in arrival order. */
typedef struct gw_batch {
    gw_event *ev;
    size_t total, cap;
} gw_batch;

/** Why an event was refused: the field and a sentence; static strings or in detail. */
typedef struct gw_reject {
    const char *field;
    char detail[160];
} gw_reject;

void gw_batch_init(gw_batch *b);
void gw_batch_reset(gw_batch *b);
void gw_batch_free(gw_batch *b);

/**
 * @brief Add one causal_events record (JSON). 0: added; -EINVAL: not an event the graph
 * can hold (not JSON, unknown type, a field missing or of the wrong type), with why.
 */
int gw_batch_add(gw_batch *b, const char *json, size_t len, gw_reject *why) HM_MUST_CHECK;

/** @brief The request body for the batch's transaction into out (appended). */
void gw_batch_body(const gw_batch *b, const gw_windows *w, hm_buf *out);
/** @brief The same for events [from, to) only (a batch Neo4j refused is sent again in parts). */
void gw_batch_body_range(const gw_batch *b, size_t from, size_t to, const gw_windows *w,
                         hm_buf *out);

/**
 * @brief The body of a transaction that keeps an event Neo4j refused, as
 * (:RejectedEvent {id, kind, error, row, rejected_at}), merged on the event id: nothing is
 * lost, and the reason is where the graph's users look.
 */
void gw_rejected_body(const gw_batch *b, size_t i, const char *error, hm_buf *out);

/** @brief The kind's statement (for --replay's listing and for docs/GRAPH.md). */
const char *gw_statement(gw_kind k);
/** @brief "whale_transfer", "price_movement", "liquidation_cascade", "feed_event". */
const char *gw_kind_name(gw_kind k);

#endif
