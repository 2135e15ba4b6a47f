#pragma once
// D2O: evicted tokens similar enough to a kept one are merged into it instead of dropped.
//
//   Zhongwei Wan, Xinjian Wu, Yu Zhang, Yi Xin, Chaofan Tao, Zhihong Zhu, Xin Wang, Siqi Luo,
//   Jing Xiong, Mi Zhang. "D2O: Dynamic Discriminative Operations for Efficient Generative
//   Inference of Large Language Models". arXiv:2406.13035, 2024 (ICLR 2025 as "... Long-Context
//   Inference ..."). Reference code: github.com/AIoT-MLSys-Lab/D2O.
//
// D2O has two levels. The layer level (more budget for layers with dense attention) is a budget
// policy's job; this is the token level, the paper's "compensation" step (Section 3.3):
//
//  1. Every evicted token e finds its nearest kept token c by key cosine similarity
//     u_e = cos(k_e, k_c), c = argmax over the kept tokens.
//  2. A threshold tau is kept per (layer, KV head) as an exponential moving average of the mean
//     nearest similarity of the evicted tokens: tau <- ema * tau + (1 - ema) * mean_e(u_e), with
//     tau = mean_e(u_e) at the first compression. An evicted token with u_e >= tau is merged;
//     one below it is dropped.
//  3. Each kept token c with merged tokens E_c becomes the weighted average
//        k_c <- w_c k_c + sum_{e in E_c} w_e k_e,      v_c <- w_c v_c + sum_{e in E_c} w_e v_e,
//        w_e = exp(u_e) / Z,   w_c = exp(1) / Z,   Z = exp(1) + sum_{e in E_c} exp(u_e)
//     (exp(1) = exp(cos(k_c, k_c)): the kept token weighs in as a perfect match of itself).
//     A key equal to the kept one's (u = 1) thus counts exactly as much as the kept token.
//
// Simplifications, said plainly:
//  * The reference code compares the mean over heads of each evicted slot's similarity to one
//    threshold per layer (its eviction is aligned across heads); here heads are independent
//    (ragged eviction), so tau, the mean and the decision are per (layer, KV head).
//  * The reference code merges with scatter_reduce('mean') of u_e * k_e into k_c rather than
//    the paper's normalized exp weights; we implement the paper's formula above.
//  * Setting `threshold` replaces the EMA by a fixed threshold (tests, ablations).
//  * Under low rank and quantization the similarities and averages are computed on stored rows
//    (rank-space, decoded), and merged rows are re-encoded (rounded again).
//
// Defaults: ema = 0.5 (the reference's D2O_LayerKVCache alpha = belta = 0.5: old and new mean
// weigh the same); threshold = none (the paper's EMA).
//
// Cost per compression of a head with K kept and E evicted tokens of key dim d (value dim dv):
// O(E K d) time (each evicted token's nearest kept token is found once, for both the threshold
// and the merge); bytes: one float of state per (layer, KV head) (memory_bytes()), plus scratch
// sized in setup() for the largest budget, max_budget * (2 d + dv + 2) + d + dv floats and
// 8 bytes per evicted token (workspace_bytes()). merge() allocates nothing once the largest
// eviction (budget + compress_slack + 1 tokens in steady state) has been seen.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/merging.hpp"
#include "kvc/concepts/setup.hpp"
#include "kvc/core/error.hpp"
#include "kvc/core/head_ref.hpp"
#include "kvc/core/shape.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>
#include <optional>
#include <span>
#include <vector>

namespace kvc::merge {

struct D2O {
  using family = kvc::family::merging;

  // Per-sequence state (tau per head) and scratch, held by the cache (KVCache::state<D2O>()).
  struct state {
    Shape shape{};
    std::vector<float> tau;  // per (layer, KV head); NaN until the head's first compression
    std::size_t max_budget = 0, key_dim = 0, value_dim = 0;
    std::vector<float> kept_keys, inv_norm, acc_keys, acc_values, weight, key, value;
    // Nearest kept token of each evicted one, found once for both the threshold and the merge.
    std::vector<std::uint32_t> match_index;
    std::vector<float> match_similarity;

