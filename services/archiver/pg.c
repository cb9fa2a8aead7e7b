/*
 * pg.c: the archiver's PostgreSQL connection on the loop (pg.h). libpq does the protocol
 * (authentication with scram-sha-256 included); this file drives it from a uv_poll on its
 * socket and one uv_timer (reconnect back-off, or the deadline of a connect or a query).
 */
#include "pg.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/log.h"
#include "migrations.h"

#define BACKOFF_MIN_MS  100
#define BACKOFF_MAX_MS  5000
#define COPY_CHUNK      (256 * 1024) /* bytes handed to libpq per PQputCopyData */
#define QUERY_MARGIN_MS 5000         /* beyond statement_timeout, before we give up */

typedef void (*step_fn)(ar_pg *pg, int err, const char *reason, const PGresult *last);

struct ar_pg {
    uv_loop_t *loop;
    ar_pg_opts o;
    ar_pg_state state;
    PGconn *conn;
    uv_poll_t *poll; /* per connection; freed in its close callback */
    int poll_fd;
    int poll_events;
    uv_timer_t timer;
    int64_t backoff_ms;
    char last_error[512];
    char storage[16];
    bool fatal;
    /* the query in flight */
    bool in_flight;
    ar_pg_copy copies[AR_PG_MAX_COPIES]; /* the data of its COPYs, in order */
    size_t n_copies, copy_next;          /* copies[copy_next - 1] is being sent */
    const char *copy;                    /* ... that one */
    size_t copy_len, copy_sent;
    bool copy_active, copy_ended;
    char first_error[512];
    PGresult *last;
    ar_pg_query_cb cb; /* a caller's query */
    void *cb_ud;
    step_fn step; /* or one of ours (migrations, session set-up) */
    /* the migration run */
    ar_migration_plan plan;
    size_t plan_step;
    size_t applied;
};

static const char *const k_state_names[] = {"DOWN",  "CONNECTING", "MIGRATING",
                                            "READY", "BUSY",       "CLOSED"};

const char *ar_pg_state_name(ar_pg_state s) {
    return (size_t)s < HM_ARRAY_LEN(k_state_names) ? k_state_names[s] : "?";
}

static void set_state(ar_pg *pg, ar_pg_state s) {
    if (pg->state == s) return;
    pg->state = s;
    if (pg->o.on_state) pg->o.on_state(pg, s, pg->o.ud);
}

static void on_timer(uv_timer_t *t);
static void on_poll(uv_poll_t *h, int status, int events);
static void start_connect(ar_pg *pg);

/* ---- the connection's handles --------------------------------------------------------- */

static void free_poll(uv_handle_t *h) {
    free(h);
}

static void close_poll(ar_pg *pg) {
    if (!pg->poll) return;
    uv_close((uv_handle_t *)pg->poll, free_poll);
    pg->poll = NULL;
}

/* Watch the socket for these events (the socket may change while connecting). */
static void watch(ar_pg *pg, int events) {
    int fd = PQsocket(pg->conn);
    if (pg->poll && fd != pg->poll_fd) close_poll(pg);
    if (!pg->poll) {
        pg->poll = hm_xcalloc(1, sizeof(*pg->poll));
        if (uv_poll_init(pg->loop, pg->poll, fd) != 0) {
            free(pg->poll);
            pg->poll = NULL;
            return;
        }
        pg->poll->data = pg;
        pg->poll_fd = fd;
        pg->poll_events = 0;
    }
    if (events != pg->poll_events) {
        uv_poll_start(pg->poll, events, on_poll);
        pg->poll_events = events;
    }
}

static void set_error(ar_pg *pg, const char *what, const char *msg) {
    char clean[400];
    size_t n = msg ? strnlen(msg, sizeof(clean) - 1) : 0;
    memcpy(clean, msg ? msg : "", n);
    clean[n] = '\0';
    while (n && (clean[n - 1] == '\n' || clean[n - 1] == ' '))
        clean[--n] = '\0';
    snprintf(pg->last_error, sizeof(pg->last_error), "postgresql %s:%lld: %s: %s", pg->o.cfg->host,
             (long long)pg->o.cfg->port, what, clean);
}

