/* parallel.c — the worker pool behind apr_parallel_for.
 *
 * Workers are created on first use and live for the process. A loop is
 * published by bumping one atomic word that carries its generation and how
 * many workers take part; threads (the caller included) then claim chunks
 * with an atomic counter, so uneven chunks balance themselves.
 *
 * Latency matters more than anything here: a decode step of a 0.5B model
 * runs ~150 loops in ~25 ms, several under 20 us. Waking a sleeping thread
 * through a condition variable costs 10-50 us each time, so an idle worker
 * first spins on the generation word (with `pause`) for SPIN_NS and only
 * then sleeps on a futex; the caller waits for the last chunk the same way
 * (wait_for_workers). The spins are short so idle pools do not steal CPU
 * from other processes. */
#include "parallel.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SPIN_NS 200000   /* how long an idle thread polls before it sleeps */

static struct {
    pthread_once_t once;
    pthread_mutex_t call_lock;   /* one loop at a time */
    pthread_mutex_t spawn_lock;
    int n_threads;               /* default, caller included */
    int n_workers;               /* started */
    /* state = generation << 16 | workers taking part; bumped per loop */
    _Atomic uint64_t state;
    _Atomic uint32_t wake_word;  /* futex: bumped with each loop */
    atomic_int sleepers;         /* workers blocked (or about to block) on wake_word */
    /* the current loop, written before `state` is bumped */
    apr_parallel_fn fn;
    void *ctx;
    int64_t n, chunk;
    _Atomic int64_t next;
    _Atomic uint32_t finished;   /* workers done with this loop (a futex for the caller) */
    atomic_int caller_waiting;   /* the caller sleeps on `finished` */
} pool = { .once = PTHREAD_ONCE_INIT, .call_lock = PTHREAD_MUTEX_INITIALIZER,
           .spawn_lock = PTHREAD_MUTEX_INITIALIZER };

static _Thread_local int in_loop;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *word, uint32_t expected)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

static void run_chunks(int thread)
{
    for (;;) {
        int64_t begin = atomic_fetch_add_explicit(&pool.next, pool.chunk, memory_order_relaxed);
        if (begin >= pool.n) break;
        int64_t end = begin + pool.chunk < pool.n ? begin + pool.chunk : pool.n;
        pool.fn(pool.ctx, begin, end, thread);
    }
}

/* Returns the next state whose generation differs from `seen`'s: spins for
 * SPIN_NS, then sleeps until a loop is published. */
static uint64_t await_loop(uint64_t seen)
{
    int64_t deadline = 0;
    for (int i = 0;; i++) {
        uint64_t s = atomic_load_explicit(&pool.state, memory_order_acquire);
        if (s >> 16 != seen >> 16) return s;
        cpu_relax();
        if ((i & 63) != 63) continue;
        int64_t t = now_ns();
        if (!deadline) deadline = t + SPIN_NS;
        if (t < deadline) continue;
        /* Sleep. The publisher bumps state, then wake_word, then reads
         * sleepers; this thread bumps sleepers, then reads state: with
         * sequentially consistent atomics one of the two sees the other. */
        uint32_t word = atomic_load(&pool.wake_word);
        atomic_fetch_add(&pool.sleepers, 1);
        if (atomic_load(&pool.state) >> 16 == seen >> 16) futex_wait(&pool.wake_word, word);
        atomic_fetch_sub(&pool.sleepers, 1);
        deadline = 0;
    }
}

/* The state each worker was started in: a worker that first runs after the
 * loop it was started for was published must still take part in it. */
