"""kvcompress from Python: KV-cache compression stacks on numpy arrays.

    import numpy as np, kvcompress
    cache = kvcompress.Cache("h2o:budget=16+int4:group=8", layers=1, query_heads=4, kv_heads=2, head_dim=64)
    cache.prefill(0, 0, keys, values)        # (n, kv_heads, head_dim) float32
    out = cache.attend(0, queries)           # (n, query_heads, head_dim) or (query_heads, head_dim)

See docs/python.md for the API, the errors and the zero-copy rules.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from ._core import Cache, Error, describe_components, run_eval as _run_eval
from ._core import components as _components

__all__ = ["Cache", "Error", "components", "describe_components", "evaluate"]


def components() -> list[dict[str, Any]]:
    """The stack components: name, family, help and params (key, default, min, max, integer, help)."""
    return _components()


def _output_dir(args: list[str]) -> str | None:
    for i, a in enumerate(args):
        if a in ("--output-dir", "-o") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--output-dir="):
            return a.split("=", 1)[1]
    return None


def evaluate(args: list[str]) -> dict[str, Any]:
    """Runs kvc-eval in-process with its command-line arguments and returns its report.

    The result is the parsed results.json (passkey.json for --protocol passkey) plus two keys:
    "table", what kvc-eval printed, and "output_dir", the --output-dir given or None (the reports
    then go to a temporary folder, removed on return). --list, --help and --generate write
    no report: the result then holds "table" only. Raises kvcompress.Error with kvc-eval's message
    when it fails. Model files come from $KVC_MODELS_DIR unless --model/--tokenizer/--text say.
    """
    args = [str(a) for a in args]
    given = _output_dir(args)
    with tempfile.TemporaryDirectory(prefix="kvc-eval-") as scratch:
        out_dir = given if given is not None else scratch
        if given is None:
            args = args + ["--output-dir", scratch]
        code, table, err = _run_eval(args)
        if code != 0:
            raise Error(err.strip() or table.strip() or f"kvc-eval exited with code {code}")
        result: dict[str, Any] = {}
        for name in ("results.json", "passkey.json"):
            path = os.path.join(out_dir, name)
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    result = json.load(f)
                break
        result["table"] = table
        result["output_dir"] = given
        return result
