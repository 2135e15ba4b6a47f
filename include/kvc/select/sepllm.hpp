#pragma once
// SepLLM: the initial tokens, the separators and a window of recent tokens.
//
//   Guoxuan Chen, Han Shi, Jiawei Li, Yihang Gao, Xiaozhe Ren, Yimeng Chen, Xin Jiang, Zhenguo Li,
//   Weiyang Liu, Chao Huang. "SepLLM: Accelerate Large Language Models by Compressing One Segment
//   into One Separator". ICML 2025, arXiv:2412.12094. Reference code: github.com/HKUDS/SepLLM
//   (Streaming-SepLLM, SepLLM_KVCache_Manager).
//
// Observation: attention concentrates on separator tokens (punctuation, line breaks), which
// summarize the segment they close. Mechanism (training-free streaming form): when a head is over
// its budget it keeps its first `sinks` tokens, the newest `separators` tokens tagged
// kvc::tag::separator among the older ones, and the budget - sinks - separators most recent tokens;
// everything else goes. With fewer separators than `separators` the slots stay empty, as in the
// reference (a head then holds less than its budget).
//
// Separators are tagged by the engine at append (KVCache::append's tag, KVCache::prefill's tags):
// the reference compares token ids with a per-model list of punctuation and newline tokens; kvc-eval
// tags a token whose text is made of . , ; : ! ? and whitespace with at least one of those marks or
// a line break.
//
// Defaults (the reference's SepLLM_KVCache_Manager): sinks = 4 (init_cache_size), separators = 32
// (sep_cache_size). Its local window of 224 tokens is here the rest of the budget: budget 260 gives
// it; its compression at cache_size 324 tokens is compress_slack = 63.
//
// State and cost: no column; the cache keeps one byte per token for the tags (a TagReader).
// select() is O(n) with no allocation and reads neither keys nor attention.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/selection.hpp"
#include "kvc/concepts/setup.hpp"
#include "kvc/core/error.hpp"
#include "kvc/core/head_ref.hpp"
#include "kvc/core/token_tag.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

namespace kvc::select {

struct SepLLM {
  using family = kvc::family::selection;
  static constexpr bool reads_tags = true;

  // Initial tokens kept forever (attention sinks).
  std::size_t sinks = 4;
  // Most separators kept besides the sinks and the recent window (the newest ones).
  std::size_t separators = 32;

  // Every head's budget must leave room for at least one recent token.
  void setup(const PolicySetup& setup) const {
    for (std::size_t i = 0; i < setup.budgets.size(); ++i)
      if (sinks + separators >= setup.budgets[i])
        fail("kvc::select::SepLLM", "sinks + separators = {} + {} must be smaller than the budget {} of layer {} KV head {}",
             sinks, separators, setup.budgets[i], i / setup.shape.kv_heads, i % setup.shape.kv_heads);
  }

  std::size_t select(const HeadRef<SepLLM>& head, std::span<std::uint32_t> keep) const noexcept {
    const std::size_t n = head.size();
    const std::size_t budget = std::min(head.budget(), n);
    const std::size_t first = std::min(sinks, budget);
    const std::size_t local = budget - std::min(budget, sinks + separators);
    const std::size_t older = n - local;
    const std::size_t slots = std::min(separators, budget - first - local);
    const std::span<const TokenTag> tags = head.tags();
    const auto is_separator = [&](std::size_t i) noexcept { return i < tags.size() && (tags[i] & tag::separator) != 0; };
    std::size_t held = 0;
    for (; held < first; ++held) keep[held] = static_cast<std::uint32_t>(held);
    // The newest `separators` separators between the sinks and the window start at `from`.
    std::size_t from = older, found = 0;
    while (from > first && found < slots)
      if (is_separator(--from)) ++found;
    for (std::size_t i = from; i < older; ++i)
      if (is_separator(i)) keep[held++] = static_cast<std::uint32_t>(i);
    for (std::size_t i = older; i < n; ++i) keep[held++] = static_cast<std::uint32_t>(i);
    return held;
  }
};

}  // namespace kvc::select
