/* codec.c — LZ4 and ZSTD for pool pages, with per-thread ZSTD contexts, and
 * the checked decoder.
 *
 * Pages are small (4 KiB, or one KV block of a layer), so LZ4's block API
 * and ZSTD's one-shot context API are used without frame options: the pool
 * keeps each page's size and kind itself. A ZSTD context costs about a
 * megabyte to make, so each thread makes one per direction on first use
 * and frees it when the thread ends (a pthread key's destructor). */
#include "zram/codec.h"

#include <lz4.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#define XXH_INLINE_ALL
#include <xxhash.h>
#include <zstd.h>

#include "core/error.h"
#include "zram/same.h"

/* ===================================================================== */
/* Per-thread ZSTD contexts                                              */
/* ===================================================================== */

typedef struct zstd_ctx {
    ZSTD_CCtx *c;
    ZSTD_DCtx *d;
} zstd_ctx;

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

static void ctx_free(void *p)
{
    zstd_ctx *z = p;
    ZSTD_freeCCtx(z->c);
    ZSTD_freeDCtx(z->d);
    free(z);
}

static void ctx_key_make(void) { pthread_key_create(&ctx_key, ctx_free); }

static zstd_ctx *thread_ctx(void)
{
    pthread_once(&ctx_once, ctx_key_make);
    zstd_ctx *z = pthread_getspecific(ctx_key);
    if (!z) {
        z = calloc(1, sizeof *z);
        if (!z) return NULL;
        if (pthread_setspecific(ctx_key, z) != 0) {
            free(z);
            return NULL;
        }
    }
    return z;
}

/* ===================================================================== */
/* Compress, decode                                                      */
/* ===================================================================== */

void apr_zram_codec_prepare(int algo)
{
    if (algo != ZRAM_ZSTD) return;
    zstd_ctx *z = thread_ctx();
    if (!z) return;
    if (!z->c) z->c = ZSTD_createCCtx();
    if (!z->d) z->d = ZSTD_createDCtx();
}

uint64_t apr_zram_page_hash(const void *page, size_t n) { return XXH3_64bits(page, n); }

size_t apr_zram_compress(int algo, int level, const void *src, size_t n, void *dst, size_t cap)
{
    if (n > (size_t)LZ4_MAX_INPUT_SIZE || cap == 0) return 0;
    if (algo == ZRAM_LZ4) {
        /* level is LZ4's acceleration: 1 is its default, larger is faster */
        int r = LZ4_compress_fast(src, dst, (int)n, (int)(cap > (size_t)INT32_MAX ? INT32_MAX : cap),
                                  level > 0 ? level : 1);
        return r > 0 ? (size_t)r : 0;
    }
    if (algo == ZRAM_ZSTD) {
        zstd_ctx *z = thread_ctx();
        if (!z) return 0;
        if (!z->c && !(z->c = ZSTD_createCCtx())) return 0;
        size_t r = ZSTD_compressCCtx(z->c, dst, cap, src, n, level);
        return ZSTD_isError(r) ? 0 : r;
    }
    return 0;
}

apr_status apr_zram_decode(int kind, const void *stored, size_t n, uint64_t word, void *page, size_t page_bytes,
                           uint64_t hash)
{
    switch (kind) {
    case ZRAM_SAME:
        apr_zram_fill(page, page_bytes, word);
        return APR_OK;
    case ZRAM_RAW:
        APR_CHECK(n == page_bytes, APR_ERR_FORMAT, "zram: raw page holds %zu bytes, not %zu", n, page_bytes);
        memcpy(page, stored, n);
        break;
    case ZRAM_LZ4: {
        APR_CHECK(n <= (size_t)INT32_MAX && page_bytes <= (size_t)INT32_MAX, APR_ERR_FORMAT,
                  "zram: LZ4 page of %zu bytes too large", n);
        int r = LZ4_decompress_safe(stored, page, (int)n, (int)page_bytes);
        APR_CHECK(r >= 0, APR_ERR_FORMAT, "zram: LZ4 rejects the stored page (%zu bytes)", n);
        APR_CHECK((size_t)r == page_bytes, APR_ERR_FORMAT, "zram: LZ4 page decodes to %d bytes, not %zu", r,
                  page_bytes);
        break;
    }
    case ZRAM_ZSTD: {
        zstd_ctx *z = thread_ctx();
        APR_CHECK(z, APR_ERR_NOMEM, "zram: no memory for a ZSTD context");
        if (!z->d) z->d = ZSTD_createDCtx();
        APR_CHECK(z->d, APR_ERR_NOMEM, "zram: no memory for a ZSTD context");
        size_t r = ZSTD_decompressDCtx(z->d, page, page_bytes, stored, n);
        APR_CHECK(!ZSTD_isError(r), APR_ERR_FORMAT, "zram: ZSTD rejects the stored page (%zu bytes): %s", n,
                  ZSTD_getErrorName(r));
        APR_CHECK(r == page_bytes, APR_ERR_FORMAT, "zram: ZSTD page decodes to %zu bytes, not %zu", r, page_bytes);
        break;
    }
    default:
        return apr_error(APR_ERR_FORMAT, "zram: unknown page kind %d", kind);
    }
    APR_CHECK(XXH3_64bits(page, page_bytes) == hash, APR_ERR_FORMAT,
              "zram: page content does not match its checksum (corrupt in memory)");
    return APR_OK;
}
