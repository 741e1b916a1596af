/* gemm_avx2.c — the matrix-product kernels with AVX2 and FMA.
 *
 * Same arithmetic as gemm_scalar.c (read that first), arranged for speed:
 *
 *  1. A weight row is unpacked once into per-thread scratch: its quants as
 *     one byte each (u, 32 per block, in the input's element order), its
 *     scales as floats or as broadcast int16 vectors. Unpacking costs about
 *     as much as one token's dot product, so it is shared by every token of
 *     the pass: tokens are taken in chunks of CHUNK (so their quants stay in
 *     L2), and for each row of the chunk the unpacked row meets the tokens
 *     four at a time (a tile), each quant vector loaded once per tile.
 *  2. The dot product of 32 unsigned quants with 32 signed input quants is
 *     vpmaddubsw (pairs to int16; 31 * 127 * 2 cannot saturate) and
 *     vpmaddwd (to int32, by 1 or by the sub-block's scale). Q8_0's quants
 *     are signed, so they use the sign trick (|w| * sign(a, w)).
 *  3. 32-element formats turn each block's int32 sums to float and add them
 *     with the product of the two scales, precomputed for the tile; the K
 *     formats accumulate a whole 256-element block in int32 first.
 *
 * Decode (one token) takes the same path with tiles of one: it is bound by
 * reading the weights from memory, which the unpacking does not change. */
#if defined(__x86_64__) || defined(__i386__)

#include "cpu.h"
#include "simd.h"

#define CHUNK 64   /* tokens whose quants (64 x cols bytes) stay in L2 while rows pass */
#define TILE 4     /* tokens per tile: 2 x TILE accumulators fit the 16 ymm registers */

/* ===================================================================== */
/* Unpacked rows                                                         */
/* ===================================================================== */

/* One weight row, unpacked: pointers into the thread's scratch. */
typedef struct unpacked {
    uint8_t *u;       /* [K] quants, one byte each (Q8_0: signed) */
    float *dw, *mw;   /* [K/32] 32-element formats: scale, offset */
    __m256i *sc;      /* [K/32] K formats: int16 multipliers of each 32 quants' pair sums */
    __m256i *mins;    /* [K/256] Q4_K/Q5_K: the mins by sum of 16; Q6_K: the scales by sum of 16 */
    float *d, *dmin;  /* [K/256] K formats */
    float *prod;      /* [TILE][K/32] dw * da for the tile's tokens */
} unpacked;

size_t apr_cpu_gemm_scratch_bytes(int64_t K)
{
    const int64_t nb = K / 32 + 1, nk = K / 256 + 1;
    return (size_t)(K + 64 + 2 * 4 * nb + 32 * nb + 32 * nk + 2 * 4 * nk + TILE * 4 * nb + 64 * 8);
}

static unpacked carve(void *scratch, int64_t K)
{
    const int64_t nb = K / 32 + 1, nk = K / 256 + 1;
    uint8_t *p = scratch;
    unpacked w;
#define TAKE(field, type, count) \
    (w.field = (type *)p, p += (((size_t)(count) * sizeof(type)) + 63) & ~(size_t)63)
    TAKE(sc, __m256i, nb);
    TAKE(mins, __m256i, nk);
    TAKE(u, uint8_t, K + 64);
    TAKE(dw, float, nb);
    TAKE(mw, float, nb);
    TAKE(d, float, nk);
    TAKE(dmin, float, nk);
    TAKE(prod, float, TILE * nb);
#undef TAKE
    return w;
}

AVX2_INLINE float f16(apr_f16 h) { return _cvtsh_ss(h); }

/* 32 nibbles of 16 bytes in element order: low nibbles, then high ones. */
AVX2_INLINE __m256i nibbles32(const uint8_t *qs)
{
    const __m128i raw = _mm_loadu_si128((const __m128i *)qs), m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m), _mm_and_si128(raw, m));
}

/* 0x10 in byte j where bit j of the 32-bit qh is set (Q5's fifth bits). */
AVX2_INLINE __m256i fifth_bits32(const uint8_t *qh)
{
    uint32_t h;
    memcpy(&h, qh, 4);
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h),
        _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

