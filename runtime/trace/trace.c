/* trace.c — spans in per-thread rings, GPU records, Chrome trace JSON.
 *
 * Each thread that records while a trace is active gets a ring of fixed-size
 * records (begin, end, or a whole span with its duration) that only it
 * writes: no lock and no atomic read-modify-write on the hot path, just a
 * store and a release of the count. The ring is reserved with mmap and
 * MAP_NORESERVE, so a thread that records 100 spans touches one page, not
 * the ring's 24 MiB. A full ring overwrites its oldest records (a flight
 * recorder: a long `apr serve` keeps its last minutes) and counts them.
 *
 * GPU records (CUPTI's kernels, copies, memsets, trace/cupti.c) go into one
 * store under a lock: they arrive in batches on CUPTI's thread.
 *
 * apr_trace_write_json turns both into Chrome's trace-event format: begin
 * and end records are matched per thread here, so every span becomes one
 * "X" event whose children lie inside it, which Perfetto, chrome://tracing
 * and the flamegraph code (lua/apr/trace/) all read. Why not write B/E
 * pairs: a ring that overwrote its oldest records leaves ends without
 * begins, which the matching drops here instead of passing on. */
#include "trace/trace.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "core/error.h"

int apr_trace_active;

/* ===================================================================== */
/* State                                                                 */
/* ===================================================================== */

enum { REC_BEGIN = 1, REC_END = 2, REC_COMPLETE = 3 };
enum { MAX_LANES = 200 };

typedef struct rec {
    uint64_t t;             /* ns; REC_COMPLETE: the start */
    uint64_t dur;           /* REC_COMPLETE: ns */
    uint32_t name;
    uint16_t kind;
    uint16_t lane;
} rec;

typedef struct ring {
    rec *r;
    uint64_t cap;           /* a power of 2 */
    _Atomic uint64_t n;     /* records written since this trace began (the writer's only) */
    uint32_t epoch;         /* the trace these records belong to */
    int gone;               /* its thread has exited: the ring may go to a new thread */
    int tid;
    char name[32];
    struct ring *next;
} ring;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;  /* rings list, names, GPU store, start/stop */
static ring *rings;
static _Thread_local ring *mine;
static pthread_key_t exit_key;   /* its destructor marks a thread's ring as free */
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static uint32_t epoch;      /* bumped by every start */
static uint64_t ring_cap = 1u << 20;
static uint64_t start_ns, stop_ns;
static int kernels_on;
static char kernels_note[256];

/* Interned names: id i is names[i] (0 unused); a hash table of ids. */
static char **names;
static uint32_t n_names, cap_names;
static uint32_t *hash;      /* [hash_cap] ids, 0 = empty */
static uint32_t hash_cap;

/* The GPU store. */
static apr_gpu_record *gpu;
static uint64_t n_gpu, gpu_cap = 1u << 23, gpu_dropped;

static const char *const span_names[APR_SPAN_COUNT] = {
    [APR_SPAN_MODEL_LOAD] = "model load",
    [APR_SPAN_WEIGHTS_UPLOAD] = "weights upload",
    [APR_SPAN_TOKENIZE] = "tokenize",
    [APR_SPAN_DETOKENIZE] = "detokenize",
    [APR_SPAN_PREFILL] = "prefill",
    [APR_SPAN_DECODE] = "decode step",
    [APR_SPAN_FORWARD] = "forward",
    [APR_SPAN_SAMPLE] = "sample",
    [APR_SPAN_H2D] = "H2D copy",
    [APR_SPAN_D2H] = "D2H copy",
    [APR_SPAN_ENGINE_STEP] = "engine step",
    [APR_SPAN_SCHEDULE] = "schedule",
    [APR_SPAN_DEVICE_WAIT] = "device wait",
    [APR_SPAN_TENSOR_ALLOC] = "tensor allocation",
    [APR_SPAN_ZRAM_COMPRESS] = "zram compress",
    [APR_SPAN_ZRAM_DECOMPRESS] = "zram decompress",
};

