// uses: tools/himarictl
/*
 * test_grpc.c: the gRPC server (common/src/grpc_server.c, grpc_health.c) end
 * to end, plus its pure helpers and himarictl's output formatting.
 *
 * A real server runs on a uv loop in the test thread with test handlers for
 * himari.v1.ControlService; a client thread drives it with a real grpc C core
 * client (tools/himarictl/ctl_client.c) over loopback, and only records what
 * it saw: cmocka asserts on the test thread after the loop has ended. When
 * the client is done it wakes the loop (uv_async), the loop shuts the server
 * down, and every test then checks that done ran and that uv_loop_close()
 * finds nothing left. Leaks (a cancelled call not freed) show under the
 * ASan/LSan build.
 *
 * Must never hang: every client call has a deadline, every cross-thread wait
 * is bounded, a watchdog timer aborts a stuck loop, and main() arms alarm().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "ctl_client.h"
#include "ctl_format.h"
#include "grpc/health/v1/health.pb-c.h"
#include "himari/buf.h"
#include "himari/grpc.h"
#include "himari/log.h"
#include "himari/metrics.h"
#include "himari/v1/control.pb-c.h"

#define SVC         "/himari.v1.ControlService/"
#define TOKEN       "s3cret-token"
#define CALL_MS     5000 /* deadline of an ordinary test call */
#define WATCHDOG_MS 30000
#define MAX_REQUEST 1024

/* ---- pure helpers ---------------------------------------------------------- */

