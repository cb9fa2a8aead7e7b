/*
 * grpc_server.c: the gRPC server of every service (himari/grpc.h): grpc C core
 * for HTTP/2 and the call protocol, protobuf-c for the messages, handlers on
 * the service's libuv loop.
 *
 * Threads. grpc core reports every finished operation on a completion queue
 * that someone must block on (the blocked thread also drives grpc's I/O). One
 * pthread of ours does that and nothing else: it appends (tag, ok) to a list
 * under a mutex and wakes the loop with uv_async_send. Every other grpc call
 * (request_call, start_batch, unref, shutdown) is made on the loop thread, so
 * a call's state needs no lock, and grpc's rule that batches on one call be
 * serialised holds by construction.
 *
 * A call's life (all on the loop):
 *   1. a request slot completes (TAG_NEW_CALL): the call moves out of the slot,
 *      the slot is re-armed at once (HM_GRPC_SLOTS stay outstanding, so many
 *      clients can call at the same time);
 *   2. a RECV_CLOSE_ON_SERVER batch starts and stays in flight for the whole
 *      call: its completion says the call is over, and whether it was
 *      cancelled (client cancel, deadline, shutdown);
 *   3. the path is matched to a route; unknown -> UNIMPLEMENTED; a mutating
 *      route checks the bearer token before reading the request (a caller
 *      without the token learns nothing about how we parse);
 *   4. RECV_MESSAGE; the bytes are unpacked with the method's input
 *      descriptor (INVALID_ARGUMENT when they do not decode) and the handler
 *      runs;
 *   5. the handler answers through hm_grpc_reply* / hm_grpc_stream_*; each
 *      answer is one batch (initial metadata rides with the first one).
 * Finishing a call (hm_grpc_reply, hm_grpc_reply_error, hm_grpc_stream_finish)
 * ends the handler's part: no sent or on_cancel callback follows, and the call
 * pointer must not be used again, so the handler may free its context at once.
 * A finish while a streaming send is in flight waits for that send; a finish
 * on a cancelled call is accepted and dropped.
 * A call is reference counted: one reference per batch in flight, one while
 * the handler holds it, and one while the loop is inside a callback that
 * touches it. It is freed when the count drops to zero: request message,
 * metadata, details and the grpc_call reference go with it.
 *
 * Shutdown: grpc_server_shutdown_and_notify; open health Watch streams end
 * with UNAVAILABLE; once their status batches are out (or after a short
 * grace), grpc_server_cancel_all_calls, so handlers holding calls get
 * on_cancel. When the shutdown tag is back, every call freed and every slot
 * returned: grpc_server_destroy, grpc_completion_queue_shutdown; the queue
 * thread sees GRPC_QUEUE_SHUTDOWN, posts a last event and exits; the loop
 * joins it (it has already returned), destroys the queue, closes its two
 * handles and calls done.
 *
 * Must never: block the loop (no waits except joining a thread that already
 * finished), run a handler off the loop thread, or free a call grpc core may
 * still report on.
 */
#include "himari/grpc.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

#include <assert.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "grpc_int.h"
#include "himari/log.h"

/* Calls requested from grpc core at any time. grpc queues calls that arrive
 * while none is outstanding, so this bounds hand-off latency under bursts,
 * not the number of concurrent calls. */
#define HM_GRPC_SLOTS 16
/* Default request size limit (bytes) when the options give 0. */
#define HM_GRPC_DEFAULT_MAX_REQUEST 65536
/* Default cap on open streaming calls (WatchStatus, Health/Watch) in the whole
 * process when the options give 0: an operator watches one or two services,
 * a health checker holds one Watch. */
#define HM_GRPC_DEFAULT_MAX_WATCH_STREAMS 16
/* Defaults of the per-connection limits when the options give 0
 * (grpc.max_concurrent_streams, grpc.max_connection_idle_ms): the streams one
 * connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS; grpc's own
 * default is unlimited), and how long a connection without a call is kept. */
#define HM_GRPC_DEFAULT_MAX_STREAMS 32
#define HM_GRPC_DEFAULT_IDLE_MS     300000
/* Calls still running on a connection past its maximum age get this long
 * after the GOAWAY, ms (longer than a Drain's last commit normally takes). */
#define HM_GRPC_AGE_GRACE_MS 30000
/* Keepalive enforcement, as grpc's defaults but pinned here so an upgrade
 * cannot loosen them: a ping sooner than 5 min after the last one, with no
 * call open, is a strike; the third strike is GOAWAY ENHANCE_YOUR_CALM
 * ("too_many_pings"). Clients may not ping without calls. */
#define HM_GRPC_MIN_PING_INTERVAL_MS 300000
#define HM_GRPC_MAX_PING_STRIKES     2
/* Request metadata (headers) per call, bytes: ours is a path and a token. */
#define HM_GRPC_MAX_METADATA 8192
/* How long shutdown waits for the status batches it started (health Watch
 * streams ending with UNAVAILABLE) before cancelling every call, ms. A client
 * that stopped reading must not hold the shutdown up. */
#define HM_GRPC_SHUTDOWN_GRACE_MS 200
/* A cancel this close to the deadline is the client's deadline (its clock
 * started before ours, so its timer fires first), ns. */
#define DEADLINE_SLACK_NS (5 * 1000000LL)
/* Number of grpc status codes (OK .. UNAUTHENTICATED). */
#define HM_GRPC_N_CODES 17

typedef enum tag_kind {
    TAG_NEW_CALL, /* a request slot delivered a call (or failed at shutdown) */
    TAG_RECV,     /* RECV_MESSAGE done */
    TAG_CLOSE,    /* RECV_CLOSE_ON_SERVER done: the call is over */
    TAG_SEND,     /* a streaming SEND_MESSAGE done */
    TAG_STATUS,   /* the batch carrying SEND_STATUS_FROM_SERVER done */
    TAG_SHUTDOWN, /* grpc_server_shutdown_and_notify done */
} tag_kind;

/* What we hand grpc core as a tag: the kind and the object it belongs to. */
typedef struct grpc_tag {
    tag_kind kind;
    void *owner;
} grpc_tag;

