/*
 * control.h: how operators steer the ingest-validator: himari.v1.ControlService
 * over gRPC (GetStatus, WatchStatus, Pause, Resume, ReloadConfig, Drain) and
 * GET /status on the admin endpoint (the same Status, as JSON).
 */
#ifndef IV_CONTROL_H
#define IV_CONTROL_H

#include "config.h"
#include "himari/service.h"
#include "pipeline.h"

typedef struct iv_control iv_control;

/**
 * @brief Register the service's gRPC methods and /status on svc. config_path
 * is the file the service was started with (NULL: none; a reload then re-reads
 * defaults and the environment). cfg is swapped in place by ReloadConfig.
 */
iv_control *iv_control_start(hm_service *svc, iv_config *cfg, const char *config_path,
                             iv_pipeline *pipeline);

/** @brief Free after the service's loop has ended. NULL is fine. */
void iv_control_free(iv_control *c);

#endif
