/*
 * s3.c: the archiver's S3 client (s3.h): path-style requests <endpoint>/<bucket>/<key>
 * signed by libcurl (CURLOPT_AWS_SIGV4), retried here, their XML replies read by the
 * small extractors at the end of this file.
 *
 * What curl 7.88's signer does and does not do shapes the requests:
 *  - it signs the path and the query exactly as given, so the key is encoded here the way
 *    the server canonicalises it (every byte but A-Za-z0-9-._~ and '/' as %XX: '=' is
 *    %3D) and every query is built already sorted, each parameter with its '=';
 *  - it signs x-amz-* headers we add and takes the payload hash from our
 *    x-amz-content-sha256 header, so each body is hashed here (OpenSSL) before it goes.
 * Bodies are sent from memory: a single PUT and each part are read into one buffer of at
 * most the part size, which a retry sends again without touching the file.
 *
 * Blocking by design (a worker thread): never call it from the event loop. It never
 * prints, and never puts a secret into an error message.
 */
#include "s3.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "himari/buf.h"

/* Replies larger than this are not S3 control replies: refuse rather than grow. */
#define S3_MAX_REPLY_BYTES (64u << 20)

struct ar_s3 {
    CURL *curl;
    char *endpoint; /* without a trailing '/' */
    char *region;
    char *bucket;
    char *userpwd; /* "access:secret": secret, never printed */
    char *sigv4;   /* "aws:amz:<region>:s3" */
    int64_t part_bytes;
    int max_attempts;
    int64_t timeout_ms;
    uint64_t rng; /* xorshift state for the backoff jitter */
    ar_s3_progress_cb progress;
    void *progress_ud;
    int list_page;      /* max-keys, 0: the store's default */
    int64_t send_limit; /* bytes/s, 0: none */
    /* Counters of the put_file in progress (s3_request adds to them). */
    int attempts;
    int retries;
};

/* One request: what to send. */
typedef struct s3_req {
    const char *method; /* GET HEAD PUT POST DELETE */
    const char *key;    /* NULL: the bucket itself */
    const char *query;  /* canonical (sorted, encoded) or NULL */
    const void *body;
    size_t body_len;
    const char *content_type; /* NULL: none sent */
} s3_req;

/* What came back. */
typedef struct s3_resp {
    long status;
    hm_buf body;
    char etag[128];
    int64_t content_length; /* -1: not sent */
    char code[64];          /* S3 error Code, "" when none */
    char message[256];      /* S3 error Message */
} s3_resp;

/* The upload body as curl's read callback walks it. */
typedef struct s3_src {
    const char *p;
    size_t left;
} s3_src;

static void s3_resp_init(s3_resp *r) {
    memset(r, 0, sizeof(*r));
    r->body = (hm_buf)HM_BUF_INIT;
    r->content_length = -1;
}

static void s3_resp_free(s3_resp *r) {
    hm_buf_free(&r->body);
}

static int seterr(char *err, size_t errlen, int code, const char *fmt, ...) HM_PRINTF(4, 5);
static int seterr(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static void sleep_ms(int64_t ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static void sha256_hex(const void *p, size_t n, char out[65]) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    static const char hex[] = "0123456789abcdef";
    SHA256(p, n, md);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

static char *dup_or_empty(const char *s) {
    return strdup(s ? s : "");
}

/* ---- curl callbacks ----------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    hm_buf *b = ud;
    size_t len = size * n;
    if (b->len + len > S3_MAX_REPLY_BYTES) return 0; /* curl: CURLE_WRITE_ERROR */
    hm_buf_append(b, p, len);
    return len;
}

static size_t on_read(char *p, size_t size, size_t n, void *ud) {
    s3_src *src = ud;
    size_t len = size * n;
    if (len > src->left) len = src->left;
    memcpy(p, src->p, len);
    src->p += len;
    src->left -= len;
    return len;
}

/* Copies a header's value (trimmed) when its name matches, case-insensitively. */
static bool header_value(const char *line, size_t len, const char *name, char *out, size_t outlen) {
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':') return false;
    const char *v = line + nl + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t vl = (size_t)(end - v);
    if (vl >= outlen) vl = outlen - 1;
    memcpy(out, v, vl);
    out[vl] = '\0';
    return true;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    s3_resp *r = ud;
    size_t len = size * n;
    char num[32];
    /* A new status line (after a 100 Continue, say) starts the headers over. */
    if (len > 5 && strncmp(p, "HTTP/", 5) == 0) {
        r->etag[0] = '\0';
        r->content_length = -1;
    }
    header_value(p, len, "ETag", r->etag, sizeof(r->etag));
    if (header_value(p, len, "Content-Length", num, sizeof(num)))
        r->content_length = strtoll(num, NULL, 10);
    return len;
}

/* ---- one request, with its retries -------------------------------------------------- */

