/*
 * pipeline.h: the ingest-validator in Kafka mode: consume raw_market_data,
 * judge each record with the engine, and produce quality records, dead
 * letters, events and state changelog in Kafka transactions together with the
 * consumed offsets (consume-transform-produce, exactly once).
 */
#ifndef IV_PIPELINE_H
#define IV_PIPELINE_H

#include "config.h"
#include "himari/service.h"

typedef struct iv_pipeline iv_pipeline;

/**
 * @brief Create the clients, initialise transactions and start consuming on
 * svc's loop. Stops gracefully on svc's stop (commit, leave the group).
 * cfg must outlive the pipeline (a reload swaps it through iv_pipeline_reconfigure).
 */
int iv_pipeline_start(hm_service *svc, iv_config *cfg, iv_pipeline **out,
                      hm_err *err) HM_MUST_CHECK;

#endif
