/*
 * replay.c: the ingest-validator over a JSONL file (replay.h): one quality
 * record per input line, in order, through the same engine as Kafka mode.
 *
 * I/O is plain read(2)/write(2) on large buffers: lines are found with memchr
 * in an 8 MiB input buffer, outputs accumulate in 1 MiB buffers flushed with
 * write(2) (partial writes and EINTR handled). Every line is a record: an empty
 * line is a PARSE_ERROR ("empty record"), a final line without '\n' counts,
 * and a '\r' before the '\n' is stripped. A line longer than the input buffer
 * is streamed: only its first max_record_bytes + 1 bytes are kept (the engine
 * refuses it on its length alone), the rest goes straight to the DLQ file, so
 * memory stays bounded whatever the input holds.
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

#define IN_BUF_BYTES    (8u << 20)
#define OUT_FLUSH_BYTES (1u << 20)
#define PROGRESS_EVERY  65536 /* records between looks at the clock for --progress */
#define CLOCK_EVERY     16    /* records between reads of the wall clock for processed_at */
#define DIRTY_EVERY     65536 /* records between discards of the engine's changelog marks */

/** An output file with its buffer. */
typedef struct ostream {
    int fd; /* -1: discarded */
    bool own;
    const char *name;
    hm_buf buf;
    int err; /* first write error (errno), 0 if none */
} ostream;

static int os_open(ostream *o, const char *path, bool stdout_default) {
    memset(o, 0, sizeof(*o));
    o->fd = -1;
    if (!path) {
        if (!stdout_default) return 0;
        path = "-";
    }
    o->name = strcmp(path, "-") == 0 ? "stdout" : path;
    if (strcmp(path, "-") == 0) {
        o->fd = STDOUT_FILENO;
        return 0;
    }
    o->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o->fd < 0) return -errno;
    o->own = true;
    return 0;
}

static void os_flush(ostream *o) {
    size_t off = 0;
    while (o->fd >= 0 && !o->err && off < o->buf.len) {
        ssize_t n = write(o->fd, o->buf.data + off, o->buf.len - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            o->err = errno;
            break;
        }
        off += (size_t)n;
    }
    hm_buf_reset(&o->buf);
}

static inline void os_maybe_flush(ostream *o) {
    if (o->buf.len >= OUT_FLUSH_BYTES) os_flush(o);
}

static void os_write(ostream *o, const char *p, size_t n) {
    if (o->fd < 0) return;
    hm_buf_append(&o->buf, p, n);
    os_maybe_flush(o);
}

static int os_close(ostream *o) {
    os_flush(o);
    int err = o->err;
    if (o->own && close(o->fd) != 0 && !err) err = errno;
    hm_buf_free(&o->buf);
    o->fd = -1;
    return err;
}