/* The request's URL: endpoint/bucket[/key][?query], the key encoded as SigV4 wants it. */
static int build_url(const ar_s3 *s, const s3_req *q, hm_buf *url) {
    hm_buf_puts(url, s->endpoint);
    hm_buf_putc(url, '/');
    hm_buf_puts(url, s->bucket);
    if (q->key) {
        size_t cap = strlen(q->key) * 3 + 1;
        hm_buf_putc(url, '/');
        hm_buf_reserve(url, cap);
        int n = ar_s3_uri_encode(q->key, true, url->data + url->len, cap);
        if (n < 0) return n;
        url->len += (size_t)n;
    }
    if (q->query && *q->query) {
        hm_buf_putc(url, '?');
        hm_buf_puts(url, q->query);
    }
    return 0;
}

/* The S3 error Code/Message of a failed reply (HEAD has no body: a name for the status). */
static void parse_error(s3_resp *r) {
    r->code[0] = r->message[0] = '\0';
    if (r->body.len) {
        const char *e;
        size_t el;
        if (ar_s3_xml_find(r->body.data, r->body.len, "Error", &e, &el, NULL) == 0) {
            (void)ar_s3_xml_text(e, el, "Code", r->code, sizeof(r->code));
            (void)ar_s3_xml_text(e, el, "Message", r->message, sizeof(r->message));
        }
    }
    if (!r->code[0]) {
        const char *name = r->status == 404   ? "NotFound"
                           : r->status == 403 ? "Forbidden"
                           : r->status == 400 ? "BadRequest"
                           : r->status >= 500 ? "ServerError"
                                              : "HTTPError";
        snprintf(r->code, sizeof(r->code), "%s", name);
    }
}

/* Whether a reply body holds an <Error> element. */
static bool has_error_element(const hm_buf *body) {
    const char *b;
    size_t bl;
    return body->len && ar_s3_xml_find(body->data, body->len, "Error", &b, &bl, NULL) == 0;
}

/* Sends q once; the CURLcode, with the reply in r. */
static CURLcode perform_once(ar_s3 *s, const s3_req *q, const char *url, s3_resp *r,
                             char *curl_err) {
    CURL *c = s->curl;
    struct curl_slist *hdrs = NULL;
    char line[160];
    char hash[65];
    s3_src src = {q->body, q->body_len};

    hm_buf_reset(&r->body);
    r->status = 0;
    r->etag[0] = '\0';
    r->content_length = -1;
    curl_err[0] = '\0';

    /* curl_easy_reset keeps the connection: a retry reuses it or reconnects. */
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* a worker thread: no SIGALRM */
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(s->timeout_ms < AR_S3_CONNECT_TIMEOUT_MS ? s->timeout_ms
                                                                     : AR_S3_CONNECT_TIMEOUT_MS));
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, s->sigv4);
    curl_easy_setopt(c, CURLOPT_USERPWD, s->userpwd);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);

    sha256_hex(q->body_len ? q->body : "", q->body_len, hash);
    snprintf(line, sizeof(line), "x-amz-content-sha256: %s", hash);
    hdrs = curl_slist_append(hdrs, line);
    /* No 100-continue round trip: bodies are at most a part, and already in memory. */
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (q->content_type) {
        snprintf(line, sizeof(line), "Content-Type: %s", q->content_type);
        hdrs = curl_slist_append(hdrs, line);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);

    if (strcmp(q->method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(q->method, "PUT") == 0) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &src);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->body_len);
        if (s->send_limit)
            curl_easy_setopt(c, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)s->send_limit);
    } else if (strcmp(q->method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body_len ? (const char *)q->body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
    } else if (strcmp(q->method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
    }

    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hdrs);
    return cc;
}

/*
 * Sends q until it succeeds (2xx), fails for good, or max_attempts are spent. On failure
 * err says "s3 METHOD what: STATUS Code: Message" (or the connection error) and r keeps
 * the last reply's status and S3 Code for the caller to inspect (NoSuchUpload).
 * Returns 0, -ENOENT (404), -EACCES (403), -ETIMEDOUT, -ECONNREFUSED or -EIO.
 */
