/* matmul_test.c — the CPU products of every weight type, on both
 * instruction sets, against a float64 product of the dequantized weights.
 *
 * Quantized types meet 8-bit input quants (as llama.cpp's do), so they are
 * held to the error that quantization allows (1% of the output's norm; the
 * measured error is near 0.5%); float types to 1e-5. The scalar and AVX2
 * kernels compute the same integer sums, so they must agree to float
 * rounding (1e-5 of the sum of |w x|). */
#include "test.h"

#include <math.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "core/quant.h"

static uint64_t rng_state;
static float rnd(void)  /* uniform in [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) / (double)(1 << 24)) * 2 - 1;
}

typedef struct {
    apr_weight w;
    void *data;
    float *exact;   /* dequantized [rows][cols] */
} test_weight;

static void make_weight(test_weight *t, int type, int64_t rows, int64_t cols)
{
    const int64_t n = rows * cols;
    float *src = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) src[i] = rnd() * (1 + (i % 7 == 0));  /* a few larger values */
    uint64_t bytes = 0;
    apr_dtype_nbytes(type, n, &bytes);
    t->data = malloc(bytes);
    t->exact = malloc(sizeof(float) * (size_t)n);
    CHECK(apr_quantize(type, src, t->data, n) == APR_OK);
    CHECK(apr_dequantize(type, t->data, t->exact, n) == APR_OK);
    t->w = (apr_weight){ .name = "w", .type = type, .rows = rows, .cols = cols,
                         .row_bytes = (size_t)(bytes / (uint64_t)rows), .data = t->data };
    free(src);
}

static void free_weight(test_weight *t)
{
    free(t->data);
    free(t->exact);
}

typedef struct {
    double norm_err, norm_ref, max_err, max_ref;
} error_stats;

static void compare(error_stats *e, double got, double want)
{
    e->norm_err += (got - want) * (got - want);
    e->norm_ref += want * want;
    if (fabs(got - want) > e->max_err || isnan(got)) e->max_err = isnan(got) ? INFINITY : fabs(got - want);
    if (fabs(want) > e->max_ref) e->max_ref = fabs(want);
}

static const int types[] = { APR_F32, APR_F16, APR_BF16, APR_Q4_0, APR_Q4_1, APR_Q5_0, APR_Q5_1,
                             APR_Q8_0, APR_Q4_K, APR_Q5_K, APR_Q6_K };

static int is_float(int type) { return type == APR_F32 || type == APR_F16 || type == APR_BF16; }

/* Runs W (one part) over n tokens on the given ISA into out. */
static void run(apr_backend *b, apr_stream *s, int isa, const apr_linear *L, const float *x, int n, float *out,
                int accumulate)
{
    int old = apr_cpu_set_isa(isa);
    b->matmul(s, out, x, L, n, accumulate);
    apr_cpu_set_isa(old);
}

