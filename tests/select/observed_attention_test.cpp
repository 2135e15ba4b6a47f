// ObservedAttention through a real cache against its definition written out here: every prompt
// query's softmax weights (GQA group averaged), summed per token and divided by the number of
// prompt queries that see the token; the budget's highest averages stay (ties to the more
// recent); a prompt attended in chunks scores the same; short prompts untouched; decoding after
// the compression evicts nothing and allocates nothing within the slack.
#include "support/allocation_counter.hpp"
#include "kvc/kvc.hpp"
#include "kvc/select/observed_attention.hpp"
#include "select/prompt_support.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace kvc {
namespace {

using namespace prompt_test;

constexpr std::size_t kDim = 8;

std::vector<std::int32_t> expected_kept(const std::vector<float>& keys, const std::vector<float>& queries,
                                        std::size_t n, const Shape& shape, std::size_t h, std::size_t budget,
                                        bool average = true) {
  std::vector<double> score(n, 0.0);
  for (std::size_t r = 0; r < n; ++r) {
    const auto w = weights_of(keys, queries, shape, h, r);
    for (std::size_t t = 0; t <= r; ++t) score[t] += w[t];
  }
  if (average)
    for (std::size_t t = 0; t < n; ++t) score[t] /= static_cast<double>(n - t);
  return top_indices(score, budget);
}

template <class L>
class ObservedAttentionLayouts : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(ObservedAttentionLayouts, Layouts);

TYPED_TEST(ObservedAttentionLayouts, KeepsTheHighestAverageAttentionAsDefined) {
  const Shape shape{2, 4, 2, kDim};
  const std::size_t n = 40;
  const auto keys = random_floats(n * shape.kv_heads * kDim, 1);
  const auto queries = random_floats(n * shape.query_heads * kDim, 2);
  for (std::size_t split : {0u, 17u}) {
    KVCache<TypeParam, select::ObservedAttention> cache(shape, {.budget = 12});
    prefill_and_attend(cache, keys, keys, queries, split);
    EXPECT_EQ(cache.size(0, 0), n) << "attend compresses nothing: the prompt is compressed once";
    cache.compress_prompt();
    for (std::size_t l = 0; l < shape.layers; ++l)
      for (std::size_t h = 0; h < shape.kv_heads; ++h)
        EXPECT_EQ(positions_of(cache.positions(l, h)), expected_kept(keys, queries, n, shape, h, 12))
            << "split " << split << " layer " << l << " head " << h;
  }
}

// The average, not the sum: early tokens are seen by more queries and collect larger sums; on
// this data the two rankings differ, so the test above checks the division.
TEST(ObservedAttention, TheAverageRanksOtherwiseThanTheSum) {
  const Shape shape{1, 4, 2, kDim};
  const std::size_t n = 40;
  const auto keys = random_floats(n * shape.kv_heads * kDim, 1);
  const auto queries = random_floats(n * shape.query_heads * kDim, 2);
  for (std::size_t h = 0; h < shape.kv_heads; ++h)
    EXPECT_NE(expected_kept(keys, queries, n, shape, h, 12, true), expected_kept(keys, queries, n, shape, h, 12, false));
}

TEST(ObservedAttention, RatioBudgetAndDecodingWithoutEvictionOrAllocation) {
  const Shape shape{2, 4, 2, kDim};
  const std::size_t n = 64;
  KVCache<PagedLayout, select::ObservedAttention> cache(shape, {.budget_ratio = 0.25, .compress_slack = 32});
  const auto keys = random_floats(n * shape.kv_heads * kDim, 4);
  const auto queries = random_floats(n * shape.query_heads * kDim, 5);
  prefill_and_attend(cache, keys, keys, queries);
  cache.compress_prompt();
  EXPECT_EQ(positions_of(cache.positions(1, 0)), expected_kept(keys, queries, n, shape, 0, 16));
  expect_decode_grows_without_allocating(cache, 16, 30);
}

TEST(ObservedAttention, ShortPromptIsNotCompressed) {
  const Shape shape{1, 2, 1, kDim};
  KVCache<ContiguousLayout, select::ObservedAttention> cache(shape, {.budget = 40});
  prefill_and_attend(cache, random_floats(10 * kDim, 6), random_floats(10 * kDim, 7), random_floats(20 * kDim, 8));
  cache.compress_prompt();
  EXPECT_EQ(cache.size(0, 0), 10u);
}

// ObservedAttention has no parameter; its budget is the cache's, validated there.
TEST(ObservedAttention, BadBudgetsThrow) {
  const Shape shape{1, 2, 1, kDim};
  using Cache = KVCache<ContiguousLayout, select::ObservedAttention>;
  EXPECT_THROW(Cache(shape, {}), Error) << "a selection needs a budget or a ratio";
  EXPECT_THROW(Cache(shape, {.budget_ratio = -0.25}), Error);
  EXPECT_THROW(Cache(shape, {.budget = 64, .budget_ratio = 0.5}), Error);
}

}  // namespace
}  // namespace kvc
