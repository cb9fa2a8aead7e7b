/*
 * bench-tick-decode: how many raw market records per second hm_tick_decode() turns into
 * ticks on one core.
 *
 * It generates N realistic trade records in memory (Python json.dumps layout, mixed
 * exchanges and symbols, prices like 37012.53, volumes like 0.01234, numeric and string
 * trade ids, ms and ISO-8601 timestamps, a few extra fields an exchange adapter adds),
 * then decodes all of them K times and reports records/s and ns/record for the best and
 * the median round, plus a checksum of the decoded prices so the compiler cannot drop the
 * work. The last line is one JSON object for scripts.
 *
 * It must never touch the network or the disk: the numbers measure the decoder alone.
 *
 *   bench-tick-decode [--records N] [--rounds K] [--seed S]
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/common.h"
#include "himari/tick.h"

/* A small deterministic generator (xorshift64*), so runs are comparable. */
typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * UINT64_C(2685821657736338717);
}

static uint32_t rng_below(rng *r, uint32_t n) {
    return (uint32_t)(rng_next(r) % n);
}

typedef struct market {
    const char *symbol;
    double price;  /* a typical level */
    int price_dp;  /* decimals the exchange quotes */
    int volume_dp; /* decimals of quantity */
} market;

static const market k_markets[] = {
    {"BTC/USDT", 37012.53, 2, 5}, {"ETH/USDT", 2051.37, 2, 4}, {"SOL/USDT", 57.113, 3, 2},
    {"XRP/USDT", 0.61245, 5, 1},  {"DOGE/USDT", 0.0812, 5, 0}, {"BTC/USD", 37020.1, 1, 8},
    {"ETH/BTC", 0.055412, 6, 4},  {"AVAX/USDT", 21.874, 3, 2},
};
static const char *const k_exchanges[] = {"binance", "coinbase", "kraken",
                                          "okx",     "bybit",    "Bitstamp"};

/* Append one record to buf at *len (buf has room for at least 512 more bytes). */
static void make_record(rng *r, uint64_t seq, char *buf, size_t *len) {
    const market *m = &k_markets[rng_below(r, HM_ARRAY_LEN(k_markets))];
    const char *ex = k_exchanges[rng_below(r, HM_ARRAY_LEN(k_exchanges))];
    double drift = 1.0 + ((double)rng_below(r, 20001) - 10000.0) / 1e6; /* +-1% */
    double price = m->price * drift;
    double vol = (double)(1 + rng_below(r, 500000)) / 1e5;
    int64_t ts = INT64_C(1700000000000) + (int64_t)seq * 3 + rng_below(r, 3);
    uint64_t tid = UINT64_C(3000000000) + seq;
    bool buy = rng_below(r, 2);
    char tsbuf[40], pbuf[40], vbuf[40], tidbuf[48];

    if (rng_below(r, 10) < 3) { /* 30% ISO timestamps */
        char iso[25];
        hm_format_iso8601_ms(ts, iso);
        snprintf(tsbuf, sizeof(tsbuf), "\"%s\"", iso);
    } else {
        snprintf(tsbuf, sizeof(tsbuf), "%" PRId64, ts);
    }
    bool as_strings = rng_below(r, 100) < 15; /* some adapters send numbers as strings */
    snprintf(pbuf, sizeof(pbuf), as_strings ? "\"%.*f\"" : "%.*f", m->price_dp, price);
    snprintf(vbuf, sizeof(vbuf), as_strings ? "\"%.*f\"" : "%.*f", m->volume_dp, vol);
    if (rng_below(r, 10) < 2)
        snprintf(tidbuf, sizeof(tidbuf), "\"%s-%" PRIu64 "\"", ex, tid);
    else
        snprintf(tidbuf, sizeof(tidbuf), "%" PRIu64, tid);

    int n = snprintf(buf + *len, 512,
                     "{\"timestamp\": %s, \"symbol\": \"%s\", \"exchange\": \"%s\", "
                     "\"price\": %s, \"volume\": %s, \"trade_id\": %s, \"side\": \"%s\", "
                     "\"type\": \"trade\", \"quote_volume\": %.4f, \"is_buyer_maker\": %s, "
                     "\"ingest_ts\": %" PRId64 ", \"source\": \"ws-%s-%u\"}",
                     tsbuf, m->symbol, ex, pbuf, vbuf, tidbuf, buy ? "buy" : "sell", price * vol,
                     buy ? "false" : "true", ts + 7 + rng_below(r, 40), ex, rng_below(r, 4));
    if (n < 0 || n >= 512) hm_panic("record generator overflowed its 512-byte slot");
    *len += (size_t)n;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench-tick-decode [--records N] [--rounds K] [--seed S]\n");
}

