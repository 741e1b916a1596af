/* embed.cu — gathers and dequantizes rows of a matrix (token embeddings).
 *
 * One thread per unit of 32 weights, through the same decoders as the
 * matrix kernels, so every format they read can also be looked up here.
 * The embedding matrix may stay in (mapped) host memory: a decode step then
 * pulls one row over PCIe instead of keeping 0.4 GB on the GPU. */
#include "common.cuh"
#include "embed.cuh"
#include "qunit.cuh"

/* ------------------------------------------------------------------ kernels */

template <int DT>
static __device__ __forceinline__ void unit_floats(const apr_cuda_qmat &w, int row, int u, float *dst)
{
    qunit q = decode_unit<DT>(load_unit<DT>(w, row, u), u);
    int c = u >> 1, h = u & 1;
#pragma unroll
    for (int k = 0; k < 16; k++) {
        uint32_t ba = (q.a[k >> 2] >> (8 * (k & 3))) & 0xff, bb = (q.b[k >> 2] >> (8 * (k & 3))) & 0xff;
        float fa = qsigned<DT>::value ? (float)(int8_t)ba : (float)ba;
        float fb = qsigned<DT>::value ? (float)(int8_t)bb : (float)bb;
        dst[64 * c + 16 * h + k] = q.sa * fa - q.ma;
        dst[64 * c + 32 + 16 * h + k] = q.sb * fb - q.mb;
    }
}

static __device__ __forceinline__ float plain_float(const apr_cuda_qmat &w, size_t i)
{
    if (w.dtype == APR_F32) return ((const float *)w.q)[i];
    uint16_t h = ((const uint16_t *)w.q)[i];
    return w.dtype == APR_F16 ? h2f(h) : __uint_as_float((uint32_t)h << 16);
}

static __global__ void embed_rows(apr_cuda_qmat w, const int32_t *ids, float *out)
{
    pdl_trigger();
    pdl_wait();
    int t = blockIdx.y, row = ids[t];
    float *dst = out + (size_t)t * w.cols;
    if (w.dtype == APR_F32 || w.dtype == APR_F16 || w.dtype == APR_BF16) {
        for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < w.cols; c += gridDim.x * blockDim.x)
            dst[c] = plain_float(w, (size_t)row * w.cols + c);
        return;
    }
    int u = blockIdx.x * blockDim.x + threadIdx.x;
    if (u >= w.cols / 32) return;
    switch (w.dtype) {
#define CASE(DT) case DT: unit_floats<DT>(w, row, u, dst); break;
        APR_CUDA_FOR_EACH_QTYPE(CASE)
#undef CASE
    default: break;
    }
}

static __global__ void gather_rows(float *out, const float *x, const int32_t *rows, int64_t dim)
{
    pdl_trigger();
    pdl_wait();
    const float *src = x + (int64_t)rows[blockIdx.y] * dim;
    float *dst = out + (int64_t)blockIdx.y * dim;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < dim; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = src[i];
}

/* ---------------------------------------------------------------- entry points */

extern "C" apr_status apr_cuda_embed(const apr_cuda_qmat *w, const int32_t *ids, int n, float *out, cudaStream_t stream)
{
    if (n <= 0) return APR_OK;
    dim3 grid(APR_DIV_UP(w->cols / 32, 64), n);
    APR_CUDA_CHECK(launch_pdl(embed_rows, grid, 64, 0, stream, *w, ids, out));
    APR_CUDA_LAUNCHED();
    return APR_OK;
}

extern "C" apr_status apr_cuda_embed_gather(float *out, const float *x, const int32_t *rows, int n, int64_t dim,
                                            cudaStream_t stream)
{
    if (n <= 0) return APR_OK;
    dim3 grid((unsigned)APR_DIV_UP(dim, 256 * 4) < 1 ? 1 : (unsigned)APR_DIV_UP(dim, 256 * 4), n);
    APR_CUDA_CHECK(launch_pdl(gather_rows, grid, 256, 0, stream, out, x, rows, dim));
    APR_CUDA_LAUNCHED();
    return APR_OK;
}
