/* zram.c — KV pages to and from host memory on the CPU backend
 * (backend.h's kv_stage and kv_load).
 *
 * The cache is host memory already: staging is the same-filled check
 * (runtime/zram/same.c, AVX2) and a memcpy of the pages that are not, on
 * the stream's threads, so the pool compresses from the same bytes a GPU
 * would have sent over PCIe. */
#include "cpu.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/parallel.h"
#include "zram/same.h"

typedef struct pages_job {
    const apr_kv_cache *kv;
    const int32_t *blocks;
    uint8_t *same;
    uint64_t *words;
    const uint8_t *same_in;
    const uint64_t *words_in;
    uint8_t *staging;
    const uint8_t *staging_in;
    size_t page_bytes;
} pages_job;

static size_t page_bytes_of(const apr_kv_cache *kv)
{
    return (size_t)kv->n_head_kv * (size_t)kv->block_tokens * kv->row_bytes;
}

static uint8_t *page_at(const apr_kv_cache *kv, const int32_t *blocks, int64_t i, size_t page_bytes)
{
    const int64_t per_block = 2 * (int64_t)kv->n_layer;
    const int32_t b = blocks[i / per_block];
    const int layer = (int)((i / 2) % kv->n_layer);
    uint8_t *base = (uint8_t *)(i % 2 ? kv->v : kv->k);
    return base + (size_t)layer * kv->layer_bytes + (size_t)b * page_bytes;
}

static void stage_body(void *ctx, int64_t begin, int64_t end, int thread)
{
    pages_job *j = ctx;
    for (int64_t i = begin; i < end; i++) {
        const uint8_t *p = page_at(j->kv, j->blocks, i, j->page_bytes);
        uint64_t w = 0;
        const int s = apr_zram_same_filled(p, j->page_bytes, &w);
        j->same[i] = (uint8_t)s;
        j->words[i] = s ? w : 0;
        if (!s) memcpy(j->staging + (size_t)i * j->page_bytes, p, j->page_bytes);
    }
}

static void load_body(void *ctx, int64_t begin, int64_t end, int thread)
{
    pages_job *j = ctx;
    for (int64_t i = begin; i < end; i++) {
        uint8_t *p = page_at(j->kv, j->blocks, i, j->page_bytes);
        if (j->same_in[i]) apr_zram_fill(p, j->page_bytes, j->words_in[i]);
        else memcpy(p, j->staging_in + (size_t)i * j->page_bytes, j->page_bytes);
    }
}

void apr_cpu_kv_stage(apr_stream *s, const apr_kv_cache *kv, const int32_t *blocks, int n, uint8_t *same,
                      uint64_t *words, void *staging)
{
    pages_job j = { .kv = kv, .blocks = blocks, .same = same, .words = words, .staging = staging,
                    .page_bytes = page_bytes_of(kv) };
    apr_parallel_for_n(s->n_threads, (int64_t)n * 2 * kv->n_layer, 4, stage_body, &j);
}

void apr_cpu_kv_load(apr_stream *s, const apr_kv_cache *kv, const int32_t *blocks, int n, const uint8_t *same,
                     const uint64_t *words, const void *staging)
{
    pages_job j = { .kv = kv, .blocks = blocks, .same_in = same, .words_in = words, .staging_in = staging,
                    .page_bytes = page_bytes_of(kv) };
    apr_parallel_for_n(s->n_threads, (int64_t)n * 2 * kv->n_layer, 4, load_body, &j);
}

void *apr_cpu_host_alloc(apr_backend *b, size_t bytes)
{
    (void)b;
    return apr_alloc(bytes ? bytes : 1);
}

void apr_cpu_host_release(apr_backend *b, void *p)
{
    (void)b;
    free(p);
}
