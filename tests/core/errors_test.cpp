// Bad input: configuration errors throw kvc::Error naming what is wrong; hot-path contract
// violations abort with a message (death tests).
#include "core/test_policies.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace kvc {
namespace {

using ::testing::HasSubstr;
using testing::KeepRecent;

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no kvc::Error thrown>";
}

TEST(Errors, InvalidShapes) {
  EXPECT_THAT(error_of([] { KVCache<> c(Shape{0, 4, 2, 8}); }), HasSubstr("layers must be > 0"));
  EXPECT_THAT(error_of([] { KVCache<> c(Shape{1, 0, 2, 8}); }), HasSubstr("query_heads must be > 0"));
  EXPECT_THAT(error_of([] { KVCache<> c(Shape{1, 4, 0, 8}); }), HasSubstr("kv_heads must be > 0"));
  EXPECT_THAT(error_of([] { KVCache<> c(Shape{1, 4, 2, 0}); }), HasSubstr("head_dim must be > 0"));
  EXPECT_THAT(error_of([] { KVCache<> c(Shape{1, 6, 4, 8}); }), HasSubstr("query_heads (6) must be a multiple of kv_heads (4)"));
  EXPECT_THAT(error_of([] { KVCache<> c(Shape{1, 4, 2, 2048}); }), HasSubstr("stored row dims above 1024"));
}

// Products of sizes that wrap built a cache with no heads (then a null dereference) or too
// small blocks; they throw instead.
TEST(Errors, SizeProductsDoNotWrap) {
  constexpr std::size_t huge = std::size_t{1} << 63;
  EXPECT_THAT(error_of([] { KVCache<> c(Shape{huge, 4, 2, 8}); }), HasSubstr("layers * kv_heads = 9223372036854775808 * 2 overflows"));
  EXPECT_THAT(error_of([] { Shape{1, huge, 1, 4}.validate(); }), HasSubstr("query_heads * head_dim"));
  EXPECT_THAT(error_of([] { Shape{huge / 4, 4, 4, 4}.validate(); }), HasSubstr("layers * query_heads * head_dim"));
  EXPECT_THAT(error_of([] { KVCache<PagedLayout> c(Shape{1, 4, 2, 8}, {}, {huge, nullptr}); }),
              HasSubstr("block bytes (block_tokens * row bytes) = 9223372036854775808 * 64 overflows"));
  EXPECT_THAT(error_of([] { (void)checked_mul(huge, 2, "where", "what"); }), HasSubstr("where: what = 9223372036854775808 * 2"));
  EXPECT_THAT(error_of([] { (void)checked_add(huge, huge, "where", "sum"); }), HasSubstr("where: sum ="));
}

// Budgets past what int32 positions can hold were std::length_error or std::bad_alloc (or a
// wrapped budget + slack + 1); they are configuration errors.
TEST(Errors, AbsurdBudgetsAreConfigurationErrors) {
  const Shape s{1, 4, 2, 8};
  EXPECT_THAT(error_of([&] { KVCache<ContiguousLayout, KeepRecent> c(s, {.budget = std::size_t{1} << 40}); }),
              HasSubstr("budget 1099511627776 exceeds 2147483647 tokens, the most a head can hold"));
  EXPECT_THAT(error_of([&] { KVCache<> c(s, {.capacity = SIZE_MAX}); }), HasSubstr("capacity 18446744073709551615 exceeds"));
  EXPECT_THAT(error_of([&] { KVCache<ContiguousLayout, KeepRecent> c(s, {.budget = 4, .compress_slack = SIZE_MAX}); }),
              HasSubstr("compress_slack 18446744073709551615 exceeds"));
}

TEST(Errors, InvalidOptions) {
  const Shape s{1, 4, 2, 8};
  EXPECT_THAT(error_of([&] { KVCache<> c(s, {.dtype = kernels::Dtype::q8}); }), HasSubstr("dtype int8 is not a storage element type"));
  EXPECT_THAT(error_of([&] { KVCache<> c(s, {.scale = std::nanf("")}); }), HasSubstr("scale nan must be finite"));
  EXPECT_THAT(error_of([&] { KVCache<> c(s, {.scale = -1.0f}); }), HasSubstr("must be finite and >= 0"));
  EXPECT_THAT(error_of([&] { KVCache<> c(s, {.budget = 8}); }), HasSubstr("no selection policy"));
  EXPECT_THAT(error_of([&] { KVCache<ContiguousLayout, KeepRecent> c(s, {}); }), HasSubstr("budget must be > 0"));
  EXPECT_THAT(error_of([&] { KVCache<ContiguousLayout, KeepRecent> c(s, {.budget = 64, .capacity = 32}); }),
              HasSubstr("budget 64 exceeds capacity 32"));
  EXPECT_THAT(error_of([&] { KVCache<PagedLayout> c(s, {}, {0, nullptr}); }), HasSubstr("block_tokens must be > 0"));
  auto pool = std::make_shared<BlockPool>(100);
  EXPECT_THAT(error_of([&] { KVCache<PagedLayout> c(s, {}, {16, pool}); }), HasSubstr("shared pool has 100-byte blocks but this cache needs 1024"));
  EXPECT_THAT(error_of([] { BlockPool p(0); }), HasSubstr("block_bytes must be > 0"));
}

