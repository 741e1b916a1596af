/* ops_test.c — every op of the CUDA backend against the CPU backend (the
 * reference) or a float64 product, on random data; skipped without a GPU.
 *
 * Tolerances follow the arithmetic: products of quantized weights meet int8
 * activations (decode) or f16 ones rounded to the same int8 values
 * (prefill): 2% of the output's norm (measured near 0.6%); float weights
 * meet f32 (decode, 1e-5) or f16 activations (prefill, 0.2%); embedding rows are
 * exact to float rounding; attention reads the same f16 cache as the CPU
 * and differs by f32 (decode) or f16 (prefill) rounding of q, P and V.
 * Quantized caches (Q8_0, Q4_0): the GPU's stored blocks equal the CPU's
 * (values bit for bit; keys, rotated with other roundings, but for rare
 * codes one step apart), and attention over the same blocks (the CPU's,
 * copied over) agrees as the f16 cache's does. Each
 * check uses fresh random inputs, and outputs are poisoned with NaN first
 * so an unwritten element fails. */
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/cuda.h"

#ifdef APR_CUDA
#include <cuda_runtime_api.h>

static uint64_t rng_state;
static float rnd(void) /* uniform in [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) / (double)(1 << 24)) * 2 - 1;
}

static float *rnd_floats(size_t n, float scale)
{
    float *x = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = rnd() * scale;
    return x;
}

/* The pair of backends; NULL gpu: no device. */
typedef struct {
    apr_backend *cpu, *gpu;
    apr_stream *cs, *gs;
} pair;

static int open_pair(pair *p, const apr_stream_sizes *z)
{
    memset(p, 0, sizeof *p);
    p->gpu = apr_backend_cuda_new(0, 0);
    if (!p->gpu) return 0;
    p->cpu = apr_backend_cpu_new(2);
    p->cs = p->cpu->stream_new(p->cpu, z);
    p->gs = p->gpu->stream_new(p->gpu, z);
    CHECK(p->cs && p->gs);
    return p->cs && p->gs;
}

static void close_pair(pair *p)
{
    if (p->gs) p->gpu->stream_free(p->gs);
    if (p->cs) p->cpu->stream_free(p->cs);
    if (p->gpu) p->gpu->destroy(p->gpu);
    if (p->cpu) p->cpu->destroy(p->cpu);
}

/* Device copies of host data through the backend's own alloc. */
static void *dev_copy(pair *p, const void *host, size_t bytes)
{
    void *d = p->gpu->alloc(p->gpu, bytes);
    if (d) cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice);
    else test_fail(__FILE__, __LINE__, "alloc: %s", apr_last_error());
    return d;
}

static float *dev_floats(pair *p, size_t n)
{
    float *d = p->gpu->alloc(p->gpu, n * sizeof(float));
    if (d) cudaMemset(d, 0xff, n * sizeof(float)); /* NaN: unwritten elements show */
    return d;
}

static void to_host(float *dst, const float *dev, size_t n) { cudaMemcpy(dst, dev, n * sizeof(float), cudaMemcpyDeviceToHost); }

/* ||a - b|| / ||b||, NaN anywhere making it infinite. */
static double rel_err(const float *a, const float *b, size_t n)
{
    double e = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return r > 0 ? sqrt(e / r) : sqrt(e);
}

typedef struct {
    apr_weight cw, gw;  /* the CPU's view (host bytes) and the GPU's (uploaded) */
    void *bytes;
    float *exact;       /* [rows][cols] dequantized */
} tw;

static int make_weight(pair *p, tw *t, int type, int64_t rows, int64_t cols, int gather_only)
{
    const int64_t n = rows * cols;
    float *src = rnd_floats((size_t)n, 1.0f / sqrtf((float)cols));
    uint64_t bytes = 0;
    apr_dtype_nbytes(type, n, &bytes);
    t->bytes = malloc(bytes);
    t->exact = malloc(sizeof(float) * (size_t)n);
    int ok = apr_quantize(type, src, t->bytes, n) == APR_OK && apr_dequantize(type, t->bytes, t->exact, n) == APR_OK;
    free(src);
    t->cw = (apr_weight){ .name = "w", .type = type, .rows = rows, .cols = cols,
                          .row_bytes = (size_t)(bytes / (uint64_t)rows), .gather_only = gather_only };
    t->gw = t->cw;
    ok = ok && p->cpu->weight_upload(p->cpu, &t->cw, t->bytes) == APR_OK;
    ok = ok && p->gpu->weight_upload(p->gpu, &t->gw, t->bytes) == APR_OK;
    if (!ok) test_fail(__FILE__, __LINE__, "weight %s %lldx%lld: %s", apr_dtype_name(type), (long long)rows,
                       (long long)cols, apr_last_error());
    return ok;
}

static void free_weight(pair *p, tw *t)
{
    p->gpu->weight_release(p->gpu, &t->gw);
    free(t->bytes);
    free(t->exact);
}

static const int qtypes[] = { APR_Q4_K, APR_Q5_K, APR_Q6_K, APR_Q8_0, APR_Q4_0, APR_Q4_1, APR_Q5_0, APR_Q5_1,
                              APR_F16, APR_BF16, APR_F32 };
#define N_QTYPES (int)(sizeof qtypes / sizeof qtypes[0])

static int is_float(int type) { return type == APR_F32 || type == APR_F16 || type == APR_BF16; }

