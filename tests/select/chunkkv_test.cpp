// ChunkKV through a real cache against its definition written out here: the window's softmax
// weights (GQA group averaged) summed per prefix token, summed again per chunk of `chunk` tokens
// from the prefix's start (the last one shorter), the floor((budget - window) / chunk) chunks of
// highest sum kept whole (ties to the more recent chunk) plus the window; the budget's remainder
// unused; short prompts untouched; decoding after the compression evicts nothing and allocates
// nothing within the slack; bad parameters throw.
#include "support/allocation_counter.hpp"
#include "kvc/kvc.hpp"
#include "kvc/select/chunkkv.hpp"
#include "select/prompt_support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace kvc {
namespace {

using namespace prompt_test;

constexpr std::size_t kDim = 8;

std::vector<std::int32_t> expected_kept(const std::vector<float>& keys, const std::vector<float>& queries,
                                        std::size_t n, const Shape& shape, std::size_t h, const select::ChunkKV& p,
                                        std::size_t budget) {
  const std::size_t prefix = n - p.window;
  std::vector<double> token(prefix, 0.0);
  for (std::size_t r = prefix; r < n; ++r) {
    const auto w = weights_of(keys, queries, shape, h, r);
    for (std::size_t t = 0; t < prefix; ++t) token[t] += w[t];
  }
  std::vector<double> chunk((prefix + p.chunk - 1) / p.chunk, 0.0);
  for (std::size_t t = 0; t < prefix; ++t) chunk[t / p.chunk] += token[t];
  std::vector<std::int32_t> kept;
  for (std::int32_t c : top_indices(chunk, (budget - p.window) / p.chunk))
    for (std::size_t t = static_cast<std::size_t>(c) * p.chunk; t < std::min(prefix, (static_cast<std::size_t>(c) + 1) * p.chunk); ++t)
      kept.push_back(static_cast<std::int32_t>(t));
  for (std::size_t t = prefix; t < n; ++t) kept.push_back(static_cast<std::int32_t>(t));
  return kept;
}

template <class L>
class ChunkKVLayouts : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(ChunkKVLayouts, Layouts);

TYPED_TEST(ChunkKVLayouts, KeepsTheChunksTheWindowAttendsToAsDefined) {
  const Shape shape{2, 4, 2, kDim};
  const std::size_t n = 40;
  const auto keys = random_floats(n * shape.kv_heads * kDim, 1);
  const auto queries = random_floats(n * shape.query_heads * kDim, 2);
  // Prefix 36: chunks of 3 divide it, chunks of 5 leave a last chunk of 1; chunk 1 is token-level.
  for (std::size_t chunk : {1u, 3u, 5u})
    for (std::size_t budget : {4u, 12u, 14u, 39u}) {
      const select::ChunkKV p{.chunk = chunk, .window = 4};
      KVCache<TypeParam, select::ChunkKV> cache(shape, {.budget = budget}, p);
      prefill_and_attend(cache, keys, keys, queries);
      EXPECT_EQ(cache.size(0, 0), n) << "attend compresses nothing: ChunkKV compresses the prompt once";
      cache.compress_prompt();
      for (std::size_t l = 0; l < shape.layers; ++l)
        for (std::size_t h = 0; h < shape.kv_heads; ++h) {
          const auto expected = expected_kept(keys, queries, n, shape, h, p, budget);
          EXPECT_EQ(positions_of(cache.positions(l, h)), expected)
              << "chunk " << chunk << " budget " << budget << " layer " << l << " head " << h;
          EXPECT_LE(expected.size(), budget);
        }
    }
}

// The short last chunk can be chosen: it then keeps only its own tokens.
TEST(ChunkKV, ShortLastChunkIsKeptWhole) {
  const Shape shape{1, 1, 1, kDim};
  const std::size_t n = 24;  // window 4, prefix 20: chunks of 6 leave a last chunk of 2 (18, 19)
  std::vector<float> keys(n * kDim, 0.0f), queries(n * kDim, 0.0f);
  for (std::size_t t : {18u, 19u}) keys[t * kDim] = 4.0f;
  for (std::size_t r = 0; r < n; ++r) queries[r * kDim] = 4.0f;
  KVCache<ContiguousLayout, select::ChunkKV> cache(shape, {.budget = 10}, select::ChunkKV{.chunk = 6, .window = 4});
  prefill_and_attend(cache, keys, keys, queries);
  cache.compress_prompt();
  EXPECT_EQ(positions_of(cache.positions(0, 0)), (std::vector<std::int32_t>{18, 19, 20, 21, 22, 23}))
      << "one chunk fits (10 - 4) / 6; the chosen short chunk leaves 4 of the budget unused";
}

TEST(ChunkKV, RatioBudgetAndDecodingWithoutEvictionOrAllocation) {
  const Shape shape{2, 4, 2, kDim};
  const std::size_t n = 80;
  const select::ChunkKV p{.chunk = 4, .window = 8};
  KVCache<PagedLayout, select::ChunkKV> cache(shape, {.budget_ratio = 0.25, .compress_slack = 32}, p);
  const auto keys = random_floats(n * shape.kv_heads * kDim, 3);
  const auto queries = random_floats(n * shape.query_heads * kDim, 4);
  prefill_and_attend(cache, keys, keys, queries);
  cache.compress_prompt();
  EXPECT_EQ(positions_of(cache.positions(1, 0)), expected_kept(keys, queries, n, shape, 0, p, 20));
  expect_decode_grows_without_allocating(cache, 20, 30);
}

TEST(ChunkKV, ShortPromptIsNotCompressed) {
  const Shape shape{1, 2, 1, kDim};
  KVCache<ContiguousLayout, select::ChunkKV> cache(shape, {.budget = 40});
  prefill_and_attend(cache, random_floats(36 * kDim, 5), random_floats(36 * kDim, 6), random_floats(72 * kDim, 7));
  cache.compress_prompt();
  EXPECT_EQ(cache.size(0, 0), 36u);
}

TEST(ChunkKV, BadParametersThrow) {
  const Shape shape{1, 2, 1, kDim};
  using Cache = KVCache<ContiguousLayout, select::ChunkKV>;
  EXPECT_THROW(Cache(shape, {.budget = 64}, select::ChunkKV{.chunk = 0}), Error);
  EXPECT_THROW(Cache(shape, {.budget = 64}, select::ChunkKV{.chunk = std::size_t{1} << 40}), Error);
  EXPECT_THROW(Cache(shape, {.budget = 64}, select::ChunkKV{.window = 0}), Error);
  EXPECT_THROW(Cache(shape, {.budget = 16}, select::ChunkKV{.window = 32}), Error) << "budget below the window";

  // Budget from the ratio below the window, at compress_prompt().
  Cache small_budget(shape, {.budget_ratio = 0.25}, select::ChunkKV{.window = 8});
  prefill_and_attend(small_budget, random_floats(20 * kDim, 8), random_floats(20 * kDim, 9),
                     random_floats(40 * kDim, 10));
  EXPECT_THROW(small_budget.compress_prompt(), Error);
}

}  // namespace
}  // namespace kvc
