/*
 * events.c: causal_events records into the statements of one Neo4j transaction (events.h).
 *
 * Each record is parsed (jansson: the volume here is events, not ticks), its fields
 * checked, and one parameter row written per event. The statements are fixed text; the
 * rows and the link windows are their only parameters, so no input ever becomes Cypher.
 */
#include "events.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- the statements ---------------------------------------------------------------- */

/* A PRECEDED link from a to b with the lag in seconds, made once. */
#define LINK(a, b)                                                                                 \
    "MERGE (" a ")-[l:PRECEDED]->(" b ") ON CREATE SET l.lag_s = "                                 \
    "duration.inSeconds(" a ".timestamp, " b ".timestamp).seconds "

/* A pair and, when its symbol reads BASE/QUOTE, its two assets. */
#define MERGE_PAIR(var)                                                                            \
    "MERGE (" var ":Pair {symbol: row.symbol}) "                                                   \
    "FOREACH (_ IN CASE WHEN row.base IS NULL THEN [] ELSE [1] END | "                             \
    "MERGE (ba:Asset {symbol: row.base}) MERGE (" var ")-[:BASE_ASSET]->(ba) "                     \
    "MERGE (qa:Asset {symbol: row.quote}) MERGE (" var ")-[:QUOTE_ASSET]->(qa)) "

/*
 * The link MATCHes find their candidates by time (USING INDEX: a range seek on the label's
 * timestamp index, cypher/001_schema.cypher, over the window), then check the pair or asset
 * from each candidate. The planner picks that itself on an empty graph, but once it plans on
 * a populated one it expands from the pair or asset already bound, which reads every event
 * that pair or asset ever had: a batch's cost grows with the graph's history (on a graph of
 * 20,000 events 6-7x the db hits, and batches of 2,000 events past the 30 s request timeout,
 * sent again; docs/BENCHMARKS.md, "Graph-writer"). A window holds few events. A hint Neo4j
 * cannot follow fails the statement: the indexes come with the schema, which the writer
 * applies before its first write.
 */