/* ===================================================================== */
/* Embedding rows                                                        */
/* ===================================================================== */

TEST(cuda_get_rows_every_type_is_exact)
{
    apr_stream_sizes z = { .n_batch = 16, .max_cols = 512, .n_ctx = 64, .n_head = 4, .n_head_kv = 2, .head_dim = 64 };
    pair p;
    if (!open_pair(&p, &z)) { close_pair(&p); SKIP("no CUDA device"); }
    rng_state = 11;
    for (int ti = 0; ti < N_QTYPES; ti++) {
        for (int host = 0; host < 2; host++) {
            tw t;
            const int rows = 300, cols = 512, n = 7;
            if (!make_weight(&p, &t, qtypes[ti], rows, cols, host)) break;
            int32_t ids[7] = { 0, 299, 17, 17, 150, 1, 298 };
            int32_t *dids = dev_copy(&p, ids, sizeof ids);
            float *dout = dev_floats(&p, (size_t)n * cols), *out = malloc(sizeof(float) * n * cols);
            p.gpu->get_rows(p.gs, dout, &t.gw, dids, n);
            CHECK(p.gpu->sync(p.gs) == APR_OK);
            to_host(out, dout, (size_t)n * cols);
            double worst = 0;
            for (int i = 0; i < n; i++) {
                double e = rel_err(out + (size_t)i * cols, t.exact + (size_t)ids[i] * cols, cols);
                if (e > worst) worst = e;
            }
            if (!(worst <= 1e-6))
                test_fail(__FILE__, __LINE__, "get_rows %s (host %d): error %.3g", apr_dtype_name(qtypes[ti]), host, worst);
            p.gpu->release(p.gpu, dids);
            p.gpu->release(p.gpu, dout);
            free(out);
            free_weight(&p, &t);
        }
    }
    close_pair(&p);
}

/* ===================================================================== */
/* Products                                                              */
/* ===================================================================== */

/* out = x W^T (+ b) in float64 from the dequantized weights. */
static void reference(float *out, const float *x, const tw *parts, const float *const *bias, int n_parts, int n,
                      int64_t cols, int64_t total_rows, const float *acc)
{
    for (int t = 0; t < n; t++) {
        int64_t row0 = 0;
        for (int k = 0; k < n_parts; k++) {
            for (int64_t r = 0; r < parts[k].cw.rows; r++) {
                double s = 0;
                for (int64_t c = 0; c < cols; c++) s += (double)x[t * cols + c] * parts[k].exact[r * cols + c];
                if (bias && bias[k]) s += bias[k][r];
                if (acc) s += acc[t * total_rows + row0 + r];
                out[t * total_rows + row0 + r] = (float)s;
            }
            row0 += parts[k].cw.rows;
        }
    }
}

/* SwiGLU of gate and up in float64 from the dequantized weights:
 * out[t][f] = silu(x_t . g_f) * (x_t . u_f). uw: scratch of n * ff. */
static void glu_reference(float *out, float *uw, const float *x, const tw *g, const tw *u, int n, int64_t cols,
                          int64_t ff)
{
    reference(out, x, g, NULL, 1, n, cols, ff, NULL);
    reference(uw, x, u, NULL, 1, n, cols, ff, NULL);
    for (int64_t i = 0; i < n * ff; i++) out[i] = out[i] / (1.0f + expf(-out[i])) * uw[i];
}

TEST(cuda_matmul_every_type_decode_and_prefill)
{
    const int64_t cols = 768, rows = 384;
    apr_stream_sizes z = { .n_batch = 230, .max_cols = cols, .n_ctx = 64, .n_head = 4, .n_head_kv = 2, .head_dim = 64 };
    pair p;
    if (!open_pair(&p, &z)) { close_pair(&p); SKIP("no CUDA device"); }
    ((cuda_backend *)p.gpu)->blas_chunk = 150000; /* long passes in several chunks of rows */
    rng_state = 21;
    /* up to 64 tiles of 32 or 64 tokens, then 128; from CUDA_BLAS_MIN f16 chunks and cuBLAS */
    static const int ns[] = { 1, 2, 3, 5, 8, 9, 12, 16, 17, 24, 32, 33, 47, 64, 65, 150, 229 };
    for (int ti = 0; ti < N_QTYPES; ti++) {
        tw t;
        if (!make_weight(&p, &t, qtypes[ti], rows, cols, 0)) break;
        apr_linear L = { .n_parts = 1, .rows = rows, .cols = cols };
        L.part[0] = t.gw;
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            const int n = ns[ni];
            float *x = rnd_floats((size_t)n * cols, 1.0f), *want = malloc(sizeof(float) * n * rows);
            float *got = malloc(sizeof(float) * n * rows);
            reference(want, x, &t, NULL, 1, n, cols, rows, NULL);
            float *dx = dev_copy(&p, x, sizeof(float) * n * cols), *dout = dev_floats(&p, (size_t)n * rows);
            p.gpu->matmul(p.gs, dout, dx, &L, n, 0);
            CHECK(p.gpu->sync(p.gs) == APR_OK);
            to_host(got, dout, (size_t)n * rows);
            double tol = is_float(qtypes[ti]) ? (n <= CUDA_GEMV_MAX ? 1e-5 : 2e-3) : 2e-2;
            double e = rel_err(got, want, (size_t)n * rows);
            if (!(e <= tol))
                test_fail(__FILE__, __LINE__, "matmul %s n=%d: error %.3g (tol %.3g)", apr_dtype_name(qtypes[ti]), n, e, tol);
            p.gpu->release(p.gpu, dx);
            p.gpu->release(p.gpu, dout);
            free(x);
            free(want);
            free(got);
        }
        free_weight(&p, &t);
    }
    close_pair(&p);
}

