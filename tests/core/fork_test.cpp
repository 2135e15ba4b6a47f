// KVCache::fork: a fork and its original diverge as two fresh caches fed the same tokens would
// (before and after compression, with a policy's column and state copied), a paged fork shares
// every block of the prefix until one side writes it (copy on write), and removal on one side
// leaves the other untouched.
#include "core/test_policies.hpp"
#include "kvc/quant/kivi.hpp"
#include "kvc/select/h2o.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <vector>

namespace kvc {
namespace {

using ::testing::HasSubstr;

constexpr kernels::Isa kScalar = kernels::Isa::scalar;
const Shape kShape{2, 4, 2, 8};
constexpr std::size_t kBlock = 4;

// Deterministic rows of sequence `seq` at position t.
std::vector<float> row(std::uint32_t seq, std::int32_t t, std::size_t n) {
  std::mt19937 rng(seq * 7919u + static_cast<std::uint32_t>(t));
  return testing::random_vector(n, rng);
}

// Appends and attends positions [first, first + count) of sequence `seq`, returning the outputs.
template <class Cache>
std::vector<float> run(Cache& cache, std::uint32_t seq, std::int32_t first, std::int32_t count) {
  const std::size_t kv = kShape.kv_heads * kShape.head_dim, qn = kShape.query_heads * kShape.head_dim;
  std::vector<float> out(qn), all;
  for (std::int32_t t = first; t < first + count; ++t)
    for (std::size_t l = 0; l < kShape.layers; ++l) {
      const auto k = row(seq, t * 3 + 0, kv), v = row(seq, t * 3 + 1, kv), q = row(seq + 1000, t * 3 + 2 + int(l), qn);
      EXPECT_EQ(cache.append(l, t, k, v), Status::ok);
      cache.attend(l, q, out);
      all.insert(all.end(), out.begin(), out.end());
    }
  return all;
}

template <class L>
class Fork : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(Fork, Layouts);

template <class L, class... P>
KVCache<L, P...> make_cache(Options o, P... p) {
  if constexpr (std::is_same_v<L, PagedLayout>)
    return KVCache<L, P...>(kShape, o, PagedLayout::config{kBlock, nullptr}, p...);
  else
    return KVCache<L, P...>(kShape, o, p...);
}

TYPED_TEST(Fork, DivergesAsTwoFreshCachesWouldBeforeAndAfterCompression) {
  // H2O at budget 12 with slack 0: both sides compress on every step after the prefix, from the
  // scores the prefix accumulated (the fork copies the column) plus their own.
  const Options o{.budget = 12, .isa = kScalar};
  auto original = make_cache<TypeParam>(o, select::H2O{});
  run(original, 0, 0, 18);
  auto forked = original.fork();
  EXPECT_EQ(forked.tokens(), original.tokens());
  const auto out_original = run(original, 1, 18, 10);
  const auto out_forked = run(forked, 2, 18, 10);

  auto fresh1 = make_cache<TypeParam>(o, select::H2O{});
  run(fresh1, 0, 0, 18);
  EXPECT_EQ(run(fresh1, 1, 18, 10), out_original);
  auto fresh2 = make_cache<TypeParam>(o, select::H2O{});
  run(fresh2, 0, 0, 18);
  EXPECT_EQ(run(fresh2, 2, 18, 10), out_forked);
  for (std::size_t l = 0; l < kShape.layers; ++l)
    for (std::size_t h = 0; h < kShape.kv_heads; ++h) {
      const auto a = forked.positions(l, h), b = fresh2.positions(l, h);
      EXPECT_EQ(std::vector<std::int32_t>(a.begin(), a.end()), std::vector<std::int32_t>(b.begin(), b.end()));
      const auto ca = forked.template column<select::H2O>(l, h), cb = fresh2.template column<select::H2O>(l, h);
      EXPECT_EQ(std::vector<float>(ca.begin(), ca.end()), std::vector<float>(cb.begin(), cb.end()));
    }
}

TYPED_TEST(Fork, RemovalOnOneSideLeavesTheOtherIntact) {
  auto original = make_cache<TypeParam>({.isa = kScalar});
  run(original, 0, 0, 10);
  auto forked = original.fork();
  ASSERT_EQ(forked.remove(3, 6), 4 * kShape.layers * kShape.kv_heads);
  auto fresh = make_cache<TypeParam>({.isa = kScalar});
  run(fresh, 0, 0, 10);
  EXPECT_EQ(run(original, 5, 10, 3), run(fresh, 5, 10, 3)) << "the original saw its rows moved";
  EXPECT_EQ(forked.size(0, 0), 6u);
}

// KIVI's frozen groups and tails: a freeze after the fork writes rows the original still shares
// (the tail's), and an eviction re-encodes from a group start before the first evicted token.
TYPED_TEST(Fork, PerChannelKeysDivergeAsTwoFreshCachesWould) {
  const Options o{.budget = 26, .isa = kScalar};
  const quant::Kivi kivi{.bits = 4, .group = 8, .residual = 8};
  auto original = make_cache<TypeParam>(o, select::H2O{}, kivi);
  run(original, 0, 0, 21);
  auto forked = original.fork();
  const auto out_original = run(original, 1, 21, 17);
  const auto out_forked = run(forked, 2, 21, 17);
  auto fresh1 = make_cache<TypeParam>(o, select::H2O{}, kivi);
  run(fresh1, 0, 0, 21);
  EXPECT_EQ(run(fresh1, 1, 21, 17), out_original);
  auto fresh2 = make_cache<TypeParam>(o, select::H2O{}, kivi);
  run(fresh2, 0, 0, 21);
  EXPECT_EQ(run(fresh2, 2, 21, 17), out_forked);
}

TEST(ForkPaged, SharesThePrefixUntilEitherSideWritesIt) {
  const std::size_t heads = kShape.layers * kShape.kv_heads;
  KVCache<PagedLayout> original(kShape, {.isa = kScalar}, PagedLayout::config{kBlock, nullptr});
  const auto& pool = *original.layout_config().pool;
  run(original, 0, 0, 10);  // 3 blocks per head, the last one half full
  ASSERT_EQ(pool.blocks_in_use(), 3 * heads);
  std::vector<KVCache<PagedLayout>> forks;
  for (int i = 0; i < 4; ++i) forks.push_back(original.fork());
  EXPECT_EQ(pool.blocks_in_use(), 3 * heads) << "forks share every block";
  EXPECT_GE(forks[0].memory_bytes(), 3 * heads * pool.block_bytes()) << "each cache counts the blocks it references";

  // The first append of a fork lands in the shared half-full block: that block is copied, once.
  run(forks[0], 1, 10, 1);
  EXPECT_EQ(pool.blocks_in_use(), 4 * heads);
  run(forks[0], 1, 11, 1);
  EXPECT_EQ(pool.blocks_in_use(), 4 * heads) << "the copy is private now";
  // Forks released: their private blocks return, the shared ones stay with the original.
  forks.clear();
  EXPECT_EQ(pool.blocks_in_use(), 3 * heads);
  KVCache<PagedLayout> fresh(kShape, {.isa = kScalar}, PagedLayout::config{kBlock, nullptr});
  run(fresh, 0, 0, 10);
  EXPECT_EQ(run(original, 9, 10, 2), run(fresh, 9, 10, 2)) << "the original's shared blocks were never written";
}

// The figure: N sequences forked from one 2K-token prompt against N independent caches,
// in blocks of the pool (SmolLM2's shape: 30 layers x 3 KV heads, d 64, f16, 16-token blocks).
TEST(ForkPaged, ForksOfALongPromptHoldItOnce) {
  const Shape s{30, 9, 3, 64};
  constexpr std::size_t prompt = 2048, forks = 8, decoded = 64;
  KVCache<PagedLayout> base(s, {.dtype = kernels::Dtype::f16}, PagedLayout::config{16, nullptr});
  const auto& pool = *base.layout_config().pool;
  std::mt19937 rng(1);
  const std::size_t kv = s.kv_heads * s.head_dim;
  for (std::size_t l = 0; l < s.layers; ++l)
    base.prefill(l, 0, testing::random_vector(prompt * kv, rng), testing::random_vector(prompt * kv, rng));
  const std::size_t prompt_blocks = pool.blocks_in_use();
  EXPECT_EQ(prompt_blocks, s.layers * s.kv_heads * (prompt / 16));
  std::vector<KVCache<PagedLayout>> seqs;
  const auto k = testing::random_vector(kv, rng);
  for (std::size_t f = 0; f < forks; ++f) {
    seqs.push_back(base.fork());
    for (std::size_t t = 0; t < decoded; ++t)
      for (std::size_t l = 0; l < s.layers; ++l)
        ASSERT_EQ(seqs.back().append(l, static_cast<std::int32_t>(prompt + t), k, k), Status::ok);
  }
  // Each fork decoded 64 tokens: 4 new blocks per head; the prompt's 128 are held once.
  EXPECT_EQ(pool.blocks_in_use(), prompt_blocks + forks * s.layers * s.kv_heads * (decoded / 16));
  const double independent = double(forks) * double(prompt + decoded) / 16.0 * double(s.layers * s.kv_heads);
  EXPECT_LT(double(pool.blocks_in_use()) / independent, 0.16);  // 11,520 + 8 x 360 blocks vs 8 x 11,880
}

TEST(Fork, MovedFromThrows) {
  KVCache<> cache(kShape, {.isa = kScalar});
  KVCache<> moved = std::move(cache);
  try {
    (void)cache.fork();  // NOLINT(bugprone-use-after-move)
    FAIL() << "a moved-from cache forked";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("moved from"));
  }
}

}  // namespace
}  // namespace kvc
