/* trace.h — spans inside the runtime, and the GPU record store (internal).
 *
 *   APR_TRACE_BEGIN(APR_SPAN_DECODE);
 *   ...
 *   APR_TRACE_END(APR_SPAN_DECODE);
 *
 * While no trace is active each macro is one load of apr_trace_active and a
 * branch the predictor learns at once; the call happens only while tracing.
 * The C spans have fixed ids (their names are interned first, in this
 * order, by apr_trace_start); Lua interns its own through apr_trace_name.
 * Semantic groups for the flamegraph come from the names, in
 * lua/apr/trace/groups.lua: keep the two lists in step. */
#ifndef APR_TRACE_TRACE_H
#define APR_TRACE_TRACE_H

#include <stdint.h>

#include "apr.h"

extern int apr_trace_active;

enum apr_span {
    APR_SPAN_NONE = 0,
    APR_SPAN_MODEL_LOAD,      /* apr_model_load: parse, map, upload the weights */
    APR_SPAN_WEIGHTS_UPLOAD,  /* the weights onto the backend's device */
    APR_SPAN_TOKENIZE,        /* apr_tokenize */
    APR_SPAN_DETOKENIZE,      /* apr_detokenize, apr_detok_push/flush */
    APR_SPAN_PREFILL,         /* apr_decode of a batch with tokens that want no logits */
    APR_SPAN_DECODE,          /* apr_decode of a batch whose every token wants logits: a decode step */
    APR_SPAN_FORWARD,         /* the forward pass inside either */
    APR_SPAN_SAMPLE,          /* apr_sampler_sample */
    APR_SPAN_H2D,             /* host-to-device copies a pass issues (the enqueue, on a GPU) */
    APR_SPAN_D2H,             /* device-to-host copies of results */
    APR_SPAN_ENGINE_STEP,     /* one step of the engine thread */
    APR_SPAN_SCHEDULE,        /* admitting and cancelling requests, building a batch */
    APR_SPAN_DEVICE_WAIT,     /* waiting for the device to finish a pass (sync) */
    APR_SPAN_TENSOR_ALLOC,    /* a context's buffers and KV cache (apr_context_new) */
    APR_SPAN_ZRAM_COMPRESS,   /* hook for the zram pool (issue: zram KV pages) */
    APR_SPAN_ZRAM_DECOMPRESS,
    APR_SPAN_COUNT
};

#define APR_TRACE_BEGIN(id) do { if (__builtin_expect(apr_trace_active, 0)) apr_trace_begin(id); } while (0)
#define APR_TRACE_END(id) do { if (__builtin_expect(apr_trace_active, 0)) apr_trace_end(id); } while (0)

/* ---- GPU records (filled by trace/cupti.c) ---- */
enum apr_gpu_kind { APR_GPU_KERNEL = 1, APR_GPU_MEMCPY = 2, APR_GPU_MEMSET = 3 };
enum apr_gpu_copy { APR_COPY_OTHER = 0, APR_COPY_H2D = 1, APR_COPY_D2H = 2, APR_COPY_D2D = 3 };

typedef struct apr_gpu_record {
    uint64_t start, end;   /* trace clock, ns */
    uint64_t bytes;        /* copies and memsets */
    uint32_t name;         /* interned kernel name (demangled, without its parameter list) */
    uint32_t full;         /* interned full demangled name */
    uint32_t graph;        /* CUDA graph id, 0 outside graphs */
    uint32_t correlation;
    uint16_t kind;         /* apr_gpu_kind */
    uint16_t copy;         /* apr_gpu_copy */
    uint16_t device, stream;
} apr_gpu_record;

/* Appends one record (any thread); counts it as dropped when the store is full. */
void apr_trace_gpu_add(const apr_gpu_record *r);
void apr_trace_gpu_dropped(uint64_t n);

/* CUPTI (trace/cupti.c): start returns 1 when recording, else 0 with why
 * filled; stop flushes what is pending into the store. */
int apr_trace_cupti_start(char *why, size_t why_size);
void apr_trace_cupti_stop(void);

#endif
