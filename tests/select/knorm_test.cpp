// KNorm through a real cache and against its definition: the column holds each key's L2 norm as
// appended (also under quantization) and follows compaction; a head keeps its window plus the
// smallest norms, ties to the most recent; the cache counts the column in memory_bytes(); decode
// allocates nothing in steady state. (Its registry entry is tested in tests/eval/stack_spec_test.cpp.)
#include "support/allocation_counter.hpp"
#include "core/test_policies.hpp"
#include "kvc/kvc.hpp"
#include "kvc/select/knorm.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace kvc {
namespace {

using ::testing::ElementsAre;
using ::testing::Pointwise;
using ::testing::FloatEq;

std::vector<std::int32_t> positions_of(std::span<const std::int32_t> p) { return {p.begin(), p.end()}; }

// One KV head of dim 4 whose token t has key norms[t] * e_(t % 4).
std::vector<float> keys_with_norms(const std::vector<float>& norms) {
  std::vector<float> k(norms.size() * 4, 0.0f);
  for (std::size_t t = 0; t < norms.size(); ++t) k[t * 4 + t % 4] = norms[t];
  return k;
}

template <class L>
class KNormLayouts : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(KNormLayouts, Layouts);

TYPED_TEST(KNormLayouts, KeepsTheWindowAndTheSmallestNorms) {
  KVCache<TypeParam, select::KNorm> cache(Shape{1, 1, 1, 4}, {.budget = 4, .auto_compress = false},
                                          select::KNorm{.window = 2});
  const std::vector<float> norms{5, 1, 4, 2, 3, 0.5f, 6, 7};
  cache.prefill(0, 10, keys_with_norms(norms), std::vector<float>(32, 1.0f));
  EXPECT_THAT(cache.template column<select::KNorm>(0, 0), Pointwise(FloatEq(), norms));
  cache.compress();
  // Older tokens 0..5: the two smallest norms are tokens 5 (0.5) and 1 (1); window: 6, 7.
  EXPECT_THAT(positions_of(cache.positions(0, 0)), ElementsAre(11, 15, 16, 17));
  EXPECT_THAT(cache.template column<select::KNorm>(0, 0), ElementsAre(1.0f, 0.5f, 6.0f, 7.0f));
  cache.clear();
  EXPECT_TRUE(cache.template column<select::KNorm>(0, 0).empty());
}

// Decode with eviction every step: a large-norm token leaves once it is out of the window.
TEST(KNorm, DecodeEvictsLargeNormsOnceOutOfTheWindow) {
  KVCache<ContiguousLayout, select::KNorm> cache(Shape{1, 2, 1, 4}, {.budget = 3}, select::KNorm{.window = 1});
  std::vector<float> out(8);
  const std::vector<float> q(8, 0.25f);
  for (std::int32_t t = 0; t < 6; ++t) {
    const float norm = t % 2 == 0 ? 1.0f : 9.0f;  // even tokens small, odd ones large
    const std::vector<float> k{norm, 0, 0, 0}, v{0, 1, 0, 0};
    ASSERT_EQ(cache.append(0, t, k, v), Status::ok);
    cache.attend(0, q, out);
  }
  EXPECT_THAT(positions_of(cache.positions(0, 0)), ElementsAre(2, 4, 5));
}

TEST(KNorm, TiesGoToTheMoreRecentTokenAndTheWindowIsCappedAtTheBudget) {
  const select::KNorm k{.window = 1};
  std::vector<std::int32_t> positions(6);
  std::iota(positions.begin(), positions.end(), 0);
  std::vector<float> norms{2, 1, 2, 1, 2, 9};
  std::vector<std::uint32_t> scratch(6), keep(3);
  ASSERT_EQ(k.select(HeadRef<select::KNorm>(HeadInfo{0, 0, positions, 3}, norms, scratch), keep), 3u);
  EXPECT_THAT(keep, ElementsAre(1u, 3u, 5u));
  std::fill(norms.begin(), norms.end(), 1.0f);
  ASSERT_EQ(k.select(HeadRef<select::KNorm>(HeadInfo{0, 0, positions, 3}, norms, scratch), keep), 3u);
  EXPECT_THAT(keep, ElementsAre(3u, 4u, 5u));
  const select::KNorm wide{.window = 10};
  ASSERT_EQ(wide.select(HeadRef<select::KNorm>(HeadInfo{0, 0, positions, 2}, norms, scratch), keep), 2u);
  EXPECT_THAT(std::span(keep).first(2), ElementsAre(4u, 5u));
}

// The selection against its definition (sort by norm, then recency) on norms with many ties.
TEST(KNorm, SelectKeepsTheSmallestNormsWithTiesToTheMostRecent) {
  std::mt19937 rng(13);
  for (std::size_t window : {0, 1, 8})
    for (std::size_t n : {2, 9, 64, 1025}) {
      std::vector<float> norms(n);
      for (auto& x : norms) x = static_cast<float>(rng() % 6) * 0.5f;
      std::vector<std::int32_t> positions(n);
      std::iota(positions.begin(), positions.end(), 0);
      std::vector<std::uint32_t> scratch(n);
      const select::KNorm k{.window = window};
      for (std::size_t budget = 1; budget < n; budget += 1 + budget / 3) {
        SCOPED_TRACE("n " + std::to_string(n) + " budget " + std::to_string(budget) + " window " + std::to_string(window));
        const std::size_t recent = std::min(window, budget), older = n - recent;
        std::vector<std::uint32_t> order(older);
        std::iota(order.begin(), order.end(), 0u);
        std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
          return norms[a] < norms[b] || (norms[a] == norms[b] && a > b);
        });
        std::vector<std::uint32_t> want(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(std::min(budget - recent, older)));
        for (std::size_t i = older; i < n; ++i) want.push_back(static_cast<std::uint32_t>(i));
        std::sort(want.begin(), want.end());
        std::vector<std::uint32_t> keep(budget);
        keep.resize(k.select(HeadRef<select::KNorm>(HeadInfo{0, 0, positions, budget}, norms, scratch), keep));
        EXPECT_EQ(keep, want);
      }
    }
}