/* One row of the routing table: a method of a registered service. */
typedef struct grpc_route {
    char *path; /* "/pkg.Service/Method", owned; label is path + 1 */
    size_t path_len;
    const ProtobufCMethodDescriptor *method;
    hm_grpc_handler handler; /* NULL: the service has no row for it */
    unsigned flags;
    void *ud;
    hm_histogram *seconds;              /* himari_grpc_handling_seconds{method} */
    hm_counter *calls[HM_GRPC_N_CODES]; /* himari_grpc_calls_total{method,code}, lazily */
} grpc_route;

typedef struct grpc_slot {
    grpc_tag tag;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    bool armed;
} grpc_slot;

typedef struct grpc_event_rec {
    void *tag; /* NULL: the queue thread saw GRPC_QUEUE_SHUTDOWN and exits */
    int ok;
} grpc_event_rec;

typedef struct grpc_event_list {
    grpc_event_rec *v;
    size_t len;
    size_t cap;
} grpc_event_list;

struct hm_grpc_server {
    uv_loop_t *loop;
    grpc_server *server;
    grpc_completion_queue *cq;
    int port;
    char *address; /* "127.0.0.1:9081", for logs */
    char *token;   /* NULL: none set */
    size_t max_request_bytes;
    size_t max_streams; /* open streaming calls allowed (max_watch_streams) */
    size_t n_streams;   /* streaming calls counted and not yet freed */

    /* Routing: pointers sorted by path (routes never move once added). */
    grpc_route **routes;
    size_t n_routes;
    grpc_route unknown; /* metrics of calls to paths we do not serve */

    hm_metric_family *calls_total;
    hm_metric_family *handling_seconds;
    hm_gauge *streams_open;      /* himari_grpc_watch_streams */
    hm_counter *streams_refused; /* himari_grpc_watch_streams_refused_total */

    grpc_slot slots[HM_GRPC_SLOTS];
    size_t n_armed;
    size_t n_calls;     /* calls not yet freed */
    size_t n_finishing; /* status batches in flight or waiting for a send */
    hm_grpc_health *health;

    /* The queue thread's hand-off. events is written by the thread under mu;
     * the loop swaps it with work and drains work outside the lock. */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    grpc_event_list events;
    grpc_event_list work;
    uv_async_t async;
    uv_timer_t grace;
    int handles_open;

    /* Shutdown. */
    bool shutting_down;
    bool cancelled_all;
    bool shutdown_tag_back;
    bool destroyed; /* grpc_server_destroy + queue shutdown done */
    grpc_tag shutdown_tag;
    void (*done)(void *ud);
    void *done_ud;
};

struct hm_grpc_call {
    hm_grpc_server *s;
    grpc_route *route; /* &s->unknown when the path matched nothing */
    grpc_call *gc;
    grpc_call_details details;
    grpc_metadata_array md;
    uint64_t arrival_ns;

    grpc_byte_buffer *recv_bb;
    ProtobufCMessage *request;
    grpc_byte_buffer *send_bb;   /* message of the batch in flight */
    grpc_byte_buffer *status_bb; /* message riding with the status (unary reply) */
    grpc_slice status_details;
    bool has_details;
    int close_cancelled; /* written by grpc core when TAG_CLOSE completes */

    unsigned refs;
    bool held;      /* the handler has it and has not finished it */
    bool cancelled; /* the close op said so */
    bool closed;    /* the close op completed */
    bool md_sent;   /* initial metadata went out with an earlier batch */
    bool send_busy; /* a streaming send is in flight */
    bool status_started;
    bool finish_pending;          /* finish asked while a send was in flight */
    bool recv_failed;             /* the request never arrived (see on_recv) */
    bool stream_counted;          /* holds one of s->max_streams until freed */
    grpc_status_code status_code; /* the status we sent (or will send) */
    char *pending_msg;

    void (*on_cancel)(hm_grpc_call *call, void *ud);
    void *on_cancel_ud;
    void (*sent)(hm_grpc_call *call, bool ok, void *ud);
    void *sent_ud;
    void *data;

    grpc_tag t_recv, t_close, t_send, t_status;
};

static void maybe_finish_shutdown(hm_grpc_server *s);
static void call_finish(hm_grpc_call *c, grpc_status_code code, const char *msg);

/* ---- pure helpers ----------------------------------------------------------- */

const char *hm_grpc_status_name(grpc_status_code code) {
    static const char *const names[HM_GRPC_N_CODES] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    /* grpc maps codes it does not know to UNKNOWN; so do we (bounded labels). */
    if ((int)code < 0 || (int)code >= HM_GRPC_N_CODES) return "UNKNOWN";
    return names[code];
}

/* Compare in time that depends on the presented value's length only, never on
 * where the first differing byte is. */
static bool token_equal(const char *token, size_t token_len, const char *v, size_t v_len) {
    assert(token_len > 0);
    unsigned diff = (unsigned)(token_len ^ v_len);
    for (size_t i = 0; i < v_len; i++)
        diff |= (unsigned char)token[i % token_len] ^ (unsigned char)v[i];
    return diff == 0;
}

grpc_status_code hm_grpc_check_bearer(const char *token, const char *value, size_t value_len) {
    /* No token configured: mutating methods are closed to everyone. */
    if (!token || !*token) return GRPC_STATUS_PERMISSION_DENIED;
    static const char scheme[] = "bearer ";
    const size_t scheme_len = sizeof(scheme) - 1;
    if (!value || value_len <= scheme_len) return GRPC_STATUS_UNAUTHENTICATED;
    if (strncasecmp(value, scheme, scheme_len) != 0) return GRPC_STATUS_UNAUTHENTICATED;
    const char *cred = value + scheme_len;
    size_t cred_len = value_len - scheme_len;
    /* Exactly one space after the scheme and none in or after the token: a
     * padded value is malformed, not a near miss of the right one. */
    for (size_t i = 0; i < cred_len; i++) {
        if (cred[i] == ' ' || cred[i] == '\t') return GRPC_STATUS_UNAUTHENTICATED;
    }
    if (!token_equal(token, strlen(token), cred, cred_len)) return GRPC_STATUS_PERMISSION_DENIED;
    return GRPC_STATUS_OK;
}

