/*
 * himari/hash.h: the keyed hash of the services' in-memory maps keyed by what the
 * input names (the ingest-validator's state maps, the feature-engine's symbols):
 * SipHash-1-3 under a per-process random 128-bit key, so that nobody who can send
 * records can choose symbols that collide in the maps (hash flooding: 100k such
 * symbols once made the validator's replay 65x slower).
 *
 * Only for hashes that live and die in one process. A hash that is stored (a
 * changelog) or compared by another process must stay deterministic (the validator's
 * string trade ids use iv_hash_bytes() for that reason): nothing persisted may come
 * from here.
 * Pure but for hm_hash_key_random(), the one getrandom(2), at start-up.
 */
#ifndef HIMARI_HASH_H
#define HIMARI_HASH_H

#include <stddef.h>
#include <stdint.h>

/** A SipHash key: 128 bits, k0 the first 8 bytes of the key little-endian, k1 the next. */
typedef struct hm_hash_key {
    uint64_t k0, k1;
} hm_hash_key;

/**
 * @brief A fresh random key from getrandom(2). Blocks only until the kernel's
 * pool is initialised (early boot); panics when the kernel has no getrandom at
 * all (Linux < 3.17, or a sandbox refusing it), rather than run with a key an
 * attacker could guess.
 */
hm_hash_key hm_hash_key_random(void);

/** @brief SipHash-1-3 of p[0..n): the maps' hash (fast; keyed, so unpredictable). */
uint64_t hm_siphash13(const hm_hash_key *key, const void *p, size_t n);

/** @brief SipHash-2-4 of p[0..n): the reference parameters, which test the rounds above. */
uint64_t hm_siphash24(const hm_hash_key *key, const void *p, size_t n);

#endif
