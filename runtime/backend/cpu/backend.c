/* backend.c — the CPU backend: its table of ops, memory, streams, and the
 * element-wise ops (embedding rows, RMSNorm).
 *
 * Weights stay where the GGUF mmap put them: "uploading" one checks that a
 * kernel exists for its type and keeps the pointer. */
#include "cpu.h"

#include <math.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <stdlib.h>

#include "core/error.h"
#include "core/parallel.h"

typedef struct cpu_backend {
    apr_backend base;
    int n_threads;
} cpu_backend;

/* ===================================================================== */
/* Instruction set                                                       */
/* ===================================================================== */

static int isa = -1;

#if defined(__x86_64__) || defined(__i386__)
/* CPUID leaf 1 ECX bit 29: F16C, asked directly because clang 14 (Debian 12)
 * rejects __builtin_cpu_supports("f16c") as an invalid feature string. The
 * OS-saves-YMM check is covered by the "avx2" builtin asked alongside. */
static int have_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && ((c >> 29) & 1);
}
#endif

int apr_cpu_has_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && have_f16c();
#else
    return 0;
#endif
}

int apr_cpu_best_isa(void)
{
#if defined(__x86_64__) || defined(__i386__)
    if (!apr_cpu_has_avx2()) return CPU_SCALAR;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni"))
        return CPU_VNNI;
    return CPU_AVX2;
#else
    return CPU_SCALAR;
#endif
}

int apr_cpu_isa(void)
{
    if (isa < 0) {
        const char *env = getenv("APR_CPU_ISA");
        const int want = !env ? CPU_VNNI : strcmp(env, "scalar") == 0 ? CPU_SCALAR
                                         : strcmp(env, "avx2") == 0   ? CPU_AVX2 : CPU_VNNI;
        isa = want < apr_cpu_best_isa() ? want : apr_cpu_best_isa();
    }
    return isa;
}

int apr_cpu_set_isa(int want)
{
    int old = apr_cpu_isa();
    isa = want < apr_cpu_best_isa() ? want : apr_cpu_best_isa();
    return old;
}

cpu_gemm_fn apr_cpu_gemm(int dtype)
{
    switch (apr_cpu_isa()) {
    case CPU_VNNI: return apr_cpu_gemm_vnni(dtype);
    case CPU_AVX2: return apr_cpu_gemm_avx2(dtype);
    default: return apr_cpu_gemm_scalar(dtype);
    }
}

int apr_cpu_act_kind(int dtype)
{
    switch (dtype) {
    case APR_Q4_0: case APR_Q4_1: case APR_Q5_0: case APR_Q5_1: case APR_Q8_0: return ACT_32;
    case APR_Q4_K: case APR_Q5_K: case APR_Q6_K: return ACT_256;
    default: return ACT_F32;
    }
}

/* ===================================================================== */
/* Memory, weights, streams                                              */
/* ===================================================================== */

/* Each block carries its size in a 64-byte header, for the byte count. */
static void *cpu_alloc(apr_backend *b, size_t bytes)
{
    void *p = NULL;
    APR_CHECK_NULL(bytes <= SIZE_MAX - 64 && posix_memalign(&p, 64, bytes + 64) == 0, APR_ERR_NOMEM,
                   "cannot allocate %zu bytes of CPU memory", bytes);
    memset(p, 0, bytes + 64);
    *(size_t *)p = bytes;
    b->bytes += bytes;
    return (char *)p + 64;
}

static void cpu_release(apr_backend *b, void *p)
{
    if (!p) return;
    p = (char *)p - 64;
    b->bytes -= *(size_t *)p;
    free(p);
}

static apr_status cpu_weight_upload(apr_backend *b, apr_weight *w, const void *host)
{
    APR_CHECK(apr_cpu_gemm_scalar(w->type), APR_ERR_UNSUPPORTED, "tensor %s: type %s is not supported by the CPU backend",
              w->name, apr_dtype_name(w->type) ? apr_dtype_name(w->type) : "?");
    w->data = host;
    return APR_OK;
}

