/*
 * gateway.c: the rounds, the parts' state, and what the gateway serves (gateway.h).
 *
 * A round starts every probe at once; its timeout timer ends what has not answered, then
 * the round's figures join the history. State changes are logged, counted, recorded among
 * the recent errors when they are failures, and published to grpc.health.v1 under the
 * part's name. Everything runs on the loop; a handler only renders what is known.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway_int.h"
#include "himari/log.h"
#include "page.h"

static const char *state_name(hg_state s) {
    return s == HG_UP ? "up" : s == HG_DOWN ? "down" : "unknown";
}

static const char *kind_name(hg_kind k) {
    static const char *const names[] = {"service", "kafka", "redis", "postgres", "neo4j", "s3"};
    return names[k];
}

/* ---- recent errors and history --------------------------------------------------------- */

/* Two errors say the same when they differ only in figures ("after 0 ms", "after 1 ms"). */
static bool same_error(const char *a, const char *b) {
    for (;;) {
        while (*a >= '0' && *a <= '9')
            a++;
        while (*b >= '0' && *b <= '9')
            b++;
        if (*a != *b) return false;
        if (!*a) return true;
        a++;
        b++;
    }
}

static void record_error(hg_gateway *g, const hg_part *p, int64_t now) {
    size_t i = (g->errors_head + g->errors_n) % g->errors_cap;
    if (g->errors_n == g->errors_cap)
        g->errors_head = (g->errors_head + 1) % g->errors_cap;
    else
        g->errors_n++;
    hg_error *e = &g->errors[i];
    e->t_ms = now;
    snprintf(e->part, sizeof(e->part), "%s", p->name);
    snprintf(e->error, sizeof(e->error), "%s", p->error);
}

static void push_sample(hg_gateway *g, int64_t now) {
    size_t i = (g->history_head + g->history_n) % g->history_cap;
    if (g->history_n == g->history_cap)
        g->history_head = (g->history_head + 1) % g->history_cap;
    else
        g->history_n++;
    hg_sample *s = &g->history[i];
    s->t_ms = now;
    for (size_t j = 0; j < g->n_services; j++)
        s->throughput[j] = g->parts[j].state == HG_UP ? g->parts[j].throughput : 0;
    int64_t total = 0;
    for (size_t j = 0; j < g->n_groups; j++) {
        s->lag[j] = g->groups[j].lag;
        total += g->groups[j].lag;
    }
    s->lag[g->n_groups] = total;
}

/* ---- a part's probe ends ----------------------------------------------------------------- */

static void part_done(hg_part *p) {
    hg_gateway *g = p->gw;
    int64_t now = hm_now_ms();
    p->in_flight = false;
    double secs = (double)(hm_mono_ns() - p->started_ns) / 1e9;
    p->latency_ms = secs * 1e3;
    hm_histogram_observe(p->seconds, secs);
    hg_state next = p->failed ? HG_DOWN : HG_UP;
    bool changed = next != p->state;
    if (p->failed) {
        p->failures++;
        hm_counter_inc(p->failures_total);
        if (changed || !same_error(p->error, p->last_error)) record_error(g, p, now);
        snprintf(p->last_error, sizeof(p->last_error), "%s", p->error);
    } else {
        p->last_ok_ms = now;
        p->last_error[0] = '\0';
    }
    hm_gauge_set(p->up, next == HG_UP ? 1 : 0);
    if (!changed) return;
    hm_log_emit(next == HG_UP ? HM_LOG_INFO : HM_LOG_WARN, "part_state_changed",
                HM_LOG_FIELDS_(HM_LS("part", p->name), HM_LS("kind", kind_name(p->kind)),
                               HM_LS("from", state_name(p->state)), HM_LS("to", state_name(next)),
                               HM_LS("error", p->failed ? p->error : "")));
    p->state = next;
    p->since_ms = now;
    if (g->svc->grpc)
        hm_grpc_health_set(g->svc->grpc, p->name,
                           next == HG_UP ? HM_HEALTH_SERVING : HM_HEALTH_NOT_SERVING);
}

void hg_part_answer(hg_part *p, const char *error) {
    if (!p->in_flight) return;
    if (error && !p->failed) {
        p->failed = true;
        snprintf(p->error, sizeof(p->error), "%s", error);
    }
    if (--p->pending <= 0) part_done(p);
}

