// H2O through a real cache: hand-made keys and queries decide which tokens collect attention,
// and those are the heavy hitters that survive; scores follow the compaction; GQA reductions
// change the survivors; bad parameters throw; eviction frees memory; on_attend() allocates nothing
// in steady state (counted by replacing operator new in this test binary).
#include "support/allocation_counter.hpp"
#include "kvc/kvc.hpp"
#include "kvc/select/h2o.hpp"

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
using ::testing::HasSubstr;

std::vector<std::int32_t> positions_of(std::span<const std::int32_t> p) { return {p.begin(), p.end()}; }

std::vector<float> random_vector(std::size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

// One KV head of dim 4. Tokens 1 and 4 have key 10 e0, the others e1; every query is
// `query_sign` * e0. With a positive sign tokens 1 and 4 take almost all the attention of every
// later query; with a negative sign they take almost none.
template <class L>
std::vector<std::int32_t> decode_hand_made(float query_sign, std::size_t steps = 10) {
  const Shape s{1, 1, 1, 4};
  KVCache<L, select::H2O> cache(s, {.budget = 4}, select::H2O{.recent_fraction = 0.5});
  const std::vector<float> q{query_sign, 0, 0, 0};
  std::vector<float> out(4);
  for (std::size_t t = 0; t < steps; ++t) {
    const bool heavy = t == 1 || t == 4;
    const std::vector<float> k = heavy ? std::vector<float>{10, 0, 0, 0} : std::vector<float>{0, 1, 0, 0};
    const std::vector<float> v{static_cast<float>(t), 0, 0, 0};
    cache.append(0, static_cast<std::int32_t>(t), k, v);
    cache.attend(0, q, out);
    EXPECT_LE(cache.size(0, 0), 4u);
  }
  return positions_of(cache.positions(0, 0));
}

TEST(H2O, HeavyHittersByAccumulatedAttentionSurvive) {
  // Budget 4, recent_fraction 0.5: the 2 newest tokens and the 2 heaviest older ones.
  EXPECT_THAT(decode_hand_made<ContiguousLayout>(+1.0f), ElementsAre(1, 4, 8, 9));
  EXPECT_THAT(decode_hand_made<PagedLayout>(+1.0f), ElementsAre(1, 4, 8, 9));
  // Same keys, queries pointing away: tokens 1 and 4 get no attention and are evicted.
  const auto away = decode_hand_made<ContiguousLayout>(-1.0f);
  EXPECT_THAT(away, ::testing::Not(::testing::Contains(1)));
  EXPECT_THAT(away, ::testing::Not(::testing::Contains(4)));
  EXPECT_THAT(away, ::testing::IsSupersetOf({8, 9}));
}

TEST(H2O, RecentFractionSplitsTheBudget) {
  const select::H2O h{.recent_fraction = 0.25};
  EXPECT_EQ(h.recent_tokens(8), 2u);
  EXPECT_EQ(h.recent_tokens(2), 1u);  // 0.5 rounds away from zero
  EXPECT_EQ(select::H2O{.recent_fraction = 0.0}.recent_tokens(8), 0u);
  EXPECT_EQ(select::H2O{.recent_fraction = 1.0}.recent_tokens(8), 8u);
}

// Scores: each token's sum of the weights of every query that saw it, kept across compactions.
TEST(H2O, ScoresAccumulateAndFollowTheCompaction) {
  const Shape s{1, 1, 1, 4};
  KVCache<ContiguousLayout, select::H2O> cache(s, {.budget = 3, .auto_compress = false},
                                               select::H2O{.recent_fraction = 0.0});
  std::mt19937 rng(5);
  std::vector<float> expected;
  std::vector<float> out(4);
  for (std::size_t t = 0; t < 8; ++t) {
    const auto k = random_vector(4, rng), v = random_vector(4, rng), q = random_vector(4, rng);
    cache.append(0, static_cast<std::int32_t>(t), k, v);
    cache.attend(0, q, out);
  }
  const auto before = cache.column<select::H2O>(0, 0);
  ASSERT_EQ(before.size(), 8u);
  // Every query's weights sum to one, so the scores of 8 queries sum to 8.
  EXPECT_NEAR(std::accumulate(before.begin(), before.end(), 0.0), 8.0, 1e-4);
  // The survivors are the three best scores (recent_fraction 0: no recency window).
  std::vector<std::uint32_t> order(8);
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(), [&](auto a, auto b) { return before[a] > before[b]; });
  std::vector<std::int32_t> best{static_cast<std::int32_t>(order[0]), static_cast<std::int32_t>(order[1]),
                                 static_cast<std::int32_t>(order[2])};
  std::sort(best.begin(), best.end());
  for (auto p : best) expected.push_back(before[static_cast<std::size_t>(p)]);
  cache.compress();
  EXPECT_EQ(positions_of(cache.positions(0, 0)), best);
  const auto after = cache.column<select::H2O>(0, 0);
  EXPECT_EQ(std::vector<float>(after.begin(), after.end()), expected);
  cache.clear();
  EXPECT_TRUE(cache.column<select::H2O>(0, 0).empty());
}

