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
