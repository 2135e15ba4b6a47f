"""Writes tests/engine/golden/tokenizer_smollm2.json: llama.cpp's token ids for texts that
exercise the byte-level BPE (accents, long numbers, contractions, emoji, CJK, Arabic, runs of
white space, code, ChatML special tokens, invalid UTF-8).

Each case stores the input as hex (the C++ test feeds these exact bytes), the UTF-8 text when the
bytes are valid UTF-8, whether special tokens were parsed, and the ids of
llm.tokenize(bytes, add_bos=False, special=parse_special).

    python3 scripts/oracle/tokenizer_golden.py
"""
import llama_cpp

import common

CASES = [
    ("empty", b"", True),
    ("word", "Hello".encode(), True),
    ("sentence", "Hello world! How are you today?".encode(), True),
    ("leading_space", " Hello".encode(), True),
    ("accents", "Café naïve façade résumé Ångström über".encode(), True),
    ("digits_short", "I have 3 cats and 12 dogs.".encode(), True),
    ("digits_long", "Pi is 3.14159265358979323846 and 1234567890123 is long.".encode(), True),
    ("numbers_mixed", "Call 555-0199 or +1 (800) 123-4567, ext. 0042; year 2024.".encode(), True),
    ("contractions", "don't can't won't I'm you're we've they'd she'll it's".encode(), True),
    ("contractions_upper", "I'LL DON'T YOU'RE WE'VE IT'S".encode(), True),
    ("quotes", "He said \"it's 'fine'\" and left.".encode(), True),
    ("emoji", "I love pizza 🍕🍕 and 😀 faces 👍🏽 👨‍👩‍👧".encode(), True),
    ("cjk", "你好，世界！这是一个测试。日本語のテキスト".encode(), True),
    ("korean", "안녕하세요 세계".encode(), True),
    ("arabic", "مرحبا بالعالم، كيف حالك؟".encode(), True),
    ("cyrillic_greek", "Привет мир. Γειά σου κόσμε.".encode(), True),
    ("spaces_run", "a  b   c    d".encode(), True),
    ("spaces_trailing", "end with spaces   ".encode(), True),
    ("spaces_only", "     ".encode(), True),
    ("tabs", "\tindented\t\ttwice\t".encode(), True),
    ("newlines", "line one\nline two\n\nline four\n\n\n".encode(), True),
    ("crlf", "windows\r\nline\r\n".encode(), True),
    ("mixed_whitespace", " \t \n \r\n  x \u00a0 y\u3000z".encode(), True),
    ("code_python", "def f(x):\n    return x ** 2  # square\n\nprint(f(3))\n".encode(), True),
    ("code_cpp", "int main() {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v[0] != 0 ? 1 : 0;\n}\n".encode(), True),
    ("json", '{"key": [1, 2.5, null], "nested": {"a": "b"}}'.encode(), True),
    ("url", "See https://example.com/path?q=1&r=two#frag for details.".encode(), True),
    ("punctuation", "Wait... what?!? (yes) [no] {maybe} <tag> @user #hash $5 %20 ^_^ ~tilde~".encode(), True),
    ("math", "∑ x² ≤ ∞ ± √2 ≠ π ∫ f(x) dx → ∂y/∂x".encode(), True),
    ("chatml", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n".encode(), True),
    ("chatml_system", "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n".encode(), True),
    ("chatml_unparsed", "<|im_start|>user\nHi<|im_end|>".encode(), False),
    ("specials_adjacent", "<|endoftext|><|im_start|><|im_end|>text<|endoftext|>".encode(), True),
    ("special_lookalike", "<|im_start |> <im_start> <|endoftext".encode(), True),
    ("repeated_letters", ("a" * 40 + " " + "ab" * 20).encode(), True),
    ("long_word", "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism".encode(), True),
    ("mixed_scripts", "English, Français, Español, Deutsch, 中文, हिन्दी, עברית, ไทย".encode(), True),
    ("combining", "e\u0301 n\u0303 a\u0308 (combining marks) Z\u0335\u0327a\u0336lgo".encode(), True),
    ("story", "Once upon a time, there was a little girl named Lily. She loved to play outside.".encode(), True),
    ("invalid_bytes", b"bad \xff\xfe bytes \xc3 end", True),
    ("lone_surrogate", b"surrogate \xed\xa0\x80 here", True),
    ("truncated_utf8", b"cut \xe2\x82", True),
]


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def main() -> None:
    path = common.model_path()
    common.check_model(path)
    llm = common.open_llama(llama_cpp, model_path=str(path), n_ctx=512, vocab_only=True, verbose=False)
    cases = []
    for name, data, special in CASES:
        ids = llm.tokenize(data, add_bos=False, special=special)
        case = {"name": name, "hex": data.hex(), "parse_special": special, "ids": ids}
        if is_utf8(data):
            case["text"] = data.decode("utf-8")
        cases.append(case)
    common.write_json("tokenizer_smollm2.json", {
        **common.provenance(llama_cpp),
        "call": "Llama.tokenize(bytes, add_bos=False, special=parse_special)",
        "cases": cases,
    })


if __name__ == "__main__":
    main()
