/* gguf_source.c — GGUF files as model sources: one file, or a split set.
 *
 * llama.cpp's gguf-split cuts a model into NAME-00001-of-0000N.gguf ...
 * NAME-0000N-of-0000N.gguf: each part is a GGUF file of its own holding
 * some of the tensors, the first part all of the metadata, and every part
 * the keys split.no (uint16, the part's 0-based number), split.count
 * (uint16, the parts) and split.tensors.count (int32, the tensors of all
 * parts). Opened from its first part, such a model is read here as one
 * source: the first part's metadata, the tensors of all parts in part
 * order, each tensor's bytes in its own part's mapping. Nothing is copied
 * or concatenated. (Format facts from llama.cpp's tools/gguf-split, MIT;
 * the code is apr's own.) */
#include "formats/source.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "formats/gguf.h"

#define MAX_PARTS 65535  /* split.count is a uint16 */

typedef struct gguf_source {
    apr_source base;
    int n_files;
    apr_gguf **files;    /* [n_files], the parts in order */
    int64_t *first;      /* [n_files + 1]: the global index of each part's first tensor */
} gguf_source;

static const gguf_source *G(const apr_source *s) { return (const gguf_source *)s; }

/* ===================================================================== */
/* Operations                                                            */
/* ===================================================================== */

static void gs_close(apr_source *s)
{
    gguf_source *g = (gguf_source *)s;
    for (int k = 0; g->files && k < g->n_files; k++) apr_gguf_close(g->files[k]);
    free(g->files);
    free(g->first);
    free(s->path);
    free(g);
}

static int64_t gs_find_kv(const apr_source *s, const char *key) { return apr_gguf_find_kv(G(s)->files[0], key); }

static apr_status gs_kv(const apr_source *s, int64_t i, const char **key, apr_gguf_value *out)
{
    return apr_gguf_kv(G(s)->files[0], i, key, out);
}

static const char *gs_str(const apr_source *s, int64_t i)
{
    const char *key, *str = NULL;
    apr_gguf_value v;
    if (apr_gguf_kv(G(s)->files[0], i, &key, &v) != APR_OK) return NULL;
    return apr_gguf_get_str(G(s)->files[0], key, &str) == APR_OK ? str : NULL;
}

static apr_status gs_array_get(const apr_source *s, const apr_gguf_value *array, uint64_t i, apr_gguf_value *out)
{
    return apr_gguf_array_get(G(s)->files[0], array, i, out);
}

/* The part holding global tensor i, and its index there. */
static int part_of(const gguf_source *g, int64_t i, int64_t *local)
{
    int lo = 0, hi = g->n_files - 1;
    while (lo < hi) {  /* the last part whose first tensor is <= i */
        int mid = (lo + hi + 1) / 2;
        if (g->first[mid] <= i) lo = mid;
        else hi = mid - 1;
    }
    *local = i - g->first[lo];
    return lo;
}

static apr_status gs_tensor(const apr_source *s, int64_t i, apr_tensor_info *out)
{
    const gguf_source *g = G(s);
    int64_t local;
    int k = part_of(g, i, &local);
    apr_gguf_tensor_info t;
    APR_TRY(apr_gguf_tensor(g->files[k], local, &t));
    *out = (apr_tensor_info){
        .name = t.name, .type = t.type, .n_dims = t.n_dims, .nbytes = t.nbytes, .file = k,
        .offset = t.offset, .file_offset = apr_gguf_data_offset(g->files[k]) + t.offset,
        .stored_bytes = t.nbytes, .codec = "none", .chunk_bytes = 0, .mapped = 1,
    };
    memcpy(out->ne, t.ne, sizeof out->ne);
    return APR_OK;
}

static int64_t gs_find_tensor(const apr_source *s, const char *name)
{
    const gguf_source *g = G(s);
    for (int k = 0; k < g->n_files; k++) {
        int64_t j = apr_gguf_find_tensor(g->files[k], name);
        if (j >= 0) return g->first[k] + j;
    }
    return -1;
}

/* Tensor i's bytes in its part's mapping. */
static const uint8_t *bytes_of(const gguf_source *g, int64_t i)
{
    int64_t local;
    int k = part_of(g, i, &local);
    apr_gguf_tensor_info t;
    return apr_gguf_tensor(g->files[k], local, &t) == APR_OK ? t.data : NULL;
}

static apr_status gs_tensor_data(apr_source *s, int64_t i, const void **data)
{
    *data = bytes_of(G(s), i);
    return APR_OK;
}

static apr_status gs_tensor_read(apr_source *s, int64_t i, uint64_t offset, void *dst, uint64_t n)
{
    memcpy(dst, bytes_of(G(s), i) + offset, (size_t)n);
    return APR_OK;
}

