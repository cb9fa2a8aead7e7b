/*
 * grpc_health.c: the standard grpc.health.v1.Health service, built into every
 * gRPC server of ours (hm_grpc_health_set in himari/grpc.h).
 *
 * Check answers the status set for a name, NOT_FOUND for a name never set.
 * Watch sends the current status at once (SERVICE_UNKNOWN for a name never
 * set) and then one message per change, until the client cancels or the
 * server shuts down. At shutdown every Watch ends with UNAVAILABLE ("server
 * shutting down"): the protocol lets a server end the stream, and UNAVAILABLE
 * is what a client should read as "retry elsewhere or later" (CANCELLED would
 * look like the client's own doing). A service that wants watchers to see
 * NOT_SERVING first sets it before shutting down (the message goes out before
 * the status).
 *
 * One send may be in flight per call: a change that comes while a send is in
 * flight marks the watcher dirty, and the latest status goes out when the send
 * completes, so a watcher never sees a stale value last and never queues.
 *
 * Runs on the loop thread only; must never block or hold a call it has not
 * registered (every Watch call is in the list until it is finished).
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "grpc_int.h"
#include "himari/log.h"

/* Watch-only value of the protocol: the name has never been set. */
#define HEALTH_SERVICE_UNKNOWN                                                                     \
    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

typedef struct health_entry {
    char *name;
    hm_health_status status;
} health_entry;

typedef struct health_watch {
    hm_grpc_health *h;
    hm_grpc_call *call;
    char *name;
    int last_sent; /* the protocol value last sent; -1 before the first */
    bool dirty;    /* a change came while a send was in flight */
    struct health_watch *prev, *next;
} health_watch;

struct hm_grpc_health {
    hm_grpc_server *s;
    health_entry *entries;
    size_t n_entries;
    health_watch *watches; /* open Watch calls */
    bool stopped;
};

static health_entry *find_entry(hm_grpc_health *h, const char *name) {
    for (size_t i = 0; i < h->n_entries; i++) {
        if (strcmp(h->entries[i].name, name) == 0) return &h->entries[i];
    }
    return NULL;
}

static int current_value(hm_grpc_health *h, const char *name) {
    const health_entry *e = find_entry(h, name);
    return e ? (int)e->status : HEALTH_SERVICE_UNKNOWN;
}

static void watch_unlink(health_watch *w) {
    if (w->prev)
        w->prev->next = w->next;
    else
        w->h->watches = w->next;
    if (w->next) w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

/* Finish the Watch call and forget the watcher. */
static void watch_end(health_watch *w, grpc_status_code code, const char *msg) {
    watch_unlink(w);
    hm_grpc_call *call = w->call;
    free(w->name);
    free(w);
    hm_grpc_stream_finish(call, code, msg);
}

static void watch_send(health_watch *w);

static void on_watch_sent(hm_grpc_call *call, bool ok, void *ud) {
    health_watch *w = ud;
    assert(w->call == call);
    if (!ok) {
        watch_end(w, GRPC_STATUS_CANCELLED, "client went away");
        return;
    }
    if (w->dirty) {
        w->dirty = false;
        if (current_value(w->h, w->name) != w->last_sent) watch_send(w);
    }
}

static void watch_send(health_watch *w) {
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    int v = current_value(w->h, w->name);
    resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)v;
    int rc = hm_grpc_stream_send(w->call, &resp.base, on_watch_sent, w);
    if (rc == -EBUSY) {
        w->dirty = true;
    } else if (rc == 0) {
        w->last_sent = v;
    }
    /* -ECANCELED: on_cancel is on its way and ends the watch. */
}

static void on_watch_cancel(hm_grpc_call *call, void *ud) {
    health_watch *w = ud;
    assert(w->call == call);
    watch_end(w, GRPC_STATUS_CANCELLED, "cancelled");
}

static void health_check(hm_grpc_call *call, const ProtobufCMessage *request, void *ud) {
    hm_grpc_health *h = ud;
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)request;
    const health_entry *e = find_entry(h, req->service ? req->service : "");
    if (!e) {
        hm_grpc_reply_error(call, GRPC_STATUS_NOT_FOUND, "unknown service");
        return;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)e->status;
    hm_grpc_reply(call, &resp.base);
}

static void health_watch_start(hm_grpc_call *call, const ProtobufCMessage *request, void *ud) {
    hm_grpc_health *h = ud;
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)request;
    if (h->stopped) {
        hm_grpc_stream_finish(call, GRPC_STATUS_UNAVAILABLE, "server shutting down");
        return;
    }
    health_watch *w = hm_xcalloc(1, sizeof(*w));
    w->h = h;
    w->call = call;
    w->name = hm_xstrdup(req->service ? req->service : "");
    w->last_sent = -1;
    w->next = h->watches;
    if (h->watches) h->watches->prev = w;
    h->watches = w;
    hm_grpc_call_set_data(call, w);
    hm_grpc_call_on_cancel(call, on_watch_cancel, w);
    watch_send(w);
}

hm_grpc_health *hm_grpc_health_new(hm_grpc_server *s) {
    hm_grpc_health *h = hm_xcalloc(1, sizeof(*h));
    h->s = s;
    static const hm_grpc_method rows[] = {
        {"Check", health_check, 0},
        {"Watch", health_watch_start, HM_GRPC_STREAMING},
    };
    hm_grpc_server_add_service(s, &grpc__health__v1__health__descriptor, rows, HM_ARRAY_LEN(rows),
                               h);
    return h;
}

void hm_grpc_health_set(hm_grpc_server *s, const char *service, hm_health_status status) {
    assert(s && service);
    assert(status == HM_HEALTH_UNKNOWN || status == HM_HEALTH_SERVING ||
           status == HM_HEALTH_NOT_SERVING);
    hm_grpc_health *h = hm_grpc_server_health(s);
    health_entry *e = find_entry(h, service);
    if (!e) {
        h->entries = hm_xrealloc(h->entries, (h->n_entries + 1) * sizeof(*h->entries));
        e = &h->entries[h->n_entries++];
        e->name = hm_xstrdup(service);
        e->status = HM_HEALTH_UNKNOWN;
    } else if (e->status == status) {
        return;
    }
    e->status = status;
    hm_log_info("grpc_health", HM_LS("name", service),
                HM_LS("status", status == HM_HEALTH_SERVING       ? "SERVING"
                                : status == HM_HEALTH_NOT_SERVING ? "NOT_SERVING"
                                                                  : "UNKNOWN"));
    health_watch *next;
    for (health_watch *w = h->watches; w; w = next) {
        next = w->next; /* watch_send may end w (never another watcher) */
        if (strcmp(w->name, service) == 0 && w->last_sent != (int)status) watch_send(w);
    }
}

void hm_grpc_health_stop(hm_grpc_health *h) {
    h->stopped = true;
    while (h->watches)
        watch_end(h->watches, GRPC_STATUS_UNAVAILABLE, "server shutting down");
}

void hm_grpc_health_free(hm_grpc_health *h) {
    if (!h) return;
    assert(h->watches == NULL);
    for (size_t i = 0; i < h->n_entries; i++)
        free(h->entries[i].name);
    free(h->entries);
    free(h);
}
