/*
 * replay.c: causal events from a file into Neo4j transactions (replay.h).
 *
 * Lines are batched by graph_writer.batch_max_events, as the service batches them. A line
 * that is not an event the graph holds is named on stderr (the first ten) and copied to
 * --dlq. With --apply each transaction is sent and waited for (a transient failure is
 * tried again, 5 times, a second apart); a refused one is named and the run goes on.
 */
#include "replay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "events.h"
#include "neo4j.h"
#include "schema.h"

#define NAMED_ERRORS   10
#define MAX_LINE_BYTES (1u << 20)
#define APPLY_ATTEMPTS 5

typedef struct replay {
    const gw_config *cfg;
    const gw_replay_opts *opts;
    gw_batch batch;
    hm_ostream out, dlq;
    hm_buf body;
    uint64_t lines, bad_lines, events, transactions, failed;
    uint64_t batch_first_line;
    /* --apply */
    uv_loop_t loop;
    gw_neo4j *neo4j;
    gw_neo4j_result last;
    bool answered;
} replay;

static void on_answer(void *ud, const gw_neo4j_result *r) {
    replay *rp = ud;
    rp->last = *r;
    rp->answered = true;
}

/* Send rp->body and wait; 0 committed, -1 not (said on stderr). */
static int apply_body(replay *rp, const char *what) {
    for (int attempt = 1;; attempt++) {
        rp->answered = false;
        if (gw_neo4j_commit(rp->neo4j, rp->body.data, rp->body.len, on_answer, rp) != 0) {
            fprintf(stderr, "graph-writer: %s: the request could not be made\n", what);
            return -1;
        }
        while (!rp->answered)
            uv_run(&rp->loop, UV_RUN_ONCE);
        if (rp->last.outcome == GW_NEO4J_OK) return 0;
        fprintf(stderr, "graph-writer: %s: %s (attempt %d of %d)\n", what, rp->last.message,
                attempt, rp->last.outcome == GW_NEO4J_TRANSIENT ? APPLY_ATTEMPTS : 1);
        if (rp->last.outcome != GW_NEO4J_TRANSIENT || attempt >= APPLY_ATTEMPTS) return -1;
        sleep(1);
    }
}

static void emit(replay *rp) {
    if (rp->batch.total == 0) return;
    gw_windows w = {.whale_s = rp->cfg->whale_window_s,
                    .movement_s = rp->cfg->movement_window_s,
                    .cascade_s = rp->cfg->cascade_window_s};
    hm_buf_reset(&rp->body);
    gw_batch_body(&rp->batch, &w, &rp->body);
    rp->transactions++;
    rp->events += rp->batch.total;
    if (rp->opts->apply) {
        char what[96];
        snprintf(what, sizeof(what), "transaction of lines %llu..%llu",
                 (unsigned long long)rp->batch_first_line, (unsigned long long)rp->lines);
        if (apply_body(rp, what) != 0) rp->failed++;
    } else {
        hm_ostream_line(&rp->out, rp->body.data, rp->body.len);
        hm_ostream_maybe_flush(&rp->out);
    }
    gw_batch_reset(&rp->batch);
}

static void on_line(void *ud, const char *data, size_t len, bool streamed) {
    replay *rp = ud;
    rp->lines++;
    if (len == 0) return;
    gw_reject why;
    if (streamed || gw_batch_add(&rp->batch, data, len, &why) != 0) {
        rp->bad_lines++;
        if (rp->bad_lines <= NAMED_ERRORS) {
            hm_buf b = {0};
            HM_BUF_PUT_LIT(&b, "{\"event\":\"replay_bad_line\",\"line\":");
            hm_buf_u64(&b, rp->lines);
            HM_BUF_PUT_LIT(&b, ",\"field\":");
            hm_json_cstr(&b, streamed ? "" : why.field);
            HM_BUF_PUT_LIT(&b, ",\"error\":");
            hm_json_cstr(&b, streamed ? "line longer than 1 MiB" : why.detail);
            HM_BUF_PUT_LIT(&b, "}\n");
            fwrite(b.data, 1, b.len, stderr);
            hm_buf_free(&b);
        }
        if (!streamed) hm_ostream_line(&rp->dlq, data, len);
        return;
    }
    if (rp->batch.total == 1) rp->batch_first_line = rp->lines;
    if ((int64_t)rp->batch.total >= rp->cfg->batch_max_events) emit(rp);
}

static int apply_schema(replay *rp) {
    for (size_t i = 0; i < gw_cypher_file_count; i++) {
        hm_buf_reset(&rp->body);
        gw_schema_body(gw_cypher_files[i].text, gw_cypher_files[i].len, &rp->body);
        char what[96];
        snprintf(what, sizeof(what), "schema cypher/%03d_%s.cypher", gw_cypher_files[i].version,
                 gw_cypher_files[i].name);
        if (apply_body(rp, what) != 0) return -1;
    }
    return 0;
}

int gw_replay_run(const gw_config *cfg, const gw_replay_opts *opts) {
    replay rp = {.cfg = cfg, .opts = opts};
    gw_batch_init(&rp.batch);
    int fd = strcmp(opts->io.input, "-") == 0 ? 0 : open(opts->io.input, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "graph-writer: --replay %s: %s\n", opts->io.input, strerror(errno));
        return 1;
    }
    int status = 1;
    if (hm_ostream_open(&rp.out, opts->apply ? NULL : opts->io.output, !opts->apply) != 0 ||
        hm_ostream_open(&rp.dlq, opts->io.dlq, false) != 0) {
        fprintf(stderr, "graph-writer: cannot open --output or --dlq: %s\n", strerror(errno));
        goto out;
    }
    if (opts->apply) {
        uv_loop_init(&rp.loop);
        rp.neo4j = gw_neo4j_new(&rp.loop, &cfg->neo4j);
        if (!rp.neo4j || apply_schema(&rp) != 0) goto out;
    }
    hm_jsonl_ops ops = {.line = on_line, .ud = &rp};
    int rc = hm_jsonl_read(fd, MAX_LINE_BYTES, &ops);
    if (rc != 0) {
        fprintf(stderr, "graph-writer: --replay %s: %s\n", opts->io.input, strerror(-rc));
        goto out;
    }
    emit(&rp);
    status = rp.failed ? 1 : 0;
    fprintf(stderr,
            "{\"event\":\"replay_done\",\"lines\":%llu,\"bad_lines\":%llu,\"events\":%llu,"
            "\"transactions\":%llu,\"failed_transactions\":%llu,\"applied\":%s}\n",
            (unsigned long long)rp.lines, (unsigned long long)rp.bad_lines,
            (unsigned long long)rp.events, (unsigned long long)rp.transactions,
            (unsigned long long)rp.failed, opts->apply ? "true" : "false");
out:
    if (rp.neo4j) {
        gw_neo4j_close(rp.neo4j);
        uv_run(&rp.loop, UV_RUN_DEFAULT);
        uv_loop_close(&rp.loop);
    }
    if (fd > 0) close(fd);
    if (hm_ostream_close(&rp.out) != 0 || hm_ostream_close(&rp.dlq) != 0) status = 1;
    gw_batch_free(&rp.batch);
    hm_buf_free(&rp.body);
    return status;
}
