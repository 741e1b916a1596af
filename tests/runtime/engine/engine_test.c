/* engine_test.c — continuous batching on the tiny fixture model: batching,
 * preemption and prefix reuse change no request's tokens; cancellation,
 * the queue's limit, bad requests, stop ids and the pool's limit. */
#include "test.h"
#include "apr.h"

#include <poll.h>
#include <stdlib.h>

#define MODEL "tests/fixtures/models/tiny-q8_0.gguf"
#define MAX_GEN 64

typedef struct result {
    uint64_t id;
    int32_t tokens[MAX_GEN];
    int n;
    int finish, stop_token, n_generated, n_cached;
    char message[256];
} result;

static apr_model *load(void)
{
    apr_model_params p;
    apr_model_params_default(&p);
    p.device = APR_DEVICE_CPU;
    apr_model *m = NULL;
    if (apr_model_load(MODEL, &p, &m) != APR_OK) return NULL;
    return m;
}

static apr_engine *engine_with(apr_model *m, int n_seq, int n_ctx, int max_queue, int prefix_cache)
{
    apr_engine_params p;
    apr_engine_params_default(&p);
    p.n_seq = n_seq;
    p.n_ctx = n_ctx;
    p.max_queue = max_queue;
    p.prefix_cache = prefix_cache;
    apr_engine *e = NULL;
    if (apr_engine_new(m, &p, &e) != APR_OK) return NULL;
    return e;
}

static apr_engine *engine(apr_model *m, int n_seq, int n_ctx, int max_queue)
{
    return engine_with(m, n_seq, n_ctx, max_queue, 1);
}

/* Waits on the engine's fd (as an event loop would) until every request
 * in results[0..n) has its final event; 0 on timeout. */
static int collect(apr_engine *e, result *results, int n)
{
    static apr_engine_event ev[64];
    int left = n;
    while (left > 0) {
        struct pollfd pfd = { apr_engine_fd(e), POLLIN, 0 };
        if (poll(&pfd, 1, 20000) <= 0) return 0;
        int k;
        while ((k = apr_engine_poll(e, ev, 64)) > 0) {
            for (int i = 0; i < k; i++) {
                for (int r = 0; r < n; r++) {
                    result *res = &results[r];
                    if (res->id != ev[i].id) continue;
                    if (ev[i].token >= 0 && res->n < MAX_GEN) res->tokens[res->n++] = ev[i].token;
                    if (ev[i].finish != APR_FINISH_NONE) {
                        res->finish = ev[i].finish;
                        res->stop_token = ev[i].stop_token;
                        res->n_generated = ev[i].n_generated;
                        res->n_cached = ev[i].n_cached;
                        snprintf(res->message, sizeof res->message, "%s", ev[i].message);
                        left--;
                    }
                }
            }
        }
    }
    return 1;
}

static void prompt_of(int r, int32_t *ids, int *n)
{
    /* Distinct prompts of different lengths, ids below the tiny vocabulary. */
    *n = 3 + r % 5;
    for (int i = 0; i < *n; i++) ids[i] = (int32_t)(17 + 97 * r + 31 * i) % 2000;
}

static apr_status submit_greedy(apr_engine *e, int r, int max_tokens, result *out)
{
    int32_t ids[16];
    int n;
    prompt_of(r, ids, &n);
    apr_engine_request q;
    apr_engine_request_default(&q);
    q.prompt = ids;
    q.n_prompt = n;
    q.max_tokens = max_tokens;
    q.sampling.temperature = 0;
    q.ignore_eog = 1;
    memset(out, 0, sizeof *out);
    return apr_engine_submit(e, &q, &out->id);
}

/* Batching must not change results: greedy requests decoded together give
 * exactly the tokens each gives alone. */
