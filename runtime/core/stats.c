/* stats.c — min, max, mean, standard deviation and NaN/Inf counts of a
 * tensor's dequantized values, on all cores.
 *
 * The array is cut into tiles whose size depends only on n, never on the
 * thread count; each tile is summarised in double precision (mean and sum
 * of squared deviations, two passes over a small buffer) and the summaries
 * are merged in tile order with Chan et al.'s pairwise update. So the result
 * is the same on any machine, and accurate for billions of elements where a
 * plain running sum of squares would cancel catastrophically. */
#include "core/quant.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/parallel.h"

#define BUF_ELEMENTS 4096        /* dequantized at a time, on the stack */
#define MIN_TILE_ELEMENTS 65536
#define MAX_TILES 16384          /* bounds the summary array */

typedef struct {
    int64_t n;       /* finite elements */
    double mean, m2; /* their mean and sum of squared deviations */
    double min, max;
    int64_t nan, inf;
} summary;

static void merge(summary *a, const summary *b)
{
    if (b->n > 0) {
        if (a->n == 0) {
            a->mean = b->mean;
            a->m2 = b->m2;
            a->min = b->min;
            a->max = b->max;
        } else {
            const double n = (double)(a->n + b->n), delta = b->mean - a->mean;
            a->mean += delta * ((double)b->n / n);
            a->m2 += b->m2 + delta * delta * ((double)a->n * (double)b->n / n);
            if (b->min < a->min) a->min = b->min;
            if (b->max > a->max) a->max = b->max;
        }
        a->n += b->n;
    }
    a->nan += b->nan;
    a->inf += b->inf;
}

/* The summary of one buffer of floats. */
static summary summarise(const float *v, int64_t k)
{
    summary s = { 0, 0, 0, INFINITY, -INFINITY, 0, 0 };
    double sum = 0;
    for (int64_t i = 0; i < k; i++) {
        const float x = v[i];
        if (isnan(x)) { s.nan++; continue; }
        if (isinf(x)) { s.inf++; continue; }
        s.n++;
        sum += x;
        if (x < s.min) s.min = x;
        if (x > s.max) s.max = x;
    }
    if (s.n == 0) return s;
    s.mean = sum / (double)s.n;
    for (int64_t i = 0; i < k; i++) {
        if (!isfinite(v[i])) continue;
        const double dev = v[i] - s.mean;
        s.m2 += dev * dev;
    }
    return s;
}

typedef struct {
    int dtype;
    const uint8_t *data;
    int64_t n, block_size, block_bytes;
    int64_t tile_blocks;    /* blocks per tile */
    summary *tiles;
    atomic_int cancelled;
} stats_job;

static void summarise_tiles(void *p, int64_t begin, int64_t end, int thread)
{
    stats_job *job = p;
    float buf[BUF_ELEMENTS];
    const int64_t blocks_per_buf = BUF_ELEMENTS / job->block_size;
    const int64_t n_blocks = job->n / job->block_size;
    for (int64_t t = begin; t < end; t++) {
        if (apr_interrupted()) { atomic_store(&job->cancelled, 1); return; }
        summary tile = { 0, 0, 0, INFINITY, -INFINITY, 0, 0 };
        int64_t b0 = t * job->tile_blocks, b1 = b0 + job->tile_blocks;
        if (b1 > n_blocks) b1 = n_blocks;
        for (int64_t b = b0; b < b1; b += blocks_per_buf) {
            const int64_t nb = b1 - b < blocks_per_buf ? b1 - b : blocks_per_buf;
            apr_status st = apr_dequantize(job->dtype, job->data + b * job->block_bytes, buf, nb * job->block_size);
            (void)st;  /* arguments were checked by the caller */
            summary s = summarise(buf, nb * job->block_size);
            merge(&tile, &s);
        }
        job->tiles[t] = tile;
    }
}

apr_status apr_tensor_stats(int dtype, const void *data, int64_t n, apr_stats *out)
{
    APR_CHECK(out, APR_ERR_INVALID, "tensor_stats: out is NULL");
    APR_CHECK(data || n == 0, APR_ERR_INVALID, "tensor_stats: data is NULL");
    APR_CHECK(apr_dtype_name(dtype), APR_ERR_UNSUPPORTED, "tensor_stats: unknown element type %d", dtype);
    APR_CHECK(apr_dtype_can_dequantize(dtype), APR_ERR_UNSUPPORTED, "tensor_stats: %s cannot be dequantized",
              apr_dtype_name(dtype));
    const int64_t bs = apr_dtype_block_size(dtype);
    APR_CHECK(n >= 0 && n % bs == 0, APR_ERR_INVALID, "tensor_stats: %lld elements are not a whole number of %s blocks",
              (long long)n, apr_dtype_name(dtype));

    stats_job job = { .dtype = dtype, .data = data, .n = n, .block_size = bs,
                      .block_bytes = apr_dtype_block_bytes(dtype) };
    atomic_init(&job.cancelled, 0);
    const int64_t n_blocks = n / bs;
    int64_t tile_elements = n / MAX_TILES + 1;
    if (tile_elements < MIN_TILE_ELEMENTS) tile_elements = MIN_TILE_ELEMENTS;
    job.tile_blocks = (tile_elements + bs - 1) / bs;
    const int64_t n_tiles = n_blocks ? (n_blocks + job.tile_blocks - 1) / job.tile_blocks : 0;
    job.tiles = calloc((size_t)(n_tiles ? n_tiles : 1), sizeof *job.tiles);
    APR_CHECK(job.tiles, APR_ERR_NOMEM, "tensor_stats: out of memory");
    apr_parallel_for(n_tiles, 1, summarise_tiles, &job);
    if (atomic_load(&job.cancelled)) {
        free(job.tiles);
        return apr_error(APR_ERR_CANCELLED, "tensor_stats: interrupted");
    }

    summary all = { 0, 0, 0, INFINITY, -INFINITY, 0, 0 };
    for (int64_t t = 0; t < n_tiles; t++) merge(&all, &job.tiles[t]);
    free(job.tiles);

    out->n = n;
    out->n_nan = all.nan;
    out->n_inf = all.inf;
    if (all.n == 0) {
        out->min = out->max = out->mean = out->std = NAN;
    } else {
        out->min = all.min;
        out->max = all.max;
        out->mean = all.mean;
        out->std = sqrt(all.m2 / (double)all.n);
    }
    return APR_OK;
}