static const char *const k_statements[GW_KIND_COUNT] = {
    [GW_WHALE_TRANSFER] =
        "UNWIND $rows AS row "
        "MERGE (t:WhaleTransfer {id: row.id}) "
        "ON CREATE SET t.timestamp = datetime({epochMillis: row.ts}), t.asset = row.asset, "
        "t.amount = row.amount, t.from = row.from, t.to = row.to, t.exchange = row.exchange, "
        "t.tx_hash = row.tx_hash "
        "MERGE (a:Asset {symbol: row.asset}) MERGE (t)-[:OF_ASSET]->(a) "
        "FOREACH (_ IN CASE WHEN row.from IS NULL THEN [] ELSE [1] END | "
        "MERGE (w:Wallet {address: row.from}) MERGE (w)-[:TRANSFERRED]->(t)) "
        "FOREACH (_ IN CASE WHEN row.exchange IS NULL THEN [] ELSE [1] END | "
        "MERGE (e:Exchange {name: row.exchange}) MERGE (t)-[:TO]->(e)) "
        "WITH t "
        "CALL { WITH t "
        "MATCH (a:Asset {symbol: t.asset})<-[:BASE_ASSET]-(:Pair)<-[:ON_PAIR]-(pm:PriceMovement) "
        "USING INDEX pm:PriceMovement(timestamp) "
        "WHERE pm.timestamp > t.timestamp "
        "AND pm.timestamp <= t.timestamp + duration({seconds: $whale_s}) " LINK(
            "t", "pm") "RETURN count(*) AS linked } "
                       "RETURN count(*) AS events",
    [GW_PRICE_MOVEMENT] =
        "UNWIND $rows AS row "
        "MERGE (pm:PriceMovement {id: row.id}) "
        "ON CREATE SET pm.timestamp = datetime({epochMillis: row.ts}), pm.symbol = row.symbol, "
        "pm.window_s = row.window_s, pm.change_percent = row.change, "
        "pm.change_percent_points = row.change_points, pm.price_from = row.price_from, "
        "pm.price_to = row.price_to, pm.threshold_percent = row.threshold " MERGE_PAIR(
            "p") "MERGE (pm)-[:ON_PAIR]->(p) "
                 "WITH pm, p "
                 "CALL { WITH pm, p "
                 "MATCH (p)-[:BASE_ASSET]->(:Asset)<-[:OF_ASSET]-(t:WhaleTransfer) "
                 "USING INDEX t:WhaleTransfer(timestamp) "
                 "WHERE t.timestamp < pm.timestamp "
                 "AND t.timestamp >= pm.timestamp - duration({seconds: $whale_s}) " LINK(
                     "t", "pm") "RETURN count(*) AS from_whales } "
                                "CALL { WITH pm, p "
                                "MATCH (c:CascadeEvent)-[:ON_PAIR]->(p) "
                                "USING INDEX c:CascadeEvent(timestamp) "
                                "WHERE c.timestamp > pm.timestamp "
                                "AND c.timestamp <= pm.timestamp + duration({seconds: "
                                "$movement_s}) " LINK("pm", "c") "RETURN count(*) AS to_cascades } "
                                                                 "RETURN count(*) AS events",
    [GW_CASCADE] =
        "UNWIND $rows AS row "
        "MERGE (c:CascadeEvent {id: row.id}) "
        "ON CREATE SET c.timestamp = datetime({epochMillis: row.ts}), "
        "c.end_timestamp = datetime({epochMillis: row.end_ts}), c.symbol = row.symbol, "
        "c.count = row.count, c.buy_count = row.buy_count, c.sell_count = row.sell_count, "
        "c.total_liquidation_value = row.value, c.severity = row.severity " MERGE_PAIR(
            "p") "MERGE (c)-[:ON_PAIR]->(p) "
                 "WITH c, p "
                 "CALL { WITH c, p "
                 "MATCH (pm:PriceMovement)-[:ON_PAIR]->(p) "
                 "USING INDEX pm:PriceMovement(timestamp) "
                 "WHERE pm.timestamp < c.timestamp "
                 "AND pm.timestamp >= c.timestamp - duration({seconds: $movement_s}) " LINK(
                     "pm", "c") "RETURN count(*) AS from_moves } "
                                "CALL { WITH c, p "
                                "MATCH (prev:CascadeEvent)-[:ON_PAIR]->(p) "
                                "USING INDEX prev:CascadeEvent(timestamp) "
                                "WHERE prev.timestamp < c.timestamp "
                                "AND prev.timestamp >= c.timestamp - duration({seconds: "
                                "$cascade_s}) " LINK(
                                    "prev", "c") "RETURN count(*) AS from_cascades } "
                                                 "CALL { WITH c, p "
                                                 "MATCH (next:CascadeEvent)-[:ON_PAIR]->(p) "
                                                 "USING INDEX next:CascadeEvent(timestamp) "
                                                 "WHERE next.timestamp > c.timestamp "
                                                 "AND next.timestamp <= c.timestamp + "
                                                 "duration({seconds: $cascade_s}) " LINK(
                                                     "c",
                                                     "next") "RETURN count(*) AS to_cascades } "
                                                             "RETURN count(*) AS events",
    [GW_FEED_EVENT] =
        "UNWIND $rows AS row "
        "MERGE (f:FeedEvent {id: row.id}) "
        "ON CREATE SET f.type = row.type, f.timestamp = datetime({epochMillis: row.ts}), "
        "f.last_timestamp = datetime({epochMillis: row.last_ts}), f.exchange = row.exchange, "
        "f.symbol = row.symbol, f.gap_ms = row.gap_ms " MERGE_PAIR(
            "p") "MERGE (f)-[:ON_PAIR]->(p) "
                 "MERGE (e:Exchange {name: row.exchange}) MERGE (f)-[:AT]->(e) "
                 "RETURN count(*) AS events",
};

const char *gw_statement(gw_kind k) {
    return k < GW_KIND_COUNT ? k_statements[k] : "";
}

const char *gw_kind_name(gw_kind k) {
    static const char *const names[GW_KIND_COUNT] = {"whale_transfer", "price_movement",
                                                     "liquidation_cascade", "feed_event"};
    return k < GW_KIND_COUNT ? names[k] : "?";
}

/* ---- batches ------------------------------------------------------------------------ */

void gw_batch_init(gw_batch *b) {
    memset(b, 0, sizeof(*b));
}

void gw_batch_reset(gw_batch *b) {
    for (size_t i = 0; i < b->total; i++)
        free(b->ev[i].row);
    b->total = 0;
}

void gw_batch_free(gw_batch *b) {
    gw_batch_reset(b);
    free(b->ev);
    gw_batch_init(b);
}

/* ---- reading one event -------------------------------------------------------------- */

typedef struct reader {
    json_t *obj;
    gw_reject *why;
    hm_buf *out;
    bool failed;
} reader;

/* The first failure of the record: "<field> <what>". */
static void fail(reader *r, const char *field, const char *what) {
    if (r->failed) return;
    r->failed = true;
    r->why->field = field;
    snprintf(r->why->detail, sizeof(r->why->detail), "%s %s", field, what);
}

