/* sampler_test.c — each sampling step against its definition, with fixed
 * seeds: frequencies within statistical bounds, filters exact. */
#include "test.h"
#include "model/sampler.c"

#include <time.h>

/* Draws `n` tokens and counts each id of a vocab of `v` (v <= 16). */
static void histogram(apr_sampler *s, const float *logits, int v, int n, int *counts)
{
    memset(counts, 0, (size_t)v * sizeof *counts);
    for (int i = 0; i < n; i++) {
        int32_t id = -1;
        if (apr_sampler_sample(s, logits, &id) != APR_OK || id < 0 || id >= v) {
            test_fail(__FILE__, __LINE__, "sample failed: %s", apr_last_error());
            return;
        }
        counts[id]++;
    }
}

static apr_sampler *make(int n_vocab, apr_sampler_params p)
{
    apr_sampler *s = NULL;
    if (apr_sampler_new(n_vocab, &p, &s) != APR_OK) {
        test_fail(__FILE__, __LINE__, "apr_sampler_new: %s", apr_last_error());
        return NULL;
    }
    return s;
}

static apr_sampler_params defaults(uint64_t seed)
{
    apr_sampler_params p;
    apr_sampler_params_default(&p);
    p.seed = seed;
    p.penalty_last_n = 0;
    return p;
}

/* A binomial count of n trials at probability q lies within 5 standard
 * deviations of n*q except with probability ~6e-7. */
static int within_5_sigma(int count, int n, double q)
{
    double mean = n * q, sd = sqrt(n * q * (1 - q));
    return fabs(count - mean) <= 5 * sd + 1;
}

static const float four[4] = { 1.0f, 0.5f, -0.2f, -1.5f };

static void softmax4(const float *l, float t, double *q)
{
    double z = 0;
    for (int i = 0; i < 4; i++) z += exp(l[i] / t);
    for (int i = 0; i < 4; i++) q[i] = exp(l[i] / t) / z;
}

TEST(sampler_temperature_one_follows_softmax)
{
    apr_sampler *s = make(4, defaults(42));
    REQUIRE(s);
    int counts[4], n = 200000;
    double q[4];
    softmax4(four, 1.0f, q);
    histogram(s, four, 4, n, counts);
    for (int i = 0; i < 4; i++) CHECK(within_5_sigma(counts[i], n, q[i]));
    apr_sampler_free(s);
}

TEST(sampler_temperature_scales_the_logits)
{
    apr_sampler_params p = defaults(7);
    p.temperature = 0.5f;
    apr_sampler *s = make(4, p);
    REQUIRE(s);
    int counts[4], n = 200000;
    double q[4];
    softmax4(four, 0.5f, q);
    histogram(s, four, 4, n, counts);
    for (int i = 0; i < 4; i++) CHECK(within_5_sigma(counts[i], n, q[i]));
    apr_sampler_free(s);
}

TEST(sampler_temperature_zero_and_near_zero_are_greedy)
{
    float logits[6] = { 0.1f, 3.0f, 2.999f, -1.0f, 3.0f, 0.0f };  /* tie 1/4: the lower id */
    float temps[3] = { 0.0f, -1.0f, 1e-6f };
    for (int t = 0; t < 3; t++) {
        apr_sampler_params p = defaults(1234);
        p.temperature = temps[t];
        apr_sampler *s = make(6, p);
        REQUIRE(s);
        for (int i = 0; i < 200; i++) {
            int32_t id = -1;
            REQUIRE(apr_sampler_sample(s, logits, &id) == APR_OK);
            if (temps[t] <= 0) CHECK_EQ_INT(id, 1);
            else CHECK(id == 1 || id == 4);  /* an exact tie stays a fair coin */
        }
        apr_sampler_free(s);
    }
}

TEST(sampler_top_k_one_is_greedy)
{
    apr_sampler_params p = defaults(99);
    p.top_k = 1;
    p.temperature = 5.0f;  /* a flat distribution: only the filter keeps it greedy */
    apr_sampler *s = make(4, p);
    REQUIRE(s);
    int counts[4];
    histogram(s, four, 4, 5000, counts);
    CHECK_EQ_INT(counts[0], 5000);
    apr_sampler_free(s);
}

