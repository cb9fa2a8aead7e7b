/*
 * redis_view.h: the feature-engine's latest view in Redis, the guide's layout:
 *   features:{symbol}:latest            the symbol across its exchanges (JSON, TTL)
 *   features:{exchange}:{symbol}:latest one exchange's (JSON, TTL)
 *   features:{symbol}:history           sorted set of features_computed records by
 *                                       interval end, trimmed to the newest N
 * Written after every batch of input (the pipeline hands over the symbols each loop turn
 * changed), pipelined on one connection (himari/redis.h). Redis down or restarted: the
 * engine keeps computing, nothing is queued for Redis, and when the connection is READY
 * again every symbol is written whole with its current values. History records emitted
 * while Redis was down are not kept for it (features_computed holds them all); counted.
 */
#ifndef FE_REDIS_VIEW_H
#define FE_REDIS_VIEW_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "engine.h"
#include "himari/metrics.h"
#include "himari/redis.h"

typedef struct fe_redis_view fe_redis_view;

/**
 * @brief Connect to Redis (it keeps reconnecting). @return the view (close with
 * fe_redis_view_close) or NULL out of memory.
 */
fe_redis_view *fe_redis_view_new(uv_loop_t *loop, const hm_redis_config *cfg, fe_engine *engine,
                                 int64_t ttl_s, int64_t history_max, hm_metrics *metrics);

/** @brief New TTL and history bound (ReloadConfig). */
void fe_redis_view_set_limits(fe_redis_view *v, int64_t ttl_s, int64_t history_max);

/** @brief One features_computed record (live, not rebuilt) for the symbol's history. */
void fe_redis_view_history(fe_redis_view *v, const char *symbol, size_t symbol_len,
                           int64_t interval_end_ms, const char *json, size_t len);

/** @brief A symbol this loop turn changed: write its latest view (when READY). */
void fe_redis_view_changed(fe_redis_view *v, const char *symbol);
/** @brief The turn's changes are handed over: write everything if a reconnect asked. */
void fe_redis_view_turn_end(fe_redis_view *v);

/** @brief Stop writing, close the connection; closed(ud) when done (then it is freed). */
void fe_redis_view_close(fe_redis_view *v, void (*closed)(void *ud), void *ud);

#endif
