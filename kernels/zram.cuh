/* zram.cuh — KV cache pages in and out of host memory, same-filled pages
 * kept on the device side of PCIe (C and CUDA).
 *
 * A page is one layer's keys or values of one KV block (backend.h's
 * apr_kv_cache tile: n_head_kv * block_tokens * row_bytes bytes). Page i of
 * a list of n blocks is block blocks[i / (2 n_layer)], layer (i / 2) %
 * n_layer, keys for even i and values for odd. same, words, staging and
 * blocks may be pinned host memory mapped into the device (the kernels read
 * and write it over PCIe themselves, so a same-filled page never crosses). */
#ifndef APR_KERNELS_ZRAM_CUH
#define APR_KERNELS_ZRAM_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#include "apr.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where the pages are: the cache's two arrays and their geometry. */
typedef struct apr_cuda_kv_pages {
    const void *k, *v;       /* [n_layer][n_blocks][page_bytes] */
    size_t layer_bytes;      /* bytes of one layer of all blocks */
    size_t page_bytes;       /* a multiple of 16 */
    int n_layer;
} apr_cuda_kv_pages;

/* For each page i of the n blocks listed: same[i] = 1 and words[i] = w when
 * it is one 8-byte word w repeated, else same[i] = 0, words[i] = 0 and, when
 * staging is not NULL, its bytes copied to staging + i * page_bytes. */
apr_status apr_cuda_zram_stage_kv(const apr_cuda_kv_pages *kv, const int32_t *blocks, int n, uint8_t *same,
                                  uint64_t *words, void *staging, cudaStream_t stream);
/* The reverse: page i is filled with words[i] where same[i], else copied
 * from staging + i * page_bytes. */
apr_status apr_cuda_zram_load_kv(const apr_cuda_kv_pages *kv, const int32_t *blocks, int n, const uint8_t *same,
                                 const uint64_t *words, const void *staging, cudaStream_t stream);
/* Classifies n_pages contiguous pages at pages (page_bytes a multiple of
 * 16): same and words as above. What the benchmark times. */
apr_status apr_cuda_zram_classify(const void *pages, size_t page_bytes, int64_t n_pages, uint8_t *same,
                                  uint64_t *words, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