static int s3_request(ar_s3 *s, const s3_req *q, s3_resp *r, char *err, size_t errlen) {
    hm_buf url = HM_BUF_INIT;
    char curl_err[CURL_ERROR_SIZE];
    const char *what = q->key ? q->key : s->bucket;
    int rc = build_url(s, q, &url);
    if (rc < 0) {
        hm_buf_free(&url);
        return seterr(err, errlen, rc, "s3 %s %s: cannot encode the key", q->method, what);
    }
    for (int attempt = 1;; attempt++) {
        s->attempts++;
        if (attempt > 1) s->retries++;
        CURLcode cc = perform_once(s, q, url.data, r, curl_err);
        if (cc == CURLE_OK && r->status >= 200 && r->status < 300) {
            r->code[0] = r->message[0] = '\0';
            /* CompleteMultipartUpload may answer 200 and put its failure in the body. */
            if (strcmp(q->method, "POST") != 0 || !has_error_element(&r->body)) {
                rc = 0;
                break;
            }
        }
        if (cc == CURLE_OK)
            parse_error(r);
        else
            r->code[0] = r->message[0] = '\0';
        bool again = ar_s3_retryable((int)cc, r->status, r->code);
        if (again && attempt < s->max_attempts) {
            sleep_ms(ar_s3_backoff_ms(attempt, rng_next(&s->rng)));
            continue;
        }
        if (cc != CURLE_OK) {
            rc = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT
                 : cc == CURLE_COULDNT_CONNECT  ? -ECONNREFUSED
                                                : -EIO;
            seterr(err, errlen, rc, "s3 %s %s: %s (curl %d) after %d attempt%s", q->method, what,
                   curl_err[0] ? curl_err : curl_easy_strerror(cc), (int)cc, attempt,
                   attempt == 1 ? "" : "s");
        } else {
            rc = r->status == 404 ? -ENOENT : r->status == 403 ? -EACCES : -EIO;
            seterr(err, errlen, rc, "s3 %s %s: %ld %s%s%s%s", q->method, what, r->status, r->code,
                   r->message[0] ? ": " : "", r->message, again ? " (attempts spent)" : "");
        }
        break;
    }
    hm_buf_free(&url);
    return rc;
}

/* ---- the client --------------------------------------------------------------------- */

int ar_s3_open(ar_s3 **out, const ar_s3_config *cfg, char *err, size_t errlen) {
    *out = NULL;
    if (!cfg->endpoint || !*cfg->endpoint)
        return seterr(err, errlen, -EINVAL, "s3: no endpoint configured");
    if (!cfg->bucket || !*cfg->bucket)
        return seterr(err, errlen, -EINVAL, "s3: no bucket configured");
    if (!cfg->access_key || !*cfg->access_key || !cfg->secret_key || !*cfg->secret_key)
        return seterr(err, errlen, -EINVAL, "s3: the access key or the secret key is empty");
    int64_t part_mb = cfg->part_size_mb > 0 ? cfg->part_size_mb : AR_S3_DEFAULT_PART_MB;
    if (part_mb > 5120 || (part_mb << 20) < AR_S3_MIN_PART_BYTES)
        return seterr(err, errlen, -EINVAL,
                      "s3.part_size_mb: %" PRId64 " is outside S3's 5..5120 MiB parts", part_mb);
    if (cfg->max_attempts < 0 || cfg->request_timeout_ms < 0)
        return seterr(err, errlen, -EINVAL, "s3: max_attempts and request_timeout_ms must be >= 0");

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return seterr(err, errlen, -EIO, "s3: curl_global_init failed");
    ar_s3 *s = calloc(1, sizeof(*s));
    if (!s) goto oom;
    s->curl = curl_easy_init();
    s->endpoint = dup_or_empty(cfg->endpoint);
    s->region = dup_or_empty(cfg->region && *cfg->region ? cfg->region : "us-east-1");
    s->bucket = dup_or_empty(cfg->bucket);
    if (!s->curl || !s->endpoint || !s->region || !s->bucket) goto oom;
    if (asprintf(&s->userpwd, "%s:%s", cfg->access_key, cfg->secret_key) < 0) {
        s->userpwd = NULL;
        goto oom;
    }
    if (asprintf(&s->sigv4, "aws:amz:%s:s3", s->region) < 0) {
        s->sigv4 = NULL;
        goto oom;
    }
    for (size_t n = strlen(s->endpoint); n > 0 && s->endpoint[n - 1] == '/'; n--)
        s->endpoint[n - 1] = '\0';
    s->part_bytes = part_mb << 20;
    s->max_attempts = cfg->max_attempts > 0 ? (int)cfg->max_attempts : AR_S3_DEFAULT_ATTEMPTS;
    s->timeout_ms =
        cfg->request_timeout_ms > 0 ? cfg->request_timeout_ms : AR_S3_DEFAULT_TIMEOUT_MS;
    s->rng = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)s;
    if (!s->rng) s->rng = 1;
    *out = s;
    return 0;
oom:
    ar_s3_close(s);
    if (!s) curl_global_cleanup();
    return seterr(err, errlen, -ENOMEM, "s3: out of memory");
}

void ar_s3_close(ar_s3 *s) {
    if (!s) return;
    if (s->curl) curl_easy_cleanup(s->curl);
    if (s->userpwd) {
        /* The secret does not outlive the client in freed memory. */
        memset(s->userpwd, 0, strlen(s->userpwd));
        free(s->userpwd);
    }
    free(s->sigv4);
    free(s->endpoint);
    free(s->region);
    free(s->bucket);
    free(s);
    curl_global_cleanup();
}

