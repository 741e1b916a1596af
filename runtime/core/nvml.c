/* nvml.c — GPU utilization, clocks, temperature and per-process memory
 * through NVML (apr_nvml_* in apr.h), for `apr bench`'s sampler.
 *
 * NVML ships with the NVIDIA driver as libnvidia-ml.so.1 and is loaded with
 * dlopen, so neither the build nor the binary needs the CUDA toolkit or a
 * GPU: without one, apr_nvml_init says why and the benchmark reports GPU
 * figures as unavailable. The few NVML declarations used are written out
 * below from NVIDIA's public API reference (nvml.h is not installed without
 * the toolkit); every entry point is looked up by name and a missing one
 * only costs its figure.
 *
 * Process memory uses nvmlDeviceGetComputeRunningProcesses_v2, whose
 * record layout is stable across drivers (the _v3 record grew a field in
 * one CUDA release and shrank back in the next), and falls back to the
 * unversioned call of older drivers. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apr.h"
#include "core/error.h"

/* ------------------------------------------------------------ NVML's API */

typedef int nvml_return;        /* nvmlReturn_t: 0 success */
typedef void *nvml_device;      /* nvmlDevice_t */
enum { NVML_SUCCESS = 0, NVML_ERROR_INSUFFICIENT_SIZE = 7 };
enum { NVML_CLOCK_SM = 1, NVML_CLOCK_MEM = 2 };
enum { NVML_TEMPERATURE_GPU = 0 };

typedef struct { unsigned int gpu, memory; } nvml_utilization;
typedef struct { unsigned long long total, free, used; } nvml_memory;
typedef struct { unsigned int pid; unsigned long long used; } nvml_process_v1;
typedef struct { unsigned int pid; unsigned long long used; unsigned int gi, ci; } nvml_process_v2;

static struct {
    pthread_mutex_t lock;
    int ready;
    void *lib;
    nvml_return (*init)(void);
    const char *(*error_string)(nvml_return);
    nvml_return (*count)(unsigned int *);
    nvml_return (*handle)(unsigned int, nvml_device *);
    nvml_return (*name)(nvml_device, char *, unsigned int);
    nvml_return (*uuid)(nvml_device, char *, unsigned int);
    nvml_return (*driver)(char *, unsigned int);
    nvml_return (*cuda)(int *);
    nvml_return (*utilization)(nvml_device, nvml_utilization *);
    nvml_return (*clock)(nvml_device, int, unsigned int *);
    nvml_return (*max_clock)(nvml_device, int, unsigned int *);
    nvml_return (*temperature)(nvml_device, int, unsigned int *);
    nvml_return (*power)(nvml_device, unsigned int *);
    nvml_return (*memory)(nvml_device, nvml_memory *);
    nvml_return (*throttle)(nvml_device, unsigned long long *);
    nvml_return (*procs_v2)(nvml_device, unsigned int *, nvml_process_v2 *);
    nvml_return (*procs_v1)(nvml_device, unsigned int *, nvml_process_v1 *);
} nv = { .lock = PTHREAD_MUTEX_INITIALIZER };

static const char *why(nvml_return r)
{
    static char buf[32];
    if (nv.error_string) return nv.error_string(r);
    snprintf(buf, sizeof buf, "NVML error %d", r);
    return buf;
}

static void *sym(const char *a, const char *b)
{
    void *p = dlsym(nv.lib, a);
    if (!p && b) p = dlsym(nv.lib, b);
    return p;
}