TEST(engine_batched_greedy_equals_alone)
{
    apr_model *m = load();
    if (!m) SKIP("tiny fixture model not loadable");
    enum { N = 8, GEN = 12 };
    result alone[N], together[N];

    apr_engine *e1 = engine(m, 1, 512, 64);
    REQUIRE(e1 != NULL);
    for (int r = 0; r < N; r++) {
        REQUIRE(submit_greedy(e1, r, GEN, &alone[r]) == APR_OK);
        REQUIRE(collect(e1, &alone[r], 1));
        CHECK_EQ_INT(alone[r].finish, APR_FINISH_LENGTH);
        CHECK_EQ_INT(alone[r].n, GEN);
    }
    apr_engine_free(e1);

    apr_engine *e = engine(m, 4, 1024, 64);
    REQUIRE(e != NULL);
    for (int r = 0; r < N; r++) REQUIRE(submit_greedy(e, r, GEN, &together[r]) == APR_OK);
    REQUIRE(collect(e, together, N));
    for (int r = 0; r < N; r++) {
        CHECK_EQ_INT(together[r].finish, APR_FINISH_LENGTH);
        CHECK_EQ_INT(together[r].n, GEN);
        CHECK_EQ_INT(together[r].n_generated, GEN);
        CHECK(memcmp(alone[r].tokens, together[r].tokens, GEN * sizeof(int32_t)) == 0);
    }
    apr_engine_stats st;
    apr_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.n_seq, 4);
    CHECK_EQ_INT(st.n_ctx_seq, 1024);  /* one request may use the whole pool */
    CHECK_EQ_INT(st.tokens_generated, N * GEN);
    CHECK(st.submitted == N);
    /* Four sequences decoded side by side: far fewer steps than tokens. */
    CHECK(st.steps < (uint64_t)(N * GEN));
    apr_engine_free(e);
    apr_model_free(m);
}

TEST(engine_cancel_frees_the_sequence)
{
    apr_model *m = load();
    if (!m) SKIP("tiny fixture model not loadable");
    apr_engine *e = engine(m, 1, 512, 4);
    REQUIRE(e != NULL);
    result a, b;
    REQUIRE(submit_greedy(e, 1, 400, &a) == APR_OK);
    REQUIRE(submit_greedy(e, 2, 3, &b) == APR_OK);  /* waits for a's sequence */
    CHECK_EQ_INT(apr_engine_cancel(e, a.id), APR_OK);
    CHECK_EQ_INT(apr_engine_cancel(e, 999999), APR_OK);  /* unknown: ignored */
    result both[2] = { a, b };
    REQUIRE(collect(e, both, 2));
    CHECK_EQ_INT(both[0].finish, APR_FINISH_CANCELLED);
    CHECK(both[0].n < 400);
    CHECK_EQ_INT(both[1].finish, APR_FINISH_LENGTH);
    CHECK_EQ_INT(both[1].n, 3);
    apr_engine_stats st;
    apr_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.running, 0);
    CHECK_EQ_INT(st.kv_tokens_used, 0);
    CHECK_EQ_INT(st.kv_blocks_used, 0);
    CHECK(st.kv_blocks_total > 0);
    apr_engine_free(e);
    apr_model_free(m);
}

TEST(engine_queue_limit_is_busy)
{
    apr_model *m = load();
    if (!m) SKIP("tiny fixture model not loadable");
    apr_engine *e = engine(m, 1, 512, 1);
    REQUIRE(e != NULL);
    result r[3];
    /* One may run, one may wait; the engine thread may not have taken the
     * first yet, so the free sequence counts as room too. */
    CHECK_EQ_INT(submit_greedy(e, 0, 200, &r[0]), APR_OK);
    CHECK_EQ_INT(submit_greedy(e, 1, 200, &r[1]), APR_OK);
    apr_status st = submit_greedy(e, 2, 200, &r[2]);
    CHECK_EQ_INT(st, APR_ERR_BUSY);
    CHECK(strstr(apr_last_error(), "busy") != NULL);
    CHECK(r[2].id == 0);
    apr_engine_cancel(e, r[0].id);
    apr_engine_cancel(e, r[1].id);
    REQUIRE(collect(e, r, 2));
    apr_engine_free(e);
    apr_model_free(m);
}

