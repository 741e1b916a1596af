/* gemv.cuh — quantized matrix times a few vectors, for decode (C and CUDA):
 * int8 activations and dp4a up to 8 tokens (gemv.cu), f16 activations and
 * tensor cores up to 32 (gemv_mma.cu). */
#ifndef APR_KERNELS_GEMV_CUH
#define APR_KERNELS_GEMV_CUH

#include <cuda_runtime_api.h>

#include "qmat.cuh"

#ifdef __cplusplus
extern "C" {
#endif

/* One matrix of a launch and what happens to its results: for token t and
 * row r, out[t*ld_out + r] = W[r] . x_t (+ bias[r]) (+ resid[t*ld_resid + r]).
 * out may equal resid (an in-place residual add). */
typedef struct apr_cuda_gemv_seg {
    apr_cuda_qmat w;
    float *out;
    int ld_out;
    const float *bias;    /* [rows] or NULL */
    const float *resid;   /* or NULL */
    int ld_resid;
} apr_cuda_gemv_seg;

enum { APR_CUDA_GEMV_MAX_SEG = 3, APR_CUDA_GEMV_MAX_TOKENS = 8, APR_CUDA_GEMV_MMA_MAX_TOKENS = 32 };

/* Products of up to three matrices with the same input in one launch (q, k
 * and v of a layer), for n_tok tokens (1..8). Quantized weights read xq
 * (apr_cuda_quantize_rmsnorm_q8); F16/BF16/F32 weights read xf ([n][cols]
 * f32). All segments take the same cols; consecutive segments of one
 * format share a launch, and so do Q4_K and Q6_K ones. */
apr_status apr_cuda_gemv(const apr_cuda_gemv_seg *segs, int n_seg, int n_tok, apr_cuda_q8 xq, const float *xf,
                         cudaStream_t stream);

/* The feed-forward's first half: out[t*ld_out + f] = silu(gate_f . x_t) *
 * (up_f . x_t) for every row f of gate (up: the same shape and format).
 * When q8_out.q is not NULL the outputs are also quantized there (in
 * blocks of q8_out.block) for the down projection; counters is then
 * rows/64 zeroed words of scratch the kernel leaves zeroed. */
apr_status apr_cuda_gemv_swiglu(const apr_cuda_qmat *gate, const apr_cuda_qmat *up, float *out, int ld_out, int n_tok,
                                apr_cuda_q8 xq, const float *xf, apr_cuda_q8 q8_out, unsigned *counters,
                                cudaStream_t stream);

/* apr_cuda_gemv for 1..32 tokens of f16 activations x_f16 in the fragment
 * order of qmat.cuh (apr_cuda_quantize_rmsnorm_f16 with frag; rounded to
 * int8 levels for quantized weights), on tensor cores, reading every weight
 * once as apr_cuda_gemv does. Quantized weights of cols % 128 == 0 only; Q4_K
 * and Q6_K segments may share a launch. A token's results do not depend on
 * the others in the batch. */
apr_status apr_cuda_gemv_mma(const apr_cuda_gemv_seg *segs, int n_seg, int n_tok, const void *x_f16,
                             cudaStream_t stream);

/* apr_cuda_gemv_swiglu's product on tensor cores (quantized gate and up). */
apr_status apr_cuda_gemv_mma_swiglu(const apr_cuda_qmat *gate, const apr_cuda_qmat *up, float *out, int ld_out,
                                    int n_tok, const void *x_f16, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
