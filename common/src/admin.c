/*
 * admin.c: the HTTP admin endpoint of every service (/healthz, /readyz,
 * /metrics and the routes a service adds), served by h2o 2.2 on the service's
 * own libuv loop. HTTP/1.1; HTTP/2 with prior knowledge (h2o's HTTP/1 parser
 * switches on the h2 preface) only with opts.http2, because h2o 2.2.5 has no
 * defence against HTTP/2 rapid reset (CVE-2023-44487, docs/SECURITY.md) and a
 * flood of reset streams would be served on the loop the data path runs on.
 * With HTTP/1.1 a client gets one response at a time per connection and must
 * read it before the next request is parsed.
 *
 * Limits (hm_admin_opts): connections open at once, and one timeout for a
 * connection that has not sent a whole request (idle keep-alive, a slow
 * client, an idle HTTP/2 connection); an HTTP/2 connection gets one request
 * handled at a time (our handlers answer at once, so more buys nothing).
 *
 * It sits beside the data path: it reads the metrics registry and asks the
 * service whether it is ready, and never touches a record. Everything runs on
 * the loop thread; nothing here may block the loop (no DNS: the bind address
 * is an IP literal; no file I/O; handlers answer at once).
 *
 * Handles and who closes them. We own the listener (a uv_tcp_t in hm_admin),
 * one uv_tcp_t per accepted connection (admin_conn, handed to h2o with
 * h2o_uv_socket_create) and the eight uv_timer_t that h2o_context_init embeds
 * in our h2o_context_t. h2o owns a uv_async_t (its multithread queue).
 * Shutdown (hm_admin_close) runs in four steps; steps 2 to 4 begin in close
 * callbacks, so no h2o code is on the stack when its objects go away:
 *   1. close the listener; shut every connection's reading side, so h2o reads
 *      EOF and closes the connection through its own path (unlinking its
 *      timeouts and freeing its request state); its uv_close ends in our
 *      on_conn_closed;
 *   2. when the listener and the last connection are closed, tear the h2o
 *      context down ourselves (see dispose_h2o: h2o_context_dispose ends with
 *      a nested uv_run(UV_RUN_NOWAIT), which libuv forbids inside a callback)
 *      and close the eight timers with a callback that counts them;
 *   3. when the last timer is closed, close one more handle of ours (an idle
 *      handle that never starts): its close callback runs on a later closing
 *      pass than h2o's async handle, so by then nothing of h2o is on the loop;
 *   4. free everything and call done_cb.
 */
#include "himari/admin.h"

#include <h2o.h>

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "himari/log.h"

/* Default for opts.max_connections: beyond it a connection is accepted and
 * closed at once, so a scraper stuck in a loop cannot exhaust the service's
 * file descriptors. Prometheus and a person with curl need a handful. */
#define ADMIN_MAX_CONNS 64
/* Default for opts.idle_timeout_ms (h2o's own default for both protocols). */
#define ADMIN_IDLE_TIMEOUT_MS 10000
/* HTTP/2 requests of one connection handled at once (h2o's default: 100).
 * Handlers answer inline; one at a time means a client that does not read
 * its responses cannot make us render more than one. */
#define ADMIN_H2_CONCURRENT_REQUESTS 1
/* Pending connections the kernel queues before we accept them. */
#define ADMIN_BACKLOG 64
/* A request body larger than this (only POST routes read one) is refused by
 * h2o (413) instead of being buffered (h2o 2.2 buffers it whole, default 1 GiB). */
#define ADMIN_MAX_REQUEST_BODY (256 * 1024)
/* Room for the readiness reason the service writes, NUL included. */
#define ADMIN_REASON_SIZE 256

static const char CT_TEXT[] = "text/plain; charset=utf-8";
static const char CT_JSON[] = "application/json";
static const char CT_PROMETHEUS[] = "text/plain; version=0.0.4; charset=utf-8";

typedef struct admin_route {
    char *path; /* exact path, owned */
    size_t path_len;
    hm_admin_handler_cb cb; /* GET and HEAD; NULL for a POST route */
    hm_admin_post_cb post;  /* POST; NULL for a GET route */
    void *ud;
} admin_route;

