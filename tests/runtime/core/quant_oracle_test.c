/* quant_oracle_test.c — quant.c against the gguf Python package.
 *
 * Random blocks of every type are written to a temporary folder, the oracle
 * (quant_oracle.py, run with the interpreter of the venv `make deps` makes
 * in .cache/pyenv) dequantizes them with gguf.quants, and every float must
 * match ours bit for bit (NaN matching NaN). The types gguf can quantize are
 * compared byte for byte the same way. gguf has no quantizer for the K
 * formats: quantize_test.c checks those against error bounds, and their
 * algorithm was compared with llama.cpp's reference (see its comment). */
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "apr.h"
#include "core/quant.h"

#define ORACLE_PYTHON ".cache/pyenv/bin/python"
#define ORACLE_SCRIPT "tests/runtime/core/quant_oracle.py"

static uint64_t rng_state;
static uint64_t next_u64(void)   /* xorshift64*: seeded per test */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/* A finite half of moderate size (2^-14 .. 2^5), either sign. */
static apr_f16 random_scale(void)
{
    uint64_t r = next_u64();
    uint16_t exponent = (uint16_t)(1 + r % 20);
    return (apr_f16)(((r >> 8) & 1) << 15 | exponent << 10 | ((r >> 16) & 0x3ff));
}

/* Offsets of the half-precision scale fields, as in quant.c's table. */
static int scale_offsets(int dtype, int *off)
{
    switch (dtype) {
    case APR_Q4_0: case APR_Q5_0: case APR_Q8_0: off[0] = 0; return 1;
    case APR_Q4_1: case APR_Q5_1: off[0] = 0; off[1] = 2; return 2;
    case APR_Q2_K: off[0] = 80; off[1] = 82; return 2;
    case APR_Q3_K: off[0] = 108; return 1;
    case APR_Q4_K: case APR_Q5_K: off[0] = 0; off[1] = 2; return 2;
    case APR_Q6_K: off[0] = 208; return 1;
    default: return 0;
    }
}

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static int same_float(float a, float b)
{
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, 4) == 0;
}

static int run_oracle(const char *dir)
{
    if (access(ORACLE_PYTHON, X_OK) != 0) {
        test_fail(__FILE__, __LINE__, "the gguf oracle is missing (%s): run `make deps`", ORACLE_PYTHON);
        return 0;
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s %s %s", ORACLE_PYTHON, ORACLE_SCRIPT, dir);
    int rc = system(cmd);
    if (rc != 0) test_fail(__FILE__, __LINE__, "%s failed (status %d); `make deps` installs gguf", cmd, rc);
    return rc == 0;
}

static const int dequant_types[] = {
    APR_F32, APR_F16, APR_BF16, APR_Q4_0, APR_Q4_1, APR_Q5_0, APR_Q5_1, APR_Q8_0,
    APR_Q2_K, APR_Q3_K, APR_Q4_K, APR_Q5_K, APR_Q6_K,
};
#define N_DEQUANT (int)(sizeof dequant_types / sizeof *dequant_types)
#define FINITE_BLOCKS 3000   /* scales finite: every value must agree */
#define RAW_BLOCKS 500       /* raw random bytes: NaN and Inf included */

/* For the plain float types "finite scales" means finite values. */
static void make_finite_plain(int dtype, uint8_t *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (dtype == APR_F32) {
            float v = ldexpf((float)(int64_t)(next_u64() >> 40) - 8388608.0f, (int)(next_u64() % 40) - 40);
            memcpy(p + 4 * i, &v, 4);
        } else if (dtype == APR_F16) {
            apr_f16 h = random_scale();
            memcpy(p + 2 * i, &h, 2);
        } else {
            apr_bf16 h = (apr_bf16)(next_u64() & 0xffff);
            if ((h & 0x7f80) == 0x7f80) h &= 0xbfff;   /* clear an exponent bit: finite */
            memcpy(p + 2 * i, &h, 2);
        }
    }
}

