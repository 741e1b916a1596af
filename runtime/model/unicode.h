/* unicode.h — code point properties and UTF-8 decoding (internal).
 *
 * The pre-tokenizers need two facts about a code point: its general category
 * (\p{L}, \p{N}, ...) and whether it is White_Space (the regexes' \s). Both
 * come from a two-stage table generated from real Unicode data by
 * scripts/gen_unicode.py (runtime/model/unicode_tables.c).
 *
 *   unsigned p = apr_unicode_props(cp);
 *   if (APR_UC_IS_LETTER(p)) ...
 *   if (p & APR_UC_WHITE_SPACE) ...
 */
#ifndef APR_MODEL_UNICODE_H
#define APR_MODEL_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* General categories, numbered as scripts/gen_unicode.py writes them: each
 * major class is a contiguous range, so membership is one comparison. */
enum {
    APR_UC_LU, APR_UC_LL, APR_UC_LT, APR_UC_LM, APR_UC_LO,
    APR_UC_MN, APR_UC_MC, APR_UC_ME,
    APR_UC_ND, APR_UC_NL, APR_UC_NO,
    APR_UC_PC, APR_UC_PD, APR_UC_PS, APR_UC_PE, APR_UC_PI, APR_UC_PF, APR_UC_PO,
    APR_UC_SM, APR_UC_SC, APR_UC_SK, APR_UC_SO,
    APR_UC_ZS, APR_UC_ZL, APR_UC_ZP,
    APR_UC_CC, APR_UC_CF, APR_UC_CS, APR_UC_CO, APR_UC_CN,
    APR_UC_CATEGORY_MASK = 0x1f,
    APR_UC_WHITE_SPACE = 0x20   /* the White_Space property (PropList.txt) */
};

#define APR_UC_CATEGORY(p)    ((unsigned)(p) & APR_UC_CATEGORY_MASK)
#define APR_UC_IS_LETTER(p)   (APR_UC_CATEGORY(p) <= APR_UC_LO)
#define APR_UC_IS_MARK(p)     (APR_UC_CATEGORY(p) - (unsigned)APR_UC_MN <= APR_UC_ME - APR_UC_MN)
#define APR_UC_IS_NUMBER(p)   (APR_UC_CATEGORY(p) - (unsigned)APR_UC_ND <= APR_UC_NO - APR_UC_ND)
#define APR_UC_IS_PUNCT(p)    (APR_UC_CATEGORY(p) - (unsigned)APR_UC_PC <= APR_UC_PO - APR_UC_PC)
#define APR_UC_IS_SYMBOL(p)   (APR_UC_CATEGORY(p) - (unsigned)APR_UC_SM <= APR_UC_SO - APR_UC_SM)
#define APR_UC_IS_SEPARATOR(p) (APR_UC_CATEGORY(p) - (unsigned)APR_UC_ZS <= APR_UC_ZP - APR_UC_ZS)

/* What apr_utf8_decode reports for a byte that starts no valid sequence. */
#define APR_UTF8_INVALID 0xFFFFFFFFu

extern const char apr_unicode_version[];        /* "14.0.0" */
extern const uint16_t apr_unicode_stage1[0x110000 >> 8];
extern const uint8_t apr_unicode_stage2[][256];

/* Category and White_Space bit of cp; code points past U+10FFFF (and
 * APR_UTF8_INVALID) read as unassigned, so an invalid byte is "other". */
static inline unsigned apr_unicode_props(uint32_t cp)
{
    if (cp >= 0x110000) return APR_UC_CN;
    return apr_unicode_stage2[apr_unicode_stage1[cp >> 8]][cp & 0xff];
}

/* Decodes the code point starting at s[0] (n >= 1 bytes available) and
 * returns its length in bytes. Overlong forms, surrogates, values past
 * U+10FFFF and truncated sequences are invalid: *cp = APR_UTF8_INVALID and
 * the length is 1, so a caller always advances over bad input. */
size_t apr_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

/* The length of the sequence that lead begins (1..4; 0 if lead begins
 * none), and the range [*lo, *hi] its second byte must fall in; later bytes
 * are 0x80..0xBF. */
unsigned apr_utf8_sequence(uint8_t lead, uint8_t *lo, uint8_t *hi);

/* Writes cp (<= U+10FFFF) as UTF-8 into out[0..3]; returns the byte count
 * (0 for values that are not code points). */
size_t apr_utf8_encode(uint32_t cp, uint8_t out[4]);

/* 1 if s[0..n) is entirely valid UTF-8. */
int apr_utf8_valid(const uint8_t *s, size_t n);

#endif
