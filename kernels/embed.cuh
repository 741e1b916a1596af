/* embed.cuh — rows of a weight matrix as floats: token embeddings (C and CUDA). */
#ifndef APR_KERNELS_EMBED_CUH
#define APR_KERNELS_EMBED_CUH

#include <cuda_runtime_api.h>

#include "qmat.cuh"

#ifdef __cplusplus
extern "C" {
#endif

/* out[t*cols + c] = W[ids[t]][c] for t < n (ids on the device, each in
 * [0, rows): the caller checks). W may live in mapped host memory. */
apr_status apr_cuda_embed(const apr_cuda_qmat *w, const int32_t *ids, int n, float *out, cudaStream_t stream);

/* out[i*dim ..] = x[rows[i]*dim ..] for i < n (rows on the device). */
apr_status apr_cuda_embed_gather(float *out, const float *x, const int32_t *rows, int n, int64_t dim,
                                 cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