AVX2 static void unpack_q4_0(unpacked *w, const void *row, int64_t nb)
{
    const block_q4_0 *x = row;
    for (int64_t b = 0; b < nb; b++) {
        _mm256_store_si256((__m256i *)(w->u + 32 * b), nibbles32(x[b].qs));
        w->dw[b] = f16(x[b].d);
        w->mw[b] = -8 * w->dw[b];
    }
}

AVX2 static void unpack_q4_1(unpacked *w, const void *row, int64_t nb)
{
    const block_q4_1 *x = row;
    for (int64_t b = 0; b < nb; b++) {
        _mm256_store_si256((__m256i *)(w->u + 32 * b), nibbles32(x[b].qs));
        w->dw[b] = f16(x[b].d);
        w->mw[b] = f16(x[b].m);
    }
}

AVX2 static void unpack_q5_0(unpacked *w, const void *row, int64_t nb)
{
    const block_q5_0 *x = row;
    for (int64_t b = 0; b < nb; b++) {
        _mm256_store_si256((__m256i *)(w->u + 32 * b), _mm256_or_si256(nibbles32(x[b].qs), fifth_bits32(x[b].qh)));
        w->dw[b] = f16(x[b].d);
        w->mw[b] = -16 * w->dw[b];
    }
}

AVX2 static void unpack_q5_1(unpacked *w, const void *row, int64_t nb)
{
    const block_q5_1 *x = row;
    for (int64_t b = 0; b < nb; b++) {
        _mm256_store_si256((__m256i *)(w->u + 32 * b), _mm256_or_si256(nibbles32(x[b].qs), fifth_bits32(x[b].qh)));
        w->dw[b] = f16(x[b].d);
        w->mw[b] = f16(x[b].m);
    }
}

AVX2 static void unpack_q8_0(unpacked *w, const void *row, int64_t nb)
{
    const block_q8_0 *x = row;
    for (int64_t b = 0; b < nb; b++) {
        _mm256_store_si256((__m256i *)(w->u + 32 * b), _mm256_loadu_si256((const __m256i *)x[b].qs));
        w->dw[b] = f16(x[b].d);
        w->mw[b] = 0;
    }
}

/* Q4_K/Q5_K scales and mins: each sub-block's 6-bit scale broadcast to the
 * 16 pair sums of its 32 quants, and the mins placed to meet the input's
 * sums per 16 (min j twice). */
AVX2_INLINE void unpack_k_scales(unpacked *w, int64_t B, const uint8_t *scales, apr_f16 d, apr_f16 dmin)
{
    int16_t mins[16];
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        apr_q4_K_scale_min(scales, j, &sc, &m);
        w->sc[8 * B + j] = _mm256_set1_epi16(sc);
        mins[2 * j] = mins[2 * j + 1] = m;
    }
    w->mins[B] = _mm256_loadu_si256((const __m256i *)mins);
    w->d[B] = f16(d);
    w->dmin[B] = f16(dmin);
}

AVX2 static void unpack_q4_K(unpacked *w, const void *row, int64_t nb)
{
    const block_q4_K *x = row;
    const __m256i m = _mm256_set1_epi8(15);
    for (int64_t B = 0; B < nb / 8; B++) {
        for (int g = 0; g < 4; g++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(x[B].qs + 32 * g));
            _mm256_store_si256((__m256i *)(w->u + 256 * B + 64 * g), _mm256_and_si256(raw, m));
            _mm256_store_si256((__m256i *)(w->u + 256 * B + 64 * g + 32), _mm256_and_si256(_mm256_srli_epi16(raw, 4), m));
        }
        unpack_k_scales(w, B, x[B].scales, x[B].d, x[B].dmin);
    }
}