static void cpu_weight_release(apr_backend *b, apr_weight *w) { w->data = NULL; }

static void cpu_stream_free(apr_stream *s)
{
    if (!s) return;
    apr_backend *b = s->b;
    for (int k = ACT_32; k <= ACT_256; k++) {
        cpu_release(b, s->act[k].q);
        cpu_release(b, s->act[k].d);
        cpu_release(b, s->act[k].ds);
        cpu_release(b, s->act[k].bsums);
        cpu_release(b, s->act[k].qt);
        cpu_release(b, s->act[k].dt);
        cpu_release(b, s->act[k].dst);
    }
    cpu_release(b, s->gemm_scratch);
    cpu_release(b, s->att_scratch);
    cpu_release(b, s->rope_cache);
    cpu_release(b, s->glu_scratch);
    free(s);
}

static apr_stream *cpu_stream_new(apr_backend *b, const apr_stream_sizes *z)
{
    APR_CHECK_NULL(z->n_head_kv > 0 && z->n_head % z->n_head_kv == 0 && z->n_head / z->n_head_kv <= CPU_MAX_GROUP,
                   APR_ERR_UNSUPPORTED, "the CPU backend needs n_head (%d) a multiple of n_head_kv (%d), at most %d times it",
                   z->n_head, z->n_head_kv, CPU_MAX_GROUP);
    apr_stream *s = calloc(1, sizeof *s);
    APR_CHECK_NULL(s, APR_ERR_NOMEM, "cannot allocate a CPU stream");
    s->b = b;
    s->n_threads = ((cpu_backend *)b)->n_threads;
    s->sizes = *z;
    const size_t n = (size_t)z->n_batch, K = (size_t)z->max_cols;
    int ok = 1;
    for (int k = ACT_32; k <= ACT_256; k++) {
        s->act[k].kind = k;
        ok = ok && (s->act[k].q = cpu_alloc(b, n * K + 64));
        ok = ok && (s->act[k].d = cpu_alloc(b, n * (K / 32 + 1) * sizeof(float)));
    }
    ok = ok && (s->act[ACT_32].ds = cpu_alloc(b, n * (K / 32 + 1) * sizeof(float)));
    ok = ok && (s->act[ACT_32].qt = cpu_alloc(b, n * K + 64));
    ok = ok && (s->act[ACT_32].dt = cpu_alloc(b, n * (K / 32 + 1) * sizeof(float)));
    ok = ok && (s->act[ACT_32].dst = cpu_alloc(b, n * (K / 32 + 1) * sizeof(float)));
    ok = ok && (s->act[ACT_256].bsums = cpu_alloc(b, n * (K / 16 + 1) * sizeof(int16_t)));
    s->gemm_stride = (apr_cpu_gemm_scratch_bytes(z->max_cols) + 63) & ~(size_t)63;
    ok = ok && (s->gemm_scratch = cpu_alloc(b, s->gemm_stride * (size_t)s->n_threads));
    /* attention: scores of a token's group of query heads over the context */
    const size_t group = (size_t)(z->n_head / z->n_head_kv);
    s->att_stride = (((size_t)z->n_ctx + 16) * group + (size_t)z->head_dim * (group + 2) + 15) & ~(size_t)15;
    ok = ok && (s->att_scratch = cpu_alloc(b, s->att_stride * sizeof(float) * (size_t)s->n_threads));
    ok = ok && (s->rope_cache = cpu_alloc(b, n * (size_t)z->head_dim * sizeof(float)));
    s->glu_stride = n * CPU_ROW_GRAIN;
    ok = ok && (s->glu_scratch = cpu_alloc(b, s->glu_stride * sizeof(float) * (size_t)s->n_threads));
    if (!ok) {
        cpu_stream_free(s);
        return NULL;
    }
    return s;
}

static void cpu_copy(apr_stream *s, void *dst, const void *src, size_t bytes)
{
    if (dst != src) memmove(dst, src, bytes);
}

