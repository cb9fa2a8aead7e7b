// uses: services/graph-writer
/*
 * test_graph_events.c: causal_events records into the graph-writer's Neo4j statements
 * (services/graph-writer/events.c): which events are taken, what each row holds (ids,
 * ms timestamps, change_percent as the guide's fraction, a pair's assets), why a record
 * is refused, the request body's shape, the cypher/ files' statements, and how Neo4j's
 * answers are classified (services/graph-writer/neo4j.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "events.h"
#include "neo4j.h"
#include "schema.h"

static const char k_whale[] =
    "{\"type\":\"whale_transfer\",\"asset\":\"BTC\",\"timestamp\":1796284410017,\"amount\":850,"
    "\"from\":\"0x5c3a\",\"to\":\"0x28c6\",\"exchange\":\"binance\",\"symbol\":null,"
    "\"tx_hash\":\"0xabc\",\"event_id\":\"whale_transfer:0xabc\"}";
static const char k_move[] =
    "{\"type\":\"price_movement\",\"symbol\":\"BTC/USDT\",\"timestamp\":1796284900000,"
    "\"window_s\":3600,\"change_percent\":-2.5,\"price_from\":36978.18,\"price_to\":36234.87,"
    "\"threshold_percent\":2,\"event_id\":\"price_movement:BTC/USDT:3600:1796284900000\"}";
static const char k_cascade[] =
    "{\"type\":\"liquidation_cascade\",\"symbol\":\"BTC/USDT\",\"timestamp\":1796285129794,"
    "\"end_timestamp\":1796285130419,\"count\":25,\"buy_count\":0,\"sell_count\":25,"
    "\"total_liquidation_value\":8982446,\"severity\":\"high\","
    "\"event_id\":\"liquidation_cascade:BTC/USDT:1796285129794:1796285130419\"}";
static const char k_silence[] =
    "{\"type\":\"feed_silence\",\"exchange\":\"kraken\",\"symbol\":\"BTC/USDT\","
    "\"last_timestamp\":1000,\"watermark\":70000,\"silent_ms\":69000,"
    "\"event_id\":\"feed_silence:kraken:BTC/USDT:1000\"}";

static const gw_windows k_windows = {.whale_s = 3600, .movement_s = 1800, .cascade_s = 3600};

/* The batch's body parsed back, and statement i's rows. */
static json_t *body_of(const gw_batch *b) {
    hm_buf out = {0};
    gw_batch_body(b, &k_windows, &out);
    json_error_t err;
    json_t *j = json_loadb(out.data, out.len, 0, &err);
    if (!j) fail_msg("body is not JSON: %s: %s", err.text, out.data);
    hm_buf_free(&out);
    return j;
}

static json_t *rows_of(json_t *body, size_t i) {
    json_t *st = json_array_get(json_object_get(body, "statements"), i);
    assert_non_null(st);
    return json_object_get(json_object_get(st, "parameters"), "rows");
}

