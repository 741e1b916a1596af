/* apr_format.h — what the APR v2 reader, writer and export share (internal).
 *
 * The format is docs/apr-format.md: a fixed header, the source GGUF's header
 * kept verbatim, the tensors' chunks (4 KiB-aligned per tensor), the GGUF's
 * padding bytes ("gaps"), the index (tensor and chunk records, names) and a
 * fixed trailer at the end that points at the index. All numbers are
 * little-endian; records are read with memcpy (the mapping is not aligned
 * for them). */
#ifndef APR_FORMATS_APR_FORMAT_H
#define APR_FORMATS_APR_FORMAT_H

#include <stdint.h>
#include <string.h>

#include "apr.h"
#include "formats/gguf.h"
#include "formats/source.h"

#define APRF_MAGIC "APRM"
#define APRF_VERSION 2u
#define APRF_HEADER_SIZE 128u
#define APRF_TRAILER_SIZE 144u
#define APRF_TENSOR_REC 96u
#define APRF_CHUNK_REC 24u
#define APRF_ALIGN 4096u                     /* every tensor's first chunk, and the data section */
#define APRF_MAX_CHUNK ((uint32_t)4 << 20)   /* the format's bound on a chunk's raw size */
#define APRF_DEFAULT_CHUNK ((uint32_t)2 << 20)
#define APRF_FLAG_GGUF_META 1u               /* header flags: the metadata is a GGUF header */
#define APRF_TRAILER_SOURCE_SHA 1u           /* trailer flags: the source SHA-256 is known */

/* Header fields, at these offsets of the first 128 bytes. */
enum {
    APRF_H_MAGIC = 0, APRF_H_VERSION = 4, APRF_H_SIZE = 8, APRF_H_FLAGS = 12,
    APRF_H_META_OFFSET = 16, APRF_H_META_SIZE = 24, APRF_H_DATA_OFFSET = 32, APRF_H_GGUF_SIZE = 40,
    APRF_H_N_TENSORS = 48, APRF_H_META_XXH = 56, APRF_H_XXH = 120
};

/* Trailer fields, at these offsets of the last 144 bytes. */
enum {
    APRF_T_INDEX_OFFSET = 0, APRF_T_INDEX_SIZE = 8, APRF_T_N_CHUNKS = 16, APRF_T_GAPS_OFFSET = 24,
    APRF_T_GAPS_SIZE = 32, APRF_T_INDEX_XXH = 40, APRF_T_GAPS_XXH = 48, APRF_T_FLAGS = 56,
    APRF_T_SOURCE_SHA = 64, APRF_T_FILE_SHA = 96, APRF_T_XXH = 128, APRF_T_SIZE = 136, APRF_T_MAGIC = 140
};

/* A tensor record's fields. */
enum {
    APRF_R_NAME_OFF = 0, APRF_R_NAME_LEN = 8, APRF_R_DTYPE = 12, APRF_R_N_DIMS = 16, APRF_R_CODEC = 20,
    APRF_R_FILTER = 21, APRF_R_LEVEL = 22, APRF_R_NE = 24, APRF_R_NBYTES = 56, APRF_R_SOURCE_OFFSET = 64,
    APRF_R_FIRST_CHUNK = 72, APRF_R_N_CHUNKS = 80, APRF_R_CHUNK_BYTES = 84
};

/* An open APR file (formats/apr.c opens it; formats/apr_source.c makes it a
 * model source: the head of the struct is the source's, so an apr_aprf is
 * an apr_source). */
struct apr_aprf {
    apr_source src;            /* first: ops, info, path (the same string as `path`) */
    char *path;
    const uint8_t *base;       /* the mapping, or the caller's bytes */
    uint64_t size;
    int mapped;
    int fd;                    /* the file, kept open for pread (-1 for memory images) */
    uint32_t version, flags, trailer_flags;
    uint64_t meta_offset, meta_size, data_offset, gguf_size;
    uint64_t gaps_offset, gaps_size, index_offset, index_size;
    int64_t n_tensors, n_chunks;
    uint8_t source_sha[32], file_sha[32];
    uint32_t max_chunk;        /* the largest chunk_bytes of any tensor */
    apr_gguf *meta;            /* the source GGUF's header */
    apr_aprf_tensor_info *tensors;   /* [n_tensors], names owned */
    apr_aprf_chunk_info *chunks;     /* [n_chunks] */
    void **decoded;            /* [n_tensors]: what apr_source_tensor_data decoded, or NULL */
};

/* The model-source operations of an APR file (formats/apr_source.c). */
extern const apr_source_ops aprf_source_ops;
/* Fills f->src.info once f is validated. */
void aprf_source_init(apr_aprf *f);
/* apr_aprf_read_chunk with the chunk's stored bytes at `stored` (the
 * mapping, or a copy read with pread); dst may be `stored` itself for a
 * chunk kept as is. */
apr_status aprf_decode_chunk(const apr_aprf *f, int64_t i, uint32_t c, const uint8_t *stored, void *dst,
                             void *scratch);


static inline void aprf_put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void aprf_put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* The byte-plane filter (docs/apr-format.md): n records of `rec` bytes in
 * `src` become `rec` planes of n bytes in `dst` (split), and back (join).
 * The buffers do not overlap. */
void aprf_planes_split(uint8_t *dst, const uint8_t *src, size_t n, size_t rec);
void aprf_planes_join(uint8_t *dst, const uint8_t *src, size_t n, size_t rec);

/* The sections of an open file that the export copies: the source GGUF's
 * header, and the bytes of its data section no tensor covers. */
const uint8_t *aprf_meta_bytes(const apr_aprf *f, uint64_t *size);
const uint8_t *aprf_gaps_bytes(const apr_aprf *f, uint64_t *size);

/* 32 bytes as 64 lower-case hex digits and a NUL. */
void aprf_hex(const uint8_t *digest, char *hex);

/* The filter's record: a block of a quantized type, an element of a float
 * type (the dtype's block bytes either way). */
static inline size_t aprf_record_bytes(int dtype) { return (size_t)apr_dtype_block_bytes(dtype); }

/* The raw size of a tensor's chunks: `want` (0: the default) rounded down
 * to whole records of the dtype, and no larger than the tensor. */
uint32_t aprf_chunk_bytes(int dtype, uint64_t nbytes, uint32_t want);

#endif
