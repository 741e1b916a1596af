/* apr_write.c — converting a GGUF file to APR v2, on every core, streaming.
 *
 * The job walks the source's tensors in the order of their data (so the
 * source is read front to back, which is what a cold page cache and its
 * read-ahead want) and cuts each into chunks. A pipeline (core/pipeline.c)
 * compresses a window of chunks on the worker pool while its sink threads
 * take the previous window in order: one appends the chunks to the output
 * (core/outfile.c: a temporary name, renamed at the end), one hashes the
 * same bytes, and the third, when the caller did not know the source's
 * SHA-256, hashes the source's bytes in file order. Memory stays at two windows of chunks
 * whatever the model's size.
 *
 * A chunk that compresses by less than 1% is stored as is, straight from
 * the source's mapping (quantized weights are near-random: lz4 makes most
 * of them larger), and a tensor none of whose chunks compressed is recorded
 * with codec none, so a loader maps it in place. docs/apr-format.md is the
 * format; the measured ratios are there too. */
#include "formats/apr_format.h"
#include "core/error.h"
#include "core/outfile.h"
#include "core/parallel.h"
#include "core/pipeline.h"

#include <inttypes.h>
#include <lz4.h>
#include <lz4hc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <zstd.h>

/* ===================================================================== */
/* Structures                                                            */
/* ===================================================================== */

typedef struct wtensor {
    apr_gguf_tensor_info g;    /* the source's */
    uint32_t chunk_bytes, n_chunks;
    int64_t first_chunk;       /* in index order */
    int filter;
    uint32_t compressed;       /* chunks stored compressed (sink 0) */
} wtensor;

typedef struct job { int64_t tensor; uint32_t chunk; } job;

/* What a work call leaves in its slot for the sinks. */
typedef struct slot {
    uint8_t *buf;              /* compressed bytes (bound of the largest chunk) */
    const uint8_t *bytes;      /* what to store: buf, or the source's raw bytes */
    uint32_t stored;
} slot;

struct apr_aprf_writer {
    const apr_gguf *src;
    apr_aprf_write_params p;
    int threads, window;
    wtensor *t;                /* [n_tensors], index order */
    int64_t n_tensors;
    job *jobs;                 /* [n_jobs], data order */
    int64_t n_jobs, next_job;
    apr_aprf_chunk_info *chunks;   /* [n_jobs], index order */
    slot *slots;               /* [2 * window] */
    uint8_t *scratch;          /* [threads][max chunk]: the byte planes of a chunk */
    uint32_t max_chunk;
    uint64_t done, total;      /* raw bytes handed to the pipeline, of all */
    apr_pipeline *pipe;
    apr_outfile out;
    uint64_t data_offset, meta_size;
    /* the source's SHA-256, hashed by sink 1 in file order */
    apr_sha256 *src_sha;
    uint64_t src_pos;          /* bytes of the source hashed */
    int hash_source;
    uint64_t hashed;           /* bytes of the output hashed (sink_output_hash) */
    uint8_t source_sha[32], file_sha[32];
    uint64_t file_size;
    int finished;
};

/* ===================================================================== */
/* Helpers                                                               */
/* ===================================================================== */

