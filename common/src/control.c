/*
 * control.c: himari.v1.ControlService and GET /status for every service (see
 * himari/control.h).
 *
 * What is common lives here: building Status (name, instance, version, config digest,
 * uptime, partitions from the service's consumer), WatchStatus timers, the reload
 * protocol (load a fresh copy, refuse non-reloadable changes, swap in place, apply
 * log.level and grpc.token) and Drain's one-shot guard. What a service knows (its
 * state, counts, how to pause or drain) comes from its hooks. Handlers run on the
 * loop and never block: Drain answers from the hook's callback, after the last commit.
 */
#include "himari/control.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/log.h"
#include "himari/service.h"
#include "himari/status.h"
#include "himari/v1/control.pb-c.h"

#define MAX_CHANGED_KEYS 64

_Static_assert((int)HM_SERVICE_STARTING == (int)HIMARI__V1__SERVICE_STATE__SERVICE_STATE_STARTING &&
                   (int)HM_SERVICE_RUNNING ==
                       (int)HIMARI__V1__SERVICE_STATE__SERVICE_STATE_RUNNING &&
                   (int)HM_SERVICE_PAUSED == (int)HIMARI__V1__SERVICE_STATE__SERVICE_STATE_PAUSED &&
                   (int)HM_SERVICE_DRAINING ==
                       (int)HIMARI__V1__SERVICE_STATE__SERVICE_STATE_DRAINING,
               "hm_service_state mirrors the proto's ServiceState");

struct hm_control {
    hm_service *svc;
    const hm_service_schema *schema;
    void *cfg;
    char *config_path; /* NULL: started without --config */
    const hm_control_hooks *hooks;
    void *ud;
    char digest[17];
    bool drain_requested;
};

const char *hm_service_state_name(hm_service_state s) {
    switch (s) {
        case HM_SERVICE_STARTING:
            return "STARTING";
        case HM_SERVICE_RUNNING:
            return "RUNNING";
        case HM_SERVICE_PAUSED:
            return "PAUSED";
        case HM_SERVICE_DRAINING:
            return "DRAINING";
    }
    return "UNSPECIFIED";
}

/* A Status message and the storage its strings and repeated field point into; sized
 * for the assignment at hand (no bound on partitions). */
typedef struct status_msg {
    Himari__V1__Status st;
    Himari__V1__PartitionStatus *parts;
    Himari__V1__PartitionStatus **part_ptrs;
    rd_kafka_topic_partition_list_t *assignment; /* topics point into it */
    hm_control_status cs;                        /* details point into it */
    Himari__V1__Status__DetailsEntry entries[HM_STATUS_DETAILS_MAX];
    Himari__V1__Status__DetailsEntry *entry_ptrs[HM_STATUS_DETAILS_MAX];
} status_msg;

static void status_msg_clear(status_msg *m) {
    free(m->parts);
    free(m->part_ptrs);
    if (m->assignment) rd_kafka_topic_partition_list_destroy(m->assignment);
    memset(m, 0, sizeof(*m));
}

/* Fill m (its strings point into c, the hooks' answers and m): use it before the loop
 * turns, then status_msg_clear. */