/* One accepted connection. tcp comes first: h2o's close callback hands us the
 * uv handle, and tcp.data belongs to h2o's socket once it is created. */
typedef struct admin_conn {
    uv_tcp_t tcp;
    hm_admin *admin;
    struct admin_conn *prev;
    struct admin_conn *next;
} admin_conn;

/* The one h2o handler, mounted at "/": it dispatches on the exact path so that
 * routes added after start need no change to h2o's (immutable) config. */
typedef struct admin_handler {
    h2o_handler_t super;
    hm_admin *admin;
} admin_handler;

typedef enum admin_phase {
    ADMIN_RUNNING = 0,
    ADMIN_CLOSING_SOCKETS, /* listener and connections closing */
    ADMIN_CLOSING_H2O,     /* h2o context torn down, its timers closing */
    ADMIN_FINISHING,       /* the finisher handle is closing */
} admin_phase;

struct hm_admin {
    uv_loop_t *loop;
    uv_tcp_t listener;  /* data = this */
    uv_idle_t finisher; /* initialised and closed only at the end of shutdown */
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;

    hm_metrics *metrics; /* not owned */
    hm_metric_family *requests_total;
    hm_admin_ready_cb ready;
    void *ready_ud;

    admin_route *routes;
    size_t n_routes;
    size_t cap_routes;

    admin_conn *conns; /* every connection whose handle is not yet closed */
    size_t n_conns;
    size_t max_conns;

    hm_buf body; /* response scratch; h2o copies it into the request's pool */
    int port;

    admin_phase phase;
    unsigned pending_closes; /* our handles (not connections) being closed */
    void (*done_cb)(void *ud);
    void *done_ud;
};

/* ---- small helpers -------------------------------------------------------- */

/* Problems a client can cause repeatedly are logged at most 6 times a minute.
 * (Fields are spelled as arrays rather than through the hm_log_* macros,
 * whose __VA_OPT__ cppcheck cannot parse.) */
static void log_limited(hm_log_level level, const char *event, const hm_log_field *fields) {
    hm_log_ratelimited(level, event, 6, fields);
}

static bool iov_eq(h2o_iovec_t v, const char *s) {
    size_t n = strlen(s);
    return v.len == n && memcmp(v.base, s, n) == 0;
}

static bool is_builtin_path(const char *p, size_t n) {
    return (n == 8 && memcmp(p, "/healthz", 8) == 0) || (n == 7 && memcmp(p, "/readyz", 7) == 0) ||
           (n == 8 && memcmp(p, "/metrics", 8) == 0);
}

static const admin_route *route_find(const hm_admin *a, const char *p, size_t n) {
    for (size_t i = 0; i < a->n_routes; i++) {
        const admin_route *r = &a->routes[i];
        if (r->path_len == n && memcmp(r->path, p, n) == 0) return r;
    }
    return NULL;
}

/* HTTP/1.1 needs a reason phrase on the status line; HTTP/2 has none. */
static const char *reason_phrase(int status) {
    switch (status) {
        case 200:
            return "OK";
        case 201:
            return "Created";
        case 202:
            return "Accepted";
        case 204:
            return "No Content";
        case 400:
            return "Bad Request";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 409:
            return "Conflict";
        case 429:
            return "Too Many Requests";
        case 500:
            return "Internal Server Error";
        case 503:
            return "Service Unavailable";
        default:
            break;
    }
    if (status < 300) return "OK";
    if (status < 400) return "Redirection";
    if (status < 500) return "Client Error";
    return "Server Error";
}

/* "127.0.0.1:8080" or "[::1]:8080", for messages. */
static void format_where(const char *host, int port, char *out, size_t size) {
    if (strchr(host, ':'))
        snprintf(out, size, "[%s]:%d", host, port);
    else
        snprintf(out, size, "%s:%d", host, port);
}

/* ---- requests ------------------------------------------------------------- */

static void count_request(hm_admin *a, const char *path_label, int status) {
    char code[12];
    snprintf(code, sizeof(code), "%d", status);
    const char *values[2] = {path_label, code};
    hm_counter *c = hm_metrics_child_v(a->requests_total, values, 2);
    hm_counter_inc(c);
}

