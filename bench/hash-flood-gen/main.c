/*
 * hash-flood-gen: raw trades for the hash-flooding benchmark (bench/hash-flood-bench.sh).
 *
 * Writes N symbols' trades on binance, R rounds of one trade per symbol (N * R lines of
 * JSONL, timestamps 1 ms apart, trade ids in sequence per symbol). --mode collide picks
 * symbols whose key hash under the ingest-validator's former fixed map hash has its home
 * slot among the first 1/64 of the slots of the map N keys end in, so that all of them
 * pile into one probe run (a flooder's input, found by trying ~64 names per symbol);
 * --mode plain takes consecutive names instead (what a normal feed looks like to a map).
 *
 * The former hash is copied below because it is the attack's target: the validator keys
 * its maps now (services/ingest-validator/hash.h), so it is not there to call. It never
 * reads the network; it writes only --out.
 *
 *   hash-flood-gen --symbols N [--rounds R] [--mode collide|plain] --out FILE
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/common.h"

/* services/ingest-validator/checks.c: iv_hash_bytes(), unchanged there (string trade ids). */
static uint64_t old_hash_bytes(uint64_t seed, const char *p, size_t n) {
    const uint64_t k = 0x9E3779B97F4A7C15ULL;
    uint64_t h = (seed ^ ((uint64_t)n * 0xD6E8FEB86659FD93ULL)) * k;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * k;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = (h ^ w) * k;
        h ^= h >> 31;
    }
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 32;
    return h;
}

/* The validator's former iv_key_hash(): exchange, then symbol, chained. */
static uint64_t old_key_hash(const char *exch, const char *sym, size_t sym_len) {
    return old_hash_bytes(old_hash_bytes(0x6b6579ULL, exch, strlen(exch)), sym, sym_len);
}

#define SYM_LEN 13 /* "Xnnnnnnn/USDT" */

/* The next name in a base-36 count over the 7 characters after the 'X'. */
static void next_symbol(char *s) {
    for (int i = 7; i >= 1; i--) {
        if (s[i] == '9') {
            s[i] = 'A';
            return;
        }
        if (s[i] != 'Z') {
            s[i]++;
            return;
        }
        s[i] = '0';
    }
}

static int usage(void) {
    fprintf(stderr, "usage: hash-flood-gen --symbols N [--rounds R] [--mode collide|plain] "
                    "--out FILE\n");
    return 2;
}

int main(int argc, char **argv) {
    long n = 0, rounds = 10;
    const char *mode = "collide", *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) return usage();
        if (strcmp(argv[i], "--symbols") == 0)
            n = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--mode") == 0)
            mode = argv[++i];
        else if (strcmp(argv[i], "--out") == 0)
            out = argv[++i];
        else
            return usage();
    }
    bool collide = strcmp(mode, "collide") == 0;
    if (n <= 0 || n > 10000000 || rounds <= 0 || !out || (!collide && strcmp(mode, "plain")))
        return usage();

    /* The map stays at most half full: the capacity N keys end in (16 at least). */
    uint64_t cap = 16;
    while ((uint64_t)n * 2 > cap)
        cap *= 2;
    const uint64_t home_range = cap / 64 ? cap / 64 : 1;

    char(*syms)[SYM_LEN + 1] = hm_xcalloc((size_t)n, sizeof(*syms));
    char s[SYM_LEN + 1] = "X0000000/USDT";
    uint64_t tries = 0;
    for (long k = 0; k < n; next_symbol(s), tries++) {
        uint64_t home = (old_key_hash("binance", s, SYM_LEN) >> 32) & (cap - 1);
        if (!collide || home < home_range) memcpy(syms[k++], s, SYM_LEN + 1);
    }

    FILE *f = fopen(out, "w");
    if (!f) {
        fprintf(stderr, "hash-flood-gen: %s: %s\n", out, strerror(errno));
        return 1;
    }
    int64_t ts = INT64_C(1700000000000);
    for (long r = 0; r < rounds; r++)
        for (long k = 0; k < n; k++)
            fprintf(f,
                    "{\"type\":\"trade\",\"timestamp\":%" PRId64 ",\"exchange\":\"binance\","
                    "\"symbol\":\"%s\",\"price\":%ld.5,\"volume\":0.25,\"trade_id\":%ld,"
                    "\"side\":\"buy\"}\n",
                    ts++, syms[k], 100 + k % 900, 1000 + r);
    if (fclose(f) != 0) {
        fprintf(stderr, "hash-flood-gen: %s: %s\n", out, strerror(errno));
        return 1;
    }
    fprintf(stderr,
            "{\"event\":\"hash_flood_generated\",\"mode\":\"%s\",\"symbols\":%ld,\"rounds\":%ld,"
            "\"map_slots\":%" PRIu64 ",\"home_range\":%" PRIu64 ",\"names_tried\":%" PRIu64 "}\n",
            mode, n, rounds, cap, collide ? home_range : cap, tries);
    free(syms);
    return 0;
}
