#pragma once
// Budget allocation decides how many tokens each (layer, KV head) keeps.
#include "kvc/concepts/family.hpp"
#include "kvc/core/shape.hpp"

#include <span>

namespace kvc {

struct BudgetContext {
  Shape shape;
  std::size_t average = 0;   // Options::budget: mean tokens per (layer, KV head)
  std::size_t capacity = 0;  // Options::capacity: 0 when unbounded
};

// allocate() fills budgets[layer * kv_heads + kv_head]; the total may not exceed
// average * layers * kv_heads, and every entry must be >= 1 and <= capacity (if set).
// Runs once, when the cache is built; may throw kvc::Error on bad parameters.
template <class P>
concept BudgetPolicy = InFamily<P, family::budget> &&
    requires(const P& p, const BudgetContext& context, std::span<std::size_t> budgets) {
      p.allocate(context, budgets);
    };

}  // namespace kvc
