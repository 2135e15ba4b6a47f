// Compression mechanics of the container: budgets, ragged heads, eviction freeing memory in
// both layouts, the shared block pool, and identical results across layouts.
#include "core/test_policies.hpp"

#include <gtest/gtest.h>

#include <random>

namespace kvc {
namespace {

using testing::KeepRecent;
using testing::Ragged;
using testing::random_vector;

template <class Cache>
std::vector<float> run_decode(Cache& cache, std::size_t steps, unsigned seed) {
  const Shape& s = cache.shape();
  std::mt19937 rng(seed);
  const std::size_t kv = s.kv_heads * s.head_dim, qn = s.query_heads * s.head_dim;
  std::vector<float> all;
  for (std::size_t t = 0; t < steps; ++t)
    for (std::size_t layer = 0; layer < s.layers; ++layer) {
      auto k = random_vector(kv, rng), v = random_vector(kv, rng), q = random_vector(qn, rng);
      std::vector<float> out(qn);
      cache.append(layer, static_cast<std::int32_t>(t), k, v);
      cache.attend(layer, q, out);
      all.insert(all.end(), out.begin(), out.end());
    }
  return all;
}

TEST(Compression, AutoCompressKeepsEachHeadAtItsBudget) {
  const Shape s{2, 4, 2, 8};
  KVCache<ContiguousLayout, KeepRecent> cache(s, {.budget = 10});
  run_decode(cache, 30, 1);
  for (std::size_t l = 0; l < 2; ++l)
    for (std::size_t h = 0; h < 2; ++h) {
      EXPECT_EQ(cache.size(l, h), 10u);
      const auto pos = cache.positions(l, h);
      EXPECT_EQ(pos.front(), 20);
      EXPECT_EQ(pos.back(), 29);
    }
}

TEST(Compression, SlackDefersCompression) {
  const Shape s{1, 2, 1, 8};
  KVCache<ContiguousLayout, KeepRecent> cache(s, {.budget = 10, .compress_slack = 5});
  run_decode(cache, 15, 2);
  EXPECT_EQ(cache.size(0, 0), 15u);
}

TEST(Compression, ExplicitCompressOnly) {
  const Shape s{1, 2, 1, 8};
  KVCache<ContiguousLayout, KeepRecent> cache(s, {.budget = 4, .auto_compress = false});
  run_decode(cache, 12, 4);
  EXPECT_EQ(cache.size(0, 0), 12u);
  cache.compress();
  EXPECT_EQ(cache.size(0, 0), 4u);
  EXPECT_EQ(cache.positions(0, 0).front(), 8);
}

// Ragged budgets: each head holds its own number of tokens and its own memory.
TEST(Compression, RaggedBudgetsHoldRaggedMemory) {
  const Shape s{1, 4, 4, 16};
  KVCache<ContiguousLayout, KeepRecent, Ragged> cache(s, {.budget = 8}, KeepRecent{}, Ragged{.spread = 4});
  run_decode(cache, 40, 5);
  EXPECT_EQ(cache.size(0, 0), 4u);
  EXPECT_EQ(cache.size(0, 1), 12u);
  EXPECT_EQ(cache.budget(0, 1), 12u);
  EXPECT_EQ(cache.tokens(), 4u + 12u + 4u + 12u);
  // Rows are f32: 16 * 4 bytes for K and V each. Each head reserves budget + 1 rows.
  const std::size_t row = 2 * 16 * 4;
  EXPECT_EQ(cache.memory_bytes(), (5 + 13 + 5 + 13) * (row + sizeof(std::int32_t)));
}

// Paged and contiguous layouts keep the same tokens and give the same outputs.
TEST(Compression, LayoutsAgreeUnderEviction) {
  const Shape s{2, 8, 2, 8};
  const Options o{.budget = 12, .compress_slack = 3, .isa = kernels::Isa::scalar};
  KVCache<ContiguousLayout, KeepRecent, Ragged> contiguous(s, o);
  KVCache<PagedLayout, KeepRecent, Ragged> paged(s, o, {5, nullptr});
  EXPECT_EQ(run_decode(contiguous, 50, 6), run_decode(paged, 50, 6));
  for (std::size_t l = 0; l < 2; ++l)
    for (std::size_t h = 0; h < 2; ++h) {
      const auto a = contiguous.positions(l, h), b = paged.positions(l, h);
      EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end()));
    }
}

TEST(Compression, EvictionFreesMemoryContiguous) {
  const Shape s{1, 2, 2, 32};
  KVCache<ContiguousLayout, KeepRecent> cache(s, {.budget = 16, .auto_compress = false});
  run_decode(cache, 200, 7);
  const std::size_t before = cache.memory_bytes();
  cache.compress();
  const std::size_t after = cache.memory_bytes();
  EXPECT_LT(after * 5, before);
  // What remains is the budget's steady state: 17 rows and positions per head.
  EXPECT_EQ(after, 2 * 17 * (2 * 32 * 4 + 4));
}

TEST(Compression, EvictionReturnsBlocksToThePool) {
  const Shape s{1, 2, 2, 32};
  auto pool = std::make_shared<BlockPool>(8 * 2 * 32 * 4);
  KVCache<PagedLayout, KeepRecent> cache(s, {.budget = 16, .auto_compress = false}, {8, pool});
  run_decode(cache, 200, 8);
  EXPECT_EQ(pool->blocks_allocated(), 2u * 25u);
  EXPECT_EQ(pool->blocks_free(), 0u);
  const std::size_t before = cache.memory_bytes();
  cache.compress();
  EXPECT_EQ(pool->blocks_free(), 2u * 23u);
  EXPECT_LT(cache.memory_bytes() * 5, before);
  // Another cache sharing the pool reuses the freed blocks without allocating new ones.
  KVCache<PagedLayout> other(s, {}, {8, pool});
  run_decode(other, 40, 9);
  EXPECT_EQ(pool->blocks_allocated(), 2u * 25u);
  EXPECT_EQ(pool->blocks_free(), 2u * 23u - 2u * 5u);
  pool->trim();
  EXPECT_EQ(pool->blocks_allocated(), 2u * 2u + 2u * 5u);
  other.clear();
  EXPECT_EQ(pool->blocks_free(), 2u * 5u);
}

// A head's memory follows its own budget, not the largest head's.
TEST(Compression, PagedRaggedHeadsHoldOnlyTheirBlocks) {
  const Shape s{1, 2, 2, 8};
  KVCache<PagedLayout, KeepRecent, Ragged> cache(s, {.budget = 10}, {2, nullptr}, KeepRecent{}, Ragged{.spread = 6});
  run_decode(cache, 30, 10);
  EXPECT_EQ(cache.size(0, 0), 4u);
  EXPECT_EQ(cache.size(0, 1), 16u);
  EXPECT_EQ(cache.layout_config().pool->blocks_allocated() - cache.layout_config().pool->blocks_free(), 2u + 8u);
}

}  // namespace
}  // namespace kvc
