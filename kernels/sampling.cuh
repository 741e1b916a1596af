/* sampling.cuh — choosing tokens on the GPU (C and CUDA). */
#ifndef APR_KERNELS_SAMPLING_CUH
#define APR_KERNELS_SAMPLING_CUH

#include <cuda_runtime_api.h>

#include "apr.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ids[t] = the index of the largest of logits[t*n_vocab ..] (ties: the
 * lowest index; NaN never wins), for t < n. */
apr_status apr_cuda_sampling_argmax(const float *logits, int n_vocab, int n, int32_t *ids, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