/** One replay run. */
typedef struct replay {
    const iv_config *cfg;
    const iv_replay_opts *opts;
    iv_engine *engine;
    ostream out, events, dlq;
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
    if (r->events.fd < 0) return;
    hm_buf_append(&r->events.buf, json, json_len);
    hm_buf_putc(&r->events.buf, '\n');
    os_maybe_flush(&r->events);
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
static void process_line(replay *r, const char *data, size_t len, bool dlq_done) {
    iv_input in = {data, len, -1, 0};
    r->res.json = &r->out.buf;
    /* The wall clock is read every CLOCK_EVERY records (a vDSO call is ~5% of a
     * record's cost); at over a million records a second the value is at most a few
     * tens of microseconds old, well inside processed_at's millisecond. */
    if (r->records % CLOCK_EVERY == 0) r->now_ms = hm_now_ms();
    iv_engine_process(r->engine, &in, r->now_ms, &r->res);
    hm_buf_putc(&r->out.buf, '\n');
    os_maybe_flush(&r->out);
    if (r->res.parse_error && !dlq_done && r->dlq.fd >= 0) {
        hm_buf_append(&r->dlq.buf, data, len);
        hm_buf_putc(&r->dlq.buf, '\n');
        os_maybe_flush(&r->dlq);
    }
    r->records++;
    if (r->opts->progress && r->records % PROGRESS_EVERY == 0) progress(r);
    /* A replay writes no changelog: drop the dirty marks and tombstones the engine keeps for
     * one, or evictions (each a tombstone, and a slot marked again when reused) would grow
     * them with every new key of a flood. They decide nothing in the output. */
    if (r->records % DIRTY_EVERY == 0) iv_engine_clear_dirty(r->engine);
}

static int read_some(int fd, char *p, size_t n, size_t *got) {
    for (;;) {
        ssize_t k = read(fd, p, n);
        if (k >= 0) {
            *got = (size_t)k;
            return 0;
        }
        if (errno != EINTR) return -errno;
    }
}

/*
 * A line that fills the whole input buffer: keep its first limit bytes in head,
 * stream all of it to the DLQ, read on until its '\n' (or the end). On return
 * buf[*beg, *end) holds what followed the line.
 */
static int stream_long_line(replay *r, int fd, char *buf, size_t cap, size_t *beg, size_t *end,
                            char *head, size_t limit, bool *eof) {
    size_t total = 0;
    bool held_cr = false; /* a '\r' at a chunk's end: part of the line unless '\n' follows */
    memcpy(head, buf, limit);
    size_t have = *end;
    for (;;) {
        char *nl = memchr(buf, '\n', have);
        size_t chunk = nl ? (size_t)(nl - buf) : have;
        if (held_cr && chunk > 0) {
            /* the held '\r' was inside the line after all */
            os_write(&r->dlq, "\r", 1);
            total++;
            held_cr = false;
        }
        if (chunk > 0 && buf[chunk - 1] == '\r') {
            chunk--;
            held_cr = !nl;
        }
        os_write(&r->dlq, buf, chunk);
        total += chunk;
        if (nl) {
            *beg = (size_t)(nl - buf) + 1;
            *end = have;
            break;
        }
        size_t got = 0;
        int rc = read_some(fd, buf, cap, &got);
        if (rc) return rc;
        if (got == 0) {
            *eof = true;
            *beg = *end = 0;
            break;
        }
        have = got;
    }
    os_write(&r->dlq, "\n", 1);
    process_line(r, head, total, true);
    return 0;
}

static int run_input(replay *r, int fd) {
    size_t limit = (size_t)r->cfg->checks.max_record_bytes + 1;
    size_t cap = IN_BUF_BYTES;
    if (cap < limit + 4096) cap = limit + 4096; /* a line the engine reads fits whole */
    char *buf = hm_xmalloc(cap);
    char *head = hm_xmalloc(limit);
    size_t beg = 0, end = 0;
    bool eof = false;
    int rc = 0;
    for (;;) {
        char *nl = end > beg ? memchr(buf + beg, '\n', end - beg) : NULL;
        if (nl) {
            size_t len = (size_t)(nl - (buf + beg));
            if (len > 0 && buf[beg + len - 1] == '\r') len--;
            process_line(r, buf + beg, len, false);
            beg = (size_t)(nl - buf) + 1;
            continue;
        }
        if (eof) {
            if (end > beg) { /* a last line without '\n' */
                size_t len = end - beg;
                if (buf[beg + len - 1] == '\r') len--;
                process_line(r, buf + beg, len, false);
            }
            break;
        }
        if (beg > 0) {
            memmove(buf, buf + beg, end - beg);
            end -= beg;
            beg = 0;
        }
        if (end == cap) {
            rc = stream_long_line(r, fd, buf, cap, &beg, &end, head, limit, &eof);
            if (rc) break;
            continue;
        }
        size_t got = 0;
        rc = read_some(fd, buf + end, cap - end, &got);
        if (rc) break;
        if (got == 0)
            eof = true;
        else
            end += got;
    }
    free(head);
    free(buf);
    return rc;
}

int iv_replay_run(const iv_config *cfg, const iv_replay_opts *opts) {
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
        ostream *o;
        const char *path;
        bool def;
        const char *opt;
    } outs[] = {{&r.out, opts->output, true, "--output"},
                {&r.events, opts->events, false, "--events"},
                {&r.dlq, opts->dlq, false, "--dlq"}};
    for (size_t i = 0; i < HM_ARRAY_LEN(outs); i++) {
        if ((rc = os_open(outs[i].o, outs[i].path, outs[i].def)) != 0) {
            fprintf(stderr, "ingest-validator: %s %s: %s\n", outs[i].opt, outs[i].path,
                    strerror(-rc));
            for (size_t j = 0; j < i; j++)
                (void)os_close(outs[j].o);
            if (in_fd != STDIN_FILENO) close(in_fd);
            return 1;
        }
    }

    r.engine = iv_engine_new(&cfg->checks, true);
    iv_engine_set_event_sink(r.engine, on_event, &r);
    r.start_ns = r.progress_ns = hm_mono_ns();
    hm_buf_reserve(&r.out.buf, OUT_FLUSH_BYTES + 65536);

    int exit_code = 0;
    rc = run_input(&r, in_fd);
    if (rc) {
        fprintf(stderr, "ingest-validator: --replay %s: read: %s\n", in_name, strerror(-rc));
        exit_code = 1;
    }
    if (in_fd != STDIN_FILENO) close(in_fd);
    for (size_t i = 0; i < HM_ARRAY_LEN(outs); i++) {
        int err = os_close(outs[i].o);
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