static int parse_count(const char *s, uint64_t *out) {
    char *e;
    errno = 0;
    unsigned long long v = strtoull(s, &e, 10);
    if (errno || e == s || *e || v == 0) return -EINVAL;
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    uint64_t n_records = 1000000, rounds = 5, seed = 0x5eed;
    for (int i = 1; i < argc; i++) {
        uint64_t *dst = NULL;
        if (strcmp(argv[i], "--records") == 0)
            dst = &n_records;
        else if (strcmp(argv[i], "--rounds") == 0)
            dst = &rounds;
        else if (strcmp(argv[i], "--seed") == 0)
            dst = &seed;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (!dst || i + 1 >= argc || parse_count(argv[i + 1], dst) != 0) {
            usage(stderr);
            return 2;
        }
        i++;
    }

    /* All records in one buffer, like a consumed batch; offsets mark their ends. */
    size_t cap = (size_t)n_records * 512;
    char *buf = hm_xmalloc(cap);
    size_t *ends = hm_xmalloc((size_t)n_records * sizeof(size_t));
    rng r = {seed | 1};
    size_t len = 0;
    for (uint64_t i = 0; i < n_records; i++) {
        make_record(&r, i, buf, &len);
        ends[i] = len;
    }
    printf("bench-tick-decode: %" PRIu64 " records, %.1f bytes average, %" PRIu64 " rounds\n",
           n_records, (double)len / (double)n_records, rounds);

    uint64_t *ns = hm_xmalloc((size_t)rounds * sizeof(uint64_t));
    double checksum = 0;
    for (uint64_t k = 0; k < rounds; k++) {
        double sum = 0;
        size_t start = 0;
        uint64_t t0 = hm_mono_ns();
        for (uint64_t i = 0; i < n_records; i++) {
            hm_tick t;
            hm_decode_err err;
            int rc = hm_tick_decode(buf + start, ends[i] - start, 0, &t, &err);
            if (HM_UNLIKELY(rc != 0)) {
                fprintf(stderr, "record %" PRIu64 " failed at byte %zu: %s\n", i, err.offset,
                        err.msg);
                return 1;
            }
            sum += t.price + (double)(t.st[HM_FIELD_VOLUME] == HM_F_OK);
            start = ends[i];
        }
        ns[k] = hm_mono_ns() - t0;
        checksum = sum;
        printf("round %" PRIu64 ": %.0f records/s, %.1f ns/record\n", k + 1,
               (double)n_records * 1e9 / (double)ns[k], (double)ns[k] / (double)n_records);
    }
    qsort(ns, (size_t)rounds, sizeof(uint64_t), cmp_u64);
    double best_ns = (double)ns[0] / (double)n_records;
    double med_ns = (double)ns[rounds / 2] / (double)n_records;
    double best_rps = 1e9 / best_ns, med_rps = 1e9 / med_ns;
    double mbps = (double)len / ((double)ns[0] / 1e9) / 1e6;
    printf("best:   %.0f records/s, %.1f ns/record, %.0f MB/s\n", best_rps, best_ns, mbps);
    printf("median: %.0f records/s, %.1f ns/record\n", med_rps, med_ns);
    printf("checksum of prices: %.6f\n", checksum);
    printf("{\"bench\":\"tick-decode\",\"records\":%" PRIu64 ",\"rounds\":%" PRIu64
           ",\"avg_bytes\":%.1f,\"best_records_per_s\":%.0f,\"median_records_per_s\":%.0f,"
           "\"best_ns_per_record\":%.1f,\"median_ns_per_record\":%.1f,\"best_mb_per_s\":%.0f,"
           "\"checksum\":%.6f}\n",
           n_records, rounds, (double)len / (double)n_records, best_rps, med_rps, best_ns, med_ns,
           mbps, checksum);
    free(ns);
    free(ends);
    free(buf);
    return 0;
}
