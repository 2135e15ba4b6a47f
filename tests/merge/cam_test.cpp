// CaM through a real cache: where an evicted value goes (a scripted selection with hand-set
// scores, so every merge is computed by hand below), the Bernoulli draw's rate, the expectation
// mode, real selections (H2O and TOVA against the definition applied to their own scores, SnapKV
// at compress_prompt), bad parameters, no allocation in steady state.
#include "support/allocation_counter.hpp"
#include "kvc/kvc.hpp"
#include "kvc/merge/cam.hpp"
#include "kvc/quant/per_token.hpp"
#include "kvc/select/h2o.hpp"
#include "kvc/select/snapkv.hpp"
#include "kvc/select/streaming_llm.hpp"
#include "kvc/select/tova.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace kvc {
namespace {

using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::HasSubstr;
using ::testing::Pointwise;

using Row = std::vector<float>;

std::vector<float> concat(std::initializer_list<Row> rows) {
  std::vector<float> all;
  for (const auto& r : rows) all.insert(all.end(), r.begin(), r.end());
  return all;
}

std::vector<std::int32_t> positions_of(std::span<const std::int32_t> p) { return {p.begin(), p.end()}; }

// A selection whose decisions and scores the test sets: it keeps the listed positions and
// scores each token by a table indexed by position.
struct Scripted {
  using family = kvc::family::selection;
  std::vector<std::int32_t> kept;
  std::vector<float> score;