static apr_status load(void)
{
    const char *path = getenv("APR_NVML_LIBRARY");
    if (!path || !*path) path = "libnvidia-ml.so.1";
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) return apr_error(APR_ERR_DEVICE, "NVML unavailable: %s", dlerror());
    nv.lib = lib;
    *(void **)&nv.init = sym("nvmlInit_v2", "nvmlInit");
    *(void **)&nv.error_string = sym("nvmlErrorString", NULL);
    *(void **)&nv.count = sym("nvmlDeviceGetCount_v2", "nvmlDeviceGetCount");
    *(void **)&nv.handle = sym("nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex");
    *(void **)&nv.name = sym("nvmlDeviceGetName", NULL);
    *(void **)&nv.uuid = sym("nvmlDeviceGetUUID", NULL);
    *(void **)&nv.driver = sym("nvmlSystemGetDriverVersion", NULL);
    *(void **)&nv.cuda = sym("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion");
    *(void **)&nv.utilization = sym("nvmlDeviceGetUtilizationRates", NULL);
    *(void **)&nv.clock = sym("nvmlDeviceGetClockInfo", NULL);
    *(void **)&nv.max_clock = sym("nvmlDeviceGetMaxClockInfo", NULL);
    *(void **)&nv.temperature = sym("nvmlDeviceGetTemperature", NULL);
    *(void **)&nv.power = sym("nvmlDeviceGetPowerUsage", NULL);
    *(void **)&nv.memory = sym("nvmlDeviceGetMemoryInfo", NULL);
    *(void **)&nv.throttle = sym("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons");
    *(void **)&nv.procs_v2 = sym("nvmlDeviceGetComputeRunningProcesses_v2", NULL);
    *(void **)&nv.procs_v1 = sym("nvmlDeviceGetComputeRunningProcesses", NULL);
    if (!nv.init || !nv.count || !nv.handle) {
        dlclose(lib);
        nv.lib = NULL;
        return apr_error(APR_ERR_DEVICE, "NVML unavailable: %s lacks nvmlInit/nvmlDeviceGetCount", path);
    }
    nvml_return r = nv.init();
    if (r != NVML_SUCCESS) {
        apr_status s = apr_error(APR_ERR_DEVICE, "NVML unavailable: nvmlInit failed: %s", why(r));
        dlclose(lib);
        nv.lib = NULL;
        return s;
    }
    return APR_OK;
}

apr_status apr_nvml_init(void)
{
    pthread_mutex_lock(&nv.lock);
    apr_status s = APR_OK;
    if (!nv.ready) {
        s = load();
        nv.ready = s == APR_OK;
    }
    pthread_mutex_unlock(&nv.lock);
    return s;
}

int apr_nvml_device_count(void)
{
    unsigned int n = 0;
    if (!nv.ready || nv.count(&n) != NVML_SUCCESS) return 0;
    return (int)n;
}

static apr_status device(int index, nvml_device *dev)
{
    APR_CHECK(nv.ready, APR_ERR_DEVICE, "NVML is not initialized (apr_nvml_init)");
    APR_CHECK(index >= 0 && index < apr_nvml_device_count(), APR_ERR_RANGE,
              "no GPU %d (NVML sees %d)", index, apr_nvml_device_count());
    nvml_return r = nv.handle((unsigned int)index, dev);
    APR_CHECK(r == NVML_SUCCESS, APR_ERR_DEVICE, "NVML: GPU %d: %s", index, why(r));
    return APR_OK;
}

/* ------------------------------------------------------------ queries */

apr_status apr_nvml_device_info(int index, apr_gpu_info *out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_nvml_device_info: out is NULL");
    memset(out, 0, sizeof *out);
    out->cuda_driver_version = out->sm_clock_max_mhz = -1;
    nvml_device dev;
    APR_TRY(device(index, &dev));
    if (nv.name) nv.name(dev, out->name, sizeof out->name);
    if (nv.uuid) nv.uuid(dev, out->uuid, sizeof out->uuid);
    if (nv.driver) nv.driver(out->driver_version, sizeof out->driver_version);
    int cuda;
    if (nv.cuda && nv.cuda(&cuda) == NVML_SUCCESS) out->cuda_driver_version = cuda;
    nvml_memory m;
    if (nv.memory && nv.memory(dev, &m) == NVML_SUCCESS) out->memory_total_bytes = m.total;
    unsigned int v;
    if (nv.max_clock && nv.max_clock(dev, NVML_CLOCK_SM, &v) == NVML_SUCCESS) out->sm_clock_max_mhz = (int)v;
    return APR_OK;
}