/* End the query in flight with an error, drop the connection, reconnect after back-off. */
static void finish_query(ar_pg *pg, int err, const char *reason);

static void drop(ar_pg *pg, const char *what, const char *msg) {
    set_error(pg, what, msg);
    hm_log_limited(HM_LOG_WARN, "postgres_down", 30, HM_LS("error", pg->last_error),
                   HM_LI("retry_in_ms", pg->backoff_ms ? pg->backoff_ms : BACKOFF_MIN_MS));
    close_poll(pg);
    if (pg->conn) PQfinish(pg->conn);
    pg->conn = NULL;
    uv_timer_stop(&pg->timer);
    if (pg->in_flight) finish_query(pg, -EIO, pg->last_error);
    if (pg->state == AR_PG_CLOSED) return;
    if (pg->o.migrate_only || pg->fatal) {
        pg->fatal = true;
        set_state(pg, AR_PG_DOWN);
        return;
    }
    pg->backoff_ms = pg->backoff_ms ? pg->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (pg->backoff_ms > BACKOFF_MAX_MS) pg->backoff_ms = BACKOFF_MAX_MS;
    set_state(pg, AR_PG_DOWN);
    uv_timer_start(&pg->timer, on_timer, (uint64_t)pg->backoff_ms, 0);
}

/* ---- connecting ----------------------------------------------------------------------- */

static void begin_migrations(ar_pg *pg);

static void connect_poll(ar_pg *pg) {
    switch (PQconnectPoll(pg->conn)) {
        case PGRES_POLLING_READING:
            watch(pg, UV_READABLE);
            return;
        case PGRES_POLLING_WRITING:
            watch(pg, UV_WRITABLE);
            return;
        case PGRES_POLLING_OK:
            break;
        default:
            drop(pg, "connect", PQerrorMessage(pg->conn));
            return;
    }
    if (PQsetnonblocking(pg->conn, 1) != 0) {
        drop(pg, "connect", PQerrorMessage(pg->conn));
        return;
    }
    uv_timer_stop(&pg->timer);
    watch(pg, UV_READABLE);
    hm_log_info("postgres_connected", HM_LS("host", pg->o.cfg->host),
                HM_LI("port", pg->o.cfg->port), HM_LS("database", pg->o.cfg->dbname),
                HM_LI("server_version", PQserverVersion(pg->conn)));
    begin_migrations(pg);
}

void ar_pg_conn_params_init(ar_pg_conn_params *p, const ar_pg_config *c, const char *app) {
    snprintf(p->port, sizeof(p->port), "%lld", (long long)c->port);
    /* The server cancels a statement past the timeout; the session is UTC so that days and
     * buckets are UTC days whatever the server's default. */
    snprintf(p->options, sizeof(p->options), "-c statement_timeout=%lld -c TimeZone=UTC",
             (long long)c->statement_timeout_ms);
    /* Seconds, for blocking connects (the loop's connect keeps its own timer). */
    snprintf(p->connect_timeout, sizeof(p->connect_timeout), "%lld",
             (long long)(c->connect_timeout_ms + 999) / 1000);
    const char *keys[] = {"host",
                          "port",
                          "dbname",
                          "user",
                          "password",
                          "sslmode",
                          "application_name",
                          "options",
                          "keepalives",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "connect_timeout",
                          NULL};
    const char *vals[] = {
        c->host,    p->port, c->dbname,          c->user, c->password ? c->password : "",
        c->sslmode, app,     p->options,         "1",     "5",
        "2",        "3",     p->connect_timeout, NULL};
    memcpy(p->keys, keys, sizeof(keys));
    memcpy(p->vals, vals, sizeof(vals));
}

static void start_connect(ar_pg *pg) {
    ar_pg_conn_params p = {0};
    ar_pg_conn_params_init(&p, pg->o.cfg, "himari-archiver");
    pg->conn = PQconnectStartParams(p.keys, p.vals, 0);
    if (!pg->conn) {
        drop(pg, "connect", "out of memory");
        return;
    }
    if (PQstatus(pg->conn) == CONNECTION_BAD) {
        drop(pg, "connect", PQerrorMessage(pg->conn));
        return;
    }
    set_state(pg, AR_PG_CONNECTING);
    uv_timer_start(&pg->timer, on_timer, (uint64_t)pg->o.cfg->connect_timeout_ms, 0);
    connect_poll(pg);
}

