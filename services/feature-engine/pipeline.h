/*
 * pipeline.h: the feature-engine in Kafka mode: consume quality_scores (read_committed),
 * compute features with the engine, produce features_computed records and causal events
 * in Kafka transactions with the consumed offsets, on the stage framework's rebuild
 * shape (himari/stage.h): after a restart the state is rebuilt by re-reading the input
 * from the committed offsets minus the longest window, without emitting again.
 */
#ifndef FE_PIPELINE_H
#define FE_PIPELINE_H

#include "config.h"
#include "himari/stage.h"

/**
 * @brief Create the feature-engine's stage on svc's loop and start it. cfg must outlive
 * the stage. *out is set whenever a stage was allocated, also on failure: free it with
 * hm_stage_free after the loop has ended.
 */
int fe_pipeline_start(hm_service *svc, fe_config *cfg, hm_stage **out, hm_err *err) HM_MUST_CHECK;

/** @brief ControlService's reconfigure hook (ud: the stage): apply a reloaded config. */
void fe_pipeline_reconfigure(void *ud);

#endif