TEST(quant_dequantize_matches_gguf_bit_for_bit)
{
    char dir[] = "/tmp/apr-quant-oracle-XXXXXX";
    REQUIRE(mkdtemp(dir));
    rng_state = 0x5eed0001;
    uint8_t *blocks[N_DEQUANT];
    int64_t counts[N_DEQUANT];
    for (int t = 0; t < N_DEQUANT; t++) {
        int dtype = dequant_types[t];
        int64_t bb = apr_dtype_block_bytes(dtype), bs = apr_dtype_block_size(dtype);
        /* plain types: as many elements as a Q8_0 test has values */
        int64_t n_blocks = (bs == 1 ? 32 : 1) * (FINITE_BLOCKS + RAW_BLOCKS);
        counts[t] = n_blocks * bs;
        blocks[t] = malloc((size_t)(n_blocks * bb));
        REQUIRE(blocks[t]);
        for (int64_t i = 0; i < n_blocks * bb; i++) blocks[t][i] = (uint8_t)next_u64();
        int64_t finite = n_blocks * FINITE_BLOCKS / (FINITE_BLOCKS + RAW_BLOCKS);
        if (bs == 1) {
            make_finite_plain(dtype, blocks[t], finite);
        } else {
            int off[2], k = scale_offsets(dtype, off);
            CHECK(k > 0);
            for (int64_t b = 0; b < finite; b++) {
                for (int j = 0; j < k; j++) {
                    apr_f16 h = random_scale();
                    memcpy(blocks[t] + b * bb + off[j], &h, 2);
                }
            }
        }
        char path[256];
        snprintf(path, sizeof path, "%s/deq_%s.bin", dir, apr_dtype_name(dtype));
        REQUIRE(write_file(path, blocks[t], (size_t)(n_blocks * bb)));
    }
    if (!run_oracle(dir)) goto done;

    for (int t = 0; t < N_DEQUANT; t++) {
        int dtype = dequant_types[t];
        char path[256];
        snprintf(path, sizeof path, "%s/deq_%s.out", dir, apr_dtype_name(dtype));
        size_t n_bytes = 0;
        float *want = test_read_file(path, &n_bytes);
        float *got = malloc((size_t)counts[t] * 4);
        REQUIRE(got);
        if (!want || n_bytes != (size_t)counts[t] * 4) {
            test_fail(__FILE__, __LINE__, "%s: oracle gave %zu bytes, wanted %lld", apr_dtype_name(dtype), n_bytes,
                      (long long)counts[t] * 4);
        } else {
            CHECK_EQ_INT(apr_dequantize(dtype, blocks[t], got, counts[t]), APR_OK);
            int64_t wrong = 0, first = -1, nans = 0;
            for (int64_t i = 0; i < counts[t]; i++) {
                nans += isnan(want[i]);
                if (!same_float(got[i], want[i])) {
                    if (first < 0) first = i;
                    wrong++;
                }
            }
            if (wrong)
                test_fail(__FILE__, __LINE__, "%s: %lld of %lld values differ from gguf; first at %lld: %.9g vs %.9g",
                          apr_dtype_name(dtype), (long long)wrong, (long long)counts[t], (long long)first,
                          got[first], want[first]);
            /* the raw blocks must really have exercised NaN */
            CHECK(nans > 0);
        }
        free(want);
        free(got);
    }
done:
    for (int t = 0; t < N_DEQUANT; t++) free(blocks[t]);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* The gguf package quantizes these with llama.cpp's reference rules. */
static const int quant_types[] = { APR_F16, APR_BF16, APR_Q4_0, APR_Q4_1, APR_Q5_0, APR_Q5_1, APR_Q8_0 };
#define N_QUANT (int)(sizeof quant_types / sizeof *quant_types)
#define QUANT_N (256 * 96)

/* Inputs with different shapes: gaussian-like, all positive, some blocks
 * constant or zero, and heavy tails. */
static void make_inputs(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double u = ((double)(next_u64() >> 11) + 0.5) * 0x1.0p-53, v = (double)(next_u64() >> 11) * 0x1.0p-53;
        float g = (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
        switch ((i / 256) % 5) {
        case 0: x[i] = g; break;
        case 1: x[i] = g * 1e-3f + 0.01f; break;
        case 2: x[i] = (i / 32) % 3 == 0 ? 0.0f : (float)(next_u64() % 7) - 2.0f; break;
        case 3: x[i] = g * g * g * 30.0f; break;
        default: x[i] = (i / 32) % 2 ? 0.25f : -3.5f; break;
        }
    }
}

TEST(quant_quantize_matches_gguf_byte_for_byte)
{
    char dir[] = "/tmp/apr-quant-oracle-XXXXXX";
    REQUIRE(mkdtemp(dir));
    rng_state = 0x5eed0002;
    float *x = malloc(QUANT_N * sizeof *x);
    REQUIRE(x);
    make_inputs(x, QUANT_N);
    for (int t = 0; t < N_QUANT; t++) {
        char path[256];
        snprintf(path, sizeof path, "%s/q_%s.f32", dir, apr_dtype_name(quant_types[t]));
        REQUIRE(write_file(path, x, QUANT_N * sizeof *x));
    }
    if (run_oracle(dir)) {
        for (int t = 0; t < N_QUANT; t++) {
            int dtype = quant_types[t];
            uint64_t nbytes = 0;
            CHECK_EQ_INT(apr_dtype_nbytes(dtype, QUANT_N, &nbytes), APR_OK);
            uint8_t *got = malloc(nbytes);
            REQUIRE(got);
            CHECK_EQ_INT(apr_quantize(dtype, x, got, QUANT_N), APR_OK);
            char path[256];
            snprintf(path, sizeof path, "%s/q_%s.out", dir, apr_dtype_name(dtype));
            size_t n = 0;
            uint8_t *want = test_read_file(path, &n);
            if (!want || n != nbytes) {
                test_fail(__FILE__, __LINE__, "%s: oracle gave %zu bytes, wanted %llu", apr_dtype_name(dtype), n,
                          (unsigned long long)nbytes);
            } else {
                int64_t bb = apr_dtype_block_bytes(dtype), wrong = 0, first = -1;
                for (uint64_t b = 0; b < nbytes / (uint64_t)bb; b++) {
                    if (memcmp(got + b * bb, want + b * bb, (size_t)bb) != 0) {
                        if (first < 0) first = (int64_t)b;
                        wrong++;
                    }
                }
                if (wrong)
                    test_fail(__FILE__, __LINE__, "%s: %lld blocks differ from gguf, the first is block %lld",
                              apr_dtype_name(dtype), (long long)wrong, (long long)first);
            }
            free(want);
            free(got);
        }
    }
    free(x);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}
