/* tokenizer.c — byte-level BPE: building the tokenizer from a model
 * source's tokenizer.ggml.* metadata (GGUF's keys, whatever the container)
 * and encoding text.
 *
 * Encoding is three steps (docs/tokenizer.md tells the story):
 *  1. With APR_TOKENIZE_SPECIAL, cut the text at occurrences of control and
 *     user-defined tokens, which are emitted as they are.
 *  2. Split each stretch between them into pieces with the model's
 *     pre-tokenizer (model/pretokenize.c).
 *  3. Encode each piece: start from one token per byte and apply the
 *     learned merges, lowest rank first, until none applies.
 * The file format facts (key names, GPT-2's byte-to-character map, which
 * tokens end generation) follow llama.cpp's llama-vocab.cpp (MIT) and
 * OpenAI's GPT-2 encoder.py (MIT); the code is apr's own.
 */
#include "model/tokenizer.h"

#include "core/error.h"
#include "model/unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_BYTE_CHARS 324   /* code points GPT-2's byte map uses: U+0000..U+0143 */

/* ===================================================================== */
/* GPT-2's byte map                                                      */
/* ===================================================================== */

/* Byte-level BPE vocabularies are written in characters, not bytes: each
 * byte stands for one code point, printable bytes for themselves and the 68
 * others (controls, space, DEL, NBSP, soft hyphen) for U+0100 onwards in
 * byte order. So "Ġ" (U+0120, the 33rd such code point) is a space. */
static int byte_is_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

static void byte_maps(uint32_t byte_to_cp[256], int16_t cp_to_byte[N_BYTE_CHARS])
{
    unsigned moved = 0;
    for (unsigned i = 0; i < N_BYTE_CHARS; i++) cp_to_byte[i] = -1;
    for (unsigned b = 0; b < 256; b++) {
        byte_to_cp[b] = byte_is_printable(b) ? b : 256 + moved++;
        cp_to_byte[byte_to_cp[b]] = (int16_t)b;
    }
}

/* ===================================================================== */
/* Hash tables                                                           */
/* ===================================================================== */

/* FNV-1a with a final mix. Loading probes the table three times per merge
 * (450,000 probes for Qwen2), so each slot keeps the text's hash beside the
 * id and the text itself is compared only when the hashes agree. */
static uint32_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    h ^= h >> 29;
    return (uint32_t)(h * 0x9E3779B97F4A7C15ull >> 32);
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

static int32_t vocab_lookup(const apr_tokenizer *t, const char *s, size_t n, uint32_t h)
{
    for (uint32_t i = h & t->vocab_mask;; i = (i + 1) & t->vocab_mask) {
        uint64_t slot = t->vocab_slots[i];
        if (slot == 0) return -1;
        if ((uint32_t)(slot >> 32) != h) continue;
        int32_t id = (int32_t)(uint32_t)slot - 1;
        if (t->text_at[id + 1] - t->text_at[id] - 1 == n && memcmp(t->text + t->text_at[id], s, n) == 0) return id;
    }
}

int32_t apr_tokenizer_find(const apr_tokenizer *t, const char *s, size_t n)
{
    if (!t || (!s && n)) return -1;
    if (!s) s = "";
    return vocab_lookup(t, s, n, hash_bytes(s, n));
}

static void vocab_insert(apr_tokenizer *t, int32_t id)
{
    const char *s = t->text + t->text_at[id];
    size_t n = t->text_at[id + 1] - t->text_at[id] - 1;
    uint32_t h = hash_bytes(s, n);
    if (vocab_lookup(t, s, n, h) >= 0) return;   /* a duplicate: the first id keeps the text */
    uint32_t i = h & t->vocab_mask;
    while (t->vocab_slots[i]) i = (i + 1) & t->vocab_mask;
    t->vocab_slots[i] = (uint64_t)h << 32 | ((uint32_t)id + 1);
}

