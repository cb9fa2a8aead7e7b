/*
 * kafka_queue.c: the pump that brings a librdkafka queue onto the libuv loop
 * (see kafka_int.h for how it works).
 *
 * It must never block: the pipe is non-blocking on both ends and events are
 * popped with a zero timeout. It must never lose a wake-up: librdkafka writes
 * only on the empty -> non-empty transition, so whenever a turn stops with
 * events left (budget spent, or held) the pump remembers to come back (the
 * idle handle, or hm_kq_release which restarts it).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka_int.h"

static void kq_on_idle(uv_idle_t *h);

static void kq_drain(hm_kq *kq) {
    if (kq->held && !kq->closing) {
        uv_idle_stop(&kq->idle);
        return;
    }
    size_t n = 0;
    while (n < kq->budget) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(kq->q, 0);
        if (!ev) {
            uv_idle_stop(&kq->idle);
            if (kq->on_turn) kq->on_turn(kq, n);
            return;
        }
        n++;
        kq->on_event(kq, ev);
        if (kq->held && !kq->closing) break;
    }
    /* Budget spent or held with events possibly left: come back next turn
     * unless held (hm_kq_release restarts us). */
    if (kq->held && !kq->closing)
        uv_idle_stop(&kq->idle);
    else
        uv_idle_start(&kq->idle, kq_on_idle);
    if (kq->on_turn) kq->on_turn(kq, n);
}

static void kq_on_idle(uv_idle_t *h) {
    kq_drain(h->data);
}

static void kq_on_readable(uv_poll_t *h, int status, int events) {
    hm_kq *kq = h->data;
    char sink[256];
    /* Drain the wake-up bytes; their count carries no meaning. */
    while (read(kq->fds[0], sink, sizeof(sink)) > 0) {}
    kq_drain(kq);
}

int hm_kq_start(hm_kq *kq, uv_loop_t *loop, rd_kafka_queue_t *q, size_t budget, void *owner,
                hm_kq_event_fn on_event, hm_kq_turn_fn on_turn, hm_err *err) {
    memset(kq, 0, sizeof(*kq));
    kq->loop = loop;
    kq->q = q;
    kq->budget = budget ? budget : 1000;
    kq->owner = owner;
    kq->on_event = on_event;
    kq->on_turn = on_turn;
    if (pipe2(kq->fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return hm_err_set(err, -errno, "kafka: cannot create a wake-up pipe: %s", strerror(errno));
    int rc = uv_poll_init(loop, &kq->poll, kq->fds[0]);
    if (rc != 0) {
        close(kq->fds[0]);
        close(kq->fds[1]);
        return hm_err_set(err, rc, "kafka: uv_poll_init: %s", uv_strerror(rc));
    }
    uv_idle_init(loop, &kq->idle);
    kq->poll.data = kq;
    kq->idle.data = kq;
    kq->handles_open = 2;
    rd_kafka_queue_io_event_enable(q, kq->fds[1], "x", 1);
    uv_poll_start(&kq->poll, UV_READABLE, kq_on_readable);
    /* Events may already be queued (no byte was written for them). */
    uv_idle_start(&kq->idle, kq_on_idle);
    return 0;
}

void hm_kq_hold(hm_kq *kq) {
    kq->held = true;
}

void hm_kq_release(hm_kq *kq) {
    kq->held = false;
    if (!uv_is_closing((uv_handle_t *)&kq->idle)) uv_idle_start(&kq->idle, kq_on_idle);
}

void hm_kq_kick(hm_kq *kq) {
    if (!uv_is_closing((uv_handle_t *)&kq->idle)) uv_idle_start(&kq->idle, kq_on_idle);
}

static void kq_on_handle_closed(uv_handle_t *h) {
    hm_kq *kq = h->data;
    if (--kq->handles_open > 0) return;
    rd_kafka_queue_io_event_enable(kq->q, -1, NULL, 0);
    close(kq->fds[0]);
    close(kq->fds[1]);
    rd_kafka_queue_destroy(kq->q);
    kq->q = NULL;
    if (kq->on_closed) kq->on_closed(kq);
}

void hm_kq_close(hm_kq *kq, void (*on_closed)(hm_kq *kq)) {
    kq->on_closed = on_closed;
    uv_poll_stop(&kq->poll);
    uv_idle_stop(&kq->idle);
    uv_close((uv_handle_t *)&kq->poll, kq_on_handle_closed);
    uv_close((uv_handle_t *)&kq->idle, kq_on_handle_closed);
}

typedef struct offload {
    uv_work_t req;
    void (*work)(void *);
    void (*done)(void *);
    void *arg;
} offload;

static void offload_run(uv_work_t *req) {
    offload *o = req->data;
    o->work(o->arg);
}

static void offload_done(uv_work_t *req, int status) {
    offload *o = req->data;
    void (*done)(void *) = o->done;
    void *arg = o->arg;
    free(o);
    done(arg);
}

void hm_kafka_offload(uv_loop_t *loop, void (*work)(void *arg), void (*done)(void *arg),
                      void *arg) {
    offload *o = hm_xcalloc(1, sizeof(*o));
    o->req.data = o;
    o->work = work;
    o->done = done;
    o->arg = arg;
    if (uv_queue_work(loop, &o->req, offload_run, offload_done) != 0) {
        offload_run(&o->req);
        offload_done(&o->req, 0);
    }
}