TEST(engine_rejects_bad_requests)
{
    apr_model *m = load();
    if (!m) SKIP("tiny fixture model not loadable");
    apr_engine *e = engine(m, 2, 64, 4);
    REQUIRE(e != NULL);
    apr_engine_request q;
    apr_engine_request_default(&q);
    uint64_t id = 7;
    int32_t ids[64] = { 0 };
    q.prompt = ids;
    q.n_prompt = 0;
    CHECK_EQ_INT(apr_engine_submit(e, &q, &id), APR_ERR_INVALID);
    CHECK(id == 0);
    q.n_prompt = 2;
    ids[1] = 1 << 20;
    CHECK_EQ_INT(apr_engine_submit(e, &q, &id), APR_ERR_RANGE);
    CHECK(strstr(apr_last_error(), "1048576") != NULL);
    ids[1] = 5;
    q.n_prompt = 64;  /* 64 slots: no room to generate */
    CHECK_EQ_INT(apr_engine_submit(e, &q, &id), APR_ERR_RANGE);
    CHECK(strstr(apr_last_error(), "64 tokens") != NULL);
    q.n_prompt = 40;  /* more than a share of the pool is fine */
    CHECK_EQ_INT(apr_engine_submit(e, &q, &id), APR_OK);
    CHECK(id > 0);
    apr_engine_cancel(e, id);
    q.n_prompt = 2;
    q.top_logprobs = 21;
    CHECK_EQ_INT(apr_engine_submit(e, &q, &id), APR_ERR_INVALID);
    q.top_logprobs = 0;
    q.sampling.top_p = 7;
    CHECK_EQ_INT(apr_engine_submit(e, &q, &id), APR_ERR_INVALID);
    q.sampling.top_p = 1;
    q.max_tokens = 0;
    CHECK_EQ_INT(apr_engine_submit(e, &q, &id), APR_ERR_INVALID);
    apr_engine_free(e);
    apr_engine_free(NULL);

    apr_engine_params p;
    apr_engine_params_default(&p);
    p.n_seq = 0;
    apr_engine *bad = (apr_engine *)1;
    CHECK_EQ_INT(apr_engine_new(m, &p, &bad), APR_ERR_INVALID);
    CHECK(bad == NULL);
    apr_model_free(m);
}

/* A stop token ends the request, flagged as not part of the text; the pool
 * caps max_tokens; logprobs come sorted. */
TEST(engine_stop_ids_room_and_logprobs)
{
    apr_model *m = load();
    if (!m) SKIP("tiny fixture model not loadable");
    apr_engine *e = engine(m, 2, 64, 4);
    REQUIRE(e != NULL);
    result first;
    REQUIRE(submit_greedy(e, 3, 8, &first) == APR_OK);
    REQUIRE(collect(e, &first, 1));
    REQUIRE(first.n == 8);

    int32_t ids[16];
    int n;
    prompt_of(3, ids, &n);
    apr_engine_request q;
    apr_engine_request_default(&q);
    q.prompt = ids;
    q.n_prompt = n;
    q.max_tokens = 8;
    q.sampling.temperature = 0;
    q.ignore_eog = 1;
    q.stop_ids = &first.tokens[4];
    q.n_stop_ids = 1;
    q.top_logprobs = 3;
    result stopped;
    memset(&stopped, 0, sizeof stopped);
    REQUIRE(apr_engine_submit(e, &q, &stopped.id) == APR_OK);
    REQUIRE(collect(e, &stopped, 1));
    CHECK_EQ_INT(stopped.finish, APR_FINISH_STOP);
    CHECK_EQ_INT(stopped.stop_token, 1);
    /* The stop token may appear earlier in the greedy sequence too. */
    int expect = 0;
    while (first.tokens[expect] != first.tokens[4]) expect++;
    CHECK_EQ_INT(stopped.n, expect + 1);

    /* 64 slots: a 7-token prompt leaves room for 57 tokens. */
    q.stop_ids = NULL;
    q.n_stop_ids = 0;
    q.max_tokens = 1000;
    result capped;
    memset(&capped, 0, sizeof capped);
    REQUIRE(apr_engine_submit(e, &q, &capped.id) == APR_OK);
    REQUIRE(collect(e, &capped, 1));
    CHECK_EQ_INT(capped.finish, APR_FINISH_LENGTH);
    CHECK_EQ_INT(capped.n_generated, 64 - n);

    static apr_engine_event ev[8];
    q.max_tokens = 1;
    uint64_t id;
    REQUIRE(apr_engine_submit(e, &q, &id) == APR_OK);
    int got = 0;
    for (int tries = 0; tries < 2000 && !got; tries++) {
        struct pollfd pfd = { apr_engine_fd(e), POLLIN, 0 };
        poll(&pfd, 1, 10);
        got = apr_engine_poll(e, ev, 8);
    }
    REQUIRE(got == 1);
    CHECK(ev[0].id == id);
    CHECK_EQ_INT(ev[0].n_top, 3);
    CHECK(ev[0].top[0].logprob >= ev[0].top[1].logprob && ev[0].top[1].logprob >= ev[0].top[2].logprob);
    CHECK(ev[0].logprob <= 0);
    CHECK_EQ_INT(ev[0].top[0].id, ev[0].token);  /* greedy picks the most likely */
    apr_engine_free(e);
    apr_model_free(m);
}

