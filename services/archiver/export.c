/*
 * export.c: one (date, exchange) of market_data into a Parquet file, stored in S3 or a
 * directory and recorded in archive_exports (export.h).
 *
 *   SELECT ... ORDER BY timestamp, source_partition, source_offset   (single-row mode)
 *     --> ar_pq writer: <file>.tmp, fsync, rename
 *     --> S3: multipart PUT, HEAD size check, staging file removed | directory: in place
 *     --> INSERT INTO archive_exports ... ON CONFLICT DO UPDATE
 */
#include "export.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pg.h"

#define CANCEL_EVERY 65536

/* ---- settings --------------------------------------------------------------------- */

static int dup_str(char **dst, const char *src) {
    *dst = strdup(src ? src : "");
    return *dst ? 0 : -ENOMEM;
}

int ar_export_settings_init(ar_export_settings *s, const ar_config *cfg) {
    memset(s, 0, sizeof(*s));
    s->pg = cfg->pg;
    s->s3 = cfg->s3;
    s->pg.host = s->pg.dbname = s->pg.user = s->pg.password = s->pg.sslmode = NULL;
    s->s3.endpoint = s->s3.region = s->s3.bucket = s->s3.access_key = s->s3.secret_key = NULL;
    int rc = dup_str(&s->pg.host, cfg->pg.host) | dup_str(&s->pg.dbname, cfg->pg.dbname) |
             dup_str(&s->pg.user, cfg->pg.user) | dup_str(&s->pg.password, cfg->pg.password) |
             dup_str(&s->pg.sslmode, cfg->pg.sslmode) | dup_str(&s->s3.endpoint, cfg->s3.endpoint) |
             dup_str(&s->s3.region, cfg->s3.region) | dup_str(&s->s3.bucket, cfg->s3.bucket) |
             dup_str(&s->s3.access_key, cfg->s3.access_key) |
             dup_str(&s->s3.secret_key, cfg->s3.secret_key) |
             dup_str(&s->directory, cfg->archive_directory);
    if (ar_pq_codec_parse(cfg->archive_codec ? cfg->archive_codec : "", &s->codec) != 0)
        rc = -EINVAL; /* the configuration's own check refuses this first */
    s->zstd_level = (int)cfg->archive_zstd_level;
    s->row_group_rows = cfg->archive_row_group_rows;
    if (rc != 0) {
        ar_export_settings_free(s);
        return rc == -EINVAL ? rc : -ENOMEM;
    }
    return 0;
}

void ar_export_settings_free(ar_export_settings *s) {
    char **strs[] = {&s->pg.host,       &s->pg.dbname,     &s->pg.user,   &s->pg.password,
                     &s->pg.sslmode,    &s->s3.endpoint,   &s->s3.region, &s->s3.bucket,
                     &s->s3.access_key, &s->s3.secret_key, &s->directory};
    for (size_t i = 0; i < HM_ARRAY_LEN(strs); i++) {
        if (*strs[i] && strs[i] != &s->directory) /* secrets: wiped before they are freed */
            explicit_bzero(*strs[i], strlen(*strs[i]));
        free(*strs[i]);
        *strs[i] = NULL;
    }
}

bool ar_export_uses_s3(const ar_export_settings *s) {
    return s->s3.endpoint && *s->s3.endpoint;
}

/* ---- pure helpers ------------------------------------------------------------------ */

bool ar_export_date_valid(const char *s) {
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-') return false;
    for (int i = 0; i < 10; i++) {
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) return false;
    }
    int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
    static const int k_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || m < 1 || m > 12 || d < 1) return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= k_days[m - 1] + (m == 2 && leap);
}

static bool keeps(char c, bool first) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || (c == '.' && !first);
}

int ar_export_key(const ar_export_day *day, char *out, size_t outlen) {
    char ex[3 * AR_EXPORT_EXCHANGE_MAX + 1];
    size_t n = 0;
    for (const char *p = day->exchange; *p; p++) {
        if (n + 4 > sizeof(ex)) return -ENOSPC;
        if (keeps(*p, p == day->exchange)) {
            ex[n++] = *p;
        } else {
            n += (size_t)snprintf(ex + n, 4, "%%%02X", (unsigned char)*p);
        }
    }
    ex[n] = '\0';
    int w = snprintf(out, outlen, "market_data/date=%s/exchange=%s/part-0.parquet", day->date, ex);
    return w < 0 || (size_t)w >= outlen ? -ENOSPC : 0;
}

