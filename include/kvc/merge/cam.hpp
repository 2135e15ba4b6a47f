#pragma once
// CaM: the value of an evicted token is spread over the kept tokens that follow it, with a
// probability set by how much attention it gets compared with them.
//
//   Yuxin Zhang, Yuxuan Du, Gen Luo, Yunshan Zhong, Zhenyu Zhang, Shiwei Liu, Rongrong Ji.
//   "CaM: Cache Merging for Memory-efficient LLMs Inference". ICML 2024 (PMLR 235).
//   No arXiv version. Reference code: github.com/zyxxmu/cam (local_cam_mask in cam_hf/utils_hh/modify_*_cam.py).
//
// Evicting a token perturbs the attention output by (about) its attention a_e times its value
// v_e. CaM puts that value back into the kept tokens next to it, whose attention is similar:
//
//  1. The neighbours N_e of an evicted token e are the first `merge_tokens` kept tokens after it
//     in storage (position) order (fewer if fewer follow it; none: e is dropped), skipping
//     tokens the selection keeps by rule without a score (score = the largest float: SnapKV's
//     observation window).
//  2. Its merge probability is p_e = clamp(a_e / mean_{n in N_e} a_n, 0, 1), where a is the
//     selection's score of each token (HeadRef::scores).
//  3. With probability p_e (one Bernoulli draw per evicted token), every neighbour's value gets
//     v_n <- v_n + v_e / |N_e|. Keys are never changed.
//
// Why this works: the neighbours then return sum_n a_n v_e / |N_e| = mean(a_N) v_e of the lost
// output, so, over the draw, the expected restored output is p_e mean(a_N) v_e = a_e v_e
// whenever a_e <= mean(a_N); a token more prominent than its neighbours is always merged.
//
// Simplifications and deviations, said plainly:
//  * The reference evicts one token per step from a sliding window (sinks + recent tokens): the
//    one leaving the window, merged into the 32 tokens after it, with the mean over the rest of
//    the window. Here any selection evicts any tokens, so the mean is over the receiving
//    neighbours N_e themselves: that keeps the expectation above exact when fewer than 32 tokens
//    follow e, or when the window is much longer than 32.
//  * The reference scores with the current query's attention weights. Here a is whatever the
//    selection ranks by: TOVA's is exactly that; H2O's is attention accumulated over all queries
//    (the ratio of neighbours' sums still compares prominence); SnapKV's is the window attention
//    pooled over the prefix; its window tokens score the largest float (kept by rule), so they
//    are not neighbours: the prefix tokens it evicts go to the kept prefix tokens after them. A selection without scores (StreamingLLM, KNorm) is
//    rejected in setup(): CaM has nothing to weigh by.
//  * When several evicted tokens merge into one neighbour in one compression their additions
//    sum (the reference merges one token per step, the same thing at compress_slack = 0); the
//    kept value is decoded once and re-encoded once (rounded again under quantization).
//  * `sample = false` adds the expectation p_e v_e / |N_e| instead of drawing (deterministic;
//    tests, ablations). The draws come from a per-cache generator seeded with `seed` (and
//    re-seeded by clear()), so a run is reproducible.
//
// Measured (SmolLM2-135M, kvc-eval context protocol, C = 1024, budget 25 %, docs/policies/merge.md):
// perplexity 25.4 -> 31.8 with TOVA (the reference's scores), 20.3 -> 638 with H2O, whose
// accumulated scores favour older tokens over their younger neighbours (p ~ 1 for all). Pair CaM
// with TOVA.
//
// Defaults: merge_tokens = 32 (the reference's merge_budget), sample = true (the paper's
// Bernoulli), seed = 0.
//
// Cost per compression of a head with K kept and E evicted tokens, value dim dv, m =
// merge_tokens: O(E (log K + m dv)) time; bytes: 8 of state per cache (the generator), scratch
// sized in setup() for the largest budget: max_budget * dv + dv floats and
// max_budget bytes (workspace_bytes()). merge() allocates nothing and is noexcept.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/merging.hpp"
#include "kvc/concepts/setup.hpp"
#include "kvc/core/error.hpp"
#include "kvc/core/head_ref.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace kvc::merge {

struct CaM {
  using family = kvc::family::merging;

  struct state {
    std::uint64_t rng = 0;  // splitmix64 counter
    std::size_t max_budget = 0, value_dim = 0;
    std::vector<float> acc_values, value;
    std::vector<std::uint8_t> touched;  // per kept token: its value is loaded into acc_values

