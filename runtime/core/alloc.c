/* alloc.c — memory for tensors that Lua owns (apr.tensor.new, :to()).
 *
 * Aligned to 64 bytes for the SIMD kernels and zeroed, so a fresh tensor
 * reads as zeros. It is plain aligned_alloc memory: apr_free (free)
 * releases it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void *apr_alloc(size_t nbytes)
{
    APR_CHECK_NULL(nbytes > 0 && nbytes <= SIZE_MAX - 63, APR_ERR_NOMEM, "cannot allocate %zu bytes", nbytes);
    /* aligned_alloc wants a multiple of the alignment */
    void *p = aligned_alloc(64, (nbytes + 63) & ~(size_t)63);
    APR_CHECK_NULL(p, APR_ERR_NOMEM, "out of memory allocating %zu bytes", nbytes);
    memset(p, 0, nbytes);
    return p;
}
