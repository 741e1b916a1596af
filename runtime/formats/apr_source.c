/* apr_source.c — an APR v2 file as a model source (formats/source.h).
 *
 * Metadata comes from the kept GGUF header, through the GGUF reader, so an
 * APR file answers every key exactly as the GGUF it came from. Tensors:
 * codec none is mapped and borrowed in place, as GGUF's are; a compressed
 * tensor is decoded whole into a buffer the file owns (apr_source_tensor_data,
 * the CPU backend's weights) or range by range into the caller's buffer
 * (apr_source_tensor_read, what a GPU loader streams through pinned staging
 * buffers), decoding only the chunks the range touches, each checked
 * against its checksum.
 *
 * tensor_read takes the stored bytes with pread, not from the mapping: a GPU
 * load streams the whole file through it, and mapped pages it touched would
 * stay in the process's resident set (20 GB for the 32B model) although the
 * weights live on the device; pread copies from the page cache without
 * mapping anything. Memory images (the fuzzers) have no descriptor and are
 * read in place. */
#include "formats/apr_format.h"
#include "core/error.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static apr_aprf *of(const apr_source *s) { return (apr_aprf *)s; }

static void close_source(apr_source *s) { apr_aprf_close(of(s)); }

static int64_t find_kv(const apr_source *s, const char *key) { return apr_gguf_find_kv(of(s)->meta, key); }

static apr_status kv(const apr_source *s, int64_t i, const char **key, apr_gguf_value *out)
{
    return apr_gguf_kv(of(s)->meta, i, key, out);
}

/* The GGUF reader keeps a NUL-terminated copy of every string value. */
static const char *str(const apr_source *s, int64_t i)
{
    const char *key, *out = NULL;
    apr_gguf_value v;
    if (apr_gguf_kv(of(s)->meta, i, &key, &v) != APR_OK) return NULL;
    return apr_gguf_get_str(of(s)->meta, key, &out) == APR_OK ? out : NULL;
}

static apr_status array_get(const apr_source *s, const apr_gguf_value *array, uint64_t i, apr_gguf_value *out)
{
    return apr_gguf_array_get(of(s)->meta, array, i, out);
}

static apr_status tensor(const apr_source *s, int64_t i, apr_tensor_info *out)
{
    const apr_aprf *f = of(s);
    const apr_aprf_tensor_info *t = &f->tensors[i];
    uint64_t at = t->n_chunks ? f->chunks[t->first_chunk].offset : f->data_offset;
    *out = (apr_tensor_info){
        .name = t->name, .type = t->type, .n_dims = t->n_dims, .nbytes = t->nbytes, .file = 0,
        .offset = at - f->data_offset, .file_offset = at, .stored_bytes = t->stored_bytes,
        .codec = apr_codec_name(t->codec),
        .chunk_bytes = t->codec == APR_CODEC_NONE ? 0 : t->chunk_bytes,
        .mapped = t->codec == APR_CODEC_NONE,
    };
    memcpy(out->ne, t->ne, sizeof out->ne);
    return APR_OK;
}

static int64_t find_tensor(const apr_source *s, const char *name) { return apr_aprf_find_tensor(of(s), name); }

static apr_status tensor_data(apr_source *s, int64_t i, const void **data)
{
    apr_aprf *f = of(s);
    const apr_aprf_tensor_info *t = &f->tensors[i];
    if (t->codec == APR_CODEC_NONE) {
        /* an empty tensor has no chunk: any valid pointer will do */
        *data = t->data ? t->data : f->base;
        return APR_OK;
    }
    if (!f->decoded[i]) {
        void *buf = malloc(t->nbytes ? t->nbytes : 1);
        APR_CHECK(buf, APR_ERR_NOMEM, "%s: out of memory decoding tensor '%s' (%" PRIu64 " bytes)", f->path, t->name,
                  t->nbytes);
        apr_status st = apr_aprf_read_tensor(f, i, buf, 0);
        if (st != APR_OK) {
            free(buf);
            return st;
        }
        f->decoded[i] = buf;
    }
    *data = f->decoded[i];
    return APR_OK;
}

/* n bytes of the file at `at` into dst. */
static apr_status read_at(const apr_aprf *f, uint64_t at, void *dst, uint64_t n)
{
    uint8_t *p = dst;
    while (n > 0) {
        ssize_t got = pread(f->fd, p, n > ((uint64_t)1 << 30) ? (size_t)1 << 30 : (size_t)n, (off_t)at);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
            return apr_error(APR_ERR_IO, "%s: reading at byte %" PRIu64 ": %s", f->path, at,
                             got < 0 ? strerror(errno) : "the file is shorter than when it was opened");
        p += got;
        at += (uint64_t)got;
        n -= (uint64_t)got;
    }
    return APR_OK;
}

