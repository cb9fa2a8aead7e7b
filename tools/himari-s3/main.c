/*
 * himari-s3: an operator's command line over the archiver's S3 client
 * (services/archiver/s3.h), so what the archiver does to the store can be done, and
 * checked, by hand with the same code.
 *
 *   himari-s3 [--endpoint URL] [--region R] [--bucket B] [--access-key-file F]
 *             [--secret-key-file F] [--part-size-mb N] [--max-attempts N]
 *             [--timeout-ms N] ls [PREFIX] | put FILE KEY | head KEY | rm KEY | mb
 *
 * Keys are read from files (never from the command line, where ps would show them) and
 * are never printed. Exit codes: 0 done, 1 the store or the file failed, 2 usage,
 * 3 head or rm of an object that is not there (head only).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "himari/common.h"
#include "s3.h"

enum { EXIT_STORE = 1, EXIT_USAGE = 2, EXIT_ABSENT = 3 };

static void usage(FILE *f) {
    fprintf(f,
            "usage: himari-s3 [options] ls [PREFIX] | put FILE KEY | head KEY | rm KEY | mb\n"
            "  ls [PREFIX]   list objects: size, last-modified time, key\n"
            "  put FILE KEY  upload FILE (multipart above the part size) and check its size\n"
            "  head KEY      print the object's size and ETag (exit 3 when absent)\n"
            "  rm KEY        delete the object\n"
            "  mb            create the bucket unless it exists\n"
            "options:\n"
            "  --endpoint URL         default http://127.0.0.1:$HIMARI_S3_PORT\n"
            "  --region R             default us-east-1\n"
            "  --bucket B             default $HIMARI_S3_BUCKET\n"
            "  --access-key-file F    default $HIMARI_RUN_DIR/secrets/s3_access_key\n"
            "  --secret-key-file F    default $HIMARI_RUN_DIR/secrets/s3_secret_key\n"
            "  --part-size-mb N       multipart part size in MiB (default %d, at least 5)\n"
            "  --max-attempts N       attempts per request (default %d)\n"
            "  --timeout-ms N         bound on each request (default %d)\n"
            "  --limit-mbps N         cap the upload rate at N MB/s (default: none)\n"
            "  --page-size N          objects per listing request (default 1000)\n"
            "  -q, --quiet            no progress lines on put\n",
            AR_S3_DEFAULT_PART_MB, AR_S3_DEFAULT_ATTEMPTS, AR_S3_DEFAULT_TIMEOUT_MS);
}

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "himari-s3: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

/* A key file's contents without trailing whitespace; the caller frees it. */
static char *read_key(const char *path, const char *what) {
    if (!path) die(EXIT_USAGE, "no %s file: give --%s-file or set HIMARI_RUN_DIR", what, what);
    char *data = NULL;
    size_t len = 0;
    hm_err err;
    if (hm_read_file(path, 4096, &data, &len, &err) < 0)
        die(EXIT_USAGE, "%s file: %s", what, err.msg);
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' '))
        data[--len] = '\0';
    if (len == 0) die(EXIT_USAGE, "%s file %s is empty", what, path);
    return data;
}

static int64_t parse_int(const char *s, const char *opt) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v <= 0) die(EXIT_USAGE, "%s wants a positive integer, not \"%s\"", opt, s);
    return v;
}

static int print_object(void *ud, const ar_s3_object *o) {
    int *count = ud;
    printf("%12" PRId64 "  %-24s  %s\n", o->size, o->last_modified, o->key);
    (*count)++;
    return 0;
}

static void on_progress(void *ud, int64_t done, int64_t total, int parts_done, int parts_total) {
    const uint64_t *t0 = ud;
    double s = (double)(hm_mono_ns() - *t0) / 1e9;
    fprintf(stderr, "himari-s3: part %d/%d  %.1f/%.1f MiB  %.1f MB/s\n", parts_done, parts_total,
            (double)done / 1048576.0, (double)total / 1048576.0,
            s > 0 ? (double)done / 1e6 / s : 0.0);
}

