/* tokenizer_fuzz.c — libFuzzer target for the tokenizer: random bytes are
 * tokenized (special tokens on and off) and decoded back, whole and
 * streamed; then read as token ids, in range or not.
 *
 * Besides "no crash, no leak, no out-of-bounds access" (ASan/UBSan), it
 * checks what must hold for any input:
 *  - the ids' pieces concatenate to the input bytes (byte-level BPE loses
 *    nothing), so for valid UTF-8 the decoded text equals the input;
 *  - the count is the same with a buffer too short to hold the ids;
 *  - streamed text equals the whole decode, and both are valid UTF-8;
 *  - an id out of range is refused with APR_ERR_RANGE.
 * The first input byte picks a vocabulary: Qwen2's real one (the fixture)
 * or a small one for each other pre-tokenizer, with overlapping special
 * tokens and a byte missing from the vocabulary.
 *
 * make fuzz FUZZ_SECONDS=300; seeds in tests/fuzz/seeds/tokenizer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "apr.h"
#include "model/unicode.h"

#define N_TOKENIZERS 4
#define DROPPED_BYTE 0x07   /* the small vocabularies have no token for it */
static apr_tokenizer *tokenizers[N_TOKENIZERS];
static int complete[N_TOKENIZERS];   /* every byte has a token: decode(encode(s)) == s */

static apr_tokenizer *qwen2(void)
{
    FILE *fp = fopen("tests/fixtures/tokenizer/ggml-vocab-qwen2.gguf.zst", "rb");
    if (!fp) return NULL;
    static char z[4 << 20];
    size_t zn = fread(z, 1, sizeof z, fp);
    fclose(fp);
    unsigned long long full = ZSTD_getFrameContentSize(z, zn);
    if (full == ZSTD_CONTENTSIZE_ERROR || full == ZSTD_CONTENTSIZE_UNKNOWN) return NULL;
    void *image = malloc(full);
    apr_source *f;
    apr_tokenizer *t = NULL;
    if (image && !ZSTD_isError(ZSTD_decompress(image, full, z, zn)) &&
        apr_source_open_memory(image, full, &f) == APR_OK) {
        apr_tokenizer_from_source(f, &t);
        apr_source_close(f);
    }
    free(image);
    return t;
}

/* GPT-2's byte map (bytes_to_unicode), for spelling the small vocabularies:
 * printable bytes stand for themselves, the others for U+0100 on. */