static void on_timer(uv_timer_t *t) {
    ar_pg *pg = t->data;
    switch (pg->state) {
        case AR_PG_DOWN:
            start_connect(pg);
            break;
        case AR_PG_CONNECTING:
            drop(pg, "connect", "timed out (postgres.connect_timeout_ms)");
            break;
        default:
            drop(pg, "query", "no answer within postgres.statement_timeout_ms");
            break;
    }
}

/* ---- one query ------------------------------------------------------------------------ */

static void finish_query(ar_pg *pg, int err, const char *reason) {
    pg->in_flight = false;
    uv_timer_stop(&pg->timer);
    ar_pg_query_cb cb = pg->cb;
    step_fn step = pg->step;
    void *ud = pg->cb_ud;
    PGresult *last = pg->last;
    pg->cb = NULL;
    pg->step = NULL;
    pg->last = NULL;
    if (pg->state == AR_PG_BUSY) set_state(pg, AR_PG_READY);
    if (cb) cb(pg, err, reason, err ? NULL : last, ud);
    if (step) step(pg, err, reason, err ? NULL : last);
    if (last) PQclear(last);
}

static int send_query(ar_pg *pg, const char *sql, const ar_pg_copy *copies, size_t n_copies) {
    assert(!pg->in_flight && pg->conn && n_copies <= AR_PG_MAX_COPIES);
    if (!PQsendQuery(pg->conn, sql)) return -EIO;
    pg->in_flight = true;
    if (n_copies) memcpy(pg->copies, copies, n_copies * sizeof(*copies));
    pg->n_copies = n_copies;
    pg->copy_next = 0;
    pg->copy = NULL;
    pg->copy_len = 0;
    pg->copy_sent = 0;
    pg->copy_active = pg->copy_ended = false;
    pg->first_error[0] = '\0';
    uv_timer_start(&pg->timer, on_timer,
                   (uint64_t)(pg->o.cfg->statement_timeout_ms + QUERY_MARGIN_MS), 0);
    return 0;
}

/* Stream the COPY data; false when libpq's buffer is full (wait until writable). */
static bool put_copy(ar_pg *pg) {
    while (pg->copy_sent < pg->copy_len) {
        size_t n = pg->copy_len - pg->copy_sent;
        if (n > COPY_CHUNK) n = COPY_CHUNK;
        int r = PQputCopyData(pg->conn, pg->copy + pg->copy_sent, (int)n);
        if (r == 0) return false;
        if (r < 0) return true; /* the error shows in the results */
        pg->copy_sent += n;
    }
    if (!pg->copy_ended) {
        int r = PQputCopyEnd(pg->conn, NULL);
        if (r == 0) return false;
        pg->copy_ended = true;
        pg->copy_active = false;
    }
    return true;
}

