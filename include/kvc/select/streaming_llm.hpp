#pragma once
// StreamingLLM: attention sinks plus a sliding window.
//
//   Guangxuan Xiao, Yuandong Tian, Beidi Chen, Song Han, Mike Lewis. "Efficient Streaming Language
//   Models with Attention Sinks". ICLR 2024, arXiv:2309.17453.
//   Reference code: github.com/mit-han-lab/streaming-llm (StartRecentKVCache).
//
// A head over its budget keeps its first `sinks` tokens (the smallest positions: the "attention
// sinks" that soak up the softmax mass of queries with nothing to attend to) and the most recent
// budget - sinks tokens; everything in between is evicted. Stateless: no attention is observed.
//
// Default: sinks = 4, the paper's choice (Section 3.2 and Table 1 show that four initial tokens
// recover the perplexity of full attention; the reference code's start_size = 4). The window is
// whatever remains of each head's budget, so the policy composes with any budget policy.
//
// Positions vs slots: the container keeps each head's tokens in position order (positions
// increase on append and compaction preserves order), so the smallest positions are the first
// indices. Recency is by position too. The paper's position shift (re-numbering positions inside
// the cache) needs keys stored before RoPE; this policy only chooses tokens.
//
// Cost: select() is O(budget) time, no state, no allocation.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/selection.hpp"
#include "kvc/concepts/setup.hpp"
#include "kvc/core/head_ref.hpp"
#include "kvc/core/error.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

namespace kvc::select {

struct StreamingLLM {
  using family = kvc::family::selection;

  // Initial tokens kept forever. 0 gives a plain sliding window.
  std::size_t sinks = 4;

  // Every head's budget must leave room for at least one recent token next to the sinks.
  void setup(const PolicySetup& setup) const {
    for (std::size_t i = 0; i < setup.budgets.size(); ++i)
      if (sinks >= setup.budgets[i])
        fail("kvc::select::StreamingLLM", "sinks = {} must be smaller than the budget {} of layer {} KV head {}",
             sinks, setup.budgets[i], i / setup.shape.kv_heads, i % setup.shape.kv_heads);
  }

  std::size_t select(const HeadRef<StreamingLLM>& head, std::span<std::uint32_t> keep) const noexcept {
    const std::size_t n = head.size();
    const std::size_t b = head.budget();
    std::size_t out = 0;
    for (std::size_t i = 0; i < sinks && i < b; ++i) keep[out++] = static_cast<std::uint32_t>(i);
    const std::size_t window = b - out;
    for (std::size_t i = n - window; i < n; ++i) keep[out++] = static_cast<std::uint32_t>(i);
    return out;
  }
};

}  // namespace kvc::select
