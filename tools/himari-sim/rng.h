/*
 * rng.h: the simulator's own pseudo-random numbers (xoshiro256**, seeded by
 * splitmix64) and the few distributions the market model draws from.
 *
 * Everything the simulator writes is a function of --seed and the options, so
 * the generator must be ours: rand() differs between C libraries and shares
 * hidden global state. Header-only because every draw sits on the per-record
 * hot path. Never seed from the clock here; the caller passes the seed.
 */
#ifndef HIMARI_SIM_RNG_H
#define HIMARI_SIM_RNG_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

/** One independent stream; copyable, no hidden state. */
typedef struct sim_rng {
    uint64_t s[4];
} sim_rng;

/** @brief splitmix64: one step; turns any 64-bit seed into well-mixed words. */
static inline uint64_t sim_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/**
 * @brief Seed a stream from (seed, stream id): different ids give unrelated
 * streams, so the market and the anomaly injector draw independently and
 * turning anomalies on does not change the clean market's random choices.
 */
static inline void sim_rng_seed(sim_rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ull);
    for (int i = 0; i < 4; i++)
        r->s[i] = sim_splitmix64(&x);
    /* xoshiro's one forbidden state is all zeros; splitmix64 cannot give four
     * zero words in a row, but say so. */
    if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0) r->s[0] = 1;
}

static inline uint64_t sim_rotl64(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

/** @brief xoshiro256**: the next 64 random bits. */
static inline uint64_t sim_rng_u64(sim_rng *r) {
    uint64_t *s = r->s;
    const uint64_t result = sim_rotl64(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = sim_rotl64(s[3], 45);
    return result;
}

/** @brief Uniform in [0, 1) with 53 random bits. */
static inline double sim_rng_unit(sim_rng *r) {
    return (double)(sim_rng_u64(r) >> 11) * 0x1.0p-53;
}

/** @brief Uniform in [lo, hi). */
static inline double sim_rng_uniform(sim_rng *r, double lo, double hi) {
    return lo + (hi - lo) * sim_rng_unit(r);
}

/** @brief Uniform integer in [lo, hi] (inclusive); bias is below 2^-32 for our spans. */
static inline int64_t sim_rng_range(sim_rng *r, int64_t lo, int64_t hi) {
    uint64_t span = (uint64_t)(hi - lo) + 1;
    return lo + (int64_t)(sim_rng_u64(r) % span);
}

/** @brief true with probability p. */
static inline bool sim_rng_chance(sim_rng *r, double p) {
    return sim_rng_unit(r) < p;
}

/** @brief +1 or -1 with equal probability. */
static inline int sim_rng_sign(sim_rng *r) {
    return (sim_rng_u64(r) >> 63) ? 1 : -1;
}

/**
 * @brief Standard normal by the Box-Muller transform. One of the pair is
 * thrown away: keeping it would make the stream's state more than s[4], and
 * a log, a sqrt and a cos per draw are cheap next to formatting a record.
 */
static inline double sim_rng_normal(sim_rng *r) {
    double u1 = 1.0 - sim_rng_unit(r); /* (0, 1]: log(0) is not allowed */
    double u2 = sim_rng_unit(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/** @brief Exponential with mean 1 (a Poisson process's gap at rate 1). */
static inline double sim_rng_exp(sim_rng *r) {
    return -log(1.0 - sim_rng_unit(r));
}

#endif
