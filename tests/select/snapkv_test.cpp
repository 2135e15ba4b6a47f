// SnapKV through a real cache against its definition written out here with plain loops: the
// window's softmax weights (GQA group averaged) summed per prefix token, pooled (max or avg),
// top budget - window of the prefix plus the window; short prompts untouched; decoding after the
// compression evicts nothing; bad configurations throw kvc::Error.
#include "support/allocation_counter.hpp"
#include "kvc/kvc.hpp"
#include "kvc/select/snapkv.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

namespace kvc {
namespace {

constexpr std::size_t kDim = 8;

std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = dist(gen);
  return x;
}

// Positions SnapKV keeps, from the definition: keys [n][kv_heads][dim], queries
// [n][query_heads][dim] of the whole prompt, head `h`.
std::vector<std::int32_t> expected_kept(const std::vector<float>& keys, const std::vector<float>& queries,
                                        std::size_t n, const Shape& shape, std::size_t h, const select::SnapKV& p,
                                        std::size_t budget) {
  const std::size_t group = shape.group_size(), w = p.window, prefix = n - w;
  const float scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
  std::vector<double> score(prefix, 0.0);
  for (std::size_t r = n - w; r < n; ++r) {
    for (std::size_t g = 0; g < group; ++g) {
      const float* q = queries.data() + (r * shape.query_heads + h * group + g) * shape.head_dim;
      std::vector<double> logit(r + 1);
      for (std::size_t t = 0; t <= r; ++t) {
        const float* k = keys.data() + (t * shape.kv_heads + h) * shape.head_dim;
        double dot = 0.0;
        for (std::size_t d = 0; d < shape.head_dim; ++d) dot += double{q[d]} * double{k[d]};
        logit[t] = dot * scale;
      }
      const double m = *std::max_element(logit.begin(), logit.end());
      double sum = 0.0;
      for (double& l : logit) sum += (l = std::exp(l - m));
      for (std::size_t t = 0; t < prefix; ++t) score[t] += logit[t] / sum / static_cast<double>(group);
    }
  }
  std::vector<double> pooled(prefix);
  const std::size_t half = p.kernel / 2;
  for (std::size_t i = 0; i < prefix; ++i) {
    double v = 0.0;
    for (std::size_t t = i >= half ? i - half : 0; t < std::min(prefix, i + half + 1); ++t)
      v = p.pooling == select::Pooling::max ? std::max(v, score[t]) : v + score[t];
    pooled[i] = p.pooling == select::Pooling::max ? v : v / static_cast<double>(p.kernel);
  }
  std::vector<std::size_t> order(prefix);
  std::iota(order.begin(), order.end(), std::size_t{0});
  // Max pooling copies one score to its neighbours: ties are common, and go to the more recent.
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return pooled[a] != pooled[b] ? pooled[a] > pooled[b] : a > b; });
  std::vector<std::int32_t> kept;
  for (std::size_t j = 0; j < budget - w; ++j) kept.push_back(static_cast<std::int32_t>(order[j]));
  for (std::size_t t = prefix; t < n; ++t) kept.push_back(static_cast<std::int32_t>(t));
  std::sort(kept.begin(), kept.end());
  return kept;
}

template <class Cache>
void prefill_and_attend(Cache& cache, const std::vector<float>& keys, const std::vector<float>& queries) {
  const Shape& s = cache.shape();
  std::vector<float> out(queries.size());
  for (std::size_t l = 0; l < s.layers; ++l) {
    cache.prefill(l, 0, keys, keys);
    cache.attend(l, queries, out);
  }
}

std::vector<std::int32_t> positions_of(std::span<const std::int32_t> p) { return {p.begin(), p.end()}; }

template <class L>
class SnapKVLayouts : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(SnapKVLayouts, Layouts);