/* ===================================================================== */
/* Names                                                                 */
/* ===================================================================== */

static uint32_t fnv(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* lock held */
static uint32_t intern_locked(const char *s, size_t len)
{
    if (len > 255) len = 255;
    if (hash_cap == 0 || (n_names + 1) * 2 > hash_cap) {
        uint32_t cap = hash_cap ? hash_cap * 2 : 1024;
        uint32_t *h = calloc(cap, sizeof *h);
        if (!h) return 0;
        for (uint32_t id = 1; id < n_names; id++) {
            uint32_t k = fnv(names[id], strlen(names[id])) & (cap - 1);
            while (h[k]) k = (k + 1) & (cap - 1);
            h[k] = id;
        }
        free(hash);
        hash = h;
        hash_cap = cap;
    }
    uint32_t k = fnv(s, len) & (hash_cap - 1);
    for (; hash[k]; k = (k + 1) & (hash_cap - 1)) {
        const char *t = names[hash[k]];
        if (strlen(t) == len && memcmp(t, s, len) == 0) return hash[k];
    }
    if (n_names == 0) n_names = 1;
    if (n_names >= cap_names) {
        uint32_t cap = cap_names ? cap_names * 2 : 256;
        char **nn = realloc(names, cap * sizeof *nn);
        if (!nn) return 0;
        names = nn;
        cap_names = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return 0;
    memcpy(copy, s, len);
    copy[len] = 0;
    names[n_names] = copy;
    hash[k] = n_names;
    return n_names++;
}

/* The C spans' ids are their enum values: interned first, in order. */
static void intern_spans_locked(void)
{
    if (n_names > 1) return;
    for (int i = 1; i < APR_SPAN_COUNT; i++) intern_locked(span_names[i], strlen(span_names[i]));
}

uint32_t apr_trace_name(const char *name)
{
    if (!name || !*name) return 0;
    pthread_mutex_lock(&lock);
    intern_spans_locked();
    uint32_t id = intern_locked(name, strlen(name));
    pthread_mutex_unlock(&lock);
    return id;
}

/* ===================================================================== */
/* Recording                                                             */
/* ===================================================================== */

uint64_t apr_trace_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void thread_exited(void *p)
{
    pthread_mutex_lock(&lock);
    ((ring *)p)->gone = 1;
    pthread_mutex_unlock(&lock);
}

static void make_exit_key(void) { pthread_key_create(&exit_key, thread_exited); }

/* This thread's ring for the current trace, made on its first record;
 * NULL when the address space for it cannot be had. The ring of a thread
 * that has exited is reused once its records are no longer the current
 * trace's (a server's engine threads come and go with reloads). */
static ring *my_ring(void)
{
    ring *g = mine;
    uint32_t e = __atomic_load_n(&epoch, __ATOMIC_ACQUIRE);
    if (g && g->epoch == e) return g;
    pthread_once(&exit_once, make_exit_key);
    pthread_mutex_lock(&lock);
    if (!g) {
        for (ring *r = rings; r && !g; r = r->next)
            if (r->gone && r->epoch != epoch && r->cap == ring_cap) g = r;
        if (g) {
            g->gone = 0;
            g->tid = (int)syscall(SYS_gettid);
            char comm[17] = { 0 };
            prctl(PR_GET_NAME, comm, 0, 0, 0);
            snprintf(g->name, sizeof g->name, "%s", comm[0] ? comm : "thread");
            mine = g;
            pthread_setspecific(exit_key, g);
        }
    }
    if (!g) {
        g = calloc(1, sizeof *g);
        if (g) {
            g->cap = ring_cap;
            void *p = mmap(NULL, g->cap * sizeof(rec), PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED) {
                free(g);
                g = NULL;
            } else {
                g->r = p;
                g->tid = (int)syscall(SYS_gettid);
                char comm[17] = { 0 };
                prctl(PR_GET_NAME, comm, 0, 0, 0);
                snprintf(g->name, sizeof g->name, "%s", comm[0] ? comm : "thread");
                g->next = rings;
                rings = g;
                mine = g;
                pthread_setspecific(exit_key, g);
            }
        }
    }
    if (g) {
        /* A ring sized for an earlier trace keeps its size: records never move. */
        atomic_store_explicit(&g->n, 0, memory_order_relaxed);
        g->epoch = epoch;
    }
    pthread_mutex_unlock(&lock);
    return g;
}

static void push(uint16_t kind, uint32_t name, uint64_t t, uint64_t dur, uint16_t lane)
{
    ring *g = my_ring();
    if (!g) return;
    uint64_t n = atomic_load_explicit(&g->n, memory_order_relaxed);
    rec *r = &g->r[n & (g->cap - 1)];
    r->t = t;
    r->dur = dur;
    r->name = name;
    r->kind = kind;
    r->lane = lane;
    atomic_store_explicit(&g->n, n + 1, memory_order_release);
}

void apr_trace_begin(uint32_t name)
{
    if (!apr_trace_active || name == 0) return;
    push(REC_BEGIN, name, apr_trace_now(), 0, 0);
}

void apr_trace_end(uint32_t name)
{
    if (!apr_trace_active || name == 0) return;
    push(REC_END, name, apr_trace_now(), 0, 0);
}

void apr_trace_complete(uint32_t name, int lane, uint64_t t0, uint64_t dur)
{
    if (!apr_trace_active || name == 0) return;
    if (lane < 0) lane = 0;
    if (lane > MAX_LANES) lane = MAX_LANES;
    push(REC_COMPLETE, name, t0, dur, (uint16_t)lane);
}

void apr_trace_thread_name(const char *name)
{
    if (!name) return;
    ring *g = apr_trace_active ? my_ring() : mine;
    if (g) snprintf(g->name, sizeof g->name, "%s", name);
}

void apr_trace_gpu_add(const apr_gpu_record *r)
{
    pthread_mutex_lock(&lock);
    if (!gpu) {
        void *p = mmap(NULL, gpu_cap * sizeof *gpu, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        gpu = p == MAP_FAILED ? NULL : p;
    }
    if (gpu && n_gpu < gpu_cap) gpu[n_gpu++] = *r;
    else gpu_dropped++;
    pthread_mutex_unlock(&lock);
}

void apr_trace_gpu_dropped(uint64_t n)
{
    pthread_mutex_lock(&lock);
    gpu_dropped += n;
    pthread_mutex_unlock(&lock);
}

/* ===================================================================== */
/* Start and stop                                                        */
/* ===================================================================== */

void apr_trace_params_default(apr_trace_params *p)
{
    memset(p, 0, sizeof *p);
    p->ring_records = 1 << 20;
}

apr_status apr_trace_start(const apr_trace_params *params)
{
    apr_trace_params p;
    apr_trace_params_default(&p);
    if (params) p = *params;
    if (p.ring_records == 0) p.ring_records = 1 << 20;
    APR_CHECK(p.ring_records >= 16 && p.ring_records <= (int64_t)1 << 28, APR_ERR_INVALID,
              "trace: ring_records %lld is outside [16, 2^28]", (long long)p.ring_records);
    APR_CHECK(!apr_trace_active, APR_ERR_INVALID, "trace: a trace is already active");
    uint64_t cap = 16;
    while ((int64_t)cap < p.ring_records) cap <<= 1;

    pthread_mutex_lock(&lock);
    intern_spans_locked();
    /* Rings of earlier traces are reused only at their own size; a new
     * size applies to threads' first rings. */
    ring_cap = cap;
    n_gpu = 0;
    gpu_dropped = 0;
    kernels_note[0] = 0;
    stop_ns = 0;
    start_ns = apr_trace_now();
    __atomic_add_fetch(&epoch, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&lock);

    kernels_on = 0;
    if (p.kernels) kernels_on = apr_trace_cupti_start(kernels_note, sizeof kernels_note);
    __atomic_store_n(&apr_trace_active, 1, __ATOMIC_RELEASE);
    return APR_OK;
}

void apr_trace_stop(void)
{
    if (!apr_trace_active) return;
    __atomic_store_n(&apr_trace_active, 0, __ATOMIC_RELEASE);
    stop_ns = apr_trace_now();
    if (kernels_on) apr_trace_cupti_stop();
}

int apr_trace_enabled(void) { return apr_trace_active; }

void apr_trace_get_info(apr_trace_info *out)
{
    if (!out) return;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&lock);
    out->active = apr_trace_active;
    out->kernels = kernels_on;
    snprintf(out->kernels_note, sizeof out->kernels_note, "%s", kernels_note);
    for (ring *g = rings; g; g = g->next) {
        if (g->epoch != epoch) continue;
        uint64_t n = atomic_load_explicit(&g->n, memory_order_acquire);
        out->n_threads++;
        out->records += (int64_t)(n < g->cap ? n : g->cap);
        out->overwritten += (int64_t)(n > g->cap ? n - g->cap : 0);
    }
    out->gpu_records = (int64_t)n_gpu;
    out->gpu_dropped = (int64_t)gpu_dropped;
    out->start_ns = start_ns;
    out->stop_ns = stop_ns;
    pthread_mutex_unlock(&lock);
}

/* ===================================================================== */
/* Chrome trace-event JSON                                               */
/* ===================================================================== */

/* The length of the valid UTF-8 sequence at s, or 0. */
static int utf8_len(const unsigned char *s)
{
    int n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return n;
}

/* A JSON string; bytes that are not UTF-8 (a name from a script) become '?'. */
static void put_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else if (c < 0x80) fputc(c, f);
        else {
            int n = utf8_len(p);
            if (n == 0) fputc('?', f);
            else {
                fwrite(p, 1, (size_t)n, f);
                p += n - 1;
            }
        }
    }
    fputc('"', f);
}

