/* context_test.c — apr_decode: bad batches fail and leave the cache as it
 * was; a token's logits do not depend on the batch around it (other
 * sequences, positions in the batch) or on the cache having been truncated
 * and refilled; the scalar and AVX2 kernels agree. On tiny-q8_0.gguf. */
#include "test.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>

#include "backend/cpu/cpu.h"
#include "model/kvcache.h"
#include "model/model.h"
#include "model_fixture.h"

#define V 2048  /* the tiny models' vocabulary */

static int32_t tok(int i) { return (int32_t)((i * 7919 + 13) % 2000); }

/* Decodes n tokens of sequence seq (positions next..) with every logit. */
static apr_status run(apr_context *c, int seq, const int32_t *ids, int n, float *logits)
{
    int32_t seqs[64];
    int8_t want[64];
    for (int i = 0; i < n; i++) seqs[i] = seq, want[i] = 1;
    apr_batch b = { .n = n, .ids = ids, .seq = seqs, .want_logits = want };
    return apr_decode(c, &b, logits);
}

TEST(decode_rejects_bad_ids_and_leaves_the_cache_alone)
{
    apr_model *m = fixture_load(FIXTURE_TINY_Q8, 2);
    REQUIRE(m);
    apr_context *c = fixture_context(m, 64, 1, 16);
    REQUIRE(c);
    static float logits[4 * V], again[4 * V];
    int32_t ok[3] = { 1, 2, 3 }, bad[3] = { 1, V, 3 }, negative[2] = { 4, -1 };
    apr_batch b = { .n = 3, .ids = bad };
    CHECK_EQ_INT(apr_decode(c, &b, logits), APR_ERR_RANGE);
    CHECK(strstr(apr_last_error(), "2048") != NULL);
    CHECK(strstr(apr_last_error(), "batch index 1") != NULL);
    b = (apr_batch){ .n = 2, .ids = negative };
    CHECK_EQ_INT(apr_decode(c, &b, logits), APR_ERR_RANGE);
    CHECK_EQ_INT(apr_context_seq_len(c, 0), 0);
    /* a sequence outside the context */
    int32_t seq5[1] = { 5 };
    b = (apr_batch){ .n = 1, .ids = ok, .seq = seq5 };
    CHECK_EQ_INT(apr_decode(c, &b, logits), APR_ERR_RANGE);
    /* a position that is not the sequence's next */
    int32_t pos[3] = { 0, 2, 3 };
    b = (apr_batch){ .n = 3, .ids = ok, .pos = pos };
    CHECK_EQ_INT(apr_decode(c, &b, logits), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_context_seq_len(c, 0), 0);
    /* the cache is as new: the same tokens give what a fresh context gives */
    REQUIRE(run(c, 0, ok, 3, logits) == APR_OK);
    apr_context *fresh = fixture_context(m, 64, 1, 16);
    REQUIRE(fresh);
    REQUIRE(run(fresh, 0, ok, 3, again) == APR_OK);
    CHECK(memcmp(logits, again, sizeof(float) * 3 * V) == 0);
    apr_context_free(fresh);
    apr_context_free(c);
    apr_model_free(m);
}

TEST(decode_empty_batch_oversized_batch_and_full_context)
{
    apr_model *m = fixture_load(FIXTURE_TINY_Q8, 2);
    REQUIRE(m);
    apr_context *c = fixture_context(m, 40, 1, 8);
    REQUIRE(c);
    static float logits[8 * V];
    int32_t ids[41];
    for (int i = 0; i < 41; i++) ids[i] = tok(i);
    /* empty: nothing happens */
    logits[0] = 12345;
    apr_batch empty = { .n = 0, .ids = ids };
    CHECK_EQ_INT(apr_decode(c, &empty, logits), APR_OK);
    CHECK_EQ_INT(apr_context_seq_len(c, 0), 0);
    CHECK(logits[0] == 12345);
    /* more than n_batch: the caller's mistake (split the prompt) */
    apr_batch nine = { .n = 9, .ids = ids };
    CHECK_EQ_INT(apr_decode(c, &nine, logits), APR_ERR_INVALID);
    CHECK(strstr(apr_last_error(), "n_batch 8") != NULL);
    /* fill the 40 slots in batches of 8, then one more token is refused */
    for (int i = 0; i < 40; i += 8) {
        apr_batch b = { .n = 8, .ids = ids + i };
        REQUIRE(apr_decode(c, &b, logits) == APR_OK);
    }
    CHECK_EQ_INT(apr_context_seq_len(c, 0), 40);
    CHECK_EQ_INT(apr_context_n_ctx(c), 40);
    apr_batch one = { .n = 1, .ids = ids + 40 };
    CHECK_EQ_INT(apr_decode(c, &one, logits), APR_ERR_RANGE);
    CHECK(strstr(apr_last_error(), "context of 40 tokens is full") != NULL);
    CHECK_EQ_INT(apr_context_seq_len(c, 0), 40);
    /* after truncation there is room again */
    CHECK_EQ_INT(apr_context_seq_truncate(c, 0, 39), APR_OK);
    CHECK_EQ_INT(apr_decode(c, &one, logits), APR_OK);
    CHECK_EQ_INT(apr_context_seq_len(c, 0), 40);
    apr_context_free(c);
    apr_model_free(m);
}

