/*
 * test_stage.c: the stage framework (common/src/stage.c) driven on a real libuv loop
 * against librdkafka's built-in mock cluster: the transition tables, and the protocol
 * of each shape, recorded through the hooks of small test services.
 *
 * What librdkafka 2.0.2's mock cluster does not do, and how the tests live with it:
 * it does not keep offsets committed inside a transaction (TxnOffsetCommit), so after
 * a rewind the records are read again from the start of the partition; it does not
 * fence an older producer (the fence is injected as an EndTxn error, which librdkafka
 * turns into the same fatal error a real fence gives); it has no isolation between
 * committed and aborted records and no time index. So these tests assert what the
 * framework does (which hooks run in which order and state, what is committed and
 * when, what is held), and the real broker's tests (tests/integration/
 * test_validator_eos.py) assert exactly-once end to end.
 *
 * Must never hang: every wait is bounded (run_until) and main() arms alarm().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "himari/log.h"
#include "himari/service.h"
#include "himari/stage.h"

#define IN_TOPIC        "in"
#define OUT_TOPIC       "out"
#define CHANGELOG_TOPIC "in.changelog"
#define DLQ_TOPIC       "in.dlq"
#define PARTITIONS      2
#define WAIT_MS         60000 /* generous: ASan on a loaded 2-core machine */
#define API_END_TXN     26    /* Kafka protocol ApiKey of EndTxn */

/* ---- the transition tables (pure) -------------------------------------------- */

static void test_transition_tables_allow_the_documented_paths_and_nothing_else(void **state) {
    (void)state;
    /* the life cycle of the header's diagram */
    assert_true(hm_stage_state_transition_ok(HM_STAGE_INIT, HM_STAGE_IDLE));
    assert_true(hm_stage_state_transition_ok(HM_STAGE_IDLE, HM_STAGE_RESTORING));
    assert_true(hm_stage_state_transition_ok(HM_STAGE_RESTORING, HM_STAGE_RUNNING));
    assert_true(hm_stage_state_transition_ok(HM_STAGE_RUNNING, HM_STAGE_REVOKING));
    assert_true(hm_stage_state_transition_ok(HM_STAGE_REVOKING, HM_STAGE_IDLE));
    assert_true(hm_stage_state_transition_ok(HM_STAGE_RUNNING, HM_STAGE_RESTORING)); /* rewind */
    for (int s = HM_STAGE_INIT; s <= HM_STAGE_REVOKING; s++)
        assert_true(hm_stage_state_transition_ok((hm_stage_state)s, HM_STAGE_STOPPING));
    assert_true(hm_stage_state_transition_ok(HM_STAGE_STOPPING, HM_STAGE_CLOSING));
    assert_true(hm_stage_state_transition_ok(HM_STAGE_CLOSING, HM_STAGE_CLOSED));
    /* and nothing else */
    assert_false(hm_stage_state_transition_ok(HM_STAGE_IDLE, HM_STAGE_RUNNING));
    assert_false(hm_stage_state_transition_ok(HM_STAGE_RUNNING, HM_STAGE_INIT));
    assert_false(hm_stage_state_transition_ok(HM_STAGE_STOPPING, HM_STAGE_RUNNING));
    assert_false(hm_stage_state_transition_ok(HM_STAGE_REVOKING, HM_STAGE_RUNNING));
    for (int s = 0; s < HM_STAGE_STATE_COUNT_; s++)
        assert_false(hm_stage_state_transition_ok(HM_STAGE_CLOSED, (hm_stage_state)s));
    assert_false(hm_stage_state_transition_ok(HM_STAGE_STATE_COUNT_, HM_STAGE_IDLE));

    assert_true(hm_stage_unit_transition_ok(HM_UNIT_NONE, HM_UNIT_OPEN));
    assert_true(hm_stage_unit_transition_ok(HM_UNIT_OPEN, HM_UNIT_COMMITTING));
    assert_true(hm_stage_unit_transition_ok(HM_UNIT_COMMITTING, HM_UNIT_NONE));
    assert_true(hm_stage_unit_transition_ok(HM_UNIT_OPEN, HM_UNIT_DOOMED));
    assert_true(hm_stage_unit_transition_ok(HM_UNIT_DOOMED, HM_UNIT_ABORTING));
    assert_true(hm_stage_unit_transition_ok(HM_UNIT_COMMITTING, HM_UNIT_ABORTING));
    assert_true(hm_stage_unit_transition_ok(HM_UNIT_ABORTING, HM_UNIT_NONE));
    for (int u = HM_UNIT_NONE; u < HM_UNIT_FENCED; u++)
        assert_true(hm_stage_unit_transition_ok((hm_stage_unit)u, HM_UNIT_FENCED));
    assert_false(hm_stage_unit_transition_ok(HM_UNIT_NONE, HM_UNIT_COMMITTING));
    assert_false(hm_stage_unit_transition_ok(HM_UNIT_DOOMED, HM_UNIT_COMMITTING));
    assert_false(hm_stage_unit_transition_ok(HM_UNIT_ABORTING, HM_UNIT_COMMITTING));
    assert_false(hm_stage_unit_transition_ok(HM_UNIT_DOOMED, HM_UNIT_OPEN));
    for (int u = 0; u < HM_UNIT_STATE_COUNT_; u++)
        assert_false(hm_stage_unit_transition_ok(HM_UNIT_FENCED, (hm_stage_unit)u));
    assert_string_equal(hm_stage_state_name(HM_STAGE_REVOKING), "REVOKING");
    assert_string_equal(hm_stage_unit_name(HM_UNIT_DOOMED), "DOOMED");
}

