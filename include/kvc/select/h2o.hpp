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
// State and cost: one float per cached token per (layer, KV head), the accumulated score, kept by
// the cache as the policy's column (reserved, compacted, cleared and counted with the tokens).
// on_attend() is O(visible tokens) and allocation-free. select() is O(n): nth_element over the
// cache's per-head scratch, one key per older token.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/selection.hpp"
#include "kvc/concepts/setup.hpp"
#include "kvc/core/head_ref.hpp"
#include "kvc/core/error.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

namespace kvc::select {

struct H2O {
  using family = kvc::family::selection;
  // Accumulated attention of each token, storage order; 0 until a query has seen the token.
  using column = float;

  // Share of each head's budget given to the most recent tokens; the rest goes to the heavy
  // hitters. In [0, 1].
  double recent_fraction = 0.5;

  void validate() const {
    if (!(recent_fraction >= 0.0 && recent_fraction <= 1.0))
      fail("kvc::select::H2O", "recent_fraction = {} must be in [0, 1]", recent_fraction);
  }
  void setup(const PolicySetup&) const { validate(); }

  // Tokens beyond the end of `weights` (appended after this query) are not touched.
  void on_attend(const HeadRef<H2O>& head, std::span<const float> weights) const noexcept {
    const std::span<float> scores = head.column();
    for (std::size_t i = 0; i < weights.size(); ++i) scores[i] += weights[i];
  }

  // Linear time: the heavy-th largest score among the older tokens is found with nth_element
  // over order-preserving integer keys, then one pass in storage order keeps the tokens above
  // it and, of those equal to it, the most recent ones. (A heap of the heavy hitters, n log
  // budget, took 60 us for a head of 1K tokens: half of a decode step at slack 0.)
  std::size_t select(const HeadRef<H2O>& head, std::span<std::uint32_t> keep) const noexcept {
    const std::size_t n = head.size();
    const std::size_t budget = head.budget();
    const std::size_t recent = recent_tokens(budget);
    const std::size_t older = n > recent ? n - recent : 0;
    const std::size_t heavy = std::min(budget - recent, older);
    const std::span<const float> scores = head.column();
    const auto key = [&](std::size_t i) noexcept { return order_key(scores[i]); };
    std::size_t held = 0;
    if (heavy == older) {
      for (std::size_t i = 0; i < older; ++i) keep[held++] = static_cast<std::uint32_t>(i);
    } else if (heavy > 0) {
      const std::span<std::uint32_t> k = head.scratch().first(older);
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

  // The accumulated attention of every token, for merging (HeadRef::scores) and head-wise budgets.
  // The recent tokens are kept whatever their score; merging wants their attention, not a rank.
  void scores(const HeadRef<H2O>& head, std::span<float> out) const noexcept {
    const std::span<const float> sums = head.column();
    std::copy(sums.begin(), sums.end(), out.begin());
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
