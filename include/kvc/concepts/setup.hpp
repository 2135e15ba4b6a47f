#pragma once
#include "kvc/core/head_ref.hpp"
#include "kvc/core/shape.hpp"

#include <cstddef>
#include <span>

namespace kvc {

struct PolicySetup {
  Shape shape;
  std::size_t capacity = 0;                // tokens per head reserved up front (0: unknown)
  std::span<const std::size_t> budgets{};  // [layer * kv_heads + kv_head]; empty when unbounded
  std::size_t key_dim = 0;                 // stored row dims (the rank under low rank)
  std::size_t value_dim = 0;
  std::size_t compress_slack = 0;          // a head holds up to budget + compress_slack + 1 tokens
  bool selection_scores = false;           // merge() sees the selection's scores (HeadRef::scores)
};

// Order of calls when a cache is built: the quantization and low-rank getters (key_format,
// rank_keys, ...) and the budget policy's allocate() first, then setup() of every policy.
// Getters must therefore validate their own parameters.

// Optional hook: called once when the cache is built (and may throw kvc::Error if the policy's
// parameters do not fit the cache, e.g. more sinks than a head's budget). A policy with a `state`
// sizes it here: setup(setup, state).
template <class P>
concept Configurable = requires(P& p, const PolicySetup& setup, state_t<P>& state) { p.setup(setup); } ||
                       requires(P& p, const PolicySetup& setup, state_t<P>& state) { p.setup(setup, state); };

// Optional hook: forget all per-sequence state (KVCache::clear): reset(state), or reset() for a
// policy that keeps its sequence in itself (test recorders).
template <class P>
concept Resettable = requires(P& p, state_t<P>& state) { p.reset(state); } || requires(P& p) { p.reset(); };

}  // namespace kvc
