/* cupti.c — GPU kernels, copies and memsets from CUPTI's activity API.
 *
 * CUPTI (NVIDIA's profiling library, part of the CUDA toolkit) timestamps
 * every kernel on the GPU itself, including each kernel of a replayed CUDA
 * graph, where an event pair around the launch would only see the whole
 * graph. CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL keeps kernels concurrent
 * (KIND_KERNEL would serialize them). The library is loaded with dlopen
 * when a trace asks for kernels, so apr runs where it is absent (a bundle
 * carries it in lib/, scripts/bundle.sh); its record layouts come from the
 * toolkit's headers this file is compiled with, and a library of another
 * major version is refused rather than misread.
 *
 * CUPTI's timestamps are made to come from apr's trace clock
 * (cuptiActivityRegisterTimestampCallback: CLOCK_MONOTONIC), so kernels
 * line up with the spans that launched them without any calibration.
 * Records arrive in buffers on CUPTI's own thread; each is copied into the
 * GPU store (trace.c) with its name interned and demangled. */
#include "trace/trace.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(APR_CUDA) && __has_include(<cupti.h>)
#include <cupti.h>

/* ===================================================================== */
/* The library                                                           */
/* ===================================================================== */

static struct {
    void *lib;
    CUptiResult (*get_version)(uint32_t *);
    CUptiResult (*register_callbacks)(CUpti_BuffersCallbackRequestFunc, CUpti_BuffersCallbackCompleteFunc);
    CUptiResult (*register_timestamp)(CUpti_TimestampCallbackFunc);
    CUptiResult (*enable)(CUpti_ActivityKind);
    CUptiResult (*disable)(CUpti_ActivityKind);
    CUptiResult (*flush_all)(uint32_t);
    CUptiResult (*next_record)(uint8_t *, size_t, CUpti_Activity **);
    CUptiResult (*dropped)(CUcontext, uint32_t, size_t *);
    CUptiResult (*result_string)(CUptiResult, const char **);
    char *(*demangle)(const char *, char *, size_t *, int *);
    int registered;
} cu;

#define STR_(x) #x
#define STR(x) STR_(x)

/* Where libcupti may be: $APR_CUPTI, the loader's own search (a bundle's
 * $ORIGIN/lib through the executable's RUNPATH, LD_LIBRARY_PATH,
 * ldconfig), beside the executable, then the toolkit's usual places. */
static void *open_library(char *tried, size_t size)
{
    char soname[32], exe[PATH_MAX], path[PATH_MAX + 64];
    snprintf(soname, sizeof soname, "libcupti.so.%d", CUPTI_API_VERSION / 10000);
    const char *env = getenv("APR_CUPTI");
    if (env && *env) {
        snprintf(tried, size, "%s", env);
        return dlopen(env, RTLD_NOW | RTLD_LOCAL);
    }
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (h) return h;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(path, sizeof path, "%s/lib/%s", exe, soname);
        if ((h = dlopen(path, RTLD_NOW | RTLD_LOCAL))) return h;
    }
    const char *dirs[] = { "/usr/local/cuda/lib64", "/usr/local/cuda/extras/CUPTI/lib64", "/usr/local/cuda/lib" };
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(path, sizeof path, "%s/%s", dirs[i], soname);
        if ((h = dlopen(path, RTLD_NOW | RTLD_LOCAL))) return h;
    }
    snprintf(tried, size, "%s (the loader's path, beside apr in lib/, /usr/local/cuda; set APR_CUPTI=PATH)", soname);
    return NULL;
}

