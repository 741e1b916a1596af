/* qmat.cuh — how weights and activations are laid out on the GPU (C and CUDA).
 *
 * Weights keep their GGUF block formats (same bytes per weight, never
 * expanded to f16), but are repacked at upload (kernels/repack.cu) so that
 * every format reads as "units": a unit is 32 weights of one row, 16 at
 * columns 64c+16h+i (run A) and 16 at 64c+32+16h+i (run B), i = 0..15, for
 * chunk c and half h; unit number u = 2c+h. That is Q4_K's own order (a
 * 16-byte slice of its quants holds exactly one unit), so Q4_K and Q5_K stay
 * as stored and the others are rearranged to match. One thread decodes one
 * unit from 16-byte loads, in the decode matrix-vector kernels and in the
 * prefill matrix kernels alike.
 *
 * Per format, the arrays of a matrix of `rows` x `cols` (cols % 64 == 0):
 *   Q4_K, Q5_K  q: the GGUF blocks unchanged, row after row.
 *   Q6_K        q: [rows][cols/2] low nibbles, unit u at 16u (byte i: run A
 *               element i in the low nibble, run B element i in the high);
 *               qh: [rows][cols/4] high 2-bit pairs, unit u at 8u (see
 *               repack.cu); sc: [rows][cols/16] int8 (GGUF's, one per 16
 *               columns); d: [rows][cols/256] f16.
 *   Q8_0        q: [rows][cols] int8, unit u at 32u (run A, then run B);
 *               d: [rows][cols/32] f16.
 *   Q4_0, Q4_1  q: nibbles as Q6_K's; d (and m for Q4_1): [rows][cols/32] f16.
 *   Q5_0, Q5_1  as Q4_0/Q4_1 plus qh: [rows][cols/8], unit u at 4u (bit i:
 *               run A element i's fifth bit, bit 16+i: run B's).
 *   F16, BF16, F32  q: the row-major matrix unchanged.
 *
 * Activations for the decode kernels are quantized to int8 per block of 32
 * or 256 columns (apr_cuda_q8 below), in the same unit order; the unit
 * scales make the kernels indifferent to which. */
#ifndef APR_KERNELS_QMAT_CUH
#define APR_KERNELS_QMAT_CUH

#include <stddef.h>
#include <stdint.h>

#include "apr.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct apr_cuda_qmat {
    int dtype;            /* apr_dtype of the weights */
    int rows, cols;       /* output features, input features (cols % 64 == 0) */
    const uint8_t *q;     /* main quant bytes, or the plain matrix */
    const uint8_t *qh;    /* high bits (Q6_K, Q5_0, Q5_1), else NULL */
    const int8_t *sc;     /* Q6_K sub-block scales, else NULL */
    const uint16_t *d;    /* f16 block scales (all but Q4_K/Q5_K/plain) */
    const uint16_t *m;    /* f16 block mins (Q4_1, Q5_1) */
} apr_cuda_qmat;

/* Activations of n tokens quantized for the decode kernels: q holds
 * [n][cols] int8 in unit order (unit u at 32u: run A then run B), meta
 * holds [n][cols/32] float4 {scale of run A's block of 32, sum of run A's 16
 * dequantized values, scale of run B's block, sum of run B's values}; a
 * token's row starts at q + t*cols and meta + t*cols/32. */
typedef struct apr_cuda_q8 {
    int8_t *q;
    float *meta;          /* float4 per unit, 16-byte aligned */
    int cols;
    int block;            /* columns per scale: 32 (llama.cpp's q8_1) or 256 (q8_K) */
} apr_cuda_q8;

/* f16 activations for the tensor-core decode kernels (gemv_mma.cu) may be
 * laid out in "fragment order", so that each 16-byte load of a warp lands
 * next to its neighbours' (four L1 wavefronts for 512 bytes, not sixteen):
 * tokens in groups of 8, columns in half-steps of 128 (4 units), and within
 * them quarter j (run A elements 0-7, 8-15, run B 0-7, 8-15), token g of
 * the group, unit i of the half-step, element e:
 *     ((((t/8 * cols/128 + h) * 4 + j) * 8 + t%8) * 4 + i) * 8 + e
 * (cols % 128 == 0). */
#define APR_CUDA_XFRAG_TOKENS 8

/* Bytes of each array of a repacked matrix (0 where the format has none). */
typedef struct apr_cuda_qmat_sizes {
    size_t q, qh, sc, d, m;
} apr_cuda_qmat_sizes;

/* 1 if the kernels handle weights of this dtype (and cols % 64 == 0 and,
 * for the K formats, cols % 256 == 0); sizes filled when so. */
int apr_cuda_qmat_layout(int dtype, int64_t rows, int64_t cols, apr_cuda_qmat_sizes *out);

#ifdef __cplusplus
}
#endif

#endif