/* Microseconds since the trace began, with the nanoseconds kept. */
static void put_us(FILE *f, const char *key, uint64_t t, uint64_t base)
{
    int64_t d = (int64_t)(t - base);
    fprintf(f, ",\"%s\":%s%lld.%03lld", key, d < 0 ? "-" : "", (long long)(llabs(d) / 1000), (long long)(llabs(d) % 1000));
}

static void put_meta(FILE *f, int pid, long long tid, const char *what, const char *name, int *first)
{
    fprintf(f, "%s\n{\"ph\":\"M\",\"pid\":%d,\"tid\":%lld,\"name\":\"%s\",\"args\":{\"name\":", *first ? "" : ",", pid,
            tid, what);
    put_str(f, name);
    fputs("}}", f);
    *first = 0;
}

static void put_span(FILE *f, int pid, long long tid, uint32_t name, uint64_t t0, uint64_t t1, int unfinished,
                     int *first)
{
    fprintf(f, "%s\n{\"ph\":\"X\",\"pid\":%d,\"tid\":%lld,\"cat\":\"span\",\"name\":", *first ? "" : ",", pid, tid);
    put_str(f, name < n_names ? names[name] : "?");
    put_us(f, "ts", t0, start_ns);
    put_us(f, "dur", t1 < t0 ? t0 : t1, t0);
    if (unfinished) fputs(",\"args\":{\"unfinished\":true}", f);
    fputc('}', f);
    *first = 0;
}

