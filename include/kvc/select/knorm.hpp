#pragma once
// KNorm: keep the tokens whose keys have the smallest L2 norm, plus a window of recent tokens.
//
//   Alessio Devoto, Yu Zhao, Simone Scardapane, Pasquale Minervini. "A Simple and Effective L2
//   Norm-Based Strategy for KV Cache Compression". EMNLP 2024, arXiv:2406.11430. Reference code:
//   github.com/alessiodevoto/l2compress (also NVIDIA kvpress, KnormPress).
//
// The paper observes that a key's L2 norm anti-correlates with the attention the token later
// receives: low-norm keys are the attended ones. The score is known when the token is appended,
// so the policy needs no attention weights (the kernels write no logits for it).
//
// Mechanism: on_append() stores ||k|| of every token in the policy's column, from the key as
// appended (full precision, before low rank and quantization). A head over its budget b keeps its
// min(window, b) most recent tokens and, of the older ones, the b - window with the smallest key
// norm. Ties go to the more recent token.
//
// Defaults: window = 8. The paper ranks every token by its norm and has no window; ours keeps the
// newest tokens (local context) whatever their norm, at a cost of 8 tokens of each head's budget.
// window = 0 is the paper's ranking. The paper also leaves the first two layers uncompressed;
// here every layer is compressed (a budget policy can give low layers more).
//
// State and cost: one float per cached token per (layer, KV head), the cache's column for the
// policy (reserved, compacted, cleared and counted in memory_bytes() by the cache). on_append()
// is O(head_dim); select() is O(n): nth_element over the cache's per-head scratch. Neither
// allocates.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/selection.hpp"
#include "kvc/core/head_ref.hpp"
#include "kvc/select/rank.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

namespace kvc::select {

struct KNorm {
  using family = kvc::family::selection;
  // L2 norm of each token's key, storage order.
  using column = float;

  // Most recent tokens kept whatever their norm (capped at the budget).
  std::size_t window = 8;

  void on_append(const HeadRef<KNorm>& head, std::size_t row, std::span<const float> key,
                 std::span<const float>) const noexcept {
    float sum = 0.0f;
    for (float x : key) sum += x * x;
    head.column()[row] = std::sqrt(sum);
  }

  // The smallest norms among the older tokens, ties to the more recent (rank.hpp), plus the window.
  std::size_t select(const HeadRef<KNorm>& head, std::span<std::uint32_t> keep) const noexcept {
    const std::span<const float> norms = head.column();
    // Non-negative floats order like their bits; the complement ranks the smallest first.
    return keep_recent_and_largest(
        head.size(), head.budget(), window, [&](std::size_t i) noexcept { return ~std::bit_cast<std::uint32_t>(norms[i]); },
        head.scratch(), keep);
  }
};

}  // namespace kvc::select
