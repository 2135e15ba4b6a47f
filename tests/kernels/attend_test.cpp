// Fused decode attention of every ISA against ref::attend on the same encoded rows.
// Tolerance (stated and asserted): |out - ref| <= tol * max|ref out|, |l / l_ref - 1| <= tol and
// |logit - ref| <= tol * max|ref logit|, with tol = 2e-5 * max(1, kappa / 32), where kappa is
// the largest scale * sum_d |q_d k_d| over rows and heads: a logit's rounding error grows with
// kappa, and a weight's relative error is its logit's absolute error. The kernels sum dot
// products in another order and rescale once per block of rows instead of once per row, so
// they are close to the reference, not bitwise equal.
#include "isa_test_util.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kvc::kernels::testing {
namespace {

constexpr float kTolerance = 2e-5f;

struct Rows {  // n encoded rows of K and V in one buffer each, with padding between rows
  std::vector<std::byte> k, v;
  std::size_t k_stride = 0, v_stride = 0;
};

Rows encode(const Table& t, RowFormat kf, RowFormat vf, std::size_t dim, const std::vector<float>& k,
            const std::vector<float>& v, std::size_t n) {
  Rows r;
  r.k_stride = row_bytes(kf, dim) + 4;
  r.v_stride = row_bytes(vf, dim) + 8;
  r.k.resize(n * r.k_stride + 64);
  r.v.resize(n * r.v_stride + 64);
  t.encode_rows(kf, dim, k.data(), dim, n, r.k.data() + 4, r.k_stride);  // +4: not vector aligned
  t.encode_rows(vf, dim, v.data(), dim, n, r.v.data() + 8, r.v_stride);
  return r;
}

struct State {
  std::vector<float> m, l, acc, logits;
  State(std::size_t n_q, std::size_t dim, std::size_t rows)
      : m(n_q, -std::numeric_limits<float>::infinity()), l(n_q, 0.0f), acc(n_q * dim, 0.0f), logits(n_q * rows, 0.0f) {}
};

struct Case {
  RowFormat kf, vf;
  std::size_t dim, n, n_q;
  std::size_t rows;         // causal limit (<= n)
  std::size_t segments;     // how many segments the rows are split into
  std::size_t calls;        // how many attend calls the segments are fed in
  float magnitude = 1.0f;   // scale of K and V
  bool outliers = false;    // 100x channels in K
};

std::string describe(const Case& c) {
  return std::string("K ") + dtype_name(c.kf.dtype) + "/g" + std::to_string(c.kf.group) + " V " + dtype_name(c.vf.dtype) +
         "/g" + std::to_string(c.vf.group) + " dim " + std::to_string(c.dim) + " n " + std::to_string(c.n) + " n_q " +
         std::to_string(c.n_q) + " rows " + std::to_string(c.rows) + " segments " + std::to_string(c.segments) +
         " calls " + std::to_string(c.calls) + " magnitude " + std::to_string(c.magnitude);
}

float max_abs(const std::vector<float>& x) {
  float m = 0.0f;
  for (float v : x) m = std::max(m, std::fabs(v));
  return m;
}

// Runs the reference in one call and `t` with the rows split into segments and calls; asserts.
void check(const Table& t, const Case& c) {
  SCOPED_TRACE(describe(c));
  auto k = gaussian(c.n * c.dim, 21, c.magnitude);
  const auto v = gaussian(c.n * c.dim, 22, c.magnitude);
  if (c.outliers)
    for (std::size_t r = 0; r < c.n; ++r)
      for (std::size_t d = 1; d < c.dim; d += 7) k[r * c.dim + d] *= 100.0f;
  const auto q = gaussian(c.n_q * c.dim, 23);
  const Rows rows = encode(table(Isa::scalar), c.kf, c.vf, c.dim, k, v, c.n);
  const std::byte* k0 = rows.k.data() + 4;
  const std::byte* v0 = rows.v.data() + 8;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.dim)) / c.magnitude;
  float kappa = 0.0f;
  {
    std::vector<float> decoded(c.n * c.dim);
    ref::decode_rows(c.kf, c.dim, k0, rows.k_stride, c.n, decoded.data(), c.dim);
    for (std::size_t r = 0; r < c.n; ++r)
      for (std::size_t h = 0; h < c.n_q; ++h) {
        float sum = 0.0f;
        for (std::size_t d = 0; d < c.dim; ++d) sum += std::fabs(q[h * c.dim + d] * decoded[r * c.dim + d]);
        kappa = std::max(kappa, scale * sum);
      }
  }
  const float tol = kTolerance * std::max(1.0f, kappa / 32.0f);

  AttendArgs base = attend_args(q.data(), c.n_q, c.dim, c.kf, c.vf, rows.k_stride, rows.v_stride, scale);
  base.logits_stride = c.rows;

  State want(c.n_q, c.dim, c.rows);
  {
    const Segment all{k0, v0, c.n};
    AttendArgs a = base;
    a.segments = &all;
    a.n_segments = 1;
    a.rows = c.rows;
    a.m = want.m.data();
    a.l = want.l.data();
    a.acc = want.acc.data();
    a.logits = want.logits.data();
    ref::attend(a);
  }

  // Segments of uneven sizes (one of them empty), fed in `calls` consecutive calls.
  std::vector<Segment> segs;
  for (std::size_t s = 0, start = 0; s < c.segments; ++s) {
    const std::size_t end = s + 1 == c.segments ? c.n : std::min(c.n, start + (c.n * (s + 1) * (s + 1)) / (c.segments * c.segments));
    segs.push_back({k0 + start * rows.k_stride, v0 + start * rows.v_stride, end - start});
    start = end;
  }
  State got(c.n_q, c.dim, c.rows);
  std::size_t done_rows = 0;
  for (std::size_t call = 0; call < c.calls; ++call) {
    const std::size_t s0 = segs.size() * call / c.calls, s1 = segs.size() * (call + 1) / c.calls;
    std::size_t seg_rows = 0;
    for (std::size_t s = s0; s < s1; ++s) seg_rows += segs[s].rows;
    const std::size_t take = std::min(seg_rows, c.rows - std::min(c.rows, done_rows));
    AttendArgs a = base;
    a.segments = segs.data() + s0;
    a.n_segments = s1 - s0;
    a.rows = take;
    a.m = got.m.data();
    a.l = got.l.data();
    a.acc = got.acc.data();
    a.logits = got.logits.data() + done_rows;
    t.attend(a);
    done_rows += take;
  }
  ASSERT_EQ(done_rows, c.rows);

  std::vector<float> want_out(want.acc.size()), got_out(got.acc.size());
  for (std::size_t h = 0; h < c.n_q; ++h)
    for (std::size_t d = 0; d < c.dim; ++d) {
      want_out[h * c.dim + d] = want.acc[h * c.dim + d] / want.l[h];
      got_out[h * c.dim + d] = got.acc[h * c.dim + d] / got.l[h];
    }
  const float out_tol = tol * max_abs(want_out) + 1e-30f;
  for (std::size_t i = 0; i < want_out.size(); ++i) ASSERT_NEAR(want_out[i], got_out[i], out_tol) << "output " << i;
  for (std::size_t h = 0; h < c.n_q; ++h) {
    // l is relative to exp(m): compare l * exp(m) through the ratio.
    const float l_ratio = got.l[h] * std::exp(got.m[h] - want.m[h]) / want.l[h];
    ASSERT_NEAR(l_ratio, 1.0f, tol) << "normalizer of head " << h;
  }
  const float logit_tol = tol * max_abs(want.logits) + 1e-30f;
  for (std::size_t i = 0; i < want.logits.size(); ++i) ASSERT_NEAR(want.logits[i], got.logits[i], logit_tol) << "logit " << i;
}

