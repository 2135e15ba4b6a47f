#pragma once
// ChunkKV: compress the prompt in whole chunks of consecutive tokens, ranked by the attention of
// the prompt's last queries.
//
//   Xiang Liu, Zhenheng Tang, Peijie Dong, Zeyu Li, Yue Liu, Bo Li, Xuming Hu, Xiaowen Chu.
//   "ChunkKV: Semantic-Preserving KV Cache Compression for Efficient Long-Context LLM
//   Inference". NeurIPS 2025, arXiv:2502.00299. Reference forms: the ChunkKVCluster of the
//   KVCache-Factory code base the paper's experiments use, and NVIDIA kvpress (ChunkKVPress).
//
// Token-level selection keeps the scattered heavy tokens of a phrase and drops the words around
// them; keeping whole chunks of consecutive tokens keeps the phrase, at the same budget.
//
// Mechanism (KVCache::compress_prompt()): the prompt's last `window` queries attend every head
// (softmax over the causal prefix each sees, the query heads of a GQA group combined per
// Options::gqa_reduce, mean by default). on_observe() sums the weights each prefix token (every
// token before the window) receives, as SnapKV does. The prefix is cut into chunks of `chunk`
// tokens from its start (the last one shorter when the prefix does not divide); a chunk scores
// the sum of its tokens' weights. The head keeps the floor((budget - window) / chunk) chunks of
// highest score, whole, plus the window. Ties go to the more recent chunk.
//
// Budget remainder: (budget - window) mod chunk tokens of the budget stay unused, and a kept
// shorter last chunk leaves its missing tokens unused too (the reference's rule: it keeps whole
// chunks only, K = (budget - window) // chunk of them). So a head keeps at most its budget and
// at least budget - chunk + 1 tokens, minus the short chunk's gap; decoding then grows it.
//
// Defaults: chunk = 10 and window = 32 (the paper's chunk size; the reference's window), no
// pooling of the weights (the reference sums the window's weights per token as they are).
// kvpress' ChunkKVPress differs: chunk 20, the chunk's mean over any scorer's scores (a pooled
// SnapKV), and one choice of chunks shared by all heads of a layer; here each KV head chooses its
// own chunks, as the reference does per head. The paper's layer-wise index reuse (a layer keeps
// the chunks a lower layer chose) is not implemented: every layer chooses from its own weights.
// Requires budget >= window and window <= prompt (as SnapKV); a prompt that fits the budget is
// not compressed. Decoding then appends without evicting.
//
// State and cost: one float per cached token per (layer, KV head), the column. Compression costs
// window queries over the prompt per head (the kernel's logits and one softmax pass), an O(n)
// pass summing the chunks in place in the column and an O(n / chunk) nth_element over the
// cache's scratch; no allocation.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/selection.hpp"
#include "kvc/concepts/setup.hpp"
#include "kvc/core/error.hpp"
#include "kvc/core/head_ref.hpp"
#include "kvc/select/rank.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

namespace kvc::select {

struct ChunkKV {
  using family = kvc::family::selection;
  // Attention each prefix token received from the window; 0 for the window itself.
  using column = float;

  // Tokens per chunk, the unit of selection.
  std::size_t chunk = 10;
  // The prompt's last queries that score it; their tokens are always kept.
  std::size_t window = 32;

  void validate() const {
    constexpr auto most = static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max());
    if (chunk == 0 || chunk > most) fail("kvc::select::ChunkKV", "chunk = {} must be in [1, {}] tokens", chunk, most);
    if (window == 0) fail("kvc::select::ChunkKV", "window must be >= 1 query");
  }
  void setup(const PolicySetup& setup) const {
    validate();
    for (std::size_t i = 0; i < setup.budgets.size(); ++i)
      if (setup.budgets[i] < window)
        fail("kvc::select::ChunkKV", "budget {} of layer {} KV head {} cannot hold the window of {} tokens",
             setup.budgets[i], i / setup.shape.kv_heads, i % setup.shape.kv_heads, window);
  }

  [[nodiscard]] std::size_t observation_window() const noexcept { return window; }
  [[nodiscard]] bool evicts_while_decoding() const noexcept { return false; }

  // Only the prefix (tokens before the window) is scored: the window is kept whatever.
  void on_observe(const HeadRef<ChunkKV>& head, std::span<const float> weights) const noexcept {
    const std::size_t prefix = head.size() - window;
    const std::span<float> scores = head.column();
    for (std::size_t i = 0; i < prefix; ++i) scores[i] += weights[i];
  }

  std::size_t select(const HeadRef<ChunkKV>& head, std::span<std::uint32_t> keep) const noexcept {
    const std::size_t n = head.size();
    const std::size_t recent = std::min(window, head.budget());
    const std::size_t prefix = n - recent;
    const std::size_t chunks = (prefix + chunk - 1) / chunk;
    const std::size_t kept_chunks = std::min((head.budget() - recent) / chunk, chunks);
    // Chunk c's sum goes to column[c]: chunk c starts at c * chunk >= c, so the sums overwrite
    // only weights already added.
    const std::span<float> scores = head.column();
    for (std::size_t c = 0; c < chunks; ++c) {
      float sum = 0.0f;
      for (std::size_t i = c * chunk; i < std::min(prefix, (c + 1) * chunk); ++i) sum += scores[i];
      scores[c] = sum;
    }
    const std::size_t picked = keep_largest(
        chunks, kept_chunks, [&](std::size_t c) noexcept { return order_key(scores[c]); }, head.scratch(), keep.data());
    // Chunk indices (ascending) to their tokens, from the last: the j-th kept chunk's tokens go
    // to keep[j * chunk...], at or after keep[j], so no index is overwritten before it is read.
    // Only the last chunk can be short, and it is the last one kept if kept at all.
    std::size_t held = 0;
    for (std::size_t j = picked; j-- > 0;) {
      const std::size_t start = keep[j] * chunk, end = std::min(prefix, start + chunk);
      for (std::size_t i = end; i-- > start;) keep[j * chunk + (i - start)] = static_cast<std::uint32_t>(i);
      held = std::max(held, j * chunk + (end - start));
    }
    for (std::size_t i = prefix; i < n; ++i) keep[held++] = static_cast<std::uint32_t>(i);
    return held;
  }
};

}  // namespace kvc::select