AVX2 static void unpack_q5_K(unpacked *w, const void *row, int64_t nb)
{
    const block_q5_K *x = row;
    const __m256i m = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    for (int64_t B = 0; B < nb / 8; B++) {
        const __m256i qh = _mm256_loadu_si256((const __m256i *)x[B].qh);
        for (int g = 0; g < 4; g++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(x[B].qs + 32 * g));
            /* bit j of qh is sub-block j's fifth bit; shifting int16 lanes keeps it in its byte after the mask */
            const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), one), 4);
            const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * g + 1), one), 4);
            _mm256_store_si256((__m256i *)(w->u + 256 * B + 64 * g), _mm256_or_si256(_mm256_and_si256(raw, m), h0));
            _mm256_store_si256((__m256i *)(w->u + 256 * B + 64 * g + 32),
                               _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m), h1));
        }
        unpack_k_scales(w, B, x[B].scales, x[B].d, x[B].dmin);
    }
}

AVX2 static void unpack_q6_K(unpacked *w, const void *row, int64_t nb)
{
    const block_q6_K *x = row;
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    for (int64_t B = 0; B < nb / 8; B++) {
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(x[B].ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x[B].ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(x[B].qh + 32 * h));
            uint8_t *u = w->u + 256 * B + 128 * h;
#define HIGH(shift) _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, shift), m2), 4)
            _mm256_store_si256((__m256i *)(u + 0), _mm256_or_si256(_mm256_and_si256(l0, m4), HIGH(0)));
            _mm256_store_si256((__m256i *)(u + 32), _mm256_or_si256(_mm256_and_si256(l1, m4), HIGH(2)));
            _mm256_store_si256((__m256i *)(u + 64), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), HIGH(4)));
            _mm256_store_si256((__m256i *)(u + 96), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), HIGH(6)));
#undef HIGH
        }
        /* the pair sums of 32 quants: the first 8 lanes (low 128 bits) are
         * elements 0..15, scale 2s; the next 8 elements 16..31, scale 2s+1 */
        for (int s = 0; s < 8; s++)
            w->sc[8 * B + s] = _mm256_set_m128i(_mm_set1_epi16(x[B].scales[2 * s + 1]), _mm_set1_epi16(x[B].scales[2 * s]));
        w->mins[B] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[B].scales));
        w->d[B] = f16(x[B].d);
    }
}

/* ===================================================================== */
/* Decode: one weight row times one token, straight from the blocks      */
/* ===================================================================== */

/* A token's result must not depend on the path that computed it (tile or
 * straight from the blocks), or on the batch around it: the server batches
 * sequences together, and each must get the logits it would get alone. So
 * both paths perform the same float operations in the same order: one
 * accumulator over the blocks in order, then the offsets by offset_sum. */
AVX2_INLINE __m256 step32(__m256 acc, __m256i u, __m256i q, float scale)
{
    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), _mm256_set1_epi16(1));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(scale), acc);
}

/* sum of mw[b] * ds[b]: eight lanes over the blocks, then the rest */
AVX2_INLINE float offset_sum(const float *mw, const float *ds, int64_t nb)
{
    __m256 o = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) o = _mm256_fmadd_ps(_mm256_loadu_ps(mw + b), _mm256_loadu_ps(ds + b), o);
    float off = hsum_ps(o);
    for (; b < nb; b++) off += mw[b] * ds[b];
    return off;
}

AVX2_INLINE __m256i unsigned_q4_0(const block_q4_0 *x) { return nibbles32(x->qs); }
AVX2_INLINE __m256i unsigned_q4_1(const block_q4_1 *x) { return nibbles32(x->qs); }
AVX2_INLINE __m256i unsigned_q5_0(const block_q5_0 *x) { return _mm256_or_si256(nibbles32(x->qs), fifth_bits32(x->qh)); }
AVX2_INLINE __m256i unsigned_q5_1(const block_q5_1 *x) { return _mm256_or_si256(nibbles32(x->qs), fifth_bits32(x->qh)); }
AVX2_INLINE float offset_q4_0(const block_q4_0 *x, float dw) { return -8 * dw; }
AVX2_INLINE float offset_q4_1(const block_q4_1 *x, float dw) { return f16(x->m); }
AVX2_INLINE float offset_q5_0(const block_q5_0 *x, float dw) { return -16 * dw; }
AVX2_INLINE float offset_q5_1(const block_q5_1 *x, float dw) { return f16(x->m); }