TEST(sampler_top_k_renormalises_the_kept_tokens)
{
    apr_sampler_params p = defaults(5);
    p.top_k = 2;
    apr_sampler *s = make(4, p);
    REQUIRE(s);
    int counts[4], n = 100000;
    histogram(s, four, 4, n, counts);
    CHECK_EQ_INT(counts[2] + counts[3], 0);
    double q0 = exp(1.0) / (exp(1.0) + exp(0.5));
    CHECK(within_5_sigma(counts[0], n, q0));
    apr_sampler_free(s);
}

TEST(sampler_top_p_keeps_the_smallest_set_with_the_mass)
{
    /* probabilities 0.5, 0.3, 0.15, 0.05 */
    float logits[4] = { logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f) };
    struct { float top_p; int kept; } cases[] = { { 0.45f, 1 }, { 0.75f, 2 }, { 0.9f, 3 }, { 1.0f, 4 } };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        apr_sampler_params p = defaults(11);
        p.top_p = cases[c].top_p;
        apr_sampler *s = make(4, p);
        REQUIRE(s);
        int counts[4], n = 50000;
        histogram(s, logits, 4, n, counts);
        for (int i = 0; i < 4; i++) {
            if (i < cases[c].kept) CHECK(counts[i] > 0);
            else CHECK_EQ_INT(counts[i], 0);
        }
        apr_sampler_free(s);
    }
}

TEST(sampler_min_p_excludes_unlikely_tokens)
{
    float logits[4] = { logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f) };
    apr_sampler_params p = defaults(3);
    p.min_p = 0.2f;  /* 0.05 / 0.5 = 0.1 < 0.2: token 3 goes; 0.15 / 0.5 = 0.3 stays */
    apr_sampler *s = make(4, p);
    REQUIRE(s);
    int counts[4], n = 100000;
    histogram(s, logits, 4, n, counts);
    CHECK_EQ_INT(counts[3], 0);
    CHECK(within_5_sigma(counts[2], n, 0.15 / 0.95));
    apr_sampler_free(s);
}

TEST(sampler_repeat_penalty_divides_positive_and_multiplies_negative)
{
    /* Greedy, so the penalised logits decide alone. */
    float logits[3] = { 2.0f, 1.5f, -1.0f };
    apr_sampler_params p = defaults(0);
    p.temperature = 0;
    p.repeat_penalty = 1.5f;   /* 2.0 / 1.5 = 1.33 < 1.5: token 1 wins */
    p.penalty_last_n = 4;
    apr_sampler *s = make(3, p);
    REQUIRE(s);
    int32_t id;
    REQUIRE(apr_sampler_sample(s, logits, &id) == APR_OK);
    CHECK_EQ_INT(id, 0);                  /* window empty */
    REQUIRE(apr_sampler_sample(s, logits, &id) == APR_OK);
    CHECK_EQ_INT(id, 1);                  /* 0 is in the window now */
    apr_sampler_free(s);

    /* Negative logits get more negative: -1 * 1.5 < -1.2. */
    float neg[2] = { -1.0f, -1.2f };
    s = make(2, p);
    REQUIRE(s);
    REQUIRE(apr_sampler_accept(s, 0) == APR_OK);
    REQUIRE(apr_sampler_sample(s, neg, &id) == APR_OK);
    CHECK_EQ_INT(id, 1);
    apr_sampler_free(s);
}

