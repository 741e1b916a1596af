/* gguf.c — reading GGUF files: map, validate once, then answer lookups.
 *
 * apr_gguf_open maps the file read-only and walks the whole header before
 * returning, checking every count, length, dimension and offset against the
 * bytes that remain and for overflow before it is used. After that nothing
 * can read outside the mapping, so the accessors below only look things up.
 * What is validated, and why, is listed in docs/gguf.md.
 *
 * Metadata values stay in the mapping. Arrays whose elements vary in size
 * (strings, nested arrays) get an offset per element at open time, so
 * apr_gguf_array_get on the 152K-entry vocabulary of a Qwen2 file is O(1). */
#include "formats/gguf.h"
#include "core/error.h"
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ===================================================================== */
/* Structures                                                            */
/* ===================================================================== */

typedef struct kv {
    char *key;             /* NUL-terminated copy */
    uint64_t pos;          /* byte offset of the key in the file */
    apr_gguf_value value;
    char *str;             /* NUL-terminated copy of a string value, else NULL */
} kv;

typedef struct tensor {
    apr_gguf_tensor_info info;  /* info.name is a malloc'd copy */
    uint64_t pos;               /* byte offset of its info record */
} tensor;

/* Name -> index, open addressing; slots hold index + 1 (0 = empty). */
typedef struct table {
    int64_t *slots;
    uint64_t mask;
} table;

struct apr_gguf {
    char *path;
    const uint8_t *base;     /* the mapping, or the caller's bytes */
    uint64_t size;
    int mapped;              /* base came from mmap and is unmapped on close */
    uint64_t extent;         /* size of the file the header describes: size, or for a
                                header alone (apr_gguf_open_header) its source's size */
    uint32_t version;
    uint64_t alignment;
    uint64_t header_size;    /* end of the tensor infos */
    uint64_t data_offset;    /* header_size rounded up to the alignment */
    int64_t n_kv, n_tensors;
    kv *kvs;                 /* [n_kv] */
    tensor *tensors;         /* [n_tensors] */
    table kv_index, tensor_index;
    /* Elements of the arrays of strings and of arrays: element j of the
     * array whose value.index is k starts at byte elem_off[k + j]; if it is
     * itself an array of variable-size elements, elem_child[k + j] is its
     * own index (else -1). */
    uint64_t *elem_off;
    int64_t *elem_child;
    uint64_t n_elem, cap_elem;
};

/* The walk over the header. With f == NULL it only validates (the writer
 * checks values with it) and records no array index. */
typedef struct parser {
    apr_gguf *f;
    const uint8_t *base;
    uint64_t size, pos;
    const char *path;   /* names the input in messages ("" for none) */
    char what[320];     /* the item being read: "key 'general.name'" */
} parser;

/* ===================================================================== */
/* Messages                                                              */
/* ===================================================================== */

/* Copies a name from the file into a message: printable ASCII as is, other
 * bytes as \xNN, cut at 64 bytes, so a hostile name can neither break the
 * one-line error nor flood it. */
static void quote(char *out, size_t cap, const uint8_t *s, uint64_t n)
{
    size_t o = 0;
    for (uint64_t i = 0; i < n && o + 8 < cap; i++) {
        if (i == 64) { memcpy(out + o, "...", 3); o += 3; break; }
        uint8_t c = s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
            out[o++] = (char)c;
        } else {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        }
    }
    out[o] = '\0';
}

