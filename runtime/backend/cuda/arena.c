/* arena.c — the weights packed end to end in one growing range of device
 * memory.
 *
 * cudaMalloc hands out large blocks in 2 MiB pages, so each of a 32B
 * model's 448 matrices wasted about 1 MiB: 478 MiB measured on the H100
 * (the device memory taken by loading was 18,986 MiB for 18,508 MiB of
 * weights). Here a virtual range the size of the device is reserved once,
 * physical memory is mapped onto its end in chunks as tensors arrive, and
 * the tensors follow one another at 256-byte alignment: what is wasted is
 * at most the last chunk's unused part. The driver's virtual memory API
 * (cuMemCreate, cuMemMap) is reached through the runtime's entry-point
 * lookup, so nothing links against libcuda. Where it is missing, the
 * backend falls back to one cudaMalloc per tensor. */
#include "backend/cuda/cuda.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#ifdef APR_CUDA

#include <cuda.h>

#define ARENA_CHUNK ((size_t)32 << 20)

static struct {
    int loaded;
    CUresult (*reserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
    CUresult (*address_free)(CUdeviceptr, size_t);
    CUresult (*create)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long);
    CUresult (*release)(CUmemGenericAllocationHandle);
    CUresult (*map)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
    CUresult (*unmap)(CUdeviceptr, size_t);
    CUresult (*set_access)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
    CUresult (*granularity)(size_t *, const CUmemAllocationProp *, CUmemAllocationGranularity_flags);
} vmm;

static int load_vmm(void)
{
    if (vmm.loaded) return vmm.loaded > 0;
    struct { const char *name; void **fn; } syms[] = {
        { "cuMemAddressReserve", (void **)&vmm.reserve }, { "cuMemAddressFree", (void **)&vmm.address_free },
        { "cuMemCreate", (void **)&vmm.create },          { "cuMemRelease", (void **)&vmm.release },
        { "cuMemMap", (void **)&vmm.map },                { "cuMemUnmap", (void **)&vmm.unmap },
        { "cuMemSetAccess", (void **)&vmm.set_access },   { "cuMemGetAllocationGranularity", (void **)&vmm.granularity },
    };
    vmm.loaded = 1;
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        enum cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion(syms[i].name, syms[i].fn, 12000, cudaEnableDefault, &q) != cudaSuccess ||
            q != cudaDriverEntryPointSuccess || !*syms[i].fn) {
            cudaGetLastError();
            vmm.loaded = -1;
        }
    }
    return vmm.loaded > 0;
}

static CUmemAllocationProp device_prop(int dev)
{
    CUmemAllocationProp p;
    memset(&p, 0, sizeof p);
    p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    p.location.id = dev;
    return p;
}

int apr_cuda_arena_init(cuda_arena *a, int dev, size_t reserve)
{
    memset(a, 0, sizeof *a);
    a->dev = dev;
    if (!load_vmm()) return 0;
    CUmemAllocationProp p = device_prop(dev);
    if (vmm.granularity(&a->gran, &p, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED) != CUDA_SUCCESS || !a->gran) return 0;
    a->reserved = (reserve + a->gran - 1) / a->gran * a->gran;
    if (vmm.reserve(&a->base, a->reserved, a->gran, 0, 0) != CUDA_SUCCESS) {
        a->reserved = 0;
        return 0;
    }
    return 1;
}

/* Maps at least `need` more bytes at the end of the mapped part. */
static int grow(cuda_backend *b, cuda_arena *a, size_t need)
{
    size_t chunk = need > ARENA_CHUNK ? need : ARENA_CHUNK;
    chunk = (chunk + a->gran - 1) / a->gran * a->gran;
    if (a->mapped + chunk > a->reserved) return 0;
    if (b->budget && b->base.bytes + chunk > b->budget) {
        apr_error(APR_ERR_NOMEM, "the VRAM budget of %.0f MiB is exceeded: %.0f MiB are in use and %.1f MiB more are needed",
                  (double)b->budget / (1 << 20), (double)b->base.bytes / (1 << 20), (double)chunk / (1 << 20));
        return -1;
    }
    if (a->n_h == a->cap_h) {
        int cap = a->cap_h ? 2 * a->cap_h : 64;
        CUmemGenericAllocationHandle *h = realloc(a->h, sizeof *h * (size_t)cap);
        size_t *sz = realloc(a->h_size, sizeof *sz * (size_t)cap);
        if (h) a->h = h;
        if (sz) a->h_size = sz;
        if (!h || !sz) return 0;
        a->cap_h = cap;
    }
    CUmemAllocationProp p = device_prop(a->dev);
    CUmemGenericAllocationHandle h;
    if (vmm.create(&h, chunk, &p, 0) != CUDA_SUCCESS) return 0;
    CUmemAccessDesc access = { .location = p.location, .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE };
    if (vmm.map(a->base + a->mapped, chunk, 0, h, 0) != CUDA_SUCCESS) {
        vmm.release(h);
        return 0;
    }
    if (vmm.set_access(a->base + a->mapped, chunk, &access, 1) != CUDA_SUCCESS) {
        vmm.unmap(a->base + a->mapped, chunk);
        vmm.release(h);
        return 0;
    }
    a->h[a->n_h] = h;
    a->h_size[a->n_h++] = chunk;
    a->mapped += chunk;
    b->base.bytes += chunk;
    return 1;
}

void *apr_cuda_arena_alloc(cuda_backend *b, cuda_arena *a, size_t bytes)
{
    if (!a->reserved) return NULL;
    size_t at = (a->used + 255) & ~(size_t)255;
    if (at + bytes > a->mapped) {
        int g = grow(b, a, at + bytes - a->mapped);
        if (g < 0) return NULL;      /* over budget: message set */
        if (g == 0) {                /* the driver said no: plain allocations from now on */
            apr_error(APR_ERR_NOMEM, "CUDA: cannot map %.1f MiB more device memory", (double)bytes / (1 << 20));
            return NULL;
        }
    }
    a->used = at + bytes;
    return (void *)(uintptr_t)(a->base + at);
}

void apr_cuda_arena_release(cuda_backend *b, cuda_arena *a)
{
    if (!a->reserved) return;
    size_t off = 0;
    for (int i = 0; i < a->n_h; i++) {
        vmm.unmap(a->base + off, a->h_size[i]);
        vmm.release(a->h[i]);
        off += a->h_size[i];
        b->base.bytes -= a->h_size[i];
    }
    vmm.address_free(a->base, a->reserved);
    free(a->h);
    free(a->h_size);
    memset(a, 0, sizeof *a);
}

#endif /* APR_CUDA */