TEST(sampler_frequency_and_presence_follow_openai)
{
    float logits[2] = { 1.0f, 0.0f };
    apr_sampler_params p = defaults(0);
    p.temperature = 0;
    p.penalty_last_n = 16;
    /* frequency 0.3: after k occurrences token 0 has 1 - 0.3k; it loses at k = 4. */
    p.frequency_penalty = 0.3f;
    apr_sampler *s = make(2, p);
    REQUIRE(s);
    int32_t id;
    for (int k = 0; k < 4; k++) {
        REQUIRE(apr_sampler_sample(s, logits, &id) == APR_OK);
        CHECK_EQ_INT(id, 0);
    }
    REQUIRE(apr_sampler_sample(s, logits, &id) == APR_OK);
    CHECK_EQ_INT(id, 1);
    apr_sampler_free(s);

    /* presence 0.9 applies once, however often: 1 - 0.9 = 0.1 > 0 still. */
    p.frequency_penalty = 0;
    p.presence_penalty = 0.9f;
    s = make(2, p);
    REQUIRE(s);
    for (int k = 0; k < 6; k++) REQUIRE(apr_sampler_accept(s, 0) == APR_OK);
    REQUIRE(apr_sampler_sample(s, logits, &id) == APR_OK);
    CHECK_EQ_INT(id, 0);
    apr_sampler_free(s);
    p.presence_penalty = 1.1f;   /* 1 - 1.1 < 0: token 1 wins */
    s = make(2, p);
    REQUIRE(s);
    REQUIRE(apr_sampler_accept(s, 0) == APR_OK);
    REQUIRE(apr_sampler_sample(s, logits, &id) == APR_OK);
    CHECK_EQ_INT(id, 1);
    apr_sampler_free(s);
}

TEST(sampler_penalty_window_forgets_old_tokens)
{
    float logits[2] = { 1.0f, 0.0f };
    apr_sampler_params p = defaults(0);
    p.temperature = 0;
    p.presence_penalty = 2.0f;
    p.penalty_last_n = 3;
    apr_sampler *s = make(2, p);
    REQUIRE(s);
    int32_t id;
    REQUIRE(apr_sampler_accept(s, 0) == APR_OK);
    REQUIRE(apr_sampler_sample(s, logits, &id) == APR_OK);
    CHECK_EQ_INT(id, 1);                      /* window {0} */
    REQUIRE(apr_sampler_accept(s, 1) == APR_OK);
    REQUIRE(apr_sampler_accept(s, 1) == APR_OK);
    REQUIRE(apr_sampler_sample(s, logits, &id) == APR_OK);
    CHECK_EQ_INT(id, 0);                      /* window {1, 1, 1}: 0 fell out */
    CHECK_EQ_INT(s->counts[0], 1);
    CHECK_EQ_INT(s->counts[1], 2);
    apr_sampler_reset(s);
    CHECK_EQ_INT(s->counts[0] + s->counts[1], 0);
    apr_sampler_free(s);
}

TEST(sampler_logit_bias_bans_and_favours)
{
    apr_sampler_params p = defaults(0);
    p.temperature = 0;
    apr_sampler *s = make(4, p);
    REQUIRE(s);
    int32_t ids[2] = { 0, 3 };
    float bias[2] = { -INFINITY, 10.0f };
    REQUIRE(apr_sampler_set_logit_bias(s, 2, ids, bias) == APR_OK);
    int32_t id;
    REQUIRE(apr_sampler_sample(s, four, &id) == APR_OK);
    CHECK_EQ_INT(id, 3);
    int32_t bad = 4;
    CHECK_EQ_INT(apr_sampler_set_logit_bias(s, 1, &bad, bias), APR_ERR_RANGE);
    CHECK(strstr(apr_last_error(), "token id 4") != NULL);
    float inf = INFINITY;
    CHECK_EQ_INT(apr_sampler_set_logit_bias(s, 1, ids, &inf), APR_ERR_RANGE);
    REQUIRE(apr_sampler_sample(s, four, &id) == APR_OK);   /* old bias kept */
    CHECK_EQ_INT(id, 3);

    int32_t all[4] = { 0, 1, 2, 3 };
    float ban[4] = { -INFINITY, -INFINITY, -INFINITY, -INFINITY };
    REQUIRE(apr_sampler_set_logit_bias(s, 4, all, ban) == APR_OK);
    CHECK_EQ_INT(apr_sampler_sample(s, four, &id), APR_ERR_RANGE);
    REQUIRE(apr_sampler_set_logit_bias(s, 0, NULL, NULL) == APR_OK);
    REQUIRE(apr_sampler_sample(s, four, &id) == APR_OK);
    CHECK_EQ_INT(id, 0);
    apr_sampler_free(s);
}

