/* zram_test.c — the CUDA backend's kv_stage and kv_load (kernels/zram.cu)
 * against the CPU backend's on the same cache: the same flags, words and
 * staged bytes, and blocks loaded back equal to the originals; a page that
 * differs only in its last byte, or only in its first, is not same-filled.
 * Also the classification kernel's own check (apr_device_zram_bandwidth)
 * on same-filled and random pages. Skipped without a GPU. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/cuda.h"
#include "core/rng.h"

#ifdef APR_CUDA
#include <cuda_runtime_api.h>

/* Layers, heads and blocks of the test cache; pages are 32 slots of 2
 * heads of `row` bytes (f16 rows of 64, or q8_0 rows of 64: 68 bytes). */
enum { LAYERS = 4, HEADS = 2, BLOCKS = 9 };

static apr_kv_cache cache_on(apr_backend *b, int type, size_t row)
{
    apr_kv_cache kv = { .type = type, .n_layer = LAYERS, .n_head_kv = HEADS, .head_dim = 64, .block_tokens = 32,
                        .n_blocks = BLOCKS, .row_bytes = row };
    kv.layer_bytes = (size_t)BLOCKS * HEADS * 32 * row;
    kv.k = b->alloc(b, LAYERS * kv.layer_bytes);
    kv.v = b->alloc(b, LAYERS * kv.layer_bytes);
    return kv;
}