int hm_grpc_split_path(const char *path, size_t len, const char **svc, size_t *svc_len,
                       const char **method, size_t *method_len) {
    if (!path || len < 4 || path[0] != '/') return -EINVAL;
    const char *slash = memchr(path + 1, '/', len - 1);
    if (!slash) return -EINVAL;
    size_t s_len = (size_t)(slash - (path + 1));
    size_t m_len = len - 1 - s_len - 1;
    if (s_len == 0 || m_len == 0) return -EINVAL;
    if (memchr(slash + 1, '/', m_len)) return -EINVAL;
    *svc = path + 1;
    *svc_len = s_len;
    *method = slash + 1;
    *method_len = m_len;
    return 0;
}

/* ---- routing ------------------------------------------------------------------ */

static int route_cmp_key(const char *path, size_t len, const grpc_route *r) {
    size_t n = len < r->path_len ? len : r->path_len;
    int c = memcmp(path, r->path, n);
    if (c != 0) return c;
    return len < r->path_len ? -1 : (len > r->path_len ? 1 : 0);
}

static int route_qsort_cmp(const void *a, const void *b) {
    const grpc_route *ra = *(grpc_route *const *)a;
    const grpc_route *rb = *(grpc_route *const *)b;
    return route_cmp_key(ra->path, ra->path_len, rb);
}