static int load(char *why, size_t size)
{
    if (cu.lib) return 1;
    char tried[PATH_MAX + 128] = "";
    void *h = open_library(tried, sizeof tried);
    if (!h) {
        snprintf(why, size, "CUPTI not found: %s", tried);
        return 0;
    }
#define SYM(field, name) (*(void **)&cu.field = dlsym(h, name))
    if (!SYM(get_version, "cuptiGetVersion") || !SYM(register_callbacks, "cuptiActivityRegisterCallbacks") ||
        !SYM(register_timestamp, "cuptiActivityRegisterTimestampCallback") || !SYM(enable, "cuptiActivityEnable") ||
        !SYM(disable, "cuptiActivityDisable") || !SYM(flush_all, "cuptiActivityFlushAll") ||
        !SYM(next_record, "cuptiActivityGetNextRecord") || !SYM(dropped, "cuptiActivityGetNumDroppedRecords") ||
        !SYM(result_string, "cuptiGetResultString")) {
        snprintf(why, size, "the CUPTI library found lacks the activity API (%s)", dlerror());
        dlclose(h);
        return 0;
    }
#undef SYM
    uint32_t v = 0;
    if (cu.get_version(&v) != CUPTI_SUCCESS || v / 10000 != CUPTI_API_VERSION / 10000 || v < CUPTI_API_VERSION) {
        snprintf(why, size, "CUPTI version %u found; apr was built with %d", v, CUPTI_API_VERSION);
        dlclose(h);
        return 0;
    }
    /* libstdc++'s demangler, which a CUDA build links (cudart needs it). */
    *(void **)&cu.demangle = dlsym(RTLD_DEFAULT, "__cxa_demangle");
    cu.lib = h;
    return 1;
}

static const char *result_str(CUptiResult r)
{
    const char *s = NULL;
    if (cu.result_string) cu.result_string(r, &s);
    return s ? s : "unknown CUPTI error";
}

/* ===================================================================== */
/* Records                                                               */
/* ===================================================================== */

enum { BUFFER_BYTES = 8 << 20, BUFFER_ALIGN = 8 };

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records)
{
    *buffer = aligned_alloc(BUFFER_ALIGN, BUFFER_BYTES);
    *size = *buffer ? BUFFER_BYTES : 0;
    *max_records = 0;
}

static uint64_t CUPTIAPI clock_now(void) { return apr_trace_now(); }

/* Added to CUPTI's timestamps when it would not take apr's clock: the
 * monotonic clock minus CUPTI's default (CLOCK_REALTIME on Linux). */
static int64_t shift;

static int64_t realtime_shift(void)
{
    struct timespec rt;
    uint64_t a = apr_trace_now();
    clock_gettime(CLOCK_REALTIME, &rt);
    uint64_t b = apr_trace_now();
    return (int64_t)(a / 2 + b / 2) - ((int64_t)rt.tv_sec * 1000000000LL + rt.tv_nsec);
}

/* The kernel's function name, demangled, without its return type and
 * parameter list ("void gemv<4>(float*, ...)" -> "gemv<4>"). */
static void kernel_names(const char *mangled, uint32_t *name, uint32_t *full)
{
    if (!mangled || !*mangled) mangled = "(unnamed kernel)";
    int status = -1;
    char *d = cu.demangle && mangled[0] == '_' && mangled[1] == 'Z' ? cu.demangle(mangled, NULL, NULL, &status) : NULL;
    const char *s = d && status == 0 ? d : mangled;
    *full = apr_trace_name(s);
    /* the parameter list: the first '(' outside template brackets */
    int depth = 0;
    const char *open = NULL, *begin = s;
    for (const char *p = s; *p; p++) {
        if (*p == '<') depth++;
        else if (*p == '>') depth--;
        else if (*p == '(' && depth == 0) { open = p; break; }
        else if (*p == ' ' && depth == 0) begin = p + 1;  /* past "void " */
    }
    char shortname[256];
    size_t len = open ? (size_t)(open - begin) : strlen(begin);
    if (len >= sizeof shortname) len = sizeof shortname - 1;
    memcpy(shortname, begin, len);
    shortname[len] = 0;
    *name = apr_trace_name(shortname[0] ? shortname : s);
    free(d);
}

