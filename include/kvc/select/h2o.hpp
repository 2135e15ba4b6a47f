#pragma once
// H2O: heavy hitters plus recent tokens.
//
//   Zhenyu Zhang, Ying Sheng, Tianyi Zhou, Tianlong Chen, Lianmin Zheng, Ruisi Cai, Zhao Song,
//   Yuandong Tian, Christopher Ré, Clark Barrett, Zhangyang Wang, Beidi Chen. "H2O: Heavy-Hitter
//   Oracle for Efficient Generative Inference of Large Language Models". NeurIPS 2023,
//   arXiv:2306.14048. Reference code: github.com/FMInference/H2O (h2o_hf).
//
// Every token of a (layer, KV head) carries a score: the sum of the attention weights it has
// received from every query so far (prefill and decode). When the head is over its budget it
// keeps the round(budget * recent_fraction) most recent tokens plus the budget - recent tokens
// with the highest scores among the older ones (Algorithm 1 of the paper evicts one token per
// step; with compress_slack = 0 this is the same thing).
//
// Ties: between two tokens with the same accumulated score, the more recent one is kept.
//
// GQA: the container hands observe() the weights of the group's query heads combined per
// Options::gqa_reduce (mean, sum or max); the paper is MHA, where there is nothing to combine.
//
// Default: recent_fraction = 0.5. The paper's experiments split the budget evenly between heavy
// hitters and recent tokens (20% cache = 10% heavy + 10% recent; the reference scripts pass
// --heavy_ratio 0.1 --recent_ratio 0.1).
//
// State and cost: one float per cached token per (layer, KV head), reserved in setup() for the
// head's steady state (budget + compress_slack + 1 tokens, or the capacity if larger). observe()
// is O(visible tokens) and allocation-free while a head stays within that reservation; a head
// that grows past it (a long prefill, auto_compress off) grows its score array like the
// container grows its rows: amortized, during warm-up. select() is O(n): nth_element over a
// scratch array of one key per token, reserved with the scores. on_compact() gathers the scores
// of the survivors.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/selection.hpp"
#include "kvc/concepts/setup.hpp"
#include "kvc/core/error.hpp"
#include "kvc/core/shape.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace kvc::select {

namespace detail {
// H2O's per-sequence state: accumulated attention per token of each (layer, KV head).
struct H2OState {
  Shape shape{};
  std::vector<std::vector<float>> scores;
  std::vector<std::uint32_t> keys;  // select()'s scratch: one key per older token
};
}  // namespace detail

struct H2O {
  using family = kvc::family::selection;

  // Share of each head's budget given to the most recent tokens; the rest goes to the heavy
  // hitters. In [0, 1].
  double recent_fraction = 0.5;

  // Per-sequence state, owned by the policy and managed by the cache through setup(), observe(),
  // on_compact() and reset(). Not a parameter: leave it out of the initializer.
  detail::H2OState state{};

  void validate() const {
    if (!(recent_fraction >= 0.0 && recent_fraction <= 1.0))
      fail("kvc::select::H2O", "recent_fraction = {} must be in [0, 1]", recent_fraction);
  }

  void setup(const PolicySetup& setup) {
    validate();
    state.shape = setup.shape;
    state.scores.assign(setup.shape.head_count(), {});
    std::size_t largest = 0;
    for (std::size_t i = 0; i < state.scores.size(); ++i) {
      const std::size_t b = setup.budgets.empty() ? 0 : setup.budgets[i];
      state.scores[i].reserve(std::max(b + setup.compress_slack + 1, setup.capacity + 1));
      largest = std::max(largest, state.scores[i].capacity());
    }
    state.keys.reserve(largest);
  }

  // Tokens beyond the end of `weights` (appended after this query) are not touched.
  void observe(std::size_t layer, std::size_t kv_head, std::span<const float> weights) noexcept {
    auto& s = state.scores[state.shape.head_index(layer, kv_head)];
    if (s.size() < weights.size()) s.resize(weights.size(), 0.0f);
    for (std::size_t i = 0; i < weights.size(); ++i) s[i] += weights[i];
  }

