#pragma once
// Selection decides which tokens of an over-budget head survive compression.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/setup.hpp"

#include <cstdint>
#include <span>

namespace kvc {

struct SelectionContext {
  std::size_t layer = 0;
  std::size_t kv_head = 0;
  std::span<const std::int32_t> positions;  // original positions of the head's tokens, storage order
  std::size_t budget = 0;                   // keep at most this many (< positions.size())
};

// select() writes the indices (into positions) of the tokens to keep, strictly ascending, into
// `keep` (room for `budget` entries) and returns how many it wrote. Runs at compression time.
template <class P>
concept SelectionPolicy = InFamily<P, family::selection> &&
    requires(P& p, const SelectionContext& context, std::span<std::uint32_t> keep) {
      { p.select(context, keep) } -> std::same_as<std::size_t>;
    };

// Optional capability: see the attention weights of every query over a head's tokens.
// `weights` has one entry per token visible to the query (storage order, a prefix of the head's
// tokens for causal chunk queries), combined over the query heads sharing the KV head
// (Options::gqa_reduce). Called during attend(), on the hot path: no allocation.
template <class P>
concept AttentionObserver =
    requires(P& p, std::size_t layer, std::size_t kv_head, std::span<const float> weights) {
      p.observe(layer, kv_head, weights);
    };

// Optional capability: keep per-token state aligned with the container's tokens. `kept` are
// the surviving indices, ascending; token kept[i] becomes token i.
template <class P>
concept CompactionAware =
    requires(P& p, std::size_t layer, std::size_t kv_head, std::span<const std::uint32_t> kept) {
      p.on_compact(layer, kv_head, kept);
    };

}  // namespace kvc