static void each_kind_in_its_statement(void **state) {
    (void)state;
    gw_batch b;
    gw_batch_init(&b);
    gw_reject why;
    /* Out of order on purpose: the body orders statements by kind. */
    assert_int_equal(gw_batch_add(&b, k_cascade, strlen(k_cascade), &why), 0);
    assert_int_equal(gw_batch_add(&b, k_move, strlen(k_move), &why), 0);
    assert_int_equal(gw_batch_add(&b, k_whale, strlen(k_whale), &why), 0);
    assert_int_equal(gw_batch_add(&b, k_silence, strlen(k_silence), &why), 0);
    assert_int_equal(b.total, 4);
    json_t *body = body_of(&b);
    json_t *sts = json_object_get(body, "statements");
    assert_int_equal(json_array_size(sts), 4);
    for (size_t i = 0; i < 4; i++) {
        json_t *st = json_array_get(sts, i);
        assert_string_equal(json_string_value(json_object_get(st, "statement")),
                            gw_statement((gw_kind)i));
        json_t *p = json_object_get(st, "parameters");
        assert_int_equal(json_integer_value(json_object_get(p, "whale_s")), 3600);
        assert_int_equal(json_integer_value(json_object_get(p, "movement_s")), 1800);
        assert_int_equal(json_array_size(json_object_get(p, "rows")), 1);
    }
    json_t *w = json_array_get(rows_of(body, GW_WHALE_TRANSFER), 0);
    assert_string_equal(json_string_value(json_object_get(w, "id")), "whale_transfer:0xabc");
    assert_int_equal(json_integer_value(json_object_get(w, "ts")), 1796284410017);
    assert_true(json_real_value(json_object_get(w, "amount")) == 850.0 ||
                json_integer_value(json_object_get(w, "amount")) == 850);
    assert_string_equal(json_string_value(json_object_get(w, "from")), "0x5c3a");
    assert_string_equal(json_string_value(json_object_get(w, "exchange")), "binance");
    json_t *m = json_array_get(rows_of(body, GW_PRICE_MOVEMENT), 0);
    assert_true(json_number_value(json_object_get(m, "change")) == -0.025);
    assert_true(json_number_value(json_object_get(m, "change_points")) == -2.5);
    assert_string_equal(json_string_value(json_object_get(m, "base")), "BTC");
    assert_string_equal(json_string_value(json_object_get(m, "quote")), "USDT");
    json_t *c = json_array_get(rows_of(body, GW_CASCADE), 0);
    assert_int_equal(json_integer_value(json_object_get(c, "end_ts")), 1796285130419);
    assert_string_equal(json_string_value(json_object_get(c, "severity")), "high");
    json_t *f = json_array_get(rows_of(body, GW_FEED_EVENT), 0);
    assert_int_equal(json_integer_value(json_object_get(f, "ts")), 70000); /* the watermark */
    assert_string_equal(json_string_value(json_object_get(f, "type")), "feed_silence");
    assert_int_equal(json_integer_value(json_object_get(f, "gap_ms")), 69000);
    json_decref(body);
    gw_batch_free(&b);
}

static void only_present_kinds_and_reset(void **state) {
    (void)state;
    gw_batch b;
    gw_batch_init(&b);
    gw_reject why;
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_batch_add(&b, k_move, strlen(k_move), &why), 0);
    json_t *body = body_of(&b);
    assert_int_equal(json_array_size(json_object_get(body, "statements")), 1);
    assert_int_equal(json_array_size(rows_of(body, 0)), 3);
    json_decref(body);
    gw_batch_reset(&b);
    assert_int_equal(b.total, 0);
    body = body_of(&b);
    assert_int_equal(json_array_size(json_object_get(body, "statements")), 0);
    json_decref(body);
    gw_batch_free(&b);
}

/* Parts of a batch (sent again one by one after a refusal) and the rejected-event keeper. */
static void ranges_and_rejected(void **state) {
    (void)state;
    gw_batch b;
    gw_batch_init(&b);
    gw_reject why;
    assert_int_equal(gw_batch_add(&b, k_move, strlen(k_move), &why), 0);
    assert_int_equal(gw_batch_add(&b, k_whale, strlen(k_whale), &why), 0);
    assert_int_equal(gw_batch_add(&b, k_cascade, strlen(k_cascade), &why), 0);
    hm_buf out = {0};
    gw_batch_body_range(&b, 1, 2, &k_windows, &out);
    json_t *j = json_loadb(out.data, out.len, 0, NULL);
    assert_non_null(j);
    json_t *sts = json_object_get(j, "statements");
    assert_int_equal(json_array_size(sts), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(sts, 0), "statement")),
                        gw_statement(GW_WHALE_TRANSFER));
    json_decref(j);
    hm_buf_reset(&out);
    gw_rejected_body(&b, 2, "Neo.ClientError.Statement.TypeError: \"x\"", &out);
    j = json_loadb(out.data, out.len, 0, NULL);
    assert_non_null(j);
    json_t *p = json_object_get(json_array_get(json_object_get(j, "statements"), 0), "parameters");
    assert_string_equal(json_string_value(json_object_get(p, "kind")), "liquidation_cascade");
    assert_string_equal(json_string_value(json_object_get(p, "error")),
                        "Neo.ClientError.Statement.TypeError: \"x\"");
    assert_string_equal(json_string_value(json_object_get(json_object_get(p, "row"), "id")),
                        "liquidation_cascade:BTC/USDT:1796285129794:1796285130419");
    assert_non_null(strstr(json_string_value(json_object_get(p, "text")), "\"severity\":\"high\""));
    json_decref(j);
    hm_buf_free(&out);
    gw_batch_free(&b);
}

