// AdaKV: share() against a hand computation (floors, then the layer's top scores across heads);
// through a real cache with SnapKV the heads' budgets become ragged with the layer's total
// unchanged, each head keeps exactly its budget, and memory_bytes() follows the per-head
// budgets in both layouts.
#include "kvc/kvc.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace kvc {
namespace {

using ::testing::ElementsAre;

TEST(AdaKV, SharesTheLayersBudgetByScoreAboveTheFloors) {
  // Budgets 3 and 3, alpha 0.5: floors of 1 (the 9 and the 5), then the 4 best of the rest across
  // heads: 8, 7 and two of head 0's 1s, above head 1's zeros.
  const std::vector<float> scores{9, 8, 7, 1, 1, 1, 5, 0, 0, 0, 0, 0};
  std::vector<std::size_t> budgets{3, 3};
  budget::AdaKV{.alpha = 0.5}.share(scores, 6, budgets);
  EXPECT_THAT(budgets, ElementsAre(5, 1));
  // alpha 1: each head keeps its own budget.
  budgets = {3, 3};
  budget::AdaKV{.alpha = 1.0}.share(scores, 6, budgets);
  EXPECT_THAT(budgets, ElementsAre(3, 3));
  // alpha 0 still leaves every head one token.
  budgets = {2, 2};
  budget::AdaKV{.alpha = 0.0}.share(std::vector<float>{9, 8, 7, 6, 0, 0, 0, 0}, 4, budgets);
  EXPECT_THAT(budgets, ElementsAre(3, 1));
}

TEST(AdaKV, AlphaOutsideZeroOneThrows) {
  using Cache = KVCache<ContiguousLayout, budget::AdaKV, select::SnapKV>;
  EXPECT_THROW(Cache(Shape{1, 4, 2, 8}, {.budget = 16}, budget::AdaKV{.alpha = 1.5}, select::SnapKV{.window = 4}),
               Error);
}

// Head 0's keys are large (peaked attention), head 1's small (flat attention).
std::vector<float> contrasted_keys(std::size_t n) {
  std::mt19937 gen(3);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> k(n * 2 * 8);
  for (std::size_t t = 0; t < n; ++t)
    for (std::size_t d = 0; d < 16; ++d) k[t * 16 + d] = dist(gen) * (d < 8 ? 3.0f : 0.1f);
  return k;
}

template <class L>
class AdaKVLayouts : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(AdaKVLayouts, Layouts);

TYPED_TEST(AdaKVLayouts, HeadsGetRaggedBudgetsAndMemoryFollowsThem) {
  const Shape shape{1, 4, 2, 8};
  const std::size_t n = 100, budget = 12;
  KVCache<TypeParam, budget::AdaKV, select::SnapKV> cache(shape, {.budget = budget}, budget::AdaKV{},
                                                          select::SnapKV{.window = 4, .kernel = 3});
  const auto keys = contrasted_keys(n);
  std::mt19937 gen(4);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> queries(n * 4 * 8), out(queries.size());
  for (auto& q : queries) q = dist(gen);
  cache.prefill(0, 0, keys, keys);
  cache.attend(0, queries, out);
  cache.compress_prompt();

  const std::size_t b0 = cache.budget(0, 0), b1 = cache.budget(0, 1);
  EXPECT_EQ(b0 + b1, 2 * budget) << "the layer's total is shared, not changed";
  EXPECT_NE(b0, b1) << "the heads' scores differ, so should their budgets";
  EXPECT_GE(std::min(b0, b1), budget / 2) << "alpha = 0.5 floor";
  EXPECT_EQ(cache.size(0, 0), b0);
  EXPECT_EQ(cache.size(0, 1), b1);
  for (std::size_t h = 0; h < 2; ++h) EXPECT_EQ(cache.positions(0, h).back(), 99) << "the window is kept";

  // Per head: the store cut to budget + 1 rows (compress_slack 0), positions and SnapKV's column
  // to budget + 1 entries. Rows are f32: 8 floats of key and 8 of value.
  const std::size_t row = 2 * 8 * sizeof(float), per_token = sizeof(std::int32_t) + sizeof(float);
  std::size_t expected = 0;
  for (std::size_t b : {b0, b1}) {
    if constexpr (std::is_same_v<TypeParam, ContiguousLayout>) {
      expected += (b + 1) * (row + per_token);
    } else {
      const std::size_t bt = cache.layout_config().block_tokens, blocks = (b + bt - 1) / bt;
      expected += blocks * bt * row + blocks * sizeof(std::byte*) + (b + 1) * per_token;
    }
  }
  EXPECT_EQ(cache.memory_bytes(), expected);
}

}  // namespace
}  // namespace kvc