/* "PATH: ITEM: PROBLEM at byte N" */
static apr_status bad(const parser *ps, uint64_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static apr_status bad(const parser *ps, uint64_t at, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return apr_error(APR_ERR_FORMAT, "%s%s%s%s%s at byte %" PRIu64, ps->path, *ps->path ? ": " : "",
                     ps->what, *ps->what ? ": " : "", msg, at);
}

/* ===================================================================== */
/* Reading fields                                                        */
/* ===================================================================== */

static apr_status need(parser *ps, uint64_t n, const char *field)
{
    if (n <= ps->size - ps->pos) return APR_OK;
    return bad(ps, ps->pos, "the %s ends inside the %s", ps->f ? "file" : "value", field);
}

static apr_status read_u32(parser *ps, uint32_t *v, const char *field)
{
    APR_TRY(need(ps, 4, field));
    *v = gguf_u32(ps->base + ps->pos);
    ps->pos += 4;
    return APR_OK;
}

static apr_status read_u64(parser *ps, uint64_t *v, const char *field)
{
    APR_TRY(need(ps, 8, field));
    *v = gguf_u64(ps->base + ps->pos);
    ps->pos += 8;
    return APR_OK;
}

/* A length-prefixed string; *bytes points into the input. */
static apr_status read_str(parser *ps, const char *field, const uint8_t **bytes, uint64_t *len)
{
    uint64_t at = ps->pos;
    APR_TRY(read_u64(ps, len, field));
    if (*len > ps->size - ps->pos)
        return bad(ps, at, "%s of %" PRIu64 " bytes runs past the end of the %s (%" PRIu64 " bytes)",
                   field, *len, ps->f ? "file" : "value", ps->size);
    *bytes = ps->base + ps->pos;
    ps->pos += *len;
    return APR_OK;
}

/* A key or tensor name: non-empty, bounded, no NUL (it becomes a C string). */
static apr_status read_name(parser *ps, const char *field, uint64_t max, char **out)
{
    uint64_t at = ps->pos;
    const uint8_t *s;
    uint64_t len;
    APR_TRY(read_str(ps, field, &s, &len));
    if (len == 0) return bad(ps, at, "empty %s", field);
    if (len > max) return bad(ps, at, "%s of %" PRIu64 " bytes is longer than %" PRIu64, field, len, max);
    if (memchr(s, 0, len)) return bad(ps, at, "%s contains a NUL byte", field);
    *out = malloc(len + 1);
    if (!*out) return apr_error(APR_ERR_NOMEM, "%s: out of memory reading a %s", ps->path, field);
    memcpy(*out, s, len);
    (*out)[len] = '\0';
    return APR_OK;
}

/* ===================================================================== */
/* Metadata values                                                       */
/* ===================================================================== */

/* Reserves n element slots of the array index; returns the first. The
 * caller bounded n by the bytes left, so the index never outgrows the file. */
static apr_status reserve_elems(parser *ps, uint64_t n, int64_t *first)
{
    apr_gguf *f = ps->f;
    if (f->n_elem + n > f->cap_elem) {
        uint64_t cap = f->cap_elem ? f->cap_elem : 1024;
        while (cap < f->n_elem + n) cap *= 2;
        uint64_t *off = realloc(f->elem_off, cap * sizeof *off);
        if (off) f->elem_off = off;
        int64_t *child = off ? realloc(f->elem_child, cap * sizeof *child) : NULL;
        if (!child) return apr_error(APR_ERR_NOMEM, "%s: out of memory indexing arrays", ps->path);
        f->elem_child = child;
        f->cap_elem = cap;
    }
    *first = (int64_t)f->n_elem;
    f->n_elem += n;
    return APR_OK;
}

static apr_status parse_value(parser *ps, int type, int depth, apr_gguf_value *v);

static apr_status parse_array(parser *ps, int depth, apr_gguf_value *v)
{
    uint64_t at = ps->pos;
    if (depth >= GGUF_MAX_DEPTH) return bad(ps, at, "arrays nested more than %d deep", GGUF_MAX_DEPTH);
    uint32_t et;
    uint64_t n;
    APR_TRY(read_u32(ps, &et, "array element type"));
    if (!gguf_type_known((int)et)) return bad(ps, at, "unknown array element type %" PRIu32, et);
    APR_TRY(read_u64(ps, &n, "array length"));
    v->elem_type = (int)et;
    v->len = n;
    v->data = ps->base + ps->pos;
    uint64_t left = ps->size - ps->pos;
    uint64_t esize = gguf_scalar_size((int)et);
    /* The smallest encoding of one element bounds the count before any
     * loop or allocation depends on it. */
    uint64_t min = esize ? esize : et == APR_GGUF_STRING ? 8 : 12;
    if (n > left / min)
        return bad(ps, at, "array of %" PRIu64 " %s elements runs past the end of the %s (%" PRIu64 " bytes)",
                   n, gguf_type_name((int)et), ps->f ? "file" : "value", ps->size);
    if (esize) {
        if (et == APR_GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++)
                if (ps->base[ps->pos + i] > 1)
                    return bad(ps, ps->pos + i, "boolean array element %" PRIu64 " is %u, not 0 or 1", i,
                               ps->base[ps->pos + i]);
        }
        ps->pos += n * esize;
        return APR_OK;
    }
    int64_t first = -1;
    if (ps->f) APR_TRY(reserve_elems(ps, n, &first));
    for (uint64_t i = 0; i < n; i++) {
        apr_gguf_value e;
        uint64_t start = ps->pos;
        APR_TRY(parse_value(ps, (int)et, depth + 1, &e));
        if (ps->f) {
            ps->f->elem_off[first + (int64_t)i] = start;
            ps->f->elem_child[first + (int64_t)i] = e.index;
        }
    }
    v->index = first;
    return APR_OK;
}