/* ---- the mock cluster ----------------------------------------------------------- */

static rd_kafka_t *g_mock_rk; /* owns the mock cluster */
static rd_kafka_mock_cluster_t *g_mc;
static char g_bootstrap[256];

/* A fresh cluster per test: topics, offsets and groups start empty. */
static int mock_setup(void **state) {
    char e[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "test.mock.num.brokers", "1", e, sizeof(e)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(c, "log_level", "0", e, sizeof(e)) != RD_KAFKA_CONF_OK)
        return -1;
    g_mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof(e));
    if (!g_mock_rk) return -1;
    g_mc = rd_kafka_handle_mock_cluster(g_mock_rk);
    snprintf(g_bootstrap, sizeof(g_bootstrap), "%s", rd_kafka_mock_cluster_bootstraps(g_mc));
    rd_kafka_mock_topic_create(g_mc, IN_TOPIC, PARTITIONS, 1);
    rd_kafka_mock_topic_create(g_mc, OUT_TOPIC, PARTITIONS, 1);
    rd_kafka_mock_topic_create(g_mc, CHANGELOG_TOPIC, PARTITIONS, 1);
    rd_kafka_mock_topic_create(g_mc, DLQ_TOPIC, 1, 1);
    return 0;
}

static int mock_teardown(void **state) {
    rd_kafka_destroy(g_mock_rk);
    g_mock_rk = NULL;
    return 0;
}