TYPED_TEST(SnapKVLayouts, KeepsWhatTheWindowAttendsToAsDefined) {
  const Shape shape{2, 4, 2, kDim};
  const std::size_t n = 40, budget = 14;
  const auto keys = random_floats(n * shape.kv_heads * kDim, 1);
  const auto queries = random_floats(n * shape.query_heads * kDim, 2);
  for (auto pooling : {select::Pooling::max, select::Pooling::avg}) {
    const select::SnapKV p{.window = 4, .kernel = 3, .pooling = pooling};
    KVCache<TypeParam, select::SnapKV> cache(shape, {.budget = budget}, p);
    prefill_and_attend(cache, keys, queries);
    EXPECT_EQ(cache.size(0, 0), n) << "attend compresses nothing: SnapKV compresses the prompt once";
    cache.compress_prompt();
    for (std::size_t l = 0; l < shape.layers; ++l)
      for (std::size_t h = 0; h < shape.kv_heads; ++h)
        EXPECT_EQ(positions_of(cache.positions(l, h)), expected_kept(keys, queries, n, shape, h, p, budget))
            << "layer " << l << " head " << h;
  }
}

// The window is attended in two chunks: the cache keeps the newest queries across calls.
TEST(SnapKV, WindowSpansPrefillChunks) {
  const Shape shape{1, 2, 1, kDim};
  const std::size_t n = 30;
  const auto keys = random_floats(n * kDim, 3);
  const auto queries = random_floats(n * 2 * kDim, 4);
  const select::SnapKV p{.window = 8, .kernel = 5};
  KVCache<ContiguousLayout, select::SnapKV> cache(shape, {.budget = 12}, p);
  std::vector<float> out(queries.size());
  const std::size_t first = 26, stride = 2 * kDim;
  cache.prefill(0, 0, std::span(keys).first(first * kDim), std::span(keys).first(first * kDim));
  cache.attend(0, std::span(queries).first(first * stride), std::span(out).first(first * stride));
  cache.prefill(0, static_cast<std::int32_t>(first), std::span(keys).subspan(first * kDim),
                std::span(keys).subspan(first * kDim));
  cache.attend(0, std::span(queries).subspan(first * stride), std::span(out).subspan(first * stride));
  cache.compress_prompt();
  EXPECT_EQ(positions_of(cache.positions(0, 0)), expected_kept(keys, queries, n, shape, 0, p, 12));
}

TEST(SnapKV, RatioSetsTheBudgetFromThePromptAndDecodingDoesNotEvict) {
  const Shape shape{1, 2, 1, kDim};
  const std::size_t n = 64;
  const auto keys = random_floats(n * kDim, 5);
  const auto queries = random_floats(n * 2 * kDim, 6);
  KVCache<PagedLayout, select::SnapKV> cache(shape, {.budget_ratio = 0.25}, select::SnapKV{.window = 8});
  prefill_and_attend(cache, keys, queries);
  cache.compress_prompt();
  EXPECT_EQ(cache.size(0, 0), 16u);
  EXPECT_EQ(cache.budget(0, 0), 16u);
  std::vector<float> out(2 * kDim);
  for (std::int32_t t = 0; t < 5; ++t) {
    const auto k = random_floats(kDim, 10 + static_cast<unsigned>(t));
    ASSERT_EQ(cache.append(0, 100 + t, k, k), Status::ok);
    cache.attend(0, random_floats(2 * kDim, 20 + static_cast<unsigned>(t)), out);
  }
  EXPECT_EQ(cache.size(0, 0), 21u) << "decoding appends without evicting after the prompt's compression";
  cache.clear();
  EXPECT_EQ(cache.budget(0, 0), static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()));
}