static grpc_route *route_find(const hm_grpc_server *s, const char *path, size_t len) {
    size_t lo = 0, hi = s->n_routes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = route_cmp_key(path, len, s->routes[mid]);
        if (c == 0) return s->routes[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

void hm_grpc_server_add_service(hm_grpc_server *s, const ProtobufCServiceDescriptor *svc,
                                const hm_grpc_method *methods, size_t n_methods, void *ud) {
    assert(s && svc && (methods || n_methods == 0));
    assert(svc->magic == PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC);
    assert(!s->shutting_down);
    /* Every row must name a method of svc: a typo is a programming error and
     * is caught here, at start-up, rather than as UNIMPLEMENTED in production. */
    for (size_t i = 0; i < n_methods; i++) {
        assert(methods[i].name && methods[i].handler);
        bool found = false;
        for (unsigned m = 0; m < svc->n_methods; m++)
            found = found || strcmp(svc->methods[m].name, methods[i].name) == 0;
        if (!found) hm_panic("grpc: %s has no method %s", svc->name, methods[i].name);
    }
    s->routes = hm_xrealloc(s->routes, (s->n_routes + svc->n_methods) * sizeof(*s->routes));
    for (unsigned m = 0; m < svc->n_methods; m++) {
        grpc_route *r = hm_xcalloc(1, sizeof(*r));
        r->method = &svc->methods[m];
        size_t n = strlen(svc->name) + strlen(r->method->name) + 3;
        r->path = hm_xmalloc(n);
        snprintf(r->path, n, "/%s/%s", svc->name, r->method->name);
        r->path_len = strlen(r->path);
        if (route_find(s, r->path, r->path_len)) hm_panic("grpc: %s registered twice", r->path);
        for (size_t i = 0; i < n_methods; i++) {
            if (strcmp(methods[i].name, r->method->name) == 0) {
                r->handler = methods[i].handler;
                r->flags = methods[i].flags;
            }
        }
        r->ud = ud;
        r->seconds = hm_metrics_histogram_child(s->handling_seconds, r->path + 1);
        s->routes[s->n_routes++] = r;
        qsort(s->routes, s->n_routes, sizeof(*s->routes), route_qsort_cmp);
    }
}

static void route_count(hm_grpc_server *s, grpc_route *r, grpc_status_code code, double secs) {
    int i = ((int)code >= 0 && (int)code < HM_GRPC_N_CODES) ? (int)code : GRPC_STATUS_UNKNOWN;
    if (!r->calls[i])
        r->calls[i] = hm_metrics_counter_child(s->calls_total, r->path + 1,
                                               hm_grpc_status_name((grpc_status_code)i));
    hm_counter_inc(r->calls[i]);
    hm_histogram_observe(r->seconds, secs);
}

/* ---- calls: references and freeing ----------------------------------------- */

static void call_ref(hm_grpc_call *c) {
    c->refs++;
}

static void call_free(hm_grpc_call *c) {
    hm_grpc_server *s = c->s;
    assert(c->refs == 0 && !c->held && !c->send_busy);
    if (c->request) protobuf_c_message_free_unpacked(c->request, NULL);
    if (c->recv_bb) grpc_byte_buffer_destroy(c->recv_bb);
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    if (c->status_bb) grpc_byte_buffer_destroy(c->status_bb);
    if (c->has_details) grpc_slice_unref(c->status_details);
    free(c->pending_msg);
    grpc_metadata_array_destroy(&c->md);
    grpc_call_details_destroy(&c->details);
    grpc_call_unref(c->gc);
    if (c->stream_counted) {
        assert(s->n_streams > 0);
        s->n_streams--;
        hm_gauge_set(s->streams_open, (double)s->n_streams);
    }
    free(c);
    assert(s->n_calls > 0);
    s->n_calls--;
    maybe_finish_shutdown(s);
}

static void call_unref(hm_grpc_call *c) {
    assert(c->refs > 0);
    if (--c->refs == 0) call_free(c);
}

static void start_batch(hm_grpc_call *c, const grpc_op *ops, size_t n, grpc_tag *tag) {
    grpc_call_error e = grpc_call_start_batch(c->gc, ops, n, tag, NULL);
    /* Our state machine never starts an op grpc refuses; if it did, the call's
     * accounting would be wrong from here on. */
    if (e != GRPC_CALL_OK)
        hm_panic("grpc: start_batch on %s: %s", c->route->path, grpc_call_error_to_string(e));
    call_ref(c);
}

static grpc_byte_buffer *pack_message(const ProtobufCMessage *msg) {
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice sl = grpc_slice_malloc(n);
    size_t w = protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(sl));
    assert(w == n);
    HM_UNUSED(w);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

/* ---- calls: sending ------------------------------------------------------------ */

/* Start the batch that ends the call: [initial metadata] [message] status. */
static void start_status(hm_grpc_call *c, grpc_status_code code, const char *msg,
                         grpc_byte_buffer *bb) {
    assert(!c->status_started && !c->send_busy);
    c->status_started = true;
    c->status_code = code;
    grpc_op ops[3];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    if (!c->md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n].data.send_initial_metadata.count = 0;
        n++;
        c->md_sent = true;
    }
    if (bb) {
        c->status_bb = bb;
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = bb;
        n++;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.trailing_metadata_count = 0;
    ops[n].data.send_status_from_server.status = code;
    if (msg && *msg) {
        /* Kept until the batch completes: grpc may reference the bytes. */
        c->status_details = grpc_slice_from_copied_string(msg);
        c->has_details = true;
        ops[n].data.send_status_from_server.status_details = &c->status_details;
    }
    n++;
    c->s->n_finishing++;
    start_batch(c, ops, n, &c->t_status);
}

/* The handler is done with the call: send the status (now or after the send
 * in flight), or drop it when the call is already cancelled. */
static void call_release(hm_grpc_call *c, grpc_status_code code, const char *msg,
                         grpc_byte_buffer *bb) {
    assert(c->held);
    c->held = false;
    c->on_cancel = NULL;
    c->sent = NULL;
    if (c->cancelled || c->closed) {
        /* The client is gone: grpc would discard the reply; do not build it. */
        if (bb) grpc_byte_buffer_destroy(bb);
    } else if (c->send_busy) {
        assert(!bb);
        c->finish_pending = true;
        c->status_code = code;
        c->pending_msg = msg ? hm_xstrdup(msg) : NULL;
        c->s->n_finishing++;
    } else {
        start_status(c, code, msg, bb);
    }
    call_unref(c); /* the handler's reference */
}

/* A status decided by the server itself (routing, auth, decoding): the
 * handler never saw the call. */
static void call_finish(hm_grpc_call *c, grpc_status_code code, const char *msg) {
    assert(!c->held);
    if (c->cancelled || c->closed) return;
    start_status(c, code, msg, NULL);
}

void hm_grpc_reply(hm_grpc_call *call, const ProtobufCMessage *resp) {
    assert(call && resp && call->held);
    assert(resp->descriptor == call->route->method->output);
    if (call->route->flags & HM_GRPC_STREAMING) {
        /* A streaming handler that answers like a unary one: fine while no
         * send is in flight (message and OK in one batch); otherwise a bug. */
        if (call->send_busy) {
            hm_log_error("grpc_reply_misuse", HM_LS("method", call->route->path + 1));
            call_release(call, GRPC_STATUS_INTERNAL, "server error: reply during a send", NULL);
            return;
        }
    }
    grpc_byte_buffer *bb = (call->cancelled || call->closed) ? NULL : pack_message(resp);
    call_release(call, GRPC_STATUS_OK, NULL, bb);
}

void hm_grpc_reply_error(hm_grpc_call *call, grpc_status_code code, const char *fmt, ...) {
    assert(call && call->held);
    assert(code != GRPC_STATUS_OK);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    call_release(call, code, msg, NULL);
}

/* 0 when a streaming call can take a message now, else -ECANCELED or -EBUSY. */
static int stream_can_send(const hm_grpc_call *call) {
    if (call->cancelled || call->closed) return -ECANCELED;
    return call->send_busy ? -EBUSY : 0;
}

/* The bytes of bb go out as the call's next streaming message (bb is the call's until
 * the send completes). The caller checked stream_can_send. */
static int stream_send_bb(hm_grpc_call *call, grpc_byte_buffer *bb,
                          void (*sent)(hm_grpc_call *call, bool ok, void *ud), void *ud) {
    assert(call->route->flags & HM_GRPC_STREAMING);
    assert(stream_can_send(call) == 0);
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    if (!call->md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
        call->md_sent = true;
    }
    call->send_bb = bb;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = call->send_bb;
    n++;
    call->send_busy = true;
    call->sent = sent;
    call->sent_ud = ud;
    start_batch(call, ops, n, &call->t_send);
    return 0;
}

int hm_grpc_stream_send(hm_grpc_call *call, const ProtobufCMessage *msg,
                        void (*sent)(hm_grpc_call *call, bool ok, void *ud), void *ud) {
    assert(call && msg && call->held);
    assert(msg->descriptor == call->route->method->output);
    int rc = stream_can_send(call);
    return rc ? rc : stream_send_bb(call, pack_message(msg), sent, ud);
}

struct hm_grpc_packed {
    grpc_slice bytes; /* grpc's refcounted slice: a send in flight holds its own ref */
    const ProtobufCMessageDescriptor *descriptor;
    unsigned refs;
};

hm_grpc_packed *hm_grpc_pack(const ProtobufCMessage *msg) {
    hm_grpc_packed *p = malloc(sizeof(*p));
    if (!p) return NULL;
    size_t n = protobuf_c_message_get_packed_size(msg);
    p->bytes = grpc_slice_malloc(n);
    size_t w = protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(p->bytes));
    assert(w == n);
    HM_UNUSED(w);
    p->descriptor = msg->descriptor;
    p->refs = 1;
    return p;
}

hm_grpc_packed *hm_grpc_packed_ref(hm_grpc_packed *p) {
    p->refs++;
    return p;
}

void hm_grpc_packed_unref(hm_grpc_packed *p) {
    if (p && --p->refs == 0) {
        grpc_slice_unref(p->bytes);
        free(p);
    }
}

int hm_grpc_stream_send_packed(hm_grpc_call *call, hm_grpc_packed *p,
                               void (*sent)(hm_grpc_call *call, bool ok, void *ud), void *ud) {
    assert(call && p && call->held);
    assert(p->descriptor == call->route->method->output);
    int rc = stream_can_send(call);
    /* The byte buffer takes a reference on the slice: no copy of the bytes. */
    return rc ? rc : stream_send_bb(call, grpc_raw_byte_buffer_create(&p->bytes, 1), sent, ud);
}

void hm_grpc_stream_finish(hm_grpc_call *call, grpc_status_code code, const char *msg) {
    assert(call && call->held);
    call_release(call, code, msg, NULL);
}

void hm_grpc_call_on_cancel(hm_grpc_call *call, void (*cb)(hm_grpc_call *call, void *ud),
                            void *ud) {
    assert(call && call->held);
    call->on_cancel = cb;
    call->on_cancel_ud = ud;
}

bool hm_grpc_call_cancelled(const hm_grpc_call *call) {
    return call->cancelled;
}

/* Nanoseconds to the call's deadline (negative when past); INT64_MAX when none. */
static int64_t remaining_ns(const hm_grpc_call *call) {
    gpr_timespec d = call->details.deadline;
    if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0) return INT64_MAX;
    gpr_timespec left = gpr_time_sub(d, gpr_now(d.clock_type));
    return (int64_t)left.tv_sec * 1000000000 + left.tv_nsec;
}

