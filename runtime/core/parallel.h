/* parallel.h — a fixed pool of worker threads running parallel loops (internal).
 *
 *   static void body(void *ctx, int64_t begin, int64_t end, int thread) {...}
 *   apr_parallel_for(n_rows, 64, body, &ctx);
 *
 * The calling thread takes part, so a pool of N threads uses N-1 workers.
 * Calls from several threads at once are serialised; a call from inside a
 * loop body runs inline (no nested parallelism).
 *
 * Built for the many short loops of a decode step (a few hundred per token,
 * some lasting microseconds): idle workers spin briefly before they sleep,
 * so a loop that follows another starts without a system call. */
#ifndef APR_CORE_PARALLEL_H
#define APR_CORE_PARALLEL_H

#include <stdint.h>

typedef void (*apr_parallel_fn)(void *ctx, int64_t begin, int64_t end, int thread);

/* Runs fn over [0, n) in chunks of at least `grain` items, spread over the
 * pool's threads; returns when all chunks are done. `thread` is in
 * [0, apr_parallel_threads()) and unique among the chunks running at once. */
void apr_parallel_for(int64_t n, int64_t grain, apr_parallel_fn fn, void *ctx);

/* The same on at most `threads` threads (<= 0: the pool's default). */
void apr_parallel_for_n(int threads, int64_t n, int64_t grain, apr_parallel_fn fn, void *ctx);

/* Threads the pool uses by default (the CPUs this process may run on, or
 * $APR_THREADS). Setting it takes effect at the next loop. */
int apr_parallel_threads(void);
void apr_parallel_set_threads(int n);

/* The most threads any loop may use: bounds per-thread scratch arrays. */
#define APR_PARALLEL_MAX_THREADS 256

#endif
