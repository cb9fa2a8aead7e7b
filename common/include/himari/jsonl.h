/*
 * himari/jsonl.h: the JSONL files of every service's --replay mode: a line reader with
 * bounded memory and a buffered output stream.
 *
 * Reading is plain read(2) into a large buffer, lines found with memchr. Every line is
 * a record: an empty line too, a final line without '\n' counts, and a '\r' before the
 * '\n' is stripped. A line longer than the buffer is streamed: its bytes go to the
 * reader's spill hook as they are read (the validator writes them to its DLQ file), and
 * the line hook gets only its first `limit` bytes with its true length, so memory stays
 * bounded whatever the input holds. Nothing is ever dropped or reordered.
 *
 * Writing accumulates in a buffer flushed with write(2) at 1 MiB (partial writes and
 * EINTR handled); the first error is kept and reported at close.
 */
#ifndef HIMARI_JSONL_H
#define HIMARI_JSONL_H

#include <stdbool.h>
#include <stddef.h>

#include "himari/buf.h"

#define HM_OSTREAM_FLUSH_BYTES (1u << 20)

/** An output file with its buffer. */
typedef struct hm_ostream {
    int fd; /* -1: discarded (writes do nothing) */
    bool own;
    const char *name; /* for messages: the path, or "stdout" */
    hm_buf buf;       /* append here, then hm_ostream_maybe_flush */
    int err;          /* first write error (errno), 0 if none */
} hm_ostream;

/**
 * @brief Open path for writing (truncated); "-" is stdout; NULL is stdout when
 * stdout_default, else a discarded stream. @return 0 or -errno.
 */
int hm_ostream_open(hm_ostream *o, const char *path, bool stdout_default) HM_MUST_CHECK;
void hm_ostream_flush(hm_ostream *o);
static inline void hm_ostream_maybe_flush(hm_ostream *o) {
    if (o->buf.len >= HM_OSTREAM_FLUSH_BYTES) hm_ostream_flush(o);
}
/** @brief Append n bytes (nothing for a discarded stream). */
void hm_ostream_write(hm_ostream *o, const char *p, size_t n);
/** @brief Append a line: the bytes and '\n'. */
void hm_ostream_line(hm_ostream *o, const char *p, size_t n);
/** @brief Flush, close what was opened, free. @return 0 or the first error (errno). */
int hm_ostream_close(hm_ostream *o);

/** What a reader calls. */
typedef struct hm_jsonl_ops {
    /**
     * One line: data[0..min(len, limit)) holds its bytes (all of them unless streamed),
     * len is its true length, streamed says its bytes went to spill already.
     */
    void (*line)(void *ud, const char *data, size_t len, bool streamed);
    /** A streamed line's bytes, in order, as they are read; then "\n" once. NULL: dropped
     *  from memory (the line hook still gets the head and length). */
    void (*spill)(void *ud, const char *p, size_t n);
    void *ud;
} hm_jsonl_ops;

/**
 * @brief Read fd to its end, one call of ops->line per line. Lines up to the buffer's
 * size (8 MiB, or limit + 4 KiB when larger) are passed whole; longer ones are streamed.
 * @return 0 at the end of the input, or -errno of a failed read.
 */
int hm_jsonl_read(int fd, size_t limit, const hm_jsonl_ops *ops) HM_MUST_CHECK;

/** The options of the services' --replay modes (a service uses those it documents). */
typedef struct hm_replay_opts {
    const char *input;  /* --replay FILE: path, or "-" for stdin */
    const char *output; /* --output FILE: path, or "-"/NULL for stdout */
    const char *events; /* --events FILE: events as JSONL; NULL: discarded */
    const char *dlq;    /* --dlq FILE: lines refused, verbatim; NULL: not written */
    const char *latest; /* --latest FILE: a final view (feature-engine); NULL: none */
    bool progress;      /* --progress: a progress line on stderr every second */
} hm_replay_opts;

/**
 * @brief Store a replay option by its long name ("replay", "output", "events", "dlq",
 * "latest", "progress"; arg NULL for the flag): a service's on_option hook in one call.
 * @return 0, or -EINVAL for another name.
 */
int hm_replay_opts_set(hm_replay_opts *r, const char *option, const char *arg) HM_MUST_CHECK;

#endif
