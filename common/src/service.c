/*
 * service.c: the runtime every service shares: config sections, logs,
 * metrics, admin endpoint, signals and the graceful-stop sequence (see
 * himari/service.h).
 *
 * Owns the signal handles, the stop timer and the admin server; the service
 * owns everything else it creates on the loop and must close it before (or
 * as part of) calling hm_service_finish().
 */
#include <assert.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "himari/log.h"
#include "himari/service.h"

#define SC(field) offsetof(hm_service_config, field)

/* The common keys, with a service's default ports. One const table per service, built
 * from the service table, so nothing is patched at run time. */
// clang-format off
#define HM_SERVICE_KEYS_(admin_default, grpc_default) {                                            \
    {"service.instance_id", HM_CFG_STR, SC(instance_id), "", 0, 0, -1,                             \
     "unique name of this instance (Kafka transactional id, static group membership); "           \
     "empty: the host name"},                                                                      \
    {"service.stop_timeout_ms", HM_CFG_INT, SC(stop_timeout_ms), "30000", 0, 1000, 600000,         \
     "a graceful stop taking longer than this ends the process with status 1"},                    \
    {"log.level", HM_CFG_STR, SC(log_level), "info", HM_CFG_RELOADABLE, 0, -1,                     \
     "debug | info | warn | error"},                                                               \
    {"admin.bind", HM_CFG_STR, SC(admin_bind), "127.0.0.1", 0, 0, -1,                              \
     "address of the HTTP admin endpoint (/healthz /readyz /metrics /status)"},                    \
    {"admin.port", HM_CFG_INT, SC(admin_port), #admin_default, 0, 0, 65535,                        \
     "port of the HTTP admin endpoint; 0 picks a free port"},                                      \
    {"admin.http2", HM_CFG_BOOL, SC(admin_http2), "false", 0, 0, -1,                               \
     "also serve HTTP/2 with prior knowledge (h2o 2.2.5 has no rapid-reset defence: "             \
     "docs/SECURITY.md); false: HTTP/1.1 only"},                                                   \
    {"admin.max_connections", HM_CFG_INT, SC(admin_max_connections), "64", 0, 1, 4096,             \
     "admin connections open at once; more are closed at once"},                                   \
    {"admin.idle_timeout_ms", HM_CFG_INT, SC(admin_idle_timeout_ms), "10000", 0, 100, 3600000,     \
     "an admin connection that has not sent a whole request for this long is closed, ms"},        \
    {"grpc.bind", HM_CFG_STR, SC(grpc_bind), "127.0.0.1", 0, 0, -1,                                \
     "address of the gRPC endpoint (ControlService, grpc.health.v1); off loopback only with "     \
     "grpc.allow_insecure_remote"},                                                                \
    {"grpc.allow_insecure_remote", HM_CFG_BOOL, SC(grpc_allow_insecure_remote), "false", 0, 0, -1, \
     "serve gRPC on a bind that is not loopback although it has no TLS (the bearer token "        \
     "travels in clear): only behind a TLS proxy or on a trusted network"},                        \
    {"grpc.port", HM_CFG_INT, SC(grpc_port), #grpc_default, 0, 0, 65535,                           \
     "port of the gRPC endpoint; 0 picks a free port"},                                            \
    {"grpc.token", HM_CFG_SECRET, SC(grpc_token), NULL, HM_CFG_RELOADABLE, 0, -1,                  \
     "bearer token for mutating gRPC calls (Pause, Resume, ReloadConfig, Drain); unset: "         \
     "those calls are refused"},                                                                   \
    {"grpc.max_request_bytes", HM_CFG_INT, SC(grpc_max_request_bytes), "65536", 0, 64, 16777216,   \
     "larger gRPC requests are refused with RESOURCE_EXHAUSTED"},                                  \
    {"grpc.max_watch_streams", HM_CFG_INT, SC(grpc_max_watch_streams), "16", 0, 1, 1024,           \
     "streaming calls (WatchStatus, Health/Watch) open at once in the process; more are "         \
     "refused with RESOURCE_EXHAUSTED"},                                                           \
    {"grpc.max_concurrent_streams", HM_CFG_INT, SC(grpc_max_concurrent_streams), "32", 0, 1, 1024, \
     "HTTP/2 streams (calls) one gRPC connection may have open at once"},                         \
    {"grpc.max_connection_idle_ms", HM_CFG_INT, SC(grpc_max_connection_idle_ms), "300000", 0, 100, \
     2147483647, "a gRPC connection without a call for this long is closed (GOAWAY), ms"},        \
    {"grpc.max_connection_age_ms", HM_CFG_INT, SC(grpc_max_connection_age_ms), "0", 0, 0,          \
     2147483647, "a gRPC connection older than this is closed (GOAWAY, then 30 s for its calls), " \
     "ms; 0: no limit (a himarictl watch would be cut)"},                                          \
}
// clang-format on
#define SERVICE_KEY_COUNT 17

