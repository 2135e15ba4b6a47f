#!/usr/bin/env python3
"""Writes smollm2_f32_reference.json: SmolLM2-135M-Instruct's logits on the fixed prompt of
smollm2_reference.json, from an exact float32 forward pass written here in numpy over the weights
as the gguf Python package dequantizes them. Independent of the C++ engine and of llama.cpp
(which multiplies by 8-bit activations); tests/engine/smollm2_logits_test.cpp checks the engine
against it with a tight tolerance.

    pip install gguf numpy && python3 tests/engine/golden/make_smollm2_f32_reference.py PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import importlib.metadata
import json
import pathlib
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

here = pathlib.Path(__file__).parent
r = GGUFReader(sys.argv[1])
T = {t.name: t for t in r.tensors}
def W(name):
    t = T[name]
    a = dequantize(t.data, t.tensor_type).astype(np.float32)
    return a.reshape([int(x) for x in reversed(t.shape)]) if len(t.shape) > 1 else a.reshape(-1)
ref = json.load(open(here / 'smollm2_reference.json'))
ids = ref['prompt']['ids']
n = len(ids); dim, H, KV, hd, L = 576, 9, 3, 64, 30
emb = W('token_embd.weight')
x = emb[ids].astype(np.float32)
def rms(x, w): return (x / np.sqrt((x.astype(np.float64)**2).mean(-1, keepdims=True) + 1e-5)).astype(np.float32) * w
pos = np.arange(n)[:, None]
freq = 1.0 / (100000.0 ** (np.arange(0, hd, 2) / hd))
ang = pos * freq[None, :]
c, s = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
def rope(v, heads):
    v = v.reshape(n, heads, hd // 2, 2)
    a, b = v[..., 0], v[..., 1]
    cc, ss = c[:, None, :], s[:, None, :]
    return np.stack([a * cc - b * ss, a * ss + b * cc], -1).reshape(n, heads * hd)
mask = np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1)
for l in range(L):
    p = f'blk.{l}.'
    h = rms(x, W(p + 'attn_norm.weight'))
    q = rope(h @ W(p + 'attn_q.weight').T, H); k = rope(h @ W(p + 'attn_k.weight').T, KV); v = h @ W(p + 'attn_v.weight').T
    out = np.zeros((n, dim), np.float32)
    for hh in range(H):
        kh = hh // 3
        sc = q[:, hh*hd:(hh+1)*hd] @ k[:, kh*hd:(kh+1)*hd].T / np.sqrt(hd) + mask
        sc = np.exp(sc - sc.max(-1, keepdims=True)); sc /= sc.sum(-1, keepdims=True)
        out[:, hh*hd:(hh+1)*hd] = sc @ v[:, kh*hd:(kh+1)*hd]
    x = x + out @ W(p + 'attn_output.weight').T
    h = rms(x, W(p + 'ffn_norm.weight'))
    g = h @ W(p + 'ffn_gate.weight').T; u = h @ W(p + 'ffn_up.weight').T
    x = x + ((g / (1 + np.exp(-g))) * u) @ W(p + 'ffn_down.weight').T
x = rms(x, W('output_norm.weight'))
logits = x @ emb.T
out = {
    "generator": "tests/engine/golden/make_smollm2_f32_reference.py (numpy %s, gguf %s)"
    % (np.__version__, importlib.metadata.version("gguf")),
    "note": "float32 forward pass over the dequantized weights; RoPE on adjacent pairs, base 100000; "
    "ids, positions and token ids to compare from smollm2_reference.json",
    "positions": [],
}
for at in ref["prompt"]["logits"]:
    p = at["position"]
    wanted = at["top_ids"] + ref["prompt"]["fixed_ids"]
    out["positions"].append({"position": p, "ids": wanted, "values": [float(logits[p, t]) for t in wanted]})
(here / "smollm2_f32_reference.json").write_text(json.dumps(out, indent=1) + "\n")
print("wrote", here / "smollm2_f32_reference.json")
