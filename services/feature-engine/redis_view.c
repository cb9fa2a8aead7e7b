/*
 * redis_view.c: the latest view in Redis (redis_view.h).
 *
 * The pipeline hands over each symbol a loop turn changed (fe_redis_view_changed); when
 * the connection is READY the view pipelines a SET of the symbol's latest JSON and one per
 * exchange, each with EX ttl. Nothing waits for the replies; a failed one (an error reply,
 * such as LOADING from a Redis that is still reading its data back, or a connection lost
 * with the command in flight) is counted and logged, and the whole view is written again
 * 500 ms later. While the connection is not ready changes are not kept: when it is back
 * every symbol is written whole with its current values. Refused at max_pending in
 * flight, the view writes every symbol again at the end of a later turn.
 */
#include "redis_view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/buf.h"
#include "himari/log.h"

struct fe_redis_view {
    uv_loop_t *loop;
    fe_engine *engine;
    hm_redis *redis;
    int64_t ttl_s, history_max;
    bool write_all;       /* a turn could not write everything, or the connection came back */
    uint64_t retry_at_ms; /* after a failed write: write all again, not before this */
    hm_buf key, val;
    const char *symbol; /* during a write: the symbol being written */
    bool blocked;       /* a command was refused this turn: the rest waits */
    hm_counter *writes, *write_errors, *history_skipped;
    hm_gauge *up;
    void (*closed)(void *);
    void *closed_ud;
};

/* How long a failed write waits before the view is written whole again (a Redis that is
 * still loading its data answers LOADING to every write for a while). */
#define RETRY_AFTER_MS 500

static void on_reply(hm_redis *r, const redisReply *reply, void *ud) {
    (void)r;
    fe_redis_view *v = ud;
    if (reply && reply->type != REDIS_REPLY_ERROR) {
        hm_counter_inc(v->writes);
        return;
    }
    hm_counter_inc(v->write_errors);
    if (reply) {
        hm_log_limited(HM_LOG_WARN, "redis_write_failed", 10, HM_LS("error", reply->str));
    }
    /* Which symbol's write failed is not known here, so all of them are written again: a
     * failed write must never leave an old value served. */
    v->write_all = true;
    v->retry_at_ms = uv_now(v->loop) + RETRY_AFTER_MS;
}

static bool send_argv(fe_redis_view *v, int argc, const char **argv, const size_t *lens) {
    if (v->blocked) return false;
    if (hm_redis_command(v->redis, argc, argv, lens, on_reply, v) != 0) {
        v->blocked = true;
        return false;
    }
    return true;
}

/* SET key val EX ttl */
static bool set_ex(fe_redis_view *v) {
    char ttl[24];
    int n = snprintf(ttl, sizeof(ttl), "%lld", (long long)v->ttl_s);
    const char *argv[] = {"SET", v->key.data, v->val.data, "EX", ttl};
    size_t lens[] = {3, v->key.len, v->val.len, 2, (size_t)n};
    return send_argv(v, 5, argv, lens);
}

static void write_exchange(void *ud, const char *exchange) {
    fe_redis_view *v = ud;
    hm_buf_reset(&v->key);
    hm_buf_reset(&v->val);
    hm_buf_printf(&v->key, "features:%s:%s:latest", exchange, v->symbol);
    if (fe_engine_latest_exchange_json(v->engine, v->symbol, exchange, &v->val) == 0) {
        (void)set_ex(v);
    }
}

static void write_symbol(void *ud, const char *symbol) {
    fe_redis_view *v = ud;
    if (v->blocked) {
        return;
    }
    hm_buf_reset(&v->key);
    hm_buf_reset(&v->val);
    hm_buf_printf(&v->key, "features:%s:latest", symbol);
    if (fe_engine_latest_json(v->engine, symbol, &v->val) != 0 || !set_ex(v)) {
        return;
    }
    v->symbol = symbol;
    fe_engine_each_exchange(v->engine, symbol, write_exchange, v);
}

void fe_redis_view_changed(fe_redis_view *v, const char *symbol) {
    if (hm_redis_get_state(v->redis) != HM_REDIS_READY || v->write_all) {
        return; /* written whole when the connection is back, or at the turn's end */
    }
    v->blocked = false;
    write_symbol(v, symbol);
    if (v->blocked) v->write_all = true;
}

