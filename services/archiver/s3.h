/*
 * s3.h: the archiver's blocking client for an S3-compatible object store (versitygw in
 * tests, any S3 in production), on libcurl easy handles with curl's own SigV4 signing.
 *
 * It runs on the archiver's upload worker thread, never on the event loop: every call
 * blocks until the store answers or the attempts are spent. One ar_s3 is one connection
 * (kept alive between requests) and must be used by one thread at a time.
 *
 * Every request is retried with exponential backoff and jitter on connection errors,
 * timeouts, 5xx, 429 and S3's SlowDown/InternalError; any other 4xx fails at once with
 * the S3 error Code and Message in err. Secrets never appear in err or in any output.
 *
 * The pure helpers at the end (key encoding, XML extraction, part planning, retry
 * classification) are what the requests are made of; they are exported for unit tests.
 */
#ifndef AR_S3_H
#define AR_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "himari/common.h"

/** S3's limits on multipart uploads: parts of at least 5 MiB (but the last), 10000 parts. */
#define AR_S3_MIN_PART_BYTES ((int64_t)5 << 20)
#define AR_S3_MAX_PARTS      10000
/** Defaults for config fields left at 0. */
#define AR_S3_DEFAULT_PART_MB    16
#define AR_S3_DEFAULT_ATTEMPTS   5
#define AR_S3_DEFAULT_TIMEOUT_MS 60000
#define AR_S3_CONNECT_TIMEOUT_MS 5000
/** Backoff between attempts: 200 ms doubling to 10 s, with jitter (ar_s3_backoff_ms). */
#define AR_S3_BACKOFF_BASE_MS 200
#define AR_S3_BACKOFF_MAX_MS  10000
/**
 * How often a multipart upload starts over after the store lost it: NoSuchUpload (its id
 * forgotten, e.g. after a restart on a store that keeps uploads in memory), or InvalidPart
 * at completion although every part was acknowledged.
 */
#define AR_S3_MAX_RESTARTS 3

/** A client of one bucket: a curl handle, the credentials, the retry policy. */
typedef struct ar_s3 ar_s3;

/** What a put_file did: for logs and metrics. */
typedef struct ar_s3_put_stats {
    int64_t bytes;  /* the object's size */
    int parts;      /* 0: a single PUT */
    int attempts;   /* HTTP requests sent, HEAD check included */
    int retries;    /* of those, repeats after a retryable failure */
    int restarts;   /* multipart uploads begun again after NoSuchUpload */
    double seconds; /* wall time of the whole put, HEAD check included */
} ar_s3_put_stats;

/** One object of a listing; the pointers live until the callback returns. */
typedef struct ar_s3_object {
    const char *key;
    int64_t size;
    const char *last_modified; /* as S3 sends it, ISO-8601 UTC */
    const char *etag;          /* with its quotes, as S3 sends it */
} ar_s3_object;

/** @brief Called once per listed object, in key order; non-zero stops the listing. */
typedef int (*ar_s3_list_cb)(void *ud, const ar_s3_object *obj);

/** @brief Called after each part (or the single PUT) of a put_file is stored. */
typedef void (*ar_s3_progress_cb)(void *ud, int64_t done_bytes, int64_t total_bytes, int parts_done,
                                  int parts_total);

/**
 * @brief Make a client for cfg->bucket at cfg->endpoint. Copies what it needs from cfg
 * (cfg may be freed after). Fields at 0 take the AR_S3_DEFAULT_* values; a part size
 * under 5 MiB is refused (S3 would reject the parts at completion). Sends nothing.
 * The caller closes *out with ar_s3_close.
 */
int ar_s3_open(ar_s3 **out, const ar_s3_config *cfg, char *err, size_t errlen) HM_MUST_CHECK;
/** @brief Close the connection and free the client; NULL is a no-op. */
void ar_s3_close(ar_s3 *s);
/** @brief Report put_file progress to cb (NULL: no reports). */
void ar_s3_set_progress(ar_s3 *s, ar_s3_progress_cb cb, void *ud);

/**
 * @brief Cap the upload rate at bytes_per_s (0: no cap), so a backfill does not take the
 * whole uplink from the live pipeline (CURLOPT_MAX_SEND_SPEED_LARGE, per request).
 */
void ar_s3_set_send_limit(ar_s3 *s, int64_t bytes_per_s);
/** @brief Objects per ListObjectsV2 page (1..1000; 0: the store's default, 1000). */
void ar_s3_set_list_page(ar_s3 *s, int max_keys);

