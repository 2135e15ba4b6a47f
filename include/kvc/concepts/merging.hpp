#pragma once
// Merging decides what becomes of the tokens selection evicts: folded into kept tokens, or
// dropped. It only ever rewrites kept rows; the container then frees the evicted ones.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/hooks.hpp"
#include "kvc/core/head_ref.hpp"

#include <cstdint>
#include <span>

namespace kvc {

// merge(head, keep, evicted) may read any row of `head` and rewrite the rows listed in `keep`.
// Both index lists are ascending and together cover every token. Runs at compression time,
// before the compaction.
template <class P>
concept MergingPolicy = InFamily<P, family::merging> &&
    requires(P& p, const HeadRef<P>& head, std::span<const std::uint32_t> keep,
             std::span<const std::uint32_t> evicted) { p.merge(head, keep, evicted); };

}  // namespace kvc