/* q|k|v of mixed types with biases, and the residual add. */
TEST(cuda_matmul_parts_bias_and_accumulate)
{
    const int64_t cols = 512;
    apr_stream_sizes z = { .n_batch = 200, .max_cols = cols, .n_ctx = 64, .n_head = 4, .n_head_kv = 2, .head_dim = 64 };
    pair p;
    if (!open_pair(&p, &z)) { close_pair(&p); SKIP("no CUDA device"); }
    rng_state = 31;
    tw parts[3];
    const int types[3] = { APR_Q4_K, APR_Q4_K, APR_Q6_K };
    const int64_t prow[3] = { 512, 128, 128 }, rows = 768;
    int ok = 1;
    for (int k = 0; k < 3; k++) ok = ok && make_weight(&p, &parts[k], types[k], prow[k], cols, 0);
    REQUIRE(ok);
    float *bias[3];
    apr_linear L = { .n_parts = 3, .rows = rows, .cols = cols };
    for (int k = 0; k < 3; k++) {
        bias[k] = rnd_floats((size_t)prow[k], 0.5f);
        L.part[k] = parts[k].gw;
        L.bias[k] = (apr_weight){ .name = "b", .type = APR_F32, .rows = 1, .cols = prow[k], .row_bytes = 4 * prow[k] };
        REQUIRE(p.gpu->weight_upload(p.gpu, &L.bias[k], bias[k]) == APR_OK);
    }
    static const int ns[] = { 1, 4, 8, 12, 16, 32, 40, 64, 200 };
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
        const int n = ns[ni];
        for (int accumulate = 0; accumulate < 2; accumulate++) {
            float *x = rnd_floats((size_t)n * cols, 1.0f), *acc = rnd_floats((size_t)n * rows, 1.0f);
            float *want = malloc(sizeof(float) * n * rows), *got = malloc(sizeof(float) * n * rows);
            reference(want, x, parts, (const float *const *)bias, 3, n, cols, rows, accumulate ? acc : NULL);
            float *dx = dev_copy(&p, x, sizeof(float) * n * cols);
            float *dout = accumulate ? dev_copy(&p, acc, sizeof(float) * n * rows) : dev_floats(&p, (size_t)n * rows);
            p.gpu->matmul(p.gs, dout, dx, &L, n, accumulate);
            CHECK(p.gpu->sync(p.gs) == APR_OK);
            to_host(got, dout, (size_t)n * rows);
            double e = rel_err(got, want, (size_t)n * rows), tol = 2e-2;
            if (!(e <= tol)) test_fail(__FILE__, __LINE__, "q|k|v n=%d acc=%d: error %.3g", n, accumulate, e);
            p.gpu->release(p.gpu, dx);
            p.gpu->release(p.gpu, dout);
            free(x);
            free(acc);
            free(want);
            free(got);
        }
    }
    for (int k = 0; k < 3; k++) {
        p.gpu->weight_release(p.gpu, &L.bias[k]);
        free(bias[k]);
        free_weight(&p, &parts[k]);
    }
    close_pair(&p);
}

/* The tensor-core decode kernels (CUDA_Q8_DEFAULT < n <= CUDA_MMA_MAX) on rows
 * that fill no whole tile and rows whose last step of 256 columns is
 * partial; and a token's results are the same bits whatever the batch. */
TEST(cuda_matmul_mma_edges_and_batch_invariance)
{
    const int64_t cols = 640, rows = 100;
    apr_stream_sizes z = { .n_batch = 32, .max_cols = cols, .n_ctx = 64, .n_head = 4, .n_head_kv = 2, .head_dim = 64 };
    pair p;
    if (!open_pair(&p, &z)) { close_pair(&p); SKIP("no CUDA device"); }
    rng_state = 35;
    static const int types[] = { APR_Q8_0, APR_Q4_0, APR_Q4_1, APR_Q5_0, APR_Q5_1 };
    const int nmax = CUDA_MMA_MAX;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        tw t;
        if (!make_weight(&p, &t, types[ti], rows, cols, 0)) break;
        apr_linear L = { .n_parts = 1, .rows = rows, .cols = cols };
        L.part[0] = t.gw;
        float *x = rnd_floats((size_t)nmax * cols, 1.0f), *want = malloc(sizeof(float) * nmax * rows);
        float *got = malloc(sizeof(float) * nmax * rows), *first = malloc(sizeof(float) * nmax * rows);
        reference(want, x, &t, NULL, 1, nmax, cols, rows, NULL);
        float *dx = dev_copy(&p, x, sizeof(float) * nmax * cols), *dout = dev_floats(&p, (size_t)nmax * rows);
        static const int ns[] = { CUDA_MMA_MAX, CUDA_Q8_DEFAULT + 1, 9, 16, 23 };
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            const int n = ns[ni];
            p.gpu->matmul(p.gs, dout, dx, &L, n, 0);
            CHECK(p.gpu->sync(p.gs) == APR_OK);
            to_host(got, dout, (size_t)n * rows);
            double e = rel_err(got, want, (size_t)n * rows);
            if (!(e <= 2e-2))
                test_fail(__FILE__, __LINE__, "mma matmul %s n=%d: error %.3g", apr_dtype_name(types[ti]), n, e);
            if (ni == 0) memcpy(first, got, sizeof(float) * nmax * rows);
            else if (memcmp(first, got, sizeof(float) * n * rows) != 0)
                test_fail(__FILE__, __LINE__, "mma matmul %s: n=%d differs from n=%d", apr_dtype_name(types[ti]), n,
                          nmax);
        }
        p.gpu->release(p.gpu, dx);
        p.gpu->release(p.gpu, dout);
        free(x);
        free(want);
        free(got);
        free(first);
        free_weight(&p, &t);
    }
    close_pair(&p);
}

