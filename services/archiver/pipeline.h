/*
 * pipeline.h: the archiver in Kafka mode: quality_scores into PostgreSQL on the stage
 * framework (shape HM_STAGE_SINK: offsets are committed only after the database committed
 * the batch that holds them).
 */
#ifndef AR_PIPELINE_H
#define AR_PIPELINE_H

#include "config.h"
#include "himari/control.h"
#include "himari/stage.h"

/** @brief Create and start the stage; *out is set even on error (free it with the stage). */
int ar_pipeline_start(hm_service *svc, ar_config *cfg, hm_stage **out, hm_err *err) HM_MUST_CHECK;

/** The control hooks: the stage's, with the archiver's backlog in Status.details. */
extern const hm_control_hooks ar_pipeline_control_hooks;

#endif
