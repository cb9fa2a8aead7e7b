/*
 * pipeline.c: the ingest-validator in Kafka mode: the engine behind the stage
 * framework's hooks (himari/stage.h, shape HM_STAGE_CHANGELOG).
 *
 *   raw_market_data[p] --stage--> iv_process: engine --> quality_scores (one per record)
 *                                       |            --> raw_market_data.dlq (unparseable)
 *                                       |            --> causal_events (feed events)
 *                                       '- dirty keys --> ingest-validator.changelog[p]
 *
 * What is the validator's own here: what a record becomes (iv_process), what its state
 * is and how it is written and read back (the changelog hooks), when idle keys expire
 * (the sweep), and its metrics. Transactions, offsets, restore, revoke, back-pressure
 * and the stop are the framework's. Must never block the loop or drop a record: every
 * input record gets its quality record in the same transaction as its offset.
 */
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "himari/log.h"
#include "pipeline.h"

#define MAX_EXCHANGE_CHILDREN 32
#define SWEEP_EVERY_MS        60000

typedef struct iv_kafka {
    hm_stage stage; /* first: the framework's part */
    iv_config *cfg;
    iv_engine *engine;
    hm_buf out;

    hm_metric_family *records_f, *issues_f, *quality_f, *events_f, *evictions_f;
    hm_gauge *state_keys;
    struct {
        char name[32];
        hm_histogram *h;
    } quality_by_exchange[MAX_EXCHANGE_CHILDREN];
    size_t n_quality;
    hm_histogram *quality_other;
    hm_counter *changelog_unreadable;
} iv_kafka;

static iv_kafka *of(hm_stage *st) {
    return (iv_kafka *)st;
}

static hm_histogram *quality_hist(iv_kafka *k, const char *exchange) {
    for (size_t i = 0; i < k->n_quality; i++)
        if (strcmp(k->quality_by_exchange[i].name, exchange) == 0)
            return k->quality_by_exchange[i].h;
    /* Only configured exchanges get their own series: bounded label values. */
    if (k->n_quality < MAX_EXCHANGE_CHILDREN &&
        hm_str_list_contains(&k->cfg->checks.valid_exchanges, exchange, strlen(exchange))) {
        snprintf(k->quality_by_exchange[k->n_quality].name, 32, "%s", exchange);
        k->quality_by_exchange[k->n_quality].h = hm_metrics_histogram_child(k->quality_f, exchange);
        return k->quality_by_exchange[k->n_quality++].h;
    }
    return k->quality_other;
}

/* ---- the hooks ------------------------------------------------------------- */

static void on_engine_event(void *ud, int32_t partition, const char *key, size_t key_len,
                            const char *json, size_t json_len) {
    iv_kafka *k = ud;
    hm_stage_send(&k->stage, k->cfg->events_topic, RD_KAFKA_PARTITION_UA, key, key_len, json,
                  json_len, NULL, 0);
}

static void iv_process(hm_stage *st, const hm_stage_record *rec) {
    iv_kafka *k = of(st);
    const rd_kafka_message_t *m = rec->msg;
    iv_input in = {
        .data = m->payload, .len = m->len, .ingest_ms = rec->ingest_ms, .partition = m->partition};
    iv_output out = {.json = &k->out};
    hm_buf_reset(&k->out);
    iv_engine_process(k->engine, &in, hm_now_ms(), &out);
    hm_stage_send(st, k->cfg->output_topic, RD_KAFKA_PARTITION_UA, out.key, out.key_len,
                  k->out.data, k->out.len, NULL, HM_STAGE_SEND_OUTPUT);
    if (out.parse_error) {
        /* The bytes are kept whole, with where they came from and why. */
        hm_log_limited(HM_LOG_WARN, "record_unparseable", 60, HM_LS("topic", k->cfg->input_topic),
                       HM_LI("partition", m->partition), HM_LI("offset", m->offset),
                       HM_LS("error", out.error));
        hm_stage_send_dlq(st, m, out.error);
    }
    if (out.evictions) {
        /* The partition's state is full (checks.max_keys): say what made room for what. */
        char sym[64];
        snprintf(sym, sizeof(sym), "%.*s", (int)out.key_len, out.key ? out.key : "");
        hm_log_limited(HM_LOG_WARN, "state_key_evicted", 10, HM_LI("partition", m->partition),
                       HM_LS("exchange", out.exchange), HM_LS("symbol", sym),
                       HM_LS("evicted", out.evicted_key),
                       HM_LI("max_keys", k->cfg->checks.max_keys),
                       HM_LI("evictions_total", iv_engine_stats(k->engine)->evictions));
    }
    hm_histogram_observe(quality_hist(k, out.exchange), out.score);
}