/* A plain greedy request decodes with apr_decode_greedy when alone and with
 * logits and the sampler when it shares a step with a logprobs request:
 * both ways must pick the same tokens. */
TEST(engine_greedy_paths_agree)
{
    apr_model *m = load();
    if (!m) SKIP("tiny fixture model not loadable");
    enum { GEN = 16 };
    apr_engine *e = engine(m, 2, 512, 4);
    REQUIRE(e != NULL);
    result alone;
    REQUIRE(submit_greedy(e, 5, GEN, &alone) == APR_OK);
    REQUIRE(collect(e, &alone, 1));
    REQUIRE(alone.n == GEN);

    result pair[2];
    int32_t ids[16];
    int n;
    prompt_of(6, ids, &n);
    apr_engine_request q;
    apr_engine_request_default(&q);
    q.prompt = ids;
    q.n_prompt = n;
    q.max_tokens = GEN + 8;  /* outlives the other, so every step is mixed */
    q.top_logprobs = 1;
    q.ignore_eog = 1;
    memset(&pair[0], 0, sizeof pair[0]);
    REQUIRE(apr_engine_submit(e, &q, &pair[0].id) == APR_OK);
    REQUIRE(submit_greedy(e, 5, GEN, &pair[1]) == APR_OK);
    REQUIRE(collect(e, pair, 2));
    CHECK_EQ_INT(pair[1].n, GEN);
    CHECK(memcmp(alone.tokens, pair[1].tokens, GEN * sizeof(int32_t)) == 0);
    apr_engine_free(e);
    apr_model_free(m);
}

/* The engine holds a reference on its model (issue 16): the caller's may
 * go first, as Lua's finalizers may release it first at exit, and the
 * engine still generates and frees cleanly. */
TEST(engine_outlives_its_model_released_first)
{
    apr_model *m = load();
    if (!m) SKIP("tiny fixture model not loadable");
    apr_engine *e = engine(m, 2, 256, 8);
    REQUIRE(e != NULL);
    apr_model_free(m);
    result r;
    REQUIRE(submit_greedy(e, 0, 4, &r) == APR_OK);
    REQUIRE(collect(e, &r, 1));
    CHECK_EQ_INT(r.finish, APR_FINISH_LENGTH);
    CHECK_EQ_INT(r.n, 4);
    apr_engine_free(e);
}

/* Greedy requests of prompt (ids, n) with max_tokens gen. */
static apr_status submit_ids(apr_engine *e, const int32_t *ids, int n, int gen, result *out)
{
    apr_engine_request q;
    apr_engine_request_default(&q);
    q.prompt = ids;
    q.n_prompt = n;
    q.max_tokens = gen;
    q.sampling.temperature = 0;
    q.ignore_eog = 1;
    memset(out, 0, sizeof *out);
    return apr_engine_submit(e, &q, &out->id);
}

/* Paged admission and preemption change no result: 16 requests that
 * together need more blocks than a small pool has run side by side, the
 * newest preempted (and recomputed) when the pool runs dry, and each gives
 * exactly the tokens it gives alone. One request may use most of the pool. */
