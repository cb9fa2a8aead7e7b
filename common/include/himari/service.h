/*
 * himari/service.h: what every service's main() wires the same way.
 *
 * One libuv loop; the config sections every service has (service, log, admin,
 * grpc, kafka); structured logs; a metrics registry; the admin HTTP endpoint;
 * the gRPC server (grpc.health.v1 mirrors readiness); and graceful shutdown: SIGTERM or SIGINT
 * calls the service's on_stop once (stop consuming, flush, commit), the service calls
 * hm_service_finish() when it is done, the admin server and signal handles close, the loop runs out
 * and hm_service_run() returns the exit code. A second signal, or a stop that takes longer than
 * stop_timeout_ms, ends the process at once with status 1: what was not committed is consumed again
 * after restart, so nothing is lost.
 *
 * Usage (see services/ingest-validator/main.c):
 *   hm_service svc;
 *   hm_service_init(&svc, uv_default_loop(), "ingest-validator", &cfg.base, &err);
 *   hm_service_on_stop(&svc, my_stop, ctx);
 *   hm_service_set_ready(&svc, my_ready, ctx);
 *   ... create consumers, producers on svc.loop ...
 *   return hm_service_run(&svc);
 */
#ifndef HIMARI_SERVICE_H
#define HIMARI_SERVICE_H

#include <stdbool.h>
#include <uv.h>

#include "himari/admin.h"
#include "himari/common.h"
#include "himari/config.h"
#include "himari/grpc.h"
#include "himari/kafka.h"
#include "himari/metrics.h"

/** Configuration every service has. */
typedef struct hm_service_config {
    char *instance_id;              /* service.instance_id: unique per running instance */
    int64_t stop_timeout_ms;        /* service.stop_timeout_ms */
    char *log_level;                /* log.level */
    char *admin_bind;               /* admin.bind */
    int64_t admin_port;             /* admin.port */
    char *grpc_bind;                /* grpc.bind */
    int64_t grpc_port;              /* grpc.port */
    char *grpc_token;               /* grpc.token (secret: grpc.token_file) */
    int64_t grpc_max_request_bytes; /* grpc.max_request_bytes */
    hm_kafka_config kafka;          /* kafka.* */
} hm_service_config;

/**
 * @brief The sections for the common keys (service, log, admin, grpc and
 * kafka), to put first in a service's section array. out must hold
 * HM_SERVICE_SECTIONS entries. The default ports differ per service so that
 * they can share a host with their defaults. Call once per process (the key
 * table is built once with those defaults).
 */
void hm_service_config_sections(hm_service_config *cfg, int default_admin_port,
                                int default_grpc_port, hm_cfg_section out[2]);
#define HM_SERVICE_SECTIONS 2

typedef struct hm_service hm_service;
typedef void (*hm_service_stop_cb)(hm_service *s, void *ud);

struct hm_service {
    uv_loop_t *loop;
    const char *name;
    const hm_service_config *cfg;
    hm_metrics *metrics;
    hm_admin *admin;
    hm_grpc_server *grpc;
    int64_t started_ms;
    int exit_code;
    bool stopping;
    bool finished;

    uv_signal_t sig_term, sig_int;
    uv_timer_t stop_timer;
    uv_timer_t health_timer;     /* mirrors readiness into grpc.health.v1 */
    hm_health_status health;     /* last status published */
    const char *health_names[8]; /* gRPC services registered (health per name) */
    size_t n_health_names;
    int handles_open;
    hm_service_stop_cb on_stop;
    void *stop_ud;
    hm_admin_ready_cb ready;
    void *ready_ud;
};

/**
 * @brief Logs, metrics (himari_build_info, himari_process_start_time_seconds),
 * signal handlers and the admin server on cfg's bind:port.
 * On error (e.g. the admin port is taken) nothing is left open.
 */
int hm_service_init(hm_service *s, uv_loop_t *loop, const char *name, const hm_service_config *cfg,
                    hm_err *err) HM_MUST_CHECK;

/** @brief Called once when a stop begins (signal or hm_service_stop). */
void hm_service_on_stop(hm_service *s, hm_service_stop_cb cb, void *ud);
/**
 * @brief Readiness for /readyz and for grpc.health.v1 (SERVING exactly when
 * ready; checked every 100 ms and at once when a stop begins); NULL: ready
 * whenever running.
 */
void hm_service_set_ready(hm_service *s, hm_admin_ready_cb cb, void *ud);

/**
 * @brief Serve a gRPC service (see himari/grpc.h); its health follows the
 * service's readiness like the server's ("").
 */
void hm_service_add_grpc(hm_service *s, const ProtobufCServiceDescriptor *svc,
                         const hm_grpc_method *methods, size_t n_methods, void *ud);

/** @brief Begin a graceful stop, as a signal would, with this exit code. */
void hm_service_stop(hm_service *s, int exit_code);
/** @brief The service has stopped its own work: close the runtime's handles. */
void hm_service_finish(hm_service *s);

/** @brief Run the loop until everything closed; returns the exit code. */
int hm_service_run(hm_service *s);

/** @brief Seconds since hm_service_init. */
double hm_service_uptime(const hm_service *s);

#endif