static void send_changelog(void *ud, int32_t partition, const char *key, size_t key_len,
                           const char *val, size_t val_len) {
    hm_stage_send_changelog(ud, partition, key, key_len, val, val_len);
}

static void iv_flush_state(hm_stage *st) {
    iv_engine_flush_dirty(of(st)->engine, send_changelog, st);
}

static void iv_restore(hm_stage *st, const rd_kafka_message_t *m) {
    iv_kafka *k = of(st);
    hm_err err;
    if (iv_engine_restore(k->engine, m->partition, m->key, m->key_len, m->payload, m->len, &err) !=
        0) {
        hm_counter_inc(k->changelog_unreadable);
        hm_log_limited(HM_LOG_WARN, "changelog_record_unreadable", 60,
                       HM_LI("partition", m->partition), HM_LI("offset", m->offset),
                       HM_LS("error", err.msg));
    }
}

static void iv_restored(hm_stage *st) {
    /* The restore read changelog records back; they are not changes. */
    iv_engine_clear_dirty(of(st)->engine);
    hm_log_info("engine_state_restored", HM_LI("keys", iv_engine_state_keys(of(st)->engine)));
}

static void iv_drop_state(hm_stage *st, const int32_t *partitions, size_t n) {
    iv_engine *e = of(st)->engine;
    iv_engine_clear_dirty(e); /* the changelog holds what was committed */
    for (size_t i = 0; i < n; i++)
        iv_engine_drop_partition(e, partitions[i]);
}

/* Forget keys idle past the TTL; their tombstones go out with the transaction. Below
 * checks.max_keys the output does not depend on when this runs (an expired key is reset
 * on its next tick anyway), so a timer is fine; at the bound, a sweep makes room a new
 * key would otherwise have taken by eviction (with NO_STATE on its tick). */
static void iv_sweep(hm_stage *st, uint64_t now_ms) {
    size_t dropped = iv_engine_sweep(of(st)->engine);
    if (dropped) hm_log_info("state_swept", HM_LI("keys", dropped));
}

static void collect(hm_metrics *m, void *ud) {
    iv_kafka *k = ud;
    const iv_stats *st = iv_engine_stats(k->engine);
    hm_metrics_counter_child(k->records_f, "ok")->value = (double)st->ok;
    hm_metrics_counter_child(k->records_f, "flagged")->value = (double)st->flagged;
    hm_metrics_counter_child(k->records_f, "rejected")->value = (double)st->rejected;
    for (int c = 0; c < HM_QCODE_COUNT; c++)
        if (st->issues[c])
            hm_metrics_counter_child(k->issues_f, hm_qcode_name((hm_qcode)c))->value =
                (double)st->issues[c];
    hm_metrics_counter_child(k->events_f)->value = (double)st->events;
    for (uint32_t i = 0; i < st->n_evictions_by; i++)
        hm_metrics_counter_child(k->evictions_f, st->evictions_by[i].exchange)->value =
            (double)st->evictions_by[i].n;
    hm_gauge_set(k->state_keys, (double)iv_engine_state_keys(k->engine));
}

static void iv_destroy(hm_stage *st) {
    iv_kafka *k = of(st);
    if (st->svc->metrics) hm_metrics_remove_collect(st->svc->metrics, collect, k);
    iv_engine_free(k->engine);
    hm_buf_free(&k->out);
}

