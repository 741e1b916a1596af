/* gguf.h — what the GGUF reader and writer share (internal).
 *
 * The file format (github.com/ggml-org/ggml, docs/gguf.md): a header of
 * magic, version, tensor count and key/value count; the key/value pairs; one
 * info record per tensor (name, dimensions, type, offset); padding to the
 * alignment; then the tensor data, each tensor at an aligned offset from the
 * start of that data section. All numbers are little-endian. docs/gguf.md in
 * this repository lists what the reader validates. */
#ifndef APR_FORMATS_GGUF_H
#define APR_FORMATS_GGUF_H

#include <stdint.h>
#include <string.h>

#include "apr.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader reads little-endian numbers in place: port it before building big-endian"
#endif

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32u  /* when general.alignment is absent (GGUF spec) */
#define GGUF_MAX_DIMS 4             /* ggml tensors have at most four dimensions */
#define GGUF_MAX_DEPTH 16           /* arrays nested deeper than this are refused */
#define GGUF_MAX_KEY 65535          /* the spec's limit on a key's length */
#define GGUF_MAX_NAME 4096          /* far beyond ggml's 64; bounds a hostile name */

/* Bytes of a scalar of this value type; 0 for strings, arrays and types the
 * format does not define. */
static inline uint64_t gguf_scalar_size(int type)
{
    switch (type) {
    case APR_GGUF_UINT8: case APR_GGUF_INT8: case APR_GGUF_BOOL: return 1;
    case APR_GGUF_UINT16: case APR_GGUF_INT16: return 2;
    case APR_GGUF_UINT32: case APR_GGUF_INT32: case APR_GGUF_FLOAT32: return 4;
    case APR_GGUF_UINT64: case APR_GGUF_INT64: case APR_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* "uint32", "string", ... for messages; "unknown" for other numbers. */
static inline const char *gguf_type_name(int type)
{
    static const char *const names[] = { "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                         "bool", "string", "array", "uint64", "int64", "float64" };
    return type >= 0 && type <= APR_GGUF_FLOAT64 ? names[type] : "unknown";
}

static inline int gguf_type_known(int type)
{
    return type == APR_GGUF_STRING || type == APR_GGUF_ARRAY || gguf_scalar_size(type) > 0;
}

/* Bytes in front of a value's `data` pointer that belong to its encoding:
 * a string's 8-byte length, an array's element type and count. The writer
 * copies a value read from a file as the span [data - prefix, +size). */
static inline uint64_t gguf_value_prefix(int type)
{
    return type == APR_GGUF_STRING ? 8 : type == APR_GGUF_ARRAY ? 12 : 0;
}

static inline uint32_t gguf_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t gguf_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* Rounds x up to a multiple of align (a power of two); 0 on overflow. */
static inline uint64_t gguf_align_up(uint64_t x, uint64_t align)
{
    if (x > UINT64_MAX - (align - 1)) return 0;
    return (x + align - 1) & ~(align - 1);
}

/* One metadata value as a C type, with the rules and messages every model
 * source uses (apr_gguf_get_* and apr_source_get_*): any integer type that
 * fits int64; float32 or float64; a bool; a string without NUL bytes.
 * `path` and `key` name the value in a failure's message. */
apr_status apr_gguf_value_int(const apr_gguf_value *v, const char *path, const char *key, int64_t *out);
apr_status apr_gguf_value_float(const apr_gguf_value *v, const char *path, const char *key, double *out);
apr_status apr_gguf_value_bool(const apr_gguf_value *v, const char *path, const char *key, int *out);
apr_status apr_gguf_value_check_str(const apr_gguf_value *v, const char *path, const char *key);

/* Checks one encoded value of `type` at bytes [0, n): the same rules the
 * reader applies to a file (lengths in bounds, known types, booleans 0 or 1,
 * nesting depth). On success *used is the value's encoded size. The message
 * of a failure is "<problem> at byte N", N counted from `bytes`. The writer
 * uses it to refuse values the reader would reject. */
apr_status apr_gguf_check_value(const void *bytes, uint64_t n, int type, uint64_t *used);

/* Parses a GGUF header held apart from its file (an APR file keeps its
 * source's, docs/apr-format.md): `size` bytes at data, at least up to the end
 * of the tensor infos, of a file of `file_size` bytes. Every check of
 * apr_gguf_open applies, tensors placed against file_size; the tensors'
 * `data` is NULL and apr_gguf_file_size answers file_size. `name` names it in
 * messages. The bytes are not copied: they must outlive the result. */
apr_status apr_gguf_open_header(const void *data, size_t size, uint64_t file_size, const char *name,
                                apr_gguf **out);

#endif
