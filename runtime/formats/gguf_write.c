/* gguf_write.c — writing GGUF files: header first, tensor data streamed.
 *
 * A writer gathers the metadata (encoded at once into one buffer, in the
 * order given) and the tensor infos. apr_gguf_writer_begin fixes the layout,
 * writes the header and padding and extends the file to its final size; the
 * data is then written with pwrite at offsets the writer reports, by any
 * number of threads, so `apr synth` fills a 20 GB file in parallel without
 * holding it. The layout is llama.cpp's: tensors in the order added, each at
 * the next multiple of the alignment, the file padded after the last one.
 *
 * apr_gguf_copy re-encodes an open file's header through the same code and
 * copies its data section, which gives back the original bytes: the test
 * that the writer encodes exactly what the reader decodes. */
#include "formats/gguf.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ===================================================================== */
/* Structures                                                            */
/* ===================================================================== */

typedef struct wtensor {
    const char *name;        /* owned by the writer's name set */
    int dtype, n_dims;
    int64_t ne[4];
    uint64_t nbytes;
    uint64_t offset;       /* from the data section's start */
    int placed;            /* offset given by the caller (add_tensor_at) */
} wtensor;

/* Names added so far, for the duplicate checks: open addressing over
 * names[], slots holding index + 1 (0 = empty). */
typedef struct nameset {
    char **names;
    int64_t *slots;
    uint64_t mask;
    int64_t n;
} nameset;

typedef struct buffer {
    uint8_t *p;
    uint64_t len, cap;
} buffer;

struct apr_gguf_writer {
    uint32_t version;
    uint64_t alignment;
    buffer kvs;              /* the encoded key/value pairs */
    nameset keys;            /* keys.n is the key count */
    nameset names;           /* tensor names */
    wtensor *tensors;
    int64_t n_tensors, cap_tensors;
    int laid_out;
    uint64_t header_size, data_offset, file_size;
    int fd;
    char *path;              /* the file begun, removed if never finished */
};

/* ===================================================================== */
/* Helpers                                                               */
/* ===================================================================== */

static apr_status grow(buffer *b, uint64_t more)
{
    if (more <= b->cap - b->len) return APR_OK;
    uint64_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more) {
        APR_CHECK(cap <= UINT64_MAX / 2, APR_ERR_NOMEM, "gguf writer: metadata too large");
        cap *= 2;
    }
    uint8_t *p = realloc(b->p, cap);
    APR_CHECK(p, APR_ERR_NOMEM, "gguf writer: out of memory for %" PRIu64 " bytes of metadata", cap);
    b->p = p;
    b->cap = cap;
    return APR_OK;
}

/* Callers grow() first. */
static void put(buffer *b, const void *p, uint64_t n)
{
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}
static void put_u32(buffer *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buffer *b, uint64_t v) { put(b, &v, 8); }

static uint64_t hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;  /* FNV-1a, as the reader */
    while (*s) h = (h ^ (uint8_t)*s++) * 0x100000001b3ull;
    return h;
}

static int64_t set_find(const nameset *set, const char *name)
{
    if (!set->slots) return -1;
    for (uint64_t s = hash(name) & set->mask; set->slots[s]; s = (s + 1) & set->mask)
        if (strcmp(set->names[set->slots[s] - 1], name) == 0) return set->slots[s] - 1;
    return -1;
}

static void set_place(nameset *set, int64_t i)
{
    uint64_t s = hash(set->names[i]) & set->mask;
    while (set->slots[s]) s = (s + 1) & set->mask;
    set->slots[s] = i + 1;
}

/* Adds a copy of name (known to be absent); the table stays at most half
 * full. *copy is the set's copy, valid until set_free. */
