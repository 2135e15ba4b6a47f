#pragma once
// Selection decides which tokens of an over-budget head survive compression.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/hooks.hpp"
#include "kvc/core/head_ref.hpp"

#include <cstdint>
#include <span>

namespace kvc {

// select(head, keep) writes the indices (into head.positions()) of the tokens to keep, strictly
// ascending, into `keep` (room for head.budget() entries, fewer than head.size()) and returns how
// many it wrote. Runs at compression time, possibly inside attend(): noexcept, no allocation
// (head.scratch() has one uint32 per token).
template <class P>
concept SelectionPolicy = InFamily<P, family::selection> &&
    requires(P& p, const HeadRef<P>& head, std::span<std::uint32_t> keep) {
      { p.select(head, keep) } -> std::same_as<std::size_t>;
    };

}  // namespace kvc

namespace kvc {

// Optional: the scores select() ranks by, one per token of the head (higher is kept first), for a
// budget policy that shares a layer's budget across its heads (ShareHook). scratch-free.
template <class P>
concept ScoringHook = requires(const P& p, const HeadRef<P>& head, std::span<float> out) {
  { p.scores(head, out) } noexcept;
};

}  // namespace kvc