  std::size_t select(const HeadRef<Scripted>& head, std::span<std::uint32_t> keep) const noexcept {
    std::size_t held = 0;
    for (std::size_t i = 0; i < head.size() && held < head.budget(); ++i)
      if (std::find(kept.begin(), kept.end(), head.positions()[i]) != kept.end())
        keep[held++] = static_cast<std::uint32_t>(i);
    return held;
  }
  void scores(const HeadRef<Scripted>& head, std::span<float> out) const noexcept {
    for (std::size_t i = 0; i < head.size(); ++i) out[i] = score[static_cast<std::size_t>(head.positions()[i])];
  }
};

template <class L>
using ScriptedCache = KVCache<L, Scripted, merge::CaM>;

template <class Cache>
Row value(Cache& cache, std::size_t i) {
  Row r(cache.value_dim());
  cache.view(0, 0).load_value(i, r);
  return r;
}
template <class Cache>
Row key(Cache& cache, std::size_t i) {
  Row r(cache.key_dim());
  cache.view(0, 0).load_key(i, r);
  return r;
}

// Six tokens of dim 2 with values e0 * (t + 1) for evicted ones and distinct kept values.
const std::vector<float> kKeys = concat({{1, 0}, {0, 1}, {1, 1}, {2, 0}, {0, 2}, {3, 1}});
const std::vector<float> kValues = concat({{1, 0}, {2, 0}, {0, 10}, {0, 20}, {0, 30}, {0, 40}});

template <class L>
ScriptedCache<L> scripted(std::vector<std::int32_t> kept, std::vector<float> score, merge::CaM cam) {
  const std::size_t budget = kept.size();
  ScriptedCache<L> cache(Shape{1, 1, 1, 2}, {.budget = budget, .auto_compress = false},
                         Scripted{std::move(kept), std::move(score)}, cam);
  cache.prefill(0, 0, kKeys, kValues);
  return cache;
}

template <class L>
class CaMLayouts : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(CaMLayouts, Layouts);

// Expectation mode, by hand. Kept 2..5, evicted 0 and 1, merge_tokens = 2: both go to tokens 2
// and 3 (mean score 0.2). Token 0: p = 0.1 / 0.2 = 0.5, each neighbour gets 0.5 * v0 / 2.
// Token 1: p = min(1, 0.4 / 0.2) = 1, each gets v1 / 2. Tokens 4 and 5 and every key unchanged.
TYPED_TEST(CaMLayouts, ExpectationSpreadsEachValueOverTheNextKeptTokens) {
  auto cache = scripted<TypeParam>({2, 3, 4, 5}, {0.1f, 0.4f, 0.2f, 0.2f, 0.9f, 0.9f},
                                   merge::CaM{.merge_tokens = 2, .sample = false});
  cache.compress();
  ASSERT_THAT(positions_of(cache.positions(0, 0)), ElementsAre(2, 3, 4, 5));
  const float add = 0.5f * 1.0f / 2 + 1.0f * 2.0f / 2;  // first channel: 0.25 + 1
  EXPECT_THAT(value(cache, 0), Pointwise(FloatNear(1e-6f), Row{add, 10}));
  EXPECT_THAT(value(cache, 1), Pointwise(FloatNear(1e-6f), Row{add, 20}));
  EXPECT_THAT(value(cache, 2), ElementsAre(0, 30));
  EXPECT_THAT(value(cache, 3), ElementsAre(0, 40));
  EXPECT_THAT(key(cache, 0), ElementsAre(1, 1));
  EXPECT_THAT(key(cache, 1), ElementsAre(2, 0));
}

// Fewer kept tokens after the evicted one than merge_tokens: the value is shared by those there
// are. Kept 0, 1, 3; evicted 2 (score 0.3) and 4, 5 (nothing kept after them: dropped).
// Token 2's neighbours: token 3 only (score 0.6): p = 0.5, it gets 0.5 * v2.
TYPED_TEST(CaMLayouts, FewerNeighboursShareTheValueAndTheLastTokensAreDropped) {
  auto cache = scripted<TypeParam>({0, 1, 3}, {0.5f, 0.5f, 0.3f, 0.6f, 1.0f, 1.0f},
                                   merge::CaM{.merge_tokens = 4, .sample = false});
  cache.compress();
  ASSERT_THAT(positions_of(cache.positions(0, 0)), ElementsAre(0, 1, 3));
  EXPECT_THAT(value(cache, 0), ElementsAre(1, 0));
  EXPECT_THAT(value(cache, 1), ElementsAre(2, 0));
  EXPECT_THAT(value(cache, 2), Pointwise(FloatNear(1e-6f), Row{0, 20 + 0.5f * 10}));
}

// A kept token scored with the largest float is kept by rule (SnapKV's window) and is no
// neighbour: with merge_tokens = 1 both evicted tokens go to token 3, not 2. Token 0: p = 0.2 /
// 0.4; token 1: p = 1.
TYPED_TEST(CaMLayouts, TokensKeptByRuleAreNotNeighbours) {
  const float rule = std::numeric_limits<float>::max();
  auto cache = scripted<TypeParam>({2, 3, 4, 5}, {0.2f, 0.8f, rule, 0.4f, 0.1f, 0.1f},
                                   merge::CaM{.merge_tokens = 1, .sample = false});
  cache.compress();
  EXPECT_THAT(value(cache, 0), ElementsAre(0, 10));
  EXPECT_THAT(value(cache, 1), Pointwise(FloatNear(1e-6f), Row{0.5f * 1 + 2, 20}));
}

// Sampling with p = 1 and p = 0 is deterministic: token 0 (score above its neighbours') is
// merged in full, token 1 (score 0) never. A zero mean (no attention yet) merges nothing.
TYPED_TEST(CaMLayouts, SamplingAtCertaintyMergesOrDrops) {
  for (std::uint64_t seed : {0u, 1u, 2u}) {
    auto cache = scripted<TypeParam>({2, 3, 4, 5}, {0.5f, 0.0f, 0.2f, 0.2f, 0.1f, 0.1f},
                                     merge::CaM{.merge_tokens = 2, .seed = seed});
    cache.compress();
    EXPECT_THAT(value(cache, 0), Pointwise(FloatNear(1e-6f), Row{0.5f, 10})) << seed;
    EXPECT_THAT(value(cache, 1), Pointwise(FloatNear(1e-6f), Row{0.5f, 20})) << seed;
  }
  auto cache = scripted<TypeParam>({2, 3, 4, 5}, {0.5f, 0.5f, 0, 0, 0, 0}, merge::CaM{.sample = false});
  cache.compress();
  EXPECT_THAT(value(cache, 0), ElementsAre(0, 10));
}

// Rows stored as int8: the kept value is decoded, the evicted one added, the sum re-encoded, so it
// matches the definition on the decoded rows within one more rounding (half a step of the merged
// row's range, about 2.35 / 255 here). p = 0.5 / 1: token 1 gets 0.5 * v0.
TYPED_TEST(CaMLayouts, MergesIntoQuantizedRows) {
  const Row k{1, 2, 3, 4, 5, 6, 7, 8};
  const Row v0{0.0f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f}, v1{1, 1, 1, 1, -1, -1, -1, -1};
  KVCache<TypeParam, Scripted, merge::CaM, quant::PerToken> cache(
      Shape{1, 1, 1, 8}, {.budget = 2, .auto_compress = false}, Scripted{{1, 2}, {0.5f, 1, 1}},
      merge::CaM{.merge_tokens = 1, .sample = false}, quant::PerToken{.bits = 8, .group = 8});
  cache.prefill(0, 0, concat({k, k, k}), concat({v0, v1, v1}));
  Row d0(8), d1(8);
  cache.view(0, 0).load_value(0, d0);
  cache.view(0, 0).load_value(1, d1);
  cache.compress();
  const Row merged = value(cache, 0);
  for (std::size_t i = 0; i < 8; ++i) EXPECT_NEAR(merged[i], d1[i] + 0.5f * d0[i], 2.5f / 255.0f) << i;
}

// p = 0.3: over many sequences (seeds) the token is merged about 30 % of the time (binomial
// standard deviation 0.01 over 2000 draws; the bound is 5 of them). Token 1 (value {2, 0}) is
// the only neighbour: merged, it becomes {3, 0}.
TEST(CaM, SamplingRateIsTheMergeProbability) {
  std::size_t merged = 0;
  const std::size_t trials = 2000;
  for (std::uint64_t seed = 0; seed < trials; ++seed) {
    auto cache = scripted<ContiguousLayout>({1, 2, 3, 4, 5}, {0.3f, 1, 1, 1, 1, 1},
                                            merge::CaM{.merge_tokens = 1, .seed = seed});
    cache.compress();
    merged += value(cache, 0)[0] == 3.0f;
  }
  EXPECT_NEAR(static_cast<double>(merged) / trials, 0.3, 0.05);
}

// clear() re-seeds: a sequence after clear() draws what the first one drew. (Were the generator
// not restarted, the second draw would differ from the first for about half of the 16 seeds.)
TEST(CaM, ClearRestartsTheGenerator) {
  for (std::uint64_t seed = 0; seed < 16; ++seed) {
    ScriptedCache<ContiguousLayout> cache(Shape{1, 1, 1, 2}, {.budget = 5, .auto_compress = false},
                                          Scripted{{1, 2, 3, 4, 5}, {0.5f, 1, 1, 1, 1, 1}},
                                          merge::CaM{.merge_tokens = 1, .seed = seed});
    const auto draw = [&] {
      cache.prefill(0, 0, kKeys, kValues);
      cache.compress();
      const float v = value(cache, 0)[0];
      cache.clear();
      return v;
    };
    const float first = draw();
    EXPECT_EQ(draw(), first) << "seed " << seed;
  }
}

// The definition, applied to what a real selection decided and scored: values before, scores
// (from the selection's column, which is what H2O and TOVA rank by) and positions kept.
template <class Cache, class Sel>
void expect_cam_expectation(Cache& cache, std::size_t merge_tokens) {
  const std::size_t n = cache.size(0, 0), dv = cache.value_dim();
  const auto col = cache.template column<Sel>(0, 0);
  const std::vector<float> a(col.begin(), col.end());
  const auto before_pos = positions_of(cache.positions(0, 0));
  std::vector<Row> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = value(cache, i);
  cache.compress();
  const auto after_pos = positions_of(cache.positions(0, 0));
  ASSERT_LT(after_pos.size(), n);
  std::vector<std::size_t> keep;  // storage indices before compression
  for (std::int32_t p : after_pos)
    keep.push_back(static_cast<std::size_t>(std::find(before_pos.begin(), before_pos.end(), p) - before_pos.begin()));
  std::vector<Row> expected;
  for (std::size_t k : keep) expected.push_back(v[k]);
  for (std::size_t e = 0; e < n; ++e) {
    if (std::find(keep.begin(), keep.end(), e) != keep.end()) continue;
    std::vector<std::size_t> nb;  // indices into keep of the next merge_tokens kept tokens after e
    for (std::size_t j = 0; j < keep.size() && nb.size() < merge_tokens; ++j)
      if (keep[j] > e) nb.push_back(j);
    if (nb.empty()) continue;
    double mean = 0;
    for (std::size_t j : nb) mean += a[keep[j]];
    mean /= static_cast<double>(nb.size());
    const double p = mean > 0 ? std::clamp(a[e] / mean, 0.0, 1.0) : 0.0;
    for (std::size_t j : nb)
      for (std::size_t d = 0; d < dv; ++d) expected[j][d] += static_cast<float>(p / static_cast<double>(nb.size())) * v[e][d];
  }
  for (std::size_t j = 0; j < keep.size(); ++j)
    EXPECT_THAT(value(cache, j), Pointwise(FloatNear(1e-4f), expected[j])) << "kept token " << j;
}

template <class L, class Sel>
void run_real_selection(Sel sel) {
  const Shape s{1, 2, 1, 16};
  KVCache<L, Sel, merge::CaM> cache(s, {.budget = 12, .auto_compress = false}, sel,
                                    merge::CaM{.merge_tokens = 4, .sample = false});
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> k(s.head_dim), v(s.head_dim), q(s.query_heads * s.head_dim), out(q.size());
  for (std::int32_t t = 0; t < 40; ++t) {
    for (auto* x : {&k, &v, &q})
      for (auto& e : *x) e = normal(rng);
    cache.append(0, t, k, v);
    cache.attend(0, q, out);
  }
  expect_cam_expectation<decltype(cache), Sel>(cache, 4);
}

TYPED_TEST(CaMLayouts, MergesByH2OAccumulatedAttention) { run_real_selection<TypeParam>(select::H2O{}); }
TYPED_TEST(CaMLayouts, MergesByTOVALastWeights) { run_real_selection<TypeParam>(select::TOVA{}); }

// SnapKV at compress_prompt: the prefix tokens it evicts are spread over the kept ones, so
// the kept values differ from the same prompt compressed without merging; the keys do not.
TYPED_TEST(CaMLayouts, MergesAtSnapKVPromptCompression) {
  const Shape s{1, 2, 1, 16};
  const std::size_t n = 48;
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  std::vector<float> keys(n * s.head_dim), values(n * s.head_dim), queries(n * 2 * s.head_dim), out(queries.size());
  for (auto* x : {&keys, &values, &queries})
    for (auto& e : *x) e = normal(rng);
  const select::SnapKV snap{.window = 8};
  KVCache<TypeParam, select::SnapKV, merge::CaM> merged(s, {.budget = 16}, snap, merge::CaM{.sample = false});
  KVCache<TypeParam, select::SnapKV> plain(s, {.budget = 16}, snap);
  merged.prefill(0, 0, keys, values);
  merged.attend(0, queries, out);
  merged.compress_prompt();
  plain.prefill(0, 0, keys, values);
  plain.attend(0, queries, out);
  plain.compress_prompt();
  ASSERT_EQ(positions_of(merged.positions(0, 0)), positions_of(plain.positions(0, 0)));
  std::size_t changed = 0;
  for (std::size_t i = 0; i < 16; ++i) {
    EXPECT_EQ(key(merged, i), key(plain, i));
    changed += value(merged, i) != value(plain, i);
  }
  EXPECT_GT(changed, 0u);
}

TEST(CaM, RejectsBadParametersAndSelectionsWithoutScores) {
  const auto message = [](auto make) {
    try {
      make();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const Shape s{1, 1, 1, 4};
  EXPECT_THAT(message([&] {
                KVCache<ContiguousLayout, select::H2O, merge::CaM> c(s, {.budget = 8}, select::H2O{},
                                                                    merge::CaM{.merge_tokens = 0});
              }),
              HasSubstr("kvc::merge::CaM: merge_tokens = 0 must be at least 1"));
  EXPECT_THAT(message([&] {
                KVCache<ContiguousLayout, select::StreamingLLM, merge::CaM> c(s, {.budget = 8}, select::StreamingLLM{},
                                                                             merge::CaM{});
              }),
              HasSubstr("kvc::merge::CaM: needs a selection policy that exposes its scores"));
  EXPECT_EQ(message([&] { KVCache<ContiguousLayout, select::H2O, merge::CaM> c(s, {.budget = 8}, select::H2O{}, merge::CaM{}); }),
            "no error");
}

TYPED_TEST(CaMLayouts, MergingAllocatesNothingInSteadyState) {
  const Shape s{2, 4, 2, 32};
  KVCache<TypeParam, select::H2O, merge::CaM> cache(s, {.budget = 16, .capacity = 64}, select::H2O{}, merge::CaM{});
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> k(s.kv_heads * s.head_dim), q(s.query_heads * s.head_dim), out(q.size());
  EXPECT_GT(cache.template state<merge::CaM>().workspace_bytes(), 0u);
  std::size_t before = 0;
  for (std::size_t t = 0; t < 200; ++t) {
    if (t == 40) before = kvc::testing::allocation_count();
    for (std::size_t layer = 0; layer < s.layers; ++layer) {
      for (auto& x : k) x = normal(rng);
      for (auto& x : q) x = normal(rng);
      cache.append(layer, static_cast<std::int32_t>(t), k, k);
      cache.attend(layer, q, out);
      for (float o : out) ASSERT_TRUE(std::isfinite(o));
    }
  }
  EXPECT_EQ(kvc::testing::allocation_count() - before, 0u);
  EXPECT_EQ(cache.size(1, 0), 16u);
}

}  // namespace
}  // namespace kvc