/* Three sequences decoded together, their tokens interleaved, then one
 * token each, give bit for bit the logits each gets alone. */
static void check_batch_independence(const char *path)
{
    apr_model *m = fixture_load(path, 2);
    REQUIRE(m);
    enum { NS = 3, STEPS = 2 };
    const int len[NS] = { 5, 3, 9 };
    int32_t ids[NS][16];
    for (int s = 0; s < NS; s++)
        for (int i = 0; i < len[s] + STEPS; i++) ids[s][i] = tok(100 * s + i);
    float *alone = malloc(sizeof(float) * NS * 16 * V), *together = malloc(sizeof(float) * 32 * V);
    REQUIRE(alone && together);
    for (int s = 0; s < NS; s++) {
        apr_context *c = fixture_context(m, 64, 1, 16);
        REQUIRE(c);
        REQUIRE(run(c, 0, ids[s], len[s], alone + (size_t)s * 16 * V) == APR_OK);
        for (int k = 0; k < STEPS; k++)
            REQUIRE(run(c, 0, &ids[s][len[s] + k], 1, alone + ((size_t)s * 16 + len[s] + k) * V) == APR_OK);
        apr_context_free(c);
    }
    apr_context *c = fixture_context(m, 64, NS, 32);
    REQUIRE(c);
    /* the prompts, round robin */
    int32_t bid[32], bseq[32], where[32];
    int8_t want[32];
    int n = 0;
    for (int i = 0; i < 9; i++)
        for (int s = 0; s < NS; s++)
            if (i < len[s]) bid[n] = ids[s][i], bseq[n] = s, where[n] = s * 16 + i, want[n++] = 1;
    apr_batch b = { .n = n, .ids = bid, .seq = bseq, .want_logits = want };
    REQUIRE(apr_decode(c, &b, together) == APR_OK);
    int differ = 0;
    for (int i = 0; i < n; i++)
        differ += memcmp(together + (size_t)i * V, alone + (size_t)where[i] * V, sizeof(float) * V) != 0;
    CHECK_EQ_INT(differ, 0);
    /* decode steps: one token of each sequence per batch */
    for (int k = 0; k < STEPS; k++) {
        for (int s = 0; s < NS; s++) bid[s] = ids[s][len[s] + k], bseq[s] = s, want[s] = 1;
        b = (apr_batch){ .n = NS, .ids = bid, .seq = bseq, .want_logits = want };
        REQUIRE(apr_decode(c, &b, together) == APR_OK);
        for (int s = 0; s < NS; s++)
            CHECK(memcmp(together + (size_t)s * V, alone + ((size_t)s * 16 + len[s] + k) * V, sizeof(float) * V) == 0);
    }
    for (int s = 0; s < NS; s++) CHECK_EQ_INT(apr_context_seq_len(c, s), len[s] + STEPS);
    apr_context_free(c);
    free(alone);
    free(together);
    apr_model_free(m);
}

TEST(decode_batches_of_several_sequences_match_each_alone_bit_for_bit)
{
    check_batch_independence(FIXTURE_TINY_Q8);
    check_batch_independence(FIXTURE_TINY_Q4KM);
    check_batch_independence(FIXTURE_TINY_F16);
}

