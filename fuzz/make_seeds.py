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


# GGUF v3: a two-layer llama (dim 8, 2 query heads sharing 1 KV head, vocabulary 8) with a
# byte-level BPE tokenizer in its metadata; one seed with float32 tensors, one with a Q8_0
# embedding and Q4_1 projections (the block formats SmolLM2 uses).
GGUF_U32, GGUF_I32, GGUF_F32, GGUF_STRING, GGUF_ARRAY = 4, 5, 6, 8, 9
GGML_F32, GGML_F16, GGML_Q4_1, GGML_Q8_0 = 0, 1, 3, 8


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, kind, value):
    out = gguf_string(key) + struct.pack("<I", kind)
    if kind == GGUF_U32:
        return out + struct.pack("<I", value)
    if kind == GGUF_F32:
        return out + struct.pack("<f", value)
    if kind == GGUF_STRING:
        return out + gguf_string(value)
    element, items = value
    out += struct.pack("<IQ", element, len(items))
    for x in items:
        out += gguf_string(x) if element == GGUF_STRING else struct.pack("<i" if element == GGUF_I32 else "<f", x)
    return out


def f16_bits(x):
    return struct.unpack("<H", struct.pack("<e", x))[0]


def quantize(values, kind):
    if kind == GGML_F32:
        return struct.pack(f"<{len(values)}f", *values)
    out = b""
    for i in range(0, len(values), 32):
        block = values[i:i + 32]
        if kind == GGML_Q8_0:
            d = max(abs(v) for v in block) / 127 or 1.0
            out += struct.pack("<H", f16_bits(d)) + bytes((round(v / d) & 0xFF) for v in block)
        else:  # Q4_1: scale, minimum, 16 bytes of nibbles (element j low, j + 16 high)
            lo, hi = min(block), max(block)
            d = (hi - lo) / 15 or 1.0
            q = [min(15, max(0, round((v - lo) / d))) for v in block]
            out += struct.pack("<HH", f16_bits(d), f16_bits(lo)) + bytes(q[j] | q[j + 16] << 4 for j in range(16))
    return out


def tiny_llama(embedding_kind, projection_kind):
    tokens = ["<|endoftext|>", "<|im_start|>", "a", "b", "ab", "\u0120", "\u0120a", "c"]
    kvs = [gguf_kv("general.architecture", GGUF_STRING, "llama")]
    for key, value in (("block_count", 2), ("embedding_length", 32), ("feed_forward_length", 64),
                       ("attention.head_count", 2), ("attention.head_count_kv", 1), ("context_length", 64)):
        kvs.append(gguf_kv("llama." + key, GGUF_U32, value))
    kvs += [gguf_kv("llama.attention.layer_norm_rms_epsilon", GGUF_F32, 1e-5),
            gguf_kv("llama.rope.freq_base", GGUF_F32, 10000.0),
            gguf_kv("tokenizer.ggml.model", GGUF_STRING, "gpt2"),
            gguf_kv("tokenizer.ggml.pre", GGUF_STRING, "smollm"),
            gguf_kv("tokenizer.ggml.tokens", GGUF_ARRAY, (GGUF_STRING, tokens)),
            gguf_kv("tokenizer.ggml.token_type", GGUF_ARRAY, (GGUF_I32, [3, 3, 1, 1, 1, 1, 1, 1])),
            gguf_kv("tokenizer.ggml.merges", GGUF_ARRAY, (GGUF_STRING, ["a b", "\u0120 a"])),
            gguf_kv("tokenizer.ggml.bos_token_id", GGUF_U32, 0),
            gguf_kv("tokenizer.ggml.eos_token_id", GGUF_U32, 0)]
    dim, ffn, vocab, kv = 32, 64, len(tokens), 16
    tensors = [("token_embd.weight", [dim, vocab], embedding_kind)]
    for layer in range(2):
        b = f"blk.{layer}."
        tensors += [(b + "attn_norm.weight", [dim], GGML_F32), (b + "attn_q.weight", [dim, dim], projection_kind),
                    (b + "attn_k.weight", [dim, kv], projection_kind), (b + "attn_v.weight", [dim, kv], projection_kind),
                    (b + "attn_output.weight", [dim, dim], projection_kind), (b + "ffn_norm.weight", [dim], GGML_F32),
                    (b + "ffn_gate.weight", [dim, ffn], projection_kind), (b + "ffn_down.weight", [ffn, dim], projection_kind),
                    (b + "ffn_up.weight", [dim, ffn], projection_kind)]
    tensors.append(("output_norm.weight", [dim], GGML_F32))
    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs)
    infos, blobs, offset = b"", [], 0
    for name, dims, kind in tensors:
        n = 1
        for d in dims:
            n *= d
        blob = quantize([rng.uniform(-0.5, 0.5) for _ in range(n)], kind)
        infos += gguf_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        infos += struct.pack("<IQ", kind, offset)
        blobs.append(blob + bytes(-len(blob) % 32))
        offset += len(blobs[-1])
    out = header + infos
    return out + bytes(-len(out) % 32) + b"".join(blobs)


write("gguf", "tiny_llama_f32", tiny_llama(GGML_F32, GGML_F32))
write("gguf", "tiny_llama_q8_0_q4_1", tiny_llama(GGML_Q8_0, GGML_Q4_1))


# The C API fuzzer: a length byte and the stack text, the shape's bytes (2 layers, 4 query heads,
# 2 KV heads, head_dim 16), the options' two bytes, then a random program of calls.
def c_api(stack):
    text = stack.encode()
    return bytes([len(text)]) + text + bytes([2, 4, 2, 2, 1, 1]) + bytes(rng.randrange(256) for _ in range(400))


for i, stack in enumerate(["full", "h2o:budget=8+int4:group=8", "streaming:sinks=2,recent=6", "snapkv:budget=8,window=2",
                           "pyramid:budget=12+knorm+d2o", "f16"]):
    write("c_api", f"c{i:02}", c_api(stack))
