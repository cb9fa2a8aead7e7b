/*
 * test_log.c: unit tests for common/src/log.c, the structured JSON-lines logger.
 *
 * Lines go to a temporary file through hm_log_set_fd and are read back and
 * parsed with jansson; a fake clock (hm_log_set_clock) makes "ts" exact and lets
 * the rate-limit tests step past a minute without sleeping. The logger's state
 * is process-global, so each test sets what it relies on in its setup.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "himari/log.h"

static int64_t fake_now_ms;
static int64_t fake_clock(void) {
    return fake_now_ms;
}

/* 2023-11-14T22:13:20.123Z */
#define T0 1700000000123LL

typedef struct captured {
    char *text; /* everything written since the last capture */
    char *lines[64];
    size_t n_lines;
} captured;

static int log_fd = -1;

static int setup(void **state) {
    (void)state;
    char path[] = "/tmp/himari_test_log_XXXXXX";
    log_fd = mkstemp(path);
    if (log_fd < 0) return -1;
    unlink(path);
    hm_log_set_fd(log_fd);
    hm_log_set_clock(fake_clock);
    fake_now_ms = T0;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    hm_log_set_fd(2);
    hm_log_set_clock(NULL);
    close(log_fd);
    log_fd = -1;
    return 0;
}

/* Reads what the logger wrote, splits it into lines, and empties the file. */
static void capture(captured *c) {
    off_t end = lseek(log_fd, 0, SEEK_END);
    assert_true(end >= 0);
    c->text = calloc(1, (size_t)end + 1);
    assert_non_null(c->text);
    assert_int_equal(pread(log_fd, c->text, (size_t)end, 0), end);
    assert_int_equal(ftruncate(log_fd, 0), 0);
    assert_int_equal(lseek(log_fd, 0, SEEK_SET), 0);
    c->n_lines = 0;
    char *p = c->text;
    while (*p) {
        char *nl = strchr(p, '\n');
        if (!nl) fail_msg("last line has no newline: %s", p);
        *nl = '\0';
        assert_true(c->n_lines < HM_ARRAY_LEN(c->lines));
        c->lines[c->n_lines++] = p;
        p = nl + 1;
    }
}

static void release(captured *c) {
    free(c->text);
}

/* Parses one line as a JSON object (fails the test if it is not). */
static json_t *parse_line(const char *line) {
    json_error_t err;
    json_t *j = json_loads(line, 0, &err);
    if (!j) fail_msg("not JSON (%s): %s", err.text, line);
    assert_true(json_is_object(j));
    return j;
}

/* ---- line format --------------------------------------------------------- */

static void test_before_init_lines_say_service_himari_and_level_info(void **state) {
    (void)state;
    hm_log_debug("hidden");
    hm_log_info("started");
    captured c;
    capture(&c);
    assert_int_equal(c.n_lines, 1);
    assert_string_equal(c.lines[0], "{\"ts\":\"2023-11-14T22:13:20.123Z\",\"level\":\"info\","
                                    "\"service\":\"himari\",\"event\":\"started\"}");
    release(&c);
}

static void test_line_has_ts_level_service_event_then_fields_in_order(void **state) {
    (void)state;
    hm_log_init("ingest-validator", HM_LOG_INFO);
    hm_log_warn("partition_assigned", HM_LS("topic", "raw_market_data"), HM_LI("partition", 3),
                HM_LI("offset", INT64_MIN), HM_LD("lag_s", 0.25), HM_LD("price", 37000.0),
                HM_LB("paused", true), HM_LB("eof", false), HM_LS("note", NULL));
    captured c;
    capture(&c);
    assert_int_equal(c.n_lines, 1);
    assert_string_equal(c.lines[0],
                        "{\"ts\":\"2023-11-14T22:13:20.123Z\",\"level\":\"warn\","
                        "\"service\":\"ingest-validator\",\"event\":\"partition_assigned\","
                        "\"topic\":\"raw_market_data\",\"partition\":3,"
                        "\"offset\":-9223372036854775808,\"lag_s\":0.25,\"price\":37000,"
                        "\"paused\":true,\"eof\":false,\"note\":null}");

    json_t *j = parse_line(c.lines[0]);
    assert_true(json_is_string(json_object_get(j, "ts")));
    assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(j, "service")), "ingest-validator");
    assert_string_equal(json_string_value(json_object_get(j, "event")), "partition_assigned");
    assert_true(json_is_integer(json_object_get(j, "partition")));
    assert_int_equal(json_integer_value(json_object_get(j, "partition")), 3);
    assert_true(json_is_real(json_object_get(j, "lag_s")));
    assert_true(json_real_value(json_object_get(j, "lag_s")) == 0.25);
    assert_true(json_is_true(json_object_get(j, "paused")));
    assert_true(json_is_false(json_object_get(j, "eof")));
    assert_true(json_is_null(json_object_get(j, "note")));
    json_decref(j);
    release(&c);
}