static apr_status set_add(nameset *set, const char *name, const char **copy)
{
    if (!set->slots || (uint64_t)(set->n + 1) * 2 > set->mask + 1) {
        uint64_t cap = set->slots ? (set->mask + 1) * 2 : 64;
        int64_t *slots = calloc(cap, sizeof *slots);
        char **names = realloc(set->names, cap * sizeof *names);
        if (names) set->names = names;
        if (!slots || !names) {
            free(slots);
            return apr_error(APR_ERR_NOMEM, "gguf writer: out of memory for names");
        }
        free(set->slots);
        set->slots = slots;
        set->mask = cap - 1;
        for (int64_t i = 0; i < set->n; i++) set_place(set, i);
    }
    char *dup = strdup(name);
    APR_CHECK(dup, APR_ERR_NOMEM, "gguf writer: out of memory");
    set->names[set->n] = dup;
    set_place(set, set->n++);
    if (copy) *copy = dup;
    return APR_OK;
}

static void set_free(nameset *set)
{
    for (int64_t i = 0; i < set->n; i++) free(set->names[i]);
    free(set->names);
    free(set->slots);
}

/* Checks a key before its value is encoded. */
static apr_status check_key(const apr_gguf_writer *w, const char *key)
{
    APR_CHECK(w && key, APR_ERR_INVALID, "gguf writer: NULL argument");
    APR_CHECK(!w->laid_out, APR_ERR_INVALID, "gguf writer: key '%s' added after the layout was fixed", key);
    size_t len = strlen(key);
    APR_CHECK(len > 0 && len <= GGUF_MAX_KEY, APR_ERR_INVALID, "gguf writer: a key must have 1 to %d bytes",
              GGUF_MAX_KEY);
    APR_CHECK(set_find(&w->keys, key) < 0, APR_ERR_INVALID, "gguf writer: duplicate key '%s'", key);
    return APR_OK;
}

/* Records the key and appends it and the type tag, with room for `size`
 * value bytes that the caller then puts (which cannot fail). */
static apr_status begin_kv(apr_gguf_writer *w, const char *key, int type, uint64_t size)
{
    APR_TRY(check_key(w, key));
    uint64_t len = strlen(key);
    APR_CHECK(size <= UINT64_MAX - 64 - len, APR_ERR_NOMEM, "gguf writer: value of '%s' too large", key);
    APR_TRY(grow(&w->kvs, 8 + len + 4 + size));
    APR_TRY(set_add(&w->keys, key, NULL));
    put_u64(&w->kvs, len);
    put(&w->kvs, key, len);
    put_u32(&w->kvs, (uint32_t)type);
    return APR_OK;
}

/* general.alignment sets the layout's alignment: a uint32 power of two. */
static apr_status note_alignment(apr_gguf_writer *w, const char *key, int type, const void *value)
{
    if (strcmp(key, "general.alignment") != 0) return APR_OK;
    APR_CHECK(type == APR_GGUF_UINT32, APR_ERR_INVALID, "gguf writer: general.alignment must be a uint32");
    uint32_t a = gguf_u32(value);
    APR_CHECK(a && !(a & (a - 1)), APR_ERR_INVALID, "gguf writer: general.alignment %" PRIu32
              " is not a power of two", a);
    w->alignment = a;
    return APR_OK;
}

/* ===================================================================== */
/* Lifecycle                                                             */
/* ===================================================================== */

apr_status apr_gguf_writer_new(apr_gguf_writer **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_gguf_writer_new: out is NULL");
    apr_gguf_writer *w = calloc(1, sizeof *w);
    APR_CHECK(w, APR_ERR_NOMEM, "gguf writer: out of memory");
    w->version = 3;
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    w->fd = -1;
    *out = w;
    return APR_OK;
}

void apr_gguf_writer_free(apr_gguf_writer *w)
{
    if (!w) return;
    if (w->fd >= 0) {
        close(w->fd);
        if (w->path) unlink(w->path);  /* begun but not finished */
    }
    set_free(&w->keys);
    set_free(&w->names);
    free(w->kvs.p);
    free(w->tensors);
    free(w->path);
    free(w);
}