/* Lanes of a thread appear as threads of their own; with Linux's thread ids
 * below 2^22 (pid_max) and at most MAX_LANES lanes, every id stays a
 * positive 32-bit number, as some trace readers want. */
static long long lane_tid(int tid, int lane) { return lane ? (long long)lane * 4194304LL + tid : tid; }

enum { MAX_DEPTH = 128 };

/* One thread's records, oldest kept first, as X events (lock held). */
static void put_ring(FILE *f, int pid, ring *g, uint64_t end, int *first)
{
    uint64_t n = atomic_load_explicit(&g->n, memory_order_acquire);
    uint64_t from = n > g->cap ? n - g->cap : 0;
    struct open_span { uint32_t name; uint64_t t; } stack[MAX_DEPTH];
    int depth = 0, lanes = 0;
    for (uint64_t i = from; i < n; i++) {
        const rec *r = &g->r[i & (g->cap - 1)];
        if (r->kind == REC_BEGIN) {
            if (depth < MAX_DEPTH) stack[depth++] = (struct open_span){ r->name, r->t };
        } else if (r->kind == REC_END) {
            int k = depth - 1;
            while (k >= 0 && stack[k].name != r->name) k--;
            if (k < 0) continue;  /* its begin was overwritten, or it was never opened */
            while (depth > k) {
                depth--;
                put_span(f, pid, g->tid, stack[depth].name, stack[depth].t, r->t, 0, first);
            }
        } else if (r->kind == REC_COMPLETE) {
            put_span(f, pid, lane_tid(g->tid, r->lane), r->name, r->t, r->t + r->dur, 0, first);
            if (r->lane > lanes) lanes = r->lane;
        }
    }
    while (depth > 0) {
        depth--;
        put_span(f, pid, g->tid, stack[depth].name, stack[depth].t, end, 1, first);
    }
    put_meta(f, pid, g->tid, "thread_name", g->name, first);
    for (int l = 1; l <= lanes; l++) {
        char lname[64];
        snprintf(lname, sizeof lname, "%s lane %d", g->name, l);
        put_meta(f, pid, lane_tid(g->tid, l), "thread_name", lname, first);
    }
}