static void send_response(h2o_req_t *req, int status, const char *content_type,
                          const hm_buf *body) {
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    /* A handler's content type is documented as static; copying it into the
     * request's pool costs little and removes the lifetime question. */
    h2o_iovec_t ct = h2o_strdup(&req->pool, content_type, strlen(content_type));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ct.base, ct.len);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    /* h2o_send_inline copies the body and leaves it out for HEAD, but does
     * not set Content-Length (without it HTTP/1.1 would go chunked). */
    req->res.content_length = body->len;
    h2o_send_inline(req, body->data ? body->data : "", body->len);
}

static void write_readyz(hm_admin *a, hm_buf *out, int *status) {
    char reason[ADMIN_REASON_SIZE] = {0};
    bool ready = a->ready ? a->ready(a->ready_ud, reason, sizeof(reason)) : true;
    if (ready) {
        hm_buf_puts(out, "{\"ready\":true}");
        *status = 200;
        return;
    }
    reason[sizeof(reason) - 1] = '\0'; /* a careless callback must not make us overread */
    hm_buf_puts(out, "{\"ready\":false,");
    hm_json_key(out, "reason");
    hm_json_cstr(out, reason);
    hm_buf_putc(out, '}');
    *status = 503;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req) {
    hm_admin *a = ((admin_handler *)self)->admin;
    hm_buf *body = &a->body;
    hm_buf_reset(body);

    /* path_normalized has no query string and no dot segments. */
    h2o_iovec_t path = req->path_normalized;
    const admin_route *route = route_find(a, path.base, path.len);
    bool builtin = is_builtin_path(path.base, path.len);
    /* The label is the route for known paths and "other" for the rest, so a
     * scanner walking random URLs cannot grow the registry. The request's
     * pool holds a NUL-terminated copy that outlives a handler that adds
     * routes (and so moves the route table) while we are in it. */
    const char *label = "other";
    if (route || builtin) label = h2o_strdup(&req->pool, path.base, path.len).base;

    int status;
    const char *content_type = CT_JSON;
    bool is_post = route && route->post;
    bool method_ok = is_post ? iov_eq(req->method, "POST")
                             : iov_eq(req->method, "GET") || iov_eq(req->method, "HEAD");
    if (!method_ok) {
        status = 405;
        hm_buf_puts(body, "{\"error\":\"method not allowed\",");
        hm_json_key(body, "method");
        hm_json_str(body, req->method.base, req->method.len);
        hm_buf_putc(body, '}');
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL,
                       is_post ? "POST" : "GET, HEAD", is_post ? 4 : 9);
    } else if (builtin && path.len == 8 && memcmp(path.base, "/healthz", 8) == 0) {
        status = 200;
        content_type = CT_TEXT;
        hm_buf_puts(body, "ok\n");
    } else if (builtin && path.len == 7) { /* /readyz */
        write_readyz(a, body, &status);
    } else if (builtin) { /* /metrics */
        status = 200;
        content_type = CT_PROMETHEUS;
        hm_metrics_render(a->metrics, body);
    } else if (route) {
        const char *ct = CT_JSON;
        if (is_post)
            status = route->post(route->ud, req->entity.base, req->entity.len, body, &ct);
        else
            status = route->cb(route->ud, body, &ct);
        content_type = ct ? ct : CT_JSON;
        if (status < 100 || status > 599) {
            log_limited(HM_LOG_ERROR, "admin_handler_bad_status",
                        (const hm_log_field[]){HM_LS("path", label), HM_LI("status", status), {0}});
            hm_buf_reset(body);
            hm_buf_printf(body, "{\"error\":\"handler returned status %d\"}", status);
            status = 500;
            content_type = CT_JSON;
        }
    } else {
        status = 404;
        hm_buf_puts(body, "{\"error\":\"not found\",");
        hm_json_key(body, "path");
        hm_json_str(body, path.base, path.len);
        hm_buf_putc(body, '}');
    }

    send_response(req, status, content_type, body);
    count_request(a, label, status);
    return 0;
}

