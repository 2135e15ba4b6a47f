#pragma once
// The ranking step the prompt-time selections share: keep the k highest of a run of scores,
// ties to the more recent token, in linear time over the cache's scratch.
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

namespace kvc::select::detail {

// Unsigned keys in the order of the floats (negative ones flipped whole, positive ones by sign),
// so scores of either sign rank through integer nth_element.
[[nodiscard]] inline std::uint32_t order_key(float x) noexcept {
  const auto u = std::bit_cast<std::uint32_t>(x);
  return (u & 0x80000000u) != 0 ? ~u : u | 0x80000000u;
}

// Appends to keep[held...] the indices first + i (i < count) of the k highest scores[first + i],
// ascending; of the ones equal to the k-th highest, the highest indices. `scratch` holds at least
// `count` entries. Returns the new `held`. O(count); no allocation.
[[nodiscard]] inline std::size_t keep_highest(std::span<const float> scores, std::size_t first, std::size_t count,
                                              std::size_t k, std::span<std::uint32_t> scratch,
                                              std::span<std::uint32_t> keep, std::size_t held) noexcept {
  if (k >= count) {
    for (std::size_t i = 0; i < count; ++i) keep[held++] = static_cast<std::uint32_t>(first + i);
    return held;
  }
  if (k == 0) return held;
  const auto key = [&](std::size_t i) noexcept { return order_key(scores[first + i]); };
  const std::span<std::uint32_t> keys = scratch.first(count);
  for (std::size_t i = 0; i < count; ++i) keys[i] = key(i);
  const auto nth = keys.begin() + static_cast<std::ptrdiff_t>(count - k);
  std::nth_element(keys.begin(), nth, keys.end());
  const std::uint32_t threshold = *nth;
  // Every key after nth is >= the threshold: the ones above it are there.
  const auto above = static_cast<std::size_t>(std::count_if(nth + 1, keys.end(), [&](std::uint32_t x) { return x > threshold; }));
  std::size_t ties = k - above, cut = count;
  while (ties > 0)
    if (key(--cut) == threshold) --ties;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint32_t ki = key(i);
    if (ki > threshold || (ki == threshold && i >= cut)) keep[held++] = static_cast<std::uint32_t>(first + i);
  }
  return held;
}

}  // namespace kvc::select::detail

namespace kvc::select::detail {

// Longest stored row a selection that reads rows decodes into its stack buffers: the cache
// refuses longer stored rows when it is built (KVCache's kMaxStoredDim).
inline constexpr std::size_t max_row_dim = 1024;

}  // namespace kvc::select::detail