TEST(cpu_matmul_every_type_matches_float64_on_both_isas)
{
    rng_state = 42;
    const int64_t rows = 37, cols = 512;
    const int ns[] = { 1, 3, 6, 67 };
    apr_backend *b = apr_backend_cpu_new(3);
    REQUIRE(b);
    apr_stream_sizes z = { .n_batch = 67, .max_cols = cols, .n_ctx = 16, .n_head = 1, .n_head_kv = 1, .head_dim = 8 };
    apr_stream *s = b->stream_new(b, &z);
    REQUIRE(s);
    float *x = malloc(sizeof(float) * 67 * cols), *bias = malloc(sizeof(float) * rows);
    float *y_scalar = malloc(sizeof(float) * 67 * rows), *y_avx2 = malloc(sizeof(float) * 67 * rows);
    /* odd tokens all positive: real activations often share a sign, which
     * makes offset terms (Q4_0's -8, ...) large beside the result */
    for (int i = 0; i < 67 * cols; i++) x[i] = rnd() * 3 + ((i / cols) % 2 ? 3.5f : 0);
    for (int i = 0; i < rows; i++) bias[i] = rnd();
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        test_weight t;
        make_weight(&t, types[ti], rows, cols);
        apr_linear L = { .n_parts = 1, .part = { t.w }, .rows = rows, .cols = cols };
        L.bias[0] = (apr_weight){ .type = APR_F32, .rows = 1, .cols = rows, .data = bias };
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
            const int n = ns[ni];
            /* accumulate onto a known value: out = 1 + x·Wᵀ + b */
            for (int i = 0; i < n * rows; i++) y_scalar[i] = 1;
            run(b, s, CPU_SCALAR, &L, x, n, y_scalar, 1);
            error_stats e = { 0 };
            for (int tok = 0; tok < n; tok++) {
                for (int64_t r = 0; r < rows; r++) {
                    double ref = 1 + bias[r];
                    for (int64_t k = 0; k < cols; k++) ref += (double)t.exact[r * cols + k] * x[tok * cols + k];
                    compare(&e, y_scalar[tok * rows + r], ref);
                }
            }
            const double rel = sqrt(e.norm_err / e.norm_ref);
            const double tol = is_float(types[ti]) ? 1e-5 : 1e-2;
            if (!(rel <= tol))
                test_fail(__FILE__, __LINE__, "%s n=%d: scalar's relative error %.3g (tol %g)",
                          apr_dtype_name(types[ti]), n, rel, tol);
            /* each SIMD level against the scalar kernels */
            for (int isa = CPU_AVX2; isa <= apr_cpu_best_isa(); isa++) {
                for (int i = 0; i < n * rows; i++) y_avx2[i] = 1;
                run(b, s, isa, &L, x, n, y_avx2, 1);
                double worst = 0;
                for (int tok = 0; tok < n; tok++) {
                    for (int64_t r = 0; r < rows; r++) {
                        double mag = 0;
                        for (int64_t k = 0; k < cols; k++) mag += fabs((double)t.exact[r * cols + k] * x[tok * cols + k]);
                        double d = fabs(y_scalar[tok * rows + r] - y_avx2[tok * rows + r]) / (mag + 1);
                        if (d > worst || isnan(d)) worst = isnan(d) ? INFINITY : d;
                    }
                }
                if (!(worst <= 1e-5))
                    test_fail(__FILE__, __LINE__, "%s n=%d: isa %d vs scalar differ by %.3g of sum |w x|",
                              apr_dtype_name(types[ti]), n, isa, worst);
            }
        }
        free_weight(&t);
    }
    if (apr_cpu_best_isa() < CPU_VNNI) printf("    (this CPU lacks AVX-512 VNNI: those kernels were not run)\n");
    free(x); free(bias); free(y_scalar); free(y_avx2);
    b->stream_free(s);
    b->destroy(b);
}

/* A token's result is the same bits whatever batch it is in and wherever
 * it is in the batch (the tile and single-token paths do the same float
 * operations): sequences batched together get what they would get alone. */
TEST(cpu_matmul_result_of_a_token_does_not_depend_on_its_batch)
{
    rng_state = 11;
    const int64_t rows = 19, cols = 768;
    apr_backend *b = apr_backend_cpu_new(2);
    REQUIRE(b);
    apr_stream_sizes z = { .n_batch = 70, .max_cols = cols, .n_ctx = 16, .n_head = 1, .n_head_kv = 1, .head_dim = 8 };
    apr_stream *s = b->stream_new(b, &z);
    REQUIRE(s);
    float *x = malloc(sizeof(float) * 70 * cols), *y = malloc(sizeof(float) * 70 * rows), one[19];
    for (int i = 0; i < 70 * cols; i++) x[i] = rnd() * 2;
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        test_weight t;
        make_weight(&t, types[ti], rows, cols);
        apr_linear L = { .n_parts = 1, .part = { t.w }, .rows = rows, .cols = cols };
        for (int isa = CPU_SCALAR; isa <= apr_cpu_best_isa(); isa++) {
            int old = apr_cpu_set_isa(isa);
            b->matmul(s, y, x, &L, 70, 0);
            int differ = 0;
            for (int tok = 0; tok < 70; tok++) {
                b->matmul(s, one, x + tok * cols, &L, 1, 0);
                differ += memcmp(one, y + tok * rows, sizeof one) != 0;
            }
            apr_cpu_set_isa(old);
            if (differ)
                test_fail(__FILE__, __LINE__, "%s isa %d: %d of 70 tokens differ alone", apr_dtype_name(types[ti]), isa, differ);
        }
        free_weight(&t);
    }
    free(x); free(y);
    b->stream_free(s);
    b->destroy(b);
}