static int printable(unsigned b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

static size_t spell_byte(unsigned b, char *out)
{
    unsigned moved = 0;
    for (unsigned i = 0; i < b; i++) moved += !printable(i);
    return apr_utf8_encode(printable(b) ? b : 256 + moved, (uint8_t *)out);
}

/* 256 byte tokens (DROPPED_BYTE left out), a few merges, overlapping specials. */
static apr_tokenizer *small(const char *pre)
{
    static char bytes[256][4];
    const char *tokens[256 + 8];
    int32_t types[256 + 8];
    for (unsigned b = 0; b < 256; b++) {
        bytes[b][spell_byte(b, bytes[b])] = '\0';
        tokens[b] = b == DROPPED_BYTE ? "<dropped>" : bytes[b];
        types[b] = b == DROPPED_BYTE ? APR_TOKEN_UNUSED : APR_TOKEN_NORMAL;
    }
    static const char *const extra[] = { "<|a|>", "<|a|>b", "<t>", "\xc4\xa0t", "he", "\xc4\xa0the", "ll", "<|" };
    static const int extra_types[] = { APR_TOKEN_CONTROL, APR_TOKEN_CONTROL, APR_TOKEN_USER_DEFINED, APR_TOKEN_NORMAL,
                                       APR_TOKEN_NORMAL, APR_TOKEN_NORMAL, APR_TOKEN_NORMAL, APR_TOKEN_CONTROL };
    for (int i = 0; i < 8; i++) {
        tokens[256 + i] = extra[i];
        types[256 + i] = extra_types[i];
    }
    static const char *const merges[] = { "\xc4\xa0 t", "h e", "\xc4\xa0t he", "l l" };
    apr_gguf_writer *w;
    apr_tokenizer *t = NULL;
    void *image = NULL;
    uint64_t size;
    apr_source *f;
    if (apr_gguf_writer_new(&w) != APR_OK) return NULL;
    if (apr_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2", 4) == APR_OK &&
        apr_gguf_writer_add_str(w, "tokenizer.ggml.pre", pre, strlen(pre)) == APR_OK &&
        apr_gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", tokens, NULL, 264) == APR_OK &&
        apr_gguf_writer_add_array(w, "tokenizer.ggml.token_type", APR_GGUF_INT32, types, 264) == APR_OK &&
        apr_gguf_writer_add_str_array(w, "tokenizer.ggml.merges", merges, NULL, 4) == APR_OK &&
        apr_gguf_writer_add_int(w, "tokenizer.ggml.bos_token_id", APR_GGUF_UINT32, 256) == APR_OK &&
        apr_gguf_writer_header(w, &image, &size) == APR_OK && apr_source_open_memory(image, size, &f) == APR_OK) {
        apr_tokenizer_from_source(f, &t);
        apr_source_close(f);
    }
    apr_free(image);
    apr_gguf_writer_free(w);
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    tokenizers[0] = qwen2();
    complete[0] = 1;
    tokenizers[1] = small("llama-bpe");
    tokenizers[2] = small("gpt-2");
    tokenizers[3] = small("smollm");
    for (int i = 0; i < N_TOKENIZERS; i++)
        if (!tokenizers[i]) {
            fprintf(stderr, "tokenizer_fuzz: tokenizer %d: %s (run from the repository root)\n", i, apr_last_error());
            abort();
        }
    return 0;
}

/* Decodes ids whole and streamed; both must agree and be valid UTF-8. */
static void decode_both_ways(const apr_tokenizer *t, const int32_t *ids, size_t n, int flags, char **whole,
                             size_t *len)
{
    size_t need;
    if (apr_detokenize(t, ids, n, flags, NULL, 0, &need) != APR_OK) __builtin_trap();
    char *buf = malloc(need + 1);
    if (apr_detokenize(t, ids, n, flags, buf, need, len) != APR_OK || *len != need) __builtin_trap();
    if (!apr_utf8_valid((const uint8_t *)buf, need)) __builtin_trap();

    apr_detok *d;
    if (apr_detok_new(t, flags, &d) != APR_OK) __builtin_trap();
    size_t at = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *text;
        size_t k;
        if ((i < n ? apr_detok_push(d, ids[i], &text, &k) : apr_detok_flush(d, &text, &k)) != APR_OK) __builtin_trap();
        if (text[k] != '\0' || at + k > need || memcmp(buf + at, text, k) != 0) __builtin_trap();
        at += k;
    }
    if (at != need) __builtin_trap();
    apr_detok_free(d);
    *whole = buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const apr_tokenizer *t = tokenizers[data[0] % N_TOKENIZERS];
    int special = data[0] & 0x10 ? APR_TOKENIZE_SPECIAL : 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    /* Text to ids: never more ids than bytes; the same count when short. */
    int32_t *ids = malloc((len + 1) * sizeof *ids);
    size_t n, n_short;
    if (apr_tokenize(t, text, len, special, ids, len + 1, &n) != APR_OK || n > len) __builtin_trap();
    if (apr_tokenize(t, text, len, special, ids, n / 2, &n_short) != APR_OK || n_short != n) __builtin_trap();

    /* The pieces are the input, less the bytes a small vocabulary lacks. */
    int lossless = complete[data[0] % N_TOKENIZERS];
    char *kept = malloc(len + 1);
    size_t n_kept = 0, at = 0;
    for (size_t i = 0; i < len; i++)
        if (lossless || (uint8_t)text[i] != DROPPED_BYTE) kept[n_kept++] = text[i];
    for (size_t i = 0; i < n; i++) {
        const char *piece;
        size_t k;
        if (apr_token_piece(t, ids[i], &piece, &k) != APR_OK) __builtin_trap();
        if (at + k > n_kept || memcmp(kept + at, piece, k) != 0) __builtin_trap();
        at += k;
    }
    if (at != n_kept) __builtin_trap();
    free(kept);

    char *whole;
    size_t whole_len;
    decode_both_ways(t, ids, n, data[0] & 0x20 ? APR_DETOK_SKIP_CONTROL : 0, &whole, &whole_len);
    if (lossless && !(data[0] & 0x20) && apr_utf8_valid((const uint8_t *)text, len) &&
        (whole_len != len || memcmp(whole, text, len) != 0))
        __builtin_trap();
    free(whole);

    /* The bytes as ids: some in range, some not. */
    size_t n_raw = len / 4;
    int32_t *raw = malloc((n_raw + 1) * sizeof *raw);
    int32_t n_vocab = apr_tokenizer_n_vocab(t);
    int any_bad = 0;
    for (size_t i = 0; i < n_raw; i++) {
        memcpy(&raw[i], text + 4 * i, 4);
        if (!(data[0] & 0x40)) raw[i] = (int32_t)((uint32_t)raw[i] % (uint32_t)(n_vocab + 2)) - 1;
        any_bad |= raw[i] < 0 || raw[i] >= n_vocab;
    }
    size_t got;
    apr_status s = apr_detokenize(t, raw, n_raw, 0, NULL, 0, &got);
    if (any_bad ? s != APR_ERR_RANGE : s != APR_OK) __builtin_trap();
    if (!any_bad) {
        decode_both_ways(t, raw, n_raw, 0, &whole, &whole_len);
        free(whole);
    }
    free(raw);
    free(ids);
    return 0;
}