/* mw: scratch for the row's offsets, [cols / 32] */
#define VEC32(name)                                                                             \
    AVX2 static float vec_##name(const void *row, const cpu_act *a, int t, float *mw)           \
    {                                                                                           \
        const block_##name *x = row;                                                            \
        const int64_t nb = a->cols / 32;                                                        \
        const int8_t *q = a->q + t * a->cols;                                                   \
        const float *d = a->d + t * nb;                                                         \
        __m256 acc = _mm256_setzero_ps();                                                       \
        for (int64_t b = 0; b < nb; b++) {                                                      \
            const float dw = f16(x[b].d);                                                       \
            acc = step32(acc, unsigned_##name(x + b), _mm256_loadu_si256((const __m256i *)(q + 32 * b)), dw * d[b]); \
            mw[b] = offset_##name(x + b, dw);                                                   \
        }                                                                                       \
        return hsum_ps(acc) + offset_sum(mw, a->ds + t * nb, nb);                               \
    }

VEC32(q4_0)
VEC32(q4_1)
VEC32(q5_0)
VEC32(q5_1)

/* Q8_0's quants are signed: |w| times a with w's sign. */
AVX2 static float vec_q8_0(const void *row, const cpu_act *a, int t, float *mw)
{
    const block_q8_0 *x = row;
    const int64_t nb = a->cols / 32;
    const int8_t *q = a->q + t * a->cols;
    const float *d = a->d + t * nb;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i qv = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(q + 32 * b)), w);
        acc = step32(acc, _mm256_sign_epi8(w, w), qv, f16(x[b].d) * d[b]);
    }
    return hsum_ps(acc);
}

/* The eight 6-bit scales and mins of a Q4_K/Q5_K block; the mins as 16
 * int16 (each twice) to meet the input's sums of 16. */
AVX2_INLINE __m256i k_scales(const uint8_t *s, uint8_t sc[8])
{
    uint8_t m[8];
    for (int j = 0; j < 8; j++) apr_q4_K_scale_min(s, j, &sc[j], &m[j]);
    uint64_t mm;
    memcpy(&mm, m, 8);
    const __m128i dup = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    return _mm256_cvtepu8_epi16(_mm_shuffle_epi8(_mm_cvtsi64_si128((long long)mm), dup));
}

/* sc * (u . a) for 32 quants, as 8 int32 */
AVX2_INLINE __m256i kdot(__m256i u, const int8_t *q, __m256i sc)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)q)), sc);
}

AVX2_INLINE float vec_q45_K(const void *row, const cpu_act *a, int t, const int has_qh)
{
    const int64_t nk = a->cols / 256;
    const int8_t *q = a->q + t * a->cols;
    const float *d = a->d + t * nk;
    const int16_t *bs = a->bsums + t * (a->cols / 16);
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t B = 0; B < nk; B++) {
        const uint8_t *qs, *scales;
        apr_f16 dd, dmin;
        __m256i qh = _mm256_setzero_si256();
        if (has_qh) {
            const block_q5_K *x = (const block_q5_K *)row + B;
            qs = x->qs, scales = x->scales, dd = x->d, dmin = x->dmin;
            qh = _mm256_loadu_si256((const __m256i *)x->qh);
        } else {
            const block_q4_K *x = (const block_q4_K *)row + B;
            qs = x->qs, scales = x->scales, dd = x->d, dmin = x->dmin;
        }
        uint8_t sc[8];
        const __m256i mins = k_scales(scales, sc);
        const int8_t *qb = q + 256 * B;
        __m256i isum0 = _mm256_setzero_si256(), isum1 = _mm256_setzero_si256();
        for (int g = 0; g < 4; g++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
            __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            if (has_qh) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * g + 1), one), 4));
            }
            isum0 = _mm256_add_epi32(isum0, kdot(lo, qb + 64 * g, _mm256_set1_epi16(sc[2 * g])));
            isum1 = _mm256_add_epi32(isum1, kdot(hi, qb + 64 * g + 32, _mm256_set1_epi16(sc[2 * g + 1])));
        }
        const __m256i imin = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs + 16 * B)), mins);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(isum0, isum1)), _mm256_set1_ps(f16(dd) * d[B]), acc);
        acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(imin), _mm256_set1_ps(f16(dmin) * d[B]), acc);
    }
    return hsum_ps(acc);
}

