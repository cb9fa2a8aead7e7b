/*
 * probes.c: how each kind of part is probed (gateway_int.h). Every probe sends its
 * requests at once and answers through hg_part_answer, one answer per request; the gateway
 * bounds the whole by probe_timeout_ms and cancels what is left (hg_probe_cancel).
 *
 *   service   GET /readyz (up or down, and why), /status (state, records, lag) and
 *             /metrics (the validator's quality per exchange)
 *   kafka     DescribeCluster and the groups' lag (hm_kafka_probe)
 *   redis     PING on the gateway's connection
 *   postgres  a new connection and SELECT 1 (pg_probe.h)
 *   neo4j     RETURN 1 through the transactional HTTP API
 *   s3        HEAD of the bucket, signed with SigV4
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway_int.h"
#include "promtext.h"

enum { REQ_READYZ, REQ_STATUS, REQ_METRICS };

/* ---- answers over HTTP -------------------------------------------------------------- */

typedef struct http_ctx {
    hg_part *p;
    int which;
} http_ctx;

/* The request slot of p whose context is c, cleared: the request has ended. */
static void req_ended(http_ctx *c) {
    c->p->reqs[c->which] = NULL;
    free(c);
}

static void http_error(char *out, size_t size, const hm_http_response *r) {
    if (r->err)
        snprintf(out, size, "%s", r->error && *r->error ? r->error : strerror(-r->err));
    else
        snprintf(out, size, "HTTP %ld", r->status);
}

static void on_readyz(hg_part *p, const hm_http_response *r) {
    char error[256];
    if (!r->err && r->status == 200) {
        hg_part_answer(p, NULL);
        return;
    }
    http_error(error, sizeof(error), r);
    if (!r->err && r->status == 503) {
        json_t *root = json_loadb(r->body, r->body_len, 0, NULL);
        json_t *reason = json_object_get(root, "reason");
        snprintf(error, sizeof(error), "not ready: %s",
                 json_is_string(reason) ? json_string_value(reason) : "(no reason)");
        json_decref(root);
    }
    hg_part_answer(p, error);
}

static void on_status(hg_part *p, const hm_http_response *r) {
    json_t *root = !r->err && r->status == 200 ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
    if (root) {
        json_t *st = json_object_get(root, "state");
        snprintf(p->service_state, sizeof(p->service_state), "%s",
                 json_is_string(st) ? json_string_value(st) : "");
        p->records_in = (uint64_t)json_integer_value(json_object_get(root, "records_in"));
        p->records_out = (uint64_t)json_integer_value(json_object_get(root, "records_out"));
        int64_t lag = 0;
        size_t i;
        json_t *part;
        json_array_foreach(json_object_get(root, "partitions"), i, part) {
            json_int_t l = json_integer_value(json_object_get(part, "lag"));
            if (l > 0) lag += l;
        }
        p->lag = lag;
        int64_t now = hm_now_ms();
        if (p->prev_ms > 0 && now > p->prev_ms && p->records_in >= p->prev_in)
            p->throughput =
                (double)(p->records_in - p->prev_in) * 1000.0 / (double)(now - p->prev_ms);
        else
            p->throughput = 0; /* the first figure, or the service restarted (counts from 0) */
        p->prev_in = p->records_in;
        p->prev_ms = now;
        json_decref(root);
    }
    hg_part_answer(p, NULL); /* the figures are extra: /readyz says up or down */
}

/* The validator's himari_validator_quality_score histogram: _sum and _count per exchange. */
static void on_sample(void *ud, const char *name, size_t name_len, const char *labels,
                      size_t labels_len, double value) {
    static const char k_sum[] = "himari_validator_quality_score_sum";
    static const char k_count[] = "himari_validator_quality_score_count";
    bool is_sum = name_len == sizeof(k_sum) - 1 && memcmp(name, k_sum, name_len) == 0;
    bool is_count = name_len == sizeof(k_count) - 1 && memcmp(name, k_count, name_len) == 0;
    if (!is_sum && !is_count) return;
    char exchange[64];
    if (!hg_promtext_label(labels, labels_len, "exchange", exchange, sizeof(exchange))) return;
    hg_gateway_quality(ud, exchange, is_sum ? value : -1, is_count ? value : -1);
}

static void on_metrics(hg_part *p, const hm_http_response *r) {
    if (!r->err && r->status == 200) hg_promtext_scan(r->body, r->body_len, on_sample, p->gw);
    hg_part_answer(p, NULL);
}

