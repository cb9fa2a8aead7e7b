/*
 * pipeline.c: the feature-engine in Kafka mode: the engine behind the stage framework's
 * hooks (himari/stage.h, shape HM_STAGE_REBUILD).
 *
 *   quality_scores[p] --stage--> fe_process: decode, engine --> features_computed
 *                                        |                  --> causal_events
 *                                        '- not a quality record --> quality_scores.dlq
 *
 * The state is the engine's windows; it is never written anywhere. A new owner of a
 * partition re-reads it from the committed offset minus the longest window (1 h for the
 * 1 h return, plus the lateness bound): those records rebuild the windows with their
 * sends suppressed, because their outputs were committed before. Must never block the
 * loop or drop a record.
 */
#include <string.h>

#include "engine.h"
#include "himari/log.h"
#include "feature_service.h"
#include "pipeline.h"
#include "redis_view.h"

/* The longest look back of any feature or rule: the 1 h return, a little margin. */
#define REBUILD_WINDOW_MS (3600000 + 60000)

typedef struct fe_kafka {
    hm_stage stage; /* first: the framework's part */
    fe_config *cfg;
    fe_engine *engine;
    fe_redis_view *view;         /* the latest view in Redis; NULL once closing */
    fe_feature_service *service; /* gRPC FeatureService */
    uv_check_t turn;             /* after each loop turn: hand the changed symbols over */
    bool turn_open;
    bool rebuilding; /* the record being processed is before the committed offset */
    hm_metric_family *records_f;
    hm_counter *emitted, *events, *evicted, *bad_input;
    hm_gauge *symbols;
    hm_gauge *last_emit; /* when features were last sent (not while rebuilding state) */
} fe_kafka;

static fe_kafka *of(hm_stage *st) {
    return (fe_kafka *)st;
}

static void send_features(void *ud, int32_t partition, const char *key, size_t key_len,
                          int64_t interval_end_ms, const char *json, size_t len) {
    HM_UNUSED(partition);
    fe_kafka *k = ud;
    hm_stage_send(&k->stage, k->cfg->output_topic, RD_KAFKA_PARTITION_UA, key, key_len, json, len,
                  NULL, HM_STAGE_SEND_OUTPUT);
    if (k->view && !k->rebuilding) {
        fe_redis_view_history(k->view, key, key_len, interval_end_ms, json, len);
    }
    if (!k->rebuilding) hm_gauge_set(k->last_emit, (double)hm_now_ms() / 1000.0);
}

static void send_event(void *ud, int32_t partition, const char *key, size_t key_len,
                       const char *json, size_t len) {
    HM_UNUSED(partition);
    fe_kafka *k = ud;
    hm_stage_send(&k->stage, k->cfg->events_topic, RD_KAFKA_PARTITION_UA, key, key_len, json, len,
                  NULL, 0);
}

static void fe_process(hm_stage *st, const hm_stage_record *rec) {
    fe_kafka *k = of(st);
    const rd_kafka_message_t *m = rec->msg;
    hm_quality q;
    hm_decode_err err = {0};
    if (!m->payload || hm_quality_decode(m->payload, m->len, &q, &err) != 0) {
        char why[200];
        snprintf(why, sizeof(why), "not a quality record: %s", m->payload ? err.msg : "empty");
        hm_log_limited(HM_LOG_WARN, "bad_input_record", 10, HM_LI("partition", m->partition),
                       HM_LI("offset", m->offset), HM_LS("error", why));
        if (!rec->rebuilding) {
            hm_counter_inc(k->bad_input);
        }
        hm_stage_send_dlq(st, m, why);
        return;
    }
    k->rebuilding = rec->rebuilding;
    fe_engine_process(k->engine, m->partition, &q);
}

static void discard_changed(void *ud, const char *symbol) {
    HM_UNUSED(ud);
    HM_UNUSED(symbol);
}

static void hand_over(void *ud, const char *symbol) {
    fe_kafka *k = ud;
    if (k->view) fe_redis_view_changed(k->view, symbol);
    fe_feature_service_changed(k->service, symbol);
}

/* After each loop turn's I/O: the symbols its records changed go to Redis and to the
 * streams, so a tick is visible one turn after it is read. Records re-read by a rebuild
 * change nothing visible (they rebuild what was shown before the restart). */
static void on_turn(uv_check_t *h) {
    fe_kafka *k = h->data;
    if (k->rebuilding) {
        fe_engine_take_changed(k->engine, discard_changed, NULL);
        return;
    }
    fe_engine_take_changed(k->engine, hand_over, k);
    if (k->view) fe_redis_view_turn_end(k->view);
}

static void fe_drop_state(hm_stage *st, const int32_t *partitions, size_t n) {
    for (size_t i = 0; i < n; i++) {
        fe_engine_drop_partition(of(st)->engine, partitions[i]);
    }
}

static void collect(hm_metrics *m, void *ud) {
    HM_UNUSED(m);
    fe_kafka *k = ud;
    const fe_stats *s = fe_engine_stats(k->engine);
    hm_metrics_counter_child(k->records_f, "applied")->value =
        (double)(s->applied - s->below_floor);
    hm_metrics_counter_child(k->records_f, "below_floor")->value = (double)s->below_floor;
    hm_metrics_counter_child(k->records_f, "late")->value = (double)s->late;
    hm_metrics_counter_child(k->records_f, "unusable")->value = (double)s->unusable;
    hm_metrics_counter_child(k->records_f, "untrusted")->value = (double)s->untrusted;
    hm_metrics_counter_child(k->records_f, "liquidation")->value = (double)s->liquidations;
    hm_metrics_counter_child(k->records_f, "transfer")->value = (double)s->transfers;
    hm_metrics_counter_child(k->records_f, "exchanges_full")->value = (double)s->exchanges_full;
    k->emitted->value = (double)s->emitted;
    k->events->value = (double)s->events;
    k->evicted->value = (double)s->evicted;
    hm_gauge_set(k->symbols, (double)fe_engine_symbols(k->engine));
}