/* Reads one value of a known type at ps->pos; v->size is its encoded size. */
static apr_status parse_value(parser *ps, int type, int depth, apr_gguf_value *v)
{
    uint64_t start = ps->pos;
    *v = (apr_gguf_value){ .type = type, .elem_type = -1, .len = 1, .index = -1 };
    uint64_t size = gguf_scalar_size(type);
    if (size) {
        APR_TRY(need(ps, size, gguf_type_name(type)));
        v->data = ps->base + ps->pos;
        if (type == APR_GGUF_BOOL && ps->base[ps->pos] > 1)
            return bad(ps, ps->pos, "boolean value %u is not 0 or 1", ps->base[ps->pos]);
        ps->pos += size;
    } else if (type == APR_GGUF_STRING) {
        const uint8_t *s;
        APR_TRY(read_str(ps, "string", &s, &v->len));
        v->data = s;
    } else {
        APR_TRY(parse_array(ps, depth, v));
    }
    v->size = ps->pos - start;
    return APR_OK;
}

apr_status apr_gguf_check_value(const void *bytes, uint64_t n, int type, uint64_t *used)
{
    APR_CHECK(bytes || n == 0, APR_ERR_INVALID, "apr_gguf_check_value: bytes is NULL");
    APR_CHECK(gguf_type_known(type), APR_ERR_FORMAT, "unknown value type %d", type);
    parser ps = { .base = bytes, .size = n, .path = "" };
    apr_gguf_value v;
    APR_TRY(parse_value(&ps, type, 0, &v));
    *used = ps.pos;
    return APR_OK;
}

/* ===================================================================== */
/* Name tables                                                           */
/* ===================================================================== */

static uint64_t hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;  /* FNV-1a */
    while (*s) h = (h ^ (uint8_t)*s++) * 0x100000001b3ull;
    return h;
}

static apr_status table_init(table *t, int64_t n)
{
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2) cap *= 2;
    t->slots = calloc(cap, sizeof *t->slots);
    t->mask = cap - 1;
    return t->slots ? APR_OK : apr_error(APR_ERR_NOMEM, "out of memory for a name table of %" PRId64, n);
}

/* Index of name, or -1; `name_of` reads the name of an entry. */
#define TABLE_FIND(t, name, name_of, out)                                   \
    do {                                                                    \
        (out) = -1;                                                         \
        if (!(t).slots) break;                                              \
        for (uint64_t s_ = hash(name) & (t).mask; (t).slots[s_]; s_ = (s_ + 1) & (t).mask) { \
            int64_t i_ = (t).slots[s_] - 1;                                 \
            if (strcmp(name_of(i_), (name)) == 0) { (out) = i_; break; }    \
        }                                                                   \
    } while (0)

static void table_put(table *t, const char *name, int64_t i)
{
    uint64_t s = hash(name) & t->mask;
    while (t->slots[s]) s = (s + 1) & t->mask;
    t->slots[s] = i + 1;
}

/* ===================================================================== */
/* The header                                                            */
/* ===================================================================== */

static apr_status parse_kvs(parser *ps)
{
    apr_gguf *f = ps->f;
    f->kvs = calloc((size_t)f->n_kv + 1, sizeof *f->kvs);
    if (!f->kvs) return apr_error(APR_ERR_NOMEM, "%s: out of memory for %" PRId64 " keys", f->path, f->n_kv);
    APR_TRY(table_init(&f->kv_index, f->n_kv));
    for (int64_t i = 0; i < f->n_kv; i++) {
        kv *e = &f->kvs[i];
        e->pos = ps->pos;
        snprintf(ps->what, sizeof ps->what, "key %" PRId64, i);
        APR_TRY(read_name(ps, "key", GGUF_MAX_KEY, &e->key));
        char q[280];
        quote(q, sizeof q, (const uint8_t *)e->key, strlen(e->key));
        snprintf(ps->what, sizeof ps->what, "key '%s'", q);
        int64_t dup;
#define KEY_OF(j) f->kvs[j].key
        TABLE_FIND(f->kv_index, e->key, KEY_OF, dup);
#undef KEY_OF
        if (dup >= 0) return bad(ps, e->pos, "duplicate key (first at byte %" PRIu64 ")", f->kvs[dup].pos);
        table_put(&f->kv_index, e->key, i);
        uint32_t type;
        uint64_t tpos = ps->pos;
        APR_TRY(read_u32(ps, &type, "value type"));
        if (!gguf_type_known((int)type)) return bad(ps, tpos, "unknown value type %" PRIu32, type);
        APR_TRY(parse_value(ps, (int)type, 0, &e->value));
        if (type == APR_GGUF_STRING) {
            e->str = malloc(e->value.len + 1);
            if (!e->str) return apr_error(APR_ERR_NOMEM, "%s: out of memory", f->path);
            memcpy(e->str, e->value.data, e->value.len);
            e->str[e->value.len] = '\0';
        }
    }
    ps->what[0] = '\0';
    return APR_OK;
}

