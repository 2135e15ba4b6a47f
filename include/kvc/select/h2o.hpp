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
// Sinks: `sinks` > 0 also keeps the first `sinks` tokens of the head forever (StreamingLLM's
// attention sinks, the setting several follow-ups add to H2O); they come out of the heavy-hitter
// share. Default 0: the paper, where initial tokens stay only if their score earns it.
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
#include "kvc/select/rank.hpp"
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
  // First tokens of the head kept whatever their score (0: the paper).
  std::size_t sinks = 0;

  void validate() const {
    if (!(recent_fraction >= 0.0 && recent_fraction <= 1.0))
      fail("kvc::select::H2O", "recent_fraction = {} must be in [0, 1]", recent_fraction);
  }
  // The sinks come out of the heavy-hitter share, so every budget must hold them next to its
  // recent tokens.
  void setup(const PolicySetup& setup) const {
    validate();
    for (std::size_t i = 0; i < setup.budgets.size(); ++i)
      if (sinks > setup.budgets[i] - recent_tokens(setup.budgets[i]))
        fail("kvc::select::H2O", "sinks = {} do not fit next to the {} recent tokens in the budget {} of layer {} KV head {}",
             sinks, recent_tokens(setup.budgets[i]), setup.budgets[i], i / setup.shape.kv_heads, i % setup.shape.kv_heads);
  }

  // Tokens beyond the end of `weights` (appended after this query) are not touched.
  void on_attend(const HeadRef<H2O>& head, std::span<const float> weights) const noexcept {
    const std::span<float> scores = head.column();
    for (std::size_t i = 0; i < weights.size(); ++i) scores[i] += weights[i];
  }

  // Linear time (keep_recent_and_largest, rank.hpp). With sinks, the ranking runs over the older
  // tokens after them.
  std::size_t select(const HeadRef<H2O>& head, std::span<std::uint32_t> keep) const noexcept {
    const std::span<const float> scores = head.column();
    const auto key = [&](std::size_t i) noexcept { return order_key(scores[i]); };
    if (sinks == 0)
      return keep_recent_and_largest(head.size(), head.budget(), recent_tokens(head.budget()), key, head.scratch(), keep);
    const std::size_t n = head.size();
    const RecentSplit split = split_recent(n, head.budget(), recent_tokens(head.budget()));
    const std::size_t pinned = std::min(sinks, split.heavy);
    std::size_t held = 0;
    for (; held < pinned; ++held) keep[held] = static_cast<std::uint32_t>(held);
    const std::size_t heavy = keep_largest(
        split.older - pinned, split.heavy - pinned, [&](std::size_t i) noexcept { return key(pinned + i); },
        head.scratch(), keep.data() + held);
    for (std::size_t j = held; j < held + heavy; ++j) keep[j] += static_cast<std::uint32_t>(pinned);
    held += heavy;
    for (std::size_t i = split.older; i < n; ++i) keep[held++] = static_cast<std::uint32_t>(i);
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
};

}  // namespace kvc::select
