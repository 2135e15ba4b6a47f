// What docs/architecture.md ("Concurrency") allows, exercised on several threads: different caches
// on different threads, paged caches sharing one BlockPool, and the kernel table chosen on first
// use from many threads at once. scripts/test.sh runs this binary under ThreadSanitizer; in the
// other builds it checks that threaded runs give bit-identical results to a sequential one.
#include "kvc/kvc.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

namespace kvc {
namespace {

constexpr Shape shape{.layers = 2, .query_heads = 4, .kv_heads = 2, .head_dim = 32};
constexpr std::int32_t steps = 200;

// A deterministic stream per sequence, so a threaded run can be compared with a sequential one.
float value(std::uint32_t seq, std::uint32_t t, std::uint32_t i) {
  std::uint32_t x = seq * 2654435761u ^ t * 40503u ^ i * 2246822519u;
  x ^= x >> 15, x *= 2246822519u, x ^= x >> 13;
  return float(x % 2001) / 1000.0f - 1.0f;
}

using Cache = KVCache<PagedLayout, select::H2O, quant::PerToken>;

// Decodes `count` tokens of sequence `seq` from position `first` and returns every attention output.
std::vector<float> decode(Cache& cache, std::uint32_t seq, std::int32_t first = 0, std::int32_t count = steps) {
  const std::size_t kv = shape.kv_heads * shape.head_dim, qs = shape.query_heads * shape.head_dim;
  std::vector<float> k(kv), v(kv), q(qs), out(qs), all;
  all.reserve(std::size_t(count) * shape.layers * qs);
  for (std::int32_t t = first; t < first + count; ++t)
    for (std::size_t l = 0; l < shape.layers; ++l) {
      for (std::size_t i = 0; i < kv; ++i)
        k[i] = value(seq, std::uint32_t(t), std::uint32_t(i)), v[i] = value(seq + 7, std::uint32_t(t), std::uint32_t(i));
      for (std::size_t i = 0; i < qs; ++i) q[i] = value(seq + 13, std::uint32_t(t), std::uint32_t(i + l));
      if (cache.append(l, t, k, v) != Status::ok) ADD_FAILURE() << "append ran out of memory";
      cache.attend(l, q, out);
      all.insert(all.end(), out.begin(), out.end());
    }
  return all;
}

std::vector<std::unique_ptr<Cache>> make_caches(std::size_t n) {
  std::vector<std::unique_ptr<Cache>> caches;
  const Options options{.budget = 48};
  caches.push_back(std::make_unique<Cache>(shape, options, PagedLayout::config{.block_tokens = 8, .pool = nullptr},
                                           select::H2O{}, quant::PerToken{.bits = 8, .group = 32}));
  const auto pool = caches.front()->layout_config().pool;
  for (std::size_t i = 1; i < n; ++i)
    caches.push_back(std::make_unique<Cache>(shape, options, PagedLayout::config{.block_tokens = 8, .pool = pool},
                                             select::H2O{}, quant::PerToken{.bits = 8, .group = 32}));
  return caches;
}

TEST(Concurrency, CachesSharingOnePoolOnThreadsMatchSequentialRuns) {
  constexpr std::size_t n = 4;
  auto sequential = make_caches(n);
  std::vector<std::vector<float>> expected;
  for (std::size_t s = 0; s < n; ++s) expected.push_back(decode(*sequential[s], std::uint32_t(s)));

  auto threaded = make_caches(n);
  std::vector<std::vector<float>> got(n);
  {
    std::vector<std::jthread> threads;
    for (std::size_t s = 0; s < n; ++s)
      threads.emplace_back([&, s] { got[s] = decode(*threaded[s], std::uint32_t(s)); });
  }
  for (std::size_t s = 0; s < n; ++s) {
    EXPECT_EQ(got[s], expected[s]) << "sequence " << s;
    EXPECT_EQ(threaded[s]->tokens(), sequential[s]->tokens());
  }
  // The pool is shared: every block a cache holds is accounted once, and trimming while other
  // caches hold blocks frees only the free ones.
  const auto& pool = *threaded.front()->layout_config().pool;
  EXPECT_GE(pool.blocks_allocated(), pool.blocks_free());
}

TEST(Concurrency, PoolTrimRacesWithDecodingCaches) {
  auto sequential = make_caches(2);
  const std::vector<float> expected0 = decode(*sequential[0], 100), expected1 = decode(*sequential[1], 101);
  auto caches = make_caches(2);
  const auto pool = caches.front()->layout_config().pool;
  std::atomic<bool> done{false};
  std::vector<float> got0, got1;
  {
    std::jthread trimmer([&] {
      while (!done.load()) pool->trim();
    });
    {
      std::jthread a([&] { got0 = decode(*caches[0], 100); });
      std::jthread b([&] { got1 = decode(*caches[1], 101); });
    }
    done = true;
  }
  EXPECT_EQ(got0, expected0);
  EXPECT_EQ(got1, expected1);
}

TEST(Concurrency, FirstUseOfTheKernelTableFromManyThreads) {
  std::vector<const kernels::Table*> seen(8);
  {
    std::vector<std::jthread> threads;
    for (std::size_t i = 0; i < seen.size(); ++i) threads.emplace_back([&, i] { seen[i] = &kernels::active(); });
  }
  for (const auto* t : seen) EXPECT_EQ(t, seen.front());
}

TEST(Concurrency, ForksSharingAPrefixDecodeOnThreadsAsSequentialRuns) {
  // Sequence s: the shared prefix (stream 0, positions 0..99), then its own stream s from 100.
  constexpr std::int32_t prefix = 100;
  std::vector<std::vector<float>> expected;
  for (std::uint32_t s = 1; s <= 3; ++s) {
    auto fresh = make_caches(1);
    decode(*fresh[0], 0, 0, prefix);
    expected.push_back(decode(*fresh[0], s, prefix, prefix));
  }
  auto base = make_caches(1);
  decode(*base[0], 0, 0, prefix);
  Cache fork1 = base[0]->fork(), fork2 = base[0]->fork();
  std::vector<float> got1, got2, got3;
  {
    // Each fork un-shares the blocks it writes while the others read or release them.
    std::jthread a([&] { got1 = decode(fork1, 1, prefix, prefix); });
    std::jthread b([&] { got2 = decode(fork2, 2, prefix, prefix); });
    std::jthread c([&] { got3 = decode(*base[0], 3, prefix, prefix); });
  }
  EXPECT_EQ(got1, expected[0]);
  EXPECT_EQ(got2, expected[1]);
  EXPECT_EQ(got3, expected[2]);
}

}  // namespace
}  // namespace kvc