// compress_slack keeps room for that many decoded tokens after the prompt's compression; within
// it, decoding (append, attend, nothing captured any more) allocates nothing.
TEST(SnapKV, DecodeAfterCompressionAllocatesNothingWithinTheSlack) {
  const Shape shape{2, 4, 2, kDim};
  const std::size_t n = 64;
  KVCache<PagedLayout, select::SnapKV> cache(shape, {.budget = 16, .compress_slack = 32},
                                             select::SnapKV{.window = 8});
  prefill_and_attend(cache, random_floats(n * 2 * kDim, 17), random_floats(n * 4 * kDim, 18));
  cache.compress_prompt();
  const auto k = random_floats(2 * kDim, 19);
  const auto q = random_floats(4 * kDim, 20);
  std::vector<float> out(q.size());
  const std::size_t before = kvc::testing::allocation_count();
  for (std::int32_t t = 0; t < 30; ++t)
    for (std::size_t l = 0; l < shape.layers; ++l) {
      ASSERT_EQ(cache.append(l, 100 + t, k, k), Status::ok);
      cache.attend(l, q, out);
    }
  EXPECT_EQ(kvc::testing::allocation_count() - before, 0u);
  EXPECT_EQ(cache.size(0, 0), 46u);
}

TEST(SnapKV, ShortPromptIsNotCompressed) {
  const Shape shape{1, 2, 1, kDim};
  const auto keys = random_floats(10 * kDim, 7);
  const auto queries = random_floats(10 * 2 * kDim, 8);
  KVCache<ContiguousLayout, select::SnapKV> cache(shape, {.budget = 40}, select::SnapKV{});
  prefill_and_attend(cache, keys, queries);
  cache.compress_prompt();
  EXPECT_EQ(cache.size(0, 0), 10u);
}

TEST(SnapKV, BadConfigurationsThrow) {
  const Shape shape{1, 2, 1, kDim};
  using Cache = KVCache<ContiguousLayout, select::SnapKV>;
  EXPECT_THROW(Cache(shape, {.budget = 0}), Error);
  EXPECT_THROW(Cache(shape, {.budget_ratio = 1.5}), Error);
  EXPECT_THROW(Cache(shape, {.budget_ratio = -0.25}), Error);
  EXPECT_THROW(Cache(shape, {.budget_ratio = std::nan("")}), Error);
  EXPECT_THROW(Cache(shape, {.budget = 64, .budget_ratio = 0.5}), Error);
  EXPECT_THROW(Cache(shape, {.budget = 16}, select::SnapKV{.window = 32}), Error) << "budget below the window";
  EXPECT_THROW(Cache(shape, {.budget = 64}, select::SnapKV{.kernel = 4}), Error) << "even kernel";
  EXPECT_THROW(Cache(shape, {.budget = 64}, select::SnapKV{.window = 0}), Error);
  EXPECT_THROW((KVCache<ContiguousLayout>(shape, {.budget_ratio = 0.5})), Error) << "ratio without a selection";

  // Window longer than the prompt (the ratio's budget is below the prompt, so it would compress).
  Cache short_prompt(shape, {.budget_ratio = 0.5}, select::SnapKV{.window = 8});
  prefill_and_attend(short_prompt, random_floats(6 * kDim, 9), random_floats(6 * 2 * kDim, 10));
  EXPECT_THROW(short_prompt.compress_prompt(), Error);

  // Budget from the ratio below the window.
  Cache small_budget(shape, {.budget_ratio = 0.25}, select::SnapKV{.window = 8});
  prefill_and_attend(small_budget, random_floats(20 * kDim, 11), random_floats(20 * 2 * kDim, 12));
  EXPECT_THROW(small_budget.compress_prompt(), Error);

  // Keys prefilled but fewer queries than the window attended.
  Cache unattended(shape, {.budget = 8}, select::SnapKV{.window = 4});
  unattended.prefill(0, 0, random_floats(20 * kDim, 13), random_floats(20 * kDim, 14));
  EXPECT_THROW(unattended.compress_prompt(), Error);

  // Twice for one sequence.
  Cache twice(shape, {.budget = 8}, select::SnapKV{.window = 4});
  prefill_and_attend(twice, random_floats(20 * kDim, 15), random_floats(20 * 2 * kDim, 16));
  twice.compress_prompt();
  EXPECT_THROW(twice.compress_prompt(), Error);
}

}  // namespace
}  // namespace kvc
