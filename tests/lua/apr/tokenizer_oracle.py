#!/usr/bin/env python3
"""tokenizer_oracle.py — Hugging Face `tokenizers` as the oracle of apr's tokenizer.

usage: tokenizer_oracle.py TOKENIZER_JSON SEED COUNT OUT.jsonl [SOURCE_FILE...]

Writes COUNT lines {"text": ..., "ids": [...]}: seeded random strings, half
code-like (slices of the source files given, mutated) and half text-like
(mixed scripts, emoji, combining marks, odd white space, digits of several
scripts, contractions, special-token lookalikes), and the ids that
tokenizer.json gives for each.

Two differences between tokenizer.json and the GGUF vocabulary are taken out
here so that the comparison is exact:
  - tokenizer.json normalizes to NFC; llama.cpp (and so apr) does not. Each
    text is NFC-normalized before it is written, so both see the same text.
  - The fixture's tokenizer.json (Qwen3's) declares added tokens past
    151645 (<tool_call>, <|fim_prefix|>, ...) that ggml-vocab-qwen2.gguf
    (Qwen1.5's) has as [PAD...] placeholders; they are dropped, keeping
    <|endoftext|>, <|im_start|> and <|im_end|>.
"""
import json
import random
import sys
import unicodedata

from tokenizers import Tokenizer

LAST_SHARED_ADDED_TOKEN = 151645

WORDS = ["def", "return", "if", "else", "for", "while", "local", "function", "end", "struct", "int", "char",
         "printf", "self", "None", "true", "false", "nil", "const", "static", "void", "Hello", "world",
         "HTTP", "camelCase", "snake_case", "URL", "x", "y", "i", "don't", "I'm", "we'll", "they've",
         "it's", "he'd", "YOU'RE", "'S", "'t", "'Ll", "café", "naïve", "Äpfel", "straße"]
PUNCT = list("()[]{}<>;:,.!?+-*/%=&|^~#@$\\\"'`_") + ["==", "!=", "->", "=>", "::", "...", "/*", "*/",
                                                   "//", "<=", ">=", "&&", "||", "++", "+=", "'''"]
SPACES = [" ", "  ", "    ", "\t", "\n", "\n\n", "\r\n", " \n", "\n    ", "\t\t", " \t ", "\u00a0", "\u3000",
          "\u2028", "\u0085", "\u2003", "\u000b", "\u000c", " \n\n  "]
DIGITS = ["0", "7", "42", "123", "2024", "3.14", "1e-9", "0x1F", "1,000", "\u0663\u0664", "\uff11\uff12",
          "\u00b2", "\u2167", "\u0967", "\u00bd"]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\n", "<|im_", "<|endoftext|",
            "im_end|>", "<||>", "<|im_start|><|im_end|>", "<|<|im_end|>|>"]
EMOJI = ["\U0001f642", "\U0001f999", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f44d\U0001f3fd",
         "\u2764\ufe0f", "\U0001f1ef\U0001f1f5", "\u2705", "\U0001f680"]
# Blocks assigned long before Unicode 14, whose properties no later version
# changes: Latin, Greek, Cyrillic, Armenian, Hebrew, Arabic, Devanagari,
# Thai, Georgian, Hangul Jamo, general punctuation, arrows, math, CJK,
# kana, Hangul syllables, fullwidth forms.
RANGES = [(0x00A1, 0x024F), (0x0370, 0x03FF), (0x0400, 0x04FF), (0x0531, 0x0587), (0x05D0, 0x05EA),
          (0x0600, 0x06FF), (0x0900, 0x097F), (0x0E01, 0x0E5B), (0x10A0, 0x10FF), (0x1100, 0x11FF),
          (0x2010, 0x2064), (0x2190, 0x21FF), (0x2200, 0x22FF), (0x3040, 0x30FF), (0x4E00, 0x9FCC),
          (0xAC00, 0xD7A3), (0xFF01, 0xFF9F), (0x0300, 0x036F)]


def random_char(rng):
    while True:
        lo, hi = rng.choice(RANGES)
        c = chr(rng.randint(lo, hi))
        if unicodedata.category(c) not in ("Cn", "Cs", "Co"):
            return c


def text_like(rng):
    parts = []
    for _ in range(rng.randint(1, 24)):
        r = rng.random()
        if r < 0.25:
            parts.append(rng.choice(WORDS))
        elif r < 0.45:
            parts.append("".join(random_char(rng) for _ in range(rng.randint(1, 6))))
        elif r < 0.6:
            parts.append(rng.choice(SPACES))
        elif r < 0.7:
            parts.append(rng.choice(DIGITS))
        elif r < 0.8:
            parts.append(rng.choice(PUNCT))
        elif r < 0.88:
            parts.append(rng.choice(EMOJI))
        elif r < 0.94:
            parts.append(rng.choice(SPECIALS))
        else:
            # a base letter with a run of combining marks
            parts.append(rng.choice("aeoAEnZ") + "".join(chr(rng.randint(0x0300, 0x036F))
                                                         for _ in range(rng.randint(1, 3))))
    return "".join(parts)


def code_like(rng, sources):
    if not sources:
        return text_like(rng)
    src = rng.choice(sources)
    start = rng.randrange(len(src))
    s = src[start:start + rng.randint(1, 400)]
    if rng.random() < 0.3:
        i = rng.randrange(len(s) + 1)
        s = s[:i] + text_like(rng) + s[i:]
    return s


def main():
    path, seed, count, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    sources = []
    for name in sys.argv[5:]:
        with open(name, encoding="utf-8", errors="replace") as f:
            sources.append(f.read())
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    config["added_tokens"] = [t for t in config["added_tokens"] if t["id"] <= LAST_SHARED_ADDED_TOKEN]
    tok = Tokenizer.from_str(json.dumps(config))
    rng = random.Random(seed)
    with open(out, "w", encoding="utf-8") as f:
        for i in range(count):
            text = code_like(rng, sources) if i % 2 == 0 else text_like(rng)
            text = unicodedata.normalize("NFC", text)
            ids = tok.encode(text, add_special_tokens=False).ids
            f.write(json.dumps({"text": text, "ids": ids}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
