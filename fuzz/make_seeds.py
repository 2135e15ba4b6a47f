#!/usr/bin/env python3
"""Writes the committed seed corpora (fuzz/corpus/<target>/): small valid inputs of each format,
so the fuzzers start from files that get past the magic and header checks. Run from anywhere;
the output is deterministic."""
import pathlib
import random
import struct

root = pathlib.Path(__file__).resolve().parent / "corpus"
rng = random.Random(20261202)


def floats(n):
    return struct.pack(f"<{n}f", *(rng.uniform(-1, 1) for _ in range(n)))


def write(target, name, data):
    d = root / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


# llama2.c v0 checkpoints: 7 int32 then the weights (order: engine/include/kvc_engine/model.hpp).
def model(dim, hidden, layers, heads, kv_heads, vocab, seq_len, rope_tables):
    head = dim // heads
    kv = head * kv_heads
    n = (vocab * dim + layers * dim + layers * dim * dim + 2 * layers * kv * dim + layers * dim * dim
         + layers * dim + 3 * layers * hidden * dim + dim)
    if rope_tables:
        n += seq_len * head
    return struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab, seq_len) + floats(n)


write("model", "tiny", model(8, 12, 1, 2, 1, 16, 8, False))
write("model", "tiny_rope", model(8, 12, 2, 4, 2, 16, 8, True))


# llama2.c tokenizer.bin: int32 max_token_length, then per token f32 score, int32 length, bytes.
# The fuzz target reads its first byte as (vocab - 1) / 2 and the next two as the file length.
def tokenizer(pieces):
    body = struct.pack("<i", max(len(p) for p in pieces))
    for i, p in enumerate(pieces):
        body += struct.pack("<fi", float(-i), len(p)) + p
    return body


specials = [b"<unk>", b"<s>", b"</s>"]
byte_pieces = [b"<0x%02X>" % b for b in range(256)]
words = [b" ", b"e", b" t", b"he", b" the", b"on", b"ce", b" on", b"ce "]
for name, pieces, text in (("bytes", specials + byte_pieces + words, b"Once upon a time ~ \xc3\xa9\xf0\x9f\x98\x80"),
                           ("regression_no_byte_tokens", specials + words + [b"x"], b"the one ~")):
    file = tokenizer(pieces)
    vocab = len(pieces) if len(pieces) % 2 == 1 else len(pieces) + 1
    header = bytes([min(255, (vocab - 1) // 2)]) + struct.pack(">H", len(file))
    write("tokenizer", name, header + file + text)


# KV capture files (docs/capture-format.md).
def capture(layers, qh, kh, d, n, first, flags):
    header = b"KVCCAPT\0" + struct.pack("<IIIIIIQiI", 1, 64, layers, qh, kh, d, n, first, flags) + bytes(16)
    return header + floats(layers * n * (2 * kh + qh) * d)


write("capture", "one_layer", capture(1, 2, 1, 4, 3, 0, 1))
write("capture", "two_layers", capture(2, 4, 2, 2, 5, 17, 0))

# Stack strings: every component with and without parameters, and a few compositions.
stacks = ["full", "f16", "int8", "int4:group=8", "svd:rank=6", "streaming:sinks=4,recent=60", "h2o:budget=16",
          "pyramid:budget=16+h2o", "h2o:budget=16+d2o", "h2o:budget=16+int4:group=8", "bf16",
          "streaming:sinks=1,recent=3+int8", "pyramid:budget=8,beta=20+h2o:recent_fraction=0.5+d2o+int2"]
for i, s in enumerate(stacks):
    write("stack_spec", f"s{i:02d}", s.encode())