TEST(engine_preemption_changes_no_result)
{
    apr_model *m = load();
    if (!m) SKIP("tiny fixture model not loadable");
    enum { N = 16, GEN = 40 };
    result alone[N], together[N];
    apr_engine *e1 = engine(m, 1, 512, 64);
    REQUIRE(e1 != NULL);
    for (int r = 0; r < N; r++) {
        REQUIRE(submit_greedy(e1, r, GEN, &alone[r]) == APR_OK);
        REQUIRE(collect(e1, &alone[r], 1));
        REQUIRE(alone[r].n == GEN);
    }
    apr_engine_free(e1);

    /* 160 slots: 5 blocks + 15 of slack = 20 blocks; the 16 requests need
     * two blocks each (up to 47 tokens). Whether they overlap enough to
     * preempt depends on how fast the engine's thread finishes the first
     * ones while the later are submitted: on a busy machine it may not, so
     * the run is repeated (results checked every time) until one preempts. */
    apr_engine *e = NULL;
    apr_engine_stats st = { 0 };
    for (int attempt = 0; attempt < 5 && st.preemptions == 0; attempt++) {
        if (e) apr_engine_free(e);
        memset(together, 0, sizeof together);
        e = engine(m, N, 160, 64);
        REQUIRE(e != NULL);
        for (int r = 0; r < N; r++) REQUIRE(submit_greedy(e, r, GEN, &together[r]) == APR_OK);
        REQUIRE(collect(e, together, N));
        for (int r = 0; r < N; r++) {
            CHECK_EQ_INT(together[r].finish, APR_FINISH_LENGTH);
            CHECK_EQ_INT(together[r].n, GEN);
            CHECK(memcmp(alone[r].tokens, together[r].tokens, GEN * sizeof(int32_t)) == 0);
        }
        apr_engine_get_stats(e, &st);
    }
    CHECK(st.preemptions > 0);
    CHECK_EQ_INT(st.running, 0);
    CHECK_EQ_INT(st.queued, 0);
    CHECK_EQ_INT(st.kv_blocks_used, 0);
    CHECK_EQ_INT(st.kv_blocks_total, 20);

    /* a request of 150 tokens fits the pool of 160 though 16 may run */
    int32_t ids[150];
    for (int i = 0; i < 150; i++) ids[i] = (int32_t)((i * 37 + 5) % 2000);
    result big;
    REQUIRE(submit_ids(e, ids, 140, 10, &big) == APR_OK);
    REQUIRE(collect(e, &big, 1));
    CHECK_EQ_INT(big.n, 10);
    CHECK_EQ_INT(big.finish, APR_FINISH_LENGTH);
    apr_engine_free(e);
    apr_model_free(m);
}

/* Prefix reuse in the engine: a request whose prompt begins with an earlier
 * one's takes its cached blocks (reported as n_cached) and generates what
 * it generates cold; 16 requests sharing a preamble, submitted together,
 * compute it about once; with prefix_cache off nothing is reused. */
