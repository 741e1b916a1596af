/* source.h — the model-source interface, for the formats that implement it
 * (internal).
 *
 * A source is a model file of any container apr reads, behind one face:
 * metadata by key, the tensor table, each tensor's bytes. The model loader
 * (model.c, qwen2.c), the tokenizer and the Lua side (apr.open, info,
 * inspect, verify) reach files only through the apr_source_* functions of
 * apr.h ("Model sources"); source.c implements those once, on top of the
 * few operations each format provides here.
 *
 * Adding a container (formats/apr.c, say):
 *  1. Embed an apr_source as the first member of the format's struct and
 *     fill `ops` and `info` when opening. Everything the tables and
 *     pointers below describe must be validated at open: after a successful
 *     open no operation may read outside the file, whatever its bytes.
 *  2. Define an apr_source_format (probe, open, open_memory) and add it to
 *     the list in source.c. apr_source_open tries each format's probe on the
 *     file's first bytes; a file no probe claims goes to GGUF's open, whose
 *     message names the bad magic.
 *
 * The contract of each operation is in apr.h, on the public function of
 * the same name; what it adds for implementers is noted here. Messages name
 * the file (and the tensor, chunk or key) and go through apr_error. */
#ifndef APR_FORMATS_SOURCE_H
#define APR_FORMATS_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "apr.h"

typedef struct apr_source_ops {
    /* Frees everything the open made, the struct included (s is never
     * NULL here). */
    void (*close)(apr_source *s);

    /* --- metadata (GGUF's value model: apr.h apr_gguf_value) ---------- */
    /* Index of key in [0, info.n_kv), or -1. */
    int64_t (*find_kv)(const apr_source *s, const char *key);
    /* Key i (0 <= i < info.n_kv; the caller checked) and its value. The
     * key is NUL-terminated; values of type STRING need not be, and may
     * hold NUL bytes (source.c's get_str refuses those); `data` of every
     * value, nested arrays included, stays valid until close. */
    apr_status (*kv)(const apr_source *s, int64_t i, const char **key, apr_gguf_value *out);
    /* Key i's value as a NUL-terminated string kept until close (source.c
     * checked it is a STRING holding no NUL byte); NULL only when out of
     * memory. */
    const char *(*str)(const apr_source *s, int64_t i);
    /* Element i of an array value this source returned (i < array->len;
     * the caller checked both). */
    apr_status (*array_get)(const apr_source *s, const apr_gguf_value *array, uint64_t i, apr_gguf_value *out);

    /* --- tensors ------------------------------------------------------ */
    /* Tensor i's description (0 <= i < info.n_tensors; checked). */
    apr_status (*tensor)(const apr_source *s, int64_t i, apr_tensor_info *out);
    /* Index of the tensor called name, or -1. */
    int64_t (*find_tensor)(const apr_source *s, const char *name);
    /* See apr_source_tensor_data: the whole tensor, borrowed. For tensors
     * not stored as is, decode into a buffer the source owns and keep it
     * until tensor_release(i) or close. Calls for different tensors may
     * run on different threads at once. */
    apr_status (*tensor_data)(apr_source *s, int64_t i, const void **data);
    /* See apr_source_tensor_read: decoded bytes [offset, offset + n) of
     * tensor i (in range: the caller checked) into dst. Must be safe from
     * any number of threads at once, on any tensors (the loader decodes
     * chunks in parallel into its staging buffers); keep per-call state on
     * the stack or per thread. */
    apr_status (*tensor_read)(apr_source *s, int64_t i, uint64_t offset, void *dst, uint64_t n);
    /* Drops what tensor_data(i) decoded (no-op for mapped tensors). */
    void (*tensor_release)(apr_source *s, int64_t i);

    /* --- files -------------------------------------------------------- */
    /* File k (0 <= k < info.n_files; checked): its path and its bytes as
     * stored, mapped read-only for the source's life (whole-file SHA-256). */
    apr_status (*file)(const apr_source *s, int k, const char **path, const void **bytes, uint64_t *size);
    /* The GGUF file behind file k, for GGUF sources; NULL for others (the
     * member may be NULL). */
    const apr_gguf *(*gguf)(const apr_source *s, int k);
} apr_source_ops;

/* The common head of every source. */
struct apr_source {
    const apr_source_ops *ops;
    apr_source_info info;     /* filled by the open; info.format a static string */
    char *path;               /* as opened ("<memory>" for memory images); the open allocates it, close frees it */
};

/* A container format apr reads. */
typedef struct apr_source_format {
    const char *name;         /* "GGUF" */
    /* 1 if a file starting with these n bytes (n >= 8 unless the file is
     * shorter) is this format's. */
    int (*probe)(const uint8_t *head, size_t n);
    /* Opens and validates path (source.c checked it is a regular file, but
     * the open must still use apr_file_open_regular: the path may change).
     * On failure *out is NULL and the message names the file. */
    apr_status (*open)(const char *path, apr_source **out);
    /* The same over size bytes at data (not copied: they outlive the
     * source), named "<memory>": the fuzzers and tests. */
    apr_status (*open_memory)(const void *data, size_t size, apr_source **out);
} apr_source_format;

/* GGUF: one file, or a split set read as one source (formats/gguf_source.c). */
extern const apr_source_format apr_gguf_source_format;
/* APR v2 (formats/apr_source.c, docs/apr-format.md). */
extern const apr_source_format apr_aprf_source_format;

#endif
