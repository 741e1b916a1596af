/* model_fixture.h — the tiny models the model tests share (test support).
 *
 * tests/fixtures/models/tiny-*.gguf are synthetic Qwen2 models (2 layers,
 * n_embd 256, vocabulary 2048; tests/fixtures/README.md). Broken variants
 * are written to /tmp by copying one with a key or tensor left out or a
 * tensor's bytes changed. */
#ifndef APR_TEST_MODEL_FIXTURE_H
#define APR_TEST_MODEL_FIXTURE_H

#include "apr.h"

#define FIXTURE_TINY_Q8 "tests/fixtures/models/tiny-q8_0.gguf"
#define FIXTURE_TINY_Q4KM "tests/fixtures/models/tiny-q4_k_m.gguf"
#define FIXTURE_TINY_F16 "tests/fixtures/models/tiny-f16.gguf"

/* Loads path on the CPU with n_threads (0: all); NULL if it fails. */
apr_model *fixture_load(const char *path, int n_threads);
/* A context of n_ctx tokens, n_seq sequences, batches of n_batch. */
apr_context *fixture_context(apr_model *m, int n_ctx, int n_seq, int n_batch);

/* How to change a copy. */
typedef struct fixture_edit {
    const char *drop_key;          /* metadata key to leave out */
    const char *drop_tensor;       /* tensor to leave out */
    const char *rename_from;       /* keys starting with this prefix ... */
    const char *rename_to;         /* ... start with this one instead ("qwen2." -> "llama.") */
    const char *set_str_key;       /* string key to replace ... */
    const char *set_str_value;     /* ... with this value */
    const char *poke_tensor;       /* tensor whose bytes change ... */
    uint64_t poke_at;              /* ... at this byte ... */
    uint16_t poke_value;           /* ... to this 16-bit value (a NaN half: 0x7e00) */
} fixture_edit;

/* Writes an edited copy of src to dst; 0 on success. */
int fixture_copy(const char *src, const char *dst, const fixture_edit *e);

/* A temporary path for a test's file (per process, distinct per name). */
const char *fixture_tmp(const char *name);

#endif