/* ---- connections ---------------------------------------------------------- */

static void conn_unlink(hm_admin *a, admin_conn *c) {
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    assert(a->n_conns > 0);
    a->n_conns--;
}

static void advance_close(hm_admin *a);

/* The uv close callback of a connection's handle: h2o calls it after freeing
 * its socket, or uv_close does when we refused the connection ourselves. */
static void on_conn_closed(uv_handle_t *handle) {
    admin_conn *c = (admin_conn *)handle;
    hm_admin *a = c->admin;
    conn_unlink(a, c);
    free(c);
    if (a->phase != ADMIN_RUNNING) advance_close(a);
}

static void on_connection(uv_stream_t *listener, int status) {
    hm_admin *a = listener->data;
    if (status < 0) {
        log_limited(HM_LOG_WARN, "admin_accept_failed",
                    (const hm_log_field[]){HM_LS("error", uv_strerror(status)), {0}});
        return;
    }
    admin_conn *c = hm_xcalloc(1, sizeof(*c));
    c->admin = a;
    int rc = uv_tcp_init(a->loop, &c->tcp);
    if (rc != 0) { /* no socket is created before accept; only a broken loop fails here */
        free(c);
        log_limited(HM_LOG_WARN, "admin_accept_failed",
                    (const hm_log_field[]){HM_LS("error", uv_strerror(rc)), {0}});
        return;
    }
    c->next = a->conns;
    if (a->conns) a->conns->prev = c;
    a->conns = c;
    a->n_conns++;

    rc = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (rc != 0 || a->n_conns > a->max_conns) {
        log_limited(HM_LOG_WARN, "admin_connection_refused",
                    (const hm_log_field[]){
                        HM_LS("error", rc != 0 ? uv_strerror(rc) : "too many connections"),
                        HM_LI("open", (int64_t)a->n_conns - 1),
                        {0}});
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1); /* one small write per response: no reason to wait */
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
    h2o_accept(&a->accept_ctx, sock);
}

/* Make h2o close the connection itself: after shutdown(SHUT_RD) its pending
 * or next read sees EOF (after any bytes already received), and h2o closes
 * the connection the way it does when a client hangs up, once a response in
 * flight has been written. Closing the socket under h2o instead would leave
 * its connection object and timeouts alive. */
static void conn_shut_reading(admin_conn *c) {
    if (uv_is_closing((uv_handle_t *)&c->tcp)) return;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return;
    (void)shutdown(fd, SHUT_RD); /* ENOTCONN: the peer is gone and h2o already sees EOF */
}

/* ---- shutdown ------------------------------------------------------------- */

static void admin_free(hm_admin *a) {
    for (size_t i = 0; i < a->n_routes; i++)
        free(a->routes[i].path);
    free(a->routes);
    hm_buf_free(&a->body);
    free(a);
}

static void on_owned_handle_closed(uv_handle_t *handle) {
    hm_admin *a = handle->data;
    assert(a->pending_closes > 0);
    a->pending_closes--;
    advance_close(a);
}

static void on_finisher_closed(uv_handle_t *handle) {
    hm_admin *a = handle->data;
    void (*done_cb)(void *) = a->done_cb;
    void *done_ud = a->done_ud;
    admin_free(a);
    if (done_cb) done_cb(done_ud);
}

/*
 * What h2o_context_dispose does in 2.2.5, without its closing
 * uv_run(loop, UV_RUN_NOWAIT): we are inside a close callback of the
 * service's running loop, where a nested uv_run would run the service's
 * timers and I/O re-entrantly. And we close the context's timers with a
 * callback of our own (h2o passes none), so we know when their memory, which
 * lives inside a->ctx, may be freed. Every field touched is declared in the
 * installed h2o.h; the Debian package pins 2.2.5.
 */
