#pragma once
// KeyDiff: compress the prompt to its most distinctive keys, without attention.
//
//   Junyoung Park, Dalton Jones, Matthew J. Morse, Raghavv Goel, Mingu Lee, Chris Lott.
//   "KeyDiff: Key Similarity-Based KV Cache Eviction for Long-Context LLM Inference in
//   Resource-Constrained Environments". 2025, arXiv:2504.15364. Reference form: NVIDIA kvpress
//   (KeyDiffPress).
//
// The paper observes that tokens whose keys point away from the head's average key direction
// are the ones attention later picks out, so key geometry alone ranks the prompt: no attention
// weights, no observation window, and it works with attention kernels that never materialize
// weights (the kernels write no logits for it).
//
// Mechanism (KVCache::compress_prompt()): the anchor of a head is the mean of its L2-normalized
// keys; token i scores -cos(k_i, anchor) (a norm below 1e-12 counts as 1e-12, as torch's
// F.normalize; the cosine's denominator is at least 1e-8, as F.cosine_similarity). The head keeps
// its budget tokens of highest score, the keys most unlike the anchor. Ties go to the more recent
// token.
//
// Defaults: none; kvpress' KeyDiffPress has no parameter but the compression ratio (the budget
// here, a count or Options::budget_ratio), and neither keeps sinks nor a recent window. The paper
// also evicts block by block while prefilling a long prompt into a fixed cache; this is its
// prompt-once form (kvpress'). Keys are read as stored (decoded: quantized keys score as their
// rounded values; under low rank, in the projected space, where cosines are approximations).
//
// State and cost: one float per cached token per (layer, KV head), the column (it holds the
// scores at compression; nothing is recorded per token before). Compression reads every key of
// the head twice (anchor, then cosines): O(n * key_dim), then an O(n) nth_element over the
// cache's scratch; buffers of key_dim floats on the stack, no allocation.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/selection.hpp"
#include "kvc/core/error.hpp"
#include "kvc/core/head_ref.hpp"
#include "kvc/select/detail/row_buffer.hpp"
#include "kvc/select/rank.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

namespace kvc::select {

struct KeyDiff {
  using family = kvc::family::selection;
  // -cos(key, anchor) of each token, written when the prompt is compressed.
  using column = float;

  // Prompt-time selection without a window: nothing is observed, decoding does not evict.
  [[nodiscard]] std::size_t observation_window() const noexcept { return 0; }
  [[nodiscard]] bool evicts_while_decoding() const noexcept { return false; }
  void on_observe(const HeadRef<KeyDiff>&, std::span<const float>) const noexcept {}

  std::size_t select(const HeadRef<KeyDiff>& head, std::span<std::uint32_t> keep) const noexcept {
    const std::size_t n = head.size();
    const std::span<float> scores = head.column();
    score(head, scores);
    return keep_largest(n, head.budget(), [&](std::size_t i) noexcept { return order_key(scores[i]); }, head.scratch(),
                        keep.data());
  }


 private:
  // -cos(k_i, anchor) of every token of the head into out (one per token).
  static void score(const HeadRef<KeyDiff>& head, std::span<float> out) noexcept {
    const std::size_t n = head.size();
    const std::size_t d = head.key_dim();
    KVC_CONTRACT(d <= detail::max_row_dim, "KeyDiff: stored key rows longer than its buffer");
    float row[detail::max_row_dim];
    double anchor[detail::max_row_dim] = {};
    const std::span<float> k(row, d);
    for (std::size_t i = 0; i < n; ++i) {
      head.load_key(i, k);
      const double inv = 1.0 / std::max(norm(k), 1e-12);
      for (std::size_t c = 0; c < d; ++c) anchor[c] += k[c] * inv;
    }
    double anchor_norm = 0.0;
    for (std::size_t c = 0; c < d; ++c) {
      anchor[c] /= static_cast<double>(n);
      anchor_norm += anchor[c] * anchor[c];
    }
    anchor_norm = std::sqrt(anchor_norm);
    for (std::size_t i = 0; i < n; ++i) {
      head.load_key(i, k);
      double dot = 0.0;
      for (std::size_t c = 0; c < d; ++c) dot += k[c] * anchor[c];
      out[i] = static_cast<float>(-dot / std::max(norm(k) * anchor_norm, 1e-8));
    }
  }

  static double norm(std::span<const float> x) noexcept {
    double sum = 0.0;
    for (float v : x) sum += double{v} * v;
    return std::sqrt(sum);
  }
};

}  // namespace kvc::select
