/* gemm_vnni.c — the x86 kernels (gemm_x86.inc) for AVX-512 VNNI on 256-bit
 * vectors (Ice Lake, Sapphire Rapids, Zen 4 and later): vpdpbusd, mask
 * registers, 32 vector registers. llama.cpp's native build uses the same
 * instructions on such CPUs. */
#include "cpu.h"

#if defined(__x86_64__) || defined(__i386__)

#include "simd.h"

#define VNNI_TARGET "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni"
#define KATTR __attribute__((target(VNNI_TARGET)))
#define KINLINE static inline __attribute__((target(VNNI_TARGET), always_inline))
#define HAS_VNNI 1
#define GEMM_TABLE apr_cpu_gemm_vnni
#define QUANTIZE apr_cpu_quantize_vnni
#include "gemm_x86.inc"

#else  /* not x86 */

cpu_gemm_fn apr_cpu_gemm_vnni(int dtype) { (void)dtype; return NULL; }
void apr_cpu_quantize_vnni(cpu_act *a, int t0, int t1) { apr_cpu_quantize_scalar(a, t0, t1); }

#endif