static void dispose_h2o(hm_admin *a) {
    h2o_context_t *ctx = &a->ctx;
    h2o_globalconf_t *config = &a->config;

    for (size_t i = 0; config->hosts[i] != NULL; i++) {
        h2o_hostconf_t *host = config->hosts[i];
        for (size_t j = 0; j < host->paths.size; j++)
            h2o_context_dispose_pathconf_context(ctx, host->paths.entries + j);
        h2o_context_dispose_pathconf_context(ctx, &host->fallback_path);
    }
    free(ctx->_pathconfs_inited.entries);
    free(ctx->_module_configs);

    /* Linked only after h2o_context_request_shutdown (never called here), but
     * it lives in ctx, so unlinking is always safe. */
    h2o_timeout_unlink(&ctx->http2._graceful_shutdown_timeout);
    h2o_timeout_t *const timeouts[] = {
        &ctx->zero_timeout,
        &ctx->one_sec_timeout,
        &ctx->hundred_ms_timeout,
        &ctx->handshake_timeout,
        &ctx->http1.req_timeout,
        &ctx->http2.idle_timeout,
        &ctx->http2.graceful_shutdown_timeout,
        &ctx->proxy.io_timeout,
    };
    for (size_t i = 0; i < HM_ARRAY_LEN(timeouts); i++) {
        /* Every connection is gone, so nothing may still wait on a timeout;
         * an entry left would point into freed memory. */
        if (!h2o_linklist_is_empty(&timeouts[i]->_entries))
            hm_panic("admin: h2o timeout %zu still has entries at shutdown", i);
        uv_timer_t *timer = &timeouts[i]->_backend.timer;
        timer->data = a;
        a->pending_closes++;
        uv_close((uv_handle_t *)timer, on_owned_handle_closed);
    }

    h2o_filecache_destroy(ctx->filecache);
    ctx->filecache = NULL;
    for (size_t i = 0; i < ctx->storage.size; i++) {
        h2o_context_storage_item_t *item = &ctx->storage.entries[i];
        if (item->dispose) item->dispose(item->data);
    }
    free(ctx->storage.entries);
    /* The queue's uv_async_t is closed here and freed by h2o's own close
     * callback; step 3 waits for it. */
    h2o_multithread_unregister_receiver(ctx->queue, &ctx->receivers.hostinfo_getaddr);
    h2o_multithread_destroy_queue(ctx->queue);
    ctx->queue = NULL;
    if (ctx->_timestamp_cache.value != NULL) {
        h2o_mem_release_shared(ctx->_timestamp_cache.value);
        ctx->_timestamp_cache.value = NULL;
    }

    h2o_config_dispose(config);
}

/* Moves shutdown on when what the current step waits for is closed. Called
 * only from close callbacks, so neither h2o nor a handler is on the stack. */
static void advance_close(hm_admin *a) {
    switch (a->phase) {
        case ADMIN_CLOSING_SOCKETS:
            if (a->pending_closes != 0 || a->n_conns != 0) return;
            a->phase = ADMIN_CLOSING_H2O;
            dispose_h2o(a);
            assert(a->pending_closes > 0);
            return;
        case ADMIN_CLOSING_H2O:
            if (a->pending_closes != 0) return;
            a->phase = ADMIN_FINISHING;
            /* Closed from inside a close callback, the finisher completes on a
             * later closing pass than h2o's async handle closed above. */
            (void)uv_idle_init(a->loop, &a->finisher); /* cannot fail */
            a->finisher.data = a;
            uv_close((uv_handle_t *)&a->finisher, on_finisher_closed);
            return;
        case ADMIN_RUNNING:
        case ADMIN_FINISHING:
            break;
    }
    hm_panic("admin: advance_close in phase %d", (int)a->phase);
}

void hm_admin_close(hm_admin *a, void (*done_cb)(void *ud), void *ud) {
    assert(a != NULL);
    assert(a->phase == ADMIN_RUNNING);
    a->phase = ADMIN_CLOSING_SOCKETS;
    a->done_cb = done_cb;
    a->done_ud = ud;

    a->pending_closes++;
    uv_close((uv_handle_t *)&a->listener, on_owned_handle_closed);
    for (admin_conn *c = a->conns; c; c = c->next)
        conn_shut_reading(c);
}

/* ---- start ---------------------------------------------------------------- */

