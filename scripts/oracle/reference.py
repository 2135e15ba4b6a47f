"""Writes tests/engine/golden/smollm2_reference.json: llama.cpp's forward pass on
SmolLM2-135M-Instruct (Q4_1), the reference for the engine's GGUF model.

- prompt: a fixed ChatML prompt (its ids), logits at a few positions (top-20 ids and values, the
  values at 50 fixed ids, and logsumexp over the whole vocabulary), and the greedy continuation
  (argmax of the logits, 32 tokens);
- perplexity: the first ~1K tokens of the TinyStories held-out text (no BOS), their ids and the
  mean negative log-likelihood of tokens 1..n-1 given the tokens before them.

llama.cpp multiplies Q4_1 weights by activations quantized to q8_1 (its own kernels), so an
engine that dequantizes to f32 agrees to a tolerance, not bit for bit.

    python3 scripts/oracle/reference.py
"""
import llama_cpp
import numpy as np

import common

PROMPT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWrite a short story about a small robot who finds a lost kitten in the rain "
    "and helps it get home. Keep it simple and kind, with a happy ending, in five sentences.<|im_end|>\n<|im_start|>assistant\n"
)
POSITIONS = [0, 1, 7, 31, 63]
FIXED_IDS = [int(i) for i in np.linspace(0, 49151, 50).round()]
TOP = 20
GREEDY_TOKENS = 32
PPL_TOKENS = 1024


def logsumexp(row: np.ndarray) -> float:
    m = float(row.max())
    return m + float(np.log(np.exp(row.astype(np.float64) - m).sum()))


def logits_entry(position: int, row: np.ndarray) -> dict:
    top = np.argsort(-row, kind="stable")[:TOP]
    return {
        "position": position,
        "top_ids": [int(i) for i in top],
        "top_values": [float(row[i]) for i in top],
        "fixed_values": [float(row[i]) for i in FIXED_IDS],
        "logsumexp": logsumexp(row),
    }


def main() -> None:
    path = common.model_path()
    common.check_model(path)
    llm = common.open_llama(llama_cpp, model_path=str(path), n_ctx=2048, n_batch=512, n_threads=2,
                          logits_all=True, verbose=False)

    prompt_ids = llm.tokenize(PROMPT.encode(), add_bos=False, special=True)
    if len(prompt_ids) <= max(POSITIONS):
        raise SystemExit(f"prompt has {len(prompt_ids)} tokens, need more than {max(POSITIONS)}")
    llm.reset()
    llm.eval(prompt_ids)
    scores = np.array(llm.scores[: llm.n_tokens], dtype=np.float32)
    logits = [logits_entry(p, scores[p]) for p in POSITIONS]
    greedy = []
    last = scores[len(prompt_ids) - 1]
    for _ in range(GREEDY_TOKENS):
        token = int(np.argmax(last))
        greedy.append(token)
        llm.eval([token])
        last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)

    text = common.text_path().read_text(encoding="utf-8")
    ids = llm.tokenize(text[:8000].encode(), add_bos=False, special=False)[:PPL_TOKENS]
    llm.reset()
    llm.eval(ids)
    scores = np.array(llm.scores[: llm.n_tokens], dtype=np.float64)
    nll = [logsumexp(scores[i]) - scores[i][ids[i + 1]] for i in range(len(ids) - 1)]

    common.write_json("smollm2_reference.json", {
        **common.provenance(llama_cpp),
        "note": "llama.cpp CPU backend, 2 threads, no extra buffer types (no AMX, no repacking); Q4_1 weights times q8_1-quantized activations "
                "(llama.cpp's own kernels), so compare with a tolerance",
        "prompt": {
            "text": PROMPT,
            "ids": prompt_ids,
            "logits": logits,
            "fixed_ids": FIXED_IDS,
            "greedy_continuation": greedy,
            "greedy_text": llm.detokenize(greedy).decode("utf-8", errors="replace"),
        },
        "perplexity": {
            "source": "tinystories_val.txt, first 8000 characters, first 1024 tokens, no BOS",
            "ids": ids,
            "mean_nll": float(np.mean(nll)),
            "perplexity": float(np.exp(np.mean(nll))),
            "predicted_tokens": len(nll),
        },
    })


if __name__ == "__main__":
    main()
