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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "himari/log.h"
#include "himari/service.h"

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

int main(void) {
    alarm(120);
    hm_log_init("test_control", HM_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grpc_bind_off_loopback_does_not_load_without_the_opt_in),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