    [[nodiscard]] std::size_t memory_bytes() const noexcept { return tau.capacity() * sizeof(float); }
    [[nodiscard]] std::size_t workspace_bytes() const noexcept {
      return (kept_keys.capacity() + inv_norm.capacity() + acc_keys.capacity() + acc_values.capacity() +
              weight.capacity() + key.capacity() + value.capacity() + match_similarity.capacity()) *
                 sizeof(float) +
             match_index.capacity() * sizeof(std::uint32_t);
    }
  };

  // EMA momentum of the threshold, in [0, 1): tau <- ema * tau + (1 - ema) * mean similarity.
  float ema = 0.5f;
  // A fixed cosine-similarity threshold in [-1, 1] instead of the EMA.
  std::optional<float> threshold = std::nullopt;

  void validate() const {
    if (!(ema >= 0.0f && ema < 1.0f)) fail("kvc::merge::D2O", "ema = {} must be in [0, 1)", ema);
    if (threshold && !(*threshold >= -1.0f && *threshold <= 1.0f))
      fail("kvc::merge::D2O", "threshold = {} must be a cosine similarity in [-1, 1]", *threshold);
  }

  void setup(const PolicySetup& setup, state& s) const {
    validate();
    if (setup.budgets.empty())
      fail("kvc::merge::D2O", "needs per-head budgets (a bounded cache with a selection policy)");
    s.max_budget = *std::max_element(setup.budgets.begin(), setup.budgets.end());
    s.key_dim = setup.key_dim;
    s.value_dim = setup.value_dim;
    s.tau.assign(setup.shape.head_count(), std::numeric_limits<float>::quiet_NaN());
    s.kept_keys.assign(s.max_budget * s.key_dim, 0.0f);
    s.inv_norm.assign(s.max_budget, 0.0f);
    s.acc_keys.assign(s.max_budget * s.key_dim, 0.0f);
    s.acc_values.assign(s.max_budget * s.value_dim, 0.0f);
    s.weight.assign(s.max_budget, 0.0f);
    s.key.assign(s.key_dim, 0.0f);
    s.value.assign(s.value_dim, 0.0f);
    s.match_index.reserve(s.max_budget + setup.compress_slack + 1);
    s.match_similarity.reserve(s.max_budget + setup.compress_slack + 1);
    s.shape = setup.shape;
  }