static void gs_tensor_release(apr_source *s, int64_t i) {}

static apr_status gs_file(const apr_source *s, int k, const char **path, const void **bytes, uint64_t *size)
{
    const apr_gguf *f = G(s)->files[k];
    *path = apr_gguf_path(f);
    *bytes = apr_gguf_base(f);
    *size = apr_gguf_file_size(f);
    return APR_OK;
}

static const apr_gguf *gs_gguf(const apr_source *s, int k) { return G(s)->files[k]; }

static const apr_source_ops gguf_ops = {
    .close = gs_close,
    .find_kv = gs_find_kv,
    .kv = gs_kv,
    .str = gs_str,
    .array_get = gs_array_get,
    .tensor = gs_tensor,
    .find_tensor = gs_find_tensor,
    .tensor_data = gs_tensor_data,
    .tensor_read = gs_tensor_read,
    .tensor_release = gs_tensor_release,
    .file = gs_file,
    .gguf = gs_gguf,
};

/* ===================================================================== */
/* Split models                                                          */
/* ===================================================================== */

/* An optional integer key of a part: *out unchanged when absent. */
static apr_status split_key(const apr_gguf *f, const char *key, int64_t *out)
{
    apr_status s = apr_gguf_get_int(f, key, out);
    return s == APR_ERR_NOT_FOUND ? APR_OK : s;
}

/* path ends in "-%05d-of-%05d.gguf" (llama.cpp's split names): the length
 * of what comes before, and the two numbers; 0 if it does not. */
static size_t split_name(const char *path, long *no, long *count)
{
    static const size_t tail = 20;  /* "-00001-of-00003.gguf" */
    size_t n = strlen(path);
    if (n <= tail) return 0;
    const char *t = path + n - tail;
    for (size_t i = 0; i < tail; i++) {
        const int digit = i == 1 || i == 2 || i == 3 || i == 4 || i == 5 || (i >= 10 && i <= 14);
        if (digit ? !(t[i] >= '0' && t[i] <= '9') : t[i] != "-_____-of-_____.gguf"[i]) return 0;
    }
    *no = strtol(t + 1, NULL, 10);
    *count = strtol(t + 10, NULL, 10);
    return n - tail;
}

/* Opens parts 2..count of the split model whose first part is g->files[0]
 * (path), checking each says it is that part of that model. */
static apr_status open_parts(gguf_source *g, const char *path, int64_t count)
{
    long no = 0, named = 0;
    size_t prefix = split_name(path, &no, &named);
    APR_CHECK(prefix && no == 1 && named == count, APR_ERR_FORMAT,
              "%s: the first part of a split model (split.count %" PRId64 ") must be named NAME-00001-of-%05" PRId64
              ".gguf, as llama.cpp's gguf-split writes it", path, count, count);
    apr_gguf **files = realloc(g->files, (size_t)count * sizeof *g->files);
    if (files) g->files = files;
    g->first = calloc((size_t)count + 1, sizeof *g->first);
    APR_CHECK(files && g->first, APR_ERR_NOMEM, "%s: out of memory for %" PRId64 " parts", path, count);
    size_t cap = prefix + 32;
    char *part = malloc(cap);
    APR_CHECK(part, APR_ERR_NOMEM, "%s: out of memory", path);
    apr_status s = APR_OK;
    for (int64_t k = 1; k < count && s == APR_OK; k++) {
        snprintf(part, cap, "%.*s-%05" PRId64 "-of-%05" PRId64 ".gguf", (int)prefix, path, k + 1, count);
        s = apr_gguf_open(part, &g->files[k]);
        if (s != APR_OK) {
            s = apr_error(s, "%s: part %" PRId64 " of %" PRId64 " of the split model: %s", path, k + 1, count,
                          apr_last_error());
            break;
        }
        g->n_files = (int)k + 1;
        int64_t part_no = -1, part_count = -1;
        if ((s = split_key(g->files[k], "split.no", &part_no)) == APR_OK)
            s = split_key(g->files[k], "split.count", &part_count);
        if (s == APR_OK && (part_no != k || part_count != count))
            s = apr_error(APR_ERR_FORMAT, "%s: split.no %" PRId64 " and split.count %" PRId64 ", but it should be part %"
                          PRId64 " of %" PRId64 " (split.no %" PRId64 ")", part, part_no, part_count, k + 1, count, k);
    }
    free(part);
    return s;
}

/* The parts' tensor tables as one: prefix counts, the tensor total the
 * first part announces, no name in two parts. */
