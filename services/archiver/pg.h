/*
 * pg.h: the archiver's PostgreSQL connection on the loop: libpq in non-blocking mode, a
 * uv_poll on its socket, one query (string) in flight at a time.
 *
 *   DOWN --connect--> CONNECTING --> MIGRATING (migrations.h) --> READY <--> BUSY
 *     ^                                                             |
 *     '----------- error, timeout, server gone (back-off 100 ms .. 5 s) ------'
 *
 * A query may carry COPY data: the statements are sent as one simple query (one implicit
 * transaction, one round trip), and each COPY's data is streamed when the server asks for
 * it.
 * Every failure closes the connection (which rolls back what was open) and reconnects
 * with back-off; the query's callback gets the error, and the caller decides to retry.
 * Never blocks the loop.
 */
#ifndef AR_PG_H
#define AR_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "himari/common.h"

typedef enum ar_pg_state {
    AR_PG_DOWN = 0,   /* no connection; a reconnect is scheduled */
    AR_PG_CONNECTING, /* TCP, TLS, authentication */
    AR_PG_MIGRATING,  /* applying sql/ migrations, then the session's temp tables */
    AR_PG_READY,      /* idle: a query can be sent */
    AR_PG_BUSY,       /* a query is in flight */
    AR_PG_CLOSED,     /* ar_pg_close was called */
} ar_pg_state;

typedef struct ar_pg ar_pg;

/** A query's end. err 0: every statement succeeded; last: its last result with rows
 *  (NULL when none), valid during the call only. */
typedef void (*ar_pg_query_cb)(ar_pg *pg, int err, const char *reason, const PGresult *last,
                               void *ud);
/** The connection changed state (e.g. READY: flushes can go). */
typedef void (*ar_pg_state_cb)(ar_pg *pg, ar_pg_state state, void *ud);

typedef struct ar_pg_opts {
    const ar_pg_config *cfg; /* read at every connect */
    bool migrate_only;       /* --migrate: no temp tables, no reconnect after a failure */
    ar_pg_state_cb on_state;
    void *ud;
} ar_pg_opts;

/** @brief Create the connection and start connecting. Close with ar_pg_close. */
ar_pg *ar_pg_new(uv_loop_t *loop, const ar_pg_opts *opts);

/** The data of one COPY FROM STDIN (referenced, not copied). */
typedef struct ar_pg_copy {
    const char *data;
    size_t len;
} ar_pg_copy;
#define AR_PG_MAX_COPIES 8

/**
 * @brief Send sql (one or more statements) and, for its i-th COPY FROM STDIN, the data
 * copies[i] (keep it until cb). One query at a time.
 * @return 0 (cb will be called exactly once), -EAGAIN when not READY (cb not called).
 */
int ar_pg_query(ar_pg *pg, const char *sql, const ar_pg_copy *copies, size_t n_copies,
                ar_pg_query_cb cb, void *ud) HM_MUST_CHECK;

ar_pg_state ar_pg_get_state(const ar_pg *pg);
const char *ar_pg_state_name(ar_pg_state s);
/** @brief The last error ("" when none): connect, migration or query. */
const char *ar_pg_last_error(const ar_pg *pg);
/** @brief "plain" or "timescaledb" once migrated, else "". */
const char *ar_pg_storage(const ar_pg *pg);
/** @brief Migrations applied by this connection's last migration run. */
size_t ar_pg_migrations_applied(const ar_pg *pg);
/** @brief A migration failed for good (--migrate, or a changed applied migration). */
bool ar_pg_fatal(const ar_pg *pg);

/** libpq connection keywords for cfg (PQconnectdbParams / PQconnectStartParams). */
typedef struct ar_pg_conn_params {
    const char *keys[14];
    const char *vals[14]; /* point into cfg, app and the buffers below */
    char port[16];
    char options[128];
    char connect_timeout[24];
} ar_pg_conn_params;

/** @brief Fill p for cfg: UTC session, statement_timeout, TCP keepalives, app name,
 *  connect_timeout (seconds; used by blocking connects only). */
void ar_pg_conn_params_init(ar_pg_conn_params *p, const ar_pg_config *cfg, const char *app);

/** @brief Close (an open query's callback gets -ECANCELED first); frees in the loop. */
void ar_pg_close(ar_pg *pg);

#endif
