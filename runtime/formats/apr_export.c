/* apr_export.c — writing back the GGUF file an APR file was made from.
 *
 * The GGUF's bytes are, in order: its header (the APR metadata section,
 * verbatim), then its data section, where each tensor's bytes sit at their
 * recorded offset and every byte between or after them is one of the kept
 * gaps. So the export writes the metadata, then walks the tensors in the
 * order of their GGUF offsets, writing the gap bytes before each and then its
 * chunks, decoded and checked on the worker pool a window at a time
 * (core/pipeline.c) while sink threads append the previous window to the
 * output in order and hash it. At the end the SHA-256 of what was written
 * must equal the source's, when the APR file recorded it: the promise that
 * APR -> GGUF gives back the original file is checked, not assumed. */
#include "formats/apr_format.h"
#include "core/error.h"
#include "core/outfile.h"
#include "core/parallel.h"
#include "core/pipeline.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef struct job { int64_t tensor; uint32_t chunk; } job;

typedef struct slot {
    uint8_t *buf;              /* a decoded chunk */
    const uint8_t *bytes;      /* buf, or the chunk in the mapping when kept as is */
    uint32_t n;
} slot;

struct apr_aprf_export {
    const apr_aprf *f;
    int threads, window;
    job *jobs;                 /* [n_jobs], in GGUF data order */
    int64_t n_jobs, next_job;
    slot *slots;               /* [2 * window] */
    uint8_t *scratch;          /* [threads][scratch bytes] */
    uint64_t scratch_bytes;
    uint64_t done, total;
    apr_pipeline *pipe;
    apr_outfile out;
    const uint8_t *gaps;       /* the kept gap bytes, consumed in order */
    uint64_t gaps_size;
    uint64_t write_pos, gaps_used;         /* the appending sink's place */
    uint64_t hash_pos, hash_gaps_used;     /* the hashing sink's */
    uint64_t gguf_data;        /* the GGUF's data offset */
    uint8_t sha[32];
    int finished;
};

static int by_offset(const void *a, const void *b, void *ctx)
{
    const apr_aprf *f = ctx;
    apr_aprf_tensor_info x, y;
    apr_aprf_tensor(f, *(const int64_t *)a, &x);
    apr_aprf_tensor(f, *(const int64_t *)b, &y);
    return x.source_offset < y.source_offset ? -1 : x.source_offset > y.source_offset;
}

static apr_status work(void *ctx, int64_t j, int slot_index, int thread)
{
    apr_aprf_export *x = ctx;
    const job *jb = &x->jobs[j];
    slot *s = &x->slots[slot_index];
    apr_aprf_chunk_info k;
    APR_TRY(apr_aprf_chunk(x->f, jb->tensor, jb->chunk, &k));
    uint8_t *scratch = x->scratch + (uint64_t)thread * x->scratch_bytes;
    s->n = k.raw;
    if (k.stored == k.raw) {
        /* kept as is: checked in place, written from the mapping */
        s->bytes = (const uint8_t *)apr_aprf_base(x->f) + k.offset;
        return apr_aprf_read_chunk(x->f, jb->tensor, jb->chunk, NULL, scratch);
    }
    s->bytes = s->buf;
    return apr_aprf_read_chunk(x->f, jb->tensor, jb->chunk, s->buf, scratch);
}

/* The gap bytes between GGUF offsets `pos` and `to` (those of the kept
 * gaps from *used on), passed to put (append or hash); the reader checked
 * that the gaps hold exactly the uncovered bytes, so they never run short. */
static apr_status gap_to(apr_aprf_export *x, uint64_t *pos, uint64_t *used, uint64_t to, int hash)
{
    if (to <= *pos) return APR_OK;
    uint64_t n = to - *pos;
    APR_CHECK(n <= x->gaps_size - *used, APR_ERR_FORMAT, "%s: the gaps run short at GGUF byte %" PRIu64,
              apr_aprf_path(x->f), *pos);
    if (hash) apr_outfile_hash(&x->out, x->gaps + *used, n);
    else APR_TRY(apr_outfile_append(&x->out, x->gaps + *used, n));
    *used += n;
    *pos += n;
    return APR_OK;
}

/* One sink appends the GGUF's bytes, another hashes them in the same order
 * (apr_write.c says why). */
static apr_status put_job(apr_aprf_export *x, int64_t j, int slot_index, uint64_t *pos, uint64_t *used, int hash)
{
    const job *jb = &x->jobs[j];
    apr_aprf_tensor_info t;
    APR_TRY(apr_aprf_tensor(x->f, jb->tensor, &t));
    if (jb->chunk == 0) APR_TRY(gap_to(x, pos, used, x->gguf_data + t.source_offset, hash));
    const slot *s = &x->slots[slot_index];
    *pos += s->n;
    if (hash) {
        apr_outfile_hash(&x->out, s->bytes, s->n);
        return APR_OK;
    }
    return apr_outfile_append(&x->out, s->bytes, s->n);
}

static apr_status sink(void *ctx, int64_t j, int slot_index)
{
    apr_aprf_export *x = ctx;
    return put_job(x, j, slot_index, &x->write_pos, &x->gaps_used, 0);
}

static apr_status sink_hash(void *ctx, int64_t j, int slot_index)
{
    apr_aprf_export *x = ctx;
    return put_job(x, j, slot_index, &x->hash_pos, &x->hash_gaps_used, 1);
}

