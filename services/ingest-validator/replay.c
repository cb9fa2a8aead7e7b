/*
 * replay.c: the ingest-validator over a JSONL file (replay.h): one quality
 * record per input line, in order, through the same engine as Kafka mode.
 *
 * The file is read and written with common's JSONL reader and streams
 * (himari/jsonl.h). Every line is a record: an empty line is a PARSE_ERROR
 * ("empty record"). A line longer than the reader's buffer is streamed: only its
 * first max_record_bytes + 1 bytes are kept (the engine refuses it on its length
 * alone), the rest goes straight to the DLQ file, so memory stays bounded
 * whatever the input holds.
 *
 * Freshness is judged on the event clock (a file has no ingest times), so a
 * replay of history judges it as it was live; processed_at is the only field
 * that depends on when the replay runs. It must never drop or reorder a line.
 */
#include "replay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "himari/buf.h"
#include "himari/common.h"
#include "himari/jsonl.h"

#define PROGRESS_EVERY 65536 /* records between looks at the clock for --progress */
#define CLOCK_EVERY    16    /* records between reads of the wall clock for processed_at */
#define DIRTY_EVERY    65536 /* records between discards of the engine's changelog marks */

/** One replay run. */
typedef struct replay {
    const iv_config *cfg;
    const hm_replay_opts *opts;
    iv_engine *engine;
    hm_ostream out, events, dlq;
    iv_output res;
    uint64_t records;
    int64_t now_ms; /* processed_at */
    uint64_t start_ns, progress_ns, progress_records;
} replay;

static void on_event(void *ud, int32_t partition, const char *key, size_t key_len, const char *json,
                     size_t json_len) {
    HM_UNUSED(partition);
    HM_UNUSED(key);
    HM_UNUSED(key_len);
    replay *r = ud;
    hm_ostream_line(&r->events, json, json_len);
}

static void progress(replay *r) {
    uint64_t now = hm_mono_ns();
    if (now - r->progress_ns < 1000000000u) return;
    double dt = (double)(now - r->progress_ns) / 1e9;
    fprintf(stderr, "{\"event\":\"replay_progress\",\"records\":%llu,\"records_per_s\":%.0f}\n",
            (unsigned long long)r->records, (double)(r->records - r->progress_records) / dt);
    r->progress_ns = now;
    r->progress_records = r->records;
}

/*
 * Judge one line. data holds the line's first bytes (all of them unless it was
 * streamed), len its true length. dlq_done: the line already went to the DLQ.
 */
static void process_line(void *ud, const char *data, size_t len, bool dlq_done) {
    replay *r = ud;
    iv_input in = {data, len, -1, 0};
    r->res.json = &r->out.buf;
    /* The wall clock is read every CLOCK_EVERY records (a vDSO call is ~5% of a
     * record's cost); at over a million records a second the value is at most a few
     * tens of microseconds old, well inside processed_at's millisecond. */
    if (r->records % CLOCK_EVERY == 0) r->now_ms = hm_now_ms();
    iv_engine_process(r->engine, &in, r->now_ms, &r->res);
    hm_buf_putc(&r->out.buf, '\n');
    hm_ostream_maybe_flush(&r->out);
    if (r->res.parse_error && !dlq_done) hm_ostream_line(&r->dlq, data, len);
    r->records++;
    if (r->opts->progress && r->records % PROGRESS_EVERY == 0) progress(r);
    /* A replay writes no changelog: drop the dirty marks and tombstones the engine keeps for
     * one, or evictions (each a tombstone, and a slot marked again when reused) would grow
     * them with every new key of a flood. They decide nothing in the output. */
    if (r->records % DIRTY_EVERY == 0) iv_engine_clear_dirty(r->engine);
}

/* A line too long for the reader's buffer streams to the DLQ as it is read. */
static void spill_to_dlq(void *ud, const char *p, size_t n) {
    replay *r = ud;
    hm_ostream_write(&r->dlq, p, n);
}

int iv_replay_run(const iv_config *cfg, const hm_replay_opts *opts) {
    replay r;
    memset(&r, 0, sizeof(r));
    r.cfg = cfg;
    r.opts = opts;
    const char *in_name = opts->input && strcmp(opts->input, "-") != 0 ? opts->input : "stdin";
    int in_fd = STDIN_FILENO;
    if (opts->input && strcmp(opts->input, "-") != 0) {
        in_fd = open(opts->input, O_RDONLY | O_CLOEXEC);
        if (in_fd < 0) {
            fprintf(stderr, "ingest-validator: --replay %s: %s\n", in_name, strerror(errno));
            return 1;
        }
    }
    int rc;
    struct {
        hm_ostream *o;
        const char *path;
        bool def;
        const char *opt;
    } outs[] = {{&r.out, opts->output, true, "--output"},
                {&r.events, opts->events, false, "--events"},
                {&r.dlq, opts->dlq, false, "--dlq"}};
    for (size_t i = 0; i < HM_ARRAY_LEN(outs); i++) {
        if ((rc = hm_ostream_open(outs[i].o, outs[i].path, outs[i].def)) != 0) {
            fprintf(stderr, "ingest-validator: %s %s: %s\n", outs[i].opt, outs[i].path,
                    strerror(-rc));
            for (size_t j = 0; j < i; j++)
                (void)hm_ostream_close(outs[j].o);
            if (in_fd != STDIN_FILENO) close(in_fd);
            return 1;
        }
    }

    r.engine = iv_engine_new(&cfg->checks, true);
    iv_engine_set_event_sink(r.engine, on_event, &r);
    r.start_ns = r.progress_ns = hm_mono_ns();
    hm_buf_reserve(&r.out.buf, HM_OSTREAM_FLUSH_BYTES + 65536);

    int exit_code = 0;
    hm_jsonl_ops ops = {.line = process_line, .spill = spill_to_dlq, .ud = &r};
    rc = hm_jsonl_read(in_fd, (size_t)cfg->checks.max_record_bytes + 1, &ops);
    if (rc) {
        fprintf(stderr, "ingest-validator: --replay %s: read: %s\n", in_name, strerror(-rc));
        exit_code = 1;
    }
    if (in_fd != STDIN_FILENO) close(in_fd);
    for (size_t i = 0; i < HM_ARRAY_LEN(outs); i++) {
        int err = hm_ostream_close(outs[i].o);
        if (err) {
            fprintf(stderr, "ingest-validator: %s %s: write: %s\n", outs[i].opt,
                    outs[i].o->name ? outs[i].o->name : "", strerror(err));
            exit_code = 1;
        }
    }

    double secs = (double)(hm_mono_ns() - r.start_ns) / 1e9;
    const iv_stats *st = iv_engine_stats(r.engine);
    fprintf(stderr,
            "{\"event\":\"replay_done\",\"records\":%llu,\"ok\":%llu,\"flagged\":%llu,"
            "\"rejected\":%llu,\"parse_errors\":%llu,\"events\":%llu,\"state_evictions\":%llu,"
            "\"seconds\":%.3f,\"records_per_s\":%.0f}\n",
            (unsigned long long)st->records, (unsigned long long)st->ok,
            (unsigned long long)st->flagged, (unsigned long long)st->rejected,
            (unsigned long long)st->parse_errors, (unsigned long long)st->events,
            (unsigned long long)st->evictions, secs, secs > 0 ? (double)st->records / secs : 0.0);
    iv_engine_free(r.engine);
    return exit_code;
}
