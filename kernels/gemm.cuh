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

/* Once per process, before the first launch. */
apr_status apr_cuda_gemm_setup(void);

#ifdef __cplusplus
}
#endif

#endif