TEST(cuda_matmul_glu_decode_and_prefill)
{
    const int64_t cols = 512, ff = 640;
    apr_stream_sizes z = { .n_batch = 260, .max_cols = ff, .n_ctx = 64, .n_head = 4, .n_head_kv = 2, .head_dim = 64 };
    pair p;
    if (!open_pair(&p, &z)) { close_pair(&p); SKIP("no CUDA device"); }
    ((cuda_backend *)p.gpu)->blas_chunk = 150000; /* several chunks of gate and up rows */
    rng_state = 41;
    static const int types[] = { APR_Q4_K, APR_Q8_0, APR_F16 };
    for (int ti = 0; ti < 3; ti++) {
        tw g, u;
        REQUIRE(make_weight(&p, &g, types[ti], ff, cols, 0) && make_weight(&p, &u, types[ti], ff, cols, 0));
        apr_linear L = { .n_parts = 2, .rows = 2 * ff, .cols = cols };
        L.part[0] = g.gw;
        L.part[1] = u.gw;
        static const int ns[] = { 1, 3, 8, 12, 16, 32, 33, 57, 130, 257 };
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            const int n = ns[ni];
            float *x = rnd_floats((size_t)n * cols, 2.0f), *uw = malloc(sizeof(float) * n * ff);
            float *want = malloc(sizeof(float) * n * ff), *got = malloc(sizeof(float) * n * ff);
            glu_reference(want, uw, x, &g, &u, n, cols, ff);
            float *dx = dev_copy(&p, x, sizeof(float) * n * cols), *dout = dev_floats(&p, (size_t)n * ff);
            p.gpu->matmul_glu(p.gs, dout, dx, &L, n);
            CHECK(p.gpu->sync(p.gs) == APR_OK);
            to_host(got, dout, (size_t)n * ff);
            double e = rel_err(got, want, (size_t)n * ff);
            double tol = types[ti] == APR_F16 ? (n <= CUDA_GEMV_MAX ? 1e-5 : 4e-3) : 3e-2;
            if (!(e <= tol)) test_fail(__FILE__, __LINE__, "glu %s n=%d: error %.3g", apr_dtype_name(types[ti]), n, e);
            p.gpu->release(p.gpu, dx);
            p.gpu->release(p.gpu, dout);
            free(x);
            free(uw);
            free(want);
            free(got);
        }
        free_weight(&p, &g);
        free_weight(&p, &u);
    }
    close_pair(&p);
}

/* Decode products with more row blocks than one grid holds (gemv.cu caps
 * the grid at a few blocks per SM, which loop over the rest): q|k|v of
 * mixed formats with the residual add, and SwiGLU, on 20,480 rows. */
TEST(cuda_decode_products_beyond_one_grid)
{
    const int64_t cols = 256, rows = 20480;
    apr_stream_sizes z = { .n_batch = 2, .max_cols = rows, .n_ctx = 64, .n_head = 4, .n_head_kv = 2, .head_dim = 64 };
    pair p;
    if (!open_pair(&p, &z)) { close_pair(&p); SKIP("no CUDA device"); }
    rng_state = 47;
    tw parts[3], g, u;
    const int types[3] = { APR_Q4_K, APR_Q4_K, APR_Q6_K };
    const int64_t prow[3] = { 16384, 2048, 2048 };
    int ok = make_weight(&p, &g, APR_Q4_K, rows, cols, 0) && make_weight(&p, &u, APR_Q4_K, rows, cols, 0);
    for (int k = 0; k < 3; k++) ok = ok && make_weight(&p, &parts[k], types[k], prow[k], cols, 0);
    REQUIRE(ok);
    apr_linear L = { .n_parts = 3, .rows = rows, .cols = cols }, G = { .n_parts = 2, .rows = 2 * rows, .cols = cols };
    for (int k = 0; k < 3; k++) L.part[k] = parts[k].gw;
    G.part[0] = g.gw;
    G.part[1] = u.gw;
    for (int n = 1; n <= 2; n++) {
        float *x = rnd_floats((size_t)n * cols, 1.0f), *acc = rnd_floats((size_t)n * rows, 1.0f);
        float *want = malloc(sizeof(float) * n * rows), *got = malloc(sizeof(float) * n * rows);
        float *uw = malloc(sizeof(float) * n * rows);
        reference(want, x, parts, NULL, 3, n, cols, rows, acc);
        float *dx = dev_copy(&p, x, sizeof(float) * n * cols), *dout = dev_copy(&p, acc, sizeof(float) * n * rows);
        p.gpu->matmul(p.gs, dout, dx, &L, n, 1);
        CHECK(p.gpu->sync(p.gs) == APR_OK);
        to_host(got, dout, (size_t)n * rows);
        double e = rel_err(got, want, (size_t)n * rows);
        if (!(e <= 2e-2)) test_fail(__FILE__, __LINE__, "q|k|v of %lld rows n=%d: error %.3g", (long long)rows, n, e);
        glu_reference(want, uw, x, &g, &u, n, cols, rows);
        p.gpu->matmul_glu(p.gs, dout, dx, &G, n);
        CHECK(p.gpu->sync(p.gs) == APR_OK);
        to_host(got, dout, (size_t)n * rows);
        e = rel_err(got, want, (size_t)n * rows);
        if (!(e <= 3e-2)) test_fail(__FILE__, __LINE__, "glu of %lld rows n=%d: error %.3g", (long long)rows, n, e);
        p.gpu->release(p.gpu, dx);
        p.gpu->release(p.gpu, dout);
        free(x);
        free(acc);
        free(want);
        free(got);
        free(uw);
    }
    for (int k = 0; k < 3; k++) free_weight(&p, &parts[k]);
    free_weight(&p, &g);
    free_weight(&p, &u);
    close_pair(&p);
}