static void on_neo4j(hg_part *p, const hm_http_response *r) {
    char error[256];
    if (r->err || r->status != 200) {
        http_error(error, sizeof(error), r);
        if (!r->err && r->status == 401)
            snprintf(error, sizeof(error), "HTTP 401: check neo4j.user and neo4j.password");
        hg_part_answer(p, error);
        return;
    }
    json_t *root = json_loadb(r->body, r->body_len, 0, NULL);
    json_t *first = json_array_get(json_object_get(root, "errors"), 0);
    if (!root) {
        hg_part_answer(p, "not a Neo4j answer (not JSON)");
    } else if (first) {
        snprintf(error, sizeof(error), "%s", json_string_value(json_object_get(first, "message")));
        hg_part_answer(p, error);
    } else {
        hg_part_answer(p, NULL);
    }
    json_decref(root);
}

static void on_s3(hg_part *p, const hm_http_response *r) {
    char error[256];
    if (!r->err && r->status == 200) {
        hg_part_answer(p, NULL);
        return;
    }
    http_error(error, sizeof(error), r);
    if (!r->err && r->status == 404)
        snprintf(error, sizeof(error), "HTTP 404: bucket %s does not exist", p->gw->cfg->s3.bucket);
    else if (!r->err && r->status == 403)
        snprintf(error, sizeof(error),
                 "HTTP 403: access denied (check s3.access_key and s3.secret_key)");
    hg_part_answer(p, error);
}

static void on_http(void *ud, const hm_http_response *r) {
    http_ctx *c = ud;
    hg_part *p = c->p;
    int which = c->which;
    bool cancelled = r->err == -ECANCELED;
    req_ended(c);
    if (cancelled) return; /* hg_probe_cancel: the gateway has ended this probe */
    switch (p->kind) {
        case HG_SERVICE:
            if (which == REQ_READYZ)
                on_readyz(p, r);
            else if (which == REQ_STATUS)
                on_status(p, r);
            else
                on_metrics(p, r);
            break;
        case HG_NEO4J:
            on_neo4j(p, r);
            break;
        case HG_S3:
            on_s3(p, r);
            break;
        default:
            hg_part_answer(p, "internal: an HTTP answer for a part that sends none");
    }
}

static void http_send(hg_part *p, int which, const hm_http_request *req) {
    http_ctx *c = hm_xcalloc(1, sizeof(*c));
    c->p = p;
    c->which = which;
    int rc = hm_http_send(p->gw->http, req, on_http, c, &p->reqs[which]);
    if (rc != 0) {
        free(c);
        p->reqs[which] = NULL;
        char error[128];
        snprintf(error, sizeof(error), "cannot send the request: %s", strerror(-rc));
        hg_part_answer(p, which == REQ_READYZ ? error : NULL);
    }
}

static void probe_service(hg_part *p) {
    static const char *const paths[HG_SERVICE_REQS] = {"/readyz", "/status", "/metrics"};
    p->pending = HG_SERVICE_REQS;
    int64_t timeout = p->gw->cfg->probe_timeout_ms;
    for (int i = 0; i < HG_SERVICE_REQS; i++) {
        char url[320];
        snprintf(url, sizeof(url), "%s%s", p->target, paths[i]);
        hm_http_request req = {.url = url, .timeout_ms = timeout + 100, .max_body = 8u << 20};
        http_send(p, i, &req);
    }
}

static void probe_neo4j(hg_part *p) {
    const hg_neo4j_config *c = &p->gw->cfg->neo4j;
    static const char body[] = "{\"statements\":[{\"statement\":\"RETURN 1\"}]}";
    static const char *const headers[] = {"Content-Type: application/json",
                                          "Accept: application/json"};
    char url[320];
    snprintf(url, sizeof(url), "%s/db/%s/tx/commit", c->url, c->database);
    p->pending = 1;
    hm_http_request req = {.url = url,
                           .headers = headers,
                           .n_headers = HM_ARRAY_LEN(headers),
                           .body = body,
                           .body_len = sizeof(body) - 1,
                           .user = c->user,
                           .password = c->password ? c->password : "",
                           .timeout_ms = p->gw->cfg->probe_timeout_ms + 100};
    http_send(p, 0, &req);
}

static void probe_s3(hg_part *p) {
    const hg_s3_config *c = &p->gw->cfg->s3;
    /* S3 wants the payload's hash in a header: here the empty body's. */
    static const char *const headers[] = {
        "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"};
    char url[320], sigv4[96];
    snprintf(url, sizeof(url), "%s/%s", c->endpoint, c->bucket);
    snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3", c->region);
    p->pending = 1;
    hm_http_request req = {.method = "HEAD",
                           .url = url,
                           .headers = headers,
                           .n_headers = HM_ARRAY_LEN(headers),
                           .user = c->access_key ? c->access_key : "",
                           .password = c->secret_key ? c->secret_key : "",
                           .aws_sigv4 = c->access_key ? sigv4 : NULL,
                           .timeout_ms = p->gw->cfg->probe_timeout_ms + 100};
    http_send(p, 0, &req);
}

/* ---- the others ----------------------------------------------------------------------- */

