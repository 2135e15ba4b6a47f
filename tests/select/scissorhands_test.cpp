// Scissorhands against its definition (per token, the number of the last `history` queries that
// gave it less than their mean weight; keep the recent window and the smallest counts, ties to
// the most recent) and through a real cache in both layouts: hand-made attention decides which
// tokens survive; bad parameters throw; decode allocates nothing in steady state.
#include "support/allocation_counter.hpp"
#include "kvc/kvc.hpp"
#include "kvc/select/scissorhands.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace kvc {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::int32_t> positions_of(std::span<const std::int32_t> p) { return {p.begin(), p.end()}; }

// The column's cost as documented: 512 history bits and the query count, 8-byte aligned.
static_assert(sizeof(select::Scissorhands::Token) == 72);

// Queries of a growing head (no eviction): query q sees tokens [0, seen[q]). Counts and the kept
// set are computed from the definition and compared with the policy's, for several budgets.
TEST(Scissorhands, CountsAndSelectionMatchTheDefinition) {
  std::mt19937 rng(3);
  for (std::size_t history : {1, 3, 7, 64, 65, 400}) {
    const select::Scissorhands s{.history = history, .recent = 2};
    const std::size_t n = 80;
    std::vector<float> all_weights;  // [query][n], 0 beyond what the query sees
    std::vector<std::size_t> seen;
    for (std::size_t q = 0; q < 100; ++q) {
      const std::size_t m = std::min<std::size_t>(n, 1 + q);
      std::vector<float> w(m);
      for (auto& x : w) x = static_cast<float>(rng() % 8);
      w[0] += 1.0f;
      const float total = std::accumulate(w.begin(), w.end(), 0.0f);
      for (auto& x : w) x /= total;
      w.resize(n, 0.0f);
      all_weights.insert(all_weights.end(), w.begin(), w.end());
      seen.push_back(m);
    }
    std::vector<std::int32_t> positions(n);
    std::iota(positions.begin(), positions.end(), 0);
    std::vector<select::Scissorhands::Token> column(n);
    std::vector<std::uint32_t> scratch(n);
    const HeadRef<select::Scissorhands> head(HeadInfo{0, 0, positions}, column, scratch);
    for (std::size_t q = 0; q < seen.size(); ++q)
      s.on_attend(head, std::span<const float>(all_weights).subspan(q * n, seen[q]));
    // Definition: over the last `history` queries, those that saw token i with a weight below 1/seen.
    std::vector<std::size_t> count(n, 0);
    for (std::size_t q = seen.size() - std::min(history, seen.size()); q < seen.size(); ++q)
      for (std::size_t i = 0; i < seen[q]; ++i)
        if (all_weights[q * n + i] < 1.0f / static_cast<float>(seen[q])) ++count[i];
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(select::Scissorhands::unimportant(column[i]), count[i]) << i;
    for (std::size_t budget = 2; budget < n; budget += 7) {
      SCOPED_TRACE("history " + std::to_string(history) + " budget " + std::to_string(budget));
      const std::size_t older = n - 2;
      std::vector<std::uint32_t> order(older);
      std::iota(order.begin(), order.end(), 0u);
      std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
        return count[a] < count[b] || (count[a] == count[b] && a > b);
      });
      std::vector<std::uint32_t> want(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(budget - 2));
      want.push_back(static_cast<std::uint32_t>(n - 2));
      want.push_back(static_cast<std::uint32_t>(n - 1));
      std::sort(want.begin(), want.end());
      std::vector<std::uint32_t> keep(budget);
      keep.resize(s.select(HeadRef<select::Scissorhands>(HeadInfo{0, 0, positions, budget}, column, scratch), keep));
      EXPECT_EQ(keep, want);
    }
  }
}

// One KV head of dim 4, scale 1. Tokens 1 and 4 have key 10 e0, the others e1; every query is
// `sign` * e0. With sign +1 tokens 1 and 4 take almost all attention (never below the mean); the
// others are below it at every query. Budget 4, recent 1: the window (token 9), tokens 1 and 4
// (count 0), and of the rest the one seen by the fewest queries (8: counted twice).
template <class L>
std::vector<std::int32_t> decode_hand_made(float sign) {
  KVCache<L, select::Scissorhands> cache(Shape{1, 1, 1, 4}, {.budget = 4, .scale = 1.0f},
                                         select::Scissorhands{.history = 400, .recent = 1});
  const std::vector<float> q{sign, 0, 0, 0};
  std::vector<float> out(4);
  for (std::int32_t t = 0; t < 10; ++t) {
    const bool heavy = t == 1 || t == 4;
    const std::vector<float> k = heavy ? std::vector<float>{10, 0, 0, 0} : std::vector<float>{0, 1, 0, 0};
    EXPECT_EQ(cache.append(0, t, k, std::vector<float>(4, 1.0f)), Status::ok);
    cache.attend(0, q, out);
    EXPECT_LE(cache.size(0, 0), 4u);
  }
  return positions_of(cache.positions(0, 0));
}

template <class L>
class ScissorhandsLayouts : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(ScissorhandsLayouts, Layouts);

TYPED_TEST(ScissorhandsLayouts, PersistentlyImportantTokensSurvive) {
  EXPECT_THAT(decode_hand_made<TypeParam>(+1.0f), ElementsAre(1, 4, 8, 9));
  // Queries pointing away: tokens 1 and 4 are below the mean at every query and go first.
  const auto away = decode_hand_made<TypeParam>(-1.0f);
  EXPECT_THAT(away, ::testing::Not(::testing::Contains(1)));
  EXPECT_THAT(away, ::testing::Not(::testing::Contains(4)));
}

TYPED_TEST(ScissorhandsLayouts, DecodeAllocatesNothingInSteadyState) {
  const Shape s{2, 4, 2, 16};
  KVCache<TypeParam, select::Scissorhands> cache(s, {.budget = 24, .compress_slack = 4});
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  std::vector<float> k(s.kv_heads * s.head_dim), q(s.query_heads * s.head_dim), out(q.size());
  std::size_t before = 0;
  for (std::int32_t t = 0; t < 300; ++t) {
    if (t == 60) before = kvc::testing::allocation_count();
    for (auto& x : k) x = normal(rng);
    for (auto& x : q) x = normal(rng);
    for (std::size_t layer = 0; layer < s.layers; ++layer) {
      ASSERT_EQ(cache.append(layer, t, k, k), Status::ok);
      cache.attend(layer, q, out);
    }
  }
  EXPECT_EQ(kvc::testing::allocation_count() - before, 0u);
  EXPECT_LE(cache.size(1, 1), 24u + 4u);
}

TEST(Scissorhands, BadParametersThrow) {
  const auto expect_error = [](select::Scissorhands s, std::size_t budget, const char* what) {
    try {
      KVCache<ContiguousLayout, select::Scissorhands> cache(Shape{1, 1, 1, 4}, {.budget = budget}, s);
      ADD_FAILURE() << what << " must be rejected";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(what));
    }
  };
  expect_error({.history = 0}, 16, "kvc::select::Scissorhands: history = 0");
  expect_error({.history = 513}, 16, "history = 513");
  expect_error({.history = 8, .recent = 17}, 16, "recent = 17 exceeds the budget 16");
}

}  // namespace
}  // namespace kvc
