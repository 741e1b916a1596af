/* pretokenize.c — the pre-tokenizer regexes as hand-written matchers.
 *
 * A regex engine tries the alternatives of a pattern in order at the current
 * position and takes the first that matches. Each matcher below does the
 * same, alternative by alternative, so its comments quote the alternative
 * being tried. The names map onto the splits llama.cpp's llama-vocab.cpp
 * assigns to each tokenizer.ggml.pre value (facts, not code, carried over).
 */
#include "model/pretokenize.h"

#include "model/unicode.h"

#include <string.h>

/* ===================================================================== */
/* Classes                                                               */
/* ===================================================================== */

/* The four classes the regexes distinguish, plus END: the end of the text or,
 * for SmolLM, a digit, which its first split has already cut out so the
 * GPT-2 regex sees the text before it as a fragment of its own. */
enum { END, LETTER, NUMBER, SPACE, OTHER };

typedef struct cursor {
    const uint8_t *s;
    size_t n;
    int digits_end;   /* a number code point reads as END (SmolLM) */
} cursor;

/* The class of the code point at i and its length in bytes. */
static unsigned class_at(const cursor *c, size_t i, size_t *len)
{
    if (i >= c->n) {
        *len = 0;
        return END;
    }
    uint32_t cp;
    *len = c->s[i] < 0x80 ? (cp = c->s[i], 1) : apr_utf8_decode(c->s + i, c->n - i, &cp);
    unsigned p = apr_unicode_props(cp);
    if (APR_UC_IS_LETTER(p)) return LETTER;
    if (APR_UC_IS_NUMBER(p)) return c->digits_end ? END : NUMBER;
    if (p & APR_UC_WHITE_SPACE) return SPACE;
    return OTHER;
}

static unsigned class_of(const cursor *c, size_t i)
{
    size_t len;
    return class_at(c, i, &len);
}

static int is_newline(const cursor *c, size_t i)
{
    return i < c->n && (c->s[i] == '\r' || c->s[i] == '\n');
}

static uint8_t ascii_lower(uint8_t b)
{
    return b >= 'A' && b <= 'Z' ? (uint8_t)(b + 32) : b;
}

/* ===================================================================== */
/* Shared alternatives                                                   */
/* ===================================================================== */

/* 's|'t|'re|'ve|'m|'ll|'d at pos (an apostrophe): the match length or 0.
 * Qwen2 and Llama 3 write it (?i:...); the case folding is ASCII's, as in
 * llama.cpp (Oniguruma's full folding would also let U+017F match 's'). */
static size_t contraction(const cursor *c, size_t pos, int ignore_case)
{
    if (pos + 1 >= c->n) return 0;
    uint8_t a = c->s[pos + 1];
    if (ignore_case) a = ascii_lower(a);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 >= c->n) return 0;
    uint8_t b = c->s[pos + 2];
    if (ignore_case) b = ascii_lower(b);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* The whitespace alternatives, tried at a white-space code point:
 *   \s*[\r\n]+   (only if newline_rule) up to and including the run's last
 *                line break: \s* backtracks to the last \r or \n;
 *   \s+(?!\S)    the run minus its last code point when a non-space
 *                follows, so that code point can prefix the next word;
 *   \s+          otherwise the whole run. */
static size_t space_run(const cursor *c, size_t pos, int newline_rule)
{
    size_t j = pos, last = pos, after_newline = 0, count = 0, len;
    while (class_at(c, j, &len) == SPACE) {
        if (is_newline(c, j)) after_newline = j + 1;
        last = j;
        j += len;
        count++;
    }
    if (newline_rule && after_newline) return after_newline;
    if (count > 1 && class_of(c, j) != END) return last;
    return j;
}

/* ===================================================================== */
/* Qwen2 and Llama 3                                                     */
/* ===================================================================== */

