/* compare.c — are two tensors the same, and if not, how far apart.
 *
 * `apr diff` answers "is this APR file the GGUF it came from" for tensors
 * of gigabytes, so the comparison runs on all cores over pieces of the
 * arrays. Tensors of one type are compared block by block, bytes against
 * bytes: equal blocks are equal values (NaN payloads included), and a
 * differing block is dequantized on both sides to measure by how much.
 * Tensors of different types (a Q8_0 and a Q4_K of the same weights) are
 * dequantized piece by piece and compared as values. */
#include "core/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/parallel.h"

#define PIECE 4096               /* elements per piece: whole blocks of every type (32, 256) */

typedef struct acc {
    int64_t n_diff, first_diff, nan_mismatch, pieces_differ;
    double max_abs;
} acc;

typedef struct job {
    int ta, tb;
    const uint8_t *a, *b;
    int64_t n;
    int same_type, can_deq;
    int64_t bs_a, bb_a, bs_b, bb_b;   /* block size and bytes */
    acc per[APR_PARALLEL_MAX_THREADS];
} job;

/* Values of one range compared: counts elements whose values differ, the
 * largest |a - b|; NaN against non-NaN counts as differing without moving
 * the maximum. */
static void compare_values(acc *r, const float *x, const float *y, int64_t n, int64_t base)
{
    for (int64_t i = 0; i < n; i++) {
        float u = x[i], v = y[i];
        if (u == v || (u != u && v != v)) continue;
        if (r->first_diff < 0 || base + i < r->first_diff) r->first_diff = base + i;
        r->n_diff++;
        if (u != u || v != v) { r->nan_mismatch++; continue; }
        double d = fabs((double)u - (double)v);
        if (d > r->max_abs || d != d) r->max_abs = d;  /* inf - inf is NaN: counted as the largest */
    }
}

static void body(void *ctx, int64_t begin, int64_t end, int thread)
{
    job *j = ctx;
    acc *r = &j->per[thread];
    float x[PIECE], y[PIECE];
    for (int64_t p = begin; p < end; p++) {
        int64_t e0 = p * PIECE, n = j->n - e0 < PIECE ? j->n - e0 : PIECE;
        const uint8_t *a = j->a + e0 / j->bs_a * j->bb_a, *b = j->b + e0 / j->bs_b * j->bb_b;
        if (j->same_type) {
            size_t bytes = (size_t)(n / j->bs_a * j->bb_a);
            if (memcmp(a, b, bytes) == 0) continue;
            r->pieces_differ++;
            if (!j->can_deq) {
                /* no values to measure: count differing blocks' elements */
                for (int64_t k = 0; k < n / j->bs_a; k++) {
                    if (memcmp(a + k * j->bb_a, b + k * j->bb_a, (size_t)j->bb_a) == 0) continue;
                    if (r->first_diff < 0 || e0 + k * j->bs_a < r->first_diff) r->first_diff = e0 + k * j->bs_a;
                    r->n_diff += j->bs_a;
                }
                continue;
            }
        }
        apr_dequantize(j->ta, a, x, n);
        apr_dequantize(j->tb, b, y, n);
        compare_values(r, x, y, n, e0);
    }
}

apr_status apr_tensor_compare(int type_a, const void *a, int type_b, const void *b, int64_t n, apr_compare *out)
{
    APR_CHECK(out && (a || n == 0) && (b || n == 0) && n >= 0, APR_ERR_INVALID, "apr_tensor_compare: bad arguments");
    job *j = calloc(1, sizeof *j);
    APR_CHECK(j, APR_ERR_NOMEM, "out of memory");
    *j = (job){ .ta = type_a, .tb = type_b, .a = a, .b = b, .n = n, .same_type = type_a == type_b };
    j->bs_a = apr_dtype_block_size(type_a), j->bb_a = apr_dtype_block_bytes(type_a);
    j->bs_b = apr_dtype_block_size(type_b), j->bb_b = apr_dtype_block_bytes(type_b);
    j->can_deq = apr_dtype_can_dequantize(type_a) && apr_dtype_can_dequantize(type_b);
    apr_status s = APR_OK;
    if (j->bs_a <= 0 || j->bs_b <= 0 || n % j->bs_a || n % j->bs_b)
        s = apr_error(APR_ERR_INVALID, "apr_tensor_compare: %lld elements are not whole blocks of %s and %s",
                      (long long)n, apr_dtype_name(type_a) ? apr_dtype_name(type_a) : "?",
                      apr_dtype_name(type_b) ? apr_dtype_name(type_b) : "?");
    else if (!j->same_type && !j->can_deq)
        s = apr_error(APR_ERR_UNSUPPORTED, "cannot compare %s with %s values (no dequantization)",
                      apr_dtype_name(type_a), apr_dtype_name(type_b));
    else if (PIECE % j->bs_a || PIECE % j->bs_b)
        s = apr_error(APR_ERR_UNSUPPORTED, "apr_tensor_compare: block sizes %lld and %lld", (long long)j->bs_a,
                      (long long)j->bs_b);
    if (s == APR_OK) {
        for (int t = 0; t < APR_PARALLEL_MAX_THREADS; t++) j->per[t].first_diff = -1;
        apr_parallel_for((n + PIECE - 1) / PIECE, 16, body, j);
        acc all = { .first_diff = -1 };
        for (int t = 0; t < APR_PARALLEL_MAX_THREADS; t++) {
            const acc *r = &j->per[t];
            all.n_diff += r->n_diff;
            all.nan_mismatch += r->nan_mismatch;
            all.pieces_differ += r->pieces_differ;
            if (r->max_abs > all.max_abs || r->max_abs != r->max_abs) all.max_abs = r->max_abs;
            if (r->first_diff >= 0 && (all.first_diff < 0 || r->first_diff < all.first_diff))
                all.first_diff = r->first_diff;
        }
        *out = (apr_compare){ .n_diff = all.n_diff, .first_diff = all.first_diff, .max_abs_diff = all.max_abs,
                              .nan_mismatch = all.nan_mismatch, .measured = j->can_deq,
                              .bit_equal = j->same_type && all.pieces_differ == 0 };
    }
    free(j);
    return s;
}
