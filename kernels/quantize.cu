/* quantize.cu — RMSNorm fused with the conversion of activations to what
 * the matrix kernels read: int8 blocks of 32 for decode, f16 for prefill.
 *
 * The int8 quantization is llama.cpp's q8_1 rule (scale = max|x| / 127,
 * round to nearest) so that results agree with its golden logits; the
 * layout is the unit order of qmat.cuh. One block per token. */
#include "common.cuh"
#include "qmat.cuh"
#include "quantize.cuh"

/* ------------------------------------------------------------------ kernels */

/* 1/rms of the row (or 1 when g is NULL). */
static __device__ float row_scale(const float *x, int cols, const float *g, float eps, float *red)
{
    if (!g) return 1.0f;
    float ss = 0.0f;
    for (int i = threadIdx.x * 4; i < cols; i += blockDim.x * 4) {
        float4 v = *(const float4 *)(x + i);
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    ss = block_sum(ss, red);
    return rsqrtf(ss / (float)cols + eps);
}

/* Blocks (blockIdx.y) of a token share its chunks of 64 columns, a chunk
 * per warp: a decode step has one token, and one block walking 5120 (or
 * 27648) columns alone was the slowest kernel of the step. Each block
 * recomputes the row's sum of squares: 20 KB from L2, cheaper than a
 * second launch. */
static __global__ void rmsnorm_q8(const float *x, int ld_x, const float *g, float eps, int cols,
                                  int8_t *q, float4 *meta, float *y)
{
    __shared__ float red[32];
    int t = blockIdx.x;
    x += (size_t)t * ld_x;
    q += (size_t)t * cols;
    meta += (size_t)t * (cols / 32);
    if (y) y += (size_t)t * cols;
    float r = row_scale(x, cols, g, eps, red);
    int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    /* a warp quantizes one chunk of 64 columns: lane l holds column l of
     * block A (64c..64c+31) and column l of block B (64c+32..64c+63) */
    for (int c = blockIdx.y * nw + (threadIdx.x >> 5); c < cols / 64; c += gridDim.y * nw) {
        int ca = 64 * c + lane, cb = ca + 32;
        float va = x[ca] * r, vb = x[cb] * r;
        if (g) {
            va *= g[ca];
            vb *= g[cb];
        }
        if (y) {
            y[ca] = va;
            y[cb] = vb;
        }
        q8_chunk(va, vb, c, q, meta);
    }
}

static __global__ void rmsnorm_f16(const float *x, int ld_x, const float *g, float eps, int cols, __half *out, float *y)
{
    __shared__ float red[32];
    int t = blockIdx.x;
    x += (size_t)t * ld_x;
    out += (size_t)t * cols;
    if (y) y += (size_t)t * cols;
    float r = row_scale(x, cols, g, eps, red);
    for (int i = threadIdx.x * 4; i < cols; i += blockDim.x * 4) {
        float4 v = *(const float4 *)(x + i);
        float4 w = g ? *(const float4 *)(g + i) : make_float4(1, 1, 1, 1);
        float4 o = make_float4(v.x * r * w.x, v.y * r * w.y, v.z * r * w.z, v.w * r * w.w);
        *(__half2 *)(out + i) = __floats2half2_rn(o.x, o.y);
        *(__half2 *)(out + i + 2) = __floats2half2_rn(o.z, o.w);
        if (y) *(float4 *)(y + i) = o;
    }
}

/* ---------------------------------------------------------------- entry points */

extern "C" apr_status apr_cuda_quantize_rmsnorm_q8(const float *x, int ld_x, const float *g, float eps, int n, int cols,
                                                   apr_cuda_q8 out, float *y_f32, cudaStream_t stream)
{
    if (n <= 0) return APR_OK;
    dim3 grid(n, APR_DIV_UP(cols / 64, 8));
    rmsnorm_q8<<<grid, 256, 0, stream>>>(x, ld_x, g, eps, cols, out.q, (float4 *)out.meta, y_f32);
    APR_CUDA_LAUNCHED();
    return APR_OK;
}

extern "C" apr_status apr_cuda_quantize_rmsnorm_f16(const float *x, int ld_x, const float *g, float eps, int n, int cols,
                                                    void *out_f16, float *y_f32, cudaStream_t stream)
{
    if (n <= 0) return APR_OK;
    rmsnorm_f16<<<n, 256, 0, stream>>>(x, ld_x, g, eps, cols, (__half *)out_f16, y_f32);
    APR_CUDA_LAUNCHED();
    return APR_OK;
}
