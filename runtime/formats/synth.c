/* synth.c — random tensor data for synthetic models (`apr synth`).
 *
 * A synthetic model has a real architecture's tensors filled with random
 * values of a chosen mean and standard deviation, so that speed can be
 * measured on the real byte layout without real weights. Quantized tensors
 * are written as random blocks: random quant bits and random sub-block
 * scales, with the super-block scale d chosen so that the decoded values
 * have the wanted standard deviation, and a random sign on d (a block of
 * negated values is as likely as the block itself) so their mean is zero.
 *
 * The data is cut into chunks of a fixed number of blocks; each chunk has its
 * own generator, seeded from (seed, tensor index, chunk index), and is
 * written with pwrite at its offset. So the output depends only on the seed,
 * never on the number of threads, and a 20 GB file is written at the speed
 * of the disk. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/parallel.h"
#include "core/quant.h"
#include "core/rng.h"

#define CHUNK_BYTES (1 << 20)

/* ===================================================================== */
/* Random values                                                         */
/* ===================================================================== */

/* Each chunk of each tensor has a generator of its own, so chunks can be
 * filled on any thread in any order and give the same bytes. */
static apr_rng rng_for(uint64_t seed, int64_t tensor, int64_t chunk)
{
    uint64_t x = seed;
    x = apr_splitmix64(&x) ^ (uint64_t)tensor;
    x = apr_splitmix64(&x) ^ (uint64_t)chunk;
    apr_rng r;
    apr_rng_seed(&r, x);
    return r;
}

/* An approximately normal value of mean 0 and variance 1: the sum of four
 * 16-bit uniforms (Irwin-Hall), rescaled. Bounded (|z| < 3.47) and cheap:
 * one generator call per value. */
static inline float standard_value(apr_rng *r)
{
    uint64_t u = apr_rng_next(r);
    float sum = (float)((u & 0xffff) + ((u >> 16) & 0xffff) + ((u >> 32) & 0xffff) + (u >> 48)) + 2.0f;
    return (sum * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;   /* variance of the sum: 4/12 */
}

static void fill_random(apr_rng *r, uint8_t *p, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = apr_rng_next(r);
        memcpy(p + i, &v, 8);
    }
    if (i < n) {
        uint64_t v = apr_rng_next(r);
        memcpy(p + i, &v, n - i);
    }
}

/* ===================================================================== */
/* Random blocks                                                         */
/* ===================================================================== */

/* For each block format: where d (and dmin) live, and the root mean square
 * of the decoded value in units of d when every bit is random:
 *   Q8_0: q uniform on -128..127, E[q^2] = 5461.5.
 *   Q4_0: q-8 on -8..7, E = 21.5.   Q5_0: q-16 on -16..15, E = 85.5.
 *   Q6_K: scale uniform on -128..127 (5461.5) times q-32 on -32..31
 *         (341.5): E = 1865102.25.
 *   Q4_K: sc*q - 7.5*m with sc, m uniform on 0..63 and q on 0..15, and
 *         dmin = 7.5 d so that each sub-block is centred on average:
 *         Var(sc*q) + 7.5^2 Var(m) = 47532.1875 + 19195.3125 = 66727.5. */
typedef struct {
    int dtype;
    int d_offset, dmin_offset;   /* dmin_offset < 0: none */
    double rms_per_d;
    double dmin_per_d;
} block_recipe;

static const block_recipe recipes[] = {
    { APR_Q8_0, 0, -1, 73.90196208, 0 },
    { APR_Q4_0, 0, -1, 4.63680925, 0 },
    { APR_Q5_0, 0, -1, 9.24662103, 0 },
    { APR_Q6_K, offsetof(block_q6_K, d), -1, 1365.68746, 0 },
    { APR_Q4_K, offsetof(block_q4_K, d), offsetof(block_q4_K, dmin), 258.316666, 7.5 },
};

static const block_recipe *recipe_for(int dtype)
{
    for (size_t i = 0; i < sizeof recipes / sizeof *recipes; i++)
        if (recipes[i].dtype == dtype) return &recipes[i];
    return NULL;
}

/* ===================================================================== */
/* Filling a tensor                                                      */
/* ===================================================================== */

typedef struct {
    apr_gguf_writer *w;
    int64_t tensor;
    int dtype;
    int64_t n;                   /* elements */
    int64_t block_size, block_bytes, chunk_blocks;
    float mean, std;
    const block_recipe *recipe;
    apr_f16 d_pos, d_neg, dmin_pos, dmin_neg;
    uint64_t seed;
    atomic_int failed;           /* first failure wins and records its message */
    apr_status status;
    char message[512];
} fill_job;

static void fail(fill_job *job, apr_status st)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(&job->failed, &expected, 1)) {
        job->status = st;
        snprintf(job->message, sizeof job->message, "%s", apr_last_error());
    }
}