static void key(reader *r, const char *name) {
    if (r->out->len > 0 && r->out->data[r->out->len - 1] != '{') hm_buf_putc(r->out, ',');
    hm_json_key(r->out, name);
}

/* A string field (optional: JSON null or absent writes null); copied as the row's `as`. */
static const char *str(reader *r, const char *field, const char *as, bool required) {
    json_t *v = json_object_get(r->obj, field);
    if (!v || json_is_null(v)) {
        if (required) fail(r, field, "is missing");
        key(r, as);
        hm_buf_puts(r->out, "null");
        return NULL;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        fail(r, field, "is not a non-empty string");
        return NULL;
    }
    key(r, as);
    hm_json_str(r->out, json_string_value(v), json_string_length(v));
    return json_string_value(v);
}

/* An integer field (ms timestamps, counts). */
static void integer(reader *r, const char *field, const char *as, bool required) {
    json_t *v = json_object_get(r->obj, field);
    if (!v || json_is_null(v)) {
        if (required) fail(r, field, "is missing");
        key(r, as);
        hm_buf_puts(r->out, "null");
        return;
    }
    if (!json_is_integer(v)) {
        fail(r, field, "is not an integer");
        return;
    }
    key(r, as);
    hm_buf_i64(r->out, (int64_t)json_integer_value(v));
}

/* A number field, scaled (change_percent: points to a fraction). */
static void number(reader *r, const char *field, const char *as, double scale, bool required) {
    json_t *v = json_object_get(r->obj, field);
    if (!v || json_is_null(v)) {
        if (required) fail(r, field, "is missing");
        key(r, as);
        hm_buf_puts(r->out, "null");
        return;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v))) {
        fail(r, field, "is not a number");
        return;
    }
    key(r, as);
    hm_json_double(r->out, json_number_value(v) * scale);
}

/* base and quote of "BASE/QUOTE" (null both when the symbol has another form). */
static void pair_assets(reader *r, const char *symbol) {
    const char *slash = symbol ? strchr(symbol, '/') : NULL;
    key(r, "base");
    if (!slash || slash == symbol || !slash[1] || strchr(slash + 1, '/')) {
        hm_buf_puts(r->out, "null");
        key(r, "quote");
        hm_buf_puts(r->out, "null");
        return;
    }
    hm_json_str(r->out, symbol, (size_t)(slash - symbol));
    key(r, "quote");
    hm_json_cstr(r->out, slash + 1);
}

static void read_common(reader *r, const char *ts_field) {
    str(r, "event_id", "id", true);
    integer(r, ts_field, "ts", true);
}