/* general.alignment, if present: a uint32 power of two (llama.cpp's rule). */
static apr_status read_alignment(parser *ps)
{
    apr_gguf *f = ps->f;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t i = apr_gguf_find_kv(f, "general.alignment");
    if (i < 0) return APR_OK;
    const apr_gguf_value *v = &f->kvs[i].value;
    uint64_t at = (uint64_t)((const uint8_t *)v->data - f->base);
    snprintf(ps->what, sizeof ps->what, "key 'general.alignment'");
    if (v->type != APR_GGUF_UINT32) return bad(ps, at, "must be a uint32, not %s", gguf_type_name(v->type));
    uint32_t a = gguf_u32(v->data);
    if (a == 0 || (a & (a - 1))) return bad(ps, at, "%" PRIu32 " is not a power of two", a);
    f->alignment = a;
    ps->what[0] = '\0';
    return APR_OK;
}

static apr_status parse_tensor(parser *ps, tensor *t)
{
    apr_gguf *f = ps->f;
    apr_gguf_tensor_info *ti = &t->info;
    t->pos = ps->pos;
    char *name = NULL;
    APR_TRY(read_name(ps, "tensor name", GGUF_MAX_NAME, &name));
    ti->name = name;
    char q[280];
    quote(q, sizeof q, (const uint8_t *)name, strlen(name));
    snprintf(ps->what, sizeof ps->what, "tensor '%s'", q);

    uint32_t n_dims;
    uint64_t at = ps->pos;
    APR_TRY(read_u32(ps, &n_dims, "dimension count"));
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return bad(ps, at, "has %" PRIu32 " dimensions (1 to %d allowed)", n_dims, GGUF_MAX_DIMS);
    ti->n_dims = (int)n_dims;
    int64_t n = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) ti->ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t ne;
        at = ps->pos;
        APR_TRY(read_u64(ps, &ne, "dimensions"));
        if (ne > INT64_MAX) return bad(ps, at, "dimension %" PRIu32 " is %" PRIu64 ", beyond 2^63-1", d, ne);
        ti->ne[d] = (int64_t)ne;
        if (__builtin_mul_overflow(n, (int64_t)ne, &n))
            return bad(ps, at, "dimensions hold more than 2^63-1 elements");
    }
    uint32_t type;
    at = ps->pos;
    APR_TRY(read_u32(ps, &type, "tensor type"));
    const char *tname = apr_dtype_name((int)type);
    int64_t block = apr_dtype_block_size((int)type);
    if (!tname || block <= 0 || apr_dtype_block_bytes((int)type) <= 0)
        return bad(ps, at, "unknown tensor type %" PRIu32, type);
    ti->type = (int)type;
    if (ti->ne[0] % block)
        return bad(ps, at, "rows of %" PRId64 " elements are not a whole number of %s blocks (%" PRId64 ")",
                   ti->ne[0], tname, block);
    if (apr_dtype_nbytes((int)type, n, &ti->nbytes) != APR_OK)
        return bad(ps, at, "%" PRId64 " elements of %s do not fit in 2^64 bytes", n, tname);
    at = ps->pos;
    APR_TRY(read_u64(ps, &ti->offset, "data offset"));
    if (ti->offset % f->alignment)
        return bad(ps, at, "data offset %" PRIu64 " is not a multiple of the alignment (%" PRIu64 ")",
                   ti->offset, f->alignment);
    return APR_OK;
}

/* Every tensor's data lies inside the file. */
static apr_status check_bounds(parser *ps)
{
    apr_gguf *f = ps->f;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        apr_gguf_tensor_info *ti = &f->tensors[i].info;
        uint64_t begin, end;
        int over = __builtin_add_overflow(f->data_offset, ti->offset, &begin);
        over |= __builtin_add_overflow(begin, ti->nbytes, &end);
        if (over || end > f->extent) {
            char q[280];
            quote(q, sizeof q, (const uint8_t *)ti->name, strlen(ti->name));
            if (over)
                return apr_error(APR_ERR_FORMAT, "%s: tensor '%s' data at offset %" PRIu64 " (%" PRIu64
                                 " bytes) lies beyond 2^64", f->path, q, ti->offset, ti->nbytes);
            return apr_error(APR_ERR_FORMAT, "%s: tensor '%s' data [%" PRIu64 ", %" PRIu64
                             ") past end of file (%" PRIu64 " bytes)", f->path, q, begin, end, f->extent);
        }
        ti->data = end <= f->size ? f->base + begin : NULL;  /* NULL: a header alone */
    }
    return APR_OK;
}

typedef struct span { uint64_t offset; int64_t tensor; } span;

static int by_offset(const void *a, const void *b)
{
    uint64_t x = ((const span *)a)->offset, y = ((const span *)b)->offset;
    return x < y ? -1 : x > y;
}

