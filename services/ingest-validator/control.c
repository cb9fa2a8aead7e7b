/*
 * control.c: himari.v1.ControlService for the ingest-validator, and GET /status.
 *
 *   GetStatus     state, version, config digest, uptime, per-partition position and
 *                 lag, records in/out, transactions, last error
 *   WatchStatus   the same, streamed every interval_ms until the client goes away
 *   Pause/Resume  stop/restart consumption (the consumer's partitions are paused:
 *                 lag grows, nothing is lost)                          [token]
 *   ReloadConfig  re-read the YAML, validate, swap it in at once; a file that does
 *                 not load, or changes a key that needs a restart, is refused
 *                 with the reason and the running configuration stays  [token]
 *   Drain         stop consuming, commit what is in flight, answer, exit 0 [token]
 *
 * Handlers run on the loop (himari/grpc.h) and read the pipeline directly.
 */
#include "control.h"

#include <stdlib.h>
#include <string.h>

#include "himari/log.h"
#include "himari/status.h"
#include "himari/v1/control.pb-c.h"

#define MAX_STATUS_PARTITIONS 256
#define MAX_CHANGED_KEYS      64

struct iv_control {
    hm_service *svc;
    iv_config *cfg;
    char *config_path; /* NULL: started without --config */
    iv_pipeline *pipeline;
    char digest[17];
    bool drain_requested;
};

/* A Status message and the storage its repeated field points into. */
typedef struct status_msg {
    Himari__V1__Status st;
    Himari__V1__PartitionStatus parts[MAX_STATUS_PARTITIONS];
    Himari__V1__PartitionStatus *part_ptrs[MAX_STATUS_PARTITIONS];
    char topics[MAX_STATUS_PARTITIONS][256];
} status_msg;

static void refresh_digest(iv_control *c) {
    hm_cfg_section sections[IV_CONFIG_SECTIONS];
    iv_config_sections(c->cfg, sections);
    hm_config_digest(sections, IV_CONFIG_SECTIONS, c->digest);
}

static Himari__V1__ServiceState proto_state(iv_pipeline_state s) {
    switch (s) {
        case IV_STARTING:
            return HIMARI__V1__SERVICE_STATE__SERVICE_STATE_STARTING;
        case IV_RUNNING:
            return HIMARI__V1__SERVICE_STATE__SERVICE_STATE_RUNNING;
        case IV_PAUSED:
            return HIMARI__V1__SERVICE_STATE__SERVICE_STATE_PAUSED;
        case IV_DRAINING:
            return HIMARI__V1__SERVICE_STATE__SERVICE_STATE_DRAINING;
    }
    return HIMARI__V1__SERVICE_STATE__SERVICE_STATE_UNSPECIFIED;
}

/* Fill m (whose strings point into c and the pipeline: use before the next turn). */
static void build_status(iv_control *c, status_msg *m) {
    iv_pipeline_status ps;
    iv_pipeline_get_status(c->pipeline, &ps);
    Himari__V1__Status init = HIMARI__V1__STATUS__INIT;
    m->st = init;
    m->st.service = (char *)c->svc->name;
    m->st.instance_id = c->cfg->base.instance_id ? c->cfg->base.instance_id : "";
    m->st.version = HM_VERSION;
    m->st.state = proto_state(ps.state);
    m->st.config_digest = c->digest;
    m->st.uptime_seconds = hm_service_uptime(c->svc);
    m->st.records_in = ps.records_in;
    m->st.records_out = ps.records_out;
    m->st.transactions_committed = ps.transactions_committed;
    m->st.transactions_aborted = ps.transactions_aborted;
    m->st.last_error = (char *)ps.last_error;

    hm_consumer *cons = iv_pipeline_consumer(c->pipeline);
    rd_kafka_topic_partition_list_t *l = cons ? hm_consumer_assignment(cons) : NULL;
    size_t n = 0;
    for (int i = 0; l && i < l->cnt && n < MAX_STATUS_PARTITIONS; i++, n++) {
        Himari__V1__PartitionStatus pinit = HIMARI__V1__PARTITION_STATUS__INIT;
        Himari__V1__PartitionStatus *p = &m->parts[n];
        *p = pinit;
        snprintf(m->topics[n], sizeof(m->topics[n]), "%s", l->elems[i].topic);
        p->topic = m->topics[n];
        p->partition = l->elems[i].partition;
        p->position = hm_consumer_position(cons, l->elems[i].topic, l->elems[i].partition);
        if (p->position < 0) p->position = -1;
        p->lag = hm_consumer_lag(cons, l->elems[i].topic, l->elems[i].partition);
        m->part_ptrs[n] = p;
    }
    if (l) rd_kafka_topic_partition_list_destroy(l);
    m->st.n_partitions = n;
    m->st.partitions = n ? m->part_ptrs : NULL;
}