AVX2 static float vec_q4_K(const void *row, const cpu_act *a, int t, float *mw) { return vec_q45_K(row, a, t, 0); }
AVX2 static float vec_q5_K(const void *row, const cpu_act *a, int t, float *mw) { return vec_q45_K(row, a, t, 1); }

/* Q6_K: 32 quants at a time meet the scales of their two halves of 16:
 * shuffle masks that spread scale pair s over the 16 pair sums. */
static const uint8_t q6_pair_mask[8][16] = {
#define P(s) { 2 * s, 2 * s, 2 * s, 2 * s, 2 * s, 2 * s, 2 * s, 2 * s, \
               2 * s + 1, 2 * s + 1, 2 * s + 1, 2 * s + 1, 2 * s + 1, 2 * s + 1, 2 * s + 1, 2 * s + 1 }
    P(0), P(1), P(2), P(3), P(4), P(5), P(6), P(7)
#undef P
};

AVX2 static float vec_q6_K(const void *row, const cpu_act *a, int t, float *mw)
{
    const block_q6_K *x = row;
    const int64_t nk = a->cols / 256;
    const int8_t *q = a->q + t * a->cols;
    const float *d = a->d + t * nk;
    const int16_t *bs = a->bsums + t * (a->cols / 16);
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t B = 0; B < nk; B++, x++) {
        const __m128i scales = _mm_loadu_si128((const __m128i *)x->scales);
        const int8_t *qb = q + 256 * B;
        __m256i isum0 = _mm256_setzero_si256(), isum1 = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
#define HIGH(shift) _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, shift), m2), 4)
#define SC(s) _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, _mm_loadu_si128((const __m128i *)q6_pair_mask[s])))
            const __m256i u0 = _mm256_or_si256(_mm256_and_si256(l0, m4), HIGH(0));
            const __m256i u1 = _mm256_or_si256(_mm256_and_si256(l1, m4), HIGH(2));
            const __m256i u2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), HIGH(4));
            const __m256i u3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), HIGH(6));
            isum0 = _mm256_add_epi32(isum0, kdot(u0, qb + 128 * h, SC(4 * h)));
            isum1 = _mm256_add_epi32(isum1, kdot(u1, qb + 128 * h + 32, SC(4 * h + 1)));
            isum0 = _mm256_add_epi32(isum0, kdot(u2, qb + 128 * h + 64, SC(4 * h + 2)));
            isum1 = _mm256_add_epi32(isum1, kdot(u3, qb + 128 * h + 96, SC(4 * h + 3)));
#undef HIGH
#undef SC
        }
        /* the -32 offset of every quant, through the input's sums of 16 */
        const __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs + 16 * B)), _mm256_cvtepi8_epi16(scales));
        const __m256i isum = _mm256_sub_epi32(_mm256_add_epi32(isum0, isum1), _mm256_slli_epi32(off, 5));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(f16(x->d) * d[B]), acc);
    }
    return hsum_ps(acc);
}