/** @brief HEAD the bucket and create it when it is missing (an owned one is fine). */
int ar_s3_ensure_bucket(ar_s3 *s, char *err, size_t errlen) HM_MUST_CHECK;
/**
 * @brief Store the file at path as key: one PUT up to the part size, else a multipart
 * upload (aborted when it fails for good). Then HEADs the object and fails unless its
 * size is the file's. content_type may be NULL (binary/octet-stream). st may be NULL.
 */
int ar_s3_put_file(ar_s3 *s, const char *key, const char *path, const char *content_type,
                   ar_s3_put_stats *st, char *err, size_t errlen) HM_MUST_CHECK;
/**
 * @brief The object's size and ETag (with quotes; etag may be NULL); -ENOENT when the
 * object is absent.
 */
int ar_s3_head(ar_s3 *s, const char *key, int64_t *size, char *etag, size_t etaglen, char *err,
               size_t errlen) HM_MUST_CHECK;
/** @brief Every object under prefix ("" or NULL: all), page after page (ListObjectsV2). */
int ar_s3_list(ar_s3 *s, const char *prefix, ar_s3_list_cb cb, void *ud, char *err,
               size_t errlen) HM_MUST_CHECK;
/** @brief Delete the object; deleting an absent one succeeds (S3 semantics). */
int ar_s3_delete(ar_s3 *s, const char *key, char *err, size_t errlen) HM_MUST_CHECK;

/* ---- pure helpers (exported for tests/unit/test_s3.c) ------------------------------- */

/**
 * @brief URI-encode in as SigV4 canonicalises it: A-Z a-z 0-9 - . _ ~ stay, every other
 * byte is %XX (upper-case hex), so '=' is %3D and ' ' is %20. '/' stays when keep_slash
 * (object keys in a path), else is %2F (query values). Returns the encoded length, or
 * -ENOSPC when out (with its NUL) cannot hold it.
 */
int ar_s3_uri_encode(const char *in, bool keep_slash, char *out, size_t outlen) HM_MUST_CHECK;

/**
 * @brief Find the first element <tag>...</tag> (attributes allowed) in xml[0..len): its
 * content span in *body and *body_len and where the search may go on in *next (may be NULL).
 * -ENOENT when absent. No nesting of the same tag is expected (S3's replies have none).
 */
int ar_s3_xml_find(const char *xml, size_t len, const char *tag, const char **body,
                   size_t *body_len, const char **next) HM_MUST_CHECK;
/**
 * @brief The text of the first <tag> in xml[0..len), entity-decoded (&amp; &lt; &gt;
 * &quot; &apos; and numeric &#34; &#x22;) into out. -ENOENT when absent, -ENOSPC when
 * it does not fit (out then holds a truncated prefix). out is "" when absent, so an
 * optional element may be read without checking the result.
 */
int ar_s3_xml_text(const char *xml, size_t len, const char *tag, char *out, size_t outlen);

/** How a file is cut into requests. */
typedef struct ar_s3_plan {
    bool multipart;     /* false: one PUT of the whole file */
    int64_t part_bytes; /* every part but the last; the whole size for a single PUT */
    int parts;          /* 0 for a single PUT */
} ar_s3_plan;

/**
 * @brief Plan the upload of size bytes with parts of part_bytes: a single PUT when size
 * <= part_bytes (an empty file included), else ceil(size / part_bytes) parts, the part
 * size grown (in whole MiB) when that would exceed AR_S3_MAX_PARTS.
 */
ar_s3_plan ar_s3_plan_upload(int64_t size, int64_t part_bytes);
/** @brief Offset and length of part number (1-based) under plan for a file of size. */
void ar_s3_plan_part(const ar_s3_plan *plan, int64_t size, int number, int64_t *offset,
                     int64_t *len);

/**
 * @brief Whether a failed attempt is worth repeating: curl_code is the CURLcode (0 when
 * the store answered), status the HTTP status, s3_code the S3 error Code ("" if none).
 * Yes for connection errors, timeouts, 5xx, 429, SlowDown, InternalError, RequestTimeout.
 */
bool ar_s3_retryable(int curl_code, long status, const char *s3_code);
/**
 * @brief The wait in ms before attempt number attempt+1 (attempt >= 1): the cap
 * min(10 s, 200 ms * 2^(attempt-1)), less a random part of up to half of it
 * (rnd supplies the randomness), so clients that failed together do not retry together.
 */
int64_t ar_s3_backoff_ms(int attempt, uint64_t rnd);

#endif
