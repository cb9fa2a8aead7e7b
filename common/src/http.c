/*
 * http.c: libcurl multi on libuv (http.h).
 *
 *   hm_http_send --> curl_multi_add_handle --> curl asks for a timer / socket watches
 *   uv_timer fires       --> curl_multi_socket_action(CURL_SOCKET_TIMEOUT)
 *   uv_poll on a socket  --> curl_multi_socket_action(fd, IN|OUT|ERR)
 *   after each action    --> curl_multi_info_read: finished transfers --> callbacks
 *
 * A socket's uv_poll is made when curl first asks to watch it and closed when curl says
 * CURL_POLL_REMOVE (before curl closes the descriptor), so a reused descriptor number
 * never meets a stale watch.
 */
#include "himari/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/buf.h"

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_CONNECT_MS 3000
#define DEFAULT_MAX_BODY   ((size_t)64 << 20)

struct hm_http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    hm_http_req *reqs;          /* in flight, a doubly linked list */
    struct sock_watch *watches; /* sockets curl asked to watch, a doubly linked list */
    size_t n;
    bool closing;
};

struct hm_http_req {
    hm_http *h;
    hm_http_req *prev, *next;
    CURL *easy;
    struct curl_slist *headers;
    hm_buf body;
    size_t max_body;
    bool too_big;
    hm_http_cb cb;
    void *ud;
    uint64_t started_ns;
    char error[CURL_ERROR_SIZE];
};

typedef struct sock_watch {
    uv_poll_t poll;
    hm_http *h;
    curl_socket_t fd;
    struct sock_watch *prev, *next;
} sock_watch;

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- ending a request ---------------------------------------------------------------- */

static void unlink_req(hm_http_req *r) {
    hm_http *h = r->h;
    if (r->prev)
        r->prev->next = r->next;
    else
        h->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    h->n--;
}

static int err_of(CURLcode code) {
    switch (code) {
        case CURLE_OK:
            return 0;
        case CURLE_OPERATION_TIMEDOUT:
            return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
            return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
            return -EHOSTUNREACH;
        case CURLE_WRITE_ERROR:
            return -EMSGSIZE; /* only the body limit makes the write callback refuse */
        default:
            return -EIO;
    }
}

/* Call back and free; code CURLE_OK with the status, or why it failed. */
static void finish(hm_http_req *r, int err, const char *why) {
    hm_http *h = r->h;
    unlink_req(r);
    curl_multi_remove_handle(h->multi, r->easy);
    hm_http_response resp = {.err = err, .error = ""};
    if (err == 0) {
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &resp.status);
        hm_buf_reserve(&r->body, 1); /* NUL-terminated even when empty */
        resp.body = r->body.data;
        resp.body_len = r->body.len;
    } else {
        if (err == -EMSGSIZE && r->too_big)
            snprintf(r->error, sizeof(r->error), "answer longer than %zu bytes", r->max_body);
        else if (why && why != r->error)
            snprintf(r->error, sizeof(r->error), "%s", why);
        resp.error = r->error;
        resp.body = "";
    }
    resp.seconds = (double)(hm_mono_ns() - r->started_ns) / 1e9;
    r->cb(r->ud, &resp);
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    hm_buf_free(&r->body);
    free(r);
}

static void drain_done(hm_http *h) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) continue;
        hm_http_req *r = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        CURLcode code = m->data.result;
        int err = r->too_big ? -EMSGSIZE : err_of(code);
        finish(r, err, *r->error ? r->error : curl_easy_strerror(code));
    }
}

/* ---- curl's callbacks ---------------------------------------------------------------- */

static size_t on_write(char *p, size_t size, size_t n, void *ud) {
    hm_http_req *r = ud;
    size_t len = size * n;
    if (r->body.len + len > r->max_body) {
        r->too_big = true;
        return 0; /* curl stops the transfer with CURLE_WRITE_ERROR */
    }
    hm_buf_append(&r->body, p, len);
    return len;
}

static void on_poll(uv_poll_t *p, int status, int events) {
    sock_watch *w = p->data;
    int flags = 0;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    hm_http *h = w->h;
    int running;
    curl_multi_socket_action(h->multi, w->fd, flags, &running);
    drain_done(h);
}

static void free_watch(uv_handle_t *handle) {
    free(handle->data);
}

static void drop_watch(sock_watch *w) {
    hm_http *h = w->h;
    if (w->prev)
        w->prev->next = w->next;
    else
        h->watches = w->next;
    if (w->next) w->next->prev = w->prev;
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, free_watch);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp) {
    (void)easy;
    hm_http *h = ud;
    sock_watch *w = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (w) {
            drop_watch(w);
            curl_multi_assign(h->multi, fd, NULL);
        }
        return 0;
    }
    if (!w) {
        w = calloc(1, sizeof(*w));
        if (!w || uv_poll_init_socket(h->loop, &w->poll, fd) != 0) {
            free(w);
            return -1; /* curl fails the transfer */
        }
        w->h = h;
        w->fd = fd;
        w->poll.data = w;
        w->next = h->watches;
        if (h->watches) h->watches->prev = w;
        h->watches = w;
        curl_multi_assign(h->multi, fd, w);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= UV_WRITABLE;
    uv_poll_start(&w->poll, events, on_poll);
    return 0;
}

