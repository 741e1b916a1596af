/* pretokenize.h — splitting text into the pieces that BPE encodes (internal).
 *
 * Byte-level BPE never merges across a piece boundary, and where the
 * boundaries fall is decided by a regex that each model family defines (its
 * tokenizer.json "Split"/"ByteLevel" pre-tokenizer; GGUF names it with
 * tokenizer.ggml.pre). Each regex is implemented here as a hand-written
 * matcher over code points, with real Unicode classes (model/unicode.h).
 *
 *   for (size_t pos = 0; pos < n; ) {
 *       size_t end = apr_pretok_next(APR_PRETOK_QWEN2, text, n, pos);
 *       encode(text + pos, end - pos);
 *       pos = end;
 *   }
 *
 * docs/tokenizer.md walks through the rules. Invalid UTF-8 bytes split like
 * a symbol (neither letter, number nor space), one byte at a time. */
#ifndef APR_MODEL_PRETOKENIZE_H
#define APR_MODEL_PRETOKENIZE_H

#include <stddef.h>
#include <stdint.h>

typedef enum apr_pretok_kind {
    /* Qwen2: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}
     *        | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
    APR_PRETOK_QWEN2,
    /* Llama 3: the same with \p{N}{1,3} (digits in groups of up to three). */
    APR_PRETOK_LLAMA3,
    /* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+
     *        |\s+(?!\S)|\s+ */
    APR_PRETOK_GPT2,
    /* SmolLM, StarCoder: every \p{N} is a piece of its own, then GPT-2's
     * regex splits the text between them. */
    APR_PRETOK_SMOLLM
} apr_pretok_kind;

/* The split for a tokenizer.ggml.pre name (the names llama.cpp's converter
 * writes), or -1 if apr does not know it. */
int apr_pretok_from_name(const char *name);

/* The end of the piece that starts at text[pos] (pos < n): a position in
 * (pos, n]. Pieces cover the text exactly, in order. */
size_t apr_pretok_next(apr_pretok_kind kind, const uint8_t *text, size_t n, size_t pos);

#endif
