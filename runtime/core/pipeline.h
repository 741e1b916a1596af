/* pipeline.h — ordered chunk pipelines: parallel work, in-order sinks (internal).
 *
 * Converting a model file is a stream of chunks that are each transformed on
 * their own (compressed, decompressed, checksummed) and must then be written
 * and hashed in file order, one after the other. A pipeline runs the jobs in
 * windows: apr_pipeline_run computes a window on the worker pool (parallel.c)
 * and hands it to the sink threads, which consume it in job order while the
 * next window is computed, so the sequential part (pwrite, SHA-256) overlaps
 * the parallel one instead of following it.
 *
 *   p = apr_pipeline_new(window, threads, n_sinks, sinks, ctx);
 *   for (first = 0; first < n; first += window) apr_pipeline_run(p, first, min(window, n - first));
 *   apr_pipeline_drain(p);  apr_pipeline_free(p);
 *
 * A job owns slot `slot` (in [0, 2 * window)) from its work call until every
 * sink has consumed it: the caller keeps one buffer per slot. Work calls of a
 * window run at once on different threads; each sink sees the jobs one at a
 * time, in order, on its own thread; different sinks run at once. */
#ifndef APR_CORE_PIPELINE_H
#define APR_CORE_PIPELINE_H

#include <stdint.h>

#include "apr.h"

#define APR_PIPELINE_MAX_SINKS 4

typedef apr_status (*apr_pipeline_work_fn)(void *ctx, int64_t job, int slot, int thread);
typedef apr_status (*apr_pipeline_sink_fn)(void *ctx, int64_t job, int slot);

typedef struct apr_pipeline apr_pipeline;

/* A pipeline of windows of at most `window` jobs, computed on up to
 * `threads` threads (<= 0: the pool's), and n_sinks sink threads. */
apr_status apr_pipeline_new(int window, int threads, int n_sinks, const apr_pipeline_sink_fn *sinks, void *ctx,
                            apr_pipeline **out);
/* Runs work on jobs [first, first + n) (n <= window) after the window that
 * used the same slots two runs ago has been consumed, then hands the jobs to
 * the sinks and returns. Fails with the first failure of a work call, or of a
 * sink on an earlier window; the message is the failing call's. */
apr_status apr_pipeline_run(apr_pipeline *p, int64_t first, int n, apr_pipeline_work_fn work);
/* Waits until the sinks have consumed every job handed to them; the first
 * failure of any call, as apr_pipeline_run reports it. */
apr_status apr_pipeline_drain(apr_pipeline *p);
/* Stops the sinks (skipping what they have not consumed) and frees p. */
void apr_pipeline_free(apr_pipeline *p);

#endif
