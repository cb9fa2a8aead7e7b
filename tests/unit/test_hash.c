// uses: services/ingest-validator
/*
 * test_hash.c: unit tests of the keyed hash of the in-memory maps
 * (common/src/hash.c, and the ingest-validator's maps in state.c): SipHash against the
 * paper's test vector, and hash flooding: symbols chosen to collide under the fixed
 * function the maps used before (still iv_hash_bytes(), which string trade ids keep)
 * must land in the maps as well spread as ordinary symbols. Pure: no Kafka, no clock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "himari/hash.h"
#include "state.h"

/* ---- SipHash ---------------------------------------------------------------------------- */

static hm_hash_key ref_key(void) {
    /* the paper's key: bytes 00 01 .. 0f */
    unsigned char b[16];
    for (int i = 0; i < 16; i++)
        b[i] = (unsigned char)i;
    hm_hash_key k;
    memcpy(&k.k0, b, 8);
    memcpy(&k.k1, b + 8, 8);
    return k;
}

static void test_siphash24_gives_the_papers_test_vector(void **state) {
    (void)state;
    hm_hash_key k = ref_key();
    unsigned char m[15];
    for (int i = 0; i < 15; i++)
        m[i] = (unsigned char)i;
    /* Appendix A of the SipHash paper: 15 bytes 00..0e under key 00..0f */
    assert_true(hm_siphash24(&k, m, 15) == UINT64_C(0xa129ca6149be45e5));
    /* and the reference implementation's first vector, the empty message */
    assert_true(hm_siphash24(&k, m, 0) == UINT64_C(0x726fdb47dd0e0e31));
}

static void test_siphash13_changes_with_the_key_every_byte_and_the_length(void **state) {
    (void)state;
    hm_hash_key k = ref_key();
    const char *s = "binance|BTC/USDT-and-some-more";
    size_t n = strlen(s);
    uint64_t h = hm_siphash13(&k, s, n);
    assert_true(h == hm_siphash13(&k, s, n));
    assert_true(h != hm_siphash24(&k, s, n));
    for (size_t i = 0; i < n; i++) {
        char b[64];
        memcpy(b, s, n);
        b[i] ^= 1;
        assert_true(hm_siphash13(&k, b, n) != h);
    }
    for (size_t len = 0; len < n; len++)
        assert_true(hm_siphash13(&k, s, len) != h);
    hm_hash_key k2 = k;
    k2.k1 ^= 1;
    assert_true(hm_siphash13(&k2, s, n) != h);
    /* two random keys are different keys */
    hm_hash_key r1 = hm_hash_key_random(), r2 = hm_hash_key_random();
    assert_true(r1.k0 != r2.k0 || r1.k1 != r2.k1);
}

/* ---- hash flooding ---------------------------------------------------------------------- */

/* The maps' hashes before they were keyed: a flooder's target. */
static uint64_t old_key_hash(const char *exch, size_t exch_len, const char *sym, size_t sym_len) {
    return iv_hash_bytes(iv_hash_bytes(0x6b6579ULL, exch, exch_len), sym, sym_len);
}
static uint64_t old_sym_hash(const char *sym, size_t sym_len) {
    return iv_hash_bytes(0x73796dULL, sym, sym_len);
}

#define FLOOD_N   2048 /* keys: the map ends at 4096 slots, half full */
#define FLOOD_CAP 4096
#define SYM_LEN   13 /* "Xnnnnnnn/USDT" */

/* The next symbol in a base-36 count over the 7 characters after the 'X'. */
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

/*
 * FLOOD_N symbols whose old hash (kind 'k': binance's key hash; 's': the symbol hash) has
 * home slot 0 in a map of FLOOD_CAP slots: the maps home an entry at the high 32 bits of
 * its hash masked by the capacity, so these share one home at every size the map passes
 * through and make one run of FLOOD_N slots. About FLOOD_CAP tries per symbol.
 * random: FLOOD_N ordinary symbols instead (consecutive names).
 */
