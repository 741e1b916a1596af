/* unicode_test.c — the generated property table on code points whose
 * category is well known, and strict UTF-8 decoding. */
#include "test.h"
#include "model/unicode.h"

static unsigned cat(uint32_t cp) { return APR_UC_CATEGORY(apr_unicode_props(cp)); }
static int space(uint32_t cp) { return (apr_unicode_props(cp) & APR_UC_WHITE_SPACE) != 0; }

TEST(unicode_categories_of_known_code_points)
{
    CHECK_EQ_INT(cat('A'), APR_UC_LU);
    CHECK_EQ_INT(cat('z'), APR_UC_LL);
    CHECK_EQ_INT(cat(0x01C5), APR_UC_LT);    /* ǅ */
    CHECK_EQ_INT(cat(0x02B0), APR_UC_LM);    /* ʰ */
    CHECK_EQ_INT(cat(0x65E5), APR_UC_LO);    /* 日 */
    CHECK_EQ_INT(cat(0xAC00), APR_UC_LO);    /* 가 */
    CHECK_EQ_INT(cat(0x0301), APR_UC_MN);    /* combining acute */
    CHECK_EQ_INT(cat('7'), APR_UC_ND);
    CHECK_EQ_INT(cat(0x0663), APR_UC_ND);    /* Arabic-Indic three */
    CHECK_EQ_INT(cat(0x216B), APR_UC_NL);    /* Ⅻ */
    CHECK_EQ_INT(cat(0x00B2), APR_UC_NO);    /* ² */
    CHECK_EQ_INT(cat('_'), APR_UC_PC);
    CHECK_EQ_INT(cat('('), APR_UC_PS);
    CHECK_EQ_INT(cat('!'), APR_UC_PO);
    CHECK_EQ_INT(cat('+'), APR_UC_SM);
    CHECK_EQ_INT(cat(0x20AC), APR_UC_SC);    /* € */
    CHECK_EQ_INT(cat('^'), APR_UC_SK);
    CHECK_EQ_INT(cat(0x1F642), APR_UC_SO);   /* 🙂 */
    CHECK_EQ_INT(cat(' '), APR_UC_ZS);
    CHECK_EQ_INT(cat(0x2028), APR_UC_ZL);
    CHECK_EQ_INT(cat('\n'), APR_UC_CC);
    CHECK_EQ_INT(cat(0x200D), APR_UC_CF);    /* zero-width joiner */
    CHECK_EQ_INT(cat(0xD800), APR_UC_CS);
    CHECK_EQ_INT(cat(0xE000), APR_UC_CO);
    CHECK_EQ_INT(cat(0x0378), APR_UC_CN);    /* unassigned */
    CHECK_EQ_INT(cat(0x110000), APR_UC_CN);
    CHECK_EQ_INT(cat(APR_UTF8_INVALID), APR_UC_CN);
}

TEST(unicode_major_classes)
{
    CHECK(APR_UC_IS_LETTER(apr_unicode_props(0x4E00)));
    CHECK(!APR_UC_IS_LETTER(apr_unicode_props(0x0301)));
    CHECK(APR_UC_IS_MARK(apr_unicode_props(0x0301)));
    CHECK(APR_UC_IS_NUMBER(apr_unicode_props(0xFF11)));   /* fullwidth one */
    CHECK(!APR_UC_IS_NUMBER(apr_unicode_props('x')));
    CHECK(APR_UC_IS_PUNCT(apr_unicode_props(0x3002)));    /* 。 */
    CHECK(APR_UC_IS_SYMBOL(apr_unicode_props(0x2764)));   /* ❤ */
    CHECK(APR_UC_IS_SEPARATOR(apr_unicode_props(0x3000)));
}

TEST(unicode_white_space_is_the_property_not_isspace)
{
    static const uint32_t yes[] = { 9, 10, 11, 12, 13, 32, 0x85, 0xA0, 0x1680, 0x2000, 0x200A,
                                    0x2028, 0x2029, 0x202F, 0x205F, 0x3000 };
    static const uint32_t no[] = { 0x1C, 0x1F, 0x200B, 0x180E, 0xFEFF, 'a', 0 };
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) CHECK(space(yes[i]));
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) CHECK(!space(no[i]));
    int total = 0;
    for (uint32_t cp = 0; cp < 0x110000; cp++) total += space(cp);
    CHECK_EQ_INT(total, 25);   /* PropList.txt's White_Space count */
}

static uint32_t decode(const char *s, size_t n, size_t *len)
{
    uint32_t cp;
    *len = apr_utf8_decode((const uint8_t *)s, n, &cp);
    return cp;
}

TEST(unicode_utf8_decoding_is_strict)
{
    size_t len;
    CHECK_EQ_INT(decode("A", 1, &len), 'A');
    CHECK_EQ_INT(len, 1);
    CHECK_EQ_INT(decode("\xc3\xa9", 2, &len), 0xE9);
    CHECK_EQ_INT(len, 2);
    CHECK_EQ_INT(decode("\xe2\x82\xac", 3, &len), 0x20AC);
    CHECK_EQ_INT(decode("\xf0\x9f\x99\x82", 4, &len), 0x1F642);
    CHECK_EQ_INT(len, 4);
    CHECK_EQ_INT(decode("\xf4\x8f\xbf\xbf", 4, &len), 0x10FFFF);
    static const char *const bad[] = { "\x80", "\xc0\xaf", "\xc1\xbf", "\xe0\x9f\xbf", "\xed\xa0\x80",
                                       "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff",
                                       "\xc3", "\xe2\x82", "\xc3(" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_EQ_INT(decode(bad[i], strlen(bad[i]), &len), APR_UTF8_INVALID);
        CHECK_EQ_INT(len, 1);
    }
    CHECK_EQ_INT(decode("\xe2\x82\xac", 2, &len), APR_UTF8_INVALID);   /* truncated by n */
}

TEST(unicode_utf8_encoding_round_trips)
{
    for (uint32_t cp = 0; cp < 0x110000; cp += (cp < 0x3000 ? 1 : 97)) {
        uint8_t buf[4];
        size_t n = apr_utf8_encode(cp, buf);
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            CHECK_EQ_INT(n, 0);
            continue;
        }
        uint32_t back;
        CHECK(n >= 1 && apr_utf8_decode(buf, n, &back) == n && back == cp);
    }
    uint8_t buf[4];
    CHECK_EQ_INT(apr_utf8_encode(0x110000, buf), 0);
    CHECK(apr_utf8_valid((const uint8_t *)"h\xc3\xa9llo", 6));
    CHECK(!apr_utf8_valid((const uint8_t *)"h\xc3", 2));
}