/* No two tensors share bytes: a writer bug that would make weights alias. */
static apr_status check_overlap(apr_gguf *f)
{
    if (f->n_tensors < 2) return APR_OK;
    span *order = malloc((size_t)f->n_tensors * sizeof *order);
    if (!order) return apr_error(APR_ERR_NOMEM, "%s: out of memory", f->path);
    for (int64_t i = 0; i < f->n_tensors; i++) order[i] = (span){ f->tensors[i].info.offset, i };
    qsort(order, (size_t)f->n_tensors, sizeof *order, by_offset);
    apr_status s = APR_OK;
    const apr_gguf_tensor_info *prev = NULL;
    for (int64_t k = 0; k < f->n_tensors && s == APR_OK; k++) {
        const apr_gguf_tensor_info *ti = &f->tensors[order[k].tensor].info;
        if (ti->nbytes == 0) continue;
        if (prev && ti->offset < prev->offset + prev->nbytes) {
            char a[280], b[280];
            quote(a, sizeof a, (const uint8_t *)prev->name, strlen(prev->name));
            quote(b, sizeof b, (const uint8_t *)ti->name, strlen(ti->name));
            s = apr_error(APR_ERR_FORMAT, "%s: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64
                          ", %" PRIu64 ") overlap", f->path, a, f->data_offset + prev->offset,
                          f->data_offset + prev->offset + prev->nbytes, b, f->data_offset + ti->offset,
                          f->data_offset + ti->offset + ti->nbytes);
        }
        prev = ti;
    }
    free(order);
    return s;
}

static apr_status parse_tensors(parser *ps)
{
    apr_gguf *f = ps->f;
    /* The smallest tensor info: name length and one byte, one dimension,
     * type, offset (8 + 1 + 4 + 8 + 4 + 8 bytes). */
    if ((uint64_t)f->n_tensors > (ps->size - ps->pos) / 33)
        return bad(ps, 8, "tensor count %" PRId64 " cannot fit in the %" PRIu64 " bytes after the metadata",
                   f->n_tensors, ps->size - ps->pos);
    f->tensors = calloc((size_t)f->n_tensors + 1, sizeof *f->tensors);
    if (!f->tensors) return apr_error(APR_ERR_NOMEM, "%s: out of memory for %" PRId64 " tensors", f->path, f->n_tensors);
    APR_TRY(table_init(&f->tensor_index, f->n_tensors));
    for (int64_t i = 0; i < f->n_tensors; i++) {
        tensor *t = &f->tensors[i];
        snprintf(ps->what, sizeof ps->what, "tensor %" PRId64, i);
        APR_TRY(parse_tensor(ps, t));
        int64_t dup;
#define NAME_OF(j) f->tensors[j].info.name
        TABLE_FIND(f->tensor_index, t->info.name, NAME_OF, dup);
#undef NAME_OF
        if (dup >= 0) return bad(ps, t->pos, "duplicate tensor name (first at byte %" PRIu64 ")", f->tensors[dup].pos);
        table_put(&f->tensor_index, t->info.name, i);
    }
    ps->what[0] = '\0';
    f->header_size = ps->pos;
    f->data_offset = gguf_align_up(ps->pos, f->alignment);
    if (f->data_offset == 0 && ps->pos) return bad(ps, ps->pos, "alignment padding overflows");
    APR_TRY(check_bounds(ps));
    return check_overlap(f);
}

static apr_status parse(apr_gguf *f)
{
    parser ps = { .f = f, .base = f->base, .size = f->size, .path = f->path };
    if (f->size == 0) return bad(&ps, 0, "empty file, not GGUF");
    APR_TRY(need(&ps, 4, "magic"));
    if (memcmp(f->base, GGUF_MAGIC, 4) != 0) {
        char q[40];
        quote(q, sizeof q, f->base, 4);
        return bad(&ps, 0, "not a GGUF file (magic '%s', expected 'GGUF')", q);
    }
    ps.pos = 4;
    APR_TRY(read_u32(&ps, &f->version, "version"));
    if (f->version == 1)
        return bad(&ps, 4, "GGUF version 1 is not supported (32-bit counts; apr reads versions 2 and 3)");
    if (f->version == 0x02000000 || f->version == 0x03000000)
        return bad(&ps, 4, "big-endian GGUF is not supported");
    if (f->version != 2 && f->version != 3)
        return bad(&ps, 4, "GGUF version %" PRIu32 " is not supported (apr reads versions 2 and 3)", f->version);
    uint64_t n_tensors, n_kv;
    APR_TRY(read_u64(&ps, &n_tensors, "tensor count"));
    APR_TRY(read_u64(&ps, &n_kv, "key/value count"));
    /* The smallest key/value: a 1-byte key, its type and a 1-byte value. */
    if (n_kv > (f->size - ps.pos) / 14)
        return bad(&ps, 16, "key/value count %" PRIu64 " cannot fit in a file of %" PRIu64 " bytes", n_kv, f->size);
    if (n_tensors > (f->size - ps.pos) / 33)
        return bad(&ps, 8, "tensor count %" PRIu64 " cannot fit in a file of %" PRIu64 " bytes", n_tensors, f->size);
    f->n_kv = (int64_t)n_kv;
    f->n_tensors = (int64_t)n_tensors;
    APR_TRY(parse_kvs(&ps));
    APR_TRY(read_alignment(&ps));
    return parse_tensors(&ps);
}

