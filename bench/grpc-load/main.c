/*
 * grpc-load: a closed-loop unary load generator in C for the gRPC benchmarks
 * (bench/features_bench.py latency), so that the client costs little next to the
 * server on a 2-core machine (ghz decodes responses through dynamic protobuf
 * reflection and was the bottleneck at 16 clients).
 *
 * N client threads, each with its own channel and connection (as N strategies would
 * have), call one method back to back for S seconds, decode every answer with
 * protobuf-c, and time each call (send to decoded response, CLOCK_MONOTONIC). At the
 * end it prints one JSON line: calls, errors, calls/s and the p50/p99/p99.9/max
 * latency in ms over every call of every thread. Exit 1 when a call failed (the first
 * failure is printed). Only loopback targets are accepted.
 *
 *   grpc-load --target 127.0.0.1:PORT --call get-latest|get-status
 *             [--symbol BTC/USDT] [--exchange NAME] [--clients N] [--seconds S]
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl_client.h"
#include "himari/common.h"
#include "himari/v1/control.pb-c.h"
#include "himari/v1/features.pb-c.h"

#define MAX_CLIENTS  256
#define CALL_TIMEOUT 5000 /* ms: a call that takes longer is an error */

typedef struct options {
    const char *target, *call, *symbol, *exchange;
    int clients;
    double seconds;
} options;

typedef struct worker {
    pthread_t thread;
    const options *o;
    uint64_t *lat_ns; /* every call's latency */
    size_t n, cap;
    uint64_t errors;
} worker;

static atomic_bool g_failed_once;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void record(worker *w, uint64_t ns) {
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 4096;
        w->lat_ns = hm_xrealloc(w->lat_ns, w->cap * sizeof(*w->lat_ns));
    }
    w->lat_ns[w->n++] = ns;
}

static void *run(void *arg) {
    worker *w = arg;
    const options *o = w->o;
    ctl_client *c = ctl_client_new(o->target);
    Himari__V1__GetLatestRequest latest = HIMARI__V1__GET_LATEST_REQUEST__INIT;
    latest.symbol = (char *)o->symbol;
    latest.exchange = (char *)(o->exchange ? o->exchange : "");
    Himari__V1__GetStatusRequest status = HIMARI__V1__GET_STATUS_REQUEST__INIT;
    bool is_latest = !strcmp(o->call, "get-latest");
    const char *path =
        is_latest ? "/himari.v1.FeatureService/GetLatest" : "/himari.v1.ControlService/GetStatus";
    const ProtobufCMessage *req = is_latest ? &latest.base : &status.base;
    const ProtobufCMessageDescriptor *out =
        is_latest ? &himari__v1__symbol_features__descriptor : &himari__v1__status__descriptor;
    uint64_t end = now_ns() + (uint64_t)(o->seconds * 1e9);
    while (now_ns() < end) {
        ProtobufCMessage *resp = NULL;
        ctl_result res;
        uint64_t t0 = now_ns();
        int rc = ctl_unary(c, path, req, out, NULL, CALL_TIMEOUT, &resp, &res);
        uint64_t t1 = now_ns();
        if (rc == 0 && res.code == GRPC_STATUS_OK) {
            record(w, t1 - t0);
            protobuf_c_message_free_unpacked(resp, NULL);
        } else {
            w->errors++;
            if (!atomic_exchange(&g_failed_once, true)) {
                fprintf(stderr, "grpc-load: %s on %s: status %d: %s\n", path, o->target,
                        (int)res.code, res.message);
            }
        }
    }
    ctl_client_free(c);
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double pct_ms(const uint64_t *v, size_t n, double q) {
    size_t i = (size_t)(q * (double)n);
    return (double)v[i < n ? i : n - 1] / 1e6;
}

static int usage(const char *why) {
    fprintf(stderr,
            "grpc-load: %s\n"
            "usage: grpc-load --target 127.0.0.1:PORT --call get-latest|get-status\n"
            "                 [--symbol BTC/USDT] [--exchange NAME] [--clients N] [--seconds S]\n",
            why);
    return 2;
}

int main(int argc, char **argv) {
    options o = {.call = "get-latest", .symbol = "BTC/USDT", .clients = 1, .seconds = 8};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage("every option takes a value");
        if (!strcmp(a, "--target"))
            o.target = v;
        else if (!strcmp(a, "--call"))
            o.call = v;
        else if (!strcmp(a, "--symbol"))
            o.symbol = v;
        else if (!strcmp(a, "--exchange"))
            o.exchange = v;
        else if (!strcmp(a, "--clients"))
            o.clients = atoi(v);
        else if (!strcmp(a, "--seconds"))
            o.seconds = atof(v);
        else
            return usage("unknown option");
        i++;
    }
    if (!o.target || strncmp(o.target, "127.0.0.1:", 10) != 0) {
        return usage("--target must be 127.0.0.1:PORT (loopback only)");
    }
    if (strcmp(o.call, "get-latest") != 0 && strcmp(o.call, "get-status") != 0) {
        return usage("--call is get-latest or get-status");
    }
    if (o.clients < 1 || o.clients > MAX_CLIENTS || !(o.seconds > 0 && o.seconds <= 600)) {
        return usage("--clients 1..256, --seconds in (0, 600]");
    }
    worker *w = hm_xcalloc((size_t)o.clients, sizeof(*w));
    uint64_t t0 = now_ns();
    for (int i = 0; i < o.clients; i++) {
        w[i].o = &o;
        if (pthread_create(&w[i].thread, NULL, run, &w[i]) != 0) {
            fprintf(stderr, "grpc-load: pthread_create: %s\n", strerror(errno));
            return 1;
        }
    }
    size_t total = 0;
    uint64_t errors = 0;
    for (int i = 0; i < o.clients; i++) {
        pthread_join(w[i].thread, NULL);
        total += w[i].n;
        errors += w[i].errors;
    }
    double wall = (double)(now_ns() - t0) / 1e9;
    uint64_t *all = hm_xmalloc((total ? total : 1) * sizeof(*all));
    size_t k = 0;
    for (int i = 0; i < o.clients; i++) {
        memcpy(all + k, w[i].lat_ns, w[i].n * sizeof(*all));
        k += w[i].n;
        free(w[i].lat_ns);
    }
    qsort(all, total, sizeof(*all), cmp_u64);
    printf("{\"calls\":%zu,\"errors\":%" PRIu64 ",\"rps\":%.0f", total, errors,
           (double)total / wall);
    if (total) {
        printf(",\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f",
               pct_ms(all, total, 0.5), pct_ms(all, total, 0.99), pct_ms(all, total, 0.999),
               (double)all[total - 1] / 1e6);
    }
    printf("}\n");
    free(all);
    free(w);
    return errors || !total ? 1 : 0;
}