  void merge(const HeadRef<D2O>& head, std::span<const std::uint32_t> keep,
             std::span<const std::uint32_t> evicted) const noexcept {
    state& s = head.state();
    KVC_CONTRACT(keep.size() <= s.max_budget, "D2O::merge: more kept tokens than the largest budget seen in setup()");
    KVC_CONTRACT(head.key_dim() == s.key_dim && head.value_dim() == s.value_dim, "D2O::merge: row dims changed");
    if (keep.empty() || evicted.empty()) return;
    const std::size_t kd = s.key_dim, vd = s.value_dim;
    for (std::size_t j = 0; j < keep.size(); ++j) {
      float* k = s.kept_keys.data() + j * kd;
      head.load_key(keep[j], {k, kd});
      s.inv_norm[j] = inverse_norm(k, kd);
      s.weight[j] = 0.0f;
    }

    // Grows only past the largest eviction seen (a long prompt's first compression).
    s.match_index.resize(evicted.size());
    s.match_similarity.resize(evicted.size());
    double total = 0.0;
    for (std::size_t i = 0; i < evicted.size(); ++i) {
      const Match m = nearest(head, s, evicted[i], keep.size());
      s.match_index[i] = static_cast<std::uint32_t>(m.index);
      s.match_similarity[i] = m.similarity;
      total += m.similarity;
    }
    float& tau = s.tau[s.shape.head_index(head.layer(), head.kv_head())];
    float cut;
    if (threshold) {
      cut = *threshold;
    } else {
      const auto mean = static_cast<float>(total / static_cast<double>(evicted.size()));
      tau = std::isnan(tau) ? mean : ema * tau + (1.0f - ema) * mean;
      cut = tau;
    }

    constexpr float e1 = std::numbers::e_v<float>;
    for (std::size_t i = 0; i < evicted.size(); ++i) {
      const std::uint32_t e = evicted[i];
      const Match m{s.match_index[i], s.match_similarity[i]};
      if (m.similarity < cut) continue;
      head.load_key(e, {s.key.data(), kd});
      float* acc_k = s.acc_keys.data() + m.index * kd;
      float* acc_v = s.acc_values.data() + m.index * vd;
      if (s.weight[m.index] == 0.0f) {  // first merge into this kept token: start from itself
        const float* k = s.kept_keys.data() + m.index * kd;
        for (std::size_t d = 0; d < kd; ++d) acc_k[d] = e1 * k[d];
        head.load_value(keep[m.index], {acc_v, vd});
        for (std::size_t d = 0; d < vd; ++d) acc_v[d] *= e1;
        s.weight[m.index] = e1;
      }
      const float w = std::exp(m.similarity);
      for (std::size_t d = 0; d < kd; ++d) acc_k[d] += w * s.key[d];
      head.load_value(e, {s.value.data(), vd});
      for (std::size_t d = 0; d < vd; ++d) acc_v[d] += w * s.value[d];
      s.weight[m.index] += w;
    }

    for (std::size_t j = 0; j < keep.size(); ++j) {
      if (s.weight[j] == 0.0f) continue;
      const float inv = 1.0f / s.weight[j];
      float* acc_k = s.acc_keys.data() + j * kd;
      float* acc_v = s.acc_values.data() + j * vd;
      for (std::size_t d = 0; d < kd; ++d) acc_k[d] *= inv;
      for (std::size_t d = 0; d < vd; ++d) acc_v[d] *= inv;
      head.store_key(keep[j], {acc_k, kd});
      head.store_value(keep[j], {acc_v, vd});
    }
  }

  void reset(state& s) const noexcept { std::fill(s.tau.begin(), s.tau.end(), std::numeric_limits<float>::quiet_NaN()); }

  // The current threshold of a head (NaN before its first compression under the EMA).
  [[nodiscard]] float current_threshold(const state& s, std::size_t layer, std::size_t kv_head) const noexcept {
    return threshold ? *threshold : s.tau[s.shape.head_index(layer, kv_head)];
  }

 private:
  struct Match {
    std::size_t index;  // into keep
    float similarity;
  };

  // Eight independent partial sums, so the compiler can keep them in one vector register.
  static float dot_product(const float* a, const float* b, std::size_t n) noexcept {
    float part[8] = {};
    std::size_t d = 0;
    for (; d + 8 <= n; d += 8)
      for (std::size_t i = 0; i < 8; ++i) part[i] += a[d + i] * b[d + i];
    float sum = 0.0f;
    for (; d < n; ++d) sum += a[d] * b[d];
    for (float p : part) sum += p;
    return sum;
  }

  static float inverse_norm(const float* x, std::size_t n) noexcept {
    float sq = 0.0f;
    for (std::size_t d = 0; d < n; ++d) sq += x[d] * x[d];
    return sq > 0.0f ? 1.0f / std::sqrt(sq) : 0.0f;  // a zero key is similar to nothing (cos = 0)
  }

  // Nearest kept token of evicted token `e` by key cosine similarity (first one on ties).
  static Match nearest(const HeadRef<D2O>& head, state& s, std::uint32_t e, std::size_t kept) noexcept {
    const std::size_t kd = s.key_dim;
    head.load_key(e, {s.key.data(), kd});
    const float inv_e = inverse_norm(s.key.data(), kd);
    Match best{0, -std::numeric_limits<float>::infinity()};
    for (std::size_t j = 0; j < kept; ++j) {
      const float* k = s.kept_keys.data() + j * kd;
      const float dot = dot_product(k, s.key.data(), kd);
      const float u = std::clamp(dot * inv_e * s.inv_norm[j], -1.0f, 1.0f);
      if (u > best.similarity) best = {j, u};
    }
    return best;
  }

};

}  // namespace kvc::merge