static void test_every_level_writes_its_name(void **state) {
    (void)state;
    hm_log_init("svc", HM_LOG_DEBUG);
    hm_log_debug("e");
    hm_log_info("e");
    hm_log_warn("e");
    hm_log_error("e");
    captured c;
    capture(&c);
    assert_int_equal(c.n_lines, 4);
    const char *want[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < 4; i++) {
        json_t *j = parse_line(c.lines[i]);
        assert_string_equal(json_string_value(json_object_get(j, "level")), want[i]);
        json_decref(j);
    }
    release(&c);
}

static void test_lines_below_the_minimum_level_are_dropped(void **state) {
    (void)state;
    hm_log_init("svc", HM_LOG_WARN);
    hm_log_debug("d");
    hm_log_info("i");
    hm_log_warn("w");
    hm_log_error("e");
    captured c;
    capture(&c);
    assert_int_equal(c.n_lines, 2);
    assert_non_null(strstr(c.lines[0], "\"event\":\"w\""));
    assert_non_null(strstr(c.lines[1], "\"event\":\"e\""));
    release(&c);

    hm_log_set_level(HM_LOG_DEBUG);
    hm_log_debug("d");
    capture(&c);
    assert_int_equal(c.n_lines, 1);
    assert_non_null(strstr(c.lines[0], "\"level\":\"debug\""));
    release(&c);

    hm_log_set_level(HM_LOG_ERROR);
    hm_log_warn("w");
    capture(&c);
    assert_int_equal(c.n_lines, 0);
    release(&c);
}

static void test_level_parse_accepts_the_four_names_only(void **state) {
    (void)state;
    hm_log_level l = HM_LOG_ERROR;
    assert_int_equal(hm_log_level_parse("debug", &l), 0);
    assert_int_equal(l, HM_LOG_DEBUG);
    assert_int_equal(hm_log_level_parse("info", &l), 0);
    assert_int_equal(l, HM_LOG_INFO);
    assert_int_equal(hm_log_level_parse("warn", &l), 0);
    assert_int_equal(l, HM_LOG_WARN);
    assert_int_equal(hm_log_level_parse("error", &l), 0);
    assert_int_equal(l, HM_LOG_ERROR);
    assert_int_equal(hm_log_level_parse("INFO", &l), -EINVAL);
    assert_int_equal(hm_log_level_parse("warning", &l), -EINVAL);
    assert_int_equal(hm_log_level_parse("", &l), -EINVAL);
    assert_int_equal(hm_log_level_parse(NULL, &l), -EINVAL);
    assert_int_equal(l, HM_LOG_ERROR); /* untouched on failure */
}

static void test_strings_with_quotes_newlines_and_bad_utf8_stay_one_valid_line(void **state) {
    (void)state;
    hm_log_init("svc\"x", HM_LOG_INFO);
    const char *nasty = "line1\nline2\r\n\"quoted\" back\\slash \x01 \xff tab\t";
    hm_log_error("bad_record", HM_LS("raw", nasty), HM_LS("key\nwith newline", "v"));
    captured c;
    capture(&c);
    assert_int_equal(c.n_lines, 1);
    json_t *j = parse_line(c.lines[0]);
    assert_string_equal(json_string_value(json_object_get(j, "service")), "svc\"x");
    assert_string_equal(json_string_value(json_object_get(j, "raw")),
                        "line1\nline2\r\n\"quoted\" back\\slash \x01 \xef\xbf\xbd tab\t");
    assert_string_equal(json_string_value(json_object_get(j, "key\nwith newline")), "v");
    json_decref(j);
    release(&c);
}

