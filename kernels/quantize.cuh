/* quantize.cuh — RMSNorm and activation conversion for the matrix kernels (C and CUDA). */
#ifndef APR_KERNELS_QUANTIZE_CUH
#define APR_KERNELS_QUANTIZE_CUH

#include <cuda_runtime_api.h>

#include "qmat.cuh"

#ifdef __cplusplus
extern "C" {
#endif

/* For each of n tokens, row x + t*ld_x of `cols` floats: when g is not NULL
 * the row is RMS-normalised and multiplied by g (y = x / rms(x) * g, rms with
 * eps), then quantized to int8 in out (apr_cuda_q8, one scale per out.block
 * columns: 32 or 256, which cols must be a multiple of). When
 * y_f32 is not NULL the normalised floats are also written there ([n][cols]). */
apr_status apr_cuda_quantize_rmsnorm_q8(const float *x, int ld_x, const float *g, float eps, int n, int cols,
                                        apr_cuda_q8 out, float *y_f32, cudaStream_t stream);

/* The same normalisation (g may be NULL: a plain conversion) written as f16
 * rows [n][cols], the input of the prefill matrix kernels, or with frag in
 * the fragment order of qmat.cuh (cols % 128 == 0; n rounded up to 8
 * tokens' room), the tensor-core decode kernels' input; and as floats to
 * y_f32 when it is not NULL. With q8round (32 or 256; 0: off) the f16
 * values are those of the int8 quantization, per block of q8round columns,
 * that the decode kernels would use. */
apr_status apr_cuda_quantize_rmsnorm_f16(const float *x, int ld_x, const float *g, float eps, int n, int cols,
                                         void *out_f16, float *y_f32, int q8round, int frag, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