static void pair_forms(void **state) {
    (void)state;
    const char *syms[] = {"SOLUSDT", "/USDT", "BTC/", "A/B/C"};
    for (size_t i = 0; i < 4; i++) {
        char rec[512];
        snprintf(rec, sizeof(rec),
                 "{\"type\":\"price_movement\",\"symbol\":\"%s\",\"timestamp\":1,\"window_s\":300,"
                 "\"change_percent\":1.5,\"event_id\":\"x%zu\"}",
                 syms[i], i);
        gw_batch b;
        gw_batch_init(&b);
        gw_reject why;
        assert_int_equal(gw_batch_add(&b, rec, strlen(rec), &why), 0);
        json_t *body = body_of(&b);
        json_t *row = json_array_get(rows_of(body, 0), 0);
        assert_true(json_is_null(json_object_get(row, "base")));
        assert_true(json_is_null(json_object_get(row, "quote")));
        assert_true(json_is_null(json_object_get(row, "price_from"))); /* optional, absent */
        json_decref(body);
        gw_batch_free(&b);
    }
}

static void refused(const char *rec, const char *field, const char *detail_part) {
    gw_batch b;
    gw_batch_init(&b);
    gw_reject why;
    assert_int_equal(gw_batch_add(&b, rec, strlen(rec), &why), -EINVAL);
    assert_int_equal(b.total, 0);
    assert_string_equal(why.field, field);
    if (!strstr(why.detail, detail_part)) fail_msg("'%s' lacks '%s'", why.detail, detail_part);
    gw_batch_free(&b);
}

static void refusals_name_the_field(void **state) {
    (void)state;
    refused("not json", "", "not a JSON object");
    refused("[1,2]", "", "another JSON value");
    refused("{\"type\":\"tick\",\"event_id\":\"a\"}", "type", "type tick is not an event");
    refused("{\"event_id\":\"a\"}", "type", "(missing)");
    refused("{\"type\":\"whale_transfer\",\"timestamp\":1,\"asset\":\"BTC\",\"amount\":1}",
            "event_id", "event_id is missing");
    refused("{\"type\":\"whale_transfer\",\"event_id\":\"a\",\"timestamp\":\"now\","
            "\"asset\":\"BTC\",\"amount\":1}",
            "timestamp", "timestamp is not an integer");
    refused("{\"type\":\"whale_transfer\",\"event_id\":\"a\",\"timestamp\":1,\"asset\":\"\","
            "\"amount\":1}",
            "asset", "asset is not a non-empty string");
    refused("{\"type\":\"price_movement\",\"event_id\":\"a\",\"timestamp\":1,\"symbol\":\"B/U\","
            "\"window_s\":300,\"change_percent\":\"-3\"}",
            "change_percent", "change_percent is not a number");
    refused("{\"type\":\"liquidation_cascade\",\"event_id\":\"a\",\"timestamp\":1,"
            "\"symbol\":\"B/U\",\"end_timestamp\":2,\"count\":5,\"total_liquidation_value\":1}",
            "severity", "severity is missing");
    refused("{\"type\":\"whale_transfer\",\"type\":\"x\"}", "", "not a JSON object");
}

static void texts_are_parameters_not_cypher(void **state) {
    (void)state;
    /* A hostile symbol stays a JSON string value in the parameters; statements are fixed. */
    const char rec[] =
        "{\"type\":\"price_movement\",\"symbol\":\"X/Y'}) DETACH DELETE n\","
        "\"timestamp\":1,\"window_s\":300,\"change_percent\":1,\"event_id\":\"e\\\"1\"}";
    gw_batch b;
    gw_batch_init(&b);
    gw_reject why;
    assert_int_equal(gw_batch_add(&b, rec, strlen(rec), &why), 0);
    json_t *body = body_of(&b);
    json_t *st = json_array_get(json_object_get(body, "statements"), 0);
    assert_string_equal(json_string_value(json_object_get(st, "statement")),
                        gw_statement(GW_PRICE_MOVEMENT));
    json_t *row = json_array_get(rows_of(body, 0), 0);
    assert_string_equal(json_string_value(json_object_get(row, "id")), "e\"1");
    assert_string_equal(json_string_value(json_object_get(row, "quote")), "Y'}) DETACH DELETE n");
    json_decref(body);
    gw_batch_free(&b);
}

