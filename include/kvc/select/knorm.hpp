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

  // The `heavy` smallest norms among the older tokens: nth_element over the norms' bit patterns
  // (non-negative floats order like their bits), then one pass in storage order keeps the ones
  // below the threshold and, of those equal to it, the most recent.
  std::size_t select(const HeadRef<KNorm>& head, std::span<std::uint32_t> keep) const noexcept {
    const std::size_t n = head.size();
    const std::size_t budget = head.budget();
    const std::size_t recent = std::min(window, budget);
    const std::size_t older = n > recent ? n - recent : 0;
    const std::size_t heavy = std::min(budget - recent, older);
    const std::span<const float> norms = head.column();
    const auto key = [&](std::size_t i) noexcept { return std::bit_cast<std::uint32_t>(norms[i]); };
    std::size_t held = 0;
    if (heavy == older) {
      for (std::size_t i = 0; i < older; ++i) keep[held++] = static_cast<std::uint32_t>(i);
    } else if (heavy > 0) {
      const std::span<std::uint32_t> k = head.scratch().first(older);
      for (std::size_t i = 0; i < older; ++i) k[i] = key(i);
      const auto nth = k.begin() + static_cast<std::ptrdiff_t>(heavy - 1);
      std::nth_element(k.begin(), nth, k.end());
      const std::uint32_t threshold = *nth;
      // Every key before nth is <= the threshold: the ones below it are there.
      const auto below = static_cast<std::size_t>(std::count_if(k.begin(), nth, [&](std::uint32_t x) { return x < threshold; }));
      std::size_t ties = heavy - below, cut = older;
      while (ties > 0)
        if (key(--cut) == threshold) --ties;
      for (std::size_t i = 0; i < older; ++i) {
        const std::uint32_t ki = key(i);
        if (ki < threshold || (ki == threshold && i >= cut)) keep[held++] = static_cast<std::uint32_t>(i);
      }
    }
    for (std::size_t i = older; i < n; ++i) keep[held++] = static_cast<std::uint32_t>(i);
    return held;
  }
};

}  // namespace kvc::select
