/* qunit.cuh — loading and decoding one unit of 32 weights (internal).
 *
 * qmat.cuh describes the unit: run A is columns 64c+16h+i and run B columns
 * 64c+32+16h+i (i = 0..15) of unit u = 2c+h. Decoding gives the 32 quants as
 * bytes packed four to a word, plus a scale and a min per run, so that
 *     w = s * q - m
 * for every weight of the run. The decode kernels take dot products of the
 * bytes with int8 activations (dp4a); the prefill kernels turn them into f16.
 *
 * Loading and decoding are separate steps so that a loop can issue the
 * 16-byte loads of several units before it uses any of them. */
#ifndef APR_KERNELS_QUNIT_CUH
#define APR_KERNELS_QUNIT_CUH

#include "common.cuh"
#include "qmat.cuh"

/* Quants of a unit: a[] run A, b[] run B, four 8-bit values per word, in
 * column order (byte k of word w is element 4w+k of the run). Unsigned
 * values below 128, except Q8_0's, which are signed. */
struct qunit {
    uint32_t a[4], b[4];
    float sa, ma, sb, mb;
};

/* The raw bytes one unit needs, as loaded. */
struct qraw {
    uint4 q;        /* the unit's 16 bytes of (low) quants */
    uint4 x;        /* Q4_K/Q5_K: the block header; Q8_0: run B's bytes */
    uint4 h;        /* Q5_K: 16 bytes of high bits */
    uint32_t w0, w1, w2; /* scales, high bits, mins: per format */
};

static __device__ __forceinline__ float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }

static __device__ __forceinline__ uint4 ldg16(const void *p) { return __ldg((const uint4 *)p); }
static __device__ __forceinline__ uint32_t ldg4(const void *p) { return __ldg((const unsigned int *)p); }
static __device__ __forceinline__ uint2 ldg8(const void *p) { return __ldg((const uint2 *)p); }

/* Q4_K/Q5_K 6-bit scale and min of sub-block j (0..7) from the 12 packed
 * bytes (GGUF's get_scale_min_k4), the header being words 1..3 of hdr. */
static __device__ __forceinline__ void kscale(const uint4 &hdr, int j, float *sc, float *mn)
{
    /* bytes 0-3 of the scales are hdr.y, 4-7 hdr.z, 8-11 hdr.w; shifts
     * rather than a byte array keep everything in registers */
    int sh = 8 * (j & 3);
    uint32_t b0 = hdr.y >> sh, b4 = hdr.z >> sh, b8 = hdr.w >> sh;
    uint32_t a, b;
    if (j < 4) {
        a = b0 & 63;
        b = b4 & 63;
    } else {
        a = (b8 & 0xF) | (((b0 >> 6) & 3) << 4);
        b = ((b8 >> 4) & 0xF) | (((b4 >> 6) & 3) << 4);
    }
    *sc = (float)a;
    *mn = (float)b;
}

/* Spreads bits 0..3 of x to bit 0 of bytes 0..3. */
static __device__ __forceinline__ uint32_t spread4(uint32_t x) { return ((x & 0xF) * 0x00204081u) & 0x01010101u; }

template <int DT>
static __device__ __forceinline__ qraw load_unit(const apr_cuda_qmat &w, int row, int u)
{
    qraw r;
    const int cols = w.cols;
    if (DT == APR_Q4_K || DT == APR_Q5_K) {
        const int bb = DT == APR_Q4_K ? 144 : 176;
        const uint8_t *blk = w.q + (size_t)row * (cols / 256) * bb + (size_t)(u >> 3) * bb;
        int j = (u >> 1) & 3, h = u & 1;
        r.x = ldg16(blk);
        if (DT == APR_Q4_K) {
            r.q = ldg16(blk + 16 + 32 * j + 16 * h);
        } else {
            r.h = ldg16(blk + 16 + 16 * h);
            r.q = ldg16(blk + 48 + 32 * j + 16 * h);
        }
    } else if (DT == APR_Q6_K) {
        r.q = ldg16(w.q + (size_t)row * (cols / 2) + 16 * u);
        uint2 hh = ldg8(w.qh + (size_t)row * (cols / 4) + 8 * u);
        r.w0 = hh.x;
        r.w1 = hh.y;
        r.w2 = ldg4(w.sc + (size_t)row * (cols / 16) + 4 * (u >> 1));   /* 4 scales of chunk u/2 */
        r.h.x = __ldg(w.d + (size_t)row * (cols / 256) + (u >> 3));
    } else if (DT == APR_Q8_0) {
        const uint8_t *p = w.q + (size_t)row * cols + 32 * u;
        r.q = ldg16(p);
        r.x = ldg16(p + 16);
        r.w0 = ldg4(w.d + (size_t)row * (cols / 32) + 2 * (u >> 1));
    } else { /* Q4_0, Q4_1, Q5_0, Q5_1 */
        r.q = ldg16(w.q + (size_t)row * (cols / 2) + 16 * u);
        r.w0 = ldg4(w.d + (size_t)row * (cols / 32) + 2 * (u >> 1));
        if (DT == APR_Q4_1 || DT == APR_Q5_1) r.w2 = ldg4(w.m + (size_t)row * (cols / 32) + 2 * (u >> 1));
        if (DT == APR_Q5_0 || DT == APR_Q5_1) r.w1 = ldg4(w.qh + (size_t)row * (cols / 8) + 4 * u);
    }
    return r;
}