#define SERVICE_KEYS_ROW_(id, name, admin, grpc) [HM_SVC_##id] = HM_SERVICE_KEYS_(admin, grpc),
static const hm_cfg_key k_service_keys[HM_SVC_COUNT_][SERVICE_KEY_COUNT] = {
    HM_SERVICES(SERVICE_KEYS_ROW_)};
#undef SERVICE_KEYS_ROW_

#define SERVICE_NAME_(id, name, admin, grpc) [HM_SVC_##id] = name,
static const char *const k_service_names[HM_SVC_COUNT_] = {HM_SERVICES(SERVICE_NAME_)};
#undef SERVICE_NAME_

const char *hm_service_name(hm_service_id id) {
    assert((unsigned)id < HM_SVC_COUNT_);
    return k_service_names[id];
}

void hm_service_config_sections(hm_service_config *cfg, hm_service_id id, hm_cfg_section out[2]) {
    assert((unsigned)id < HM_SVC_COUNT_);
    out[0] = (hm_cfg_section){k_service_keys[id], SERVICE_KEY_COUNT, cfg, sizeof(*cfg)};
    out[1] = (hm_cfg_section){hm_kafka_config_keys, hm_kafka_config_keys_n, &cfg->kafka,
                              sizeof(cfg->kafka)};
}

/* ---- a service's configuration --------------------------------------------- */

static void schema_sections(const hm_service_schema *schema, void *cfg, hm_cfg_section *out) {
    assert(schema->n_sections >= HM_SERVICE_SECTIONS && schema->n_sections <= HM_MAX_SECTIONS);
    schema->sections(cfg, out);
}

/* An empty instance id means "this host": the transactional id and static group
 * membership need a name that a restart of the same instance gives again. */
#define MAX_INSTANCE_ID 200 /* "<service>-<instance>" must fit a transactional id buffer */

static int fill_instance_id(hm_service_config *base, hm_err *err) {
    if (base->instance_id && strlen(base->instance_id) > MAX_INSTANCE_ID)
        return hm_err_set(err, -EINVAL, "service.instance_id: longer than %d characters",
                          MAX_INSTANCE_ID);
    if (base->instance_id && *base->instance_id) return 0;
    char host[256] = "";
    if (gethostname(host, sizeof(host) - 1) != 0 || !*host)
        return hm_err_set(err, -EINVAL,
                          "service.instance_id: empty and the host name is unknown (%s); set it",
                          strerror(errno));
    free(base->instance_id);
    base->instance_id = hm_xstrdup(host);
    return 0;
}

/* gRPC has no TLS: a bind off loopback puts the bearer token on the network in clear, so it
 * needs the explicit opt-in (hm_grpc_server_start refuses it too; checked here as well so
 * that --check-config and a deploy's check see it). */
static int check_grpc_bind(const hm_service_config *base, const char *path, hm_err *err) {
    if (hm_addr_is_loopback(base->grpc_bind) || base->grpc_allow_insecure_remote) return 0;
    return hm_err_set(err, -EINVAL,
                      "%s: grpc.bind: '%s' is not a loopback address and gRPC has no TLS (bearer "
                      "tokens would travel in clear); set grpc.allow_insecure_remote: true to "
                      "allow it",
                      path ? path : "(no config file)", base->grpc_bind);
}