    [[nodiscard]] std::size_t memory_bytes() const noexcept { return sizeof(rng); }
    [[nodiscard]] std::size_t workspace_bytes() const noexcept {
      return (acc_values.capacity() + value.capacity()) * sizeof(float) + touched.capacity();
    }
  };

  // Kept tokens after an evicted one that share its value, >= 1.
  std::size_t merge_tokens = 32;
  // Bernoulli draw with probability p_e (the paper); false adds the expectation instead.
  bool sample = true;
  std::uint64_t seed = 0;

  void validate() const {
    if (merge_tokens == 0) fail("kvc::merge::CaM", "merge_tokens = {} must be at least 1", merge_tokens);
  }

  void setup(const PolicySetup& setup, state& s) const {
    validate();
    if (setup.budgets.empty())
      fail("kvc::merge::CaM", "needs per-head budgets (a bounded cache with a selection policy)");
    if (!setup.selection_scores)
      fail("kvc::merge::CaM",
           "needs a selection policy that exposes its scores (scores(): H2O, TOVA, SnapKV); this one does not");
    s.max_budget = *std::max_element(setup.budgets.begin(), setup.budgets.end());
    s.value_dim = setup.value_dim;
    s.acc_values.assign(s.max_budget * s.value_dim, 0.0f);
    s.touched.assign(s.max_budget, 0);
    s.value.assign(s.value_dim, 0.0f);
    s.rng = seed;
  }

  void merge(const HeadRef<CaM>& head, std::span<const std::uint32_t> keep,
             std::span<const std::uint32_t> evicted) const noexcept {
    state& s = head.state();
    const std::span<const float> a = head.scores();
    KVC_CONTRACT(keep.size() <= s.max_budget, "CaM::merge: more kept tokens than the largest budget seen in setup()");
    KVC_CONTRACT(head.value_dim() == s.value_dim, "CaM::merge: row dims changed");
    KVC_CONTRACT(a.size() == head.size(), "CaM::merge: the selection's scores are missing");
    if (keep.empty() || evicted.empty()) return;
    const std::size_t vd = s.value_dim;
    std::fill_n(s.touched.begin(), keep.size(), std::uint8_t{0});

    for (const std::uint32_t e : evicted) {
      const auto first = static_cast<std::size_t>(std::upper_bound(keep.begin(), keep.end(), e) - keep.begin());
      // The neighbours: the first merge_tokens kept tokens after e that carry a score.
      const auto for_each_neighbour = [&](auto&& f) noexcept {
        std::size_t found = 0;
        for (std::size_t j = first; j < keep.size() && found < merge_tokens; ++j)
          if (a[keep[j]] != kept_by_rule) {
            f(j);
            ++found;
          }
        return found;
      };
      double sum = 0.0;
      const std::size_t count = for_each_neighbour([&](std::size_t j) { sum += a[keep[j]]; });
      if (count == 0) continue;
      const double mean = sum / static_cast<double>(count);
      // A mean of 0 (no attention yet) or a non-finite one gives p = 0: nothing to compare with.
      const double ratio = mean > 0.0 && std::isfinite(mean) ? a[e] / mean : 0.0;
      const double p = std::isnan(ratio) ? 0.0 : std::clamp(ratio, 0.0, 1.0);
      double weight;
      if (sample) {
        if (!(uniform(s.rng) < p)) continue;
        weight = 1.0 / static_cast<double>(count);
      } else {
        weight = p / static_cast<double>(count);
      }
      if (weight == 0.0) continue;
      const auto w = static_cast<float>(weight);
      head.load_value(e, {s.value.data(), vd});
      for_each_neighbour([&](std::size_t j) {
        float* acc = s.acc_values.data() + j * vd;
        if (s.touched[j] == 0) {
          head.load_value(keep[j], {acc, vd});
          s.touched[j] = 1;
        }
        for (std::size_t d = 0; d < vd; ++d) acc[d] += w * s.value[d];
      });
    }

    for (std::size_t j = 0; j < keep.size(); ++j)
      if (s.touched[j] != 0) head.store_value(keep[j], {s.acc_values.data() + j * vd, vd});
  }

  void reset(state& s) const noexcept { s.rng = seed; }

 private:
  // The score a selection gives a token it keeps by rule whatever the attention (SnapKV's window).
  static constexpr float kept_by_rule = std::numeric_limits<float>::max();

  // splitmix64 (Steele, Lea, Flood 2014): one 64-bit step per draw, 24 bits make a float in [0, 1).
  static double uniform(std::uint64_t& x) noexcept {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<double>(z >> 40) * 0x1.0p-24;
  }
};

}  // namespace kvc::merge