TEST(decode_after_truncate_repeats_the_logits)
{
    apr_model *m = fixture_load(FIXTURE_TINY_Q4KM, 2);
    REQUIRE(m);
    apr_context *c = fixture_context(m, 128, 1, 64);
    REQUIRE(c);
    int32_t ids[48];
    for (int i = 0; i < 48; i++) ids[i] = tok(i);
    float *first = malloc(sizeof(float) * 48 * V), *second = malloc(sizeof(float) * 48 * V);
    REQUIRE(first && second);
    REQUIRE(run(c, 0, ids, 40, first) == APR_OK);
    for (int i = 40; i < 48; i++) REQUIRE(run(c, 0, ids + i, 1, first + (size_t)i * V) == APR_OK);
    /* back to 31 tokens (into the first block: block 1 is freed), then again */
    CHECK_EQ_INT(apr_context_seq_truncate(c, 0, 31), APR_OK);
    CHECK_EQ_INT(apr_context_seq_len(c, 0), 31);
    REQUIRE(run(c, 0, ids + 31, 17, second + (size_t)31 * V) == APR_OK);
    CHECK(memcmp(first + (size_t)31 * V, second + (size_t)31 * V, sizeof(float) * 17 * V) == 0);
    /* all of it */
    CHECK_EQ_INT(apr_context_seq_truncate(c, 0, 0), APR_OK);
    CHECK_EQ_INT(apr_context_seq_len(c, 0), 0);
    REQUIRE(run(c, 0, ids, 40, second) == APR_OK);
    CHECK(memcmp(first, second, sizeof(float) * 40 * V) == 0);
    CHECK_EQ_INT(apr_context_seq_truncate(c, 3, 0), APR_ERR_RANGE);
    apr_context_free(c);
    free(first);
    free(second);
    apr_model_free(m);
}

TEST(decode_scalar_and_simd_kernels_agree_on_a_model)
{
    if (apr_cpu_best_isa() == CPU_SCALAR) SKIP("no AVX2 on this CPU");
    const char *paths[] = { FIXTURE_TINY_Q8, FIXTURE_TINY_Q4KM, FIXTURE_TINY_F16 };
    int32_t ids[12];
    for (int i = 0; i < 12; i++) ids[i] = tok(i);
    static float logits[3][12 * V];
    for (int p = 0; p < 3; p++) {
        apr_model *m = fixture_load(paths[p], 2);
        REQUIRE(m);
        for (int isa = CPU_SCALAR; isa <= apr_cpu_best_isa(); isa++) {
            int old = apr_cpu_set_isa(isa);
            apr_context *c = fixture_context(m, 64, 1, 16);
            REQUIRE(c);
            REQUIRE(run(c, 0, ids, 12, logits[isa]) == APR_OK);
            apr_context_free(c);
            apr_cpu_set_isa(old);
        }
        for (int isa = CPU_AVX2; isa <= apr_cpu_best_isa(); isa++) {
            double max_diff = 0, max_abs = 0;
            for (int i = 0; i < 12 * V; i++) {
                max_diff = fmax(max_diff, fabs((double)logits[isa][i] - logits[CPU_SCALAR][i]));
                max_abs = fmax(max_abs, fabs((double)logits[CPU_SCALAR][i]));
            }
            if (!(max_diff <= 1e-4 * max_abs))
                test_fail(__FILE__, __LINE__, "%s: scalar vs isa %d differ by %.3g (max |logit| %.3g)", paths[p], isa,
                          max_diff, max_abs);
        }
        apr_model_free(m);
    }
}

TEST(decode_nan_in_weights_is_reported_not_returned)
{
    /* the first block scale of attn_q in layer 0 becomes a NaN half */
    const char *path = fixture_tmp("nan-weight.gguf");
    fixture_edit e = { .poke_tensor = "blk.0.attn_q.weight", .poke_at = 0, .poke_value = 0x7e00 };
    REQUIRE(fixture_copy(FIXTURE_TINY_Q8, path, &e) == 0);
    apr_model *m = fixture_load(path, 2);
    REQUIRE(m);
    apr_context *c = fixture_context(m, 64, 1, 16);
    REQUIRE(c);
    static float logits[V];
    int32_t ids[2] = { 3, 4 };
    apr_batch b = { .n = 2, .ids = ids };
    CHECK_EQ_INT(apr_decode(c, &b, logits), APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "non-finite logits") != NULL);
    CHECK(strstr(apr_last_error(), "apr verify --deep") != NULL);
    CHECK_EQ_INT(apr_context_seq_len(c, 0), 0);
    apr_context_free(c);
    apr_model_free(m);
    remove(path);
}

