/* gemm.cuh — quantized matrix times many vectors, for prefill (C and CUDA). */
#ifndef APR_KERNELS_GEMM_CUH
#define APR_KERNELS_GEMM_CUH

#include <cuda_runtime_api.h>

#include "qmat.cuh"

#ifdef __cplusplus
extern "C" {
#endif

/* out[t*ld_out + r] = W[r] . x_t (+ bias[r]) (+ resid[t*ld_resid + r]) for
 * n_tok tokens whose inputs are f16 rows x + t*cols. out may equal resid.
 * scratch (may be NULL) holds split-K partial sums when the product has
 * too few tiles to fill the GPU; APR_CUDA_GEMM_SCRATCH bytes use it fully. */
apr_status apr_cuda_gemm(const apr_cuda_qmat *w, const void *x_f16, int n_tok, float *out, int ld_out,
                         const float *bias, const float *resid, int ld_resid, void *scratch, size_t scratch_bytes,
                         cudaStream_t stream);

/* out[t*ld_out + f] = silu(gate_f . x_t) * (up_f . x_t), and the same as
 * f16 in out_f16 when not NULL. gate and up: one format, rows % 64 == 0. */
apr_status apr_cuda_gemm_swiglu(const apr_cuda_qmat *gate, const apr_cuda_qmat *up, const void *x_f16, int n_tok,
                                float *out, int ld_out, void *out_f16, void *scratch, size_t scratch_bytes,
                                cudaStream_t stream);

/* Scratch that lets every product split as far as it wants: splits x
 * tokens x outputs <= 2 x (2 x 132 SMs) x 128 x 128 floats. */
#define APR_CUDA_GEMM_SCRATCH ((size_t)36 << 20)

/* Long passes (ops.c, blas.c): rows [row0, row0 + rows) of w as f16 rows of
 * w->cols values in out, decoded as the tiles above decode them; SwiGLU's
 * join of a product of gate and up chunks, gu = [n_tok][gate R | up R], into
 * out[t*ld_out + f]; and out[t*ld_out + r] += bias[r]. */
apr_status apr_cuda_dequant_f16(const apr_cuda_qmat *w, int row0, int rows, void *out, cudaStream_t stream);
apr_status apr_cuda_glu_join(const float *gu, int R, int n_tok, float *out, int ld_out, cudaStream_t stream);
apr_status apr_cuda_bias_rows(float *out, int ld_out, const float *bias, int rows, int n_tok, cudaStream_t stream);

/* Once per process, before the first launch. */
apr_status apr_cuda_gemm_setup(void);

#ifdef __cplusplus
}
#endif

#endif
