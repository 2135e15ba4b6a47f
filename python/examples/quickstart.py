"""kvcompress from Python in ten lines: an H2O + int4 cache on random keys and values."""
import numpy as np

import kvcompress

cache = kvcompress.Cache("h2o:budget=64+int4:group=32", layers=1, query_heads=8, kv_heads=2, head_dim=64)
rng = np.random.default_rng(0)
keys, values = (rng.standard_normal((256, 2, 64), dtype=np.float32) for _ in range(2))
cache.prefill(0, 0, keys, values)  # 256 tokens of layer 0 at positions 0..255
cache.compress()  # H2O keeps 64 tokens per KV head
out = cache.attend(0, rng.standard_normal((8, 64), dtype=np.float32))  # one query token
print(out.shape, cache.tokens, cache.memory_bytes, cache.positions(0, 0)[:8])