static uint64_t start_state[APR_PARALLEL_MAX_THREADS];

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t seen = start_state[id];
    in_loop = 1;
    for (;;) {
        seen = await_loop(seen);
        /* Only a worker taking part reads the loop's fields: the caller
         * cannot publish the next loop before this one reports done. */
        if (id >= (int)(seen & 0xffff)) continue;
        run_chunks(id + 1);
        atomic_fetch_add(&pool.finished, 1);
        if (atomic_load(&pool.caller_waiting))
            syscall(SYS_futex, (uint32_t *)&pool.finished, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
    return NULL;
}

static int default_threads(void)
{
    const char *env = getenv("APR_THREADS");
    if (env && atoi(env) > 0)
        return atoi(env) < APR_PARALLEL_MAX_THREADS ? atoi(env) : APR_PARALLEL_MAX_THREADS;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n < APR_PARALLEL_MAX_THREADS ? n : APR_PARALLEL_MAX_THREADS;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < APR_PARALLEL_MAX_THREADS ? (int)n : 1;
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
    pool.n_threads = n < 1 ? 1 : n > APR_PARALLEL_MAX_THREADS ? APR_PARALLEL_MAX_THREADS : n;
    pthread_mutex_unlock(&pool.call_lock);
}

/* Waits until `helpers` workers report the loop done: spins briefly (the
 * usual case: they finish within microseconds of the caller), then sleeps.
 * Sleeping matters on a busy machine: a worker preempted mid-chunk waits in
 * another core's run queue, and an idle core is what lets the scheduler
 * move it here; a spinning caller would keep this core busy instead. */
static void wait_for_workers(uint32_t helpers)
{
    for (int i = 0; i < 4096; i++) {
        if (atomic_load_explicit(&pool.finished, memory_order_acquire) >= helpers) return;
        cpu_relax();
    }
    for (;;) {
        /* as with await_loop: this thread sets caller_waiting, then reads
         * finished; a worker bumps finished, then reads caller_waiting */
        atomic_store(&pool.caller_waiting, 1);
        uint32_t seen = atomic_load(&pool.finished);
        if (seen >= helpers) break;
        futex_wait(&pool.finished, seen);
    }
    atomic_store(&pool.caller_waiting, 0);
}

/* Starts workers until `want` exist (or thread creation fails); returns how
 * many there are. Called with call_lock held. */
static int spawn_workers(int want)
{
    while (pool.n_workers < want) {
        pthread_t t;
        start_state[pool.n_workers] = atomic_load(&pool.state);
        if (pthread_create(&t, NULL, worker, (void *)(intptr_t)pool.n_workers) != 0) break;
        pthread_setname_np(t, "apr-worker");  /* how top, gdb and apr trace name it */
        pthread_detach(t);
        pool.n_workers++;
    }
    return pool.n_workers < want ? pool.n_workers : want;
}

void apr_parallel_for_n(int threads, int64_t n, int64_t grain, apr_parallel_fn fn, void *ctx)
{
    if (n <= 0) return;
    pthread_once(&pool.once, init);
    if (grain < 1) grain = 1;
    if (threads <= 0) threads = pool.n_threads;
    if (threads > APR_PARALLEL_MAX_THREADS) threads = APR_PARALLEL_MAX_THREADS;
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
    helpers = spawn_workers(helpers);

    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    pool.chunk = chunk;
    atomic_store_explicit(&pool.next, 0, memory_order_relaxed);
    atomic_store_explicit(&pool.finished, 0, memory_order_relaxed);
    uint64_t generation = (atomic_load(&pool.state) >> 16) + 1;
    atomic_store(&pool.state, generation << 16 | (uint64_t)helpers);
    atomic_fetch_add(&pool.wake_word, 1);
    if (atomic_load(&pool.sleepers) > 0) futex_wake_all(&pool.wake_word);

    in_loop = 1;
    run_chunks(0);
    in_loop = 0;

    wait_for_workers((uint32_t)helpers);
    pthread_mutex_unlock(&pool.call_lock);
}

void apr_parallel_for(int64_t n, int64_t grain, apr_parallel_fn fn, void *ctx)
{
    apr_parallel_for_n(0, n, grain, fn, ctx);
}