TEST(cuda_rmsnorm_and_argmax)
{
    const int64_t cols = 1280;
    apr_stream_sizes z = { .n_batch = 32, .max_cols = cols, .n_ctx = 64, .n_head = 4, .n_head_kv = 2, .head_dim = 64 };
    pair p;
    if (!open_pair(&p, &z)) { close_pair(&p); SKIP("no CUDA device"); }
    rng_state = 51;
    float *g = rnd_floats((size_t)cols, 1.0f);
    apr_weight cw = { .name = "g", .type = APR_F32, .rows = 1, .cols = cols, .row_bytes = 4 * cols }, gw = cw;
    REQUIRE(p.cpu->weight_upload(p.cpu, &cw, g) == APR_OK && p.gpu->weight_upload(p.gpu, &gw, g) == APR_OK);
    static const int ns[] = { 1, 8, 32 };
    for (int ni = 0; ni < 3; ni++) {
        const int n = ns[ni];
        float *x = rnd_floats((size_t)n * cols, 3.0f), *want = malloc(sizeof(float) * n * cols);
        float *got = malloc(sizeof(float) * n * cols);
        p.cpu->rmsnorm(p.cs, want, x, &cw, n, 1e-6f);
        float *dx = dev_copy(&p, x, sizeof(float) * n * cols), *dout = dev_floats(&p, (size_t)n * cols);
        p.gpu->rmsnorm(p.gs, dout, dx, &gw, n, 1e-6f);
        CHECK(p.gpu->sync(p.gs) == APR_OK);
        to_host(got, dout, (size_t)n * cols);
        double e = rel_err(got, want, (size_t)n * cols);
        if (!(e <= 1e-6)) test_fail(__FILE__, __LINE__, "rmsnorm n=%d: error %.3g", n, e);
        /* argmax of each row, with a tie planted in row 0 */
        x[5] = x[900] = 100.0f;
        int32_t want_id[32], got_id[32];
        for (int t = 0; t < n; t++) {
            int best = 0;
            for (int c = 1; c < cols; c++)
                if (x[t * cols + c] > x[t * cols + best]) best = c;
            want_id[t] = best;
        }
        cudaMemcpy(dx, x, sizeof(float) * n * cols, cudaMemcpyHostToDevice);
        int32_t *dids = p.gpu->alloc(p.gpu, sizeof got_id);
        p.gpu->argmax(p.gs, dids, dx, n, cols);
        CHECK(p.gpu->sync(p.gs) == APR_OK);
        cudaMemcpy(got_id, dids, sizeof(int32_t) * n, cudaMemcpyDeviceToHost);
        for (int t = 0; t < n; t++) CHECK_EQ_INT(got_id[t], want_id[t]);
        p.gpu->release(p.gpu, dids);
        p.gpu->release(p.gpu, dx);
        p.gpu->release(p.gpu, dout);
        free(x);
        free(want);
        free(got);
    }
    free(g);
    close_pair(&p);
}

/* argmax over a Qwen-sized vocabulary (several batches of loads per
 * thread) and over rows whose width is not a multiple of 4 (the scalar
 * path), with ties (the lower index wins) and NaNs (skipped). */
TEST(cuda_argmax_wide_and_odd_rows)
{
    apr_stream_sizes z = { .n_batch = 4, .max_cols = 1024, .n_ctx = 64, .n_head = 4, .n_head_kv = 2, .head_dim = 64 };
    pair p;
    if (!open_pair(&p, &z)) { close_pair(&p); SKIP("no CUDA device"); }
    rng_state = 53;
    static const int widths[] = { 152064, 152067, 1001 };
    for (int wi = 0; wi < 3; wi++) {
        const int n = 3, cols = widths[wi];
        float *x = rnd_floats((size_t)n * cols, 3.0f);
        x[cols - 2] = x[cols - 7] = 50.0f;           /* row 0: a tie near the end */
        x[cols + 3] = NAN;                           /* row 1: a NaN, its max at the start */
        x[cols] = 60.0f;
        x[2 * cols + cols / 2] = 70.0f;              /* row 2: the middle */
        int32_t want_id[3], got_id[3];
        for (int t = 0; t < n; t++) {
            int best = -1;
            for (int c = 0; c < cols; c++) {
                float v = x[(size_t)t * cols + c];
                if (v == v && (best < 0 || v > x[(size_t)t * cols + best])) best = c;
            }
            want_id[t] = best;
        }
        float *dx = dev_copy(&p, x, sizeof(float) * n * cols);
        int32_t *dids = p.gpu->alloc(p.gpu, sizeof got_id);
        p.gpu->argmax(p.gs, dids, dx, n, cols);
        CHECK(p.gpu->sync(p.gs) == APR_OK);
        cudaMemcpy(got_id, dids, sizeof got_id, cudaMemcpyDeviceToHost);
        for (int t = 0; t < n; t++) CHECK_EQ_INT(got_id[t], want_id[t]);
        p.gpu->release(p.gpu, dids);
        p.gpu->release(p.gpu, dx);
        free(x);
    }
    close_pair(&p);
}

