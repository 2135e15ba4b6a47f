// SVD low rank through a real cache: full rank reproduces exact attention; keys (and values) of
// true rank r are reproduced exactly at rank r; the attention error falls as the rank grows;
// stored rows and memory shrink; offline fitting; bad ranks and calibration data throw; the
// projections allocate nothing in steady state (operator new is counted in this binary).
#include "support/allocation_counter.hpp"
#include "kvc/kvc.hpp"
#include "kvc/lowrank/svd.hpp"
#include "kvc/quant/per_token.hpp"

#include <Eigen/SVD>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace kvc {
namespace {

using ::testing::HasSubstr;

std::vector<float> random_vector(std::size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

// n tokens of [kv_heads][head_dim] whose rows, per KV head, lie in a random `rank`-dim subspace
// with singular values decaying like decay^i (decay 1: flat spectrum).
std::vector<float> low_rank_rows(const Shape& s, std::size_t n, std::size_t rank, std::mt19937& rng, float decay = 1.0f) {
  std::vector<float> out(n * s.kv_heads * s.head_dim, 0.0f);
  for (std::size_t h = 0; h < s.kv_heads; ++h) {
    const auto basis = random_vector(rank * s.head_dim, rng);
    for (std::size_t t = 0; t < n; ++t) {
      const auto c = random_vector(rank, rng);
      float* row = out.data() + (t * s.kv_heads + h) * s.head_dim;
      float weight = 1.0f;
      for (std::size_t i = 0; i < rank; ++i, weight *= decay)
        for (std::size_t d = 0; d < s.head_dim; ++d) row[d] += weight * c[i] * basis[i * s.head_dim + d];
    }
  }
  return out;
}

float max_abs_diff(std::span<const float> a, std::span<const float> b) {
  float m = 0.0f;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// Prefills (calibrating the heads), attends one query over everything, returns the output.
template <class Cache>
std::vector<float> prefill_and_attend(Cache& cache, std::span<const float> keys, std::span<const float> values,
                                      std::span<const float> q) {
  cache.prefill(0, 0, keys, values);
  std::vector<float> out(q.size());
  cache.attend(0, q, out);
  return out;
}

TEST(SVD, FullRankReproducesExactAttention) {
  const Shape s{1, 8, 2, 32};
  const std::size_t n = 100;
  std::mt19937 rng(1);
  const auto keys = random_vector(n * s.kv_heads * s.head_dim, rng);
  const auto values = random_vector(n * s.kv_heads * s.head_dim, rng);
  const auto q = random_vector(s.query_heads * s.head_dim, rng);
  for (std::size_t calibration_rows : {n, std::size_t{10}}) {  // fewer rows than dims: completed basis
    KVCache<ContiguousLayout, lowrank::SVD> cache(s, {}, lowrank::SVD{.rank = 32});
    if (calibration_rows < n) {
      const std::size_t row = s.kv_heads * s.head_dim;
      cache.prefill(0, 0, std::span(keys).first(calibration_rows * row),
                    std::span(values).first(calibration_rows * row));
      cache.clear();  // projections stay; tokens go
      EXPECT_TRUE(cache.get<lowrank::SVD>().ready(0, 1));
    }
    const auto out = prefill_and_attend(cache, keys, values, q);
    std::vector<float> exact(q.size());
    reference::attention(s, q, keys, values, 1.0f / std::sqrt(32.0f), exact);
    EXPECT_LT(max_abs_diff(out, exact), 1e-4f) << calibration_rows << " calibration rows";
  }
}

TEST(SVD, KeysOfTrueRankRAreReproducedExactlyAtRankR) {
  const Shape s{1, 4, 2, 32};
  const std::size_t n = 64, r = 6;
  std::mt19937 rng(2);
  const auto keys = low_rank_rows(s, n, r, rng);
  const auto values = low_rank_rows(s, n, r, rng);
  KVCache<PagedLayout, lowrank::SVD> cache(s, {}, lowrank::SVD{.rank = r});
  EXPECT_EQ(cache.key_dim(), r);
  EXPECT_EQ(cache.value_dim(), r);
  const auto q = random_vector(s.query_heads * s.head_dim, rng);
  const auto out = prefill_and_attend(cache, keys, values, q);
  const auto& svd = cache.get<lowrank::SVD>();
  std::vector<float> stored(r), restored(s.head_dim);
  float worst = 0.0f, largest = 0.0f;
  for (std::size_t h = 0; h < s.kv_heads; ++h)
    for (std::size_t t = 0; t < n; ++t) {
      cache.view(0, h).load_key(t, stored);
      svd.restore_key(0, h, stored.data(), restored.data());
      const float* k = keys.data() + (t * s.kv_heads + h) * s.head_dim;
      worst = std::max(worst, max_abs_diff(restored, std::span(k, s.head_dim)));
      for (std::size_t d = 0; d < s.head_dim; ++d) largest = std::max(largest, std::abs(k[d]));
    }
  EXPECT_LT(worst, 1e-5f * largest);
  std::vector<float> exact(q.size());
  reference::attention(s, q, keys, values, 1.0f / std::sqrt(32.0f), exact);
  EXPECT_LT(max_abs_diff(out, exact), 1e-4f);
}

TEST(SVD, AttentionErrorFallsWithRank) {
  const Shape s{1, 4, 1, 32};
  const std::size_t n = 200;
  std::mt19937 rng(3);
  const auto keys = low_rank_rows(s, n, 32, rng, 0.85f);
  const auto values = low_rank_rows(s, n, 32, rng, 0.85f);
  const auto q = random_vector(n * s.query_heads * s.head_dim, rng);  // every token's query (causal)
  std::vector<float> exact(q.size()), one(s.query_heads * s.head_dim);
  const std::size_t row = s.kv_heads * s.head_dim, qrow = s.query_heads * s.head_dim;
  for (std::size_t t = 0; t < n; ++t) {
    reference::attention(s, std::span(q).subspan(t * qrow, qrow), std::span(keys).first((t + 1) * row),
                         std::span(values).first((t + 1) * row), 1.0f / std::sqrt(32.0f), one);
    std::copy(one.begin(), one.end(), exact.begin() + static_cast<std::ptrdiff_t>(t * qrow));
  }
  double previous = 1e30;
  std::vector<double> errors;
  for (std::size_t r : {2u, 4u, 8u, 16u, 24u, 32u}) {
    KVCache<ContiguousLayout, lowrank::SVD> cache(s, {}, lowrank::SVD{.rank = r});
    cache.prefill(0, 0, keys, values);
    std::vector<float> out(q.size());
    cache.attend(0, q, out);  // n causal queries at once
    double err = 0.0;
    for (std::size_t i = 0; i < out.size(); ++i) err += std::pow(out[i] - exact[i], 2);
    err = std::sqrt(err / static_cast<double>(out.size()));
    EXPECT_LT(err, previous) << "rank " << r;
    previous = err;
    errors.push_back(err);
  }
  // Observed: 0.67, 0.52, 0.26, 0.063, 0.0087, 5e-7 for ranks 2 .. 32.
  EXPECT_GT(errors.front(), 50 * errors[4]);
  EXPECT_LT(errors.back(), 1e-5);
}

TEST(SVD, StoredRowsAndMemoryShrink) {
  const Shape s{2, 8, 2, 64};
  const std::size_t n = 64;
  std::mt19937 rng(4);
  const auto keys = random_vector(n * s.kv_heads * s.head_dim, rng);
  KVCache<ContiguousLayout> full(s, {.capacity = n});
  KVCache<ContiguousLayout, lowrank::SVD> half(s, {.capacity = n});  // default rank: head_dim / 2
  KVCache<ContiguousLayout, lowrank::SVD, quant::PerToken> both(s, {.capacity = n}, lowrank::SVD{.rank = 16},
                                                                quant::PerToken{.bits = 4, .group = 16});
  for (std::size_t l = 0; l < s.layers; ++l) {
    full.prefill(l, 0, keys, keys);
    half.prefill(l, 0, keys, keys);
    both.prefill(l, 0, keys, keys);
  }
  EXPECT_EQ(half.key_dim(), 32u);
  const std::size_t bases = half.get<lowrank::SVD>().memory_bytes();
  EXPECT_EQ(bases, 4u * 64u * (32u + 32u) * sizeof(float) + 4u);
  // Rows: 4 heads x 64 rows x (K + V); positions the same in all three.
  const std::size_t positions = 4 * n * sizeof(std::int32_t);
  EXPECT_EQ(full.memory_bytes(), 4 * n * 2 * 64 * 4 + positions);
  EXPECT_EQ(half.memory_bytes() - bases, 4 * n * 2 * 32 * 4 + positions);
  EXPECT_EQ(both.memory_bytes() - both.get<lowrank::SVD>().memory_bytes(), 4 * n * 2 * (8 + 4) + positions);
}

TEST(SVD, OfflineFitIsReadyBeforeAnyPrefill) {
  const Shape s{2, 4, 2, 16};
  const std::size_t n = 40, row = s.kv_heads * s.head_dim;
  std::mt19937 rng(5);
  // Calibration data: [layers][n][kv_heads][head_dim], keys of rank 4.
  std::vector<float> keys, values;
  for (std::size_t l = 0; l < s.layers; ++l) {
    const auto k = low_rank_rows(s, n, 4, rng), v = low_rank_rows(s, n, 16, rng);
    keys.insert(keys.end(), k.begin(), k.end());
    values.insert(values.end(), v.begin(), v.end());
  }
  auto svd = lowrank::SVD::fit(s, 4, keys, values, 16);
  EXPECT_TRUE(svd.ready(1, 1));
  KVCache<ContiguousLayout, lowrank::SVD> cache(s, {}, std::move(svd));
  EXPECT_EQ(cache.key_dim(), 4u);
  EXPECT_EQ(cache.value_dim(), 16u);
  // Decode without a prefill: the fitted projections are used as they are.
  std::vector<float> out(s.query_heads * s.head_dim), exact(out.size());
  const auto q = random_vector(out.size(), rng);
  for (std::size_t t = 0; t < n; ++t) {
    cache.append(1, static_cast<std::int32_t>(t), std::span(keys).subspan((n + t) * row, row),
                 std::span(values).subspan((n + t) * row, row));
  }
  cache.attend(1, q, out);
  reference::attention(s, q, std::span(keys).subspan(n * row, n * row), std::span(values).subspan(n * row, n * row),
                       1.0f / 4.0f, exact);
  EXPECT_LT(max_abs_diff(out, exact), 1e-4f);
}

TEST(SVD, RejectsBadRanksAndCalibrationData) {
  const Shape s{1, 2, 1, 16};
  try {
    KVCache<ContiguousLayout, lowrank::SVD> cache(s, {}, lowrank::SVD{.rank = 17});
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("kvc::lowrank::SVD: rank = 17 exceeds head_dim = 16"));
  }
  EXPECT_THROW((KVCache<ContiguousLayout, lowrank::SVD>(s, {}, lowrank::SVD{.rank = 8, .value_rank = 20})), Error);
  KVCache<ContiguousLayout, lowrank::SVD> cache(s, {}, lowrank::SVD{.rank = 8});
  auto& svd = cache.get<lowrank::SVD>();
  const std::vector<float> rows(3 * 16, 1.0f), short_rows(3 * 15, 1.0f);
  EXPECT_THAT([&] { svd.calibrate(0, 0, short_rows, rows, 3); },
              ::testing::ThrowsMessage<Error>(HasSubstr("must hold n * head_dim = 48 floats")));
  EXPECT_THAT([&] { svd.calibrate(1, 0, rows, rows, 3); }, ::testing::ThrowsMessage<Error>(HasSubstr("out of range")));
  std::vector<float> bad = rows;
  bad[20] = std::nanf("");
  EXPECT_THAT([&] { svd.calibrate(0, 0, bad, rows, 3); },
              ::testing::ThrowsMessage<Error>(HasSubstr("calibration row 1 has a non-finite element")));
  EXPECT_THROW(svd.set_projection(0, 0, rows, rows), Error);
  EXPECT_THAT([] { (void)lowrank::SVD::fit_basis({}, 0, 16, 4); },
              ::testing::ThrowsMessage<Error>(HasSubstr("needs at least one calibration row")));
  EXPECT_FALSE(svd.ready(0, 0));
  lowrank::SVD loose{.rank = 4};
  EXPECT_THAT([&] { loose.calibrate(0, 0, rows, rows, 3); }, ::testing::ThrowsMessage<Error>(HasSubstr("no shape yet")));
}

// The fit against Eigen's JacobiSVD in double precision, gap-free: the basis is orthonormal,
// each column j captures sigma_j (|M b_j| = sigma_j), and so the basis spans an optimal rank-r
// subspace. Shapes with fewer rows than dims (the basis completed by null vectors), rank-deficient
// rows, an outlier channel, all-equal and all-zero rows, dims 1 to 256.
TEST(SVD, FittedBasisMatchesEigenSingularVectors) {
  std::mt19937 rng(6);
  struct Case {
    const char* name;
    std::size_t n, dim;
    std::vector<float> rows;
  };
  std::vector<Case> cases;
  for (auto [n, dim] : {std::pair<std::size_t, std::size_t>{50, 24}, {1, 8}, {5, 24}, {300, 64}, {200, 128}, {40, 128},
                        {600, 256}, {3, 1}, {7, 2}})
    cases.push_back({"gaussian", n, dim, random_vector(n * dim, rng)});
  {
    auto rows = random_vector(400 * 64, rng);
    for (std::size_t t = 0; t < 400; ++t) rows[t * 64 + 5] *= 300.0f;  // one outlier channel
    cases.push_back({"outlier channel", 400, 64, rows});
  }
  {
    std::vector<float> rows(100 * 32);  // rank 3
    const auto basis = random_vector(3 * 32, rng);
    for (std::size_t t = 0; t < 100; ++t) {
      const auto c = random_vector(3, rng);
      for (std::size_t d = 0; d < 32; ++d) rows[t * 32 + d] = c[0] * basis[d] + c[1] * basis[32 + d] + c[2] * basis[64 + d];
    }
    cases.push_back({"rank 3", 100, 32, rows});
  }
  cases.push_back({"all equal", 20, 16, std::vector<float>(20 * 16, 0.7f)});
  cases.push_back({"all zero", 10, 16, std::vector<float>(10 * 16, 0.0f)});

  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.name) + " n " + std::to_string(c.n) + " dim " + std::to_string(c.dim));
    using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const Eigen::MatrixXd m =
        Eigen::Map<const RowMajor>(c.rows.data(), Eigen::Index(c.n), Eigen::Index(c.dim)).cast<double>();
    const Eigen::JacobiSVD<Eigen::MatrixXd> ref(m);
    Eigen::VectorXd sigma = Eigen::VectorXd::Zero(Eigen::Index(c.dim));
    sigma.head(ref.singularValues().size()) = ref.singularValues();
    const double top = std::max(sigma(0), 1e-30);
    const std::size_t rank = std::max<std::size_t>(1, c.dim * 3 / 4);
    const auto b = lowrank::SVD::fit_basis(c.rows, c.n, c.dim, rank);
    ASSERT_EQ(b.size(), c.dim * rank);
    const Eigen::MatrixXd basis =
        Eigen::Map<const Eigen::MatrixXf>(b.data(), Eigen::Index(c.dim), Eigen::Index(rank)).cast<double>();
    const Eigen::MatrixXd gram = basis.transpose() * basis;
    EXPECT_LT((gram - Eigen::MatrixXd::Identity(Eigen::Index(rank), Eigen::Index(rank))).cwiseAbs().maxCoeff(), 1e-6);
    double captured = 0.0, best = 0.0;
    for (std::size_t j = 0; j < rank; ++j) {
      const double norm = (m * basis.col(Eigen::Index(j))).norm();
      EXPECT_NEAR(norm / top, sigma(Eigen::Index(j)) / top, 1e-5) << "column " << j;
      captured += norm * norm;
      best += sigma(Eigen::Index(j)) * sigma(Eigen::Index(j));
    }
    EXPECT_NEAR(captured / (top * top), best / (top * top), 1e-5);
  }
}

TEST(SVD, ProjectionsAllocateNothingInSteadyState) {
  const Shape s{2, 8, 2, 64};
  KVCache<ContiguousLayout, lowrank::SVD> cache(s, {.capacity = 512}, lowrank::SVD{.rank = 16});
  std::mt19937 rng(7);
  const std::size_t row = s.kv_heads * s.head_dim;
  for (std::size_t l = 0; l < s.layers; ++l)
    cache.prefill(l, 0, random_vector(32 * row, rng), random_vector(32 * row, rng));
  const auto k = random_vector(row, rng), q = random_vector(s.query_heads * s.head_dim, rng);
  std::vector<float> out(q.size());
  const std::size_t before = kvc::testing::allocation_count();
  for (std::size_t t = 32; t < 300; ++t)
    for (std::size_t l = 0; l < s.layers; ++l) {
      cache.append(l, static_cast<std::int32_t>(t), k, k);
      cache.attend(l, q, out);
    }
  EXPECT_EQ(kvc::testing::allocation_count() - before, 0u);
}

}  // namespace
}  // namespace kvc
