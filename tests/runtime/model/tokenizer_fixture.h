/* tokenizer_fixture.h — tokenizers the tokenizer tests share (test support).
 *
 * The real one is Qwen2's 151,936-token vocabulary
 * (tests/fixtures/tokenizer/ggml-vocab-qwen2.gguf.zst), loaded once per
 * process. Small ones are GGUF images built in memory: GPT-2's 256 byte
 * tokens (ids 0..255, in byte order) followed by the tokens and merges a
 * test names, so each test states the whole vocabulary it relies on. */
#ifndef APR_TEST_TOKENIZER_FIXTURE_H
#define APR_TEST_TOKENIZER_FIXTURE_H

#include "apr.h"

/* The Qwen2 tokenizer, or NULL when the fixture is missing (the caller
 * SKIPs). Lives until the process ends. */
const apr_tokenizer *fixture_qwen2(void);

/* The 46 strings of ggml-vocab-qwen2.gguf.inp and their ids (.out). */
typedef struct fixture_vector {
    const char *text;
    size_t len;
    int32_t ids[256];
    size_t n_ids;
} fixture_vector;
/* Reads them; returns the count, 0 if the files are missing. */
size_t fixture_qwen2_vectors(const fixture_vector **out);

/* A small vocabulary. Omitted fields leave the key out of the file, except
 * model ("gpt2") and pre ("qwen2"); "-" writes no key at all for those. */
typedef struct fixture_vocab {
    const char *model, *pre;
    const char *const *extra;     /* tokens after the 256 byte tokens (ids 256...) */
    const int *extra_types;       /* their apr_token_type (NULL: all normal) */
    int n_extra;
    const char *const *merges;    /* "LEFT RIGHT" in vocabulary spelling */
    int n_merges;
    int64_t bos, eos, eot;        /* -1: no key */
    int add_bos;                  /* -1: no key */
    int drop_byte;                /* a byte whose token is left out (-1: none) */
    int no_merges_key;
} fixture_vocab;

/* The defaults above (no specials, no keys). */
fixture_vocab fixture_vocab_default(void);
/* Builds the GGUF image and the tokenizer from it. On failure returns the
 * status of apr_tokenizer_from_source (message in apr_last_error()). */
apr_status fixture_tokenizer(const fixture_vocab *v, apr_tokenizer **out);

/* The vocabulary spelling of bytes (GPT-2's map), for writing merges:
 * fixture_spell(" hi") == "Ġhi". Returns a static buffer. */
const char *fixture_spell(const char *bytes);
const char *fixture_spell_n(const char *bytes, size_t len);   /* NUL bytes too */

/* Writes a seeded random, valid UTF-8 string of about `budget` bytes (at
 * most cap - 1, NUL-terminated) and returns its length: words, code, white
 * space runs, digits of several scripts, CJK, Cyrillic, emoji (with ZWJ and
 * modifiers), combining marks, contractions and special-token lookalikes. */
size_t fixture_random_text(uint64_t *rng, char *out, size_t cap, size_t budget);
uint64_t fixture_rand(uint64_t *rng);

#endif