static uint16_t copy_kind(uint8_t k)
{
    switch (k) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return APR_COPY_H2D;
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return APR_COPY_D2H;
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return APR_COPY_D2D;
    default: return APR_COPY_OTHER;
    }
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid)
{
    CUpti_Activity *a = NULL;
    while (cu.next_record(buffer, valid, &a) == CUPTI_SUCCESS) {
        apr_gpu_record r;
        memset(&r, 0, sizeof r);
        if (a->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || a->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
            const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)a;
            r = (apr_gpu_record){ .start = k->start, .end = k->end, .kind = APR_GPU_KERNEL, .graph = k->graphId,
                                  .correlation = k->correlationId, .device = (uint16_t)k->deviceId,
                                  .stream = (uint16_t)k->streamId };
            kernel_names(k->name, &r.name, &r.full);
        } else if (a->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
            const CUpti_ActivityMemcpy6 *m = (const CUpti_ActivityMemcpy6 *)a;
            r = (apr_gpu_record){ .start = m->start, .end = m->end, .bytes = m->bytes, .kind = APR_GPU_MEMCPY,
                                  .copy = copy_kind(m->copyKind), .graph = m->graphId,
                                  .correlation = m->correlationId, .device = (uint16_t)m->deviceId,
                                  .stream = (uint16_t)m->streamId };
        } else if (a->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
            const CUpti_ActivityMemset4 *m = (const CUpti_ActivityMemset4 *)a;
            r = (apr_gpu_record){ .start = m->start, .end = m->end, .bytes = m->bytes, .kind = APR_GPU_MEMSET,
                                  .graph = m->graphId, .correlation = m->correlationId,
                                  .device = (uint16_t)m->deviceId, .stream = (uint16_t)m->streamId };
        } else {
            continue;
        }
        r.start += (uint64_t)shift;
        r.end += (uint64_t)shift;
        apr_trace_gpu_add(&r);
    }
    size_t dropped = 0;
    if (cu.dropped(ctx, stream, &dropped) == CUPTI_SUCCESS && dropped) apr_trace_gpu_dropped(dropped);
    free(buffer);
}

/* ===================================================================== */
/* Start and stop                                                        */
/* ===================================================================== */

static const CUpti_ActivityKind kinds[] = { CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY,
                                            CUPTI_ACTIVITY_KIND_MEMSET };

int apr_trace_cupti_start(char *why, size_t size)
{
    if (!load(why, size)) return 0;
    CUptiResult r = CUPTI_SUCCESS;
    if (!cu.registered) {
        /* the clock first: records made before it would be on CUPTI's own */
        shift = cu.register_timestamp(clock_now) == CUPTI_SUCCESS ? 0 : realtime_shift();
        r = cu.register_callbacks(buffer_requested, buffer_completed);
        if (r != CUPTI_SUCCESS) {
            snprintf(why, size, "CUPTI: %s", result_str(r));
            return 0;
        }
        cu.registered = 1;
    }
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds && r == CUPTI_SUCCESS; i++) r = cu.enable(kinds[i]);
    if (r != CUPTI_SUCCESS) {
        for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) cu.disable(kinds[i]);
        snprintf(why, size, "CUPTI: enabling activity records: %s (is there a GPU, and its driver?)", result_str(r));
        return 0;
    }
    return 1;
}

void apr_trace_cupti_stop(void)
{
    if (!cu.lib) return;
    /* forced: hand over partly filled buffers too */
    cu.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) cu.disable(kinds[i]);
}

#else /* no CUDA in this build, or no CUPTI headers */

int apr_trace_cupti_start(char *why, size_t size)
{
#ifdef APR_CUDA
    snprintf(why, size, "this build of apr has no CUPTI support (cupti.h was not found when it was built)");
#else
    snprintf(why, size, "this build of apr has no CUDA backend, so no GPU kernels to record");
#endif
    return 0;
}

void apr_trace_cupti_stop(void) {}

#endif