static void merge_insert(apr_tokenizer *t, int32_t left, int32_t right, uint32_t rank, int32_t id)
{
    uint64_t key = apr_merge_key(left, right);
    uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> t->merge_shift;
    for (; t->merges[i].key != APR_MERGE_EMPTY; i = (i + 1) & t->merge_mask)
        if (t->merges[i].key == key) return;   /* a repeated pair keeps its first (lowest) rank */
    t->merges[i] = (apr_merge_slot){ key, rank, id };
}

/* ===================================================================== */
/* Reading the metadata                                                  */
/* ===================================================================== */

static apr_status get_array(const apr_source *f, const char *key, int elem_type, int required, apr_gguf_value *out,
                            int *found)
{
    const char *k;
    int64_t i = apr_source_find_kv(f, key);
    *found = i >= 0;
    if (i < 0) {
        APR_CHECK(!required, APR_ERR_NOT_FOUND, "tokenizer: the GGUF metadata lacks %s", key);
        return APR_OK;
    }
    APR_TRY(apr_source_kv(f, i, &k, out));
    APR_CHECK(out->type == APR_GGUF_ARRAY && out->elem_type == elem_type, APR_ERR_FORMAT,
              "tokenizer: %s is not an array of %s", key, elem_type == APR_GGUF_STRING ? "strings" : "int32");
    return APR_OK;
}

static apr_status get_string_elem(const apr_source *f, const apr_gguf_value *arr, const char *key, uint64_t i,
                                  const char **s, size_t *n)
{
    apr_gguf_value v;
    *s = NULL;
    *n = 0;
    APR_TRY(apr_source_array_get(f, arr, i, &v));
    APR_CHECK(v.type == APR_GGUF_STRING, APR_ERR_FORMAT, "tokenizer: %s[%llu] is not a string", key,
              (unsigned long long)i);
    *s = v.data;
    *n = (size_t)v.len;
    return APR_OK;
}

/* An optional token id: absent or negative leaves *id at -1. */
static apr_status get_token_id(const apr_source *f, const char *key, int32_t n_vocab, int32_t *id)
{
    int64_t v;
    apr_status s = apr_source_get_int(f, key, &v);
    if (s == APR_ERR_NOT_FOUND) return APR_OK;
    APR_TRY(s);
    if (v < 0) return APR_OK;
    APR_CHECK(v < n_vocab, APR_ERR_FORMAT, "tokenizer: %s = %lld is outside the vocabulary of %d tokens", key,
              (long long)v, n_vocab);
    *id = (int32_t)v;
    return APR_OK;
}