TEST(decode_ctrl_c_cancels_and_leaves_the_cache_alone)
{
    apr_model *m = fixture_load(FIXTURE_TINY_Q8, 2);
    REQUIRE(m);
    apr_context *c = fixture_context(m, 64, 1, 16);
    REQUIRE(c);
    static float logits[V];
    int32_t ids[4] = { 3, 4, 5, 6 };
    apr_batch b = { .n = 4, .ids = ids };
    apr_interrupt_install();
    raise(SIGINT);  /* the first Ctrl+C only raises the flag */
    CHECK_EQ_INT(apr_decode(c, &b, logits), APR_ERR_CANCELLED);
    apr_interrupt_clear();
    CHECK_EQ_INT(apr_context_seq_len(c, 0), 0);
    CHECK_EQ_INT(apr_decode(c, &b, logits), APR_OK);
    CHECK_EQ_INT(apr_context_seq_len(c, 0), 4);
    apr_context_free(c);
    apr_model_free(m);
}

/* Issue 16: at exit Lua's finalizers freed the model before its context,
 * and apr_context_free then called the backend through freed memory. The
 * context holds a reference on its model, so the model's release comes
 * first here and the context still decodes (weights mapped, backend alive)
 * and frees cleanly; the model goes with the context. Before the fix this
 * read unmapped weights (a crash) and, under ASan, a heap-use-after-free. */
TEST(context_outlives_its_model_released_first)
{
    apr_model *m = fixture_load(FIXTURE_TINY_Q8, 2);
    REQUIRE(m);
    apr_context *c = fixture_context(m, 64, 1, 16);
    REQUIRE(c);
    static float before[3 * V], after[3 * V];
    int32_t ids[3] = { 1, 2, 3 };
    REQUIRE(run(c, 0, ids, 3, before) == APR_OK);
    REQUIRE(apr_context_seq_truncate(c, 0, 0) == APR_OK);
    apr_model_free(m);  /* the caller's reference: the context's remains */
    REQUIRE(run(c, 0, ids, 3, after) == APR_OK);
    CHECK(memcmp(before, after, sizeof before) == 0);
    apr_context_free(c);  /* the last reference: frees the model too */
}

TEST(model_retain_and_free_pair_up)
{
    apr_model *m = fixture_load(FIXTURE_TINY_Q8, 2);
    REQUIRE(m);
    CHECK(apr_model_retain(m) == m);
    CHECK(apr_model_retain(NULL) == NULL);
    apr_model_free(m);
    apr_model_info info;
    apr_model_get_info(m, &info);  /* still held by the second reference */
    CHECK_EQ_INT(info.n_vocab, V);
    apr_context *c = fixture_context(m, 32, 1, 8);
    REQUIRE(c);
    apr_model_free(m);
    int32_t ids[1] = { 7 };
    static float logits[V];
    CHECK(run(c, 0, ids, 1, logits) == APR_OK);
    apr_context_free(c);
}

/* Prefix reuse: a sequence that takes another's cached blocks (while the
 * other still holds them, and after it let go of them, partial last block
 * included) and decodes the rest gets bit for bit the logits of a cold
 * prefill of the same tokens; the blocks are found only for the same
 * tokens; cutting the sequence inside a shared block copies it, and both
 * sequences still decode as if alone. */
