/*
 * hash.h: the keyed hash of the ingest-validator's in-memory state maps
 * (SipHash-1-3 under a per-process random 128-bit key), so that nobody who
 * can send records can choose symbols that collide in the maps (hash
 * flooding: 100k such symbols once made replay 65x slower).
 *
 * Only for hashes that live and die in one process: the state maps of
 * state.c. A hash that is stored (the changelog) and compared by another
 * process must stay deterministic: string trade ids use iv_hash_bytes()
 * (checks.h) for that reason, and nothing persisted may come from here.
 * Pure but for iv_hash_key_random(), the one getrandom(2), at start-up.
 */
#ifndef IV_HASH_H
#define IV_HASH_H

#include <stddef.h>
#include <stdint.h>

/** A SipHash key: 128 bits, k0 the first 8 bytes of the key little-endian, k1 the next. */
typedef struct iv_hash_key {
    uint64_t k0, k1;
} iv_hash_key;

/**
 * @brief A fresh random key from getrandom(2). Blocks only until the kernel's
 * pool is initialised (early boot); panics when the kernel has no getrandom at
 * all (Linux < 3.17, or a sandbox refusing it), rather than run with a key an
 * attacker could guess.
 */
iv_hash_key iv_hash_key_random(void);

/** @brief SipHash-1-3 of p[0..n): the maps' hash (fast; keyed, so unpredictable). */
uint64_t iv_siphash13(const iv_hash_key *key, const void *p, size_t n);

/** @brief SipHash-2-4 of p[0..n): the reference parameters, which test the rounds above. */
uint64_t iv_siphash24(const iv_hash_key *key, const void *p, size_t n);

#endif
