// uses: tools/himarictl
/*
 * test_control.c: what every service gets from common/src/service.c and
 * common/src/control.c: the checks on a loaded configuration, and
 * ControlService on a real service (hm_service_init: admin and gRPC servers on
 * free loopback ports) driven by a grpc C core client on a second thread.
 *
 * The loop runs on the test thread; the client thread only records what it
 * saw, and cmocka asserts on the test thread after the loop has ended. Must
 * never hang: every call has a deadline, a watchdog aborts a stuck loop, and
 * main() arms alarm().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "ctl_client.h"
#include "himari/log.h"
#include "himari/service.h"
#include "himari/v1/control.pb-c.h"

#define SVC         "/himari.v1.ControlService/"
#define TOKEN       "t0ken-for-tests"
#define CALL_MS     5000
#define WATCHDOG_MS 30000

/* ---- the configuration every service has ------------------------------------------ */

static void cfg_sections(void *cfg, hm_cfg_section *out) {
    hm_service_config_sections(cfg, HM_SVC_INGEST_VALIDATOR, out);
}
static const hm_service_schema k_schema = {sizeof(hm_service_config), HM_SERVICE_SECTIONS,
                                           cfg_sections, NULL};

/* A temp file with content; path holds its name (unlink it). */
static void write_file(char path[64], const char *content) {
    snprintf(path, 64, "/tmp/himari-test-control-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(content);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
}

static int load_text(const char *yaml, hm_service_config *cfg, hm_err *err) {
    char path[64];
    write_file(path, yaml);
    memset(cfg, 0, sizeof(*cfg));
    int rc = hm_service_config_load(&k_schema, cfg, path, err);
    unlink(path);
    return rc;
}

static void test_grpc_bind_off_loopback_does_not_load_without_the_opt_in(void **state) {
    (void)state;
    hm_service_config cfg;
    hm_err err;
    static const char *const remote[] = {"0.0.0.0", "::", "10.0.0.5"};
    for (size_t i = 0; i < HM_ARRAY_LEN(remote); i++) {
        char yaml[128];
        snprintf(yaml, sizeof(yaml), "grpc:\n  bind: '%s'\n", remote[i]);
        assert_int_equal(load_text(yaml, &cfg, &err), -EINVAL);
        char want[64];
        snprintf(want, sizeof(want), "grpc.bind: '%s' is not a loopback address", remote[i]);
        if (!strstr(err.msg, want)) fail_msg("%s: unexpected message: %s", remote[i], err.msg);
        assert_non_null(strstr(err.msg, "grpc.allow_insecure_remote: true"));
    }
    /* The opt-in loads; loopback never needed it. */
    assert_int_equal(
        load_text("grpc:\n  bind: 0.0.0.0\n  allow_insecure_remote: true\n", &cfg, &err), 0);
    assert_true(cfg.grpc_allow_insecure_remote);
    hm_service_config_free(&k_schema, &cfg);
    assert_int_equal(load_text("grpc:\n  bind: '::1'\n", &cfg, &err), 0);
    assert_false(cfg.grpc_allow_insecure_remote);
    hm_service_config_free(&k_schema, &cfg);
    /* admin.bind off loopback is allowed (nothing secret there; warned at start). */
    assert_int_equal(load_text("admin:\n  bind: 0.0.0.0\n", &cfg, &err), 0);
    hm_service_config_free(&k_schema, &cfg);
}

/* ---- a live service --------------------------------------------------------------- */

typedef struct live live;
typedef void (*scenario_fn)(live *l);

struct live {
    const char *extra_grpc; /* more grpc.* keys, "max_watch_streams: 1" */
    scenario_fn scenario;

    uv_loop_t loop;
    hm_service svc;
    hm_service_config cfg;
    hm_control *control;
    hm_control_hooks hooks;
    uv_async_t wake;
    uv_timer_t watchdog;
    char cfg_path[64], token_path[64];
    char target[64];
    pthread_t thread;
    atomic_int reconfigured; /* the reconfigure hook ran (loop thread writes) */
    void *result;            /* the scenario's record (test frees) */
};

static void hook_status(void *ud, hm_control_status *out) {
    (void)ud;
    out->state = HM_SERVICE_RUNNING;
}

static void hook_reconfigure(void *ud) {
    atomic_fetch_add(&((live *)ud)->reconfigured, 1);
}

static void on_wake(uv_async_t *a) {
    live *l = a->data;
    uv_close((uv_handle_t *)&l->wake, NULL);
    uv_timer_stop(&l->watchdog);
    uv_close((uv_handle_t *)&l->watchdog, NULL);
    hm_service_stop(&l->svc, 0); /* no on_stop: finishes at once (gRPC, then admin) */
}

static void on_watchdog(uv_timer_t *t) {
    (void)t;
    fprintf(stderr, "test_control: watchdog: the loop is still running after %d ms\n", WATCHDOG_MS);
    abort();
}

static void *client_main(void *arg) {
    live *l = arg;
    l->scenario(l);
    uv_async_send(&l->wake);
    return NULL;
}

static void live_run(live *l) {
    char text[512];
    write_file(l->token_path, TOKEN "\n");
    snprintf(text, sizeof(text),
             "log: {level: warn}\nadmin: {port: 0}\ngrpc:\n  port: 0\n  token_file: %s\n%s%s%s",
             l->token_path, l->extra_grpc ? "  " : "", l->extra_grpc ? l->extra_grpc : "",
             l->extra_grpc ? "\n" : "");
    write_file(l->cfg_path, text);
    hm_err err;
    if (hm_service_config_load(&k_schema, &l->cfg, l->cfg_path, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(uv_loop_init(&l->loop), 0);
    if (hm_service_init(&l->svc, &l->loop, "ingest-validator", &l->cfg, &err) != 0)
        fail_msg("%s", err.msg);
    hm_log_set_level(HM_LOG_WARN);
    l->hooks = (hm_control_hooks){.status = hook_status, .reconfigure = hook_reconfigure};
    l->control = hm_control_start(&l->svc, &k_schema, &l->cfg, l->cfg_path, &l->hooks, l);
    snprintf(l->target, sizeof(l->target), "127.0.0.1:%d", hm_grpc_server_port(l->svc.grpc));
    uv_async_init(&l->loop, &l->wake, on_wake);
    l->wake.data = l;
    uv_timer_init(&l->loop, &l->watchdog);
    uv_timer_start(&l->watchdog, on_watchdog, WATCHDOG_MS, 0);
    assert_int_equal(pthread_create(&l->thread, NULL, client_main, l), 0);
    int rc = hm_service_run(&l->svc); /* until everything closed; closes the loop */
    pthread_join(l->thread, NULL);
    assert_int_equal(rc, 0);
    hm_control_free(l->control);
    hm_service_config_free(&k_schema, &l->cfg);
    unlink(l->cfg_path);
    unlink(l->token_path);
}

/* ---- ReloadConfig reads only the configured file ------------------------------------- */

typedef struct reload_rec {
    ctl_result other, same_file_other_name, configured, empty;
    char digest_before[17], digest_after_refusal[17];
    int reconfigured_after_refusal;
} reload_rec;

static void get_digest(ctl_client *c, char out[17]) {
    Himari__V1__GetStatusRequest req = HIMARI__V1__GET_STATUS_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    ctl_result res;
    out[0] = '\0';
    if (ctl_unary(c, SVC "GetStatus", &req.base, &himari__v1__status__descriptor, NULL, CALL_MS,
                  &resp, &res) == 0 &&
        resp) {
        snprintf(out, 17, "%s", ((Himari__V1__Status *)resp)->config_digest);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
}

static void reload(ctl_client *c, const char *path, ctl_result *res) {
    Himari__V1__ReloadConfigRequest req = HIMARI__V1__RELOAD_CONFIG_REQUEST__INIT;
    req.path = (char *)path;
    ProtobufCMessage *resp = NULL;
    if (ctl_unary(c, SVC "ReloadConfig", &req.base, &himari__v1__reload_config_response__descriptor,
                  "Bearer " TOKEN, CALL_MS, &resp, res) != 0)
        res->code = (grpc_status_code)-1;
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
}

static void scenario_reload(live *l) {
    reload_rec *r = hm_xcalloc(1, sizeof(*r));
    l->result = r;
    ctl_client *c = ctl_client_new(l->target);
    get_digest(c, r->digest_before);
    /* Another file, valid and with a change (log.level) a reload would take. */
    char other[64], text[512];
    snprintf(text, sizeof(text),
             "log: {level: debug}\nadmin: {port: 0}\ngrpc:\n  port: 0\n  token_file: %s\n",
             l->token_path);
    write_file(other, text);
    reload(c, other, &r->other);
    unlink(other);
    get_digest(c, r->digest_after_refusal);
    r->reconfigured_after_refusal = atomic_load(&l->reconfigured);
    /* The same file by another name is another path: refused too. */
    char alias[96];
    snprintf(alias, sizeof(alias), "/tmp/../%s", l->cfg_path + strlen("/tmp/"));
    reload(c, alias, &r->same_file_other_name);
    reload(c, l->cfg_path, &r->configured);
    reload(c, "", &r->empty);
    ctl_client_free(c);
}

static void test_reload_config_reads_only_the_file_the_service_started_with(void **state) {
    (void)state;
    live l = {.scenario = scenario_reload};
    live_run(&l);
    reload_rec *r = l.result;
    assert_int_equal(r->other.code, GRPC_STATUS_PERMISSION_DENIED);
    assert_non_null(strstr(r->other.message, "only the file the service was started with"));
    assert_non_null(strstr(r->other.message, l.cfg_path));
    /* Nothing of the other file was taken. */
    assert_int_equal(strlen(r->digest_before), 16);
    assert_string_equal(r->digest_before, r->digest_after_refusal);
    assert_int_equal(r->reconfigured_after_refusal, 0);
    assert_int_equal(r->same_file_other_name.code, GRPC_STATUS_PERMISSION_DENIED);
    /* The configured file, by its path or by an empty one, reloads. */
    assert_int_equal(r->configured.code, GRPC_STATUS_OK);
    assert_int_equal(r->empty.code, GRPC_STATUS_OK);
    assert_int_equal(atomic_load(&l.reconfigured), 2);
    free(r);
}

/* ---- WatchStatus under grpc.max_watch_streams ---------------------------------------- */

typedef struct watch_rec {
    int first_messages;
    ctl_result second;
} watch_rec;

static void scenario_watch_cap(live *l) {
    watch_rec *r = hm_xcalloc(1, sizeof(*r));
    l->result = r;
    ctl_client *c = ctl_client_new(l->target);
    Himari__V1__WatchStatusRequest req = HIMARI__V1__WATCH_STATUS_REQUEST__INIT;
    req.interval_ms = 50;
    ctl_stream *a = NULL, *b = NULL;
    ProtobufCMessage *m = NULL;
    ctl_result res;
    if (ctl_stream_open(c, SVC "WatchStatus", &req.base, NULL, CALL_MS, &a) == 0 &&
        ctl_stream_next(a, &himari__v1__status__descriptor, &m) == 1) {
        r->first_messages++;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    if (ctl_stream_open(c, SVC "WatchStatus", &req.base, NULL, CALL_MS, &b) == 0) {
        if (ctl_stream_next(b, &himari__v1__status__descriptor, &m) == 1) {
            protobuf_c_message_free_unpacked(m, NULL);
            r->second.code = GRPC_STATUS_OK; /* served: no cap */
            ctl_stream_cancel(b);
            ctl_stream_close(b, &res);
        } else {
            ctl_stream_close(b, &r->second);
        }
    }
    if (a) {
        ctl_stream_cancel(a);
        ctl_stream_close(a, &res);
    }
    ctl_client_free(c);
}

static void test_watch_status_beyond_grpc_max_watch_streams_is_resource_exhausted(void **state) {
    (void)state;
    live l = {.scenario = scenario_watch_cap, .extra_grpc = "max_watch_streams: 1"};
    live_run(&l);
    watch_rec *r = l.result;
    assert_int_equal(r->first_messages, 1);
    assert_int_equal(r->second.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    free(r);
}

int main(void) {
    alarm(120);
    hm_log_init("test_control", HM_LOG_WARN);
    /* One reference for the whole run (each server takes its own too). */
    grpc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grpc_bind_off_loopback_does_not_load_without_the_opt_in),
        cmocka_unit_test(test_reload_config_reads_only_the_file_the_service_started_with),
        cmocka_unit_test(test_watch_status_beyond_grpc_max_watch_streams_is_resource_exhausted),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    grpc_shutdown_blocking();
    return failed;
}