static void build_status(hm_control *c, status_msg *m) {
    status_msg_clear(m);
    hm_control_status *csp = &m->cs;
    csp->state = HM_SERVICE_STARTING;
    csp->last_error = "";
    if (c->hooks->status) c->hooks->status(c->ud, csp);
    const hm_service_config *base = c->cfg;
    Himari__V1__Status init = HIMARI__V1__STATUS__INIT;
    m->st = init;
    m->st.service = (char *)c->svc->name;
    m->st.instance_id = base->instance_id ? base->instance_id : "";
    m->st.version = HM_VERSION;
    m->st.state = (Himari__V1__ServiceState)csp->state;
    m->st.config_digest = c->digest;
    m->st.uptime_seconds = hm_service_uptime(c->svc);
    m->st.records_in = csp->records_in;
    m->st.records_out = csp->records_out;
    m->st.transactions_committed = csp->transactions_committed;
    m->st.transactions_aborted = csp->transactions_aborted;
    m->st.last_error = (char *)(csp->last_error ? csp->last_error : "");
    for (size_t i = 0; i < csp->n_details; i++) {
        Himari__V1__Status__DetailsEntry einit = HIMARI__V1__STATUS__DETAILS_ENTRY__INIT;
        m->entries[i] = einit;
        m->entries[i].key = (char *)csp->details[i].name;
        m->entries[i].value = csp->details[i].value;
        m->entry_ptrs[i] = &m->entries[i];
    }
    m->st.n_details = csp->n_details;
    m->st.details = m->entry_ptrs;

    rd_kafka_topic_partition_list_t *l =
        csp->consumer ? hm_consumer_assignment(csp->consumer) : NULL;
    if (!l || l->cnt == 0) {
        if (l) rd_kafka_topic_partition_list_destroy(l);
        return;
    }
    m->assignment = l;
    size_t n = (size_t)l->cnt;
    m->parts = hm_xcalloc(n, sizeof(*m->parts));
    m->part_ptrs = hm_xcalloc(n, sizeof(*m->part_ptrs));
    for (size_t i = 0; i < n; i++) {
        Himari__V1__PartitionStatus pinit = HIMARI__V1__PARTITION_STATUS__INIT;
        Himari__V1__PartitionStatus *p = &m->parts[i];
        *p = pinit;
        p->topic = l->elems[i].topic;
        p->partition = l->elems[i].partition;
        p->position = hm_consumer_position(csp->consumer, l->elems[i].topic, l->elems[i].partition);
        if (p->position < 0) p->position = -1;
        p->lag = hm_consumer_lag(csp->consumer, l->elems[i].topic, l->elems[i].partition);
        m->part_ptrs[i] = p;
    }
    m->st.n_partitions = n;
    m->st.partitions = m->part_ptrs;
}

void hm_control_status_detail(hm_control_status *s, const char *name, const char *fmt, ...) {
    if (s->n_details >= HM_STATUS_DETAILS_MAX) return;
    hm_status_detail *d = &s->details[s->n_details++];
    d->name = name;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->value, sizeof(d->value), fmt, ap);
    va_end(ap);
}

static hm_service_state current_state(hm_control *c) {
    hm_control_status cs = {.state = HM_SERVICE_STARTING};
    if (c->hooks->status) c->hooks->status(c->ud, &cs);
    return cs.state;
}

/* ---- GetStatus, /status --------------------------------------------------- */

static void get_status(hm_grpc_call *call, const ProtobufCMessage *req, void *ud) {
    status_msg m = {0};
    build_status(ud, &m);
    hm_grpc_reply(call, &m.st.base);
    status_msg_clear(&m);
}

static int http_status(void *ud, hm_buf *out, const char **content_type) {
    status_msg m = {0};
    build_status(ud, &m);
    hm_status_json(out, &m.st);
    hm_buf_putc(out, '\n');
    status_msg_clear(&m);
    return 200;
}

/* ---- WatchStatus ---------------------------------------------------------- */

typedef struct watch {
    hm_control *c;
    hm_grpc_call *call; /* NULL once finished */
    uv_timer_t timer;
} watch;

static void watch_freed(uv_handle_t *h) {
    free(h->data);
}

static void watch_end(watch *w, grpc_status_code code, const char *msg) {
    if (w->call) {
        hm_grpc_stream_finish(w->call, code, msg);
        w->call = NULL;
    }
    if (!uv_is_closing((uv_handle_t *)&w->timer)) uv_close((uv_handle_t *)&w->timer, watch_freed);
}

static void watch_sent(hm_grpc_call *call, bool ok, void *ud) {
    watch *w = ud;
    if (!ok) watch_end(w, GRPC_STATUS_CANCELLED, "client went away");
}

static void watch_tick(uv_timer_t *t) {
    watch *w = t->data;
    if (!w->call) return;
    status_msg m = {0};
    build_status(w->c, &m);
    int rc = hm_grpc_stream_send(w->call, &m.st.base, watch_sent, w); /* packs it */
    status_msg_clear(&m);
    if (rc == -ECANCELED) watch_end(w, GRPC_STATUS_CANCELLED, "cancelled");
    /* -EBUSY: the previous message is still on its way; skip this tick. */
}

static void watch_cancelled(hm_grpc_call *call, void *ud) {
    watch_end(ud, GRPC_STATUS_CANCELLED, "cancelled");
}

