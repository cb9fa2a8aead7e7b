/*
 * replay.c: the feature-engine over a JSONL file of quality records (replay.h), every
 * line through fe_engine_process as partition 0, in order.
 *
 * A line that is not a quality record (not JSON, too deep, a repeated key) is counted,
 * named on stderr (the first ten: line number and reason) and copied to --dlq; the
 * stream goes on. Records that decode but carry nothing usable (parse errors upstream)
 * are counted by the engine. Memory is bounded by the engine's max_symbols and the
 * reader's buffer.
 */
#include "replay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "himari/common.h"
#include "himari/jsonl.h"

#define PROGRESS_EVERY 65536 /* records between looks at the clock for --progress */
#define NAMED_ERRORS   10    /* bad lines named on stderr; the rest are counted */
#define MAX_LINE_BYTES (1u << 20)

typedef struct replay {
    const hm_replay_opts *opts;
    fe_engine *engine;
    hm_ostream out, events, latest, dlq;
    uint64_t lines, bad_lines;
    uint64_t progress_ns, progress_lines;
} replay;

static void on_features(void *ud, int32_t partition, const char *key, size_t key_len,
                        int64_t interval_end_ms, const char *json, size_t len) {
    HM_UNUSED(partition);
    HM_UNUSED(key);
    HM_UNUSED(key_len);
    HM_UNUSED(interval_end_ms);
    hm_ostream_line(&((replay *)ud)->out, json, len);
}

static void on_event(void *ud, int32_t partition, const char *key, size_t key_len, const char *json,
                     size_t len) {
    HM_UNUSED(partition);
    HM_UNUSED(key);
    HM_UNUSED(key_len);
    hm_ostream_line(&((replay *)ud)->events, json, len);
}

static void progress(replay *r) {
    uint64_t now = hm_mono_ns();
    if (now - r->progress_ns < 1000000000u) return;
    double dt = (double)(now - r->progress_ns) / 1e9;
    fprintf(stderr, "{\"event\":\"replay_progress\",\"records\":%llu,\"records_per_s\":%.0f}\n",
            (unsigned long long)r->lines, (double)(r->lines - r->progress_lines) / dt);
    r->progress_ns = now;
    r->progress_lines = r->lines;
}

/* A line that is not a quality record: named (the first few), kept in --dlq. */
static void bad_line(replay *r, const char *data, size_t len, bool copy, const char *why,
                     size_t at) {
    r->bad_lines++;
    if (r->bad_lines <= NAMED_ERRORS) {
        hm_buf b = {0};
        HM_BUF_PUT_LIT(&b, "{\"event\":\"replay_bad_line\",\"line\":");
        hm_buf_u64(&b, r->lines);
        HM_BUF_PUT_LIT(&b, ",\"offset\":");
        hm_buf_u64(&b, at);
        HM_BUF_PUT_LIT(&b, ",\"error\":");
        hm_json_cstr(&b, why);
        HM_BUF_PUT_LIT(&b, "}\n");
        fwrite(b.data, 1, b.len, stderr);
        hm_buf_free(&b);
    }
    if (copy) hm_ostream_line(&r->dlq, data, len);
}

/* A line too long for the reader's buffer streams to --dlq as it is read. */
static void spill_to_dlq(void *ud, const char *p, size_t n) {
    hm_ostream_write(&((replay *)ud)->dlq, p, n);
}

