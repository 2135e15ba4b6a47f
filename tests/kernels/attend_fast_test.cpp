// Precision::fast against exact reference attention, with the error bounds that its int8
// arithmetic implies (table.hpp), on every ISA (those without int8 dot products are exact and
// pass the same bounds trivially):
//   logits:  |logit - ref| <= scale * (step_q / 2) * sum_d |k_d| + tol, step_q = max|q_h| / 127;
//   output:  given the kernel's own logits, the only other error is the u8 rounding of the
//            weights a_r = p_r * s_{r,g}: per block B of 32 rows, head and value group,
//            |out - exact(own logits)| <= sum_B (max_{r in B} a_r / 510) sum_{r in B} c_{r,d} / l + tol.
// On avx512vnni the benchmark shapes must really take the int8 path: its results differ from
// the exact ones (a silently skipped fast path would pass the bounds).
#include "isa_test_util.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kvc::kernels::testing {
namespace {

constexpr std::size_t kBlock = 32;  // rows per online-softmax block: the weights' quantization unit
constexpr float kFpTolerance = 2e-5f;

struct FastCase {
  RowFormat kf, vf;
  std::size_t dim, n, n_q;
  std::size_t calls;       // the rows are fed in this many consecutive calls (blocks restart)
  float magnitude = 1.0f;  // scale of K and V
  bool outliers = false;   // 30x channels in K
  float sharpness = 1.0f;  // multiplies q: > 1 peaks the softmax
};

std::string describe(const FastCase& c) {
  return std::string("K ") + dtype_name(c.kf.dtype) + "/g" + std::to_string(c.kf.group) + " V " + dtype_name(c.vf.dtype) +
         "/g" + std::to_string(c.vf.group) + " dim " + std::to_string(c.dim) + " n " + std::to_string(c.n) + " n_q " +
         std::to_string(c.n_q) + " calls " + std::to_string(c.calls) + " magnitude " + std::to_string(c.magnitude) +
         (c.outliers ? " outliers" : "") + " sharpness " + std::to_string(c.sharpness);
}

struct Encoded {
  std::vector<std::byte> k, v;
  std::size_t k_stride = 0, v_stride = 0;
  const std::byte* k_row(std::size_t r) const { return k.data() + 4 + r * k_stride; }
  const std::byte* v_row(std::size_t r) const { return v.data() + 4 + r * v_stride; }
};

struct Result {
  std::vector<float> m, l, acc, logits;
  Result(std::size_t n_q, std::size_t dim, std::size_t n)
      : m(n_q, -std::numeric_limits<float>::infinity()), l(n_q, 0.0f), acc(n_q * dim, 0.0f), logits(n_q * n, 0.0f) {}
  float out(std::size_t h, std::size_t d, std::size_t dim) const { return acc[h * dim + d] / l[h]; }
};

Result run(const Table& t, const FastCase& c, const Encoded& e, const std::vector<float>& q, float scale, Precision p,
           std::size_t calls) {
  Result res(c.n_q, c.dim, c.n);
  std::size_t done = 0;
  for (std::size_t call = 0; call < calls; ++call) {
    const std::size_t end = c.n * (call + 1) / calls;
    const Segment seg{e.k_row(done), e.v_row(done), end - done};
    AttendArgs a = attend_args(q.data(), c.n_q, c.dim, c.kf, c.vf, e.k_stride, e.v_stride, scale);
    a.segments = &seg;
    a.n_segments = 1;
    a.rows = seg.rows;
    a.precision = p;
    a.m = res.m.data();
    a.l = res.l.data();
    a.acc = res.acc.data();
    a.logits = res.logits.data() + done;
    a.logits_stride = c.n;
    t.attend(a);
    done = end;
  }
  return res;
}

// Code and scale of a quantized row; float formats behave as code = value, scale 0 (no bound).
struct RowView {
  RowFormat f;
  std::size_t dim;
  const std::byte* row;
  float code(std::size_t d) const { return ref::get_code(row, d, bits_of(f.dtype)); }
  float scale(std::size_t d) const {
    std::uint16_t s = 0;
    std::memcpy(&s, row + code_bytes(f, dim) + d / f.group * kGroupParamBytes, 2);
    return half::f16_to_f32(s);
  }
};

// Asserts the bounds of the file comment; returns whether fast differs from exact at all.
bool check_fast(const Table& t, const FastCase& c) {
  SCOPED_TRACE(describe(c));
  auto k = gaussian(c.n * c.dim, 31, c.magnitude);
  const auto v = gaussian(c.n * c.dim, 32, c.magnitude);
  if (c.outliers)
    for (std::size_t r = 0; r < c.n; ++r)
      for (std::size_t d = 2; d < c.dim; d += 11) k[r * c.dim + d] *= 30.0f;
  auto q = gaussian(c.n_q * c.dim, 33, c.sharpness);
  Encoded e;
  e.k_stride = row_bytes(c.kf, c.dim) + 4;
  e.v_stride = row_bytes(c.vf, c.dim) + 8;
  e.k.resize(c.n * e.k_stride + 64);
  e.v.resize(c.n * e.v_stride + 64);
  ref::encode_rows(c.kf, c.dim, k.data(), c.dim, c.n, e.k.data() + 4, e.k_stride);
  ref::encode_rows(c.vf, c.dim, v.data(), c.dim, c.n, e.v.data() + 4, e.v_stride);
  std::vector<float> kd(c.n * c.dim), vd(c.n * c.dim);
  ref::decode_rows(c.kf, c.dim, e.k.data() + 4, e.k_stride, c.n, kd.data(), c.dim);
  ref::decode_rows(c.vf, c.dim, e.v.data() + 4, e.v_stride, c.n, vd.data(), c.dim);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.dim)) / c.magnitude;

  const Result exact = run(table(Isa::scalar), c, e, q, scale, Precision::exact, 1);
  const Result fast = run(t, c, e, q, scale, Precision::fast, c.calls);

  // Logits: the int8 query's rounding, plus the float tolerance of the exact kernels.
  float max_logit = 0.0f;
  for (float x : exact.logits) max_logit = std::max(max_logit, std::fabs(x));
  for (std::size_t h = 0; h < c.n_q; ++h) {
    float max_q = 0.0f;
    for (std::size_t d = 0; d < c.dim; ++d) max_q = std::max(max_q, std::fabs(q[h * c.dim + d]));
    const double step_q = max_q / 127.0;
    for (std::size_t r = 0; r < c.n; ++r) {
      double sum_abs_k = 0.0;
      for (std::size_t d = 0; d < c.dim; ++d) sum_abs_k += std::fabs(kd[r * c.dim + d]);
      const double bound = scale * step_q / 2.0 * sum_abs_k * (1.0 + 1e-4) + kFpTolerance * std::max(1.0f, max_logit);
      const double err = std::fabs(static_cast<double>(fast.logits[h * c.n + r]) - exact.logits[h * c.n + r]);
      EXPECT_LE(err, bound) << "logit of head " << h << " row " << r;
      if (err > bound) return true;
    }
  }

  // Output: exact attention with the kernel's own logits, plus the weights' rounding.
  const bool quantized_v = is_quantized(c.vf.dtype);
  for (std::size_t h = 0; h < c.n_q; ++h) {
    const float* lg = fast.logits.data() + h * c.n;
    const double top = *std::max_element(lg, lg + c.n);
    std::vector<double> p(c.n);
    double l = 0.0;
    for (std::size_t r = 0; r < c.n; ++r) l += p[r] = std::exp(lg[r] - top);
    std::vector<double> bound(c.dim, 0.0);
    if (quantized_v)
      for (std::size_t call = 0, start = 0; call < c.calls; ++call) {  // blocks restart with each call
        const std::size_t end = c.n * (call + 1) / c.calls;
        for (std::size_t b0 = start; b0 < end; b0 += kBlock) {
          const std::size_t b1 = std::min(end, b0 + kBlock);
          for (std::size_t d = 0; d < c.dim; ++d) {
            double max_a = 0.0, sum_c = 0.0;
            for (std::size_t r = b0; r < b1; ++r) {
              const RowView row{c.vf, c.dim, e.v_row(r)};
              max_a = std::max(max_a, p[r] * row.scale(d));
              sum_c += row.code(d);
            }
            bound[d] += max_a / 510.0 * sum_c / l;
          }
        }
        start = end;
      }
    double max_out = 0.0;
    std::vector<double> want(c.dim, 0.0);
    for (std::size_t d = 0; d < c.dim; ++d) {
      for (std::size_t r = 0; r < c.n; ++r) want[d] += p[r] * vd[r * c.dim + d];
      want[d] /= l;
      max_out = std::max(max_out, std::fabs(want[d]));
    }
    for (std::size_t d = 0; d < c.dim; ++d) {
      const double tol = bound[d] * (1.0 + 1e-3) + 4.0 * kFpTolerance * std::max(max_out, 1e-30);
      const double err = std::fabs(fast.out(h, d, c.dim) - want[d]);
      EXPECT_LE(err, tol) << "output of head " << h << " dim " << d;
      if (err > tol) return true;
    }
  }

  for (std::size_t i = 0; i < exact.logits.size(); ++i)
    if (std::fabs(fast.logits[i] - exact.logits[i]) > 1e-3f * std::max(1.0f, max_logit)) return true;
  for (std::size_t h = 0; h < c.n_q; ++h)
    for (std::size_t d = 0; d < c.dim; ++d)
      if (std::fabs(fast.out(h, d, c.dim) - exact.out(h, d, c.dim)) > 1e-4f * c.magnitude) return true;
  return false;
}

