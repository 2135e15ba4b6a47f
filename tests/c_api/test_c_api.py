"""The C API through Python's ctypes with numpy arrays: a second language's FFI.

Loads the shared library kvc::c (path in $KVC_C_LIBRARY, set by ctest), builds caches from
stack strings, checks their attention against exact attention written out here with numpy, and
checks that bad input comes back as a status and a message, never a crash.
"""

import ctypes
import os

import numpy as np
import pytest

OK, INVALID_ARGUMENT, OUT_OF_MEMORY, BUFFER_TOO_SMALL, INTERNAL = range(5)
LAYERS, QUERY_HEADS, KV_HEADS, HEAD_DIM = 2, 6, 2, 16
KV_ROW, Q_ROW = KV_HEADS * HEAD_DIM, QUERY_HEADS * HEAD_DIM


class Shape(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("layers", "query_heads", "kv_heads", "head_dim")]


class Options(ctypes.Structure):
    _fields_ = [("context", ctypes.c_size_t)]


F32P = ctypes.POINTER(ctypes.c_float)
SIZE = ctypes.c_size_t


@pytest.fixture(scope="module")
def lib():
    path = os.environ.get("KVC_C_LIBRARY")
    assert path, "KVC_C_LIBRARY must name the built libkvcompress_c.so (ctest sets it)"
    lib = ctypes.CDLL(path)
    sigs = {
        "kvc_last_error": ([], ctypes.c_char_p),
        "kvc_version": ([ctypes.POINTER(ctypes.c_int)] * 3, ctypes.c_int),
        "kvc_stack_parse": ([ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)], ctypes.c_int),
        "kvc_stack_describe": ([ctypes.c_void_p, ctypes.c_char_p, SIZE, ctypes.POINTER(SIZE)], ctypes.c_int),
        "kvc_stack_destroy": ([ctypes.c_void_p], ctypes.c_int),
        "kvc_cache_create": ([ctypes.POINTER(Shape), ctypes.POINTER(Options), ctypes.c_void_p,
                              ctypes.POINTER(ctypes.c_void_p)], ctypes.c_int),
        "kvc_cache_destroy": ([ctypes.c_void_p], ctypes.c_int),
        "kvc_cache_append": ([ctypes.c_void_p, SIZE, ctypes.c_int32, F32P, SIZE, F32P, SIZE], ctypes.c_int),
        "kvc_cache_prefill": ([ctypes.c_void_p, SIZE, ctypes.c_int32, F32P, SIZE, F32P, SIZE], ctypes.c_int),
        "kvc_cache_attend": ([ctypes.c_void_p, SIZE, F32P, SIZE, F32P, SIZE], ctypes.c_int),
        "kvc_cache_compress_prompt": ([ctypes.c_void_p], ctypes.c_int),
        "kvc_cache_size": ([ctypes.c_void_p, SIZE, SIZE, ctypes.POINTER(SIZE)], ctypes.c_int),
        "kvc_cache_positions": ([ctypes.c_void_p, SIZE, SIZE, ctypes.POINTER(ctypes.c_int32), SIZE,
                                 ctypes.POINTER(SIZE)], ctypes.c_int),
        "kvc_cache_memory_bytes": ([ctypes.c_void_p, ctypes.POINTER(SIZE)], ctypes.c_int),
    }
    for name, (args, result) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, result
    return lib


def ptr(array):
    return array.ctypes.data_as(F32P)


def message(lib):
    return lib.kvc_last_error().decode()


def make_cache(lib, text, context=64):
    stack = ctypes.c_void_p()
    assert lib.kvc_stack_parse(text.encode(), ctypes.byref(stack)) == OK, message(lib)
    cache = ctypes.c_void_p()
    status = lib.kvc_cache_create(ctypes.byref(Shape(LAYERS, QUERY_HEADS, KV_HEADS, HEAD_DIM)),
                                  ctypes.byref(Options(context)), stack, ctypes.byref(cache))
    lib.kvc_stack_destroy(stack)
    assert status == OK, message(lib)
    return cache


