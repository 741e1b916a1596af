/* matmul.c — the CPU backend's matrix products.
 *
 *   matmul:     out (+)= x·Wᵀ + b, W of up to three parts (q|k|v)
 *   matmul_glu: out = silu(x·Gᵀ) * (x·Uᵀ)
 *
 * Two parallel loops each: quantizing the input (once per act kind the
 * parts need, over tokens), then the product over chunks of CPU_ROW_GRAIN
 * rows of all parts together, so q, k and v are one loop with one wait at
 * its end. matmul_glu gives a chunk of gate rows and the same up rows to
 * one thread, which joins them while they are in cache: the gate and up
 * products are never written out whole. */
#include "cpu.h"

#include <math.h>

#include "core/parallel.h"
#if defined(__x86_64__) || defined(__i386__)
#include "simd.h"
#endif

typedef struct {
    apr_stream *s;
    int n_parts;
    cpu_gemm g[APR_LINEAR_MAX_PARTS];
    cpu_gemm_fn fn[APR_LINEAR_MAX_PARTS];
    int64_t first_chunk[APR_LINEAR_MAX_PARTS + 1];  /* chunk index where each part starts */
    int64_t rows[APR_LINEAR_MAX_PARTS];
} matmul_job;

static void quantize_rows(void *p, int64_t begin, int64_t end, int thread)
{
    cpu_act *a = p;
    switch (apr_cpu_isa()) {
    case CPU_VNNI: apr_cpu_quantize_vnni(a, (int)begin, (int)end); break;
    case CPU_AVX2: apr_cpu_quantize_avx2(a, (int)begin, (int)end); break;
    default: apr_cpu_quantize_scalar(a, (int)begin, (int)end);
    }
}

/* Quantizes x for every act kind W's parts need and fills the job's kernels
 * and descriptors (out, ldo, bias as for matmul). */
static void prepare(matmul_job *job, apr_stream *s, float *out, const float *x, const apr_linear *W, int n,
                    int accumulate)
{
    int quantized[3] = { 1, 0, 0 };
    s->act[ACT_F32] = (cpu_act){ .kind = ACT_F32, .n = n, .cols = W->cols, .x = x };
    *job = (matmul_job){ .s = s, .n_parts = W->n_parts };
    int64_t col = 0, chunks = 0;
    for (int i = 0; i < W->n_parts; i++) {
        const apr_weight *w = &W->part[i];
        const int kind = apr_cpu_act_kind(w->type);
        cpu_act *a = &s->act[kind];
        if (!quantized[kind]) {
            a->x = x;
            a->n = n;
            a->cols = W->cols;
            /* a token's row takes about a microsecond: split only prompts */
            apr_parallel_for_n(s->n_threads, n, 8, quantize_rows, a);
            quantized[kind] = 1;
        }
        job->fn[i] = apr_cpu_gemm(w->type);
        job->g[i] = (cpu_gemm){
            .w = w->data, .row_bytes = w->row_bytes, .cols = W->cols, .a = a, .n = n,
            .out = out + col, .ldo = W->rows,
            .bias = W->bias[i].data ? (const float *)W->bias[i].data : NULL,
            .accumulate = accumulate,
        };
        job->rows[i] = w->rows;
        job->first_chunk[i] = chunks;
        chunks += (w->rows + CPU_ROW_GRAIN - 1) / CPU_ROW_GRAIN;
        col += w->rows;
    }
    job->first_chunk[W->n_parts] = chunks;
}

/* ===================================================================== */
/* matmul                                                                */
/* ===================================================================== */

static void multiply_rows(void *p, int64_t begin, int64_t end, int thread)
{
    matmul_job *job = p;
    void *scratch = job->s->gemm_scratch + (size_t)thread * job->s->gemm_stride;
    for (int i = 0; i < job->n_parts; i++) {
        const int64_t lo = begin > job->first_chunk[i] ? begin : job->first_chunk[i];
        const int64_t hi = end < job->first_chunk[i + 1] ? end : job->first_chunk[i + 1];
        if (lo >= hi) continue;
        const int64_t r0 = (lo - job->first_chunk[i]) * CPU_ROW_GRAIN;
        int64_t r1 = (hi - job->first_chunk[i]) * CPU_ROW_GRAIN;
        if (r1 > job->rows[i]) r1 = job->rows[i];
        job->fn[i](&job->g[i], r0, r1, scratch);
    }
}

void apr_cpu_matmul(apr_stream *s, float *out, const float *x, const apr_linear *W, int n, int accumulate)
{
    if (n <= 0) return;
    matmul_job job;
    prepare(&job, s, out, x, W, n, accumulate);
    apr_parallel_for_n(s->n_threads, job.first_chunk[W->n_parts], 1, multiply_rows, &job);
}

/* ===================================================================== */
/* matmul_glu                                                            */
/* ===================================================================== */

/* gate = silu(gate) * up over n values: silu(g) = g / (1 + e^-g). */
static void silu_mul(float *gate, const float *up, int64_t n)
{
    for (int64_t k = 0; k < n; k++) gate[k] = gate[k] / (1.0f + expf(-gate[k])) * up[k];
}

#if defined(__x86_64__) || defined(__i386__)
AVX2 static void silu_mul_avx2(float *gate, const float *up, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.f), zero = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        const __m256 g = _mm256_loadu_ps(gate + k);
        const __m256 e = exp_ps(_mm256_sub_ps(zero, g));
        _mm256_storeu_ps(gate + k, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + k)));
    }
    silu_mul(gate + k, up + k, n - k);
}
#endif

static void glu_rows(void *p, int64_t begin, int64_t end, int thread)
{
    matmul_job *job = p;
    apr_stream *s = job->s;
    void *scratch = s->gemm_scratch + (size_t)thread * s->gemm_stride;
    float *up = s->glu_scratch + (size_t)thread * s->glu_stride;  /* [n][CPU_ROW_GRAIN] */
    const int n = job->g[0].n;
    for (int64_t c = begin; c < end; c++) {
        const int64_t r0 = c * CPU_ROW_GRAIN;
        const int64_t rows = job->rows[0] - r0 < CPU_ROW_GRAIN ? job->rows[0] - r0 : CPU_ROW_GRAIN;
        /* both products with the chunk's first row as row 0 */
        cpu_gemm g = job->g[0], u = job->g[1];
        g.w += r0 * g.row_bytes;
        g.out += r0;
        u.w += r0 * u.row_bytes;
        u.out = up;
        u.ldo = CPU_ROW_GRAIN;
        if (g.bias) g.bias += r0;
        if (u.bias) u.bias += r0;
        job->fn[0](&g, 0, rows, scratch);
        job->fn[1](&u, 0, rows, scratch);
        for (int t = 0; t < n; t++) {
#if defined(__x86_64__) || defined(__i386__)
            if (apr_cpu_isa() >= CPU_AVX2) { silu_mul_avx2(g.out + t * g.ldo, up + t * CPU_ROW_GRAIN, rows); continue; }
#endif
            silu_mul(g.out + t * g.ldo, up + t * CPU_ROW_GRAIN, rows);
        }
    }
}

void apr_cpu_matmul_glu(apr_stream *s, float *out, const float *x, const apr_linear *W, int n)
{
    if (n <= 0) return;
    matmul_job job;
    prepare(&job, s, out, x, W, n, 0);
    job.g[0].ldo = W->part[0].rows;   /* out holds the gate's rows only */
    apr_parallel_for_n(s->n_threads, job.first_chunk[1], 1, glu_rows, &job);
}
