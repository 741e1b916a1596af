/* repack.cuh — GGUF blocks to the GPU layout of qmat.cuh (C and CUDA). */
#ifndef APR_KERNELS_REPACK_CUH
#define APR_KERNELS_REPACK_CUH

#include <cuda_runtime_api.h>

#include "qmat.cuh"

#ifdef __cplusplus
extern "C" {
#endif

/* Rearranges a rows x cols matrix of GGUF blocks (src, on the device) into
 * w's arrays (already allocated with apr_cuda_qmat_layout's sizes). Plain
 * and Q4_K/Q5_K matrices are copied unchanged. */
apr_status apr_cuda_repack(const apr_cuda_qmat *w, const void *src, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
