"""Bad input raises a Python exception carrying the message; it never reaches the hot path."""
import numpy as np
import pytest

import kvcompress

SHAPE = dict(layers=2, query_heads=4, kv_heads=2, head_dim=8)


@pytest.fixture
def cache():
    return kvcompress.Cache("h2o:budget=16+int4:group=8", **SHAPE)


def row(value=0.5, dtype=np.float32):
    return np.full((SHAPE["kv_heads"], SHAPE["head_dim"]), value, dtype=dtype)


def rows(n, value=0.5):
    return np.full((n, SHAPE["kv_heads"], SHAPE["head_dim"]), value, dtype=np.float32)


def queries(n=1, value=0.5):
    return np.full((n, SHAPE["query_heads"], SHAPE["head_dim"]), value, dtype=np.float32)


def test_error_is_a_value_error():
    assert issubclass(kvcompress.Error, ValueError)


def test_float64_is_a_type_error(cache):
    with pytest.raises(TypeError, match="k must be float32, got float64"):
        cache.append(0, 0, row(dtype=np.float64), row())
    with pytest.raises(TypeError, match="queries must be float32"):
        cache.attend(0, queries().astype(np.float16))


def test_not_an_array_is_a_type_error(cache):
    with pytest.raises(TypeError):
        cache.append(0, 0, [[0.0] * 8] * 2, row())


def test_wrong_shape(cache):
    with pytest.raises(kvcompress.Error, match=r"v must have shape \(2, 8\), got \(2, 7\)"):
        cache.append(0, 0, row(), row()[:, :7].copy())
    with pytest.raises(kvcompress.Error, match=r"values must have shape \(3, 2, 8\), got \(4, 2, 8\)"):
        cache.prefill(0, 0, rows(3), rows(4))
    with pytest.raises(kvcompress.Error, match="keys must have shape"):
        cache.prefill(0, 0, row(), row())
    with pytest.raises(kvcompress.Error, match="queries must have shape"):
        cache.attend(0, np.zeros((3, 8), dtype=np.float32))


def test_non_contiguous_view(cache):
    transposed = np.ascontiguousarray(row().T).T  # the right shape, Fortran order
    with pytest.raises(kvcompress.Error, match="k must be C-contiguous"):
        cache.append(0, 0, transposed, row())
    strided = rows(6)[::2]
    with pytest.raises(kvcompress.Error, match="keys must be C-contiguous"):
        cache.prefill(0, 0, strided, rows(3))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(cache, bad):
    v = row()
    v[1, 3] = bad
    with pytest.raises(kvcompress.Error, match="v must be finite, element 11"):
        cache.append(0, 0, row(), v)
    k = rows(4)
    k[2, 0, 0] = bad
    with pytest.raises(kvcompress.Error, match="keys must be finite"):
        cache.prefill(0, 0, k, rows(4))
    cache.append(0, 0, row(), row())
    with pytest.raises(kvcompress.Error, match="queries must be finite"):
        cache.attend(0, queries(value=bad))
    assert cache.tokens == SHAPE["kv_heads"]  # nothing bad was stored


def test_layer_and_head_out_of_range(cache):
    with pytest.raises(kvcompress.Error, match=r"layer 2 out of range \[0, 2\)"):
        cache.append(2, 0, row(), row())
    with pytest.raises(kvcompress.Error, match="layer -1 out of range"):
        cache.prefill(-1, 0, rows(1), rows(1))
    with pytest.raises(kvcompress.Error, match="layer 5 out of range"):
        cache.attend(5, queries())
    with pytest.raises(kvcompress.Error, match=r"kv head 2 out of range \[0, 2\)"):
        cache.size(0, 2)
    with pytest.raises(kvcompress.Error, match="layer 9 out of range"):
        cache.positions(9, 0)


def test_positions_must_increase(cache):
    cache.append(0, 5, row(), row())
    with pytest.raises(kvcompress.Error, match="position 5 does not follow the last position 5 of layer 0"):
        cache.append(0, 5, row(), row())
    with pytest.raises(kvcompress.Error, match="position 3 does not follow"):
        cache.prefill(0, 3, rows(2), rows(2))
    with pytest.raises(kvcompress.Error, match="do not fit in int32"):
        cache.prefill(1, 2**31 - 2, rows(3), rows(3))
    cache.append(1, 2**31 - 1, row(), row())  # the last int32 position is fine
    assert cache.size(0, 0) == 1


def test_more_queries_than_tokens(cache):
    cache.prefill(0, 0, rows(2), rows(2))
    with pytest.raises(kvcompress.Error, match="3 queries but kv head 0 of layer 0 holds 2 tokens"):
        cache.attend(0, queries(3))
    with pytest.raises(kvcompress.Error, match="holds 0 tokens"):
        cache.attend(1, queries(1))
    with pytest.raises(kvcompress.Error, match="no token"):
        cache.attend(0, queries(0))


@pytest.mark.parametrize(
    "stack, message",
    [
        ("h2o:budget=16+h3o", "h3o"),
        ("h2o:budgte=16", "budgte"),
        ("h2o:budget=16+", "empty component"),
        ("pyramid:budget=64", "needs a selection policy"),
        ("svd:rank=4", "calibration"),  # low-rank stacks need calibration data, which Python cannot give yet
    ],
)
def test_bad_stacks(stack, message):
    with pytest.raises(kvcompress.Error, match=message):
        kvcompress.Cache(stack, **SHAPE)


def test_bad_shapes():
    with pytest.raises(kvcompress.Error, match=r"query_heads \(3\) must be a multiple of kv_heads \(2\)"):
        kvcompress.Cache("full", layers=1, query_heads=3, kv_heads=2, head_dim=8)
    with pytest.raises(kvcompress.Error, match="layers must be > 0"):
        kvcompress.Cache("full", layers=0, query_heads=2, kv_heads=2, head_dim=8)
    with pytest.raises(TypeError):
        kvcompress.Cache("full", layers=-1, query_heads=2, kv_heads=2, head_dim=8)
    with pytest.raises(TypeError):  # the shape is keyword-only
        kvcompress.Cache("full", 1, 2, 2, 8)


def test_evaluate_reports_bad_arguments():
    with pytest.raises(kvcompress.Error, match="nosuch"):
        kvcompress.evaluate(["--stack", "nosuch"])