static rd_kafka_t *plain_client(rd_kafka_type_t type, const char *group) {
    char e[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", g_bootstrap, e, sizeof(e));
    rd_kafka_conf_set(c, "log_level", "0", e, sizeof(e));
    if (group) {
        rd_kafka_conf_set(c, "group.id", group, e, sizeof(e));
        rd_kafka_conf_set(c, "enable.auto.commit", "false", e, sizeof(e));
    }
    rd_kafka_t *rk = rd_kafka_new(type, c, e, sizeof(e));
    assert_non_null(rk);
    return rk;
}

/* n records "r<i>" on topic, spread over the partitions (i % PARTITIONS), with this
 * record timestamp (ms; 0: now). */
static void produce_at(const char *topic, int n, int64_t ts) {
    rd_kafka_t *p = plain_client(RD_KAFKA_PRODUCER, NULL);
    for (int i = 0; i < n; i++) {
        char v[32];
        int len = snprintf(v, sizeof(v), "r%d", i);
        assert_int_equal(
            rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(i % PARTITIONS),
                              RD_KAFKA_V_VALUE(v, (size_t)len), RD_KAFKA_V_TIMESTAMP(ts),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
            0);
    }
    assert_int_equal(rd_kafka_flush(p, 10000), 0);
    rd_kafka_destroy(p);
}

static void produce(const char *topic, int n) {
    produce_at(topic, n, 0);
}

/* Records on topic (all partitions), read from the start to the high watermark. */
static int count_records(const char *topic, int partitions) {
    rd_kafka_t *c = plain_client(RD_KAFKA_CONSUMER, "counter");
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    int64_t want = 0;
    for (int p = 0; p < partitions; p++) {
        int64_t lo, hi;
        assert_int_equal(rd_kafka_query_watermark_offsets(c, topic, p, &lo, &hi, 5000), 0);
        want += hi - lo;
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    assert_int_equal(rd_kafka_assign(c, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    int got = 0;
    for (int tries = 0; got < want && tries < 200; tries++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 50);
        if (!m) continue;
        if (!m->err) got++;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return got;
}

/* ---- a test service ----------------------------------------------------------- */

#define LOG_BYTES 16384

typedef struct tsvc {
    hm_stage stage; /* first, as for a real service */
    char log[LOG_BYTES];
    size_t log_len;
    int processed, rebuilt, restored_records, restored_calls, flushes, drops, sweeps;
    int seen[PARTITIONS][256]; /* times each (partition, offset) was processed live */
    /* abort test: fail the unit at this record, once */
    int fail_partition;
    int64_t fail_offset;
    bool failed;
    /* revoke test: what the framework had done when the state was dropped */
    hm_stage_unit unit_at_drop;
    uint64_t committed_at_drop;
    /* sink: answer sink_flush after a short delay, failing the first sink_fail ones */
    int sink_flushes, sink_fail;
    uv_timer_t sink_timer;
    bool sink_timer_open;
} tsvc;

static void tlog(tsvc *t, const char *fmt, ...) HM_PRINTF(2, 3);
static void tlog(tsvc *t, const char *fmt, ...) {
    if (t->log_len >= LOG_BYTES - 64) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->log + t->log_len, LOG_BYTES - t->log_len, fmt, ap);
    va_end(ap);
    if (n > 0) t->log_len += (size_t)n;
    t->log[t->log_len++] = ' ';
    t->log[t->log_len] = '\0';
}

static uint64_t committed_count(hm_stage *st) {
    hm_control_status cs = {0};
    hm_stage_control_hooks.status(st, &cs);
    return cs.transactions_committed;
}

static void t_process(hm_stage *st, const hm_stage_record *rec) {
    tsvc *t = (tsvc *)st;
    const rd_kafka_message_t *m = rec->msg;
    if (rec->rebuilding) {
        t->rebuilt++;
    } else {
        t->processed++;
        if (m->partition < PARTITIONS && m->offset < 256) t->seen[m->partition][m->offset]++;
    }
    if (!t->failed && m->partition == t->fail_partition && m->offset == t->fail_offset) {
        t->failed = true;
        tlog(t, "fail@%d:%lld", (int)m->partition, (long long)m->offset);
        hm_stage_fail_unit(st, "test: this unit must not commit");
    }
    /* Rebuilding or live, the same code path sends; the framework decides. */
    hm_stage_send(st, OUT_TOPIC, m->partition, m->key, m->key_len, m->payload, m->len, NULL,
                  HM_STAGE_SEND_OUTPUT);
}

static void t_flush_state(hm_stage *st) {
    tsvc *t = (tsvc *)st;
    t->flushes++;
    char key[16];
    int n = snprintf(key, sizeof(key), "k%d", t->flushes);
    hm_stage_send_changelog(st, 0, key, (size_t)n, "state", 5);
}

static void t_restore(hm_stage *st, const rd_kafka_message_t *m) {
    tsvc *t = (tsvc *)st;
    t->restored_records++;
    if (t->processed == 0) tlog(t, "restore-before-process");
}

static void t_restored(hm_stage *st) {
    tsvc *t = (tsvc *)st;
    t->restored_calls++;
    tlog(t, "restored:%s", hm_stage_state_name(hm_stage_get_state(st)));
}

static void t_drop_state(hm_stage *st, const int32_t *parts, size_t n) {
    tsvc *t = (tsvc *)st;
    /* What the framework had done at the first drop (a loaded machine may see the group
     * rebalance more than once). */
    if (t->drops++ == 0) {
        t->unit_at_drop = hm_stage_get_unit(st);
        t->committed_at_drop = committed_count(st);
    }
    tlog(t, "drop:%zu:%s:%s", n, hm_stage_state_name(hm_stage_get_state(st)),
         hm_stage_unit_name(hm_stage_get_unit(st)));
}

static void t_sweep(hm_stage *st, uint64_t now_ms) {
    ((tsvc *)st)->sweeps++;
}

static void on_sink_timer(uv_timer_t *h) {
    tsvc *t = h->data;
    bool fail = t->sink_flushes <= t->sink_fail;
    tlog(t, "sink-done:%s", fail ? "fail" : "ok");
    hm_stage_sink_done(&t->stage, fail ? -EIO : 0, fail ? "test: the sink is down" : NULL);
}

static void t_sink_flush(hm_stage *st) {
    tsvc *t = (tsvc *)st;
    t->sink_flushes++;
    tlog(t, "sink-flush:%d", t->sink_flushes);
    if (!t->sink_timer_open) {
        uv_timer_init(st->loop, &t->sink_timer);
        t->sink_timer.data = t;
        t->sink_timer_open = true;
    }
    uv_timer_start(&t->sink_timer, on_sink_timer, 20, 0);
}

static void t_destroy(hm_stage *st) {
    tsvc *t = (tsvc *)st;
    assert_false(t->sink_timer_open); /* closed by the test before the loop ended */
}

static const hm_stage_ops k_changelog_ops = {.process = t_process,
                                             .flush_state = t_flush_state,
                                             .restore = t_restore,
                                             .restored = t_restored,
                                             .drop_state = t_drop_state,
                                             .sweep = t_sweep,
                                             .destroy = t_destroy};
static const hm_stage_ops k_rebuild_ops = {
    .process = t_process, .restored = t_restored, .drop_state = t_drop_state, .destroy = t_destroy};
static const hm_stage_ops k_sink_ops = {.process = t_process,
                                        .restored = t_restored,
                                        .drop_state = t_drop_state,
                                        .sink_flush = t_sink_flush,
                                        .destroy = t_destroy};

/* ---- a service around a stage, on a loop of the test's ----------------------------- */

typedef struct fixture {
    uv_loop_t *loop;
    hm_service svc;
    char cfg_path[64];
    hm_service_config cfg;
    hm_stage *st;
} fixture;

static void cfg_sections(void *cfg, hm_cfg_section *out) {
    hm_service_config_sections(cfg, HM_SVC_INGEST_VALIDATOR, out);
}
static const hm_service_schema k_schema = {sizeof(hm_service_config), HM_SERVICE_SECTIONS,
                                           cfg_sections, NULL};

static void fixture_start_on(fixture *f, uv_loop_t *loop, const char *instance, hm_stage_opts *o,
                             const hm_stage_ops *ops, const char *input_topic) {
    memset(f, 0, sizeof(*f));
    f->loop = loop;
    snprintf(f->cfg_path, sizeof(f->cfg_path), "/tmp/test_stage_XXXXXX");
    int fd = mkstemp(f->cfg_path);
    assert_true(fd >= 0);
    FILE *fp = fdopen(fd, "w");
    /* Fast group protocol: the mock answers at once, the clients need not wait. */
    fprintf(fp,
            "service: {instance_id: %s, stop_timeout_ms: 60000}\n"
            "log: {level: info}\n"
            "admin: {port: 0}\n"
            "grpc: {port: 0}\n"
            "kafka:\n  bootstrap_servers: '%s'\n  statistics_interval_ms: 0\n"
            "  properties: {heartbeat.interval.ms: '100', log_level: '3'}\n",
            instance, g_bootstrap);
    fclose(fp);
    hm_err err;
    if (hm_service_config_load(&k_schema, &f->cfg, f->cfg_path, &err) != 0) fail_msg("%s", err.msg);
    if (hm_service_init(&f->svc, loop, "ingest-validator", &f->cfg, &err) != 0)
        fail_msg("%s", err.msg);
    hm_log_set_level(getenv("TEST_STAGE_LOG") ? HM_LOG_INFO : HM_LOG_WARN);
    o->input_topic = input_topic;
    o->group_id = o->group_id ? o->group_id : "g";
    o->commit_interval_ms = o->commit_interval_ms ? o->commit_interval_ms : 20;
    o->commit_max_records = o->commit_max_records ? o->commit_max_records : 1000;
    f->st = hm_stage_new(&f->svc, o, ops, sizeof(tsvc), &err);
    if (!f->st) fail_msg("%s", err.msg);
    ((tsvc *)f->st)->fail_partition = -1;
    if (hm_stage_start(f->st, &err) != 0) fail_msg("%s", err.msg);
}

static tsvc *T(fixture *f) {
    return (tsvc *)f->st;
}

static void fixture_start(fixture *f, uv_loop_t *loop, const char *instance, hm_stage_opts *o,
                          const hm_stage_ops *ops) {
    fixture_start_on(f, loop, instance, o, ops, IN_TOPIC);
}

/* After the stage finished: free what the fixture holds. */
static void fixture_free(fixture *f) {
    if (T(f)->sink_timer_open) {
        uv_close((uv_handle_t *)&T(f)->sink_timer, NULL);
        T(f)->sink_timer_open = false;
        uv_run(f->loop, UV_RUN_NOWAIT); /* the timer lives in the stage's memory */
    }
    hm_metrics_free(f->svc.metrics);
    hm_stage_free(f->st);
    hm_service_config_free(&k_schema, &f->cfg);
    unlink(f->cfg_path);
}

typedef bool (*cond_fn)(void *ud);

static void on_tick(uv_timer_t *t) {
    (void)t; /* only makes the loop turn */
}

/* Turn the loop until cond holds or ms pass; false on timeout. */
static bool run_until(uv_loop_t *loop, cond_fn cond, void *ud, uint64_t ms) {
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, 10, 10);
    uint64_t deadline = uv_now(loop) + ms;
    bool ok;
    while (!(ok = cond(ud)) && uv_now(loop) < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

static bool is_finished(void *ud) {
    return ((fixture *)ud)->svc.finished;
}

/* Stop the service (as SIGTERM would) and run the loop until it finished. */
static void stop_and_wait(fixture *f) {
    hm_service_stop(&f->svc, 0);
    assert_true(run_until(f->loop, is_finished, f, WAIT_MS));
    assert_int_equal(hm_stage_get_state(f->st), HM_STAGE_CLOSED);
}

static bool never(void *ud) {
    (void)ud;
    return false;
}

/* Turn the loop for ms (timers, Kafka events) whatever happens. */
static void run_for(uv_loop_t *loop, uint64_t ms) {
    (void)run_until(loop, never, NULL, ms);
}

static void close_loop(uv_loop_t *loop) {
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* ---- shape 1: changelog ----------------------------------------------------------- */

typedef struct want {
    fixture *f;
    int processed;
} want;

static bool processed_and_committed(void *ud) {
    want *w = ud;
    return T(w->f)->processed >= w->processed && hm_stage_get_unit(w->f->st) == HM_UNIT_NONE &&
           committed_count(w->f->st) > 0;
}

static void
test_changelog_stage_restores_before_processing_and_commits_state_with_outputs(void **state) {
    produce(CHANGELOG_TOPIC, 6); /* three state records per partition */
    produce(IN_TOPIC, 100);
    uv_loop_t loop;
    uv_loop_init(&loop);
    fixture f;
    hm_stage_opts o = {.shape = HM_STAGE_CHANGELOG,
                       .changelog_topic = CHANGELOG_TOPIC,
                       .dlq_topic = DLQ_TOPIC,
                       .sweep_interval_ms = 50};
    fixture_start(&f, &loop, "a", &o, &k_changelog_ops);
    assert_int_equal(hm_stage_get_state(f.st), HM_STAGE_INIT);
    char reason[64];
    assert_false(hm_stage_ready(f.st, reason, sizeof(reason)));

    want w = {&f, 100};
    assert_true(run_until(&loop, processed_and_committed, &w, WAIT_MS));
    tsvc *t = T(&f);
    assert_int_equal(t->processed, 100);
    assert_int_equal(t->restored_records, 6);
    assert_int_equal(t->restored_calls, 1);
    /* The state came back first, the restored hook ran while still restoring. */
    assert_non_null(strstr(t->log, "restore-before-process"));
    assert_non_null(strstr(t->log, "restored:RESTORING"));
    assert_true(t->flushes >= 1); /* flush_state before every commit */
    assert_true(hm_stage_ready(f.st, reason, sizeof(reason)));
    assert_int_equal(hm_stage_holds(f.st), 0);
    /* The sweep runs while RUNNING. */
    uint64_t flushes_before = (uint64_t)t->flushes;
    int sweeps_before = t->sweeps;
    run_for(&loop, 200);
    assert_true(t->sweeps > sweeps_before);

    uint64_t committed = committed_count(f.st);
    stop_and_wait(&f);
    assert_int_equal(f.svc.exit_code, 0);
    assert_true(committed_count(f.st) >= committed);
    assert_true((uint64_t)t->flushes >= flushes_before);
    assert_int_equal(t->drops, 1); /* leaving the group forgot the partitions' state */
    fixture_free(&f);
    close_loop(&loop);
    /* One output per record; one changelog record per flush, on top of the six. */
    assert_int_equal(count_records(OUT_TOPIC, PARTITIONS), 100);
    assert_true(count_records(CHANGELOG_TOPIC, PARTITIONS) >= 6 + 1);
}

static bool aborted_and_caught_up(void *ud) {
    want *w = ud;
    hm_control_status cs = {0};
    hm_stage_control_hooks.status(w->f->st, &cs);
    return cs.transactions_aborted == 1 && T(w->f)->seen[0][5] >= 2 &&
           hm_stage_get_state(w->f->st) == HM_STAGE_RUNNING && T(w->f)->seen[0][9] >= 1 &&
           T(w->f)->seen[1][9] >= 1;
}

static void
test_abort_forgets_the_unit_state_restores_again_and_reads_the_records_again(void **state) {
    produce(IN_TOPIC, 20); /* offsets 0..9 on each partition */
    uv_loop_t loop;
    uv_loop_init(&loop);
    fixture f;
    hm_stage_opts o = {.shape = HM_STAGE_CHANGELOG,
                       .changelog_topic = CHANGELOG_TOPIC,
                       .commit_interval_ms = 60000, /* one unit holds every record */
                       .commit_max_records = 1000};
    fixture_start(&f, &loop, "a", &o, &k_changelog_ops);
    T(&f)->fail_partition = 0;
    T(&f)->fail_offset = 5;
    /* The unit is doomed at p0@5 and aborted at once (a doomed unit is due). */
    want w = {&f, 20};
    assert_true(run_until(&loop, aborted_and_caught_up, &w, WAIT_MS));
    tsvc *t = T(&f);
    assert_non_null(strstr(t->log, "fail@0:5"));
    /* The rewind dropped the state of both partitions with the unit closed, then the
     * partitions were restored again before any record was read again. */
    assert_non_null(strstr(t->log, "drop:2:RUNNING:NONE"));
    assert_int_equal(t->restored_calls, 2);
    const char *fail_at = strstr(t->log, "fail@0:5");
    const char *drop_at = strstr(t->log, "drop:2:");
    const char *second_restore = strstr(strstr(t->log, "restored:") + 1, "restored:");
    assert_true(fail_at < drop_at && drop_at < second_restore);
    /* Every record of the aborted unit was processed again; none was skipped. */
    for (int p = 0; p < PARTITIONS; p++)
        for (int off = 0; off < 10; off++)
            assert_true(t->seen[p][off] >= 1);
    assert_true(t->seen[0][5] == 2);
    stop_and_wait(&f);
    assert_int_equal(f.svc.exit_code, 0);
    fixture_free(&f);
    close_loop(&loop);
}

static bool committed_all(void *ud) {
    want *w = ud;
    return T(w->f)->processed >= w->processed && hm_stage_get_unit(w->f->st) == HM_UNIT_NONE &&
           committed_count(w->f->st) > 0;
}

static bool rewound_and_caught_up(void *ud) {
    want *w = ud;
    hm_control_status cs = {0};
    hm_stage_control_hooks.status(w->f->st, &cs);
    return cs.transactions_aborted == 1 && T(w->f)->restored_calls == 2 &&
           T(w->f)->seen[0][14] >= 1 && T(w->f)->seen[1][14] >= 1 &&
           hm_stage_get_state(w->f->st) == HM_STAGE_RUNNING;
}

static void
test_a_rewind_resumes_at_the_checkpoint_the_last_commit_wrote_in_the_changelog(void **state) {
    produce(IN_TOPIC, 20); /* offsets 0..9 on each partition */
    uv_loop_t loop;
    uv_loop_init(&loop);
    fixture f;
    hm_stage_opts o = {.shape = HM_STAGE_CHANGELOG, .changelog_topic = CHANGELOG_TOPIC};
    fixture_start(&f, &loop, "a", &o, &k_changelog_ops);
    want w = {&f, 20};
    assert_true(run_until(&loop, committed_all, &w, WAIT_MS));
    /* The next unit fails at p0@10; the rewind must resume each partition at the offset
     * the last committed unit's checkpoint names (10), not at its start. (The mock
     * cluster keeps no transactional group offsets: the checkpoint is all there is.) */
    T(&f)->fail_partition = 0;
    T(&f)->fail_offset = 10;
    produce(IN_TOPIC, 10); /* offsets 10..14 */
    assert_true(run_until(&loop, rewound_and_caught_up, &w, WAIT_MS));
    tsvc *t = T(&f);
    for (int p = 0; p < PARTITIONS; p++)
        for (int off = 0; off < 10; off++)
            assert_int_equal(t->seen[p][off], 1); /* committed once, never read again */
    assert_int_equal(t->seen[0][10], 2);          /* in the aborted unit, and after */
    stop_and_wait(&f);
    fixture_free(&f);
    close_loop(&loop);
    /* Each committed unit wrote one checkpoint per partition it moved. */
    assert_true(count_records(CHANGELOG_TOPIC, PARTITIONS) >= 2 + 2);
}

typedef struct pair {
    fixture *a, *b;
} pair;

/* The rebalance is over: A gave its partitions up once, both members run again (with
 * two partitions and two members, each gets one). */
static bool a_revoked_and_both_running(void *ud) {
    pair *p = ud;
    return T(p->a)->drops >= 1 && hm_stage_get_state(p->a->st) == HM_STAGE_RUNNING &&
           hm_stage_get_state(p->b->st) == HM_STAGE_RUNNING;
}

static bool a_has_an_open_unit(void *ud) {
    want *w = ud;
    return T(w->f)->processed >= w->processed && hm_stage_get_unit(w->f->st) == HM_UNIT_OPEN;
}

static void test_revoke_with_an_open_unit_commits_it_before_the_state_is_dropped(void **state) {
    produce(IN_TOPIC, 40);
    uv_loop_t loop;
    uv_loop_init(&loop);
    fixture a, b;
    hm_stage_opts oa = {.shape = HM_STAGE_CHANGELOG,
                        .changelog_topic = CHANGELOG_TOPIC,
                        .commit_interval_ms = 3600000, /* never due by time */
                        .commit_max_records = 100000};
    fixture_start(&a, &loop, "a", &oa, &k_changelog_ops);
    want w = {&a, 40};
    assert_true(run_until(&loop, a_has_an_open_unit, &w, WAIT_MS));
    assert_int_equal(committed_count(a.st), 0);

    /* A second member joins the group: A's partitions are revoked while its unit is
     * open. A must commit it (REVOKING, unit COMMITTING) and only then drop. */
    hm_stage_opts ob = {.shape = HM_STAGE_CHANGELOG, .changelog_topic = CHANGELOG_TOPIC};
    fixture_start(&b, &loop, "b", &ob, &k_changelog_ops);
    pair p = {&a, &b};
    assert_true(run_until(&loop, a_revoked_and_both_running, &p, WAIT_MS));
    tsvc *ta = T(&a);
    assert_true(ta->drops >= 1);
    assert_int_equal(ta->unit_at_drop, HM_UNIT_NONE);
    assert_int_equal(ta->committed_at_drop, 1); /* the open unit, committed at the revoke */
    assert_non_null(strstr(ta->log, "drop:2:REVOKING:NONE"));
    assert_true(ta->flushes >= 1);
    stop_and_wait(&a);
    stop_and_wait(&b);
    fixture_free(&a);
    fixture_free(&b);
    close_loop(&loop);
}

typedef struct commit_wait {
    fixture *f;
    uint64_t committed;
} commit_wait;

static bool committing(void *ud) {
    commit_wait *c = ud;
    return hm_stage_get_unit(c->f->st) == HM_UNIT_COMMITTING;
}

static void test_a_rebalance_during_a_commit_waits_for_the_commit_to_end(void **state) {
    produce(IN_TOPIC, 40);
    uv_loop_t loop;
    uv_loop_init(&loop);
    fixture a, b;
    hm_stage_opts oa = {.shape = HM_STAGE_CHANGELOG, .changelog_topic = CHANGELOG_TOPIC};
    fixture_start(&a, &loop, "a", &oa, &k_changelog_ops);
    want w = {&a, 40};
    assert_true(run_until(&loop, processed_and_committed, &w, WAIT_MS));
    uint64_t before = committed_count(a.st);

    /* The next EndTxn takes 3 s; B joins while A's commit is in flight. */
    rd_kafka_mock_broker_push_request_error_rtts(g_mc, 1, API_END_TXN, 1,
                                                 RD_KAFKA_RESP_ERR_NO_ERROR, 3000);
    produce(IN_TOPIC, 2);
    commit_wait c = {&a, before};
    assert_true(run_until(&loop, committing, &c, WAIT_MS));
    hm_stage_opts ob = {.shape = HM_STAGE_CHANGELOG, .changelog_topic = CHANGELOG_TOPIC};
    fixture_start(&b, &loop, "b", &ob, &k_changelog_ops);
    assert_int_equal(hm_stage_holds(a.st) & HM_STAGE_HOLD_COMMIT, HM_STAGE_HOLD_COMMIT);
    pair p = {&a, &b};
    assert_true(run_until(&loop, a_revoked_and_both_running, &p, WAIT_MS));
    /* The revoke was handled after the commit ended, never in the middle of it. */
    tsvc *ta = T(&a);
    assert_true(ta->drops >= 1);
    assert_int_equal(ta->unit_at_drop, HM_UNIT_NONE);
    assert_int_equal(ta->committed_at_drop, before + 1);
    stop_and_wait(&a);
    stop_and_wait(&b);
    assert_int_equal(a.svc.exit_code, 0);
    fixture_free(&a);
    fixture_free(&b);
    close_loop(&loop);
}

static void
test_a_fenced_producer_stops_the_stage_with_status_1_and_commits_nothing_more(void **state) {
    produce(IN_TOPIC, 10);
    uv_loop_t loop;
    uv_loop_init(&loop);
    fixture f;
    hm_stage_opts o = {.shape = HM_STAGE_CHANGELOG, .changelog_topic = CHANGELOG_TOPIC};
    /* A newer instance with the same transactional id: the broker answers the next
     * EndTxn with PRODUCER_FENCED, which librdkafka makes a fatal error. */
    rd_kafka_mock_push_request_errors(g_mc, API_END_TXN, 1, RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
    fixture_start(&f, &loop, "a", &o, &k_changelog_ops);
    assert_true(run_until(&loop, is_finished, &f, WAIT_MS));
    assert_int_equal(f.svc.exit_code, 1);
    assert_int_equal(hm_stage_get_unit(f.st), HM_UNIT_FENCED);
    assert_int_equal(hm_stage_get_state(f.st), HM_STAGE_CLOSED);
    hm_control_status cs = {0};
    hm_stage_control_hooks.status(f.st, &cs);
    assert_int_equal(cs.transactions_committed, 0);
    assert_int_equal(cs.transactions_aborted, 0);
    assert_non_null(strstr(cs.last_error, "fenced"));
    fixture_free(&f);
    close_loop(&loop);
}

static bool restored_once(void *ud) {
    fixture *f = ud;
    return T(f)->restored_calls == 1 && hm_stage_get_state(f->st) == HM_STAGE_RUNNING;
}

static void test_a_restore_reads_every_partition_however_many_there_are(void **state) {
    /* More partitions than the old fixed bound of 256 (which truncated in silence). */
    enum { MANY = 300 };
    rd_kafka_mock_topic_create(g_mc, "many", MANY, 1);
    rd_kafka_mock_topic_create(g_mc, "many.changelog", MANY, 1);
    rd_kafka_t *p = plain_client(RD_KAFKA_PRODUCER, NULL);
    for (int part = 0; part < MANY; part += 37) /* ..., 259, 296 */
        assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("many.changelog"),
                                           RD_KAFKA_V_PARTITION(part), RD_KAFKA_V_KEY("k", 1),
                                           RD_KAFKA_V_VALUE("v", 1), RD_KAFKA_V_END),
                         0);
    assert_int_equal(rd_kafka_flush(p, 10000), 0);
    rd_kafka_destroy(p);
    uv_loop_t loop;
    uv_loop_init(&loop);
    fixture f;
    hm_stage_opts o = {.shape = HM_STAGE_CHANGELOG, .changelog_topic = "many.changelog"};
    fixture_start_on(&f, &loop, "a", &o, &k_changelog_ops, "many");
    assert_true(run_until(&loop, restored_once, &f, WAIT_MS));
    assert_int_equal(T(&f)->restored_records, (MANY + 36) / 37); /* 9: every one of them */
    rd_kafka_topic_partition_list_t *l = hm_consumer_assignment(hm_stage_consumer(f.st));
    assert_non_null(l);
    assert_int_equal(l->cnt, MANY);
    rd_kafka_topic_partition_list_destroy(l);
    stop_and_wait(&f);
    fixture_free(&f);
    close_loop(&loop);
}

/* ---- shape 2: rebuilt from the input ------------------------------------------------- */

/* The group's committed offsets before the stage starts, as a previous owner left them. */
static void commit_group_offsets(const char *group, int64_t offset, int64_t ts) {
    rd_kafka_t *c = plain_client(RD_KAFKA_CONSUMER, group);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTITIONS);
    for (int p = 0; p < PARTITIONS; p++) {
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(l, IN_TOPIC, p);
        tp->offset = offset;
        char md[32];
        int n = snprintf(md, sizeof(md), "ts=%lld", (long long)ts);
        tp->metadata = strndup(md, (size_t)n);
        tp->metadata_size = (size_t)n;
    }
    assert_int_equal(rd_kafka_commit(c, l, 0), 0);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(c);
}

static bool live_caught_up(void *ud) {
    want *w = ud;
    return T(w->f)->processed >= w->processed && hm_stage_get_unit(w->f->st) == HM_UNIT_NONE;
}

static void
test_rebuild_replays_up_to_the_committed_offset_without_sending_then_goes_live(void **state) {
    produce(IN_TOPIC, 30); /* offsets 0..14 on each partition */
    commit_group_offsets("g", 10, hm_now_ms());
    uv_loop_t loop;
    uv_loop_init(&loop);
    fixture f;
    hm_stage_opts o = {.shape = HM_STAGE_REBUILD, .rebuild_window_ms = -1 /* the whole log */};
    fixture_start(&f, &loop, "a", &o, &k_rebuild_ops);
    want w = {&f, 10};
    assert_true(run_until(&loop, live_caught_up, &w, WAIT_MS));
    tsvc *t = T(&f);
    assert_int_equal(t->rebuilt, 20);   /* offsets 0..9 of both partitions, state only */
    assert_int_equal(t->processed, 10); /* offsets 10..14: live */
    for (int p = 0; p < PARTITIONS; p++) {
        for (int off = 0; off < 10; off++)
            assert_int_equal(t->seen[p][off], 0);
        for (int off = 10; off < 15; off++)
            assert_int_equal(t->seen[p][off], 1);
    }
    char reason[64];
    assert_true(hm_stage_ready(f.st, reason, sizeof(reason)));
    stop_and_wait(&f);
    fixture_free(&f);
    close_loop(&loop);
    /* Only the live records' outputs were sent: the rebuilt ones were committed before. */
    assert_int_equal(count_records(OUT_TOPIC, PARTITIONS), 10);
}

static bool ready_now(void *ud) {
    char reason[64];
    return hm_stage_ready(((fixture *)ud)->st, reason, sizeof(reason));
}

static void
test_a_rebuild_of_a_quiet_partition_ends_with_its_last_record_not_the_next(void **state) {
    /* Everything was committed: the rebuild re-reads all of it, and no new record will
     * come. The stage must be ready once the last record below the committed offset is
     * read, not wait for traffic that may never come. */
    produce(IN_TOPIC, 30);
    commit_group_offsets("g", 15, hm_now_ms());
    uv_loop_t loop;
    uv_loop_init(&loop);
    fixture f;
    hm_stage_opts o = {.shape = HM_STAGE_REBUILD, .rebuild_window_ms = -1};
    fixture_start(&f, &loop, "a", &o, &k_rebuild_ops);
    assert_true(run_until(&loop, ready_now, &f, WAIT_MS));
    assert_int_equal(T(&f)->rebuilt, 30);
    assert_int_equal(T(&f)->processed, 0);
    stop_and_wait(&f);
    fixture_free(&f);
    close_loop(&loop);
    assert_int_equal(count_records(OUT_TOPIC, PARTITIONS), 0);
}

static void
test_rebuild_without_a_record_inside_the_window_starts_at_the_committed_offset(void **state) {
    /* The records are two days old and the previous owner committed just now: the
     * 1 s window back from its commit holds none of them (the time lookup answers -1,
     * "no record that recent")... */
    produce_at(IN_TOPIC, 30, hm_now_ms() - 2 * 86400000LL);
    commit_group_offsets("g", 10, hm_now_ms());
    uv_loop_t loop;
    uv_loop_init(&loop);
    fixture f;
    hm_stage_opts o = {.shape = HM_STAGE_REBUILD, .rebuild_window_ms = 1000};
    fixture_start(&f, &loop, "a", &o, &k_rebuild_ops);
    want w = {&f, 10};
    assert_true(run_until(&loop, live_caught_up, &w, WAIT_MS));
    /* ... so the partitions start at it, as live ones. */
    assert_int_equal(T(&f)->rebuilt, 0);
    assert_int_equal(T(&f)->processed, 10);
    stop_and_wait(&f);
    fixture_free(&f);
    close_loop(&loop);
}

/* ---- shape 3: external sink ------------------------------------------------------------ */

static int64_t committed_offset(const char *group, int partition) {
    rd_kafka_t *c = plain_client(RD_KAFKA_CONSUMER, group);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, IN_TOPIC, partition);
    assert_int_equal(rd_kafka_committed(c, l, 5000), 0);
    int64_t off = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(c);
    return off;
}

static bool sink_retrying(void *ud) {
    fixture *f = ud;
    return (hm_stage_holds(f->st) & HM_STAGE_HOLD_RETRY) != 0;
}

static bool sink_committed(void *ud) {
    fixture *f = ud;
    return committed_count(f->st) >= 1 && T(f)->processed == 50 &&
           hm_stage_get_unit(f->st) == HM_UNIT_NONE;
}

static void
test_sink_commits_offsets_only_after_the_sink_did_and_retries_with_input_held(void **state) {
    produce(IN_TOPIC, 50);
    uv_loop_t loop;
    uv_loop_init(&loop);
    fixture f;
    hm_stage_opts o = {.shape = HM_STAGE_SINK, .group_id = "sink", .commit_interval_ms = 50};
    fixture_start(&f, &loop, "a", &o, &k_sink_ops);
    T(&f)->sink_fail = 2; /* the sink is down for the first two flushes */
    assert_true(run_until(&loop, sink_retrying, &f, WAIT_MS));
    /* Down: nothing committed, the consumer held. */
    assert_int_equal(committed_count(f.st), 0);
    assert_int_equal(committed_offset("sink", 0), RD_KAFKA_OFFSET_INVALID);
    assert_int_equal(hm_stage_get_unit(f.st), HM_UNIT_COMMITTING);
    assert_true(run_until(&loop, sink_committed, &f, WAIT_MS));
    tsvc *t = T(&f);
    assert_true(t->sink_flushes >= 3);
    assert_non_null(strstr(t->log, "sink-done:fail sink-flush:2 sink-done:fail sink-flush:3 "
                                   "sink-done:ok"));
    /* The records were handed over once: a failed flush is retried, not re-read. */
    assert_int_equal(t->processed, 50);
    for (int p = 0; p < PARTITIONS; p++)
        for (int off = 0; off < 25; off++)
            assert_int_equal(t->seen[p][off], 1);
    assert_int_equal(committed_offset("sink", 0), 25);
    assert_int_equal(committed_offset("sink", 1), 25);
    stop_and_wait(&f);
    assert_int_equal(f.svc.exit_code, 0);
    fixture_free(&f);
    close_loop(&loop);
}

int main(void) {
    alarm(300);
    hm_log_init("test_stage", HM_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transition_tables_allow_the_documented_paths_and_nothing_else),
        cmocka_unit_test_setup_teardown(
            test_changelog_stage_restores_before_processing_and_commits_state_with_outputs,
            mock_setup, mock_teardown),
        cmocka_unit_test_setup_teardown(
            test_abort_forgets_the_unit_state_restores_again_and_reads_the_records_again,
            mock_setup, mock_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_rewind_resumes_at_the_checkpoint_the_last_commit_wrote_in_the_changelog,
            mock_setup, mock_teardown),
        cmocka_unit_test_setup_teardown(
            test_revoke_with_an_open_unit_commits_it_before_the_state_is_dropped, mock_setup,
            mock_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_rebalance_during_a_commit_waits_for_the_commit_to_end, mock_setup,
            mock_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_fenced_producer_stops_the_stage_with_status_1_and_commits_nothing_more,
            mock_setup, mock_teardown),
        cmocka_unit_test_setup_teardown(test_a_restore_reads_every_partition_however_many_there_are,
                                        mock_setup, mock_teardown),
        cmocka_unit_test_setup_teardown(
            test_rebuild_replays_up_to_the_committed_offset_without_sending_then_goes_live,
            mock_setup, mock_teardown),
        cmocka_unit_test_setup_teardown(
            test_rebuild_without_a_record_inside_the_window_starts_at_the_committed_offset,
            mock_setup, mock_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_rebuild_of_a_quiet_partition_ends_with_its_last_record_not_the_next, mock_setup,
            mock_teardown),
        cmocka_unit_test_setup_teardown(
            test_sink_commits_offsets_only_after_the_sink_did_and_retries_with_input_held,
            mock_setup, mock_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
