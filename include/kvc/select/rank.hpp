#pragma once
// The ranking every scoring selection policy ends with: keep the tokens of largest score, ties
// going to the more recent token, plus a window of the newest tokens whatever their score.
//
// Linear time: the count-th largest key is found with nth_element over the head's scratch
// (order-preserving integer keys), then one pass in storage order keeps the tokens above it and,
// of those equal to it, the most recent ones. (A heap of the kept tokens, n log budget, took
// 60 us for a head of 1K tokens under H2O: half of a decode step at slack 0.) No allocation.
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

namespace kvc::select {

// Unsigned keys in the order of the floats (negative ones flipped whole, positive ones by sign),
// so integer comparisons rank scores of either sign.
[[nodiscard]] constexpr std::uint32_t order_key(float x) noexcept {
  const auto u = std::bit_cast<std::uint32_t>(x);
  return (u & 0x80000000u) != 0 ? ~u : u | 0x80000000u;
}

// Writes to `keep`, ascending, the `count` tokens of [0, n) with the largest key(i) (a callable
// std::size_t -> std::uint32_t), ties going to the more recent token; returns min(count, n).
// `scratch` holds at least n values.
template <class Key>
std::size_t keep_largest(std::size_t n, std::size_t count, const Key& key, std::span<std::uint32_t> scratch,
                         std::uint32_t* keep) noexcept {
  count = std::min(count, n);
  if (count == n) {
    for (std::size_t i = 0; i < n; ++i) keep[i] = static_cast<std::uint32_t>(i);
    return n;
  }
  if (count == 0) return 0;
  const std::span<std::uint32_t> k = scratch.first(n);
  for (std::size_t i = 0; i < n; ++i) k[i] = key(i);
  const auto nth = k.begin() + static_cast<std::ptrdiff_t>(n - count);
  std::nth_element(k.begin(), nth, k.end());
  const std::uint32_t threshold = *nth;
  // nth_element left every key after nth >= the threshold: the ones above it are there.
  const auto above = static_cast<std::size_t>(std::count_if(nth + 1, k.end(), [&](std::uint32_t x) { return x > threshold; }));
  // Ties at the threshold go to the most recent: the first tied token kept is at `cut`.
  std::size_t ties = count - above, cut = n;
  while (ties > 0)
    if (key(--cut) == threshold) --ties;
  std::size_t held = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t ki = key(i);
    if (ki > threshold || (ki == threshold && i >= cut)) keep[held++] = static_cast<std::uint32_t>(i);
  }
  return held;
}

// How a head of n tokens splits under a budget when the newest `recent` tokens are kept whatever:
// the older tokens, and how many of them the budget leaves room for.
struct RecentSplit {
  std::size_t older;
  std::size_t heavy;
};
[[nodiscard]] constexpr RecentSplit split_recent(std::size_t n, std::size_t budget, std::size_t recent) noexcept {
  recent = std::min(recent, budget);
  const std::size_t older = n > recent ? n - recent : 0;
  return {older, std::min(budget - recent, older)};
}

// The usual decision: of the head's n tokens the newest `recent` (capped at the budget) are kept,
// and of the older ones the budget - recent of largest key. Returns how many were written.
template <class Key>
std::size_t keep_recent_and_largest(std::size_t n, std::size_t budget, std::size_t recent, const Key& key,
                                    std::span<std::uint32_t> scratch, std::span<std::uint32_t> keep) noexcept {
  const RecentSplit s = split_recent(n, budget, recent);
  std::size_t held = keep_largest(s.older, s.heavy, key, scratch, keep.data());
  for (std::size_t i = s.older; i < n; ++i) keep[held++] = static_cast<std::uint32_t>(i);
  return held;
}

}  // namespace kvc::select
