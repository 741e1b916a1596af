/* kvcache.cuh — the KV cache's element types inside the kernels (internal).
 *
 * A cached row (the head_dim keys or values of one token and KV head) is
 * f16, or a run of core/quant.h's 32-element blocks, the layouts llama.cpp
 * uses for its quantized caches:
 *   Q8_0  34 bytes: f16 d, then 32 int8 q;            x = d * q
 *   Q4_0  18 bytes: f16 d, then 16 bytes of nibbles;  x = d * (n - 8), element
 *         j in the low nibble of byte j, element j + 16 in the high one.
 * rope.cu quantizes a block per warp as it stores it (the CPU's quantizers'
 * arithmetic, so both backends write the same bytes for the same input);
 * attention.cu reads the blocks where they lie.
 *
 * Alignment: a block's quants start 2 bytes in, so they are only 2-byte
 * aligned in general. Rows are 4-byte aligned (136 / 68 bytes for Q8_0 at
 * head_dim 128 / 64, 72 / 36 for Q4_0), and a cache block of 32 rows of one
 * head is 16-byte aligned (cp.async can copy it whole). Readers load
 * aligned 32-bit words and shift pairs of them into place (funnel shifts),
 * or 16-bit pieces. */
#ifndef APR_KERNELS_KVCACHE_CUH
#define APR_KERNELS_KVCACHE_CUH

#include "common.cuh"

enum kv_kind { KV_F16 = 0, KV_Q8_0 = 1, KV_Q4_0 = 2 };

/* Bytes of one block (32 elements) and of one row of HD elements. */
template <int KT> static __host__ __device__ constexpr int kv_block_bytes() { return KT == KV_Q8_0 ? 34 : 18; }
template <int KT, int HD> static __host__ __device__ constexpr int kv_row_bytes()
{
    return KT == KV_F16 ? 2 * HD : HD / 32 * kv_block_bytes<KT>();
}

/* ------------------------------------------------------------------ writing */

/* The calling warp quantizes one block: lane j brings element j. The
 * float operations are core/quantize.c's (IEEE division, 1/d, no fused
 * multiply-add), so the bytes equal the CPU's for the same input. */
template <int KT>
static __device__ __forceinline__ void kv_quantize_block(uint8_t *blk, float x)
{
    const int lane = threadIdx.x & 31;
    if (KT == KV_Q8_0) {
        const float d = warp_max(fabsf(x)) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        blk[2 + lane] = (uint8_t)(int8_t)roundf(__fmul_rn(x, id));
        if (lane == 0) *(__half *)blk = __float2half_rn(d);
    } else {
        /* the element of largest magnitude with its sign, the first of equals */
        float m = x;
        int at = lane;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float om = __shfl_xor_sync(0xffffffffu, m, o);
            const int oat = __shfl_xor_sync(0xffffffffu, at, o);
            if (fabsf(om) > fabsf(m) || (fabsf(om) == fabsf(m) && oat < at)) {
                m = om;
                at = oat;
            }
        }
        if (m == 0.0f) m = 0.0f; /* all zeros: +0, the CPU's starting value, not a lane's -0 */
        const float d = m / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        /* codes truncate x/d + 8.5 (>= 0.5 here), capped at 15 */
        const int q = min(15, __float2int_rz(__fadd_rn(__fmul_rn(x, id), 8.5f)));
        const int hi = __shfl_down_sync(0xffffffffu, q, 16);
        if (lane < 16) blk[2 + lane] = (uint8_t)(q | hi << 4);
        if (lane == 0) *(__half *)blk = __float2half_rn(d);
    }
}

/* ------------------------------------------------------------------ reading */

/* Byte k (0..3) of w, read as a signed byte, as a float: w ^ 0x80808080
 * biases the bytes to unsigned, which go under the exponent of 2^23
 * (one byte permute and one subtraction, no int-to-float conversion). */
static __device__ __forceinline__ float kv_s8(uint32_t biased, int k)
{
    return __int_as_float(__byte_perm(biased, 0x4b000000u, 0x7440 | k)) - 8388736.0f;
}

/* Byte k of w, a nibble n (0..15, the other bits clear), as n - 8. */
static __device__ __forceinline__ float kv_u4(uint32_t nibbles, int k)
{
    return __int_as_float(__byte_perm(nibbles, 0x4b000000u, 0x7440 | k)) - 8388616.0f;
}

static __device__ __forceinline__ float kv_scale(const uint8_t *blk) { return __half2float(*(const __half *)blk); }

/* Element e of a quantized row, the slow way (one element at a time). */
template <int KT>
static __device__ __forceinline__ float kv_elem(const uint8_t *row, int e)
{
    const uint8_t *blk = row + (e >> 5) * kv_block_bytes<KT>();
    const int j = e & 31;
    if (KT == KV_Q8_0) return kv_scale(blk) * (float)(int8_t)blk[2 + j];
    const int n = (blk[2 + (j & 15)] >> (j & 16 ? 4 : 0)) & 15;
    return kv_scale(blk) * (float)(n - 8);
}

/* Where one lane's run of elements [e0, e0 + n) of a row lies (n <= 32,
 * within one block): its block's scale at byte d_off, and the bytes of its
 * quants starting at q_off (2-byte aligned) — for Q4_0 the nibbles of
 * elements e0.. are in bytes (e0 & 15).., high nibbles when e0 & 16. The
 * quants are read as the aligned words from w_off, each shifted right by
 * sh bits into the next (sh is 0 or 16). */
struct kv_span {
    int d_off, q_off, w_off, sh, nib;
};

template <int KT>
static __device__ __forceinline__ kv_span kv_span_of(int e0)
{
    kv_span s;
    const int b = e0 >> 5, j = e0 & 31;
    s.d_off = b * kv_block_bytes<KT>();
    s.q_off = s.d_off + 2 + (KT == KV_Q8_0 ? j : (j & 15));
    s.w_off = s.q_off & ~3;
    s.sh = (s.q_off & 3) * 8;
    s.nib = KT == KV_Q4_0 && (j & 16) ? 4 : 0;
    return s;
}

/* Two 16-bit loads as one word (for runs of 4 quants at a 2-byte boundary). */
static __device__ __forceinline__ uint32_t kv_ld_2x16(const uint8_t *p)
{
    const unsigned short *h = (const unsigned short *)p;
    return (uint32_t)__ldg(h) | (uint32_t)__ldg(h + 1) << 16;
}

#endif