static void fe_closing(hm_stage *st) {
    fe_kafka *k = of(st);
    if (k->turn_open) {
        uv_close((uv_handle_t *)&k->turn, NULL);
        k->turn_open = false;
    }
    if (k->view) {
        fe_redis_view_close(k->view, NULL, NULL);
        k->view = NULL;
    }
}

static void fe_destroy(hm_stage *st) {
    fe_kafka *k = of(st);
    if (st->svc->metrics) hm_metrics_remove_collect(st->svc->metrics, collect, k);
    fe_feature_service_free(k->service);
    fe_engine_free(k->engine);
}

static const hm_stage_ops k_ops = {
    .process = fe_process,
    .drop_state = fe_drop_state,
    .closing = fe_closing,
    .destroy = fe_destroy,
};

static void register_metrics(fe_kafka *k, hm_metrics *m) {
    k->records_f = hm_metrics_counter(
        m, "himari_features_records_total",
        "Quality records by what they did: applied (price features), below_floor (quality "
        "features only), late, unusable, untrusted (a code holding the validator's sequence "
        "state), liquidation, transfer, exchanges_full. Rebuilt records count again after a "
        "restart.",
        "result");
    k->emitted = hm_metrics_counter_child(hm_metrics_counter(
        m, "himari_features_emitted_total", "features_computed records emitted.", NULL));
    k->last_emit = hm_metrics_gauge_child(hm_metrics_gauge(
        m, "himari_features_last_emit_timestamp_seconds",
        "Unix time features_computed records were last emitted (0: none yet); FeatureStale "
        "fires when it falls 10 s behind.",
        NULL));
    k->events = hm_metrics_counter_child(
        hm_metrics_counter(m, "himari_features_events_total", "Causal events emitted.", NULL));
    k->evicted = hm_metrics_counter_child(hm_metrics_counter(
        m, "himari_features_symbols_evicted_total",
        "Symbols dropped at features.max_symbols (the one updated least recently).", NULL));
    k->bad_input = hm_metrics_counter_child(
        hm_metrics_counter(m, "himari_features_bad_input_total",
                           "Input records that were not quality records (sent to the DLQ).", NULL));
    k->symbols = hm_metrics_gauge_child(
        hm_metrics_gauge(m, "himari_features_symbols", "Symbols with state.", NULL));
    hm_metrics_on_collect(m, collect, k);
}

int fe_pipeline_start(hm_service *svc, fe_config *cfg, hm_stage **out, hm_err *err) {
    hm_stage_opts o = {.shape = HM_STAGE_REBUILD,
                       .input_topic = cfg->input_topic,
                       .group_id = cfg->group_id,
                       .dlq_topic = cfg->dlq_topic,
                       .metrics_prefix = "himari_features",
                       .delivery = strcmp(cfg->delivery, "at_least_once") == 0
                                       ? HM_STAGE_AT_LEAST_ONCE
                                       : HM_STAGE_EXACTLY_ONCE,
                       .commit_interval_ms = cfg->commit_interval_ms,
                       .commit_max_records = cfg->commit_max_records,
                       .rebuild_window_ms = REBUILD_WINDOW_MS + cfg->lateness_ms};
    hm_stage *st = hm_stage_new(svc, &o, &k_ops, sizeof(fe_kafka), err);
    *out = st;
    if (!st) return -EINVAL;
    fe_kafka *k = of(st);
    k->cfg = cfg;
    fe_sinks sinks = {.features = send_features, .event = send_event, .ud = k};
    k->engine = fe_engine_new(&cfg->params, &sinks);
    if (!k->engine) return hm_err_set(err, -ENOMEM, "feature-engine: out of memory");
    register_metrics(k, svc->metrics);
    k->view = fe_redis_view_new(svc->loop, &cfg->redis, k->engine, cfg->redis_ttl_s,
                                cfg->history_max, svc->metrics);
    k->service = fe_feature_service_new(svc, k->engine);
    if (!k->view || !k->service) return hm_err_set(err, -ENOMEM, "feature-engine: out of memory");
    uv_check_init(svc->loop, &k->turn);
    k->turn.data = k;
    uv_check_start(&k->turn, on_turn);
    k->turn_open = true;
    int rc = hm_stage_start(st, err);
    if (rc != 0) fe_closing(st); /* the loop must run out: close what was opened here */
    if (rc == 0)
        hm_log_info("pipeline_started", HM_LS("input", cfg->input_topic),
                    HM_LS("output", cfg->output_topic), HM_LS("events", cfg->events_topic),
                    HM_LS("group", cfg->group_id), HM_LS("delivery", cfg->delivery));
    return rc;
}

void fe_pipeline_reconfigure(void *ud) {
    fe_kafka *k = ud;
    fe_engine_set_params(k->engine, &k->cfg->params);
    if (k->view) fe_redis_view_set_limits(k->view, k->cfg->redis_ttl_s, k->cfg->history_max);
    hm_stage_set_commit_policy(&k->stage, k->cfg->commit_interval_ms, k->cfg->commit_max_records);
}