static long long gpu_tid(const apr_gpu_record *r) { return 1000000000LL + (long long)r->device * 100000 + r->stream; }

static void put_gpu(FILE *f, int pid, const apr_gpu_record *r, int *first)
{
    static const char *const copy_names[] = { "copy", "H2D copy", "D2H copy", "D2D copy" };
    const char *name = r->kind == APR_GPU_KERNEL ? (r->name < n_names ? names[r->name] : "?")
                     : r->kind == APR_GPU_MEMSET ? "memset"
                     : copy_names[r->copy < 4 ? r->copy : 0];
    fprintf(f, "%s\n{\"ph\":\"X\",\"pid\":%d,\"tid\":%lld,\"cat\":\"%s\",\"name\":", *first ? "" : ",", pid, gpu_tid(r),
            r->kind == APR_GPU_KERNEL ? "kernel" : r->kind == APR_GPU_MEMSET ? "memset" : "memcpy");
    put_str(f, name);
    put_us(f, "ts", r->start, start_ns);
    put_us(f, "dur", r->end < r->start ? r->start : r->end, r->start);
    fprintf(f, ",\"args\":{\"device\":%u,\"stream\":%u,\"graph\":%u,\"correlation\":%u", r->device, r->stream, r->graph,
            r->correlation);
    if (r->kind == APR_GPU_KERNEL && r->full && r->full < n_names) {
        fputs(",\"function\":", f);
        put_str(f, names[r->full]);
    }
    if (r->kind != APR_GPU_KERNEL) fprintf(f, ",\"bytes\":%llu", (unsigned long long)r->bytes);
    fputs("}}", f);
    *first = 0;
}

