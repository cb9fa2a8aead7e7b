/*
 * pipeline.h: the ingest-validator in Kafka mode: consume raw_market_data, judge
 * each record with the engine, and produce quality records, dead letters, events
 * and the state changelog in Kafka transactions together with the consumed offsets
 * (consume-transform-produce, exactly once), on the stage framework (himari/stage.h).
 */
#ifndef IV_PIPELINE_H
#define IV_PIPELINE_H

#include "config.h"
#include "himari/stage.h"

/**
 * @brief Create the validator's stage on svc's loop and start it: transactions,
 * restore, consumption; it stops with the service (commit, leave the group). cfg
 * must outlive the stage (a reload swaps its contents; see iv_pipeline_reconfigure).
 * *out is set whenever a stage was allocated, also on failure: free it with
 * hm_stage_free after the loop has ended.
 */
int iv_pipeline_start(hm_service *svc, iv_config *cfg, hm_stage **out, hm_err *err) HM_MUST_CHECK;

/** @brief ControlService's reconfigure hook (ud: the stage): apply a reloaded config. */
void iv_pipeline_reconfigure(void *ud);

#endif