static apr_status join_tables(gguf_source *g, const char *path)
{
    if (!g->first) {
        g->first = calloc(2, sizeof *g->first);
        APR_CHECK(g->first, APR_ERR_NOMEM, "%s: out of memory", path);
    }
    for (int k = 0; k < g->n_files; k++) g->first[k + 1] = g->first[k] + apr_gguf_n_tensors(g->files[k]);
    const int64_t total = g->first[g->n_files];
    if (g->n_files > 1) {
        int64_t announced = -1;
        APR_TRY(split_key(g->files[0], "split.tensors.count", &announced));
        APR_CHECK(announced < 0 || announced == total, APR_ERR_FORMAT,
                  "%s: split.tensors.count is %" PRId64 " but the %d parts hold %" PRId64 " tensors", path, announced,
                  g->n_files, total);
        for (int k = 1; k < g->n_files; k++)
            for (int64_t j = 0; j < apr_gguf_n_tensors(g->files[k]); j++) {
                apr_gguf_tensor_info t;
                APR_TRY(apr_gguf_tensor(g->files[k], j, &t));
                for (int e = 0; e < k; e++)
                    APR_CHECK(apr_gguf_find_tensor(g->files[e], t.name) < 0, APR_ERR_FORMAT,
                              "%s: tensor '%.64s' is in part %d and again in part %d", path, t.name, e + 1, k + 1);
            }
    }
    return APR_OK;
}

/* Wraps the opened first part (taken over, closed on failure) into a
 * source, opening the other parts of a split model. */
static apr_status wrap(apr_gguf *f0, const char *path, int from_memory, apr_source **out)
{
    gguf_source *g = calloc(1, sizeof *g);
    if (g) g->files = malloc(sizeof *g->files);
    if (g) g->base.path = strdup(path);
    if (!g || !g->files || !g->base.path) {
        if (g) {
            free(g->files);
            free(g);
        }
        apr_gguf_close(f0);
        return apr_error(APR_ERR_NOMEM, "%s: out of memory", path);
    }
    g->base.ops = &gguf_ops;
    g->files[0] = f0;
    g->n_files = 1;

    int64_t count = 1, no = 0;
    apr_status s = split_key(f0, "split.count", &count);
    if (s == APR_OK) s = split_key(f0, "split.no", &no);
    if (s == APR_OK && count > 1) {
        if (count > MAX_PARTS) {
            s = apr_error(APR_ERR_FORMAT, "%s: split.count %" PRId64 " is beyond %d", path, count, MAX_PARTS);
        } else if (no != 0) {
            long named_no, named_count;
            size_t prefix = split_name(path, &named_no, &named_count);
            if (prefix)
                s = apr_error(APR_ERR_FORMAT, "%s: part %" PRId64 " of %" PRId64 " of a split model: open its first "
                              "part, %.*s-00001-of-%05" PRId64 ".gguf", path, no + 1, count, (int)prefix, path, count);
            else
                s = apr_error(APR_ERR_FORMAT, "%s: part %" PRId64 " of %" PRId64 " of a split model: open its first "
                              "part", path, no + 1, count);
        } else if (from_memory) {
            s = apr_error(APR_ERR_UNSUPPORTED, "%s: part 1 of %" PRId64 " of a split model: its other parts are files",
                          path, count);
        } else {
            s = open_parts(g, path, count);
        }
    }
    if (s == APR_OK) s = join_tables(g, path);
    if (s != APR_OK) {
        gs_close(&g->base);
        return s;
    }
    uint64_t size = 0;
    for (int k = 0; k < g->n_files; k++) size += apr_gguf_file_size(g->files[k]);
    g->base.info = (apr_source_info){
        .format = "GGUF", .version = apr_gguf_version(f0), .n_files = g->n_files, .size = size,
        .n_kv = apr_gguf_n_kv(f0), .n_tensors = g->first[g->n_files], .alignment = apr_gguf_alignment(f0),
        .data_offset = apr_gguf_data_offset(f0),
    };
    *out = &g->base;
    return APR_OK;
}

/* ===================================================================== */
/* The format                                                            */
/* ===================================================================== */

static int gguf_probe(const uint8_t *head, size_t n) { return n >= 4 && memcmp(head, GGUF_MAGIC, 4) == 0; }

static apr_status gguf_open(const char *path, apr_source **out)
{
    *out = NULL;
    apr_gguf *f;
    APR_TRY(apr_gguf_open(path, &f));
    return wrap(f, path, 0, out);
}

static apr_status gguf_open_memory(const void *data, size_t size, apr_source **out)
{
    *out = NULL;
    apr_gguf *f;
    APR_TRY(apr_gguf_open_memory(data, size, &f));
    return wrap(f, "<memory>", 1, out);
}

const apr_source_format apr_gguf_source_format = {
    .name = "GGUF",
    .probe = gguf_probe,
    .open = gguf_open,
    .open_memory = gguf_open_memory,
};
