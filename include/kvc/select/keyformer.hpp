#pragma once
// Keyformer: key tokens by accumulated Gumbel-softmax attention, plus the most recent tokens.
//
//   Muhammad Adnan, Akhil Arunkumar, Gaurav Jain, Prashant J. Nair, Ilya Soloveychik, Purushotham
//   Kamath. "Keyformer: KV Cache Reduction through Key Tokens Selection for Efficient Generative
//   Inference". MLSys 2024, arXiv:2403.09054. Reference code: github.com/d-matrix-ai/keyformer-llm.
//
// Mechanism: every query adds to each token it sees the Gumbel softmax of its logits,
// softmax((logit_i + g_i) / tau), g_i ~ Gumbel(0, 1); when the head is over its budget it keeps the
// round(budget * recent_fraction) newest tokens and the rest of the budget by the largest
// accumulated score (ties to the more recent). The noise regularizes the scores of tokens that
// were discarded and can no longer collect attention; the temperature grows over the generation,
// tau = tau_init + c * tau_delta, c the number of attend() calls on the head before this one (the
// prompt, attended in one call, uses tau_init; decoding step k uses tau_init + k * tau_delta),
// capped at tau_end.
//
// Logits: the hooks hand softmax weights w_i = exp(logit_i - m) / l, not logits. log(w_i) is the
// logit up to the per-query constant m + log(l), which the softmax removes, so the Gumbel softmax
// of log(w) is exactly that of the logits; no core change was needed. Where w_i underflowed to 0
// (its logit more than ~103 below the query's largest), log gives -inf and the token adds 0 instead
// of exp((logit_i - m + g_i) / tau) / Z, below 1e-22 at tau <= 2: negligible next to the scores.
//
// Noise: g is a function of (seed, layer, KV head, query position, key position) through a
// SplitMix64 hash, so runs are reproducible, the same in both layouts and for any compress_slack,
// and drawing it allocates nothing.
//
// Defaults (the reference's MultiheadAttention): recent_fraction = 0.3 (recent = 30% of the cache),
// tau_init = 1, tau_delta = 0.01. The paper raises tau from tau_init = 1 to tau_end = 2 over the
// generated text; the reference never caps it. Deviation: GQA heads of a group are combined per
// Options::gqa_reduce first and the Gumbel softmax is taken over the combined weights, with one
// noise sample per (KV head, query, key); the reference (MHA) perturbs each head.
//
// State and cost: per cached token per (layer, KV head) 8 bytes (the score, and the number of
// attend() calls that saw it, from which the next call's number is read). on_attend() is
// O(visible tokens) with a log, two logs for the noise and an exp per token; select() is an O(n)
// nth_element over the cache's scratch. No allocation. A decode step with eviction (bench/select.cpp,
// 4 layers x 8 KV heads of dim 128, 4K context cut to budget 256, slack 0) took 397 us of CPU
// against H2O's 209 us, on the shared 2-core machine under load.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/selection.hpp"
#include "kvc/concepts/setup.hpp"
#include "kvc/core/error.hpp"
#include "kvc/core/head_ref.hpp"
#include "kvc/select/rank.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

namespace kvc::select {

struct Keyformer {
  struct Token {
    float score = 0.0f;          // accumulated Gumbel-softmax attention
    std::uint32_t calls = 0;     // attend() calls completed when a query last saw the token
  };

  using family = kvc::family::selection;
  using column = Token;

  // Share of each head's budget kept for the most recent tokens, in [0, 1].
  double recent_fraction = 0.3;
  // Temperature of the first call (the prompt), its growth per call and its ceiling.
  double tau_init = 1.0;
  double tau_delta = 0.01;
  double tau_end = 2.0;
  // Seed of the Gumbel noise.
  std::uint64_t seed = 0;

