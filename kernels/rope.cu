/* rope.cu — rotary position embedding of q and k, fused with the append of
 * k and v (as f16) to the paged cache: one pass over the projections'
 * output, one block per token.
 *
 * The angles are pos * scale * base^(-2i/n_rot) computed in double, as the
 * CPU backend does (at 32K positions theta reaches 10^4.5 radians, where a
 * float angle has lost its fraction), so both backends rotate identically. */
#include "common.cuh"
#include "rope.cuh"

enum { MAX_HALF = 256 };

/* ------------------------------------------------------------------ kernels */

static __global__ void rope_store(float *qkv, apr_cuda_rope r, apr_cuda_tokens tk, apr_cuda_kv kv, __half *q_f16)
{
    __shared__ float cs[MAX_HALF][2];
    const int t = blockIdx.x, hd = r.hd, half = r.n_rot / 2;
    const int q_dim = r.n_head * hd, kv_dim = r.n_kv * hd;
    float *row = qkv + (size_t)t * (q_dim + 2 * kv_dim);
    const double position = (double)tk.pos[t] * (double)r.scale;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        double s, c;
        sincos(position * pow((double)r.base, -2.0 * i / r.n_rot), &s, &c);
        cs[i][0] = (float)c;
        cs[i][1] = (float)s;
    }
    __syncthreads();
    const int slot = tk.slot[t], bt = 1 << kv.block_shift;
    const size_t kv_row0 = (size_t)(slot >> kv.block_shift) * r.n_kv * bt + (slot & (bt - 1));
    __half *kc = (__half *)kv.k, *vc = (__half *)kv.v;

    /* rotated pairs of every q and k head */
    for (int e = threadIdx.x; e < (r.n_head + r.n_kv) * half; e += blockDim.x) {
        int head = e / half, i = e % half;
        int a = r.neox ? i : 2 * i, b = r.neox ? i + half : 2 * i + 1;
        float *x = row + head * hd;
        float x0 = x[a], x1 = x[b], c = cs[i][0], s = cs[i][1];
        float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
        x[a] = y0;
        x[b] = y1;
        if (head < r.n_head) {
            if (q_f16) {
                q_f16[(size_t)t * q_dim + head * hd + a] = __float2half_rn(y0);
                q_f16[(size_t)t * q_dim + head * hd + b] = __float2half_rn(y1);
            }
        } else {
            __half *dst = kc + (kv_row0 + (size_t)(head - r.n_head) * bt) * hd;
            dst[a] = __float2half_rn(y0);
            dst[b] = __float2half_rn(y1);
        }
    }
    /* dimensions past n_rot pass unrotated; v is copied */
    for (int e = threadIdx.x; e < (r.n_head + 2 * r.n_kv) * hd; e += blockDim.x) {
        int head = e / hd, d = e % hd;
        bool is_v = head >= r.n_head + r.n_kv;
        if (d < r.n_rot && !is_v) continue;
        float x = row[e];
        if (head < r.n_head) {
            if (q_f16) q_f16[(size_t)t * q_dim + e] = __float2half_rn(x);
        } else {
            int h = is_v ? head - r.n_head - r.n_kv : head - r.n_head;
            (is_v ? vc : kc)[(kv_row0 + (size_t)h * bt) * hd + d] = __float2half_rn(x);
        }
    }
}

/* ---------------------------------------------------------------- entry points */

extern "C" apr_status apr_cuda_rope_store(float *qkv, int n, apr_cuda_rope r, apr_cuda_tokens tk, apr_cuda_kv kv,
                                          void *q_f16, cudaStream_t stream)
{
    if (n <= 0) return APR_OK;
    if (r.n_rot > r.hd || r.n_rot / 2 > MAX_HALF || r.n_rot % 2)
        return apr_error(APR_ERR_UNSUPPORTED, "CUDA RoPE: %d rotated dimensions of %d", r.n_rot, r.hd);
    rope_store<<<n, 256, 0, stream>>>(qkv, r, tk, kv, (__half *)q_f16);
    APR_CUDA_LAUNCHED();
    return APR_OK;
}