void hg_gateway_quality(hg_gateway *g, const char *exchange, double sum, double count) {
    hg_quality *q = NULL;
    for (size_t i = 0; i < g->n_quality && !q; i++)
        if (strcmp(g->quality[i].exchange, exchange) == 0) q = &g->quality[i];
    if (!q) {
        if (g->n_quality == HG_MAX_QUALITY) return;
        q = &g->quality[g->n_quality++];
        memset(q, 0, sizeof(*q));
        snprintf(q->exchange, sizeof(q->exchange), "%s", exchange);
        q->mean = NAN;
    }
    if (sum >= 0) q->sum = sum;
    if (count >= 0) q->count = count;
}

/* The quality of the round: what the totals grew by since the last one. */
static void quality_round(hg_gateway *g) {
    for (size_t i = 0; i < g->n_quality; i++) {
        hg_quality *q = &g->quality[i];
        if (q->have_prev && q->count >= q->prev_count) {
            q->records = q->count - q->prev_count;
            q->mean = q->records > 0 ? (q->sum - q->prev_sum) / q->records : NAN;
        }
        q->prev_sum = q->sum;
        q->prev_count = q->count;
        q->have_prev = true;
    }
}

/* ---- rounds -------------------------------------------------------------------------------- */

static void on_timeout(uv_timer_t *t) {
    hg_gateway *g = t->data;
    char error[64];
    snprintf(error, sizeof(error), "timed out after %lld ms", (long long)g->cfg->probe_timeout_ms);
    for (size_t i = 0; i < g->n_parts; i++) {
        hg_part *p = &g->parts[i];
        if (!p->in_flight) continue;
        hg_probe_cancel(p);
        p->failed = false; /* the timeout is why, whatever was said before */
        p->pending = 1;
        hg_part_answer(p, error);
    }
    quality_round(g);
    push_sample(g, hm_now_ms());
}

static void on_round(uv_timer_t *t) {
    hg_gateway *g = t->data;
    if (g->paused || g->stopping) return;
    g->rounds++;
    for (size_t i = 0; i < g->n_parts; i++) {
        hg_part *p = &g->parts[i];
        if (p->in_flight) continue;
        p->in_flight = true;
        p->failed = false;
        p->error[0] = '\0';
        p->pending = 0;
        p->started_ns = hm_mono_ns();
        p->checks++;
        hg_probe_start(p);
    }
    uv_timer_start(&g->timeout_timer, on_timeout, (uint64_t)g->cfg->probe_timeout_ms, 0);
}

/* ---- readiness ------------------------------------------------------------------------------ */

static bool ready_cb(void *ud, char *reason, size_t size) {
    hg_gateway *g = ud;
    size_t n = 0;
    bool ready = true;
    for (size_t i = 0; i < g->n_parts; i++) {
        const hg_part *p = &g->parts[i];
        if (!p->critical || p->state == HG_UP) continue;
        int w = snprintf(reason + n, n < size ? size - n : 0, "%s%s (%s)", ready ? "down: " : ", ",
                         p->name, p->state == HG_UNKNOWN ? "not probed yet" : p->last_error);
        ready = false;
        if (w > 0) n += (size_t)w;
        if (n >= size) break;
    }
    if (g->paused && ready) {
        snprintf(reason, size, "probing is paused (ControlService Resume)");
        return false;
    }
    return ready;
}

/* ---- /api/v1/status -------------------------------------------------------------------------- */