apr_status apr_gguf_writer_set_version(apr_gguf_writer *w, uint32_t version)
{
    APR_CHECK(w, APR_ERR_INVALID, "apr_gguf_writer_set_version: w is NULL");
    APR_CHECK(version == 2 || version == 3, APR_ERR_INVALID, "gguf writer: version %" PRIu32
              " (2 or 3 only)", version);
    APR_CHECK(!w->laid_out, APR_ERR_INVALID, "gguf writer: version set after the layout was fixed");
    w->version = version;
    return APR_OK;
}

/* ===================================================================== */
/* Metadata                                                              */
/* ===================================================================== */

apr_status apr_gguf_writer_add_int(apr_gguf_writer *w, const char *key, int type, int64_t value)
{
    static const int64_t lo[] = { [APR_GGUF_UINT8] = 0, [APR_GGUF_INT8] = INT8_MIN, [APR_GGUF_UINT16] = 0,
                                  [APR_GGUF_INT16] = INT16_MIN, [APR_GGUF_UINT32] = 0, [APR_GGUF_INT32] = INT32_MIN,
                                  [APR_GGUF_BOOL] = 0, [APR_GGUF_UINT64] = 0, [APR_GGUF_INT64] = INT64_MIN };
    static const int64_t hi[] = { [APR_GGUF_UINT8] = UINT8_MAX, [APR_GGUF_INT8] = INT8_MAX,
                                  [APR_GGUF_UINT16] = UINT16_MAX, [APR_GGUF_INT16] = INT16_MAX,
                                  [APR_GGUF_UINT32] = UINT32_MAX, [APR_GGUF_INT32] = INT32_MAX, [APR_GGUF_BOOL] = 1,
                                  [APR_GGUF_UINT64] = INT64_MAX, [APR_GGUF_INT64] = INT64_MAX };
    APR_CHECK(w && key, APR_ERR_INVALID, "apr_gguf_writer_add_int: NULL argument");
    int integral = type >= 0 && type <= APR_GGUF_INT64 && type != APR_GGUF_FLOAT32 && type != APR_GGUF_STRING &&
                   type != APR_GGUF_ARRAY;
    APR_CHECK(integral, APR_ERR_INVALID, "gguf writer: key '%s': type %d is not an integer type", key, type);
    APR_CHECK(value >= lo[type] && value <= hi[type], APR_ERR_INVALID,
              "gguf writer: key '%s': %" PRId64 " out of range for its type", key, value);
    uint64_t size = gguf_scalar_size(type);
    uint8_t bytes[8];
    memcpy(bytes, &value, 8);  /* little-endian: the low bytes are the narrow value */
    APR_TRY(check_key(w, key));
    APR_TRY(note_alignment(w, key, type, bytes));
    APR_TRY(begin_kv(w, key, type, size));
    put(&w->kvs, bytes, size);
    return APR_OK;
}

apr_status apr_gguf_writer_add_float(apr_gguf_writer *w, const char *key, int type, double value)
{
    APR_CHECK(w && key, APR_ERR_INVALID, "apr_gguf_writer_add_float: NULL argument");
    APR_CHECK(type == APR_GGUF_FLOAT32 || type == APR_GGUF_FLOAT64, APR_ERR_INVALID,
              "gguf writer: key '%s': type %d is not a float type", key, type);
    APR_TRY(begin_kv(w, key, type, gguf_scalar_size(type)));
    if (type == APR_GGUF_FLOAT32) {
        float f = (float)value;
        put(&w->kvs, &f, 4);
    } else {
        put(&w->kvs, &value, 8);
    }
    return APR_OK;
}

