// LagKV through a real cache against its definition written out here, kvpress' scores literally:
// chunks of `lag` tokens after the sinks, each scored against the next by the channel spread of
// its min-max normalized keys and values (softmaxed over the chunk, averaged), ranked within the
// chunk (rank / lag); sinks and the last full chunk plus the tail score 1; prompts shorter than
// sinks + 2 lag score their tokens by position. Selection: the sinks first (oldest first), then
// the highest scores, ties to the more recent. Short prompts untouched; decoding after the
// compression evicts nothing and allocates nothing within the slack; bad parameters throw.
#include "support/allocation_counter.hpp"
#include "kvc/kvc.hpp"
#include "kvc/select/lagkv.hpp"
#include "select/prompt_support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace kvc {
namespace {

using namespace prompt_test;

constexpr std::size_t kDim = 8;

// Softmax over the chunk of the unbiased std over channels of rows normalized by the min and max
// of each channel over the next chunk; rows [n][kv_heads][kDim], head h.
std::vector<double> chunk_spread(const std::vector<float>& rows, std::size_t kv_heads, std::size_t h,
                                 std::size_t first, std::size_t lag) {
  const auto at = [&](std::size_t t, std::size_t c) { return double{rows[(t * kv_heads + h) * kDim + c]}; };
  std::vector<double> spread(lag);
  for (std::size_t t = 0; t < lag; ++t) {
    std::vector<double> x(kDim);
    for (std::size_t c = 0; c < kDim; ++c) {
      double lo = at(first + lag, c), hi = lo;
      for (std::size_t r = first + lag; r < first + 2 * lag; ++r) lo = std::min(lo, at(r, c)), hi = std::max(hi, at(r, c));
      x[c] = (at(first + t, c) - lo) / (hi - lo);
    }
    double mean = 0.0, var = 0.0;
    for (double v : x) mean += v / static_cast<double>(kDim);
    for (double v : x) var += (v - mean) * (v - mean) / static_cast<double>(kDim - 1);
    spread[t] = std::sqrt(var);
  }
  const double top = *std::max_element(spread.begin(), spread.end());
  double sum = 0.0;
  for (double& s : spread) sum += (s = std::exp(s - top));
  for (double& s : spread) s /= sum;
  return spread;
}

std::vector<std::int32_t> expected_kept(const std::vector<float>& keys, const std::vector<float>& values, std::size_t n,
                                        std::size_t kv_heads, std::size_t h, const select::LagKV& p, std::size_t budget) {
  const std::size_t s = p.sinks, lag = p.lag;
  std::vector<double> score(n, 1.0);
  if (n < s + 2 * lag) {
    for (std::size_t t = s; t < n; ++t) score[t] = static_cast<double>(t - s) / static_cast<double>(n - s);
  } else {
    const std::size_t end = s + (n - s) / lag * lag;
    for (std::size_t first = s; first + lag < end; first += lag) {
      const auto ks = chunk_spread(keys, kv_heads, h, first, lag), vs = chunk_spread(values, kv_heads, h, first, lag);
      for (std::size_t t = 0; t < lag; ++t) {
        std::size_t rank = 0;  // how many tokens of the chunk score lower
        for (std::size_t u = 0; u < lag; ++u) rank += (ks[u] + vs[u]) / 2 < (ks[t] + vs[t]) / 2 ? 1 : 0;
        score[first + t] = static_cast<double>(rank) / static_cast<double>(lag);
      }
    }
  }
  std::vector<std::int32_t> kept;
  for (std::size_t t = 0; t < std::min(s, budget); ++t) kept.push_back(static_cast<std::int32_t>(t));
  if (budget > s) {
    std::vector<double> rest(score.begin() + static_cast<std::ptrdiff_t>(s), score.end());
    for (std::int32_t t : top_indices(rest, budget - s)) kept.push_back(t + static_cast<std::int32_t>(s));
  }
  return kept;
}

template <class L>
class LagKVLayouts : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(LagKVLayouts, Layouts);

TYPED_TEST(LagKVLayouts, KeepsWhatStandsOutFromTheNextChunkAsDefined) {
  const Shape shape{2, 4, 2, kDim};
  const std::size_t n = 40;  // sinks 2, lag 4: nine chunks, the last with a tail of 2 kept whole
  const auto keys = random_floats(n * shape.kv_heads * kDim, 1);
  const auto values = random_floats(keys.size(), 2);
  const auto queries = random_floats(n * shape.query_heads * kDim, 3);
  const select::LagKV p{.sinks = 2, .lag = 4};
  for (std::size_t budget : {1u, 5u, 8u, 9u, 20u, 33u, 39u}) {
    KVCache<TypeParam, select::LagKV> cache(shape, {.budget = budget}, p);
    prefill_and_attend(cache, keys, values, queries);
    EXPECT_EQ(cache.size(0, 0), n) << "attend compresses nothing: LagKV compresses the prompt once";
    cache.compress_prompt();
    for (std::size_t l = 0; l < shape.layers; ++l)
      for (std::size_t h = 0; h < shape.kv_heads; ++h)
        EXPECT_EQ(positions_of(cache.positions(l, h)), expected_kept(keys, values, n, shape.kv_heads, h, p, budget))
            << "budget " << budget << " layer " << l << " head " << h;
  }
}

// Keys alone do not decide: the same keys with other values keep other tokens.
TEST(LagKV, ValuesCountAsMuchAsKeys) {
  const Shape shape{1, 1, 1, kDim};
  const std::size_t n = 40;
  const auto keys = random_floats(n * kDim, 4);
  const select::LagKV p{.sinks = 2, .lag = 4};
  std::vector<std::vector<std::int32_t>> kept;
  for (unsigned seed : {5u, 6u}) {
    const auto values = random_floats(n * kDim, seed);
    KVCache<ContiguousLayout, select::LagKV> cache(shape, {.budget = 20}, p);
    prefill_and_attend(cache, keys, values, random_floats(n * kDim, 7));
    cache.compress_prompt();
    kept.push_back(positions_of(cache.positions(0, 0)));
    EXPECT_EQ(kept.back(), expected_kept(keys, values, n, 1, 0, p, 20));
  }
  EXPECT_NE(kept[0], kept[1]);
}

// Shorter than sinks + 2 lag: no chunk has a successor; the sinks and the most recent tokens.
TEST(LagKV, PromptWithoutAReferenceChunkKeepsSinksAndRecent) {
  const Shape shape{1, 2, 1, kDim};
  const std::size_t n = 40;
  const auto keys = random_floats(n * kDim, 8);
  for (std::size_t budget : {1u, 10u}) {
    KVCache<ContiguousLayout, select::LagKV> cache(shape, {.budget = budget});  // sinks 4, lag 128
    prefill_and_attend(cache, keys, keys, random_floats(n * 2 * kDim, 9));
    cache.compress_prompt();
    EXPECT_EQ(positions_of(cache.positions(0, 0)), expected_kept(keys, keys, n, 1, 0, select::LagKV{}, budget));
  }
}

TEST(LagKV, RatioBudgetAndDecodingWithoutEvictionOrAllocation) {
  const Shape shape{2, 4, 2, kDim};
  const std::size_t n = 64;
  const select::LagKV p{.sinks = 4, .lag = 8};
  KVCache<PagedLayout, select::LagKV> cache(shape, {.budget_ratio = 0.5, .compress_slack = 32}, p);
  const auto keys = random_floats(n * shape.kv_heads * kDim, 10);
  const auto values = random_floats(keys.size(), 11);
  prefill_and_attend(cache, keys, values, random_floats(n * shape.query_heads * kDim, 12));
  cache.compress_prompt();
  EXPECT_EQ(positions_of(cache.positions(1, 1)), expected_kept(keys, values, n, shape.kv_heads, 1, p, 32));
  expect_decode_grows_without_allocating(cache, 32, 30);
}

TEST(LagKV, ShortPromptIsNotCompressed) {
  const Shape shape{1, 2, 1, kDim};
  KVCache<ContiguousLayout, select::LagKV> cache(shape, {.budget = 40}, select::LagKV{.sinks = 2, .lag = 4});
  prefill_and_attend(cache, random_floats(30 * kDim, 13), random_floats(30 * kDim, 14), random_floats(60 * kDim, 15));
  cache.compress_prompt();
  EXPECT_EQ(cache.size(0, 0), 30u);
}

TEST(LagKV, BadParametersThrow) {
  const Shape shape{1, 2, 1, kDim};
  using Cache = KVCache<ContiguousLayout, select::LagKV>;
  EXPECT_THROW(Cache(shape, {.budget = 64}, select::LagKV{.lag = 0}), Error);
  EXPECT_THROW(Cache(shape, {.budget = 64}, select::LagKV{.lag = 1}), Error) << "one reference token has no range";
  EXPECT_THROW(Cache(shape, {.budget = 64}, select::LagKV{.sinks = std::size_t{1} << 40}), Error);
  EXPECT_THROW(Cache(shape, {.budget = 64}, select::LagKV{.lag = std::size_t{1} << 40}), Error);
  EXPECT_THROW(Cache(shape, {.budget = 64, .budget_ratio = 0.5}), Error);
}

}  // namespace
}  // namespace kvc
