/*
 * http.h: HTTP requests from a service's event loop: libcurl's multi interface driven by
 * libuv (a uv_poll per socket curl opens, one uv_timer for curl's timeouts), so a service
 * can call an HTTP API (Neo4j's transactional endpoint, a peer's /readyz, an object store)
 * without a thread and without blocking its loop.
 *
 * Every request has a deadline (timeout_ms) and gets exactly one callback, on the loop:
 * the answer (any status: a 500 is an answer), or a transport error (refused, reset,
 * timed out) with curl's message, or -ECANCELED when the client closes first. Keep-alive
 * connections are reused between requests to the same host. Nothing here retries: the
 * caller knows whether its request may be repeated.
 */
#ifndef HIMARI_HTTP_H
#define HIMARI_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "himari/common.h"

typedef struct hm_http hm_http;
typedef struct hm_http_req hm_http_req;

/** What to send. Strings are copied when the request is made, but body is referenced:
 *  keep it until the callback. */
typedef struct hm_http_request {
    const char *method; /* NULL: GET, or POST when body is set */
    const char *url;
    const char *const *headers; /* "Name: value" lines */
    size_t n_headers;
    const char *body; /* NULL: none */
    size_t body_len;
    const char *user, *password; /* basic auth when user is set (or SigV4's keys, below) */
    const char *aws_sigv4;       /* "aws:amz:REGION:SERVICE": sign with AWS SigV4, user and
                                    password being the access and secret key; NULL: none */
    int64_t timeout_ms;          /* the whole request; 0: 10000 */
    int64_t connect_timeout_ms;  /* 0: the smaller of 3000 and timeout_ms */
    size_t max_body;             /* a longer answer fails with -EMSGSIZE; 0: 64 MiB */
} hm_http_request;

/** The outcome. err 0: the server answered with status; else a negative errno
 *  (-ETIMEDOUT, -ECONNREFUSED, -EMSGSIZE, -ECANCELED, -EIO) and error says why. */
typedef struct hm_http_response {
    int err;
    long status;
    const char *body; /* NUL-terminated, body_len bytes; valid during the callback */
    size_t body_len;
    const char *error; /* "" when err is 0 */
    double seconds;    /* from the request to its end */
} hm_http_response;

typedef void (*hm_http_cb)(void *ud, const hm_http_response *r);

/** @brief A client on loop. Close it with hm_http_close. */
hm_http *hm_http_new(uv_loop_t *loop);

/**
 * @brief Start a request; cb runs once on the loop, never from within this call. *out (may
 * be NULL) identifies it for hm_http_cancel until cb has run.
 * @return 0, or -EINVAL (no url) / -ENOMEM / -ESHUTDOWN (closing): then cb never runs.
 */
int hm_http_send(hm_http *h, const hm_http_request *req, hm_http_cb cb, void *ud,
                 hm_http_req **out) HM_MUST_CHECK;

/** @brief End a request early: its callback runs now with -ECANCELED. */
void hm_http_cancel(hm_http_req *r);

/** @brief Requests not yet ended. */
size_t hm_http_in_flight(const hm_http *h);

/** @brief Cancel every request (callbacks with -ECANCELED, now) and free the client once
 *  its handles are closed. */
void hm_http_close(hm_http *h);

#endif
