// D2O through a real cache: where merged keys and values go (hand-made keys with known cosine
// similarities and the paper's exp-weighted average), the EMA threshold, merging into quantized
// rows, bad parameters, no allocation in steady state (operator new is counted in this binary),
// and every family composed in one cache.
#include "support/allocation_counter.hpp"
#include "kvc/budget/pyramid_kv.hpp"
#include "kvc/kvc.hpp"
#include "kvc/lowrank/svd.hpp"
#include "kvc/merge/d2o.hpp"
#include "kvc/quant/per_token.hpp"
#include "kvc/select/h2o.hpp"
#include "kvc/select/streaming_llm.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <random>
#include <vector>

namespace kvc {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::Pointwise;
using ::testing::FloatNear;

using Row = std::vector<float>;
constexpr float kE = std::numbers::e_v<float>;

std::vector<float> concat(std::initializer_list<Row> rows) {
  std::vector<float> all;
  for (const auto& r : rows) all.insert(all.end(), r.begin(), r.end());
  return all;
}

std::vector<std::int32_t> positions_of(std::span<const std::int32_t> p) { return {p.begin(), p.end()}; }

template <class Cache>
Row key(Cache& cache, std::size_t i) {
  Row r(cache.key_dim());
  cache.view(0, 0).load_key(i, r);
  return r;
}
template <class Cache>
Row value(Cache& cache, std::size_t i) {
  Row r(cache.value_dim());
  cache.view(0, 0).load_value(i, r);
  return r;
}

// One KV head of dim 4; a sliding window (StreamingLLM without sinks) decides what is evicted:
// the oldest tokens, so each test knows which ones.
template <class L>
using WindowCache = KVCache<L, select::StreamingLLM, merge::D2O>;

template <class L>
WindowCache<L> window_cache(std::size_t budget, merge::D2O d2o) {
  return WindowCache<L>(Shape{1, 1, 1, 4}, {.budget = budget, .auto_compress = false}, select::StreamingLLM{.sinks = 0},
                        std::move(d2o));
}

template <class L>
class D2OLayouts : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(D2OLayouts, Layouts);

// Token 0's key equals token 2's (cosine 1): token 0 is merged into token 2 with weights
// e / (e + e^1) = 1/2 each, so token 2's value becomes the mean of both values. Token 1 (an
// orthogonal key) is untouched.
TYPED_TEST(D2OLayouts, EvictedTokenWithAnEqualKeyIsAveragedIntoIt) {
  auto cache = window_cache<TypeParam>(2, merge::D2O{.threshold = 0.9f});
  cache.prefill(0, 0, concat({{1, 2, 0, 0}, {0, 0, 1, 0}, {1, 2, 0, 0}}),
                concat({{10, 0, 0, 0}, {0, 5, 0, 0}, {0, 0, 20, 0}}));
  cache.compress();
  ASSERT_THAT(positions_of(cache.positions(0, 0)), ElementsAre(1, 2));
  EXPECT_THAT(value(cache, 0), ElementsAre(0, 5, 0, 0));
  EXPECT_THAT(value(cache, 1), Pointwise(FloatNear(1e-6f), Row{5, 0, 10, 0}));
  EXPECT_THAT(key(cache, 1), Pointwise(FloatNear(1e-6f), Row{1, 2, 0, 0}));
}

// Two evicted tokens whose keys point the same way as kept token 3's (different lengths): each
// weighs exp(1), as does token 3, so keys and values become the mean of the three.
TYPED_TEST(D2OLayouts, SeveralEvictedTokensShareTheWeightsEvenly) {
  auto cache = window_cache<TypeParam>(2, merge::D2O{.threshold = 0.9f});
  cache.prefill(0, 0, concat({{0, 2, 0, 0}, {0, 3, 0, 0}, {1, 0, 0, 0}, {0, 1, 0, 0}}),
                concat({{3, 0, 0, 0}, {0, 6, 0, 0}, {7, 7, 7, 7}, {0, 0, 9, 0}}));
  cache.compress();
  ASSERT_THAT(positions_of(cache.positions(0, 0)), ElementsAre(2, 3));
  EXPECT_THAT(key(cache, 1), Pointwise(FloatNear(1e-5f), Row{0, 2, 0, 0}));
  EXPECT_THAT(value(cache, 1), Pointwise(FloatNear(1e-5f), Row{1, 2, 3, 0}));
  EXPECT_THAT(value(cache, 0), ElementsAre(7, 7, 7, 7));
}

// Cosine 0.6 between evicted token 0 and kept token 2: weights exp(0.6) / Z and e / Z with
// Z = e + exp(0.6). A threshold above 0.6 drops it instead.
TYPED_TEST(D2OLayouts, PartialSimilarityUsesExpWeightsOrDropsBelowTheThreshold) {
  const auto keys = concat({{0.6f, 0.8f, 0, 0}, {0, 0, 1, 0}, {1, 0, 0, 0}});
  const auto values = concat({{1, 0, 0, 0}, {0, 0, 0, 4}, {0, 1, 0, 0}});
  const float we = std::exp(0.6f), z = kE + we;
  {
    auto cache = window_cache<TypeParam>(2, merge::D2O{.threshold = 0.5f});
    cache.prefill(0, 0, keys, values);
    cache.compress();
    EXPECT_THAT(key(cache, 1), Pointwise(FloatNear(1e-6f), Row{(kE + 0.6f * we) / z, 0.8f * we / z, 0, 0}));
    EXPECT_THAT(value(cache, 1), Pointwise(FloatNear(1e-6f), Row{we / z, kE / z, 0, 0}));
  }
  {
    auto cache = window_cache<TypeParam>(2, merge::D2O{.threshold = 0.7f});
    cache.prefill(0, 0, keys, values);
    cache.compress();
    EXPECT_THAT(key(cache, 1), ElementsAre(1, 0, 0, 0));
    EXPECT_THAT(value(cache, 1), ElementsAre(0, 1, 0, 0));
  }
}

template <class Cache>
float threshold(const Cache& cache) {
  return cache.template get<merge::D2O>().current_threshold(cache.template state<merge::D2O>(), 0, 0);
}

// The paper's threshold: an EMA of the mean nearest similarity of the evicted tokens.
TYPED_TEST(D2OLayouts, EmaThresholdDecidesWhatIsMerged) {
  auto cache = window_cache<TypeParam>(2, merge::D2O{.ema = 0.5f});
  // Evicted: token 0 (cosine 1 with kept token 2) and token 1 (cosine 0 with both kept tokens).
  // First compression: tau = mean(1, 0) = 0.5 -> token 0 merges, token 1 is dropped.
  cache.prefill(0, 0, concat({{1, 0, 0, 0}, {0, 0, 1, 0}, {1, 0, 0, 0}, {0, 1, 0, 0}}),
                concat({{2, 0, 0, 0}, {0, 0, 0, 8}, {0, 2, 0, 0}, {0, 0, 3, 0}}));
  EXPECT_TRUE(std::isnan(threshold(cache)));
  cache.compress();
  EXPECT_FLOAT_EQ(threshold(cache), 0.5f);
  EXPECT_THAT(value(cache, 0), Pointwise(FloatNear(1e-6f), Row{1, 1, 0, 0}));
  EXPECT_THAT(value(cache, 1), ElementsAre(0, 0, 3, 0));
  // Second: evicted token (position 2, key e0) has cosine 0.2 with the new token 4, 0 with
  // token 3: tau = 0.5 * 0.5 + 0.5 * 0.2 = 0.35 > 0.2 -> dropped; nothing changes.
  const float s = std::sqrt(1.0f - 0.04f);
  cache.prefill(0, 4, Row{0.2f, 0, s, 0}, Row{0, 0, 0, 1});
  cache.compress();
  EXPECT_FLOAT_EQ(threshold(cache), 0.35f);
  ASSERT_THAT(positions_of(cache.positions(0, 0)), ElementsAre(3, 4));
  EXPECT_THAT(value(cache, 0), ElementsAre(0, 0, 3, 0));
  EXPECT_THAT(value(cache, 1), ElementsAre(0, 0, 0, 1));
  cache.clear();
  EXPECT_TRUE(std::isnan(threshold(cache)));
}

// Rows are stored quantized: the merged row is decoded, averaged and re-encoded, so it matches
// the average of the decoded rows within one more rounding (half a quantization step).
TYPED_TEST(D2OLayouts, MergesIntoQuantizedRows) {
  const Shape s{1, 1, 1, 8};
  KVCache<TypeParam, select::StreamingLLM, merge::D2O, quant::PerToken> cache(
      s, {.budget = 2, .auto_compress = false}, select::StreamingLLM{.sinks = 0}, merge::D2O{.threshold = 0.9f},
      quant::PerToken{.bits = 8, .group = 8});
  const Row k{1, 2, 3, 4, 5, 6, 7, 8}, other{8, -7, 6, -5, 4, -3, 2, -1};
  const Row v0{0.0f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f}, v2{1, 1, 1, 1, -1, -1, -1, -1};
  cache.prefill(0, 0, concat({k, other, k}), concat({v0, other, v2}));
  Row d0(8), d2(8);
  cache.view(0, 0).load_value(0, d0);
  cache.view(0, 0).load_value(2, d2);
  cache.compress();
  const Row merged = value(cache, 1);
  for (std::size_t i = 0; i < 8; ++i) EXPECT_NEAR(merged[i], 0.5f * (d0[i] + d2[i]), 2.0f / 255.0f) << i;
}

TEST(D2O, RejectsBadParameters) {
  const auto message = [](merge::D2O d2o) {
    try {
      KVCache<ContiguousLayout, select::StreamingLLM, merge::D2O> cache(Shape{1, 1, 1, 4}, {.budget = 8},
                                                                        select::StreamingLLM{}, std::move(d2o));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message(merge::D2O{.ema = 1.0f}), HasSubstr("kvc::merge::D2O: ema = 1 must be in [0, 1)"));
  EXPECT_THAT(message(merge::D2O{.ema = -0.5f}), HasSubstr("ema = -0.5"));
  EXPECT_THAT(message(merge::D2O{.threshold = 1.5f}), HasSubstr("threshold = 1.5 must be a cosine similarity"));
  EXPECT_EQ(message(merge::D2O{}), "no error");
}

template <class L>
using H2OCache = KVCache<L, select::H2O, merge::D2O>;

TYPED_TEST(D2OLayouts, MergingAllocatesNothingInSteadyState) {
  const Shape s{2, 4, 2, 32};
  H2OCache<TypeParam> cache(s, {.budget = 16, .capacity = 64});
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> k(s.kv_heads * s.head_dim), q(s.query_heads * s.head_dim), out(q.size());
  EXPECT_GT(cache.template state<merge::D2O>().workspace_bytes(), 0u);
  std::size_t before = 0;
  for (std::size_t t = 0; t < 200; ++t) {
    if (t == 40) before = kvc::testing::allocation_count();
    for (std::size_t layer = 0; layer < s.layers; ++layer) {
      for (auto& x : k) x = normal(rng);
      for (auto& x : q) x = normal(rng);
      cache.append(layer, static_cast<std::int32_t>(t), k, k);
      cache.attend(layer, q, out);
    }
  }
  EXPECT_EQ(kvc::testing::allocation_count() - before, 0u);
  EXPECT_EQ(cache.size(1, 0), 16u);
}

// Every family in one cache: PyramidKV budgets, H2O selection, D2O merging, int8 rows of rank-32
// SVD projections. It runs, keeps each head at its budget, stays finite, and is far smaller than
// the same tokens in f32.
TYPED_TEST(D2OLayouts, ComposesWithEveryFamily) {
  const Shape s{3, 4, 2, 64};
  using Cache = KVCache<TypeParam, quant::PerToken, lowrank::SVD, merge::D2O, budget::PyramidKV, select::H2O>;
  Cache cache(s, {.budget = 24}, quant::PerToken{.bits = 8, .group = 32}, lowrank::SVD{.rank = 32}, merge::D2O{},
              budget::PyramidKV{.beta = 20, .window = 8}, select::H2O{});
  EXPECT_EQ(cache.key_dim(), 32u);
  EXPECT_EQ(cache.key_format(), (kernels::RowFormat{kernels::Dtype::q8, 32}));
  std::mt19937 rng(4);
  std::normal_distribution<float> normal;
  const std::size_t kv = s.kv_heads * s.head_dim, qn = s.query_heads * s.head_dim, prompt = 48;
  std::vector<float> keys(prompt * kv), values(prompt * kv), queries(prompt * qn), out(prompt * qn);
  for (std::size_t l = 0; l < s.layers; ++l) {
    for (auto* v : {&keys, &values, &queries})
      for (auto& x : *v) x = normal(rng);
    cache.prefill(l, 0, keys, values);  // calibrates the SVD heads
    cache.attend(l, queries, out);      // H2O observes the prompt, then auto-compression
  }
  std::vector<float> k(kv), v(kv), q(qn), o(qn);
  for (std::size_t t = prompt; t < prompt + 60; ++t)
    for (std::size_t l = 0; l < s.layers; ++l) {
      for (auto* x : {&k, &v, &q})
        for (auto& e : *x) e = normal(rng);
      cache.append(l, static_cast<std::int32_t>(t), k, v);
      cache.attend(l, q, o);
      for (float e : o) ASSERT_TRUE(std::isfinite(e));
    }
  std::size_t total = 0;
  for (std::size_t l = 0; l < s.layers; ++l)
    for (std::size_t h = 0; h < s.kv_heads; ++h) {
      EXPECT_EQ(cache.size(l, h), cache.budget(l, h));
      total += cache.budget(l, h);
    }
  EXPECT_EQ(total, 24u * s.head_count());
  EXPECT_GT(cache.budget(0, 0), cache.budget(2, 0));
  // Stored rows: 32 + 4 bytes each for keys and values vs 256 + 256 for f32 head_dim 64.
  KVCache<TypeParam, budget::PyramidKV, select::H2O> plain(s, {.budget = 24}, budget::PyramidKV{.beta = 20, .window = 8},
                                                           select::H2O{});
  for (std::size_t l = 0; l < s.layers; ++l) {
    plain.prefill(l, 0, keys, values);
    plain.attend(l, queries, out);
  }
  EXPECT_LT(cache.memory_bytes() - cache.template get<lowrank::SVD>().memory_bytes(), plain.memory_bytes() / 4);
}

}  // namespace
}  // namespace kvc
