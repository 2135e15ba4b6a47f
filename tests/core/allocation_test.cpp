// After warm-up, append and attend allocate nothing (allocations counted by the test binaries'
// operator new, tests/support/allocation_counter.cpp).
#include "support/allocation_counter.hpp"
#include "core/test_policies.hpp"

#include <gtest/gtest.h>

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
    if (t == warmup) before = kvc::testing::allocation_count();
    for (std::size_t layer = 0; layer < s.layers; ++layer) {
      cache.append(layer, static_cast<std::int32_t>(t), k, k);
      cache.attend(layer, q, out);
    }
  }
  return kvc::testing::allocation_count() - before;
}

// The counter the other tests rely on really sees allocations (so their zeros mean something).
TEST(Allocation, TheCounterSeesAnAllocation) {
  volatile std::size_t n = 3;
  const std::size_t before = kvc::testing::allocation_count();
  std::vector<int> v(n);
  EXPECT_GT(kvc::testing::allocation_count(), before);
  EXPECT_EQ(v.size(), 3u);
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