TEST(Errors, InvalidBudgets) {
  struct Zero {
    using family = kvc::family::budget;
    void allocate(const BudgetContext&, std::span<std::size_t> b) const { std::fill(b.begin(), b.end(), 0); }
  };
  struct Greedy {
    using family = kvc::family::budget;
    void allocate(const BudgetContext& c, std::span<std::size_t> b) const {
      std::fill(b.begin(), b.end(), c.average + 1);
    }
  };
  struct TooBig {
    using family = kvc::family::budget;
    void allocate(const BudgetContext& c, std::span<std::size_t> b) const {
      std::fill(b.begin(), b.end(), 0);
      b[1] = c.capacity + 1;
    }
  };
  const Shape s{2, 4, 2, 8};
  EXPECT_THAT(error_of([&] { KVCache<ContiguousLayout, KeepRecent, Zero> c(s, {.budget = 8}); }),
              HasSubstr("gave layer 0 KV head 0 a budget of 0"));
  EXPECT_THAT(error_of([&] { KVCache<ContiguousLayout, KeepRecent, Greedy> c(s, {.budget = 8}); }),
              HasSubstr("handed out 36 tokens, more than budget * heads = 32"));
  EXPECT_THAT(error_of([&] { KVCache<ContiguousLayout, KeepRecent, TooBig> c(s, {.budget = 8, .capacity = 16}); }),
              HasSubstr("gave layer 0 KV head 0 a budget of 0"));
}

TEST(Errors, InvalidFormats) {
  const Shape s{1, 4, 2, 16};
  using Q = testing::Formats;
  using kernels::Dtype;
  EXPECT_THAT(error_of([&] { KVCache<ContiguousLayout, Q> c(s, {}, Q{{Dtype::q4, 12}, {Dtype::q8, 8}}); }),
              HasSubstr("key group size 12 must be a positive multiple of 8"));
  EXPECT_THAT(error_of([&] { KVCache<ContiguousLayout, Q> c(s, {}, Q{{Dtype::q4, 8}, {Dtype::q8, 0}}); }),
              HasSubstr("value group size 0 must be a positive multiple of 8"));
  EXPECT_THAT(error_of([&] { KVCache<ContiguousLayout, Q> c(s, {}, Q{{Dtype::q4, 32}, {Dtype::q8, 8}}); }),
              HasSubstr("key group size 32 does not divide the stored key dim 16"));
  EXPECT_THAT(error_of([&] { KVCache<ContiguousLayout, Q> c(s, {}, Q{{Dtype::f16, 8}, {Dtype::q8, 8}}); }),
              HasSubstr("key format f16 takes no group size"));
}

TEST(Errors, InvalidPrefill) {
  const Shape s{2, 4, 2, 8};
  KVCache<> cache(s);
  std::vector<float> rows(3 * 16, 1.0f), odd(15, 1.0f), shorter(2 * 16, 1.0f);
  EXPECT_THAT(error_of([&] { cache.prefill(2, 0, rows, rows); }), HasSubstr("layer 2 out of range (layers: 2)"));
  EXPECT_THAT(error_of([&] { cache.prefill(0, 0, odd, odd); }), HasSubstr("keys hold 15 floats, not a positive multiple of kv_heads * head_dim = 16"));
  EXPECT_THAT(error_of([&] { cache.prefill(0, 0, rows, shorter); }), HasSubstr("values hold 32 floats but keys hold 48"));
  auto bad = rows;
  bad[17] = std::numeric_limits<float>::infinity();
  EXPECT_THAT(error_of([&] { cache.prefill(0, 0, rows, bad); }), HasSubstr("values[17] is not finite (inf)"));
  bad[17] = std::nanf("");
  EXPECT_THAT(error_of([&] { cache.prefill(0, 0, bad, rows); }), HasSubstr("keys[17] is not finite"));
  cache.prefill(0, 5, rows, rows);
  EXPECT_THAT(error_of([&] { cache.prefill(0, 7, rows, rows); }), HasSubstr("position 7 does not follow the last position 7"));
  EXPECT_THAT(error_of([&] { cache.compress(3); }), HasSubstr("layer 3 out of range"));
  EXPECT_EQ(cache.size(0, 0), 3u);  // failed calls changed nothing
}

