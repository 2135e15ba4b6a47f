// Kivi through a real cache, both layouts, checked against definitions written out here:
//  * a head of n appended tokens holds its first n - tail keys in per-channel groups of G tokens
//    and the last tail = ((n - 1) mod R) + 1 exactly; every frozen key element is within half
//    its group's channel step (the f16 scale of group_params over the channel's G values), every
//    frozen value element within half its per-token group step;
//  * frozen groups are never re-quantized by later appends (bitwise equal decoded rows);
//  * attention equals kvc::reference::attention over the cache's own decoded rows, on every ISA
//    of this CPU, with f32 and f16 tails, and after evictions (H2O, SnapKV);
//  * removal (rollback, ranges) goes through the same compaction; a fork's freezes leave the
//    original's rows alone (copy on write in the paged layout);
//  * eviction inside frozen groups keeps the groups before it bitwise, re-encodes the kept frozen
//    tokens into full groups (ref::encode_channels of their decoded keys) and returns a trailing
//    partial group to the tail with its decoded keys;
//  * under H2O, each compression rounds a kept key at most once more, within half its new
//    group's step (the drift this accumulates over many compressions is in docs/policies/quant.md);
//  * decoding with H2O eviction allocates nothing in steady state;
//  * bad bits, groups and residuals raise kvc::Error naming the parameter.
#include "kvc/core/reference_attention.hpp"
#include "kvc/kernels/reference.hpp"
#include "kvc/kvc.hpp"
#include "kvc/quant/kivi.hpp"
#include "support/allocation_counter.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace kvc {
namespace {

using ::testing::HasSubstr;
using kernels::Dtype;

std::vector<float> random_vector(std::size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

// Keys with outlier channels (every 7th channel 10x and shifted), as KIVI observes in real keys.
std::vector<float> keys_with_outliers(std::size_t tokens, std::size_t dim, std::mt19937& rng) {
  auto k = random_vector(tokens * dim, rng);
  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t d = 2; d < dim; d += 7) k[t * dim + d] = 10.0f * k[t * dim + d] + 4.0f;
  return k;
}

float f16_step(const float* x, std::size_t n, unsigned bits) {
  return kernels::half::f16_to_f32(kernels::ref::group_params(x, n, bits).scale);
}

struct Rows {
  std::vector<float> k, v;  // [tokens][dim]
};

template <class Cache>
Rows decoded(Cache& cache, std::size_t layer, std::size_t head) {
  const HeadView view = cache.view(layer, head);
  const std::size_t n = view.size(), d = view.key_dim();
  Rows r{std::vector<float>(n * d), std::vector<float>(n * d)};
  for (std::size_t t = 0; t < n; ++t) {
    view.load_key(t, std::span<float>(r.k).subspan(t * d, d));
    view.load_value(t, std::span<float>(r.v).subspan(t * d, d));
  }
  return r;
}

template <class L>
class KiviLayouts : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(KiviLayouts, Layouts);

// One head's input rows, [tokens][head_dim] (kv_heads = 1 keeps the definitions short).
struct Input {
  std::vector<float> k, v;
};

Input make_input(std::size_t tokens, std::size_t dim, unsigned seed) {
  std::mt19937 rng(seed);
  Input in;
  in.k = keys_with_outliers(tokens, dim, rng);
  in.v = random_vector(tokens * dim, rng, 0.5f);
  return in;
}

template <class L>
void expect_frozen_groups_and_tail(unsigned bits) {
  const Shape s{1, 2, 1, 64};
  const quant::Kivi kivi{.bits = bits, .group = 8, .residual = 16};
  KVCache<L, quant::Kivi> cache(s, {}, typename L::config{}, kivi);
  const Input in = make_input(70, s.head_dim, bits);
  const std::size_t d = s.head_dim, g_rows = 8, r = 16;
  bool any_rounded = false;
  for (std::size_t n = 1; n <= 70; ++n) {
    cache.append(0, static_cast<std::int32_t>(n - 1), std::span(in.k).subspan((n - 1) * d, d),
                 std::span(in.v).subspan((n - 1) * d, d));
    const std::size_t tail = (n - 1) % r + 1, frozen = n - tail;
    const Rows got = decoded(cache, 0, 0);
    SCOPED_TRACE(::testing::Message() << "bits " << bits << " n " << n);
    for (std::size_t t = frozen; t < n; ++t)
      for (std::size_t c = 0; c < d; ++c) {
        ASSERT_EQ(got.k[t * d + c], in.k[t * d + c]) << "tail key " << t;
        ASSERT_EQ(got.v[t * d + c], in.v[t * d + c]) << "tail value " << t;
      }
    for (std::size_t t = 0; t < frozen; ++t) {
      const std::size_t first = t / g_rows * g_rows;
      for (std::size_t c = 0; c < d; ++c) {
        std::vector<float> channel(g_rows);
        for (std::size_t u = 0; u < g_rows; ++u) channel[u] = in.k[(first + u) * d + c];
        const float ks = f16_step(channel.data(), g_rows, bits);
        const float vs = f16_step(in.v.data() + t * d + c / 8 * 8, 8, bits);
        ASSERT_LE(std::abs(got.k[t * d + c] - in.k[t * d + c]), ks / 2 * (1 + 1e-5f)) << "key " << t << "," << c;
        ASSERT_LE(std::abs(got.v[t * d + c] - in.v[t * d + c]), vs / 2 * (1 + 1e-5f)) << "value " << t << "," << c;
        any_rounded |= got.k[t * d + c] != in.k[t * d + c];
      }
    }
  }
  EXPECT_TRUE(any_rounded) << "no frozen key was quantized";

  // A prefill of the same tokens stores the same rows, bit for bit.
  KVCache<L, quant::Kivi> prefilled(s, {}, typename L::config{}, kivi);
  prefilled.prefill(0, 0, in.k, in.v);
  const Rows a = decoded(cache, 0, 0), b = decoded(prefilled, 0, 0);
  EXPECT_EQ(a.k, b.k);
  EXPECT_EQ(a.v, b.v);
}

TYPED_TEST(KiviLayouts, FrozenGroupsWithinHalfAStepAndAnExactTail) {
  expect_frozen_groups_and_tail<TypeParam>(2);
  expect_frozen_groups_and_tail<TypeParam>(4);
}

TYPED_TEST(KiviLayouts, GroupsAreNeverReQuantizedByLaterAppends) {
  const Shape s{1, 1, 1, 32};
  KVCache<TypeParam, quant::Kivi> cache(s, {}, quant::Kivi{.bits = 2, .group = 8, .residual = 8});
  const Input in = make_input(200, s.head_dim, 5);
  const std::size_t d = s.head_dim;
  cache.prefill(0, 0, std::span(in.k).first(41 * d), std::span(in.v).first(41 * d));
  const Rows before = decoded(cache, 0, 0);  // 40 frozen tokens, 1 in the tail
  cache.prefill(0, 41, std::span(in.k).subspan(41 * d), std::span(in.v).subspan(41 * d));
  const Rows after = decoded(cache, 0, 0);
  for (std::size_t i = 0; i < 40 * d; ++i) {
    ASSERT_EQ(before.k[i], after.k[i]) << i;
    ASSERT_EQ(before.v[i], after.v[i]) << i;
  }
}

// The cache's attention of one query against reference::attention over its own decoded rows.
template <class Cache>
void expect_attention_matches(Cache& cache, std::size_t layer, std::mt19937& rng, float tol = 2e-5f) {
  const Shape& s = cache.shape();
  const std::size_t n = cache.size(layer, 0), row = s.kv_heads * s.head_dim;
  std::vector<float> keys(n * row), values(n * row);
  for (std::size_t h = 0; h < s.kv_heads; ++h) {
    ASSERT_EQ(cache.size(layer, h), n);
    const Rows r = decoded(cache, layer, h);
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t c = 0; c < s.head_dim; ++c) {
        keys[t * row + h * s.head_dim + c] = r.k[t * s.head_dim + c];
        values[t * row + h * s.head_dim + c] = r.v[t * s.head_dim + c];
      }
  }
  const auto q = random_vector(s.query_heads * s.head_dim, rng);
  std::vector<float> want(q.size()), got(q.size());
  reference::attention(s, q, keys, values, 1.0f / std::sqrt(static_cast<float>(s.head_dim)), want);
  cache.attend(layer, q, got);
  float most = 0.0f;
  for (float x : want) most = std::max(most, std::abs(x));
  for (std::size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], tol * std::max(most, 1.0f)) << i;
}