void fe_redis_view_turn_end(fe_redis_view *v) {
    if (!v->write_all || hm_redis_get_state(v->redis) != HM_REDIS_READY ||
        uv_now(v->loop) < v->retry_at_ms) {
        return;
    }
    v->write_all = false;
    v->blocked = false;
    fe_engine_each_symbol(v->engine, write_symbol, v);
    if (v->blocked) v->write_all = true; /* at max_pending: again at a later turn's end */
}

static void on_state(hm_redis *r, hm_redis_state state, void *ud) {
    (void)r;
    fe_redis_view *v = ud;
    hm_gauge_set(v->up, state == HM_REDIS_READY);
    if (state == HM_REDIS_READY) {
        v->write_all = true; /* back: the current values of all, at this turn's end */
    }
}

fe_redis_view *fe_redis_view_new(uv_loop_t *loop, const hm_redis_config *cfg, fe_engine *engine,
                                 int64_t ttl_s, int64_t history_max, hm_metrics *metrics) {
    fe_redis_view *v = calloc(1, sizeof(*v));
    if (!v) return NULL;
    v->loop = loop;
    v->engine = engine;
    v->ttl_s = ttl_s;
    v->history_max = history_max;
    v->writes = hm_metrics_counter_child(
        hm_metrics_counter(metrics, "himari_features_redis_writes_total",
                           "Redis commands of the view answered OK.", NULL));
    v->write_errors = hm_metrics_counter_child(hm_metrics_counter(
        metrics, "himari_features_redis_write_errors_total",
        "Redis commands of the view that failed or lost their connection.", NULL));
    v->history_skipped = hm_metrics_counter_child(hm_metrics_counter(
        metrics, "himari_features_redis_history_skipped_total",
        "features_computed records not added to features:{symbol}:history because Redis was "
        "not ready (the topic has them).",
        NULL));
    v->up = hm_metrics_gauge_child(hm_metrics_gauge(metrics, "himari_features_redis_up",
                                                    "1 when the Redis connection is ready.", NULL));
    hm_redis_opts o = hm_redis_opts_of(cfg);
    v->redis = hm_redis_new(loop, &o, on_state, v);
    if (!v->redis) {
        free(v);
        return NULL;
    }
    return v;
}

void fe_redis_view_set_limits(fe_redis_view *v, int64_t ttl_s, int64_t history_max) {
    v->ttl_s = ttl_s;
    v->history_max = history_max;
}

void fe_redis_view_history(fe_redis_view *v, const char *symbol, size_t symbol_len,
                           int64_t interval_end_ms, const char *json, size_t len) {
    if (hm_redis_get_state(v->redis) != HM_REDIS_READY) {
        hm_counter_inc(v->history_skipped);
        return;
    }
    hm_buf_reset(&v->key);
    hm_buf_printf(&v->key, "features:%.*s:history", (int)symbol_len, symbol);
    char score[24], stop[24];
    int ns = snprintf(score, sizeof(score), "%lld", (long long)interval_end_ms);
    int nt = snprintf(stop, sizeof(stop), "%lld", -(long long)v->history_max - 1);
    const char *zadd[] = {"ZADD", v->key.data, score, json};
    size_t zlen[] = {4, v->key.len, (size_t)ns, len};
    const char *trim[] = {"ZREMRANGEBYRANK", v->key.data, "0", stop};
    size_t tlen[] = {15, v->key.len, 1, (size_t)nt};
    if (hm_redis_command(v->redis, 4, zadd, zlen, on_reply, v) != 0 ||
        hm_redis_command(v->redis, 4, trim, tlen, on_reply, v) != 0) {
        hm_counter_inc(v->history_skipped);
    }
}

static void on_redis_closed(void *ud) {
    fe_redis_view *v = ud;
    hm_buf_free(&v->key);
    hm_buf_free(&v->val);
    void (*closed)(void *) = v->closed;
    void *cud = v->closed_ud;
    free(v);
    if (closed) closed(cud);
}

void fe_redis_view_close(fe_redis_view *v, void (*closed)(void *ud), void *ud) {
    v->closed = closed;
    v->closed_ud = ud;
    hm_redis_close(v->redis, on_redis_closed, v);
}