static void test_status_names_cover_every_code_and_clamp_the_rest(void **state) {
    (void)state;
    assert_string_equal(hm_grpc_status_name(GRPC_STATUS_OK), "OK");
    assert_string_equal(hm_grpc_status_name(GRPC_STATUS_CANCELLED), "CANCELLED");
    assert_string_equal(hm_grpc_status_name(GRPC_STATUS_INVALID_ARGUMENT), "INVALID_ARGUMENT");
    assert_string_equal(hm_grpc_status_name(GRPC_STATUS_DEADLINE_EXCEEDED), "DEADLINE_EXCEEDED");
    assert_string_equal(hm_grpc_status_name(GRPC_STATUS_NOT_FOUND), "NOT_FOUND");
    assert_string_equal(hm_grpc_status_name(GRPC_STATUS_PERMISSION_DENIED), "PERMISSION_DENIED");
    assert_string_equal(hm_grpc_status_name(GRPC_STATUS_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
    assert_string_equal(hm_grpc_status_name(GRPC_STATUS_UNIMPLEMENTED), "UNIMPLEMENTED");
    assert_string_equal(hm_grpc_status_name(GRPC_STATUS_UNAVAILABLE), "UNAVAILABLE");
    assert_string_equal(hm_grpc_status_name(GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(hm_grpc_status_name((grpc_status_code)17), "UNKNOWN");
    assert_string_equal(hm_grpc_status_name((grpc_status_code)-1), "UNKNOWN");
}

static grpc_status_code bearer(const char *token, const char *value) {
    return hm_grpc_check_bearer(token, value, value ? strlen(value) : 0);
}

static void test_bearer_check_distinguishes_missing_malformed_wrong_and_right(void **state) {
    (void)state;
    assert_int_equal(bearer("tok", NULL), GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(bearer("tok", ""), GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(bearer("tok", "Bearer"), GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(bearer("tok", "Bearer "), GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(bearer("tok", "Basic tok"), GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(bearer("tok", "tok"), GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(bearer("tok", "Bearer  tok"), GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(bearer("tok", "Bearer tok "), GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(bearer("tok", "Bearer\ttok"), GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(bearer("tok", "Bearer to"), GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(bearer("tok", "Bearer tok2"), GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(bearer("tok", "Bearer TOK"), GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(bearer("tok", "Bearer tok"), GRPC_STATUS_OK);
    assert_int_equal(bearer("tok", "bearer tok"), GRPC_STATUS_OK);
    assert_int_equal(bearer("tok", "BEARER tok"), GRPC_STATUS_OK);
    /* The length given is what counts, not a NUL further on. */
    assert_int_equal(hm_grpc_check_bearer("tok", "Bearer tokXYZ", 10), GRPC_STATUS_OK);
}

static void test_bearer_check_without_configured_token_denies_everyone(void **state) {
    (void)state;
    assert_int_equal(bearer(NULL, "Bearer tok"), GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(bearer("", "Bearer "), GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(bearer(NULL, NULL), GRPC_STATUS_PERMISSION_DENIED);
}

static void test_split_path_accepts_package_service_method_only(void **state) {
    (void)state;
    const char *svc, *method;
    size_t sl, ml;
    const char *p = "/himari.v1.ControlService/GetStatus";
    assert_int_equal(hm_grpc_split_path(p, strlen(p), &svc, &sl, &method, &ml), 0);
    assert_int_equal(sl, strlen("himari.v1.ControlService"));
    assert_memory_equal(svc, "himari.v1.ControlService", sl);
    assert_int_equal(ml, strlen("GetStatus"));
    assert_memory_equal(method, "GetStatus", ml);
    p = "/S/M";
    assert_int_equal(hm_grpc_split_path(p, strlen(p), &svc, &sl, &method, &ml), 0);
    assert_int_equal(sl, 1);
    assert_int_equal(ml, 1);

    static const char *const bad[] = {"", "/", "//", "/a/", "//m", "a/b", "/a", "/a/b/c", "x/a/b"};
    for (size_t i = 0; i < HM_ARRAY_LEN(bad); i++)
        assert_int_equal(hm_grpc_split_path(bad[i], strlen(bad[i]), &svc, &sl, &method, &ml),
                         -EINVAL);
    assert_int_equal(hm_grpc_split_path(NULL, 0, &svc, &sl, &method, &ml), -EINVAL);
    /* Only len bytes are the path. */
    p = "/a/b/c";
    assert_int_equal(hm_grpc_split_path(p, 4, &svc, &sl, &method, &ml), 0);
    assert_int_equal(ml, 1);
}

/* ---- himarictl's output ------------------------------------------------------ */

static Himari__V1__Status__DetailsEntry g_detail = HIMARI__V1__STATUS__DETAILS_ENTRY__INIT;
static Himari__V1__Status__DetailsEntry *g_details[] = {&g_detail};

static Himari__V1__Status *sample_status(Himari__V1__Status *st, Himari__V1__PartitionStatus *p,
                                         Himari__V1__PartitionStatus **pp) {
    himari__v1__status__init(st);
    g_detail.key = "backlog_rows";
    g_detail.value = "1200";
    st->n_details = 1;
    st->details = g_details;
    st->service = "ingest-validator";
    st->instance_id = "iv-1";
    st->version = "0.1.0";
    st->state = HIMARI__V1__SERVICE_STATE__SERVICE_STATE_PAUSED;
    st->config_digest = "00ff00ff00ff00ff";
    st->uptime_seconds = 3723.5;
    st->records_in = 120;
    st->records_out = 118;
    st->transactions_committed = 7;
    st->transactions_aborted = 1;
    st->last_error = "broker \"down\"";
    for (int i = 0; i < 2; i++) {
        himari__v1__partition_status__init(&p[i]);
        p[i].topic = "raw_market_data";
        p[i].partition = i;
        p[i].position = i == 0 ? 100 : -1;
        p[i].lag = i == 0 ? 5 : -1;
        pp[i] = &p[i];
    }
    st->n_partitions = 2;
    st->partitions = pp;
    return st;
}

static void test_status_json_is_one_line_with_proto_names_and_unprefixed_enums(void **state) {
    (void)state;
    Himari__V1__Status st;
    Himari__V1__PartitionStatus p[2], *pp[2];
    hm_buf b = HM_BUF_INIT;
    ctl_format_status(&b, sample_status(&st, p, pp), true);
    assert_string_equal(
        b.data, "{\"service\":\"ingest-validator\",\"instance_id\":\"iv-1\",\"version\":\"0.1.0\","
                "\"state\":\"PAUSED\",\"config_digest\":\"00ff00ff00ff00ff\","
                "\"uptime_seconds\":3723.5,\"records_in\":120,\"records_out\":118,"
                "\"transactions_committed\":7,\"transactions_aborted\":1,"
                "\"last_error\":\"broker \\\"down\\\"\",\"partitions\":["
                "{\"topic\":\"raw_market_data\",\"partition\":0,\"position\":100,\"lag\":5},"
                "{\"topic\":\"raw_market_data\",\"partition\":1,\"position\":-1,\"lag\":-1}],"
                "\"details\":{\"backlog_rows\":\"1200\"}}\n");
    hm_buf_free(&b);
}

static void test_status_block_names_every_field_and_tabulates_partitions(void **state) {
    (void)state;
    Himari__V1__Status st;
    Himari__V1__PartitionStatus p[2], *pp[2];
    hm_buf b = HM_BUF_INIT;
    ctl_format_status(&b, sample_status(&st, p, pp), false);
    assert_non_null(strstr(b.data, "service:        ingest-validator\n"));
    assert_non_null(strstr(b.data, "state:          PAUSED\n"));
    assert_non_null(strstr(b.data, "uptime:         1h 02m 03s\n"));
    assert_non_null(strstr(b.data, "config digest:  00ff00ff00ff00ff\n"));
    assert_non_null(strstr(b.data, "records in:     120\n"));
    assert_non_null(strstr(b.data, "transactions:   7 committed, 1 aborted\n"));
    assert_non_null(strstr(b.data, "last error:     broker \"down\"\n"));
    assert_non_null(strstr(b.data, "backlog_rows:   1200\n"));
    assert_non_null(strstr(b.data, "  raw_market_data          0             100             5\n"));
    assert_non_null(strstr(b.data, "  raw_market_data          1               -             -\n"));
    hm_buf_reset(&b);
    st.n_partitions = 0;
    st.last_error = "";
    ctl_format_status(&b, &st, false);
    assert_non_null(strstr(b.data, "last error:     -\n"));
    assert_non_null(strstr(b.data, "partitions:     none assigned\n"));
    hm_buf_free(&b);
}

static void test_small_answers_format_for_people_and_for_jq(void **state) {
    (void)state;
    hm_buf b = HM_BUF_INIT;
    ctl_format_state(&b, HIMARI__V1__SERVICE_STATE__SERVICE_STATE_RUNNING, true);
    assert_string_equal(b.data, "{\"state\":\"RUNNING\"}\n");
    hm_buf_reset(&b);
    ctl_format_state(&b, 42, false);
    assert_string_equal(b.data, "state: STATE_42\n");
    hm_buf_reset(&b);
    char *keys[] = {"validator.max_jump", "grpc.port"};
    Himari__V1__ReloadConfigResponse r = HIMARI__V1__RELOAD_CONFIG_RESPONSE__INIT;
    r.config_digest = "abc";
    r.n_changed_keys = 2;
    r.changed_keys = keys;
    ctl_format_reload(&b, &r, true);
    assert_string_equal(
        b.data,
        "{\"config_digest\":\"abc\",\"changed_keys\":[\"validator.max_jump\",\"grpc.port\"]}\n");
    hm_buf_reset(&b);
    ctl_format_reload(&b, &r, false);
    assert_string_equal(b.data,
                        "config digest:  abc\nchanged keys:   validator.max_jump grpc.port\n");
    hm_buf_reset(&b);
    Himari__V1__DrainResponse d = HIMARI__V1__DRAIN_RESPONSE__INIT;
    d.records_committed = 12;
    ctl_format_drain(&b, &d, true);
    assert_string_equal(b.data, "{\"records_committed\":12}\n");
    hm_buf_reset(&b);
    ctl_format_health(&b, "", 1, true);
    assert_string_equal(b.data, "{\"service\":\"\",\"status\":\"SERVING\"}\n");
    hm_buf_reset(&b);
    ctl_format_health(&b, "himari.v1.ControlService", 2, false);
    assert_string_equal(b.data, "himari.v1.ControlService: NOT_SERVING\n");
    hm_buf_reset(&b);
    ctl_format_duration(&b, 59.9);
    hm_buf_puts(&b, "|");
    ctl_format_duration(&b, 187);
    hm_buf_puts(&b, "|");
    ctl_format_duration(&b, 93784);
    hm_buf_puts(&b, "|");
    ctl_format_duration(&b, -3);
    assert_string_equal(b.data, "59s|3m 07s|1d 02h 03m 04s|0s");
    hm_buf_free(&b);
}

/* ---- the live fixture ---------------------------------------------------------- */

typedef enum loop_cmd {
    CMD_NONE = 0,
    CMD_HEALTH_NOT_SERVING,
    CMD_HEALTH_SERVING,
    CMD_SET_TOKEN_NEW,
    CMD_SNAPSHOT_METRICS,
    CMD_SHUTDOWN,
} loop_cmd;

typedef struct fixture fixture;
typedef void (*scenario_fn)(fixture *f);

struct fixture {
    /* set up by the test (test thread) */
    const char *token;
    scenario_fn scenario;
    int watch_count;                /* WatchStatus messages before OK; 0: until cancelled */
    int max_watch_streams;          /* the server option; 0: its default */
    int64_t max_connection_idle_ms; /* the server options; 0: their defaults */
    int64_t max_connection_age_ms;

    /* loop thread */
    uv_loop_t loop;
    hm_metrics *metrics;
    hm_grpc_server *srv;
    uv_async_t wake;
    uv_timer_t watchdog;
    bool shutdown_started;
    bool done_ran;
    int get_status_calls;
    int64_t last_remaining_ms;
    char last_method[32];
    char *snapshot; /* metrics text rendered by CMD_SNAPSHOT_METRICS (test frees) */

    /* shared (atomics) */
    atomic_int cancels;      /* on_cancel calls seen by handlers */
    atomic_int held;         /* calls a slow handler is holding */
    atomic_int late_replies; /* replies made after the call was cancelled */
    atomic_int watch_live;   /* WatchStatus contexts not yet freed */
    atomic_int cmd_done;

    /* client thread -> loop commands */
    pthread_mutex_t mu;
    loop_cmd cmd;
    bool shutdown_asked; /* client thread only: wake is closed after shutdown */

    int port;
    char target[64];
    pthread_t thread;
    void *result; /* the scenario's own record, read by the test after the run */
};

static bool wait_atomic_ge(atomic_int *v, int want, int ms) {
    for (int i = 0; i < ms; i++) {
        if (atomic_load(v) >= want) return true;
        usleep(1000);
    }
    return atomic_load(v) >= want;
}

/* Run cmd on the loop and wait (bounded) until it ran. */
static bool run_on_loop(fixture *f, loop_cmd cmd) {
    if (f->shutdown_asked) return false;
    if (cmd == CMD_SHUTDOWN) f->shutdown_asked = true;
    int before = atomic_load(&f->cmd_done);
    pthread_mutex_lock(&f->mu);
    f->cmd = cmd;
    pthread_mutex_unlock(&f->mu);
    uv_async_send(&f->wake);
    return wait_atomic_ge(&f->cmd_done, before + 1, 5000);
}

/* -- handlers (loop thread) -- */

static void fill_status(Himari__V1__Status *st, uint64_t n) {
    himari__v1__status__init(st);
    st->service = "test-service";
    st->instance_id = "t-1";
    st->version = HM_VERSION;
    st->state = HIMARI__V1__SERVICE_STATE__SERVICE_STATE_RUNNING;
    st->records_in = n;
    st->records_out = n * 2;
}

static void h_get_status(hm_grpc_call *call, const ProtobufCMessage *request, void *ud) {
    fixture *f = ud;
    assert_ptr_equal(request->descriptor, &himari__v1__get_status_request__descriptor);
    f->get_status_calls++;
    f->last_remaining_ms = hm_grpc_call_remaining_ms(call);
    snprintf(f->last_method, sizeof(f->last_method), "%s", hm_grpc_call_method(call));
    Himari__V1__Status st;
    fill_status(&st, (uint64_t)f->get_status_calls);
    hm_grpc_reply(call, &st.base);
}

static void h_pause(hm_grpc_call *call, const ProtobufCMessage *request, void *ud) {
    (void)request;
    (void)ud;
    Himari__V1__PauseResponse r = HIMARI__V1__PAUSE_RESPONSE__INIT;
    r.state = HIMARI__V1__SERVICE_STATE__SERVICE_STATE_PAUSED;
    hm_grpc_reply(call, &r.base);
}

/* A handler that answers later, from a timer: Resume after 50 ms, ReloadConfig
 * after the number of ms in its path ("hold": never, until cancelled). */
typedef struct slow_ctx {
    fixture *f;
    hm_grpc_call *call;
    uv_timer_t timer;
    bool is_reload;
    bool cancelled;
    bool finished;
} slow_ctx;

static void slow_ctx_closed(uv_handle_t *h) {
    free(h->data);
}

static void slow_finish(slow_ctx *c) {
    if (c->finished) return;
    c->finished = true;
    if (c->cancelled) atomic_fetch_add(&c->f->late_replies, 1);
    if (c->is_reload) {
        Himari__V1__ReloadConfigResponse r = HIMARI__V1__RELOAD_CONFIG_RESPONSE__INIT;
        r.config_digest = "d1g3st";
        hm_grpc_reply(c->call, &r.base);
    } else {
        Himari__V1__ResumeResponse r = HIMARI__V1__RESUME_RESPONSE__INIT;
        r.state = HIMARI__V1__SERVICE_STATE__SERVICE_STATE_RUNNING;
        hm_grpc_reply(c->call, &r.base);
    }
    uv_close((uv_handle_t *)&c->timer, slow_ctx_closed);
}

static void slow_timer_fired(uv_timer_t *t) {
    slow_finish(t->data);
}

static void slow_cancelled(hm_grpc_call *call, void *ud) {
    slow_ctx *c = ud;
    assert_ptr_equal(c->call, call);
    assert_true(hm_grpc_call_cancelled(call));
    c->cancelled = true;
    atomic_fetch_add(&c->f->cancels, 1);
    /* A held call (no timer running) ends now; a timed one keeps its timer and
     * replies late: that reply must be accepted and dropped. */
    if (!uv_is_active((uv_handle_t *)&c->timer)) slow_finish(c);
}

static void start_slow(fixture *f, hm_grpc_call *call, bool is_reload, int64_t delay_ms) {
    slow_ctx *c = hm_xcalloc(1, sizeof(*c));
    c->f = f;
    c->call = call;
    c->is_reload = is_reload;
    uv_timer_init(&f->loop, &c->timer);
    c->timer.data = c;
    hm_grpc_call_set_data(call, c);
    assert_ptr_equal(hm_grpc_call_data(call), c);
    hm_grpc_call_on_cancel(call, slow_cancelled, c);
    if (delay_ms >= 0) uv_timer_start(&c->timer, slow_timer_fired, (uint64_t)delay_ms, 0);
    atomic_fetch_add(&f->held, 1);
}

static void h_resume(hm_grpc_call *call, const ProtobufCMessage *request, void *ud) {
    (void)request;
    start_slow(ud, call, false, 50);
}

static void h_reload(hm_grpc_call *call, const ProtobufCMessage *request, void *ud) {
    const Himari__V1__ReloadConfigRequest *req = (const Himari__V1__ReloadConfigRequest *)request;
    if (strcmp(req->path, "hold") == 0)
        start_slow(ud, call, true, -1);
    else
        start_slow(ud, call, true, atoll(req->path));
}

/* WatchStatus: one Status every interval_ms, watch_count of them, then OK. */
typedef struct watch_ctx {
    fixture *f;
    hm_grpc_call *call;
    uv_timer_t timer;
    uint32_t interval_ms;
    int sent;
} watch_ctx;

static void watch_closed(uv_handle_t *h) {
    watch_ctx *w = h->data;
    atomic_fetch_sub(&w->f->watch_live, 1);
    free(w);
}

static void watch_end(watch_ctx *w, grpc_status_code code, const char *msg) {
    uv_timer_stop(&w->timer);
    hm_grpc_stream_finish(w->call, code, msg);
    uv_close((uv_handle_t *)&w->timer, watch_closed);
}

static void watch_tick(uv_timer_t *t);

static void watch_sent(hm_grpc_call *call, bool ok, void *ud) {
    watch_ctx *w = ud;
    assert_ptr_equal(w->call, call);
    if (!ok) {
        watch_end(w, GRPC_STATUS_CANCELLED, "client went away");
        return;
    }
    if (w->f->watch_count > 0 && w->sent >= w->f->watch_count) {
        watch_end(w, GRPC_STATUS_OK, NULL);
        return;
    }
    uv_timer_start(&w->timer, watch_tick, w->interval_ms, 0);
}

static void watch_tick(uv_timer_t *t) {
    watch_ctx *w = t->data;
    Himari__V1__Status st;
    fill_status(&st, (uint64_t)++w->sent);
    if (w->sent % 2 == 0) {
        /* Every other message packed first and sent as shared bytes (a fan-out's way):
         * the creator's reference goes at once, the send in flight keeps the bytes. */
        hm_grpc_packed *p = hm_grpc_pack(&st.base);
        assert_non_null(p);
        assert_int_equal(hm_grpc_stream_send_packed(w->call, p, watch_sent, w), 0);
        assert_int_equal(hm_grpc_stream_send_packed(w->call, p, watch_sent, w), -EBUSY);
        hm_grpc_packed_unref(p);
        return;
    }
    int rc = hm_grpc_stream_send(w->call, &st.base, watch_sent, w);
    assert_int_equal(rc, 0);
    /* A second send while one is in flight is refused. */
    assert_int_equal(hm_grpc_stream_send(w->call, &st.base, watch_sent, w), -EBUSY);
}

static void watch_cancelled(hm_grpc_call *call, void *ud) {
    watch_ctx *w = ud;
    assert_ptr_equal(w->call, call);
    Himari__V1__Status st;
    fill_status(&st, 0);
    assert_int_equal(hm_grpc_stream_send(call, &st.base, NULL, NULL), -ECANCELED);
    hm_grpc_packed *p = hm_grpc_pack(&st.base);
    assert_int_equal(hm_grpc_stream_send_packed(call, p, NULL, NULL), -ECANCELED);
    hm_grpc_packed_unref(p);
    atomic_fetch_add(&w->f->cancels, 1);
    watch_end(w, GRPC_STATUS_CANCELLED, "cancelled");
}

static void h_watch_status(hm_grpc_call *call, const ProtobufCMessage *request, void *ud) {
    fixture *f = ud;
    const Himari__V1__WatchStatusRequest *req = (const Himari__V1__WatchStatusRequest *)request;
    watch_ctx *w = hm_xcalloc(1, sizeof(*w));
    w->f = f;
    w->call = call;
    w->interval_ms = req->interval_ms;
    uv_timer_init(&f->loop, &w->timer);
    w->timer.data = w;
    atomic_fetch_add(&f->watch_live, 1);
    hm_grpc_call_on_cancel(call, watch_cancelled, w);
    uv_timer_start(&w->timer, watch_tick, 0, 0);
}

/* Drain has no row: calls to it must get UNIMPLEMENTED. */
static const hm_grpc_method control_rows[] = {
    {"GetStatus", h_get_status, 0},
    {"WatchStatus", h_watch_status, HM_GRPC_STREAMING},
    {"Pause", h_pause, HM_GRPC_MUTATING},
    {"Resume", h_resume, HM_GRPC_MUTATING},
    {"ReloadConfig", h_reload, HM_GRPC_MUTATING},
};

/* -- the loop side of the fixture -- */

static void on_server_done(void *ud) {
    fixture *f = ud;
    f->done_ran = true;
    uv_close((uv_handle_t *)&f->wake, NULL);
    uv_timer_stop(&f->watchdog);
    uv_close((uv_handle_t *)&f->watchdog, NULL);
}

static void start_shutdown(fixture *f) {
    if (f->shutdown_started) return;
    f->shutdown_started = true;
    hm_grpc_server_shutdown(f->srv, on_server_done, f);
}

static void on_wake(uv_async_t *a) {
    fixture *f = a->data;
    pthread_mutex_lock(&f->mu);
    loop_cmd cmd = f->cmd;
    f->cmd = CMD_NONE;
    pthread_mutex_unlock(&f->mu);
    switch (cmd) {
        case CMD_NONE:
            return;
        case CMD_HEALTH_NOT_SERVING:
            hm_grpc_health_set(f->srv, "", HM_HEALTH_NOT_SERVING);
            break;
        case CMD_HEALTH_SERVING:
            hm_grpc_health_set(f->srv, "", HM_HEALTH_SERVING);
            break;
        case CMD_SET_TOKEN_NEW:
            hm_grpc_server_set_token(f->srv, "n3w-token");
            break;
        case CMD_SNAPSHOT_METRICS: {
            hm_buf b = HM_BUF_INIT;
            hm_metrics_render(f->metrics, &b);
            free(f->snapshot);
            f->snapshot = b.data;
            break;
        }
        case CMD_SHUTDOWN:
            start_shutdown(f);
            break;
    }
    atomic_fetch_add(&f->cmd_done, 1);
}

static void on_watchdog(uv_timer_t *t) {
    (void)t;
    fprintf(stderr, "test_grpc: watchdog: the loop is still running after %d ms\n", WATCHDOG_MS);
    abort();
}

static void *client_main(void *arg) {
    fixture *f = arg;
    f->scenario(f);
    run_on_loop(f, CMD_SHUTDOWN);
    return NULL;
}

static void run_fixture(fixture *f) {
    f->metrics = hm_metrics_new();
    pthread_mutex_init(&f->mu, NULL);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    hm_grpc_opts o = {.port = 0,
                      .token = f->token,
                      .max_request_bytes = MAX_REQUEST,
                      .max_watch_streams = f->max_watch_streams,
                      .max_connection_idle_ms = f->max_connection_idle_ms,
                      .max_connection_age_ms = f->max_connection_age_ms,
                      .metrics = f->metrics};
    hm_err err;
    int rc = hm_grpc_server_start(&f->loop, &o, &f->srv, &err);
    if (rc != 0) fail_msg("server start: %s", err.msg);
    hm_grpc_server_add_service(f->srv, &himari__v1__control_service__descriptor, control_rows,
                               HM_ARRAY_LEN(control_rows), f);
    f->port = hm_grpc_server_port(f->srv);
    assert_true(f->port > 0);
    snprintf(f->target, sizeof(f->target), "127.0.0.1:%d", f->port);
    uv_async_init(&f->loop, &f->wake, on_wake);
    f->wake.data = f;
    uv_timer_init(&f->loop, &f->watchdog);
    uv_timer_start(&f->watchdog, on_watchdog, WATCHDOG_MS, 0);
    assert_int_equal(pthread_create(&f->thread, NULL, client_main, f), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    pthread_join(f->thread, NULL);
    assert_true(f->done_ran);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    assert_int_equal(atomic_load(&f->watch_live), 0);
    pthread_mutex_destroy(&f->mu);
}

static void fixture_free(fixture *f) {
    hm_metrics_free(f->metrics);
    free(f->result);
    free(f->snapshot);
}

/* The metrics text, for assertions (caller frees). */
static char *render_metrics(fixture *f) {
    hm_buf b = HM_BUF_INIT;
    hm_metrics_render(f->metrics, &b);
    return b.data;
}

static void assert_metric_line(const char *text, const char *line) {
    if (!strstr(text, line)) fail_msg("metrics lack the line: %s\n--- metrics:\n%s", line, text);
}

/* -- client helpers (client thread) -- */

typedef struct unary_out {
    ctl_result res;
    ProtobufCMessage *resp;
} unary_out;

static void unary(ctl_client *c, const char *path, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *out, const char *auth, int64_t timeout_ms,
                  unary_out *o) {
    if (ctl_unary(c, path, req, out, auth, timeout_ms, &o->resp, &o->res) != 0)
        o->res.code = (grpc_status_code)-1;
}

static void unary_free(unary_out *o) {
    if (o->resp) protobuf_c_message_free_unpacked(o->resp, NULL);
    o->resp = NULL;
}

/* ---- routing ---------------------------------------------------------------- */

typedef struct routing_rec {
    unary_out st1, st2, pause;
    int64_t st1_in, st2_in, st2_out;
    char st1_service[32];
    int pause_state;
    ctl_result no_deadline;
} routing_rec;

static void scenario_routing(fixture *f) {
    routing_rec *r = hm_xcalloc(1, sizeof(*r));
    f->result = r;
    ctl_client *c = ctl_client_new(f->target);
    Himari__V1__GetStatusRequest gs = HIMARI__V1__GET_STATUS_REQUEST__INIT;
    unary(c, SVC "GetStatus", &gs.base, &himari__v1__status__descriptor, NULL, 2000, &r->st1);
    if (r->st1.resp) {
        const Himari__V1__Status *s = (const Himari__V1__Status *)r->st1.resp;
        r->st1_in = (int64_t)s->records_in;
        snprintf(r->st1_service, sizeof(r->st1_service), "%s", s->service);
    }
    unary(c, SVC "GetStatus", &gs.base, &himari__v1__status__descriptor, NULL, CALL_MS, &r->st2);
    if (r->st2.resp) {
        r->st2_in = (int64_t)((const Himari__V1__Status *)r->st2.resp)->records_in;
        r->st2_out = (int64_t)((const Himari__V1__Status *)r->st2.resp)->records_out;
    }
    Himari__V1__PauseRequest pr = HIMARI__V1__PAUSE_REQUEST__INIT;
    unary(c, SVC "Pause", &pr.base, &himari__v1__pause_response__descriptor, "Bearer " TOKEN,
          CALL_MS, &r->pause);
    if (r->pause.resp)
        r->pause_state = (int)((const Himari__V1__PauseResponse *)r->pause.resp)->state;
    unary_free(&r->st1);
    unary_free(&r->st2);
    unary_free(&r->pause);
    ctl_client_free(c);
}

static void test_calls_reach_their_handlers_with_decoded_requests(void **state) {
    (void)state;
    fixture f = {.token = TOKEN, .scenario = scenario_routing};
    run_fixture(&f);
    routing_rec *r = f.result;
    assert_int_equal(r->st1.res.code, GRPC_STATUS_OK);
    assert_int_equal(r->st1_in, 1);
    assert_string_equal(r->st1_service, "test-service");
    assert_int_equal(r->st2.res.code, GRPC_STATUS_OK);
    assert_int_equal(r->st2_in, 2);
    assert_int_equal(r->st2_out, 4);
    assert_int_equal(r->pause.res.code, GRPC_STATUS_OK);
    assert_int_equal(r->pause_state, HIMARI__V1__SERVICE_STATE__SERVICE_STATE_PAUSED);
    assert_int_equal(f.get_status_calls, 2);
    assert_string_equal(f.last_method, "GetStatus");
    /* The second call had a 5 s deadline (grpc rounds the timeout it sends up
     * a little). */
    assert_true(f.last_remaining_ms > 3000 && f.last_remaining_ms <= CALL_MS + 100);
    char *m = render_metrics(&f);
    assert_metric_line(
        m,
        "himari_grpc_calls_total{method=\"himari.v1.ControlService/GetStatus\",code=\"OK\"} 2\n");
    assert_metric_line(
        m, "himari_grpc_calls_total{method=\"himari.v1.ControlService/Pause\",code=\"OK\"} 1\n");
    assert_metric_line(
        m, "himari_grpc_handling_seconds_count{method=\"himari.v1.ControlService/GetStatus\"} 2\n");
    free(m);
    fixture_free(&f);
}

/* ---- refusals ------------------------------------------------------------------- */

typedef struct refusal_rec {
    ctl_result unknown_svc, no_row, no_method, garbage, oversized, after;
    char garbage_msg[512];
} refusal_rec;

static void scenario_refusals(fixture *f) {
    refusal_rec *r = hm_xcalloc(1, sizeof(*r));
    f->result = r;
    ctl_client *c = ctl_client_new(f->target);
    ctl_unary_raw(c, "/x.Y/Z", "", 0, NULL, CALL_MS, &r->unknown_svc, NULL, NULL);
    ctl_unary_raw(c, SVC "Drain", "", 0, "Bearer " TOKEN, CALL_MS, &r->no_row, NULL, NULL);
    ctl_unary_raw(c, SVC "Nope", "", 0, NULL, CALL_MS, &r->no_method, NULL, NULL);
    /* Field 1, length-delimited, says 5 bytes follow; 2 do. */
    static const char garbage[] = {0x0a, 0x05, 'a', 'b'};
    ctl_unary_raw(c, SVC "GetStatus", garbage, sizeof(garbage), NULL, CALL_MS, &r->garbage, NULL,
                  NULL);
    /* A well-formed message (unknown field 15, 4000 bytes) over the 1024-byte limit. */
    size_t n = 4003;
    char *big = hm_xcalloc(1, n);
    big[0] = 0x7a; /* field 15, wire type 2 */
    big[1] = (char)(0x80 | (4000 & 0x7f));
    big[2] = (char)(4000 >> 7);
    ctl_unary_raw(c, SVC "GetStatus", big, n, NULL, CALL_MS, &r->oversized, NULL, NULL);
    free(big);
    Himari__V1__GetStatusRequest gs = HIMARI__V1__GET_STATUS_REQUEST__INIT;
    unary_out after = {0};
    unary(c, SVC "GetStatus", &gs.base, &himari__v1__status__descriptor, NULL, CALL_MS, &after);
    r->after = after.res;
    unary_free(&after);
    ctl_client_free(c);
}

static void test_unknown_undecodable_and_oversized_requests_are_refused_with_codes(void **state) {
    (void)state;
    fixture f = {.token = TOKEN, .scenario = scenario_refusals};
    run_fixture(&f);
    refusal_rec *r = f.result;
    assert_int_equal(r->unknown_svc.code, GRPC_STATUS_UNIMPLEMENTED);
    assert_int_equal(r->no_row.code, GRPC_STATUS_UNIMPLEMENTED);
    assert_int_equal(r->no_method.code, GRPC_STATUS_UNIMPLEMENTED);
    assert_int_equal(r->garbage.code, GRPC_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(r->garbage.message, "himari.v1.GetStatusRequest"));
    assert_int_equal(r->oversized.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(r->after.code, GRPC_STATUS_OK);
    assert_int_equal(f.get_status_calls, 1); /* neither refusal reached the handler */
    char *m = render_metrics(&f);
    assert_metric_line(m, "himari_grpc_calls_total{method=\"unknown\",code=\"UNIMPLEMENTED\"} 2\n");
    assert_metric_line(m, "himari_grpc_calls_total{method=\"himari.v1.ControlService/Drain\","
                          "code=\"UNIMPLEMENTED\"} 1\n");
    assert_metric_line(m, "himari_grpc_calls_total{method=\"himari.v1.ControlService/GetStatus\","
                          "code=\"INVALID_ARGUMENT\"} 1\n");
    assert_metric_line(m, "himari_grpc_calls_total{method=\"himari.v1.ControlService/GetStatus\","
                          "code=\"RESOURCE_EXHAUSTED\"} 1\n");
    free(m);
    fixture_free(&f);
}

/* ---- the bearer token ------------------------------------------------------------ */

typedef struct token_rec {
    ctl_result none, wrong, basic, lower, right, old_after_swap, new_after_swap, read_only;
    bool swapped;
} token_rec;

static void pause_with(ctl_client *c, const char *auth, ctl_result *out) {
    Himari__V1__PauseRequest pr = HIMARI__V1__PAUSE_REQUEST__INIT;
    unary_out o = {0};
    unary(c, SVC "Pause", &pr.base, &himari__v1__pause_response__descriptor, auth, CALL_MS, &o);
    *out = o.res;
    unary_free(&o);
}

static void scenario_tokens(fixture *f) {
    token_rec *r = hm_xcalloc(1, sizeof(*r));
    f->result = r;
    ctl_client *c = ctl_client_new(f->target);
    pause_with(c, NULL, &r->none);
    pause_with(c, "Bearer wrong", &r->wrong);
    pause_with(c, "Basic " TOKEN, &r->basic);
    pause_with(c, "bearer " TOKEN, &r->lower);
    pause_with(c, "Bearer " TOKEN, &r->right);
    r->swapped = run_on_loop(f, CMD_SET_TOKEN_NEW);
    pause_with(c, "Bearer " TOKEN, &r->old_after_swap);
    pause_with(c, "Bearer n3w-token", &r->new_after_swap);
    /* Read-only methods need no token. */
    Himari__V1__GetStatusRequest gs = HIMARI__V1__GET_STATUS_REQUEST__INIT;
    unary_out o = {0};
    unary(c, SVC "GetStatus", &gs.base, &himari__v1__status__descriptor, "Bearer junk", CALL_MS,
          &o);
    r->read_only = o.res;
    unary_free(&o);
    ctl_client_free(c);
}

static void test_mutating_calls_need_the_right_bearer_token(void **state) {
    (void)state;
    fixture f = {.token = TOKEN, .scenario = scenario_tokens};
    run_fixture(&f);
    token_rec *r = f.result;
    assert_int_equal(r->none.code, GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(r->wrong.code, GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(r->basic.code, GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(r->lower.code, GRPC_STATUS_OK);
    assert_int_equal(r->right.code, GRPC_STATUS_OK);
    assert_true(r->swapped);
    assert_int_equal(r->old_after_swap.code, GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(r->new_after_swap.code, GRPC_STATUS_OK);
    assert_int_equal(r->read_only.code, GRPC_STATUS_OK);
    /* The token never appears in a status message. */
    assert_null(strstr(r->wrong.message, TOKEN));
    fixture_free(&f);
}

static void scenario_no_token(fixture *f) {
    token_rec *r = hm_xcalloc(1, sizeof(*r));
    f->result = r;
    ctl_client *c = ctl_client_new(f->target);
    pause_with(c, "Bearer anything", &r->wrong);
    pause_with(c, NULL, &r->none);
    ctl_client_free(c);
}

static void test_mutating_calls_are_closed_when_no_token_is_configured(void **state) {
    (void)state;
    fixture f = {.token = NULL, .scenario = scenario_no_token};
    run_fixture(&f);
    token_rec *r = f.result;
    assert_int_equal(r->wrong.code, GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(r->none.code, GRPC_STATUS_PERMISSION_DENIED);
    assert_non_null(strstr(r->wrong.message, "no token configured"));
    fixture_free(&f);
}

/* ---- replies later, deadlines ----------------------------------------------------- */

typedef struct delay_rec {
    ctl_result delayed, deadline, next;
    int resume_state;
    double delayed_ms;
    bool cancel_seen, late_reply_seen;
} delay_rec;

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void scenario_delays(fixture *f) {
    delay_rec *r = hm_xcalloc(1, sizeof(*r));
    f->result = r;
    ctl_client *c = ctl_client_new(f->target);
    Himari__V1__ResumeRequest rr = HIMARI__V1__RESUME_REQUEST__INIT;
    unary_out o = {0};
    double t0 = mono_ms();
    unary(c, SVC "Resume", &rr.base, &himari__v1__resume_response__descriptor, "Bearer " TOKEN,
          CALL_MS, &o);
    r->delayed_ms = mono_ms() - t0;
    r->delayed = o.res;
    if (o.resp) r->resume_state = (int)((const Himari__V1__ResumeResponse *)o.resp)->state;
    unary_free(&o);

    /* The handler answers after 400 ms; the client gives up after 100 ms. */
    Himari__V1__ReloadConfigRequest rl = HIMARI__V1__RELOAD_CONFIG_REQUEST__INIT;
    rl.path = "400";
    unary(c, SVC "ReloadConfig", &rl.base, &himari__v1__reload_config_response__descriptor,
          "Bearer " TOKEN, 100, &o);
    r->deadline = o.res;
    unary_free(&o);
    r->cancel_seen = wait_atomic_ge(&f->cancels, 1, 3000);
    Himari__V1__GetStatusRequest gs = HIMARI__V1__GET_STATUS_REQUEST__INIT;
    unary(c, SVC "GetStatus", &gs.base, &himari__v1__status__descriptor, NULL, CALL_MS, &o);
    r->next = o.res;
    unary_free(&o);
    r->late_reply_seen = wait_atomic_ge(&f->late_replies, 1, 3000);
    ctl_client_free(c);
}

static void test_handler_may_answer_later_and_a_passed_deadline_cancels_it(void **state) {
    (void)state;
    fixture f = {.token = TOKEN, .scenario = scenario_delays};
    run_fixture(&f);
    delay_rec *r = f.result;
    assert_int_equal(r->delayed.code, GRPC_STATUS_OK);
    assert_int_equal(r->resume_state, HIMARI__V1__SERVICE_STATE__SERVICE_STATE_RUNNING);
    assert_true(r->delayed_ms >= 45.0);
    assert_int_equal(r->deadline.code, GRPC_STATUS_DEADLINE_EXCEEDED);
    assert_true(r->cancel_seen);
    assert_int_equal(r->next.code, GRPC_STATUS_OK);
    assert_true(r->late_reply_seen); /* replied after cancel: accepted, dropped */
    assert_int_equal(atomic_load(&f.cancels), 1);
    char *m = render_metrics(&f);
    assert_metric_line(m,
                       "himari_grpc_calls_total{method=\"himari.v1.ControlService/ReloadConfig\","
                       "code=\"DEADLINE_EXCEEDED\"} 1\n");
    assert_metric_line(
        m, "himari_grpc_calls_total{method=\"himari.v1.ControlService/Resume\",code=\"OK\"} 1\n");
    free(m);
    fixture_free(&f);
}

/* ---- streaming ------------------------------------------------------------------------ */

typedef struct stream_rec {
    int n;
    int64_t seq[16];
    ctl_result end;
    bool cancel_seen;
} stream_rec;

static void read_stream(fixture *f, stream_rec *r, int stop_after) {
    ctl_client *c = ctl_client_new(f->target);
    Himari__V1__WatchStatusRequest req = HIMARI__V1__WATCH_STATUS_REQUEST__INIT;
    req.interval_ms = 5;
    ctl_stream *st = NULL;
    ctl_stream_open(c, SVC "WatchStatus", &req.base, NULL, CALL_MS, &st);
    for (;;) {
        ProtobufCMessage *m = NULL;
        if (ctl_stream_next(st, &himari__v1__status__descriptor, &m) != 1) break;
        if (r->n < 16) r->seq[r->n] = (int64_t)((const Himari__V1__Status *)m)->records_in;
        r->n++;
        protobuf_c_message_free_unpacked(m, NULL);
        if (stop_after > 0 && r->n == stop_after) {
            ctl_stream_cancel(st);
            break;
        }
    }
    ctl_stream_close(st, &r->end);
    ctl_client_free(c);
}

static void scenario_stream_full(fixture *f) {
    stream_rec *r = hm_xcalloc(1, sizeof(*r));
    f->result = r;
    read_stream(f, r, 0);
}

static void test_server_stream_sends_every_message_then_ok(void **state) {
    (void)state;
    fixture f = {.token = TOKEN, .scenario = scenario_stream_full, .watch_count = 5};
    run_fixture(&f);
    stream_rec *r = f.result;
    assert_int_equal(r->end.code, GRPC_STATUS_OK);
    assert_int_equal(r->n, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(r->seq[i], i + 1);
    assert_int_equal(atomic_load(&f.cancels), 0);
    fixture_free(&f);
}

static void scenario_stream_cancel(fixture *f) {
    stream_rec *r = hm_xcalloc(1, sizeof(*r));
    f->result = r;
    read_stream(f, r, 3);
    r->cancel_seen = wait_atomic_ge(&f->cancels, 1, 3000);
    /* The handler freed its context (its timer closed) before shutdown. */
    for (int i = 0; i < 3000 && atomic_load(&f->watch_live) > 0; i++)
        usleep(1000);
}

static void test_client_cancelling_a_stream_midway_runs_on_cancel_and_frees_the_call(void **state) {
    (void)state;
    fixture f = {.token = TOKEN, .scenario = scenario_stream_cancel, .watch_count = 0};
    run_fixture(&f);
    stream_rec *r = f.result;
    assert_int_equal(r->n, 3);
    assert_int_equal(r->end.code, GRPC_STATUS_CANCELLED);
    assert_true(r->cancel_seen);
    assert_int_equal(atomic_load(&f.cancels), 1);
    char *m = render_metrics(&f);
    assert_metric_line(m, "himari_grpc_calls_total{method=\"himari.v1.ControlService/WatchStatus\","
                          "code=\"CANCELLED\"} 1\n");
    free(m);
    fixture_free(&f);
}

/* ---- many clients at once ------------------------------------------------------------- */

#define PAR_THREADS 8
#define PAR_CALLS   25

typedef struct par_arg {
    fixture *f;
    int ok;
} par_arg;

static void *par_client(void *arg) {
    par_arg *a = arg;
    ctl_client *c = ctl_client_new(a->f->target);
    Himari__V1__GetStatusRequest gs = HIMARI__V1__GET_STATUS_REQUEST__INIT;
    for (int i = 0; i < PAR_CALLS; i++) {
        unary_out o = {0};
        unary(c, SVC "GetStatus", &gs.base, &himari__v1__status__descriptor, NULL, CALL_MS, &o);
        if (o.res.code == GRPC_STATUS_OK) a->ok++;
        unary_free(&o);
    }
    ctl_client_free(c);
    return NULL;
}

static void scenario_parallel(fixture *f) {
    par_arg *args = hm_xcalloc(PAR_THREADS, sizeof(*args));
    f->result = args;
    pthread_t th[PAR_THREADS];
    for (int i = 0; i < PAR_THREADS; i++) {
        args[i].f = f;
        pthread_create(&th[i], NULL, par_client, &args[i]);
    }
    for (int i = 0; i < PAR_THREADS; i++)
        pthread_join(th[i], NULL);
}

static void test_concurrent_clients_are_all_served(void **state) {
    (void)state;
    fixture f = {.token = TOKEN, .scenario = scenario_parallel};
    run_fixture(&f);
    par_arg *args = f.result;
    for (int i = 0; i < PAR_THREADS; i++)
        assert_int_equal(args[i].ok, PAR_CALLS);
    assert_int_equal(f.get_status_calls, PAR_THREADS * PAR_CALLS);
    fixture_free(&f);
}

/* ---- health ------------------------------------------------------------------------------ */

typedef struct health_rec {
    ctl_result check_unset, check_unknown_name;
    int check_not_serving, check_serving;
    int watch_first, watch_second, watch_unknown_first;
    ctl_result watch_end, unknown_end;
    bool set1, set2;
} health_rec;

static int health_check(ctl_client *c, const char *name, ctl_result *res) {
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)name;
    ProtobufCMessage *resp = NULL;
    ctl_unary(c, "/grpc.health.v1.Health/Check", &req.base,
              &grpc__health__v1__health_check_response__descriptor, NULL, CALL_MS, &resp, res);
    int v = resp ? (int)((Grpc__Health__V1__HealthCheckResponse *)resp)->status : -1;
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    return v;
}

static ctl_stream *health_watch(ctl_client *c, const char *name) {
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)name;
    ctl_stream *st = NULL;
    ctl_stream_open(c, "/grpc.health.v1.Health/Watch", &req.base, NULL, CALL_MS, &st);
    return st;
}

static int health_next(ctl_stream *st) {
    ProtobufCMessage *m = NULL;
    if (ctl_stream_next(st, &grpc__health__v1__health_check_response__descriptor, &m) != 1)
        return -1;
    int v = (int)((Grpc__Health__V1__HealthCheckResponse *)m)->status;
    protobuf_c_message_free_unpacked(m, NULL);
    return v;
}

static void scenario_health(fixture *f) {
    health_rec *r = hm_xcalloc(1, sizeof(*r));
    f->result = r;
    ctl_client *c = ctl_client_new(f->target);
    health_check(c, "", &r->check_unset);
    r->set1 = run_on_loop(f, CMD_HEALTH_NOT_SERVING);
    ctl_result res;
    r->check_not_serving = health_check(c, "", &res);
    ctl_stream *w = health_watch(c, "");
    r->watch_first = health_next(w);
    r->set2 = run_on_loop(f, CMD_HEALTH_SERVING);
    r->watch_second = health_next(w);
    r->check_serving = health_check(c, "", &res);
    health_check(c, "no.such.Service", &r->check_unknown_name);
    ctl_stream *u = health_watch(c, "no.such.Service");
    r->watch_unknown_first = health_next(u);
    ctl_stream_cancel(w);
    ctl_stream_close(w, &r->watch_end);
    ctl_stream_cancel(u);
    ctl_stream_close(u, &r->unknown_end);
    ctl_client_free(c);
}

static void test_health_check_and_watch_follow_not_serving_to_serving(void **state) {
    (void)state;
    fixture f = {.token = TOKEN, .scenario = scenario_health};
    run_fixture(&f);
    health_rec *r = f.result;
    assert_int_equal(r->check_unset.code, GRPC_STATUS_NOT_FOUND);
    assert_true(r->set1 && r->set2);
    assert_int_equal(r->check_not_serving, HM_HEALTH_NOT_SERVING);
    assert_int_equal(r->watch_first, HM_HEALTH_NOT_SERVING);
    assert_int_equal(r->watch_second, HM_HEALTH_SERVING);
    assert_int_equal(r->check_serving, HM_HEALTH_SERVING);
    assert_int_equal(r->check_unknown_name.code, GRPC_STATUS_NOT_FOUND);
    assert_int_equal(r->watch_unknown_first,
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN);
    assert_int_equal(r->watch_end.code, GRPC_STATUS_CANCELLED);
    assert_int_equal(r->unknown_end.code, GRPC_STATUS_CANCELLED);
    fixture_free(&f);
}

/* ---- the cap on open streams ---------------------------------------------------------------- */

#define CAP_DEFAULT 16 /* what the server allows when the option is 0 */

typedef struct cap_rec {
    int opened;             /* streams that delivered a first message */
    ctl_result over_watch;  /* WatchStatus beyond the cap */
    ctl_result over_health; /* Health/Watch beyond the cap (same cap) */
    int first_after_close;  /* a new stream once one closed: messages seen (1) */
    char *while_full;       /* the metrics text while the cap was reached */
} cap_rec;

static ctl_stream *open_watch(ctl_client *c, uint32_t interval_ms) {
    Himari__V1__WatchStatusRequest req = HIMARI__V1__WATCH_STATUS_REQUEST__INIT;
    req.interval_ms = interval_ms;
    ctl_stream *st = NULL;
    if (ctl_stream_open(c, SVC "WatchStatus", &req.base, NULL, CALL_MS, &st) != 0) return NULL;
    return st;
}

/* 1 when the stream delivered a message, 0 when it ended first (its status in res). */
static int first_message(ctl_stream *st, ctl_result *res) {
    ProtobufCMessage *m = NULL;
    if (ctl_stream_next(st, &himari__v1__status__descriptor, &m) == 1) {
        protobuf_c_message_free_unpacked(m, NULL);
        return 1;
    }
    ctl_stream_close(st, res);
    return 0;
}

static void scenario_stream_cap(fixture *f) {
    cap_rec *r = hm_xcalloc(1, sizeof(*r));
    f->result = r;
    int cap = f->max_watch_streams > 0 ? f->max_watch_streams : CAP_DEFAULT;
    ctl_client *c = ctl_client_new(f->target);
    ctl_stream *open_ones[CAP_DEFAULT];
    ctl_result res;
    for (int i = 0; i < cap; i++) {
        open_ones[i] = open_watch(c, 20);
        if (open_ones[i] && first_message(open_ones[i], &res) == 1)
            r->opened++;
        else
            open_ones[i] = NULL;
    }
    ctl_stream *over = open_watch(c, 20);
    if (over && first_message(over, &r->over_watch) == 1) {
        r->over_watch.code = GRPC_STATUS_OK; /* served: the cap did not hold */
        ctl_stream_cancel(over);
        ctl_stream_close(over, &res);
    }
    ctl_stream *h = health_watch(c, "");
    if (h && health_next(h) >= 0) {
        r->over_health.code = GRPC_STATUS_OK;
        ctl_stream_cancel(h);
        ctl_stream_close(h, &res);
    } else if (h) {
        ctl_stream_close(h, &r->over_health);
    }
    if (run_on_loop(f, CMD_SNAPSHOT_METRICS)) {
        r->while_full = f->snapshot;
        f->snapshot = NULL;
    }
    /* Closing one frees its place: a new stream is served (once the server has
     * freed the closed call, so try for a while). */
    if (open_ones[0]) {
        ctl_stream_cancel(open_ones[0]);
        ctl_stream_close(open_ones[0], &res);
        open_ones[0] = NULL;
    }
    for (int attempt = 0; attempt < 100 && r->first_after_close == 0; attempt++) {
        ctl_stream *again = open_watch(c, 20);
        if (again && first_message(again, &res) == 1) {
            r->first_after_close = 1;
            ctl_stream_cancel(again);
            ctl_stream_close(again, &res);
        } else {
            usleep(20 * 1000);
        }
    }
    for (int i = 0; i < cap; i++) {
        if (!open_ones[i]) continue;
        ctl_stream_cancel(open_ones[i]);
        ctl_stream_close(open_ones[i], &res);
    }
    ctl_client_free(c);
    /* Every handler freed its context before shutdown. */
    for (int i = 0; i < 3000 && atomic_load(&f->watch_live) > 0; i++)
        usleep(1000);
}

static void test_watch_streams_beyond_the_default_cap_are_refused_until_one_closes(void **state) {
    (void)state;
    fixture f = {.token = TOKEN, .scenario = scenario_stream_cap};
    run_fixture(&f);
    cap_rec *r = f.result;
    assert_int_equal(r->opened, CAP_DEFAULT);
    assert_int_equal(r->over_watch.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(r->over_watch.message, "grpc.max_watch_streams"));
    /* Health/Watch is a stream that stays open too: the same cap. */
    assert_int_equal(r->over_health.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(r->first_after_close, 1);
    assert_non_null(r->while_full);
    assert_metric_line(r->while_full, "\nhimari_grpc_watch_streams 16\n");
    assert_metric_line(r->while_full, "\nhimari_grpc_watch_streams_refused_total 2\n");
    free(r->while_full);
    char *m = render_metrics(&f);
    assert_metric_line(m, "\nhimari_grpc_watch_streams 0\n");
    assert_metric_line(m, "himari_grpc_calls_total{method=\"himari.v1.ControlService/WatchStatus\","
                          "code=\"RESOURCE_EXHAUSTED\"} 1\n");
    free(m);
    fixture_free(&f);
}

static void test_max_watch_streams_option_sets_the_cap(void **state) {
    (void)state;
    fixture f = {.token = TOKEN, .scenario = scenario_stream_cap, .max_watch_streams = 2};
    run_fixture(&f);
    cap_rec *r = f.result;
    assert_int_equal(r->opened, 2);
    assert_int_equal(r->over_watch.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(r->over_watch.message, "grpc.max_watch_streams: 2"));
    assert_int_equal(r->over_health.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(r->first_after_close, 1);
    free(r->while_full);
    fixture_free(&f);
}

/* ---- shutdown with calls in flight -------------------------------------------------------- */

typedef struct shutdown_rec {
    fixture *f;
    ctl_result held_call, watch_end;
    int watch_first;
    bool held_seen;
} shutdown_rec;

static void *held_caller(void *arg) {
    shutdown_rec *r = arg;
    ctl_client *c = ctl_client_new(r->f->target);
    Himari__V1__ReloadConfigRequest rl = HIMARI__V1__RELOAD_CONFIG_REQUEST__INIT;
    rl.path = "hold";
    unary_out o = {0};
    unary(c, SVC "ReloadConfig", &rl.base, &himari__v1__reload_config_response__descriptor,
          "Bearer " TOKEN, 10000, &o);
    r->held_call = o.res;
    unary_free(&o);
    ctl_client_free(c);
    return NULL;
}

static void scenario_shutdown(fixture *f) {
    shutdown_rec *r = hm_xcalloc(1, sizeof(*r));
    f->result = r;
    r->f = f;
    run_on_loop(f, CMD_HEALTH_SERVING);
    ctl_client *c = ctl_client_new(f->target);
    ctl_stream *w = health_watch(c, "");
    r->watch_first = health_next(w);
    pthread_t th;
    pthread_create(&th, NULL, held_caller, r);
    r->held_seen = wait_atomic_ge(&f->held, 1, 5000);
    run_on_loop(f, CMD_SHUTDOWN); /* with the held call and the Watch open */
    pthread_join(th, NULL);
    ctl_stream_close(w, &r->watch_end);
    ctl_client_free(c);
}

static void test_shutdown_with_calls_in_flight_cancels_them_and_finishes(void **state) {
    (void)state;
    fixture f = {.token = TOKEN, .scenario = scenario_shutdown};
    run_fixture(&f); /* done ran, the loop closes with nothing left */
    shutdown_rec *r = f.result;
    assert_true(r->held_seen);
    assert_int_equal(atomic_load(&f.cancels), 1);
    assert_true(r->held_call.code == GRPC_STATUS_CANCELLED ||
                r->held_call.code == GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(r->watch_first, HM_HEALTH_SERVING);
    assert_int_equal(r->watch_end.code, GRPC_STATUS_UNAVAILABLE);
    assert_non_null(strstr(r->watch_end.message, "shutting down"));
    fixture_free(&f);
}

/* ---- start-up failures ----------------------------------------------------------------------- */

static void on_plain_done(void *ud) {
    *(bool *)ud = true;
}

static void test_taken_port_fails_start_naming_the_address_and_leaves_nothing_open(void **state) {
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    hm_metrics *m = hm_metrics_new();
    hm_grpc_opts o = {.port = 0, .metrics = m};
    hm_grpc_server *a = NULL, *b = NULL;
    hm_err err;
    assert_int_equal(hm_grpc_server_start(&loop, &o, &a, &err), 0);
    o.port = hm_grpc_server_port(a);
    int rc = hm_grpc_server_start(&loop, &o, &b, &err);
    assert_int_equal(rc, -EADDRINUSE);
    assert_null(b);
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%d", o.port);
    assert_non_null(strstr(err.msg, want));
    o.port = 70000;
    assert_int_equal(hm_grpc_server_start(&loop, &o, &b, &err), -EINVAL);
    bool done = false;
    hm_grpc_server_shutdown(a, on_plain_done, &done);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(done);
    assert_int_equal(uv_loop_close(&loop), 0);
    hm_metrics_free(m);
}

/* ---- HTTP/2 limits, seen on the wire ------------------------------------------------------------
 */

/* A raw HTTP/2 client, frame by frame, to see what grpc core was told: its
 * SETTINGS, its GOAWAYs. Blocking, with a receive timeout (client thread). */
typedef struct h2_conn {
    int fd;
    unsigned char buf[64 * 1024];
    size_t len;
} h2_conn;

typedef struct h2_frame {
    unsigned type, flags;
    uint32_t stream;
    unsigned char payload[1024];
    size_t len; /* of the whole payload; at most sizeof(payload) of it kept */
} h2_frame;

static int h2_open(h2_conn *c, int port) {
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return -1;
    struct timeval tv = {.tv_sec = 5, .tv_usec = 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) return -1;
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    static const unsigned char settings[] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    if (send(c->fd, preface, strlen(preface), MSG_NOSIGNAL) != (ssize_t)strlen(preface)) return -1;
    if (send(c->fd, settings, sizeof(settings), MSG_NOSIGNAL) != (ssize_t)sizeof(settings))
        return -1;
    return 0;
}

/* The next frame: 1, 0 at EOF, -1 on error or after 5 s of silence. */
static int h2_next(h2_conn *c, h2_frame *fr) {
    for (;;) {
        if (c->len >= 9) {
            size_t n = (size_t)c->buf[0] << 16 | (size_t)c->buf[1] << 8 | c->buf[2];
            if (n > sizeof(c->buf) - 9) return -1;
            if (c->len >= 9 + n) {
                fr->len = n;
                fr->type = c->buf[3];
                fr->flags = c->buf[4];
                fr->stream = ((uint32_t)c->buf[5] & 0x7f) << 24 | (uint32_t)c->buf[6] << 16 |
                             (uint32_t)c->buf[7] << 8 | c->buf[8];
                memcpy(fr->payload, c->buf + 9, n < sizeof(fr->payload) ? n : sizeof(fr->payload));
                memmove(c->buf, c->buf + 9 + n, c->len - 9 - n);
                c->len -= 9 + n;
                return 1;
            }
        }
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (r <= 0) return r == 0 ? 0 : -1;
        c->len += (size_t)r;
    }
}

typedef struct wire_rec {
    int64_t max_streams;    /* SETTINGS_MAX_CONCURRENT_STREAMS sent; -1: none */
    int goaway_code;        /* -1: no GOAWAY */
    char goaway_debug[128]; /* its debug data */
    double goaway_after_ms; /* from connect */
    bool closed;            /* the server closed the connection after it */
} wire_rec;

/* Connect, acknowledge the server's SETTINGS (noting MAX_CONCURRENT_STREAMS),
 * send pings (ping_count, back to back), then read until the GOAWAY
 * (until_goaway) or until the server closes (5 s of silence at most). */
static void wire_run(fixture *f, wire_rec *r, int ping_count, bool until_goaway) {
    h2_conn *c = hm_xcalloc(1, sizeof(*c));
    h2_frame *fr = hm_xcalloc(1, sizeof(*fr));
    r->max_streams = -1;
    r->goaway_code = -1;
    double t0 = mono_ms();
    if (h2_open(c, f->port) != 0) goto out;
    for (int i = 0; i < ping_count; i++) {
        unsigned char ping[17] = {0, 0, 8, 6, 0, 0, 0, 0, 0};
        ping[9 + 7] = (unsigned char)i;
        if (send(c->fd, ping, sizeof(ping), MSG_NOSIGNAL) != (ssize_t)sizeof(ping)) goto out;
    }
    int rc;
    while ((rc = h2_next(c, fr)) == 1) {
        if (fr->type == 4 && !(fr->flags & 1)) {
            for (size_t i = 0; i + 6 <= fr->len && i + 6 <= sizeof(fr->payload); i += 6) {
                unsigned id = (unsigned)fr->payload[i] << 8 | fr->payload[i + 1];
                uint32_t v = (uint32_t)fr->payload[i + 2] << 24 |
                             (uint32_t)fr->payload[i + 3] << 16 |
                             (uint32_t)fr->payload[i + 4] << 8 | fr->payload[i + 5];
                if (id == 3) r->max_streams = v;
            }
            static const unsigned char ack[] = {0, 0, 0, 4, 1, 0, 0, 0, 0};
            if (send(c->fd, ack, sizeof(ack), MSG_NOSIGNAL) != (ssize_t)sizeof(ack)) break;
        } else if (fr->type == 7 && fr->len >= 8 && r->goaway_code < 0) {
            r->goaway_after_ms = mono_ms() - t0;
            r->goaway_code = (int)((uint32_t)fr->payload[4] << 24 | (uint32_t)fr->payload[5] << 16 |
                                   (uint32_t)fr->payload[6] << 8 | fr->payload[7]);
            size_t dl = fr->len - 8;
            if (dl > sizeof(r->goaway_debug) - 1) dl = sizeof(r->goaway_debug) - 1;
            memcpy(r->goaway_debug, fr->payload + 8, dl);
            r->goaway_debug[dl] = '\0';
            if (until_goaway) goto out;
        }
    }
    r->closed = rc == 0;
out:
    if (c->fd >= 0) close(c->fd);
    free(fr);
    free(c);
}

static void scenario_wire_idle(fixture *f) {
    wire_rec *r = hm_xcalloc(1, sizeof(*r));
    f->result = r;
    wire_run(f, r, 0, false);
}

static void scenario_wire_goaway(fixture *f) {
    wire_rec *r = hm_xcalloc(1, sizeof(*r));
    f->result = r;
    wire_run(f, r, 0, true);
}

static void scenario_wire_pings(fixture *f) {
    wire_rec *r = hm_xcalloc(1, sizeof(*r));
    f->result = r;
    wire_run(f, r, 4, false);
}

static void test_settings_carry_the_default_limit_of_32_streams(void **state) {
    (void)state;
    fixture f = {.token = TOKEN, .scenario = scenario_wire_goaway, .max_connection_idle_ms = 300};
    run_fixture(&f);
    wire_rec *r = f.result;
    assert_int_equal(r->max_streams, 32);
    fixture_free(&f);
}

static void test_an_idle_connection_gets_goaway_and_is_closed(void **state) {
    (void)state;
    fixture f = {.token = TOKEN, .scenario = scenario_wire_idle, .max_connection_idle_ms = 300};
    run_fixture(&f);
    wire_rec *r = f.result;
    /* grpc 1.51 closes an idle connection at once: GOAWAY "enter idle", then EOF. */
    assert_true(r->goaway_code >= 0);
    if (!strstr(r->goaway_debug, "idle")) fail_msg("GOAWAY debug: '%s'", r->goaway_debug);
    assert_true(r->goaway_after_ms >= 200 && r->goaway_after_ms < 3000);
    assert_true(r->closed);
    fixture_free(&f);
}

static void test_a_connection_older_than_max_age_gets_goaway(void **state) {
    (void)state;
    fixture f = {.token = TOKEN, .scenario = scenario_wire_goaway, .max_connection_age_ms = 300};
    run_fixture(&f);
    wire_rec *r = f.result;
    /* A graceful GOAWAY (NO_ERROR) at 300 ms +- grpc's 10 % jitter; the close
     * comes after the 30 s grace, which this test does not wait for. */
    assert_int_equal(r->goaway_code, 0);
    assert_true(r->goaway_after_ms >= 200 && r->goaway_after_ms < 3000);
    fixture_free(&f);
}

static void test_a_ping_flood_without_calls_gets_goaway_enhance_your_calm(void **state) {
    (void)state;
    fixture f = {.token = TOKEN, .scenario = scenario_wire_pings};
    run_fixture(&f);
    wire_rec *r = f.result;
    assert_int_equal(r->goaway_code, 0xb); /* ENHANCE_YOUR_CALM */
    if (!strstr(r->goaway_debug, "too_many_pings")) fail_msg("GOAWAY debug: '%s'", r->goaway_debug);
    assert_true(r->closed);
    fixture_free(&f);
}

/* ---- binds off loopback ------------------------------------------------------------------------
 */

static void test_loopback_is_told_from_wildcards_and_other_addresses(void **state) {
    (void)state;
    static const char *const loopback[] = {NULL,        "",    "localhost",       "127.0.0.1",
                                           "127.1.2.3", "::1", "::ffff:127.0.0.1"};
    static const char *const remote[] = {
        "0.0.0.0",         "::",      "10.0.0.5",       "192.0.2.1",         "128.0.0.1",
        "::ffff:10.0.0.1", "fe80::1", "admin.internal", "localhost.example", "127.0.0.1 "};
    for (size_t i = 0; i < HM_ARRAY_LEN(loopback); i++)
        if (!hm_addr_is_loopback(loopback[i])) fail_msg("%s: not loopback?", loopback[i]);
    for (size_t i = 0; i < HM_ARRAY_LEN(remote); i++)
        if (hm_addr_is_loopback(remote[i])) fail_msg("%s: loopback?", remote[i]);
}

/* Everything logged while fn ran (caller frees). */
static char *logged_during(void (*fn)(void *), void *arg) {
    char path[] = "/tmp/himari_test_grpc_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    hm_log_set_fd(fd);
    fn(arg);
    hm_log_set_fd(2);
    off_t end = lseek(fd, 0, SEEK_END);
    char *text = hm_xcalloc(1, (size_t)end + 1);
    assert_int_equal(pread(fd, text, (size_t)end, 0), end);
    close(fd);
    return text;
}

typedef struct remote_try {
    bool allow;
    int rc;
    hm_err err;
    bool started;
} remote_try;

/* 192.0.2.1 (TEST-NET-1) is not an address of this host: a server allowed to
 * use it still cannot bind it, so nothing is ever exposed by this test. */
static void try_remote_bind(void *arg) {
    remote_try *t = arg;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    hm_metrics *m = hm_metrics_new();
    hm_grpc_opts o = {
        .bind = "192.0.2.1", .port = 0, .allow_insecure_remote = t->allow, .metrics = m};
    hm_grpc_server *s = NULL;
    t->rc = hm_grpc_server_start(&loop, &o, &s, &t->err);
    t->started = s != NULL;
    bool done = false;
    if (s) hm_grpc_server_shutdown(s, on_plain_done, &done);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(done == t->started);
    assert_int_equal(uv_loop_close(&loop), 0);
    hm_metrics_free(m);
}

static void test_grpc_off_loopback_is_refused_without_the_opt_in_and_warned_with_it(void **state) {
    (void)state;
    remote_try refused = {.allow = false};
    char *log1 = logged_during(try_remote_bind, &refused);
    assert_int_equal(refused.rc, -EPERM);
    assert_false(refused.started);
    assert_non_null(strstr(refused.err.msg, "192.0.2.1:0"));
    assert_non_null(strstr(refused.err.msg, "without TLS"));
    assert_non_null(strstr(refused.err.msg, "grpc.allow_insecure_remote: true"));
    assert_null(strstr(log1, "grpc_insecure_remote"));
    free(log1);

    remote_try allowed = {.allow = true};
    char *log2 = logged_during(try_remote_bind, &allowed);
    /* Allowed: said once, whether the address can then be bound (here: not) or not. */
    assert_int_not_equal(allowed.rc, -EPERM);
    const char *w = strstr(log2, "\"event\":\"grpc_insecure_remote\"");
    if (!w) fail_msg("no grpc_insecure_remote warning in:\n%s", log2);
    assert_null(strstr(w + 1, "\"event\":\"grpc_insecure_remote\""));
    assert_non_null(strstr(log2, "\"level\":\"warn\""));
    assert_non_null(strstr(log2, "\"address\":\"192.0.2.1:0\""));
    free(log2);
}

int main(void) {
    /* A last resort: the watchdog and the deadlines should fire long before. */
    alarm(240);
    hm_log_init("test_grpc", HM_LOG_WARN);
    /* One reference for the whole run, so grpc does not tear down and rebuild
     * its threads between tests; released (blocking) at the end for LSan. */
    grpc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names_cover_every_code_and_clamp_the_rest),
        cmocka_unit_test(test_bearer_check_distinguishes_missing_malformed_wrong_and_right),
        cmocka_unit_test(test_bearer_check_without_configured_token_denies_everyone),
        cmocka_unit_test(test_split_path_accepts_package_service_method_only),
        cmocka_unit_test(test_status_json_is_one_line_with_proto_names_and_unprefixed_enums),
        cmocka_unit_test(test_status_block_names_every_field_and_tabulates_partitions),
        cmocka_unit_test(test_small_answers_format_for_people_and_for_jq),
        cmocka_unit_test(test_calls_reach_their_handlers_with_decoded_requests),
        cmocka_unit_test(test_unknown_undecodable_and_oversized_requests_are_refused_with_codes),
        cmocka_unit_test(test_mutating_calls_need_the_right_bearer_token),
        cmocka_unit_test(test_mutating_calls_are_closed_when_no_token_is_configured),
        cmocka_unit_test(test_handler_may_answer_later_and_a_passed_deadline_cancels_it),
        cmocka_unit_test(test_server_stream_sends_every_message_then_ok),
        cmocka_unit_test(test_client_cancelling_a_stream_midway_runs_on_cancel_and_frees_the_call),
        cmocka_unit_test(test_watch_streams_beyond_the_default_cap_are_refused_until_one_closes),
        cmocka_unit_test(test_max_watch_streams_option_sets_the_cap),
        cmocka_unit_test(test_concurrent_clients_are_all_served),
        cmocka_unit_test(test_health_check_and_watch_follow_not_serving_to_serving),
        cmocka_unit_test(test_shutdown_with_calls_in_flight_cancels_them_and_finishes),
        cmocka_unit_test(test_taken_port_fails_start_naming_the_address_and_leaves_nothing_open),
        cmocka_unit_test(test_settings_carry_the_default_limit_of_32_streams),
        cmocka_unit_test(test_an_idle_connection_gets_goaway_and_is_closed),
        cmocka_unit_test(test_a_connection_older_than_max_age_gets_goaway),
        cmocka_unit_test(test_a_ping_flood_without_calls_gets_goaway_enhance_your_calm),
        cmocka_unit_test(test_loopback_is_told_from_wildcards_and_other_addresses),
        cmocka_unit_test(test_grpc_off_loopback_is_refused_without_the_opt_in_and_warned_with_it),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    grpc_shutdown_blocking();
    return failed;
}