int hm_service_config_load(const hm_service_schema *schema, void *cfg, const char *path,
                           hm_err *err) {
    void *scratch = hm_xcalloc(1, schema->size);
    hm_cfg_section sections[HM_MAX_SECTIONS];
    schema_sections(schema, scratch, sections);
    int rc = hm_config_load(sections, schema->n_sections, path, err);
    if (rc != 0) {
        free(scratch);
        return rc;
    }
    if ((schema->validate && (rc = schema->validate(scratch, path, err)) != 0) ||
        (rc = check_grpc_bind(scratch, path, err)) != 0 ||
        (rc = fill_instance_id(scratch, err)) != 0) {
        hm_config_free(sections, schema->n_sections);
        free(scratch);
        return rc;
    }
    hm_service_config_free(schema, cfg);
    memcpy(cfg, scratch, schema->size);
    free(scratch);
    return 0;
}

void hm_service_config_free(const hm_service_schema *schema, void *cfg) {
    hm_cfg_section sections[HM_MAX_SECTIONS];
    schema_sections(schema, cfg, sections);
    hm_config_free(sections, schema->n_sections);
}

void hm_service_config_digest(const hm_service_schema *schema, void *cfg, char out[17]) {
    hm_cfg_section sections[HM_MAX_SECTIONS];
    schema_sections(schema, cfg, sections);
    hm_config_digest(sections, schema->n_sections, out);
}

/* ---- the runtime ------------------------------------------------------------ */

static void on_signal(uv_signal_t *h, int signum) {
    hm_service *s = h->data;
    if (s->stopping) {
        hm_log_error("service_stop_forced", HM_LS("signal", strsignal(signum)));
        _exit(1);
    }
    hm_log_info("service_signal", HM_LS("signal", strsignal(signum)));
    hm_service_stop(s, 0);
}

static void on_stop_timeout(uv_timer_t *t) {
    hm_service *s = t->data;
    hm_log_error("service_stop_timeout", HM_LI("timeout_ms", s->cfg->stop_timeout_ms));
    _exit(1);
}

static bool ready_now(hm_service *s, char *reason, size_t size) {
    if (s->stopping) {
        snprintf(reason, size, "stopping");
        return false;
    }
    return s->ready ? s->ready(s->ready_ud, reason, size) : true;
}

static bool ready_trampoline(void *ud, char *reason, size_t size) {
    return ready_now(ud, reason, size);
}

/* grpc.health.v1 follows readiness: the server ("") and every gRPC service. */
static void publish_health(hm_service *s) {
    if (!s->grpc) return;
    char reason[128];
    hm_health_status h =
        ready_now(s, reason, sizeof(reason)) ? HM_HEALTH_SERVING : HM_HEALTH_NOT_SERVING;
    if (h == s->health) return;
    s->health = h;
    hm_grpc_health_set(s->grpc, "", h);
    for (size_t i = 0; i < s->n_health_names; i++)
        hm_grpc_health_set(s->grpc, s->health_names[i], h);
    hm_log_info("health_changed",
                HM_LS("status", h == HM_HEALTH_SERVING ? "SERVING" : "NOT_SERVING"));
}

static void on_health_timer(uv_timer_t *t) {
    publish_health(t->data);
}