/* ---- PostgreSQL ------------------------------------------------------------------- */

static int pg_fail(PGconn *c, const char *what, char *err, size_t errlen) {
    const char *m = PQerrorMessage(c);
    size_t len = strlen(m);
    while (len > 0 && (m[len - 1] == '\n' || m[len - 1] == ' '))
        len--;
    snprintf(err, errlen, "%s: %.*s", what, (int)(len > 400 ? 400 : len), m);
    return -EIO;
}

int ar_export_connect(const ar_export_settings *s, PGconn **out, char *err, size_t errlen) {
    ar_pg_conn_params p = {0};
    ar_pg_conn_params_init(&p, &s->pg, "himari-archiver-export");
    PGconn *c = PQconnectdbParams(p.keys, p.vals, 0);
    if (!c) {
        snprintf(err, errlen, "postgres connect: out of memory");
        return -ENOMEM;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        int rc = pg_fail(c, "postgres connect", err, errlen);
        PQfinish(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Rows of (date, exchange) text pairs into a malloc'd array of days. */
static int days_from(PGconn *c, PGresult *r, const char *what, ar_export_day **days, size_t *n,
                     char *err, size_t errlen) {
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = pg_fail(c, what, err, errlen);
        PQclear(r);
        return rc;
    }
    size_t rows = (size_t)PQntuples(r);
    ar_export_day *d = calloc(rows ? rows : 1, sizeof(*d));
    if (!d) {
        PQclear(r);
        snprintf(err, errlen, "%s: out of memory", what);
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < rows; i++) {
        const char *ex = PQgetvalue(r, (int)i, 1);
        if (strlen(ex) > AR_EXPORT_EXCHANGE_MAX) { /* the validator never lets one through */
            snprintf(err, errlen, "%s: exchange name of %zu bytes on %s is over %d: skipped", what,
                     strlen(ex), PQgetvalue(r, (int)i, 0), AR_EXPORT_EXCHANGE_MAX);
            continue;
        }
        snprintf(d[k].date, sizeof(d[k].date), "%s", PQgetvalue(r, (int)i, 0));
        snprintf(d[k].exchange, sizeof(d[k].exchange), "%s", ex);
        k++;
    }
    PQclear(r);
    *days = d;
    *n = k;
    return 0;
}

int ar_export_due(PGconn *c, int64_t grace_s, int64_t retention_days, size_t max,
                  ar_export_day **days, size_t *n, char *err, size_t errlen) {
    char grace[24], keep[24], lim[24];
    snprintf(grace, sizeof(grace), "%" PRId64, grace_s);
    snprintf(keep, sizeof(keep), "%" PRId64, retention_days);
    snprintf(lim, sizeof(lim), "%zu", max);
    const char *params[] = {grace, keep, lim};
    /* A day ends at the next midnight UTC; it is closed grace_s after that. */
    PGresult *r =
        PQexecParams(c,
                     "SELECT d.date::text, d.exchange FROM market_data_days d "
                     "LEFT JOIN archive_exports e "
                     "ON e.date = d.date AND e.exchange = d.exchange "
                     "WHERE d.date + 1 <= (now() - make_interval(secs => $1::int8))::date "
                     "AND ($2::int8 = 0 OR d.date >= current_date - ($2::int8)::int) "
                     "AND (e.rows IS NULL OR e.rows <> d.rows) "
                     "ORDER BY d.date, d.exchange LIMIT $3::int8",
                     3, NULL, params, NULL, NULL, 0);
    return days_from(c, r, "due days", days, n, err, errlen);
}

int ar_export_days_of(PGconn *c, const char *date, const char *exchange, ar_export_day **days,
                      size_t *n, char *err, size_t errlen) {
    const char *params[] = {date, exchange};
    PGresult *r = PQexecParams(c,
                               "SELECT DISTINCT $1::date::text, exchange FROM market_data "
                               "WHERE timestamp >= $1::date AND timestamp < $1::date + 1 "
                               "AND ($2::text IS NULL OR exchange = $2) ORDER BY 2",
                               2, NULL, params, NULL, NULL, 0);
    return days_from(c, r, "exchanges of the day", days, n, err, errlen);
}

/* ---- the file ---------------------------------------------------------------------- */

enum {
    C_TIMESTAMP,
    C_SYMBOL,
    C_PRICE,
    C_VOLUME,
    C_QUALITY,
    C_ISSUES,
    C_TRADE_ID,
    C_SIDE,
    C_TYPE,
    C_PROCESSED_AT,
    C_INGESTED_AT,
    C_SOURCE_TOPIC,
    C_SOURCE_PARTITION,
    C_SOURCE_OFFSET,
    NCOLS
};

/*
 * The table's columns, in its order and with its names and nullability, but exchange:
 * that is in the file's path (exchange=X/), as Hive-style readers (pyarrow datasets,
 * DuckDB hive_partitioning, Spark) expect, and a reader that finds it in the file too
 * either refuses the file or must choose.
 */
static const ar_pq_column k_cols[NCOLS] = {
    [C_TIMESTAMP] = {"timestamp", AR_PQ_TIMESTAMP_US, false, false},
    [C_SYMBOL] = {"symbol", AR_PQ_STRING, false, true},
    [C_PRICE] = {"price", AR_PQ_DOUBLE, false, false},
    [C_VOLUME] = {"volume", AR_PQ_DOUBLE, true, false},
    [C_QUALITY] = {"quality_score", AR_PQ_FLOAT, false, false},
    [C_ISSUES] = {"issues", AR_PQ_STRING, false, true},
    [C_TRADE_ID] = {"trade_id", AR_PQ_STRING, true, false},
    [C_SIDE] = {"side", AR_PQ_STRING, true, true},
    [C_TYPE] = {"type", AR_PQ_STRING, false, true},
    [C_PROCESSED_AT] = {"processed_at", AR_PQ_TIMESTAMP_US, true, false},
    [C_INGESTED_AT] = {"ingested_at", AR_PQ_TIMESTAMP_US, false, false},
    [C_SOURCE_TOPIC] = {"source_topic", AR_PQ_STRING, false, true},
    [C_SOURCE_PARTITION] = {"source_partition", AR_PQ_INT32, false, false},
    [C_SOURCE_OFFSET] = {"source_offset", AR_PQ_INT64, false, false},
};

/* Timestamps as microseconds since the epoch (exact: numeric arithmetic). */
/* clang-format off */
#define EPOCH_US(col) "(extract(epoch FROM " col ") * 1000000)::int8"
static const char k_select[] =
    "SELECT " EPOCH_US("timestamp") ", symbol, price, volume, quality_score, "
    "array_to_string(issues, ','), trade_id, side, type, "
    EPOCH_US("processed_at") ", " EPOCH_US("ingested_at") ", "
    "source_topic, source_partition, source_offset "
    "FROM market_data WHERE exchange = $2 "
    "AND timestamp >= $1::date AND timestamp < $1::date + 1 "
    "ORDER BY timestamp, source_partition, source_offset";
/* clang-format on */

/* Bytes of a JSON text of a timestamp: "2026-12-01T10:00:00.123456Z" with its quotes. */
#define JSON_TS_BYTES 29

/*
 * One result row into the writer's current row; *json grows by the size of the same row
 * as a JSON line ({"timestamp":"...Z","symbol":"...",...}, nulls left out, no escapes):
 * what the compression ratio is measured against.
 */
static int put_row(ar_pq_writer *w, const PGresult *r, size_t exchange_len, int64_t *json) {
    int rc = 0;
    /* {} and the newline, less the last comma; "exchange":"X", */
    *json += 2 + (int64_t)(sizeof("\"exchange\":\"\",") - 1 + exchange_len);
    for (int col = 0; col < NCOLS && rc == 0; col++) {
        if (PQgetisnull(r, 0, col)) {
            rc = ar_pq_put_null(w, (size_t)col);
            continue;
        }
        const char *v = PQgetvalue(r, 0, col);
        int64_t len = PQgetlength(r, 0, col);
        *json += (int64_t)strlen(k_cols[col].name) + 4; /* "name": and a comma */
        *json += k_cols[col].type == AR_PQ_TIMESTAMP_US ? JSON_TS_BYTES
                 : k_cols[col].type == AR_PQ_STRING     ? len + 2
                                                        : len;
        switch (k_cols[col].type) {
            case AR_PQ_TIMESTAMP_US:
            case AR_PQ_INT64:
                rc = ar_pq_put_int64(w, (size_t)col, strtoll(v, NULL, 10));
                break;
            case AR_PQ_INT32:
                rc = ar_pq_put_int32(w, (size_t)col, (int32_t)strtol(v, NULL, 10));
                break;
            case AR_PQ_DOUBLE: /* PostgreSQL sends the shortest text that reads back exact */
                rc = ar_pq_put_double(w, (size_t)col, strtod(v, NULL));
                break;
            case AR_PQ_FLOAT:
                rc = ar_pq_put_float(w, (size_t)col, strtof(v, NULL));
                break;
            case AR_PQ_STRING:
                rc = ar_pq_put_string(w, (size_t)col, v, (size_t)len);
                break;
        }
    }
    return rc != 0 ? rc : ar_pq_end_row(w);
}

/* Every directory above path (mkdir -p of its dirname). */
static int make_parents(const char *path, char *err, size_t errlen) {
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s", path);
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            snprintf(err, errlen, "mkdir %s: %s", dir, strerror(e));
            return -e;
        }
        *p = '/';
    }
    return 0;
}