int gw_batch_add(gw_batch *b, const char *json, size_t len, gw_reject *why) {
    memset(why, 0, sizeof(*why));
    json_error_t jerr;
    json_t *obj = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj || !json_is_object(obj)) {
        why->field = "";
        snprintf(why->detail, sizeof(why->detail), "not a JSON object: %.100s",
                 obj ? "another JSON value" : jerr.text);
        json_decref(obj);
        return -EINVAL;
    }
    const char *type = json_string_value(json_object_get(obj, "type"));
    gw_kind kind;
    if (!type) {
        kind = GW_KIND_COUNT;
    } else if (strcmp(type, "whale_transfer") == 0) {
        kind = GW_WHALE_TRANSFER;
    } else if (strcmp(type, "price_movement") == 0) {
        kind = GW_PRICE_MOVEMENT;
    } else if (strcmp(type, "liquidation_cascade") == 0) {
        kind = GW_CASCADE;
    } else if (strcmp(type, "feed_silence") == 0 || strcmp(type, "feed_resumed") == 0) {
        kind = GW_FEED_EVENT;
    } else {
        kind = GW_KIND_COUNT;
    }
    if (kind == GW_KIND_COUNT) {
        why->field = "type";
        snprintf(why->detail, sizeof(why->detail), "type %.60s is not an event the graph holds",
                 type ? type : "(missing)");
        json_decref(obj);
        return -EINVAL;
    }
    hm_buf row = {0};
    hm_buf_putc(&row, '{');
    reader r = {.obj = obj, .why = why, .out = &row};
    switch (kind) {
        case GW_WHALE_TRANSFER:
            read_common(&r, "timestamp");
            str(&r, "asset", "asset", true);
            number(&r, "amount", "amount", 1.0, true);
            str(&r, "from", "from", false);
            str(&r, "to", "to", false);
            str(&r, "exchange", "exchange", false);
            str(&r, "tx_hash", "tx_hash", false);
            break;
        case GW_PRICE_MOVEMENT: {
            read_common(&r, "timestamp");
            pair_assets(&r, str(&r, "symbol", "symbol", true));
            integer(&r, "window_s", "window_s", true);
            /* The guide's queries compare change_percent with fractions (-0.02 for 2%). */
            number(&r, "change_percent", "change", 0.01, true);
            number(&r, "change_percent", "change_points", 1.0, true);
            number(&r, "price_from", "price_from", 1.0, false);
            number(&r, "price_to", "price_to", 1.0, false);
            number(&r, "threshold_percent", "threshold", 1.0, false);
            break;
        }
        case GW_CASCADE:
            read_common(&r, "timestamp");
            pair_assets(&r, str(&r, "symbol", "symbol", true));
            integer(&r, "end_timestamp", "end_ts", true);
            integer(&r, "count", "count", true);
            integer(&r, "buy_count", "buy_count", false);
            integer(&r, "sell_count", "sell_count", false);
            number(&r, "total_liquidation_value", "value", 1.0, true);
            str(&r, "severity", "severity", true);
            break;
        default: { /* feed events: event time is when it was seen (resumed: the tick) */
            bool resumed = strcmp(type, "feed_resumed") == 0;
            read_common(&r, resumed ? "timestamp" : "watermark");
            key(&r, "type");
            hm_json_cstr(&row, type);
            integer(&r, "last_timestamp", "last_ts", true);
            str(&r, "exchange", "exchange", true);
            pair_assets(&r, str(&r, "symbol", "symbol", true));
            integer(&r, resumed ? "gap_ms" : "silent_ms", "gap_ms", false);
            break;
        }
    }
    json_decref(obj);
    if (r.failed) {
        hm_buf_free(&row);
        return -EINVAL;
    }
    hm_buf_putc(&row, '}');
    if (b->total == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        gw_event *ev = realloc(b->ev, cap * sizeof(*ev));
        if (!ev) hm_panic("graph-writer: out of memory for a batch of %zu events", cap);
        b->ev = ev;
        b->cap = cap;
    }
    b->ev[b->total++] = (gw_event){.kind = kind, .row = row.data, .row_len = row.len};
    return 0;
}

void gw_batch_body_range(const gw_batch *b, size_t from, size_t to, const gw_windows *w,
                         hm_buf *out) {
    HM_BUF_PUT_LIT(out, "{\"statements\":[");
    bool first = true;
    for (int k = 0; k < GW_KIND_COUNT; k++) {
        bool open = false;
        for (size_t i = from; i < to; i++) {
            if (b->ev[i].kind != (gw_kind)k) continue;
            if (!open) {
                if (!first) hm_buf_putc(out, ',');
                first = false;
                open = true;
                HM_BUF_PUT_LIT(out, "{\"statement\":");
                hm_json_cstr(out, k_statements[k]);
                HM_BUF_PUT_LIT(out, ",\"parameters\":{\"rows\":[");
            } else {
                hm_buf_putc(out, ',');
            }
            hm_buf_append(out, b->ev[i].row, b->ev[i].row_len);
        }
        if (open)
            hm_buf_printf(out, "],\"whale_s\":%lld,\"movement_s\":%lld,\"cascade_s\":%lld}}",
                          (long long)w->whale_s, (long long)w->movement_s, (long long)w->cascade_s);
    }
    HM_BUF_PUT_LIT(out, "]}");
}

void gw_batch_body(const gw_batch *b, const gw_windows *w, hm_buf *out) {
    gw_batch_body_range(b, 0, b->total, w, out);
}

void gw_rejected_body(const gw_batch *b, size_t i, const char *error, hm_buf *out) {
    const gw_event *e = &b->ev[i];
    HM_BUF_PUT_LIT(out, "{\"statements\":[{\"statement\":");
    hm_json_cstr(out, "MERGE (r:RejectedEvent {id: $row.id}) "
                      "SET r.kind = $kind, r.error = $error, r.row = $text, "
                      "r.rejected_at = datetime()");
    HM_BUF_PUT_LIT(out, ",\"parameters\":{\"row\":");
    hm_buf_append(out, e->row, e->row_len);
    HM_BUF_PUT_LIT(out, ",\"kind\":");
    hm_json_cstr(out, gw_kind_name(e->kind));
    HM_BUF_PUT_LIT(out, ",\"error\":");
    hm_json_cstr(out, error);
    HM_BUF_PUT_LIT(out, ",\"text\":");
    hm_json_str(out, e->row, e->row_len);
    HM_BUF_PUT_LIT(out, "}}]}");
}