apr_status apr_gguf_writer_add_str(apr_gguf_writer *w, const char *key, const char *s, uint64_t len)
{
    APR_CHECK(w && key && (s || len == 0), APR_ERR_INVALID, "apr_gguf_writer_add_str: NULL argument");
    APR_CHECK(len <= UINT64_MAX / 2, APR_ERR_INVALID, "gguf writer: key '%s': string too long", key);
    APR_TRY(begin_kv(w, key, APR_GGUF_STRING, 8 + len));
    put_u64(&w->kvs, len);
    put(&w->kvs, s, len);
    return APR_OK;
}

apr_status apr_gguf_writer_add_array(apr_gguf_writer *w, const char *key, int elem_type, const void *elems,
                                     uint64_t n)
{
    APR_CHECK(w && key && (elems || n == 0), APR_ERR_INVALID, "apr_gguf_writer_add_array: NULL argument");
    uint64_t esize = gguf_scalar_size(elem_type);
    APR_CHECK(esize, APR_ERR_INVALID, "gguf writer: key '%s': element type %d is not a fixed-size type", key,
              elem_type);
    APR_CHECK(n <= (UINT64_MAX / 2) / esize, APR_ERR_INVALID, "gguf writer: key '%s': array too long", key);
    if (elem_type == APR_GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++)
            APR_CHECK(((const uint8_t *)elems)[i] <= 1, APR_ERR_INVALID,
                      "gguf writer: key '%s': boolean element %" PRIu64 " is not 0 or 1", key, i);
    APR_TRY(begin_kv(w, key, APR_GGUF_ARRAY, 12 + n * esize));
    put_u32(&w->kvs, (uint32_t)elem_type);
    put_u64(&w->kvs, n);
    put(&w->kvs, elems, n * esize);
    return APR_OK;
}

apr_status apr_gguf_writer_add_str_array(apr_gguf_writer *w, const char *key, const char *const *strs,
                                         const uint64_t *lens, uint64_t n)
{
    APR_CHECK(w && key && (strs || n == 0), APR_ERR_INVALID, "apr_gguf_writer_add_str_array: NULL argument");
    uint64_t size = 12;
    for (uint64_t i = 0; i < n; i++) {
        APR_CHECK(strs[i], APR_ERR_INVALID, "gguf writer: key '%s': string %" PRIu64 " is NULL", key, i);
        uint64_t len = lens ? lens[i] : strlen(strs[i]);
        APR_CHECK(len <= UINT64_MAX / 4 - size, APR_ERR_INVALID, "gguf writer: key '%s': array too long", key);
        size += 8 + len;
    }
    APR_TRY(begin_kv(w, key, APR_GGUF_ARRAY, size));
    put_u32(&w->kvs, APR_GGUF_STRING);
    put_u64(&w->kvs, n);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = lens ? lens[i] : strlen(strs[i]);
        put_u64(&w->kvs, len);
        put(&w->kvs, strs[i], len);
    }
    return APR_OK;
}

apr_status apr_gguf_writer_add_raw(apr_gguf_writer *w, const char *key, int type, const void *bytes, uint64_t size)
{
    APR_CHECK(w && key && (bytes || size == 0), APR_ERR_INVALID, "apr_gguf_writer_add_raw: NULL argument");
    uint64_t used;
    if (apr_gguf_check_value(bytes, size, type, &used) != APR_OK)
        return apr_error(APR_ERR_INVALID, "gguf writer: key '%s': %s", key, apr_last_error());
    APR_CHECK(used == size, APR_ERR_INVALID, "gguf writer: key '%s': the value ends after %" PRIu64
              " of its %" PRIu64 " bytes", key, used, size);
    APR_TRY(check_key(w, key));
    APR_TRY(note_alignment(w, key, type, bytes));
    APR_TRY(begin_kv(w, key, type, size));
    put(&w->kvs, bytes, size);
    return APR_OK;
}

