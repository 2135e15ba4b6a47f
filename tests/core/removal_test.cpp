// KVCache::remove: speculative rollback (remove(p), then p appended again) gives the cache a
// fresh run would have built; a removed range leaves the survivors' rows, positions and columns
// in order; a prompt window that may hold removed tokens' queries is forgotten; misuse throws.
#include "core/test_policies.hpp"
#include "kvc/select/h2o.hpp"
#include "kvc/select/snapkv.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace kvc {
namespace {

using ::testing::HasSubstr;
using testing::random_vector;

constexpr kernels::Isa kScalar = kernels::Isa::scalar;
const Shape kShape{2, 4, 2, 8};

template <class L>
class Removal : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(Removal, Layouts);

template <class L, class... P>
KVCache<L, P...> make_cache(Options o, P... p) {
  if constexpr (std::is_same_v<L, PagedLayout>)
    return KVCache<L, P...>(kShape, o, PagedLayout::config{3, nullptr}, p...);
  else
    return KVCache<L, P...>(kShape, o, p...);
}

// Tokens [layer][t] of random keys and values.
struct Tokens {
  std::vector<std::vector<std::vector<float>>> k, v;
  Tokens(std::size_t n, unsigned seed) : k(kShape.layers), v(kShape.layers) {
    std::mt19937 rng(seed);
    const std::size_t row = kShape.kv_heads * kShape.head_dim;
    for (std::size_t l = 0; l < kShape.layers; ++l)
      for (std::size_t t = 0; t < n; ++t) {
        k[l].push_back(random_vector(row, rng));
        v[l].push_back(random_vector(row, rng));
      }
  }
};

template <class Cache>
void append(Cache& cache, const Tokens& tokens, std::size_t from, std::size_t to, std::int32_t first_position) {
  for (std::size_t t = from; t < to; ++t)
    for (std::size_t l = 0; l < kShape.layers; ++l)
      ASSERT_EQ(cache.append(l, first_position + static_cast<std::int32_t>(t - from), tokens.k[l][t], tokens.v[l][t]),
                Status::ok);
}

template <class A, class B>
void expect_same_attention(A& a, B& b, unsigned seed) {
  std::mt19937 rng(seed);
  const std::size_t qn = kShape.query_heads * kShape.head_dim;
  for (std::size_t l = 0; l < kShape.layers; ++l) {
    const auto q = random_vector(qn, rng);
    std::vector<float> out_a(qn), out_b(qn);
    a.attend(l, q, out_a);
    b.attend(l, q, out_b);
    EXPECT_EQ(out_a, out_b) << "layer " << l;
  }
}

TYPED_TEST(Removal, RollbackThenReappendEqualsAFreshRun) {
  const Tokens draft(12, 1), accepted(4, 2);
  auto cache = make_cache<TypeParam>({.isa = kScalar});
  append(cache, draft, 0, 12, 0);
  // The draft's tokens 8..11 are rejected: positions 8.. go, and 8..11 come again with other rows.
  EXPECT_EQ(cache.remove(8), 4 * kShape.layers * kShape.kv_heads);
  for (std::size_t l = 0; l < kShape.layers; ++l)
    for (std::size_t h = 0; h < kShape.kv_heads; ++h) {
      EXPECT_EQ(cache.size(l, h), 8u);
      EXPECT_EQ(cache.positions(l, h).back(), 7);
    }
  append(cache, accepted, 0, 4, 8);

  auto fresh = make_cache<TypeParam>({.isa = kScalar});
  append(fresh, draft, 0, 8, 0);
  append(fresh, accepted, 0, 4, 8);
  EXPECT_EQ(cache.memory_bytes(), fresh.memory_bytes());
  expect_same_attention(cache, fresh, 3);
}

TYPED_TEST(Removal, ARangeLeavesTheSurvivorsInOrderWithTheirColumns) {
  const Tokens tokens(10, 4);
  // A budget above the tokens: H2O only accumulates, so its column holds every token's score.
  auto cache = make_cache<TypeParam>({.budget = 64, .isa = kScalar}, select::H2O{});
  append(cache, tokens, 0, 10, 100);
  expect_same_attention(cache, cache, 5);  // accumulates scores
  std::vector<std::vector<float>> before;
  for (std::size_t h = 0; h < kShape.kv_heads; ++h) {
    const auto c = cache.template column<select::H2O>(1, h);
    before.emplace_back(c.begin(), c.end());
  }
  EXPECT_EQ(cache.remove(103, 105), 3 * kShape.layers * kShape.kv_heads);
  const std::vector<std::int32_t> expected{100, 101, 102, 106, 107, 108, 109};
  for (std::size_t h = 0; h < kShape.kv_heads; ++h) {
    const auto pos = cache.positions(1, h);
    EXPECT_EQ(std::vector<std::int32_t>(pos.begin(), pos.end()), expected);
    const auto c = cache.template column<select::H2O>(1, h);
    const std::vector<float> survivors{before[h][0], before[h][1], before[h][2], before[h][6],
                                       before[h][7], before[h][8], before[h][9]};
    EXPECT_EQ(std::vector<float>(c.begin(), c.end()), survivors);
  }
  // The same rows without the range, appended directly: attention agrees.
  auto direct = make_cache<TypeParam>({.isa = kScalar});
  for (std::size_t t = 0; t < 10; ++t) {
    if (t >= 3 && t <= 5) continue;
    for (std::size_t l = 0; l < kShape.layers; ++l)
      ASSERT_EQ(direct.append(l, 100 + static_cast<std::int32_t>(t), tokens.k[l][t], tokens.v[l][t]), Status::ok);
  }
  auto plain = make_cache<TypeParam>({.isa = kScalar});
  append(plain, tokens, 0, 10, 100);
  ASSERT_EQ(plain.remove(103, 105), 3 * kShape.layers * kShape.kv_heads);
  expect_same_attention(plain, direct, 6);
}

TYPED_TEST(Removal, NothingInTheRangeRemovesNothing) {
  const Tokens tokens(5, 7);
  auto cache = make_cache<TypeParam>({.isa = kScalar});
  append(cache, tokens, 0, 5, 0);
  const std::size_t bytes = cache.memory_bytes();
  EXPECT_EQ(cache.remove(5), 0u);
  EXPECT_EQ(cache.remove(-10, -1), 0u);
  EXPECT_EQ(cache.tokens(), 5 * kShape.layers * kShape.kv_heads);
  EXPECT_EQ(cache.memory_bytes(), bytes);
  EXPECT_EQ(cache.remove(0), 5 * kShape.layers * kShape.kv_heads);
  EXPECT_EQ(cache.remove(0), 0u) << "everything, then nothing";
  EXPECT_EQ(cache.tokens(), 0u);
}

TEST(Removal, APromptWindowHoldingRemovedQueriesIsForgotten) {
  const Shape s{1, 4, 2, 8};
  std::mt19937 rng(8);
  const std::size_t n = 24, row = s.kv_heads * s.head_dim, qn = s.query_heads * s.head_dim;
  KVCache<ContiguousLayout, select::SnapKV> cache(s, {.budget = 12, .isa = kScalar}, select::SnapKV{.window = 4});
  cache.prefill(0, 0, random_vector(n * row, rng), random_vector(n * row, rng));
  std::vector<float> out(n * qn);
  cache.attend(0, random_vector(n * qn, rng), out);
  ASSERT_EQ(cache.remove(20), 4 * s.kv_heads);
  try {
    cache.compress_prompt();
    FAIL() << "compress_prompt used a window of removed tokens' queries";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("only 0 queries attended layer 0"));
  }
  // Attending the last window of the prompt that is left makes it compressible again.
  std::vector<float> last(4 * qn);
  cache.attend(0, random_vector(4 * qn, rng), last);
  cache.compress_prompt();
  EXPECT_EQ(cache.size(0, 0), 12u);
}

TEST(Removal, MisuseThrows) {
  KVCache<> cache(kShape, {.isa = kScalar});
  const auto message = [&](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message([&] { cache.remove(5, 4); }), HasSubstr("first position 5 is after the last 4"));
  KVCache<> moved = std::move(cache);
  EXPECT_THAT(message([&] { cache.remove(0); }), HasSubstr("moved from"));  // NOLINT(bugprone-use-after-move)
}

}  // namespace
}  // namespace kvc
