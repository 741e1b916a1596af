/* quantize.cu — RMSNorm fused with the conversion of activations to what
 * the matrix kernels read: int8 blocks of 32 for decode, f16 for prefill.
 *
 * The int8 quantization is llama.cpp's q8_1 rule (scale = max|x| / 127,
 * round to nearest) so that results agree with its golden logits; the
 * layout is the unit order of qmat.cuh. */
#include "common.cuh"
#include "qmat.cuh"
#include "quantize.cuh"

/* ------------------------------------------------------------------ kernels */

/* 1/rms of the row (or 1 when g is NULL). A decode step's products wait
 * on this kernel, so its loads go out together: up to LD per thread in
 * flight, one L2 round trip for 5120 columns instead of three. (The sums
 * keep their order: the same bits as before.) */
static __device__ float row_scale(const float *x, int cols, const float *g, float eps, float *red)
{
    if (!g) return 1.0f;
    enum { LD = 12 };
    const int step = blockDim.x * 4;
    float ss = 0.0f;
    for (int i = threadIdx.x * 4; i < cols; i += LD * step) {
        float4 v[LD];
#pragma unroll
        for (int k = 0; k < LD; k++)
            if (i + k * step < cols) v[k] = *(const float4 *)(x + i + k * step);
#pragma unroll
        for (int k = 0; k < LD; k++)
            if (i + k * step < cols) ss += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
    }
    ss = block_sum(ss, red);
    return rsqrtf(ss / (float)cols + eps);
}

/* Blocks (blockIdx.y) of a token share its groups of columns (a chunk of
 * 64 for block 32, four for block 256), one group per warp (the launch has
 * a warp for every group): a decode step has one token, and one block
 * walking 5120 (or 27648) columns alone was the slowest kernel of the
 * step. Each block recomputes the row's sum of squares: 20 KB from L2,
 * cheaper than a second launch. */
static __global__ void rmsnorm_q8(const float *x, int ld_x, const float *g, float eps, int cols, int block,
                                  int8_t *q, float4 *meta, float *y)
{
    pdl_trigger();
    __shared__ float red[32];
    const int lane = threadIdx.x & 31, per = block == 256 ? 4 : 1; /* chunks per group */
    const int grp = blockIdx.y * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const bool has_group = grp < cols / (64 * per);
    /* g is a weight: this warp's part of it is loaded while the kernel
     * before finishes. With the batched loads of row_scale, -0.4 ms a 32B
     * decode step on the H100 (10.64 -> 10.23 ms; 129 of these) */
    float ga[4] = {}, gb[4] = {};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        if (k >= per || !g || !has_group) break;
        ga[k] = g[64 * (grp * per + k) + lane];
        gb[k] = g[64 * (grp * per + k) + lane + 32];
    }
    pdl_wait();
    int t = blockIdx.x;
    x += (size_t)t * ld_x;
    q += (size_t)t * cols;
    meta += (size_t)t * (cols / 32);
    if (y) y += (size_t)t * cols;
    float r = row_scale(x, cols, g, eps, red); /* (every thread: a block sum) */
    if (!has_group) return;
    float va[4], vb[4];
#pragma unroll
    for (int k = 0; k < 4; k++) {
        if (k >= per) break;
        int ca = 64 * (grp * per + k) + lane, cb = ca + 32;
        va[k] = x[ca] * r;
        vb[k] = x[cb] * r;
        if (g) {
            va[k] *= ga[k];
            vb[k] *= gb[k];
        }
        if (y) {
            y[ca] = va[k];
            y[cb] = vb[k];
        }
    }
    if (block == 256) q8_chunks256(va, vb, 4 * grp, q, meta);
    else q8_chunk(va[0], vb[0], grp, q, meta);
}

/* f16 for the prefill products, a warp per block of 32 columns. With
 * q8round the values are first rounded as the decode kernels' int8 would
 * round them (scale = max|x| / 127): prefill then sees the activations
 * decode and llama.cpp see, so a prompt's keys and values agree with
 * theirs as closely as its decode steps do (the golden fixtures'
 * teacher-forced greedy check depends on it). y gets the unrounded floats. */