std::vector<RowFormat> all_formats(std::size_t dim, std::uint16_t group) {
  return testing::all_formats(static_cast<std::uint16_t>(std::min<std::size_t>(group, dim)));
}

using AttendTest = IsaTest;

TEST_P(AttendTest, EveryFormatOnEveryHeadDimAndRowCount) {
  for (std::size_t dim : {8, 64, 80, 96, 128, 256})
    for (RowFormat f : all_formats(dim, dim == 80 ? 16 : 32))
      for (std::size_t n : {1, 3, 17, 63, 65, 1000}) {
        check(kernels(), {f, f, dim, n, 4, n, 1, 1});
        if (HasFatalFailure()) return;
      }
}

TEST_P(AttendTest, EveryPairOfKeyAndValueFormats) {
  for (RowFormat kf : all_formats(128, 32))
    for (RowFormat vf : all_formats(128, 64)) {
      check(kernels(), {kf, vf, 128, 65, 4, 65, 1, 1});
      if (HasFatalFailure()) return;
    }
}

TEST_P(AttendTest, QueryHeadCountsAndGroupSizes) {
  for (std::size_t n_q : {1, 2, 3, 4, 5, 8, 9})
    for (std::uint16_t g : {std::uint16_t{8}, std::uint16_t{24}, std::uint16_t{128}}) {
      const std::size_t dim = g == 128 ? 128 : 96;
      check(kernels(), {{Dtype::q4, g}, {Dtype::q8, g}, dim, 70, n_q, 70, 1, 1});
      if (HasFatalFailure()) return;
      check(kernels(), {{Dtype::f16, 0}, {Dtype::bf16, 0}, 72, 33, n_q, 33, 1, 1});
      if (HasFatalFailure()) return;
    }
}