int main(int argc, char **argv) {
    const char *run_dir = getenv("HIMARI_RUN_DIR");
    const char *port = getenv("HIMARI_S3_PORT");
    char default_endpoint[64] = "";
    if (port && *port)
        snprintf(default_endpoint, sizeof(default_endpoint), "http://127.0.0.1:%s", port);
    char access_default[4096] = "", secret_default[4096] = "";
    if (run_dir && *run_dir) {
        snprintf(access_default, sizeof(access_default), "%s/secrets/s3_access_key", run_dir);
        snprintf(secret_default, sizeof(secret_default), "%s/secrets/s3_secret_key", run_dir);
    }
    const char *endpoint = default_endpoint[0] ? default_endpoint : NULL;
    const char *region = "us-east-1";
    const char *bucket = getenv("HIMARI_S3_BUCKET");
    const char *access_file = access_default[0] ? access_default : NULL;
    const char *secret_file = secret_default[0] ? secret_default : NULL;
    int64_t part_mb = 0, attempts = 0, timeout_ms = 0, page = 0, limit_mbps = 0;
    bool quiet = false;

    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'},
        {"region", required_argument, NULL, 'r'},
        {"bucket", required_argument, NULL, 'b'},
        {"access-key-file", required_argument, NULL, 'a'},
        {"secret-key-file", required_argument, NULL, 's'},
        {"part-size-mb", required_argument, NULL, 'p'},
        {"max-attempts", required_argument, NULL, 'm'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"limit-mbps", required_argument, NULL, 'L'},
        {"page-size", required_argument, NULL, 'P'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "+qh", opts, NULL)) != -1) {
        switch (c) {
            case 'e':
                endpoint = optarg;
                break;
            case 'r':
                region = optarg;
                break;
            case 'b':
                bucket = optarg;
                break;
            case 'a':
                access_file = optarg;
                break;
            case 's':
                secret_file = optarg;
                break;
            case 'p':
                part_mb = parse_int(optarg, "--part-size-mb");
                break;
            case 'm':
                attempts = parse_int(optarg, "--max-attempts");
                break;
            case 't':
                timeout_ms = parse_int(optarg, "--timeout-ms");
                break;
            case 'L':
                limit_mbps = parse_int(optarg, "--limit-mbps");
                break;
            case 'P':
                page = parse_int(optarg, "--page-size");
                break;
            case 'q':
                quiet = true;
                break;
            case 'h':
                usage(stdout);
                return 0;
            default:
                usage(stderr);
                return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;
    bool ok_args = (strcmp(cmd, "ls") == 0 && nargs <= 1) ||
                   (strcmp(cmd, "put") == 0 && nargs == 2) ||
                   (strcmp(cmd, "head") == 0 && nargs == 1) ||
                   (strcmp(cmd, "rm") == 0 && nargs == 1) || (strcmp(cmd, "mb") == 0 && nargs == 0);
    if (!ok_args) {
        fprintf(stderr, "himari-s3: bad command or arguments: %s\n", cmd);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!endpoint) die(EXIT_USAGE, "no endpoint: give --endpoint or set HIMARI_S3_PORT");
    if (!bucket || !*bucket) die(EXIT_USAGE, "no bucket: give --bucket or set HIMARI_S3_BUCKET");

    char *access = read_key(access_file, "access-key");
    char *secret = read_key(secret_file, "secret-key");
    ar_s3_config cfg = {
        .endpoint = (char *)endpoint,
        .region = (char *)region,
        .bucket = (char *)bucket,
        .access_key = access,
        .secret_key = secret,
        .part_size_mb = part_mb,
        .max_attempts = attempts,
        .request_timeout_ms = timeout_ms,
    };
    char err[1024] = "";
    ar_s3 *s3 = NULL;
    int rc = ar_s3_open(&s3, &cfg, err, sizeof(err));
    memset(secret, 0, strlen(secret));
    free(secret);
    free(access);
    if (rc < 0) die(EXIT_USAGE, "%s", err);

    int code = 0;
    if (strcmp(cmd, "ls") == 0) {
        int count = 0;
        ar_s3_set_list_page(s3, page > 1000 ? 1000 : (int)page);
        rc = ar_s3_list(s3, nargs ? args[0] : "", print_object, &count, err, sizeof(err));
    } else if (strcmp(cmd, "put") == 0) {
        ar_s3_put_stats st;
        uint64_t t0 = hm_mono_ns();
        if (!quiet) ar_s3_set_progress(s3, on_progress, &t0);
        ar_s3_set_send_limit(s3, limit_mbps * 1000000);
        rc = ar_s3_put_file(s3, args[1], args[0], NULL, &st, err, sizeof(err));
        if (rc == 0)
            printf("put %s: %" PRId64 " bytes, %d %s, %.2f s, %.1f MB/s, %d requests, "
                   "%d retries, %d restarts\n",
                   args[1], st.bytes, st.parts ? st.parts : 1,
                   st.parts > 1 ? "parts (multipart)"
                   : st.parts   ? "part (multipart)"
                                : "part (single PUT)",
                   st.seconds, st.seconds > 0 ? (double)st.bytes / 1e6 / st.seconds : 0.0,
                   st.attempts, st.retries, st.restarts);
    } else if (strcmp(cmd, "head") == 0) {
        int64_t size = 0;
        char etag[128] = "";
        rc = ar_s3_head(s3, args[0], &size, etag, sizeof(etag), err, sizeof(err));
        if (rc == 0)
            printf("%" PRId64 "  %s  %s\n", size, etag, args[0]);
        else if (rc == -ENOENT)
            code = EXIT_ABSENT;
    } else if (strcmp(cmd, "rm") == 0) {
        rc = ar_s3_delete(s3, args[0], err, sizeof(err));
    } else {
        rc = ar_s3_ensure_bucket(s3, err, sizeof(err));
        if (rc == 0) printf("bucket %s ready\n", bucket);
    }
    ar_s3_close(s3);
    if (rc < 0) {
        fprintf(stderr, "himari-s3: %s\n", err);
        return code ? code : EXIT_STORE;
    }
    return 0;
}
