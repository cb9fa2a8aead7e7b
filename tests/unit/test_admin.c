/*
 * test_admin.c: the admin endpoint end to end. A real h2o server runs on a uv
 * loop in the test thread; a helper thread plays the client with blocking
 * HTTP/1.1 over loopback sockets and only records what it saw (cmocka must
 * assert on the test thread). When the client is done it wakes the loop with
 * a uv_async, the loop closes the server, and every test then checks that
 * done_cb ran and that uv_loop_close() finds nothing left on the loop.
 *
 * Must never reach beyond 127.0.0.1, and never hang: sockets carry receive
 * timeouts and main() arms an alarm as a last resort.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "himari/admin.h"
#include "himari/buf.h"
#include "himari/log.h"
#include "himari/metrics.h"

/* ---- a blocking HTTP/1.1 client (runs on the helper thread) --------------- */

typedef struct client_conn {
    int fd;
    char buf[256 * 1024];
    size_t len;
} client_conn;

typedef struct http_resp {
    int status; /* 0 when no response could be read */
    char headers[8192];
    char body[128 * 1024];
    size_t body_len;
} http_resp;

static int client_connect(client_conn *c, int port) {
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return -errno;
    struct timeval tv = {.tv_sec = 5, .tv_usec = 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        int e = errno;
        close(c->fd);
        c->fd = -1;
        return -e;
    }
    return 0;
}

