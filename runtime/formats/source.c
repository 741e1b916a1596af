/* source.c — apr_source_*: one interface over the model containers.
 *
 * Picks the container by the file's first bytes, then answers every query
 * through the format's few operations (formats/source.h). The argument
 * checks and the typed metadata lookups live here, once, so every format
 * refuses a bad index; values convert through the GGUF reader's own rules
 * (apr_gguf_value_int and friends), so the words match apr_gguf_get_*. */
#include "formats/source.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/file.h"
#include "formats/gguf.h"

/* The containers apr reads, tried in order on a file's first bytes. */
static const apr_source_format *const formats[] = {
    &apr_gguf_source_format,
    &apr_aprf_source_format,
};

/* GGUF's open explains a file nobody claims ("not a GGUF file (magic
 * '...')"), as apr did before it read other containers. */
static const apr_source_format *pick(const uint8_t *head, size_t n)
{
    for (size_t i = 0; i < sizeof formats / sizeof *formats; i++)
        if (formats[i]->probe(head, n)) return formats[i];
    return &apr_gguf_source_format;
}

/* ===================================================================== */
/* Open and close                                                        */
/* ===================================================================== */

apr_status apr_source_open(const char *path, apr_source **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_source_open: out is NULL");
    *out = NULL;
    APR_CHECK(path, APR_ERR_INVALID, "apr_source_open: path is NULL");
    int fd;
    uint64_t size;
    APR_TRY(apr_file_open_regular(path, &fd, &size));
    uint8_t head[16];
    ssize_t n = pread(fd, head, sizeof head, 0);
    int err = errno;
    close(fd);
    APR_CHECK(n >= 0, APR_ERR_IO, "%s: %s", path, strerror(err));
    return pick(head, (size_t)n)->open(path, out);
}

apr_status apr_source_open_memory(const void *data, size_t size, apr_source **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_source_open_memory: out is NULL");
    *out = NULL;
    APR_CHECK(data || size == 0, APR_ERR_INVALID, "apr_source_open_memory: data is NULL");
    return pick(data ? data : (const void *)"", size)->open_memory(data, size, out);
}

void apr_source_close(apr_source *s)
{
    if (s) s->ops->close(s);
}

/* ===================================================================== */
/* What it is                                                            */
/* ===================================================================== */

void apr_source_get_info(const apr_source *s, apr_source_info *out)
{
    if (!out) return;
    if (!s) {
        *out = (apr_source_info){ .format = "" };
        return;
    }
    *out = s->info;
}

const char *apr_source_path(const apr_source *s) { return s ? s->path : ""; }

apr_status apr_source_file(const apr_source *s, int k, const char **path, const void **bytes, uint64_t *size)
{
    APR_CHECK(s && path && bytes && size, APR_ERR_INVALID, "apr_source_file: NULL argument");
    APR_CHECK(k >= 0 && k < s->info.n_files, APR_ERR_RANGE, "%s: file %d out of range [0, %d)", s->path, k,
              s->info.n_files);
    return s->ops->file(s, k, path, bytes, size);
}

const apr_gguf *apr_source_gguf(const apr_source *s, int k)
{
    if (!s || k < 0 || k >= s->info.n_files || !s->ops->gguf) return NULL;
    return s->ops->gguf(s, k);
}

/* ===================================================================== */
/* Metadata                                                              */
/* ===================================================================== */

int64_t apr_source_n_kv(const apr_source *s) { return s ? s->info.n_kv : 0; }

apr_status apr_source_kv(const apr_source *s, int64_t i, const char **key, apr_gguf_value *out)
{
    APR_CHECK(s && key && out, APR_ERR_INVALID, "apr_source_kv: NULL argument");
    APR_CHECK(i >= 0 && i < s->info.n_kv, APR_ERR_RANGE, "%s: key index %" PRId64 " out of range [0, %" PRId64 ")",
              s->path, i, s->info.n_kv);
    return s->ops->kv(s, i, key, out);
}

int64_t apr_source_find_kv(const apr_source *s, const char *key)
{
    return s && key ? s->ops->find_kv(s, key) : -1;
}

apr_status apr_source_array_get(const apr_source *s, const apr_gguf_value *array, uint64_t i, apr_gguf_value *out)
{
    APR_CHECK(s && array && out, APR_ERR_INVALID, "apr_source_array_get: NULL argument");
    APR_CHECK(array->type == APR_GGUF_ARRAY, APR_ERR_INVALID, "apr_source_array_get: value is a %s, not an array",
              gguf_type_name(array->type));
    APR_CHECK(i < array->len, APR_ERR_RANGE, "%s: array index %" PRIu64 " out of range [0, %" PRIu64 ")", s->path, i,
              array->len);
    return s->ops->array_get(s, array, i, out);
}

