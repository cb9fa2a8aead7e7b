/*
 * hash.c: SipHash (Aumasson and Bernstein, "SipHash: a fast short-input PRF",
 * 2012) for the services' in-memory maps (himari/hash.h), written from the
 * paper's description: four 64-bit words of state initialised from the key,
 * each 8-byte little-endian message word absorbed with c SipRounds, a last
 * word carrying the length in its top byte, then d SipRounds of finalisation.
 *
 * SipHash-1-3 (c = 1, d = 3) is what the maps use: the parameters several
 * language runtimes chose for hash tables, about twice the speed of 2-4 on
 * the validator's 10..40-byte keys. 2-4 is here so that the rounds can be
 * checked against the paper's test vector (tests/unit/test_hash.c).
 *
 * No allocation, no state: a key goes in with every call. The only system
 * call is getrandom(2) in hm_hash_key_random(), once per map owner at start-up.
 */
#include "himari/hash.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "himari/common.h"

static inline uint64_t rotl(uint64_t x, int b) {
    return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

typedef struct sip {
    uint64_t v0, v1, v2, v3;
} sip;

static inline void sip_round(sip *s) {
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
}

static inline void sip_absorb(sip *s, uint64_t m, int c) {
    s->v3 ^= m;
    for (int i = 0; i < c; i++)
        sip_round(s);
    s->v0 ^= m;
}

/* c and d are constants at both call sites, so the loops unroll. */
static inline uint64_t siphash(const hm_hash_key *key, const void *data, size_t n, int c, int d) {
    /* "somepseudorandomlygeneratedbytes", the paper's initialisation constants */
    sip s = {key->k0 ^ UINT64_C(0x736f6d6570736575), key->k1 ^ UINT64_C(0x646f72616e646f6d),
             key->k0 ^ UINT64_C(0x6c7967656e657261), key->k1 ^ UINT64_C(0x7465646279746573)};
    const unsigned char *p = data;
    const size_t len = n;
    for (; n >= 8; n -= 8, p += 8)
        sip_absorb(&s, load_le64(p), c);
    /* The last word: the remaining 0..7 bytes little-endian, the length mod 256 on top. */
    uint64_t last = (uint64_t)(len & 0xff) << 56;
    switch (n) { /* no loop and no memcpy call: most keys end in a partial word */
        case 7:
            last |= (uint64_t)p[6] << 48;
            __attribute__((fallthrough));
        case 6:
            last |= (uint64_t)p[5] << 40;
            __attribute__((fallthrough));
        case 5:
            last |= (uint64_t)p[4] << 32;
            __attribute__((fallthrough));
        case 4:
            last |= (uint64_t)p[3] << 24;
            __attribute__((fallthrough));
        case 3:
            last |= (uint64_t)p[2] << 16;
            __attribute__((fallthrough));
        case 2:
            last |= (uint64_t)p[1] << 8;
            __attribute__((fallthrough));
        case 1:
            last |= (uint64_t)p[0];
            break;
        default:
            break;
    }
    sip_absorb(&s, last, c);
    s.v2 ^= 0xff;
    for (int i = 0; i < d; i++)
        sip_round(&s);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

uint64_t hm_siphash13(const hm_hash_key *key, const void *p, size_t n) {
    return siphash(key, p, n, 1, 3);
}

uint64_t hm_siphash24(const hm_hash_key *key, const void *p, size_t n) {
    return siphash(key, p, n, 2, 4);
}

hm_hash_key hm_hash_key_random(void) {
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t r = getrandom(b + got, sizeof(b) - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            hm_panic("ingest-validator: getrandom(2) for the state maps' hash key: %s",
                     strerror(errno));
        }
        got += (size_t)r;
    }
    hm_hash_key k = {load_le64(b), load_le64(b + 8)};
    return k;
}
