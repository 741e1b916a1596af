/* same.c — same-filled page detection: AVX2 with a scalar fallback, the
 * page classification over all cores, and the copy it is measured beside.
 *
 * Written by hand: no library offers a "is this buffer one repeated word"
 * check, and it is a dozen lines. The AVX2 loop XORs 128 bytes at a time
 * with the broadcast first word and ORs the four results, so a page that
 * differs early is rejected at once (random data: its first 64-byte line,
 * checked alone) and a same-filled page is read once at the memory's pace
 * (bench/zram_same.lua measures both beside memcpy). */
#include "zram/same.h"

#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "core/error.h"
#include "core/parallel.h"

/* ===================================================================== */
/* The check                                                             */
/* ===================================================================== */

static int same_scalar(const uint8_t *p, size_t n, uint64_t *word)
{
    uint64_t w, x;
    memcpy(&w, p, 8);
    size_t i = 0;
    /* 64 bytes a round: the compiler keeps the eight words in registers */
    for (; i + 64 <= n; i += 64) {
        uint64_t acc = 0;
        for (int k = 0; k < 64; k += 8) {
            memcpy(&x, p + i + k, 8);
            acc |= x ^ w;
        }
        if (acc) return 0;
    }
    for (; i < n; i += 8) {
        memcpy(&x, p + i, 8);
        if (x != w) return 0;
    }
    *word = w;
    return 1;
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) static int same_avx2(const uint8_t *p, size_t n, uint64_t *word)
{
    uint64_t w;
    memcpy(&w, p, 8);
    const __m256i v = _mm256_set1_epi64x((long long)w);
    size_t i = 0;
    /* the first cache line alone: a page of real data differs there, and a
     * second line would be a second trip to memory */
    if (n >= 64) {
        __m256i a = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)p), v);
        __m256i b = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 32)), v);
        __m256i o = _mm256_or_si256(a, b);
        if (!_mm256_testz_si256(o, o)) return 0;
        i = 64;
    }
    for (; i + 128 <= n; i += 128) {
        __m256i a = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + i)), v);
        __m256i b = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + i + 32)), v);
        __m256i c = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + i + 64)), v);
        __m256i d = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + i + 96)), v);
        __m256i o = _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d));
        if (!_mm256_testz_si256(o, o)) return 0;
    }
    uint64_t x;
    for (; i < n; i += 8) {
        memcpy(&x, p + i, 8);
        if (x != w) return 0;
    }
    *word = w;
    return 1;
}
#endif

typedef int (*same_fn)(const uint8_t *, size_t, uint64_t *);

/* -1 until first use; then 1 when AVX2 is in use, 0 for the scalar loop. */
static atomic_int simd = -1;

static int cpu_has_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

static same_fn chosen(void)
{
    int s = atomic_load_explicit(&simd, memory_order_relaxed);
    if (s < 0) {
        s = cpu_has_avx2();
        atomic_store(&simd, s);
    }
#if defined(__x86_64__) || defined(__i386__)
    if (s) return same_avx2;
#endif
    return same_scalar;
}

int apr_zram_same_filled(const void *p, size_t n, uint64_t *word)
{
    return chosen()((const uint8_t *)p, n, word);
}

void apr_zram_fill(void *p, size_t n, uint64_t word)
{
    uint8_t *b = p;
    if (word == 0) {
        memset(b, 0, n);
        return;
    }
    for (size_t i = 0; i < n; i += 8) memcpy(b + i, &word, 8);
}

int apr_zram_simd(int enable)
{
    atomic_store(&simd, enable && cpu_has_avx2());
    return atomic_load(&simd);
}

/* ===================================================================== */
/* Many pages on many cores                                              */
/* ===================================================================== */

typedef struct classify_job {
    const uint8_t *src;
    uint8_t *dst;
    uint64_t page_bytes;
    uint8_t *same;
    uint64_t *words;
    same_fn fn;
    _Atomic uint64_t n_same;
} classify_job;

static void classify_body(void *ctx, int64_t begin, int64_t end, int thread)
{
    classify_job *j = ctx;
    uint64_t n_same = 0;
    for (int64_t i = begin; i < end; i++) {
        uint64_t w = 0;
        int s = j->fn(j->src + (uint64_t)i * j->page_bytes, j->page_bytes, &w);
        n_same += (uint64_t)s;
        if (j->same) j->same[i] = (uint8_t)s;
        if (j->words) j->words[i] = s ? w : 0;
    }
    atomic_fetch_add_explicit(&j->n_same, n_same, memory_order_relaxed);
}

static void copy_body(void *ctx, int64_t begin, int64_t end, int thread)
{
    classify_job *j = ctx;
    memcpy(j->dst + (uint64_t)begin * j->page_bytes, j->src + (uint64_t)begin * j->page_bytes,
           (uint64_t)(end - begin) * j->page_bytes);
}

/* Pages a chunk of a loop takes: about 256 KiB, so a thread's share is a
 * long run of memory and the chunk counter is touched rarely. */
static int64_t grain(uint64_t page_bytes)
{
    uint64_t g = (256u << 10) / page_bytes;
    return g ? (int64_t)g : 1;
}

apr_status apr_zram_classify(const void *pages, uint64_t n_pages, uint64_t page_bytes, int threads, uint8_t *same,
                             uint64_t *words, uint64_t *n_same)
{
    APR_CHECK(pages || n_pages == 0, APR_ERR_INVALID, "zram classify: pages is NULL");
    APR_CHECK(page_bytes >= 8 && page_bytes % 8 == 0, APR_ERR_INVALID,
              "zram classify: page size %llu is not a positive multiple of 8", (unsigned long long)page_bytes);
    APR_CHECK(n_pages <= INT64_MAX / page_bytes, APR_ERR_RANGE, "zram classify: %llu pages overflow",
              (unsigned long long)n_pages);
    APR_CHECK(threads >= 0, APR_ERR_INVALID, "zram classify: threads %d < 0", threads);
    classify_job j = { .src = pages, .page_bytes = page_bytes, .same = same, .words = words, .fn = chosen() };
    atomic_init(&j.n_same, 0);
    if (n_pages) apr_parallel_for_n(threads, (int64_t)n_pages, grain(page_bytes), classify_body, &j);
    if (n_same) *n_same = atomic_load(&j.n_same);
    return APR_OK;
}

apr_status apr_zram_copy_pages(void *dst, const void *src, uint64_t n_pages, uint64_t page_bytes, int threads)
{
    APR_CHECK((dst && src) || n_pages == 0, APR_ERR_INVALID, "zram copy: NULL buffer");
    APR_CHECK(page_bytes >= 8 && page_bytes % 8 == 0, APR_ERR_INVALID,
              "zram copy: page size %llu is not a positive multiple of 8", (unsigned long long)page_bytes);
    APR_CHECK(n_pages <= INT64_MAX / page_bytes, APR_ERR_RANGE, "zram copy: %llu pages overflow",
              (unsigned long long)n_pages);
    APR_CHECK(threads >= 0, APR_ERR_INVALID, "zram copy: threads %d < 0", threads);
    classify_job j = { .src = src, .dst = dst, .page_bytes = page_bytes };
    if (n_pages) apr_parallel_for_n(threads, (int64_t)n_pages, grain(page_bytes), copy_body, &j);
    return APR_OK;
}