static const hm_stage_ops k_ops = {
    .process = iv_process,
    .flush_state = iv_flush_state,
    .restore = iv_restore,
    .restored = iv_restored,
    .drop_state = iv_drop_state,
    .sweep = iv_sweep,
    .destroy = iv_destroy,
};

/* ---- wiring ------------------------------------------------------------------ */

static void register_metrics(iv_kafka *k, hm_metrics *m) {
    k->records_f = hm_metrics_counter(m, "himari_validator_records_total",
                                      "Records judged, by result: ok (score 1), flagged "
                                      "(0 < score < 1), rejected (score 0).",
                                      "result");
    k->issues_f = hm_metrics_counter(m, "himari_validator_issues_total",
                                     "Records carrying each issue code.", "code");
    k->events_f = hm_metrics_counter(m, "himari_validator_events_total",
                                     "Feed silence and resumption events emitted.", NULL);
    k->evictions_f = hm_metrics_counter(
        m, "himari_validator_state_evictions_total",
        "Keys evicted because their partition held checks.max_keys, by the evicted key's "
        "exchange (the record that needed the room carries NO_STATE).",
        "exchange");
    static const double score_buckets[] = {0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0};
    k->quality_f = hm_metrics_histogram(m, "himari_validator_quality_score",
                                        "Quality score of judged records, by exchange.", "exchange",
                                        score_buckets, HM_ARRAY_LEN(score_buckets));
    k->quality_other = hm_metrics_histogram_child(k->quality_f, "other");
    k->state_keys = hm_metrics_gauge_child(hm_metrics_gauge(
        m, "himari_validator_state_keys", "(exchange, symbol) keys with state.", NULL));
    k->changelog_unreadable = hm_metrics_counter_child(hm_metrics_counter(
        m, "himari_validator_changelog_unreadable_total",
        "Changelog records that could not be read back at a restore (their keys start over).",
        NULL));
    hm_metrics_on_collect(m, collect, k);
}

int iv_pipeline_start(hm_service *svc, iv_config *cfg, hm_stage **out, hm_err *err) {
    hm_stage_opts o = {.shape = HM_STAGE_CHANGELOG,
                       .input_topic = cfg->input_topic,
                       .group_id = cfg->group_id,
                       .changelog_topic = cfg->changelog_topic,
                       .dlq_topic = cfg->dlq_topic,
                       .metrics_prefix = "himari_validator",
                       .delivery = strcmp(cfg->delivery, "at_least_once") == 0
                                       ? HM_STAGE_AT_LEAST_ONCE
                                       : HM_STAGE_EXACTLY_ONCE,
                       .offsets = strcmp(cfg->offsets, "group") == 0 ? HM_STAGE_OFFSETS_GROUP
                                                                     : HM_STAGE_OFFSETS_CHANGELOG,
                       .commit_interval_ms = cfg->commit_interval_ms,
                       .commit_max_records = cfg->commit_max_records,
                       .sweep_interval_ms = SWEEP_EVERY_MS};
    hm_stage *st = hm_stage_new(svc, &o, &k_ops, sizeof(iv_kafka), err);
    *out = st;
    if (!st) return -EINVAL;
    iv_kafka *k = of(st);
    k->cfg = cfg;
    k->engine = iv_engine_new(&cfg->checks, cfg->event_clock);
    iv_engine_set_event_sink(k->engine, on_engine_event, k);
    register_metrics(k, svc->metrics);
    int rc = hm_stage_start(st, err);
    if (rc == 0)
        hm_log_info("pipeline_started", HM_LS("input", cfg->input_topic),
                    HM_LS("output", cfg->output_topic), HM_LS("group", cfg->group_id),
                    HM_LS("freshness_clock", cfg->event_clock ? "event" : "ingest"),
                    HM_LS("delivery", cfg->delivery), HM_LS("offsets", cfg->offsets));
    return rc;
}

void iv_pipeline_reconfigure(void *ud) {
    iv_kafka *k = ud;
    iv_engine_set_checks(k->engine, &k->cfg->checks);
    hm_stage_set_commit_policy(&k->stage, k->cfg->commit_interval_ms, k->cfg->commit_max_records);
}