void apr_aprf_write_params_default(apr_aprf_write_params *p)
{
    memset(p, 0, sizeof *p);
    p->codec = APR_CODEC_LZ4;
    p->filter = APR_FILTER_AUTO;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int parse_hex(const char *hex, uint8_t *out)
{
    if (strlen(hex) != 64) return 0;
    for (int i = 0; i < 32; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return 0;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 1;
}

static int by_source_offset(const void *a, const void *b, void *ctx)
{
    const wtensor *t = ctx;
    uint64_t x = t[*(const int64_t *)a].g.offset, y = t[*(const int64_t *)b].g.offset;
    return x < y ? -1 : x > y;
}

static size_t bound(int codec, uint32_t n)
{
    if (codec == APR_CODEC_LZ4) return (size_t)LZ4_compressBound((int)n);
    if (codec == APR_CODEC_ZSTD) return ZSTD_compressBound(n);
    return 0;
}

/* ===================================================================== */
/* Work: checksum and compress one chunk (any thread)                    */
/* ===================================================================== */

typedef struct codec_state {
    ZSTD_CCtx *zstd;
    void *lz4hc;
} codec_state;

/* Kept per thread for the process's life: the pool's threads are too. */
static codec_state *thread_codec(void)
{
    static _Thread_local codec_state st;
    return &st;
}

static apr_status work(void *ctx, int64_t j, int slot_index, int thread)
{
    apr_aprf_writer *w = ctx;
    const job *jb = &w->jobs[j];
    const wtensor *t = &w->t[jb->tensor];
    const uint64_t at = (uint64_t)jb->chunk * t->chunk_bytes;
    const uint32_t raw = (uint32_t)(t->g.nbytes - at < t->chunk_bytes ? t->g.nbytes - at : t->chunk_bytes);
    const uint8_t *src = (const uint8_t *)apr_gguf_base(w->src) + apr_gguf_data_offset(w->src) + t->g.offset + at;
    slot *s = &w->slots[slot_index];
    apr_aprf_chunk_info *k = &w->chunks[t->first_chunk + jb->chunk];
    k->raw = raw;
    k->checksum = XXH3_64bits(src, raw);
    s->bytes = src;
    s->stored = raw;
    if (w->p.codec == APR_CODEC_NONE) return APR_OK;

    const uint8_t *in = src;
    if (t->filter == APR_FILTER_BYTEPLANE) {
        uint8_t *planes = w->scratch + (size_t)thread * w->max_chunk;
        size_t rec = aprf_record_bytes(t->g.type);
        aprf_planes_split(planes, src, raw / rec, rec);
        in = planes;
    }
    codec_state *cs = thread_codec();
    size_t cap = bound(w->p.codec, raw), n = 0;
    if (w->p.codec == APR_CODEC_LZ4) {
        if (w->p.level <= 1) {
            n = (size_t)LZ4_compress_default((const char *)in, (char *)s->buf, (int)raw, (int)cap);
        } else {
            if (!cs->lz4hc) cs->lz4hc = malloc((size_t)LZ4_sizeofStateHC());
            if (!cs->lz4hc) return apr_error(APR_ERR_NOMEM, "out of memory for an LZ4HC state");
            n = (size_t)LZ4_compress_HC_extStateHC(cs->lz4hc, (const char *)in, (char *)s->buf, (int)raw, (int)cap,
                                                   w->p.level);
        }
        if (n == 0) return apr_error(APR_ERR_INVALID, "tensor '%s' chunk %" PRIu32 ": LZ4 failed", t->g.name, jb->chunk);
    } else {
        if (!cs->zstd) cs->zstd = ZSTD_createCCtx();
        if (!cs->zstd) return apr_error(APR_ERR_NOMEM, "out of memory for a zstd context");
        n = ZSTD_compressCCtx(cs->zstd, s->buf, cap, in, raw, w->p.level);
        if (ZSTD_isError(n))
            return apr_error(APR_ERR_INVALID, "tensor '%s' chunk %" PRIu32 ": zstd: %s", t->g.name, jb->chunk,
                             ZSTD_getErrorName(n));
    }
    /* kept only when it saves at least 1%: below that, decoding costs more
     * than the bytes saved */
    if (n < (size_t)raw - raw / 100) {
        s->bytes = s->buf;
        s->stored = (uint32_t)n;
    }
    return APR_OK;
}

/* ===================================================================== */
/* Sinks: append to the output; hash the source (in job order)           */
/* ===================================================================== */

/* The output's bytes are appended by one sink and hashed by another, in the
 * same order: writing (a copy into the page cache) and SHA-256 (the slowest
 * sequential step, ~1-2 GB/s a core) overlap instead of adding up. Both lay
 * the chunks out the same way: each tensor's first at a multiple of 4096. */
static uint64_t pad_to_align(uint64_t pos) { return (APRF_ALIGN - pos % APRF_ALIGN) % APRF_ALIGN; }

static apr_status sink_output(void *ctx, int64_t j, int slot_index)
{
    apr_aprf_writer *w = ctx;
    const job *jb = &w->jobs[j];
    wtensor *t = &w->t[jb->tensor];
    const slot *s = &w->slots[slot_index];
    if (jb->chunk == 0) APR_TRY(apr_outfile_append(&w->out, NULL, pad_to_align(w->out.pos)));
    apr_aprf_chunk_info *k = &w->chunks[t->first_chunk + jb->chunk];
    k->offset = w->out.pos;
    k->stored = s->stored;
    if (s->stored != k->raw) t->compressed++;
    return apr_outfile_append(&w->out, s->bytes, s->stored);
}

static apr_status sink_output_hash(void *ctx, int64_t j, int slot_index)
{
    apr_aprf_writer *w = ctx;
    const slot *s = &w->slots[slot_index];
    if (w->jobs[j].chunk == 0) {
        uint64_t pad = pad_to_align(w->hashed);
        apr_outfile_hash(&w->out, NULL, pad);
        w->hashed += pad;
    }
    apr_outfile_hash(&w->out, s->bytes, s->stored);
    w->hashed += s->stored;
    return APR_OK;
}

/* Hashes the source's bytes up to `end` (data section bytes no tensor
 * covers, in file order). */
static void hash_source_to(apr_aprf_writer *w, uint64_t end)
{
    if (end > w->src_pos) {
        apr_sha256_update(w->src_sha, (const uint8_t *)apr_gguf_base(w->src) + w->src_pos, end - w->src_pos);
        w->src_pos = end;
    }
}

static apr_status sink_source(void *ctx, int64_t j, int slot_index)
{
    apr_aprf_writer *w = ctx;
    const job *jb = &w->jobs[j];
    const wtensor *t = &w->t[jb->tensor];
    const uint64_t begin = apr_gguf_data_offset(w->src) + t->g.offset + (uint64_t)jb->chunk * t->chunk_bytes;
    hash_source_to(w, begin);
    hash_source_to(w, begin + w->chunks[t->first_chunk + jb->chunk].raw);
    return APR_OK;
}

/* ===================================================================== */
/* Lifecycle                                                             */
/* ===================================================================== */

static apr_status plan(apr_aprf_writer *w)
{
    const apr_gguf *src = w->src;
    w->n_tensors = apr_gguf_n_tensors(src);
    w->t = calloc((size_t)w->n_tensors + 1, sizeof *w->t);
    int64_t *order = malloc(((size_t)w->n_tensors + 1) * sizeof *order);
    if (!w->t || !order) {
        free(order);
        return apr_error(APR_ERR_NOMEM, "out of memory planning the conversion");
    }
    for (int64_t i = 0; i < w->n_tensors; i++) {
        wtensor *t = &w->t[i];
        APR_TRY(apr_gguf_tensor(src, i, &t->g));
        APR_CHECK(t->g.data, APR_ERR_INVALID, "%s: tensor '%s' has no data in memory", apr_gguf_path(src), t->g.name);
        t->chunk_bytes = aprf_chunk_bytes(t->g.type, t->g.nbytes, w->p.chunk_bytes);
        t->n_chunks = (uint32_t)(t->g.nbytes / t->chunk_bytes + (t->g.nbytes % t->chunk_bytes != 0));
        t->first_chunk = w->n_jobs;
        w->n_jobs += t->n_chunks;
        w->total += t->g.nbytes;
        int filter = w->p.filter == APR_FILTER_AUTO ? (w->p.codec == APR_CODEC_ZSTD ? APR_FILTER_BYTEPLANE : APR_FILTER_NONE)
                                                    : w->p.filter;
        /* nothing to separate in one-byte records; nothing to filter uncompressed */
        if (aprf_record_bytes(t->g.type) < 2 || w->p.codec == APR_CODEC_NONE) filter = APR_FILTER_NONE;
        t->filter = filter;
        if (t->chunk_bytes > w->max_chunk) w->max_chunk = t->chunk_bytes;
        order[i] = i;
    }
    qsort_r(order, (size_t)w->n_tensors, sizeof *order, by_source_offset, w->t);
    w->jobs = malloc(((size_t)w->n_jobs + 1) * sizeof *w->jobs);
    w->chunks = calloc((size_t)w->n_jobs + 1, sizeof *w->chunks);
    if (!w->jobs || !w->chunks) {
        free(order);
        return apr_error(APR_ERR_NOMEM, "out of memory planning the conversion");
    }
    int64_t j = 0;
    for (int64_t k = 0; k < w->n_tensors; k++)
        for (uint32_t c = 0; c < w->t[order[k]].n_chunks; c++) w->jobs[j++] = (job){ order[k], c };
    free(order);
    return APR_OK;
}

static apr_status alloc_buffers(apr_aprf_writer *w)
{
    w->slots = calloc((size_t)w->window * 2, sizeof *w->slots);
    APR_CHECK(w->slots, APR_ERR_NOMEM, "out of memory for the conversion's buffers");
    if (w->p.codec == APR_CODEC_NONE) return APR_OK;
    size_t cap = bound(w->p.codec, w->max_chunk);
    for (int i = 0; i < 2 * w->window; i++) {
        w->slots[i].buf = malloc(cap);
        APR_CHECK(w->slots[i].buf, APR_ERR_NOMEM, "out of memory for the conversion's buffers (%d x %zu bytes)",
                  2 * w->window, cap);
    }
    w->scratch = malloc((size_t)w->threads * w->max_chunk + 1);
    APR_CHECK(w->scratch, APR_ERR_NOMEM, "out of memory for the conversion's buffers");
    return APR_OK;
}

/* The header and the source's header (the metadata section), padded. */
static apr_status write_head(apr_aprf_writer *w)
{
    const apr_gguf *src = w->src;
    uint64_t gguf_size = apr_gguf_file_size(src), data = apr_gguf_data_offset(src);
    w->meta_size = data < gguf_size ? data : gguf_size;
    const uint8_t *meta = apr_gguf_base(src);
    uint8_t h[APRF_HEADER_SIZE] = { 0 };
    memcpy(h + APRF_H_MAGIC, APRF_MAGIC, 4);
    aprf_put32(h + APRF_H_VERSION, APRF_VERSION);
    aprf_put32(h + APRF_H_SIZE, APRF_HEADER_SIZE);
    aprf_put32(h + APRF_H_FLAGS, APRF_FLAG_GGUF_META);
    aprf_put64(h + APRF_H_META_OFFSET, APRF_HEADER_SIZE);
    aprf_put64(h + APRF_H_META_SIZE, w->meta_size);
    w->data_offset = (APRF_HEADER_SIZE + w->meta_size + APRF_ALIGN - 1) / APRF_ALIGN * APRF_ALIGN;
    aprf_put64(h + APRF_H_DATA_OFFSET, w->data_offset);
    aprf_put64(h + APRF_H_GGUF_SIZE, gguf_size);
    aprf_put64(h + APRF_H_N_TENSORS, (uint64_t)w->n_tensors);
    aprf_put64(h + APRF_H_META_XXH, XXH3_64bits(meta, w->meta_size));
    aprf_put64(h + APRF_H_XXH, XXH3_64bits(h, APRF_H_XXH));
    APR_TRY(apr_outfile_write(&w->out, h, sizeof h));
    APR_TRY(apr_outfile_write(&w->out, meta, w->meta_size));
    return apr_outfile_pad(&w->out, APRF_ALIGN);
}

apr_status apr_aprf_writer_new(const apr_gguf *src, const char *path, const apr_aprf_write_params *params,
                               apr_aprf_writer **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_aprf_writer_new: out is NULL");
    *out = NULL;
    APR_CHECK(src && path, APR_ERR_INVALID, "apr_aprf_writer_new: NULL argument");
    apr_aprf_write_params defaults;
    apr_aprf_write_params_default(&defaults);
    const apr_aprf_write_params *p = params ? params : &defaults;
    APR_CHECK(apr_codec_name(p->codec), APR_ERR_INVALID, "unknown codec %d", p->codec);
    APR_CHECK(p->filter == APR_FILTER_AUTO || apr_filter_name(p->filter), APR_ERR_INVALID, "unknown filter %d",
              p->filter);
    APR_CHECK(p->chunk_bytes <= APRF_MAX_CHUNK, APR_ERR_INVALID, "chunks of %" PRIu32 " bytes: at most %u",
              p->chunk_bytes, APRF_MAX_CHUNK);
    if (p->codec == APR_CODEC_LZ4)
        APR_CHECK(p->level >= 0 && p->level <= LZ4HC_CLEVEL_MAX, APR_ERR_INVALID, "lz4 level %d: 1 to %d", p->level,
                  LZ4HC_CLEVEL_MAX);
    if (p->codec == APR_CODEC_ZSTD)
        APR_CHECK(p->level >= 0 && p->level <= ZSTD_maxCLevel(), APR_ERR_INVALID, "zstd level %d: 1 to %d", p->level,
                  ZSTD_maxCLevel());
    apr_aprf_writer *w = calloc(1, sizeof *w);
    APR_CHECK(w, APR_ERR_NOMEM, "out of memory");
    w->out.fd = -1;
    w->src = src;
    w->p = *p;
    w->p.source_sha256 = NULL;
    if (w->p.level == 0) w->p.level = p->codec == APR_CODEC_ZSTD ? 3 : p->codec == APR_CODEC_LZ4 ? 1 : 0;
    w->threads = p->threads > 0 ? p->threads : apr_parallel_threads();
    if (w->threads > APR_PARALLEL_MAX_THREADS) w->threads = APR_PARALLEL_MAX_THREADS;
    w->window = w->threads * 2 < 4 ? 4 : w->threads * 2;
    apr_status s = APR_OK;
    if (p->source_sha256) {
        s = parse_hex(p->source_sha256, w->source_sha) ? APR_OK
            : apr_error(APR_ERR_INVALID, "source SHA-256 '%.80s' is not 64 hex digits", p->source_sha256);
    } else {
        w->hash_source = 1;
        w->src_sha = apr_sha256_new();
        if (!w->src_sha) s = apr_error(APR_ERR_NOMEM, "out of memory");
    }
    if (s == APR_OK) s = plan(w);
    if (s == APR_OK) s = alloc_buffers(w);
    if (s == APR_OK) s = apr_outfile_open(&w->out, path);
    if (s == APR_OK) s = write_head(w);
    if (s == APR_OK && w->hash_source) hash_source_to(w, w->meta_size);
    if (s == APR_OK) {
        w->hashed = w->out.pos;
        apr_pipeline_sink_fn sinks[3] = { sink_output, sink_output_hash, sink_source };
        s = apr_pipeline_new(w->window, w->threads, w->hash_source ? 3 : 2, sinks, w, &w->pipe);
    }
    if (s != APR_OK) {
        apr_aprf_writer_free(w);
        return s;
    }
    *out = w;
    return APR_OK;
}

apr_status apr_aprf_writer_step(apr_aprf_writer *w, apr_aprf_progress *progress)
{
    APR_CHECK(w, APR_ERR_INVALID, "apr_aprf_writer_step: w is NULL");
    APR_CHECK(!w->finished, APR_ERR_INVALID, "apr_aprf_writer_step: the job is finished");
    if (apr_interrupted()) return apr_error(APR_ERR_CANCELLED, "interrupted");
    if (w->next_job < w->n_jobs) {
        int n = w->n_jobs - w->next_job < w->window ? (int)(w->n_jobs - w->next_job) : w->window;
        APR_TRY(apr_pipeline_run(w->pipe, w->next_job, n, work));
        for (int j = 0; j < n; j++) w->done += w->chunks[w->t[w->jobs[w->next_job + j].tensor].first_chunk +
                                                         w->jobs[w->next_job + j].chunk].raw;
        w->next_job += n;
    }
    if (progress) *progress = (apr_aprf_progress){ w->done, w->total, w->next_job == w->n_jobs };
    return APR_OK;
}

/* The source's data-section bytes no tensor covers, in file order. */
static apr_status write_gaps(apr_aprf_writer *w, uint64_t *size, uint64_t *sum)
{
    const uint8_t *base = apr_gguf_base(w->src);
    uint64_t pos = apr_gguf_data_offset(w->src), end = apr_gguf_file_size(w->src);
    XXH3_state_t *x = XXH3_createState();
    APR_CHECK(x, APR_ERR_NOMEM, "out of memory");
    XXH3_64bits_reset(x);
    apr_status s = APR_OK;
    uint64_t start = w->out.pos;
    for (int64_t j = 0; j <= w->n_jobs && s == APR_OK; j++) {
        uint64_t begin = end;
        if (j < w->n_jobs) {
            if (w->jobs[j].chunk) continue;
            begin = apr_gguf_data_offset(w->src) + w->t[w->jobs[j].tensor].g.offset;
        }
        if (begin > pos) {
            XXH3_64bits_update(x, base + pos, begin - pos);
            s = apr_outfile_write(&w->out, base + pos, begin - pos);
        }
        if (j < w->n_jobs && begin + w->t[w->jobs[j].tensor].g.nbytes > pos)
            pos = begin + w->t[w->jobs[j].tensor].g.nbytes;
    }
    *size = w->out.pos - start;
    *sum = XXH3_64bits_digest(x);
    XXH3_freeState(x);
    return s;
}

static apr_status write_index(apr_aprf_writer *w, uint64_t *size, uint64_t *sum)
{
    uint64_t names = 0;
    for (int64_t i = 0; i < w->n_tensors; i++) names += strlen(w->t[i].g.name);
    uint64_t n = (uint64_t)w->n_tensors * APRF_TENSOR_REC + (uint64_t)w->n_jobs * APRF_CHUNK_REC + names;
    uint8_t *ix = calloc(1, n + 1);
    APR_CHECK(ix, APR_ERR_NOMEM, "out of memory for the index (%" PRIu64 " bytes)", n);
    uint8_t *chunk_recs = ix + (uint64_t)w->n_tensors * APRF_TENSOR_REC;
    uint8_t *name_at = chunk_recs + (uint64_t)w->n_jobs * APRF_CHUNK_REC;
    uint64_t name_off = 0;
    for (int64_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->t[i];
        uint8_t *r = ix + (uint64_t)i * APRF_TENSOR_REC;
        size_t len = strlen(t->g.name);
        memcpy(name_at + name_off, t->g.name, len);
        aprf_put64(r + APRF_R_NAME_OFF, name_off);
        aprf_put32(r + APRF_R_NAME_LEN, (uint32_t)len);
        name_off += len;
        aprf_put32(r + APRF_R_DTYPE, (uint32_t)t->g.type);
        aprf_put32(r + APRF_R_N_DIMS, (uint32_t)t->g.n_dims);
        /* a tensor none of whose chunks compressed is stored as is: mapped in place */
        int codec = t->compressed ? w->p.codec : APR_CODEC_NONE;
        r[APRF_R_CODEC] = (uint8_t)codec;
        r[APRF_R_FILTER] = (uint8_t)(codec == APR_CODEC_NONE ? APR_FILTER_NONE : t->filter);
        r[APRF_R_LEVEL] = (uint8_t)(int8_t)(codec == APR_CODEC_NONE ? 0 : w->p.level);
        for (int d = 0; d < 4; d++) aprf_put64(r + APRF_R_NE + 8 * d, (uint64_t)t->g.ne[d]);
        aprf_put64(r + APRF_R_NBYTES, t->g.nbytes);
        aprf_put64(r + APRF_R_SOURCE_OFFSET, t->g.offset);
        aprf_put64(r + APRF_R_FIRST_CHUNK, (uint64_t)t->first_chunk);
        aprf_put32(r + APRF_R_N_CHUNKS, t->n_chunks);
        aprf_put32(r + APRF_R_CHUNK_BYTES, t->chunk_bytes);
    }
    for (int64_t c = 0; c < w->n_jobs; c++) {
        uint8_t *r = chunk_recs + (uint64_t)c * APRF_CHUNK_REC;
        aprf_put64(r, w->chunks[c].offset);
        aprf_put32(r + 8, w->chunks[c].stored);
        aprf_put32(r + 12, w->chunks[c].raw);
        aprf_put64(r + 16, w->chunks[c].checksum);
    }
    *size = n;
    *sum = XXH3_64bits(ix, n);
    apr_status s = apr_outfile_write(&w->out, ix, n);
    free(ix);
    return s;
}

apr_status apr_aprf_writer_finish(apr_aprf_writer *w)
{
    APR_CHECK(w, APR_ERR_INVALID, "apr_aprf_writer_finish: w is NULL");
    APR_CHECK(!w->finished && w->next_job == w->n_jobs, APR_ERR_INVALID,
              "apr_aprf_writer_finish: %" PRId64 " chunks not written yet", w->n_jobs - w->next_job);
    APR_TRY(apr_pipeline_drain(w->pipe));
    uint64_t gaps_offset = w->out.pos, gaps_size = 0, gaps_sum = 0, index_size = 0, index_sum = 0;
    APR_TRY(write_gaps(w, &gaps_size, &gaps_sum));
    uint64_t index_offset = w->out.pos;
    APR_TRY(write_index(w, &index_size, &index_sum));
    if (w->hash_source) {
        hash_source_to(w, apr_gguf_file_size(w->src));
        apr_sha256_final(w->src_sha, w->source_sha, NULL);
    }
    apr_outfile_digest(&w->out, w->file_sha);
    uint8_t t[APRF_TRAILER_SIZE] = { 0 };
    aprf_put64(t + APRF_T_INDEX_OFFSET, index_offset);
    aprf_put64(t + APRF_T_INDEX_SIZE, index_size);
    aprf_put64(t + APRF_T_N_CHUNKS, (uint64_t)w->n_jobs);
    aprf_put64(t + APRF_T_GAPS_OFFSET, gaps_offset);
    aprf_put64(t + APRF_T_GAPS_SIZE, gaps_size);
    aprf_put64(t + APRF_T_INDEX_XXH, index_sum);
    aprf_put64(t + APRF_T_GAPS_XXH, gaps_sum);
    aprf_put32(t + APRF_T_FLAGS, APRF_TRAILER_SOURCE_SHA);
    memcpy(t + APRF_T_SOURCE_SHA, w->source_sha, 32);
    memcpy(t + APRF_T_FILE_SHA, w->file_sha, 32);
    aprf_put64(t + APRF_T_XXH, XXH3_64bits(t, APRF_T_XXH));
    aprf_put32(t + APRF_T_SIZE, APRF_TRAILER_SIZE);
    memcpy(t + APRF_T_MAGIC, APRF_MAGIC, 4);
    APR_TRY(apr_outfile_write(&w->out, t, sizeof t));
    w->file_size = w->out.pos;
    APR_TRY(apr_outfile_commit(&w->out));
    w->finished = 1;
    return APR_OK;
}

void apr_aprf_writer_digests(const apr_aprf_writer *w, char *file_sha256, char *source_sha256)
{
    if (!w) return;
    if (file_sha256) aprf_hex(w->file_sha, file_sha256);
    if (source_sha256) aprf_hex(w->source_sha, source_sha256);
}

uint64_t apr_aprf_writer_file_size(const apr_aprf_writer *w) { return w ? w->file_size : 0; }

void apr_aprf_writer_free(apr_aprf_writer *w)
{
    if (!w) return;
    apr_pipeline_free(w->pipe);
    apr_outfile_discard(&w->out);
    for (int i = 0; w->slots && i < 2 * w->window; i++) free(w->slots[i].buf);
    free(w->slots);
    free(w->scratch);
    free(w->t);
    free(w->jobs);
    free(w->chunks);
    apr_sha256_free(w->src_sha);
    free(w);
}