TEST(context_prefix_reuse_gives_the_logits_of_a_cold_prefill)
{
    apr_model *m = fixture_load(FIXTURE_TINY_Q8, 2);
    REQUIRE(m);
    enum { N = 100, TAIL = 8 };  /* 3 full blocks, then 4 tokens */
    int32_t ids[N + TAIL];
    for (int i = 0; i < N + TAIL; i++) ids[i] = tok(3 * i + 1);
    float *cold = malloc(sizeof(float) * (N + TAIL) * V), *warm = malloc(sizeof(float) * (N + TAIL) * V);
    REQUIRE(cold && warm);
    apr_context *c = fixture_context(m, 256, 3, 128);
    REQUIRE(c);
    /* cold: all of it in sequence 0 */
    REQUIRE(run(c, 0, ids, 64, cold) == APR_OK);
    REQUIRE(run(c, 0, ids + 64, N + TAIL - 64, cold + (size_t)64 * V) == APR_OK);

    /* warm, while sequence 0 holds the blocks: 3 blocks (96 tokens) are taken */
    int reused = -1;
    CHECK_EQ_INT(apr_context_seq_reuse(c, 1, ids, N, &reused), APR_OK);
    CHECK_EQ_INT(reused, 96);
    CHECK_EQ_INT(apr_context_seq_len(c, 1), 96);
    REQUIRE(run(c, 1, ids + 96, N + TAIL - 96, warm + (size_t)96 * V) == APR_OK);
    CHECK(memcmp(cold + (size_t)96 * V, warm + (size_t)96 * V, sizeof(float) * (N + TAIL - 96) * V) == 0);
    /* the last id is always left to decode, even at a block boundary */
    CHECK_EQ_INT(apr_context_seq_reuse(c, 2, ids, 64, &reused), APR_OK);
    CHECK_EQ_INT(reused, 32);
    CHECK_EQ_INT(apr_context_seq_truncate(c, 2, 0), APR_OK);
    /* a sequence holding other tokens is refused */
    CHECK_EQ_INT(apr_context_seq_reuse(c, 1, ids + 1, N, &reused), APR_ERR_INVALID);
    CHECK_EQ_INT(reused, 0);

    /* after both let go: the blocks are still there for a third, and so
     * is a partly filled last block (12 tokens): all but the last id come
     * from the cache */
    CHECK_EQ_INT(apr_context_seq_truncate(c, 0, 0), APR_OK);
    CHECK_EQ_INT(apr_context_seq_truncate(c, 1, 0), APR_OK);
    CHECK_EQ_INT(apr_context_seq_reuse(c, 2, ids, N + TAIL, &reused), APR_OK);
    CHECK_EQ_INT(reused, N + TAIL - 1);
    memset(warm, 0, sizeof(float) * (N + TAIL) * V);
    REQUIRE(run(c, 2, ids + reused, N + TAIL - reused, warm + (size_t)reused * V) == APR_OK);
    CHECK(memcmp(cold + (size_t)reused * V, warm + (size_t)reused * V, sizeof(float) * (N + TAIL - reused) * V) == 0);
    /* and a shorter one: the whole blocks, then 4 of the partial block's 12 */
    CHECK_EQ_INT(apr_context_seq_reuse(c, 1, ids, N + 1, &reused), APR_OK);
    CHECK_EQ_INT(reused, N);
    REQUIRE(run(c, 1, ids + N, TAIL, warm) == APR_OK);
    CHECK(memcmp(cold + (size_t)N * V, warm, sizeof(float) * TAIL * V) == 0);
    CHECK_EQ_INT(apr_context_seq_truncate(c, 1, 0), APR_OK);

    /* other tokens from position 40 on: only the first block matches */
    int32_t other[N];
    memcpy(other, ids, sizeof other);
    other[40] = tok(999);
    CHECK_EQ_INT(apr_context_seq_reuse(c, 0, other, N, &reused), APR_OK);
    CHECK_EQ_INT(reused, 32);
    CHECK_EQ_INT(apr_context_seq_truncate(c, 0, 0), APR_OK);

    /* sequence 0 shares sequence 2's blocks, then is cut inside the second
     * and continues differently: it gets a copy, and sequence 2 is unharmed */
    CHECK_EQ_INT(apr_context_seq_reuse(c, 0, ids, N, &reused), APR_OK);
    CHECK(reused >= 96);
    CHECK_EQ_INT(apr_context_seq_truncate(c, 0, 40), APR_OK);
    REQUIRE(run(c, 0, other + 40, 10, warm) == APR_OK);
    apr_context *fresh = fixture_context(m, 256, 1, 128);
    REQUIRE(fresh);
    REQUIRE(run(fresh, 0, other, 50, cold) == APR_OK);
    CHECK(memcmp(cold + (size_t)40 * V, warm, sizeof(float) * 10 * V) == 0);
    int32_t next = tok(5);
    REQUIRE(run(c, 2, &next, 1, warm) == APR_OK);
    CHECK_EQ_INT(apr_context_seq_truncate(fresh, 0, 0), APR_OK);
    REQUIRE(run(fresh, 0, ids, 64, cold) == APR_OK);
    REQUIRE(run(fresh, 0, ids + 64, N + TAIL - 64, cold) == APR_OK);
    REQUIRE(run(fresh, 0, &next, 1, cold) == APR_OK);
    CHECK(memcmp(cold, warm, sizeof(float) * V) == 0);

    /* without prefix_cache nothing is reused */
    apr_context_params p;
    apr_context_params_default(&p);
    p.n_ctx = 256;
    p.prefix_cache = 0;
    apr_context *plain = NULL;
    REQUIRE(apr_context_new(m, &p, &plain) == APR_OK);
    REQUIRE(run(plain, 0, ids, 64, cold) == APR_OK);
    CHECK_EQ_INT(apr_context_seq_truncate(plain, 0, 0), APR_OK);
    CHECK_EQ_INT(apr_context_seq_reuse(plain, 0, ids, N, &reused), APR_OK);
    CHECK_EQ_INT(reused, 0);
    apr_context_free(plain);
    apr_context_free(fresh);
    apr_context_free(c);
    free(cold);
    free(warm);
    apr_model_free(m);
}

