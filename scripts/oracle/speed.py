"""Writes tests/engine/golden/llamacpp_speed.json: llama.cpp's speed on this machine with 2
threads, the yardstick for the engine: prefill of a 2,048-token prompt (n_batch 512) and decode
tokens/s at about 1K and 8K tokens of context (n_ctx 8192). Prompts are TinyStories text.

Wall-clock times of llm.eval(); each figure is the best of a few repetitions, because the machine
is shared (the load average at the start is recorded).

    python3 scripts/oracle/speed.py
"""
import os
import time

import llama_cpp

import common

THREADS = 2
PREFILL_TOKENS = 2048
DECODE_CONTEXTS = [1024, 8192 - 128]
DECODE_STEPS = 64
REPEATS = 3


def best_prefill(llm, ids) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        llm.reset()
        start = time.perf_counter()
        llm.eval(ids)
        best = min(best, time.perf_counter() - start)
    return len(ids) / best


def decode_rate(llm, ids, context: int) -> float:
    llm.reset()
    llm.eval(ids[:context])
    best = float("inf")
    for _ in range(REPEATS):
        # Roll back to the same context each time, so every repetition decodes at the same depth.
        llm.n_tokens = context
        llm._ctx.kv_cache_seq_rm(-1, context, -1)
        start = time.perf_counter()
        for step in range(DECODE_STEPS):
            llm.eval([ids[context + step]])
        best = min(best, time.perf_counter() - start)
    return DECODE_STEPS / best


def main() -> None:
    path = common.model_path()
    common.check_model(path)
    load = os.getloadavg()
    text = common.text_path().read_text(encoding="utf-8")
    llm = common.open_llama(llama_cpp, model_path=str(path), n_ctx=8192, n_batch=512, n_threads=THREADS,
                          n_threads_batch=THREADS, verbose=False)
    ids = llm.tokenize(text[:60000].encode(), add_bos=False, special=False)
    if len(ids) < 8192:
        raise SystemExit(f"only {len(ids)} tokens of text")
    prefill = best_prefill(llm, ids[:PREFILL_TOKENS])
    decode = {str(c): decode_rate(llm, ids, c) for c in DECODE_CONTEXTS}
    common.write_json("llamacpp_speed.json", {
        **common.provenance(llama_cpp),
        "cpu": common.cpu_model(),
        "threads": THREADS,
        "load_average_at_start": [round(x, 2) for x in load],
        "method": f"wall clock of Llama.eval, best of {REPEATS}; decode: {DECODE_STEPS} single-token "
                  "evals after a prefill to the given context",
        "prefill": {"tokens": PREFILL_TOKENS, "n_batch": 512, "tokens_per_second": round(prefill, 1)},
        "decode": {"n_ctx": 8192, "context_tokens_to_tokens_per_second":
                   {k: round(v, 1) for k, v in decode.items()}},
    })


if __name__ == "__main__":
    main()
