#pragma once
// Uniform: every (layer, KV head) keeps Options::budget tokens. What every eviction paper does
// unless it says otherwise (StreamingLLM, H2O, SnapKV, ...); the baseline for PyramidKV and AdaKV.
// Cost: O(layers * kv_heads) once, when the cache is built; no state.
#include "kvc/concepts/budget.hpp"
#include "kvc/concepts/family.hpp"
#include "kvc/core/error.hpp"

#include <algorithm>
#include <cstddef>
#include <span>

namespace kvc::budget {

struct Uniform {
  using family = kvc::family::budget;

  void allocate(const BudgetContext& c, std::span<std::size_t> budgets) const {
    if (c.average == 0) fail("kvc::budget::Uniform", "the average budget must be > 0 tokens per head");
    if (budgets.size() != c.shape.head_count())
      fail("kvc::budget::Uniform", "{} budget slots for {} (layer, KV head) pairs", budgets.size(),
           c.shape.head_count());
    std::fill(budgets.begin(), budgets.end(), c.average);
  }
};

}  // namespace kvc::budget
