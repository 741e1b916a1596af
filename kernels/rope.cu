/* rope.cu — rotary position embedding of q and k, fused with the append of
 * k and v to the paged cache (as f16, or quantized to Q8_0 / Q4_0 blocks
 * by the warp that holds them: kvcache.cuh): one pass over the
 * projections' output, one block per token and head.
 *
 * The angles are pos * scale * base^(-2i/n_rot) computed in double, as the
 * CPU backend does (at 32K positions theta reaches 10^4.5 radians, where a
 * float angle has lost its fraction), so both backends rotate identically;
 * their cos and sin go to a table once per pass (rope_table), which every
 * layer reads. */
#include "common.cuh"
#include "kvcache.cuh"
#include "rope.cuh"

/* ------------------------------------------------------------------ kernels */

/* cos and sin of every rotated pair of every token: once per pass (the
 * positions are the same in every layer), in double. */
static __global__ void rope_table(float2 *cs, apr_cuda_rope r, const int32_t *pos)
{
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.x, half = r.n_rot / 2;
    const double position = (double)pos[t] * (double)r.scale;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        double s, c;
        sincos(position * pow((double)r.base, -2.0 * i / r.n_rot), &s, &c);
        cs[(size_t)t * half + i] = make_float2((float)c, (float)s);
    }
}

/* A block per (token, head): blockIdx.y < n_head is a q head, then the k
 * heads, then the v heads; a thread per dimension pair (or dimension).
 * For a quantized cache (KT) the block has exactly hd threads: the k or v
 * row goes through shared memory, and warp w quantizes elements
 * 32w..32w+31, its row's block w. */
template <int KT>
static __global__ void rope_store(float *qkv, apr_cuda_rope r, apr_cuda_tokens tk, apr_cuda_kv kv, const float2 *table,
                                  __half *q_f16)
{
    pdl_trigger();
    const int t = blockIdx.x, head = blockIdx.y, hd = r.hd, half = r.n_rot / 2;
    const int q_dim = r.n_head * hd, kv_dim = r.n_kv * hd;
    float *x = qkv + (size_t)t * (q_dim + 2 * kv_dim) + (size_t)head * hd;
    /* the slots are copied in before the pass (attention.cu's attn_decode
     * says why this load may come before the wait) */
    const int slot = tk.slot[t], bt = 1 << kv.block_shift;
    pdl_wait();
    const size_t kv_row0 = (size_t)(slot >> kv.block_shift) * r.n_kv * bt + (slot & (bt - 1));
    const bool is_q = head < r.n_head, is_v = head >= r.n_head + r.n_kv;
    const size_t row = kv_row0 + (size_t)(head - r.n_head - (is_v ? r.n_kv : 0)) * bt;
    if (KT != KV_F16 && !is_q) {
        __shared__ float y[128];
        const int d = threadIdx.x;
        if (!is_v && d < half) {
            int a = r.neox ? d : 2 * d, b = r.neox ? d + half : 2 * d + 1;
            float2 w = table[(size_t)t * half + d];
            float x0 = x[a], x1 = x[b];
            float y0 = x0 * w.x - x1 * w.y, y1 = x0 * w.y + x1 * w.x;
            x[a] = y[a] = y0;
            x[b] = y[b] = y1;
        } else if (is_v || d >= r.n_rot) {
            y[d] = x[d];
        }
        __syncthreads();
        uint8_t *dst_row = (uint8_t *)(is_v ? kv.v : kv.k) + row * kv.row_bytes;
        float value = y[d];
        if (!is_v && kv.k_offset) value -= kv.k_offset[(size_t)(head - r.n_head) * hd + d];
        kv_quantize_block<KT>(dst_row + (d >> 5) * kv_block_bytes<KT>(), value);
        return;
    }
    __half *dst = is_q ? (q_f16 ? q_f16 + (size_t)t * q_dim + (size_t)head * hd : NULL)
                       : (__half *)(is_v ? kv.v : kv.k) + row * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        if (!is_v && d < half) {
            /* the pair (a, b) that dimension d leads */
            int a = r.neox ? d : 2 * d, b = r.neox ? d + half : 2 * d + 1;
            float2 w = table[(size_t)t * half + d];
            float x0 = x[a], x1 = x[b];
            float y0 = x0 * w.x - x1 * w.y, y1 = x0 * w.y + x1 * w.x;
            x[a] = y0;
            x[b] = y1;
            if (dst) {
                dst[a] = __float2half_rn(y0);
                dst[b] = __float2half_rn(y1);
            }
        } else if (is_v || d >= r.n_rot) {
            /* unrotated: v, and dimensions past n_rot */
            if (dst) dst[d] = __float2half_rn(x[d]);
        }
    }
}

/* ---------------------------------------------------------------- entry points */

extern "C" apr_status apr_cuda_rope_table(int n, apr_cuda_rope r, const int32_t *pos, void *table, cudaStream_t stream)
{
    if (n <= 0) return APR_OK;
    APR_CUDA_CHECK(launch_pdl(rope_table, n, 64, 0, stream, (float2 *)table, r, pos));
    APR_CUDA_LAUNCHED();
    return APR_OK;
}

extern "C" apr_status apr_cuda_rope_store(float *qkv, int n, apr_cuda_rope r, apr_cuda_tokens tk, apr_cuda_kv kv,
                                          const void *table, void *q_f16, cudaStream_t stream)
{
    if (n <= 0) return APR_OK;
    if (r.n_rot > r.hd || r.n_rot % 2)
        return apr_error(APR_ERR_UNSUPPORTED, "CUDA RoPE: %d rotated dimensions of %d", r.n_rot, r.hd);
    if ((kv.type != APR_F16 && kv.type != APR_Q8_0 && kv.type != APR_Q4_0) ||
        (kv.type != APR_F16 && (r.hd % 32 || r.hd > 128)))
        return apr_error(APR_ERR_UNSUPPORTED, "CUDA RoPE: a %s cache with heads of %d", apr_dtype_name(kv.type), r.hd);
    dim3 grid(n, r.n_head + 2 * r.n_kv);
    const float2 *cs = (const float2 *)table;
    if (kv.type == APR_Q8_0)
        APR_CUDA_CHECK(launch_pdl(rope_store<KV_Q8_0>, grid, r.hd, 0, stream, qkv, r, tk, kv, cs, (__half *)q_f16));
    else if (kv.type == APR_Q4_0)
        APR_CUDA_CHECK(launch_pdl(rope_store<KV_Q4_0>, grid, r.hd, 0, stream, qkv, r, tk, kv, cs, (__half *)q_f16));
    else
        APR_CUDA_CHECK(launch_pdl(rope_store<KV_F16>, grid, r.hd, 0, stream, qkv, r, tk, kv, cs, (__half *)q_f16));
    APR_CUDA_LAUNCHED();
    return APR_OK;
}