/* The value of key and its index: APR_ERR_NOT_FOUND naming it when absent. */
static apr_status lookup(const apr_source *s, const char *key, apr_gguf_value *v, int64_t *index)
{
    APR_CHECK(s && key, APR_ERR_INVALID, "apr_source_get: NULL argument");
    int64_t i = s->ops->find_kv(s, key);
    APR_CHECK(i >= 0, APR_ERR_NOT_FOUND, "%s: no key '%s'", s->path, key);
    if (index) *index = i;
    const char *k;
    return s->ops->kv(s, i, &k, v);
}

apr_status apr_source_get_int(const apr_source *s, const char *key, int64_t *out)
{
    apr_gguf_value v;
    APR_TRY(lookup(s, key, &v, NULL));
    return apr_gguf_value_int(&v, s->path, key, out);
}

apr_status apr_source_get_float(const apr_source *s, const char *key, double *out)
{
    apr_gguf_value v;
    APR_TRY(lookup(s, key, &v, NULL));
    return apr_gguf_value_float(&v, s->path, key, out);
}

apr_status apr_source_get_bool(const apr_source *s, const char *key, int *out)
{
    apr_gguf_value v;
    APR_TRY(lookup(s, key, &v, NULL));
    return apr_gguf_value_bool(&v, s->path, key, out);
}

apr_status apr_source_get_str(const apr_source *s, const char *key, const char **out)
{
    apr_gguf_value v;
    int64_t i;
    APR_TRY(lookup(s, key, &v, &i));
    APR_TRY(apr_gguf_value_check_str(&v, s->path, key));
    const char *str = s->ops->str(s, i);
    APR_CHECK(str, APR_ERR_NOMEM, "%s: key '%s': out of memory", s->path, key);
    *out = str;
    return APR_OK;
}

apr_status apr_source_get_array(const apr_source *s, const char *key, int elem_type, apr_gguf_value *out)
{
    APR_TRY(lookup(s, key, out, NULL));
    APR_CHECK(out->type == APR_GGUF_ARRAY, APR_ERR_FORMAT, "%s: key '%s' is a %s, not an array", s->path, key,
              gguf_type_name(out->type));
    APR_CHECK(elem_type < 0 || out->elem_type == elem_type, APR_ERR_FORMAT,
              "%s: key '%s' is an array of %s, not of %s", s->path, key, gguf_type_name(out->elem_type),
              gguf_type_name(elem_type));
    return APR_OK;
}

/* ===================================================================== */
/* Tensors                                                               */
/* ===================================================================== */

int64_t apr_source_n_tensors(const apr_source *s) { return s ? s->info.n_tensors : 0; }

apr_status apr_source_tensor(const apr_source *s, int64_t i, apr_tensor_info *out)
{
    APR_CHECK(s && out, APR_ERR_INVALID, "apr_source_tensor: NULL argument");
    APR_CHECK(i >= 0 && i < s->info.n_tensors, APR_ERR_RANGE, "%s: tensor index %" PRId64 " out of range [0, %" PRId64
              ")", s->path, i, s->info.n_tensors);
    return s->ops->tensor(s, i, out);
}

int64_t apr_source_find_tensor(const apr_source *s, const char *name)
{
    return s && name ? s->ops->find_tensor(s, name) : -1;
}

apr_status apr_source_tensor_data(apr_source *s, int64_t i, const void **data)
{
    APR_CHECK(s && data, APR_ERR_INVALID, "apr_source_tensor_data: NULL argument");
    *data = NULL;
    APR_CHECK(i >= 0 && i < s->info.n_tensors, APR_ERR_RANGE, "%s: tensor index %" PRId64 " out of range [0, %"
              PRId64 ")", s->path, i, s->info.n_tensors);
    return s->ops->tensor_data(s, i, data);
}

apr_status apr_source_tensor_read(apr_source *s, int64_t i, uint64_t offset, void *dst, uint64_t n)
{
    APR_CHECK(s && (dst || n == 0), APR_ERR_INVALID, "apr_source_tensor_read: NULL argument");
    apr_tensor_info t;
    APR_TRY(apr_source_tensor(s, i, &t));
    APR_CHECK(offset <= t.nbytes && n <= t.nbytes - offset, APR_ERR_RANGE,
              "%s: tensor '%s': bytes [%" PRIu64 ", +%" PRIu64 ") are past its %" PRIu64, s->path, t.name, offset, n,
              t.nbytes);
    if (n == 0) return APR_OK;
    return s->ops->tensor_read(s, i, offset, dst, n);
}

void apr_source_tensor_release(apr_source *s, int64_t i)
{
    if (s && i >= 0 && i < s->info.n_tensors) s->ops->tensor_release(s, i);
}