/* Copies every vocabulary string into t->text and its type into t->type. */
static apr_status load_vocab(apr_tokenizer *t, const apr_source *f)
{
    apr_gguf_value tokens, types;
    int found, have_types;
    APR_TRY(get_array(f, "tokenizer.ggml.tokens", APR_GGUF_STRING, 1, &tokens, &found));
    APR_TRY(get_array(f, "tokenizer.ggml.token_type", APR_GGUF_INT32, 0, &types, &have_types));
    APR_CHECK(tokens.len >= 1 && tokens.len < INT32_MAX, APR_ERR_FORMAT,
              "tokenizer: tokenizer.ggml.tokens has %llu entries", (unsigned long long)tokens.len);
    APR_CHECK(!have_types || types.len == tokens.len, APR_ERR_FORMAT,
              "tokenizer: tokenizer.ggml.token_type has %llu entries for %llu tokens",
              (unsigned long long)types.len, (unsigned long long)tokens.len);
    t->n_vocab = (int32_t)tokens.len;

    uint64_t total = 0;
    for (uint64_t i = 0; i < tokens.len; i++) {
        const char *s;
        size_t n;
        APR_TRY(get_string_elem(f, &tokens, "tokenizer.ggml.tokens", i, &s, &n));
        total += n + 1;
    }
    APR_CHECK(total < UINT32_MAX, APR_ERR_FORMAT, "tokenizer: the vocabulary strings take %llu bytes",
              (unsigned long long)total);
    t->text = malloc(total);
    t->text_at = malloc(sizeof *t->text_at * (tokens.len + 1));
    t->type = malloc(tokens.len);
    t->attr = calloc(tokens.len, 1);
    APR_CHECK(t->text && t->text_at && t->type && t->attr, APR_ERR_NOMEM, "tokenizer: out of memory");

    uint32_t at = 0;
    for (uint64_t i = 0; i < tokens.len; i++) {
        const char *s;
        size_t n;
        APR_TRY(get_string_elem(f, &tokens, "tokenizer.ggml.tokens", i, &s, &n));
        t->text_at[i] = at;
        memcpy(t->text + at, s, n);
        t->text[at + n] = '\0';
        at += (uint32_t)n + 1;
        int32_t type = APR_TOKEN_NORMAL;
        if (have_types) memcpy(&type, (const char *)types.data + 4 * i, 4);
        t->type[i] = (uint8_t)(type >= 0 && type <= APR_TOKEN_BYTE ? type : APR_TOKEN_UNDEFINED);
    }
    t->text_at[tokens.len] = at;

    size_t slots = pow2_at_least(2 * tokens.len);
    t->vocab_slots = calloc(slots, sizeof *t->vocab_slots);
    APR_CHECK(t->vocab_slots, APR_ERR_NOMEM, "tokenizer: out of memory");
    t->vocab_mask = (uint32_t)(slots - 1);
    for (int32_t id = 0; id < t->n_vocab; id++) vocab_insert(t, id);
    return APR_OK;
}

/* The bytes each token stands for: control and user-defined tokens are
 * stored as plain text, the others in GPT-2's byte map. A character outside
 * the map (a malformed vocabulary) is kept as its UTF-8. */
static apr_status decode_pieces(apr_tokenizer *t, const int16_t cp_to_byte[N_BYTE_CHARS])
{
    /* Decoding never makes a string longer, so the text arena's size bounds it. */
    t->piece = malloc(t->text_at[t->n_vocab] + 1);
    t->piece_at = malloc(sizeof *t->piece_at * ((size_t)t->n_vocab + 1));
    APR_CHECK(t->piece && t->piece_at, APR_ERR_NOMEM, "tokenizer: out of memory");
    uint32_t at = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const uint8_t *s = (const uint8_t *)t->text + t->text_at[id];
        size_t n = t->text_at[id + 1] - t->text_at[id] - 1;
        t->piece_at[id] = at;
        if (t->type[id] == APR_TOKEN_CONTROL || t->type[id] == APR_TOKEN_USER_DEFINED) {
            memcpy(t->piece + at, s, n);
            at += (uint32_t)n;
            continue;
        }
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t len = apr_utf8_decode(s + i, n - i, &cp);
            if (cp < N_BYTE_CHARS && cp_to_byte[cp] >= 0) {
                t->piece[at++] = (char)cp_to_byte[cp];
            } else {
                memcpy(t->piece + at, s + i, len);
                at += (uint32_t)len;
            }
            i += len;
        }
    }
    t->piece_at[t->n_vocab] = at;
    return APR_OK;
}

/* The token of each byte, or -1: a byte-level vocabulary normally has all
 * 256, but some leave out control bytes that never occurred in training
 * (SmolLM2's lacks 0x04, for one). Such bytes are dropped when encoding, as
 * llama.cpp drops them. */
static void load_byte_tokens(apr_tokenizer *t, const uint32_t byte_to_cp[256])
{
    for (unsigned b = 0; b < 256; b++) {
        uint8_t utf8[4];
        size_t n = apr_utf8_encode(byte_to_cp[b], utf8);
        t->byte_token[b] = apr_tokenizer_find(t, (const char *)utf8, n);
    }
}