static size_t next_qwen2(const cursor *c, size_t pos, unsigned max_digits)
{
    size_t len0, len;
    unsigned k0 = class_at(c, pos, &len0);
    uint8_t b0 = c->s[pos];

    /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
    if (b0 == '\'') {
        size_t m = contraction(c, pos, 1);
        if (m) return pos + m;
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ : a letter run, with one optional leading
     * code point that is neither a line break, letter nor number. */
    if (k0 == LETTER ||
        (k0 != NUMBER && !is_newline(c, pos) && class_of(c, pos + len0) == LETTER)) {
        size_t j = pos + len0;
        while (class_at(c, j, &len) == LETTER) j += len;
        return j;
    }
    /* \p{N} (Qwen2) or \p{N}{1,3} (Llama 3) */
    if (k0 == NUMBER) {
        size_t j = pos + len0;
        for (unsigned d = 1; d < max_digits && class_at(c, j, &len) == NUMBER; d++) j += len;
        return j;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t j = pos;
    if (b0 == ' ' && class_of(c, pos + 1) == OTHER) j = pos + 1;
    if (class_at(c, j, &len) == OTHER) {
        do j += len; while (class_at(c, j, &len) == OTHER);
        while (is_newline(c, j)) j++;
        return j;
    }
    /* \s*[\r\n]+|\s+(?!\S)|\s+ : only white space is left at pos. */
    return space_run(c, pos, 1);
}

/* ===================================================================== */
/* GPT-2 and SmolLM                                                      */
/* ===================================================================== */

static size_t next_gpt2(const cursor *c, size_t pos)
{
    size_t len0, len;
    unsigned k0 = class_at(c, pos, &len0);

    /* SmolLM's first split: every number code point alone. */
    if (c->digits_end && k0 == END) return pos + len0;
    /* 's|'t|'re|'ve|'m|'ll|'d (case-sensitive) */
    if (c->s[pos] == '\'') {
        size_t m = contraction(c, pos, 0);
        if (m) return pos + m;
    }
    /*  ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+ : a run of one class, with an
     * optional leading space. */
    size_t j = pos;
    unsigned k = k0;
    len = len0;
    if (c->s[pos] == ' ') {
        size_t len1;
        unsigned k1 = class_at(c, pos + 1, &len1);
        if (k1 == LETTER || k1 == NUMBER || k1 == OTHER) {
            j = pos + 1;
            k = k1;
            len = len1;
        }
    }
    if (k == LETTER || k == NUMBER || k == OTHER) {
        do j += len; while (class_at(c, j, &len) == k);
        return j;
    }
    /* \s+(?!\S)|\s+ */
    return space_run(c, pos, 0);
}

/* ===================================================================== */
/* Public                                                                */
/* ===================================================================== */

static const struct {
    const char *name;
    apr_pretok_kind kind;
} known[] = {
    { "qwen2", APR_PRETOK_QWEN2 },
    { "stablelm2", APR_PRETOK_QWEN2 },
    { "megrez", APR_PRETOK_QWEN2 },
    { "deepseek-r1-qwen", APR_PRETOK_QWEN2 },
    { "llama3", APR_PRETOK_LLAMA3 },
    { "llama-v3", APR_PRETOK_LLAMA3 },
    { "llama-bpe", APR_PRETOK_LLAMA3 },
    { "falcon3", APR_PRETOK_LLAMA3 },
    { "gpt-2", APR_PRETOK_GPT2 },
    { "gpt2", APR_PRETOK_GPT2 },
    { "phi-2", APR_PRETOK_GPT2 },
    { "mpt", APR_PRETOK_GPT2 },
    { "olmo", APR_PRETOK_GPT2 },
    { "jais", APR_PRETOK_GPT2 },
    { "roberta-bpe", APR_PRETOK_GPT2 },
    { "smollm", APR_PRETOK_SMOLLM },
    { "starcoder", APR_PRETOK_SMOLLM },
    { "refact", APR_PRETOK_SMOLLM },
    { "command-r", APR_PRETOK_SMOLLM },
    { "codeshell", APR_PRETOK_SMOLLM },
    { "exaone", APR_PRETOK_SMOLLM },
};

int apr_pretok_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(name, known[i].name) == 0) return (int)known[i].kind;
    return -1;
}

size_t apr_pretok_next(apr_pretok_kind kind, const uint8_t *text, size_t n, size_t pos)
{
    cursor c = { text, n, kind == APR_PRETOK_SMOLLM };
    switch (kind) {
    case APR_PRETOK_QWEN2: return next_qwen2(&c, pos, 1);
    case APR_PRETOK_LLAMA3: return next_qwen2(&c, pos, 3);
    case APR_PRETOK_GPT2:
    case APR_PRETOK_SMOLLM: return next_gpt2(&c, pos);
    }
    return n;
}