static void part_json(const hg_gateway *g, const hg_part *p, hm_buf *b) {
    hm_buf_putc(b, '{');
    hm_json_key(b, "name");
    hm_json_cstr(b, p->name);
    hm_json_member_str(b, "kind", kind_name(p->kind));
    hm_json_member_bool(b, "critical", p->critical);
    hm_json_member_str(b, "state", state_name(p->state));
    hm_json_member_str(b, "target", p->target);
    hm_json_member_double(b, "latency_ms", p->latency_ms);
    hm_json_member_str(b, "last_error", p->last_error);
    hm_json_member_i64(b, "last_ok_ms", p->last_ok_ms);
    hm_json_member_i64(b, "since_ms", p->since_ms);
    hm_json_member_i64(b, "checks", (int64_t)p->checks);
    hm_json_member_i64(b, "failures", (int64_t)p->failures);
    if (p->kind == HG_SERVICE) {
        hm_json_member_str(b, "service_state", p->service_state);
        hm_json_member_i64(b, "records_in", (int64_t)p->records_in);
        hm_json_member_i64(b, "records_out", (int64_t)p->records_out);
        hm_json_member_double(b, "throughput", p->state == HG_UP ? p->throughput : 0);
        hm_json_member_i64(b, "lag", p->lag);
    } else if (p->kind == HG_KAFKA) {
        hm_json_member_i64(b, "brokers", p->brokers);
        hm_json_member_i64(b, "lag", p->total_lag);
        hm_buf_puts(b, ",\"groups\":[");
        for (size_t i = 0; i < g->n_groups; i++) {
            if (i) hm_buf_putc(b, ',');
            hm_buf_putc(b, '{');
            hm_json_key(b, "group");
            hm_json_cstr(b, g->groups[i].group);
            hm_json_member_i64(b, "lag", g->groups[i].lag);
            hm_json_member_i64(b, "partitions", g->groups[i].partitions);
            hm_json_member_str(b, "error", g->groups[i].error);
            hm_buf_putc(b, '}');
        }
        hm_buf_putc(b, ']');
    }
    hm_buf_putc(b, '}');
}

static void history_json(const hg_gateway *g, hm_buf *b) {
    hm_buf_putc(b, '[');
    for (size_t k = 0; k < g->history_n; k++) {
        const hg_sample *s = &g->history[(g->history_head + k) % g->history_cap];
        if (k) hm_buf_putc(b, ',');
        hm_buf_puts(b, "{\"t_ms\":");
        hm_buf_i64(b, s->t_ms);
        hm_buf_puts(b, ",\"throughput\":{");
        for (size_t j = 0; j < g->n_services; j++) {
            if (j) hm_buf_putc(b, ',');
            hm_json_key(b, g->parts[j].name);
            hm_json_double(b, s->throughput[j]);
        }
        hm_buf_puts(b, "},\"lag\":{");
        for (size_t j = 0; j < g->n_groups; j++) {
            hm_json_key(b, g->groups[j].group);
            hm_buf_i64(b, s->lag[j]);
            hm_buf_putc(b, ',');
        }
        hm_buf_puts(b, "\"kafka\":");
        hm_buf_i64(b, s->lag[g->n_groups]);
        hm_buf_puts(b, "}}");
    }
    hm_buf_putc(b, ']');
}

static int http_api_status(void *ud, hm_buf *b, const char **ct) {
    hg_gateway *g = ud;
    char reason[512] = "";
    bool ready = ready_cb(g, reason, sizeof(reason));
    hm_buf_puts(b, "{\"service\":\"health-gateway\"");
    hm_json_member_bool(b, "ready", ready);
    hm_json_member_str(b, "reason", ready ? "" : reason);
    hm_json_member_bool(b, "paused", g->paused);
    hm_json_member_i64(b, "now_ms", hm_now_ms());
    hm_json_member_i64(b, "probe_interval_ms", g->cfg->probe_interval_ms);
    hm_json_member_i64(b, "probe_timeout_ms", g->cfg->probe_timeout_ms);
    hm_json_member_i64(b, "rounds", (int64_t)g->rounds);
    hm_buf_puts(b, ",\"parts\":[");
    for (size_t i = 0; i < g->n_parts; i++) {
        if (i) hm_buf_putc(b, ',');
        part_json(g, &g->parts[i], b);
    }
    hm_buf_puts(b, "],\"quality\":[");
    bool first = true;
    for (size_t i = 0; i < g->n_quality; i++) {
        const hg_quality *q = &g->quality[i];
        if (!first) hm_buf_putc(b, ',');
        first = false;
        hm_buf_putc(b, '{');
        hm_json_key(b, "exchange");
        hm_json_cstr(b, q->exchange);
        hm_json_member_double(b, "mean", q->mean);
        hm_json_member_double(b, "records", q->records);
        hm_buf_putc(b, '}');
    }
    hm_buf_puts(b, "],\"history\":");
    history_json(g, b);
    hm_buf_puts(b, ",\"errors\":[");
    for (size_t k = 0; k < g->errors_n; k++) { /* newest first */
        const hg_error *e = &g->errors[(g->errors_head + g->errors_n - 1 - k) % g->errors_cap];
        if (k) hm_buf_putc(b, ',');
        hm_buf_puts(b, "{\"t_ms\":");
        hm_buf_i64(b, e->t_ms);
        hm_json_member_str(b, "part", e->part);
        hm_json_member_str(b, "error", e->error);
        hm_buf_putc(b, '}');
    }
    hm_buf_puts(b, "],\"alerts\":");
    hg_alerts_json(&g->alerts, b);
    hm_buf_putc(b, '}');
    *ct = "application/json";
    return 200;
}