/* ---- GetStatus, /status --------------------------------------------------- */

static void get_status(hm_grpc_call *call, const ProtobufCMessage *req, void *ud) {
    status_msg *m = hm_xmalloc(sizeof(*m));
    build_status(ud, m);
    hm_grpc_reply(call, &m->st.base);
    free(m);
}

static int http_status(void *ud, hm_buf *out, const char **content_type) {
    status_msg *m = hm_xmalloc(sizeof(*m));
    build_status(ud, m);
    hm_status_json(out, &m->st);
    hm_buf_putc(out, '\n');
    free(m);
    return 200;
}

/* ---- WatchStatus ---------------------------------------------------------- */

typedef struct watch {
    iv_control *c;
    hm_grpc_call *call; /* NULL once finished */
    uv_timer_t timer;
    status_msg m;
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
    build_status(w->c, &w->m);
    int rc = hm_grpc_stream_send(w->call, &w->m.st.base, watch_sent, w);
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
    iv_control *c = ud;
    iv_pipeline_pause(c->pipeline);
    iv_pipeline_status ps;
    iv_pipeline_get_status(c->pipeline, &ps);
    Himari__V1__PauseResponse resp = HIMARI__V1__PAUSE_RESPONSE__INIT;
    resp.state = proto_state(ps.state);
    hm_log_info("control_pause",
                HM_LS("state", hm_status_state_name((int)resp.state, (char[32]){0})));
    hm_grpc_reply(call, &resp.base);
}

static void resume_(hm_grpc_call *call, const ProtobufCMessage *req, void *ud) {
    iv_control *c = ud;
    iv_pipeline_resume(c->pipeline);
    iv_pipeline_status ps;
    iv_pipeline_get_status(c->pipeline, &ps);
    Himari__V1__ResumeResponse resp = HIMARI__V1__RESUME_RESPONSE__INIT;
    resp.state = proto_state(ps.state);
    hm_log_info("control_resume");
    hm_grpc_reply(call, &resp.base);
}

/* ---- ReloadConfig ---------------------------------------------------------- */