static char (*make_symbols(char kind, bool random))[SYM_LEN + 1] {
    char(*out)[SYM_LEN + 1] = calloc(FLOOD_N, sizeof(*out));
    assert_non_null(out);
    char s[SYM_LEN + 1] = "X0000000/USDT";
    for (size_t n = 0; n < FLOOD_N; next_symbol(s)) {
        uint64_t h =
            kind == 'k' ? old_key_hash("binance", 7, s, SYM_LEN) : old_sym_hash(s, SYM_LEN);
        if (random || ((h >> 32) & (FLOOD_CAP - 1)) == 0) memcpy(out[n++], s, SYM_LEN + 1);
    }
    return out;
}

/* Mean slots a lookup of each entry probes (1 + its distance from home). */
static double mean_probes(const iv_probe_stats *st) {
    assert_int_equal(st->n, FLOOD_N);
    return 1.0 + (double)st->sum_dist / (double)st->n;
}

/* Put every symbol in a fresh partition (as keys of binance, or as symbols only). */
static iv_probe_stats fill(char kind, char (*syms)[SYM_LEN + 1]) {
    iv_state s;
    memset(&s, 0, sizeof(s));
    s.hkey = hm_hash_key_random(); /* as iv_engine_new() does */
    iv_part *p = iv_state_part(&s, 0, true);
    for (size_t i = 0; i < FLOOD_N; i++) {
        uint32_t si = iv_part_add_sym(p, iv_sym_hash(p, syms[i], SYM_LEN), syms[i], SYM_LEN);
        if (kind == 'k')
            iv_part_add_key(p, iv_key_hash(p, "binance", 7, syms[i], SYM_LEN), si, "binance", 7);
    }
    /* and every one is found again */
    for (size_t i = 0; i < FLOOD_N; i++) {
        uint32_t si = iv_part_find_sym(p, iv_sym_hash(p, syms[i], SYM_LEN), syms[i], SYM_LEN);
        assert_int_not_equal(si, IV_NONE);
        if (kind == 'k')
            assert_int_not_equal(iv_part_find_key(p, iv_key_hash(p, "binance", 7, syms[i], SYM_LEN),
                                                  "binance", 7, syms[i], SYM_LEN),
                                 IV_NONE);
    }
    assert_int_equal((kind == 'k' ? p->key_map : p->sym_map).mask + 1, FLOOD_CAP);
    iv_probe_stats keys, sy;
    iv_part_probe_stats(p, &keys, &sy);
    iv_state_free(&s);
    return kind == 'k' ? keys : sy;
}

static void flood(char kind) {
    char(*bad)[SYM_LEN + 1] = make_symbols(kind, false);
    char(*plain)[SYM_LEN + 1] = make_symbols(kind, true);
    /* the attack is real: under the old function the chosen symbols share one home slot */
    for (size_t i = 0; i < FLOOD_N; i++) {
        uint64_t h = kind == 'k' ? old_key_hash("binance", 7, bad[i], SYM_LEN)
                                 : old_sym_hash(bad[i], SYM_LEN);
        assert_int_equal((h >> 32) & (FLOOD_CAP - 1), 0);
    }
    iv_probe_stats a = fill(kind, bad), r = fill(kind, plain);
    double pa = mean_probes(&a), pr = mean_probes(&r);
    print_message("%s map, %d entries: chosen symbols %.2f probes a lookup (longest run %u), "
                  "ordinary ones %.2f (%u)\n",
                  kind == 'k' ? "key" : "symbol", FLOOD_N, pa, a.max_dist, pr, r.max_dist);
    /* A half-full linear-probing map averages about 1.5 probes a lookup; the old function
     * made it about FLOOD_N / 2 = 1024 for the chosen symbols. */
    assert_true(pr < 3.0);
    assert_true(pa < 2.0 * pr);
    assert_true(a.max_dist < 128);
    free(bad);
    free(plain);
}

static void test_symbols_colliding_under_the_old_hash_spread_in_the_key_map(void **state) {
    (void)state;
    flood('k');
}

static void test_symbols_colliding_under_the_old_hash_spread_in_the_symbol_map(void **state) {
    (void)state;
    flood('s');
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash24_gives_the_papers_test_vector),
        cmocka_unit_test(test_siphash13_changes_with_the_key_every_byte_and_the_length),
        cmocka_unit_test(test_symbols_colliding_under_the_old_hash_spread_in_the_key_map),
        cmocka_unit_test(test_symbols_colliding_under_the_old_hash_spread_in_the_symbol_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