apr_status apr_aprf_export_new(const apr_aprf *f, const char *path, int threads, apr_aprf_export **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_aprf_export_new: out is NULL");
    *out = NULL;
    APR_CHECK(f && path, APR_ERR_INVALID, "apr_aprf_export_new: NULL argument");
    apr_aprf_export *x = calloc(1, sizeof *x);
    APR_CHECK(x, APR_ERR_NOMEM, "out of memory");
    x->out.fd = -1;
    x->f = f;
    x->threads = threads > 0 ? threads : apr_parallel_threads();
    if (x->threads > APR_PARALLEL_MAX_THREADS) x->threads = APR_PARALLEL_MAX_THREADS;
    x->window = x->threads * 2 < 4 ? 4 : x->threads * 2;
    x->gguf_data = apr_gguf_data_offset(apr_aprf_metadata(f));
    x->gaps = aprf_gaps_bytes(f, &x->gaps_size);
    int64_t nt = apr_aprf_n_tensors(f);
    int64_t *order = malloc(((size_t)nt + 1) * sizeof *order);
    apr_status s = order ? APR_OK : apr_error(APR_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; s == APR_OK && i < nt; i++) {
        apr_aprf_tensor_info t;
        apr_aprf_tensor(f, i, &t);
        order[i] = i;
        x->n_jobs += t.n_chunks;
        x->total += t.nbytes;
    }
    if (s == APR_OK) {
        qsort_r(order, (size_t)nt, sizeof *order, by_offset, (void *)f);
        x->jobs = malloc(((size_t)x->n_jobs + 1) * sizeof *x->jobs);
        x->slots = calloc((size_t)x->window * 2, sizeof *x->slots);
        x->scratch_bytes = apr_aprf_scratch_bytes(f);
        x->scratch = malloc((size_t)x->threads * x->scratch_bytes + 1);
        if (!x->jobs || !x->slots || !x->scratch) s = apr_error(APR_ERR_NOMEM, "out of memory for the export");
    }
    int64_t j = 0;
    for (int64_t k = 0; s == APR_OK && k < nt; k++) {
        apr_aprf_tensor_info t;
        apr_aprf_tensor(f, order[k], &t);
        for (uint32_t c = 0; c < t.n_chunks; c++) x->jobs[j++] = (job){ order[k], c };
    }
    free(order);
    for (int i = 0; s == APR_OK && i < 2 * x->window; i++) {
        x->slots[i].buf = malloc(x->scratch_bytes / 2 + 1);
        if (!x->slots[i].buf) s = apr_error(APR_ERR_NOMEM, "out of memory for the export's buffers");
    }
    if (s == APR_OK) s = apr_outfile_open(&x->out, path);
    if (s == APR_OK) {
        uint64_t n;
        const uint8_t *meta = aprf_meta_bytes(f, &n);
        s = apr_outfile_write(&x->out, meta, n);
        x->write_pos = x->hash_pos = n;
    }
    if (s == APR_OK) {
        apr_pipeline_sink_fn sinks[2] = { sink, sink_hash };
        s = apr_pipeline_new(x->window, x->threads, 2, sinks, x, &x->pipe);
    }
    if (s != APR_OK) {
        apr_aprf_export_free(x);
        return s;
    }
    *out = x;
    return APR_OK;
}

apr_status apr_aprf_export_step(apr_aprf_export *x, apr_aprf_progress *progress)
{
    APR_CHECK(x, APR_ERR_INVALID, "apr_aprf_export_step: x is NULL");
    APR_CHECK(!x->finished, APR_ERR_INVALID, "apr_aprf_export_step: the job is finished");
    if (apr_interrupted()) return apr_error(APR_ERR_CANCELLED, "interrupted");
    if (x->next_job < x->n_jobs) {
        int n = x->n_jobs - x->next_job < x->window ? (int)(x->n_jobs - x->next_job) : x->window;
        APR_TRY(apr_pipeline_run(x->pipe, x->next_job, n, work));
        for (int j = 0; j < n; j++) {
            apr_aprf_chunk_info k;
            apr_aprf_chunk(x->f, x->jobs[x->next_job + j].tensor, x->jobs[x->next_job + j].chunk, &k);
            x->done += k.raw;
        }
        x->next_job += n;
    }
    if (progress) *progress = (apr_aprf_progress){ x->done, x->total, x->next_job == x->n_jobs };
    return APR_OK;
}

apr_status apr_aprf_export_finish(apr_aprf_export *x)
{
    APR_CHECK(x, APR_ERR_INVALID, "apr_aprf_export_finish: x is NULL");
    APR_CHECK(!x->finished && x->next_job == x->n_jobs, APR_ERR_INVALID,
              "apr_aprf_export_finish: %" PRId64 " chunks not written yet", x->n_jobs - x->next_job);
    APR_TRY(apr_pipeline_drain(x->pipe));
    APR_TRY(gap_to(x, &x->hash_pos, &x->hash_gaps_used, apr_aprf_gguf_size(x->f), 1));
    APR_TRY(gap_to(x, &x->write_pos, &x->gaps_used, apr_aprf_gguf_size(x->f), 0));
    apr_outfile_digest(&x->out, x->sha);
    char want[65], got[65];
    aprf_hex(x->sha, got);
    if (apr_aprf_source_sha256(x->f, want) && strcmp(want, got) != 0)
        return apr_error(APR_ERR_FORMAT, "%s: the GGUF written has SHA-256 %s, but the source's was %s",
                         apr_aprf_path(x->f), got, want);
    APR_TRY(apr_outfile_commit(&x->out));
    x->finished = 1;
    return APR_OK;
}

void apr_aprf_export_sha256(const apr_aprf_export *x, char *hex)
{
    if (x && hex) aprf_hex(x->sha, hex);
}

void apr_aprf_export_free(apr_aprf_export *x)
{
    if (!x) return;
    apr_pipeline_free(x->pipe);
    apr_outfile_discard(&x->out);
    for (int i = 0; x->slots && i < 2 * x->window; i++) free(x->slots[i].buf);
    free(x->slots);
    free(x->scratch);
    free(x->jobs);
    free(x);
}
