/* rope.cuh — rotary position embedding and the KV-cache append (C and CUDA). */
#ifndef APR_KERNELS_ROPE_CUH
#define APR_KERNELS_ROPE_CUH

#include <cuda_runtime_api.h>

#include "apr.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One layer of the paged KV cache (backend.h's apr_kv_cache): blocks of
 * 2^block_shift token slots, each block of one KV head a contiguous
 * [block_tokens][row_bytes] tile: slot s of head h is at row
 * ((s >> shift) * n_kv + h) * block_tokens + (s & (block_tokens - 1)).
 * A row is hd f16 values, or hd / 32 Q8_0 or Q4_0 blocks (kvcache.cuh). */
typedef struct apr_cuda_kv {
    void *k, *v;
    int n_kv, hd, block_shift;
    int type;         /* APR_F16, APR_Q8_0 or APR_Q4_0 */
    int row_bytes;
    const float *k_offset; /* quantized: [n_kv][hd] subtracted from keys before they are stored, or NULL
                              (backend.h's k_offset, this layer's rows) */
} apr_cuda_kv;

/* Per-token metadata of a pass, on the device (backend.h's apr_step). */
typedef struct apr_cuda_tokens {
    const int32_t *pos, *seq, *slot, *block_table;
    int max_blocks;
} apr_cuda_tokens;

typedef struct apr_cuda_rope {
    int n_head, n_kv, hd;
    int n_rot;        /* leading dimensions rotated */
    int neox;         /* 1: pairs (i, i + n_rot/2); 0: pairs (2i, 2i+1) */
    float base, scale;
} apr_cuda_rope;

/* cos and sin of each token's rotated pairs ([n][n_rot/2] float2 in
 * table), at pos[t] (angles in double, as the CPU backend computes them). */
apr_status apr_cuda_rope_table(int n, apr_cuda_rope r, const int32_t *pos, void *table, cudaStream_t stream);

/* qkv: n rows of [q | k | v] (n_head*hd, n_kv*hd, n_kv*hd floats). Rotates
 * q and k in place by the table's angles, stores k and v at the token's
 * slot (as f16, or quantized to the cache's blocks), and when q_f16 is not
 * NULL writes the rotated q there too ([n][n_head*hd]). */
apr_status apr_cuda_rope_store(float *qkv, int n, apr_cuda_rope r, apr_cuda_tokens tk, apr_cuda_kv kv,
                               const void *table, void *q_f16, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
