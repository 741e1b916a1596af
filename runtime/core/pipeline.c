/* pipeline.c — windows of jobs on the worker pool, consumed in order by sink
 * threads (pipeline.h says why).
 *
 * Two windows are in flight at most: while the sinks consume window k, the
 * pool computes window k + 1 into the other half of the slots; window k + 2
 * waits until every sink is done with window k. Failures are kept with their
 * message (apr_last_error is per thread, so a worker's or a sink's would be
 * lost otherwise); the first one wins and stops the sinks' remaining work. */
#include "core/pipeline.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/parallel.h"

typedef struct sink {
    apr_pipeline *p;
    apr_pipeline_sink_fn fn;
    pthread_t thread;
    int64_t done;              /* windows consumed */
    int started;
} sink;

typedef struct span {
    int64_t first;
    int n;
} span;

struct apr_pipeline {
    int window, threads, n_sinks;
    void *ctx;
    sink sinks[APR_PIPELINE_MAX_SINKS];
    span posted_win[2];      /* window k in posted_win[k % 2] */
    int64_t posted;            /* windows handed to the sinks */
    int stop;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    apr_status failed;         /* the first failure, else APR_OK */
    char message[1024];
    /* the window being computed */
    apr_pipeline_work_fn work;
    int64_t first;
    int slot0;
};

/* Records a failure that just happened on this thread (its message is this
 * thread's apr_last_error); the first one is kept. */
static void fail(apr_pipeline *p, apr_status s)
{
    pthread_mutex_lock(&p->lock);
    if (p->failed == APR_OK) {
        p->failed = s;
        snprintf(p->message, sizeof p->message, "%s", apr_last_error());
    }
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
}

/* The recorded failure, re-raised on the calling thread. Call with the lock. */
static apr_status failure(apr_pipeline *p)
{
    return p->failed == APR_OK ? APR_OK : apr_error(p->failed, "%s", p->message);
}

static void *sink_main(void *arg)
{
    sink *k = arg;
    apr_pipeline *p = k->p;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stop && k->done == p->posted) pthread_cond_wait(&p->changed, &p->lock);
        if (k->done == p->posted) break;  /* stopped, nothing left */
        span win = p->posted_win[k->done % 2];
        int slot0 = (int)(k->done % 2) * p->window;
        pthread_mutex_unlock(&p->lock);
        for (int j = 0; j < win.n; j++) {
            pthread_mutex_lock(&p->lock);
            int skip = p->failed != APR_OK || p->stop;
            pthread_mutex_unlock(&p->lock);
            if (skip) break;
            apr_status s = k->fn(p->ctx, win.first + j, slot0 + j);
            if (s != APR_OK) fail(p, s);
        }
        pthread_mutex_lock(&p->lock);
        k->done++;
        pthread_cond_broadcast(&p->changed);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

apr_status apr_pipeline_new(int window, int threads, int n_sinks, const apr_pipeline_sink_fn *sinks, void *ctx,
                            apr_pipeline **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_pipeline_new: out is NULL");
    *out = NULL;
    APR_CHECK(window > 0 && n_sinks >= 0 && n_sinks <= APR_PIPELINE_MAX_SINKS && (sinks || !n_sinks),
              APR_ERR_INVALID, "apr_pipeline_new: bad arguments");
    apr_pipeline *p = calloc(1, sizeof *p);
    APR_CHECK(p, APR_ERR_NOMEM, "out of memory for a pipeline");
    p->window = window;
    p->threads = threads;
    p->ctx = ctx;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->changed, NULL);
    for (int i = 0; i < n_sinks; i++) {
        sink *k = &p->sinks[i];
        *k = (sink){ .p = p, .fn = sinks[i] };
        if (pthread_create(&k->thread, NULL, sink_main, k) != 0) {
            apr_pipeline_free(p);
            return apr_error(APR_ERR_NOMEM, "cannot start a pipeline thread");
        }
        k->started = 1;
        p->n_sinks = i + 1;
    }
    *out = p;
    return APR_OK;
}

static void work_body(void *ctx, int64_t begin, int64_t end, int thread)
{
    apr_pipeline *p = ctx;
    for (int64_t j = begin; j < end; j++) {
        apr_status s = p->work(p->ctx, p->first + j, p->slot0 + (int)j, thread);
        if (s != APR_OK) fail(p, s);
    }
}

apr_status apr_pipeline_run(apr_pipeline *p, int64_t first, int n, apr_pipeline_work_fn work)
{
    APR_CHECK(p && work && n >= 0 && n <= p->window, APR_ERR_INVALID, "apr_pipeline_run: bad arguments");
    int64_t k = p->posted;
    /* the slots of window k were window k - 2's */
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->n_sinks; i++)
        while (p->failed == APR_OK && p->sinks[i].done < k - 1) pthread_cond_wait(&p->changed, &p->lock);
    apr_status s = failure(p);
    pthread_mutex_unlock(&p->lock);
    if (s != APR_OK) return s;

    p->work = work;
    p->first = first;
    p->slot0 = (int)(k % 2) * p->window;
    apr_parallel_for_n(p->threads, n, 1, work_body, p);

    pthread_mutex_lock(&p->lock);
    s = failure(p);
    if (s == APR_OK) {
        p->posted_win[k % 2] = (span){ first, n };
        p->posted = k + 1;
        pthread_cond_broadcast(&p->changed);
    }
    pthread_mutex_unlock(&p->lock);
    return s;
}

apr_status apr_pipeline_drain(apr_pipeline *p)
{
    APR_CHECK(p, APR_ERR_INVALID, "apr_pipeline_drain: p is NULL");
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->n_sinks; i++)
        while (p->sinks[i].done < p->posted) pthread_cond_wait(&p->changed, &p->lock);
    apr_status s = failure(p);
    pthread_mutex_unlock(&p->lock);
    return s;
}

void apr_pipeline_free(apr_pipeline *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_sinks; i++)
        if (p->sinks[i].started) pthread_join(p->sinks[i].thread, NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->changed);
    free(p);
}