static void client_close(client_conn *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

static int client_send_bytes(client_conn *c, const void *p, size_t n) {
    for (size_t off = 0; off < n;) {
        ssize_t w = send(c->fd, (const char *)p + off, n - off, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        off += (size_t)w;
    }
    return 0;
}

static int client_send(client_conn *c, const char *req) {
    return client_send_bytes(c, req, strlen(req));
}

/* More bytes into c->buf; 0 on EOF, -1 on error or timeout. */
static ssize_t client_fill(client_conn *c) {
    if (c->len == sizeof(c->buf)) return -1;
    ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (r > 0) c->len += (size_t)r;
    return r;
}

/* The value of header name (case-insensitive) in r->headers, or NULL. */
static const char *find_header(const http_resp *r, const char *name, char *out, size_t size) {
    size_t n = strlen(name);
    for (const char *line = r->headers; *line;) {
        const char *eol = strstr(line, "\r\n");
        if (!eol) break;
        if ((size_t)(eol - line) > n && strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            size_t vn = (size_t)(eol - v);
            if (vn >= size) vn = size - 1;
            memcpy(out, v, vn);
            out[vn] = '\0';
            return out;
        }
        line = eol + 2;
    }
    return NULL;
}

/* Read one response; a HEAD response has no body whatever Content-Length says. */
static int client_read_response(client_conn *c, bool head, http_resp *r) {
    memset(r, 0, sizeof(*r));
    char *end;
    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
        if (client_fill(c) <= 0) return -1;
    size_t head_len = (size_t)(end - c->buf) + 4;
    if (head_len >= sizeof(r->headers)) return -1;
    memcpy(r->headers, c->buf, head_len);
    r->headers[head_len] = '\0';
    if (sscanf(r->headers, "HTTP/1.1 %d", &r->status) != 1) return -1;
    size_t body_len = 0;
    if (!head) {
        char cl[32];
        if (!find_header(r, "content-length", cl, sizeof(cl))) return -1;
        body_len = strtoul(cl, NULL, 10);
    }
    if (body_len >= sizeof(r->body)) return -1;
    while (c->len < head_len + body_len)
        if (client_fill(c) <= 0) return -1;
    memcpy(r->body, c->buf + head_len, body_len);
    r->body[body_len] = '\0';
    r->body_len = body_len;
    memmove(c->buf, c->buf + head_len + body_len, c->len - head_len - body_len);
    c->len -= head_len + body_len;
    return 0;
}

/* One request on a fresh connection that the client then closes. */
static int fetch(int port, const char *method, const char *path, http_resp *r) {
    client_conn *c = malloc(sizeof(*c));
    if (!c) return -1;
    int rc = client_connect(c, port);
    if (rc == 0) {
        char req[512];
        snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: localhost\r\n\r\n", method, path);
        rc = client_send(c, req);
        if (rc == 0) rc = client_read_response(c, strcmp(method, "HEAD") == 0, r);
    }
    client_close(c);
    free(c);
    return rc;
}

/* A POST with a body (Content-Length). */
static int fetch_post(int port, const char *path, const char *body, http_resp *r) {
    client_conn *c = malloc(sizeof(*c));
    if (!c) return -1;
    int rc = client_connect(c, port);
    if (rc == 0) {
        char req[1024];
        snprintf(req, sizeof(req),
                 "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %zu\r\n\r\n%s", path,
                 strlen(body), body);
        rc = client_send(c, req);
        if (rc == 0) rc = client_read_response(c, false, r);
    }
    client_close(c);
    free(c);
    return rc;
}

/* ---- harness: loop in the test thread, client in a helper thread ---------- */

typedef struct harness harness;
typedef void (*client_fn)(harness *h);

struct harness {
    uv_loop_t loop;
    uv_async_t client_done;
    hm_metrics *metrics;
    hm_admin *admin;
    int port;
    client_fn client;
    bool signalled; /* client thread only */
    int done_calls; /* loop thread only */
    http_resp resp[4];
    int rc[4];
    bool saw_eof;
};

static void on_admin_closed(void *ud) {
    harness *h = ud;
    h->done_calls++;
}

static void on_client_done(uv_async_t *async) {
    harness *h = async->data;
    uv_close((uv_handle_t *)async, NULL);
    hm_admin_close(h->admin, on_admin_closed, h);
}

/* Tell the loop the client is done: it then closes the server. */
static void client_signal(harness *h) {
    if (h->signalled) return;
    h->signalled = true;
    uv_async_send(&h->client_done);
}

static void *client_main(void *arg) {
    harness *h = arg;
    h->client(h);
    client_signal(h);
    return NULL;
}

/* A server on a free loopback port with opts (NULL: the defaults). */
static harness *harness_start_with(const hm_admin_opts *opts, hm_admin_ready_cb ready,
                                   void *ready_ud) {
    harness *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    assert_int_equal(uv_loop_init(&h->loop), 0);
    h->metrics = hm_metrics_new();
    hm_err err = {{0}};
    hm_admin_opts defaults = {0};
    int rc = hm_admin_start(&h->loop, opts ? opts : &defaults, h->metrics, ready, ready_ud,
                            &h->admin, &err);
    if (rc != 0) fail_msg("hm_admin_start: %d %s", rc, err.msg);
    h->port = hm_admin_port(h->admin);
    assert_true(h->port > 0 && h->port <= 65535);
    assert_int_equal(uv_async_init(&h->loop, &h->client_done, on_client_done), 0);
    h->client_done.data = h;
    return h;
}

static harness *harness_start(hm_admin_ready_cb ready, void *ready_ud) {
    return harness_start_with(NULL, ready, ready_ud);
}

/* Run the loop while fn plays the client; returns once the server closed. */
static void harness_run(harness *h, client_fn fn) {
    h->client = fn;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client_main, h), 0);
    assert_int_equal(uv_run(&h->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
}

/* done_cb ran once and nothing of the server is left on the loop. */
static void harness_finish(harness *h) {
    assert_int_equal(h->done_calls, 1);
    assert_int_equal(uv_loop_close(&h->loop), 0);
    hm_metrics_free(h->metrics);
    free(h);
}

static void assert_header(const http_resp *r, const char *name, const char *want) {
    char v[256];
    if (!find_header(r, name, v, sizeof(v))) fail_msg("no %s header in:\n%s", name, r->headers);
    assert_string_equal(v, want);
}

/* ---- readiness and routes the tests register ----------------------------- */

typedef struct readiness {
    bool ready;
    const char *reason;
    int calls;
} readiness;

static bool ready_cb(void *ud, char *reason, size_t size) {
    readiness *r = ud;
    r->calls++;
    if (!r->ready) snprintf(reason, size, "%s", r->reason);
    return r->ready;
}

static int csv_route(void *ud, hm_buf *out, const char **content_type) {
    (*(int *)ud)++;
    *content_type = "text/csv; charset=utf-8";
    hm_buf_puts(out, "symbol,px\nBTC-USD,64000.5\n");
    return 202;
}

static int json_route(void *ud, hm_buf *out, const char **content_type) {
    hm_buf_puts(out, "{\"service\":\"test\"}");
    return 200;
}

static int late_route(void *ud, hm_buf *out, const char **content_type) {
    hm_buf_puts(out, "{\"late\":true}");
    return 200;
}

/* Registers /late while serving: dispatch reads the table per request. */
static int adder_route(void *ud, hm_buf *out, const char **content_type) {
    hm_admin_route((hm_admin *)ud, "/late", late_route, NULL);
    hm_buf_puts(out, "{\"added\":\"/late\"}");
    return 201;
}

/* ---- client scripts ------------------------------------------------------ */

static void client_get_healthz(harness *h) {
    h->rc[0] = fetch(h->port, "GET", "/healthz", &h->resp[0]);
}
static void client_get_readyz(harness *h) {
    h->rc[0] = fetch(h->port, "GET", "/readyz", &h->resp[0]);
}
static void client_get_nope(harness *h) {
    h->rc[0] = fetch(h->port, "GET", "/nope/x", &h->resp[0]);
}
static void client_post_healthz(harness *h) {
    h->rc[0] = fetch(h->port, "POST", "/healthz", &h->resp[0]);
    h->rc[1] = fetch(h->port, "GET", "/metrics", &h->resp[1]);
}
static void client_get_query(harness *h) {
    h->rc[0] = fetch(h->port, "GET", "/healthz?verbose=1", &h->resp[0]);
}

static void client_metrics_after_requests(harness *h) {
    h->rc[0] = fetch(h->port, "GET", "/healthz", &h->resp[0]);
    h->rc[1] = fetch(h->port, "GET", "/no-such-page", &h->resp[1]);
    h->rc[2] = fetch(h->port, "GET", "/metrics", &h->resp[2]);
}

static void client_routes(harness *h) {
    h->rc[0] = fetch(h->port, "GET", "/quotes.csv", &h->resp[0]);
    h->rc[1] = fetch(h->port, "GET", "/status", &h->resp[1]);
}

static void client_late_route(harness *h) {
    h->rc[0] = fetch(h->port, "GET", "/late", &h->resp[0]);
    h->rc[1] = fetch(h->port, "GET", "/add", &h->resp[1]);
    h->rc[2] = fetch(h->port, "GET", "/late", &h->resp[2]);
}

/* Two requests, then a third after HEAD, all on one connection. */
static void client_keepalive(harness *h) {
    client_conn *c = malloc(sizeof(*c));
    h->rc[0] = h->rc[1] = h->rc[2] = -1;
    if (client_connect(c, h->port) == 0 &&
        client_send(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") == 0 &&
        (h->rc[0] = client_read_response(c, false, &h->resp[0])) == 0 &&
        client_send(c, "HEAD /readyz HTTP/1.1\r\nHost: x\r\n\r\n") == 0 &&
        (h->rc[1] = client_read_response(c, true, &h->resp[1])) == 0 &&
        client_send(c, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n") == 0)
        h->rc[2] = client_read_response(c, false, &h->resp[2]);
    client_close(c);
    free(c);
}

/* Leaves a served keep-alive connection idle, asks the loop to close the
 * server, and waits to see the server hang up. */
static void client_idle_while_closing(harness *h) {
    client_conn *c = malloc(sizeof(*c));
    h->rc[0] = -1;
    if (client_connect(c, h->port) == 0 &&
        client_send(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") == 0)
        h->rc[0] = client_read_response(c, false, &h->resp[0]);
    client_signal(h);
    if (h->rc[0] == 0) {
        char b[64];
        h->saw_eof = recv(c->fd, b, sizeof(b), 0) == 0; /* 0: orderly close; -1: timeout */
    }
    client_close(c);
    free(c);
}

/* Sends half a request, asks the loop to close the server, waits for EOF. */
static void client_partial_while_closing(harness *h) {
    client_conn *c = malloc(sizeof(*c));
    h->rc[0] = -1;
    if (client_connect(c, h->port) == 0 && client_send(c, "GET /healthz HTTP/1.1\r\nHo") == 0) {
        h->rc[0] = 0;
        usleep(50 * 1000); /* let the server read the fragment first */
        client_signal(h);
        h->saw_eof = client_fill(c) == 0;
    }
    client_close(c);
    free(c);
}

/* HTTP/2 with prior knowledge, frame by frame: the connection preface and an
 * empty SETTINGS, then GET /healthz as one HEADERS frame whose HPACK block
 * uses only static-table entries and literals without Huffman coding. */
static void client_http2_healthz(harness *h) {
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    /* An empty SETTINGS frame, then HEADERS on stream 1 (15 bytes, flags
     * END_STREAM|END_HEADERS): :method GET, :scheme http (static table),
     * :path /healthz and :authority x (literals, names from the table). */
    // clang-format off
    static const unsigned char frames[] = {
        0, 0, 0,  4, 0, 0, 0, 0, 0,
        0, 0, 15, 1, 5, 0, 0, 0, 1,
        0x82,
        0x86,
        0x44, 8, '/', 'h', 'e', 'a', 'l', 't', 'h', 'z',
        0x41, 1, 'x',
    };
    // clang-format on
    client_conn *c = malloc(sizeof(*c));
    h->rc[0] = -1;
    h->resp[0].status = 0;
    h->resp[0].body_len = 0;
    if (client_connect(c, h->port) != 0 || client_send_bytes(c, preface, strlen(preface)) != 0 ||
        client_send_bytes(c, frames, sizeof(frames)) != 0)
        goto out;
    for (;;) {
        while (c->len < 9)
            if (client_fill(c) <= 0) goto out;
        const unsigned char *f = (const unsigned char *)c->buf;
        size_t len = (size_t)f[0] << 16 | (size_t)f[1] << 8 | f[2];
        unsigned type = f[3], flags = f[4];
        uint32_t stream =
            ((uint32_t)f[5] & 0x7f) << 24 | (uint32_t)f[6] << 16 | (uint32_t)f[7] << 8 | f[8];
        while (c->len < 9 + len)
            if (client_fill(c) <= 0) goto out;
        const unsigned char *payload = f + 9;
        bool end = false;
        if (type == 4 && !(flags & 1)) { /* the server's SETTINGS: acknowledge */
            static const unsigned char ack[] = {0, 0, 0, 4, 1, 0, 0, 0, 0};
            if (client_send_bytes(c, ack, sizeof(ack)) != 0) goto out;
        } else if (type == 1 && stream == 1 && len > 0) {
            /* 0x88 is the static-table entry ":status: 200" */
            h->resp[0].status = payload[0] == 0x88 ? 200 : -(int)payload[0];
            end = flags & 1;
        } else if (type == 0 && stream == 1) {
            if (h->resp[0].body_len + len < sizeof(h->resp[0].body)) {
                memcpy(h->resp[0].body + h->resp[0].body_len, payload, len);
                h->resp[0].body_len += len;
                h->resp[0].body[h->resp[0].body_len] = '\0';
            }
            end = flags & 1;
        } else if (type == 7) { /* GOAWAY before our answer */
            goto out;
        }
        memmove(c->buf, c->buf + 9 + len, c->len - 9 - len);
        c->len -= 9 + len;
        if (end) break;
    }
    h->rc[0] = 0;
out:
    client_close(c);
    free(c);
}

/* The HTTP/2 preface and an empty SETTINGS, then everything the server sends
 * until it closes (or 5 s pass): rc[0] 0 when the server closed the
 * connection, resp[0].body the bytes (headers unused). */
static void client_http2_preface_only(harness *h) {
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    static const unsigned char settings[] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    client_conn *c = malloc(sizeof(*c));
    h->rc[0] = -1;
    h->resp[0].body_len = 0;
    if (client_connect(c, h->port) == 0 && client_send_bytes(c, preface, strlen(preface)) == 0 &&
        client_send_bytes(c, settings, sizeof(settings)) == 0) {
        ssize_t r;
        while ((r = client_fill(c)) > 0)
            ;
        h->rc[0] = r == 0 ? 0 : -1;
        size_t n = c->len < sizeof(h->resp[0].body) - 1 ? c->len : sizeof(h->resp[0].body) - 1;
        memcpy(h->resp[0].body, c->buf, n);
        h->resp[0].body[n] = '\0';
        h->resp[0].body_len = n;
    }
    client_close(c);
    free(c);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A connection that never sends anything: how long until the server closes it
 * (h->rc[0] 0 and resp[0].status the ms), or rc -1 when 5 s passed first. */
static void client_idle(harness *h) {
    client_conn *c = malloc(sizeof(*c));
    h->rc[0] = -1;
    if (client_connect(c, h->port) == 0) {
        double t0 = now_ms();
        if (client_fill(c) == 0) {
            h->rc[0] = 0;
            h->resp[0].status = (int)(now_ms() - t0);
        }
    }
    client_close(c);
    free(c);
}

/* Two connections held open, a third: the third is closed at once (rc[2] 0:
 * EOF without a byte); then both held ones still serve /healthz (rc[0], rc[1]). */
static void client_three_connections(harness *h) {
    client_conn *c = malloc(3 * sizeof(*c));
    h->rc[0] = h->rc[1] = h->rc[2] = -1;
    if (client_connect(&c[0], h->port) == 0 && client_connect(&c[1], h->port) == 0 &&
        client_connect(&c[2], h->port) == 0) {
        h->rc[2] = client_fill(&c[2]) == 0 ? 0 : -1;
        for (int i = 0; i < 2; i++)
            if (client_send(&c[i], "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") == 0)
                h->rc[i] = client_read_response(&c[i], false, &h->resp[i]);
    }
    for (int i = 0; i < 3; i++)
        client_close(&c[i]);
    free(c);
}

/* ---- tests --------------------------------------------------------------- */

static void test_healthz_is_200_ok_text_plain_and_not_cached(void **state) {
    harness *h = harness_start(NULL, NULL);
    harness_run(h, client_get_healthz);
    assert_int_equal(h->rc[0], 0);
    assert_int_equal(h->resp[0].status, 200);
    assert_string_equal(h->resp[0].body, "ok\n");
    assert_header(&h->resp[0], "content-type", "text/plain; charset=utf-8");
    assert_header(&h->resp[0], "cache-control", "no-store");
    assert_header(&h->resp[0], "content-length", "3");
    harness_finish(h);
}

static void test_query_string_does_not_change_the_route(void **state) {
    harness *h = harness_start(NULL, NULL);
    harness_run(h, client_get_query);
    assert_int_equal(h->rc[0], 0);
    assert_int_equal(h->resp[0].status, 200);
    assert_string_equal(h->resp[0].body, "ok\n");
    harness_finish(h);
}

static void test_readyz_without_callback_reports_ready(void **state) {
    harness *h = harness_start(NULL, NULL);
    harness_run(h, client_get_readyz);
    assert_int_equal(h->rc[0], 0);
    assert_int_equal(h->resp[0].status, 200);
    assert_string_equal(h->resp[0].body, "{\"ready\":true}");
    assert_header(&h->resp[0], "content-type", "application/json");
    assert_header(&h->resp[0], "cache-control", "no-store");
    harness_finish(h);
}

static void test_readyz_asks_the_callback_and_reports_ready(void **state) {
    readiness r = {.ready = true};
    harness *h = harness_start(ready_cb, &r);
    harness_run(h, client_get_readyz);
    assert_int_equal(h->rc[0], 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(h->resp[0].status, 200);
    assert_string_equal(h->resp[0].body, "{\"ready\":true}");
    harness_finish(h);
}

static void test_readyz_not_ready_is_503_with_escaped_reason(void **state) {
    readiness r = {.ready = false, .reason = "kafka \"raw\" lag\\high\n"};
    harness *h = harness_start(ready_cb, &r);
    harness_run(h, client_get_readyz);
    assert_int_equal(h->rc[0], 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(h->resp[0].status, 503);
    assert_string_equal(h->resp[0].body,
                        "{\"ready\":false,\"reason\":\"kafka \\\"raw\\\" lag\\\\high\\n\"}");
    assert_header(&h->resp[0], "content-type", "application/json");
    assert_header(&h->resp[0], "cache-control", "no-store");
    harness_finish(h);
}

static void test_metrics_renders_registry_and_counts_requests_by_route(void **state) {
    harness *h = harness_start(NULL, NULL);
    hm_metric_family *f =
        hm_metrics_counter(h->metrics, "himari_test_widgets_total", "Widgets made.", NULL);
    hm_counter_add(hm_metrics_counter_child(f), 3);
    harness_run(h, client_metrics_after_requests);
    assert_int_equal(h->rc[0], 0);
    assert_int_equal(h->rc[1], 0);
    assert_int_equal(h->rc[2], 0);
    assert_int_equal(h->resp[1].status, 404);
    const http_resp *m = &h->resp[2];
    assert_int_equal(m->status, 200);
    assert_header(m, "content-type", "text/plain; version=0.0.4; charset=utf-8");
    assert_header(m, "cache-control", "no-store");
    if (!strstr(m->body, "\nhimari_test_widgets_total 3\n")) fail_msg("body:\n%s", m->body);
    if (!strstr(m->body, "# TYPE himari_admin_requests_total counter\n"))
        fail_msg("body:\n%s", m->body);
    if (!strstr(m->body, "himari_admin_requests_total{path=\"/healthz\",code=\"200\"} 1\n"))
        fail_msg("body:\n%s", m->body);
    /* The unknown path is counted under "other", never under its own name. */
    if (!strstr(m->body, "himari_admin_requests_total{path=\"other\",code=\"404\"} 1\n"))
        fail_msg("body:\n%s", m->body);
    assert_null(strstr(m->body, "no-such-page"));
    harness_finish(h);
}

static void test_route_uses_handler_status_body_and_content_type(void **state) {
    harness *h = harness_start(NULL, NULL);
    int csv_calls = 0;
    hm_admin_route(h->admin, "/quotes.csv", csv_route, &csv_calls);
    hm_admin_route(h->admin, "/status", json_route, NULL);
    harness_run(h, client_routes);
    assert_int_equal(h->rc[0], 0);
    assert_int_equal(csv_calls, 1);
    assert_int_equal(h->resp[0].status, 202);
    assert_string_equal(h->resp[0].body, "symbol,px\nBTC-USD,64000.5\n");
    assert_header(&h->resp[0], "content-type", "text/csv; charset=utf-8");
    assert_header(&h->resp[0], "cache-control", "no-store");
    /* A handler that leaves the content type alone gets JSON. */
    assert_int_equal(h->rc[1], 0);
    assert_int_equal(h->resp[1].status, 200);
    assert_string_equal(h->resp[1].body, "{\"service\":\"test\"}");
    assert_header(&h->resp[1], "content-type", "application/json");
    harness_finish(h);
}

static void test_route_added_while_serving_is_reachable(void **state) {
    harness *h = harness_start(NULL, NULL);
    hm_admin_route(h->admin, "/add", adder_route, h->admin);
    harness_run(h, client_late_route);
    assert_int_equal(h->rc[0], 0);
    assert_int_equal(h->resp[0].status, 404);
    assert_int_equal(h->rc[1], 0);
    assert_int_equal(h->resp[1].status, 201);
    assert_int_equal(h->rc[2], 0);
    assert_int_equal(h->resp[2].status, 200);
    assert_string_equal(h->resp[2].body, "{\"late\":true}");
    harness_finish(h);
}

static void test_unknown_path_is_404_json_naming_the_path(void **state) {
    harness *h = harness_start(NULL, NULL);
    harness_run(h, client_get_nope);
    assert_int_equal(h->rc[0], 0);
    assert_int_equal(h->resp[0].status, 404);
    assert_string_equal(h->resp[0].body, "{\"error\":\"not found\",\"path\":\"/nope/x\"}");
    assert_header(&h->resp[0], "content-type", "application/json");
    assert_header(&h->resp[0], "cache-control", "no-store");
    harness_finish(h);
}

/* Answers with what it was sent, reversed, so the test sees the handler had the body. */
static int echo_post(void *ud, const char *body, size_t len, hm_buf *out, const char **ct) {
    (*(int *)ud)++;
    for (size_t i = len; i > 0; i--)
        hm_buf_putc(out, body[i - 1]);
    *ct = "text/plain";
    return len ? 202 : 400;
}

static void client_post_routes(harness *h) {
    h->rc[0] = fetch_post(h->port, "/hook", "abc{}", &h->resp[0]);
    h->rc[1] = fetch(h->port, "GET", "/hook", &h->resp[1]);
    h->rc[2] = fetch_post(h->port, "/hook", "", &h->resp[2]);
}

static void test_post_route_gets_the_body_and_refuses_get(void **state) {
    harness *h = harness_start(NULL, NULL);
    int calls = 0;
    hm_admin_route_post(h->admin, "/hook", echo_post, &calls);
    assert_true(hm_admin_has_route(h->admin, "/hook"));
    assert_false(hm_admin_has_route(h->admin, "/nope"));
    harness_run(h, client_post_routes);
    assert_int_equal(h->rc[0], 0);
    assert_int_equal(h->resp[0].status, 202);
    assert_string_equal(h->resp[0].body, "}{cba");
    assert_header(&h->resp[0], "content-type", "text/plain");
    assert_int_equal(h->rc[1], 0);
    assert_int_equal(h->resp[1].status, 405);
    assert_header(&h->resp[1], "allow", "POST");
    assert_int_equal(h->rc[2], 0);
    assert_int_equal(h->resp[2].status, 400);
    assert_int_equal(calls, 2);
    harness_finish(h);
}

static void test_post_is_405_with_allow_header_and_counted_under_its_route(void **state) {
    harness *h = harness_start(NULL, NULL);
    harness_run(h, client_post_healthz);
    assert_int_equal(h->rc[0], 0);
    assert_int_equal(h->resp[0].status, 405);
    assert_header(&h->resp[0], "allow", "GET, HEAD");
    assert_header(&h->resp[0], "cache-control", "no-store");
    assert_string_equal(h->resp[0].body, "{\"error\":\"method not allowed\",\"method\":\"POST\"}");
    assert_int_equal(h->rc[1], 0);
    if (!strstr(h->resp[1].body, "himari_admin_requests_total{path=\"/healthz\",code=\"405\"} 1\n"))
        fail_msg("body:\n%s", h->resp[1].body);
    harness_finish(h);
}

static void test_requests_share_one_keepalive_connection_and_head_has_no_body(void **state) {
    harness *h = harness_start(NULL, NULL);
    harness_run(h, client_keepalive);
    assert_int_equal(h->rc[0], 0);
    assert_int_equal(h->resp[0].status, 200);
    assert_string_equal(h->resp[0].body, "ok\n");
    /* HEAD: the GET's headers, Content-Length included, and no body bytes,
     * or the next response on the connection would not parse. */
    assert_int_equal(h->rc[1], 0);
    assert_int_equal(h->resp[1].status, 200);
    assert_header(&h->resp[1], "content-length", "14");
    assert_int_equal(h->rc[2], 0);
    assert_int_equal(h->resp[2].status, 200);
    assert_string_equal(h->resp[2].body, "{\"ready\":true}");
    harness_finish(h);
}

/* Is 127.0.0.1:port in LISTEN state in /proc/net/tcp? */
static bool listening_on_loopback(int port) {
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f) return false;
    char want[32], line[512];
    snprintf(want, sizeof(want), "0100007F:%04X", port);
    bool found = false;
    while (fgets(line, sizeof(line), f)) {
        char local[64], remote[64], st[8];
        if (sscanf(line, " %*[0-9]: %63s %63s %7s", local, remote, st) == 3 &&
            strcmp(local, want) == 0 && strcmp(st, "0A") == 0)
            found = true;
    }
    fclose(f);
    return found;
}

static void count_done(void *ud) {
    (*(int *)ud)++;
}

static void test_port_zero_binds_a_free_port_on_loopback_by_default(void **state) {
    const char *binds[] = {NULL, ""};
    for (size_t i = 0; i < 2; i++) {
        uv_loop_t loop;
        assert_int_equal(uv_loop_init(&loop), 0);
        hm_metrics *m = hm_metrics_new();
        hm_admin *a = NULL;
        hm_err err = {{0}};
        assert_int_equal(
            hm_admin_start(&loop, &(hm_admin_opts){.bind = binds[i]}, m, NULL, NULL, &a, &err), 0);
        int port = hm_admin_port(a);
        assert_true(port > 0 && port <= 65535);
        assert_true(listening_on_loopback(port));
        int done = 0;
        hm_admin_close(a, count_done, &done);
        assert_int_equal(done, 0); /* never synchronously */
        assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(done, 1);
        assert_false(listening_on_loopback(port));
        assert_int_equal(uv_loop_close(&loop), 0);
        hm_metrics_free(m);
    }
}

static void test_taken_port_fails_with_message_and_leaves_loop_empty(void **state) {
    /* Hold a port with a plain listening socket. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, 1), 0);
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    int port = ntohs(sin.sin_port);

    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    hm_metrics *m = hm_metrics_new();
    hm_admin *a = (hm_admin *)&loop; /* must be reset to NULL */
    hm_err err = {{0}};
    int rc = hm_admin_start(&loop, &(hm_admin_opts){.bind = "127.0.0.1", .port = port}, m, NULL,
                            NULL, &a, &err);
    assert_int_equal(rc, -EADDRINUSE);
    assert_null(a);
    char want[128];
    snprintf(want, sizeof(want), "admin: cannot listen on 127.0.0.1:%d: address already in use",
             port);
    assert_string_equal(err.msg, want);
    /* Nothing was left on the loop, not even a handle still closing. */
    assert_int_equal(uv_loop_close(&loop), 0);
    hm_metrics_free(m);
    close(fd);
}

static void test_bad_address_and_port_fail_with_einval_and_message(void **state) {
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    hm_metrics *m = hm_metrics_new();
    hm_admin *a = NULL;
    hm_err err = {{0}};
    assert_int_equal(hm_admin_start(&loop, &(hm_admin_opts){.bind = "300.1.2.3", .port = 9100}, m,
                                    NULL, NULL, &a, &err),
                     -EINVAL);
    assert_null(a);
    assert_string_equal(err.msg,
                        "admin: cannot listen on 300.1.2.3:9100: not an IPv4 or IPv6 address");
    assert_int_equal(hm_admin_start(&loop, &(hm_admin_opts){.bind = "admin.internal", .port = 9100},
                                    m, NULL, NULL, &a, &err),
                     -EINVAL);
    assert_int_equal(hm_admin_start(&loop, &(hm_admin_opts){.bind = "127.0.0.1", .port = 70000}, m,
                                    NULL, NULL, &a, &err),
                     -EINVAL);
    assert_string_equal(err.msg, "admin: cannot listen on 127.0.0.1:70000: port not in 0..65535");
    assert_int_equal(uv_loop_close(&loop), 0);
    hm_metrics_free(m);
}

static void test_close_with_idle_keepalive_connection_finishes_and_loop_closes(void **state) {
    harness *h = harness_start(NULL, NULL);
    harness_run(h, client_idle_while_closing);
    assert_int_equal(h->rc[0], 0);
    assert_int_equal(h->resp[0].status, 200);
    /* The server hung up on the idle connection rather than waiting for it. */
    assert_true(h->saw_eof);
    harness_finish(h); /* done_cb once, uv_loop_close() == 0 */
}

static void test_close_with_half_sent_request_finishes_and_loop_closes(void **state) {
    harness *h = harness_start(NULL, NULL);
    harness_run(h, client_partial_while_closing);
    assert_int_equal(h->rc[0], 0);
    assert_true(h->saw_eof);
    harness_finish(h);
}

static void test_http2_prior_knowledge_serves_healthz_when_enabled(void **state) {
    harness *h = harness_start_with(&(hm_admin_opts){.http2 = true}, NULL, NULL);
    harness_run(h, client_http2_healthz);
    assert_int_equal(h->rc[0], 0);
    assert_int_equal(h->resp[0].status, 200);
    assert_string_equal(h->resp[0].body, "ok\n");
    harness_finish(h);
}

/* 192.0.2.1 (TEST-NET-1) is not an address of this host, so that start fails
 * at bind and nothing is exposed; the warning is about the configuration and
 * comes before the bind. A loopback server beside it says nothing. */
static void test_bind_off_loopback_is_warned_once_at_start(void **state) {
    char path[] = "/tmp/himari_test_admin_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    hm_metrics *m = hm_metrics_new();
    hm_admin *remote = NULL, *local = NULL;
    hm_err err = {{0}};
    hm_log_set_fd(fd);
    int rc =
        hm_admin_start(&loop, &(hm_admin_opts){.bind = "192.0.2.1"}, m, NULL, NULL, &remote, &err);
    int rc_local =
        hm_admin_start(&loop, &(hm_admin_opts){.bind = "127.0.0.1"}, m, NULL, NULL, &local, &err);
    hm_log_set_fd(2);
    int done = 0;
    if (remote) hm_admin_close(remote, count_done, &done);
    if (local) hm_admin_close(local, count_done, &done);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    hm_metrics_free(m);
    assert_int_equal(rc_local, 0);
    if (rc == 0) fail_msg("192.0.2.1 is an address of this host; the test needs one that is not");
    assert_int_equal(rc, -EADDRNOTAVAIL);

    off_t end = lseek(fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)end + 1);
    assert_non_null(text);
    assert_int_equal(pread(fd, text, (size_t)end, 0), end);
    close(fd);
    const char *w = strstr(text, "\"event\":\"admin_not_loopback\"");
    if (!w) fail_msg("no admin_not_loopback warning in:\n%s", text);
    assert_non_null(strstr(text, "\"level\":\"warn\""));
    assert_non_null(strstr(text, "\"address\":\"192.0.2.1:0\""));
    assert_null(strstr(w + 1, "\"event\":\"admin_not_loopback\"")); /* once */
    free(text);
}

static void test_http2_prior_knowledge_is_refused_by_default(void **state) {
    harness *h = harness_start(NULL, NULL);
    harness_run(h, client_http2_preface_only);
    /* No HTTP/2 frame (a server's SETTINGS would start 00 00 .. 04), but an
     * HTTP/1.1 refusal, and the connection closed. */
    assert_int_equal(h->rc[0], 0);
    if (strncmp(h->resp[0].body, "HTTP/1.1 400", 12) != 0)
        fail_msg("expected an HTTP/1.1 400, got %zu bytes starting %02x %02x %02x %02x",
                 h->resp[0].body_len, (unsigned char)h->resp[0].body[0],
                 (unsigned char)h->resp[0].body[1], (unsigned char)h->resp[0].body[2],
                 (unsigned char)h->resp[0].body[3]);
    harness_finish(h);
}

static void test_idle_connection_is_closed_after_idle_timeout(void **state) {
    harness *h = harness_start_with(&(hm_admin_opts){.idle_timeout_ms = 300}, NULL, NULL);
    harness_run(h, client_idle);
    assert_int_equal(h->rc[0], 0); /* closed by the server, not by our 5 s timeout */
    assert_true(h->resp[0].status >= 250);
    assert_true(h->resp[0].status < 2500);
    harness_finish(h);
}

static void test_idle_http2_connection_is_closed_after_idle_timeout(void **state) {
    harness *h =
        harness_start_with(&(hm_admin_opts){.http2 = true, .idle_timeout_ms = 300}, NULL, NULL);
    double t0 = now_ms();
    harness_run(h, client_http2_preface_only);
    double took = now_ms() - t0;
    assert_int_equal(h->rc[0], 0); /* closed by the server */
    /* It spoke HTTP/2 (its SETTINGS first), then went quiet and closed. */
    assert_true(h->resp[0].body_len >= 9);
    assert_int_equal((unsigned char)h->resp[0].body[3], 4);
    assert_true(took < 2500);
    harness_finish(h);
}

static void test_connections_beyond_max_connections_are_closed_at_once(void **state) {
    harness *h = harness_start_with(&(hm_admin_opts){.max_connections = 2}, NULL, NULL);
    harness_run(h, client_three_connections);
    assert_int_equal(h->rc[2], 0);
    assert_int_equal(h->rc[0], 0);
    assert_int_equal(h->resp[0].status, 200);
    assert_int_equal(h->rc[1], 0);
    assert_int_equal(h->resp[1].status, 200);
    harness_finish(h);
}

int main(void) {
    /* A broken shutdown would hang uv_run: fail loudly instead. */
    alarm(120);
    hm_log_init("test-admin", HM_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz_is_200_ok_text_plain_and_not_cached),
        cmocka_unit_test(test_query_string_does_not_change_the_route),
        cmocka_unit_test(test_readyz_without_callback_reports_ready),
        cmocka_unit_test(test_readyz_asks_the_callback_and_reports_ready),
        cmocka_unit_test(test_readyz_not_ready_is_503_with_escaped_reason),
        cmocka_unit_test(test_metrics_renders_registry_and_counts_requests_by_route),
        cmocka_unit_test(test_route_uses_handler_status_body_and_content_type),
        cmocka_unit_test(test_route_added_while_serving_is_reachable),
        cmocka_unit_test(test_unknown_path_is_404_json_naming_the_path),
        cmocka_unit_test(test_post_is_405_with_allow_header_and_counted_under_its_route),
        cmocka_unit_test(test_post_route_gets_the_body_and_refuses_get),
        cmocka_unit_test(test_requests_share_one_keepalive_connection_and_head_has_no_body),
        cmocka_unit_test(test_port_zero_binds_a_free_port_on_loopback_by_default),
        cmocka_unit_test(test_taken_port_fails_with_message_and_leaves_loop_empty),
        cmocka_unit_test(test_bad_address_and_port_fail_with_einval_and_message),
        cmocka_unit_test(test_close_with_idle_keepalive_connection_finishes_and_loop_closes),
        cmocka_unit_test(test_close_with_half_sent_request_finishes_and_loop_closes),
        cmocka_unit_test(test_http2_prior_knowledge_serves_healthz_when_enabled),
        cmocka_unit_test(test_bind_off_loopback_is_warned_once_at_start),
        cmocka_unit_test(test_http2_prior_knowledge_is_refused_by_default),
        cmocka_unit_test(test_idle_connection_is_closed_after_idle_timeout),
        cmocka_unit_test(test_idle_http2_connection_is_closed_after_idle_timeout),
        cmocka_unit_test(test_connections_beyond_max_connections_are_closed_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