bool int8_isa(Isa isa) { return isa == Isa::avx512vnni; }

using AttendFastTest = IsaTest;

TEST_P(AttendFastTest, BenchmarkShapesTakeTheInt8PathWithinItsBounds) {
  for (Dtype d : {Dtype::q8, Dtype::q4, Dtype::q2})
    for (std::uint16_t g : {std::uint16_t{32}, std::uint16_t{64}, std::uint16_t{128}}) {
      const RowFormat f{d, g};
      const bool differs = check_fast(kernels(), {f, f, 128, 300, 4, 1});
      if (HasFailure()) return;
      EXPECT_EQ(differs, int8_isa(GetParam())) << dtype_name(d) << " group " << g
                                               << (differs ? ": results differ from exact" : ": results are exact");
    }
}

TEST_P(AttendFastTest, HeadDimsGroupsAndRowCounts) {
  for (std::size_t dim : {64, 96, 128, 256})
    for (std::uint16_t g : {std::uint16_t{16}, std::uint16_t{32}, std::uint16_t{64}})
      for (Dtype d : {Dtype::q8, Dtype::q4, Dtype::q2})
        for (std::size_t n : {1, 15, 16, 17, 33, 100}) {
          if (dim % g != 0) continue;
          check_fast(kernels(), {{d, g}, {d, g}, dim, n, 4, 1});
          if (HasFailure()) return;
        }
}