TEST(cuda_kv_stage_and_load_agree_with_the_cpu)
{
    apr_backend *gpu = apr_backend_cuda_new(0, 0);
    if (!gpu) SKIP("no CUDA device");
    apr_backend *cpu = apr_backend_cpu_new(2);
    apr_stream_sizes z = { .n_batch = 4, .max_cols = 128, .n_ctx = 256, .n_head = 2, .n_head_kv = 2, .head_dim = 64 };
    apr_stream *gs = gpu->stream_new(gpu, &z), *cs = cpu->stream_new(cpu, &z);
    REQUIRE(gs && cs);
    const size_t rows[2] = { 128, 68 };
    const int types[2] = { APR_F16, APR_Q8_0 };
    for (int t = 0; t < 2; t++) {
        apr_kv_cache g = cache_on(gpu, types[t], rows[t]), c = cache_on(cpu, types[t], rows[t]);
        REQUIRE(g.k && g.v && c.k && c.v);
        const size_t pb = g.layer_bytes / BLOCKS, bytes = LAYERS * g.layer_bytes;
        /* random keys and values; some pages same-filled, some nearly */
        apr_rng r;
        apr_rng_seed(&r, 11 + (uint64_t)t);
        for (size_t i = 0; i < bytes; i += 8) {
            uint64_t x = apr_rng_next(&r), y = apr_rng_next(&r);
            memcpy((uint8_t *)c.k + i, &x, 8);
            memcpy((uint8_t *)c.v + i, &y, 8);
        }
        for (int l = 0; l < LAYERS; l++) {
            memset((uint8_t *)c.k + l * c.layer_bytes + 2 * pb, 0, pb);             /* block 2: zeros */
            memset((uint8_t *)c.v + l * c.layer_bytes + 7 * pb, 0x77, pb);          /* block 7: a word */
            memset((uint8_t *)c.v + l * c.layer_bytes + 5 * pb, 0, pb);             /* block 5: zeros but */
            ((uint8_t *)c.v)[l * c.layer_bytes + 5 * pb + (l % 2 ? pb - 1 : 0)] = 1; /* its last or first byte */
        }
        cudaMemcpy(g.k, c.k, bytes, cudaMemcpyHostToDevice);
        cudaMemcpy(g.v, c.v, bytes, cudaMemcpyHostToDevice);

        const int32_t from[4] = { 2, 7, 5, 0 }, to[4] = { 1, 3, 4, 8 };
        const int n_pages = 4 * 2 * LAYERS;
        uint8_t *gsame = gpu->host_alloc(gpu, n_pages), *csame = cpu->host_alloc(cpu, n_pages);
        uint64_t *gwords = gpu->host_alloc(gpu, n_pages * 8), *cwords = cpu->host_alloc(cpu, n_pages * 8);
        uint8_t *gstage = gpu->host_alloc(gpu, n_pages * pb), *cstage = cpu->host_alloc(cpu, n_pages * pb);
        int32_t *gblocks = gpu->host_alloc(gpu, sizeof from), *cblocks = cpu->host_alloc(cpu, sizeof from);
        REQUIRE(gsame && csame && gwords && cwords && gstage && cstage && gblocks && cblocks);
        memcpy(gblocks, from, sizeof from);
        memcpy(cblocks, from, sizeof from);
        memset(gsame, 9, n_pages);
        gpu->kv_stage(gs, &g, gblocks, 4, gsame, gwords, gstage);
        cpu->kv_stage(cs, &c, cblocks, 4, csame, cwords, cstage);
        REQUIRE(gpu->sync(gs) == APR_OK);
        REQUIRE(cpu->sync(cs) == APR_OK);
        int n_same = 0;
        for (int i = 0; i < n_pages; i++) {
            n_same += csame[i];
            if (gsame[i] != csame[i] || gwords[i] != cwords[i])
                test_fail(__FILE__, __LINE__, "%s page %d: gpu same %d word %llx, cpu %d %llx", apr_dtype_name(types[t]),
                          i, gsame[i], (unsigned long long)gwords[i], csame[i], (unsigned long long)cwords[i]);
            else if (!csame[i] && memcmp(gstage + i * pb, cstage + i * pb, pb) != 0)
                test_fail(__FILE__, __LINE__, "%s page %d staged differently", apr_dtype_name(types[t]), i);
        }
        CHECK_EQ_INT(n_same, 2 * LAYERS);  /* block 2's keys and block 7's values */
        /* load into other blocks; they must equal the originals */
        memcpy(gblocks, to, sizeof to);
        gpu->kv_load(gs, &g, gblocks, 4, gsame, gwords, gstage);
        REQUIRE(gpu->sync(gs) == APR_OK);
        uint8_t *back = malloc(bytes);
        for (int kv = 0; kv < 2; kv++) {
            cudaMemcpy(back, kv ? g.v : g.k, bytes, cudaMemcpyDeviceToHost);
            const uint8_t *orig = kv ? c.v : c.k;
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < LAYERS; l++)
                    if (memcmp(back + l * g.layer_bytes + to[j] * pb, orig + l * g.layer_bytes + from[j] * pb, pb))
                        test_fail(__FILE__, __LINE__, "%s block %d layer %d %s not loaded right",
                                  apr_dtype_name(types[t]), to[j], l, kv ? "v" : "k");
        }
        free(back);
        gpu->host_release(gpu, gsame);
        gpu->host_release(gpu, gwords);
        gpu->host_release(gpu, gstage);
        gpu->host_release(gpu, gblocks);
        cpu->host_release(cpu, csame);
        cpu->host_release(cpu, cwords);
        cpu->host_release(cpu, cstage);
        cpu->host_release(cpu, cblocks);
        gpu->release(gpu, g.k);
        gpu->release(gpu, g.v);
        cpu->release(cpu, c.k);
        cpu->release(cpu, c.v);
    }
    gpu->stream_free(gs);
    cpu->stream_free(cs);
    gpu->destroy(gpu);
    cpu->destroy(cpu);
}

TEST(cuda_zram_classification_checks_every_page)
{
    if (apr_device_count() == 0) SKIP("no CUDA device");
    double same_bw = 0, random_bw = 0;
    REQUIRE(apr_device_zram_bandwidth(0, 64u << 20, 65536, 1, &same_bw) == APR_OK);
    REQUIRE(apr_device_zram_bandwidth(0, 64u << 20, 4096, 0, &random_bw) == APR_OK);
    CHECK(same_bw > 0 && random_bw > 0);
    CHECK(apr_device_zram_bandwidth(0, 64u << 20, 4100, 1, &same_bw) == APR_ERR_INVALID);
}

#else

TEST(cuda_zram_absent_without_nvcc)
{
    double bw = 1;
    CHECK(apr_device_zram_bandwidth(0, 1u << 20, 4096, 1, &bw) != APR_OK && bw == 0);
    SKIP("built without CUDA");
}

#endif
