// Uniform: every (layer, KV head) gets Options::budget, in a real cache and called directly.
#include "kvc/budget/uniform.hpp"
#include "kvc/kvc.hpp"
#include "kvc/select/streaming_llm.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace kvc {
namespace {

using ::testing::Each;
using ::testing::HasSubstr;

TEST(Uniform, EveryHeadGetsTheAverage) {
  const Shape s{3, 8, 2, 16};
  std::vector<std::size_t> budgets(s.head_count(), 0);
  budget::Uniform{}.allocate(BudgetContext{s, 10, 0}, budgets);
  EXPECT_THAT(budgets, Each(10u));
}

TEST(Uniform, CacheHeadsHoldTheirBudget) {
  const Shape s{3, 4, 2, 8};
  KVCache<ContiguousLayout, budget::Uniform, select::StreamingLLM> cache(s, {.budget = 12});
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> k(s.kv_heads * s.head_dim), q(s.query_heads * s.head_dim), out(q.size());
  for (std::size_t t = 0; t < 40; ++t)
    for (std::size_t l = 0; l < s.layers; ++l) {
      for (auto& x : k) x = normal(rng);
      for (auto& x : q) x = normal(rng);
      cache.append(l, static_cast<std::int32_t>(t), k, k);
      cache.attend(l, q, out);
    }
  for (std::size_t l = 0; l < s.layers; ++l)
    for (std::size_t h = 0; h < s.kv_heads; ++h) {
      EXPECT_EQ(cache.budget(l, h), 12u);
      EXPECT_EQ(cache.size(l, h), 12u);
    }
}

TEST(Uniform, RejectsAZeroAverageAndWrongSlotCount) {
  const Shape s{2, 2, 2, 8};
  std::vector<std::size_t> budgets(s.head_count());
  try {
    budget::Uniform{}.allocate(BudgetContext{s, 0, 0}, budgets);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("kvc::budget::Uniform"));
  }
  std::vector<std::size_t> too_few(3);
  EXPECT_THROW(budget::Uniform{}.allocate(BudgetContext{s, 4, 0}, too_few), Error);
}

}  // namespace
}  // namespace kvc
