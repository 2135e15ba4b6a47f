#pragma once
// LagKV: compress the prompt by how much each token stands out from the chunk after it, without
// attention.
//
//   Manlai Liang, JiaMing Zhang, Xiong Li, Jinlong Li. "LagKV: Lag-Relative Information of the KV
//   Cache Tells Which Tokens Are Important". 2025, arXiv:2504.04704. Reference form and defaults:
//   NVIDIA kvpress (LagKVPress).
//
// The prompt after its attention sinks is cut into chunks of `lag` tokens. The next chunk is the
// reference of each chunk: every channel of a token is normalized by the min and max of that
// channel over the next chunk, and a token whose normalized channels spread widely (high standard
// deviation) carries information its successors do not, so it is kept.
//
// Mechanism (KVCache::compress_prompt(), per (layer, KV head), n tokens, s = sinks, L = lag):
//  * n < s + 2L (no chunk has a successor): the first min(s, budget) tokens and the most recent
//    rest of the budget (kvpress' scores for that case: sinks 1, then rising with position).
//  * Otherwise the chunks are [s + cL, s + (c+1)L) for c < C = floor((n - s) / L); the sinks, the
//    last full chunk and the partial tail after it are always kept (score 1 in kvpress). Each
//    chunk c < C - 1 scores its tokens against chunk c + 1: for keys, x_j = (k_j - min_j) /
//    (max_j - min_j) with min/max over chunk c + 1 per channel j, the token's score the standard
//    deviation of x over the channels (unbiased, as torch's std), softmaxed over the chunk's
//    tokens; the same for values; the token's score is the mean of the two.
//  * kvpress then ranks tokens within their chunk (rank / L) and keeps the global top: every
//    chunk gives the same number of tokens, the most recent chunks one more when the remainder
//    does not divide (our tie rule: the more recent token). So each scored chunk keeps its
//    highest-scoring share of budget - sinks - kept tail, ties to the more recent token. A budget
//    that cannot hold the sinks and the tail keeps the sinks, then the most recent tokens.
//
// Defaults: sinks = 4, lag = 128 (kvpress' LagKVPress). Deviations: a channel whose reference
// chunk is constant (max = min) normalizes to 0 instead of torch's inf or NaN; kvpress'
// experimental cross_scoring (off by default) is not offered. The paper also compresses
// incrementally while decoding; this is the prompt-once form (kvpress'). Rows are read as stored
// (decoded; projected under low rank).
//
// State and cost: one float per cached token per (layer, KV head), the column (scores written at
// compression). Compression reads every key and value row twice (as a reference, then scored):
// O(n * head_dim), then one nth_element per chunk over the cache's scratch; row buffers on the
// stack, no allocation.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/selection.hpp"
#include "kvc/concepts/setup.hpp"
#include "kvc/core/error.hpp"
#include "kvc/core/head_ref.hpp"
#include "kvc/select/detail/row_buffer.hpp"
#include "kvc/select/rank.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

namespace kvc::select {

struct LagKV {
  using family = kvc::family::selection;
  // Score of each token in its chunk, written when the prompt is compressed.
  using column = float;

  // First tokens always kept (attention sinks).
  std::size_t sinks = 4;
  // Tokens per chunk; each chunk is scored against the next one.
  std::size_t lag = 128;

  void validate() const {
    // One reference token has min = max in every channel: nothing to normalize by.
    if (lag < 2) fail("kvc::select::LagKV", "lag = {} must be >= 2 tokens", lag);
    constexpr auto most = static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max());
    if (lag > most || sinks > most)
      fail("kvc::select::LagKV", "sinks = {} and lag = {} must be at most {} tokens", sinks, lag, most);
  }
  void setup(const PolicySetup&) const { validate(); }

  // Prompt-time selection without a window: nothing is observed, decoding does not evict.
  [[nodiscard]] std::size_t observation_window() const noexcept { return 0; }
  [[nodiscard]] bool evicts_while_decoding() const noexcept { return false; }
  void on_observe(const HeadRef<LagKV>&, std::span<const float>) const noexcept {}

