/*
 * health-gateway: one view of the whole pipeline (docs/HEALTH_GATEWAY.md).
 *
 *   every service's /readyz, /status, /metrics  --\
 *   Kafka, Redis, PostgreSQL, Neo4j, S3          ---> [gateway: probe rounds, each probe
 *   Alertmanager's webhook (POST /api/v1/alerts) --/   bounded by a timeout] --> /readyz,
 *        /api/v1/status, /status (the page), /metrics, grpc.health.v1 per part, Control
 *
 * This file is the service's descriptor.
 */
#include "config.h"
#include "gateway.h"
#include "himari/service.h"

static int start(hm_service *svc, void *cfg, void **ctx, hm_control_hooks *hooks, hm_err *err) {
    hg_gateway *g = NULL;
    int rc = hg_gateway_start(svc, cfg, &g, err);
    *ctx = g;
    *hooks = hg_gateway_control_hooks;
    return rc;
}

static void free_gateway(void *ctx) {
    hg_gateway_free(ctx);
}

static const hm_service_desc k_service = {
    .id = HM_SVC_HEALTH_GATEWAY,
    .summary = "Probes every service and dependency of the pipeline and serves what it saw:\n"
               "/readyz, /api/v1/status, the /status page, /metrics and grpc.health.v1.",
    .schema = &hg_config_schema,
    .start = start,
    .free = free_gateway,
};

int main(int argc, char **argv) {
    static hg_config cfg; /* lives as long as the process; the gateway reads it */
    return hm_service_main(argc, argv, &k_service, &cfg, NULL);
}