static void watch_status(hm_grpc_call *call, const ProtobufCMessage *req, void *ud) {
    const Himari__V1__WatchStatusRequest *r = (const void *)req;
    uint32_t interval = r->interval_ms ? r->interval_ms : 1000;
    if (interval < 50) {
        hm_grpc_reply_error(call, GRPC_STATUS_INVALID_ARGUMENT,
                            "interval_ms: %u is below the minimum of 50", (unsigned)interval);
        return;
    }
    watch *w = hm_xcalloc(1, sizeof(*w));
    w->c = ud;
    w->call = call;
    uv_timer_init(w->c->svc->loop, &w->timer);
    w->timer.data = w;
    hm_grpc_call_on_cancel(call, watch_cancelled, w);
    uv_timer_start(&w->timer, watch_tick, 0, interval);
}

/* ---- Pause, Resume --------------------------------------------------------- */

static void pause_(hm_grpc_call *call, const ProtobufCMessage *req, void *ud) {
    hm_control *c = ud;
    if (c->hooks->pause) c->hooks->pause(c->ud);
    Himari__V1__PauseResponse resp = HIMARI__V1__PAUSE_RESPONSE__INIT;
    resp.state = (Himari__V1__ServiceState)current_state(c);
    hm_log_info("control_pause", HM_LS("state", hm_service_state_name(current_state(c))));
    hm_grpc_reply(call, &resp.base);
}

static void resume_(hm_grpc_call *call, const ProtobufCMessage *req, void *ud) {
    hm_control *c = ud;
    if (c->hooks->resume) c->hooks->resume(c->ud);
    Himari__V1__ResumeResponse resp = HIMARI__V1__RESUME_RESPONSE__INIT;
    resp.state = (Himari__V1__ServiceState)current_state(c);
    hm_log_info("control_resume", HM_LS("state", hm_service_state_name(current_state(c))));
    hm_grpc_reply(call, &resp.base);
}

/* ---- ReloadConfig ---------------------------------------------------------- */

/* The request's path must be empty or exactly the --config the service was started with:
 * the token allows a reload, not reading a file of the caller's choosing (its lines would
 * come back in the error, and a FIFO or a huge file would stall the loop). Compared as
 * given, without touching the file system: another name for the same file is refused. */
static bool reload_path_allowed(const hm_control *c, const char *asked) {
    if (!asked || !*asked) return true;
    return c->config_path && strcmp(asked, c->config_path) == 0;
}