apr_status apr_gguf_writer_add_value(apr_gguf_writer *w, const char *key, const apr_gguf_value *v)
{
    APR_CHECK(w && key && v && v->data, APR_ERR_INVALID, "apr_gguf_writer_add_value: NULL argument");
    const uint8_t *start = (const uint8_t *)v->data - gguf_value_prefix(v->type);
    return apr_gguf_writer_add_raw(w, key, v->type, start, v->size);
}

/* ===================================================================== */
/* Tensors and layout                                                    */
/* ===================================================================== */

static apr_status add_tensor(apr_gguf_writer *w, const char *name, int dtype, int n_dims, const int64_t *ne,
                             uint64_t offset, int placed)
{
    APR_CHECK(w && name && ne, APR_ERR_INVALID, "apr_gguf_writer_add_tensor: NULL argument");
    APR_CHECK(!w->laid_out, APR_ERR_INVALID, "gguf writer: tensor '%s' added after the layout was fixed", name);
    size_t len = strlen(name);
    APR_CHECK(len > 0 && len <= GGUF_MAX_NAME, APR_ERR_INVALID, "gguf writer: a tensor name must have 1 to %d bytes",
              GGUF_MAX_NAME);
    APR_CHECK(n_dims >= 1 && n_dims <= GGUF_MAX_DIMS, APR_ERR_INVALID, "gguf writer: tensor '%s' has %d dimensions"
              " (1 to %d allowed)", name, n_dims, GGUF_MAX_DIMS);
    const char *tname = apr_dtype_name(dtype);
    int64_t block = apr_dtype_block_size(dtype);
    APR_CHECK(tname && block > 0, APR_ERR_INVALID, "gguf writer: tensor '%s': unknown type %d", name, dtype);
    int64_t n = 1;
    for (int d = 0; d < n_dims; d++) {
        APR_CHECK(ne[d] >= 0, APR_ERR_INVALID, "gguf writer: tensor '%s': dimension %d is negative", name, d);
        APR_CHECK(!__builtin_mul_overflow(n, ne[d], &n), APR_ERR_INVALID,
                  "gguf writer: tensor '%s' has more than 2^63-1 elements", name);
    }
    APR_CHECK(ne[0] % block == 0, APR_ERR_INVALID, "gguf writer: tensor '%s': rows of %" PRId64
              " elements are not a whole number of %s blocks", name, ne[0], tname);
    uint64_t nbytes;
    if (apr_dtype_nbytes(dtype, n, &nbytes) != APR_OK)
        return apr_error(APR_ERR_INVALID, "gguf writer: tensor '%s': %s", name, apr_last_error());
    APR_CHECK(set_find(&w->names, name) < 0, APR_ERR_INVALID, "gguf writer: duplicate tensor '%s'", name);
    if (w->n_tensors == w->cap_tensors) {
        int64_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        wtensor *t = realloc(w->tensors, (size_t)cap * sizeof *t);
        APR_CHECK(t, APR_ERR_NOMEM, "gguf writer: out of memory for tensors");
        w->tensors = t;
        w->cap_tensors = cap;
    }
    wtensor *t = &w->tensors[w->n_tensors];
    *t = (wtensor){ .dtype = dtype, .n_dims = n_dims, .nbytes = nbytes, .offset = offset, .placed = placed,
                    .ne = { 1, 1, 1, 1 } };
    memcpy(t->ne, ne, (size_t)n_dims * sizeof *ne);
    APR_TRY(set_add(&w->names, name, &t->name));
    w->n_tensors++;
    return APR_OK;
}

apr_status apr_gguf_writer_add_tensor(apr_gguf_writer *w, const char *name, int dtype, int n_dims,
                                      const int64_t *ne)
{
    return add_tensor(w, name, dtype, n_dims, ne, 0, 0);
}

apr_status apr_gguf_writer_add_tensor_at(apr_gguf_writer *w, const char *name, int dtype, int n_dims,
                                         const int64_t *ne, uint64_t offset)
{
    return add_tensor(w, name, dtype, n_dims, ne, offset, 1);
}

