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
  std::size_t prompt = 0;    // tokens of the prompt at KVCache::compress_prompt(); 0 at construction
};

// allocate() fills budgets[layer * kv_heads + kv_head]; the total may not exceed
// average * layers * kv_heads, and every entry must be >= 1 and <= capacity (if set).
// Runs when the cache is built (prompt = 0), and again for each layer at compress_prompt() with
// the prompt's length (then only that layer's entries are used, and the total is not capped: a
// policy may follow its paper's rounding); may throw kvc::Error on bad parameters.
template <class P>
concept BudgetPolicy = InFamily<P, family::budget> &&
    requires(const P& p, const BudgetContext& context, std::span<std::size_t> budgets) {
      p.allocate(context, budgets);
    };

}  // namespace kvc

namespace kvc {

// Head-wise budgets from scores (AdaKV): at compress_prompt(), after the selection observed the
// prompt, the budget policy may move budget between the KV heads of a layer.
//   share(scores, tokens, budgets)   scores: [kv_heads][tokens], the selection's ranking scores of
//                                    every head (ScoringHook); budgets: the layer's kv_heads
//                                    budgets, rewritten in place (same total, each >= 1).
// Configuration time: may allocate and throw kvc::Error.
template <class P>
concept ShareHook = requires(const P& p, std::span<const float> scores, std::size_t tokens,
                             std::span<std::size_t> budgets) { p.share(scores, tokens, budgets); };

}  // namespace kvc