static void reload_config(hm_grpc_call *call, const ProtobufCMessage *req, void *ud) {
    hm_control *c = ud;
    const hm_service_schema *schema = c->schema;
    const Himari__V1__ReloadConfigRequest *r = (const void *)req;
    if (!reload_path_allowed(c, r->path)) {
        char shown[128];
        snprintf(shown, sizeof(shown), "%.120s", r->path);
        hm_log_warn("control_reload_refused", HM_LS("path", shown),
                    HM_LS("error", "not the configured file"));
        hm_grpc_reply_error(call, GRPC_STATUS_PERMISSION_DENIED,
                            "path: only the file the service was started with can be reloaded "
                            "(%s); leave path empty",
                            c->config_path ? c->config_path : "none: started without --config");
        return;
    }
    const char *path = c->config_path;
    void *fresh = hm_xcalloc(1, schema->size);
    hm_err err;
    if (hm_service_config_load(schema, fresh, path, &err) != 0) {
        hm_log_warn("control_reload_refused", HM_LS("error", err.msg));
        hm_grpc_reply_error(call, GRPC_STATUS_INVALID_ARGUMENT, "%s", err.msg);
        free(fresh);
        return;
    }
    hm_cfg_section sections[HM_MAX_SECTIONS], fresh_sections[HM_MAX_SECTIONS];
    schema->sections(c->cfg, sections);
    schema->sections(fresh, fresh_sections);
    void *old_dst[HM_MAX_SECTIONS], *new_dst[HM_MAX_SECTIONS];
    for (size_t i = 0; i < schema->n_sections; i++) {
        old_dst[i] = sections[i].dst;
        new_dst[i] = fresh_sections[i].dst;
    }
    const char *fixed =
        hm_config_non_reloadable_change(sections, schema->n_sections, old_dst, new_dst);
    if (fixed) {
        hm_log_warn("control_reload_refused", HM_LS("key", fixed));
        hm_grpc_reply_error(call, GRPC_STATUS_INVALID_ARGUMENT,
                            "%s: cannot change without a restart; nothing was changed", fixed);
        hm_service_config_free(schema, fresh);
        free(fresh);
        return;
    }
    const char *changed[MAX_CHANGED_KEYS];
    size_t n_changed = hm_config_changed_keys(sections, schema->n_sections, old_dst, new_dst,
                                              changed, MAX_CHANGED_KEYS);
    if (n_changed > MAX_CHANGED_KEYS) n_changed = MAX_CHANGED_KEYS;

    /* Swap: one struct, same address, so every reader sees the new values at once.
     * The changed paths are static strings of the key tables, not of the config. */
    void *old = hm_xmalloc(schema->size);
    memcpy(old, c->cfg, schema->size);
    memcpy(c->cfg, fresh, schema->size);
    free(fresh);
    hm_service_config_free(schema, old);
    free(old);

    const hm_service_config *base = c->cfg;
    hm_log_level level;
    if (base->log_level && hm_log_level_parse(base->log_level, &level) == 0)
        hm_log_set_level(level);
    hm_grpc_server_set_token(c->svc->grpc, base->grpc_token);
    if (c->hooks->reconfigure) c->hooks->reconfigure(c->ud);
    hm_service_config_digest(schema, c->cfg, c->digest);
    hm_log_info("control_reloaded", HM_LS("path", path), HM_LI("changed_keys", n_changed),
                HM_LS("config_digest", c->digest));

    Himari__V1__ReloadConfigResponse resp = HIMARI__V1__RELOAD_CONFIG_RESPONSE__INIT;
    resp.config_digest = c->digest;
    resp.n_changed_keys = n_changed;
    resp.changed_keys = (char **)changed;
    hm_grpc_reply(call, &resp.base);
}

/* ---- Drain ------------------------------------------------------------------ */

static void drain_done(void *arg, uint64_t records) {
    hm_grpc_call *call = arg;
    Himari__V1__DrainResponse resp = HIMARI__V1__DRAIN_RESPONSE__INIT;
    resp.records_committed = records;
    hm_grpc_reply(call, &resp.base);
}

static void drain(hm_grpc_call *call, const ProtobufCMessage *req, void *ud) {
    hm_control *c = ud;
    if (c->drain_requested || c->svc->stopping || !c->hooks->drain) {
        hm_grpc_reply_error(call, GRPC_STATUS_UNAVAILABLE,
                            c->hooks->drain ? "already stopping" : "this service cannot drain");
        return;
    }
    c->drain_requested = true;
    hm_log_info("control_drain");
    c->hooks->drain(c->ud, drain_done, call);
}

static const hm_grpc_method k_methods[] = {
    {"GetStatus", get_status, 0},
    {"WatchStatus", watch_status, HM_GRPC_STREAMING},
    {"Pause", pause_, HM_GRPC_MUTATING},
    {"Resume", resume_, HM_GRPC_MUTATING},
    {"ReloadConfig", reload_config, HM_GRPC_MUTATING},
    {"Drain", drain, HM_GRPC_MUTATING},
};

hm_control *hm_control_start(hm_service *svc, const hm_service_schema *schema, void *cfg,
                             const char *config_path, const hm_control_hooks *hooks, void *ud) {
    hm_control *c = hm_xcalloc(1, sizeof(*c));
    c->svc = svc;
    c->schema = schema;
    c->cfg = cfg;
    c->config_path = config_path ? hm_xstrdup(config_path) : NULL;
    c->hooks = hooks;
    c->ud = ud;
    hm_service_config_digest(schema, cfg, c->digest);
    hm_service_add_grpc(svc, &himari__v1__control_service__descriptor, k_methods,
                        HM_ARRAY_LEN(k_methods), c);
    /* A service that serves a /status of its own (the health-gateway's page) keeps it;
     * its Status is then on gRPC only. */
    if (!hm_admin_has_route(svc->admin, "/status"))
        hm_admin_route(svc->admin, "/status", http_status, c);
    return c;
}

void hm_control_free(hm_control *c) {
    if (!c) return;
    free(c->config_path);
    free(c);
}