TEST_P(AttendFastTest, QueryHeadCountsMixedFormatsAndSeveralCalls) {
  const std::vector<std::pair<RowFormat, RowFormat>> pairs{
      {{Dtype::q8, 32}, {Dtype::q4, 64}}, {{Dtype::q4, 32}, {Dtype::f16, 0}}, {{Dtype::f16, 0}, {Dtype::q8, 32}},
      {{Dtype::q2, 16}, {Dtype::q8, 128}}, {{Dtype::q8, 8}, {Dtype::q8, 8}}, {{Dtype::q4, 24}, {Dtype::q4, 24}}};
  for (const auto& [kf, vf] : pairs)
    for (std::size_t n_q : {1, 2, 3, 4, 5, 8, 9}) {
      const std::size_t dim = kf.group == 24 ? 96 : 128;
      check_fast(kernels(), {kf, vf, dim, 1000, n_q, n_q % 3 + 1});
      if (HasFailure()) return;
    }
}

TEST_P(AttendFastTest, OutlierChannelsHugeMagnitudesAndPeakedSoftmax) {
  for (Dtype d : {Dtype::q8, Dtype::q4, Dtype::q2}) {
    const RowFormat f{d, 32};
    check_fast(kernels(), {f, f, 128, 500, 4, 2, 1.0f, true});
    check_fast(kernels(), {f, f, 128, 500, 4, 1, 3.0e4f});
    check_fast(kernels(), {f, f, 128, 500, 4, 1, 1.0f, false, 8.0f});
    if (HasFailure()) return;
  }
}

TEST_P(AttendFastTest, ZeroQueryAndZeroValuesStayFinite) {
  const RowFormat f{Dtype::q8, 32};
  const std::size_t dim = 128, n = 40;
  std::vector<std::byte> k(n * row_bytes(f, dim)), v(n * row_bytes(f, dim));
  const std::vector<float> zeros(n * dim, 0.0f), q(2 * dim, 0.0f);
  ref::encode_rows(f, dim, zeros.data(), dim, n, k.data(), row_bytes(f, dim));
  ref::encode_rows(f, dim, zeros.data(), dim, n, v.data(), row_bytes(f, dim));
  const Segment seg{k.data(), v.data(), n};
  std::vector<float> m(2, -std::numeric_limits<float>::infinity()), l(2, 0.0f), acc(2 * dim, 1.0f);
  AttendArgs a = attend_args(q.data(), 2, dim, f, f, row_bytes(f, dim), row_bytes(f, dim), AttendArgs{}.scale);
  a.segments = &seg;
  a.n_segments = 1;
  a.rows = n;
  a.precision = Precision::fast;
  a.m = m.data();
  a.l = l.data();
  a.acc = acc.data();
  kernels().attend(a);
  EXPECT_EQ(m, std::vector<float>(2, 0.0f));
  EXPECT_EQ(l, std::vector<float>(2, static_cast<float>(n)));
  EXPECT_EQ(acc, std::vector<float>(2 * dim, 0.0f));  // the initial acc is scaled by exp(-inf) = 0
}

KVC_INSTANTIATE_FOR_EVERY_ISA(AttendFastTest);

}  // namespace
}  // namespace kvc::kernels::testing