static void test_doubles_are_shortest_and_non_finite_become_null(void **state) {
    (void)state;
    hm_log_init("svc", HM_LOG_INFO);
    hm_log_info("d", HM_LD("a", 0.1), HM_LD("b", 1.0 / 0.0), HM_LD("c", 0.0 / 0.0),
                HM_LD("d", -1e-9));
    captured c;
    capture(&c);
    assert_int_equal(c.n_lines, 1);
    assert_non_null(strstr(c.lines[0], ",\"a\":0.1,\"b\":null,\"c\":null,\"d\":-1e-09}"));
    json_decref(parse_line(c.lines[0]));
    release(&c);
}

static void test_a_long_line_is_written_whole(void **state) {
    (void)state;
    hm_log_init("svc", HM_LOG_INFO);
    size_t n = 200000;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'q', n);
    big[n] = '\0';
    hm_log_info("big", HM_LS("payload", big), HM_LI("after", 7));
    captured c;
    capture(&c);
    assert_int_equal(c.n_lines, 1);
    json_t *j = parse_line(c.lines[0]);
    assert_int_equal(strlen(json_string_value(json_object_get(j, "payload"))), n);
    assert_int_equal(json_integer_value(json_object_get(j, "after")), 7);
    json_decref(j);
    release(&c);
    free(big);
}

static void test_logging_leaves_errno_alone(void **state) {
    (void)state;
    hm_log_init("svc", HM_LOG_INFO);
    errno = ECONNREFUSED;
    hm_log_error("connect_failed", HM_LS("host", "127.0.0.1"));
    assert_int_equal(errno, ECONNREFUSED);
    hm_log_set_fd(-1); /* a failing write is dropped silently, errno still kept */
    errno = EPIPE;
    hm_log_error("nowhere");
    assert_int_equal(errno, EPIPE);
    hm_log_set_fd(log_fd);
    captured c;
    capture(&c);
    assert_int_equal(c.n_lines, 1);
    release(&c);
}

/* ---- rate limiting ------------------------------------------------------- */

static void test_ratelimit_suppresses_after_per_minute_then_reports_count(void **state) {
    (void)state;
    hm_log_init("svc", HM_LOG_INFO);
    for (int i = 0; i < 10; i++) {
        hm_log_limited(HM_LOG_WARN, "bad_tick", 3, HM_LI("i", i));
        fake_now_ms += 1000;
    }
    captured c;
    capture(&c);
    assert_int_equal(c.n_lines, 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *j = parse_line(c.lines[i]);
        assert_int_equal(json_integer_value(json_object_get(j, "i")), (json_int_t)i);
        assert_null(json_object_get(j, "suppressed"));
        json_decref(j);
    }
    release(&c);

    /* Still inside the minute opened by the first line (t0 + 59.999 s). */
    fake_now_ms = T0 + 59999;
    hm_log_limited(HM_LOG_WARN, "bad_tick", 3, HM_LI("i", 10));
    capture(&c);
    assert_int_equal(c.n_lines, 0);
    release(&c);

    /* A new minute: the next line goes out and says how many were dropped. */
    fake_now_ms = T0 + 60000;
    hm_log_limited(HM_LOG_WARN, "bad_tick", 3, HM_LI("i", 11));
    hm_log_limited(HM_LOG_WARN, "bad_tick", 3, HM_LI("i", 12));
    capture(&c);
    assert_int_equal(c.n_lines, 2);
    json_t *j = parse_line(c.lines[0]);
    assert_int_equal(json_integer_value(json_object_get(j, "i")), 11);
    assert_true(json_is_integer(json_object_get(j, "suppressed")));
    assert_int_equal(json_integer_value(json_object_get(j, "suppressed")), 8);
    assert_string_equal(json_string_value(json_object_get(j, "ts")), "2023-11-14T22:14:20.123Z");
    json_decref(j);
    j = parse_line(c.lines[1]);
    assert_null(json_object_get(j, "suppressed")); /* reported once, then reset */
    json_decref(j);
    release(&c);
}