/* ===================================================================== */
/* RoPE, the cache, attention                                            */
/* ===================================================================== */

/* One backend's side of an attention run: cache, step metadata, buffers. */
typedef struct {
    apr_kv_cache kv;
    apr_step st;
    int32_t *meta;       /* ids pos seq slot out table, as apr_step points into */
    float *qkv, *out;
    float *offsets;      /* quantized caches: the keys' offsets (backend.h's k_offset) */
} side;

enum { BT = 32, MAXB = 16, NSEQ = 2, NB = 300 };

static int open_side(apr_backend *b, side *s, const apr_attn_params *a, int kv_type)
{
    memset(s, 0, sizeof *s);
    const size_t row_bytes = (size_t)(a->head_dim / apr_dtype_block_size(kv_type)) * apr_dtype_block_bytes(kv_type);
    s->kv = (apr_kv_cache){ .type = kv_type, .n_layer = 1, .n_head_kv = a->n_head_kv, .head_dim = a->head_dim,
                            .block_tokens = BT, .n_blocks = NSEQ * MAXB, .row_bytes = row_bytes };
    s->kv.layer_bytes = (size_t)s->kv.n_blocks * a->n_head_kv * BT * s->kv.row_bytes;
    s->kv.k = b->alloc(b, s->kv.layer_bytes);
    s->kv.v = b->alloc(b, s->kv.layer_bytes);
    s->meta = b->alloc(b, sizeof(int32_t) * (5 * NB + NSEQ * MAXB));
    const size_t row = (size_t)(a->n_head + 2 * a->n_head_kv) * a->head_dim;
    s->qkv = b->alloc(b, sizeof(float) * NB * row);
    s->out = b->alloc(b, sizeof(float) * NB * a->n_head * a->head_dim);
    if (kv_type != APR_F16) {
        /* offsets as large as a key's bias (the same on both sides: the rng restarts) */
        const size_t n = (size_t)a->n_head_kv * a->head_dim;
        uint64_t saved = rng_state;
        rng_state = 12345;
        float *host = rnd_floats(n, 8.0f);
        rng_state = saved;
        s->offsets = b->alloc(b, sizeof(float) * n);
        if (s->offsets) {
            if (b->device == APR_DEVICE_CUDA) cudaMemcpy(s->offsets, host, sizeof(float) * n, cudaMemcpyHostToDevice);
            else memcpy(s->offsets, host, sizeof(float) * n);
        }
        free(host);
        s->kv.k_offset = s->offsets;
        if (!s->offsets) return 0;
    }
    s->st = (apr_step){ .max_blocks = MAXB, .ids = s->meta, .pos = s->meta + NB, .seq = s->meta + 2 * NB,
                        .slot = s->meta + 3 * NB, .out = s->meta + 4 * NB, .block_table = s->meta + 5 * NB };
    return s->kv.k && s->kv.v && s->meta && s->qkv && s->out;
}

static void close_side(apr_backend *b, side *s)
{
    b->release(b, s->kv.k);
    b->release(b, s->kv.v);
    b->release(b, s->meta);
    b->release(b, s->qkv);
    b->release(b, s->out);
    b->release(b, s->offsets);
}

/* Compares the GPU's quantized cache (got) with the CPU's (want), block by
 * block: values must be the same bytes; keys may differ by one code step
 * in a few elements (the rotation rounds differently: an element on a
 * rounding boundary). Returns the number of key codes that differ. */
static long compare_blocks(const uint8_t *got, const uint8_t *want, size_t bytes, int type, int is_v, const char *what)
{
    const size_t bb = (size_t)apr_dtype_block_bytes(type);
    long diff = 0;
    for (size_t b = 0; b + bb <= bytes; b += bb) {
        const uint16_t dg = (uint16_t)(got[b] | got[b + 1] << 8), dw = (uint16_t)(want[b] | want[b + 1] << 8);
        int bad = is_v ? memcmp(got + b, want + b, bb) != 0 : abs((int)dg - (int)dw) > 1;
        for (size_t i = 2; i < bb && !bad; i++) {
            if (type == APR_Q8_0) {
                const int c = abs((int)(int8_t)got[b + i] - (int)(int8_t)want[b + i]);
                diff += c != 0;
                bad = c > 1;
            } else {
                const int lo = abs((got[b + i] & 15) - (want[b + i] & 15)), hi = abs((got[b + i] >> 4) - (want[b + i] >> 4));
                diff += (lo != 0) + (hi != 0);
                bad = lo > 1 || hi > 1;
            }
        }
        if (bad) {
            test_fail(__FILE__, __LINE__, "%s: the %s cache's block at byte %zu differs beyond one step", what,
                      is_v ? "value" : "key", b);
            return -1;
        }
    }
    return diff;
}

