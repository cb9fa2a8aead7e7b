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

/** ControlService status: the stage's, with the archiver's backlog in Status.details. */
void ar_pipeline_status(void *ud, hm_control_status *out);
/** ControlService reload: apply the reloadable archiver.* keys. */
void ar_pipeline_reconfigure(void *ud);

#endif
