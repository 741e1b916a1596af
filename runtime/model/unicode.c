/* unicode.c — strict UTF-8 decoding and encoding.
 *
 * "Strict" is RFC 3629's definition: the shortest form only, no surrogates,
 * nothing past U+10FFFF. The property table itself is generated
 * (unicode_tables.c); this file only walks bytes. */
#include "model/unicode.h"

/* The second byte's range is where overlongs, surrogates and values past
 * U+10FFFF are excluded (RFC 3629, section 4). */
unsigned apr_utf8_sequence(uint8_t lead, uint8_t *lo, uint8_t *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (lead < 0x80) return 1;
    if (lead < 0xC2) return 0;
    if (lead < 0xE0) return 2;
    if (lead < 0xF0) {
        if (lead == 0xE0) *lo = 0xA0;
        if (lead == 0xED) *hi = 0x9F;
        return 3;
    }
    if (lead < 0xF5) {
        if (lead == 0xF0) *lo = 0x90;
        if (lead == 0xF4) *hi = 0x8F;
        return 4;
    }
    return 0;
}

size_t apr_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t lo, hi;
    unsigned len = apr_utf8_sequence(s[0], &lo, &hi);
    if (len == 1) {
        *cp = s[0];
        return 1;
    }
    if (len == 0 || n < len || s[1] < lo || s[1] > hi) {
        *cp = APR_UTF8_INVALID;
        return 1;
    }
    uint32_t v = s[0] & (0xFF >> (len + 1));
    for (unsigned i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = APR_UTF8_INVALID;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    *cp = v;
    return len;
}

size_t apr_utf8_encode(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp < 0x110000) {
        out[0] = (uint8_t)(0xF0 | (cp >> 18));
        out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (uint8_t)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}

int apr_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        i += apr_utf8_decode(s + i, n - i, &cp);
        if (cp == APR_UTF8_INVALID) return 0;
    }
    return 1;
}
