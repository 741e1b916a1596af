/* quant_test.c — the type table, byte counts, argument checks, the
 * activation formats gguf lacks, and the NaN/Inf scan. Bit-exactness against
 * gguf is quant_oracle_test.c's job. */
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "apr.h"
#include "core/quant.h"

TEST(quant_names_and_sizes_follow_ggml)
{
    CHECK_EQ_STR(apr_dtype_name(APR_Q4_K), "Q4_K");
    CHECK_EQ_STR(apr_dtype_name(APR_BF16), "BF16");
    CHECK_EQ_STR(apr_dtype_name(16), "IQ2_XXS");
    CHECK(apr_dtype_name(4) == NULL);          /* Q4_2, removed from ggml */
    CHECK(apr_dtype_name(-1) == NULL);
    CHECK(apr_dtype_name(APR_DTYPE_COUNT) == NULL);
    CHECK_EQ_INT(apr_dtype_block_size(APR_Q6_K), 256);
    CHECK_EQ_INT(apr_dtype_block_bytes(APR_Q6_K), 210);
    CHECK_EQ_INT(apr_dtype_block_bytes(APR_Q8_1), 36);
    CHECK_EQ_INT(apr_dtype_block_size(4), 0);
    CHECK(apr_dtype_can_dequantize(APR_Q3_K));
    CHECK(!apr_dtype_can_dequantize(16));
    CHECK(apr_dtype_can_quantize(APR_Q4_K));
    CHECK(!apr_dtype_can_quantize(APR_Q2_K));
}

TEST(quant_nbytes_checks_blocks_and_overflow)
{
    uint64_t n = 1;
    CHECK_EQ_INT(apr_dtype_nbytes(APR_Q4_K, 512, &n), APR_OK);
    CHECK_EQ_INT(n, 288);
    CHECK_EQ_INT(apr_dtype_nbytes(APR_F32, 0, &n), APR_OK);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(apr_dtype_nbytes(APR_Q4_K, 100, &n), APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "Q4_K") != NULL);
    CHECK_EQ_INT(apr_dtype_nbytes(APR_F64, INT64_MAX, &n), APR_ERR_FORMAT);   /* 8 * 2^63 */
    CHECK_EQ_INT(apr_dtype_nbytes(APR_F32, -4, &n), APR_ERR_FORMAT);
    CHECK_EQ_INT(apr_dtype_nbytes(5, 32, &n), APR_ERR_UNSUPPORTED);
    /* the largest count that fits: 2^63-1 rounded down to whole Q8_0 blocks */
    CHECK_EQ_INT(apr_dtype_nbytes(APR_Q8_0, INT64_MAX / 32 * 32, &n), APR_OK);
    CHECK(n == (uint64_t)(INT64_MAX / 32) * 34);
}

TEST(quant_conversions_reject_bad_arguments)
{
    float f[256] = { 0 };
    uint8_t b[512] = { 0 };
    CHECK_EQ_INT(apr_dequantize(APR_Q4_K, b, f, 255), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_dequantize(16, b, f, 256), APR_ERR_UNSUPPORTED);
    CHECK_EQ_INT(apr_dequantize(77, b, f, 256), APR_ERR_UNSUPPORTED);
    CHECK_EQ_INT(apr_dequantize(APR_Q8_0, NULL, f, 32), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_quantize(APR_Q2_K, f, b, 256), APR_ERR_UNSUPPORTED);
    f[7] = NAN;
    CHECK_EQ_INT(apr_quantize(APR_Q8_0, f, b, 32), APR_ERR_RANGE);
    CHECK(strstr(apr_last_error(), "element 7") != NULL);
    CHECK_EQ_INT(apr_quantize(APR_F16, f, b, 32), APR_OK);   /* halves can hold NaN */
}

