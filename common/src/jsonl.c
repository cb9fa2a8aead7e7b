/*
 * jsonl.c: the replay modes' line reader and output stream (himari/jsonl.h).
 */
#include "himari/jsonl.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "himari/common.h"

#define IN_BUF_BYTES (8u << 20)

int hm_ostream_open(hm_ostream *o, const char *path, bool stdout_default) {
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

void hm_ostream_flush(hm_ostream *o) {
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

void hm_ostream_write(hm_ostream *o, const char *p, size_t n) {
    if (o->fd < 0) return;
    hm_buf_append(&o->buf, p, n);
    hm_ostream_maybe_flush(o);
}

void hm_ostream_line(hm_ostream *o, const char *p, size_t n) {
    if (o->fd < 0) return;
    hm_buf_append(&o->buf, p, n);
    hm_buf_putc(&o->buf, '\n');
    hm_ostream_maybe_flush(o);
}

int hm_ostream_close(hm_ostream *o) {
    hm_ostream_flush(o);
    int err = o->err;
    if (o->own && close(o->fd) != 0 && !err) err = errno;
    hm_buf_free(&o->buf);
    o->fd = -1;
    return err;
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

static void spill(const hm_jsonl_ops *ops, const char *p, size_t n) {
    if (ops->spill && n > 0) ops->spill(ops->ud, p, n);
}

/*
 * A line that fills the whole input buffer: keep its first limit bytes in head,
 * stream all of it to spill, read on until its '\n' (or the end). On return
 * buf[*beg, *end) holds what followed the line.
 */
static int stream_long_line(int fd, char *buf, size_t cap, size_t *beg, size_t *end, char *head,
                            size_t limit, bool *eof, const hm_jsonl_ops *ops) {
    size_t total = 0;
    bool held_cr = false; /* a '\r' at a chunk's end: part of the line unless '\n' follows */
    memcpy(head, buf, limit);
    size_t have = *end;
    for (;;) {
        char *nl = memchr(buf, '\n', have);
        size_t chunk = nl ? (size_t)(nl - buf) : have;
        if (held_cr && chunk > 0) {
            /* the held '\r' was inside the line after all */
            spill(ops, "\r", 1);
            total++;
            held_cr = false;
        }
        if (chunk > 0 && buf[chunk - 1] == '\r') {
            chunk--;
            held_cr = !nl;
        }
        spill(ops, buf, chunk);
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
    spill(ops, "\n", 1);
    ops->line(ops->ud, head, total, true);
    return 0;
}

int hm_jsonl_read(int fd, size_t limit, const hm_jsonl_ops *ops) {
    size_t cap = IN_BUF_BYTES;
    if (cap < limit + 4096) cap = limit + 4096; /* a line the caller reads fits whole */
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
            ops->line(ops->ud, buf + beg, len, false);
            beg = (size_t)(nl - buf) + 1;
            continue;
        }
        if (eof) {
            if (end > beg) { /* a last line without '\n' */
                size_t len = end - beg;
                if (buf[beg + len - 1] == '\r') len--;
                ops->line(ops->ud, buf + beg, len, false);
            }
            break;
        }
        if (beg > 0) {
            memmove(buf, buf + beg, end - beg);
            end -= beg;
            beg = 0;
        }
        if (end == cap) {
            rc = stream_long_line(fd, buf, cap, &beg, &end, head, limit, &eof, ops);
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

int hm_replay_opts_set(hm_replay_opts *r, const char *option, const char *arg) {
    static const struct {
        const char *name;
        size_t off;
    } k_paths[] = {
        {"replay", offsetof(hm_replay_opts, input)},  {"output", offsetof(hm_replay_opts, output)},
        {"events", offsetof(hm_replay_opts, events)}, {"dlq", offsetof(hm_replay_opts, dlq)},
        {"latest", offsetof(hm_replay_opts, latest)},
    };
    if (strcmp(option, "progress") == 0) {
        r->progress = true;
        return 0;
    }
    for (size_t i = 0; i < HM_ARRAY_LEN(k_paths); i++) {
        if (strcmp(option, k_paths[i].name) == 0) {
            *(const char **)((char *)r + k_paths[i].off) = arg;
            return 0;
        }
    }
    return -EINVAL;
}