/* Each merge is "LEFT RIGHT"; the space is the first one after the first
 * character, since byte-level tokens never contain a raw space. Merges whose
 * tokens are not all in the vocabulary can never fire and are dropped. */
static apr_status load_merges(apr_tokenizer *t, const apr_source *f)
{
    static const char *key = "tokenizer.ggml.merges";
    apr_gguf_value merges;
    int found;
    APR_TRY(get_array(f, key, APR_GGUF_STRING, 1, &merges, &found));
    APR_CHECK(merges.len < UINT32_MAX / 4, APR_ERR_FORMAT, "tokenizer: %s has %llu entries", key,
              (unsigned long long)merges.len);
    size_t slots = pow2_at_least(2 * (size_t)merges.len);
    t->merges = malloc(slots * sizeof *t->merges);
    APR_CHECK(t->merges, APR_ERR_NOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < slots; i++) t->merges[i].key = APR_MERGE_EMPTY;
    t->merge_mask = slots - 1;
    t->merge_shift = 64;
    while (slots > 1) {
        slots >>= 1;
        t->merge_shift--;
    }

    char *joined = NULL;
    size_t joined_cap = 0;
    apr_status st = APR_OK;
    for (uint64_t i = 0; i < merges.len && st == APR_OK; i++) {
        const char *s;
        size_t n;
        if ((st = get_string_elem(f, &merges, key, i, &s, &n)) != APR_OK) break;
        const char *space = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
        if (!space) {
            st = apr_error(APR_ERR_FORMAT, "tokenizer: %s[%llu] (\"%.*s\") is not two tokens", key,
                           (unsigned long long)i, (int)(n < 64 ? n : 64), s);
            break;
        }
        size_t nl = (size_t)(space - s), nr = n - nl - 1;
        if (nl + nr > joined_cap) {
            joined_cap = 2 * (nl + nr);
            char *p = realloc(joined, joined_cap);
            if (!p) {
                st = apr_error(APR_ERR_NOMEM, "tokenizer: out of memory");
                break;
            }
            joined = p;
        }
        memcpy(joined, s, nl);
        memcpy(joined + nl, space + 1, nr);
        int32_t left = apr_tokenizer_find(t, s, nl), right = apr_tokenizer_find(t, space + 1, nr);
        int32_t id = apr_tokenizer_find(t, joined, nl + nr);
        if (left >= 0 && right >= 0 && id >= 0) merge_insert(t, left, right, (uint32_t)i, id);
    }
    free(joined);
    return st;
}

/* ===================================================================== */
/* Special tokens                                                        */
/* ===================================================================== */

static int is_special_type(int type)
{
    return type == APR_TOKEN_CONTROL || type == APR_TOKEN_USER_DEFINED;
}

typedef struct special_key {
    uint8_t first;
    uint32_t len;
    int32_t id;
} special_key;

static int by_first_byte_longest(const void *a, const void *b)
{
    const special_key *x = a, *y = b;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static apr_status index_specials(apr_tokenizer *t)
{
    size_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (is_special_type(t->type[id]) && t->text_at[id + 1] - t->text_at[id] > 1) n++;
    special_key *keys = malloc((n ? n : 1) * sizeof *keys);
    t->specials = malloc((n ? n : 1) * sizeof *t->specials);
    if (!keys || !t->specials) {
        free(keys);
        return apr_error(APR_ERR_NOMEM, "tokenizer: out of memory");
    }
    n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint32_t len = t->text_at[id + 1] - t->text_at[id] - 1;
        if (is_special_type(t->type[id]) && len > 0)
            keys[n++] = (special_key){ (uint8_t)t->text[t->text_at[id]], len, id };
    }
    qsort(keys, n, sizeof *keys, by_first_byte_longest);
    for (size_t i = 0; i < n; i++) t->specials[i] = keys[i].id;
    size_t k = 0;
    for (unsigned b = 0; b < 256; b++) {
        while (k < n && keys[k].first < b) k++;
        t->special_from[b] = (uint32_t)k;
    }
    t->special_from[256] = (uint32_t)n;
    free(keys);
    return APR_OK;
}