def exact_attention(q, keys, values):
    """softmax(q . k / sqrt(head_dim)) v per query head; q [QUERY_HEADS, HEAD_DIM], keys and values
    [tokens, KV_HEADS, HEAD_DIM]; query head h reads KV head h // (QUERY_HEADS // KV_HEADS)."""
    q = q.reshape(QUERY_HEADS, HEAD_DIM).astype(np.float64)
    kv = np.arange(QUERY_HEADS) // (QUERY_HEADS // KV_HEADS)
    logits = np.einsum("hd,thd->ht", q, keys[:, kv, :].astype(np.float64)) / np.sqrt(HEAD_DIM)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("ht,thd->hd", weights, values[:, kv, :].astype(np.float64)).reshape(-1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    tokens = 40
    return (rng.standard_normal((LAYERS, tokens, KV_HEADS, HEAD_DIM), dtype=np.float32),
            rng.standard_normal((LAYERS, tokens, KV_HEADS, HEAD_DIM), dtype=np.float32),
            rng.standard_normal((LAYERS, tokens, Q_ROW), dtype=np.float32))


def test_version(lib):
    parts = [ctypes.c_int(-1) for _ in range(3)]
    assert lib.kvc_version(*map(ctypes.byref, parts)) == OK
    assert all(p.value >= 0 for p in parts) and sum(p.value for p in parts) > 0


@pytest.mark.parametrize("stack, tolerance", [("full", 1e-5), ("f16", 2e-3), ("int8", 3e-2)])
def test_decoding_matches_exact_attention(lib, data, stack, tolerance):
    keys, values, queries = data
    cache = make_cache(lib, stack)
    out = np.empty(Q_ROW, dtype=np.float32)
    worst = 0.0
    for t in range(keys.shape[1]):
        for layer in range(LAYERS):
            k, v = keys[layer, t].reshape(-1), values[layer, t].reshape(-1)
            assert lib.kvc_cache_append(cache, layer, t, ptr(k), k.size, ptr(v), v.size) == OK, message(lib)
            q = queries[layer, t]
            assert lib.kvc_cache_attend(cache, layer, ptr(q), q.size, ptr(out), out.size) == OK, message(lib)
            expected = exact_attention(q, keys[layer, : t + 1], values[layer, : t + 1])
            worst = max(worst, float(np.abs(out - expected).max()))
    assert worst < tolerance
    if stack != "full":
        assert worst > 0, "a 16- or 8-bit cache should differ from f32 somewhere"
    lib.kvc_cache_destroy(cache)


def test_h2o_keeps_its_budget_and_the_recent_tokens(lib, data):
    keys, values, queries = data
    budget = 12
    cache = make_cache(lib, f"h2o:budget={budget},recent=0.5")
    out = np.empty(Q_ROW, dtype=np.float32)
    for t in range(keys.shape[1]):
        k, v, q = keys[0, t].reshape(-1), values[0, t].reshape(-1), queries[0, t]
        assert lib.kvc_cache_append(cache, 0, t, ptr(k), k.size, ptr(v), v.size) == OK
        assert lib.kvc_cache_attend(cache, 0, ptr(q), q.size, ptr(out), out.size) == OK
    positions = (ctypes.c_int32 * budget)()
    count = SIZE()
    for head in range(KV_HEADS):
        assert lib.kvc_cache_positions(cache, 0, head, positions, budget, ctypes.byref(count)) == OK
        kept = list(positions[: count.value])
        assert count.value == budget
        assert kept == sorted(kept)
        # H2O's recent half: the budget * recent last tokens are always kept.
        last = keys.shape[1] - 1
        assert kept[-budget // 2:] == list(range(last - budget // 2 + 1, last + 1))
    lib.kvc_cache_destroy(cache)


def test_prompt_compression(lib, data):
    keys, values, queries = data
    cache = make_cache(lib, "snapkv:ratio=0.25,window=4")
    prompt = 32
    out = np.empty(4 * Q_ROW, dtype=np.float32)
    for layer in range(LAYERS):
        k, v = keys[layer, :prompt].reshape(-1), values[layer, :prompt].reshape(-1)
        assert lib.kvc_cache_prefill(cache, layer, 0, ptr(k), k.size, ptr(v), v.size) == OK, message(lib)
        q = np.ascontiguousarray(queries[layer, prompt - 4: prompt].reshape(-1))
        assert lib.kvc_cache_attend(cache, layer, ptr(q), q.size, ptr(out), out.size) == OK, message(lib)
    assert lib.kvc_cache_compress_prompt(cache) == OK, message(lib)
    size = SIZE()
    assert lib.kvc_cache_size(cache, 1, 0, ctypes.byref(size)) == OK
    assert size.value == prompt // 4
    lib.kvc_cache_destroy(cache)


def test_errors_are_statuses_with_messages(lib, data):
    keys, values, _ = data
    stack = ctypes.c_void_p()
    assert lib.kvc_stack_parse(b"h2o:budget=x", ctypes.byref(stack)) == INVALID_ARGUMENT
    assert "is not a number" in message(lib) and not stack
    assert lib.kvc_stack_parse(None, ctypes.byref(stack)) == INVALID_ARGUMENT
    assert "text is NULL" in message(lib)

    cache = make_cache(lib, "full")
    k = keys[0, 0].reshape(-1)
    v = values[0, 0].reshape(-1)
    assert lib.kvc_cache_append(cache, 0, 0, ptr(k), k.size - 1, ptr(v), v.size) == INVALID_ARGUMENT
    assert "keys hold 31 floats" in message(lib)
    assert lib.kvc_cache_append(cache, LAYERS, 0, ptr(k), k.size, ptr(v), v.size) == INVALID_ARGUMENT
    assert "layer 2 out of range" in message(lib)
    nan = k.copy()
    nan[5] = np.nan
    assert lib.kvc_cache_append(cache, 0, 0, ptr(nan), k.size, ptr(v), v.size) == INVALID_ARGUMENT
    assert "keys[5]" in message(lib)
    assert lib.kvc_cache_append(cache, 0, 3, ptr(k), k.size, ptr(v), v.size) == OK
    assert lib.kvc_cache_append(cache, 0, 2, ptr(k), k.size, ptr(v), v.size) == INVALID_ARGUMENT
    assert "position 2 does not follow the last position 3" in message(lib)
    q = np.zeros(2 * Q_ROW, dtype=np.float32)
    out = np.empty(2 * Q_ROW, dtype=np.float32)
    assert lib.kvc_cache_attend(cache, 0, ptr(q), q.size, ptr(out), out.size) == INVALID_ARGUMENT
    assert "2 queries" in message(lib)
    assert lib.kvc_cache_attend(cache, 0, ptr(q), Q_ROW, ptr(out), 2 * Q_ROW) == INVALID_ARGUMENT
    assert "same size" in message(lib)
    assert lib.kvc_cache_attend(None, 0, ptr(q), Q_ROW, ptr(out), Q_ROW) == INVALID_ARGUMENT
    assert "cache is NULL" in message(lib)
    count = SIZE()
    assert lib.kvc_cache_positions(cache, 0, 0, None, 0, ctypes.byref(count)) == BUFFER_TOO_SMALL
    assert count.value == 1
    described = ctypes.create_string_buffer(4)
    assert lib.kvc_stack_parse(b"streaming", ctypes.byref(stack)) == OK
    assert lib.kvc_stack_describe(stack, described, 4, ctypes.byref(count)) == BUFFER_TOO_SMALL
    described = ctypes.create_string_buffer(count.value + 1)
    assert lib.kvc_stack_describe(stack, described, count.value + 1, ctypes.byref(count)) == OK
    assert described.value == b"streaming:sinks=4,recent=60"
    lib.kvc_stack_destroy(stack)
    nbytes = SIZE()
    assert lib.kvc_cache_memory_bytes(cache, ctypes.byref(nbytes)) == OK and nbytes.value > 0
    assert lib.kvc_cache_destroy(cache) == OK