int64_t hm_grpc_call_remaining_ms(const hm_grpc_call *call) {
    int64_t ns = remaining_ns(call);
    if (ns == INT64_MAX) return INT64_MAX;
    return ns > 0 ? ns / 1000000 : 0;
}

const char *hm_grpc_call_method(const hm_grpc_call *call) {
    return call->route->method ? call->route->method->name : "unknown";
}

void hm_grpc_call_set_data(hm_grpc_call *call, void *data) {
    call->data = data;
}

void *hm_grpc_call_data(const hm_grpc_call *call) {
    return call->data;
}

/* ---- calls: arrival and completions ---------------------------------------- */

static const grpc_metadata *find_metadata(const grpc_metadata_array *md, const char *key) {
    size_t klen = strlen(key);
    for (size_t i = 0; i < md->count; i++) {
        const grpc_metadata *m = &md->metadata[i];
        if (GRPC_SLICE_LENGTH(m->key) == klen &&
            memcmp(GRPC_SLICE_START_PTR(m->key), key, klen) == 0)
            return m;
    }
    return NULL;
}

static void arm_slot(hm_grpc_server *s, grpc_slot *slot) {
    assert(!slot->armed);
    slot->call = NULL;
    grpc_call_details_init(&slot->details);
    grpc_metadata_array_init(&slot->md);
    grpc_call_error e = grpc_server_request_call(s->server, &slot->call, &slot->details, &slot->md,
                                                 s->cq, s->cq, &slot->tag);
    if (e != GRPC_CALL_OK) hm_panic("grpc: request_call: %s", grpc_call_error_to_string(e));
    slot->armed = true;
    s->n_armed++;
}

static void on_new_call(hm_grpc_server *s, grpc_slot *slot, bool ok) {
    assert(slot->armed);
    slot->armed = false;
    s->n_armed--;
    if (!ok) {
        /* Only at shutdown: the request was withdrawn. */
        grpc_call_details_destroy(&slot->details);
        grpc_metadata_array_destroy(&slot->md);
        maybe_finish_shutdown(s);
        return;
    }
    hm_grpc_call *c = hm_xcalloc(1, sizeof(*c));
    c->s = s;
    c->gc = slot->call;
    c->details = slot->details; /* ownership moves with the struct */
    c->md = slot->md;
    c->arrival_ns = hm_mono_ns();
    c->t_recv = (grpc_tag){TAG_RECV, c};
    c->t_close = (grpc_tag){TAG_CLOSE, c};
    c->t_send = (grpc_tag){TAG_SEND, c};
    c->t_status = (grpc_tag){TAG_STATUS, c};
    s->n_calls++;
    if (!s->shutting_down) arm_slot(s, slot);

    const char *path = (const char *)GRPC_SLICE_START_PTR(c->details.method);
    size_t path_len = GRPC_SLICE_LENGTH(c->details.method);
    grpc_route *r = route_find(s, path, path_len);
    c->route = r ? r : &s->unknown;

    call_ref(c); /* ours, while we set the call up */
    grpc_op close_op;
    memset(&close_op, 0, sizeof(close_op));
    close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    close_op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    start_batch(c, &close_op, 1, &c->t_close);

    if (s->shutting_down) {
        call_finish(c, GRPC_STATUS_UNAVAILABLE, "server shutting down");
    } else if (!r || !r->handler) {
        char shown[128];
        snprintf(shown, sizeof(shown), "%.*s", (int)(path_len < 120 ? path_len : 120), path);
        hm_log_limited(HM_LOG_WARN, "grpc_unimplemented", 30, HM_LS("path", shown));
        call_finish(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
    } else {
        grpc_status_code auth = GRPC_STATUS_OK;
        if (r->flags & HM_GRPC_MUTATING) {
            const grpc_metadata *m = find_metadata(&c->md, "authorization");
            auth = hm_grpc_check_bearer(s->token,
                                        m ? (const char *)GRPC_SLICE_START_PTR(m->value) : NULL,
                                        m ? GRPC_SLICE_LENGTH(m->value) : 0);
        }
        bool streaming = (r->flags & HM_GRPC_STREAMING) != 0;
        if (auth == GRPC_STATUS_UNAUTHENTICATED) {
            call_finish(c, auth, "missing or malformed bearer token");
        } else if (auth == GRPC_STATUS_PERMISSION_DENIED) {
            call_finish(c, auth,
                        s->token ? "wrong bearer token" : "no token configured on the server");
        } else if (streaming && s->n_streams >= s->max_streams) {
            /* Refused before the request is read: a flood of Watch calls costs
             * a status each, never a timer or a Status message. */
            hm_counter_inc(s->streams_refused);
            hm_log_limited(HM_LOG_WARN, "grpc_watch_streams_exhausted", 6,
                           HM_LS("method", r->path + 1), HM_LI("limit", (int64_t)s->max_streams));
            char msg[128];
            snprintf(msg, sizeof(msg), "too many open streams (grpc.max_watch_streams: %zu)",
                     s->max_streams);
            call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
        } else {
            if (streaming) {
                c->stream_counted = true;
                s->n_streams++;
                hm_gauge_set(s->streams_open, (double)s->n_streams);
            }
            grpc_op recv_op;
            memset(&recv_op, 0, sizeof(recv_op));
            recv_op.op = GRPC_OP_RECV_MESSAGE;
            recv_op.data.recv_message.recv_message = &c->recv_bb;
            start_batch(c, &recv_op, 1, &c->t_recv);
        }
    }
    call_unref(c);
}

static void on_recv(hm_grpc_call *c, bool ok) {
    grpc_route *r = c->route;
    if (c->cancelled || c->closed) return; /* nobody to answer */
    if (!ok) {
        /* The receive failed: grpc core refused an oversized message (and
         * has answered RESOURCE_EXHAUSTED itself), or the call broke before
         * its message came. Our clients send the message with the headers,
         * so the first is what this almost always is; on_close counts it so
         * unless the deadline passed. The status we start is discarded when
         * grpc has already ended the call. */
        c->recv_failed = true;
        call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "request refused or not received");
        return;
    }
    if (!c->recv_bb) {
        /* Half-closed without a message: not a valid unary request. */
        call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "no request message");
        return;
    }
    grpc_byte_buffer_reader rd;
    ProtobufCMessage *req = NULL;
    if (grpc_byte_buffer_reader_init(&rd, c->recv_bb)) {
        grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
        grpc_byte_buffer_reader_destroy(&rd);
        req = protobuf_c_message_unpack(r->method->input, NULL, GRPC_SLICE_LENGTH(all),
                                        GRPC_SLICE_START_PTR(all));
        grpc_slice_unref(all);
    }
    grpc_byte_buffer_destroy(c->recv_bb);
    c->recv_bb = NULL;
    if (!req) {
        char msg[256];
        snprintf(msg, sizeof(msg), "request does not decode as %s", r->method->input->name);
        call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, msg);
        return;
    }
    c->request = req;
    c->held = true;
    call_ref(c); /* the handler's, dropped when it finishes the call */
    r->handler(c, req, r->ud);
}