TYPED_TEST(KiviLayouts, AttentionEqualsTheReferenceOnDecodedRowsOnEveryIsa) {
  const Shape s{2, 4, 2, 64};
  for (kernels::Isa isa : kernels::supported_isas())
    for (Dtype dtype : {Dtype::f32, Dtype::f16})
      for (unsigned bits : {2u, 4u}) {
        SCOPED_TRACE(::testing::Message() << kernels::isa_name(isa) << " " << kernels::dtype_name(dtype) << " bits " << bits);
        KVCache<TypeParam, quant::Kivi> cache(s, {.dtype = dtype, .isa = isa},
                                              quant::Kivi{.bits = bits, .group = 32, .residual = 64});
        std::mt19937 rng(bits);
        for (std::size_t layer = 0; layer < s.layers; ++layer) {
          const std::size_t n = layer == 0 ? 300 : 20;  // frozen groups and tail; tail only
          cache.prefill(layer, 0, keys_with_outliers(n * s.kv_heads, s.head_dim, rng),
                        random_vector(n * s.kv_heads * s.head_dim, rng));
          for (std::size_t t = 0; t < 40; ++t) {  // decoding across a freeze
            cache.append(layer, static_cast<std::int32_t>(n + t), keys_with_outliers(s.kv_heads, s.head_dim, rng),
                         random_vector(s.kv_heads * s.head_dim, rng));
            expect_attention_matches(cache, layer, rng);
            if (::testing::Test::HasFatalFailure()) return;
          }
        }
      }
}