static int http_page(void *ud, hm_buf *b, const char **ct) {
    (void)ud;
    hm_buf_append(b, hg_page_files[0].text, hg_page_files[0].len);
    *ct = "text/html; charset=utf-8";
    return 200;
}

static int http_alerts(void *ud, const char *body, size_t len, hm_buf *out, const char **ct) {
    hg_gateway *g = ud;
    char err[256];
    uint64_t firing = g->alerts.firing_received, resolved = g->alerts.resolved_received;
    if (hg_alerts_apply(&g->alerts, body, len, hm_now_ms(), err, sizeof(err)) != 0) {
        hm_log_warn("alert_notification_refused", HM_LS("error", err));
        hm_buf_puts(out, "{\"error\":");
        hm_json_cstr(out, err);
        hm_buf_putc(out, '}');
        return 400;
    }
    hm_counter_add(g->notified_firing, (double)(g->alerts.firing_received - firing));
    hm_counter_add(g->notified_resolved, (double)(g->alerts.resolved_received - resolved));
    hm_gauge_set(g->alerts_firing, (double)g->alerts.n);
    hm_log_info("alert_notification", HM_LI("firing", g->alerts.firing_received - firing),
                HM_LI("resolved", g->alerts.resolved_received - resolved),
                HM_LI("alerts_firing", g->alerts.n));
    hm_buf_puts(out, "{\"ok\":true}");
    *ct = "application/json";
    return 200;
}

/* ---- start ------------------------------------------------------------------------------------
 */

static bool is_critical(const hg_config *cfg, const char *name) {
    return hm_str_list_contains(&cfg->critical, name, strlen(name));
}

static void add_part(hg_gateway *g, hg_kind kind, const char *name, const char *target,
                     hm_metric_family *up, hm_metric_family *secs, hm_metric_family *fails) {
    hg_part *p = &g->parts[g->n_parts++];
    p->gw = g;
    p->kind = kind;
    snprintf(p->name, sizeof(p->name), "%s", name);
    snprintf(p->target, sizeof(p->target), "%s", target);
    p->critical = is_critical(g->cfg, name);
    p->since_ms = hm_now_ms();
    p->up = hm_metrics_gauge_child(up, name, kind_name(kind));
    p->seconds = hm_metrics_histogram_child(secs, name);
    p->failures_total = hm_metrics_counter_child(fails, name);
    if (g->svc->grpc) hm_grpc_health_set(g->svc->grpc, name, HM_HEALTH_NOT_SERVING);
}