/* Float weights: f32 products with the unquantized input. */
AVX2_INLINE __m256 load8(const void *row, int type, int64_t i)
{
    if (type == APR_F32) return _mm256_loadu_ps((const float *)row + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + i));
    if (type == APR_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AVX2_INLINE float load1(const void *row, int type, int64_t i)
{
    if (type == APR_F32) return ((const float *)row)[i];
    if (type == APR_F16) return apr_f16_to_f32(((const apr_f16 *)row)[i]);
    return apr_bf16_to_f32(((const apr_bf16 *)row)[i]);
}

/* ===================================================================== */
/* Prompts: one unpacked row times TILE tokens                           */
/* ===================================================================== */

AVX2_INLINE void tile32(const unpacked *w, int64_t nb, const cpu_act *a, int t0, const int is_signed, float *res)
{
    const int64_t K = a->cols;
    /* dw * da of each block and token, so the inner loop only loads it */
    _Pragma("GCC unroll 4")
    for (int t = 0; t < TILE; t++) {
        const float *da = a->d + (t0 + t) * nb;
        float *prod = w->prod + t * nb;
        int64_t b = 0;
        for (; b + 8 <= nb; b += 8)
            _mm256_storeu_ps(prod + b, _mm256_mul_ps(_mm256_loadu_ps(w->dw + b), _mm256_loadu_ps(da + b)));
        for (; b < nb; b++) prod[b] = w->dw[b] * da[b];
    }
    __m256 acc[TILE];
    _Pragma("GCC unroll 4")
    for (int t = 0; t < TILE; t++) acc[t] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    const int8_t *q = a->q + t0 * K;
    for (int64_t b = 0; b < nb; b++) {
        __m256i u = _mm256_load_si256((const __m256i *)(w->u + 32 * b)), s = u;
        if (is_signed) u = _mm256_sign_epi8(u, u);
        _Pragma("GCC unroll 4")
        for (int t = 0; t < TILE; t++) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(q + t * K + 32 * b));
            if (is_signed) qv = _mm256_sign_epi8(qv, s);
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, qv), ones);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(w->prod + t * nb + b), acc[t]);
        }
    }
    _Pragma("GCC unroll 4")
    for (int t = 0; t < TILE; t++) res[t] = hsum_ps(acc[t]) + (is_signed ? 0 : offset_sum(w->mw, a->ds + (t0 + t) * nb, nb));
}

AVX2_INLINE void tileK(const unpacked *w, int64_t nk, const cpu_act *a, int t0, const int is_q6, float *res)
{
    const int64_t K = a->cols;
    const int8_t *q = a->q + t0 * K;
    __m256 acc[TILE];
    _Pragma("GCC unroll 4")
    for (int t = 0; t < TILE; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t B = 0; B < nk; B++) {
        __m256i isum[TILE];
        _Pragma("GCC unroll 4")
        for (int t = 0; t < TILE; t++) isum[t] = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
            const __m256i u = _mm256_load_si256((const __m256i *)(w->u + 256 * B + 32 * j));
            const __m256i sc = w->sc[8 * B + j];
            _Pragma("GCC unroll 4")
            for (int t = 0; t < TILE; t++) isum[t] = _mm256_add_epi32(isum[t], kdot(u, q + t * K + 256 * B + 32 * j, sc));
        }
        _Pragma("GCC unroll 4")
        for (int t = 0; t < TILE; t++) {
            const int64_t i = (t0 + t) * nk + B;
            const __m256i m = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(a->bsums + 16 * i)), w->mins[B]);
            const float da = a->d[i];
            if (is_q6) {
                const __m256i v = _mm256_sub_epi32(isum[t], _mm256_slli_epi32(m, 5));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(w->d[B] * da), acc[t]);
            } else {
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(w->d[B] * da), acc[t]);
                acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(m), _mm256_set1_ps(w->dmin[B] * da), acc[t]);
            }
        }
    }
    _Pragma("GCC unroll 4")
    for (int t = 0; t < TILE; t++) res[t] = hsum_ps(acc[t]);
}

AVX2_INLINE void tile_float(const void *row, int type, const cpu_act *a, int t0, int T, float *res)
{
    const int64_t K = a->cols;
    __m256 acc[TILE] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
    const float *x = a->x + t0 * K;
    int64_t i = 0;
    for (; i + 8 <= K; i += 8) {
        const __m256 v = load8(row, type, i);
        _Pragma("GCC unroll 4")
        for (int t = 0; t < TILE; t++)
            if (t < T) acc[t] = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + t * K + i), acc[t]);
    }
    for (int t = 0; t < T; t++) {
        res[t] = hsum_ps(acc[t]);
        for (int64_t j = i; j < K; j++) res[t] += load1(row, type, j) * x[t * K + j];
    }
}

/* ===================================================================== */
/* The kernels                                                           */
/* ===================================================================== */