TEST(engine_prefix_cache_reuses_blocks_without_changing_results)
{
    apr_model *m = load();
    if (!m) SKIP("tiny fixture model not loadable");
    enum { P = 80, N = 16, GEN = 8 };
    int32_t ids[N][P + 8];
    for (int r = 0; r < N; r++)
        for (int i = 0; i < P + 8; i++) ids[r][i] = (int32_t)(i < P ? (i * 131 + 7) % 2000 : (r * 17 + i) % 2000);
    result cold[N], warm[N], first, second;

    apr_engine *off = engine_with(m, 4, 1024, 64, 0);
    REQUIRE(off != NULL);
    for (int r = 0; r < N; r++) {
        REQUIRE(submit_ids(off, ids[r], P + 8, GEN, &cold[r]) == APR_OK);
        REQUIRE(collect(off, &cold[r], 1));
        CHECK_EQ_INT(cold[r].n_cached, 0);
    }
    apr_engine_stats st;
    apr_engine_get_stats(off, &st);
    CHECK(st.tokens_reused == 0);
    CHECK_EQ_INT(st.prefix_cache, 0);
    apr_engine_free(off);

    apr_engine *e = engine(m, N, 2048, 64);
    REQUIRE(e != NULL);
    /* the same prompt twice: the second takes all but its last token (two
     * whole blocks, and 23 of the first's partly filled third) */
    REQUIRE(submit_ids(e, ids[0], P + 8, GEN, &first) == APR_OK);
    REQUIRE(collect(e, &first, 1));
    CHECK_EQ_INT(first.n_cached, 0);
    REQUIRE(submit_ids(e, ids[0], P + 8, GEN, &second) == APR_OK);
    REQUIRE(collect(e, &second, 1));
    CHECK_EQ_INT(second.n_cached, P + 8 - 1);
    CHECK(memcmp(cold[0].tokens, second.tokens, GEN * sizeof(int32_t)) == 0);
    /* a prompt that extends the first one's prompt and answer (the next
     * turn of a chat): its whole blocks come from the cache */
    int32_t turn[P + 8 + GEN + 30];
    memcpy(turn, ids[0], sizeof(int32_t) * (P + 8));
    memcpy(turn + P + 8, first.tokens, sizeof(int32_t) * GEN);
    for (int i = 0; i < 30; i++) turn[P + 8 + GEN + i] = (int32_t)(i * 7 + 1);
    result next;
    REQUIRE(submit_ids(e, turn, P + 8 + GEN + 30, GEN, &next) == APR_OK);
    REQUIRE(collect(e, &next, 1));
    /* the second request's sequence held 88 + 8 - 1 = 95 tokens (its last
     * token is never decoded): two whole blocks and 31 slots of a third */
    CHECK_EQ_INT(next.n_cached, 95);

    apr_engine_get_stats(e, &st);
    CHECK(st.tokens_reused == 87 + 95);
    CHECK(st.kv_blocks_cached > 0);
    apr_engine_free(e);

    /* 16 with the same 80-token preamble at once, in a fresh engine: the
     * first step's batch (512 tokens) holds five whole prompts and the
     * first 64 tokens of a sixth, which compute the preamble side by side;
     * the ten admitted with them but not yet started take its two blocks
     * from the cache at the next step instead of computing them (more, if
     * the engine thread started on the first before the others arrived) */
    e = engine(m, N, 2048, 64);
    REQUIRE(e != NULL);
    for (int r = 0; r < N; r++) REQUIRE(submit_ids(e, ids[r], P + 8, GEN, &warm[r]) == APR_OK);
    REQUIRE(collect(e, warm, N));
    int cached = 0;
    for (int r = 0; r < N; r++) {
        CHECK(memcmp(cold[r].tokens, warm[r].tokens, GEN * sizeof(int32_t)) == 0);
        cached += warm[r].n_cached;
    }
    CHECK(cached >= (N - 6) * 64);
    apr_engine_free(e);
    apr_model_free(m);
}

/* A long prompt beside short requests: the short ones get their first
 * tokens while the long one is still prefilling (its chunks share each
 * step with them) and none fails; the long one, again from the prefix
 * cache, gives the tokens it gave beside them. */
TEST(engine_short_requests_do_not_wait_for_a_long_prompt)
{
    apr_model *m = load();
    if (!m) SKIP("tiny fixture model not loadable");
    enum { LONG = 1800, N = 16, GEN = 6 };
    static int32_t ids[LONG];
    for (int i = 0; i < LONG; i++) ids[i] = (int32_t)((i * 389 + 11) % 2000);
    apr_engine *e = engine(m, N, 4096, 64);
    REQUIRE(e != NULL);
    result r[N], alone;
    REQUIRE(submit_ids(e, ids, LONG, GEN, &r[0]) == APR_OK);
    for (int k = 1; k < N; k++) REQUIRE(submit_greedy(e, k, GEN, &r[k]) == APR_OK);
    /* the order of first tokens */
    static apr_engine_event ev[64];
    int first_seen[N] = { 0 }, order = 0, long_first = -1, shorts_before = 0, finished = 0;
    while (finished < N) {
        struct pollfd pfd = { apr_engine_fd(e), POLLIN, 0 };
        REQUIRE(poll(&pfd, 1, 20000) > 0);
        int k;
        while ((k = apr_engine_poll(e, ev, 64)) > 0) {
            for (int i = 0; i < k; i++) {
                for (int q = 0; q < N; q++) {
                    if (r[q].id != ev[i].id) continue;
                    if (ev[i].token >= 0 && r[q].n < MAX_GEN) r[q].tokens[r[q].n++] = ev[i].token;
                    if (!first_seen[q] && ev[i].token >= 0) {
                        first_seen[q] = 1;
                        if (q == 0) long_first = order;
                        else if (long_first < 0) shorts_before++;
                        order++;
                    }
                    if (ev[i].finish != APR_FINISH_NONE) {
                        r[q].finish = ev[i].finish;
                        finished++;
                    }
                }
            }
        }
    }
    CHECK_EQ_INT(shorts_before, N - 1);
    for (int q = 0; q < N; q++) CHECK_EQ_INT(r[q].finish, APR_FINISH_LENGTH);
    REQUIRE(submit_ids(e, ids, LONG, GEN, &alone) == APR_OK);
    REQUIRE(collect(e, &alone, 1));
    CHECK(memcmp(alone.tokens, r[0].tokens, GEN * sizeof(int32_t)) == 0);
    apr_engine_free(e);
    apr_model_free(m);
}

