/*
 * himari/control.h: the ControlService server every service runs
 * (proto/himari/v1/control.proto; himarictl speaks it), and GET /status.
 *
 *   GetStatus     state, version, config digest, uptime, per-partition position and
 *                 lag, records in/out, transactions, last error
 *   WatchStatus   the same, streamed every interval_ms until the client goes away
 *   Pause/Resume  stop/restart consumption                              [token]
 *   ReloadConfig  re-read the YAML, validate, swap it in at once; a file that does not
 *                 load, or changes a key that needs a restart, is refused with the
 *                 reason and the running configuration stays            [token]
 *                 Only the file the service was started with (--config): a request
 *                 naming any other path gets PERMISSION_DENIED
 *   Drain         stop consuming, commit what is in flight, answer, exit 0 [token]
 *
 * The server is generic: the service supplies hooks (a stage-based service passes
 * hm_stage_control_hooks and adds its own reconfigure). Reloading the common keys
 * (log.level, grpc.token) is done here, for every service. Handlers run on the loop.
 */
#ifndef HIMARI_CONTROL_H
#define HIMARI_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

#include "himari/common.h"
#include "himari/kafka.h"

/** The state a service reports; the values are the proto's ServiceState. */
typedef enum hm_service_state {
    HM_SERVICE_STARTING = 1, /* initialising clients, restoring state, waiting for partitions */
    HM_SERVICE_RUNNING = 2,
    HM_SERVICE_PAUSED = 3,   /* consumption paused by an operator */
    HM_SERVICE_DRAINING = 4, /* finishing in-flight work before exiting */
} hm_service_state;

/** @brief "STARTING", "RUNNING", ... */
const char *hm_service_state_name(hm_service_state s);

#define HM_STATUS_DETAILS_MAX 32

/** One of a service's own figures in Status.details ("backlog_rows" = "1200"). */
typedef struct hm_status_detail {
    const char *name; /* static */
    char value[96];
} hm_status_detail;

/** What a service reports in Status beside what the server knows itself. */
typedef struct hm_control_status {
    hm_service_state state;
    uint64_t records_in;  /* input records processed */
    uint64_t records_out; /* output records acknowledged */
    uint64_t transactions_committed;
    uint64_t transactions_aborted;
    const char *last_error; /* "" when none; valid until the loop turns */
    hm_consumer *consumer;  /* positions and lag per partition; NULL: none */
    hm_status_detail details[HM_STATUS_DETAILS_MAX];
    size_t n_details;
} hm_control_status;

/** @brief Add a detail (printf-style value); ignored past HM_STATUS_DETAILS_MAX. */
void hm_control_status_detail(hm_control_status *s, const char *name, const char *fmt, ...)
    HM_PRINTF(3, 4);

typedef struct hm_control_hooks {
    void (*status)(void *ud, hm_control_status *out);
    void (*pause)(void *ud);
    void (*resume)(void *ud);
    /**
     * Stop consuming, commit what is in flight, exit 0; call done(arg, records) once,
     * when the last unit committed, with its record count.
     */
    void (*drain)(void *ud, void (*done)(void *arg, uint64_t records), void *arg);
    /** The configuration struct now holds the reloaded values: apply them. */
    void (*reconfigure)(void *ud);
} hm_control_hooks;

typedef struct hm_control hm_control;
struct hm_service;
struct hm_service_schema;

/**
 * @brief Serve ControlService on the service's gRPC server and /status on its admin
 * endpoint (unless the service routed a /status of its own before). cfg is the service's loaded
 * configuration (schema says how to load a fresh one and compare); config_path the file it came
 * from (NULL: none). hooks and ud must outlive the control. Free with hm_control_free after the
 * loop ended.
 */
hm_control *hm_control_start(struct hm_service *svc, const struct hm_service_schema *schema,
                             void *cfg, const char *config_path, const hm_control_hooks *hooks,
                             void *ud);
void hm_control_free(hm_control *c);

#endif
