/*
 * gateway_int.h: the gateway's parts, shared by gateway.c (rounds, state, what is served)
 * and probes.c (how each kind of part is probed). Not used outside the service.
 */
#ifndef HG_GATEWAY_INT_H
#define HG_GATEWAY_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "alerts.h"
#include "config.h"
#include "gateway.h"
#include "himari/http.h"
#include "himari/kafka.h"
#include "himari/metrics.h"
#include "himari/redis.h"
#include "pg_probe.h"

typedef enum hg_kind { HG_SERVICE, HG_KAFKA, HG_REDIS, HG_POSTGRES, HG_NEO4J, HG_S3 } hg_kind;
typedef enum hg_state { HG_UNKNOWN, HG_UP, HG_DOWN } hg_state;

#define HG_SERVICE_REQS 3 /* /readyz, /status, /metrics */

typedef struct hg_part {
    hg_gateway *gw;
    char name[64];
    hg_kind kind;
    bool critical;
    char target[256]; /* what is probed, for people (no secret) */

    hg_state state;
    double latency_ms;
    char last_error[256];
    int64_t last_ok_ms; /* 0: never */
    int64_t since_ms;   /* state last changed */
    uint64_t checks, failures;

    /* The probe in flight. */
    bool in_flight;
    uint64_t started_ns;
    int pending;     /* its requests not answered */
    bool failed;     /* one of them said down */
    char error[256]; /* ... why */
    hm_http_req *reqs[HG_SERVICE_REQS];
    hg_pg_probe *pg;
    uint64_t redis_sent, redis_done; /* PINGs: replies come in order */
    bool redis_waiting;              /* for the connection, to send the PING */

    /* A service's figures (from /status). */
    char service_state[32];
    uint64_t records_in, records_out;
    double throughput; /* records in per second between the last two probes */
    int64_t lag;       /* summed over its partitions */
    uint64_t prev_in;
    int64_t prev_ms; /* 0: no previous figure */

    /* Kafka's. */
    int brokers;
    int64_t total_lag;

    hm_gauge *up;
    hm_histogram *seconds;
    hm_counter *failures_total;
} hg_part;

typedef struct hg_group_lag {
    char *group;
    int64_t lag;
    int partitions;
    char error[160];
    hm_gauge *gauge;
} hg_group_lag;

typedef struct hg_quality {
    char exchange[64];
    double sum, count;           /* the histogram's totals at the last probe */
    double prev_sum, prev_count; /* ... at the one before */
    bool have_prev;
    double mean; /* over the last interval; NAN: no record in it */
    double records;
} hg_quality;

#define HG_MAX_QUALITY 32

typedef struct hg_sample {
    int64_t t_ms;
    double *throughput; /* per service part, in part order */
    int64_t *lag;       /* per group, then Kafka's total */
} hg_sample;

typedef struct hg_error {
    int64_t t_ms;
    char part[64];
    char error[256];
} hg_error;

struct hg_gateway {
    hm_service *svc;
    hg_config *cfg;
    uv_timer_t round_timer, timeout_timer;
    int handles_open;
    bool paused, stopping;
    uint64_t rounds;

    hg_part *parts;
    size_t n_parts, n_services; /* services first */
    hg_group_lag *groups;
    size_t n_groups;
    hg_quality quality[HG_MAX_QUALITY];
    size_t n_quality;

    hg_sample *history;
    size_t history_cap, history_n, history_head; /* ring: head is the oldest */
    hg_error *errors;
    size_t errors_cap, errors_n, errors_head;
    hg_alerts alerts;

    hm_http *http;
    hm_redis *redis;
    hm_kafka_probe *kafka;

    hm_gauge *alerts_firing;
    hm_counter *notified_firing, *notified_resolved;
};

/* probes.c */
/** @brief Start p's probe; it ends with hg_part_done (maybe from within this call). */
void hg_probe_start(hg_part *p);
/** @brief Abandon p's probe in flight (its callbacks will not call hg_part_done). */
void hg_probe_cancel(hg_part *p);
/** @brief The Redis connection's state changed (ud: the redis part). */
void hg_probe_redis_state(hm_redis *r, hm_redis_state state, void *ud);

/* gateway.c */
/** @brief One of p's requests answered: down (error) or not (NULL); the last ends it. */
void hg_part_answer(hg_part *p, const char *error);
/** @brief A validator's quality histogram totals of one exchange, from its /metrics. */
void hg_gateway_quality(hg_gateway *g, const char *exchange, double sum, double count);

#endif
