/* sha256.c — SHA-256 as FIPS 180-4 defines it, fed incrementally.
 *
 * `apr info` and `apr verify` hash whole model files (20 GB for the 32B
 * model), so the compression function has two forms: the portable one
 * written from the standard, and one using the x86 SHA extensions
 * (SHA-NI: Intel Goldmont+, Ice Lake+, AMD Zen), chosen at run time, which
 * is several times faster where the CPU has them. */
#include "apr.h"

#include <stdlib.h>
#include <string.h>

struct apr_sha256 {
    uint32_t state[8];
    uint64_t bytes;        /* fed so far */
    uint8_t block[64];     /* a partial block */
    size_t used;           /* bytes in block */
};

/* The first 32 bits of the fractional parts of the cube roots of the first
 * 64 primes (FIPS 180-4 section 4.2.2). */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* The initial hash value: square roots of the first 8 primes (5.3.3). */
static const uint32_t H0[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

/* ===================================================================== */
/* The compression function, portable                                    */
/* ===================================================================== */

static inline uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static inline uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Processes n whole 64-byte blocks (FIPS 180-4 section 6.2.2). */
static void compress_portable(uint32_t state[8], const uint8_t *p, size_t n)
{
    while (n--) {
        uint32_t w[64];
        for (int t = 0; t < 16; t++) w[t] = load_be32(p + 4 * t);
        for (int t = 16; t < 64; t++) {
            uint32_t s0 = ror(w[t - 15], 7) ^ ror(w[t - 15], 18) ^ (w[t - 15] >> 3);
            uint32_t s1 = ror(w[t - 2], 17) ^ ror(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        for (int t = 0; t < 64; t++) {
            uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
            uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            h = g; g = f; f = e; e = d + t1;
            d = c; c = b; b = a; a = t1 + t2;
        }
        state[0] += a; state[1] += b; state[2] += c; state[3] += d;
        state[4] += e; state[5] += f; state[6] += g; state[7] += h;
        p += 64;
    }
}

/* ===================================================================== */
/* The compression function with the x86 SHA extensions                 */
/* ===================================================================== */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

/* The SHA extensions keep the state as two registers, ABEF and CDGH, and
 * do four rounds per sha256rnds2 pair; sha256msg1/msg2 compute the message
 * schedule four words at a time (Intel, "Intel SHA Extensions", 2013). */
__attribute__((target("sha,sse4.1")))
static void compress_shani(uint32_t state[8], const uint8_t *p, size_t n)
{
    const __m128i bswap = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
    __m128i dcba = _mm_loadu_si128((const __m128i *)&state[0]);
    __m128i hgfe = _mm_loadu_si128((const __m128i *)&state[4]);
    __m128i cdab = _mm_shuffle_epi32(dcba, 0xb1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1b);
    __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
    __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xf0);

    while (n--) {
        __m128i abef_in = abef, cdgh_in = cdgh;
        __m128i m[4];
        for (int i = 0; i < 4; i++)
            m[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
        /* 16 groups of four rounds; m[i % 4] holds words 4i..4i+3. */
        for (int i = 0; i < 16; i++) {
            __m128i msg = _mm_add_epi32(m[i % 4], _mm_loadu_si128((const __m128i *)&K[4 * i]));
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, msg);
            abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(msg, 0x0e));
            if (i < 12) {
                /* Words 4(i+4).. from the four groups before them:
                 * W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16]. */
                __m128i next = _mm_sha256msg1_epu32(m[i % 4], m[(i + 1) % 4]);
                next = _mm_add_epi32(next, _mm_alignr_epi8(m[(i + 3) % 4], m[(i + 2) % 4], 4));
                m[i % 4] = _mm_sha256msg2_epu32(next, m[(i + 3) % 4]);
            }
        }
        abef = _mm_add_epi32(abef, abef_in);
        cdgh = _mm_add_epi32(cdgh, cdgh_in);
        p += 64;
    }

    __m128i feba = _mm_shuffle_epi32(abef, 0x1b);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xb1);
    _mm_storeu_si128((__m128i *)&state[0], _mm_blend_epi16(feba, dchg, 0xf0));
    _mm_storeu_si128((__m128i *)&state[4], _mm_alignr_epi8(dchg, feba, 8));
}