/* Texts of the tokens that end generation besides eos/eot/eom, as llama.cpp
 * lists them (end of turn in the common chat formats, and the FIM tokens
 * after which a code model has finished a file). */
static const char *const eog_texts[] = {
    "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "<\uFF5Cend\u2581of\u2581sentence\uFF5C>",   /* DeepSeek's */
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
};
/* Candidates for eot when the file does not name it, in order of preference. */
static const char *const eot_texts[] = { "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                         "<EOT>" };

static int32_t find_special(const apr_tokenizer *t, const char *text)
{
    int32_t id = apr_tokenizer_find(t, text, strlen(text));
    return id >= 0 && is_special_type(t->type[id]) ? id : -1;
}

static apr_status load_specials(apr_tokenizer *t, const apr_source *f)
{
    t->bos = t->eos = t->eot = t->eom = -1;
    APR_TRY(get_token_id(f, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos));
    APR_TRY(get_token_id(f, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos));
    APR_TRY(get_token_id(f, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot));
    APR_TRY(get_token_id(f, "tokenizer.ggml.eom_token_id", t->n_vocab, &t->eom));
    for (size_t i = 0; t->eot < 0 && i < sizeof eot_texts / sizeof *eot_texts; i++)
        t->eot = find_special(t, eot_texts[i]);
    if (t->eom < 0) t->eom = find_special(t, "<|eom_id|>");

    int add_bos;
    apr_status s = apr_source_get_bool(f, "tokenizer.ggml.add_bos_token", &add_bos);
    if (s == APR_ERR_NOT_FOUND) add_bos = t->pre == APR_PRETOK_LLAMA3;   /* llama.cpp's default */
    else APR_TRY(s);
    t->add_bos = add_bos && t->bos >= 0;

    for (int32_t id = 0; id < t->n_vocab; id++)
        if (is_special_type(t->type[id])) t->attr[id] |= APR_TOKATTR_SPECIAL;
    int32_t ends[] = { t->eos, t->eot, t->eom };
    for (size_t i = 0; i < 3; i++)
        if (ends[i] >= 0) t->attr[ends[i]] |= APR_TOKATTR_EOG;
    for (size_t i = 0; i < sizeof eog_texts / sizeof *eog_texts; i++) {
        int32_t id = find_special(t, eog_texts[i]);
        if (id >= 0) t->attr[id] |= APR_TOKATTR_EOG;
    }
    return index_specials(t);
}

/* ===================================================================== */
/* Building                                                              */
/* ===================================================================== */

static apr_status load_kind(apr_tokenizer *t, const apr_source *f)
{
    const char *model, *pre;
    apr_status s = apr_source_get_str(f, "tokenizer.ggml.model", &model);
    APR_CHECK(s != APR_ERR_NOT_FOUND, s, "tokenizer: the GGUF metadata lacks tokenizer.ggml.model");
    APR_TRY(s);
    APR_CHECK(strcmp(model, "gpt2") == 0, APR_ERR_UNSUPPORTED,
              "tokenizer: tokenizer.ggml.model is \"%.40s\"; apr implements byte-level BPE (\"gpt2\") only", model);
    s = apr_source_get_str(f, "tokenizer.ggml.pre", &pre);
    APR_CHECK(s != APR_ERR_NOT_FOUND, s,
              "tokenizer: the GGUF metadata lacks tokenizer.ggml.pre, so the pre-tokenizer is unknown");
    APR_TRY(s);
    int kind = apr_pretok_from_name(pre);
    APR_CHECK(kind >= 0, APR_ERR_UNSUPPORTED,
              "tokenizer: pre-tokenizer \"%.40s\" (tokenizer.ggml.pre) is not supported; apr knows qwen2, "
              "llama-bpe, smollm, gpt-2 and their aliases", pre);
    t->pre = (apr_pretok_kind)kind;
    snprintf(t->pre_name, sizeof t->pre_name, "%s", pre);
    t->ignore_merges = t->pre == APR_PRETOK_LLAMA3;   /* Llama 3's tokenizer.json sets ignore_merges */
    return APR_OK;
}

apr_status apr_tokenizer_from_source(const apr_source *f, apr_tokenizer **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_tokenizer_from_source: out is NULL");
    *out = NULL;
    APR_CHECK(f, APR_ERR_INVALID, "apr_tokenizer_from_source: no file");
    apr_tokenizer *t = calloc(1, sizeof *t);
    APR_CHECK(t, APR_ERR_NOMEM, "tokenizer: out of memory");

    uint32_t byte_to_cp[256];
    int16_t cp_to_byte[N_BYTE_CHARS];
    byte_maps(byte_to_cp, cp_to_byte);
    apr_status s = load_kind(t, f);
    if (s == APR_OK) s = load_vocab(t, f);
    if (s == APR_OK) {
        load_byte_tokens(t, byte_to_cp);
        s = decode_pieces(t, cp_to_byte);
    }
    if (s == APR_OK) s = load_merges(t, f);
    if (s == APR_OK) s = load_specials(t, f);
    if (s != APR_OK) {
        apr_tokenizer_free(t);
        return s;
    }
    *out = t;
    return APR_OK;
}

void apr_tokenizer_free(apr_tokenizer *t)
{
    if (!t) return;
    free(t->text);
    free(t->text_at);
    free(t->piece);
    free(t->piece_at);
    free(t->type);
    free(t->attr);
    free(t->vocab_slots);
    free(t->merges);
    free(t->specials);
    free(t);
}

/* ===================================================================== */
/* Queries                                                               */
/* ===================================================================== */

int32_t apr_tokenizer_n_vocab(const apr_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t apr_tokenizer_bos(const apr_tokenizer *t) { return t ? t->bos : -1; }
int32_t apr_tokenizer_eos(const apr_tokenizer *t) { return t ? t->eos : -1; }
int32_t apr_tokenizer_eot(const apr_tokenizer *t) { return t ? t->eot : -1; }
int apr_tokenizer_add_bos(const apr_tokenizer *t) { return t ? t->add_bos : 0; }
const char *apr_tokenizer_pre(const apr_tokenizer *t) { return t ? t->pre_name : ""; }

static int in_range(const apr_tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_vocab;
}

int apr_token_get_type(const apr_tokenizer *t, int32_t id)
{
    return in_range(t, id) ? t->type[id] : -1;
}

int apr_token_is_special(const apr_tokenizer *t, int32_t id)
{
    return in_range(t, id) && (t->attr[id] & APR_TOKATTR_SPECIAL);
}

int apr_token_is_eog(const apr_tokenizer *t, int32_t id)
{
    return in_range(t, id) && (t->attr[id] & APR_TOKATTR_EOG);
}

apr_status apr_token_text(const apr_tokenizer *t, int32_t id, const char **text)
{
    APR_CHECK(t && text, APR_ERR_INVALID, "apr_token_text: NULL argument");
    APR_CHECK(in_range(t, id), APR_ERR_RANGE, "token id %d is outside the vocabulary (0..%d)", id, t->n_vocab - 1);
    *text = t->text + t->text_at[id];
    return APR_OK;
}

apr_status apr_token_piece(const apr_tokenizer *t, int32_t id, const char **bytes, size_t *len)
{
    APR_CHECK(t && bytes && len, APR_ERR_INVALID, "apr_token_piece: NULL argument");
    APR_CHECK(in_range(t, id), APR_ERR_RANGE, "token id %d is outside the vocabulary (0..%d)", id, t->n_vocab - 1);
    *bytes = apr_tokenizer_piece_of(t, id, len);
    return APR_OK;
}