/* Random logits of a Qwen2-sized vocabulary, from a seeded generator. */
static float *random_logits(int n, uint64_t seed)
{
    float *l = malloc((size_t)n * sizeof *l);
    apr_rng st;
    apr_rng_seed(&st, seed);
    for (int i = 0; i < n; i++) l[i] = (float)(apr_rng_uniform(&st) * 20.0 - 10.0);
    return l;
}

TEST(sampler_same_seed_same_sequence_different_seed_differs)
{
    int v = 151936;
    float *logits = random_logits(v, 77);
    REQUIRE(logits);
    int32_t a[64], b[64], c[64];
    apr_sampler_params p = defaults(2024);
    p.top_k = 200;
    p.top_p = 0.95f;
    p.repeat_penalty = 1.1f;
    p.penalty_last_n = 64;
    apr_sampler *s = make(v, p);
    REQUIRE(s);
    for (int i = 0; i < 64; i++) REQUIRE(apr_sampler_sample(s, logits, &a[i]) == APR_OK);
    apr_sampler_reset(s);
    for (int i = 0; i < 64; i++) REQUIRE(apr_sampler_sample(s, logits, &b[i]) == APR_OK);
    apr_sampler_free(s);
    p.seed = 2025;
    s = make(v, p);
    REQUIRE(s);
    for (int i = 0; i < 64; i++) REQUIRE(apr_sampler_sample(s, logits, &c[i]) == APR_OK);
    apr_sampler_free(s);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
    free(logits);
}

TEST(sampler_select_best_matches_a_full_sort)
{
    int v = 5000;
    float *l = random_logits(v, 5);
    REQUIRE(l);
    for (int i = 0; i < v; i += 7) l[i] = 1.0f;   /* many ties */
    candidate *all = malloc((size_t)v * sizeof *all), *sel = malloc((size_t)v * sizeof *sel);
    REQUIRE(all && sel);
    for (int i = 0; i < v; i++) all[i] = (candidate){ l[i], i };
    qsort(all, (size_t)v, sizeof *all, compare_best_first);
    int ks[] = { 1, 2, 40, 713, 4999, 5000 };
    for (size_t t = 0; t < sizeof ks / sizeof *ks; t++) {
        for (int i = 0; i < v; i++) sel[i] = (candidate){ l[i], i };
        select_best(sel, v, ks[t]);
        qsort(sel, (size_t)ks[t], sizeof *sel, compare_best_first);
        for (int i = 0; i < ks[t]; i++) CHECK(sel[i].id == all[i].id);
    }
    free(all);
    free(sel);
    free(l);
}

TEST(sampler_top_p_on_a_large_vocabulary_matches_the_definition)
{
    /* A flat-ish distribution makes top_p need thousands of tokens, so the
     * growing prefix must grow several times. */
    int v = 151936;
    float *l = random_logits(v, 9);
    REQUIRE(l);
    float top_p = 0.5f;
    candidate *all = malloc((size_t)v * sizeof *all);
    REQUIRE(all);
    double z = 0;
    for (int i = 0; i < v; i++) { all[i] = (candidate){ l[i], i }; z += exp(l[i]); }
    qsort(all, (size_t)v, sizeof *all, compare_best_first);
    int expect = 0;
    for (double mass = 0; mass < top_p * z; expect++) mass += exp(all[expect].v);

    apr_sampler_params p = defaults(1);
    p.top_p = top_p;
    apr_sampler *s = make(v, p);
    REQUIRE(s);
    float max = all[0].v;
    for (int i = 0; i < v; i++) s->cand[i] = (candidate){ l[i] - max, i };
    int kept = keep_top_p(s->cand, v, top_p);
    CHECK(abs(kept - expect) <= 1);   /* float sums in a different order */
    CHECK(kept > 512);
    apr_sampler_free(s);
    free(all);
    free(l);
}

TEST(sampler_rejects_nan_and_inf_logits_naming_the_token)
{
    apr_sampler *s = make(4, defaults(0));
    REQUIRE(s);
    float l[4] = { 0, 1, NAN, 2 };
    int32_t id = -7;
    CHECK_EQ_INT(apr_sampler_sample(s, l, &id), APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "token 2 is NaN") != NULL);
    CHECK_EQ_INT(id, -7);
    l[2] = INFINITY;
    CHECK_EQ_INT(apr_sampler_sample(s, l, &id), APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "+inf") != NULL);
    CHECK_EQ_INT(s->window_len, 0);
    apr_sampler_free(s);
}

