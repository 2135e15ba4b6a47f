// Keyformer against its definition (each query adds softmax((log w + g) / tau) to the tokens it
// sees, tau = tau_init + calls * tau_delta capped at tau_end, g standard Gumbel noise fixed by the
// seed) and through a real cache in both layouts: hand-made attention decides which tokens survive,
// runs are reproducible, bad parameters throw, decode allocates nothing in steady state.
#include "support/allocation_counter.hpp"
#include "kvc/kvc.hpp"
#include "kvc/select/keyformer.hpp"

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

// The column's cost as documented: the score and the step count.
static_assert(sizeof(select::Keyformer::Token) == 8);

// The noise is standard Gumbel: mean = Euler's gamma (0.5772), variance pi^2 / 6; it depends on
// the seed, the head, the query and the key, and on nothing else.
TEST(Keyformer, NoiseIsStandardGumbelFixedByTheSeed) {
  const select::Keyformer a{.seed = 1}, b{.seed = 2};
  double sum = 0.0, squares = 0.0;
  const int count = 200000;
  for (int i = 0; i < count; ++i) {
    const double g = a.noise(0, 0, i / 1000, i % 1000);
    sum += g;
    squares += g * g;
  }
  const double mean = sum / count;
  EXPECT_NEAR(mean, 0.5772156649, 0.01);
  EXPECT_NEAR(squares / count - mean * mean, 3.14159265 * 3.14159265 / 6.0, 0.03);
  EXPECT_EQ(a.noise(1, 2, 30, 4), select::Keyformer{.seed = 1}.noise(1, 2, 30, 4));
  EXPECT_NE(a.noise(1, 2, 30, 4), b.noise(1, 2, 30, 4));
  EXPECT_NE(a.noise(1, 2, 30, 4), a.noise(2, 2, 30, 4));
  EXPECT_NE(a.noise(1, 2, 30, 4), a.noise(1, 3, 30, 4));
  EXPECT_NE(a.noise(1, 2, 30, 4), a.noise(1, 2, 31, 4));
  EXPECT_NE(a.noise(1, 2, 30, 4), a.noise(1, 2, 30, 5));
}

TEST(Keyformer, TemperatureGrowsPerCallUpToTauEnd) {
  const select::Keyformer k{.tau_init = 1.0, .tau_delta = 0.25, .tau_end = 1.6};
  EXPECT_FLOAT_EQ(k.temperature(0), 1.0f);
  EXPECT_FLOAT_EQ(k.temperature(2), 1.5f);
  EXPECT_FLOAT_EQ(k.temperature(3), 1.6f);
  EXPECT_FLOAT_EQ(k.temperature(100), 1.6f);
}

// A prompt of 5 tokens attended in one call (queries see 3, 4, 5 tokens of a head of 5), then two
// decode calls: the scores equal the sum of the Gumbel softmaxes written out here, with tau_init for
// the prompt's queries and tau_init + k * tau_delta for decode step k. A zero weight adds nothing.
TEST(Keyformer, ScoresAccumulateTheGumbelSoftmaxOfEveryQuery) {
  const select::Keyformer k{.tau_init = 1.0, .tau_delta = 0.5, .tau_end = 10.0, .seed = 7};
  std::mt19937 rng(4);
  std::vector<std::int32_t> positions{3, 4, 6, 7, 9, 10, 12};
  std::vector<select::Keyformer::Token> column(7);
  std::vector<std::uint32_t> scratch(7);
  std::vector<double> expected(7, 0.0);
  const auto query = [&](std::size_t head_size, std::size_t seen, double tau) {
    std::vector<float> w(seen);
    for (auto& x : w) x = static_cast<float>(rng() % 9);
    w[1] = 0.0f;  // underflowed: contributes nothing
    w[0] += 1.0f;
    const float total = std::accumulate(w.begin(), w.end(), 0.0f);
    for (auto& x : w) x /= total;
    std::vector<double> z(seen);
    for (std::size_t i = 0; i < seen; ++i)
      z[i] = w[i] > 0.0f ? (std::log(static_cast<double>(w[i])) + k.noise(5, 1, positions[seen - 1], positions[i])) / tau
                         : -INFINITY;
    const double top = *std::max_element(z.begin(), z.end());
    double sum = 0.0;
    for (double x : z) sum += std::exp(x - top);
    for (std::size_t i = 0; i < seen; ++i) expected[i] += std::exp(z[i] - top) / sum;
    const std::span<const std::int32_t> held(positions.data(), head_size);
    k.on_attend(HeadRef<select::Keyformer>(HeadInfo{5, 1, held}, std::span(column).first(head_size), scratch), w);
  };
  for (std::size_t seen : {3, 4, 5}) query(5, seen, 1.0);
  query(6, 6, 1.5);
  query(7, 7, 2.0);
  for (std::size_t i = 0; i < 7; ++i) EXPECT_NEAR(column[i].score, expected[i], 1e-5) << i;
  EXPECT_EQ(column[1].score, 0.0f);
  EXPECT_EQ(column[0].calls, 3u);
}