/* With a zram pool, the blocks of preempted requests evicted meanwhile come
 * back from the pool at readmission instead of being recomputed: the 16
 * requests of engine_preemption_changes_no_result give exactly their
 * tokens alone, and fewer prompt tokens are computed than without it. */
TEST(engine_zram_restores_preempted_requests_without_changing_results)
{
    apr_model *m = load();
    if (!m) SKIP("tiny fixture model not loadable");
    enum { N = 16, GEN = 40 };
    result alone[N], plain[N], swapped[N];
    apr_engine *e1 = engine(m, 1, 512, 64);
    REQUIRE(e1 != NULL);
    for (int r = 0; r < N; r++) {
        REQUIRE(submit_greedy(e1, r, GEN, &alone[r]) == APR_OK);
        REQUIRE(collect(e1, &alone[r], 1));
    }
    apr_engine_free(e1);

    apr_engine_stats st[2];
    apr_kv_swap_stats sw;
    apr_zram_stats zs;
    for (int with = 0; with <= 1; with++) {
        /* as in engine_preemption_changes_no_result: repeated (results
         * checked every time) until the requests overlap enough to preempt
         * and, with the pool, to restore */
        st[with].preemptions = 0;
        sw.blocks_in = 0;
        for (int attempt = 0; attempt < 5 && (st[with].preemptions == 0 || (with && sw.blocks_in == 0)); attempt++) {
            apr_engine_params p;
            apr_engine_params_default(&p);
            p.n_seq = N;
            p.n_ctx = 160;
            p.zram_ratio = with ? 4 : 0;
            apr_engine *e = NULL;
            REQUIRE(apr_engine_new(m, &p, &e) == APR_OK);
            result *res = with ? swapped : plain;
            memset(res, 0, sizeof(result) * N);
            for (int r = 0; r < N; r++) REQUIRE(submit_greedy(e, r, GEN, &res[r]) == APR_OK);
            REQUIRE(collect(e, res, N));
            for (int r = 0; r < N; r++) {
                CHECK_EQ_INT(res[r].n, GEN);
                if (memcmp(alone[r].tokens, res[r].tokens, GEN * sizeof(int32_t)) != 0)
                    test_fail(__FILE__, __LINE__, "request %d (zram %d) differs from alone", r, with);
            }
            apr_engine_get_stats(e, &st[with]);
            CHECK_EQ_INT(apr_engine_get_zram(e, &zs, &sw), with);
            apr_engine_free(e);
        }
        CHECK(st[with].preemptions > 0);
    }
    CHECK(sw.blocks_out > 0);
    CHECK(sw.blocks_in > 0);
    CHECK_EQ_INT(sw.restore_failed, 0);
    CHECK(zs.puts > 0 && zs.max_bytes > 0);
    CHECK(st[1].tokens_prompt < st[0].tokens_prompt);
    printf("    prompt tokens computed: %llu without zram, %llu with (blocks out %llu, in %llu, clean %llu)\n",
           (unsigned long long)st[0].tokens_prompt, (unsigned long long)st[1].tokens_prompt,
           (unsigned long long)sw.blocks_out, (unsigned long long)sw.blocks_in, (unsigned long long)sw.blocks_clean);

    /* a pool without the prefix cache is refused */
    apr_engine_params p;
    apr_engine_params_default(&p);
    p.prefix_cache = 0;
    p.zram_ratio = 2;
    apr_engine *e = NULL;
    CHECK(apr_engine_new(m, &p, &e) == APR_ERR_INVALID && e == NULL);
    apr_model_free(m);
}