/* CPUID leaf 7 EBX bit 29: SHA; leaf 1 ECX bit 19: SSE4.1 (asked directly:
 * __builtin_cpu_supports("sha") is unknown to older compilers). */
static int have_shani(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 19))) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 29) & 1;
}

/* The SHA-NI path is used only if it agrees with the portable one on two
 * blocks here: a miscompiled or misdetected path costs speed, never a wrong
 * digest. APR_NO_SHANI=1 forces the portable code. */
static void (*pick_compress(void))(uint32_t *, const uint8_t *, size_t)
{
    if (!have_shani() || getenv("APR_NO_SHANI")) return compress_portable;
    uint8_t blocks[128];
    for (int i = 0; i < 128; i++) blocks[i] = (uint8_t)(i * 37 + 11);
    uint32_t a[8], b[8];
    memcpy(a, H0, sizeof H0);
    memcpy(b, H0, sizeof H0);
    compress_portable(a, blocks, 2);
    compress_shani(b, blocks, 2);
    return memcmp(a, b, sizeof a) == 0 ? compress_shani : compress_portable;
}
#else
static void (*pick_compress(void))(uint32_t *, const uint8_t *, size_t) { return compress_portable; }
#endif

static void compress(uint32_t state[8], const uint8_t *p, size_t n)
{
    static void (*fn)(uint32_t *, const uint8_t *, size_t);
    if (!fn) fn = pick_compress();  /* a benign race: every thread picks the same */
    fn(state, p, n);
}

/* ===================================================================== */
/* Public functions                                                      */
/* ===================================================================== */

apr_sha256 *apr_sha256_new(void)
{
    apr_sha256 *h = malloc(sizeof *h);
    if (h) apr_sha256_reset(h);
    return h;
}

void apr_sha256_free(apr_sha256 *h) { free(h); }

void apr_sha256_reset(apr_sha256 *h)
{
    memcpy(h->state, H0, sizeof H0);
    h->bytes = 0;
    h->used = 0;
}

void apr_sha256_update(apr_sha256 *h, const void *data, size_t n)
{
    const uint8_t *p = data;
    h->bytes += n;
    if (h->used) {
        size_t take = 64 - h->used < n ? 64 - h->used : n;
        memcpy(h->block + h->used, p, take);
        h->used += take;
        p += take;
        n -= take;
        if (h->used < 64) return;
        compress(h->state, h->block, 1);
        h->used = 0;
    }
    compress(h->state, p, n / 64);
    p += n / 64 * 64;
    n %= 64;
    memcpy(h->block, p, n);
    h->used = n;
}

void apr_sha256_final(apr_sha256 *h, uint8_t *digest, char *hex)
{
    /* Padding (5.1.1): a 1 bit, zeros to 56 mod 64, the length in bits. */
    uint64_t bits = h->bytes * 8;
    uint8_t pad[72] = { 0x80 };
    size_t zeros = (h->used < 56 ? 56 : 120) - h->used;
    for (int i = 0; i < 8; i++) pad[zeros + i] = (uint8_t)(bits >> (56 - 8 * i));
    apr_sha256_update(h, pad, zeros + 8);
    uint8_t out[32];
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(h->state[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h->state[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h->state[i] >> 8);
        out[4 * i + 3] = (uint8_t)h->state[i];
    }
    if (digest) memcpy(digest, out, 32);
    if (hex) {
        static const char digits[] = "0123456789abcdef";
        for (int i = 0; i < 32; i++) {
            hex[2 * i] = digits[out[i] >> 4];
            hex[2 * i + 1] = digits[out[i] & 15];
        }
        hex[64] = '\0';
    }
    apr_sha256_reset(h);
}
