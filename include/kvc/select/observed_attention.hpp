#pragma once
// ObservedAttention: compress the prompt to the tokens its queries attended to most on average.
//
//   The prefill form of H2O's accumulated attention (Zhenyu Zhang et al., "H2O: Heavy-Hitter
//   Oracle for Efficient Generative Inference of Large Language Models", NeurIPS 2023,
//   arXiv:2306.14048) as NVIDIA kvpress implements it (ObservedAttentionPress).
//
// Every query of the prompt attends the tokens before it; the tokens that receive the most
// attention on average are the ones the model relies on. Unlike SnapKV's window, every prompt
// query votes, so it sees what the whole prompt used, not what its end asks for.
//
// Mechanism: on_attend() adds each query's softmax weights (the query heads of a GQA group
// combined per Options::gqa_reduce: mean by default, as kvpress averages the group) to the
// token's column while the prompt is attended. At KVCache::compress_prompt() token i (storage
// index, of n) scores its sum over the n - i queries that could see it, kvpress' average; the
// head keeps its budget tokens of highest average. Ties go to the more recent token.
//
// Defaults: none; kvpress' press has no parameter but the compression ratio (a count or
// Options::budget_ratio here). The divisor n - i assumes each prompt token's query attended once
// (what prefill does, chunked or not); a prompt whose queries were not all attended is scored as
// if the missing ones gave zero weight.
//
// Memory: kvpress asks the model for the eager attention matrix, n^2 floats per query head of a
// layer (4K-token prompt: 64 MiB per head); here the weights are folded into one float per cached
// token per (layer, KV head) as the fused kernel produces them, so nothing of size n^2 exists.
// Cost: the cache computes the weights (one softmax pass over each query's logits) for every
// attend() call, decoding included (they keep accumulating, unused, after the compression);
// select() is O(n): an nth_element over the cache's scratch; no allocation.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/selection.hpp"
#include "kvc/core/head_ref.hpp"
#include "kvc/select/rank.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

namespace kvc::select {

struct ObservedAttention {
  using family = kvc::family::selection;
  // Attention each token received, summed over the queries that attended it; at compression,
  // that sum over the number of prompt queries that could see it.
  using column = float;

  void on_attend(const HeadRef<ObservedAttention>& head, std::span<const float> weights) const noexcept {
    const std::span<float> sums = head.column();
    for (std::size_t i = 0; i < weights.size(); ++i) sums[i] += weights[i];
  }

  // Prompt-time selection: the whole prompt is observed through on_attend(), so no window is
  // kept; decoding does not evict.
  [[nodiscard]] std::size_t observation_window() const noexcept { return 0; }
  [[nodiscard]] bool evicts_while_decoding() const noexcept { return false; }
  void on_observe(const HeadRef<ObservedAttention>&, std::span<const float>) const noexcept {}

  std::size_t select(const HeadRef<ObservedAttention>& head, std::span<std::uint32_t> keep) const noexcept {
    const std::size_t n = head.size();
    const std::span<float> scores = head.column();
    for (std::size_t i = 0; i < n; ++i) scores[i] /= static_cast<float>(n - i);
    return keep_largest(n, head.budget(), [&](std::size_t i) noexcept { return order_key(scores[i]); }, head.scratch(),
                        keep.data());
  }
};

}  // namespace kvc::select