TEST(quant_q8_K_and_q8_1_round_as_documented)
{
    float x[256];
    for (int i = 0; i < 256; i++) x[i] = (float)(i - 100) / 7.0f;
    x[3] = -127.0f / 4;   /* the largest magnitude: sets d = 0.25 exactly */
    block_q8_K q;
    apr_quantize_row_q8_K(x, &q, 256);
    CHECK(q.d == 0.25f);
    CHECK_EQ_INT(q.qs[3], -127);
    CHECK_EQ_INT(q.qs[100], 0);
    /* x = 2/7 -> 1.142..., x = 1.5/... : nearest, ties to even */
    CHECK_EQ_INT(q.qs[102], apr_nearest_int(x[102] * 4));
    for (int g = 0; g < 16; g++) {
        int sum = 0;
        for (int j = 0; j < 16; j++) sum += q.qs[16 * g + j];
        CHECK_EQ_INT(q.bsums[g], sum);
    }
    float back[256];
    apr_dequantize_row_q8_K(&q, back, 256);
    for (int i = 0; i < 256; i++) CHECK(fabsf(back[i] - x[i]) <= 0.125f + 1e-6f);

    block_q8_1 q1;
    float v[32];
    for (int i = 0; i < 32; i++) v[i] = i % 2 ? 0.5f * i : -0.25f * i;
    apr_quantize_row_q8_1(v, &q1, 32);
    int sum = 0;
    for (int i = 0; i < 32; i++) sum += q1.qs[i];
    CHECK(apr_f16_to_f32(q1.s) == apr_f16_to_f32(apr_f32_to_f16((float)sum * (15.5f / 127))));
    CHECK_EQ_INT(q1.qs[31], 127);
    CHECK_EQ_INT(apr_nearest_int(2.5f), 2);
    CHECK_EQ_INT(apr_nearest_int(3.5f), 4);
    CHECK_EQ_INT(apr_nearest_int(-2.5f), -2);
    CHECK_EQ_INT(apr_nearest_int(NAN), 0);
    CHECK_EQ_INT(apr_nearest_int(1e30f), 4194303);
}

TEST(quant_check_finite_finds_the_first_bad_scale)
{
    enum { N_BLOCKS = 5000 };
    block_q4_K *b = calloc(N_BLOCKS, sizeof *b);
    REQUIRE(b);
    for (int i = 0; i < N_BLOCKS; i++) b[i].d = b[i].dmin = apr_f32_to_f16(0.5f);
    int64_t first = 0;
    CHECK_EQ_INT(apr_dtype_check_finite(APR_Q4_K, b, N_BLOCKS * 256LL, &first), APR_OK);
    CHECK_EQ_INT(first, -1);
    b[4321].dmin = 0x7c00;   /* +Inf */
    b[2999].d = 0xfe00;      /* NaN */
    CHECK_EQ_INT(apr_dtype_check_finite(APR_Q4_K, b, N_BLOCKS * 256LL, &first), APR_ERR_FORMAT);
    CHECK_EQ_INT(first, 2999 * 256LL);
    CHECK(strstr(apr_last_error(), "block 2999") && strstr(apr_last_error(), "scale d "));
    free(b);

    float f[100] = { 0 };
    f[42] = -INFINITY;
    CHECK_EQ_INT(apr_dtype_check_finite(APR_F32, f, 100, &first), APR_ERR_FORMAT);
    CHECK_EQ_INT(first, 42);
    apr_f16 h[4] = { 0, 0x3c00, 0x7c01, 0 };
    CHECK_EQ_INT(apr_dtype_check_finite(APR_F16, h, 4, &first), APR_ERR_FORMAT);
    CHECK_EQ_INT(first, 2);
    int32_t ints[4] = { -1, 0x7fc00000, 3, 4 };
    CHECK_EQ_INT(apr_dtype_check_finite(APR_I32, ints, 4, &first), APR_OK);
    uint8_t iq[66] = { 0 };
    CHECK_EQ_INT(apr_dtype_check_finite(16, iq, 256, &first), APR_ERR_UNSUPPORTED);
}