TEST(H2O, TiesGoToTheMoreRecentToken) {
  const select::H2O h{.recent_fraction = 0.0};
  // Tokens 0..5 with scores 1, 2, 1, 1, 2, 1: the heavy ones (1, 4) and then the newest of the
  // tied ones (5).
  const std::vector<float> w{1, 2, 1, 1, 2, 1};
  std::vector<std::int32_t> positions(6);
  std::iota(positions.begin(), positions.end(), 0);
  std::vector<float> scores(6);
  std::vector<std::uint32_t> scratch(6);
  const HeadRef<select::H2O> head(HeadInfo{0, 0, positions, 3}, scores, scratch);
  h.on_attend(head, w);
  std::vector<std::uint32_t> keep(3);
  ASSERT_EQ(h.select(head, keep), 3u);
  EXPECT_THAT(keep, ElementsAre(1u, 4u, 5u));
}

// The selection against its definition (sort by score, then recency), on scores with many ties
// and on unobserved tail tokens, for budgets from 1 to all but one token.
TEST(H2O, SelectKeepsTheHighestScoresWithTiesToTheMostRecent) {
  std::mt19937 rng(11);
  for (double fraction : {0.0, 0.3, 0.5, 1.0})
    for (std::size_t n : {2, 7, 64, 1025})
      for (std::size_t sinks : {0, 3}) {
      const select::H2O h{.recent_fraction = fraction, .sinks = sinks};
      std::vector<float> w(n - n / 8);  // the newest n / 8 tokens were never observed
      for (auto& x : w) x = static_cast<float>(rng() % 5) * 0.25f;
      std::vector<std::int32_t> positions(n);
      std::iota(positions.begin(), positions.end(), 0);
      std::vector<float> scores(n);
      std::vector<std::uint32_t> scratch(n);
      h.on_attend(HeadRef<select::H2O>(HeadInfo{0, 0, positions}, scores, scratch), w);
      for (std::size_t budget = 1; budget < n; budget += 1 + budget / 3) {
        SCOPED_TRACE("n " + std::to_string(n) + " budget " + std::to_string(budget) + " fraction " +
                     std::to_string(fraction) + " sinks " + std::to_string(sinks));
        // The first min(sinks, budget - recent) tokens, then the best scores among the other older ones.
        const std::size_t recent = h.recent_tokens(budget), older = n - recent;
        const std::size_t pinned = std::min({sinks, budget - recent, older});
        std::vector<std::uint32_t> order(older - pinned);
        std::iota(order.begin(), order.end(), static_cast<std::uint32_t>(pinned));
        const auto score = [&](std::uint32_t i) { return i < w.size() ? w[i] : 0.0f; };
        std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
          return score(a) > score(b) || (score(a) == score(b) && a > b);
        });
        std::vector<std::uint32_t> want(order.begin(),
                                        order.begin() + static_cast<std::ptrdiff_t>(std::min(budget - recent - pinned, older - pinned)));
        for (std::uint32_t i = 0; i < pinned; ++i) want.push_back(i);
        for (std::size_t i = older; i < n; ++i) want.push_back(static_cast<std::uint32_t>(i));
        std::sort(want.begin(), want.end());
        std::vector<std::uint32_t> keep(budget);
        keep.resize(h.select(HeadRef<select::H2O>(HeadInfo{0, 0, positions, budget}, scores, scratch), keep));
        EXPECT_EQ(keep, want);
      }
      }
}

// Two query heads share one KV head (scale 1, head_dim 4). Query head A (q = e0) gives token X
// 0.6 of its attention and token W 0.4; query head B (q = e1) gives W 0.5 and the newest token F
// 0.5. Budget 2 = F (recent) + one heavy hitter:
//   mean: X 0.30, W 0.45 -> W        sum: X 0.6, W 0.9 -> W        max: X 0.6, W 0.5 -> X
std::vector<std::int32_t> gqa_survivors(GqaReduce reduce) {
  const Shape s{1, 2, 1, 4};
  KVCache<ContiguousLayout, select::H2O> cache(s, {.budget = 2, .gqa_reduce = reduce, .scale = 1.0f},
                                               select::H2O{.recent_fraction = 0.5});
  const float a = 10.0f, c = 20.0f, w = 5.0f;
  const std::vector<float> keys{a, -c, 0, 0,                        // X
                                a - std::log(1.5f), w, 0, 0,        // W
                                -c, w, 0, 0};                       // F
  const std::vector<float> values(12, 1.0f);
  cache.prefill(0, 0, keys, values);
  const std::vector<float> q{1, 0, 0, 0, 0, 1, 0, 0};
  std::vector<float> out(8);
  cache.attend(0, q, out);
  return positions_of(cache.positions(0, 0));
}

