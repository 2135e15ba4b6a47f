#pragma once
// AdaKV: share a layer's budget across its KV heads by the selection's scores.
//
//   Yuan Feng, Junlin Lv, Yukun Cao, Xike Xie, S. Kevin Zhou. "Ada-KV: Optimizing KV Cache
//   Eviction by Adaptive Budget Allocation for Efficient LLM Inference". arXiv:2407.11550, 2024.
//   Reference code: github.com/FFY0/AdaKV; also NVIDIA kvpress (AdaKVPress).
//
// Heads differ in how concentrated their attention is: a uniform budget wastes tokens on focused
// heads and starves dispersed ones. AdaKV keeps, across all heads of a layer, the tokens of
// highest score (the selection's, e.g. SnapKV's pooled window attention), so a head's budget is
// the number of its tokens among the layer's top B (B = the layer's total budget), with a floor
// so no head collapses.
//
// Mechanism (share(), at KVCache::compress_prompt() after the selection observed the prompt):
// every head first takes its own floor(alpha * b) best tokens (b its budget before sharing:
// kvpress' alpha_safeguard); the remaining B - sum of floors go to the highest scores among
// all heads' other tokens (ties to the lower head, then the later token). The head's new budget
// is its floor plus its share; the selection then keeps that many of its best tokens (the same
// scores, so the same tokens). With SnapKV every window token scores the largest float and is
// kept first.
//
// Defaults: alpha = 0.5, the paper's safeguard; kvpress defaults to 0.2. Budgets move only
// between the heads of a layer (the total per layer is unchanged); combine with a ratio or an
// absolute average as any budget. Deviation: a head whose new budget is smaller than SnapKV's
// window keeps only its newest window tokens (the paper's floor makes this rare: alpha * b >= w
// whenever b >= w / alpha).
//
// Cost: at compression, O(kv_heads * n) scores and an nth_element over them, allocating
// kv_heads * n (score, head) pairs (configuration time). Memory: each head's store is cut to its
// own budget (per-head stores), so the layer's bytes follow the shared budgets.
#include "kvc/concepts/budget.hpp"
#include "kvc/concepts/family.hpp"
#include "kvc/core/error.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <span>
#include <utility>
#include <vector>

namespace kvc::budget {

struct AdaKV {
  using family = kvc::family::budget;

  // Share of each head's budget it keeps whatever the other heads score: in [0, 1].
  double alpha = 0.5;

  void allocate(const BudgetContext& c, std::span<std::size_t> budgets) const {
    if (!(alpha >= 0.0 && alpha <= 1.0)) fail("kvc::budget::AdaKV", "alpha = {} must be in [0, 1]", alpha);
    std::fill(budgets.begin(), budgets.end(), c.average);
  }

  void share(std::span<const float> scores, std::size_t tokens, std::span<std::size_t> budgets) const {
    const std::size_t heads = budgets.size();
    std::size_t total = 0;
    for (std::size_t b : budgets) total += b;
    if (tokens * heads <= total) {  // the prompt fits the layer: every head keeps it
      std::fill(budgets.begin(), budgets.end(), tokens);
      return;
    }
    std::vector<std::pair<float, std::size_t>> rest;  // (score, head) of the tokens past each floor
    rest.reserve(heads * tokens);
    std::vector<float> head_scores(tokens);
    std::size_t floors = 0;
    for (std::size_t h = 0; h < heads; ++h) {
      // At least one token per head, so every head keeps a budget of at least 1.
      const std::size_t floor = std::min(
          tokens, std::max<std::size_t>(1, static_cast<std::size_t>(std::floor(alpha * static_cast<double>(budgets[h])))));
      const auto s = scores.subspan(h * tokens, tokens);
      head_scores.assign(s.begin(), s.end());
      std::sort(head_scores.begin(), head_scores.end(), std::greater<>());
      for (std::size_t t = floor; t < tokens; ++t) rest.emplace_back(head_scores[t], h);
      budgets[h] = floor;
      floors += floor;
    }
    const std::size_t extra = std::min(total - std::min(total, floors), rest.size());
    const auto by_score = [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; };
    std::nth_element(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(extra), rest.end(), by_score);
    for (std::size_t j = 0; j < extra; ++j) ++budgets[rest[j].second];
  }
};

}  // namespace kvc::budget
