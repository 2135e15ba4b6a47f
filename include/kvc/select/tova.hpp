#pragma once
// TOVA (Token Omission Via Attention): keep the tokens the current query attends to most.
//
//   Matanel Oren, Michael Hassid, Nir Yarden, Yossi Adi, Roy Schwartz. "Transformers are
//   Multi-State RNNs". EMNLP 2024, arXiv:2401.06104. Reference code: github.com/schwartz-lab-NLP/TOVA;
//   also NVIDIA kvpress (TOVAPress, its prompt form).
//
// The paper treats a bounded cache as an RNN state: at each decoding step, when the cache is
// over its budget, the token with the lowest attention weight of the current query is dropped.
// Unlike H2O nothing accumulates: only the current query's weights count.
//
// Mechanism: on_attend() overwrites the column with the weights of the query that just attended
// (softmax over the tokens it sees, combined over the query heads of the GQA group per
// Options::gqa_reduce, mean by default). select() keeps the budget tokens of highest weight, ties
// to the more recent. Attention in the cache runs before compression, so the newest token is
// scored by the query of its own step, as in the paper.
//
// Prefill form: compression runs at the end of attend(), when every query of the prompt chunk
// has been observed, so the column then holds the weights of the prompt's last query: the cache
// keeps the budget tokens the last prompt query attends to most (kvpress' TOVAPress), then
// evicts one token per decoding step (compress_slack = 0) or in batches (slack > 0: the weights
// are those of the step that triggered the compression, over every held token).
//
// Deviation: the paper averages the weights over all heads of a layer and drops the same token
// from every head; this cache decides per KV head (its own budget, its own tokens), averaging
// only the query heads that share it. Defaults: none; the paper has no parameter but the budget.
//
// State and cost: one float per cached token per (layer, KV head) (the column); on_attend is
// O(n) per query, select an O(n) nth_element over the cache's scratch; no allocation.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/selection.hpp"
#include "kvc/core/head_ref.hpp"
#include "kvc/select/rank.hpp"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

namespace kvc::select {

struct TOVA {
  using family = kvc::family::selection;
  // Attention weight of each token from the last query that attended the head.
  using column = float;

  void on_attend(const HeadRef<TOVA>& head, std::span<const float> weights) const noexcept {
    const std::span<float> scores = head.column();
    std::copy(weights.begin(), weights.end(), scores.begin());
  }

  std::size_t select(const HeadRef<TOVA>& head, std::span<std::uint32_t> keep) const noexcept {
    const std::span<const float> scores = head.column();
    // Weights are >= 0: their bit patterns order like the values.
    return keep_largest(
        head.size(), head.budget(), [&](std::size_t i) noexcept { return std::bit_cast<std::uint32_t>(scores[i]); },
        head.scratch(), keep.data());
  }

  // What select() ranks by, for merging (HeadRef::scores) and head-wise budgets: the weights.
  void scores(const HeadRef<TOVA>& head, std::span<float> out) const noexcept {
    const std::span<const float> weights = head.column();
    std::copy(weights.begin(), weights.end(), out.begin());
  }
};

}  // namespace kvc::select
