"""The Cache against a numpy reference, compression and memory."""
import ast
import pathlib
import runpy

import numpy as np
import pytest

import kvcompress
from conftest import REPO

SHAPE = dict(layers=2, query_heads=4, kv_heads=2, head_dim=16)


def reference_attention(keys, values, queries):
    """softmax(q K^T / sqrt(d)) V per query head, GQA, the last n tokens causal among themselves.

    keys, values: (t, kv_heads, d); queries: (n, query_heads, d), the queries of tokens t-n..t-1.
    """
    t, kv_heads, d = keys.shape
    n, query_heads, _ = queries.shape
    group = query_heads // kv_heads
    out = np.zeros(queries.shape, dtype=np.float64)
    for i in range(n):
        visible = t - n + i + 1
        for q in range(query_heads):
            h = q // group
            scores = keys[:visible, h, :].astype(np.float64) @ queries[i, q].astype(np.float64) / np.sqrt(d)
            p = np.exp(scores - scores.max())
            out[i, q] = (p / p.sum()) @ values[:visible, h, :].astype(np.float64)
    return out


def random_kv(rng, n, kv_heads=SHAPE["kv_heads"], head_dim=SHAPE["head_dim"]):
    shape = (n, kv_heads, head_dim)
    return rng.standard_normal(shape, dtype=np.float32), rng.standard_normal(shape, dtype=np.float32)


def test_full_cache_attention_matches_numpy(rng):
    cache = kvcompress.Cache("full", **SHAPE)
    keys, values = random_kv(rng, 37)
    cache.prefill(1, 0, keys[:30], values[:30])
    for t in range(30, 37):
        cache.append(1, t, keys[t], values[t])
    queries = rng.standard_normal((5, SHAPE["query_heads"], SHAPE["head_dim"]), dtype=np.float32)
    out = cache.attend(1, queries)
    assert out.shape == queries.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, reference_attention(keys, values, queries), rtol=1e-4, atol=1e-5)


def test_single_query_takes_and_returns_two_dimensions(rng):
    cache = kvcompress.Cache("full", **SHAPE)
    keys, values = random_kv(rng, 9)
    cache.prefill(0, 100, keys, values)
    query = rng.standard_normal((SHAPE["query_heads"], SHAPE["head_dim"]), dtype=np.float32)
    out = cache.attend(0, query)
    assert out.shape == query.shape
    np.testing.assert_allclose(out, reference_attention(keys, values, query[None])[0], rtol=1e-4, atol=1e-5)


def test_sizes_positions_and_tokens(rng):
    cache = kvcompress.Cache("full", **SHAPE)
    keys, values = random_kv(rng, 6)
    cache.prefill(0, 10, keys, values)
    assert cache.size(0, 1) == 6 and cache.size(1, 0) == 0
    assert cache.tokens == 6 * SHAPE["kv_heads"]
    positions = cache.positions(0, 0)
    assert positions.dtype == np.int32
    assert positions.tolist() == list(range(10, 16))
    positions[0] = -1  # a copy: the cache keeps its own
    assert cache.positions(0, 0)[0] == 10
    cache.clear()
    assert cache.tokens == 0


def test_compress_evicts_to_the_budget(rng):
    cache = kvcompress.Cache("h2o:budget=16", **SHAPE)
    for layer in range(SHAPE["layers"]):
        keys, values = random_kv(rng, 50)
        cache.prefill(layer, 0, keys, values)
    assert cache.tokens == 50 * SHAPE["layers"] * SHAPE["kv_heads"]
    cache.compress()
    assert cache.tokens == 16 * SHAPE["layers"] * SHAPE["kv_heads"]
    kept = cache.positions(0, 0)
    assert len(kept) == 16 and np.all(np.diff(kept) > 0) and kept.max() <= 49


def test_int4_memory_is_smaller_than_full(rng):
    keys, values = random_kv(rng, 64, head_dim=64)
    sizes = {}
    for stack in ("full", "int4:group=32"):
        cache = kvcompress.Cache(stack, layers=1, query_heads=2, kv_heads=2, head_dim=64, context=64)
        cache.prefill(0, 0, keys, values)
        sizes[stack] = cache.memory_bytes
    assert sizes["int4:group=32"] < sizes["full"] / 4


def test_read_only_input_is_accepted(rng):
    cache = kvcompress.Cache("full", **SHAPE)
    k, v = random_kv(rng, 1)
    k.setflags(write=False)
    cache.append(0, 0, k[0], v[0])
    assert cache.size(0, 0) == 1


def test_cache_describes_itself():
    cache = kvcompress.Cache("streaming:sinks=4,recent=60", **SHAPE, context=128)
    assert (cache.layers, cache.query_heads, cache.kv_heads, cache.head_dim, cache.context) == (2, 4, 2, 16, 128)
    assert cache.stack == "streaming:sinks=4,recent=60"
    assert "streaming" in repr(cache)


def test_components_are_listed():
    components = kvcompress.components()
    names = {c["name"] for c in components}
    assert {"full", "h2o", "int4"} <= names
    h2o = next(c for c in components if c["name"] == "h2o")
    assert h2o["family"] == "selection"
    assert "h2o" in kvcompress.describe_components()


def test_stubs_name_what_the_module_defines():
    stub = pathlib.Path(kvcompress.__file__).with_name("_core.pyi")
    tree = ast.parse(stub.read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    cache = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Cache")
    methods = {n.name for n in cache.body if isinstance(n, ast.FunctionDef)}
    assert functions == {n for n in dir(kvcompress._core) if not n.startswith("_") and n not in ("Cache", "Error")}
    assert methods - {"__init__"} == {n for n in dir(kvcompress.Cache) if not n.startswith("_")}
    assert pathlib.Path(kvcompress.__file__).with_name("py.typed").exists()


def test_quickstart_example_runs(capsys):
    runpy.run_path(str(REPO / "python" / "examples" / "quickstart.py"))
    assert capsys.readouterr().out.startswith("(8, 64) 128 ")  # one query token; 64 tokens x 2 KV heads kept