/* Tokens in chunks of CHUNK; each row unpacked once per chunk, then tiles
 * of TILE tokens from the unpacked row, and the chunk's last n % TILE
 * tokens (and passes of fewer than TILE tokens: decode) straight from the
 * blocks. */
#define GEMM_Q(name, unpack_call, tile_call)                                                  \
    AVX2 static void gemm_##name(const cpu_gemm *g, int64_t r0, int64_t r1, void *scratch)    \
    {                                                                                         \
        const int64_t nb = g->cols / 32;                                                      \
        unpacked w = carve(scratch, g->cols);                                                 \
        for (int c = 0; c < g->n; c += CHUNK) {                                               \
            const int c_end = c + CHUNK < g->n ? c + CHUNK : g->n;                            \
            const int tiled = c + (c_end - c) / TILE * TILE;                                  \
            for (int64_t r = r0; r < r1; r++) {                                               \
                const uint8_t *row = g->w + r * g->row_bytes;                                 \
                if (tiled > c) unpack_call;                                                   \
                for (int t0 = c; t0 < tiled; t0 += TILE) {                                    \
                    float res[TILE];                                                          \
                    tile_call;                                                                \
                    for (int t = 0; t < TILE; t++) cpu_store(g, t0 + t, r, res[t]);           \
                }                                                                             \
                for (int t = tiled; t < c_end; t++) cpu_store(g, t, r, vec_##name(row, g->a, t, w.mw)); \
            }                                                                                 \
        }                                                                                     \
    }

GEMM_Q(q4_0, unpack_q4_0(&w, row, nb), tile32(&w, nb, g->a, t0, 0, res))
GEMM_Q(q4_1, unpack_q4_1(&w, row, nb), tile32(&w, nb, g->a, t0, 0, res))
GEMM_Q(q5_0, unpack_q5_0(&w, row, nb), tile32(&w, nb, g->a, t0, 0, res))
GEMM_Q(q5_1, unpack_q5_1(&w, row, nb), tile32(&w, nb, g->a, t0, 0, res))
GEMM_Q(q8_0, unpack_q8_0(&w, row, nb), tile32(&w, nb, g->a, t0, 1, res))
GEMM_Q(q4_K, unpack_q4_K(&w, row, nb), tileK(&w, nb / 8, g->a, t0, 0, res))
GEMM_Q(q5_K, unpack_q5_K(&w, row, nb), tileK(&w, nb / 8, g->a, t0, 0, res))
GEMM_Q(q6_K, unpack_q6_K(&w, row, nb), tileK(&w, nb / 8, g->a, t0, 1, res))

AVX2 static void gemm_float(const cpu_gemm *g, int64_t r0, int64_t r1, int type)
{
    for (int c = 0; c < g->n; c += CHUNK) {
        const int c_end = c + CHUNK < g->n ? c + CHUNK : g->n;
        for (int64_t r = r0; r < r1; r++) {
            for (int t0 = c; t0 < c_end; t0 += TILE) {
                float res[TILE];
                const int T = c_end - t0 < TILE ? c_end - t0 : TILE;
                tile_float(g->w + r * g->row_bytes, type, g->a, t0, T, res);
                for (int t = 0; t < T; t++) cpu_store(g, t0 + t, r, res[t]);
            }
        }
    }
}

AVX2 static void gemm_f32(const cpu_gemm *g, int64_t r0, int64_t r1, void *s) { gemm_float(g, r0, r1, APR_F32); }
AVX2 static void gemm_f16(const cpu_gemm *g, int64_t r0, int64_t r1, void *s) { gemm_float(g, r0, r1, APR_F16); }
AVX2 static void gemm_bf16(const cpu_gemm *g, int64_t r0, int64_t r1, void *s) { gemm_float(g, r0, r1, APR_BF16); }

cpu_gemm_fn apr_cpu_gemm_avx2(int dtype)
{
    switch (dtype) {
    case APR_F32: return gemm_f32;
    case APR_F16: return gemm_f16;
    case APR_BF16: return gemm_bf16;
    case APR_Q4_0: return gemm_q4_0;
    case APR_Q4_1: return gemm_q4_1;
    case APR_Q5_0: return gemm_q5_0;
    case APR_Q5_1: return gemm_q5_1;
    case APR_Q8_0: return gemm_q8_0;
    case APR_Q4_K: return gemm_q4_K;
    case APR_Q5_K: return gemm_q5_K;
    case APR_Q6_K: return gemm_q6_K;
    default: return NULL;
    }
}

/* ===================================================================== */
/* Quantizing the input                                                  */
/* ===================================================================== */

/* Scale and quants of 32 * n values, as gemm_scalar.c's quantize_block:
 * the same float operations, so the same quants. Returns the block's scale
 * and stores its integer sum in *sum. */
AVX2_INLINE float quantize_avx2(const float *x, int8_t *q, int n, int *sum)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 amax = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
    for (int i = 0; i < 32 * n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    const float m = _mm256_movemask_ps(nan) ? NAN : hmax_ps(amax);
    const __m256 id = _mm256_set1_ps(m > 0 ? 127.f / m : 0.f);
    __m256i s = _mm256_setzero_si256();
    for (int i = 0; i < 32 * n; i += 32) {
        __m256i v0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), id));
        __m256i v1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), id));
        __m256i v2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 16), id));
        __m256i v3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 24), id));
        s = _mm256_add_epi32(s, _mm256_add_epi32(_mm256_add_epi32(v0, v1), _mm256_add_epi32(v2, v3)));
        /* pack to bytes; the packs interleave 128-bit lanes, the permute restores order */
        __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(v0, v1), _mm256_packs_epi32(v2, v3));
        w = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + i), w);
    }
    *sum = hsum_epi32(s);
    return m / 127.f;
}

