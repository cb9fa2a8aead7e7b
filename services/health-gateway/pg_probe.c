/*
 * pg_probe.c: connect, SELECT 1, disconnect, without blocking the loop (pg_probe.h).
 *
 * libpq drives the steps (PQconnectPoll, then PQconsumeInput / PQgetResult); we only wait
 * on the socket for what it asks for. The socket may change during the connect (libpq
 * tries the next address), so the poll follows PQsocket. The end is reported from an idle
 * callback, never from inside hg_pg_probe_start.
 */
#include "pg_probe.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/common.h"

typedef struct pg_watch {
    uv_poll_t poll;
    hg_pg_probe *owner; /* NULL once the probe is gone */
} pg_watch;

struct hg_pg_probe {
    uv_loop_t *loop;
    PGconn *conn;
    pg_watch *watch; /* on the current socket */
    int fd;
    bool connected; /* the query was sent */
    bool ended;
    uv_idle_t report; /* reports the end on the next turn */
    int err;
    char error[256];
    hg_pg_probe_cb cb;
    void *ud;
};

static void on_socket(uv_poll_t *h, int status, int events);

static void watch_closed(uv_handle_t *h) {
    free(h->data);
}

static void watch_drop(hg_pg_probe *p) {
    if (!p->watch) return;
    uv_poll_stop(&p->watch->poll);
    p->watch->owner = NULL;
    uv_close((uv_handle_t *)&p->watch->poll, watch_closed);
    p->watch = NULL;
}

static void report_closed(uv_handle_t *h) {
    free(h->data);
}

static void probe_free(hg_pg_probe *p) {
    watch_drop(p);
    if (p->conn) PQfinish(p->conn);
    p->conn = NULL;
    uv_close((uv_handle_t *)&p->report, report_closed);
}

static void on_report(uv_idle_t *h) {
    hg_pg_probe *p = h->data;
    uv_idle_stop(h);
    hg_pg_probe_cb cb = p->cb;
    void *ud = p->ud;
    int err = p->err;
    char error[sizeof(p->error)];
    memcpy(error, p->error, sizeof(error));
    probe_free(p);
    cb(ud, err, error);
}

static void finish(hg_pg_probe *p, int err, const char *msg) {
    if (p->ended) return;
    p->ended = true;
    p->err = err;
    snprintf(p->error, sizeof(p->error), "%s", msg ? msg : "");
    /* libpq's messages end with a newline. */
    size_t n = strlen(p->error);
    while (n > 0 && (p->error[n - 1] == '\n' || p->error[n - 1] == ' '))
        p->error[--n] = '\0';
    watch_drop(p);
    uv_idle_start(&p->report, on_report);
}

/* Wait on the current socket for events. */
static void wait_for(hg_pg_probe *p, int events) {
    int fd = PQsocket(p->conn);
    if (fd < 0) {
        finish(p, -EIO, PQerrorMessage(p->conn));
        return;
    }
    if (!p->watch || fd != p->fd) {
        watch_drop(p);
        pg_watch *w = hm_xcalloc(1, sizeof(*w));
        w->owner = p;
        w->poll.data = w;
        if (uv_poll_init_socket(p->loop, &w->poll, fd) != 0) {
            free(w);
            finish(p, -EIO, "cannot watch the connection's socket");
            return;
        }
        p->watch = w;
        p->fd = fd;
    }
    uv_poll_start(&p->watch->poll, events, on_socket);
}

static void step_connect(hg_pg_probe *p) {
    switch (PQconnectPoll(p->conn)) {
        case PGRES_POLLING_READING:
            wait_for(p, UV_READABLE);
            return;
        case PGRES_POLLING_WRITING:
            wait_for(p, UV_WRITABLE);
            return;
        case PGRES_POLLING_OK:
            if (!PQsendQuery(p->conn, "SELECT 1")) {
                finish(p, -EIO, PQerrorMessage(p->conn));
                return;
            }
            p->connected = true;
            wait_for(p, UV_READABLE | (PQflush(p->conn) == 1 ? UV_WRITABLE : 0));
            return;
        default:
            finish(p, -EIO, PQerrorMessage(p->conn));
            return;
    }
}

static void step_query(hg_pg_probe *p, int events) {
    if ((events & UV_WRITABLE) && PQflush(p->conn) == 1) return;
    if (!PQconsumeInput(p->conn)) {
        finish(p, -EIO, PQerrorMessage(p->conn));
        return;
    }
    if (PQisBusy(p->conn)) {
        wait_for(p, UV_READABLE);
        return;
    }
    PGresult *r;
    int err = -EIO;
    char msg[256] = "no result";
    while ((r = PQgetResult(p->conn)) != NULL) {
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            err = 0;
            msg[0] = '\0';
        } else if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            err = -EIO;
            snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
        }
        PQclear(r);
    }
    finish(p, err, msg);
}

static void on_socket(uv_poll_t *h, int status, int events) {
    pg_watch *w = h->data;
    hg_pg_probe *p = w->owner;
    if (!p || p->ended) return;
    if (status < 0) {
        finish(p, -EIO, uv_strerror(status));
        return;
    }
    if (p->connected)
        step_query(p, events);
    else
        step_connect(p);
}

hg_pg_probe *hg_pg_probe_start(uv_loop_t *loop, const hg_pg_config *cfg, hg_pg_probe_cb cb,
                               void *ud) {
    hg_pg_probe *p = hm_xcalloc(1, sizeof(*p));
    p->loop = loop;
    p->cb = cb;
    p->ud = ud;
    p->fd = -1;
    uv_idle_init(loop, &p->report);
    p->report.data = p;
    char port[16];
    snprintf(port, sizeof(port), "%lld", (long long)cfg->port);
    const char *keys[] = {"host",     "port",    "dbname",           "user",
                          "password", "sslmode", "application_name", NULL};
    const char *vals[] = {cfg->host,
                          port,
                          cfg->dbname,
                          cfg->user,
                          cfg->password,
                          cfg->sslmode,
                          "himari-health-gateway",
                          NULL};
    p->conn = PQconnectStartParams(keys, vals, 0);
    if (!p->conn) {
        finish(p, -ENOMEM, "out of memory");
    } else if (PQstatus(p->conn) == CONNECTION_BAD) {
        finish(p, -EIO, PQerrorMessage(p->conn));
    } else if (PQsetnonblocking(p->conn, 1) != 0) {
        finish(p, -EIO, PQerrorMessage(p->conn));
    } else {
        wait_for(p, UV_WRITABLE); /* PQconnectPoll's first step waits for the connect */
    }
    return p;
}

void hg_pg_probe_cancel(hg_pg_probe *p) {
    uv_idle_stop(&p->report);
    probe_free(p);
}