/* Runs passes of (seq, count) token runs through rope_store + attention on
 * both backends and compares q|k|v after RoPE and the attention output. */
static void attention_case(int n_head, int n_kv, int hd, int neox, int kv_type)
{
    apr_attn_params a = { .n_head = n_head, .n_head_kv = n_kv, .head_dim = hd, .n_rot = hd,
                          .rope_style = neox ? APR_ROPE_NEOX : APR_ROPE_NORM, .rope_base = 1e6f, .rope_scale = 1,
                          .scale = 1.0f / sqrtf((float)hd) };
    apr_stream_sizes z = { .n_batch = NB, .max_cols = 1024, .n_ctx = MAXB * BT, .n_head = n_head, .n_head_kv = n_kv,
                           .head_dim = hd };
    pair p;
    if (!open_pair(&p, &z)) { close_pair(&p); SKIP("no CUDA device"); }
    side c, g;
    REQUIRE(open_side(p.cpu, &c, &a, kv_type) && open_side(p.gpu, &g, &a, kv_type));
    long key_steps = 0, key_codes = 0;
    uint8_t *cache_got = malloc(c.kv.layer_bytes);
    /* block tables: the sequences' blocks interleaved, so pages are not contiguous */
    int32_t host[5 * NB + NSEQ * MAXB];
    for (int s = 0; s < NSEQ; s++)
        for (int k = 0; k < MAXB; k++) host[5 * NB + s * MAXB + k] = (MAXB - 1 - k) * NSEQ + s;
    int len[NSEQ] = { 0, 0 };
    /* passes: a prompt of 200 (prefill path), decode steps, a mixed pass of
     * both sequences, a 2-token decode pass, a prompt of 60 for seq 1,
     * mixed passes of 16 and 11 tokens (the decode kernels' largest), and
     * as the engine builds them: a decode token first, then a prompt chunk
     * across two prefill tiles (its rows at offsets 1..90), and a chunk
     * with a decode token after it */
    static const int passes[][3] = { { 200, 0, 0 }, { 1, 0, 0 }, { 1, 0, 0 }, { 3, 0, 1 }, { 2, 1, 0 }, { 0, 60, 0 },
                                     { 1, 1, 0 }, { 20, 20, 0 }, { 12, 12, 1 }, { 8, 8, 1 }, { 6, 5, 0 },
                                     { 1, 90, 0 }, { 70, 1, 0 } };
    const size_t row = (size_t)(n_head + 2 * n_kv) * hd, q_dim = (size_t)n_head * hd;
    for (size_t pi = 0; pi < sizeof passes / sizeof passes[0]; pi++) {
        int n = 0;
        int32_t *pos = host + NB, *seq = host + 2 * NB, *slot = host + 3 * NB;
        for (int s = 0; s < NSEQ; s++)
            for (int i = 0; i < passes[pi][s]; i++, n++) {
                int p_ = len[s]++;
                pos[n] = p_;
                seq[n] = s;
                slot[n] = host[5 * NB + s * MAXB + p_ / BT] * BT + p_ % BT;
                host[n] = 0;
                host[4 * NB + n] = n;
            }
        if (passes[pi][2]) { /* mixed order: swap neighbours, so positions and sequences interleave */
            for (int i = 0; i + 1 < n; i += 2) {
                int32_t t;
                for (int f = 1; f <= 3; f++) {
                    t = host[f * NB + i];
                    host[f * NB + i] = host[f * NB + i + 1];
                    host[f * NB + i + 1] = t;
                }
            }
        }
        c.st.n = g.st.n = n;
        memcpy(c.meta, host, sizeof host);
        cudaMemcpy(g.meta, host, sizeof host, cudaMemcpyHostToDevice);
        float *qkv = rnd_floats((size_t)n * row, 2.0f);
        memcpy(c.qkv, qkv, sizeof(float) * n * row);
        cudaMemcpy(g.qkv, qkv, sizeof(float) * n * row, cudaMemcpyHostToDevice);
        cudaMemset(g.out, 0xff, sizeof(float) * n * q_dim);
        p.cpu->rope_store(p.cs, c.qkv, &c.kv, 0, &c.st, &a);
        p.cpu->attention(p.cs, c.out, c.qkv, &c.kv, 0, &c.st, &a);
        p.gpu->rope_store(p.gs, g.qkv, &g.kv, 0, &g.st, &a);
        if (kv_type != APR_F16) {
            /* the stored blocks, then attention over the CPU's own */
            char what[64];
            snprintf(what, sizeof what, "%s h%d/%d d%d pass %zu", apr_dtype_name(kv_type), n_head, n_kv, hd, pi);
            if (p.gpu->sync(p.gs) != APR_OK) {
                test_fail(__FILE__, __LINE__, "%s: %s", what, apr_last_error());
                break;
            }
            for (int v = 0; v < 2; v++) {
                cudaMemcpy(cache_got, v ? g.kv.v : g.kv.k, c.kv.layer_bytes, cudaMemcpyDeviceToHost);
                long d = compare_blocks(cache_got, v ? c.kv.v : c.kv.k, c.kv.layer_bytes, kv_type, v, what);
                if (!v && d > 0) key_steps += d;
                cudaMemcpy(v ? g.kv.v : g.kv.k, v ? c.kv.v : c.kv.k, c.kv.layer_bytes, cudaMemcpyHostToDevice);
            }
            cudaDeviceSynchronize(); /* the copies land before the next op on the backend's own stream */
            key_codes += (long)n * n_kv * hd;
        }
        p.gpu->attention(p.gs, g.out, g.qkv, &g.kv, 0, &g.st, &a);
        if (p.gpu->sync(p.gs) != APR_OK) {
            test_fail(__FILE__, __LINE__, "pass %zu: %s", pi, apr_last_error());
            break;
        }
        float *got = malloc(sizeof(float) * n * row);
        to_host(got, g.qkv, (size_t)n * row);
        double e = rel_err(got, c.qkv, (size_t)n * row);
        if (!(e <= 1e-6)) test_fail(__FILE__, __LINE__, "rope h%d/%d d%d pass %zu: error %.3g", n_head, n_kv, hd, pi, e);
        to_host(got, g.out, (size_t)n * q_dim);
        e = rel_err(got, c.out, (size_t)n * q_dim);
        double tol = n <= CUDA_ATTN_DECODE_MAX ? 1e-4 : 3e-3;
        if (!(e <= tol))
            test_fail(__FILE__, __LINE__, "attention %s h%d/%d d%d pass %zu (n=%d): error %.3g", apr_dtype_name(kv_type),
                      n_head, n_kv, hd, pi, n, e);
        free(got);
        free(qkv);
    }
    /* keys on a rounding boundary are rare: at most 1 code in 1,000 */
    if (key_codes && !(key_steps * 1000 <= key_codes))
        test_fail(__FILE__, __LINE__, "%s: %ld of %ld key codes differ by a step", apr_dtype_name(kv_type), key_steps,
                  key_codes);
    free(cache_got);
    close_side(p.cpu, &c);
    close_side(p.gpu, &g);
    close_pair(&p);
}