apr_status apr_nvml_sample(int index, apr_gpu_sample *out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_nvml_sample: out is NULL");
    out->utilization_pct = out->memory_utilization_pct = out->sm_clock_mhz = out->memory_clock_mhz = -1;
    out->temperature_c = out->power_mw = -1;
    out->memory_used_bytes = 0;
    out->throttle_reasons = 0;
    nvml_device dev;
    APR_TRY(device(index, &dev));
    nvml_utilization u;
    if (nv.utilization && nv.utilization(dev, &u) == NVML_SUCCESS) {
        out->utilization_pct = (int)u.gpu;
        out->memory_utilization_pct = (int)u.memory;
    }
    unsigned int v;
    if (nv.clock && nv.clock(dev, NVML_CLOCK_SM, &v) == NVML_SUCCESS) out->sm_clock_mhz = (int)v;
    if (nv.clock && nv.clock(dev, NVML_CLOCK_MEM, &v) == NVML_SUCCESS) out->memory_clock_mhz = (int)v;
    if (nv.temperature && nv.temperature(dev, NVML_TEMPERATURE_GPU, &v) == NVML_SUCCESS) out->temperature_c = (int)v;
    if (nv.power && nv.power(dev, &v) == NVML_SUCCESS) out->power_mw = (int)v;
    nvml_memory m;
    if (nv.memory && nv.memory(dev, &m) == NVML_SUCCESS) out->memory_used_bytes = m.used;
    unsigned long long reasons;
    if (nv.throttle && nv.throttle(dev, &reasons) == NVML_SUCCESS) out->throttle_reasons = reasons;
    return APR_OK;
}

apr_status apr_nvml_processes(int index, uint32_t *pids, int64_t *bytes, int cap, int *n)
{
    APR_CHECK(n && cap >= 0 && (cap == 0 || (pids && bytes)), APR_ERR_INVALID,
              "apr_nvml_processes: bad arguments");
    *n = 0;
    nvml_device dev;
    APR_TRY(device(index, &dev));
    APR_CHECK(nv.procs_v2 || nv.procs_v1, APR_ERR_UNSUPPORTED, "NVML has no process list on this driver");
    /* Asked with room for 64 first; NVML says how many there are when it
     * is short, and the list can grow between the two calls. */
    for (unsigned int room = 64; room <= 65536; room *= 4) {
        unsigned int count = room;
        nvml_return r;
        void *list = calloc(room, nv.procs_v2 ? sizeof(nvml_process_v2) : sizeof(nvml_process_v1));
        APR_CHECK(list, APR_ERR_NOMEM, "apr_nvml_processes: out of memory");
        r = nv.procs_v2 ? nv.procs_v2(dev, &count, list) : nv.procs_v1(dev, &count, list);
        if (r == NVML_ERROR_INSUFFICIENT_SIZE) { free(list); continue; }
        if (r != NVML_SUCCESS) {
            free(list);
            return apr_error(APR_ERR_DEVICE, "NVML: processes of GPU %d: %s", index, why(r));
        }
        for (unsigned int i = 0; i < count && (int)i < cap; i++) {
            unsigned long long used;
            if (nv.procs_v2) {
                pids[i] = ((nvml_process_v2 *)list)[i].pid;
                used = ((nvml_process_v2 *)list)[i].used;
            } else {
                pids[i] = ((nvml_process_v1 *)list)[i].pid;
                used = ((nvml_process_v1 *)list)[i].used;
            }
            bytes[i] = used == ~0ULL ? -1 : (int64_t)used;  /* NVML_VALUE_NOT_AVAILABLE */
        }
        *n = (int)count;
        free(list);
        return APR_OK;
    }
    return apr_error(APR_ERR_DEVICE, "NVML: processes of GPU %d: the list kept growing", index);
}
