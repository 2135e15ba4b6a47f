// Out of memory: every allocation of construction, prefill, append and compress is made to fail
// in turn (tests/support/allocation_counter.cpp). Configuration calls throw kvc::Error, append
// returns Status::out_of_memory, compress gives memory back only when it can, and in every case
// the cache holds what it held before and goes on to match a cache that never failed.
#include "support/allocation_counter.hpp"
#include "core/test_policies.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kvc {
namespace {

using ::testing::HasSubstr;
using kvc::testing::KeepRecent;

// Positions and decoded rows of every head.
struct Snapshot {
  std::vector<std::vector<std::int32_t>> positions;
  std::vector<std::vector<float>> rows;
  friend bool operator==(const Snapshot&, const Snapshot&) = default;
};

template <class Cache>
Snapshot snapshot(Cache& cache) {
  Snapshot s;
  const Shape& shape = cache.shape();
  for (std::size_t l = 0; l < shape.layers; ++l)
    for (std::size_t h = 0; h < shape.kv_heads; ++h) {
      const auto p = cache.positions(l, h);
      s.positions.emplace_back(p.begin(), p.end());
      const HeadView view = cache.view(l, h);
      std::vector<float> rows(view.size() * (view.key_dim() + view.value_dim()));
      for (std::size_t i = 0; i < view.size(); ++i) {
        float* row = rows.data() + i * (view.key_dim() + view.value_dim());
        view.load_key(i, {row, view.key_dim()});
        view.load_value(i, {row + view.key_dim(), view.value_dim()});
      }
      s.rows.push_back(std::move(rows));
    }
  return s;
}

// Runs `op` with the n-th allocation failing, for n = 0, 1, ... until it completes without
// reaching the failure; `on_failure` checks each failed attempt. Returns the attempts that failed.
template <class Op, class OnFailure>
std::size_t fail_each_allocation(Op op, OnFailure on_failure) {
  for (std::size_t n = 0;; ++n) {
    kvc::testing::fail_allocation(n);
    const bool ok = op();
    kvc::testing::disarm_allocation_failure();
    if (!kvc::testing::failed_allocation()) {
      EXPECT_TRUE(ok) << "the call failed without an allocation failing";
      return n;
    }
    on_failure(ok);
  }
}

std::vector<float> token(std::size_t floats, std::int32_t t) {
  std::vector<float> v(floats);
  for (std::size_t i = 0; i < floats; ++i) v[i] = std::sin(0.37f * static_cast<float>(i) + static_cast<float>(t));
  return v;
}

template <class Cache>
void append_under_faults(Cache& cache, Cache& reference, std::int32_t tokens) {
  const Shape& s = cache.shape();
  const auto q = token(s.query_heads * s.head_dim, 99);
  std::vector<float> out(q.size()), expected(q.size());
  std::size_t failures = 0;
  for (std::int32_t t = 0; t < tokens; ++t) {
    const auto k = token(s.kv_heads * s.head_dim, t), v = token(s.kv_heads * s.head_dim, -t);
    for (std::size_t layer = 0; layer < s.layers; ++layer) {
      const Snapshot before = snapshot(cache);
      failures += fail_each_allocation([&] { return cache.append(layer, t, k, v) == Status::ok; },
                                       [&](bool ok) {
                                         EXPECT_FALSE(ok) << "append succeeded although an allocation failed";
                                         EXPECT_EQ(snapshot(cache), before) << "a failed append changed the cache";
                                       });
      ASSERT_EQ(reference.append(layer, t, k, v), Status::ok);
      cache.attend(layer, q, out);
      reference.attend(layer, q, expected);
      EXPECT_EQ(out, expected);
    }
  }
  EXPECT_GT(failures, 0u) << "no allocation point was exercised";
  EXPECT_EQ(snapshot(cache), snapshot(reference));
}

TEST(OutOfMemory, AppendReportsAStatusAndChangesNothing) {
  const Shape s{2, 4, 2, 8};
  KVCache<> contiguous(s), contiguous_reference(s);
  append_under_faults(contiguous, contiguous_reference, 40);
  KVCache<PagedLayout, KeepRecent> paged(s, {.budget = 6}, {4, nullptr}),
      paged_reference(s, {.budget = 6}, {4, nullptr});
  append_under_faults(paged, paged_reference, 40);
  // Policy columns grow with the rows, all or nothing.
  KVCache<PagedLayout, select::H2O> h2o(s, {.budget = 6}, {4, nullptr}), h2o_reference(s, {.budget = 6}, {4, nullptr});
  append_under_faults(h2o, h2o_reference, 40);
  KVCache<ContiguousLayout, select::KNorm> knorm(s, {.budget = 5, .auto_compress = false}),
      knorm_reference(s, {.budget = 5, .auto_compress = false});  // grows past its reservation
  append_under_faults(knorm, knorm_reference, 40);
}

TEST(OutOfMemory, PrefillThrowsAndChangesNothing) {
  const Shape s{2, 4, 2, 8};
  KVCache<PagedLayout> cache(s, {}, {4, nullptr}), reference(s, {}, {4, nullptr});
  for (auto* c : {&cache, &reference}) c->prefill(1, 0, token(3 * 16, 1), token(3 * 16, 2));
  const Snapshot before = snapshot(cache);
  const auto keys = token(20 * 16, 3), values = token(20 * 16, 4);
  const std::size_t failures = fail_each_allocation(
      [&] {
        try {
          cache.prefill(1, 3, keys, values);
          return true;
        } catch (const Error& e) {
          EXPECT_THAT(e.what(), HasSubstr("KVCache::prefill: out of memory appending 20 tokens to layer 1"));
          return false;
        }
      },
      [&](bool ok) {
        EXPECT_FALSE(ok);
        EXPECT_EQ(snapshot(cache), before);
      });
  EXPECT_GT(failures, 0u);
  reference.prefill(1, 3, keys, values);
  EXPECT_EQ(snapshot(cache), snapshot(reference));
}

TEST(OutOfMemory, CompressNeverFailsAndMatchesAnUnfailedCompress) {
  const Shape s{1, 4, 2, 8};
  const Options o{.budget = 4, .auto_compress = false};
  const auto keys = token(40 * 16, 5), values = token(40 * 16, 6);
  KVCache<ContiguousLayout, KeepRecent> reference(s, o);
  reference.prefill(0, 0, keys, values);
  reference.compress();
  const Snapshot expected = snapshot(reference);
  std::size_t fired = 0;
  for (std::size_t n = 0;; ++n) {
    KVCache<ContiguousLayout, KeepRecent> cache(s, o);
    cache.prefill(0, 0, keys, values);
    kvc::testing::fail_allocation(n);
    cache.compress();
    kvc::testing::disarm_allocation_failure();
    EXPECT_EQ(snapshot(cache), expected);
    if (!kvc::testing::failed_allocation()) break;
    ++fired;
  }
  EXPECT_GT(fired, 0u) << "compress gives memory back, which allocates a smaller buffer";
}

// trim() is what a caller runs when memory is short: it must not need any.
TEST(OutOfMemory, TrimAllocatesNothing) {
  BlockPool pool(256);
  pool.reserve(8);
  std::byte* held = pool.acquire();
  const std::size_t before = kvc::testing::allocation_count();
  pool.trim();
  EXPECT_EQ(kvc::testing::allocation_count(), before);
  EXPECT_EQ(pool.blocks_allocated(), 1u);
  EXPECT_EQ(pool.blocks_free(), 0u);
  pool.release(held);
}

TEST(OutOfMemory, ConstructionThrowsKvcError) {
  const Shape s{2, 4, 2, 8};
  const auto build = [&] {
    try {
      KVCache<PagedLayout, select::H2O> cache(s, {.budget = 8, .capacity = 32}, {4, nullptr});
      return true;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("kvc::KVCache: out of memory building 4 heads (budget 8, capacity 32"));
      return false;
    }
  };
  EXPECT_TRUE(build());  // first use of the kernel tables outside the faults
  EXPECT_GT(fail_each_allocation(build, [](bool ok) { EXPECT_FALSE(ok); }), 0u);
}

}  // namespace
}  // namespace kvc
