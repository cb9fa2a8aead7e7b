/*
 * test_http.c: the loop's HTTP client (common/src/http.c) against real servers on the
 * same loop: the admin endpoint (h2o) for answers, a listener that accepts and never
 * answers for deadlines, a closed port for refusals. Every test ends with the client
 * closed and uv_loop_close() finding nothing left.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "himari/admin.h"
#include "himari/http.h"
#include "himari/metrics.h"

typedef struct got {
    int calls;
    int err;
    long status;
    char body[4096];
    size_t body_len;
    char error[256];
    double seconds;
} got;

static void on_done(void *ud, const hm_http_response *r) {
    got *g = ud;
    g->calls++;
    g->err = r->err;
    g->status = r->status;
    g->body_len = r->body_len;
    snprintf(g->body, sizeof(g->body), "%s", r->body);
    snprintf(g->error, sizeof(g->error), "%s", r->error);
    g->seconds = r->seconds;
}

/* A loop with an admin server, a silent listener and a client. */
typedef struct rig {
    uv_loop_t loop;
    hm_metrics *metrics;
    hm_admin *admin;
    int admin_port;
    uv_tcp_t silent;
    int silent_port;
    uv_tcp_t accepted[8];
    int n_accepted;
    hm_http *http;
    int admin_closed;
} rig;

static void on_silent_conn(uv_stream_t *server, int status) {
    rig *r = server->data;
    if (status < 0 || r->n_accepted >= 8) return;
    uv_tcp_t *c = &r->accepted[r->n_accepted];
    uv_tcp_init(&r->loop, c);
    if (uv_accept(server, (uv_stream_t *)c) == 0) r->n_accepted++; /* and never a byte */
}

static int status_route(void *ud, hm_buf *out, const char **ct) {
    (void)ud;
    *ct = "text/plain";
    hm_buf_puts(out, "hello from the admin endpoint");
    return 200;
}

static void rig_start(rig *r) {
    memset(r, 0, sizeof(*r));
    assert_int_equal(uv_loop_init(&r->loop), 0);
    r->metrics = hm_metrics_new();
    hm_err err = {{0}};
    assert_int_equal(
        hm_admin_start(&r->loop, &(hm_admin_opts){0}, r->metrics, NULL, NULL, &r->admin, &err), 0);
    hm_admin_route(r->admin, "/hello", status_route, NULL);
    r->admin_port = hm_admin_port(r->admin);
    struct sockaddr_in sin;
    uv_ip4_addr("127.0.0.1", 0, &sin);
    uv_tcp_init(&r->loop, &r->silent);
    r->silent.data = r;
    assert_int_equal(uv_tcp_bind(&r->silent, (struct sockaddr *)&sin, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&r->silent, 8, on_silent_conn), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&r->silent, (struct sockaddr *)&ss, &len);
    r->silent_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    r->http = hm_http_new(&r->loop);
    assert_non_null(r->http);
}

static void count_closed(void *ud) {
    ((rig *)ud)->admin_closed++;
}

static void rig_stop(rig *r) {
    hm_http_close(r->http);
    hm_admin_close(r->admin, count_closed, r);
    uv_close((uv_handle_t *)&r->silent, NULL);
    for (int i = 0; i < r->n_accepted; i++)
        uv_close((uv_handle_t *)&r->accepted[i], NULL);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    assert_int_equal(r->admin_closed, 1);
    assert_int_equal(uv_loop_close(&r->loop), 0); /* nothing left open */
    hm_metrics_free(r->metrics);
}

/* Run the loop until every got has been called back (or 10 s pass: a failure). */
static void run_until(rig *r, got *gs, int n) {
    uint64_t deadline = uv_hrtime() + 10000000000ull;
    for (;;) {
        int done = 0;
        for (int i = 0; i < n; i++)
            done += gs[i].calls > 0;
        if (done == n) return;
        if (uv_hrtime() > deadline) fail_msg("requests not ended after 10 s");
        uv_run(&r->loop, UV_RUN_ONCE);
    }
}

static void url(char *out, size_t n, int port, const char *path) {
    snprintf(out, n, "http://127.0.0.1:%d%s", port, path);
}

