/* pretokenize_test.c — each split against pieces worked out by hand from its
 * regex (what a backtracking regex engine returns), one rule at a time. */
#include "test.h"
#include "model/pretokenize.h"

/* The pieces of text joined with '|' (no test text contains '|'). */
static const char *split(apr_pretok_kind kind, const char *text)
{
    static char out[1024];
    size_t n = strlen(text), o = 0;
    for (size_t pos = 0; pos < n;) {
        size_t end = apr_pretok_next(kind, (const uint8_t *)text, n, pos);
        if (end <= pos || end > n) return "(bad piece end)";
        if (pos) out[o++] = '|';
        memcpy(out + o, text + pos, end - pos);
        o += end - pos;
        pos = end;
    }
    out[o] = '\0';
    return out;
}

#define QWEN2(text, pieces) CHECK_EQ_STR(split(APR_PRETOK_QWEN2, text), pieces)
#define LLAMA3(text, pieces) CHECK_EQ_STR(split(APR_PRETOK_LLAMA3, text), pieces)
#define GPT2(text, pieces) CHECK_EQ_STR(split(APR_PRETOK_GPT2, text), pieces)
#define SMOLLM(text, pieces) CHECK_EQ_STR(split(APR_PRETOK_SMOLLM, text), pieces)

TEST(pretokenize_qwen2_words_take_one_leading_non_letter)
{
    QWEN2("Hello world", "Hello| world");
    QWEN2("(foo)", "(foo|)");
    QWEN2("  hi", " | hi");
    QWEN2("\thi", "\thi");
    QWEN2("\xc2\xa0x", "\xc2\xa0x");                 /* NBSP is white space, and may lead a word */
    QWEN2("\nhi", "\n|hi");                          /* a line break may not */
    QWEN2("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");  /* 日本語: letters */
    QWEN2("na\xc3\xafve", "na\xc3\xafve");           /* ï is a letter */
    QWEN2("cafe\xcc\x81", "cafe|\xcc\x81");          /* U+0301 is a mark, not a letter: no NFC here */
}

TEST(pretokenize_qwen2_contractions_ignore_case)
{
    QWEN2("I'm", "I|'m");
    QWEN2("YOU'RE", "YOU|'RE");
    QWEN2("we'Ll", "we|'Ll");
    QWEN2("'s's", "'s|'s");
    QWEN2("'x", "'x");                               /* no contraction: the quote leads the word */
    QWEN2("'", "'");
}

TEST(pretokenize_qwen2_numbers_one_code_point_each)
{
    QWEN2("abc123", "abc|1|2|3");
    QWEN2("x\xc2\xb2", "x|\xc2\xb2");               /* ² is a number (No) */
    QWEN2("\xd9\xa3\xd9\xa4", "\xd9\xa3|\xd9\xa4"); /* Arabic-Indic digits */
    QWEN2(" 1", " |1");
}

TEST(pretokenize_qwen2_symbols_take_a_space_and_trailing_line_breaks)
{
    QWEN2(" ...", " ...");
    QWEN2("...\n\nx", "...\n\n|x");
    QWEN2("a = b;\r\n", "a| =| b|;\r\n");
    QWEN2("\xf0\x9f\x99\x82!", "\xf0\x9f\x99\x82!"); /* an emoji is a symbol */
}

TEST(pretokenize_qwen2_white_space_rules)
{
    QWEN2("a\n\nb", "a|\n\n|b");                      /* \s*[\r\n]+ */
    QWEN2("a \n b", "a| \n| b");                      /* ... up to the last line break */
    QWEN2("a \t\n\n  b", "a| \t\n\n| | b");
    QWEN2("x   ", "x|   ");                           /* \s+ at the end */
    QWEN2("x   y", "x|  | y");                        /* \s+(?!\S) leaves one space to y */
    QWEN2("x \t1", "x| |\t|1");                       /* a tab does not lead a number */
    QWEN2("\xe3\x80\x80\xe3\x80\x80x", "\xe3\x80\x80|\xe3\x80\x80x");  /* U+3000 ideographic space */
}

TEST(pretokenize_invalid_bytes_split_as_symbols)
{
    QWEN2("a\xff\xfe" "b", "a|\xff\xfe|b");
    QWEN2("\xe6\x97", "\xe6\x97");                    /* a truncated sequence */
    QWEN2(" \x80", " \x80");
    GPT2("a\xc0\xafz", "a|\xc0\xaf|z");              /* an overlong slash is no slash */
}

TEST(pretokenize_llama3_groups_digits_by_three)
{
    LLAMA3("12345", "123|45");
    LLAMA3("x1234567", "x|123|456|7");
    LLAMA3("I'M here", "I|'M| here");
}

TEST(pretokenize_gpt2_rules)
{
    GPT2("Hello world", "Hello| world");
    GPT2("I'M", "I|'|M");                            /* contractions are case-sensitive */
    GPT2("I'm", "I|'m");
    GPT2("123 456", "123| 456");
    GPT2("a  b", "a| | b");
    GPT2("a\n\nb", "a|\n|\n|b");                     /* no line-break rule in GPT-2 */
    GPT2("(foo)", "(|foo|)");
    GPT2("x\t", "x|\t");
}

TEST(pretokenize_smollm_isolates_every_digit)
{
    SMOLLM("abc123", "abc|1|2|3");
    SMOLLM("Hello world! 123", "Hello| world|!| |1|2|3");
    SMOLLM("  multiple   spaces", " | multiple|  | spaces");
    SMOLLM("x  1", "x|  |1");                        /* the spaces end a fragment: \s+ takes both */
    SMOLLM("v1.2", "v|1|.|2");
}

TEST(pretokenize_pieces_cover_any_bytes)
{
    uint64_t s = 42;
    uint8_t text[300];
    for (int round = 0; round < 2000; round++) {
        size_t n = 1 + round % 299;
        for (size_t i = 0; i < n; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            text[i] = s % 5 == 0 ? (uint8_t)" \n\t'a1"[s % 6] : (uint8_t)(s >> 24);
        }
        for (int kind = APR_PRETOK_QWEN2; kind <= APR_PRETOK_SMOLLM; kind++) {
            size_t pos = 0, pieces = 0;
            while (pos < n && pieces <= n) {
                size_t end = apr_pretok_next((apr_pretok_kind)kind, text, n, pos);
                if (end <= pos || end > n) break;
                pos = end;
                pieces++;
            }
            CHECK_EQ_INT(pos, n);
        }
    }
}

TEST(pretokenize_names)
{
    CHECK_EQ_INT(apr_pretok_from_name("qwen2"), APR_PRETOK_QWEN2);
    CHECK_EQ_INT(apr_pretok_from_name("llama-bpe"), APR_PRETOK_LLAMA3);
    CHECK_EQ_INT(apr_pretok_from_name("smollm"), APR_PRETOK_SMOLLM);
    CHECK_EQ_INT(apr_pretok_from_name("gpt-2"), APR_PRETOK_GPT2);
    CHECK_EQ_INT(apr_pretok_from_name("default"), -1);
    CHECK_EQ_INT(apr_pretok_from_name(""), -1);
}