/* Chunk c of tensor i decoded into out, its stored bytes read into `stored`
 * (chunk-sized) first when the file has a descriptor. */
static apr_status chunk_to(const apr_aprf *f, int64_t i, uint32_t c, uint8_t *stored, void *out, void *scratch)
{
    const apr_aprf_chunk_info *k = &f->chunks[f->tensors[i].first_chunk + c];
    if (f->fd < 0) return aprf_decode_chunk(f, i, c, f->base + k->offset, out, scratch);
    /* a chunk kept as is is read straight into place */
    uint8_t *into = k->stored == k->raw ? out : stored;
    APR_TRY(read_at(f, k->offset, into, k->stored));
    return aprf_decode_chunk(f, i, c, into, out, scratch);
}

/* Decoded bytes [offset, offset + n) of tensor i: whole chunks straight into
 * dst, the partial ones at either end through a chunk-sized buffer. */
static apr_status tensor_read(apr_source *s, int64_t i, uint64_t offset, void *dst, uint64_t n)
{
    apr_aprf *f = of(s);
    const apr_aprf_tensor_info *t = &f->tensors[i];
    if (n == 0) return APR_OK;
    if (t->codec == APR_CODEC_NONE) {
        if (f->fd >= 0) return read_at(f, f->chunks[t->first_chunk].offset + offset, dst, n);
        memcpy(dst, (const uint8_t *)t->data + offset, n);
        return APR_OK;
    }
    const uint64_t cb = t->chunk_bytes, end = offset + n;
    /* one block: the stored bytes, the byte planes, a partial chunk */
    uint8_t *buf = malloc(3 * cb);
    uint8_t *stored = buf, *scratch = buf ? buf + cb : NULL, *part = buf ? buf + 2 * cb : NULL;
    apr_status st = buf ? APR_OK : apr_error(APR_ERR_NOMEM, "%s: out of memory reading tensor '%s'", f->path, t->name);
    for (uint64_t c = offset / cb; st == APR_OK && c * cb < end; c++) {
        uint64_t begin = c * cb, raw = f->chunks[t->first_chunk + c].raw;
        uint64_t lo = offset > begin ? offset - begin : 0, hi = end < begin + raw ? end - begin : raw;
        uint8_t *out = (uint8_t *)dst + (begin + lo - offset);
        if (lo == 0 && hi == raw) {
            st = chunk_to(f, i, (uint32_t)c, stored, out, scratch);
        } else {
            st = chunk_to(f, i, (uint32_t)c, stored, part, scratch);
            if (st == APR_OK) memcpy(out, part + lo, hi - lo);
        }
    }
    free(buf);
    return st;
}

static void tensor_release(apr_source *s, int64_t i)
{
    apr_aprf *f = of(s);
    free(f->decoded[i]);
    f->decoded[i] = NULL;
}

static apr_status file(const apr_source *s, int k, const char **path, const void **bytes, uint64_t *size)
{
    const apr_aprf *f = of(s);
    *path = f->path;
    *bytes = f->base;
    *size = f->size;
    return APR_OK;
}

const apr_source_ops aprf_source_ops = {
    .close = close_source,
    .find_kv = find_kv,
    .kv = kv,
    .str = str,
    .array_get = array_get,
    .tensor = tensor,
    .find_tensor = find_tensor,
    .tensor_data = tensor_data,
    .tensor_read = tensor_read,
    .tensor_release = tensor_release,
    .file = file,
    .gguf = NULL,
};

void aprf_source_init(apr_aprf *f)
{
    f->src.path = f->path;
    f->src.info = (apr_source_info){
        .format = "APR", .version = f->version, .n_files = 1, .size = f->size, .n_kv = apr_gguf_n_kv(f->meta),
        .n_tensors = f->n_tensors, .alignment = APRF_ALIGN, .data_offset = f->data_offset,
    };
}

/* ===================================================================== */
/* The format's row in source.c's list                                   */
/* ===================================================================== */

static int probe(const uint8_t *head, size_t n) { return n >= 4 && memcmp(head, APRF_MAGIC, 4) == 0; }

static apr_status open_path(const char *path, apr_source **out)
{
    apr_aprf *f;
    *out = NULL;
    APR_TRY(apr_aprf_open(path, &f));
    *out = &f->src;
    return APR_OK;
}

static apr_status open_memory(const void *data, size_t size, apr_source **out)
{
    apr_aprf *f;
    *out = NULL;
    APR_TRY(apr_aprf_open_memory(data, size, &f));
    *out = &f->src;
    return APR_OK;
}

const apr_aprf *apr_source_aprf(const apr_source *s)
{
    return s && s->ops == &aprf_source_ops ? (const apr_aprf *)s : NULL;
}

const apr_source_format apr_aprf_source_format = { .name = "APR", .probe = probe, .open = open_path,
                                                   .open_memory = open_memory };
