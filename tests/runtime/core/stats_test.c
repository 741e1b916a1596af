/* stats_test.c — apr_tensor_stats against a plain double-precision pass. */
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "apr.h"
#include "core/parallel.h"
#include "core/quant.h"

TEST(stats_match_a_direct_computation)
{
    enum { N = 1000003 };
    float *x = malloc(N * sizeof *x);
    REQUIRE(x);
    uint64_t s = 0x5eed0004;
    double sum = 0, lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        /* a large offset: a naive sum of squares would lose the variance */
        x[i] = 1000.0f + (float)((double)(s >> 11) * 0x1.0p-53 - 0.5);
    }
    x[10] = NAN;
    x[20] = INFINITY;
    x[30] = -INFINITY;
    int64_t finite = 0;
    for (int i = 0; i < N; i++) {
        if (!isfinite(x[i])) continue;
        sum += x[i];
        finite++;
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    double mean = sum / finite, m2 = 0;
    for (int i = 0; i < N; i++)
        if (isfinite(x[i])) m2 += (x[i] - mean) * (x[i] - mean);
    apr_stats st;
    int saved = apr_parallel_threads();
    apr_parallel_set_threads(3);
    CHECK_EQ_INT(apr_tensor_stats(APR_F32, x, N, &st), APR_OK);
    CHECK_EQ_INT(st.n, N);
    CHECK_EQ_INT(st.n_nan, 1);
    CHECK_EQ_INT(st.n_inf, 2);
    CHECK(st.min == lo && st.max == hi);
    CHECK_NEAR(st.mean, mean, 1e-9);
    CHECK_NEAR(st.std, sqrt(m2 / finite), 1e-9);
    apr_stats one;
    apr_parallel_set_threads(1);
    CHECK_EQ_INT(apr_tensor_stats(APR_F32, x, N, &one), APR_OK);
    apr_parallel_set_threads(saved);
    CHECK(memcmp(&one, &st, sizeof st) == 0);   /* same bits at any thread count */
    free(x);
}

TEST(stats_of_a_quantized_tensor_use_its_dequantized_values)
{
    enum { N = 256 * 40 };
    static float x[N], y[N];
    static block_q6_K q[N / 256];
    for (int i = 0; i < N; i++) x[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    apr_quantize_row_q6_K(x, q, N);
    apr_dequantize_row_q6_K(q, y, N);
    double sum = 0;
    for (int i = 0; i < N; i++) sum += y[i];
    apr_stats st;
    CHECK_EQ_INT(apr_tensor_stats(APR_Q6_K, q, N, &st), APR_OK);
    CHECK_NEAR(st.mean, sum / N, 1e-12);
    CHECK(st.std > 0.5 && st.std < 0.65);   /* uniform on [-1, 1]: 0.577 */
    CHECK_EQ_INT(st.n_nan, 0);
}

TEST(stats_edge_cases)
{
    apr_stats st;
    CHECK_EQ_INT(apr_tensor_stats(APR_F32, NULL, 0, &st), APR_OK);
    CHECK_EQ_INT(st.n, 0);
    CHECK(isnan(st.mean));
    float nan2[2] = { NAN, NAN };
    CHECK_EQ_INT(apr_tensor_stats(APR_F32, nan2, 2, &st), APR_OK);
    CHECK_EQ_INT(st.n_nan, 2);
    CHECK(isnan(st.std));
    uint8_t b[36] = { 0 };
    CHECK_EQ_INT(apr_tensor_stats(APR_Q8_0, b, 31, &st), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_tensor_stats(20, b, 32, &st), APR_ERR_UNSUPPORTED);
}