/* A lane's walk along one row in steps of 32 units (the decode kernels:
 * lane l reads units l, l+32, l+64, ...). Every array of every layout
 * advances by a fixed number of bytes per 32 units, so the pointers are
 * set once and each step is an immediate offset: few registers per row,
 * which leaves room for more loads in flight. */
template <int DT> struct cursor {
    const uint8_t *q, *h, *s, *d, *m; /* this lane's first unit in each array */

    /* bytes each array advances per 32 units */
    enum {
        QS = DT == APR_Q4_K ? 576 : DT == APR_Q5_K ? 704 : DT == APR_Q8_0 ? 1024 : 512,
        HS = DT == APR_Q6_K ? 256 : 128,
        SS = 64,
        DS = DT == APR_Q6_K ? 8 : 64,
    };

    __device__ __forceinline__ cursor() {}
    __device__ __forceinline__ cursor(const apr_cuda_qmat &w, int row, int lane)
    {
        const int cols = w.cols;
        if (DT == APR_Q4_K || DT == APR_Q5_K) {
            const int bb = DT == APR_Q4_K ? 144 : 176;
            s = w.q + (size_t)row * (cols / 256) * bb + (lane >> 3) * bb; /* the block header */
            q = s + (DT == APR_Q4_K ? 16 : 48) + 16 * (lane & 7);
            h = s + 16 + 16 * (lane & 1);
        } else if (DT == APR_Q6_K) {
            q = w.q + (size_t)row * (cols / 2) + 16 * lane;
            h = w.qh + (size_t)row * (cols / 4) + 8 * lane;
            s = (const uint8_t *)w.sc + (size_t)row * (cols / 16) + 4 * (lane >> 1);
            d = (const uint8_t *)(w.d + (size_t)row * (cols / 256)) + 2 * (lane >> 3);
        } else if (DT == APR_Q8_0) {
            q = w.q + (size_t)row * cols + 32 * lane;
            d = (const uint8_t *)(w.d + (size_t)row * (cols / 32)) + 4 * (lane >> 1);
        } else {
            q = w.q + (size_t)row * (cols / 2) + 16 * lane;
            d = (const uint8_t *)(w.d + (size_t)row * (cols / 32)) + 4 * (lane >> 1);
            if (DT == APR_Q4_1 || DT == APR_Q5_1) m = (const uint8_t *)(w.m + (size_t)row * (cols / 32)) + 4 * (lane >> 1);
            if (DT == APR_Q5_0 || DT == APR_Q5_1) h = w.qh + (size_t)row * (cols / 8) + 4 * lane;
        }
    }

    /* The raw bytes of unit lane + 32k (what load_unit would return). */
    __device__ __forceinline__ qraw load(int k) const
    {
        qraw r;
        if (DT == APR_Q4_K || DT == APR_Q5_K) {
            r.x = ldg16(s + (size_t)k * QS);
            r.q = ldg16(q + (size_t)k * QS);
            if (DT == APR_Q5_K) r.h = ldg16(h + (size_t)k * QS);
        } else if (DT == APR_Q6_K) {
            r.q = ldg16(q + (size_t)k * QS);
            uint2 hh = ldg8(h + (size_t)k * HS);
            r.w0 = hh.x;
            r.w1 = hh.y;
            r.w2 = ldg4(s + (size_t)k * SS);
            r.h.x = __ldg((const uint16_t *)(d + (size_t)k * DS));
        } else if (DT == APR_Q8_0) {
            r.q = ldg16(q + (size_t)k * QS);
            r.x = ldg16(q + (size_t)k * QS + 16);
            r.w0 = ldg4(d + (size_t)k * DS);
        } else {
            r.q = ldg16(q + (size_t)k * QS);
            r.w0 = ldg4(d + (size_t)k * DS);
            if (DT == APR_Q4_1 || DT == APR_Q5_1) r.w2 = ldg4(m + (size_t)k * DS);
            if (DT == APR_Q5_0 || DT == APR_Q5_1) r.w1 = ldg4(h + (size_t)k * HS);
        }
        return r;
    }
};

