#pragma once
// Scissorhands: keep the tokens that stay important (persistence of importance).
//
//   Zichang Liu, Aditya Desai, Fangshuo Liao, Weitao Wang, Victor Xie, Zhaozhuo Xu, Anastasios
//   Kyrillidis, Anshumali Shrivastava. "Scissorhands: Exploiting the Persistence of Importance
//   Hypothesis for LLM KV Cache Compression at Test Time". NeurIPS 2023, arXiv:2305.17118.
//   No reference code was published.
//
// Hypothesis: a token that drew a large share of attention once keeps drawing it. Mechanism
// (the paper's Algorithm 2): over a history window of the last `history` queries, count for each
// token how many of them gave it less than the average weight 1/t (t: the tokens the query saw;
// the mean of its weights, which sum to 1). When the head is over budget, keep its `recent` newest
// tokens and, of the older ones, the budget - recent with the smallest counts ("unimportant" least
// often); ties go to the more recent token.
//
// Drop amount: the paper compresses when the cache reaches its budget and drops m tokens at once.
// Here the cache compresses when a head holds budget + Options::compress_slack + 1 tokens, down to
// the budget: compress_slack = m - 1 gives the paper's m (0: one token per step).
//
// Defaults: history = 400 queries, recent = 10 tokens, the values we read in the paper's
// experimental section; with no published code they could not be checked against one. GQA: the
// query heads of a group are combined per Options::gqa_reduce before counting (the paper is MHA).
//
// State and cost: per cached token per (layer, KV head) a column of 72 bytes: one bit per query of
// the history window (a ring of kMaxHistory = 512 bits, indexed by the query's number modulo
// `history`) and the number of the last query that saw it. on_attend() is O(visible tokens), one
// compare and one bit write per token, allocation-free; select() is an O(n) nth_element over the
// cache's scratch. The paper keeps the window's attention itself (history floats per token). A
// decode step with eviction (bench/select.cpp, 4 layers x 8 KV heads of dim 128, 4K context cut to
// budget 256, slack 0) took 539 us of CPU against H2O's 209 us, on the shared 2-core machine under
// load: the 72-byte column moved at every compaction and 8 popcounts per ranked token.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/selection.hpp"
#include "kvc/concepts/setup.hpp"
#include "kvc/core/error.hpp"
#include "kvc/core/head_ref.hpp"
#include "kvc/select/rank.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

namespace kvc::select {

struct Scissorhands {
  static constexpr std::size_t kMaxHistory = 512;

  // Per token: bit (q mod history) is set when query number q gave the token less than the
  // average weight; `last_query` numbers the queries of the head from 1 (0: not seen yet).
  struct Token {
    std::array<std::uint64_t, kMaxHistory / 64> below{};
    std::uint32_t last_query = 0;
  };

  using family = kvc::family::selection;
  using column = Token;

  // Queries over which "unimportant" is counted, in [1, kMaxHistory].
  std::size_t history = 400;
  // Most recent tokens always kept; at most every head's budget.
  std::size_t recent = 10;

  void setup(const PolicySetup& setup) const {
    if (history == 0 || history > kMaxHistory)
      fail("kvc::select::Scissorhands", "history = {} must be in [1, {}]", history, kMaxHistory);
    for (std::size_t i = 0; i < setup.budgets.size(); ++i)
      if (recent > setup.budgets[i])
        fail("kvc::select::Scissorhands", "recent = {} exceeds the budget {} of layer {} KV head {}", recent,
             setup.budgets[i], i / setup.shape.kv_heads, i % setup.shape.kv_heads);
  }

  // Every query sees the head's oldest token, so token 0 carries the number of the last query.
  void on_attend(const HeadRef<Scissorhands>& head, std::span<const float> weights) const noexcept {
    if (weights.empty()) return;
    const std::span<Token> tokens = head.column();
    const std::uint32_t query = tokens[0].last_query + 1;
    const std::size_t slot = query % history;
    const std::uint64_t bit = std::uint64_t{1} << (slot % 64);
    const float mean = 1.0f / static_cast<float>(weights.size());
    for (std::size_t i = 0; i < weights.size(); ++i) {
      std::uint64_t& word = tokens[i].below[slot / 64];
      word = weights[i] < mean ? word | bit : word & ~bit;
      tokens[i].last_query = query;
    }
  }

  // How many of the last `history` queries that saw token i gave it less than the average.
  [[nodiscard]] static std::size_t unimportant(const Token& t) noexcept {
    std::size_t count = 0;
    for (const std::uint64_t word : t.below) count += static_cast<std::size_t>(std::popcount(word));
    return count;
  }

  // Linear time (keep_recent_and_largest, rank.hpp): fewer unimportant counts rank higher.
  std::size_t select(const HeadRef<Scissorhands>& head, std::span<std::uint32_t> keep) const noexcept {
    const std::span<const Token> tokens = head.column();
    const auto key = [&](std::size_t i) noexcept { return static_cast<std::uint32_t>(kMaxHistory - unimportant(tokens[i])); };
    return keep_recent_and_largest(head.size(), head.budget(), recent, key, head.scratch(), keep);
  }
};

}  // namespace kvc::select