apr_status apr_trace_write_json(const char *path, const char *meta_json)
{
    APR_CHECK(path, APR_ERR_INVALID, "apr_trace_write_json: path is NULL");
    FILE *f = fopen(path, "w");
    APR_CHECK(f, APR_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    static char buf[1 << 16];
    setvbuf(f, buf, _IOFBF, sizeof buf);
    const int pid = (int)getpid();
    struct timespec real;
    clock_gettime(CLOCK_REALTIME, &real);
    const uint64_t mono_now = apr_trace_now();

    pthread_mutex_lock(&lock);
    const uint64_t end = stop_ns ? stop_ns : mono_now;
    int first = 1;
    fputs("{\"traceEvents\":[", f);
    put_meta(f, pid, pid, "process_name", "apr", &first);
    uint64_t kept = 0, lost = 0;
    for (ring *g = rings; g; g = g->next) {
        if (g->epoch != epoch) continue;
        uint64_t n = atomic_load_explicit(&g->n, memory_order_acquire);
        kept += n < g->cap ? n : g->cap;
        lost += n > g->cap ? n - g->cap : 0;
        put_ring(f, pid, g, end, &first);
    }
    /* The process's other live threads by their names (workers that record
     * no spans still make syscalls, which `apr trace` puts on their tracks). */
    DIR *tasks = opendir("/proc/self/task");
    for (struct dirent *d; tasks && (d = readdir(tasks));) {
        int tid = atoi(d->d_name);
        int known = tid <= 0;
        for (ring *g = rings; g && !known; g = g->next) known = g->epoch == epoch && g->tid == tid;
        if (known) continue;
        char comm_path[64], comm[32] = "";
        snprintf(comm_path, sizeof comm_path, "/proc/self/task/%d/comm", tid);
        FILE *c = fopen(comm_path, "r");
        if (!c) continue;
        if (fgets(comm, sizeof comm, c)) comm[strcspn(comm, "\n")] = 0;
        fclose(c);
        if (comm[0]) put_meta(f, pid, tid, "thread_name", comm, &first);
    }
    if (tasks) closedir(tasks);
    long long named[64];
    int n_named = 0;
    for (uint64_t i = 0; i < n_gpu; i++) {
        put_gpu(f, pid, &gpu[i], &first);
        long long t = gpu_tid(&gpu[i]);
        int seen = 0;
        for (int k = 0; k < n_named && !seen; k++) seen = named[k] == t;
        if (!seen && n_named < 64) {
            named[n_named++] = t;
            char tname[64];
            snprintf(tname, sizeof tname, "GPU %u stream %u", gpu[i].device, gpu[i].stream);
            put_meta(f, pid, t, "thread_name", tname, &first);
        }
    }
    /* The realtime clock's reading at the trace's start, for aligning
     * timestamps of other tools (strace -ttt) with these. */
    const int64_t real_ns = (int64_t)real.tv_sec * 1000000000LL + real.tv_nsec;
    const int64_t start_real = real_ns - (int64_t)(mono_now - start_ns);
    fprintf(f, "\n],\n\"displayTimeUnit\":\"ms\",\n\"otherData\":{\"apr_trace\":1,\"clock\":\"CLOCK_MONOTONIC\","
               "\"start_ns\":%llu,\"start_realtime_ns\":%lld,\"duration_us\":%.3f,\"pid\":%d,"
               "\"span_records\":%llu,\"span_records_overwritten\":%llu,\"gpu_records\":%llu,\"gpu_dropped\":%llu,"
               "\"kernels\":%s,\"kernels_note\":",
            (unsigned long long)start_ns, (long long)start_real, (double)(end - start_ns) / 1e3, pid,
            (unsigned long long)kept, (unsigned long long)lost, (unsigned long long)n_gpu,
            (unsigned long long)gpu_dropped, kernels_on ? "true" : "false");
    put_str(f, kernels_note);
    pthread_mutex_unlock(&lock);
    if (meta_json && *meta_json) fprintf(f, ",%s", meta_json);
    fputs("}}\n", f);
    int bad = ferror(f);
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        int err = errno;
        remove(path);
        return apr_error(APR_ERR_IO, "writing %s: %s", path, strerror(err));
    }
    return APR_OK;
}
