/* apr.c — reading APR v2 files: map, validate once, then decode chunks.
 *
 * apr_aprf_open maps the file and checks all of its structure before it
 * returns (docs/apr-format.md, "Rules the reader checks"): the fixed header
 * and trailer and their checksums, the sections against each other and the
 * file size, the kept GGUF header through the GGUF reader's own checks, and
 * the index, whose counts are bounded by its size before any table sized by
 * them is allocated. After that every chunk's stored bytes are known to lie
 * inside the data section, so decoding one only has to trust the codec
 * library's bounds (LZ4_decompress_safe, ZSTD_decompressDCtx into a buffer
 * of the known raw size) and then compares the checksum of what came out.
 *
 * Checksums are XXH3-64 from libxxhash; LZ4 and zstd from their libraries. */
#include "formats/apr_format.h"
#include "core/error.h"
#include "core/file.h"
#include "core/parallel.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lz4.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

/* ===================================================================== */
/* Structures                                                            */
/* ===================================================================== */

/* ===================================================================== */
/* Small helpers                                                         */
/* ===================================================================== */

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

uint64_t apr_aprf_checksum(const void *data, size_t n) { return XXH3_64bits(data, n); }

const char *apr_codec_name(int codec)
{
    switch (codec) {
    case APR_CODEC_NONE: return "none";
    case APR_CODEC_LZ4: return "lz4";
    case APR_CODEC_ZSTD: return "zstd";
    default: return NULL;
    }
}

const char *apr_filter_name(int filter)
{
    switch (filter) {
    case APR_FILTER_NONE: return "none";
    case APR_FILTER_BYTEPLANE: return "byteplane";
    default: return NULL;
    }
}

/* A tensor name in a message: printable ASCII as is, the rest as \xNN, at
 * most 64 bytes (a hostile name can neither break the line nor flood it). */