/* Q4_K/Q5_K: the quant bytes of sub-blocks 2j (run a) and 2j+1 (run b) of
 * a unit, one value per byte (Q5_K: the fifth bit from the high plane). */
template <int DT>
static __device__ __forceinline__ void kquant_runs(const qraw &r, int j, uint32_t (&a)[4], uint32_t (&b)[4])
{
    const uint32_t q[4] = {r.q.x, r.q.y, r.q.z, r.q.w}, hb[4] = {r.h.x, r.h.y, r.h.z, r.h.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        a[k] = q[k] & 0x0F0F0F0Fu;
        b[k] = (q[k] >> 4) & 0x0F0F0F0Fu;
        if (DT == APR_Q5_K) {
            a[k] |= ((hb[k] >> (2 * j)) & 0x01010101u) << 4;
            b[k] |= ((hb[k] >> (2 * j + 1)) & 0x01010101u) << 4;
        }
    }
}

template <int DT>
static __device__ __forceinline__ qunit decode_unit(const qraw &r, int u)
{
    qunit o;
    const uint32_t q[4] = {r.q.x, r.q.y, r.q.z, r.q.w};
    if (DT == APR_Q4_K || DT == APR_Q5_K) {
        int j = (u >> 1) & 3;
        float d = h2f((uint16_t)(r.x.x & 0xffff)), dmin = h2f((uint16_t)(r.x.x >> 16));
        float sc, mn;
        kscale(r.x, 2 * j, &sc, &mn);
        o.sa = d * sc;
        o.ma = dmin * mn;
        kscale(r.x, 2 * j + 1, &sc, &mn);
        o.sb = d * sc;
        o.mb = dmin * mn;
        kquant_runs<DT>(r, j, o.a, o.b);
    } else if (DT == APR_Q6_K) {
        int h = u & 1;
        float d = h2f((uint16_t)r.h.x);
        const uint32_t hv[2] = {r.w0, r.w1};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint32_t hw = hv[k >> 1] >> (2 * (k & 1));
            o.a[k] = (q[k] & 0x0F0F0F0Fu) | ((hw & 0x03030303u) << 4);
            o.b[k] = ((q[k] >> 4) & 0x0F0F0F0Fu) | (((hw >> 4) & 0x03030303u) << 4);
        }
        int8_t sa = (int8_t)((r.w2 >> (8 * h)) & 0xff), sb = (int8_t)((r.w2 >> (8 * (2 + h))) & 0xff);
        o.sa = d * (float)sa;
        o.ma = 32.0f * o.sa;
        o.sb = d * (float)sb;
        o.mb = 32.0f * o.sb;
    } else if (DT == APR_Q8_0) {
        o.a[0] = r.q.x; o.a[1] = r.q.y; o.a[2] = r.q.z; o.a[3] = r.q.w;
        o.b[0] = r.x.x; o.b[1] = r.x.y; o.b[2] = r.x.z; o.b[3] = r.x.w;
        o.sa = h2f((uint16_t)(r.w0 & 0xffff));
        o.sb = h2f((uint16_t)(r.w0 >> 16));
        o.ma = o.mb = 0.0f;
    } else { /* Q4_0, Q4_1, Q5_0, Q5_1 */
#pragma unroll
        for (int k = 0; k < 4; k++) {
            o.a[k] = q[k] & 0x0F0F0F0Fu;
            o.b[k] = (q[k] >> 4) & 0x0F0F0F0Fu;
            if (DT == APR_Q5_0 || DT == APR_Q5_1) {
                o.a[k] |= spread4(r.w1 >> (4 * k)) << 4;
                o.b[k] |= spread4(r.w1 >> (16 + 4 * k)) << 4;
            }
        }
        o.sa = h2f((uint16_t)(r.w0 & 0xffff));
        o.sb = h2f((uint16_t)(r.w0 >> 16));
        if (DT == APR_Q4_1 || DT == APR_Q5_1) {
            o.ma = -h2f((uint16_t)(r.w2 & 0xffff));
            o.mb = -h2f((uint16_t)(r.w2 >> 16));
        } else {
            float off = DT == APR_Q4_0 ? 8.0f : 16.0f;
            o.ma = off * o.sa;
            o.mb = off * o.sb;
        }
    }
    return o;
}

/* Whether a format's unit bytes are signed (only Q8_0's). */
template <int DT> struct qsigned { static const bool value = DT == APR_Q8_0; };

/* The quantized formats the unit kernels are instantiated for. */
#define APR_CUDA_FOR_EACH_QTYPE(X) \
    X(APR_Q4_K) X(APR_Q5_K) X(APR_Q6_K) X(APR_Q8_0) X(APR_Q4_0) X(APR_Q4_1) X(APR_Q5_0) X(APR_Q5_1)

#endif