/* n_ctx 0 under a memory budget: the cache gets what the budget leaves
 * after the weights, activations and scratch, in whole blocks, less the
 * slack blocks of the other sequences; a budget that leaves less than a
 * block fails saying so. (The CPU backend enforces no budget; the sizing is
 * the same arithmetic on the GPU, where allocations past it fail.) */
TEST(context_sized_from_a_vram_budget)
{
    apr_model *m = fixture_load(FIXTURE_TINY_Q8, 1);
    REQUIRE(m);
    const size_t per_token = apr_kvcache_token_bytes(APR_F16, m->hp.n_layer, m->hp.n_head_kv, m->hp.head_dim);
    apr_context_params p;
    apr_context_params_default(&p);
    p.n_ctx = 0;
    p.n_seq = 2;
    p.n_batch = 64;
    /* what a context takes beside its cache: measured with a small cache
     * and a stream sized for the training context, as a budgeted one is */
    p.n_ctx = m->hp.n_ctx_train;
    apr_context *probe = NULL;
    const uint64_t before = m->backend->bytes;
    REQUIRE(apr_context_new(m, &p, &probe) == APR_OK);
    const uint64_t cache = 2 * (uint64_t)probe->cache.dev.layer_bytes * m->hp.n_layer;
    const uint64_t rest = m->backend->bytes - before - cache;
    apr_context_free(probe);

    /* room for 1000 tokens beyond the weights and the rest: 31 blocks, one
     * of them the second sequence's slack, so at most 30 blocks of n_ctx
     * (the estimate of the block table's bytes may cost one more) */
    m->backend->budget = before + rest + 1000 * per_token;
    p.n_ctx = 0;
    apr_context *c = NULL;
    REQUIRE(apr_context_new(m, &p, &c) == APR_OK);
    CHECK(apr_context_n_ctx(c) % 32 == 0);
    CHECK(apr_context_n_ctx(c) == 30 * 32 || apr_context_n_ctx(c) == 29 * 32);
    CHECK(m->backend->bytes <= m->backend->budget);
    apr_context_free(c);

    /* too little: one line saying what is left */
    m->backend->budget = before + rest + 20 * per_token;
    CHECK_EQ_INT(apr_context_new(m, &p, &c), APR_ERR_NOMEM);
    CHECK(c == NULL);
    CHECK(strstr(apr_last_error(), "leaves room for 0 tokens of KV cache") != NULL);
    /* an explicit n_ctx is not resized */
    p.n_ctx = 64;
    REQUIRE(apr_context_new(m, &p, &c) == APR_OK);
    CHECK_EQ_INT(apr_context_n_ctx(c), 64);
    apr_context_free(c);
    m->backend->budget = 0;
    apr_model_free(m);
}