/* Query the day's rows and write them to path; res->rows/bytes filled. */
static int write_file(PGconn *c, const ar_export_settings *s, const ar_export_day *day,
                      const char *path, ar_export_ctl *ctl, ar_export_result *res, char *err,
                      size_t errlen) {
    const char *params[] = {day->date, day->exchange};
    if (!PQsendQueryParams(c, k_select, 2, NULL, params, NULL, NULL, 0) || !PQsetSingleRowMode(c))
        return pg_fail(c, "select", err, errlen);
    ar_pq_writer *w = NULL;
    ar_pq_options o = {
        .codec = s->codec, .zstd_level = s->zstd_level, .row_group_rows = s->row_group_rows};
    int rc = 0;
    uint64_t t0 = hm_mono_ns();
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (rc == 0 && st == PGRES_SINGLE_TUPLE) {
            if (!w) {
                rc = make_parents(path, err, errlen);
                if (rc == 0) rc = ar_pq_open(&w, path, k_cols, NCOLS, &o, err, errlen);
            }
            if (rc == 0 && put_row(w, r, strlen(day->exchange), &res->json_bytes) != 0) {
                snprintf(err, errlen, "parquet %s: %s", path, ar_pq_errmsg(w));
                rc = -EIO;
            }
            if (rc == 0 && ++res->rows % CANCEL_EVERY == 0) {
                atomic_store(&ctl->rows_done, res->rows);
                if (atomic_load(&ctl->cancel)) {
                    snprintf(err, errlen, "cancelled (the archiver is stopping)");
                    rc = -ECANCELED;
                }
            }
        } else if (rc == 0 && st != PGRES_TUPLES_OK) {
            rc = pg_fail(c, "select", err, errlen);
        }
        PQclear(r);
        /* Cancelled or failed: the connection is closed by the caller, which ends the
         * query; draining a day of rows first would only delay the stop. */
        if (rc != 0) break;
    }
    res->query_s = (double)(hm_mono_ns() - t0) / 1e9;
    if (rc != 0 || !w) {
        ar_pq_abort(w);
        return rc != 0 ? rc : -ENOENT;
    }
    uint64_t t1 = hm_mono_ns();
    ar_pq_stats ps;
    rc = ar_pq_close(w, &ps, err, errlen);
    res->write_s = (double)(hm_mono_ns() - t1) / 1e9;
    res->bytes = ps.bytes;
    res->uncompressed_bytes = ps.uncompressed_bytes;
    return rc;
}

