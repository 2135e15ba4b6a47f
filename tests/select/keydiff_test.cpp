// KeyDiff through a real cache against its definition written out here: the anchor is the mean
// of the head's L2-normalized keys, a token scores -cos(key, anchor), the budget's highest scores
// stay (ties to the more recent); short prompts untouched; decoding after the compression evicts
// nothing and allocates nothing within the slack.
#include "support/allocation_counter.hpp"
#include "kvc/kvc.hpp"
#include "kvc/select/keydiff.hpp"
#include "select/prompt_support.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace kvc {
namespace {

using namespace prompt_test;

constexpr std::size_t kDim = 8;

std::vector<std::int32_t> expected_kept(const std::vector<float>& keys, std::size_t n, const Shape& shape,
                                        std::size_t h, std::size_t budget) {
  const std::size_t d = shape.head_dim;
  const auto key = [&](std::size_t t) { return keys.data() + (t * shape.kv_heads + h) * d; };
  const auto norm = [&](const float* k) {
    double s = 0.0;
    for (std::size_t c = 0; c < d; ++c) s += double{k[c]} * k[c];
    return std::sqrt(s);
  };
  std::vector<double> anchor(d, 0.0);
  for (std::size_t t = 0; t < n; ++t)
    for (std::size_t c = 0; c < d; ++c) anchor[c] += key(t)[c] / norm(key(t)) / static_cast<double>(n);
  double anchor_norm = 0.0;
  for (double a : anchor) anchor_norm += a * a;
  anchor_norm = std::sqrt(anchor_norm);
  std::vector<double> score(n);
  for (std::size_t t = 0; t < n; ++t) {
    double dot = 0.0;
    for (std::size_t c = 0; c < d; ++c) dot += key(t)[c] * anchor[c];
    score[t] = -dot / (norm(key(t)) * anchor_norm);
  }
  return top_indices(score, budget);
}

template <class L>
class KeyDiffLayouts : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(KeyDiffLayouts, Layouts);

TYPED_TEST(KeyDiffLayouts, KeepsTheKeysLeastLikeTheAnchorAsDefined) {
  const Shape shape{2, 4, 2, kDim};
  const std::size_t n = 50;
  const auto keys = random_floats(n * shape.kv_heads * kDim, 1);
  const auto values = random_floats(keys.size(), 2);
  const auto queries = random_floats(n * shape.query_heads * kDim, 3);
  for (std::size_t budget : {1u, 13u, 49u}) {
    KVCache<TypeParam, select::KeyDiff> cache(shape, {.budget = budget});
    prefill_and_attend(cache, keys, values, queries, 20);
    EXPECT_EQ(cache.size(0, 0), n) << "attend compresses nothing: KeyDiff compresses the prompt once";
    cache.compress_prompt();
    for (std::size_t l = 0; l < shape.layers; ++l)
      for (std::size_t h = 0; h < shape.kv_heads; ++h)
        EXPECT_EQ(positions_of(cache.positions(l, h)), expected_kept(keys, n, shape, h, budget))
            << "budget " << budget << " layer " << l << " head " << h;
  }
}

// Keys along one direction and a few pointing elsewhere: the few are what KeyDiff keeps.
TEST(KeyDiff, KeepsTheOutlyingDirections) {
  const Shape shape{1, 1, 1, kDim};
  const std::size_t n = 30;
  std::vector<float> keys(n * kDim, 0.0f);
  for (std::size_t t = 0; t < n; ++t) keys[t * kDim] = 1.0f + 0.01f * static_cast<float>(t);
  for (std::size_t t : {3u, 17u, 25u}) keys[t * kDim] = 0.0f, keys[t * kDim + 1 + t % 5] = 2.0f;
  KVCache<ContiguousLayout, select::KeyDiff> cache(shape, {.budget = 3});
  prefill_and_attend(cache, keys, keys, random_floats(n * kDim, 4));
  cache.compress_prompt();
  EXPECT_EQ(positions_of(cache.positions(0, 0)), (std::vector<std::int32_t>{3, 17, 25}));
}

TEST(KeyDiff, RatioBudgetAndDecodingWithoutEvictionOrAllocation) {
  const Shape shape{2, 4, 2, kDim};
  const std::size_t n = 64;
  KVCache<PagedLayout, select::KeyDiff> cache(shape, {.budget_ratio = 0.25, .compress_slack = 32});
  const auto keys = random_floats(n * shape.kv_heads * kDim, 5);
  prefill_and_attend(cache, keys, random_floats(keys.size(), 6), random_floats(n * shape.query_heads * kDim, 7));
  cache.compress_prompt();
  EXPECT_EQ(positions_of(cache.positions(1, 1)), expected_kept(keys, n, shape, 1, 16));
  expect_decode_grows_without_allocating(cache, 16, 30);
}

TEST(KeyDiff, ShortPromptIsNotCompressed) {
  const Shape shape{1, 2, 1, kDim};
  KVCache<ContiguousLayout, select::KeyDiff> cache(shape, {.budget = 40});
  prefill_and_attend(cache, random_floats(10 * kDim, 8), random_floats(10 * kDim, 9), random_floats(20 * kDim, 10));
  cache.compress_prompt();
  EXPECT_EQ(cache.size(0, 0), 10u);
}

// KeyDiff has no parameter; its budget is the cache's, validated there.
TEST(KeyDiff, BadBudgetsThrow) {
  const Shape shape{1, 2, 1, kDim};
  using Cache = KVCache<ContiguousLayout, select::KeyDiff>;
  EXPECT_THROW(Cache(shape, {}), Error) << "a selection needs a budget or a ratio";
  EXPECT_THROW(Cache(shape, {.budget_ratio = 1.5}), Error);
  EXPECT_THROW(Cache(shape, {.budget = 64, .budget_ratio = 0.5}), Error);
}

}  // namespace
}  // namespace kvc