TEST(Keyformer, SelectKeepsTheRecentWindowAndTheHighestScores) {
  const select::Keyformer k{.recent_fraction = 0.4};
  std::vector<std::int32_t> positions(8);
  std::iota(positions.begin(), positions.end(), 0);
  // Older tokens 0..5 (budget 5, 2 recent): the three best scores, the tie at 2.0 to token 4.
  std::vector<select::Keyformer::Token> column{{1, 0}, {3, 0}, {2, 0}, {0.5f, 0}, {2, 0}, {2.5f, 0}, {0, 0}, {0, 0}};
  std::vector<std::uint32_t> scratch(8), keep(5);
  ASSERT_EQ(k.select(HeadRef<select::Keyformer>(HeadInfo{0, 0, positions, 5}, column, scratch), keep), 5u);
  EXPECT_THAT(keep, ElementsAre(1u, 4u, 5u, 6u, 7u));
}

// One KV head of dim 4, scale 1. Tokens 1 and 4 have key 10 e0, the others e1; every query is
// `sign` * e0: with +1 tokens 1 and 4 take almost all attention (logits 10 above the others, far
// more than the noise moves them) and survive; with -1 they take none and go. The prompt (tokens
// 0 and 1) is attended by its last query only, so no query sees token 0 alone (it would give it
// all its attention).
template <class L>
std::vector<std::int32_t> decode_hand_made(float sign, std::uint64_t seed) {
  KVCache<L, select::Keyformer> cache(Shape{1, 1, 1, 4}, {.budget = 4, .scale = 1.0f},
                                      select::Keyformer{.recent_fraction = 0.5, .seed = seed});
  const std::vector<float> q{sign, 0, 0, 0};
  std::vector<float> out(4);
  cache.prefill(0, 0, std::vector<float>{0, 1, 0, 0, 10, 0, 0, 0}, std::vector<float>(8, 1.0f));
  cache.attend(0, q, out);
  for (std::int32_t t = 2; t < 12; ++t) {
    const bool heavy = t == 4;
    const std::vector<float> k = heavy ? std::vector<float>{10, 0, 0, 0} : std::vector<float>{0, 1, 0, 0};
    EXPECT_EQ(cache.append(0, t, k, std::vector<float>(4, 1.0f)), Status::ok);
    cache.attend(0, q, out);
  }
  return positions_of(cache.positions(0, 0));
}

template <class L>
class KeyformerLayouts : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(KeyformerLayouts, Layouts);

TYPED_TEST(KeyformerLayouts, KeyTokensSurvive) {
  for (std::uint64_t seed : {0u, 1u, 2u}) {
    EXPECT_THAT(decode_hand_made<TypeParam>(+1.0f, seed), ElementsAre(1, 4, 10, 11));
    const auto away = decode_hand_made<TypeParam>(-1.0f, seed);
    EXPECT_THAT(away, ::testing::Not(::testing::Contains(1)));
    EXPECT_THAT(away, ::testing::Not(::testing::Contains(4)));
  }
}

// Same seed, same scores, whatever the layout; another seed, other scores.
TEST(Keyformer, RunsAreReproducible) {
  const auto scores = [](auto layout, std::uint64_t seed) {
    KVCache<decltype(layout), select::Keyformer> cache(Shape{1, 2, 1, 8}, {.budget = 64},
                                                       select::Keyformer{.seed = seed});
    std::mt19937 rng(1);
    std::normal_distribution<float> normal;
    std::vector<float> k(8), q(16), out(16);
    for (std::int32_t t = 0; t < 20; ++t) {
      for (auto& x : k) x = normal(rng);
      for (auto& x : q) x = normal(rng);
      (void)cache.append(0, t, k, k);
      cache.attend(0, q, out);
    }
    std::vector<float> s;
    for (const auto& token : cache.template column<select::Keyformer>(0, 0)) s.push_back(token.score);
    return s;
  };
  EXPECT_EQ(scores(ContiguousLayout{}, 3), scores(PagedLayout{}, 3));
  EXPECT_NE(scores(ContiguousLayout{}, 3), scores(ContiguousLayout{}, 4));
}

TYPED_TEST(KeyformerLayouts, DecodeAllocatesNothingInSteadyState) {
  const Shape s{2, 4, 2, 16};
  KVCache<TypeParam, select::Keyformer> cache(s, {.budget = 24, .compress_slack = 4});
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

TEST(Keyformer, BadParametersThrow) {
  const auto expect_error = [](select::Keyformer k, const char* what) {
    try {
      KVCache<ContiguousLayout, select::Keyformer> cache(Shape{1, 1, 1, 4}, {.budget = 8}, k);
      ADD_FAILURE() << what << " must be rejected";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(what));
    }
  };
  expect_error({.recent_fraction = 1.5}, "kvc::select::Keyformer: recent_fraction = 1.5");
  expect_error({.recent_fraction = std::nan("")}, "recent_fraction = nan");
  expect_error({.tau_init = 0.0}, "tau_init = 0");
  expect_error({.tau_delta = -0.1}, "tau_delta = -0.1");
  expect_error({.tau_init = 2.0, .tau_end = 1.0}, "tau_end = 1 must be finite and >= tau_init = 2");
}

}  // namespace
}  // namespace kvc