TEST(cpu_matmul_parts_concatenate_and_glu_joins_gate_and_up)
{
    rng_state = 7;
    const int64_t cols = 768;  /* three K blocks */
    const int n = 5;
    apr_backend *b = apr_backend_cpu_new(2);
    REQUIRE(b);
    apr_stream_sizes z = { .n_batch = n, .max_cols = cols, .n_ctx = 16, .n_head = 1, .n_head_kv = 1, .head_dim = 8 };
    apr_stream *s = b->stream_new(b, &z);
    REQUIRE(s);
    test_weight q, k, v;
    make_weight(&q, APR_Q4_K, 40, cols);
    make_weight(&k, APR_Q5_0, 17, cols);
    make_weight(&v, APR_Q6_K, 17, cols);
    float x[5 * 768], out[5 * 74], single[5 * 40];
    for (int i = 0; i < n * cols; i++) x[i] = rnd();
    for (int isa = CPU_SCALAR; isa <= apr_cpu_best_isa(); isa++) {
        int old = apr_cpu_set_isa(isa);
        apr_linear qkv = { .n_parts = 3, .part = { q.w, k.w, v.w }, .rows = 74, .cols = cols };
        b->matmul(s, out, x, &qkv, n, 0);
        /* each part alone lands in its columns of the concatenation */
        const test_weight *parts[3] = { &q, &k, &v };
        int col = 0;
        for (int p = 0; p < 3; p++) {
            apr_linear one = { .n_parts = 1, .part = { parts[p]->w }, .rows = parts[p]->w.rows, .cols = cols };
            b->matmul(s, single, x, &one, n, 0);
            int diff = 0;
            for (int t = 0; t < n; t++)
                for (int r = 0; r < parts[p]->w.rows; r++)
                    diff += single[t * parts[p]->w.rows + r] != out[t * 74 + col + r];
            CHECK_EQ_INT(diff, 0);
            col += (int)parts[p]->w.rows;
        }
        /* glu: silu(x·Gᵀ) * (x·Uᵀ) with G = k, U = v */
        apr_linear gu = { .n_parts = 2, .part = { k.w, v.w }, .rows = 34, .cols = cols };
        float glu[5 * 17], gate[5 * 17], up[5 * 17];
        b->matmul_glu(s, glu, x, &gu, n);
        apr_linear G = { .n_parts = 1, .part = { k.w }, .rows = 17, .cols = cols };
        apr_linear U = { .n_parts = 1, .part = { v.w }, .rows = 17, .cols = cols };
        b->matmul(s, gate, x, &G, n, 0);
        b->matmul(s, up, x, &U, n, 0);
        for (int i = 0; i < n * 17; i++) {
            const double want = gate[i] / (1 + exp(-(double)gate[i])) * up[i];
            CHECK_NEAR(glu[i], want, 1e-5 * (1 + fabs(want)));
        }
        apr_cpu_set_isa(old);
    }
    free_weight(&q); free_weight(&k); free_weight(&v);
    b->stream_free(s);
    b->destroy(b);
}

TEST(cpu_matmul_nan_in_input_reaches_the_output)
{
    const int64_t cols = 256;
    apr_backend *b = apr_backend_cpu_new(1);
    REQUIRE(b);
    apr_stream_sizes z = { .n_batch = 1, .max_cols = cols, .n_ctx = 16, .n_head = 1, .n_head_kv = 1, .head_dim = 8 };
    apr_stream *s = b->stream_new(b, &z);
    REQUIRE(s);
    rng_state = 3;
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        test_weight t;
        make_weight(&t, types[ti], 4, cols);
        apr_linear L = { .n_parts = 1, .part = { t.w }, .rows = 4, .cols = cols };
        float x[256], y[4];
        for (int i = 0; i < cols; i++) x[i] = rnd();
        x[77] = NAN;
        for (int isa = CPU_SCALAR; isa <= apr_cpu_best_isa(); isa++) {
            int old = apr_cpu_set_isa(isa);
            b->matmul(s, y, x, &L, 1, 0);
            apr_cpu_set_isa(old);
            if (!isnan(y[0])) test_fail(__FILE__, __LINE__, "%s isa %d: NaN input gave %g", apr_dtype_name(types[ti]), isa, y[0]);
        }
        free_weight(&t);
    }
    b->stream_free(s);
    b->destroy(b);
}