static void create_parts(hg_gateway *g) {
    hg_config *c = g->cfg;
    hm_metrics *m = g->svc->metrics;
    hm_metric_family *up = hm_metrics_gauge(
        m, "himari_gateway_part_up",
        "1 when the part's last probe succeeded, else 0 (down, or not probed yet).", "part,kind");
    static const double k_secs[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,   0.25,   0.5,   1,    2.5,   5};
    hm_metric_family *secs =
        hm_metrics_histogram(m, "himari_gateway_probe_seconds",
                             "How long each probe took (a timed-out one: the timeout).", "part",
                             k_secs, HM_ARRAY_LEN(k_secs));
    hm_metric_family *fails = hm_metrics_counter(m, "himari_gateway_probe_failures_total",
                                                 "Probes that failed or timed out.", "part");
    g->parts = hm_xcalloc(c->services.n + 5, sizeof(*g->parts));
    for (size_t i = 0; i < c->services.n; i++) {
        char name[64];
        const char *url = NULL;
        if (hg_service_entry(c->services.items[i], name, sizeof(name), &url) != 0) continue;
        add_part(g, HG_SERVICE, name, url, up, secs, fails);
    }
    g->n_services = g->n_parts;
    add_part(g, HG_KAFKA, "kafka", c->base.kafka.bootstrap_servers, up, secs, fails);
    char target[256];
    if (c->redis.host && *c->redis.host) {
        snprintf(target, sizeof(target), "%s:%lld", c->redis.host, (long long)c->redis.port);
        add_part(g, HG_REDIS, "redis", target, up, secs, fails);
    }
    if (c->postgres.host && *c->postgres.host) {
        snprintf(target, sizeof(target), "%s:%lld/%s", c->postgres.host,
                 (long long)c->postgres.port, c->postgres.dbname ? c->postgres.dbname : "");
        add_part(g, HG_POSTGRES, "postgres", target, up, secs, fails);
    }
    if (c->neo4j.url && *c->neo4j.url)
        add_part(g, HG_NEO4J, "neo4j", c->neo4j.url, up, secs, fails);
    if (c->s3.endpoint && *c->s3.endpoint) {
        snprintf(target, sizeof(target), "%s/%s", c->s3.endpoint, c->s3.bucket ? c->s3.bucket : "");
        add_part(g, HG_S3, "s3", target, up, secs, fails);
    }

    hm_metric_family *lag =
        hm_metrics_gauge(m, "himari_gateway_consumer_lag",
                         "A consumer group's lag at the last probe: log end (read_committed) minus "
                         "committed offset, summed over its partitions.",
                         "group");
    g->n_groups = c->kafka_groups.n;
    g->groups = hm_xcalloc(g->n_groups ? g->n_groups : 1, sizeof(*g->groups));
    for (size_t i = 0; i < g->n_groups; i++) {
        g->groups[i].group = hm_xstrdup(c->kafka_groups.items[i]);
        g->groups[i].gauge = hm_metrics_gauge_child(lag, c->kafka_groups.items[i]);
    }
    g->alerts_firing = hm_metrics_gauge_child(hm_metrics_gauge(
        m, "himari_gateway_alerts_firing", "Alerts firing, as Alertmanager last said.", ""));
    hm_metric_family *notified = hm_metrics_counter(
        m, "himari_gateway_alert_notifications_total",
        "Alerts received from Alertmanager's webhook, by their status.", "status");
    g->notified_firing = hm_metrics_counter_child(notified, "firing");
    g->notified_resolved = hm_metrics_counter_child(notified, "resolved");
}

static void alloc_rings(hg_gateway *g) {
    const hg_config *c = g->cfg;
    g->history_cap = (size_t)(c->history_seconds * 1000 / c->probe_interval_ms);
    if (g->history_cap < 2) g->history_cap = 2;
    g->history = hm_xcalloc(g->history_cap, sizeof(*g->history));
    for (size_t i = 0; i < g->history_cap; i++) {
        g->history[i].throughput = hm_xcalloc(g->n_services ? g->n_services : 1, sizeof(double));
        g->history[i].lag = hm_xcalloc(g->n_groups + 1, sizeof(int64_t));
    }
    g->errors_cap = (size_t)c->max_errors;
    g->errors = hm_xcalloc(g->errors_cap, sizeof(*g->errors));
}

/* ---- stop ----------------------------------------------------------------------------------- */

static void one_closed(hg_gateway *g) {
    if (--g->handles_open == 0) hm_service_finish(g->svc);
}

static void on_handle_closed(uv_handle_t *h) {
    one_closed(h->data);
}

static void on_client_closed(void *ud) {
    one_closed(ud);
}