/* Drive the query in flight: flush, stream COPY data, read results. */
static void pump(ar_pg *pg) {
    if (pg->copy_active && !put_copy(pg)) {
        watch(pg, UV_READABLE | UV_WRITABLE);
        return;
    }
    int f = PQflush(pg->conn);
    if (f < 0) {
        drop(pg, "send", PQerrorMessage(pg->conn));
        return;
    }
    if (!PQconsumeInput(pg->conn)) {
        drop(pg, "receive", PQerrorMessage(pg->conn));
        return;
    }
    while (!PQisBusy(pg->conn)) {
        PGresult *r = PQgetResult(pg->conn);
        if (!r) {
            watch(pg, UV_READABLE);
            if (!pg->first_error[0]) {
                finish_query(pg, 0, NULL);
                return;
            }
            char why[512];
            snprintf(why, sizeof(why), "%s", pg->first_error);
            set_error(pg, "query", why);
            if (pg->step || PQtransactionStatus(pg->conn) != PQTRANS_IDLE)
                drop(pg, "query", why); /* rolls back the open transaction */
            else
                finish_query(pg, -EIO, pg->last_error);
            return;
        }
        switch (PQresultStatus(r)) {
            case PGRES_COPY_IN:
                PQclear(r);
                if (pg->copy_next == pg->n_copies) {
                    PQputCopyEnd(pg->conn, "no COPY data was given");
                    break;
                }
                pg->copy = pg->copies[pg->copy_next].data;
                pg->copy_len = pg->copies[pg->copy_next].len;
                pg->copy_next++;
                pg->copy_sent = 0;
                pg->copy_ended = false;
                pg->copy_active = true;
                if (!put_copy(pg)) {
                    watch(pg, UV_READABLE | UV_WRITABLE);
                    return;
                }
                break; /* what libpq could not send yet goes when the socket is writable */
            case PGRES_TUPLES_OK:
                if (pg->last) PQclear(pg->last);
                pg->last = r;
                break;
            case PGRES_COMMAND_OK:
            case PGRES_EMPTY_QUERY:
                PQclear(r);
                break;
            default:
                if (!pg->first_error[0])
                    snprintf(pg->first_error, sizeof(pg->first_error), "%s",
                             PQresultErrorMessage(r));
                PQclear(r);
                break;
        }
        if (PQstatus(pg->conn) == CONNECTION_BAD) {
            drop(pg, "receive", PQerrorMessage(pg->conn));
            return;
        }
    }
    /* Flush again: a COPY queued above may be larger than the socket takes at once (then
     * PQflush says 1, and the rest must go when the socket is writable, or the server
     * waits for it for ever). */
    f = PQflush(pg->conn);
    if (f < 0) {
        drop(pg, "send", PQerrorMessage(pg->conn));
        return;
    }
    watch(pg, f == 1 || pg->copy_active ? UV_READABLE | UV_WRITABLE : UV_READABLE);
}

static void on_poll(uv_poll_t *h, int status, int events) {
    HM_UNUSED(events);
    ar_pg *pg = h->data;
    if (!pg->conn) return;
    if (status < 0) {
        drop(pg, "socket", uv_strerror(status));
        return;
    }
    if (pg->state == AR_PG_CONNECTING) {
        connect_poll(pg);
        return;
    }
    if (pg->in_flight) {
        pump(pg);
        return;
    }
    /* Idle: the server closed the connection (restart) or sent a notice. */
    if (!PQconsumeInput(pg->conn) || PQstatus(pg->conn) == CONNECTION_BAD) {
        drop(pg, "connection", PQerrorMessage(pg->conn));
        return;
    }
    PGresult *r;
    while (!PQisBusy(pg->conn) && (r = PQgetResult(pg->conn)))
        PQclear(r);
}

static void run(ar_pg *pg, const char *sql, step_fn next) {
    pg->step = next;
    if (send_query(pg, sql, NULL, 0) != 0) {
        pg->step = NULL;
        drop(pg, "send", PQerrorMessage(pg->conn));
        return;
    }
    pump(pg);
}

/* ---- migrations and the session ------------------------------------------------------- */

static void migration_step(ar_pg *pg, int err, const char *reason, const PGresult *last);

static void session_ready(ar_pg *pg, int err, const char *reason, const PGresult *last) {
    HM_UNUSED(last);
    if (err) return; /* dropped already; reconnecting */
    HM_UNUSED(reason);
    pg->backoff_ms = 0;
    set_state(pg, AR_PG_READY);
}

static void unlocked(ar_pg *pg, int err, const char *reason, const PGresult *last) {
    HM_UNUSED(last);
    HM_UNUSED(reason);
    if (err) return;
    if (pg->o.migrate_only) {
        pg->backoff_ms = 0;
        set_state(pg, AR_PG_READY);
        return;
    }
    run(pg, "SELECT himari_session_init()", session_ready);
}

static void migration_failed(ar_pg *pg, const char *why, bool fatal) {
    hm_log_error("migration_failed", HM_LS("error", why));
    pg->fatal |= fatal;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", why);
    drop(pg, "migrate", msg);
}

