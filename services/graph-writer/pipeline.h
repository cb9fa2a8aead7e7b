/*
 * pipeline.h: the graph-writer in Kafka mode: causal_events into Neo4j on the stage
 * framework (shape HM_STAGE_SINK: offsets are committed only after the graph transaction
 * that holds their events committed).
 */
#ifndef GW_PIPELINE_H
#define GW_PIPELINE_H

#include "config.h"
#include "himari/control.h"
#include "himari/stage.h"

/** @brief Create and start the stage; *out is set even on error (free it with the stage). */
int gw_pipeline_start(hm_service *svc, gw_config *cfg, hm_stage **out, hm_err *err) HM_MUST_CHECK;

/** ControlService status: the stage's, with the graph-writer's figures in Status.details. */
void gw_pipeline_status(void *ud, hm_control_status *out);
/** ControlService reload: apply the reloadable graph_writer.* batch keys. */
void gw_pipeline_reconfigure(void *ud);

#endif