TEST(H2O, GqaReductionChangesTheSurvivors) {
  EXPECT_THAT(gqa_survivors(GqaReduce::mean), ElementsAre(1, 2));
  EXPECT_THAT(gqa_survivors(GqaReduce::sum), ElementsAre(1, 2));
  EXPECT_THAT(gqa_survivors(GqaReduce::max), ElementsAre(0, 2));
}

TEST(H2O, SinksThatDoNotFitThrow) {
  try {
    KVCache<ContiguousLayout, select::H2O> cache(Shape{1, 1, 1, 4}, {.budget = 8}, select::H2O{.recent_fraction = 0.5, .sinks = 5});
    FAIL() << "5 sinks next to 4 recent tokens in a budget of 8 must be rejected";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("kvc::select::H2O: sinks = 5 do not fit next to the 4 recent tokens in the budget 8"));
  }
}

TEST(H2O, BadRecentFractionThrows) {
  for (double f : {-0.1, 1.5, std::nan("")}) {
    try {
      KVCache<ContiguousLayout, select::H2O> cache(Shape{1, 1, 1, 4}, {.budget = 4}, select::H2O{.recent_fraction = f});
      FAIL() << "recent_fraction " << f << " must be rejected";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("kvc::select::H2O: recent_fraction"));
    }
  }
}

template <class L>
class H2OLayouts : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(H2OLayouts, Layouts);

// Token 0 (key -10 e0) gets almost no attention from queries e0 (the prompt of tokens 0 and 1 is
// attended by its last query only, so no query sees token 0 alone): without sinks it has the lowest
// score and is evicted; with sinks = 1 it stays whatever its score.
template <class L>
std::vector<std::int32_t> decode_with_sinks(std::size_t sinks) {
  KVCache<L, select::H2O> cache(Shape{1, 1, 1, 4}, {.budget = 4, .scale = 1.0f},
                                select::H2O{.recent_fraction = 0.5, .sinks = sinks});
  const std::vector<float> q{1, 0, 0, 0};
  std::vector<float> out(4);
  cache.prefill(0, 0, std::vector<float>{-10, 0, 0, 0, 1, 0, 0, 0}, std::vector<float>(8, 1.0f));
  cache.attend(0, q, out);
  for (std::int32_t t = 2; t < 8; ++t) {
    EXPECT_EQ(cache.append(0, t, std::vector<float>{float(t % 3), 0, 0, 0}, std::vector<float>(4, 1.0f)), Status::ok);
    cache.attend(0, q, out);
  }
  return positions_of(cache.positions(0, 0));
}

TYPED_TEST(H2OLayouts, SinksAreKeptWhateverTheirScore) {
  EXPECT_THAT(decode_with_sinks<TypeParam>(0), ::testing::Not(::testing::Contains(0)));
  const auto kept = decode_with_sinks<TypeParam>(1);
  ASSERT_EQ(kept.size(), 4u);
  EXPECT_EQ(kept[0], 0);
  EXPECT_THAT(kept, ::testing::IsSupersetOf({6, 7}));
}

// A long prompt attended in one causal chunk, then compressed: rows, positions and scores all
// shrink to the budget.
TYPED_TEST(H2OLayouts, EvictionFreesMemory) {
  const Shape s{1, 4, 2, 32};
  KVCache<TypeParam, select::H2O> cache(s, {.budget = 16, .auto_compress = false});
  std::mt19937 rng(6);
  const std::size_t n = 256;
  cache.prefill(0, 0, random_vector(n * s.kv_heads * s.head_dim, rng), random_vector(n * s.kv_heads * s.head_dim, rng));
  std::vector<float> q = random_vector(n * s.query_heads * s.head_dim, rng), out(q.size());
  cache.attend(0, q, out);
  EXPECT_EQ(cache.template column<select::H2O>(0, 1).size(), n);
  const std::size_t before = cache.memory_bytes();
  cache.compress();
  EXPECT_EQ(cache.tokens(), 2u * 16u);
  EXPECT_EQ(cache.template column<select::H2O>(0, 1).size(), 16u);
  EXPECT_LT(cache.memory_bytes() * 8, before);
}

TYPED_TEST(H2OLayouts, ObserveAllocatesNothingInSteadyState) {
  const Shape s{2, 8, 2, 32};
  KVCache<TypeParam, select::H2O> cache(s, {.budget = 24, .capacity = 64});
  std::mt19937 rng(7);
  const auto k = random_vector(s.kv_heads * s.head_dim, rng);
  const auto q = random_vector(s.query_heads * s.head_dim, rng);
  std::vector<float> out(q.size());
  std::size_t before = 0;
  for (std::size_t t = 0; t < 300; ++t) {
    if (t == 50) before = kvc::testing::allocation_count();
    for (std::size_t layer = 0; layer < s.layers; ++layer) {
      cache.append(layer, static_cast<std::int32_t>(t), k, k);
      cache.attend(layer, q, out);
    }
  }
  EXPECT_EQ(kvc::testing::allocation_count() - before, 0u);
  EXPECT_EQ(cache.size(1, 1), 24u);
}

}  // namespace
}  // namespace kvc
