/* parallel_test.c — every index is visited exactly once, at any thread count. */
#include "test.h"
#include "core/parallel.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

typedef struct { atomic_int *hits; atomic_int max_thread; } ctx_t;

static void mark(void *p, int64_t begin, int64_t end, int thread)
{
    ctx_t *c = p;
    for (int64_t i = begin; i < end; i++) atomic_fetch_add(&c->hits[i], 1);
    int m = atomic_load(&c->max_thread);
    while (thread > m && !atomic_compare_exchange_weak(&c->max_thread, &m, thread)) {}
}

static void nested(void *p, int64_t begin, int64_t end, int thread)
{
    (void)thread;
    for (int64_t i = begin; i < end; i++) apr_parallel_for(10, 1, mark, p);
}

TEST(parallel_for_covers_each_index_once)
{
    int saved = apr_parallel_threads();
    int64_t sizes[] = { 1, 2, 7, 64, 1000, 100003 };
    for (int threads = 1; threads <= 5; threads += 2) {
        apr_parallel_set_threads(threads);
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            int64_t n = sizes[s];
            ctx_t c = { calloc((size_t)n, sizeof(atomic_int)), 0 };
            REQUIRE(c.hits);
            apr_parallel_for(n, 3, mark, &c);
            int64_t wrong = 0;
            for (int64_t i = 0; i < n; i++) wrong += c.hits[i] != 1;
            CHECK_EQ_INT(wrong, 0);
            CHECK(atomic_load(&c.max_thread) < threads);
            free(c.hits);
        }
    }
    apr_parallel_set_threads(saved);
}

TEST(parallel_for_nested_runs_inline)
{
    apr_parallel_set_threads(3);
    ctx_t c = { calloc(10, sizeof(atomic_int)), 0 };
    REQUIRE(c.hits);
    apr_parallel_for(8, 1, nested, &c);
    for (int i = 0; i < 10; i++) CHECK_EQ_INT(c.hits[i], 8);
    free(c.hits);
}

/* The wake-up paths: workers that went to sleep (idle past their spin)
 * take part again, and a bounded loop uses at most its threads. */
TEST(parallel_for_n_bounds_threads_and_wakes_sleeping_workers)
{
    apr_parallel_set_threads(4);
    for (int round = 0; round < 3; round++) {
        struct timespec nap = { 0, 5 * 1000 * 1000 };  /* past the 200 us spin: workers sleep */
        nanosleep(&nap, NULL);
        for (int threads = 1; threads <= 4; threads++) {
            ctx_t c = { calloc(5000, sizeof(atomic_int)), 0 };
            REQUIRE(c.hits);
            apr_parallel_for_n(threads, 5000, 1, mark, &c);
            int64_t wrong = 0;
            for (int i = 0; i < 5000; i++) wrong += c.hits[i] != 1;
            CHECK_EQ_INT(wrong, 0);
            CHECK(atomic_load(&c.max_thread) < threads);
            free(c.hits);
        }
    }
}

/* Many short loops back to back, as a decode step runs them: every one
 * completes with every index visited once. */
TEST(parallel_for_many_short_loops)
{
    apr_parallel_set_threads(2);
    ctx_t c = { calloc(8, sizeof(atomic_int)), 0 };
    REQUIRE(c.hits);
    for (int i = 0; i < 5000; i++) apr_parallel_for(8, 1, mark, &c);
    for (int i = 0; i < 8; i++) CHECK_EQ_INT(c.hits[i], 5000);
    free(c.hits);
}
