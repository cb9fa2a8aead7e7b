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
 * A service's main() is a descriptor handed to hm_service_main() (below), which parses
 * the standard options, loads the configuration, runs the offline mode or starts the
 * service, serves ControlService and runs the loop (services/ingest-validator/main.c).
 * Underneath, the steps are public too:
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
#include "himari/control.h"
#include "himari/grpc.h"
#include "himari/kafka.h"
#include "himari/metrics.h"

/*
 * The services and their default ports, in one table: X(ID, name, admin port, gRPC port).
 * The admin and gRPC ports differ per service so that all of them can share a host
 * with their defaults. Local profiles (scripts/run.sh) move them as a block.
 */
#define HM_SERVICES(X)                                                                             \
    X(HEALTH_GATEWAY, "health-gateway", 8080, 9080)                                                \
    X(INGEST_VALIDATOR, "ingest-validator", 8081, 9081)                                            \
    X(FEATURE_ENGINE, "feature-engine", 8082, 9082)                                                \
    X(ARCHIVER, "archiver", 8083, 9083)                                                            \
    X(GRAPH_WRITER, "graph-writer", 8084, 9084)

typedef enum hm_service_id {
#define HM_SERVICE_ID_(id, name, admin, grpc) HM_SVC_##id,
    HM_SERVICES(HM_SERVICE_ID_)
#undef HM_SERVICE_ID_
        HM_SVC_COUNT_
} hm_service_id;

/** @brief "ingest-validator" for HM_SVC_INGEST_VALIDATOR. */
const char *hm_service_name(hm_service_id id);

/**
 * Configuration every service has. A service's own config struct starts with it
 * (`typedef struct iv_config { hm_service_config base; ... } iv_config;`), which is how
 * the generic loader, ReloadConfig and Status reach the common keys.
 */
typedef struct hm_service_config {
    char *instance_id;                   /* service.instance_id: unique per running instance;
                                            the host name when left empty */
    int64_t stop_timeout_ms;             /* service.stop_timeout_ms */
    char *log_level;                     /* log.level */
    char *admin_bind;                    /* admin.bind */
    int64_t admin_port;                  /* admin.port */
    bool admin_http2;                    /* admin.http2 */
    int64_t admin_max_connections;       /* admin.max_connections */
    int64_t admin_idle_timeout_ms;       /* admin.idle_timeout_ms */
    char *grpc_bind;                     /* grpc.bind */
    bool grpc_allow_insecure_remote;     /* grpc.allow_insecure_remote */
    int64_t grpc_port;                   /* grpc.port */
    char *grpc_token;                    /* grpc.token (secret: grpc.token_file) */
    int64_t grpc_max_request_bytes;      /* grpc.max_request_bytes */
    int64_t grpc_max_watch_streams;      /* grpc.max_watch_streams */
    int64_t grpc_max_concurrent_streams; /* grpc.max_concurrent_streams */
    int64_t grpc_max_connection_idle_ms; /* grpc.max_connection_idle_ms */
    int64_t grpc_max_connection_age_ms;  /* grpc.max_connection_age_ms; 0: none */
    hm_kafka_config kafka;               /* kafka.* */
} hm_service_config;

/**
 * @brief The sections of the common keys (service, log, admin, grpc and kafka), with
 * this service's default ports, to put first in a service's section array. out must
 * hold HM_SERVICE_SECTIONS entries.
 */
void hm_service_config_sections(hm_service_config *cfg, hm_service_id id, hm_cfg_section out[2]);
#define HM_SERVICE_SECTIONS 2
#define HM_MAX_SECTIONS     8

/**
 * How to load, compare and free a service's configuration: the struct (which starts
 * with hm_service_config), its key sections and its cross-field rules.
 */
typedef struct hm_service_schema {
    size_t size;       /* sizeof the service's config struct */
    size_t n_sections; /* <= HM_MAX_SECTIONS */
    /** Fill out[n_sections] with the key tables over cfg. */
    void (*sections)(void *cfg, hm_cfg_section *out);
    /**
     * Rules across keys (e.g. one threshold below another), and derived fields, on a
     * freshly loaded copy; NULL: none. Return 0 or an error naming the file and keys.
     */
    int (*validate)(void *cfg, const char *path, hm_err *err);
} hm_service_schema;

/**
 * @brief Load defaults, the file (NULL: none), env overrides and secrets, validate,
 * fill in the instance id (the host name when empty), and only then replace what cfg
 * held (cfg must be zeroed or loaded). On error cfg is unchanged.
 */
int hm_service_config_load(const hm_service_schema *schema, void *cfg, const char *path,
                           hm_err *err) HM_MUST_CHECK;
/** @brief Free what hm_service_config_load stored in cfg. */
void hm_service_config_free(const hm_service_schema *schema, void *cfg);
/** @brief The digest Status reports (hm_config_digest over every section). */
void hm_service_config_digest(const hm_service_schema *schema, void *cfg, char out[17]);

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

/**
 * @brief Begin a graceful stop, as a signal would, with this exit code. During a stop,
 * a higher code replaces the exit status (the stop could not do all it should).
 */
void hm_service_stop(hm_service *s, int exit_code);
/** @brief The service has stopped its own work: close the runtime's handles. */
void hm_service_finish(hm_service *s);

/** @brief Run the loop until everything closed; returns the exit code. */
int hm_service_run(hm_service *s);

/** @brief Seconds since hm_service_init. */
double hm_service_uptime(const hm_service *s);

/* ---- the entry point ------------------------------------------------------- */

/** A command-line option of a service's own, beside the standard ones. */
typedef struct hm_service_option {
    const char *name; /* long option without "--" */
    const char *arg;  /* its argument's name in --help; NULL: a flag */
    const char *help; /* one line */
    bool offline;     /* selects the offline mode (run_offline instead of the service) */
} hm_service_option;

/**
 * A service, as hm_service_main() needs to know it. Standard options: --config FILE,
 * --check-config, --print-config-example, --version, --help.
 */
typedef struct hm_service_desc {
    hm_service_id id;
    const char *summary; /* one line under the usage */
    const hm_service_schema *schema;
    const hm_service_option *options; /* the service's own options (may be NULL) */
    size_t n_options;
    /** One of options was given: index into options, its argument (NULL for a flag). */
    int (*on_option)(void *opts, size_t index, const char *arg);
    /** Offline mode (an option with .offline was given): return the exit code. */
    int (*run_offline)(void *cfg, void *opts);
    /**
     * Start the service on svc's loop: create its parts, set *ctx and fill hooks (for
     * ControlService). On error return non-zero with err set; the service then stops
     * with status 1 after what was opened is closed.
     */
    int (*start)(hm_service *svc, void *cfg, void **ctx, hm_control_hooks *hooks, hm_err *err);
    /** After the loop ended: free ctx (NULL when start failed before setting it). */
    void (*free)(void *ctx);
} hm_service_desc;

/**
 * @brief The whole of a service's main(): options, configuration into cfg (a zeroed
 * struct of desc->schema->size that lives as long as the process), offline mode or
 * service, ControlService, loop. opts is the service's own option struct (passed to
 * on_option and run_offline). @return the process exit status: 0, 1 (failed while
 * running), 2 (bad usage or configuration).
 */
int hm_service_main(int argc, char **argv, const hm_service_desc *desc, void *cfg, void *opts);

#endif
