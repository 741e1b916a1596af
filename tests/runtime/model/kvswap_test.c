/* kvswap_test.c — KV blocks evicted to a zram pool and restored: a
 * sequence whose blocks all left the device continues with logits
 * bit-identical to a context that never evicted anything (f16 and q8_0
 * caches); a block the pool lost (a page missing) is recomputed, with the
 * same logits; a pool too small to take a block loses it and nothing else.
 * On tiny-q8_0.gguf, CPU backend. Includes kvswap.c to reach the pool
 * handles of a block. */
#include "test.h"
#include "../../../runtime/model/kvswap.c"

#include "model_fixture.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#define V 2048  /* the tiny models' vocabulary */

/* A full block's key, as kvcache.c makes it. */
static uint64_t block_key(const int32_t *ids, uint64_t parent)
{
    return XXH3_64bits_withSeed(ids, sizeof(int32_t) * APR_KV_BLOCK, parent);
}

static int32_t tok(int i) { return (int32_t)((i * 7919 + 13) % 2000); }

/* Decodes ids[0..n) into sequence seq, 50 tokens a batch, every logit to
 * logits (NULL: only the last, discarded). */
static apr_status run(apr_context *c, int seq, const int32_t *ids, int n, float *logits)
{
    static float scratch[V];
    for (int at = 0; at < n; at += 50) {
        const int k = n - at < 50 ? n - at : 50;
        int32_t seqs[50];
        int8_t want[50];
        for (int i = 0; i < k; i++) seqs[i] = seq, want[i] = logits != NULL || at + i == n - 1;
        apr_batch b = { .n = k, .ids = ids + at, .seq = seqs, .want_logits = want };
        APR_TRY(apr_decode(c, &b, logits ? logits + (size_t)at * V : scratch));
    }
    return APR_OK;
}

static apr_context *context(apr_model *m, int kv_type, int n_ctx)
{
    apr_context_params p;
    apr_context_params_default(&p);
    p.n_ctx = n_ctx;
    p.n_seq = 2;
    p.n_batch = 64;
    p.kv_type = kv_type;
    apr_context *c = NULL;
    return apr_context_new(m, &p, &c) == APR_OK ? c : NULL;
}

static apr_zram *pool_for(apr_context *c, int algo, uint64_t max_bytes)
{
    apr_zram_params p;
    apr_zram_params_default(&p);
    p.algo = algo;
    p.page_bytes = apr_context_kv_page_bytes(c);
    p.max_bytes = max_bytes;
    apr_zram *z = NULL;
    return apr_zram_new(&p, &z) == APR_OK ? z : NULL;
}

enum { N = 100, TAIL = 8, CTX = 128 };  /* 3 full blocks and 4 tokens, then 8 more; 5 blocks of cache */

/* The prompt and its TAIL (ids), and another prompt as long (other). */
static void prompts(int32_t *ids, int32_t *other)
{
    for (int i = 0; i < N + TAIL; i++) ids[i] = tok(3 * i + 1);
    for (int i = 0; i < N; i++) other[i] = tok(5 * i + 2);
}

/* The logits of TAIL tokens after the prompt, in a context that never
 * evicted anything. Of the same n_ctx as the swapping one: a quantized
 * cache's key offsets depend on it (context.c), so a context of another
 * length stores other keys. */
static void reference(apr_model *m, int kv_type, const int32_t *ids, float *out)
{
    apr_context *c = context(m, kv_type, CTX);
    if (!c || run(c, 0, ids, N, NULL) != APR_OK || run(c, 0, ids + N, TAIL, out) != APR_OK)
        test_fail(__FILE__, __LINE__, "reference: %s", apr_last_error());
    apr_context_free(c);
}

/* Sequence 0 decodes the prompt and lets go of it; sequence 1 decodes
 * another prompt as long, which evicts all but the first of its blocks
 * (the pool has 5: 128 slots, one more for the second sequence). The
 * blocks copied out are then compressed into the pool (a pass would do it
 * while it runs; a lookup would flush them first). */
static int evict_prompt(apr_context *c, const int32_t *ids, const int32_t *other)
{
    return run(c, 0, ids, N, NULL) == APR_OK && apr_context_seq_truncate(c, 0, 0) == APR_OK &&
           run(c, 1, other, N, NULL) == APR_OK && apr_context_seq_truncate(c, 1, 0) == APR_OK &&
           flush(c->cache.swap) == APR_OK;
}

/* The same without the flush: the last pass's evictions are still in
 * staging when the prompt is wanted again. */
