/* tokenizer_fixture.c — see tokenizer_fixture.h. */
#include "tokenizer_fixture.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define VOCAB_ZST "tests/fixtures/tokenizer/ggml-vocab-qwen2.gguf.zst"
#define VECTORS_INP "tests/fixtures/tokenizer/ggml-vocab-qwen2.gguf.inp"
#define VECTORS_OUT "tests/fixtures/tokenizer/ggml-vocab-qwen2.gguf.out"


const apr_tokenizer *fixture_qwen2(void)
{
    static apr_tokenizer *tok;
    static int tried;
    if (tried) return tok;
    tried = 1;
    size_t zn;
    char *z = test_read_file(VOCAB_ZST, &zn);
    if (!z) return NULL;
    unsigned long long full = ZSTD_getFrameContentSize(z, zn);
    void *image = NULL;
    if (full != ZSTD_CONTENTSIZE_ERROR && full != ZSTD_CONTENTSIZE_UNKNOWN) {
        image = malloc(full);
        size_t got = image ? ZSTD_decompress(image, full, z, zn) : 0;
        if (!image || ZSTD_isError(got)) {
            free(image);
            image = NULL;
        }
    }
    free(z);
    apr_source *f;
    if (!image || apr_source_open_memory(image, (size_t)full, &f) != APR_OK) {
        free(image);
        return NULL;
    }
    if (apr_tokenizer_from_source(f, &tok) != APR_OK) tok = NULL;
    apr_source_close(f);
    free(image);   /* the tokenizer keeps copies of what it needs */
    return tok;
}

size_t fixture_qwen2_vectors(const fixture_vector **out)
{
    static fixture_vector vectors[64];
    static size_t count;
    static int tried;
    *out = vectors;
    if (tried) return count;
    tried = 1;
    size_t ni, no;
    char *inp = test_read_file(VECTORS_INP, &ni), *outp = test_read_file(VECTORS_OUT, &no);
    if (!inp || !outp) {
        free(inp);
        free(outp);
        return 0;
    }
    /* llama.cpp's layout: each string is followed by a separator line; the
     * n-th line of .out holds the n-th string's ids. */
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *p = inp, *line = outp;
    for (char *q; count < 64 && (q = strstr(p, sep)) != NULL; p = q + strlen(sep)) {
        fixture_vector *v = &vectors[count++];
        v->text = p;
        v->len = (size_t)(q - p);
        char *end = strchr(line, '\n');
        if (end) *end = '\0';
        for (char *s = line; v->n_ids < 256;) {
            char *next;
            long id = strtol(s, &next, 10);
            if (next == s) break;
            v->ids[v->n_ids++] = (int32_t)id;
            s = next;
        }
        line = end ? end + 1 : line + strlen(line);
    }
    free(outp);   /* inp stays: the vectors point into it */
    return count;
}

/* ------------------------------------------------------------------ */

/* GPT-2's byte map, written out independently of the tokenizer's. */
static unsigned byte_char(unsigned b)
{
    static unsigned map[256];
    static int ready;
    if (!ready) {
        unsigned moved = 0;
        for (unsigned i = 0; i < 256; i++) {
            int printable = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || i >= 0xAE;
            map[i] = printable ? i : 256 + moved++;
        }
        ready = 1;
    }
    return map[b];
}

static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

const char *fixture_spell_n(const char *bytes, size_t len)
{
    static char buf[1024];
    size_t n = 0;
    for (size_t i = 0; i < len && n + 3 < sizeof buf; i++) n += put_utf8(buf + n, byte_char((uint8_t)bytes[i]));
    buf[n] = '\0';
    return buf;
}

const char *fixture_spell(const char *bytes)
{
    return fixture_spell_n(bytes, strlen(bytes));
}

fixture_vocab fixture_vocab_default(void)
{
    return (fixture_vocab){ .bos = -1, .eos = -1, .eot = -1, .add_bos = -1, .drop_byte = -1 };
}