// first_position + t must not overflow int32 (it was signed overflow, then a contract abort).
TEST(Errors, PrefillPositionsMustFitInt32) {
  KVCache<> cache(Shape{1, 4, 2, 8});
  constexpr std::int32_t last = std::numeric_limits<std::int32_t>::max();
  std::vector<float> rows(3 * 16, 1.0f);
  EXPECT_THAT(error_of([&] { cache.prefill(0, last - 1, rows, rows); }),
              HasSubstr("3 tokens from position 2147483646 would pass the largest position 2147483647"));
  EXPECT_EQ(cache.size(0, 0), 0u);
  cache.prefill(0, last - 2, rows, rows);  // ends exactly at the largest position
  EXPECT_EQ(cache.positions(0, 1).back(), last);
}

// Observers read out of bounds with a layer or KV head out of range; they throw instead.
TEST(Errors, ObserversCheckTheirHead) {
  KVCache<ContiguousLayout, KeepRecent> cache(Shape{2, 4, 2, 8}, {.budget = 4});
  EXPECT_THAT(error_of([&] { (void)cache.size(2, 0); }),
              HasSubstr("KVCache::size: layer 2 KV head 0 out of range (layers: 2, kv_heads: 2)"));
  EXPECT_THAT(error_of([&] { (void)cache.size(0, 2); }), HasSubstr("layer 0 KV head 2 out of range"));
  EXPECT_THAT(error_of([&] { (void)cache.positions(0, 7); }), HasSubstr("KVCache::positions: layer 0 KV head 7"));
  EXPECT_THAT(error_of([&] { (void)cache.budget(9, 1); }), HasSubstr("KVCache::budget: layer 9 KV head 1"));
  EXPECT_THAT(error_of([&] { (void)cache.view(1, 2); }), HasSubstr("KVCache::view: layer 1 KV head 2"));
  EXPECT_EQ(cache.budget(1, 1), 4u);
}

// A moved-from cache holds no heads: observers throw and the hot paths fire a contract (append
// dereferenced null before).
TEST(Errors, MovedFromCacheIsRejected) {
  KVCache<> cache(Shape{1, 4, 2, 8});
  KVCache<> moved(std::move(cache));
  std::vector<float> rows(16, 1.0f);
  EXPECT_THAT(error_of([&] { (void)cache.size(0, 0); }), HasSubstr("KVCache::size: the cache was moved from"));
  EXPECT_THAT(error_of([&] { cache.prefill(0, 0, rows, rows); }), HasSubstr("the cache was moved from"));
  EXPECT_EQ(cache.tokens(), 0u);
  moved.prefill(0, 0, rows, rows);
  EXPECT_EQ(moved.size(0, 1), 1u);
}

using ErrorsDeathTest = ::testing::Test;

TEST(ErrorsDeathTest, HotPathContracts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const Shape s{1, 4, 2, 8};
  KVCache<> cache(s);
  std::vector<float> row(16, 0.5f), q(32, 0.5f), out(32);
  EXPECT_DEATH(cache.append(1, 0, row, row), "append: layer out of range");
  EXPECT_DEATH(cache.append(0, 0, std::span(row).first(15), row), "append: k must hold kv_heads \\* head_dim floats");
  EXPECT_DEATH(cache.append(0, 0, row, std::span(row).first(8)), "append: v must hold");
  auto nan_row = row;
  nan_row[3] = std::nanf("");
  EXPECT_DEATH(cache.append(0, 0, nan_row, row), "keys and values must be finite");
  EXPECT_DEATH(cache.attend(0, q, out), "more queries than tokens");
  cache.append(0, 4, row, row);
  EXPECT_DEATH(cache.append(0, 4, row, row), "positions of a head must increase");
  EXPECT_DEATH(cache.attend(0, std::span(q).first(31), std::span(out).first(31)), "queries must hold");
  EXPECT_DEATH(cache.attend(0, q, std::span(out).first(16)), "out must have the size of queries");
  EXPECT_DEATH(cache.attend(3, q, out), "attend: layer out of range");
  auto nan_q = q;
  nan_q[5] = std::nanf("");
  EXPECT_DEATH(cache.attend(0, nan_q, out), "queries must be finite");
  KVCache<> moved(std::move(cache));
  EXPECT_DEATH(cache.append(0, 5, row, row), "append: the cache was moved from");
  EXPECT_DEATH(cache.attend(0, q, out), "attend: the cache was moved from");
  KVCache<ContiguousLayout, testing::Unsorted> unsorted(s, {.budget = 2});
  for (int t = 0; t < 2; ++t) unsorted.append(0, t, row, row);
  unsorted.append(0, 2, row, row);
  EXPECT_DEATH(unsorted.attend(0, q, out), "not ascending and in range");
}

}  // namespace
}  // namespace kvc