static int evict_prompt_unflushed(apr_context *c, const int32_t *ids, const int32_t *other)
{
    return run(c, 0, ids, N, NULL) == APR_OK && apr_context_seq_truncate(c, 0, 0) == APR_OK &&
           run(c, 1, other, N, NULL) == APR_OK && apr_context_seq_truncate(c, 1, 0) == APR_OK;
}

/* A swapping context beside what it is checked against: the prompts, the
 * TAIL's logits in a context that never evicted anything (want), and room
 * for the swapping one's (got). */
typedef struct {
    int32_t ids[N + TAIL], other[N];
    float want[TAIL * V], got[TAIL * V];
    apr_context *c;
    apr_zram *z;
} swap_case;

static void close_case(swap_case *k)
{
    if (!k) return;
    apr_context_free(k->c);
    apr_zram_free(k->z);
    free(k);
}

/* A context of kv_type with a pool of algo (capped at max_bytes, 0: none)
 * attached, and its reference; NULL on failure. */
static swap_case *open_case(apr_model *m, int kv_type, int algo, uint64_t max_bytes)
{
    swap_case *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    prompts(k->ids, k->other);
    reference(m, kv_type, k->ids, k->want);
    k->c = context(m, kv_type, CTX);
    k->z = k->c ? pool_for(k->c, algo, max_bytes) : NULL;
    if (!k->z || apr_context_set_zram(k->c, k->z) != APR_OK) {
        close_case(k);
        return NULL;
    }
    return k;
}

TEST(kvswap_restored_sequence_continues_bit_identical)
{
    apr_model *m = fixture_load(FIXTURE_TINY_Q8, 2);
    REQUIRE(m);
    const int types[2] = { APR_F16, APR_Q8_0 };
    for (int t = 0; t < 2; t++)
        for (int algo = 0; algo <= 1; algo++) {
            swap_case *k = open_case(m, types[t], algo, 0);
            REQUIRE(k);
            REQUIRE(evict_prompt(k->c, k->ids, k->other));
            apr_kv_swap_stats st;
            apr_context_get_swap_stats(k->c, &st);
            /* the partial block and two full ones left the device */
            CHECK_EQ_INT(st.blocks_out, 3);
            CHECK_EQ_INT(st.blocks_held, 3);
            CHECK(st.bytes_out + st.pages_same * apr_context_kv_page_bytes(k->c) ==
                  3 * 2 * 2 * apr_context_kv_page_bytes(k->c));  /* 3 blocks of 2 layers' keys and values */
            int reused = 0;
            REQUIRE(apr_context_seq_reuse(k->c, 0, k->ids, N + 1, &reused) == APR_OK);
            CHECK_EQ_INT(reused, N);  /* all of it: block 0 from the device, the rest from the pool */
            apr_context_get_swap_stats(k->c, &st);
            CHECK_EQ_INT(st.blocks_in, 3);
            CHECK_EQ_INT(st.restore_failed, 0);
            memset(k->got, 0, sizeof(float) * TAIL * V);
            REQUIRE(run(k->c, 0, k->ids + N, TAIL, k->got) == APR_OK);
            if (memcmp(k->got, k->want, sizeof(float) * TAIL * V) != 0)
                test_fail(__FILE__, __LINE__, "%s, %s: logits after the restore differ", apr_dtype_name(types[t]),
                          apr_zram_algo_name(algo));
            /* the restored blocks kept their pages: evicting them again
             * copies nothing */
            REQUIRE(apr_context_seq_truncate(k->c, 0, 0) == APR_OK);
            REQUIRE(run(k->c, 1, k->other, N, NULL) == APR_OK);
            apr_context_get_swap_stats(k->c, &st);
            CHECK(st.blocks_clean >= 2);
            close_case(k);
        }
    apr_model_free(m);
}

/* Blocks evicted by the last pass wait in staging for the next one to
 * compress them beside it; a sequence that wants them first gets them all
 * the same (the staging is flushed into the pool for it). */
