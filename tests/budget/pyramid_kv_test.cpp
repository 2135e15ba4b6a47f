// PyramidKV: layer budgets for given shapes (hand-computed), decreasing from the bottom layer,
// total preserved exactly, every KV head of a layer alike, bad parameters rejected, and a real
// cache whose heads hold exactly their pyramid budgets.
#include "kvc/budget/pyramid_kv.hpp"
#include "kvc/kvc.hpp"
#include "kvc/select/h2o.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <numeric>
#include <random>
#include <vector>

namespace kvc {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Per-layer budgets (KV head 0 of each layer) after checking the heads of a layer agree.
std::vector<std::size_t> layer_budgets(const budget::PyramidKV& p, const Shape& s, std::size_t average,
                                       std::size_t capacity = 0) {
  std::vector<std::size_t> budgets(s.head_count(), 0);
  p.allocate(BudgetContext{s, average, capacity}, budgets);
  std::vector<std::size_t> per_layer;
  for (std::size_t l = 0; l < s.layers; ++l) {
    for (std::size_t h = 1; h < s.kv_heads; ++h) EXPECT_EQ(budgets[s.head_index(l, h)], budgets[s.head_index(l, 0)]);
    per_layer.push_back(budgets[s.head_index(l, 0)]);
  }
  return per_layer;
}

// average 40, window 8, beta 20, 4 layers: base 32, min_num 32/20 = 1, max_num 63.
// Exact shares 63, 42.33, 21.67, 1 -> floors 63, 42, 21, 1 (127 of 128) -> the lost token goes to
// the bottom layer: 64, 42, 21, 1 -> plus the window: 72, 50, 29, 9. Mean 40.
TEST(PyramidKV, HandComputedFourLayers) {
  EXPECT_THAT(layer_budgets({.beta = 20, .window = 8}, Shape{4, 8, 2, 64}, 40), ElementsAre(72u, 50u, 29u, 9u));
}

// The reference rounds the step down ((63 - 1) // 3 = 20 -> 63, 43, 23, 3: 132 > 128 tokens);
// that would overshoot the total the container allows.
TEST(PyramidKV, TotalIsPreservedExactly) {
  for (std::size_t layers : {2u, 3u, 4u, 7u, 32u})
    for (std::size_t average : {9u, 10u, 64u, 129u, 2048u})
      for (std::size_t beta : {1u, 2u, 20u, 100u}) {
        const Shape s{layers, 8, 2, 64};
        const auto b = layer_budgets({.beta = beta, .window = 8}, s, average);
        EXPECT_EQ(std::accumulate(b.begin(), b.end(), std::size_t{0}), layers * average)
            << layers << " layers, average " << average << ", beta " << beta;
        for (std::size_t l = 1; l < layers; ++l) EXPECT_LE(b[l], b[l - 1]);
        EXPECT_GE(b.back(), 1u);
        // The top layer keeps the window plus (average - window) / beta.
        EXPECT_EQ(b.back(), 8 + (average - 8) / beta);
      }
}

// Llama-2-7B-like: 32 layers, the paper's beta 20 and the reference's window 8, 128 tokens per
// head on average: base 120, min_num 6, max_num 234; the floors lose 1 token in total, which
// goes to the bottom layer: 234 + 1 + 8 = 243; the top layer gets 120 / 20 + 8 = 14.
TEST(PyramidKV, ThirtyTwoLayersDecreaseFromBottomToTop) {
  const auto b = layer_budgets({}, Shape{32, 32, 32, 128}, 128);
  EXPECT_EQ(b.front(), 243u);
  EXPECT_EQ(std::accumulate(b.begin(), b.end(), std::size_t{0}), 32u * 128u);
  EXPECT_EQ(b.back(), 14u);
  EXPECT_GT(b[0], b[16]);
  EXPECT_GT(b[16], b[31]);
}

TEST(PyramidKV, BetaOneIsUniform) {
  EXPECT_THAT(layer_budgets({.beta = 1, .window = 8}, Shape{3, 4, 2, 8}, 20), ElementsAre(20u, 20u, 20u));
}

TEST(PyramidKV, OneLayerGetsTheAverage) {
  EXPECT_THAT(layer_budgets({}, Shape{1, 4, 2, 8}, 20), ElementsAre(20u));
}

// No window and a share that rounds to 0 (4 / 20): min_num is raised to 1, max_num = 7; shares
// 7, 5.5, 4, 2.5, 1 -> 7, 5, 4, 2, 1 plus the lost token at the bottom.
TEST(PyramidKV, EveryLayerKeepsAtLeastOneToken) {
  const auto b = layer_budgets({.beta = 20, .window = 0}, Shape{5, 4, 2, 8}, 4);
  EXPECT_THAT(b, ElementsAre(8u, 5u, 4u, 2u, 1u));
  EXPECT_EQ(std::accumulate(b.begin(), b.end(), std::size_t{0}), 5u * 4u);
}

TEST(PyramidKV, RejectsBadParameters) {
  const Shape s{4, 4, 2, 8};
  std::vector<std::size_t> budgets(s.head_count());
  const auto message = [&](const budget::PyramidKV& p, std::size_t average, std::size_t capacity = 0) {
    try {
      p.allocate(BudgetContext{s, average, capacity}, budgets);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message({.beta = 0}, 40), HasSubstr("kvc::budget::PyramidKV: beta must be >= 1"));
  EXPECT_THAT(message({.window = 8}, 8), HasSubstr("average budget 8 must exceed the window 8"));
  EXPECT_THAT(message({.beta = 20, .window = 8}, 40, 64), HasSubstr("bottom layer's budget 72 exceeds the capacity 64"));
  // Through the cache: the same error when it is built.
  using Cache = KVCache<ContiguousLayout, budget::PyramidKV, select::H2O>;
  EXPECT_THROW(Cache(s, {.budget = 40, .capacity = 64}), Error);
  EXPECT_NO_THROW(Cache(s, {.budget = 40, .capacity = 72}));
}

// A real cache: each head holds exactly its layer's budget, and the memory of the rows follows.
TEST(PyramidKV, CacheHeadsHoldTheirLayerBudget) {
  const Shape s{4, 4, 2, 16};
  KVCache<PagedLayout, budget::PyramidKV, select::H2O> cache(s, {.budget = 40}, PagedLayout::config{1, nullptr});
  std::mt19937 rng(2);
  std::normal_distribution<float> normal;
  std::vector<float> k(s.kv_heads * s.head_dim), q(s.query_heads * s.head_dim), out(q.size());
  for (std::size_t t = 0; t < 100; ++t)
    for (std::size_t l = 0; l < s.layers; ++l) {
      for (auto& x : k) x = normal(rng);
      for (auto& x : q) x = normal(rng);
      cache.append(l, static_cast<std::int32_t>(t), k, k);
      cache.attend(l, q, out);
    }
  const std::size_t want[] = {72, 50, 29, 9};
  for (std::size_t l = 0; l < s.layers; ++l)
    for (std::size_t h = 0; h < s.kv_heads; ++h) {
      EXPECT_EQ(cache.budget(l, h), want[l]);
      EXPECT_EQ(cache.size(l, h), want[l]);
    }
  EXPECT_EQ(cache.tokens(), 2u * 160u);
  // One-token pages: the pool holds exactly the kept rows (f32 keys and values, 16 dims).
  const auto& pool = *cache.layout_config().pool;
  EXPECT_EQ((pool.blocks_allocated() - pool.blocks_free()) * pool.block_bytes(), 2u * 160u * (2u * 16u * 4u));
}

}  // namespace
}  // namespace kvc