static void quote(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (size_t i = 0; s[i] && o + 8 < cap; i++) {
        if (i == 64) { memcpy(out + o, "...", 3); o += 3; break; }
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') out[o++] = (char)c;
        else o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    out[o] = '\0';
}

/* "PATH: PROBLEM" */
static apr_status bad(const apr_aprf *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static apr_status bad(const apr_aprf *f, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return apr_error(APR_ERR_FORMAT, "%s: %s", f->path, msg);
}

/* "PATH: tensor 'NAME' chunk C of N: PROBLEM" (the chunk part when c >= 0) */
static apr_status bad_chunk(const apr_aprf *f, const apr_aprf_tensor_info *t, int64_t c, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static apr_status bad_chunk(const apr_aprf *f, const apr_aprf_tensor_info *t, int64_t c, const char *fmt, ...)
{
    char msg[384], name[280], where[64] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    quote(name, sizeof name, t->name ? t->name : "?");
    if (c >= 0) snprintf(where, sizeof where, " chunk %" PRId64 " of %" PRIu32, c, t->n_chunks);
    return apr_error(APR_ERR_FORMAT, "%s: tensor '%s'%s: %s", f->path, name, where, msg);
}

/* [off, off + n) inside [lo, hi) without overflow. */
static int within(uint64_t off, uint64_t n, uint64_t lo, uint64_t hi)
{
    return off >= lo && off <= hi && n <= hi - off;
}

/* ===================================================================== */
/* The byte-plane filter                                                 */
/* ===================================================================== */

/* Transposes in tiles of 64 records so both sides stay in cache lines. */
#define PLANE_TILE 64

void aprf_planes_split(uint8_t *dst, const uint8_t *src, size_t n, size_t rec)
{
    for (size_t i0 = 0; i0 < n; i0 += PLANE_TILE) {
        size_t i1 = i0 + PLANE_TILE < n ? i0 + PLANE_TILE : n;
        for (size_t b = 0; b < rec; b++) {
            uint8_t *d = dst + b * n;
            const uint8_t *s = src + b;
            for (size_t i = i0; i < i1; i++) d[i] = s[i * rec];
        }
    }
}

void aprf_planes_join(uint8_t *dst, const uint8_t *src, size_t n, size_t rec)
{
    for (size_t i0 = 0; i0 < n; i0 += PLANE_TILE) {
        size_t i1 = i0 + PLANE_TILE < n ? i0 + PLANE_TILE : n;
        for (size_t b = 0; b < rec; b++) {
            const uint8_t *s = src + b * n;
            uint8_t *d = dst + b;
            for (size_t i = i0; i < i1; i++) d[i * rec] = s[i];
        }
    }
}

uint32_t aprf_chunk_bytes(int dtype, uint64_t nbytes, uint32_t want)
{
    uint64_t rec = aprf_record_bytes(dtype);
    uint64_t c = want ? want : APRF_DEFAULT_CHUNK;
    if (c > APRF_MAX_CHUNK) c = APRF_MAX_CHUNK;
    c -= c % rec;
    if (c < rec) c = rec;
    if (nbytes && c > nbytes) c = nbytes;  /* a whole number of records too */
    return (uint32_t)c;
}

/* ===================================================================== */
/* Validation                                                            */
/* ===================================================================== */

static apr_status parse_header(apr_aprf *f)
{
    const uint8_t *h = f->base;
    if (f->size < 4 || memcmp(h, APRF_MAGIC, 4) != 0) {
        if (f->size >= 4 && memcmp(h, "GGUF", 4) == 0) return bad(f, "a GGUF file, not APR");
        return bad(f, "not an APR file (no 'APRM' magic at byte 0)");
    }
    if (f->size < APRF_HEADER_SIZE + APRF_TRAILER_SIZE)
        return bad(f, "truncated: %" PRIu64 " bytes, less than a header and a trailer (%u)", f->size,
                   APRF_HEADER_SIZE + APRF_TRAILER_SIZE);
    f->version = rd32(h + APRF_H_VERSION);
    if (f->version != APRF_VERSION)
        return bad(f, "APR version %" PRIu32 " is not supported (apr reads version 2)", f->version);
    if (rd32(h + APRF_H_SIZE) != APRF_HEADER_SIZE)
        return bad(f, "header size %" PRIu32 " is not %u", rd32(h + APRF_H_SIZE), APRF_HEADER_SIZE);
    uint64_t want = rd64(h + APRF_H_XXH), got = XXH3_64bits(h, APRF_H_XXH);
    if (want != got)
        return bad(f, "header checksum mismatch (recorded %016" PRIx64 ", computed %016" PRIx64 ")", want, got);
    f->flags = rd32(h + APRF_H_FLAGS);
    if (f->flags & ~APRF_FLAG_GGUF_META) return bad(f, "unknown header flags 0x%" PRIx32, f->flags);
    if (!(f->flags & APRF_FLAG_GGUF_META)) return bad(f, "no GGUF metadata (flag 0 clear): not supported");
    f->meta_offset = rd64(h + APRF_H_META_OFFSET);
    f->meta_size = rd64(h + APRF_H_META_SIZE);
    f->data_offset = rd64(h + APRF_H_DATA_OFFSET);
    f->gguf_size = rd64(h + APRF_H_GGUF_SIZE);
    f->n_tensors = (int64_t)rd64(h + APRF_H_N_TENSORS);
    for (int i = 64; i < APRF_H_XXH; i++)
        if (h[i]) return bad(f, "reserved header byte %d is not zero", i);
    return APR_OK;
}

static apr_status parse_trailer(apr_aprf *f)
{
    const uint8_t *t = f->base + f->size - APRF_TRAILER_SIZE;
    if (memcmp(t + APRF_T_MAGIC, APRF_MAGIC, 4) != 0 || rd32(t + APRF_T_SIZE) != APRF_TRAILER_SIZE)
        return bad(f, "truncated or damaged: no trailer at the end of the file (%" PRIu64 " bytes)", f->size);
    uint64_t want = rd64(t + APRF_T_XXH), got = XXH3_64bits(t, APRF_T_XXH);
    if (want != got)
        return bad(f, "trailer checksum mismatch (recorded %016" PRIx64 ", computed %016" PRIx64 ")", want, got);
    f->index_offset = rd64(t + APRF_T_INDEX_OFFSET);
    f->index_size = rd64(t + APRF_T_INDEX_SIZE);
    f->n_chunks = (int64_t)rd64(t + APRF_T_N_CHUNKS);
    f->gaps_offset = rd64(t + APRF_T_GAPS_OFFSET);
    f->gaps_size = rd64(t + APRF_T_GAPS_SIZE);
    f->trailer_flags = rd32(t + APRF_T_FLAGS);
    if (f->trailer_flags & ~APRF_TRAILER_SOURCE_SHA) return bad(f, "unknown trailer flags 0x%" PRIx32, f->trailer_flags);
    if (rd32(t + APRF_T_FLAGS + 4)) return bad(f, "reserved trailer field is not zero");
    memcpy(f->source_sha, t + APRF_T_SOURCE_SHA, 32);
    memcpy(f->file_sha, t + APRF_T_FILE_SHA, 32);
    return APR_OK;
}

/* The sections follow one another: header, metadata, data, gaps, index,
 * trailer; then their checksums. */
static apr_status check_sections(apr_aprf *f)
{
    const uint64_t end = f->size - APRF_TRAILER_SIZE;
    if (f->meta_offset != APRF_HEADER_SIZE)
        return bad(f, "metadata offset %" PRIu64 " is not %u", f->meta_offset, APRF_HEADER_SIZE);
    if (!within(f->meta_offset, f->meta_size, 0, end))
        return bad(f, "metadata [%" PRIu64 ", +%" PRIu64 ") runs past the end of the file (%" PRIu64 " bytes)",
                   f->meta_offset, f->meta_size, f->size);
    if (f->data_offset % APRF_ALIGN || f->data_offset < f->meta_offset + f->meta_size || f->data_offset > end)
        return bad(f, "data offset %" PRIu64 " is not a multiple of %u between the metadata's end (%" PRIu64
                   ") and the trailer (%" PRIu64 ")", f->data_offset, APRF_ALIGN, f->meta_offset + f->meta_size, end);
    if (f->gaps_offset < f->data_offset || !within(f->gaps_offset, f->gaps_size, 0, end))
        return bad(f, "gaps [%" PRIu64 ", +%" PRIu64 ") lie outside [%" PRIu64 ", %" PRIu64 ")", f->gaps_offset,
                   f->gaps_size, f->data_offset, end);
    if (f->index_offset != f->gaps_offset + f->gaps_size || f->index_size != end - f->index_offset)
        return bad(f, "index [%" PRIu64 ", +%" PRIu64 ") does not fill [%" PRIu64 ", %" PRIu64 ") between the gaps"
                   " and the trailer", f->index_offset, f->index_size, f->gaps_offset + f->gaps_size, end);
    for (uint64_t i = f->meta_offset + f->meta_size; i < f->data_offset; i++)
        if (f->base[i]) return bad(f, "padding byte %" PRIu64 " before the data is not zero", i);

    const uint8_t *h = f->base, *t = f->base + end;
    uint64_t want = rd64(h + APRF_H_META_XXH), got = XXH3_64bits(f->base + f->meta_offset, f->meta_size);
    if (want != got)
        return bad(f, "metadata checksum mismatch (recorded %016" PRIx64 ", computed %016" PRIx64 ")", want, got);
    want = rd64(t + APRF_T_GAPS_XXH), got = XXH3_64bits(f->base + f->gaps_offset, f->gaps_size);
    if (want != got)
        return bad(f, "gaps checksum mismatch (recorded %016" PRIx64 ", computed %016" PRIx64 ")", want, got);
    want = rd64(t + APRF_T_INDEX_XXH), got = XXH3_64bits(f->base + f->index_offset, f->index_size);
    if (want != got)
        return bad(f, "index checksum mismatch (recorded %016" PRIx64 ", computed %016" PRIx64 ")", want, got);
    return APR_OK;
}

static apr_status parse_meta(apr_aprf *f)
{
    char name[1100];
    snprintf(name, sizeof name, "%s: GGUF metadata", f->path);
    apr_status s = apr_gguf_open_header(f->base + f->meta_offset, (size_t)f->meta_size, f->gguf_size, name, &f->meta);
    if (s != APR_OK) return s;  /* the GGUF reader's message, naming the file */
    uint64_t want = apr_gguf_data_offset(f->meta) < f->gguf_size ? apr_gguf_data_offset(f->meta) : f->gguf_size;
    if (f->meta_size != want)
        return bad(f, "metadata of %" PRIu64 " bytes, but its GGUF header's data starts at byte %" PRIu64, f->meta_size,
                   want);
    if (apr_gguf_n_tensors(f->meta) != f->n_tensors)
        return bad(f, "header counts %" PRId64 " tensors, its GGUF metadata %" PRId64, f->n_tensors,
                   apr_gguf_n_tensors(f->meta));
    return APR_OK;
}

/* One tensor record against the format's rules and the GGUF header's tensor
 * i; the name is copied. */
static apr_status parse_tensor(apr_aprf *f, int64_t i, const uint8_t *r, const uint8_t *names, uint64_t names_size,
                               int64_t *next_chunk)
{
    apr_aprf_tensor_info *t = &f->tensors[i];
    apr_gguf_tensor_info g;
    APR_TRY(apr_gguf_tensor(f->meta, i, &g));
    uint64_t off = rd64(r + APRF_R_NAME_OFF);
    uint32_t len = rd32(r + APRF_R_NAME_LEN);
    if (len == 0 || len > GGUF_MAX_NAME || !within(off, len, 0, names_size))
        return bad(f, "tensor %" PRId64 ": name [%" PRIu64 ", +%" PRIu32 ") lies outside the %" PRIu64
                   " bytes of names", i, off, len, names_size);
    if (memchr(names + off, 0, len)) return bad(f, "tensor %" PRId64 ": name contains a NUL byte", i);
    char *name = malloc(len + 1u);
    if (!name) return apr_error(APR_ERR_NOMEM, "%s: out of memory", f->path);
    memcpy(name, names + off, len);
    name[len] = '\0';
    t->name = name;
    if (strcmp(name, g.name) != 0)
        return bad_chunk(f, t, -1, "record %" PRId64 " is not the GGUF metadata's tensor %" PRId64, i, i);

    t->type = (int)rd32(r + APRF_R_DTYPE);
    t->n_dims = (int)rd32(r + APRF_R_N_DIMS);
    t->codec = r[APRF_R_CODEC];
    t->filter = r[APRF_R_FILTER];
    t->level = (int8_t)r[APRF_R_LEVEL];
    for (int d = 0; d < 4; d++) t->ne[d] = (int64_t)rd64(r + APRF_R_NE + 8 * d);
    t->nbytes = rd64(r + APRF_R_NBYTES);
    t->source_offset = rd64(r + APRF_R_SOURCE_OFFSET);
    t->first_chunk = (int64_t)rd64(r + APRF_R_FIRST_CHUNK);
    t->n_chunks = rd32(r + APRF_R_N_CHUNKS);
    t->chunk_bytes = rd32(r + APRF_R_CHUNK_BYTES);
    if (r[23] || rd64(r + 88)) return bad_chunk(f, t, -1, "reserved record bytes are not zero");
    int same = t->type == g.type && t->n_dims == g.n_dims && t->nbytes == g.nbytes && t->source_offset == g.offset;
    for (int d = 0; d < 4; d++) same &= t->ne[d] == g.ne[d];
    if (!same)
        return bad_chunk(f, t, -1, "type, shape, size or offset differ from the GGUF metadata's (%s, %" PRIu64
                         " bytes at %" PRIu64 ")", apr_dtype_name(g.type), g.nbytes, g.offset);
    if (!apr_codec_name(t->codec)) return bad_chunk(f, t, -1, "unknown codec %d", t->codec);
    if (!apr_filter_name(t->filter)) return bad_chunk(f, t, -1, "unknown filter %d", t->filter);
    uint64_t rec = aprf_record_bytes(t->type);
    if (t->chunk_bytes == 0 || t->chunk_bytes > APRF_MAX_CHUNK || t->chunk_bytes % rec)
        return bad_chunk(f, t, -1, "chunk size %" PRIu32 " is not a whole number of %" PRIu64
                         "-byte blocks up to %u", t->chunk_bytes, rec, APRF_MAX_CHUNK);
    uint64_t want = t->nbytes / t->chunk_bytes + (t->nbytes % t->chunk_bytes != 0);
    if (t->n_chunks != want)
        return bad_chunk(f, t, -1, "%" PRIu32 " chunks, but %" PRIu64 " bytes in chunks of %" PRIu32 " make %" PRIu64,
                         t->n_chunks, t->nbytes, t->chunk_bytes, want);
    if (t->first_chunk != *next_chunk || (uint64_t)t->n_chunks > (uint64_t)(f->n_chunks - *next_chunk))
        return bad_chunk(f, t, -1, "chunks [%" PRId64 ", +%" PRIu32 ") do not follow the previous tensor's (next is %"
                         PRId64 " of %" PRId64 ")", t->first_chunk, t->n_chunks, *next_chunk, f->n_chunks);
    *next_chunk += t->n_chunks;
    if (t->chunk_bytes > f->max_chunk) f->max_chunk = t->chunk_bytes;
    return APR_OK;
}

/* A tensor's chunks: sizes, placement inside the data section, order. */
static apr_status check_chunks(apr_aprf *f, apr_aprf_tensor_info *t)
{
    uint64_t pos = 0;
    t->stored_bytes = 0;
    for (uint32_t c = 0; c < t->n_chunks; c++) {
        const apr_aprf_chunk_info *k = &f->chunks[t->first_chunk + c];
        uint64_t raw = c + 1 < t->n_chunks ? t->chunk_bytes : t->nbytes - (uint64_t)c * t->chunk_bytes;
        if (k->raw != raw) return bad_chunk(f, t, c, "raw size %" PRIu32 ", expected %" PRIu64, k->raw, raw);
        if (k->stored > k->raw)
            return bad_chunk(f, t, c, "stored size %" PRIu32 " exceeds its raw size %" PRIu32, k->stored, k->raw);
        if (k->stored == 0) return bad_chunk(f, t, c, "stored size is 0");
        if (t->codec == APR_CODEC_NONE && k->stored != k->raw)
            return bad_chunk(f, t, c, "compressed (%" PRIu32 " of %" PRIu32 " bytes) in a tensor of codec none",
                             k->stored, k->raw);
        if (!within(k->offset, k->stored, f->data_offset, f->gaps_offset))
            return bad_chunk(f, t, c, "stored bytes [%" PRIu64 ", +%" PRIu32 ") lie outside the data section [%" PRIu64
                             ", %" PRIu64 ")", k->offset, k->stored, f->data_offset, f->gaps_offset);
        if (c == 0 && k->offset % APRF_ALIGN)
            return bad_chunk(f, t, c, "starts at byte %" PRIu64 ", not a multiple of %u", k->offset, APRF_ALIGN);
        if (c > 0 && (k->offset < pos || (t->codec == APR_CODEC_NONE && k->offset != pos)))
            return bad_chunk(f, t, c, "starts at byte %" PRIu64 ", %s the previous chunk's end (%" PRIu64 ")",
                             k->offset, k->offset < pos ? "inside" : "not at", pos);
        pos = k->offset + k->stored;
        t->stored_bytes += k->stored;
    }
    if (t->codec == APR_CODEC_NONE && t->n_chunks) t->data = f->base + f->chunks[t->first_chunk].offset;
    return APR_OK;
}

typedef struct span { uint64_t begin, end; int64_t tensor; } span;

static int by_begin(const void *a, const void *b)
{
    uint64_t x = ((const span *)a)->begin, y = ((const span *)b)->begin;
    return x < y ? -1 : x > y;
}

/* No two tensors' chunks share a byte (within a tensor check_chunks saw to it). */
static apr_status check_overlap(apr_aprf *f)
{
    span *s = malloc(((size_t)f->n_tensors + 1) * sizeof *s);
    if (!s) return apr_error(APR_ERR_NOMEM, "%s: out of memory", f->path);
    int64_t n = 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const apr_aprf_tensor_info *t = &f->tensors[i];
        if (!t->n_chunks) continue;
        const apr_aprf_chunk_info *a = &f->chunks[t->first_chunk], *z = a + t->n_chunks - 1;
        s[n++] = (span){ a->offset, z->offset + z->stored, i };
    }
    qsort(s, (size_t)n, sizeof *s, by_begin);
    apr_status st = APR_OK;
    for (int64_t k = 1; k < n && st == APR_OK; k++) {
        if (s[k].begin < s[k - 1].end) {
            char a[280], b[280];
            quote(a, sizeof a, f->tensors[s[k - 1].tensor].name);
            quote(b, sizeof b, f->tensors[s[k].tensor].name);
            st = bad(f, "tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64 ") overlap", a,
                     s[k - 1].begin, s[k - 1].end, b, s[k].begin, s[k].end);
        }
    }
    free(s);
    return st;
}

/* The gaps hold exactly the GGUF data section's bytes no tensor covers. */
static apr_status check_gaps(apr_aprf *f)
{
    uint64_t data = apr_gguf_data_offset(f->meta), covered = 0;
    for (int64_t i = 0; i < f->n_tensors; i++) covered += f->tensors[i].nbytes;  /* inside gguf_size: no overflow */
    uint64_t want = f->gguf_size > data ? f->gguf_size - data - covered : 0;
    if (f->gaps_size != want)
        return bad(f, "%" PRIu64 " bytes of gaps, but the GGUF's data section leaves %" PRIu64 " uncovered",
                   f->gaps_size, want);
    return APR_OK;
}

static apr_status parse_index(apr_aprf *f)
{
    const uint8_t *ix = f->base + f->index_offset;
    /* Counts against the index's size before anything is sized by them. */
    uint64_t nt = (uint64_t)f->n_tensors, nc = (uint64_t)f->n_chunks;
    if (nt > f->index_size / APRF_TENSOR_REC || nc > (f->index_size - nt * APRF_TENSOR_REC) / APRF_CHUNK_REC)
        return bad(f, "%" PRIu64 " tensors and %" PRIu64 " chunks do not fit in an index of %" PRIu64 " bytes", nt,
                   nc, f->index_size);
    const uint8_t *chunk_recs = ix + nt * APRF_TENSOR_REC, *names = chunk_recs + nc * APRF_CHUNK_REC;
    uint64_t names_size = f->index_size - nt * APRF_TENSOR_REC - nc * APRF_CHUNK_REC;
    f->tensors = calloc(nt + 1, sizeof *f->tensors);
    f->chunks = malloc((nc + 1) * sizeof *f->chunks);
    f->decoded = calloc(nt + 1, sizeof *f->decoded);
    if (!f->tensors || !f->chunks || !f->decoded)
        return apr_error(APR_ERR_NOMEM, "%s: out of memory for the index", f->path);
    for (uint64_t c = 0; c < nc; c++) {
        const uint8_t *r = chunk_recs + c * APRF_CHUNK_REC;
        f->chunks[c] = (apr_aprf_chunk_info){ .offset = rd64(r), .stored = rd32(r + 8), .raw = rd32(r + 12),
                                              .checksum = rd64(r + 16) };
    }
    int64_t next = 0;
    for (int64_t i = 0; i < f->n_tensors; i++)
        APR_TRY(parse_tensor(f, i, ix + (uint64_t)i * APRF_TENSOR_REC, names, names_size, &next));
    if (next != f->n_chunks)
        return bad(f, "the tensors use %" PRId64 " chunks of the %" PRId64 " the trailer counts", next, f->n_chunks);
    for (int64_t i = 0; i < f->n_tensors; i++) APR_TRY(check_chunks(f, &f->tensors[i]));
    APR_TRY(check_overlap(f));
    return check_gaps(f);
}

static apr_status parse(apr_aprf *f)
{
    APR_TRY(parse_header(f));
    APR_TRY(parse_trailer(f));
    APR_TRY(check_sections(f));
    APR_TRY(parse_meta(f));
    return parse_index(f);
}

/* ===================================================================== */
/* Open and close                                                        */
/* ===================================================================== */

static apr_aprf *new_file(const char *path)
{
    apr_aprf *f = calloc(1, sizeof *f);
    if (f) f->path = strdup(path);
    if (f) f->src = (apr_source){ .ops = &aprf_source_ops, .path = f->path };
    if (f) f->fd = -1;
    if (!f || !f->path) {
        free(f);
        apr_error(APR_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    return f;
}

static apr_status finish_open(apr_aprf *f, apr_aprf **out)
{
    apr_status s = parse(f);
    if (s != APR_OK) {
        apr_aprf_close(f);
        return s;
    }
    aprf_source_init(f);
    *out = f;
    return APR_OK;
}

apr_status apr_aprf_open(const char *path, apr_aprf **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_aprf_open: out is NULL");
    *out = NULL;
    APR_CHECK(path, APR_ERR_INVALID, "apr_aprf_open: path is NULL");
    int fd;
    uint64_t size;
    APR_TRY(apr_file_open_regular(path, &fd, &size));
    apr_aprf *f = new_file(path);
    if (!f) {
        close(fd);
        return APR_ERR_NOMEM;
    }
    f->size = size;
    if (f->size == 0) {
        close(fd);
        apr_status s = bad(f, "empty file, not APR");
        apr_aprf_close(f);
        return s;
    }
    void *p = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    /* kept open: a GPU load reads with pread, so the pages it streams
     * through never count in the process's memory (apr_source.c) */
    f->fd = fd;
    if (p == MAP_FAILED) {
        apr_aprf_close(f);
        return apr_error(APR_ERR_IO, "%s: mmap: %s", path, strerror(e));
    }
    f->base = p;
    f->mapped = 1;
    return finish_open(f, out);
}

apr_status apr_aprf_open_memory(const void *data, size_t size, apr_aprf **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_aprf_open_memory: out is NULL");
    *out = NULL;
    APR_CHECK(data || size == 0, APR_ERR_INVALID, "apr_aprf_open_memory: data is NULL");
    apr_aprf *f = new_file("<memory>");
    if (!f) return APR_ERR_NOMEM;
    f->base = size ? data : (const uint8_t *)"";
    f->size = size;
    return finish_open(f, out);
}

void apr_aprf_close(apr_aprf *f)
{
    if (!f) return;
    for (int64_t i = 0; f->tensors && i < f->n_tensors; i++) free((char *)f->tensors[i].name);
    for (int64_t i = 0; f->decoded && i < f->n_tensors; i++) free(f->decoded[i]);
    free(f->decoded);
    free(f->tensors);
    free(f->chunks);
    apr_gguf_close(f->meta);
    if (f->mapped) munmap((void *)f->base, (size_t)f->size);
    if (f->fd >= 0) close(f->fd);
    free(f->path);
    free(f);
}

/* ===================================================================== */
/* Queries                                                               */
/* ===================================================================== */

const char *apr_aprf_path(const apr_aprf *f) { return f ? f->path : ""; }
uint32_t apr_aprf_version(const apr_aprf *f) { return f ? f->version : 0; }
uint64_t apr_aprf_file_size(const apr_aprf *f) { return f ? f->size : 0; }
const void *apr_aprf_base(const apr_aprf *f) { return f ? f->base : NULL; }
const apr_gguf *apr_aprf_metadata(const apr_aprf *f) { return f ? f->meta : NULL; }
uint64_t apr_aprf_gguf_size(const apr_aprf *f) { return f ? f->gguf_size : 0; }
uint64_t apr_aprf_hashed_size(const apr_aprf *f) { return f ? f->size - APRF_TRAILER_SIZE : 0; }
int64_t apr_aprf_n_tensors(const apr_aprf *f) { return f ? f->n_tensors : 0; }
int64_t apr_aprf_n_chunks(const apr_aprf *f) { return f ? f->n_chunks : 0; }
uint64_t apr_aprf_scratch_bytes(const apr_aprf *f) { return f ? 2 * (uint64_t)f->max_chunk : 0; }

void aprf_hex(const uint8_t *d, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[64] = '\0';
}

const uint8_t *aprf_meta_bytes(const apr_aprf *f, uint64_t *size)
{
    *size = f->meta_size;
    return f->base + f->meta_offset;
}

const uint8_t *aprf_gaps_bytes(const apr_aprf *f, uint64_t *size)
{
    *size = f->gaps_size;
    return f->base + f->gaps_offset;
}

void apr_aprf_file_sha256(const apr_aprf *f, char *hex)
{
    if (f && hex) aprf_hex(f->file_sha, hex);
}

int apr_aprf_source_sha256(const apr_aprf *f, char *hex)
{
    if (!f || !hex) return 0;
    if (!(f->trailer_flags & APRF_TRAILER_SOURCE_SHA)) {
        hex[0] = '\0';
        return 0;
    }
    aprf_hex(f->source_sha, hex);
    return 1;
}

apr_status apr_aprf_tensor(const apr_aprf *f, int64_t i, apr_aprf_tensor_info *out)
{
    APR_CHECK(f && out, APR_ERR_INVALID, "apr_aprf_tensor: NULL argument");
    APR_CHECK(i >= 0 && i < f->n_tensors, APR_ERR_RANGE, "%s: tensor index %" PRId64 " out of range [0, %" PRId64 ")",
              f->path, i, f->n_tensors);
    *out = f->tensors[i];
    return APR_OK;
}

int64_t apr_aprf_find_tensor(const apr_aprf *f, const char *name)
{
    /* tensor i is the GGUF header's tensor i (checked at open) */
    return f && name ? apr_gguf_find_tensor(f->meta, name) : -1;
}

apr_status apr_aprf_chunk(const apr_aprf *f, int64_t i, uint32_t c, apr_aprf_chunk_info *out)
{
    APR_CHECK(f && out, APR_ERR_INVALID, "apr_aprf_chunk: NULL argument");
    APR_CHECK(i >= 0 && i < f->n_tensors, APR_ERR_RANGE, "%s: tensor index %" PRId64 " out of range [0, %" PRId64 ")",
              f->path, i, f->n_tensors);
    const apr_aprf_tensor_info *t = &f->tensors[i];
    APR_CHECK(c < t->n_chunks, APR_ERR_RANGE, "%s: chunk %" PRIu32 " out of range [0, %" PRIu32 ")", f->path, c,
              t->n_chunks);
    *out = f->chunks[t->first_chunk + c];
    return APR_OK;
}

/* ===================================================================== */
/* Decoding                                                              */
/* ===================================================================== */

/* One decompression context per thread, kept: a chunk is decoded in a few
 * milliseconds and creating a context costs a good part of that. Its
 * window is bounded to what a 4 MiB chunk can need, so a hostile frame
 * cannot make it allocate more. */
static ZSTD_DCtx *thread_dctx(void)
{
    static _Thread_local ZSTD_DCtx *dctx;
    if (!dctx) {
        dctx = ZSTD_createDCtx();
        if (dctx) ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 23);
    }
    return dctx;
}

/* Decompresses the stored bytes of a compressed chunk into out (raw bytes). */
static apr_status decompress(const apr_aprf *f, const apr_aprf_tensor_info *t, uint32_t c,
                             const apr_aprf_chunk_info *k, const uint8_t *src, void *out)
{
    if (t->codec == APR_CODEC_LZ4) {
        int n = LZ4_decompress_safe((const char *)src, out, (int)k->stored, (int)k->raw);
        if (n != (int)k->raw)
            return bad_chunk(f, t, c, "LZ4 data %s", n < 0 ? "is corrupt" : "decodes to the wrong size");
        return APR_OK;
    }
    ZSTD_DCtx *d = thread_dctx();
    if (!d) return apr_error(APR_ERR_NOMEM, "%s: out of memory for a zstd context", f->path);
    size_t n = ZSTD_decompressDCtx(d, out, k->raw, src, k->stored);
    if (ZSTD_isError(n)) return bad_chunk(f, t, c, "zstd data is corrupt (%s)", ZSTD_getErrorName(n));
    if (n != k->raw) return bad_chunk(f, t, c, "zstd data decodes to %zu bytes, not %" PRIu32, n, k->raw);
    return APR_OK;
}

apr_status apr_aprf_read_chunk(const apr_aprf *f, int64_t i, uint32_t c, void *dst, void *scratch)
{
    apr_aprf_chunk_info k;
    APR_TRY(apr_aprf_chunk(f, i, c, &k));
    return aprf_decode_chunk(f, i, c, f->base + k.offset, dst, scratch);
}

apr_status aprf_decode_chunk(const apr_aprf *f, int64_t i, uint32_t c, const uint8_t *stored, void *dst, void *scratch)
{
    const apr_aprf_tensor_info *t = &f->tensors[i];
    const apr_aprf_chunk_info k = f->chunks[t->first_chunk + c];
    const uint8_t *raw;
    if (k.stored == k.raw) {
        raw = stored;  /* kept as is */
        if (dst && dst != stored) memcpy(dst, raw, k.raw);
    } else {
        const int filtered = t->filter != APR_FILTER_NONE;
        APR_CHECK(scratch || (dst && !filtered), APR_ERR_INVALID, "apr_aprf_read_chunk: scratch is needed");
        uint8_t *out = dst ? dst : (uint8_t *)scratch + (filtered ? t->chunk_bytes : 0);
        uint8_t *dec = filtered ? scratch : out;
        APR_TRY(decompress(f, t, c, &k, stored, dec));
        if (filtered) {
            size_t rec = aprf_record_bytes(t->type);
            aprf_planes_join(out, dec, k.raw / rec, rec);
        }
        raw = out;
    }
    uint64_t sum = XXH3_64bits(raw, k.raw);
    if (sum != k.checksum)
        return bad_chunk(f, t, c, "checksum mismatch (recorded %016" PRIx64 ", computed %016" PRIx64 ")", k.checksum,
                         sum);
    return APR_OK;
}

typedef struct read_job {
    const apr_aprf *f;
    int64_t tensor;
    uint8_t *dst;
    uint8_t *scratch;          /* [threads][scratch bytes], or NULL */
    uint64_t scratch_bytes;
    pthread_mutex_t lock;
    apr_status failed;
    char message[512];
} read_job;

static void read_body(void *ctx, int64_t begin, int64_t end, int thread)
{
    read_job *j = ctx;
    const apr_aprf_tensor_info *t = &j->f->tensors[j->tensor];
    for (int64_t c = begin; c < end; c++) {
        void *scratch = j->scratch ? j->scratch + (uint64_t)thread * j->scratch_bytes : NULL;
        void *dst = j->dst ? j->dst + (uint64_t)c * t->chunk_bytes : NULL;
        apr_status s = apr_aprf_read_chunk(j->f, j->tensor, (uint32_t)c, dst, scratch);
        if (s != APR_OK) {
            pthread_mutex_lock(&j->lock);
            if (j->failed == APR_OK) {
                j->failed = s;
                snprintf(j->message, sizeof j->message, "%s", apr_last_error());
            }
            pthread_mutex_unlock(&j->lock);
        }
    }
}

apr_status apr_aprf_read_tensor(const apr_aprf *f, int64_t i, void *dst, int threads)
{
    APR_CHECK(f, APR_ERR_INVALID, "apr_aprf_read_tensor: f is NULL");
    APR_CHECK(i >= 0 && i < f->n_tensors, APR_ERR_RANGE, "%s: tensor index %" PRId64 " out of range", f->path, i);
    const apr_aprf_tensor_info *t = &f->tensors[i];
    read_job j = { .f = f, .tensor = i, .dst = dst };
    if (t->filter != APR_FILTER_NONE || !dst) {
        int n = threads > 0 ? threads : apr_parallel_threads();
        if (n > APR_PARALLEL_MAX_THREADS) n = APR_PARALLEL_MAX_THREADS;
        j.scratch_bytes = (uint64_t)t->chunk_bytes * (dst ? 1 : 2);
        j.scratch = malloc((size_t)n * j.scratch_bytes);
        APR_CHECK(j.scratch, APR_ERR_NOMEM, "%s: out of memory decoding '%s'", f->path, t->name);
        threads = n;
    }
    pthread_mutex_init(&j.lock, NULL);
    apr_parallel_for_n(threads, t->n_chunks, 1, read_body, &j);
    pthread_mutex_destroy(&j.lock);
    free(j.scratch);
    return j.failed == APR_OK ? APR_OK : apr_error(j.failed, "%s", j.message);
}
