/* device.c — finding and describing CUDA devices (apr_device_* in apr.h).
 *
 * Without a CUDA build, or on a machine without a GPU or driver, there are
 * simply no devices: cudart is linked statically and only finds the driver
 * at run time, so the same binary runs everywhere. */
#include <stdio.h>
#include <string.h>

#include "apr.h"
#include "core/error.h"

#ifdef APR_CUDA
#include <cuda_runtime_api.h>
#endif

int apr_device_count(void)
{
#ifdef APR_CUDA
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
#else
    return 0;
#endif
}

apr_status apr_device_get_info(int index, apr_device_info *out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_device_get_info: out is NULL");
    memset(out, 0, sizeof *out);
    const int n = apr_device_count();
    APR_CHECK(index >= 0 && index < n, APR_ERR_RANGE, "no CUDA device %d (%d present)", index, n);
#ifdef APR_CUDA
    struct cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, index);
    size_t free_b = 0, total_b = 0;
    if (e == cudaSuccess) e = cudaSetDevice(index);
    if (e == cudaSuccess) e = cudaMemGetInfo(&free_b, &total_b);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return apr_error(APR_ERR_DEVICE, "CUDA device %d: %s", index, cudaGetErrorString(e));
    }
    snprintf(out->name, sizeof out->name, "%s", p.name);
    out->index = index;
    out->cc_major = p.major;
    out->cc_minor = p.minor;
    out->n_sm = p.multiProcessorCount;
    out->total_bytes = total_b;
    out->free_bytes = free_b;
    out->l2_bytes = (uint64_t)p.l2CacheSize;
    int bus = 0, clock_khz = 0;
    cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, index);
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, index);
    /* double data rate: two transfers per clock */
    out->peak_bandwidth = 2.0 * clock_khz * 1e3 * (bus / 8.0);
    cudaDriverGetVersion(&out->driver_version);
    cudaRuntimeGetVersion(&out->runtime_version);
    out->supported = p.major >= 9;
    return APR_OK;
#else
    return apr_error(APR_ERR_DEVICE, "this build of apr has no CUDA backend");
#endif
}

/* A copy of `bytes` within device memory, timed with events: the best of
 * five after a warm-up, counting each byte read and written (as the
 * roofline counts a decode step's traffic). */
apr_status apr_device_copy_bandwidth(int index, uint64_t bytes, double *out)
{
    APR_CHECK(out && bytes >= (1u << 20), APR_ERR_INVALID, "apr_device_copy_bandwidth: bad arguments");
    *out = 0;
    const int n = apr_device_count();
    APR_CHECK(index >= 0 && index < n, APR_ERR_RANGE, "no CUDA device %d (%d present)", index, n);
#ifdef APR_CUDA
    void *a = NULL, *b = NULL;
    cudaEvent_t t0 = NULL, t1 = NULL;
    cudaError_t e = cudaSetDevice(index);
    if (e == cudaSuccess) e = cudaMalloc(&a, bytes);
    if (e == cudaSuccess) e = cudaMalloc(&b, bytes);
    if (e == cudaSuccess) e = cudaMemset(a, 1, bytes);
    if (e == cudaSuccess) e = cudaEventCreate(&t0);
    if (e == cudaSuccess) e = cudaEventCreate(&t1);
    float best = 0;
    for (int i = 0; i < 6 && e == cudaSuccess; i++) {
        cudaEventRecord(t0, 0);
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0);
        cudaEventRecord(t1, 0);
        e = cudaEventSynchronize(t1);
        float ms = 0;
        if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, t0, t1);
        if (i > 0 && (best == 0 || ms < best)) best = ms;
    }
    if (t0) cudaEventDestroy(t0);
    if (t1) cudaEventDestroy(t1);
    cudaFree(a);
    cudaFree(b);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return apr_error(APR_ERR_DEVICE, "CUDA device %d: measuring copy bandwidth: %s", index, cudaGetErrorString(e));
    }
    *out = 2.0 * (double)bytes / (best * 1e-3);
    return APR_OK;
#else
    return apr_error(APR_ERR_DEVICE, "this build of apr has no CUDA backend");
#endif
}