void ar_s3_set_progress(ar_s3 *s, ar_s3_progress_cb cb, void *ud) {
    s->progress = cb;
    s->progress_ud = ud;
}

void ar_s3_set_send_limit(ar_s3 *s, int64_t bytes_per_s) {
    s->send_limit = bytes_per_s > 0 ? bytes_per_s : 0;
}

void ar_s3_set_list_page(ar_s3 *s, int max_keys) {
    s->list_page = max_keys > 0 && max_keys <= 1000 ? max_keys : 0;
}

int ar_s3_ensure_bucket(ar_s3 *s, char *err, size_t errlen) {
    s3_resp r;
    s3_resp_init(&r);
    s3_req head = {.method = "HEAD"};
    int rc = s3_request(s, &head, &r, err, errlen);
    if (rc == -ENOENT) {
        /* us-east-1 is the one region that takes no LocationConstraint. */
        hm_buf body = HM_BUF_INIT;
        if (strcmp(s->region, "us-east-1") != 0)
            hm_buf_printf(&body,
                          "<CreateBucketConfiguration><LocationConstraint>%s</LocationConstraint>"
                          "</CreateBucketConfiguration>",
                          s->region);
        s3_req put = {.method = "PUT", .body = body.data, .body_len = body.len};
        rc = s3_request(s, &put, &r, err, errlen);
        if (rc < 0 && strcmp(r.code, "BucketAlreadyOwnedByYou") == 0) rc = 0;
        hm_buf_free(&body);
    }
    s3_resp_free(&r);
    return rc;
}

int ar_s3_head(ar_s3 *s, const char *key, int64_t *size, char *etag, size_t etaglen, char *err,
               size_t errlen) {
    s3_resp r;
    s3_resp_init(&r);
    s3_req q = {.method = "HEAD", .key = key};
    int rc = s3_request(s, &q, &r, err, errlen);
    if (rc == 0) {
        if (size) *size = r.content_length;
        if (etag && etaglen) snprintf(etag, etaglen, "%s", r.etag);
    }
    s3_resp_free(&r);
    return rc;
}

int ar_s3_delete(ar_s3 *s, const char *key, char *err, size_t errlen) {
    s3_resp r;
    s3_resp_init(&r);
    s3_req q = {.method = "DELETE", .key = key};
    int rc = s3_request(s, &q, &r, err, errlen);
    s3_resp_free(&r);
    return rc == -ENOENT ? 0 : rc;
}

/* Calls cb for each <Contents> of one ListObjectsV2 page; 1 when cb stopped the listing. */
static int list_page(const s3_resp *r, ar_s3_list_cb cb, void *ud, char *err, size_t errlen) {
    const char *p = r->body.data, *end = r->body.data + r->body.len;
    const char *c, *next;
    size_t cl;
    char key[1100], lm[40], etag[128], num[32];
    while (ar_s3_xml_find(p, (size_t)(end - p), "Contents", &c, &cl, &next) == 0) {
        if (ar_s3_xml_text(c, cl, "Key", key, sizeof(key)) != 0)
            return seterr(err, errlen, -EIO, "s3 list %s: a <Contents> without a usable <Key>",
                          "reply");
        ar_s3_object o = {.key = key, .size = -1, .last_modified = lm, .etag = etag};
        lm[0] = etag[0] = '\0';
        if (ar_s3_xml_text(c, cl, "Size", num, sizeof(num)) == 0) o.size = strtoll(num, NULL, 10);
        (void)ar_s3_xml_text(c, cl, "LastModified", lm, sizeof(lm));
        (void)ar_s3_xml_text(c, cl, "ETag", etag, sizeof(etag));
        if (cb(ud, &o) != 0) return 1;
        p = next;
    }
    return 0;
}