static void process_line(void *ud, const char *data, size_t len, bool streamed) {
    replay *r = ud;
    r->lines++;
    hm_quality q;
    hm_decode_err err = {0};
    if (streamed || len > MAX_LINE_BYTES) {
        bad_line(r, data, len, !streamed, "longer than 1 MiB", 0);
    } else if (hm_quality_decode(data, len, &q, &err) != 0) {
        char why[200];
        snprintf(why, sizeof(why), "not a quality record: %s", err.msg);
        bad_line(r, data, len, true, why, err.offset);
    } else {
        fe_engine_process(r->engine, 0, &q);
    }
    if (r->opts->progress && r->lines % PROGRESS_EVERY == 0) progress(r);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct name_list {
    char **v;
    size_t n;
} name_list;

static void collect_name(void *ud, const char *symbol) {
    name_list *l = ud;
    l->v[l->n++] = (char *)symbol;
}

/* --latest: every symbol's latest view, in name order (so that two runs compare). */
static void write_latest(replay *r) {
    if (r->latest.fd < 0) return;
    name_list l = {hm_xmalloc((fe_engine_symbols(r->engine) + 1) * sizeof(char *)), 0};
    fe_engine_each_symbol(r->engine, collect_name, &l);
    qsort(l.v, l.n, sizeof(*l.v), cmp_str);
    for (size_t i = 0; i < l.n; i++) {
        if (fe_engine_latest_json(r->engine, l.v[i], &r->latest.buf) == 0) {
            hm_buf_putc(&r->latest.buf, '\n');
            hm_ostream_maybe_flush(&r->latest);
        }
    }
    free(l.v);
}

int fe_replay_run(const fe_config *cfg, const hm_replay_opts *opts) {
    replay r = {.opts = opts};
    const char *in_name = opts->input && strcmp(opts->input, "-") != 0 ? opts->input : "stdin";
    int in_fd = STDIN_FILENO;
    if (opts->input && strcmp(opts->input, "-") != 0) {
        in_fd = open(opts->input, O_RDONLY | O_CLOEXEC);
        if (in_fd < 0) {
            fprintf(stderr, "feature-engine: --replay %s: %s\n", in_name, strerror(errno));
            return 1;
        }
    }
    struct {
        hm_ostream *o;
        const char *path;
        bool def;
        const char *opt;
    } outs[] = {{&r.out, opts->output, true, "--output"},
                {&r.events, opts->events, false, "--events"},
                {&r.latest, opts->latest, false, "--latest"},
                {&r.dlq, opts->dlq, false, "--dlq"}};
    for (size_t i = 0; i < HM_ARRAY_LEN(outs); i++) {
        int rc = hm_ostream_open(outs[i].o, outs[i].path, outs[i].def);
        if (rc != 0) {
            fprintf(stderr, "feature-engine: %s %s: %s\n", outs[i].opt, outs[i].path,
                    strerror(-rc));
            for (size_t j = 0; j < i; j++)
                (void)hm_ostream_close(outs[j].o);
            if (in_fd != STDIN_FILENO) close(in_fd);
            return 1;
        }
    }
    fe_sinks sinks = {.features = on_features, .event = on_event, .ud = &r};
    r.engine = fe_engine_new(&cfg->params, &sinks);
    if (!r.engine) hm_panic("feature-engine: out of memory");
    uint64_t start = r.progress_ns = hm_mono_ns();

    int exit_code = 0;
    hm_jsonl_ops ops = {.line = process_line, .spill = spill_to_dlq, .ud = &r};
    int rc = hm_jsonl_read(in_fd, MAX_LINE_BYTES + 1, &ops);
    if (rc) {
        fprintf(stderr, "feature-engine: --replay %s: read: %s\n", in_name, strerror(-rc));
        exit_code = 1;
    }
    if (in_fd != STDIN_FILENO) close(in_fd);
    write_latest(&r);
    for (size_t i = 0; i < HM_ARRAY_LEN(outs); i++) {
        int err = hm_ostream_close(outs[i].o);
        if (err) {
            fprintf(stderr, "feature-engine: %s %s: write: %s\n", outs[i].opt,
                    outs[i].o->name ? outs[i].o->name : "", strerror(err));
            exit_code = 1;
        }
    }
    double secs = (double)(hm_mono_ns() - start) / 1e9;
    const fe_stats *st = fe_engine_stats(r.engine);
    fprintf(stderr,
            "{\"event\":\"replay_done\",\"lines\":%llu,\"bad_lines\":%llu,\"records\":%llu,"
            "\"applied\":%llu,\"below_floor\":%llu,\"late\":%llu,\"unusable\":%llu,"
            "\"untrusted\":%llu,"
            "\"liquidations\":%llu,\"transfers\":%llu,\"exchanges_full\":%llu,"
            "\"symbols\":%zu,\"symbols_evicted\":%llu,\"features\":%llu,\"events\":%llu,"
            "\"seconds\":%.3f,\"records_per_s\":%.0f}\n",
            (unsigned long long)r.lines, (unsigned long long)r.bad_lines,
            (unsigned long long)st->records, (unsigned long long)st->applied,
            (unsigned long long)st->below_floor, (unsigned long long)st->late,
            (unsigned long long)st->unusable, (unsigned long long)st->untrusted,
            (unsigned long long)st->liquidations, (unsigned long long)st->transfers,
            (unsigned long long)st->exchanges_full, fe_engine_symbols(r.engine),
            (unsigned long long)st->evicted, (unsigned long long)st->emitted,
            (unsigned long long)st->events, secs, secs > 0 ? (double)st->records / secs : 0.0);
    fe_engine_free(r.engine);
    return exit_code;
}