TEST(cuda_attention_gqa5_hd128_neox) { rng_state = 61; attention_case(10, 2, 128, 1, APR_F16); }
TEST(cuda_attention_gqa2_hd64_norm) { rng_state = 62; attention_case(4, 2, 64, 0, APR_F16); }
TEST(cuda_attention_gqa7_hd64_neox) { rng_state = 63; attention_case(14, 2, 64, 1, APR_F16); }
TEST(cuda_attention_q8_0_gqa5_hd128_neox) { rng_state = 64; attention_case(10, 2, 128, 1, APR_Q8_0); }
TEST(cuda_attention_q8_0_gqa7_hd64_neox) { rng_state = 65; attention_case(14, 2, 64, 1, APR_Q8_0); }
TEST(cuda_attention_q4_0_gqa5_hd128_neox) { rng_state = 66; attention_case(10, 2, 128, 1, APR_Q4_0); }
TEST(cuda_attention_q4_0_gqa2_hd64_norm) { rng_state = 67; attention_case(4, 2, 64, 0, APR_Q4_0); }

/* The backend states which caches and geometries it runs, before a context
 * allocates anything. */
TEST(cuda_supports_names_what_it_lacks)
{
    apr_backend *b = apr_backend_cuda_new(0, 0);
    if (!b) SKIP("no CUDA device");
    apr_attn_params a = { .n_head = 40, .n_head_kv = 8, .head_dim = 128, .n_rot = 128, .rope_style = APR_ROPE_NEOX,
                          .rope_base = 1e6f, .rope_scale = 1, .scale = 0.088f };
    CHECK_EQ_INT(b->supports(b, APR_F16, 32, &a), APR_OK);
    CHECK_EQ_INT(b->supports(b, APR_Q8_0, 32, &a), APR_OK);
    CHECK_EQ_INT(b->supports(b, APR_Q4_0, 32, &a), APR_OK);
    CHECK_EQ_INT(b->supports(b, APR_Q5_0, 32, &a), APR_ERR_UNSUPPORTED);
    CHECK(strstr(apr_last_error(), "Q5_0") != NULL);
    CHECK_EQ_INT(b->supports(b, APR_Q8_0, 24, &a), APR_ERR_UNSUPPORTED);
    a.head_dim = 96;
    CHECK_EQ_INT(b->supports(b, APR_F16, 32, &a), APR_ERR_UNSUPPORTED);
    CHECK(strstr(apr_last_error(), "96") != NULL);
    a.head_dim = 128;
    a.n_head = 80;
    CHECK_EQ_INT(b->supports(b, APR_F16, 32, &a), APR_ERR_UNSUPPORTED);
    b->destroy(b);
}

/* ===================================================================== */
/* Memory                                                                */
/* ===================================================================== */

TEST(cuda_vram_budget_refuses_what_exceeds_it)
{
    apr_backend *b = apr_backend_cuda_new(0, 64 << 20);
    if (!b) SKIP("no CUDA device");
    void *a = b->alloc(b, 40 << 20);
    CHECK(a != NULL);
    void *c = b->alloc(b, 40 << 20);
    CHECK(c == NULL);
    CHECK(strstr(apr_last_error(), "VRAM budget") != NULL);
    CHECK(b->bytes >= (40u << 20) && b->bytes < (41u << 20));
    b->release(b, a);
    CHECK_EQ_INT(b->bytes, 0);
    b->destroy(b);
}

#else

TEST(cuda_backend_absent_without_nvcc)
{
    CHECK(apr_backend_cuda_new(0, 0) == NULL);
    SKIP("built without CUDA");
}

#endif