TEST(kvswap_blocks_still_in_staging_are_restored)
{
    apr_model *m = fixture_load(FIXTURE_TINY_Q8, 2);
    REQUIRE(m);
    swap_case *k = open_case(m, APR_Q8_0, APR_ZRAM_LZ4, 0);
    REQUIRE(k);
    REQUIRE(evict_prompt_unflushed(k->c, k->ids, k->other));
    apr_kv_swap_stats st;
    apr_context_get_swap_stats(k->c, &st);
    CHECK(st.blocks_out < 3);  /* the second pass's evictions are not in the pool yet */
    int reused = 0;
    REQUIRE(apr_context_seq_reuse(k->c, 0, k->ids, N + 1, &reused) == APR_OK);
    CHECK_EQ_INT(reused, N);
    apr_context_get_swap_stats(k->c, &st);
    CHECK_EQ_INT(st.blocks_out, 3);
    CHECK_EQ_INT(st.blocks_in, 3);
    REQUIRE(run(k->c, 0, k->ids + N, TAIL, k->got) == APR_OK);
    CHECK(memcmp(k->got, k->want, sizeof(float) * TAIL * V) == 0);
    close_case(k);
    apr_model_free(m);
}

TEST(kvswap_lost_page_is_recomputed_with_the_same_logits)
{
    apr_model *m = fixture_load(FIXTURE_TINY_Q8, 2);
    REQUIRE(m);
    swap_case *k = open_case(m, APR_F16, APR_ZRAM_LZ4, 0);
    REQUIRE(k);
    REQUIRE(evict_prompt(k->c, k->ids, k->other));
    /* one page of the second block (positions 32..63) vanishes from the pool */
    apr_kvswap *w = k->c->cache.swap;
    rec m1 = { .parent = 0, .filled = APR_KV_BLOCK };
    m1.key = block_key(k->ids, 0);
    m1.parent = m1.key;
    memcpy(m1.ids, k->ids + 32, sizeof m1.ids);
    m1.key = block_key(k->ids + 32, m1.parent);
    int32_t r = find_rec(w, &m1);
    REQUIRE(r >= 0);
    REQUIRE(apr_zram_drop(k->z, handles_of(w, r)[3]) == APR_OK);
    int reused = 0;
    REQUIRE(apr_context_seq_reuse(k->c, 0, k->ids, N + 1, &reused) == APR_OK);
    CHECK_EQ_INT(reused, 32);  /* the first block; from the second on, recomputed */
    apr_kv_swap_stats st;
    apr_context_get_swap_stats(k->c, &st);
    CHECK_EQ_INT(st.restore_failed, 1);
    CHECK_EQ_INT(st.blocks_held, 2);
    REQUIRE(run(k->c, 0, k->ids + 32, N - 32, NULL) == APR_OK);
    REQUIRE(run(k->c, 0, k->ids + N, TAIL, k->got) == APR_OK);
    CHECK(memcmp(k->got, k->want, sizeof(float) * TAIL * V) == 0);
    close_case(k);
    apr_model_free(m);
}

TEST(kvswap_pool_too_small_loses_blocks_and_nothing_else)
{
    apr_model *m = fixture_load(FIXTURE_TINY_Q8, 2);
    REQUIRE(m);
    swap_case *k = open_case(m, APR_F16, APR_ZRAM_LZ4, 1000);  /* not even one page's slab */
    REQUIRE(k);
    REQUIRE(evict_prompt(k->c, k->ids, k->other));
    apr_kv_swap_stats st;
    apr_context_get_swap_stats(k->c, &st);
    CHECK_EQ_INT(st.blocks_out, 0);
    CHECK_EQ_INT(st.blocks_lost, 3);
    int reused = 0;
    REQUIRE(apr_context_seq_reuse(k->c, 0, k->ids, N + 1, &reused) == APR_OK);
    CHECK_EQ_INT(reused, 32);
    REQUIRE(run(k->c, 0, k->ids + 32, N - 32, NULL) == APR_OK);
    REQUIRE(run(k->c, 0, k->ids + N, TAIL, k->got) == APR_OK);
    CHECK(memcmp(k->got, k->want, sizeof(float) * TAIL * V) == 0);
    /* a pool of another page size is refused; detaching works */
    apr_zram_params p;
    apr_zram_params_default(&p);
    apr_zram *wrong = NULL;
    REQUIRE(apr_zram_new(&p, &wrong) == APR_OK);
    if (apr_context_kv_page_bytes(k->c) != 4096) {
        CHECK(apr_context_set_zram(k->c, wrong) == APR_ERR_INVALID);
        CHECK(strstr(apr_last_error(), "pages") != NULL);
    }
    CHECK(apr_context_set_zram(k->c, NULL) == APR_OK);
    apr_context_get_swap_stats(k->c, &st);
    CHECK_EQ_INT(st.blocks_out, 0);
    apr_zram_free(wrong);
    close_case(k);
    apr_model_free(m);
}