TEST_P(AttendTest, CausalLimitSegmentsAndSeveralCalls) {
  for (RowFormat f : all_formats(64, 32)) {
    check(kernels(), {f, f, 64, 1000, 4, 777, 1, 1});  // causal limit inside a segment
    check(kernels(), {f, f, 64, 1000, 4, 1000, 5, 1});  // several segments, one call
    check(kernels(), {f, f, 64, 1000, 4, 1000, 6, 3});  // several calls carry m, l, acc
    check(kernels(), {f, f, 64, 300, 4, 123, 4, 4});   // calls after the limit attend to nothing
    if (HasFatalFailure()) return;
  }
}

TEST_P(AttendTest, OddDimsOfElementFormats) {
  for (Dtype d : dtypes_of(Family::element))
    for (std::size_t dim : {1, 3, 17, 33}) {
      check(kernels(), {{d, 0}, {d, 0}, dim, 65, 3, 65, 2, 1});
      if (HasFatalFailure()) return;
    }
}

TEST_P(AttendTest, ExtremeValues) {
  for (RowFormat f : all_formats(128, 32)) {
    check(kernels(), {f, f, 128, 200, 4, 200, 1, 1, 1.0f, true});     // outlier key channels, peaked softmax
    check(kernels(), {f, f, 128, 200, 4, 200, 1, 1, 3.0e4f, false});  // near the f16 range
    if (HasFatalFailure()) return;
  }
}

// A non-finite query element makes its head's logits non-finite: every ISA's attention gives NaN
// for that head, as the reference does (the SIMD exp once clamped a NaN logit into a tiny
// finite weight, so that a head of values all 0.25 came out as 0.0117), and leaves the other
// heads as the reference has them. Both precisions: the fast paths take the exact one here.
TEST_P(AttendTest, NonFiniteQueriesGiveNaNAsTheReferenceDoes) {
  const std::size_t dim = 64, n = 70, n_q = 2;
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (RowFormat f : all_formats(dim, 32))
    for (float bad : {nan, inf, -inf})
      for (Precision precision : {Precision::exact, Precision::fast}) {
        SCOPED_TRACE(std::string(dtype_name(f.dtype)) + " query element " + std::to_string(bad) +
                     (precision == Precision::fast ? " fast" : " exact"));
        const std::size_t bytes = row_bytes(f, dim);
        std::vector<std::byte> k(n * bytes), v(n * bytes);
        ref::encode_rows(f, dim, gaussian(n * dim, 61).data(), dim, n, k.data(), bytes);
        ref::encode_rows(f, dim, std::vector<float>(n * dim, 0.25f).data(), dim, n, v.data(), bytes);
        std::vector<float> q = gaussian(n_q * dim, 62);
        q[3] = bad;  // head 0; head 1 stays finite
        const Segment seg{k.data(), v.data(), n};
        std::vector<float> out[2];
        const Table* tables[2] = {&table(Isa::scalar), &kernels()};
        for (std::size_t j = 0; j < 2; ++j) {
          std::vector<float> m(n_q, -std::numeric_limits<float>::infinity()), l(n_q, 0.0f), acc(n_q * dim, 0.0f);
          AttendArgs a = attend_args(q.data(), n_q, dim, f, f, bytes, bytes, 0.125f);
          a.segments = &seg;
          a.n_segments = 1;
          a.rows = n;
          a.precision = precision;
          a.m = m.data();
          a.l = l.data();
          a.acc = acc.data();
          tables[j]->attend(a);
          for (std::size_t i = 0; i < n_q * dim; ++i) out[j].push_back(acc[i] / l[i / dim]);
        }
        for (std::size_t i = 0; i < dim; ++i) {
          ASSERT_TRUE(std::isnan(out[0][i])) << "reference, element " << i << ": " << out[0][i];
          ASSERT_TRUE(std::isnan(out[1][i])) << "element " << i << ": " << out[1][i];
        }
        // The finite head: within the exact tolerance, or bf16 rounding of weights (2^-8) on a fast path.
        const float tol = precision == Precision::fast ? 2e-3f : 1e-5f;
        for (std::size_t i = dim; i < n_q * dim; ++i) ASSERT_NEAR(out[1][i], out[0][i], tol) << "finite head, element " << i;
      }
}

TEST_P(AttendTest, NoRowsLeavesTheStateUnchanged) {
  const std::vector<float> q(128, 1.0f);
  float m = 2.0f, l = 3.0f;
  std::vector<float> acc(128, 4.0f);
  AttendArgs a;
  a.q = q.data();
  a.n_q = 1;
  a.k_dim = a.v_dim = 128;
  a.k_format = a.v_format = {Dtype::f16, 0};
  a.m = &m;
  a.l = &l;
  a.acc = acc.data();
  kernels().attend(a);
  EXPECT_EQ(m, 2.0f);
  EXPECT_EQ(l, 3.0f);
  EXPECT_EQ(acc, std::vector<float>(128, 4.0f));
}

KVC_INSTANTIATE_FOR_EVERY_ISA(AttendTest);

}  // namespace
}  // namespace kvc::kernels::testing