int ar_s3_list(ar_s3 *s, const char *prefix, ar_s3_list_cb cb, void *ud, char *err, size_t errlen) {
    s3_resp r;
    s3_resp_init(&r);
    hm_buf query = HM_BUF_INIT;
    char token[1024] = "";
    size_t plen = prefix ? strlen(prefix) : 0;
    char *eprefix = malloc(plen * 3 + 1);
    char *etoken = malloc(sizeof(token) * 3 + 1);
    int rc = 0;
    if (!eprefix || !etoken) {
        rc = seterr(err, errlen, -ENOMEM, "s3 list: out of memory");
        goto done;
    }
    if (ar_s3_uri_encode(prefix ? prefix : "", false, eprefix, plen * 3 + 1) < 0) {
        rc = seterr(err, errlen, -EINVAL, "s3 list: cannot encode the prefix");
        goto done;
    }
    for (;;) {
        /* Parameters in canonical (sorted) order: curl 7.88 signs the query as it is. */
        hm_buf_reset(&query);
        if (token[0]) {
            if (ar_s3_uri_encode(token, false, etoken, sizeof(token) * 3 + 1) < 0) {
                rc = seterr(err, errlen, -EIO, "s3 list: cannot encode the continuation token");
                goto done;
            }
            hm_buf_printf(&query, "continuation-token=%s&", etoken);
        }
        hm_buf_puts(&query, "list-type=2&");
        if (s->list_page) hm_buf_printf(&query, "max-keys=%d&", s->list_page);
        hm_buf_printf(&query, "prefix=%s", eprefix);
        s3_req q = {.method = "GET", .query = query.data};
        rc = s3_request(s, &q, &r, err, errlen);
        if (rc < 0) goto done;
        rc = list_page(&r, cb, ud, err, errlen);
        if (rc != 0) {
            if (rc > 0) rc = 0;
            goto done;
        }
        char trunc[8] = "";
        (void)ar_s3_xml_text(r.body.data, r.body.len, "IsTruncated", trunc, sizeof(trunc));
        if (strcmp(trunc, "true") != 0) break;
        if (ar_s3_xml_text(r.body.data, r.body.len, "NextContinuationToken", token,
                           sizeof(token)) != 0 ||
            !token[0]) {
            rc = seterr(err, errlen, -EIO,
                        "s3 list %s: truncated page without a NextContinuationToken", s->bucket);
            goto done;
        }
    }
done:
    free(eprefix);
    free(etoken);
    hm_buf_free(&query);
    s3_resp_free(&r);
    return rc;
}

/* ---- put_file ----------------------------------------------------------------------- */

/* An upload in progress: the file and the buffer each request's body is read into. */
typedef struct s3_upload {
    const char *key;
    const char *path;
    const char *content_type;
    int fd;
    int64_t size;
    ar_s3_plan plan;
    char *buf; /* plan.part_bytes bytes (at least 1) */
} s3_upload;