/* The embedded cypher/ files: one transaction each, every statement without its ';'. */
static void schema_files_split_into_statements(void **state) {
    (void)state;
    assert_int_equal(gw_cypher_file_count, 2);
    size_t want[] = {11, 11};
    for (size_t i = 0; i < gw_cypher_file_count; i++) {
        hm_buf out = {0};
        size_t n = gw_schema_body(gw_cypher_files[i].text, gw_cypher_files[i].len, &out);
        assert_int_equal(n, want[i]);
        json_error_t err;
        json_t *j = json_loadb(out.data, out.len, 0, &err);
        assert_non_null(j);
        json_t *sts = json_object_get(j, "statements");
        assert_int_equal(json_array_size(sts), n);
        for (size_t k = 0; k < n; k++) {
            const char *st =
                json_string_value(json_object_get(json_array_get(sts, k), "statement"));
            assert_true(strlen(st) > 10);
            assert_null(strstr(st, "//"));
            assert_true(st[strlen(st) - 1] != ';');
            assert_true(strncmp(st, "CREATE ", 7) == 0 || strncmp(st, "MERGE ", 6) == 0 ||
                        strncmp(st, "MATCH ", 6) == 0);
        }
        json_decref(j);
        hm_buf_free(&out);
    }
    hm_buf out = {0};
    const char *text = "// only\n\nRETURN 1\n";
    assert_int_equal(gw_schema_body(text, strlen(text), &out), 1); /* no final ';' */
    assert_string_equal(out.data, "{\"statements\":[{\"statement\":\"RETURN 1\"}]}");
    hm_buf_free(&out);
}

static gw_neo4j_outcome outcome_of(int err, long status, const char *body, gw_neo4j_result *r) {
    gw_neo4j_classify(err, "Operation timed out after 300 ms", status, body, strlen(body), r);
    return r->outcome;
}

/* Neo4j's answers: 200 with errors is a failure; what may be sent again and what not. */
static void neo4j_answers_classified(void **state) {
    (void)state;
    gw_neo4j_result r;
    assert_int_equal(outcome_of(0, 200, "{\"results\":[],\"errors\":[]}", &r), GW_NEO4J_OK);
    assert_string_equal(r.message, "");
    assert_int_equal(outcome_of(-ETIMEDOUT, 0, "", &r), GW_NEO4J_TRANSIENT);
    assert_non_null(strstr(r.message, "timed out"));
    assert_int_equal(
        outcome_of(0, 200,
                   "{\"results\":[],\"errors\":[{\"code\":"
                   "\"Neo.TransientError.Transaction.DeadlockDetected\",\"message\":\"lock\"}]}",
                   &r),
        GW_NEO4J_TRANSIENT);
    assert_string_equal(r.code, "Neo.TransientError.Transaction.DeadlockDetected");
    assert_int_equal(
        outcome_of(
            0, 200,
            "{\"results\":[],\"errors\":[{\"code\":\"Neo.ClientError.Statement.SyntaxError\","
            "\"message\":\"Invalid input\"}]}",
            &r),
        GW_NEO4J_REFUSED);
    assert_string_equal(r.message, "Neo.ClientError.Statement.SyntaxError: Invalid input");
    assert_int_equal(outcome_of(0, 401,
                                "{\"errors\":[{\"code\":\"Neo.ClientError.Security.Unauthorized\","
                                "\"message\":\"Invalid username or password.\"}]}",
                                &r),
                     GW_NEO4J_TRANSIENT);
    assert_int_equal(outcome_of(0, 503, "", &r), GW_NEO4J_TRANSIENT);
    assert_non_null(strstr(r.message, "HTTP 503"));
    assert_int_equal(outcome_of(0, 400, "<html>bad</html>", &r), GW_NEO4J_REFUSED);
    assert_int_equal(outcome_of(0, 200, "<html>proxy</html>", &r), GW_NEO4J_TRANSIENT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_kind_in_its_statement),
        cmocka_unit_test(only_present_kinds_and_reset),
        cmocka_unit_test(ranges_and_rejected),
        cmocka_unit_test(pair_forms),
        cmocka_unit_test(refusals_name_the_field),
        cmocka_unit_test(texts_are_parameters_not_cypher),
        cmocka_unit_test(schema_files_split_into_statements),
        cmocka_unit_test(neo4j_answers_classified),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