TEST(sampler_rejects_bad_parameters_and_ids)
{
    apr_sampler_params p = defaults(0);
    apr_sampler *s = (apr_sampler *)1;
    p.top_p = 0;
    CHECK_EQ_INT(apr_sampler_new(10, &p, &s), APR_ERR_INVALID);
    CHECK(s == NULL);
    CHECK(strstr(apr_last_error(), "top_p") != NULL);
    p = defaults(0);
    p.min_p = 1.5f;
    CHECK_EQ_INT(apr_sampler_new(10, &p, &s), APR_ERR_INVALID);
    p = defaults(0);
    p.repeat_penalty = 0;
    CHECK_EQ_INT(apr_sampler_new(10, &p, &s), APR_ERR_INVALID);
    p = defaults(0);
    p.top_k = -1;
    CHECK_EQ_INT(apr_sampler_new(10, &p, &s), APR_ERR_INVALID);
    p = defaults(0);
    CHECK_EQ_INT(apr_sampler_new(0, &p, &s), APR_ERR_INVALID);
    s = make(10, p);
    REQUIRE(s);
    CHECK_EQ_INT(apr_sampler_accept(s, 10), APR_ERR_RANGE);
    CHECK(strstr(apr_last_error(), "token id 10") != NULL);
    CHECK_EQ_INT(apr_sampler_accept(s, -1), APR_ERR_RANGE);
    apr_sampler_free(s);
    apr_sampler_free(NULL);
}

TEST(sampler_logprobs_are_the_raw_log_softmax)
{
    float l[5] = { 1.0f, 3.0f, -2.0f, 3.0f, 0.5f };
    double z = 0;
    for (int i = 0; i < 5; i++) z += exp(l[i]);
    float chosen;
    apr_token_logprob top[3];
    REQUIRE(apr_sampler_logprobs(l, 5, 4, 3, &chosen, top) == APR_OK);
    CHECK_NEAR(chosen, 0.5 - log(z), 1e-5);
    CHECK_EQ_INT(top[0].id, 1);   /* tie with 3: the lower id first */
    CHECK_EQ_INT(top[1].id, 3);
    CHECK_EQ_INT(top[2].id, 0);
    CHECK_NEAR(top[0].logprob, 3.0 - log(z), 1e-5);
    CHECK_NEAR(top[2].logprob, 1.0 - log(z), 1e-5);

    apr_token_logprob every[5];
    REQUIRE(apr_sampler_logprobs(l, 5, 0, 5, NULL, every) == APR_OK);
    double sum = 0;
    for (int i = 0; i < 5; i++) sum += exp(every[i].logprob);
    CHECK_NEAR(sum, 1.0, 1e-5);
    CHECK_EQ_INT(every[4].id, 2);

    CHECK_EQ_INT(apr_sampler_logprobs(l, 5, 5, 1, &chosen, top), APR_ERR_RANGE);
    CHECK_EQ_INT(apr_sampler_logprobs(l, 5, 0, 6, &chosen, every), APR_ERR_RANGE);
    l[1] = NAN;
    CHECK_EQ_INT(apr_sampler_logprobs(l, 5, 0, 1, &chosen, top), APR_ERR_FORMAT);
}

TEST(sampler_logprobs_of_a_large_vocabulary_pick_the_best)
{
    int v = 151936;
    float *l = random_logits(v, 21);
    REQUIRE(l);
    l[123456] = 50.0f;
    l[17] = 40.0f;
    apr_token_logprob top[20];
    float chosen;
    REQUIRE(apr_sampler_logprobs(l, v, 17, 20, &chosen, top) == APR_OK);
    CHECK_EQ_INT(top[0].id, 123456);
    CHECK_EQ_INT(top[1].id, 17);
    CHECK_NEAR(chosen, top[1].logprob, 1e-6);
    for (int i = 1; i < 20; i++) CHECK(top[i].logprob <= top[i - 1].logprob);
    free(l);
}