  void setup(const PolicySetup&) const {
    constexpr const char* who = "kvc::select::Keyformer";
    if (!(recent_fraction >= 0.0 && recent_fraction <= 1.0))
      fail(who, "recent_fraction = {} must be in [0, 1]", recent_fraction);
    if (!(tau_init > 0.0 && std::isfinite(tau_init))) fail(who, "tau_init = {} must be finite and > 0", tau_init);
    if (!(tau_delta >= 0.0 && std::isfinite(tau_delta))) fail(who, "tau_delta = {} must be finite and >= 0", tau_delta);
    if (!(tau_end >= tau_init && std::isfinite(tau_end)))
      fail(who, "tau_end = {} must be finite and >= tau_init = {}", tau_end, tau_init);
  }

  // The temperature of a query made during call number `calls` (0: the first).
  [[nodiscard]] float temperature(std::uint32_t calls) const noexcept {
    return static_cast<float>(std::min(tau_init + static_cast<double>(calls) * tau_delta, tau_end));
  }

  // Standard Gumbel noise of one (query, key) pair of a head: -log(-log u), u uniform in (0, 1)
  // on a 2^-24 grid (so |g| < 18).
  [[nodiscard]] float noise(std::size_t layer, std::size_t kv_head, std::int32_t query, std::int32_t key) const noexcept {
    std::uint64_t h = seed;
    for (const std::uint64_t x : {std::uint64_t{layer}, std::uint64_t{kv_head}, std::uint64_t(std::uint32_t(query)),
                                  std::uint64_t(std::uint32_t(key))})
      h = mix(h ^ mix(x));
    const float u = (static_cast<float>(h >> 40) + 0.5f) * 0x1p-24f;
    return -std::log(-std::log(u));
  }

  // The query is the newest token it sees; its logits are log(w) up to a constant (see above).
  // The perturbed logits go through the scratch between the max pass and the sum pass.
  void on_attend(const HeadRef<Keyformer>& head, std::span<const float> weights) const noexcept {
    const std::size_t n = weights.size();
    if (n == 0) return;
    const std::span<Token> tokens = head.column();
    const std::span<const std::int32_t> positions = head.positions();
    const std::span<std::uint32_t> z = head.scratch().first(n);
    const std::uint32_t calls = tokens[0].calls;  // every query sees token 0
    const float inv_tau = 1.0f / temperature(calls);
    const std::int32_t query = positions[n - 1];
    float top = -std::numeric_limits<float>::infinity();
    for (std::size_t i = 0; i < n; ++i) {
      const float zi = weights[i] > 0.0f
                           ? (std::log(weights[i]) + noise(head.layer(), head.kv_head(), query, positions[i])) * inv_tau
                           : -std::numeric_limits<float>::infinity();
      z[i] = std::bit_cast<std::uint32_t>(zi);
      top = std::max(top, zi);
    }
    float sum = 0.0f;
    for (std::size_t i = 0; i < n; ++i) {
      const float e = std::exp(std::bit_cast<float>(z[i]) - top);
      z[i] = std::bit_cast<std::uint32_t>(e);
      sum += e;
    }
    const float inv_sum = 1.0f / sum;
    for (std::size_t i = 0; i < n; ++i) tokens[i].score += std::bit_cast<float>(z[i]) * inv_sum;
    // The call ends with the query that sees every token of the head (the last of a prompt chunk).
    if (n == head.size())
      for (std::size_t i = 0; i < n; ++i) tokens[i].calls = calls + 1;
  }

  // Linear time (keep_recent_and_largest, rank.hpp), as H2O.
  std::size_t select(const HeadRef<Keyformer>& head, std::span<std::uint32_t> keep) const noexcept {
    const std::span<const Token> tokens = head.column();
    return keep_recent_and_largest(
        head.size(), head.budget(), recent_tokens(head.budget()),
        [&](std::size_t i) noexcept { return order_key(tokens[i].score); }, head.scratch(), keep);
  }

  // Tokens kept by recency out of a budget: round(budget * recent_fraction), halves away from 0.
  [[nodiscard]] std::size_t recent_tokens(std::size_t budget) const noexcept {
    const auto r = static_cast<std::size_t>(std::llround(static_cast<double>(budget) * recent_fraction));
    return std::min(r, budget);
  }

 private:
  // SplitMix64's finalizer (Steele, Lea, Flood, "Fast splittable pseudorandom number generators").
  static std::uint64_t mix(std::uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  }
};

}  // namespace kvc::select
