// After warm-up, append and attend allocate nothing: counted by replacing global operator new
// in this test binary.
#include "core/test_policies.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<std::size_t> g_allocations{0};
}

// GCC cannot see that every replaced operator pairs malloc/aligned_alloc with free.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a) {
  ++g_allocations;
  const auto align = static_cast<std::size_t>(a);
  if (void* p = std::aligned_alloc(align, (n + align - 1) / align * align)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace kvc {
namespace {

template <class Cache>
std::size_t allocations_in_steady_state(Cache& cache, std::size_t warmup, std::size_t steps) {
  const Shape& s = cache.shape();
  std::mt19937 rng(1);
  const auto k = testing::random_vector(s.kv_heads * s.head_dim, rng);
  const auto q = testing::random_vector(s.query_heads * s.head_dim, rng);
  std::vector<float> out(q.size());
  std::size_t before = 0;
  for (std::size_t t = 0; t < warmup + steps; ++t) {
    if (t == warmup) before = g_allocations.load();
    for (std::size_t layer = 0; layer < s.layers; ++layer) {
      cache.append(layer, static_cast<std::int32_t>(t), k, k);
      cache.attend(layer, q, out);
    }
  }
  return g_allocations.load() - before;
}

TEST(Allocation, NoneInSteadyStateWithoutPolicies) {
  KVCache<> contiguous(Shape{2, 8, 2, 64}, {.capacity = 256});
  EXPECT_EQ(allocations_in_steady_state(contiguous, 1, 200), 0u);
  KVCache<PagedLayout> paged(Shape{2, 8, 2, 64}, {.capacity = 256});
  paged.layout_config().pool->reserve(2 * 2 * 16);
  EXPECT_EQ(allocations_in_steady_state(paged, 1, 200), 0u);
}

TEST(Allocation, NoneInSteadyStateWithEviction) {
  KVCache<ContiguousLayout, testing::KeepRecent> contiguous(Shape{2, 8, 2, 64}, {.budget = 32});
  EXPECT_EQ(allocations_in_steady_state(contiguous, 40, 200), 0u);
  KVCache<PagedLayout, testing::WeightSum> paged(Shape{2, 8, 2, 64}, {.budget = 32, .compress_slack = 8});
  EXPECT_EQ(allocations_in_steady_state(paged, 40, 200), 0u);
  EXPECT_NEAR(paged.get<testing::WeightSum>().total, 2.0 * 2 * 240, 1e-2);
}

}  // namespace
}  // namespace kvc