int hm_service_init(hm_service *s, uv_loop_t *loop, const char *name, const hm_service_config *cfg,
                    hm_err *err) {
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->name = name;
    s->cfg = cfg;
    s->started_ms = hm_now_ms();
    s->health = HM_HEALTH_UNKNOWN;
    hm_log_level level = HM_LOG_INFO;
    if (cfg->log_level && hm_log_level_parse(cfg->log_level, &level) != 0)
        return hm_err_set(err, -EINVAL, "log.level: '%s' is not debug, info, warn or error",
                          cfg->log_level);
    hm_log_init(name, level);

    s->metrics = hm_metrics_new();
    hm_gauge_set(hm_metrics_gauge_child(hm_metrics_gauge(s->metrics, "himari_build_info",
                                                         "Version of the running binary.",
                                                         "service,version"),
                                        name, HM_VERSION),
                 1);
    hm_gauge_set(
        hm_metrics_gauge_child(hm_metrics_gauge(s->metrics, "himari_process_start_time_seconds",
                                                "Start time of the process since the "
                                                "Unix epoch.",
                                                NULL)),
        (double)s->started_ms / 1000.0);

    hm_admin_opts ao = {.bind = cfg->admin_bind,
                        .port = (int)cfg->admin_port,
                        .http2 = cfg->admin_http2,
                        .max_connections = (int)cfg->admin_max_connections,
                        .idle_timeout_ms = cfg->admin_idle_timeout_ms};
    int rc = hm_admin_start(loop, &ao, s->metrics, ready_trampoline, s, &s->admin, err);
    if (rc) goto fail;
    hm_grpc_opts go = {.bind = cfg->grpc_bind,
                       .allow_insecure_remote = cfg->grpc_allow_insecure_remote,
                       .port = (int)cfg->grpc_port,
                       .token = cfg->grpc_token,
                       .max_request_bytes = (size_t)cfg->grpc_max_request_bytes,
                       .max_watch_streams = (int)cfg->grpc_max_watch_streams,
                       .max_concurrent_streams = (int)cfg->grpc_max_concurrent_streams,
                       .max_connection_idle_ms = cfg->grpc_max_connection_idle_ms,
                       .max_connection_age_ms = cfg->grpc_max_connection_age_ms,
                       .metrics = s->metrics};
    if ((rc = hm_grpc_server_start(loop, &go, &s->grpc, err))) {
        /* The admin server is open: close it; it finishes before the loop is run. */
        hm_admin_close(s->admin, NULL, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        s->admin = NULL;
        goto fail;
    }
    /* NOT_SERVING until the health timer finds the service ready (its readiness
     * check is set after init, so asking now would find none and say ready). */
    s->health = HM_HEALTH_NOT_SERVING;
    hm_grpc_health_set(s->grpc, "", HM_HEALTH_NOT_SERVING);
    uv_signal_init(loop, &s->sig_term);
    uv_signal_init(loop, &s->sig_int);
    uv_timer_init(loop, &s->stop_timer);
    uv_timer_init(loop, &s->health_timer);
    s->sig_term.data = s->sig_int.data = s->stop_timer.data = s->health_timer.data = s;
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    uv_timer_start(&s->health_timer, on_health_timer, 100, 100);
    hm_log_info("service_started", HM_LS("version", HM_VERSION),
                HM_LS("instance_id", cfg->instance_id), HM_LS("admin_bind", cfg->admin_bind),
                HM_LI("admin_port", hm_admin_port(s->admin)), HM_LS("grpc_bind", cfg->grpc_bind),
                HM_LI("grpc_port", hm_grpc_server_port(s->grpc)));
    return 0;
fail:
    hm_metrics_free(s->metrics);
    s->metrics = NULL;
    return rc;
}

void hm_service_on_stop(hm_service *s, hm_service_stop_cb cb, void *ud) {
    s->on_stop = cb;
    s->stop_ud = ud;
}

void hm_service_set_ready(hm_service *s, hm_admin_ready_cb cb, void *ud) {
    s->ready = cb;
    s->ready_ud = ud;
}

void hm_service_add_grpc(hm_service *s, const ProtobufCServiceDescriptor *svc,
                         const hm_grpc_method *methods, size_t n_methods, void *ud) {
    hm_grpc_server_add_service(s->grpc, svc, methods, n_methods, ud);
    if (s->n_health_names == HM_ARRAY_LEN(s->health_names))
        hm_panic("hm_service_add_grpc: more than %zu gRPC services", HM_ARRAY_LEN(s->health_names));
    s->health_names[s->n_health_names++] = svc->name;
    hm_grpc_health_set(s->grpc, svc->name, s->health);
}

void hm_service_stop(hm_service *s, int exit_code) {
    if (s->stopping) {
        /* A failure during the stop still makes the exit status say so. */
        if (exit_code > s->exit_code) s->exit_code = exit_code;
        return;
    }
    s->stopping = true;
    s->exit_code = exit_code;
    hm_log_info("service_stopping", HM_LI("exit_code", exit_code));
    publish_health(s); /* watchers see NOT_SERVING as the stop begins */
    /* The timer must not keep the loop alive by itself, only bound the stop. */
    uv_timer_start(&s->stop_timer, on_stop_timeout, (uint64_t)s->cfg->stop_timeout_ms, 0);
    uv_unref((uv_handle_t *)&s->stop_timer);
    if (s->on_stop)
        s->on_stop(s, s->stop_ud);
    else
        hm_service_finish(s);
}

static void on_grpc_closed(void *ud) {
    hm_service *s = ud;
    s->grpc = NULL;
    hm_admin_close(s->admin, NULL, NULL);
    s->admin = NULL;
}

void hm_service_finish(hm_service *s) {
    if (s->finished) return;
    s->finished = true;
    s->stopping = true;
    publish_health(s);
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    uv_close((uv_handle_t *)&s->sig_int, NULL);
    uv_close((uv_handle_t *)&s->stop_timer, NULL);
    uv_close((uv_handle_t *)&s->health_timer, NULL);
    /* gRPC first (calls in flight get their answers or CANCELLED), then HTTP. */
    hm_grpc_server_shutdown(s->grpc, on_grpc_closed, s);
}

static void walk_report(uv_handle_t *h, void *arg) {
    int *n = arg;
    (*n)++;
    hm_log_warn("service_handle_left_open", HM_LS("type", uv_handle_type_name(h->type)));
}

int hm_service_run(hm_service *s) {
    uv_run(s->loop, UV_RUN_DEFAULT);
    int left = 0;
    uv_walk(s->loop, walk_report, &left);
    if (uv_loop_close(s->loop) != 0 && s->exit_code == 0) s->exit_code = 1;
    hm_metrics_free(s->metrics);
    s->metrics = NULL;
    hm_log_info("service_stopped", HM_LI("exit_code", s->exit_code));
    return s->exit_code;
}

double hm_service_uptime(const hm_service *s) {
    return (double)(hm_now_ms() - s->started_ms) / 1000.0;
}

/* ---- the entry point --------------------------------------------------------- */

enum { OPT_CONFIG = 256, OPT_CHECK, OPT_EXAMPLE, OPT_VERSION, OPT_HELP, OPT_SERVICE_BASE };

static void print_usage(FILE *f, const hm_service_desc *d) {
    const char *name = hm_service_name(d->id);
    fprintf(f, "usage: %s [--config FILE]", name);
    for (size_t i = 0; i < d->n_options; i++)
        fprintf(f, " [--%s%s%s]", d->options[i].name, d->options[i].arg ? " " : "",
                d->options[i].arg ? d->options[i].arg : "");
    fprintf(f, "\n       %s --print-config-example | --check-config | --version\n\n", name);
    if (d->summary) fprintf(f, "%s\n\n", d->summary);
    fprintf(f,
            "  --config FILE            YAML configuration (see config/%s.example.yaml);\n"
            "                           HIMARI_* environment variables override it\n",
            name);
    for (size_t i = 0; i < d->n_options; i++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s%s%s", d->options[i].name, d->options[i].arg ? " " : "",
                 d->options[i].arg ? d->options[i].arg : "");
        fprintf(f, "  %-24s %s\n", left, d->options[i].help);
    }
    fprintf(f, "  --print-config-example   print every configuration key with its default\n"
               "  --check-config           load and validate the configuration, then exit\n"
               "  --version                print the version\n");
}