static void on_close(hm_grpc_call *c) {
    hm_grpc_server *s = c->s;
    c->closed = true;
    grpc_status_code code = c->status_code;
    if (c->close_cancelled) {
        c->cancelled = true;
        /* What the client most likely saw: its deadline, or a cancel (its
         * own, a transport failure, or our shutdown). */
        code = remaining_ns(c) <= DEADLINE_SLACK_NS ? GRPC_STATUS_DEADLINE_EXCEEDED
                                                    : GRPC_STATUS_CANCELLED;
        if (code == GRPC_STATUS_CANCELLED && c->recv_failed) code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    } else if (!c->status_started) {
        code = GRPC_STATUS_UNKNOWN; /* cannot happen: grpc closes after our status */
    }
    route_count(s, c->route, code, (double)(hm_mono_ns() - c->arrival_ns) / 1e9);
    if (c->cancelled && c->held && c->on_cancel) {
        void (*cb)(hm_grpc_call *, void *) = c->on_cancel;
        c->on_cancel = NULL; /* once */
        cb(c, c->on_cancel_ud);
    }
}

static void on_send(hm_grpc_call *c, bool ok) {
    assert(c->send_busy);
    c->send_busy = false;
    grpc_byte_buffer_destroy(c->send_bb);
    c->send_bb = NULL;
    if (c->finish_pending) {
        c->finish_pending = false;
        c->s->n_finishing--;
        char *msg = c->pending_msg;
        c->pending_msg = NULL;
        call_finish(c, c->status_code, msg);
        free(msg);
        maybe_finish_shutdown(c->s);
        return;
    }
    if (c->held && c->sent) {
        void (*cb)(hm_grpc_call *, bool, void *) = c->sent;
        c->sent = NULL;
        cb(c, ok && !c->cancelled, c->sent_ud);
    }
}

static void on_status(hm_grpc_call *c) {
    hm_grpc_server *s = c->s;
    if (c->status_bb) {
        grpc_byte_buffer_destroy(c->status_bb);
        c->status_bb = NULL;
    }
    if (c->has_details) {
        grpc_slice_unref(c->status_details);
        c->has_details = false;
    }
    assert(s->n_finishing > 0);
    s->n_finishing--;
    maybe_finish_shutdown(s);
}

/* ---- the queue thread and the hand-off -------------------------------------- */

static void *cq_thread_main(void *arg) {
    hm_grpc_server *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        bool last = ev.type == GRPC_QUEUE_SHUTDOWN;
        if (!last && ev.type != GRPC_OP_COMPLETE) continue; /* no timeouts with an infinite wait */
        pthread_mutex_lock(&s->mu);
        grpc_event_list *l = &s->events;
        if (l->len == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 64;
            l->v = hm_xrealloc(l->v, l->cap * sizeof(*l->v));
        }
        l->v[l->len++] = (grpc_event_rec){last ? NULL : ev.tag, ev.success};
        pthread_mutex_unlock(&s->mu);
        uv_async_send(&s->async);
        if (last) return NULL;
    }
}

static void on_handle_closed(uv_handle_t *h) {
    hm_grpc_server *s = h->data;
    if (--s->handles_open > 0) return;
    void (*done)(void *) = s->done;
    void *done_ud = s->done_ud;
    for (size_t i = 0; i < s->n_routes; i++) {
        free(s->routes[i]->path);
        free(s->routes[i]);
    }
    free(s->routes);
    free(s->unknown.path);
    free(s->events.v);
    free(s->work.v);
    free(s->address);
    free(s->token);
    pthread_mutex_destroy(&s->mu);
    free(s);
    if (done) done(done_ud);
}

/* The queue thread has returned: tear down what is left on the loop. */
static void on_thread_exited(hm_grpc_server *s) {
    assert(s->destroyed);
    int rc = pthread_join(s->thread, NULL);
    if (rc != 0) hm_panic("grpc: join of the queue thread: %s", strerror(rc));
    grpc_completion_queue_destroy(s->cq);
    s->cq = NULL;
    hm_grpc_health_free(s->health);
    s->health = NULL;
    grpc_shutdown();
    hm_log_info("grpc_stopped", HM_LS("address", s->address));
    uv_close((uv_handle_t *)&s->async, on_handle_closed);
    uv_close((uv_handle_t *)&s->grace, on_handle_closed);
}

