// StreamingLLM through a real cache: which tokens survive (sinks + window, by position), that
// the cache then attends exactly over the survivors, that eviction frees memory in both layouts,
// and that setup() rejects sinks that do not fit a head's budget.
#include "kvc/budget/pyramid_kv.hpp"
#include "kvc/kvc.hpp"
#include "kvc/select/streaming_llm.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

namespace kvc {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

std::vector<float> random_vector(std::size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

std::vector<std::int32_t> positions_of(std::span<const std::int32_t> p) { return {p.begin(), p.end()}; }

TEST(StreamingLLM, SelectKeepsFirstSinksAndTheMostRecentWindow) {
  const select::StreamingLLM policy{.sinks = 2};
  std::vector<std::int32_t> positions(10);
  std::iota(positions.begin(), positions.end(), 100);
  std::vector<std::uint32_t> keep(5);
  const std::size_t n = policy.select(HeadRef<select::StreamingLLM>(HeadInfo{0, 0, positions, 5}), keep);
  ASSERT_EQ(n, 5u);
  EXPECT_THAT(keep, ElementsAre(0u, 1u, 7u, 8u, 9u));
}

TEST(StreamingLLM, ZeroSinksIsASlidingWindow) {
  const select::StreamingLLM policy{.sinks = 0};
  std::vector<std::int32_t> positions(6);
  std::iota(positions.begin(), positions.end(), 0);
  std::vector<std::uint32_t> keep(3);
  ASSERT_EQ(policy.select(HeadRef<select::StreamingLLM>(HeadInfo{0, 0, positions, 3}), keep), 3u);
  EXPECT_THAT(keep, ElementsAre(3u, 4u, 5u));
}

template <class L>
class StreamingLLMLayouts : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(StreamingLLMLayouts, Layouts);

// Decode with auto-compression: after every step each head holds its 4 sinks and the newest
// budget - 4 tokens, by position; the attention of the last step is exact attention over them.
TYPED_TEST(StreamingLLMLayouts, SurvivorsAreSinksPlusWindowAndAttentionIsExactOverThem) {
  const Shape s{2, 4, 2, 8};
  const std::size_t budget = 10, sinks = 4;
  KVCache<TypeParam, select::StreamingLLM> cache(s, {.budget = budget, .isa = kernels::Isa::scalar},
                                                 select::StreamingLLM{.sinks = sinks});
  std::mt19937 rng(3);
  const std::size_t kv = s.kv_heads * s.head_dim, qn = s.query_heads * s.head_dim;
  const std::int32_t first = 50;  // positions need not start at 0: sinks are the smallest ones
  std::vector<std::vector<float>> keys(s.layers), values(s.layers);
  std::vector<float> last_q, out(qn), expected(qn);
  const std::size_t steps = 30;
  for (std::size_t t = 0; t < steps; ++t)
    for (std::size_t layer = 0; layer < s.layers; ++layer) {
      const auto k = random_vector(kv, rng), v = random_vector(kv, rng), q = random_vector(qn, rng);
      keys[layer].insert(keys[layer].end(), k.begin(), k.end());
      values[layer].insert(values[layer].end(), v.begin(), v.end());
      cache.append(layer, first + static_cast<std::int32_t>(t), k, v);
      cache.attend(layer, q, out);
      ASSERT_LE(cache.size(layer, 0), budget);
      if (layer == s.layers - 1) last_q = q;
    }
  std::vector<std::int32_t> want;
  for (std::int32_t p = 0; p < static_cast<std::int32_t>(sinks); ++p) want.push_back(first + p);
  for (std::size_t p = steps - (budget - sinks); p < steps; ++p) want.push_back(first + static_cast<std::int32_t>(p));
  for (std::size_t layer = 0; layer < s.layers; ++layer)
    for (std::size_t h = 0; h < s.kv_heads; ++h) EXPECT_THAT(positions_of(cache.positions(layer, h)), ElementsAreArray(want));

  // The last attend ran over budget + 1 tokens (the survivors of the previous step and the new
  // token) before compressing: sinks, then positions steps-7 .. steps-1.
  const std::size_t layer = s.layers - 1;
  std::vector<float> k_seen, v_seen;
  for (std::size_t t = 0; t < steps; ++t) {
    if (t >= sinks && t < steps - (budget - sinks) - 1) continue;
    k_seen.insert(k_seen.end(), keys[layer].begin() + static_cast<std::ptrdiff_t>(t * kv),
                  keys[layer].begin() + static_cast<std::ptrdiff_t>((t + 1) * kv));
    v_seen.insert(v_seen.end(), values[layer].begin() + static_cast<std::ptrdiff_t>(t * kv),
                  values[layer].begin() + static_cast<std::ptrdiff_t>((t + 1) * kv));
  }
  ASSERT_EQ(k_seen.size(), (budget + 1) * kv);
  reference::attention(s, last_q, k_seen, v_seen, 1.0f / std::sqrt(static_cast<float>(s.head_dim)), expected);
  EXPECT_EQ(out, expected);
}

TYPED_TEST(StreamingLLMLayouts, EvictionFreesMemory) {
  const Shape s{1, 2, 2, 32};
  KVCache<TypeParam, select::StreamingLLM> cache(s, {.budget = 16, .auto_compress = false});
  std::mt19937 rng(4);
  const std::size_t n = 300;
  cache.prefill(0, 0, random_vector(n * s.kv_heads * s.head_dim, rng), random_vector(n * s.kv_heads * s.head_dim, rng));
  const std::size_t before = cache.memory_bytes();
  cache.compress();
  EXPECT_EQ(cache.tokens(), 2u * 16u);
  EXPECT_THAT(positions_of(cache.positions(0, 1)), ElementsAre(0, 1, 2, 3, 288, 289, 290, 291, 292, 293, 294, 295, 296,
                                                                297, 298, 299));
  EXPECT_LT(cache.memory_bytes() * 8, before);
}

TEST(StreamingLLM, SetupRejectsSinksThatFillTheBudget) {
  const Shape s{2, 2, 2, 8};
  try {
    KVCache<ContiguousLayout, select::StreamingLLM> cache(s, {.budget = 4}, select::StreamingLLM{.sinks = 4});
    FAIL() << "sinks == budget must be rejected";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("kvc::select::StreamingLLM"));
    EXPECT_THAT(e.what(), HasSubstr("sinks = 4"));
  }
  EXPECT_NO_THROW((KVCache<ContiguousLayout, select::StreamingLLM>(s, {.budget = 5}, select::StreamingLLM{.sinks = 4})));
}

// With ragged budgets the check is per head: the top layers of a pyramid are the tight ones.
TEST(StreamingLLM, SetupNamesTheHeadWhoseBudgetIsTooSmall) {
  const Shape s{4, 2, 2, 8};
  // PyramidKV(beta 20, window 2), average 12: layer budgets 23, 15, 8, 2 (see pyramid_kv_test).
  using Cache = KVCache<ContiguousLayout, budget::PyramidKV, select::StreamingLLM>;
  try {
    Cache cache(s, {.budget = 12}, budget::PyramidKV{.beta = 20, .window = 2}, select::StreamingLLM{.sinks = 4});
    FAIL() << "layer 3's budget of 2 cannot hold 4 sinks";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("budget 2 of layer 3 KV head 0"));
  }
}

}  // namespace
}  // namespace kvc
