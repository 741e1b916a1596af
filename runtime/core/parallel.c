/* parallel.c — the worker pool behind apr_parallel_for.
 *
 * Workers are created on first use and live for the process. A loop is
 * published under a mutex; threads (the caller included) claim chunks with
 * an atomic counter, so uneven chunks balance themselves. */
#include "parallel.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_THREADS 256

static struct {
    pthread_once_t once;
    pthread_mutex_t call_lock;   /* one loop at a time */
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    int n_threads;               /* wanted, caller included */
    int n_workers;               /* started */
    uint64_t generation;         /* bumped for each loop */
    /* the current loop */
    apr_parallel_fn fn;
    void *ctx;
    int64_t n, chunk;
    atomic_int_fast64_t next;
    int active;                  /* workers taking part in this loop */
    int finished;
} pool = { .once = PTHREAD_ONCE_INIT, .call_lock = PTHREAD_MUTEX_INITIALIZER,
           .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
           .done = PTHREAD_COND_INITIALIZER };

static _Thread_local int in_loop;

static void run_chunks(int thread)
{
    for (;;) {
        int64_t begin = atomic_fetch_add(&pool.next, pool.chunk);
        if (begin >= pool.n) break;
        int64_t end = begin + pool.chunk < pool.n ? begin + pool.chunk : pool.n;
        pool.fn(pool.ctx, begin, end, thread);
    }
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t seen = 0;
    in_loop = 1;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = pool.generation;
        if (id >= pool.active) continue;  /* this loop wants fewer threads */
        pthread_mutex_unlock(&pool.lock);
        run_chunks(id + 1);
        pthread_mutex_lock(&pool.lock);
        if (++pool.finished == pool.active) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

static int default_threads(void)
{
    const char *env = getenv("APR_THREADS");
    if (env && atoi(env) > 0) return atoi(env) < MAX_THREADS ? atoi(env) : MAX_THREADS;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n < MAX_THREADS ? n : MAX_THREADS;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < MAX_THREADS ? (int)n : 1;
}

static void init(void) { pool.n_threads = default_threads(); }

int apr_parallel_threads(void)
{
    pthread_once(&pool.once, init);
    return pool.n_threads;
}

void apr_parallel_set_threads(int n)
{
    pthread_once(&pool.once, init);
    pthread_mutex_lock(&pool.call_lock);
    pool.n_threads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
    pthread_mutex_unlock(&pool.call_lock);
}

void apr_parallel_for(int64_t n, int64_t grain, apr_parallel_fn fn, void *ctx)
{
    if (n <= 0) return;
    pthread_once(&pool.once, init);
    if (grain < 1) grain = 1;
    int threads = pool.n_threads;
    if (in_loop || threads <= 1 || n <= grain) {
        fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&pool.call_lock);
    /* Chunks: about 4 per thread for balance, never smaller than grain. */
    int64_t chunk = n / ((int64_t)threads * 4);
    if (chunk < grain) chunk = grain;
    int64_t n_chunks = (n + chunk - 1) / chunk;
    int helpers = threads - 1;
    if (helpers > n_chunks - 1) helpers = (int)(n_chunks - 1);

    pthread_mutex_lock(&pool.lock);
    while (pool.n_workers < helpers) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)(intptr_t)pool.n_workers) != 0) break;
        pthread_detach(t);
        pool.n_workers++;
    }
    if (helpers > pool.n_workers) helpers = pool.n_workers;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    pool.chunk = chunk;
    atomic_store(&pool.next, 0);
    pool.active = helpers;
    pool.finished = 0;
    pool.generation++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    in_loop = 1;
    run_chunks(0);
    in_loop = 0;

    pthread_mutex_lock(&pool.lock);
    while (pool.finished < pool.active) pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.call_lock);
}