static void fill_values(fill_job *job, apr_rng *r, uint8_t *buf, int64_t count)
{
    for (int64_t i = 0; i < count; i++) {
        const float v = job->mean + job->std * standard_value(r);
        switch (job->dtype) {
        case APR_F32: memcpy(buf + 4 * i, &v, 4); break;
        case APR_F16: { apr_f16 h = apr_f32_to_f16(v); memcpy(buf + 2 * i, &h, 2); break; }
        default: { apr_bf16 h = apr_f32_to_bf16(v); memcpy(buf + 2 * i, &h, 2); break; }
        }
    }
}

static void fill_blocks(fill_job *job, apr_rng *r, uint8_t *buf, int64_t blocks)
{
    const block_recipe *rc = job->recipe;
    fill_random(r, buf, (size_t)(blocks * job->block_bytes));
    uint64_t signs = 0;
    for (int64_t b = 0; b < blocks; b++) {
        if (b % 64 == 0) signs = apr_rng_next(r);
        const int negative = (int)(signs >> (b % 64)) & 1;
        uint8_t *block = buf + b * job->block_bytes;
        memcpy(block + rc->d_offset, negative ? &job->d_neg : &job->d_pos, 2);
        if (rc->dmin_offset >= 0) memcpy(block + rc->dmin_offset, negative ? &job->dmin_neg : &job->dmin_pos, 2);
    }
}

static void fill_chunks(void *p, int64_t begin, int64_t end, int thread)
{
    fill_job *job = p;
    uint8_t *buf = malloc((size_t)(job->chunk_blocks * job->block_bytes));
    if (!buf) {
        fail(job, apr_error(APR_ERR_NOMEM, "synth: out of memory"));
        return;
    }
    const int64_t n_blocks = job->n / job->block_size;
    for (int64_t c = begin; c < end && !atomic_load(&job->failed); c++) {
        if (apr_interrupted()) {
            fail(job, apr_error(APR_ERR_CANCELLED, "interrupted"));
            break;
        }
        apr_rng r = rng_for(job->seed, job->tensor, c);
        const int64_t b0 = c * job->chunk_blocks;
        const int64_t blocks = n_blocks - b0 < job->chunk_blocks ? n_blocks - b0 : job->chunk_blocks;
        if (job->recipe)
            fill_blocks(job, &r, buf, blocks);
        else
            fill_values(job, &r, buf, blocks);
        apr_status st = apr_gguf_writer_write(job->w, job->tensor, (uint64_t)(b0 * job->block_bytes), buf,
                                              (uint64_t)(blocks * job->block_bytes));
        if (st != APR_OK) fail(job, st);
    }
    free(buf);
}

apr_status apr_synth_fill(apr_gguf_writer *w, int64_t i, int dtype, int64_t n, double mean, double std,
                          uint64_t seed)
{
    APR_CHECK(w, APR_ERR_INVALID, "synth: writer is NULL");
    APR_CHECK(std >= 0 && isfinite(std) && isfinite(mean), APR_ERR_INVALID, "synth: bad mean %g or std %g", mean, std);
    const char *name = apr_dtype_name(dtype);
    const block_recipe *rc = recipe_for(dtype);
    APR_CHECK(rc || dtype == APR_F32 || dtype == APR_F16 || dtype == APR_BF16, APR_ERR_UNSUPPORTED,
              "synth: cannot make random %s data", name ? name : "(unknown type)");
    APR_CHECK(!rc || mean == 0, APR_ERR_UNSUPPORTED, "synth: random %s blocks have mean 0, not %g", name, mean);
    uint64_t nbytes;
    APR_TRY(apr_dtype_nbytes(dtype, n, &nbytes));
    APR_CHECK(nbytes == apr_gguf_writer_tensor_nbytes(w, i), APR_ERR_INVALID,
              "synth: tensor %lld holds %llu bytes, not the %llu of %lld %s elements", (long long)i,
              (unsigned long long)apr_gguf_writer_tensor_nbytes(w, i), (unsigned long long)nbytes, (long long)n, name);

    fill_job job = { .w = w, .tensor = i, .dtype = dtype, .n = n, .block_size = apr_dtype_block_size(dtype),
                     .block_bytes = apr_dtype_block_bytes(dtype), .mean = (float)mean, .std = (float)std,
                     .recipe = rc, .seed = seed };
    atomic_init(&job.failed, 0);
    job.chunk_blocks = CHUNK_BYTES / job.block_bytes;
    if (rc) {
        const float d = (float)(std / rc->rms_per_d);
        job.d_pos = apr_f32_to_f16(d);
        job.d_neg = job.d_pos ^ 0x8000;
        job.dmin_pos = apr_f32_to_f16((float)rc->dmin_per_d * apr_f16_to_f32(job.d_pos));
        job.dmin_neg = job.dmin_pos ^ 0x8000;
        APR_CHECK(std == 0 || (job.d_pos & 0x7fff) != 0, APR_ERR_UNSUPPORTED,
                  "synth: std %g is too small for %s scales", std, name);
    }
    const int64_t n_blocks = n / job.block_size;
    const int64_t n_chunks = (n_blocks + job.chunk_blocks - 1) / job.chunk_blocks;
    apr_parallel_for(n_chunks, 1, fill_chunks, &job);
    if (atomic_load(&job.failed)) return apr_error(job.status, "%s", job.message);
    return APR_OK;
}