apr_status fixture_tokenizer(const fixture_vocab *v, apr_tokenizer **out)
{
    *out = NULL;
    int n = 256 + v->n_extra;
    char (*bytes)[3] = malloc(256 * sizeof *bytes);
    const char **tokens = malloc((size_t)n * sizeof *tokens);
    int32_t *types = malloc((size_t)n * sizeof *types);
    apr_gguf_writer *w = NULL;
    apr_status s = APR_ERR_NOMEM;
    if (!bytes || !tokens || !types) goto done;
    for (int b = 0; b < 256; b++) {
        size_t len = put_utf8(bytes[b], byte_char((unsigned)b));
        bytes[b][len] = '\0';
        /* A dropped byte keeps its id, spelled as a token no text produces. */
        tokens[b] = b == v->drop_byte ? "<dropped>" : bytes[b];
        types[b] = b == v->drop_byte ? APR_TOKEN_UNUSED : APR_TOKEN_NORMAL;
    }
    for (int i = 0; i < v->n_extra; i++) {
        tokens[256 + i] = v->extra[i];
        types[256 + i] = v->extra_types ? v->extra_types[i] : APR_TOKEN_NORMAL;
    }
    const char *model = v->model ? v->model : "gpt2", *pre = v->pre ? v->pre : "qwen2";
    if ((s = apr_gguf_writer_new(&w)) != APR_OK) goto done;
    if (strcmp(model, "-") != 0 &&
        (s = apr_gguf_writer_add_str(w, "tokenizer.ggml.model", model, strlen(model))) != APR_OK) goto done;
    if (strcmp(pre, "-") != 0 &&
        (s = apr_gguf_writer_add_str(w, "tokenizer.ggml.pre", pre, strlen(pre))) != APR_OK) goto done;
    if ((s = apr_gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", tokens, NULL, (uint64_t)n)) != APR_OK)
        goto done;
    if ((s = apr_gguf_writer_add_array(w, "tokenizer.ggml.token_type", APR_GGUF_INT32, types, (uint64_t)n)) !=
        APR_OK)
        goto done;
    if (!v->no_merges_key &&
        (s = apr_gguf_writer_add_str_array(w, "tokenizer.ggml.merges", (const char *const *)v->merges, NULL,
                                           (uint64_t)v->n_merges)) != APR_OK)
        goto done;
    struct { const char *key; int64_t value; } ids[] = {
        { "tokenizer.ggml.bos_token_id", v->bos },
        { "tokenizer.ggml.eos_token_id", v->eos },
        { "tokenizer.ggml.eot_token_id", v->eot },
    };
    for (size_t i = 0; i < 3; i++)
        if (ids[i].value >= 0 &&
            (s = apr_gguf_writer_add_int(w, ids[i].key, APR_GGUF_UINT32, ids[i].value)) != APR_OK)
            goto done;
    if (v->add_bos >= 0 &&
        (s = apr_gguf_writer_add_int(w, "tokenizer.ggml.add_bos_token", APR_GGUF_BOOL, v->add_bos)) != APR_OK)
        goto done;

    void *image;
    uint64_t size;
    if ((s = apr_gguf_writer_header(w, &image, &size)) != APR_OK) goto done;
    apr_source *f;
    if ((s = apr_source_open_memory(image, (size_t)size, &f)) == APR_OK) {
        s = apr_tokenizer_from_source(f, out);
        apr_source_close(f);
    }
    apr_free(image);
done:
    apr_gguf_writer_free(w);
    free(bytes);
    free(tokens);
    free(types);
    return s;
}

/* ------------------------------------------------------------------ */

uint64_t fixture_rand(uint64_t *rng)
{
    /* xorshift64*: small, seedable, good enough for test inputs. */
    uint64_t x = *rng ? *rng : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static const char *const PARTS[] = {
    "the", " quick", " brown", "fox", " don't", " I'M", " we'Ve", "'s", "'ll", "'", "static int", "main(void)",
    "{", "}", "();", " = ", "==", "->", "/* c */", "// x", "\"str\"", "'c'", "0x1F", "3.14", "1e-9", "42",
    "1234567", "\xd9\xa3\xd9\xa4", "\xef\xbc\x91", "\xc2\xb2", "\xe2\x85\xab",
    " ", "  ", "    ", "\t", "\n", "\n\n", "\r\n", " \n  ", "\t\t\n", "\xc2\xa0", "\xe3\x80\x80", "\xe2\x80\xa8",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4", "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
    "\xce\xb1\xce\xb2\xce\xb3", "\xd8\xb3\xd9\x84\xd8\xa7\xd9\x85", "\xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4\x82",
    "\xf0\x9f\x99\x82", "\xf0\x9f\xa6\x99", "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd",
    "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7", "\xe2\x9d\xa4\xef\xb8\x8f",
    "e\xcc\x81", "a\xcc\x88\xcc\x81", "\xcc\x81", "Z\xcd\x91\xcd\x92\xcd\x93",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_", "|>", "<|", "<|im_start|>user\n", "<tool_call>",
    "[PAD151650]", "<<|im_end|>>",
};

/* One random code point from a few scripts' ranges, as UTF-8. */
static size_t random_char(uint64_t *rng, char *out)
{
    static const uint32_t ranges[][2] = {
        { 0x20, 0x7E }, { 0xA1, 0x24F }, { 0x370, 0x3FF }, { 0x400, 0x4FF }, { 0x4E00, 0x9FFF },
        { 0xAC00, 0xD7A3 }, { 0x300, 0x36F }, { 0x1F300, 0x1F64F }, { 0x2000, 0x206F }, { 0x10000, 0x1007F },
    };
    const uint32_t *r = ranges[fixture_rand(rng) % (sizeof ranges / sizeof *ranges)];
    uint32_t cp = r[0] + (uint32_t)(fixture_rand(rng) % (r[1] - r[0] + 1));
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t fixture_random_text(uint64_t *rng, char *out, size_t cap, size_t budget)
{
    size_t n = 0;
    if (budget > cap - 1) budget = cap - 1;
    while (n < budget) {
        char buf[64];
        size_t len;
        if (fixture_rand(rng) % 3 == 0) {
            len = random_char(rng, buf);
        } else {
            const char *p = PARTS[fixture_rand(rng) % (sizeof PARTS / sizeof *PARTS)];
            len = strlen(p);
            memcpy(buf, p, len);
        }
        if (n + len > budget) break;
        memcpy(out + n, buf, len);
        n += len;
    }
    out[n] = '\0';
    return n;
}
