/* rng.h — xoshiro256** seeded through splitmix64 (internal).
 *
 * Blackman and Vigna's public-domain generators (prng.di.unimi.it), written
 * here from their description. The stream depends on the seed alone, never
 * on the machine or the thread count: seeded sampling repeats itself, and a
 * synthetic model has the same bytes everywhere. */
#ifndef APR_CORE_RNG_H
#define APR_CORE_RNG_H

#include <stdint.h>

typedef struct { uint64_t s[4]; } apr_rng;

/* Advances *x and returns the next splitmix64 output: a good 64-bit mix of
 * any seed, however regular. */
static inline uint64_t apr_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The seeding the authors recommend: the state is four splitmix64 outputs. */
static inline void apr_rng_seed(apr_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = apr_splitmix64(&seed);
}

static inline uint64_t apr_rng_rotl(uint64_t v, int k) { return (v << k) | (v >> (64 - k)); }

static inline uint64_t apr_rng_next(apr_rng *r)
{
    uint64_t *s = r->s;
    const uint64_t result = apr_rng_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = apr_rng_rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1), from the top 53 bits. */
static inline double apr_rng_uniform(apr_rng *r)
{
    return (double)(apr_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