static int by_offset(const void *a, const void *b)
{
    const wtensor *x = *(const wtensor *const *)a, *y = *(const wtensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static apr_status check_overlap(apr_gguf_writer *w)
{
    if (w->n_tensors < 2) return APR_OK;
    const wtensor **order = malloc((size_t)w->n_tensors * sizeof *order);
    APR_CHECK(order, APR_ERR_NOMEM, "gguf writer: out of memory");
    for (int64_t i = 0; i < w->n_tensors; i++) order[i] = &w->tensors[i];
    qsort(order, (size_t)w->n_tensors, sizeof *order, by_offset);
    const wtensor *prev = NULL;
    apr_status s = APR_OK;
    for (int64_t k = 0; k < w->n_tensors && s == APR_OK; k++) {
        if (!order[k]->nbytes) continue;
        if (prev && order[k]->offset < prev->offset + prev->nbytes)
            s = apr_error(APR_ERR_INVALID, "gguf writer: tensors '%s' and '%s' overlap", prev->name, order[k]->name);
        prev = order[k];
    }
    free(order);
    return s;
}

apr_status apr_gguf_writer_layout(apr_gguf_writer *w)
{
    APR_CHECK(w, APR_ERR_INVALID, "apr_gguf_writer_layout: w is NULL");
    if (w->laid_out) return APR_OK;
    uint64_t size = 24 + w->kvs.len;  /* magic, version, two counts */
    for (int64_t i = 0; i < w->n_tensors; i++)
        size += 8 + strlen(w->tensors[i].name) + 4 + 8 * (uint64_t)w->tensors[i].n_dims + 4 + 8;
    uint64_t data_offset = gguf_align_up(size, w->alignment);
    APR_CHECK(data_offset, APR_ERR_INVALID, "gguf writer: header too large");
    /* Automatic offsets follow the previous tensor; caller-placed ones
     * must be aligned, and no two tensors may share a byte. */
    uint64_t next = 0, end = 0;
    for (int64_t i = 0; i < w->n_tensors; i++) {
        wtensor *t = &w->tensors[i];
        if (t->placed) {
            APR_CHECK(t->offset % w->alignment == 0, APR_ERR_INVALID, "gguf writer: tensor '%s' at offset %" PRIu64
                      " is not aligned to %" PRIu64, t->name, t->offset, w->alignment);
        } else {
            t->offset = next;
        }
        uint64_t last, stop = 0;
        int over = __builtin_add_overflow(t->offset, t->nbytes, &last);
        if (!over) stop = gguf_align_up(last, w->alignment);
        APR_CHECK(!over && (stop || !last) && stop <= UINT64_MAX - data_offset, APR_ERR_INVALID,
                  "gguf writer: tensor '%s' lies beyond 2^64 bytes", t->name);
        next = stop;
        if (stop > end) end = stop;
    }
    APR_TRY(check_overlap(w));
    w->header_size = size;
    w->data_offset = data_offset;
    w->file_size = data_offset + end;
    w->laid_out = 1;
    return APR_OK;
}

int64_t apr_gguf_writer_n_tensors(const apr_gguf_writer *w) { return w ? w->n_tensors : 0; }
uint64_t apr_gguf_writer_data_offset(const apr_gguf_writer *w) { return w && w->laid_out ? w->data_offset : 0; }
uint64_t apr_gguf_writer_file_size(const apr_gguf_writer *w) { return w && w->laid_out ? w->file_size : 0; }

uint64_t apr_gguf_writer_tensor_offset(const apr_gguf_writer *w, int64_t i)
{
    if (!w || !w->laid_out || i < 0 || i >= w->n_tensors) return 0;
    return w->data_offset + w->tensors[i].offset;
}

uint64_t apr_gguf_writer_tensor_nbytes(const apr_gguf_writer *w, int64_t i)
{
    if (!w || i < 0 || i >= w->n_tensors) return 0;
    return w->tensors[i].nbytes;
}

apr_status apr_gguf_writer_header(apr_gguf_writer *w, void **bytes, uint64_t *size)
{
    APR_CHECK(w && bytes && size, APR_ERR_INVALID, "apr_gguf_writer_header: NULL argument");
    APR_TRY(apr_gguf_writer_layout(w));
    buffer b = { 0 };
    APR_TRY(grow(&b, w->data_offset));
    put(&b, GGUF_MAGIC, 4);
    put_u32(&b, w->version);
    put_u64(&b, (uint64_t)w->n_tensors);
    put_u64(&b, (uint64_t)w->keys.n);
    put(&b, w->kvs.p, w->kvs.len);
    for (int64_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        uint64_t len = strlen(t->name);
        put_u64(&b, len);
        put(&b, t->name, len);
        put_u32(&b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(&b, (uint64_t)t->ne[d]);
        put_u32(&b, (uint32_t)t->dtype);
        put_u64(&b, t->offset);
    }
    memset(b.p + b.len, 0, w->data_offset - b.len);  /* padding to the data section */
    *bytes = b.p;
    *size = w->data_offset;
    return APR_OK;
}

/* ===================================================================== */
/* Writing the file                                                      */
/* ===================================================================== */

static apr_status pwrite_all(int fd, const void *data, uint64_t n, uint64_t at, const char *path)
{
    const uint8_t *p = data;
    while (n) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t k = pwrite(fd, p, chunk, (off_t)at);
        if (k < 0 && errno == EINTR) continue;
        APR_CHECK(k > 0, APR_ERR_IO, "%s: write at byte %" PRIu64 ": %s", path, at,
                  k < 0 ? strerror(errno) : "no progress");
        p += k;
        at += (uint64_t)k;
        n -= (uint64_t)k;
    }
    return APR_OK;
}

apr_status apr_gguf_writer_begin(apr_gguf_writer *w, const char *path)
{
    APR_CHECK(w && path, APR_ERR_INVALID, "apr_gguf_writer_begin: NULL argument");
    APR_CHECK(w->fd < 0 && !w->path, APR_ERR_INVALID, "gguf writer: %s: begun twice", path);
    void *header;
    uint64_t size;
    APR_TRY(apr_gguf_writer_header(w, &header, &size));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(header);
        return apr_error(APR_ERR_IO, "%s: %s", path, strerror(errno));
    }
    w->fd = fd;
    w->path = strdup(path);
    apr_status s = w->path ? pwrite_all(fd, header, size, 0, path) : apr_error(APR_ERR_NOMEM, "out of memory");
    free(header);
    if (s == APR_OK && ftruncate(fd, (off_t)w->file_size) != 0)
        s = apr_error(APR_ERR_IO, "%s: cannot extend to %" PRIu64 " bytes: %s", path, w->file_size, strerror(errno));
    return s;
}

apr_status apr_gguf_writer_write(apr_gguf_writer *w, int64_t i, uint64_t at, const void *data, uint64_t n)
{
    APR_CHECK(w && (data || n == 0), APR_ERR_INVALID, "apr_gguf_writer_write: NULL argument");
    APR_CHECK(w->fd >= 0, APR_ERR_INVALID, "gguf writer: write before begin");
    APR_CHECK(i >= 0 && i < w->n_tensors, APR_ERR_INVALID, "gguf writer: tensor index %" PRId64 " out of range", i);
    const wtensor *t = &w->tensors[i];
    APR_CHECK(at <= t->nbytes && n <= t->nbytes - at, APR_ERR_INVALID, "gguf writer: tensor '%s': bytes [%" PRIu64
              ", %" PRIu64 ") outside its %" PRIu64, t->name, at, at + n, t->nbytes);
    return pwrite_all(w->fd, data, n, w->data_offset + t->offset + at, w->path);
}

int apr_gguf_writer_fd(const apr_gguf_writer *w) { return w ? w->fd : -1; }

apr_status apr_gguf_writer_finish(apr_gguf_writer *w)
{
    APR_CHECK(w, APR_ERR_INVALID, "apr_gguf_writer_finish: w is NULL");
    APR_CHECK(w->fd >= 0, APR_ERR_INVALID, "gguf writer: finish before begin");
    int fd = w->fd;
    w->fd = -1;
    /* close() is where NFS and some full disks report a lost write. */
    if (close(fd) != 0) {
        int e = errno;
        unlink(w->path);
        return apr_error(APR_ERR_IO, "%s: %s", w->path, strerror(e));
    }
    return APR_OK;
}

/* ===================================================================== */
/* Copying an open file                                                  */
/* ===================================================================== */

apr_status apr_gguf_writer_from_file(const apr_gguf *f, apr_gguf_writer **out)
{
    APR_CHECK(f && out, APR_ERR_INVALID, "apr_gguf_writer_from_file: NULL argument");
    *out = NULL;
    apr_gguf_writer *w;
    APR_TRY(apr_gguf_writer_new(&w));
    apr_status s = apr_gguf_writer_set_version(w, apr_gguf_version(f));
    for (int64_t i = 0; s == APR_OK && i < apr_gguf_n_kv(f); i++) {
        const char *key;
        apr_gguf_value v;
        s = apr_gguf_kv(f, i, &key, &v);
        if (s == APR_OK) s = apr_gguf_writer_add_value(w, key, &v);
    }
    for (int64_t i = 0; s == APR_OK && i < apr_gguf_n_tensors(f); i++) {
        apr_gguf_tensor_info t;
        s = apr_gguf_tensor(f, i, &t);
        if (s == APR_OK) s = apr_gguf_writer_add_tensor_at(w, t.name, t.type, t.n_dims, t.ne, t.offset);
    }
    if (s == APR_OK) s = apr_gguf_writer_layout(w);
    if (s != APR_OK) {
        apr_gguf_writer_free(w);
        return s;
    }
    *out = w;
    return APR_OK;
}

apr_status apr_gguf_copy(const apr_gguf *f, const char *path)
{
    APR_CHECK(f && path, APR_ERR_INVALID, "apr_gguf_copy: NULL argument");
    struct stat src, dst;
    if (stat(apr_gguf_path(f), &src) == 0 && stat(path, &dst) == 0)
        APR_CHECK(src.st_dev != dst.st_dev || src.st_ino != dst.st_ino, APR_ERR_INVALID,
                  "%s: refusing to copy a file onto itself", path);
    apr_gguf_writer *w;
    APR_TRY(apr_gguf_writer_from_file(f, &w));
    /* The reader and writer agree on the header's size, or re-encoding
     * changed something: then copying would corrupt, so stop. */
    apr_status s = APR_OK;
    if (w->header_size != apr_gguf_header_size(f))
        s = apr_error(APR_ERR_FORMAT, "%s: re-encoded header is %" PRIu64 " bytes, the file's %" PRIu64,
                      apr_gguf_path(f), w->header_size, apr_gguf_header_size(f));
    if (s == APR_OK) s = apr_gguf_writer_begin(w, path);
    /* Everything after the header (padding, data, gaps) is copied as is. */
    uint64_t tail = apr_gguf_file_size(f) - w->header_size;
    const uint8_t *base = apr_gguf_base(f);
    if (s == APR_OK) s = pwrite_all(w->fd, base + w->header_size, tail, w->header_size, path);
    if (s == APR_OK && ftruncate(w->fd, (off_t)apr_gguf_file_size(f)) != 0)
        s = apr_error(APR_ERR_IO, "%s: %s", path, strerror(errno));
    if (s == APR_OK) s = apr_gguf_writer_finish(w);
    apr_gguf_writer_free(w);
    return s;
}