static void on_pong(hm_redis *r, const redisReply *reply, void *ud) {
    hg_part *p = ud;
    p->redis_done++;
    if (!p->in_flight || p->redis_done != p->redis_sent) return; /* a late reply */
    if (!reply)
        hg_part_answer(p, "connection lost before the reply");
    else if (reply->type == REDIS_REPLY_ERROR)
        hg_part_answer(p, reply->str);
    else if (reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0)
        hg_part_answer(p, NULL);
    else
        hg_part_answer(p, "PING did not answer PONG");
}

static void send_ping(hg_part *p) {
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    p->redis_sent++; /* this probe's PING is the redis_sent-th reply */
    int rc = hm_redis_command(p->gw->redis, 1, argv, lens, on_pong, p);
    if (rc != 0) {
        p->redis_sent--;
        char error[128];
        snprintf(error, sizeof(error), "cannot send PING: %s", strerror(-rc));
        hg_part_answer(p, error);
    }
}

/* While connecting, the probe waits for the connection (within its timeout): a Redis that
 * accepts and never answers AUTH times out like any other. */
void hg_probe_redis_state(hm_redis *r, hm_redis_state state, void *ud) {
    hg_part *p = ud;
    if (!p->in_flight || !p->redis_waiting) return;
    if (state == HM_REDIS_READY) {
        p->redis_waiting = false;
        send_ping(p);
    } else if (state == HM_REDIS_DOWN) {
        p->redis_waiting = false;
        char error[256];
        snprintf(error, sizeof(error), "not connected: %s", hm_redis_last_error(r));
        hg_part_answer(p, error);
    }
}

static void probe_redis(hg_part *p) {
    p->pending = 1;
    p->redis_waiting = false;
    hm_redis *r = p->gw->redis;
    switch (hm_redis_get_state(r)) {
        case HM_REDIS_READY:
            send_ping(p);
            return;
        case HM_REDIS_CONNECTING:
            p->redis_waiting = true;
            return;
        default: {
            char error[256];
            const char *last = hm_redis_last_error(r);
            snprintf(error, sizeof(error), "not connected%s%s", *last ? ": " : "", last);
            hg_part_answer(p, error);
        }
    }
}

static void on_pg(void *ud, int err, const char *error) {
    hg_part *p = ud;
    p->pg = NULL;
    hg_part_answer(p, err ? error : NULL);
}

static void probe_postgres(hg_part *p) {
    p->pending = 1;
    p->pg = hg_pg_probe_start(p->gw->svc->loop, &p->gw->cfg->postgres, on_pg, p);
}

static void on_kafka(void *ud, const hm_kafka_probe_result *r) {
    hg_part *p = ud;
    hg_gateway *g = p->gw;
    if (!p->in_flight) return; /* timed out: the next round asks again */
    p->brokers = r->brokers;
    p->total_lag = 0;
    for (size_t i = 0; i < r->n_groups && i < g->n_groups; i++) {
        hg_group_lag *gl = &g->groups[i];
        gl->lag = r->groups[i].lag;
        gl->partitions = r->groups[i].partitions;
        snprintf(gl->error, sizeof(gl->error), "%s", r->groups[i].error);
        hm_gauge_set(gl->gauge, (double)gl->lag);
        p->total_lag += gl->lag;
    }
    hg_part_answer(p, r->err ? r->error : NULL);
}

static void probe_kafka(hg_part *p) {
    hg_gateway *g = p->gw;
    p->pending = 1;
    const char **names = hm_xcalloc(g->n_groups ? g->n_groups : 1, sizeof(*names));
    for (size_t i = 0; i < g->n_groups; i++)
        names[i] = g->groups[i].group;
    int rc = hm_kafka_probe_run(g->kafka, names, g->n_groups, (int)g->cfg->probe_timeout_ms,
                                on_kafka, p);
    free(names);
    if (rc == -EBUSY) hg_part_answer(p, "the previous probe is still waiting for the cluster");
}

void hg_probe_start(hg_part *p) {
    switch (p->kind) {
        case HG_SERVICE:
            probe_service(p);
            break;
        case HG_KAFKA:
            probe_kafka(p);
            break;
        case HG_REDIS:
            probe_redis(p);
            break;
        case HG_POSTGRES:
            probe_postgres(p);
            break;
        case HG_NEO4J:
            probe_neo4j(p);
            break;
        case HG_S3:
            probe_s3(p);
            break;
    }
}

void hg_probe_cancel(hg_part *p) {
    for (int i = 0; i < HG_SERVICE_REQS; i++)
        if (p->reqs[i]) hm_http_cancel(p->reqs[i]); /* its callback clears the slot */
    if (p->pg) {
        hg_pg_probe_cancel(p->pg);
        p->pg = NULL;
    }
    p->redis_waiting = false;
    /* Redis and Kafka answer later; their callbacks see the probe is no longer in flight. */
}
