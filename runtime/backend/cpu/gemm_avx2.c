/* gemm_avx2.c — the x86 kernels (gemm_x86.inc) for AVX2, FMA and F16C. */
#include "cpu.h"

#if defined(__x86_64__) || defined(__i386__)

#include "simd.h"

#define KATTR __attribute__((target("avx2,fma,f16c")))
#define KINLINE static inline __attribute__((target("avx2,fma,f16c"), always_inline))
#define HAS_VNNI 0
#define GEMM_TABLE apr_cpu_gemm_avx2
#define QUANTIZE apr_cpu_quantize_avx2
#include "gemm_x86.inc"

#else  /* not x86 */

cpu_gemm_fn apr_cpu_gemm_avx2(int dtype) { (void)dtype; return NULL; }
size_t apr_cpu_gemm_scratch_bytes(int64_t K) { return (size_t)K; }
void apr_cpu_quantize_avx2(cpu_act *a, int t0, int t1) { apr_cpu_quantize_scalar(a, t0, t1); }

#endif
