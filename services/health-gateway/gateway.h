/*
 * gateway.h: the health-gateway on the service's loop (docs/HEALTH_GATEWAY.md).
 *
 *   every probe_interval_ms: a round, one probe per part (service or dependency) at once
 *   probe_timeout_ms later:   what has not answered is down ("timed out after N ms"), and
 *                             the round's figures join the history
 *
 * Readiness (/readyz, grpc.health.v1 "") is every critical part up; each part is also a
 * grpc.health.v1 service of its own name, so Watch("archiver") streams its changes.
 */
#ifndef HG_GATEWAY_H
#define HG_GATEWAY_H

#include "config.h"
#include "himari/control.h"
#include "himari/service.h"

typedef struct hg_gateway hg_gateway;

/** @brief Create the parts, route the admin endpoints, start probing. */
int hg_gateway_start(hm_service *svc, hg_config *cfg, hg_gateway **out, hm_err *err) HM_MUST_CHECK;
/** @brief The ControlService hooks (status, pause and resume of the probing). */
extern const hm_control_hooks hg_gateway_control_hooks;
/** @brief After the loop ended. */
void hg_gateway_free(hg_gateway *g);

#endif
