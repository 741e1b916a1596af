/* attention.cuh — causal attention over the paged KV cache (C and CUDA). */
#ifndef APR_KERNELS_ATTENTION_CUH
#define APR_KERNELS_ATTENTION_CUH

#include <cuda_runtime_api.h>

#include "qmat.cuh"
#include "rope.cuh"

#ifdef __cplusplus
extern "C" {
#endif

/* Scratch of apr_cuda_attention_decode for n_tok tokens and n_split splits. */
size_t apr_cuda_attention_scratch_bytes(int n_tok, int n_head, int n_split, int hd);

/* Decode: token t, with q in qkv (rows of [q | k | v] as rope_store left
 * them), attends to positions 0..pos[t] of its sequence. Each token's keys
 * are cut into n_split pieces processed in parallel (flash-decoding) and
 * merged. Writes out_f32 [n_tok][n_head*hd] and, when out_q8.q is not NULL,
 * its int8 quantization for the output projection (out_q8.block: 32 or 256). */
apr_status apr_cuda_attention_decode(const float *qkv, apr_cuda_tokens tk, apr_cuda_kv kv, int n_tok, int n_head,
                                     float scale, int n_split, void *scratch, float *out_f32, apr_cuda_q8 out_q8,
                                     cudaStream_t stream);

/* Prefill on tensor cores: q_f16 [n][n_head*hd] (rope_store's copy), tiles
 * of 64 tokens; a tile that mixes sequences (decode tokens beside a prompt
 * chunk) is taken as its runs of one sequence at consecutive positions.
 * Writes out_f32 and, when not NULL, out_f16, both [n][n_head*hd]. hd is
 * 64 or 128. */
apr_status apr_cuda_attention_prefill(const void *q_f16, apr_cuda_tokens tk, apr_cuda_kv kv, int n, int n_head,
                                      float scale, float *out_f32, void *out_f16, cudaStream_t stream);

/* Once per process, before the first launch. */
apr_status apr_cuda_attention_setup(void);

#ifdef __cplusplus
}
#endif

#endif
