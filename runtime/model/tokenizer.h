/* tokenizer.h — the tokenizer's representation, shared by tokenizer.c (load,
 * encode) and detok.c (decode) (internal).
 *
 * Every per-token string lives in one of two arenas: `text` holds the
 * vocabulary strings as the file stores them, `piece` the bytes each token
 * stands for. Token i's string is arena[at[i] .. at[i+1]). */
#ifndef APR_MODEL_TOKENIZER_H
#define APR_MODEL_TOKENIZER_H

#include "apr.h"
#include "model/pretokenize.h"

/* One learned merge: the pair (left, right) of token ids becomes `id`; lower
 * ranks are applied first. An empty slot has key APR_MERGE_EMPTY. */
typedef struct apr_merge_slot {
    uint64_t key;      /* (uint64_t)left << 32 | right */
    uint32_t rank;     /* the merge's line in tokenizer.ggml.merges */
    int32_t id;        /* the merged token */
} apr_merge_slot;

/* Per-token attribute bits. */
enum { APR_TOKATTR_SPECIAL = 1, APR_TOKATTR_EOG = 2 };

struct apr_tokenizer {
    int32_t n_vocab;
    apr_pretok_kind pre;
    char pre_name[32];
    int ignore_merges;          /* a piece that is itself a token skips BPE (Llama 3) */
    int add_bos;
    int32_t bos, eos, eot, eom; /* -1 if absent */

    char *text;                 /* vocabulary strings, each followed by a NUL */
    uint32_t *text_at;          /* [n_vocab + 1] offsets into text (the NUL excluded from lengths) */
    char *piece;                /* decoded bytes of every token, back to back */
    uint32_t *piece_at;         /* [n_vocab + 1] offsets into piece */
    uint8_t *type;              /* [n_vocab] apr_token_type */
    uint8_t *attr;              /* [n_vocab] APR_TOKATTR_* bits */

    int32_t byte_token[256];    /* the token of each single byte, -1 if the vocabulary lacks it */

    uint64_t *vocab_slots;      /* open addressing: hash << 32 | (id + 1); 0 = empty */
    uint32_t vocab_mask;
    apr_merge_slot *merges;     /* open addressing: pair -> rank, merged id */
    uint64_t merge_mask;
    int merge_shift;            /* 64 - log2(slots), for the multiplicative hash */

    /* Control and user-defined tokens, for APR_TOKENIZE_SPECIAL: sorted by
     * first byte, longest first within a byte, so the first match at a
     * position is the longest (leftmost-longest, as Hugging Face's
     * added-token matcher does). special_from[b] .. special_from[b + 1]
     * are the ones starting with byte b. */
    int32_t *specials;
    uint32_t special_from[257];
};

#define APR_MERGE_EMPTY UINT64_MAX

static inline uint64_t apr_merge_key(int32_t left, int32_t right)
{
    return (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
}

/* The merge of the pair (left, right), or NULL. Fibonacci hashing: the top
 * bits of key * 2^64/phi spread consecutive ids over the table. */
static inline const apr_merge_slot *apr_merge_find(const apr_tokenizer *t, int32_t left, int32_t right)
{
    uint64_t key = apr_merge_key(left, right);
    for (uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> t->merge_shift;; i = (i + 1) & t->merge_mask) {
        const apr_merge_slot *s = &t->merges[i];
        if (s->key == key) return s;
        if (s->key == APR_MERGE_EMPTY) return NULL;
    }
}

/* The bytes token id stands for (id in range). */
static inline const char *apr_tokenizer_piece_of(const apr_tokenizer *t, int32_t id, size_t *len)
{
    *len = t->piece_at[id + 1] - t->piece_at[id];
    return t->piece + t->piece_at[id];
}

#endif