/* Run the service on the default loop until it stops; returns the exit status. */
static int run_service(const hm_service_desc *d, void *cfg, const char *config_path) {
    const char *name = hm_service_name(d->id);
    hm_service svc;
    hm_err err;
    if (hm_service_init(&svc, uv_default_loop(), name, cfg, &err) != 0) {
        fprintf(stderr, "%s: %s\n", name, err.msg);
        return 1;
    }
    void *ctx = NULL;
    hm_control_hooks hooks = {0};
    hm_control *control = NULL;
    if (d->start(&svc, cfg, &ctx, &hooks, &err) != 0) {
        hm_log_error("service_start_failed", HM_LS("error", err.msg));
        hm_service_stop(&svc, 1);
    } else {
        control = hm_control_start(&svc, d->schema, cfg, config_path, &hooks, ctx);
    }
    int rc = hm_service_run(&svc);
    hm_control_free(control);
    if (d->free) d->free(ctx);
    return rc;
}

int hm_service_main(int argc, char **argv, const hm_service_desc *d, void *cfg, void *opts) {
    const char *name = hm_service_name(d->id);
    size_t n_long = 5 + d->n_options + 1;
    struct option *longopts = hm_xcalloc(n_long, sizeof(*longopts));
    longopts[0] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
    longopts[1] = (struct option){"check-config", no_argument, NULL, OPT_CHECK};
    longopts[2] = (struct option){"print-config-example", no_argument, NULL, OPT_EXAMPLE};
    longopts[3] = (struct option){"version", no_argument, NULL, OPT_VERSION};
    longopts[4] = (struct option){"help", no_argument, NULL, OPT_HELP};
    for (size_t i = 0; i < d->n_options; i++)
        longopts[5 + i] =
            (struct option){d->options[i].name, d->options[i].arg ? required_argument : no_argument,
                            NULL, OPT_SERVICE_BASE + (int)i};

    const char *config_path = NULL;
    bool check_only = false, example = false, offline = false;
    int rc = -1, ch;
    while (rc < 0 && (ch = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (ch) {
            case 'c':
            case OPT_CONFIG:
                config_path = optarg;
                break;
            case OPT_CHECK:
                check_only = true;
                break;
            case OPT_EXAMPLE:
                example = true;
                break;
            case OPT_VERSION:
                printf("%s %s\n", name, HM_VERSION);
                rc = 0;
                break;
            case 'h':
            case OPT_HELP:
                print_usage(stdout, d);
                rc = 0;
                break;
            default:
                if (ch >= OPT_SERVICE_BASE && (size_t)(ch - OPT_SERVICE_BASE) < d->n_options) {
                    size_t i = (size_t)(ch - OPT_SERVICE_BASE);
                    if (d->options[i].offline) offline = true;
                    if (d->on_option(opts, i, d->options[i].arg ? optarg : NULL) == 0) break;
                    fprintf(stderr, "%s: --%s: invalid argument '%s'\n", name, d->options[i].name,
                            optarg ? optarg : "");
                }
                print_usage(stderr, d);
                rc = 2;
                break;
        }
    }
    free(longopts);
    if (rc >= 0) return rc;
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", name, argv[optind]);
        print_usage(stderr, d);
        return 2;
    }
    if (example) {
        hm_cfg_section sections[HM_MAX_SECTIONS];
        schema_sections(d->schema, cfg, sections);
        hm_config_write_example(sections, d->schema->n_sections, name, stdout);
        return 0;
    }
    hm_err err;
    /* Lines logged while loading (a secret file's mode) carry the service's name. */
    hm_log_init(name, HM_LOG_INFO);
    if (hm_service_config_load(d->schema, cfg, config_path, &err) != 0) {
        fprintf(stderr, "%s: %s\n", name, err.msg);
        return 2;
    }
    if (check_only) {
        printf("%s: configuration OK\n", name);
        rc = 0;
    } else if (offline) {
        hm_log_init(name, HM_LOG_WARN);
        rc = d->run_offline(cfg, opts);
    } else {
        rc = run_service(d, cfg, config_path);
    }
    hm_service_config_free(d->schema, cfg);
    return rc;
}