static void dispatch(hm_grpc_server *s, void *tag_ptr, bool ok) {
    if (!tag_ptr) {
        on_thread_exited(s);
        return;
    }
    grpc_tag *tag = tag_ptr;
    if (tag->kind == TAG_NEW_CALL) {
        on_new_call(s, tag->owner, ok);
        return;
    }
    if (tag->kind == TAG_SHUTDOWN) {
        s->shutdown_tag_back = true;
        maybe_finish_shutdown(s);
        return;
    }
    hm_grpc_call *c = tag->owner;
    call_ref(c); /* callbacks below may finish the call */
    switch (tag->kind) {
        case TAG_RECV:
            call_unref(c);
            on_recv(c, ok);
            break;
        case TAG_CLOSE:
            call_unref(c);
            on_close(c);
            break;
        case TAG_SEND:
            call_unref(c);
            on_send(c, ok);
            break;
        case TAG_STATUS:
            call_unref(c);
            on_status(c);
            break;
        default:
            hm_panic("grpc: unexpected tag kind %d", (int)tag->kind);
    }
    call_unref(c);
}

static void on_async(uv_async_t *a) {
    hm_grpc_server *s = a->data;
    pthread_mutex_lock(&s->mu);
    grpc_event_list tmp = s->events;
    s->events = s->work;
    s->work = tmp;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < s->work.len; i++)
        dispatch(s, s->work.v[i].tag, s->work.v[i].ok != 0);
    s->work.len = 0;
}

/* ---- start and shutdown ----------------------------------------------------- */

static void cancel_all(hm_grpc_server *s) {
    if (s->cancelled_all || s->destroyed) return;
    s->cancelled_all = true;
    uv_timer_stop(&s->grace);
    grpc_server_cancel_all_calls(s->server);
}

static void on_grace(uv_timer_t *t) {
    cancel_all(t->data);
}

static void maybe_finish_shutdown(hm_grpc_server *s) {
    if (!s->shutting_down || s->destroyed) return;
    if (!s->cancelled_all && s->n_finishing == 0) cancel_all(s);
    if (!s->shutdown_tag_back || s->n_calls > 0 || s->n_armed > 0) return;
    s->destroyed = true;
    uv_timer_stop(&s->grace);
    grpc_server_destroy(s->server);
    s->server = NULL;
    /* The thread drains to GRPC_QUEUE_SHUTDOWN (nothing is pending: every tag
     * is back) and posts its last event; on_thread_exited continues. */
    grpc_completion_queue_shutdown(s->cq);
}

void hm_grpc_server_shutdown(hm_grpc_server *s, void (*done)(void *ud), void *ud) {
    assert(s && !s->shutting_down);
    s->shutting_down = true;
    s->done = done;
    s->done_ud = ud;
    hm_log_info("grpc_shutdown", HM_LS("address", s->address), HM_LI("calls", s->n_calls));
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    hm_grpc_health_stop(s->health);
    if (s->n_finishing == 0)
        cancel_all(s);
    else
        uv_timer_start(&s->grace, on_grace, HM_GRPC_SHUTDOWN_GRACE_MS, 0);
}

/* Release the grpc objects of a server that never started (no thread). */
static void grpc_teardown_unstarted(hm_grpc_server *s) {
    grpc_server_destroy(s->server);
    s->server = NULL;
    grpc_completion_queue_shutdown(s->cq);
    /* Nothing was ever requested on it: returns GRPC_QUEUE_SHUTDOWN at once. */
    grpc_event ev;
    do {
        ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    } while (ev.type != GRPC_QUEUE_SHUTDOWN);
    grpc_completion_queue_destroy(s->cq);
    s->cq = NULL;
    grpc_shutdown();
}

/* Tear down a server that never started and has no uv handle. */
static void destroy_unstarted(hm_grpc_server *s) {
    grpc_teardown_unstarted(s);
    pthread_mutex_destroy(&s->mu);
    free(s->address);
    free(s->token);
    free(s->unknown.path);
    free(s);
}

