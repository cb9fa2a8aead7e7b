/*
 * feature_service.h: himari.v1.FeatureService (proto/himari/v1/features.proto) over the
 * engine's memory, on the service's gRPC server: GetLatest, BatchGetLatest, GetHistory,
 * ListSymbols, and StreamFeatures, which pushes a symbol's latest features after every
 * loop turn that changed it. Served from memory, so Redis being away changes nothing here.
 *
 * A slow stream consumer is conflated, never queued: a stream has at most one message in
 * flight and a set of symbols changed since (one entry per symbol, deduplicated); when the
 * message is delivered the next symbol's *current* features are sent. So a stream holds
 * O(symbols) memory whatever the update rate, and a consumer that catches up sees the
 * latest values. Open streams count against grpc.max_watch_streams.
 */
#ifndef FE_FEATURE_SERVICE_H
#define FE_FEATURE_SERVICE_H

#include "engine.h"
#include "himari/service.h"

typedef struct fe_feature_service fe_feature_service;

/** @brief Register FeatureService on svc's gRPC server. @return it, or NULL out of memory. */
fe_feature_service *fe_feature_service_new(hm_service *svc, fe_engine *engine);

/** @brief A symbol this loop turn changed: push it to the streams that watch it. */
void fe_feature_service_changed(fe_feature_service *fs, const char *symbol);

/** @brief After the loop ended (the server cancelled every stream): free. */
void fe_feature_service_free(fe_feature_service *fs);

#endif