static __global__ void rmsnorm_f16(const float *x, int ld_x, const float *g, float eps, int cols, __half *out, float *y,
                                   int q8round, int frag)
{
    pdl_trigger();
    __shared__ float red[32];
    /* a warp per block of q8round columns (32 when not rounding), the
     * launch has one for every block; blocks (blockIdx.y) of a token share
     * them, and the weights load before the wait, as in rmsnorm_q8 */
    const int lane = threadIdx.x & 31, bs = q8round ? q8round : 32;
    const int b = blockIdx.y * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const bool has_block = b < cols / bs;
    float gv[8];
#pragma unroll
    for (int k = 0; k < 8; k++) gv[k] = g && 32 * k < bs && has_block ? g[bs * b + 32 * k + lane] : 1.0f;
    pdl_wait();
    int t = blockIdx.x;
    x += (size_t)t * ld_x;
    if (!frag) out += (size_t)t * cols;
    if (y) y += (size_t)t * cols;
    float r = row_scale(x, cols, g, eps, red); /* (every thread: a block sum) */
    if (!has_block) return;
    float v[8];
    float m = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        if (32 * k >= bs) break;
        const int c = bs * b + 32 * k + lane;
        v[k] = x[c] * r * gv[k];
        if (y) y[c] = v[k];
        m = fmaxf(m, fabsf(v[k]));
    }
    const float d = q8round ? warp_max(m) / 127.0f : 0.0f;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        if (32 * k >= bs) break;
        float w = v[k];
        if (q8round) w = d > 0.0f ? (float)__float2int_rn(w / d) * d : 0.0f;
        const int c = bs * b + 32 * k + lane;
        out[frag ? xfrag_index(t, c, cols) : c] = __float2half_rn(w);
    }
}

/* ---------------------------------------------------------------- entry points */

extern "C" apr_status apr_cuda_quantize_rmsnorm_q8(const float *x, int ld_x, const float *g, float eps, int n, int cols,
                                                   apr_cuda_q8 out, float *y_f32, cudaStream_t stream)
{
    if (n <= 0) return APR_OK;
    if ((out.block != 32 && out.block != 256) || cols % out.block)
        return apr_error(APR_ERR_INVALID, "apr_cuda_quantize_rmsnorm_q8: blocks of %d for %d columns", out.block, cols);
    /* a warp for every group of columns (the kernel relies on it), four per block */
    dim3 grid(n, APR_DIV_UP(cols / (out.block == 256 ? 256 : 64), 4));
    APR_CUDA_CHECK(launch_pdl(rmsnorm_q8, grid, 128, 0, stream, x, ld_x, g, eps, cols, out.block, out.q,
                              (float4 *)out.meta, y_f32));
    APR_CUDA_LAUNCHED();
    return APR_OK;
}

extern "C" apr_status apr_cuda_quantize_rmsnorm_f16(const float *x, int ld_x, const float *g, float eps, int n, int cols,
                                                    void *out_f16, float *y_f32, int q8round, int frag,
                                                    cudaStream_t stream)
{
    if (n <= 0) return APR_OK;
    if ((q8round && q8round != 32 && q8round != 256) || cols % (q8round ? q8round : 32) || (frag && cols % 128))
        return apr_error(APR_ERR_INVALID, "apr_cuda_quantize_rmsnorm_f16: blocks of %d for %d columns%s", q8round, cols,
                         frag ? " in fragment order" : "");
    dim3 grid(n, APR_DIV_UP(cols / (q8round ? q8round : 32), 4)); /* a warp for every block of columns */
    /* with programmatic launch: decode steps of more than q8_max tokens use it too */
    APR_CUDA_CHECK(launch_pdl(rmsnorm_f16, grid, 128, 0, stream, x, ld_x, g, eps, cols, (__half *)out_f16, y_f32,
                              q8round, frag));
    APR_CUDA_LAUNCHED();
    return APR_OK;
}