static void migration_step(ar_pg *pg, int err, const char *reason, const PGresult *last) {
    HM_UNUSED(last);
    if (err) {
        /* The connection is gone (a failed migration rolled back with it). */
        hm_log_error("migration_failed", HM_LS("error", reason ? reason : ""));
        if (pg->o.migrate_only) pg->fatal = true;
        ar_migration_plan_free(&pg->plan);
        return;
    }
    if (pg->plan_step > 0) pg->applied = pg->plan_step;
    if (pg->plan_step < pg->plan.n_steps) {
        run(pg, pg->plan.steps[pg->plan_step++], migration_step);
        return;
    }
    if (pg->plan.n_pending)
        hm_log_info("migrations_applied", HM_LI("applied", pg->plan.n_pending),
                    HM_LI("already", pg->plan.n_applied), HM_LS("storage", pg->storage));
    pg->applied = pg->plan.n_pending;
    ar_migration_plan_free(&pg->plan);
    run(pg, ar_migrations_unlock_sql, unlocked);
}

static void bootstrapped(ar_pg *pg, int err, const char *reason, const PGresult *last) {
    HM_UNUSED(reason);
    if (err) return;
    if (!last || PQntuples(last) != 1 || PQnfields(last) != 2) {
        migration_failed(pg, "the migration bootstrap returned no row", false);
        return;
    }
    hm_err e = {{0}};
    if (ar_migrations_plan(PQgetvalue(last, 0, 0), PQgetvalue(last, 0, 1), &pg->plan, &e) != 0) {
        migration_failed(pg, e.msg, true);
        return;
    }
    snprintf(pg->storage, sizeof(pg->storage), "%s", pg->plan.storage);
    if (pg->plan.unknown[0])
        hm_log_warn("migrations_unknown", HM_LS("versions", pg->plan.unknown),
                    HM_LS("hint", "the database has migrations of a newer archiver"));
    pg->plan_step = 0;
    migration_step(pg, 0, NULL, NULL);
}

static void begin_migrations(ar_pg *pg) {
    set_state(pg, AR_PG_MIGRATING);
    pg->applied = 0;
    run(pg, ar_migrations_bootstrap_sql, bootstrapped);
}

/* ---- the public part ------------------------------------------------------------------ */

ar_pg *ar_pg_new(uv_loop_t *loop, const ar_pg_opts *opts) {
    ar_pg *pg = hm_xcalloc(1, sizeof(*pg));
    pg->loop = loop;
    pg->o = *opts;
    uv_timer_init(loop, &pg->timer);
    pg->timer.data = pg;
    start_connect(pg);
    return pg;
}

int ar_pg_query(ar_pg *pg, const char *sql, const ar_pg_copy *copies, size_t n_copies,
                ar_pg_query_cb cb, void *ud) {
    if (pg->state != AR_PG_READY || pg->in_flight) return -EAGAIN;
    if (send_query(pg, sql, copies, n_copies) != 0) {
        drop(pg, "send", PQerrorMessage(pg->conn));
        return -EAGAIN;
    }
    pg->cb = cb;
    pg->cb_ud = ud;
    set_state(pg, AR_PG_BUSY);
    pump(pg);
    return 0;
}

ar_pg_state ar_pg_get_state(const ar_pg *pg) {
    return pg->state;
}
const char *ar_pg_last_error(const ar_pg *pg) {
    return pg->last_error;
}
const char *ar_pg_storage(const ar_pg *pg) {
    return pg->storage;
}
size_t ar_pg_migrations_applied(const ar_pg *pg) {
    return pg->applied;
}
bool ar_pg_fatal(const ar_pg *pg) {
    return pg->fatal;
}

static void free_pg(uv_handle_t *h) {
    free(h->data);
}

void ar_pg_close(ar_pg *pg) {
    if (!pg || pg->state == AR_PG_CLOSED) return;
    set_state(pg, AR_PG_CLOSED);
    if (pg->in_flight) finish_query(pg, -ECANCELED, "closing");
    close_poll(pg);
    if (pg->conn) PQfinish(pg->conn);
    pg->conn = NULL;
    ar_migration_plan_free(&pg->plan);
    uv_close((uv_handle_t *)&pg->timer, free_pg);
}