static void reload_config(hm_grpc_call *call, const ProtobufCMessage *req, void *ud) {
    iv_control *c = ud;
    const Himari__V1__ReloadConfigRequest *r = (const void *)req;
    const char *path = (r->path && *r->path) ? r->path : c->config_path;
    iv_config *fresh = hm_xcalloc(1, sizeof(*fresh));
    hm_err err;
    if (iv_config_load(fresh, path, &err) != 0) {
        hm_log_warn("control_reload_refused", HM_LS("error", err.msg));
        hm_grpc_reply_error(call, GRPC_STATUS_INVALID_ARGUMENT, "%s", err.msg);
        free(fresh);
        return;
    }
    hm_cfg_section sections[IV_CONFIG_SECTIONS], fresh_sections[IV_CONFIG_SECTIONS];
    iv_config_sections(c->cfg, sections);
    iv_config_sections(fresh, fresh_sections);
    void *old_dst[IV_CONFIG_SECTIONS], *new_dst[IV_CONFIG_SECTIONS];
    for (size_t i = 0; i < IV_CONFIG_SECTIONS; i++) {
        old_dst[i] = sections[i].dst;
        new_dst[i] = fresh_sections[i].dst;
    }
    const char *fixed =
        hm_config_non_reloadable_change(sections, IV_CONFIG_SECTIONS, old_dst, new_dst);
    if (fixed) {
        hm_log_warn("control_reload_refused", HM_LS("key", fixed));
        hm_grpc_reply_error(call, GRPC_STATUS_INVALID_ARGUMENT,
                            "%s: cannot change without a restart; nothing was changed", fixed);
        iv_config_free(fresh);
        free(fresh);
        return;
    }
    const char *changed[MAX_CHANGED_KEYS];
    size_t n_changed = hm_config_changed_keys(sections, IV_CONFIG_SECTIONS, old_dst, new_dst,
                                              changed, MAX_CHANGED_KEYS);
    if (n_changed > MAX_CHANGED_KEYS) n_changed = MAX_CHANGED_KEYS;

    /* Swap: one struct, same address, so every reader sees the new values. The
     * changed paths are static strings of the key tables, not of the config. */
    iv_config old = *c->cfg;
    *c->cfg = *fresh;
    free(fresh);
    iv_config_free(&old);

    hm_log_level level;
    if (c->cfg->base.log_level && hm_log_level_parse(c->cfg->base.log_level, &level) == 0)
        hm_log_set_level(level);
    hm_grpc_server_set_token(c->svc->grpc, c->cfg->base.grpc_token);
    iv_pipeline_reconfigure(c->pipeline);
    refresh_digest(c);
    hm_log_info("control_reloaded", HM_LS("path", path), HM_LI("changed_keys", n_changed),
                HM_LS("config_digest", c->digest));

    Himari__V1__ReloadConfigResponse resp = HIMARI__V1__RELOAD_CONFIG_RESPONSE__INIT;
    resp.config_digest = c->digest;
    resp.n_changed_keys = n_changed;
    resp.changed_keys = (char **)changed;
    hm_grpc_reply(call, &resp.base);
}

/* ---- Drain ------------------------------------------------------------------ */

static void drain_done(void *ud, uint64_t records) {
    hm_grpc_call *call = ud;
    Himari__V1__DrainResponse resp = HIMARI__V1__DRAIN_RESPONSE__INIT;
    resp.records_committed = records;
    hm_grpc_reply(call, &resp.base);
}

static void drain(hm_grpc_call *call, const ProtobufCMessage *req, void *ud) {
    iv_control *c = ud;
    if (c->drain_requested || c->svc->stopping) {
        hm_grpc_reply_error(call, GRPC_STATUS_UNAVAILABLE, "already stopping");
        return;
    }
    c->drain_requested = true;
    hm_log_info("control_drain");
    iv_pipeline_drain(c->pipeline, drain_done, call);
}

static const hm_grpc_method methods[] = {
    {"GetStatus", get_status, 0},
    {"WatchStatus", watch_status, HM_GRPC_STREAMING},
    {"Pause", pause_, HM_GRPC_MUTATING},
    {"Resume", resume_, HM_GRPC_MUTATING},
    {"ReloadConfig", reload_config, HM_GRPC_MUTATING},
    {"Drain", drain, HM_GRPC_MUTATING},
};

iv_control *iv_control_start(hm_service *svc, iv_config *cfg, const char *config_path,
                             iv_pipeline *pipeline) {
    iv_control *c = hm_xcalloc(1, sizeof(*c));
    c->svc = svc;
    c->cfg = cfg;
    c->config_path = config_path ? hm_xstrdup(config_path) : NULL;
    c->pipeline = pipeline;
    refresh_digest(c);
    hm_service_add_grpc(svc, &himari__v1__control_service__descriptor, methods,
                        HM_ARRAY_LEN(methods), c);
    hm_admin_route(svc->admin, "/status", http_status, c);
    return c;
}

void iv_control_free(iv_control *c) {
    if (!c) return;
    free(c->config_path);
    free(c);
}