// Evicts the tokens at fixed storage indices (once), keeps the others.
struct EvictListed {
  using family = kvc::family::selection;
  std::vector<std::uint32_t> evict;
  template <class P>
  std::size_t select(const HeadRef<P>& head, std::span<std::uint32_t> keep) const {
    std::size_t k = 0;
    for (std::uint32_t t = 0; t < head.size(); ++t)
      if (std::find(evict.begin(), evict.end(), t) == evict.end()) keep[k++] = t;
    return k;
  }
};

TYPED_TEST(KiviLayouts, EvictionReEncodesFromTheFirstEvictedGroupAndReturnsAPartialGroupToTheTail) {
  const Shape s{1, 1, 1, 32};
  const std::size_t g_rows = 8, d = s.head_dim;
  // 60 tokens, R = 16: 48 frozen (6 groups) and 12 in the tail. Evicting 2 frozen tokens (in
  // groups 2 and 4) and 1 tail token leaves 46 frozen: 5 full groups (40) and 6 returning.
  const std::vector<std::uint32_t> evict = {19, 37, 50};
  KVCache<TypeParam, EvictListed, quant::Kivi> cache(s, {.budget = 57, .auto_compress = false},
                                                     typename TypeParam::config{}, EvictListed{evict},
                                                     quant::Kivi{.bits = 2, .group = 8, .residual = 16});
  const Input in = make_input(60, d, 9);
  cache.prefill(0, 0, in.k, in.v);
  const Rows before = decoded(cache, 0, 0);
  cache.compress();
  ASSERT_EQ(cache.size(0, 0), 57u);
  const Rows after = decoded(cache, 0, 0);

  // The definition: kept[j] = before's rows without the evicted ones.
  std::vector<float> kept_k, kept_v;
  for (std::size_t t = 0; t < 60; ++t)
    if (std::find(evict.begin(), evict.end(), t) == evict.end()) {
      kept_k.insert(kept_k.end(), before.k.begin() + t * d, before.k.begin() + (t + 1) * d);
      kept_v.insert(kept_v.end(), before.v.begin() + t * d, before.v.begin() + (t + 1) * d);
    }
  // Groups 0 and 1 (before token 19) bitwise unchanged.
  for (std::size_t i = 0; i < 2 * g_rows * d; ++i) ASSERT_EQ(after.k[i], before.k[i]) << i;
  // Groups 2..4 re-encoded from the kept tokens' decoded keys.
  std::vector<std::byte> block(kernels::channel_block_bytes(Dtype::q2, d, g_rows));
  std::vector<float> want(g_rows * d);
  for (std::size_t g = 2; g < 5; ++g) {
    kernels::ref::encode_channels(Dtype::q2, d, g_rows, kept_k.data() + g * g_rows * d, d, block.data());
    kernels::ref::decode_channels(Dtype::q2, d, g_rows, block.data(), want.data(), d);
    for (std::size_t i = 0; i < g_rows * d; ++i) ASSERT_EQ(after.k[g * g_rows * d + i], want[i]) << "group " << g << " " << i;
  }
  // Tokens 40..56: the returning partial group and the old tail, with their decoded keys.
  for (std::size_t i = 40 * d; i < 57 * d; ++i) ASSERT_EQ(after.k[i], kept_k[i]) << i;
  // Values are per token: every kept value is unchanged.
  EXPECT_EQ(after.v, kept_v);
  std::vector<std::int32_t> positions;
  for (std::int32_t t = 0; t < 60; ++t)
    if (std::find(evict.begin(), evict.end(), static_cast<std::uint32_t>(t)) == evict.end()) positions.push_back(t);
  EXPECT_THAT(cache.positions(0, 0), ::testing::ElementsAreArray(positions));

  // The 17-token tail freezes 16 tokens on the next append; attention still matches.
  std::mt19937 rng(3);
  for (std::int32_t t = 60; t < 80; ++t) {
    cache.append(0, t, random_vector(d, rng), random_vector(d, rng));
    expect_attention_matches(cache, 0, rng);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TYPED_TEST(KiviLayouts, RemovalAndRollbackKeepTheRowsAndAttentionConsistent) {
  const Shape s{1, 2, 1, 32};
  const std::size_t d = s.head_dim;
  KVCache<TypeParam, quant::Kivi> cache(s, {}, quant::Kivi{.bits = 4, .group = 8, .residual = 16});
  const Input in = make_input(80, d, 29);
  cache.prefill(0, 0, std::span(in.k).first(60 * d), std::span(in.v).first(60 * d));  // 48 frozen, 12 tail
  const Rows before = decoded(cache, 0, 0);
  // Rollback to position 50: the frozen groups stay bitwise, the tail keeps 48 and 49.
  EXPECT_EQ(cache.remove(50), 10u);
  Rows after = decoded(cache, 0, 0);
  ASSERT_EQ(after.k.size(), 50 * d);
  for (std::size_t i = 0; i < 50 * d; ++i) ASSERT_EQ(after.k[i], before.k[i]) << i;
  // A range inside the frozen groups: the rows left are the others, keys within a rounding.
  EXPECT_EQ(cache.remove(20, 25), 6u);
  after = decoded(cache, 0, 0);
  const auto pos = cache.positions(0, 0);
  ASSERT_EQ(pos.size(), 44u);
  for (std::size_t j = 0; j < pos.size(); ++j) {
    const auto t = static_cast<std::size_t>(pos[j]);
    ASSERT_EQ(t, j < 20 ? j : j + 6);
    for (std::size_t c = 0; c < d; ++c) ASSERT_EQ(after.v[j * d + c], before.v[t * d + c]) << "value " << t;
    if (j < 16) {  // groups 0 and 1 are before the first removed token: bitwise unchanged
      for (std::size_t c = 0; c < d; ++c) ASSERT_EQ(after.k[j * d + c], before.k[t * d + c]) << "key " << t;
    }
  }
  std::mt19937 rng(31);
  for (std::int32_t t = 50; t < 80; ++t) {  // appending again after the rollback
    const auto i = static_cast<std::size_t>(t);
    cache.append(0, t, std::span(in.k).subspan(i * d, d), std::span(in.v).subspan(i * d, d));
    expect_attention_matches(cache, 0, rng);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TYPED_TEST(KiviLayouts, AForkFreezesWithoutTouchingTheOriginal) {
  const Shape s{1, 2, 1, 32};
  const std::size_t d = s.head_dim;
  KVCache<TypeParam, quant::Kivi> cache(s, {}, quant::Kivi{.bits = 2, .group = 8, .residual = 16});
  const Input in = make_input(80, d, 37);
  cache.prefill(0, 0, std::span(in.k).first(40 * d), std::span(in.v).first(40 * d));  // 32 frozen, 8 tail
  const Rows before = decoded(cache, 0, 0);
  auto fork = cache.fork();
  EXPECT_EQ(decoded(fork, 0, 0).k, before.k);
  std::mt19937 rng(41);
  for (std::int32_t t = 40; t < 80; ++t) {  // the fork freezes rows 32.. (paged: in shared blocks)
    const auto i = static_cast<std::size_t>(t);
    fork.append(0, t, std::span(in.k).subspan(i * d, d), std::span(in.v).subspan(i * d, d));
  }
  expect_attention_matches(fork, 0, rng);
  const Rows after = decoded(cache, 0, 0);
  EXPECT_EQ(after.k, before.k);
  EXPECT_EQ(after.v, before.v);
  expect_attention_matches(cache, 0, rng);
}

TYPED_TEST(KiviLayouts, DecodingWithH2OMatchesTheReferenceAndRoundsOncePerCompression) {
  const Shape s{1, 4, 2, 64};
  const std::size_t d = s.head_dim, g_rows = 16;
  KVCache<TypeParam, select::H2O, quant::Kivi> cache(s, {.budget = 80, .compress_slack = 7}, select::H2O{},
                                                     quant::Kivi{.bits = 4, .group = 16, .residual = 32});
  std::mt19937 rng(11);
  const std::size_t steps = 400, row = s.kv_heads * d;
  const auto keys = keys_with_outliers(steps * s.kv_heads, d, rng);
  const auto values = random_vector(steps * row, rng);
  std::size_t compressions = 0;
  for (std::size_t t = 0; t < steps; ++t) {
    cache.append(0, static_cast<std::int32_t>(t), std::span(keys).subspan(t * row, row),
                 std::span(values).subspan(t * row, row));
    std::vector<Rows> before;
    std::vector<std::vector<std::int32_t>> before_pos;
    for (std::size_t h = 0; h < s.kv_heads; ++h) {
      before.push_back(decoded(cache, 0, h));
      const auto p = cache.positions(0, h);
      before_pos.emplace_back(p.begin(), p.end());
    }
    expect_attention_matches(cache, 0, rng);  // attends, then H2O may evict
    if (::testing::Test::HasFatalFailure()) return;
    if (cache.size(0, 0) == before_pos[0].size()) continue;
    ++compressions;
    // A compression rounds each kept key at most once more: by at most half the step of its new
    // group (G consecutive kept tokens) over their keys before the compression; tokens that are
    // not in a full group (the tail) keep their keys exactly.
    for (std::size_t h = 0; h < s.kv_heads; ++h) {
      const Rows after = decoded(cache, 0, h);
      const auto pos = cache.positions(0, h);
      const std::size_t n = pos.size();
      std::vector<float> old(n * d);
      for (std::size_t j = 0; j < n; ++j) {
        const auto it = std::find(before_pos[h].begin(), before_pos[h].end(), pos[j]);
        ASSERT_NE(it, before_pos[h].end());
        const auto i = static_cast<std::size_t>(it - before_pos[h].begin());
        std::copy_n(before[h].k.begin() + i * d, d, old.begin() + j * d);
      }
      for (std::size_t j = 0; j < n; ++j) {
        const std::size_t first = j / g_rows * g_rows;
        for (std::size_t c = 0; c < d; ++c) {
          float bound = 0.0f;
          if (first + g_rows <= n) {
            std::vector<float> channel(g_rows);
            for (std::size_t u = 0; u < g_rows; ++u) channel[u] = old[(first + u) * d + c];
            bound = f16_step(channel.data(), g_rows, 4) / 2 * (1 + 1e-5f);
          }
          ASSERT_LE(std::abs(after.k[j * d + c] - old[j * d + c]), bound)
              << "step " << t << " head " << h << " token " << pos[j] << " channel " << c;
        }
      }
    }
  }
  EXPECT_GT(compressions, 30u);
}

TYPED_TEST(KiviLayouts, SnapKVPromptCompressionMatchesTheReference) {
  const Shape s{2, 4, 2, 64};
  KVCache<TypeParam, select::SnapKV, quant::Kivi> cache(s, {.budget = 96}, select::SnapKV{.window = 8},
                                                        quant::Kivi{.bits = 2, .group = 32, .residual = 32});
  std::mt19937 rng(13);
  const std::size_t n = 300, row = s.kv_heads * s.head_dim;
  for (std::size_t layer = 0; layer < s.layers; ++layer) {
    cache.prefill(layer, 0, keys_with_outliers(n * s.kv_heads, s.head_dim, rng), random_vector(n * row, rng));
    const auto q = random_vector(8 * s.query_heads * s.head_dim, rng);
    std::vector<float> out(q.size());
    cache.attend(layer, q, out);
  }
  cache.compress_prompt();
  for (std::size_t layer = 0; layer < s.layers; ++layer) {
    EXPECT_EQ(cache.size(layer, 1), 96u);
    expect_attention_matches(cache, layer, rng);
  }
}

TYPED_TEST(KiviLayouts, StoringAFrozenKeyReEncodesItsGroup) {
  const Shape s{1, 1, 1, 32};
  const std::size_t g_rows = 8, d = s.head_dim;
  KVCache<TypeParam, quant::Kivi> cache(s, {}, quant::Kivi{.bits = 4, .group = 8, .residual = 8});
  const Input in = make_input(20, d, 17);  // 16 frozen (2 groups), 4 in the tail
  cache.prefill(0, 0, in.k, in.v);
  const Rows before = decoded(cache, 0, 0);
  std::vector<float> row(in.k.begin() + 19 * d, in.k.begin() + 20 * d);
  HeadView view = cache.view(0, 0);
  view.store_key(10, row);
  view.store_value(10, row);
  const Rows after = decoded(cache, 0, 0);
  std::vector<float> group(before.k.begin() + g_rows * d, before.k.begin() + 2 * g_rows * d);
  std::copy(row.begin(), row.end(), group.begin() + 2 * d);
  std::vector<std::byte> block(kernels::channel_block_bytes(Dtype::q4, d, g_rows));
  std::vector<float> want(g_rows * d);
  kernels::ref::encode_channels(Dtype::q4, d, g_rows, group.data(), d, block.data());
  kernels::ref::decode_channels(Dtype::q4, d, g_rows, block.data(), want.data(), d);
  for (std::size_t i = 0; i < g_rows * d; ++i) ASSERT_EQ(after.k[g_rows * d + i], want[i]) << i;
  for (std::size_t i = 0; i < g_rows * d; ++i) ASSERT_EQ(after.k[i], before.k[i]) << i;  // group 0 untouched
  for (std::size_t c = 0; c < d; ++c)
    ASSERT_LE(std::abs(after.v[10 * d + c] - row[c]), f16_step(row.data() + c / 8 * 8, 8, 4) / 2 * (1 + 1e-5f));
  view.store_key(17, row);  // a tail row is stored as it is
  std::vector<float> k(d);
  view.load_key(17, k);
  EXPECT_EQ(k, row);
}

TYPED_TEST(KiviLayouts, DecodingAllocatesNothingInSteadyState) {
  const Shape s{2, 4, 2, 64};
  KVCache<TypeParam, select::H2O, quant::Kivi> cache(s, {.budget = 100, .capacity = 256},
                                                     select::H2O{}, quant::Kivi{.bits = 2, .group = 32, .residual = 64});
  std::mt19937 rng(19);
  const auto k = random_vector(s.kv_heads * s.head_dim, rng);
  const auto q = random_vector(s.query_heads * s.head_dim, rng);
  std::vector<float> out(q.size());
  std::size_t before = 0;
  for (std::size_t t = 0; t < 600; ++t) {
    if (t == 300) before = kvc::testing::allocation_count();
    for (std::size_t layer = 0; layer < s.layers; ++layer) {
      cache.append(layer, static_cast<std::int32_t>(t), k, k);
      cache.attend(layer, q, out);
    }
  }
  EXPECT_EQ(kvc::testing::allocation_count() - before, 0u);
}

TEST(Kivi, MemoryPerTokenIsCodesAndParametersPlusTheTail) {
  const Shape s{1, 1, 1, 64};
  KVCache<ContiguousLayout, quant::Kivi> cache(s, {.capacity = 1024}, quant::Kivi{});  // 2 bits, G 32, R 128
  std::mt19937 rng(23);
  cache.prefill(0, 0, random_vector(1024 * 64, rng), random_vector(1024 * 64, rng));
  // Layout: 1024 rows of 16 key code bytes and 16 + 8 value bytes; group parameters: 4 * 64
  // bytes per 32 tokens, reserved for the capacity; tail: R + G = 160 rows of 64 f32 keys and
  // values; positions: 4 bytes per token.
  const std::size_t want = 1024 * (16 + 24) + 1024 / 32 * 256 + 160 * 2 * 256 + 1024 * 4;
  EXPECT_EQ(cache.memory_bytes(), want);
}

TEST(Kivi, DefaultsAreThePapers) {
  const quant::Kivi k{};
  EXPECT_EQ(k.bits, 2u);
  EXPECT_EQ(k.group, 32u);
  EXPECT_EQ(k.residual, 128u);
  EXPECT_EQ(k.key_format(), (kernels::RowFormat{Dtype::q2, 0}));
  EXPECT_EQ(k.value_format(), (kernels::RowFormat{Dtype::q2, 32}));
  const ChannelKeys c = quant::Kivi{.bits = 4}.channel_keys();
  EXPECT_EQ(c.dtype, Dtype::q4);
  EXPECT_EQ(c.group, 32u);
  EXPECT_EQ(c.residual, 128u);
}

std::string error_of(quant::Kivi k, std::size_t head_dim = 64) {
  try {
    KVCache<ContiguousLayout, quant::Kivi> cache(Shape{1, 1, 1, head_dim}, {}, k);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Kivi, BadParametersRaiseErrors) {
  EXPECT_THAT(error_of({.bits = 3}), HasSubstr("bits = 3 is not supported (2 or 4)"));
  EXPECT_THAT(error_of({.bits = 8}), HasSubstr("bits = 8 is not supported (2 or 4)"));
  EXPECT_THAT(error_of({.group = 0}), HasSubstr("group = 0 must be a positive multiple of 8"));
  EXPECT_THAT(error_of({.group = 12}), HasSubstr("group = 12 must be a positive multiple of 8"));
  EXPECT_THAT(error_of({.group = 2048, .residual = 2048}), HasSubstr("group = 2048"));
  EXPECT_THAT(error_of({.residual = 0}), HasSubstr("residual = 0 must be a positive multiple of group = 32"));
  EXPECT_THAT(error_of({.residual = 48}), HasSubstr("residual = 48 must be a positive multiple of group = 32"));
  EXPECT_THAT(error_of({}, 48), HasSubstr("value group size 32 does not divide the stored value dim 48"));
  EXPECT_THAT(error_of({.group = 8, .residual = 8}, 12), HasSubstr("does not divide"));
}

}  // namespace
}  // namespace kvc
