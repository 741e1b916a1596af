/* blas.c — cuBLAS for long prompts, loaded at run time.
 *
 * A prompt pass of many tokens is a matrix product of every weight by
 * hundreds of activation rows. apr's own tiled kernels (gemm.cu) decode
 * every weight into shared memory once per 128-token tile: 29 ms a tile for
 * the 32B model, so a 4,096-token prompt decodes the model 32 times. For
 * long passes ops.c instead dequantizes each matrix to f16 once, a chunk of
 * rows at a time, and multiplies the chunk by all the tokens with cuBLAS,
 * the card vendor's tuned GEMM ("use the well-kept library where one
 * exists").
 *
 * cuBLAS is opened with dlopen rather than linked: its libraries are
 * ~600 MB, and a machine without them (or a bundle that does not carry
 * them) still runs every pass on apr's own kernels. Only the handful of
 * entry points used here are looked up. */
#include "backend/cuda/cuda.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

#include "core/error.h"

#ifdef APR_CUDA

#include <cublas_api.h>

typedef cublasStatus_t (*create_fn)(cublasHandle_t *);
typedef cublasStatus_t (*destroy_fn)(cublasHandle_t);
typedef cublasStatus_t (*set_stream_fn)(cublasHandle_t, cudaStream_t);
typedef cublasStatus_t (*set_workspace_fn)(cublasHandle_t, void *, size_t);
typedef cublasStatus_t (*gemm_ex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                     const void *, const void *, cudaDataType, int, const void *, cudaDataType, int,
                                     const void *, void *, cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);

static struct {
    create_fn create;
    destroy_fn destroy;
    set_stream_fn set_stream;
    set_workspace_fn set_workspace;
    gemm_ex_fn gemm_ex;
    int ok;
} lib;

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_open(void)
{
    static const char *const names[] = { "libcublas.so.13", "/usr/local/cuda/lib64/libcublas.so.13",
                                         "libcublas.so.12", "/usr/local/cuda/lib64/libcublas.so.12" };
    if (getenv("APR_CUDA_NO_CUBLAS")) return; /* for measurements: apr's own kernels only */
    void *h = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !h; i++) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) return;
    lib.create = (create_fn)dlsym(h, "cublasCreate_v2");
    lib.destroy = (destroy_fn)dlsym(h, "cublasDestroy_v2");
    lib.set_stream = (set_stream_fn)dlsym(h, "cublasSetStream_v2");
    lib.set_workspace = (set_workspace_fn)dlsym(h, "cublasSetWorkspace_v2");
    lib.gemm_ex = (gemm_ex_fn)dlsym(h, "cublasGemmEx");
    lib.ok = lib.create && lib.destroy && lib.set_stream && lib.set_workspace && lib.gemm_ex;
}

int apr_cuda_blas_available(void)
{
    pthread_once(&lib_once, lib_open);
    return lib.ok;
}

void *apr_cuda_blas_new(cudaStream_t cs, void *workspace, size_t workspace_bytes)
{
    if (!apr_cuda_blas_available()) return NULL;
    cublasHandle_t h = NULL;
    if (lib.create(&h) != CUBLAS_STATUS_SUCCESS) return NULL;
    /* a workspace of our own: cuBLAS may not allocate while a graph records */
    if (lib.set_stream(h, cs) != CUBLAS_STATUS_SUCCESS ||
        lib.set_workspace(h, workspace, workspace_bytes) != CUBLAS_STATUS_SUCCESS) {
        lib.destroy(h);
        return NULL;
    }
    return h;
}

void apr_cuda_blas_free(void *handle)
{
    if (handle) lib.destroy((cublasHandle_t)handle);
}

/* C[t*ldc + r] = sum_k A[r*k_dim + k] B[t*k_dim + k] + beta C[t*ldc + r]:
 * A is m rows of f16 weights, B n rows of f16 activations, C f32. In
 * cuBLAS's column-major terms C (m x n, ldc) = A^T (A is k x m) times B
 * (k x n). */
apr_status apr_cuda_blas_gemm(void *handle, int m, int n, int k_dim, const void *a_f16, const void *b_f16, float *c,
                              int ldc, float beta)
{
    const float alpha = 1.0f;
    cublasStatus_t st = lib.gemm_ex((cublasHandle_t)handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k_dim, &alpha, a_f16,
                                    CUDA_R_16F, k_dim, b_f16, CUDA_R_16F, k_dim, &beta, c, CUDA_R_32F, ldc,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    APR_CHECK(st == CUBLAS_STATUS_SUCCESS, APR_ERR_DEVICE, "cuBLAS: a %d x %d x %d product failed (status %d)", m, n,
              k_dim, (int)st);
    return APR_OK;
}

#endif /* APR_CUDA */