static void test_ratelimit_state_is_per_event_name(void **state) {
    (void)state;
    hm_log_init("svc", HM_LOG_INFO);
    fake_now_ms = T0 + 10 * 60000; /* well past any earlier window */
    for (int i = 0; i < 5; i++) {
        hm_log_limited(HM_LOG_WARN, "late_tick", 1);
        hm_log_limited(HM_LOG_WARN, "crossed_book", 2);
    }
    captured c;
    capture(&c);
    assert_int_equal(c.n_lines, 3);
    assert_non_null(strstr(c.lines[0], "\"event\":\"late_tick\""));
    assert_non_null(strstr(c.lines[1], "\"event\":\"crossed_book\""));
    assert_non_null(strstr(c.lines[2], "\"event\":\"crossed_book\""));
    release(&c);

    fake_now_ms += 60000;
    hm_log_limited(HM_LOG_WARN, "crossed_book", 2);
    hm_log_limited(HM_LOG_WARN, "late_tick", 1);
    capture(&c);
    assert_int_equal(c.n_lines, 2);
    assert_non_null(strstr(c.lines[0], "\"event\":\"crossed_book\",\"suppressed\":3}"));
    assert_non_null(strstr(c.lines[1], "\"event\":\"late_tick\",\"suppressed\":4}"));
    release(&c);
}

static void test_ratelimit_does_not_count_lines_below_the_level(void **state) {
    (void)state;
    hm_log_init("svc", HM_LOG_WARN);
    fake_now_ms = T0 + 20 * 60000;
    for (int i = 0; i < 5; i++)
        hm_log_limited(HM_LOG_INFO, "chatty", 1);
    hm_log_limited(HM_LOG_WARN, "chatty", 1);
    captured c;
    capture(&c);
    assert_int_equal(c.n_lines, 1);
    assert_null(strstr(c.lines[0], "suppressed"));
    release(&c);
}

static void test_ratelimit_beyond_the_table_limits_events_together(void **state) {
    (void)state;
    hm_log_init("svc", HM_LOG_INFO);
    fake_now_ms = T0 + 30 * 60000;
    /* 100 distinct names: 64 slots (some taken by earlier tests) + a shared one. */
    static char names[100][16];
    for (int i = 0; i < 100; i++)
        snprintf(names[i], sizeof(names[i]), "dyn_%d", i);
    for (int i = 0; i < 100; i++)
        hm_log_ratelimited(HM_LOG_WARN, names[i], 1, NULL);
    captured c;
    capture(&c);
    /* Earlier tests took 4 slots (bad_tick, late_tick, crossed_book, chatty): 60
     * names get their own slot, the other 40 share one and only its first line
     * goes out. */
    assert_int_equal(c.n_lines, 60 + 1);
    for (size_t i = 0; i < c.n_lines; i++)
        json_decref(parse_line(c.lines[i]));
    release(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        /* First: relies on the logger never having been initialised. */
        cmocka_unit_test_setup_teardown(test_before_init_lines_say_service_himari_and_level_info,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_has_ts_level_service_event_then_fields_in_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_level_writes_its_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lines_below_the_minimum_level_are_dropped, setup,
                                        teardown),
        cmocka_unit_test(test_level_parse_accepts_the_four_names_only),
        cmocka_unit_test_setup_teardown(
            test_strings_with_quotes_newlines_and_bad_utf8_stay_one_valid_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doubles_are_shortest_and_non_finite_become_null, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_long_line_is_written_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logging_leaves_errno_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ratelimit_suppresses_after_per_minute_then_reports_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratelimit_state_is_per_event_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratelimit_does_not_count_lines_below_the_level, setup,
                                        teardown),
        /* Last: fills the rate-limit table. */
        cmocka_unit_test_setup_teardown(test_ratelimit_beyond_the_table_limits_events_together,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
