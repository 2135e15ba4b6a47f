// PerToken through a real cache: every decoded element is within half a quantization step of
// what was appended (int8, int4, int2, keys and values, both layouts), memory shrinks against
// f32 and f16 by exactly the row format's bytes, attention stays close to exact, and bad bit
// widths and group sizes raise kvc::Error.
#include "kvc/kernels/reference.hpp"
#include "kvc/kvc.hpp"
#include "kvc/quant/per_token.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace kvc {
namespace {

using ::testing::HasSubstr;
using kernels::Dtype;
using kernels::RowFormat;

std::vector<float> random_vector(std::size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

// The step of the group holding `x[0..group)`: the encoder's own (f16-rounded) scale.
float step_of(const float* x, std::size_t group, unsigned bits) {
  return kernels::half::f16_to_f32(kernels::ref::group_params(x, group, bits).scale);
}

TEST(PerToken, FormatsFollowTheParameters) {
  EXPECT_EQ(quant::PerToken{}.key_format(), (RowFormat{Dtype::q8, 32}));
  EXPECT_EQ(quant::PerToken{}.value_format(), (RowFormat{Dtype::q8, 32}));
  const quant::PerToken mixed{.bits = 4, .group = 64, .value_bits = 2};
  EXPECT_EQ(mixed.key_format(), (RowFormat{Dtype::q4, 64}));
  EXPECT_EQ(mixed.value_format(), (RowFormat{Dtype::q2, 64}));
}

struct RoundTrip {
  unsigned bits;
  unsigned value_bits;
};

template <class L>
void expect_round_trip(RoundTrip p) {
  const Shape s{2, 4, 2, 64};
  const quant::PerToken q{.bits = p.bits, .group = 32, .value_bits = p.value_bits};
  KVCache<L, quant::PerToken> cache(s, {}, q);
  std::mt19937 rng(p.bits * 10 + p.value_bits);
  const std::size_t n = 20, row = s.kv_heads * s.head_dim;
  std::vector<std::vector<float>> keys(s.layers), values(s.layers);
  for (std::size_t l = 0; l < s.layers; ++l) {
    keys[l] = random_vector(n * row, rng, 3.0f);
    values[l] = random_vector(n * row, rng, 0.5f);
    cache.prefill(l, 0, keys[l], values[l]);
  }
  const unsigned vb = p.value_bits == 0 ? p.bits : p.value_bits;
  std::vector<float> k(s.head_dim), v(s.head_dim);
  double worst = 0.0;  // largest error as a fraction of the step
  for (std::size_t l = 0; l < s.layers; ++l)
    for (std::size_t h = 0; h < s.kv_heads; ++h) {
      const HeadView view = cache.view(l, h);
      for (std::size_t t = 0; t < n; ++t) {
        view.load_key(t, k);
        view.load_value(t, v);
        const float* k0 = keys[l].data() + t * row + h * s.head_dim;
        const float* v0 = values[l].data() + t * row + h * s.head_dim;
        for (std::size_t d = 0; d < s.head_dim; ++d) {
          const std::size_t g = d / 32 * 32;
          const float ks = step_of(k0 + g, 32, p.bits), vs = step_of(v0 + g, 32, vb);
          ASSERT_LE(std::abs(k[d] - k0[d]), ks / 2 * (1 + 1e-5f)) << "key bits " << p.bits << " element " << d;
          ASSERT_LE(std::abs(v[d] - v0[d]), vs / 2 * (1 + 1e-5f)) << "value bits " << vb << " element " << d;
          worst = std::max(worst, static_cast<double>(std::abs(k[d] - k0[d]) / ks));
        }
      }
    }
  EXPECT_GT(worst, 0.3) << "the bound should be nearly reached, or the test checks nothing";
}

TEST(PerToken, RoundTripWithinHalfAStepContiguous) {
  for (RoundTrip p : {RoundTrip{8, 0}, RoundTrip{4, 0}, RoundTrip{2, 0}, RoundTrip{8, 4}, RoundTrip{4, 2}})
    expect_round_trip<ContiguousLayout>(p);
}
TEST(PerToken, RoundTripWithinHalfAStepPaged) {
  for (RoundTrip p : {RoundTrip{8, 0}, RoundTrip{4, 0}, RoundTrip{2, 0}, RoundTrip{2, 8}})
    expect_round_trip<PagedLayout>(p);
}

// Same tokens, five row formats: memory shrinks with the bits, by exactly the row bytes.
template <class Cache>
std::size_t memory_after(Cache&& cache, std::size_t n) {
  const Shape& s = cache.shape();
  std::mt19937 rng(9);
  const std::size_t row = s.kv_heads * s.head_dim;
  for (std::size_t l = 0; l < s.layers; ++l) cache.prefill(l, 0, random_vector(n * row, rng), random_vector(n * row, rng));
  return cache.memory_bytes();
}

TEST(PerToken, MemoryShrinksInBothLayouts) {
  const Shape s{2, 8, 2, 128};
  const std::size_t n = 64;
  const Options o{.capacity = n};
  const std::size_t f32 = memory_after(KVCache<>(s, {.dtype = Dtype::f32, .capacity = n}), n);
  const std::size_t f16 = memory_after(KVCache<>(s, {.dtype = Dtype::f16, .capacity = n}), n);
  const std::size_t q8 = memory_after(KVCache<ContiguousLayout, quant::PerToken>(s, o, {.bits = 8}), n);
  const std::size_t q4 = memory_after(KVCache<ContiguousLayout, quant::PerToken>(s, o, {.bits = 4}), n);
  const std::size_t q2 = memory_after(KVCache<ContiguousLayout, quant::PerToken>(s, o, {.bits = 2}), n);
  // Contiguous: 4 heads x 64 reserved rows x (key + value bytes) + 64 positions per head.
  const auto expected = [&](std::size_t row_bytes) { return 4 * n * (2 * row_bytes + sizeof(std::int32_t)); };
  EXPECT_EQ(f32, expected(512));
  EXPECT_EQ(f16, expected(256));
  EXPECT_EQ(q8, expected(128 + 4 * 4));  // codes + 4 groups x (f16 scale, f16 min)
  EXPECT_EQ(q4, expected(64 + 16));
  EXPECT_EQ(q2, expected(32 + 16));

  // Paged, 16-token pages: the pages are smaller in the same ratio.
  const PagedLayout::config pages{16, nullptr};
  const std::size_t pf32 = memory_after(KVCache<PagedLayout>(s, {.dtype = Dtype::f32}, pages), n);
  const std::size_t pf16 = memory_after(KVCache<PagedLayout>(s, {.dtype = Dtype::f16}, pages), n);
  const std::size_t pq8 = memory_after(KVCache<PagedLayout, quant::PerToken>(s, {}, pages, {.bits = 8}), n);
  const std::size_t pq4 = memory_after(KVCache<PagedLayout, quant::PerToken>(s, {}, pages, {.bits = 4}), n);
  const std::size_t pq2 = memory_after(KVCache<PagedLayout, quant::PerToken>(s, {}, pages, {.bits = 2}), n);
  EXPECT_LT(pq2, pq4);
  EXPECT_LT(pq4, pq8);
  EXPECT_LT(pq8, pf16);
  EXPECT_LT(pf16, pf32);
  const auto& pool_bytes = [&](std::size_t row_bytes) { return 4 * (n / 16) * 16 * 2 * row_bytes; };
  EXPECT_GE(pq8, pool_bytes(144));
  EXPECT_LT(pq8, pool_bytes(144) + pool_bytes(144) / 10);  // rows dominate; block tables and positions are small
}

double max_diff(const std::vector<float>& x, const std::vector<float>& y) {
  double d = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) d = std::max(d, static_cast<double>(std::abs(x[i] - y[i])));
  return d;
}

// Attention over int8 rows stays close to exact attention; int4 less so, but still close.
TEST(PerToken, AttentionStaysCloseToExact) {
  const Shape s{1, 8, 2, 64};
  const std::size_t n = 128, row = s.kv_heads * s.head_dim, qn = s.query_heads * s.head_dim;
  std::mt19937 rng(11);
  const auto keys = random_vector(n * row, rng), values = random_vector(n * row, rng), q = random_vector(qn, rng);
  std::vector<float> exact(qn);
  reference::attention(s, q, keys, values, 1.0f / 8.0f, exact);
  double previous = 0.0;
  for (unsigned bits : {8u, 4u, 2u}) {
    KVCache<ContiguousLayout, quant::PerToken> cache(s, {}, {.bits = bits});
    cache.prefill(0, 0, keys, values);
    std::vector<float> out(qn);
    cache.attend(0, q, out);
    const double err = max_diff(out, exact);
    if (bits == 8) {
      EXPECT_LT(err, 5e-3);
    }
    if (bits == 4) {
      EXPECT_LT(err, 1e-1);
    }
    EXPECT_GT(err, previous) << bits << " bits should be worse than " << 2 * bits;
    previous = err;
  }
}

// Options::precision reaches the kernels: on avx512vnni and avx512bf16 `fast` computes with int8 arithmetic,
// whose error against f32 attention stays of the order of the cache's own (measured on this
// case: 2.5x the exact int8 cache's max error, 1.0x the int4 cache's); elsewhere it is exact,
// bit for bit.
TEST(PerToken, FastPrecisionIsCloseAndTakesTheInt8PathWhereAvailable) {
  const Shape s{1, 8, 2, 128};
  const std::size_t n = 300, row = s.kv_heads * s.head_dim, qn = s.query_heads * s.head_dim;
  std::mt19937 rng(12);
  const auto keys = random_vector(n * row, rng), values = random_vector(n * row, rng), q = random_vector(qn, rng);
  std::vector<float> f32(qn);
  reference::attention(s, q, keys, values, 1.0f / std::sqrt(128.0f), f32);
  for (const auto isa : kernels::supported_isas()) {
    SCOPED_TRACE(kernels::isa_name(isa));
    for (unsigned bits : {8u, 4u}) {
      std::vector<float> out[2];
      for (const auto precision : {kernels::Precision::exact, kernels::Precision::fast}) {
        KVCache<ContiguousLayout, quant::PerToken> cache(s, {.precision = precision, .isa = isa}, {.bits = bits});
        cache.prefill(0, 0, keys, values);
        out[static_cast<int>(precision)].resize(qn);
        cache.attend(0, q, out[static_cast<int>(precision)]);
      }
      const double exact_err = max_diff(out[0], f32), fast_err = max_diff(out[1], f32);
      if (isa == kernels::Isa::avx512vnni || isa == kernels::Isa::avx512bf16) {
        EXPECT_GT(max_diff(out[0], out[1]), 0.0) << bits << " bits: fast must not be the exact path";
        EXPECT_LT(fast_err, (bits == 8 ? 3.5 : 1.5) * exact_err) << bits << " bits: exact error " << exact_err;
      } else {
        EXPECT_EQ(max_diff(out[0], out[1]), 0.0) << bits << " bits";
      }
    }
  }
}

TEST(PerToken, RejectsBadBitsAndGroups) {
  const auto message = [](quant::PerToken q, std::size_t head_dim = 64) {
    try {
      KVCache<ContiguousLayout, quant::PerToken> cache(Shape{1, 1, 1, head_dim}, {}, q);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message({.bits = 3}), HasSubstr("kvc::quant::PerToken: bits = 3 is not supported (8, 4 or 2)"));
  EXPECT_THAT(message({.bits = 16}), HasSubstr("bits = 16"));
  EXPECT_THAT(message({.bits = 8, .value_bits = 5}), HasSubstr("value_bits = 5"));
  EXPECT_THAT(message({.group = 0}), HasSubstr("group = 0 must be a positive multiple of 8"));
  EXPECT_THAT(message({.group = 12}), HasSubstr("group = 12"));
  // The container checks that the group divides the stored dim.
  EXPECT_THAT(message({.group = 48}), HasSubstr("does not divide the stored key dim 64"));
  EXPECT_EQ(message({.bits = 2, .group = 8}), "no error");
  EXPECT_THROW(quant::PerToken{.bits = 1}.validate(), Error);
}

}  // namespace
}  // namespace kvc