// Norms come from the keys as appended, not from the rounded int4 rows.
TEST(KNorm, NormsAreOfTheAppendedKeysUnderQuantization) {
  const Shape s{1, 2, 2, 32};
  KVCache<ContiguousLayout, select::KNorm, quant::PerToken> cache(s, {.budget = 8}, select::KNorm{},
                                                                  quant::PerToken{.bits = 4, .group = 32});
  std::mt19937 rng(3);
  const auto keys = testing::random_vector(5 * 64, rng), values = testing::random_vector(5 * 64, rng);
  cache.prefill(0, 0, keys, values);
  const auto column = cache.column<select::KNorm>(0, 1);
  ASSERT_EQ(column.size(), 5u);
  for (std::size_t t = 0; t < 5; ++t) {
    float sum = 0.0f;
    for (std::size_t d = 0; d < 32; ++d) sum += keys[t * 64 + 32 + d] * keys[t * 64 + 32 + d];
    EXPECT_FLOAT_EQ(column[t], std::sqrt(sum)) << "token " << t;
  }
}

// The column is reserved like the positions (budget + slack + 1 floats per head) and counted.
TEST(KNorm, TheCacheCountsTheColumnInMemoryBytes) {
  const Shape s{2, 4, 2, 8};
  const KVCache<ContiguousLayout, select::KNorm> knorm(s, {.budget = 8, .compress_slack = 3});
  const KVCache<ContiguousLayout, testing::KeepRecent> recent(s, {.budget = 8, .compress_slack = 3});
  EXPECT_EQ(knorm.memory_bytes() - recent.memory_bytes(), s.head_count() * (8 + 3 + 1) * sizeof(float));
}

TYPED_TEST(KNormLayouts, DecodeAllocatesNothingInSteadyState) {
  const Shape s{2, 8, 2, 32};
  KVCache<TypeParam, select::KNorm> cache(s, {.budget = 24, .capacity = 64});
  std::mt19937 rng(7);
  const auto q = testing::random_vector(s.query_heads * s.head_dim, rng);
  std::vector<float> out(q.size());
  const auto keys = testing::random_vector(300 * s.kv_heads * s.head_dim, rng);  // norms differ per token
  std::size_t before = 0;
  for (std::size_t t = 0; t < 300; ++t) {
    const std::span<const float> k(keys.data() + t * s.kv_heads * s.head_dim, s.kv_heads * s.head_dim);
    if (t == 50) before = kvc::testing::allocation_count();
    for (std::size_t layer = 0; layer < s.layers; ++layer) {
      ASSERT_EQ(cache.append(layer, static_cast<std::int32_t>(t), k, k), Status::ok);
      cache.attend(layer, q, out);
    }
  }
  EXPECT_EQ(kvc::testing::allocation_count() - before, 0u);
  EXPECT_EQ(cache.size(1, 1), 24u);
}

}  // namespace
}  // namespace kvc