/* ===================================================================== */
/* Open and close                                                        */
/* ===================================================================== */

static apr_gguf *new_file(const char *path)
{
    apr_gguf *f = calloc(1, sizeof *f);
    if (f) f->path = strdup(path);
    if (!f || !f->path) {
        free(f);
        apr_error(APR_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    return f;
}

static apr_status finish_open(apr_gguf *f, apr_gguf **out)
{
    if (!f->extent) f->extent = f->size;
    apr_status s = parse(f);
    if (s != APR_OK) {
        apr_gguf_close(f);
        return s;
    }
    *out = f;
    return APR_OK;
}

apr_status apr_gguf_open(const char *path, apr_gguf **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_gguf_open: out is NULL");
    *out = NULL;
    APR_CHECK(path, APR_ERR_INVALID, "apr_gguf_open: path is NULL");
    int fd;
    uint64_t size;
    APR_TRY(apr_file_open_regular(path, &fd, &size));  /* a FIFO fails here instead of blocking */
    apr_gguf *f = new_file(path);
    if (!f) {
        close(fd);
        return APR_ERR_NOMEM;
    }
    f->size = size;
    if (f->size > 0) {
        void *p = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            apr_gguf_close(f);
            return apr_error(APR_ERR_IO, "%s: mmap: %s", path, strerror(e));
        }
        f->base = p;
        f->mapped = 1;
    } else {
        f->base = (const uint8_t *)"";
    }
    close(fd);  /* the mapping keeps the file */
    return finish_open(f, out);
}

apr_status apr_gguf_open_memory(const void *data, size_t size, apr_gguf **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_gguf_open_memory: out is NULL");
    *out = NULL;
    APR_CHECK(data || size == 0, APR_ERR_INVALID, "apr_gguf_open_memory: data is NULL");
    apr_gguf *f = new_file("<memory>");
    if (!f) return APR_ERR_NOMEM;
    f->base = size ? data : (const uint8_t *)"";
    f->size = size;
    return finish_open(f, out);
}

apr_status apr_gguf_open_header(const void *data, size_t size, uint64_t file_size, const char *name, apr_gguf **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_gguf_open_header: out is NULL");
    *out = NULL;
    APR_CHECK((data || size == 0) && name, APR_ERR_INVALID, "apr_gguf_open_header: NULL argument");
    APR_CHECK(size <= file_size, APR_ERR_FORMAT, "%s: a header of %zu bytes is larger than its file (%" PRIu64
              " bytes)", name, size, file_size);
    apr_gguf *f = new_file(name);
    if (!f) return APR_ERR_NOMEM;
    f->base = size ? data : (const uint8_t *)"";
    f->size = size;
    /* A zero extent would mean "the bytes given": a header alone of an empty
     * file is refused by parse() as empty anyway. */
    f->extent = file_size ? file_size : size;
    return finish_open(f, out);
}

void apr_gguf_close(apr_gguf *f)
{
    if (!f) return;
    for (int64_t i = 0; f->kvs && i < f->n_kv; i++) {
        free(f->kvs[i].key);
        free(f->kvs[i].str);
    }
    for (int64_t i = 0; f->tensors && i < f->n_tensors; i++) free((char *)f->tensors[i].info.name);
    free(f->kvs);
    free(f->tensors);
    free(f->kv_index.slots);
    free(f->tensor_index.slots);
    free(f->elem_off);
    free(f->elem_child);
    if (f->mapped) munmap((void *)f->base, (size_t)f->size);
    free(f->path);
    free(f);
}

/* ===================================================================== */
/* Queries                                                               */
/* ===================================================================== */

const char *apr_gguf_path(const apr_gguf *f) { return f ? f->path : ""; }
uint32_t apr_gguf_version(const apr_gguf *f) { return f ? f->version : 0; }
uint64_t apr_gguf_file_size(const apr_gguf *f) { return f ? f->extent : 0; }
uint64_t apr_gguf_alignment(const apr_gguf *f) { return f ? f->alignment : 0; }
uint64_t apr_gguf_header_size(const apr_gguf *f) { return f ? f->header_size : 0; }
uint64_t apr_gguf_data_offset(const apr_gguf *f) { return f ? f->data_offset : 0; }
const void *apr_gguf_base(const apr_gguf *f) { return f ? f->base : NULL; }
int64_t apr_gguf_n_kv(const apr_gguf *f) { return f ? f->n_kv : 0; }
int64_t apr_gguf_n_tensors(const apr_gguf *f) { return f ? f->n_tensors : 0; }

apr_status apr_gguf_kv(const apr_gguf *f, int64_t i, const char **key, apr_gguf_value *out)
{
    APR_CHECK(f && key && out, APR_ERR_INVALID, "apr_gguf_kv: NULL argument");
    APR_CHECK(i >= 0 && i < f->n_kv, APR_ERR_RANGE, "%s: key index %" PRId64 " out of range [0, %" PRId64 ")",
              f->path, i, f->n_kv);
    *key = f->kvs[i].key;
    *out = f->kvs[i].value;
    return APR_OK;
}

int64_t apr_gguf_find_kv(const apr_gguf *f, const char *key)
{
    if (!f || !key) return -1;
    int64_t i;
#define KEY_OF(j) f->kvs[j].key
    TABLE_FIND(f->kv_index, key, KEY_OF, i);
#undef KEY_OF
    return i;
}

/* Encoded size of the array whose encoding starts at byte `at`, with
 * `index` its element index: the end of its last element. */
static uint64_t array_span(const apr_gguf *f, uint64_t at, int64_t index)
{
    int et = (int)gguf_u32(f->base + at);
    uint64_t n = gguf_u64(f->base + at + 4);
    uint64_t esize = gguf_scalar_size(et);
    if (esize || n == 0) return 12 + n * esize;
    uint64_t last = f->elem_off[index + (int64_t)n - 1];
    uint64_t tail = et == APR_GGUF_STRING ? 8 + gguf_u64(f->base + last)
                                           : array_span(f, last, f->elem_child[index + (int64_t)n - 1]);
    return last + tail - at;
}

apr_status apr_gguf_array_get(const apr_gguf *f, const apr_gguf_value *array, uint64_t i, apr_gguf_value *out)
{
    APR_CHECK(f && array && out, APR_ERR_INVALID, "apr_gguf_array_get: NULL argument");
    APR_CHECK(array->type == APR_GGUF_ARRAY, APR_ERR_INVALID, "apr_gguf_array_get: value is a %s, not an array",
              gguf_type_name(array->type));
    APR_CHECK(i < array->len, APR_ERR_RANGE, "%s: array index %" PRIu64 " out of range [0, %" PRIu64 ")",
              f->path, i, array->len);
    int et = array->elem_type;
    uint64_t esize = gguf_scalar_size(et);
    const uint8_t *data = array->data;
    if (esize) {
        /* The value is the caller's struct: make sure it describes bytes of
         * this file before reading through it. */
        APR_CHECK(data >= f->base && (uint64_t)(data - f->base) <= f->size &&
                  array->len <= (f->size - (uint64_t)(data - f->base)) / esize,
                  APR_ERR_INVALID, "apr_gguf_array_get: the array is not from %s", f->path);
        *out = (apr_gguf_value){ .type = et, .elem_type = -1, .len = 1, .data = data + i * esize,
                                 .size = esize, .index = -1 };
        return APR_OK;
    }
    APR_CHECK(array->index >= 0 && (uint64_t)array->index <= f->n_elem &&
              array->len <= f->n_elem - (uint64_t)array->index,
              APR_ERR_INVALID, "apr_gguf_array_get: the array is not from %s", f->path);
    uint64_t at = f->elem_off[array->index + (int64_t)i];
    if (et == APR_GGUF_STRING) {
        uint64_t len = gguf_u64(f->base + at);
        *out = (apr_gguf_value){ .type = et, .elem_type = -1, .len = len, .data = f->base + at + 8,
                                 .size = 8 + len, .index = -1 };
    } else {
        int64_t child = f->elem_child[array->index + (int64_t)i];
        *out = (apr_gguf_value){ .type = APR_GGUF_ARRAY, .elem_type = (int)gguf_u32(f->base + at),
                                 .len = gguf_u64(f->base + at + 4), .data = f->base + at + 12,
                                 .size = array_span(f, at, child), .index = child };
    }
    return APR_OK;
}

/* ===================================================================== */
/* Typed lookups                                                         */
/* ===================================================================== */

static apr_status lookup(const apr_gguf *f, const char *key, const apr_gguf_value **v)
{
    APR_CHECK(f && key, APR_ERR_INVALID, "apr_gguf_get: NULL argument");
    int64_t i = apr_gguf_find_kv(f, key);
    APR_CHECK(i >= 0, APR_ERR_NOT_FOUND, "%s: no key '%s'", f->path, key);
    *v = &f->kvs[i].value;
    return APR_OK;
}

/* The kv holding a value that lookup() returned. */
static const kv *kv_of(const apr_gguf_value *v)
{
    return (const kv *)((const char *)v - offsetof(kv, value));
}

apr_status apr_gguf_value_int(const apr_gguf_value *v, const char *path, const char *key, int64_t *out)
{
    const uint8_t *p = v->data;
    int64_t x;
    switch (v->type) {
    case APR_GGUF_UINT8: x = *p; break;
    case APR_GGUF_INT8: x = (int8_t)*p; break;
    case APR_GGUF_UINT16: { uint16_t u; memcpy(&u, p, 2); x = u; break; }
    case APR_GGUF_INT16: { int16_t u; memcpy(&u, p, 2); x = u; break; }
    case APR_GGUF_UINT32: x = gguf_u32(p); break;
    case APR_GGUF_INT32: x = (int32_t)gguf_u32(p); break;
    case APR_GGUF_INT64: x = (int64_t)gguf_u64(p); break;
    case APR_GGUF_UINT64:
        APR_CHECK(gguf_u64(p) <= INT64_MAX, APR_ERR_FORMAT, "%s: key '%s' = %" PRIu64 " does not fit in int64",
                  path, key, gguf_u64(p));
        x = (int64_t)gguf_u64(p);
        break;
    default:
        return apr_error(APR_ERR_FORMAT, "%s: key '%s' is a %s, not an integer", path, key, gguf_type_name(v->type));
    }
    *out = x;
    return APR_OK;
}

apr_status apr_gguf_value_float(const apr_gguf_value *v, const char *path, const char *key, double *out)
{
    if (v->type == APR_GGUF_FLOAT32) {
        float x;
        memcpy(&x, v->data, 4);
        *out = x;
    } else if (v->type == APR_GGUF_FLOAT64) {
        memcpy(out, v->data, 8);
    } else {
        return apr_error(APR_ERR_FORMAT, "%s: key '%s' is a %s, not a float", path, key, gguf_type_name(v->type));
    }
    return APR_OK;
}

apr_status apr_gguf_value_bool(const apr_gguf_value *v, const char *path, const char *key, int *out)
{
    APR_CHECK(v->type == APR_GGUF_BOOL, APR_ERR_FORMAT, "%s: key '%s' is a %s, not a bool", path, key,
              gguf_type_name(v->type));
    *out = *(const uint8_t *)v->data;
    return APR_OK;
}

apr_status apr_gguf_value_check_str(const apr_gguf_value *v, const char *path, const char *key)
{
    APR_CHECK(v->type == APR_GGUF_STRING, APR_ERR_FORMAT, "%s: key '%s' is a %s, not a string", path, key,
              gguf_type_name(v->type));
    APR_CHECK(!memchr(v->data, 0, v->len), APR_ERR_FORMAT, "%s: key '%s' holds a NUL byte", path, key);
    return APR_OK;
}

apr_status apr_gguf_get_int(const apr_gguf *f, const char *key, int64_t *out)
{
    const apr_gguf_value *v = NULL;
    APR_TRY(lookup(f, key, &v));
    return apr_gguf_value_int(v, f->path, key, out);
}

apr_status apr_gguf_get_float(const apr_gguf *f, const char *key, double *out)
{
    const apr_gguf_value *v = NULL;
    APR_TRY(lookup(f, key, &v));
    return apr_gguf_value_float(v, f->path, key, out);
}

apr_status apr_gguf_get_bool(const apr_gguf *f, const char *key, int *out)
{
    const apr_gguf_value *v = NULL;
    APR_TRY(lookup(f, key, &v));
    return apr_gguf_value_bool(v, f->path, key, out);
}

apr_status apr_gguf_get_str(const apr_gguf *f, const char *key, const char **out)
{
    const apr_gguf_value *v = NULL;
    APR_TRY(lookup(f, key, &v));
    APR_TRY(apr_gguf_value_check_str(v, f->path, key));
    *out = kv_of(v)->str;
    return APR_OK;
}

/* ===================================================================== */
/* Tensors                                                               */
/* ===================================================================== */

apr_status apr_gguf_tensor(const apr_gguf *f, int64_t i, apr_gguf_tensor_info *out)
{
    APR_CHECK(f && out, APR_ERR_INVALID, "apr_gguf_tensor: NULL argument");
    APR_CHECK(i >= 0 && i < f->n_tensors, APR_ERR_RANGE, "%s: tensor index %" PRId64 " out of range [0, %" PRId64 ")",
              f->path, i, f->n_tensors);
    *out = f->tensors[i].info;
    return APR_OK;
}

int64_t apr_gguf_find_tensor(const apr_gguf *f, const char *name)
{
    if (!f || !name) return -1;
    int64_t i;
#define NAME_OF(j) f->tensors[j].info.name
    TABLE_FIND(f->tensor_index, name, NAME_OF, i);
#undef NAME_OF
    return i;
}