static int parse_bind(const char *host, int port, struct sockaddr_storage *ss) {
    memset(ss, 0, sizeof(*ss));
    if (strcmp(host, "localhost") == 0) host = "127.0.0.1"; /* spare configs a DNS lookup */
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
    return -EINVAL;
}

/* bind and listen with plain syscalls, so a failure leaves no uv handle
 * closing on the loop: the caller can uv_loop_close() right away. */
static int open_listen_socket(const struct sockaddr_storage *ss, int *out_fd) {
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    /* Restart while old connections sit in TIME_WAIT; a live listener on the
     * port still makes bind fail with EADDRINUSE on Linux. */
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    socklen_t len =
        ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (const struct sockaddr *)ss, len) != 0 || listen(fd, ADMIN_BACKLOG) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    *out_fd = fd;
    return 0;
}

static void free_on_close(uv_handle_t *handle) {
    admin_free(handle->data);
}

static void setup_h2o(hm_admin *a, bool http2, uint64_t idle_timeout_ms) {
    h2o_config_init(&a->config);
    a->config.server_name = h2o_iovec_init(H2O_STRLIT("himari/" HM_VERSION));
    a->config.max_request_entity_size = ADMIN_MAX_REQUEST_BODY;
    /* In 2.2.5 this one flag governs both the h2c upgrade and the prior-knowledge
     * preface: off, "PRI * HTTP/2.0" is a bad HTTP/1 request (400, closed). */
    a->config.http1.upgrade_to_http2 = http2;
    a->config.http1.req_timeout = idle_timeout_ms;
    a->config.http2.idle_timeout = idle_timeout_ms;
    a->config.http2.max_concurrent_requests_per_connection = ADMIN_H2_CONCURRENT_REQUESTS;
    /* The first host is h2o's fallback for any Host header. */
    h2o_hostconf_t *host =
        h2o_config_register_host(&a->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(host, "/", 0);
    admin_handler *handler = (admin_handler *)h2o_create_handler(pathconf, sizeof(*handler));
    handler->super.on_req = on_req;
    handler->admin = a;

    h2o_context_init(&a->ctx, a->loop, &a->config);
    a->accept_ctx.ctx = &a->ctx;
    a->accept_ctx.hosts = a->config.hosts;
}

int hm_admin_start(uv_loop_t *loop, const hm_admin_opts *opts, hm_metrics *metrics,
                   hm_admin_ready_cb ready, void *ready_ud, hm_admin **out, hm_err *err) {
    assert(loop != NULL);
    assert(opts != NULL);
    assert(metrics != NULL);
    assert(out != NULL);
    *out = NULL;

    const char *host = (opts->bind && opts->bind[0]) ? opts->bind : "127.0.0.1";
    int port = opts->port;
    char where[96];
    format_where(host, port, where, sizeof(where));
    if (port < 0 || port > 65535)
        return hm_err_set(err, -EINVAL, "admin: cannot listen on %s: port not in 0..65535", where);
    struct sockaddr_storage ss;
    if (parse_bind(host, port, &ss) != 0)
        return hm_err_set(err, -EINVAL, "admin: cannot listen on %s: not an IPv4 or IPv6 address",
                          where);
    /* Nothing here is secret (no token is taken, /status has no config
     * values), so a bind off loopback is allowed; but it is plain HTTP without
     * authentication, and whoever reaches it reads the metrics and the status
     * and can keep the loop busy: said once, at start. */
    if (!hm_addr_is_loopback(host))
        hm_log_emit(
            HM_LOG_WARN, "admin_not_loopback",
            (const hm_log_field[]){HM_LS("address", where),
                                   HM_LS("reason", "served in clear and without authentication to "
                                                   "whoever can reach this address"),
                                   {0}});
    int fd = -1;
    int rc = open_listen_socket(&ss, &fd);
    if (rc != 0)
        return hm_err_set(err, rc, "admin: cannot listen on %s: %s", where, uv_strerror(rc));

    hm_admin *a = hm_xcalloc(1, sizeof(*a));
    a->loop = loop;
    a->metrics = metrics;
    a->ready = ready;
    a->ready_ud = ready_ud;
    a->body = (hm_buf)HM_BUF_INIT;
    a->max_conns = opts->max_connections > 0 ? (size_t)opts->max_connections : ADMIN_MAX_CONNS;

    rc = uv_tcp_init(loop, &a->listener);
    if (rc != 0) {
        close(fd);
        free(a);
        return hm_err_set(err, rc, "admin: cannot listen on %s: %s", where, uv_strerror(rc));
    }
    a->listener.data = a;
    rc = uv_tcp_open(&a->listener, fd);
    if (rc != 0) close(fd); /* not adopted by the handle */
    if (rc == 0) rc = uv_listen((uv_stream_t *)&a->listener, ADMIN_BACKLOG, on_connection);
    if (rc != 0) {
        /* The handle was initialised: it can only go away through uv_close. */
        uv_close((uv_handle_t *)&a->listener, free_on_close);
        return hm_err_set(err, rc, "admin: cannot listen on %s: %s", where, uv_strerror(rc));
    }
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    if (uv_tcp_getsockname(&a->listener, (struct sockaddr *)&bound, &len) == 0)
        a->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    else
        a->port = port;

    /* h2o writes to sockets whose client may have gone; with SIGPIPE at its
     * default that write would kill the service. Leave a handler or an
     * explicit ignore the process chose alone. */
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
        !(old.sa_flags & SA_SIGINFO))
        signal(SIGPIPE, SIG_IGN);

    uint64_t idle_ms =
        opts->idle_timeout_ms > 0 ? (uint64_t)opts->idle_timeout_ms : ADMIN_IDLE_TIMEOUT_MS;
    setup_h2o(a, opts->http2, idle_ms);
    a->requests_total = hm_metrics_counter(metrics, "himari_admin_requests_total",
                                           "HTTP requests served by the admin endpoint, by route "
                                           "(\"other\" for unknown paths) and status code.",
                                           "path,code");
    format_where(host, a->port, where, sizeof(where));
    hm_log_emit(HM_LOG_INFO, "admin_listening",
                (const hm_log_field[]){HM_LS("address", where),
                                       HM_LB("http2", opts->http2),
                                       HM_LI("max_connections", (int64_t)a->max_conns),
                                       HM_LI("idle_timeout_ms", (int64_t)idle_ms),
                                       {0}});
    *out = a;
    return 0;
}