static int record(PGconn *c, const ar_export_settings *s, const ar_export_result *res, char *err,
                  size_t errlen) {
    char rows[24], bytes[24];
    snprintf(rows, sizeof(rows), "%" PRId64, res->rows);
    snprintf(bytes, sizeof(bytes), "%" PRId64, res->bytes);
    const char *params[] = {res->day.date, res->day.exchange,          res->key,        rows,
                            bytes,         ar_pq_codec_name(s->codec), res->destination};
    PGresult *r = PQexecParams(
        c,
        "INSERT INTO archive_exports (date, exchange, key, rows, bytes, codec, destination) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (date, exchange) DO UPDATE SET "
        "key = EXCLUDED.key, rows = EXCLUDED.rows, bytes = EXCLUDED.bytes, "
        "codec = EXCLUDED.codec, destination = EXCLUDED.destination, exported_at = now()",
        7, NULL, params, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pg_fail(c, "archive_exports", err, errlen);
    PQclear(r);
    return rc;
}

int ar_export_one(PGconn *c, const ar_export_settings *s, ar_s3 *s3, const ar_export_day *day,
                  ar_export_ctl *ctl, ar_export_result *res, char *err, size_t errlen) {
    memset(res, 0, sizeof(*res));
    res->day = *day;
    atomic_store(&ctl->rows_done, 0);
    int rc = ar_export_key(day, res->key, sizeof(res->key));
    if (rc != 0) {
        snprintf(err, errlen, "exchange '%s': key too long", day->exchange);
        return rc;
    }
    char path[1024];
    if (s3) {
        char flat[AR_EXPORT_KEY_MAX];
        snprintf(flat, sizeof(flat), "%s", res->key);
        for (char *p = flat; *p; p++) {
            if (*p == '/') *p = '_';
        }
        snprintf(path, sizeof(path), "%s/.staging/%s", s->directory, flat);
        snprintf(res->destination, sizeof(res->destination), "s3://%s/%s", s->s3.bucket, res->key);
    } else {
        snprintf(path, sizeof(path), "%s/%s", s->directory, res->key);
        snprintf(res->destination, sizeof(res->destination), "%s", path);
    }
    rc = write_file(c, s, day, path, ctl, res, err, errlen);
    if (rc == -ENOENT) snprintf(err, errlen, "no rows on %s for %s", day->date, day->exchange);
    if (rc != 0) return rc;
    if (s3) {
        uint64_t t0 = hm_mono_ns();
        rc = ar_s3_put_file(s3, res->key, path, "application/vnd.apache.parquet", &res->put, err,
                            errlen);
        res->upload_s = (double)(hm_mono_ns() - t0) / 1e9;
        unlink(path); /* stored or not: the next attempt writes it again from the table */
        if (rc != 0) return rc;
    }
    return record(c, s, res, err, errlen);
}

int ar_export_days(PGconn **c, const ar_export_settings *s, const ar_export_day *days, size_t n,
                   ar_export_ctl *ctl, ar_export_done_cb cb, void *ud, char *err, size_t errlen) {
    ar_s3 *s3 = NULL;
    int rc = 0;
    if (n > 0 && ar_export_uses_s3(s)) {
        rc = ar_s3_open(&s3, &s->s3, err, errlen);
        if (rc == 0) rc = ar_s3_ensure_bucket(s3, err, errlen);
    }
    for (size_t i = 0; rc == 0 && i < n && !atomic_load(&ctl->cancel); i++) {
        ar_export_result res;
        char why[512] = "";
        int one = ar_export_one(*c, s, s3, &days[i], ctl, &res, why, sizeof(why));
        cb(ud, &days[i], one, &res, why);
        if (one != 0) { /* the connection may be mid-query: a new one for the next day */
            PQfinish(*c);
            *c = NULL;
            rc = ar_export_connect(s, c, err, errlen);
        }
    }
    ar_s3_close(s3);
    return rc;
}