static apr_status cpu_sync(apr_stream *s) { return APR_OK; }

/* ===================================================================== */
/* Element-wise ops                                                      */
/* ===================================================================== */

typedef struct {
    float *out;
    const float *x;
    const apr_weight *w;
    const int32_t *ids;
    int64_t dim;
    float eps;
} rows_job;

static void get_rows_body(void *p, int64_t begin, int64_t end, int thread)
{
    rows_job *j = p;
    for (int64_t i = begin; i < end; i++)
        apr_dequantize(j->w->type, (const uint8_t *)j->w->data + (size_t)j->ids[i] * j->w->row_bytes,
                       j->out + i * j->w->cols, j->w->cols);
}

static void cpu_get_rows(apr_stream *s, float *out, const apr_weight *table, const int32_t *ids, int n)
{
    rows_job j = { .out = out, .w = table, .ids = ids };
    apr_parallel_for_n(s->n_threads, n, 16, get_rows_body, &j);
}

static void cpu_gather(apr_stream *s, float *out, const float *x, const int32_t *rows, int n, int64_t dim)
{
    for (int i = 0; i < n; i++) memmove(out + i * dim, x + (int64_t)rows[i] * dim, (size_t)dim * sizeof(float));
}

/* The sum of squares in double, as llama.cpp's ggml_compute_forward_rms_norm. */
static void rmsnorm_body(void *p, int64_t begin, int64_t end, int thread)
{
    rows_job *j = p;
    const float *w = j->w->data;
    for (int64_t i = begin; i < end; i++) {
        const float *x = j->x + i * j->dim;
        float *out = j->out + i * j->dim;
        double sum = 0;
        for (int64_t k = 0; k < j->dim; k++) sum += (double)(x[k] * x[k]);
        const float scale = 1.0f / sqrtf((float)(sum / (double)j->dim) + j->eps);
        for (int64_t k = 0; k < j->dim; k++) out[k] = x[k] * scale * w[k];
    }
}

static void cpu_rmsnorm(apr_stream *s, float *out, const float *x, const apr_weight *w, int n, float eps)
{
    rows_job j = { .out = out, .x = x, .w = w, .dim = w->cols, .eps = eps };
    apr_parallel_for_n(s->n_threads, n, 16, rmsnorm_body, &j);
}

/* ===================================================================== */
/* The backend                                                           */
/* ===================================================================== */

static void cpu_destroy(apr_backend *b) { free(b); }

apr_backend *apr_backend_cpu_new(int n_threads)
{
    cpu_backend *c = calloc(1, sizeof *c);
    APR_CHECK_NULL(c, APR_ERR_NOMEM, "cannot allocate the CPU backend");
    c->n_threads = n_threads > 0 ? n_threads : apr_parallel_threads();
    if (c->n_threads > APR_PARALLEL_MAX_THREADS) c->n_threads = APR_PARALLEL_MAX_THREADS;
    c->base = (apr_backend){
        .name = "cpu",
        .device = APR_DEVICE_CPU,
        .destroy = cpu_destroy,
        .alloc = cpu_alloc,
        .release = cpu_release,
        .weight_upload = cpu_weight_upload,
        .weight_release = cpu_weight_release,
        .supports = apr_cpu_supports,
        .stream_new = cpu_stream_new,
        .stream_free = cpu_stream_free,
        .upload = cpu_copy,
        .download = cpu_copy,
        .sync = cpu_sync,
        .get_rows = cpu_get_rows,
        .gather = cpu_gather,
        .rmsnorm = cpu_rmsnorm,
        .matmul = apr_cpu_matmul,
        .rope_store = apr_cpu_rope_store,
        .attention = apr_cpu_attention,
        .matmul_glu = apr_cpu_matmul_glu,
        .kv_stage = apr_cpu_kv_stage,
        .kv_load = apr_cpu_kv_load,
        .host_alloc = apr_cpu_host_alloc,
        .host_release = apr_cpu_host_release,
    };
    apr_cpu_isa();
    return &c->base;
}
