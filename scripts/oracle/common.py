"""Shared helpers of the oracle scripts: where the model and the goldens are, and run facts.

The scripts run llama.cpp (through llama-cpp-python) on SmolLM2-135M-Instruct and write the
golden files that the C++ tests compare against. Tests never run them: they need the model and
llama-cpp-python, and they take minutes.
"""
import hashlib
import json
import os
import pathlib
import platform
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "engine" / "golden"
MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def model_path() -> pathlib.Path:
    """$KVC_GGUF_MODEL, else the model in $KVC_MODELS_DIR or /work/cache/models."""
    if os.environ.get("KVC_GGUF_MODEL"):
        return pathlib.Path(os.environ["KVC_GGUF_MODEL"])
    for d in (os.environ.get("KVC_MODELS_DIR"), "/work/cache/models"):
        if d and (pathlib.Path(d) / MODEL_NAME).exists():
            return pathlib.Path(d) / MODEL_NAME
    raise SystemExit(f"{MODEL_NAME} not found: set KVC_GGUF_MODEL or KVC_MODELS_DIR")


def check_model(path: pathlib.Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MODEL_SHA256:
        raise SystemExit(f"{path}: sha256 {digest}, expected {MODEL_SHA256}")


def text_path() -> pathlib.Path:
    """The TinyStories held-out text (for the perplexity and speed prompts)."""
    for d in (os.environ.get("KVC_MODELS_DIR"), "/work/shared/models"):
        if d and (pathlib.Path(d) / "tinystories_val.txt").exists():
            return pathlib.Path(d) / "tinystories_val.txt"
    raise SystemExit("tinystories_val.txt not found: set KVC_MODELS_DIR")


def cpu_model() -> str:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def open_llama(llama_cpp, **kwargs):
    """llama_cpp.Llama without llama.cpp's extra buffer types (weight repacking, AMX).

    On this machine the CPU reports AMX and llama.cpp's AMX matrix product crashes (SIGSEGV in
    ggml_backend_amx_mul_mat); Llama() does not expose use_extra_bufts, so the default model
    parameters are patched. Q4_1 then runs on ggml's plain Q4_1 x Q8_1 dot products.
    """
    import llama_cpp.llama_cpp as api

    default = api.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    api.llama_model_default_params = params
    try:
        return llama_cpp.Llama(**kwargs)
    finally:
        api.llama_model_default_params = default


def provenance(llama_cpp) -> dict:
    return {
        "model": MODEL_NAME,
        "model_sha256": MODEL_SHA256,
        "llama_cpp_python": llama_cpp.__version__,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "generator": "scripts/oracle (llama-cpp-python)",
    }


def write_json(name: str, data: dict) -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    out = GOLDEN / name
    out.write_text(json.dumps(data, indent=1, ensure_ascii=True) + "\n")
    print(f"wrote {out}")