/* Reads len bytes at off into u->buf (pread, whole or an error). */
static int read_range(s3_upload *u, int64_t off, int64_t len, char *err, size_t errlen) {
    int64_t got = 0;
    while (got < len) {
        ssize_t n = pread(u->fd, u->buf + got, (size_t)(len - got), (off_t)(off + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            return seterr(err, errlen, -errno, "s3 PUT %s: read %s: %s", u->key, u->path,
                          strerror(errno));
        if (n == 0)
            return seterr(err, errlen, -EIO, "s3 PUT %s: %s shrank while being uploaded", u->key,
                          u->path);
        got += n;
    }
    return 0;
}

static int put_single(ar_s3 *s, s3_upload *u, char *err, size_t errlen) {
    int rc = read_range(u, 0, u->size, err, errlen);
    if (rc < 0) return rc;
    s3_resp r;
    s3_resp_init(&r);
    s3_req q = {.method = "PUT",
                .key = u->key,
                .body = u->buf,
                .body_len = (size_t)u->size,
                .content_type = u->content_type};
    rc = s3_request(s, &q, &r, err, errlen);
    s3_resp_free(&r);
    if (rc == 0 && s->progress) s->progress(s->progress_ud, u->size, u->size, 1, 1);
    return rc;
}

/* Starts a multipart upload; its id into upload_id. */
static int create_multipart(ar_s3 *s, s3_upload *u, char *upload_id, size_t idlen, char *err,
                            size_t errlen) {
    s3_resp r;
    s3_resp_init(&r);
    s3_req q = {
        .method = "POST", .key = u->key, .query = "uploads=", .content_type = u->content_type};
    int rc = s3_request(s, &q, &r, err, errlen);
    if (rc == 0 && ar_s3_xml_text(r.body.data, r.body.len, "UploadId", upload_id, idlen) != 0)
        rc = seterr(err, errlen, -EIO, "s3 POST %s?uploads: no UploadId in the reply", u->key);
    s3_resp_free(&r);
    return rc;
}

/* The query of a request on an upload: uploadId, and partNumber first when > 0. */
static int upload_query(hm_buf *qb, int part, const char *upload_id) {
    size_t cap = strlen(upload_id) * 3 + 1;
    char *enc = malloc(cap);
    if (!enc) return -ENOMEM;
    int rc = ar_s3_uri_encode(upload_id, false, enc, cap);
    if (rc >= 0) {
        hm_buf_reset(qb);
        if (part > 0) hm_buf_printf(qb, "partNumber=%d&", part);
        hm_buf_printf(qb, "uploadId=%s", enc);
        rc = 0;
    }
    free(enc);
    return rc;
}

/* Sends part number (1-based); its ETag into etag. *lost set on NoSuchUpload. */
static int upload_part(ar_s3 *s, s3_upload *u, const char *upload_id, int number, char *etag,
                       size_t etaglen, bool *lost, char *err, size_t errlen) {
    int64_t off, len;
    ar_s3_plan_part(&u->plan, u->size, number, &off, &len);
    int rc = read_range(u, off, len, err, errlen);
    if (rc < 0) return rc;
    hm_buf qb = HM_BUF_INIT;
    if (upload_query(&qb, number, upload_id) < 0) {
        hm_buf_free(&qb);
        return seterr(err, errlen, -ENOMEM, "s3 PUT %s: out of memory", u->key);
    }
    s3_resp r;
    s3_resp_init(&r);
    s3_req q = {
        .method = "PUT", .key = u->key, .query = qb.data, .body = u->buf, .body_len = (size_t)len};
    rc = s3_request(s, &q, &r, err, errlen);
    if (rc < 0 && strcmp(r.code, "NoSuchUpload") == 0) *lost = true;
    if (rc == 0) {
        if (!r.etag[0])
            rc = seterr(err, errlen, -EIO, "s3 PUT %s part %d: no ETag in the reply", u->key,
                        number);
        else
            snprintf(etag, etaglen, "%s", r.etag);
    }
    s3_resp_free(&r);
    hm_buf_free(&qb);
    return rc;
}

/* Appends text to b with XML's five special characters escaped. */
static void xml_escape(hm_buf *b, const char *text) {
    for (const char *p = text; *p; p++) {
        switch (*p) {
            case '&':
                hm_buf_puts(b, "&amp;");
                break;
            case '<':
                hm_buf_puts(b, "&lt;");
                break;
            case '>':
                hm_buf_puts(b, "&gt;");
                break;
            case '"':
                hm_buf_puts(b, "&quot;");
                break;
            case '\'':
                hm_buf_puts(b, "&apos;");
                break;
            default:
                hm_buf_putc(b, *p);
        }
    }
}

static int complete_multipart(ar_s3 *s, s3_upload *u, const char *upload_id, char (*etags)[128],
                              bool *lost, char *err, size_t errlen) {
    hm_buf body = HM_BUF_INIT, qb = HM_BUF_INIT;
    hm_buf_puts(&body, "<CompleteMultipartUpload>");
    for (int i = 0; i < u->plan.parts; i++) {
        hm_buf_printf(&body, "<Part><PartNumber>%d</PartNumber><ETag>", i + 1);
        xml_escape(&body, etags[i]);
        hm_buf_puts(&body, "</ETag></Part>");
    }
    hm_buf_puts(&body, "</CompleteMultipartUpload>");
    int rc = upload_query(&qb, 0, upload_id);
    if (rc < 0) {
        rc = seterr(err, errlen, -ENOMEM, "s3 POST %s: out of memory", u->key);
    } else {
        s3_resp r;
        s3_resp_init(&r);
        s3_req q = {.method = "POST",
                    .key = u->key,
                    .query = qb.data,
                    .body = body.data,
                    .body_len = body.len,
                    .content_type = "application/xml"};
        rc = s3_request(s, &q, &r, err, errlen);
        /* Every part was acknowledged with its ETag: a store that now misses one (versitygw
         * after the upload was aborted under us) lost the upload as surely as NoSuchUpload. */
        if (rc < 0 && (strcmp(r.code, "NoSuchUpload") == 0 || strcmp(r.code, "InvalidPart") == 0))
            *lost = true;
        s3_resp_free(&r);
    }
    hm_buf_free(&body);
    hm_buf_free(&qb);
    return rc;
}

/* Best effort: the parts of a failed upload should not linger (and cost) on the store. */
static void abort_multipart(ar_s3 *s, s3_upload *u, const char *upload_id) {
    hm_buf qb = HM_BUF_INIT;
    char ignored[256];
    if (upload_query(&qb, 0, upload_id) == 0) {
        s3_resp r;
        s3_resp_init(&r);
        s3_req q = {.method = "DELETE", .key = u->key, .query = qb.data};
        (void)s3_request(s, &q, &r, ignored, sizeof(ignored));
        s3_resp_free(&r);
    }
    hm_buf_free(&qb);
}

/* One multipart upload from Create to Complete; *lost when the store forgot the upload. */
static int put_multipart_once(ar_s3 *s, s3_upload *u, char (*etags)[128], bool *lost, char *err,
                              size_t errlen) {
    char upload_id[512];
    *lost = false;
    int rc = create_multipart(s, u, upload_id, sizeof(upload_id), err, errlen);
    if (rc < 0) return rc;
    int64_t done = 0;
    for (int i = 1; i <= u->plan.parts && rc == 0; i++) {
        rc = upload_part(s, u, upload_id, i, etags[i - 1], sizeof(etags[i - 1]), lost, err, errlen);
        if (rc == 0) {
            int64_t off, len;
            ar_s3_plan_part(&u->plan, u->size, i, &off, &len);
            done += len;
            if (s->progress) s->progress(s->progress_ud, done, u->size, i, u->plan.parts);
        }
    }
    if (rc == 0) rc = complete_multipart(s, u, upload_id, etags, lost, err, errlen);
    /* Aborted even when "lost": a store that half-forgot it (InvalidPart) still holds parts. */
    if (rc < 0) abort_multipart(s, u, upload_id);
    return rc;
}

static int put_multipart(ar_s3 *s, s3_upload *u, ar_s3_put_stats *st, char *err, size_t errlen) {
    char(*etags)[128] = calloc((size_t)u->plan.parts, sizeof(*etags));
    if (!etags) return seterr(err, errlen, -ENOMEM, "s3 PUT %s: out of memory", u->key);
    int rc;
    for (int restart = 0;; restart++) {
        bool lost = false;
        rc = put_multipart_once(s, u, etags, &lost, err, errlen);
        if (rc == 0 || !lost || restart == AR_S3_MAX_RESTARTS) break;
        st->restarts++;
    }
    free(etags);
    return rc;
}

int ar_s3_put_file(ar_s3 *s, const char *key, const char *path, const char *content_type,
                   ar_s3_put_stats *st, char *err, size_t errlen) {
    ar_s3_put_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof(*st));
    uint64_t t0 = hm_mono_ns();
    s3_upload u = {.key = key, .path = path, .content_type = content_type, .fd = -1};
    if (!u.content_type) u.content_type = "binary/octet-stream";
    struct stat sb;
    int rc;
    u.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (u.fd < 0 || fstat(u.fd, &sb) != 0) {
        rc = seterr(err, errlen, -errno, "s3 PUT %s: open %s: %s", key, path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = seterr(err, errlen, -EINVAL, "s3 PUT %s: %s is not a regular file", key, path);
        goto done;
    }
    u.size = sb.st_size;
    u.plan = ar_s3_plan_upload(u.size, s->part_bytes);
    u.buf = malloc(u.plan.part_bytes > 0 ? (size_t)u.plan.part_bytes : 1);
    if (!u.buf) {
        rc = seterr(err, errlen, -ENOMEM, "s3 PUT %s: cannot allocate a %" PRId64 "-byte buffer",
                    key, u.plan.part_bytes);
        goto done;
    }
    s->attempts = s->retries = 0;
    rc = u.plan.multipart ? put_multipart(s, &u, st, err, errlen) : put_single(s, &u, err, errlen);
    if (rc == 0) {
        /* The store's word that the whole object is there, not just that requests ended. */
        int64_t stored = -1;
        rc = ar_s3_head(s, key, &stored, NULL, 0, err, errlen);
        if (rc == 0 && stored != u.size)
            rc = seterr(err, errlen, -EIO,
                        "s3 PUT %s: stored %" PRId64 " bytes, the file has %" PRId64, key, stored,
                        u.size);
    }
    st->bytes = u.size;
    st->parts = u.plan.parts;
    st->attempts = s->attempts;
    st->retries = s->retries;
done:
    if (u.fd >= 0) close(u.fd);
    free(u.buf);
    st->seconds = (double)(hm_mono_ns() - t0) / 1e9;
    return rc;
}

/* ---- pure helpers ------------------------------------------------------------------- */

int ar_s3_uri_encode(const char *in, bool keep_slash, char *out, size_t outlen) {
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        unsigned char c = *p;
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/');
        size_t need = plain ? 1 : 3;
        if (n + need + 1 > outlen) {
            if (outlen) out[0] = '\0';
            return -ENOSPC;
        }
        if (plain) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    if (n + 1 > outlen) return -ENOSPC;
    out[n] = '\0';
    return (int)n;
}

/* memmem for a NUL-terminated needle. */
static const char *find(const char *p, const char *end, const char *needle) {
    size_t nl = strlen(needle);
    if (p >= end || (size_t)(end - p) < nl) return NULL;
    return memmem(p, (size_t)(end - p), needle, nl);
}

int ar_s3_xml_find(const char *xml, size_t len, const char *tag, const char **body,
                   size_t *body_len, const char **next) {
    const char *p = xml, *end = xml + len;
    size_t tl = strlen(tag);
    char close[80];
    if (tl + 4 > sizeof(close)) return -EINVAL;
    snprintf(close, sizeof(close), "</%s>", tag);
    for (;;) {
        const char *lt = find(p, end, "<");
        if (!lt) return -ENOENT;
        p = lt + 1;
        if ((size_t)(end - p) < tl + 1 || memcmp(p, tag, tl) != 0) continue;
        char after = p[tl];
        if (after != '>' && after != ' ' && after != '\t' && after != '\n' && after != '/')
            continue; /* <ETagX> is not <ETag> */
        const char *gt = memchr(p + tl, '>', (size_t)(end - (p + tl)));
        if (!gt) return -ENOENT;
        if (gt[-1] == '/') { /* <Tag/>: present and empty */
            *body = gt + 1;
            *body_len = 0;
            if (next) *next = gt + 1;
            return 0;
        }
        const char *cl = find(gt + 1, end, close);
        if (!cl) return -ENOENT;
        *body = gt + 1;
        *body_len = (size_t)(cl - (gt + 1));
        if (next) *next = cl + strlen(close);
        return 0;
    }
}

/* Decodes one entity at p (after '&', up to ';'); the byte count consumed or 0. */
static size_t decode_entity(const char *p, const char *end, char *out) {
    static const struct {
        const char *name;
        char c;
    } named[] = {{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}};
    for (size_t i = 0; i < HM_ARRAY_LEN(named); i++) {
        size_t nl = strlen(named[i].name);
        if ((size_t)(end - p) >= nl && memcmp(p, named[i].name, nl) == 0) {
            *out = named[i].c;
            return nl;
        }
    }
    if (p < end && *p == '#') {
        const char *q = p + 1;
        int base = 10;
        if (q < end && (*q == 'x' || *q == 'X')) {
            base = 16;
            q++;
        }
        unsigned v = 0;
        const char *digits = q;
        while (q < end && *q != ';' && q - digits < 6) {
            int d = (*q >= '0' && *q <= '9')                 ? *q - '0'
                    : (base == 16 && *q >= 'a' && *q <= 'f') ? *q - 'a' + 10
                    : (base == 16 && *q >= 'A' && *q <= 'F') ? *q - 'A' + 10
                                                             : -1;
            if (d < 0) return 0;
            v = v * (unsigned)base + (unsigned)d;
            q++;
        }
        /* Only ASCII: S3's replies escape quotes and newlines this way, nothing wider. */
        if (q < end && *q == ';' && q > digits && v > 0 && v < 128) {
            *out = (char)v;
            return (size_t)(q + 1 - p);
        }
    }
    return 0;
}

int ar_s3_xml_text(const char *xml, size_t len, const char *tag, char *out, size_t outlen) {
    const char *b;
    size_t bl;
    if (outlen == 0) return -ENOSPC;
    out[0] = '\0';
    int rc = ar_s3_xml_find(xml, len, tag, &b, &bl, NULL);
    if (rc < 0) return rc;
    const char *p = b, *end = b + bl;
    size_t n = 0;
    while (p < end) {
        char c = *p++;
        if (c == '&') {
            size_t used = decode_entity(p, end, &c);
            p += used; /* an unknown entity stays as written */
        }
        if (n + 1 >= outlen) {
            out[n] = '\0';
            return -ENOSPC;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    return 0;
}

ar_s3_plan ar_s3_plan_upload(int64_t size, int64_t part_bytes) {
    ar_s3_plan p = {.multipart = false, .part_bytes = size, .parts = 0};
    if (part_bytes < 1) part_bytes = 1;
    if (size <= part_bytes) return p;
    int64_t n = (size + part_bytes - 1) / part_bytes;
    if (n > AR_S3_MAX_PARTS) {
        /* The smallest whole-MiB part that fits the file in 10000 parts. */
        int64_t mib = (int64_t)1 << 20;
        int64_t need = (size + AR_S3_MAX_PARTS - 1) / AR_S3_MAX_PARTS;
        part_bytes = (need + mib - 1) / mib * mib;
        n = (size + part_bytes - 1) / part_bytes;
    }
    p.multipart = true;
    p.part_bytes = part_bytes;
    p.parts = (int)n;
    return p;
}

void ar_s3_plan_part(const ar_s3_plan *plan, int64_t size, int number, int64_t *offset,
                     int64_t *len) {
    if (!plan->multipart) {
        *offset = 0;
        *len = size;
        return;
    }
    *offset = (int64_t)(number - 1) * plan->part_bytes;
    int64_t left = size - *offset;
    *len = left < plan->part_bytes ? left : plan->part_bytes;
    if (*len < 0) *len = 0;
}

bool ar_s3_retryable(int curl_code, long status, const char *s3_code) {
    switch ((CURLcode)curl_code) {
        case CURLE_OK:
            break;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_WEIRD_SERVER_REPLY:
            return true;
        default:
            return false; /* a bad URL, out of memory, our callback refused: no repeat */
    }
    if (status >= 500 || status == 429) return true;
    if (s3_code && (strcmp(s3_code, "SlowDown") == 0 || strcmp(s3_code, "InternalError") == 0 ||
                    strcmp(s3_code, "RequestTimeout") == 0))
        return true;
    return false;
}

int64_t ar_s3_backoff_ms(int attempt, uint64_t rnd) {
    int64_t cap = AR_S3_BACKOFF_BASE_MS;
    for (int i = 1; i < attempt && cap < AR_S3_BACKOFF_MAX_MS; i++)
        cap *= 2;
    if (cap > AR_S3_BACKOFF_MAX_MS) cap = AR_S3_BACKOFF_MAX_MS;
    int64_t half = cap / 2;
    return cap - (int64_t)(rnd % (uint64_t)(half + 1));
}
