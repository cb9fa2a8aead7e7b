/*
 * export.h: the cold archive: one Parquet file per (UTC date, exchange) of market_data,
 *
 *   market_data/date=YYYY-MM-DD/exchange=X/part-0.parquet
 *
 * in S3-compatible storage (s3.endpoint set: written under archive.directory/.staging,
 * uploaded, then removed) or under archive.directory (no S3). Rows are in (timestamp,
 * source_partition, source_offset) order, one column per market_data column (issues as
 * one comma-joined string) but exchange, which is in the path, as Hive-style readers expect. After
 * the file is stored the export is recorded in archive_exports with the rows it holds; a day whose
 * rows in market_data_days differ from that (late rows) is due again, and its file is replaced
 * whole.
 *
 * Everything here blocks (its own libpq connection, the disk, S3): it runs on a worker
 * thread (exporter.h) or in the offline `archiver --export-day DATE`, never on the loop.
 * It does not log (logging is the loop thread's): results and errors are returned.
 */
#ifndef AR_EXPORT_H
#define AR_EXPORT_H

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "himari/common.h"
#include "parquet.h"
#include "s3.h"

#define AR_EXPORT_DATE_LEN     11 /* YYYY-MM-DD and its NUL */
#define AR_EXPORT_EXCHANGE_MAX 64
#define AR_EXPORT_KEY_MAX      (64 + 3 * AR_EXPORT_EXCHANGE_MAX)

/** What an export needs, copied from the configuration (a reload may free the original). */
typedef struct ar_export_settings {
    ar_pg_config pg;
    ar_s3_config s3; /* endpoint "": the directory is the archive */
    char *directory;
    ar_pq_codec codec;
    int zstd_level;
    int64_t row_group_rows;
} ar_export_settings;

/** @brief Copy what the exports read from cfg into s (strings duplicated). */
int ar_export_settings_init(ar_export_settings *s, const ar_config *cfg) HM_MUST_CHECK;
void ar_export_settings_free(ar_export_settings *s);
/** @brief Whether s sends the files to S3 (else they stay under s->directory). */
bool ar_export_uses_s3(const ar_export_settings *s);

/** One (date, exchange) to export. */
typedef struct ar_export_day {
    char date[AR_EXPORT_DATE_LEN];
    char exchange[AR_EXPORT_EXCHANGE_MAX + 1];
} ar_export_day;

/** What one export did. */
typedef struct ar_export_result {
    ar_export_day day;
    char key[AR_EXPORT_KEY_MAX];
    char destination[1024]; /* s3://bucket/key or the file's path */
    int64_t rows;
    int64_t bytes;              /* the Parquet file */
    int64_t uncompressed_bytes; /* its column chunks before compression */
    int64_t json_bytes;         /* the same rows as JSON lines: the ratio's reference */
    double query_s, write_s, upload_s;
    ar_s3_put_stats put; /* S3 only */
} ar_export_result;

/** Read by the exports every 64k rows: a true value stops them with -ECANCELED. */
typedef struct ar_export_ctl {
    atomic_bool cancel;
    atomic_int_fast64_t rows_done; /* rows of the export in progress, for status */
} ar_export_ctl;

/** @brief A blocking connection for s->pg (UTC session); err says why it failed. */
int ar_export_connect(const ar_export_settings *s, PGconn **out, char *err,
                      size_t errlen) HM_MUST_CHECK;

/**
 * @brief Closed days to export: those that ended grace_s or more ago (UTC), are within
 * retention_days (0: any), and have no export or one with other rows than
 * market_data_days holds now; at most max, oldest first. *days is malloc'd.
 */
int ar_export_due(PGconn *c, int64_t grace_s, int64_t retention_days, size_t max,
                  ar_export_day **days, size_t *n, char *err, size_t errlen) HM_MUST_CHECK;
/** @brief The exchanges with rows in market_data on date (all of them when exchange is
 *  NULL; else that one when it has rows), sorted. *days is malloc'd. */
int ar_export_days_of(PGconn *c, const char *date, const char *exchange, ar_export_day **days,
                      size_t *n, char *err, size_t errlen) HM_MUST_CHECK;

/**
 * @brief Export one day: query, write the Parquet file, store it (s3 non-NULL: upload),
 * record it in archive_exports. A day without rows writes nothing and returns -ENOENT.
 * On any failure nothing is recorded and no partial file is left at the destination; the
 * connection may be left mid-query: close it (PQfinish) and make a new one.
 */
int ar_export_one(PGconn *c, const ar_export_settings *s, ar_s3 *s3, const ar_export_day *day,
                  ar_export_ctl *ctl, ar_export_result *res, char *err,
                  size_t errlen) HM_MUST_CHECK;

/** Called after each day of ar_export_days: rc 0 and res, or the error in err. */
typedef void (*ar_export_done_cb)(void *ud, const ar_export_day *day, int rc,
                                  const ar_export_result *res, const char *err);

/**
 * @brief Export days[0..n) in order through one S3 client (when s uses S3; the bucket is
 * created when missing), reporting each to cb. A failed day does not stop the others: the
 * next one gets a new connection (*c is replaced). Stops early when ctl->cancel is set.
 * Returns 0, or the error that stopped it (S3 unusable, PostgreSQL unreachable) in err.
 */
int ar_export_days(PGconn **c, const ar_export_settings *s, const ar_export_day *days, size_t n,
                   ar_export_ctl *ctl, ar_export_done_cb cb, void *ud, char *err,
                   size_t errlen) HM_MUST_CHECK;

/* ---- pure helpers (tests/unit/test_archiver_export.c) ------------------------------ */

/** @brief Whether s is a real calendar date written YYYY-MM-DD. */
bool ar_export_date_valid(const char *s);
/**
 * @brief The object key of day: market_data/date=D/exchange=E/part-0.parquet, the
 * exchange escaped as Hive escapes partition values (every byte but A-Z a-z 0-9 _ - . as
 * %XX, and a leading "."), so no value can make a path of its own ("..", "/"). -ENOSPC when
 * it does not fit.
 */
int ar_export_key(const ar_export_day *day, char *out, size_t outlen) HM_MUST_CHECK;

#endif
