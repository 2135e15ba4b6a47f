"""Type stubs of the native module kvcompress._core (see kvcompress/__init__.py for the package API)."""

from typing import Any

import numpy as np
import numpy.typing as npt

class Error(ValueError):
    """A kvc::Error: a bad stack, shape, value, range or position, with the library's message."""

class Cache:
    """A KV cache running one policy stack, e.g. "h2o:budget=64+int4:group=8".

    Arrays are float32 C-contiguous CPU arrays, read in place (no copy). Not thread-safe.
    """

    def __init__(
        self, stack: str, *, layers: int, query_heads: int, kv_heads: int, head_dim: int, context: int = 4096
    ) -> None: ...
    def append(self, layer: int, position: int, k: npt.NDArray[np.float32], v: npt.NDArray[np.float32]) -> None:
        """One token of `layer`: k and v are (kv_heads, head_dim); positions increase per layer."""
    def prefill(
        self, layer: int, first_position: int, keys: npt.NDArray[np.float32], values: npt.NDArray[np.float32]
    ) -> None:
        """n tokens of `layer` at first_position, first_position + 1, ...: (n, kv_heads, head_dim)."""
    def attend(self, layer: int, queries: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Attention of the last n tokens appended, causal among themselves: queries are
        (n, query_heads, head_dim) or (query_heads, head_dim); returns a new array of that shape."""
    def compress(self) -> None:
        """Evicts every head down to its budget now; a no-op without a budget."""
    def clear(self) -> None:
        """Forgets every token and every policy's per-sequence state."""
    def size(self, layer: int, head: int) -> int:
        """Tokens held by one KV head."""
    def positions(self, layer: int, head: int) -> npt.NDArray[np.int32]:
        """Positions of the tokens one KV head holds, increasing (a copy)."""
    @property
    def memory_bytes(self) -> int: ...
    @property
    def tokens(self) -> int:
        """Tokens held, summed over every (layer, KV head)."""
    @property
    def layers(self) -> int: ...
    @property
    def query_heads(self) -> int: ...
    @property
    def kv_heads(self) -> int: ...
    @property
    def head_dim(self) -> int: ...
    @property
    def context(self) -> int: ...
    @property
    def stack(self) -> str: ...

def components() -> list[dict[str, Any]]: ...
def describe_components() -> str: ...
def run_eval(args: list[str]) -> tuple[int, str, str]: ...