  std::size_t select(const HeadRef<LagKV>& head, std::span<std::uint32_t> keep) const noexcept {
    const std::size_t n = head.size();
    const std::size_t budget = std::min(head.budget(), n);
    const std::size_t sink = std::min(sinks, budget);
    std::size_t held = 0;
    for (std::size_t i = 0; i < sink; ++i) keep[held++] = static_cast<std::uint32_t>(i);
    const std::size_t chunks = n >= sinks + 2 * lag ? (n - sinks) / lag : 0;
    const std::size_t scored_end = chunks > 0 ? sinks + (chunks - 1) * lag : 0;  // the kept tail starts here
    if (chunks == 0 || budget <= sinks + (n - scored_end)) {
      for (std::size_t i = n - (budget - sink); i < n; ++i) keep[held++] = static_cast<std::uint32_t>(i);
      return held;
    }
    for (std::size_t c = 0; c + 1 < chunks; ++c) score_chunk(head, sinks + c * lag);
    const std::size_t share = budget - sinks - (n - scored_end), scored = chunks - 1;
    for (std::size_t c = 0; c < scored; ++c) {
      const std::size_t quota = share / scored + (c >= scored - share % scored ? 1 : 0);
      const std::size_t first = sinks + c * lag;
      const std::span<const float> scores = head.column().subspan(first, lag);
      const std::size_t got = keep_largest(lag, quota, [&](std::size_t i) noexcept { return order_key(scores[i]); },
                                           head.scratch(), keep.data() + held);
      for (std::size_t j = held; j < held + got; ++j) keep[j] += static_cast<std::uint32_t>(first);
      held += got;
    }
    for (std::size_t i = scored_end; i < n; ++i) keep[held++] = static_cast<std::uint32_t>(i);
    return held;
  }

 private:
  // Scores of the chunk at `first` (lag tokens) against the next chunk, into the column: the
  // mean of the keys' and the values' softmaxed spreads. The values' spreads pass through the
  // scratch (as float bits) while the column holds the keys'.
  void score_chunk(const HeadRef<LagKV>& head, std::size_t first) const noexcept {
    const std::span<float> scores = head.column().subspan(first, lag);
    const std::span<std::uint32_t> scratch = head.scratch().subspan(first, lag);
    spreads(head, first, true, [&](std::size_t t, float s) { scores[t] = s; });
    const Softmax key_p = softmax_of([&](std::size_t t) { return scores[t]; });
    spreads(head, first, false, [&](std::size_t t, float s) { scratch[t] = std::bit_cast<std::uint32_t>(s); });
    const auto value = [&](std::size_t t) { return std::bit_cast<float>(scratch[t]); };
    const Softmax value_p = softmax_of(value);
    for (std::size_t t = 0; t < lag; ++t) scores[t] = static_cast<float>((key_p(scores[t]) + value_p(value(t))) / 2.0);
  }

  // softmax over the chunk's tokens: exp(x - max) / sum.
  struct Softmax {
    float top;
    double sum;
    [[nodiscard]] double operator()(float x) const noexcept { return std::exp(double{x} - top) / sum; }
  };
  template <class Get>
  Softmax softmax_of(Get get) const noexcept {
    float top = -std::numeric_limits<float>::infinity();
    for (std::size_t t = 0; t < lag; ++t) top = std::max(top, get(t));
    double sum = 0.0;
    for (std::size_t t = 0; t < lag; ++t) sum += std::exp(double{get(t)} - top);
    return {top, sum};
  }

  // For each token t of the chunk at `first`: the unbiased standard deviation over channels of
  // its key (or value) min-max normalized by the next chunk, handed to out(t, spread).
  template <class Out>
  void spreads(const HeadRef<LagKV>& head, std::size_t first, bool keys, Out out) const noexcept {
    const std::size_t d = keys ? head.key_dim() : head.value_dim();
    KVC_CONTRACT(d <= detail::max_row_dim, "LagKV: stored rows longer than its buffers");
    float row[detail::max_row_dim], lo[detail::max_row_dim], hi[detail::max_row_dim];
    const std::span<float> r(row, d);
    const auto load = [&](std::size_t i) noexcept { keys ? head.load_key(i, r) : head.load_value(i, r); };
    std::fill_n(lo, d, std::numeric_limits<float>::infinity());
    std::fill_n(hi, d, -std::numeric_limits<float>::infinity());
    for (std::size_t i = first + lag; i < first + 2 * lag; ++i) {
      load(i);
      for (std::size_t j = 0; j < d; ++j) lo[j] = std::min(lo[j], row[j]), hi[j] = std::max(hi[j], row[j]);
    }
    for (std::size_t t = 0; t < lag; ++t) {
      load(first + t);
      double sum = 0.0, sq = 0.0;
      for (std::size_t j = 0; j < d; ++j) {
        const double x = hi[j] > lo[j] ? (double{row[j]} - lo[j]) / (double{hi[j]} - lo[j]) : 0.0;
        sum += x, sq += x * x;
      }
      const double mean = sum / static_cast<double>(d);
      const double var = d > 1 ? std::max(0.0, (sq - mean * sum) / static_cast<double>(d - 1)) : 0.0;
      out(t, static_cast<float>(std::sqrt(var)));
    }
  }
};

}  // namespace kvc::select