static void answers(void **state) {
    (void)state;
    rig r;
    rig_start(&r);
    char u1[128], u2[128], u3[128];
    url(u1, sizeof(u1), r.admin_port, "/hello");
    url(u2, sizeof(u2), r.admin_port, "/healthz");
    url(u3, sizeof(u3), r.admin_port, "/no-such-page");
    got g[3] = {0};
    assert_int_equal(hm_http_send(r.http, &(hm_http_request){.url = u1}, on_done, &g[0], NULL), 0);
    assert_int_equal(hm_http_send(r.http, &(hm_http_request){.url = u2}, on_done, &g[1], NULL), 0);
    assert_int_equal(hm_http_send(r.http, &(hm_http_request){.url = u3}, on_done, &g[2], NULL), 0);
    assert_int_equal(g[0].calls + g[1].calls + g[2].calls, 0); /* never from within send */
    assert_int_equal(hm_http_in_flight(r.http), 3);
    run_until(&r, g, 3);
    assert_int_equal(g[0].err, 0);
    assert_int_equal(g[0].status, 200);
    assert_string_equal(g[0].body, "hello from the admin endpoint");
    assert_int_equal(g[0].body_len, strlen("hello from the admin endpoint"));
    assert_int_equal(g[1].status, 200);
    assert_int_equal(g[2].err, 0); /* a 404 is an answer */
    assert_int_equal(g[2].status, 404);
    assert_int_equal(hm_http_in_flight(r.http), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(g[i].calls, 1);
    rig_stop(&r);
}

static void many_at_once_reuse_connections(void **state) {
    (void)state;
    rig r;
    rig_start(&r);
    char u[128];
    url(u, sizeof(u), r.admin_port, "/hello");
    enum { N = 40 };
    got g[N] = {0};
    for (int round = 0; round < 2; round++) {
        memset(g, 0, sizeof(g));
        for (int i = 0; i < N; i++)
            assert_int_equal(
                hm_http_send(r.http, &(hm_http_request){.url = u}, on_done, &g[i], NULL), 0);
        run_until(&r, g, N);
        for (int i = 0; i < N; i++) {
            assert_int_equal(g[i].calls, 1);
            assert_int_equal(g[i].status, 200);
        }
    }
    rig_stop(&r);
}

static void a_server_that_never_answers_times_out(void **state) {
    (void)state;
    rig r;
    rig_start(&r);
    char u[128];
    url(u, sizeof(u), r.silent_port, "/readyz");
    got g = {0};
    assert_int_equal(
        hm_http_send(r.http, &(hm_http_request){.url = u, .timeout_ms = 300}, on_done, &g, NULL),
        0);
    run_until(&r, &g, 1);
    assert_int_equal(g.err, -ETIMEDOUT);
    assert_true(g.seconds >= 0.29 && g.seconds < 3.0);
    assert_true(strlen(g.error) > 0);
    assert_true(r.n_accepted >= 1); /* it was connected, not refused */
    rig_stop(&r);
}

static void a_closed_port_is_refused(void **state) {
    (void)state;
    rig r;
    rig_start(&r);
    uv_tcp_t t;
    uv_tcp_init(&r.loop, &t);
    struct sockaddr_in sin;
    uv_ip4_addr("127.0.0.1", 0, &sin);
    assert_int_equal(uv_tcp_bind(&t, (struct sockaddr *)&sin, 0), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len);
    int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_close((uv_handle_t *)&t, NULL); /* bound, never listening, now closed */
    uv_run(&r.loop, UV_RUN_NOWAIT);
    char u[128];
    url(u, sizeof(u), port, "/");
    got g = {0};
    assert_int_equal(hm_http_send(r.http, &(hm_http_request){.url = u}, on_done, &g, NULL), 0);
    run_until(&r, &g, 1);
    assert_int_equal(g.err, -ECONNREFUSED);
    rig_stop(&r);
}

static void a_long_answer_is_refused_past_the_limit(void **state) {
    (void)state;
    rig r;
    rig_start(&r);
    char u[128];
    url(u, sizeof(u), r.admin_port, "/hello");
    got g = {0};
    assert_int_equal(
        hm_http_send(r.http, &(hm_http_request){.url = u, .max_body = 5}, on_done, &g, NULL), 0);
    run_until(&r, &g, 1);
    assert_int_equal(g.err, -EMSGSIZE);
    assert_non_null(strstr(g.error, "longer than 5 bytes"));
    rig_stop(&r);
}

static void cancel_and_close_call_back_once(void **state) {
    (void)state;
    rig r;
    rig_start(&r);
    char u[128];
    url(u, sizeof(u), r.silent_port, "/");
    got a = {0}, b = {0}, c = {0};
    hm_http_req *ra = NULL;
    assert_int_equal(hm_http_send(r.http, &(hm_http_request){.url = u}, on_done, &a, &ra), 0);
    assert_int_equal(hm_http_send(r.http, &(hm_http_request){.url = u}, on_done, &b, NULL), 0);
    assert_int_equal(hm_http_send(r.http, &(hm_http_request){.url = u}, on_done, &c, NULL), 0);
    for (int i = 0; i < 20; i++)
        uv_run(&r.loop, UV_RUN_NOWAIT); /* connected, waiting */
    hm_http_cancel(ra);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.err, -ECANCELED);
    assert_int_equal(hm_http_in_flight(r.http), 2);
    hm_http_close(r.http);
    assert_int_equal(b.calls, 1);
    assert_int_equal(c.calls, 1);
    assert_int_equal(b.err, -ECANCELED);
    got d = {0};
    /* Closing (freed when the loop next runs): a new request is refused, never called back. */
    assert_int_equal(hm_http_send(r.http, &(hm_http_request){.url = u}, on_done, &d, NULL),
                     -ESHUTDOWN);
    r.http = hm_http_new(&r.loop); /* rig_stop closes this one */
    assert_int_equal(hm_http_send(r.http, &(hm_http_request){.url = ""}, on_done, &d, NULL),
                     -EINVAL);
    rig_stop(&r);
    assert_int_equal(a.calls + b.calls + c.calls, 3);
    assert_int_equal(d.calls, 0);
}

int main(void) {
    alarm(120); /* a hang is a failure, not a stuck CI */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(answers),
        cmocka_unit_test(many_at_once_reuse_connections),
        cmocka_unit_test(a_server_that_never_answers_times_out),
        cmocka_unit_test(a_closed_port_is_refused),
        cmocka_unit_test(a_long_answer_is_refused_past_the_limit),
        cmocka_unit_test(cancel_and_close_call_back_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