static void on_timer(uv_timer_t *t) {
    hm_http *h = t->data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_done(h);
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *ud) {
    (void)multi;
    hm_http *h = ud;
    if (timeout_ms < 0) {
        uv_timer_stop(&h->timer);
    } else {
        /* 0 means "now": still through the loop, never from inside curl's call. */
        uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

/* ---- the API --------------------------------------------------------------------------- */

hm_http *hm_http_new(uv_loop_t *loop) {
    pthread_once(&g_curl_once, curl_init_once);
    hm_http *h = calloc(1, sizeof(*h));
    if (!h) return NULL;
    h->loop = loop;
    h->multi = curl_multi_init();
    if (!h->multi) {
        free(h);
        return NULL;
    }
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return h;
}

static int setup(hm_http_req *r, const hm_http_request *q) {
    CURL *e = r->easy;
    int64_t timeout = q->timeout_ms > 0 ? q->timeout_ms : DEFAULT_TIMEOUT_MS;
    int64_t connect = q->connect_timeout_ms > 0      ? q->connect_timeout_ms
                      : timeout < DEFAULT_CONNECT_MS ? timeout
                                                     : DEFAULT_CONNECT_MS;
    const char *method = q->method ? q->method : q->body ? "POST" : "GET";
    CURLcode c = CURLE_OK;
#define SET(opt, val)                                                                              \
    if (c == CURLE_OK) c = curl_easy_setopt(e, opt, val)
    SET(CURLOPT_URL, q->url);
    SET(CURLOPT_PRIVATE, (char *)r);
    SET(CURLOPT_ERRORBUFFER, r->error);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, r);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TIMEOUT_MS, (long)timeout);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)connect);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L); /* a HEAD answer has no body to wait for */
    } else if (strcmp(method, "GET") != 0) {
        SET(CURLOPT_CUSTOMREQUEST, method);
    }
    if (q->body) {
        SET(CURLOPT_POSTFIELDS, q->body);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
    }
    if (q->aws_sigv4) {
        SET(CURLOPT_AWS_SIGV4, q->aws_sigv4);
    }
    if (q->user) {
        if (!q->aws_sigv4) {
            SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        }
        SET(CURLOPT_USERNAME, q->user);
        SET(CURLOPT_PASSWORD, q->password ? q->password : "");
    }
    for (size_t i = 0; i < q->n_headers; i++) {
        struct curl_slist *l = curl_slist_append(r->headers, q->headers[i]);
        if (!l) return -ENOMEM;
        r->headers = l;
    }
    /* No "Expect: 100-continue" wait on a POST: the servers here answer at once. */
    struct curl_slist *l = curl_slist_append(r->headers, "Expect:");
    if (!l) return -ENOMEM;
    r->headers = l;
    SET(CURLOPT_HTTPHEADER, r->headers);
#undef SET
    return c == CURLE_OK ? 0 : -EINVAL;
}

int hm_http_send(hm_http *h, const hm_http_request *q, hm_http_cb cb, void *ud, hm_http_req **out) {
    if (out) *out = NULL;
    if (h->closing) return -ESHUTDOWN;
    if (!q->url || !*q->url || !cb) return -EINVAL;
    hm_http_req *r = calloc(1, sizeof(*r));
    if (!r) return -ENOMEM;
    r->h = h;
    r->cb = cb;
    r->ud = ud;
    r->max_body = q->max_body ? q->max_body : DEFAULT_MAX_BODY;
    r->easy = curl_easy_init();
    int rc = r->easy ? setup(r, q) : -ENOMEM;
    if (rc == 0 && curl_multi_add_handle(h->multi, r->easy) != CURLM_OK) rc = -ENOMEM;
    if (rc != 0) {
        if (r->easy) curl_easy_cleanup(r->easy);
        curl_slist_free_all(r->headers);
        free(r);
        return rc;
    }
    r->started_ns = hm_mono_ns();
    r->next = h->reqs;
    if (h->reqs) h->reqs->prev = r;
    h->reqs = r;
    h->n++;
    if (out) *out = r;
    return 0;
}

void hm_http_cancel(hm_http_req *r) {
    if (r) finish(r, -ECANCELED, "cancelled");
}

size_t hm_http_in_flight(const hm_http *h) {
    return h->n;
}

static void free_client(uv_handle_t *handle) {
    free(handle->data);
}

void hm_http_close(hm_http *h) {
    if (!h || h->closing) return;
    h->closing = true;
    while (h->reqs)
        finish(h->reqs, -ECANCELED, "client closed");
    /* Kept-alive connections are closed here; a watch curl did not remove goes too. */
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    while (h->watches)
        drop_watch(h->watches);
    uv_close((uv_handle_t *)&h->timer, free_client);
}