  // Linear time: the heavy-th largest score among the older tokens is found with nth_element
  // over order-preserving integer keys, then one pass in storage order keeps the tokens above
  // it and, of those equal to it, the most recent ones. (A heap of the heavy hitters, n log
  // budget, took 60 us for a head of 1K tokens: half of a decode step at slack 0.)
  std::size_t select(const SelectionContext& c, std::span<std::uint32_t> keep) noexcept {
    const std::size_t n = c.positions.size();
    const std::size_t recent = recent_tokens(c.budget);
    const std::size_t older = n > recent ? n - recent : 0;
    const std::size_t heavy = std::min(c.budget - recent, older);
    const std::span<const float> s = scores(c.layer, c.kv_head);
    const auto key = [&](std::size_t i) noexcept { return order_key(i < s.size() ? s[i] : 0.0f); };
    std::size_t held = 0;
    if (heavy == older) {
      for (std::size_t i = 0; i < older; ++i) keep[held++] = static_cast<std::uint32_t>(i);
    } else if (heavy > 0) {
      auto& k = state.keys;
      k.resize(older);  // within setup()'s reservation at the steady state
      for (std::size_t i = 0; i < older; ++i) k[i] = key(i);
      const auto nth = k.begin() + static_cast<std::ptrdiff_t>(older - heavy);
      std::nth_element(k.begin(), nth, k.end());
      const std::uint32_t threshold = *nth;
      // nth_element left every key after nth >= the threshold: the ones above it are there.
      const auto above = static_cast<std::size_t>(std::count_if(nth + 1, k.end(), [&](std::uint32_t x) { return x > threshold; }));
      // Ties at the threshold go to the most recent: the first tied token kept is at `cut`.
      std::size_t ties = heavy - above, cut = older;
      while (ties > 0)
        if (key(--cut) == threshold) --ties;
      for (std::size_t i = 0; i < older; ++i) {
        const std::uint32_t ki = key(i);
        if (ki > threshold || (ki == threshold && i >= cut)) keep[held++] = static_cast<std::uint32_t>(i);
      }
    }
    for (std::size_t i = older; i < n; ++i) keep[held++] = static_cast<std::uint32_t>(i);
    return held;
  }
  void on_compact(std::size_t layer, std::size_t kv_head, std::span<const std::uint32_t> kept) noexcept {
    auto& s = state.scores[state.shape.head_index(layer, kv_head)];
    const std::size_t old = s.size();
    for (std::size_t j = 0; j < kept.size() && j < old; ++j) s[j] = kept[j] < old ? s[kept[j]] : 0.0f;
    s.resize(std::min(old, kept.size()));
  }

  void reset() noexcept {
    for (auto& s : state.scores) s.clear();
  }

  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    std::size_t bytes = state.scores.capacity() * sizeof(std::vector<float>) + state.keys.capacity() * sizeof(std::uint32_t);
    for (const auto& s : state.scores) bytes += s.capacity() * sizeof(float);
    return bytes;
  }

  // Accumulated attention of a head's tokens, storage order. Tokens appended after the last
  // observed query have no entry yet (their score is 0).
  [[nodiscard]] std::span<const float> scores(std::size_t layer, std::size_t kv_head) const noexcept {
    return state.scores[state.shape.head_index(layer, kv_head)];
  }

  // Tokens kept by recency out of a budget: round(budget * recent_fraction), halves away from 0.
  [[nodiscard]] std::size_t recent_tokens(std::size_t budget) const noexcept {
    const auto r = static_cast<std::size_t>(std::llround(static_cast<double>(budget) * recent_fraction));
    return std::min(r, budget);
  }

 private:
  // Unsigned keys in the order of the floats (negative ones flipped whole, positive ones by sign).
  static std::uint32_t order_key(float x) noexcept {
    const auto u = std::bit_cast<std::uint32_t>(x);
    return (u & 0x80000000u) != 0 ? ~u : u | 0x80000000u;
  }
};

}  // namespace kvc::select