/* ---- routes --------------------------------------------------------------- */

void hm_admin_set_ready(hm_admin *a, hm_admin_ready_cb ready, void *ready_ud) {
    a->ready = ready;
    a->ready_ud = ready_ud;
}

static void route_add(hm_admin *a, const char *path, admin_route r) {
    assert(a != NULL);
    assert(r.cb != NULL || r.post != NULL);
    if (!path || path[0] != '/')
        hm_panic("admin: route %s must start with '/'", path ? path : "(null)");
    size_t n = strlen(path);
    if (is_builtin_path(path, n)) hm_panic("admin: route %s is built in", path);
    for (size_t i = 0; i < a->n_routes; i++) {
        if (a->routes[i].path_len == n && memcmp(a->routes[i].path, path, n) == 0) {
            r.path = a->routes[i].path; /* re-registering replaces */
            r.path_len = n;
            a->routes[i] = r;
            return;
        }
    }
    if (a->n_routes == a->cap_routes) {
        a->cap_routes = a->cap_routes ? a->cap_routes * 2 : 4;
        a->routes = hm_xrealloc(a->routes, a->cap_routes * sizeof(*a->routes));
    }
    r.path = hm_xstrndup(path, n);
    r.path_len = n;
    a->routes[a->n_routes++] = r;
}

void hm_admin_route(hm_admin *a, const char *path, hm_admin_handler_cb cb, void *ud) {
    route_add(a, path, (admin_route){.cb = cb, .ud = ud});
}

void hm_admin_route_post(hm_admin *a, const char *path, hm_admin_post_cb cb, void *ud) {
    route_add(a, path, (admin_route){.post = cb, .ud = ud});
}

bool hm_admin_has_route(const hm_admin *a, const char *path) {
    return route_find(a, path, strlen(path)) != NULL;
}

int hm_admin_port(const hm_admin *a) {
    assert(a != NULL);
    return a->port;
}
