#pragma once
// SnapKV: compress the prompt once, keeping the tokens its last queries attend to.
//
//   Yuhong Li, Yingbing Huang, Bowen Yang, Bharat Venkitesh, Acyr Locatelli, Hanchen Ye, Tianle
//   Cai, Patrick Lewis, Deming Chen. "SnapKV: LLM Knows What You are Looking for Before
//   Generation". NeurIPS 2024, arXiv:2404.14469. Reference code: github.com/FasterDecoding/SnapKV
//   (snapkv_utils.py, SnapKVCluster.update_kv); also NVIDIA kvpress (SnapKVPress).
//
// The heads' attention during generation is already visible in the attention of the prompt's
// last queries (the observation window), so the prompt is compressed once, after prefill.
//
// Mechanism (KVCache::compress_prompt()): the prompt's last `window` queries attend every head
// (softmax over the causal prefix each sees, the query heads of a GQA group combined per
// Options::gqa_reduce: mean by default, as kvpress averages the group). on_observe() sums the
// weights each prefix token (every token before the window) receives over the window queries.
// select() pools those sums along the tokens (max pooling of width `kernel`, centred, as the
// reference's default; average pooling, with the padded zeros counted as torch's avg_pool1d
// does, as kvpress), and keeps the budget - window prefix tokens of highest pooled score plus
// the whole window. Ties go to the more recent token.
//
// Defaults: window = 32 and kernel = 5 (the reference's SnapKVCluster defaults), max pooling.
// The reference code repeats the KV heads so each query head ranks its own copy; a cache stores
// one KV head per group, so the group's weights are combined first (Options::gqa_reduce).
// Requires budget >= window (the reference asserts max_capacity_prompt - window_size > 0: it
// also allows budget = window, keeping only the window) and window <= prompt; a prompt that fits
// the budget is not compressed. Decoding then appends without evicting.
//
// State and cost: one float per cached token per (layer, KV head), the column. Compression
// costs window queries over the prompt per head (the kernel's logits and one softmax pass), then
// O(n * kernel) pooling and an O(n) nth_element over the cache's scratch; no allocation.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/selection.hpp"
#include "kvc/concepts/setup.hpp"
#include "kvc/core/error.hpp"
#include "kvc/core/head_ref.hpp"
#include "kvc/select/rank.hpp"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

namespace kvc::select {

enum class Pooling { max, avg };

struct SnapKV {
  using family = kvc::family::selection;
  // Attention each token received from the observation window; 0 for the window itself.
  using column = float;

  // The prompt's last queries that score it; their tokens are always kept.
  std::size_t window = 32;
  // Width of the pooling along tokens: odd, so that it is centred (padding kernel / 2).
  std::size_t kernel = 5;
  Pooling pooling = Pooling::max;

  static constexpr std::size_t max_kernel = 63;

  void validate() const {
    if (window == 0) fail("kvc::select::SnapKV", "window must be >= 1 query");
    if (kernel == 0 || kernel % 2 == 0 || kernel > max_kernel)
      fail("kvc::select::SnapKV", "kernel = {} must be odd and in [1, {}]", kernel, max_kernel);
  }
  void setup(const PolicySetup& setup) const {
    validate();
    for (std::size_t i = 0; i < setup.budgets.size(); ++i)
      if (setup.budgets[i] < window)
        fail("kvc::select::SnapKV", "budget {} of layer {} KV head {} cannot hold the window of {} tokens",
             setup.budgets[i], i / setup.shape.kv_heads, i % setup.shape.kv_heads, window);
  }

  [[nodiscard]] std::size_t observation_window() const noexcept { return window; }
  [[nodiscard]] bool evicts_while_decoding() const noexcept { return false; }

  // Only the prefix (tokens before the window) is scored: the window is kept whatever.
  void on_observe(const HeadRef<SnapKV>& head, std::span<const float> weights) const noexcept {
    const std::size_t prefix = head.size() - window;
    const std::span<float> scores = head.column();
    for (std::size_t i = 0; i < prefix; ++i) scores[i] += weights[i];
  }

  std::size_t select(const HeadRef<SnapKV>& head, std::span<std::uint32_t> keep) const noexcept {
    const std::size_t n = head.size();
    const RecentSplit s = split_recent(n, head.budget(), window);
    // The column is pooled in place (it is not used after the prompt's compression) when it is
    // ranked at all; non-negative floats order like their bits.
    const std::span<float> scores = head.column().first(s.older);
    if (s.heavy > 0 && s.heavy < s.older) pool(scores);
    return keep_recent_and_largest(
        n, head.budget(), window, [&](std::size_t i) noexcept { return std::bit_cast<std::uint32_t>(scores[i]); },
        head.scratch(), keep);
  }

  // What select() ranks by, for head-wise budgets (AdaKV): the pooled prefix scores, and the
  // largest float for the window (always kept, as kvpress pads the window with the top score).
  void scores(const HeadRef<SnapKV>& head, std::span<float> out) const noexcept {
    const std::size_t prefix = head.size() - std::min(window, head.size());
    const std::span<const float> sums = head.column();
    std::copy(sums.begin(), sums.begin() + static_cast<std::ptrdiff_t>(prefix), out.begin());
    pool(out.first(prefix));
    std::fill(out.begin() + static_cast<std::ptrdiff_t>(prefix), out.end(), std::numeric_limits<float>::max());
  }

  // In place: token i gets the max of [i - kernel/2, i + kernel/2] clipped to the prefix, or
  // that range's sum over kernel (avg: padded positions count as zeros, as torch's avg_pool1d).
  // The originals the window still needs on the left are kept in a ring of kernel/2 values.
  void pool(std::span<float> scores) const noexcept {
    const std::size_t half = kernel / 2;
    const std::size_t n = scores.size();
    float left[max_kernel / 2 + 1] = {};
    for (std::size_t i = 0; i < n; ++i) {
      const float original = scores[i];
      float v = original;
      for (std::size_t t = 1; t <= half && t <= i; ++t) {
        const float x = left[(i - t) % (half + 1)];
        v = pooling == Pooling::max ? std::max(v, x) : v + x;
      }
      for (std::size_t t = i + 1; t < n && t <= i + half; ++t)
        v = pooling == Pooling::max ? std::max(v, scores[t]) : v + scores[t];
      left[i % (half + 1)] = original;
      scores[i] = pooling == Pooling::avg ? v / static_cast<float>(kernel) : v;
    }
  }
};

}  // namespace kvc::select
