/* zram_test.c — the CPU backend's kv_stage and kv_load: same-filled pages
 * found and left in place, the others staged byte for byte, and loading
 * the staged pages into other blocks gives those blocks the same bytes. */
#include "test.h"

#include <stdlib.h>

#include "backend/backend.h"
#include "core/rng.h"

/* A small cache: 3 layers, 2 heads of 64 f16, 6 blocks of 32 slots. */
static apr_kv_cache small_cache(apr_backend *b)
{
    apr_kv_cache kv = { .type = APR_F16, .n_layer = 3, .n_head_kv = 2, .head_dim = 64, .block_tokens = 32,
                        .n_blocks = 6, .row_bytes = 128 };
    kv.layer_bytes = (size_t)kv.n_blocks * kv.n_head_kv * kv.block_tokens * kv.row_bytes;
    kv.k = b->alloc(b, kv.n_layer * kv.layer_bytes);
    kv.v = b->alloc(b, kv.n_layer * kv.layer_bytes);
    return kv;
}

static uint8_t *page(const apr_kv_cache *kv, int block, int layer, int is_v)
{
    const size_t pb = kv->layer_bytes / kv->n_blocks;
    return (uint8_t *)(is_v ? kv->v : kv->k) + layer * kv->layer_bytes + block * pb;
}

TEST(cpu_kv_stage_and_load_move_pages_and_keep_same_filled_ones_in_place)
{
    apr_backend *b = apr_backend_cpu_new(2);
    REQUIRE(b);
    apr_stream_sizes z = { .n_batch = 4, .max_cols = 128, .n_ctx = 192, .n_head = 2, .n_head_kv = 2, .head_dim = 64 };
    apr_stream *s = b->stream_new(b, &z);
    REQUIRE(s);
    apr_kv_cache kv = small_cache(b);
    REQUIRE(kv.k && kv.v);
    const size_t pb = kv.layer_bytes / kv.n_blocks;
    apr_rng r;
    apr_rng_seed(&r, 5);
    for (size_t i = 0; i < kv.n_layer * kv.layer_bytes; i += 8) {
        uint64_t x = apr_rng_next(&r), y = apr_rng_next(&r);
        memcpy((uint8_t *)kv.k + i, &x, 8);
        memcpy((uint8_t *)kv.v + i, &y, 8);
    }
    /* block 4: layer 1's keys all zeros, layer 2's values one word */
    memset(page(&kv, 4, 1, 0), 0, pb);
    const uint64_t w = 0x3c003c003c003c00ull;  /* f16 1.0 four times */
    for (size_t i = 0; i < pb; i += 8) memcpy(page(&kv, 4, 2, 1) + i, &w, 8);

    const int32_t from[3] = { 4, 1, 3 }, to[3] = { 0, 2, 5 };
    const int n_pages = 3 * 2 * kv.n_layer;
    uint8_t *same = b->host_alloc(b, n_pages);
    uint64_t *words = b->host_alloc(b, n_pages * 8);
    uint8_t *staging = b->host_alloc(b, n_pages * pb);
    int32_t *blocks = b->host_alloc(b, sizeof from);
    REQUIRE(same && words && staging && blocks);
    memcpy(blocks, from, sizeof from);
    b->kv_stage(s, &kv, blocks, 3, same, words, staging);
    REQUIRE(b->sync(s) == APR_OK);
    for (int i = 0; i < n_pages; i++) {
        const int blk = from[i / (2 * kv.n_layer)], layer = (i / 2) % kv.n_layer, is_v = i % 2;
        const int want = blk == 4 && ((layer == 1 && !is_v) || (layer == 2 && is_v));
        if (same[i] != want) test_fail(__FILE__, __LINE__, "page %d: same %d", i, same[i]);
        if (want) CHECK(words[i] == (is_v ? w : 0));
        else CHECK(memcmp(staging + i * pb, page(&kv, blk, layer, is_v), pb) == 0);
    }
    memcpy(blocks, to, sizeof to);
    b->kv_load(s, &kv, blocks, 3, same, words, staging);
    REQUIRE(b->sync(s) == APR_OK);
    for (int j = 0; j < 3; j++)
        for (int layer = 0; layer < kv.n_layer; layer++)
            for (int is_v = 0; is_v < 2; is_v++)
                if (memcmp(page(&kv, to[j], layer, is_v), page(&kv, from[j], layer, is_v), pb) != 0)
                    test_fail(__FILE__, __LINE__, "block %d layer %d %s differs from block %d", to[j], layer,
                              is_v ? "v" : "k", from[j]);
    b->host_release(b, same);
    b->host_release(b, words);
    b->host_release(b, staging);
    b->host_release(b, blocks);
    b->release(b, kv.k);
    b->release(b, kv.v);
    b->stream_free(s);
    b->destroy(b);
}
