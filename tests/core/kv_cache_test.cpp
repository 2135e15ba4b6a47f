// The container without compression: exactness against reference attention, layouts, GQA
// shapes, chunked causal attention and the observer hook.
#include "core/test_policies.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace kvc {
namespace {

using testing::random_vector;

constexpr kernels::Isa kScalar = kernels::Isa::scalar;

struct Case {
  Shape shape;
  const char* name;
};

class ExactCache : public ::testing::TestWithParam<Case> {};

// Feeds the same tokens to a cache and to plain arrays; every step's attention must match the
// reference bit for bit (f32 storage, scalar kernels).
template <class Cache>
void expect_bitwise_reference(Cache& cache, const Shape& s, std::size_t steps, unsigned seed) {
  std::mt19937 rng(seed);
  const std::size_t kv = s.kv_heads * s.head_dim;
  const std::size_t qn = s.query_heads * s.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  std::vector<std::vector<float>> keys(s.layers), values(s.layers);
  for (std::size_t t = 0; t < steps; ++t) {
    for (std::size_t layer = 0; layer < s.layers; ++layer) {
      auto k = random_vector(kv, rng), v = random_vector(kv, rng), q = random_vector(qn, rng);
      keys[layer].insert(keys[layer].end(), k.begin(), k.end());
      values[layer].insert(values[layer].end(), v.begin(), v.end());
      cache.append(layer, static_cast<std::int32_t>(t), k, v);
      std::vector<float> out(qn), expected(qn);
      cache.attend(layer, q, out);
      reference::attention(s, q, keys[layer], values[layer], scale, expected);
      ASSERT_EQ(out, expected) << "step " << t << " layer " << layer;
    }
  }
  EXPECT_EQ(cache.tokens(), steps * s.layers * s.kv_heads);
}

TEST_P(ExactCache, ContiguousMatchesReferenceBitwise) {
  const Shape s = GetParam().shape;
  KVCache<> cache(s, {.isa = kScalar});
  expect_bitwise_reference(cache, s, 40, 1);
}

TEST_P(ExactCache, PagedMatchesReferenceBitwise) {
  const Shape s = GetParam().shape;
  for (std::size_t block : {1u, 3u, 16u}) {
    KVCache<PagedLayout> cache(s, {.isa = kScalar}, PagedLayout::config{block, nullptr});
    expect_bitwise_reference(cache, s, 40, 2);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ExactCache,
                         ::testing::Values(Case{{2, 4, 4, 8}, "mha"}, Case{{2, 8, 4, 8}, "gqa"},
                                           Case{{1, 6, 1, 16}, "mqa"}, Case{{1, 4, 2, 64}, "gqa64"}),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// A prefilled chunk attended at once equals the same tokens appended and attended one by one.
TEST(KVCache, ChunkAttentionIsCausal) {
  const Shape s{1, 8, 2, 16};
  std::mt19937 rng(3);
  const std::size_t n = 23, kv = s.kv_heads * s.head_dim, qn = s.query_heads * s.head_dim;
  auto keys = random_vector(n * kv, rng), values = random_vector(n * kv, rng), queries = random_vector(n * qn, rng);

  KVCache<> chunked(s, {.isa = kScalar});
  chunked.prefill(0, 0, keys, values);
  std::vector<float> out_chunk(n * qn);
  chunked.attend(0, queries, out_chunk);

  KVCache<PagedLayout> stepwise(s, {.isa = kScalar}, {4, nullptr});
  for (std::size_t t = 0; t < n; ++t) {
    stepwise.append(0, static_cast<std::int32_t>(t), std::span(keys).subspan(t * kv, kv), std::span(values).subspan(t * kv, kv));
    std::vector<float> out(qn);
    stepwise.attend(0, std::span(queries).subspan(t * qn, qn), out);
    ASSERT_TRUE(std::equal(out.begin(), out.end(), out_chunk.begin() + static_cast<std::ptrdiff_t>(t * qn))) << t;
  }
}

// Random keys and values of n tokens, one query, and the reference attention output (scale
// 1/sqrt(head_dim)).
struct Sample {
  std::vector<float> keys, values, q, expected;
};

Sample sample(const Shape& s, std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  const std::size_t kv = s.kv_heads * s.head_dim, qn = s.query_heads * s.head_dim;
  Sample x{random_vector(n * kv, rng), random_vector(n * kv, rng), random_vector(qn, rng), std::vector<float>(qn)};
  reference::attention(s, x.q, x.keys, x.values, 1.0f / std::sqrt(static_cast<float>(s.head_dim)), x.expected);
  return x;
}

// Every ISA the machine has gives the reference result within float tolerance.
TEST(KVCache, EveryIsaMatchesReference) {
  const Shape s{1, 8, 2, 64};
  const Sample x = sample(s, 300, 4);
  for (auto isa : kernels::supported_isas()) {
    SCOPED_TRACE(kernels::isa_name(isa));
    KVCache<> cache(s, {.isa = isa});
    EXPECT_EQ(cache.isa(), isa);
    cache.prefill(0, 0, x.keys, x.values);
    std::vector<float> out(x.q.size());
    cache.attend(0, x.q, out);
    for (std::size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], x.expected[i], 1e-5f) << i;
  }
}

// Options::precision reaches the kernels for f16 and bf16 storage too: on avx512bf16 `fast`
// computes with bf16 dot products, within bf16 rounding of the reference (2^-8 of q, k, the
// weights and v); f32 storage and every other ISA take the exact path, bit for bit.
TEST(KVCache, FastPrecisionOnHalfStorageTakesTheBf16PathWhereAvailable) {
  const Shape s{1, 8, 2, 128};
  const Sample x = sample(s, 300, 6);
  const std::size_t qn = x.q.size();
  for (auto isa : kernels::supported_isas())
    for (auto dtype : {kernels::Dtype::f32, kernels::Dtype::f16, kernels::Dtype::bf16}) {
      SCOPED_TRACE(std::string(kernels::isa_name(isa)) + " " + kernels::dtype_name(dtype));
      std::vector<float> out[2];
      for (auto precision : {kernels::Precision::exact, kernels::Precision::fast}) {
        KVCache<> cache(s, {.dtype = dtype, .precision = precision, .isa = isa});
        cache.prefill(0, 0, x.keys, x.values);
        out[static_cast<int>(precision)].resize(qn);
        cache.attend(0, x.q, out[static_cast<int>(precision)]);
      }
      float diff = 0.0f, err = 0.0f;
      for (std::size_t i = 0; i < qn; ++i) {
        diff = std::max(diff, std::fabs(out[0][i] - out[1][i]));
        err = std::max(err, std::fabs(out[1][i] - x.expected[i]));
      }
      if (isa == kernels::Isa::avx512bf16 && dtype != kernels::Dtype::f32) {
        EXPECT_GT(diff, 0.0f) << "fast must not be the exact path";
        EXPECT_LT(err, 5e-3f);  // 1.4e-3 measured: a few bf16 roundings of O(0.1) outputs
      } else {
        EXPECT_EQ(diff, 0.0f);
      }
    }
}

TEST(KVCache, HalfStorageIsCloseAndHalvesMemory) {
  const Shape s{1, 4, 2, 32};
  const std::size_t n = 64;
  const Sample x = sample(s, n, 5);
  KVCache<> full(s, {.capacity = n});
  full.prefill(0, 0, x.keys, x.values);
  for (auto dtype : {kernels::Dtype::f16, kernels::Dtype::bf16}) {
    SCOPED_TRACE(kernels::dtype_name(dtype));
    KVCache<> half(s, {.dtype = dtype, .capacity = n});
    half.prefill(0, 0, x.keys, x.values);
    std::vector<float> out(x.q.size());
    half.attend(0, x.q, out);
    const float tolerance = dtype == kernels::Dtype::f16 ? 2e-3f : 2e-2f;
    for (std::size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], x.expected[i], tolerance);
    // Rows shrink from 4 to 2 bytes per element; positions (4 bytes per token) stay.
    const std::size_t rows = n * s.kv_heads;
    EXPECT_EQ(full.memory_bytes() - half.memory_bytes(), rows * 2 * s.head_dim * 2);
  }
}

// Each token keeps its original position, in storage order.
TEST(KVCache, PositionsAreKept) {
  const Shape s{2, 2, 2, 8};
  KVCache<> cache(s);
  std::vector<float> row(s.kv_heads * s.head_dim, 0.5f);
  for (std::int32_t p : {3, 7, 8, 100}) cache.append(1, p, row, row);
  const auto pos = cache.positions(1, 0);
  EXPECT_EQ(std::vector<std::int32_t>(pos.begin(), pos.end()), (std::vector<std::int32_t>{3, 7, 8, 100}));
  EXPECT_EQ(cache.size(0, 0), 0u);
  EXPECT_EQ(cache.size(1, 1), 4u);
  EXPECT_EQ(cache.budget(1, 1), std::numeric_limits<std::size_t>::max());
}

TEST(KVCache, ViewDecodesStoredRows) {
  const Shape s{1, 2, 2, 8};
  KVCache<PagedLayout> cache(s, {}, {2, nullptr});
  std::mt19937 rng(6);
  std::vector<std::vector<float>> keys;
  for (int t = 0; t < 5; ++t) {
    keys.push_back(random_vector(16, rng));
    cache.append(0, t, keys.back(), keys.back());
  }
  std::vector<float> row(8);
  auto view = cache.view(0, 1);
  ASSERT_EQ(view.size(), 5u);
  for (std::size_t t = 0; t < 5; ++t) {
    view.load_value(t, row);
    EXPECT_TRUE(std::equal(row.begin(), row.end(), keys[t].begin() + 8)) << t;
  }
}

// The observer sees the softmax weights of each query, combined over the GQA group as asked.
TEST(KVCache, ObserverSeesCombinedWeights) {
  const Shape s{1, 4, 2, 8};
  std::mt19937 rng(7);
  const std::size_t n = 6, kv = s.kv_heads * s.head_dim, qn = s.query_heads * s.head_dim;
  auto keys = random_vector(n * kv, rng), values = random_vector(n * kv, rng), q = random_vector(qn, rng);
  const float scale = 1.0f / std::sqrt(8.0f);

  // Per query head softmax of head 0's group (query heads 0 and 1).
  std::vector<std::vector<double>> p(2, std::vector<double>(n));
  for (std::size_t g = 0; g < 2; ++g) {
    double total = 0;
    for (std::size_t r = 0; r < n; ++r) {
      double dot = 0;
      for (std::size_t d = 0; d < 8; ++d) dot += q[g * 8 + d] * keys[r * kv + d];
      p[g][r] = std::exp(scale * dot);
      total += p[g][r];
    }
    for (auto& x : p[g]) x /= total;
  }
  for (auto reduce : {GqaReduce::mean, GqaReduce::sum, GqaReduce::max}) {
    KVCache<ContiguousLayout, testing::Recorder> cache(s, {.budget = 100, .gqa_reduce = reduce});
    cache.prefill(0, 0, keys, values);
    std::vector<float> out(qn);
    cache.attend(0, q, out);
    const auto& seen = cache.get<testing::Recorder>().seen;
    ASSERT_EQ(seen.size(), 2u);  // one query token, two KV heads
    ASSERT_EQ(seen[0].size(), n);
    for (std::size_t r = 0; r < n; ++r) {
      const double expected = reduce == GqaReduce::mean  ? (p[0][r] + p[1][r]) / 2
                              : reduce == GqaReduce::sum ? p[0][r] + p[1][r]
                                                         : std::max(p[0][r], p[1][r]);
      EXPECT_NEAR(seen[0][r], expected, 1e-5) << r;
    }
  }
}

// Chunk queries are observed one by one, each over the prefix of tokens it can see.
TEST(KVCache, ObserverSeesCausalPrefixes) {
  const Shape s{1, 2, 1, 8};
  std::mt19937 rng(8);
  const std::size_t n = 5;
  auto keys = random_vector(n * 8, rng), values = random_vector(n * 8, rng), q = random_vector(3 * 16, rng);
  KVCache<ContiguousLayout, testing::Recorder> cache(s, {.budget = 100});
  cache.prefill(0, 0, keys, values);
  std::vector<float> out(q.size());
  cache.attend(0, q, out);
  const auto& seen = cache.get<testing::Recorder>().seen;
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].size(), 3u);
  EXPECT_EQ(seen[1].size(), 4u);
  EXPECT_EQ(seen[2].size(), 5u);
  for (const auto& w : seen) EXPECT_NEAR(std::accumulate(w.begin(), w.end(), 0.0), 1.0, 1e-5);
  cache.clear();
  EXPECT_TRUE(cache.get<testing::Recorder>().seen.empty());
  EXPECT_EQ(cache.tokens(), 0u);
}

}  // namespace
}  // namespace kvc
