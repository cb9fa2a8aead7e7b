/*
 * himari/admin.h: the HTTP admin endpoint every service exposes (h2o on the
 * service's own libuv loop; HTTP/1.1, and HTTP/2 with prior knowledge only
 * when asked for: h2o 2.2.5 has no defence against HTTP/2 rapid reset,
 * docs/SECURITY.md).
 *
 *   GET /healthz  200 "ok" while the process's loop is turning (liveness)
 *   GET /readyz   200 {"ready":true} or 503 {"ready":false,"reason":"..."}
 *   GET /metrics  the Prometheus exposition of the service's registry
 *   GET <path>    any handler the service registers (e.g. /status as JSON)
 *   POST <path>   a handler of a request body the service registers (e.g. the
 *                 health-gateway's Alertmanager webhook); at most 256 KiB
 *
 * Bound to 127.0.0.1 unless configured otherwise; a bind off loopback is
 * logged once at start (admin_not_loopback: plain HTTP, no authentication).
 * Handlers run on the loop thread and must not block. The server counts its
 * own requests in himari_admin_requests_total{path,code}.
 */
#ifndef HIMARI_ADMIN_H
#define HIMARI_ADMIN_H

#include <stdbool.h>
#include <uv.h>

#include "himari/buf.h"
#include "himari/common.h"
#include "himari/metrics.h"

typedef struct hm_admin hm_admin;

/** Where and how the endpoint listens; zeroed fields take the defaults. */
typedef struct hm_admin_opts {
    const char *bind;        /* an IP literal or "localhost"; NULL or "": 127.0.0.1 */
    int port;                /* 0: pick a free port (see hm_admin_port()) */
    bool http2;              /* also HTTP/2 with prior knowledge; false: HTTP/1.1 only */
    int max_connections;     /* open at once; beyond it a connection is closed at once; 0: 64 */
    int64_t idle_timeout_ms; /* a connection without a whole request this long is closed
                                (idle keep-alive, slow clients, idle HTTP/2); 0: 10000 */
} hm_admin_opts;

/**
 * @brief Readiness probe: return true when ready; otherwise false and write a
 * short reason into reason (reason_size bytes, NUL-terminated).
 */
typedef bool (*hm_admin_ready_cb)(void *ud, char *reason, size_t reason_size);

/**
 * @brief A GET handler: write the body into out and return the HTTP status;
 * *content_type defaults to "application/json" and may be replaced by a
 * static string.
 */
typedef int (*hm_admin_handler_cb)(void *ud, hm_buf *out, const char **content_type);

/**
 * @brief Listen on opts->bind:opts->port. metrics is rendered at /metrics and
 * may not be NULL; ready may be NULL (then /readyz always says ready). The
 * server lives on loop until hm_admin_close(). On error nothing is left open.
 */
int hm_admin_start(uv_loop_t *loop, const hm_admin_opts *opts, hm_metrics *metrics,
                   hm_admin_ready_cb ready, void *ready_ud, hm_admin **out,
                   hm_err *err) HM_MUST_CHECK;

/**
 * @brief A POST handler: body (body_len bytes, not NUL-terminated, valid during
 * the call) is the request's entity; write the answer into out and return the
 * HTTP status, as a GET handler does.
 */
typedef int (*hm_admin_post_cb)(void *ud, const char *body, size_t body_len, hm_buf *out,
                                const char **content_type);

/** @brief Replace the readiness probe (NULL: always ready). */
void hm_admin_set_ready(hm_admin *a, hm_admin_ready_cb ready, void *ready_ud);

/** @brief Add a GET handler for an exact path (before or after start). */
void hm_admin_route(hm_admin *a, const char *path, hm_admin_handler_cb cb, void *ud);

/** @brief Add a POST handler for an exact path (which then answers no GET). */
void hm_admin_route_post(hm_admin *a, const char *path, hm_admin_post_cb cb, void *ud);

/** @brief Is a handler (GET or POST) registered for this exact path? */
bool hm_admin_has_route(const hm_admin *a, const char *path);

/** @brief The port actually bound (useful with port 0). */
int hm_admin_port(const hm_admin *a);

/**
 * @brief Stop listening, close open connections and free the server; done_cb
 * (may be NULL) runs on the loop once every handle is closed.
 */
void hm_admin_close(hm_admin *a, void (*done_cb)(void *ud), void *ud);

#endif