AVX2 void apr_cpu_quantize_avx2(cpu_act *a, int t0, int t1)
{
    const int64_t K = a->cols;
    for (int t = t0; t < t1; t++) {
        const float *x = a->x + t * K;
        int8_t *q = a->q + t * K;
        if (a->kind == ACT_32) {
            for (int64_t b = 0; b < K / 32; b++) {
                int sum;
                const float d = quantize_avx2(x + 32 * b, q + 32 * b, 1, &sum);
                a->d[t * (K / 32) + b] = d;
                a->ds[t * (K / 32) + b] = d * (float)sum;
            }
        } else {
            for (int64_t b = 0; b < K / 256; b++) {
                int sum;
                a->d[t * (K / 256) + b] = quantize_avx2(x + 256 * b, q + 256 * b, 8, &sum);
            }
            /* sums of 16 quants: widen to int16 and add pairs of pairs */
            const __m256i ones = _mm256_set1_epi16(1);
            for (int64_t g = 0; g < K / 16; g += 16) {
                __m256i s[8];
                for (int k = 0; k < 8; k++) {
                    const __m256i v = _mm256_loadu_si256((const __m256i *)(q + 16 * g + 32 * k));
                    s[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), v), ones); /* 8 sums of 4 */
                }
                /* each s[k] holds sums of 4 for 32 quants: lanes 0-3 are group 2k, lanes 4-7 group 2k+1 */
                int16_t out[16];
                for (int k = 0; k < 8; k++) {
                    int32_t l[8];
                    _mm256_storeu_si256((__m256i *)l, s[k]);
                    out[2 * k] = (int16_t)(l[0] + l[1] + l[2] + l[3]);
                    out[2 * k + 1] = (int16_t)(l[4] + l[5] + l[6] + l[7]);
                }
                memcpy(a->bsums + t * (K / 16) + g, out, sizeof out);
            }
        }
    }
}

#else  /* not x86: no AVX2 kernels */

#include "cpu.h"

cpu_gemm_fn apr_cpu_gemm_avx2(int dtype) { (void)dtype; return NULL; }
size_t apr_cpu_gemm_scratch_bytes(int64_t K) { return (size_t)K; }
void apr_cpu_quantize_avx2(cpu_act *a, int t0, int t1) { apr_cpu_quantize_scalar(a, t0, t1); }

#endif