int hm_grpc_server_start(uv_loop_t *loop, const hm_grpc_opts *opts, hm_grpc_server **out,
                         hm_err *err) {
    assert(loop && opts && out && opts->metrics);
    if (opts->port < 0 || opts->port > 65535)
        return hm_err_set(err, -EINVAL, "grpc: port %d out of range", opts->port);
    const char *bind = (opts->bind && *opts->bind) ? opts->bind : "127.0.0.1";
    char addr[300];
    if (strchr(bind, ':'))
        snprintf(addr, sizeof(addr), "[%s]:%d", bind, opts->port);
    else
        snprintf(addr, sizeof(addr), "%s:%d", bind, opts->port);
    if (!hm_addr_is_loopback(bind)) {
        /* No TLS: whoever is on the path reads the bearer token of every
         * mutating call. Refused before anything is created or bound. */
        if (!opts->allow_insecure_remote)
            return hm_err_set(err, -EPERM,
                              "grpc: refusing to listen on %s: not a loopback address, and gRPC "
                              "is served without TLS (bearer tokens would cross the network in "
                              "clear); set grpc.allow_insecure_remote: true to allow it",
                              addr);
        hm_log_warn("grpc_insecure_remote", HM_LS("address", addr),
                    HM_LS("reason", "not a loopback address and no TLS: bearer tokens travel "
                                    "in clear (grpc.allow_insecure_remote is true)"));
    }
    hm_grpc_server *s = hm_xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->max_request_bytes =
        opts->max_request_bytes ? opts->max_request_bytes : HM_GRPC_DEFAULT_MAX_REQUEST;
    if (s->max_request_bytes > INT32_MAX) s->max_request_bytes = INT32_MAX;
    s->max_streams = opts->max_watch_streams > 0 ? (size_t)opts->max_watch_streams
                                                 : HM_GRPC_DEFAULT_MAX_WATCH_STREAMS;
    s->token = (opts->token && *opts->token) ? hm_xstrdup(opts->token) : NULL;
    s->unknown.path = hm_xstrdup("/unknown");
    s->unknown.path_len = strlen(s->unknown.path);
    s->shutdown_tag = (grpc_tag){TAG_SHUTDOWN, s};
    pthread_mutex_init(&s->mu, NULL);

    s->calls_total =
        hm_metrics_counter(opts->metrics, "himari_grpc_calls_total",
                           "gRPC calls finished, by method and status code.", "method,code");
    s->handling_seconds = hm_metrics_histogram(
        opts->metrics, "himari_grpc_handling_seconds",
        "Time from a gRPC call's arrival to its end (status sent or cancelled).", "method",
        hm_latency_buckets, hm_latency_buckets_n);
    s->unknown.seconds = hm_metrics_histogram_child(s->handling_seconds, "unknown");
    s->streams_open = hm_metrics_gauge_child(
        hm_metrics_gauge(opts->metrics, "himari_grpc_watch_streams",
                         "Streaming gRPC calls (WatchStatus, Health/Watch) open now.", NULL));
    s->streams_refused = hm_metrics_counter_child(
        hm_metrics_counter(opts->metrics, "himari_grpc_watch_streams_refused_total",
                           "Streaming gRPC calls refused with RESOURCE_EXHAUSTED because "
                           "grpc.max_watch_streams were open.",
                           NULL));

    grpc_init(); /* reference counted by grpc: one per server, released at the end */
    int max_streams = opts->max_concurrent_streams > 0 ? opts->max_concurrent_streams
                                                       : HM_GRPC_DEFAULT_MAX_STREAMS;
    int64_t idle_ms =
        opts->max_connection_idle_ms > 0 ? opts->max_connection_idle_ms : HM_GRPC_DEFAULT_IDLE_MS;
    int64_t age_ms = opts->max_connection_age_ms > 0 ? opts->max_connection_age_ms : INT32_MAX;
    if (idle_ms > INT32_MAX) idle_ms = INT32_MAX;
    if (age_ms > INT32_MAX) age_ms = INT32_MAX;
    /* A port someone else holds is an error, not a second listener that
     * silently shares (and steals) its connections (so_reuseport 0). The
     * rest bounds what one client can make us hold: docs/SECURITY.md. */
    const struct {
        const char *key;
        int value;
    } ints[] = {
        {GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int)s->max_request_bytes},
        {GRPC_ARG_ALLOW_REUSEPORT, 0},
        {GRPC_ARG_MAX_CONCURRENT_STREAMS, max_streams},
        {GRPC_ARG_MAX_CONNECTION_IDLE_MS, (int)idle_ms},
        {GRPC_ARG_MAX_CONNECTION_AGE_MS, (int)age_ms},
        {GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, HM_GRPC_AGE_GRACE_MS},
        {GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, HM_GRPC_MIN_PING_INTERVAL_MS},
        {GRPC_ARG_HTTP2_MAX_PING_STRIKES, HM_GRPC_MAX_PING_STRIKES},
        {GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0},
        {GRPC_ARG_MAX_METADATA_SIZE, HM_GRPC_MAX_METADATA},
    };
    grpc_arg args[HM_ARRAY_LEN(ints)];
    memset(args, 0, sizeof(args));
    for (size_t i = 0; i < HM_ARRAY_LEN(ints); i++) {
        args[i].type = GRPC_ARG_INTEGER;
        args[i].key = (char *)ints[i].key;
        args[i].value.integer = ints[i].value;
    }
    grpc_channel_args cargs = {.num_args = HM_ARRAY_LEN(args), .args = args};
    s->server = grpc_server_create(&cargs, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);

    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    s->port = grpc_server_add_http2_port(s->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (s->port == 0) {
        int rc = hm_err_set(err, -EADDRINUSE,
                            "grpc: cannot listen on %s (address in use or not local)", addr);
        destroy_unstarted(s);
        return rc;
    }
    if (opts->port == 0) {
        if (strchr(bind, ':'))
            snprintf(addr, sizeof(addr), "[%s]:%d", bind, s->port);
        else
            snprintf(addr, sizeof(addr), "%s:%d", bind, s->port);
    }
    s->address = hm_xstrdup(addr);

    int rc = uv_async_init(loop, &s->async, on_async);
    if (rc != 0) {
        rc = hm_err_set(err, rc, "grpc: uv_async_init: %s", uv_strerror(rc));
        destroy_unstarted(s);
        return rc;
    }
    s->async.data = s;
    uv_timer_init(loop, &s->grace);
    s->grace.data = s;
    s->handles_open = 2;

    /* The queue thread takes no signals: they belong to the loop (uv_signal). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&s->thread, NULL, cq_thread_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        /* Rare (out of threads). The handles close on the next loop turn and
         * take the memory with them; grpc has nothing pending. */
        int ret = hm_err_set(err, -rc, "grpc: cannot start the queue thread: %s", strerror(rc));
        grpc_teardown_unstarted(s);
        uv_close((uv_handle_t *)&s->async, on_handle_closed);
        uv_close((uv_handle_t *)&s->grace, on_handle_closed);
        return ret;
    }
    s->thread_started = true;

    grpc_server_start(s->server);
    s->health = hm_grpc_health_new(s);
    for (size_t i = 0; i < HM_GRPC_SLOTS; i++) {
        s->slots[i].tag = (grpc_tag){TAG_NEW_CALL, &s->slots[i]};
        arm_slot(s, &s->slots[i]);
    }
    hm_log_info("grpc_listening", HM_LS("address", s->address), HM_LI("port", s->port),
                HM_LI("max_request_bytes", (int64_t)s->max_request_bytes),
                HM_LI("max_watch_streams", (int64_t)s->max_streams),
                HM_LI("max_concurrent_streams", max_streams),
                HM_LI("max_connection_idle_ms", idle_ms),
                HM_LI("max_connection_age_ms", age_ms == INT32_MAX ? 0 : age_ms),
                HM_LB("token_set", s->token != NULL));
    *out = s;
    return 0;
}

int hm_grpc_server_port(const hm_grpc_server *s) {
    return s->port;
}

void hm_grpc_server_set_token(hm_grpc_server *s, const char *token) {
    free(s->token);
    s->token = (token && *token) ? hm_xstrdup(token) : NULL;
}

hm_grpc_health *hm_grpc_server_health(hm_grpc_server *s) {
    return s->health;
}