static void on_stop(hm_service *svc, void *ud) {
    hg_gateway *g = ud;
    g->stopping = true;
    for (size_t i = 0; i < g->n_parts; i++) {
        if (!g->parts[i].in_flight) continue;
        g->parts[i].in_flight = false;
        hg_probe_cancel(&g->parts[i]);
    }
    g->handles_open = 2 + (g->redis ? 1 : 0) + 1;
    uv_close((uv_handle_t *)&g->round_timer, on_handle_closed);
    uv_close((uv_handle_t *)&g->timeout_timer, on_handle_closed);
    hm_http_close(g->http);
    g->http = NULL;
    if (g->redis) hm_redis_close(g->redis, on_client_closed, g);
    hm_kafka_probe_close(g->kafka, on_client_closed, g);
}

int hg_gateway_start(hm_service *svc, hg_config *cfg, hg_gateway **out, hm_err *err) {
    hg_gateway *g = hm_xcalloc(1, sizeof(*g));
    g->svc = svc;
    g->cfg = cfg;
    *out = g;
    int rc = hm_kafka_probe_new(svc->loop, &cfg->base.kafka, &g->kafka, err);
    if (rc) return rc;
    create_parts(g);
    alloc_rings(g);
    g->http = hm_http_new(svc->loop);
    for (size_t i = 0; i < g->n_parts; i++) {
        if (g->parts[i].kind != HG_REDIS) continue;
        hm_redis_opts ro = hm_redis_opts_of(&cfg->redis);
        /* A probe waits probe_timeout_ms; the connection must not wait longer. */
        if (ro.command_timeout_ms == 0 || ro.command_timeout_ms > cfg->probe_timeout_ms)
            ro.command_timeout_ms = cfg->probe_timeout_ms;
        ro.max_pending = 16;
        g->redis = hm_redis_new(svc->loop, &ro, hg_probe_redis_state, &g->parts[i]);
    }
    uv_timer_init(svc->loop, &g->round_timer);
    uv_timer_init(svc->loop, &g->timeout_timer);
    g->round_timer.data = g->timeout_timer.data = g;
    hm_admin_route(svc->admin, "/api/v1/status", http_api_status, g);
    hm_admin_route(svc->admin, "/status", http_page, g);
    hm_admin_route_post(svc->admin, "/api/v1/alerts", http_alerts, g);
    hm_service_set_ready(svc, ready_cb, g);
    hm_service_on_stop(svc, on_stop, g);
    uv_timer_start(&g->round_timer, on_round, 0, (uint64_t)cfg->probe_interval_ms);
    hm_log_info("gateway_started", HM_LI("parts", g->n_parts), HM_LI("services", g->n_services),
                HM_LI("probe_interval_ms", cfg->probe_interval_ms),
                HM_LI("probe_timeout_ms", cfg->probe_timeout_ms));
    return 0;
}

/* ---- ControlService -------------------------------------------------------------------------- */

static void control_status(void *ud, hm_control_status *out) {
    hg_gateway *g = ud;
    out->state = g->paused ? HM_SERVICE_PAUSED : HM_SERVICE_RUNNING;
    size_t up = 0;
    for (size_t i = 0; i < g->n_parts; i++)
        up += g->parts[i].state == HG_UP;
    out->records_in = g->rounds;
    hm_control_status_detail(out, "parts_up", "%zu/%zu", up, g->n_parts);
    hm_control_status_detail(out, "alerts_firing", "%zu", g->alerts.n);
    for (size_t i = 0; i < g->n_parts && out->n_details < HM_STATUS_DETAILS_MAX; i++)
        hm_control_status_detail(out, g->parts[i].name, "%s", state_name(g->parts[i].state));
}

static void control_pause(void *ud) {
    hg_gateway *g = ud;
    g->paused = true;
    hm_log_info("probing_paused");
}

static void control_resume(void *ud) {
    hg_gateway *g = ud;
    g->paused = false;
    hm_log_info("probing_resumed");
}

const hm_control_hooks hg_gateway_control_hooks = {
    .status = control_status,
    .pause = control_pause,
    .resume = control_resume,
};

void hg_gateway_free(hg_gateway *g) {
    if (!g) return;
    for (size_t i = 0; i < g->history_cap; i++) {
        free(g->history[i].throughput);
        free(g->history[i].lag);
    }
    free(g->history);
    free(g->errors);
    for (size_t i = 0; i < g->n_groups; i++)
        free(g->groups[i].group);
    free(g->groups);
    free(g->parts);
    hg_alerts_free(&g->alerts);
    free(g);
}
