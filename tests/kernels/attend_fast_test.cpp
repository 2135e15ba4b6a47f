// Precision::fast against exact reference attention, with the error bounds that its int8 and
// bf16 arithmetic implies (table.hpp), on every ISA (those without the dot products compute
// exactly and pass the same bounds trivially):
//   logits, quantized keys (int8 ISAs):
//            |logit - ref| <= scale * (step_q / 2) * sum_d |k_d| + tol, step_q = max|q_h| / 127;
//   logits, f16/bf16 keys (bf16 ISA): q and k rounded to bf16 (relative 2^-8 each; bf16 keys
//            exact), f16 subnormals flushed:
//            |logit - ref| <= scale * sum_d |q_d| (|k_d| (u_q + u_k + u_q u_k) + flush) + tol;
//   output:  given the kernel's own logits, the only other error is the rounding of the weights:
//            quantized values, u8 weights a_r = p_r * s_{r,g}: per block B of 32 rows, head and
//            value group, |out - exact(own logits)| <= sum_B (max_{r in B} a_r / 510) sum_{r in B} c_{r,d} / l;
//            f16/bf16 values (bf16 ISA), bf16 weights and values:
//            |out - exact(own logits)| <= sum_r p_r (|v_{r,d}| (u_p + u_v + u_p u_v) + flush) / l; plus tol.
// On the ISAs with the dot products the benchmark shapes must really take them: results differ
// from the exact ones (a silently skipped fast path would pass the bounds).
#include "isa_test_util.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kvc::kernels::testing {
namespace {

constexpr std::size_t kBlock = 32;  // rows per online-softmax block: the weights' quantization unit
constexpr float kFpTolerance = 2e-5f;
constexpr double kBf16Rounding = 1.0 / 256.0;  // unit roundoff of bf16's 8-bit significand
constexpr double kF16Flush = 6.11e-5;          // f16 subnormals (below 2^-14) read as zero

bool int8_isa(Isa isa) { return isa == Isa::avx512vnni || isa == Isa::avx512bf16; }
bool bf16_isa(Isa isa) { return isa == Isa::avx512bf16; }

// Relative and absolute error of one bf16-rounded operand read from a row of `dtype`.
struct Bf16Error {
  double relative = 0.0, absolute = 0.0;
};
bool half_dtype(Dtype d) { return d == Dtype::f16 || d == Dtype::bf16; }
Bf16Error bf16_error(Isa isa, Dtype dtype) {
  if (!bf16_isa(isa) || !half_dtype(dtype)) return {};
  return {dtype == Dtype::bf16 ? 0.0 : kBf16Rounding, dtype == Dtype::f16 ? kF16Flush : 0.0};
}
// The error of a product of a bf16-rounded operand (relative u) and a row's value.
double product_relative(const Bf16Error& row) { return kBf16Rounding + row.relative + kBf16Rounding * row.relative; }

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
  const Bf16Error k_err = bf16_error(t.isa, c.kf.dtype), v_err = bf16_error(t.isa, c.vf.dtype);
  const bool bf16_k = bf16_isa(t.isa) && half_dtype(c.kf.dtype);
  const bool bf16_v = bf16_isa(t.isa) && half_dtype(c.vf.dtype);
  const bool int8_k = int8_isa(t.isa) && is_quantized(c.kf.dtype);
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

  // Logits: the int8 or bf16 query's rounding, plus the float tolerance of the exact kernels.
  float max_logit = 0.0f;
  for (float x : exact.logits) max_logit = std::max(max_logit, std::fabs(x));
  for (std::size_t h = 0; h < c.n_q; ++h) {
    float max_q = 0.0f;
    for (std::size_t d = 0; d < c.dim; ++d) max_q = std::max(max_q, std::fabs(q[h * c.dim + d]));
    const double step_q = max_q / 127.0;
    for (std::size_t r = 0; r < c.n; ++r) {
      double sum_abs_k = 0.0, sum_abs_qk = 0.0, sum_abs_q = 0.0;
      for (std::size_t d = 0; d < c.dim; ++d) {
        const double qd = std::fabs(q[h * c.dim + d]), kv = std::fabs(kd[r * c.dim + d]);
        sum_abs_k += kv;
        sum_abs_qk += qd * kv;
        sum_abs_q += qd;
      }
      double rounding = 0.0;
      if (int8_k) rounding = step_q / 2.0 * sum_abs_k;
      if (bf16_k) rounding = sum_abs_qk * product_relative(k_err) + sum_abs_q * k_err.absolute * (1.0 + kBf16Rounding);
      const double bound = scale * rounding * (1.0 + 1e-4) + kFpTolerance * std::max(1.0f, max_logit);
      const double err = std::fabs(static_cast<double>(fast.logits[h * c.n + r]) - exact.logits[h * c.n + r]);
      EXPECT_LE(err, bound) << "logit of head " << h << " row " << r;
      if (err > bound) return true;
    }
  }

  // Output: exact attention with the kernel's own logits, plus the weights' rounding.
  for (std::size_t h = 0; h < c.n_q; ++h) {
    const float* lg = fast.logits.data() + h * c.n;
    const double top = *std::max_element(lg, lg + c.n);
    std::vector<double> p(c.n);
    double l = 0.0;
    for (std::size_t r = 0; r < c.n; ++r) l += p[r] = std::exp(lg[r] - top);
    std::vector<double> bound(c.dim, 0.0);
    if (bf16_v)
      for (std::size_t d = 0; d < c.dim; ++d) {
        for (std::size_t r = 0; r < c.n; ++r)
          bound[d] += p[r] * (std::fabs(vd[r * c.dim + d]) * product_relative(v_err) + v_err.absolute * (1.0 + kBf16Rounding));
        bound[d] /= l;
      }
    if (is_quantized(c.vf.dtype) && int8_isa(t.isa))
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

TEST_P(AttendFastTest, BenchmarkShapesOfHalfRowsTakeTheBf16PathWithinItsBounds) {
  for (Dtype d : {Dtype::f32, Dtype::f16, Dtype::bf16}) {
    const RowFormat f{d, 0};
    const bool differs = check_fast(kernels(), {f, f, 128, 300, 4, 1});
    if (HasFailure()) return;
    EXPECT_EQ(differs, bf16_isa(GetParam()) && half_dtype(d)) << dtype_name(d)
                                             << (differs ? ": results differ from exact" : ": results are exact");
  }
}

// With one dim and scale 1, a fast logit is q times the key as the kernel rounded them to bf16,
// with no other error. Every finite f16 key against q = 1 (rounded half away from zero,
// subnormals to signed zero), and queries around ties against a bf16 key of 1 (round to nearest
// even, saturating at bf16's max, subnormals to zero), bitwise against their specification.
// Run only on the targets with bf16 (int8) dot products: the rounding they specify does not
// exist elsewhere.
using AttendBf16Test = IsaTest;
using AttendInt8Test = IsaTest;

TEST_P(AttendBf16Test, QueryAndKeysRoundToBf16AsSpecified) {
  const auto logits_of = [&](RowFormat f, const std::vector<float>& keys, float q) {
    const std::size_t n = keys.size(), bytes = row_bytes(f, 1);
    std::vector<std::byte> k(n * bytes), v(n * bytes);
    ref::encode_rows(f, 1, keys.data(), 1, n, k.data(), bytes);
    ref::encode_rows(f, 1, keys.data(), 1, n, v.data(), bytes);
    const Segment seg{k.data(), v.data(), n};
    float m = -std::numeric_limits<float>::infinity(), l = 0.0f, acc = 0.0f;
    std::vector<float> logits(n);
    AttendArgs a = attend_args(&q, 1, 1, f, f, bytes, bytes, 1.0f);
    a.segments = &seg;
    a.n_segments = 1;
    a.rows = n;
    a.precision = Precision::fast;
    a.m = &m;
    a.l = &l;
    a.acc = &acc;
    a.logits = logits.data();
    a.logits_stride = n;
    kernels().attend(a);
    return logits;
  };
  std::vector<float> keys;
  for (std::uint32_t h = 0; h < 0x10000; ++h)
    if ((h & 0x7C00) != 0x7C00) keys.push_back(half::f16_to_f32(static_cast<std::uint16_t>(h)));
  const auto logits = logits_of({Dtype::f16, 0}, keys, 1.0f);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    std::uint32_t bits = 0;
    std::memcpy(&bits, &keys[i], 4);
    const bool subnormal = std::fabs(keys[i]) < 6.103515625e-05f;
    const auto want = static_cast<std::uint16_t>(subnormal ? (bits >> 16) & 0x8000u : (bits + 0x8000u) >> 16);
    ASSERT_EQ(logits[i], half::bf16_to_f32(want)) << "f16 key " << keys[i];
  }
  for (std::uint32_t base : {0x3F800000u, 0xBF812345u, 0x00800000u, 0x7F7F0000u, 0x42C80000u, 0x00001234u, 0x807F0000u})
    for (std::uint32_t low : {0x0000u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu, 0x18000u}) {
      const std::uint32_t bits = base + low;
      float q = 0.0f;
      std::memcpy(&q, &bits, 4);
      if (!std::isfinite(q)) continue;
      const float want = std::fabs(q) < std::numeric_limits<float>::min() ? 0.0f : half::bf16_to_f32(half::f32_to_bf16(q));
      EXPECT_EQ(logits_of({Dtype::bf16, 0}, {1.0f}, q)[0], want) << "query " << q;
    }
}

// `a` over one segment, with the caller's online-softmax state.
AttendArgs over_segment(AttendArgs a, const Segment& seg, Precision p, float* m, float* l, float* acc) {
  a.segments = &seg;
  a.n_segments = 1;
  a.rows = seg.rows;
  a.precision = p;
  a.m = m;
  a.l = l;
  a.acc = acc;
  return a;
}

// With scale 1 and key rows whose group scale is 1 and minimum 0 (integer values spanning the
// code range), a fast logit is step * sum_d qi_d c_d with no other rounding: the int8 query of the
// specification (step = max|q| / 127, qi = q / step rounded to nearest even, clamped to 127),
// checked bitwise on every code width, on ties, at +-max and with steps that are not powers of 2.
TEST_P(AttendInt8Test, QueryRoundsToInt8AsSpecified) {
  constexpr std::size_t dim = 64, n = 5;
  // Head 0: step 1 and ties on both sides of zero; head 1: step 0.5; heads 2, 3: other steps.
  std::vector<float> q(4 * dim);
  const float ties[] = {0.5f, -0.5f, 1.5f, -1.5f, 2.5f, -3.5f, 126.5f, -126.5f, 127.0f, -127.0f, 0.49999997f, 3.0f};
  for (std::size_t d = 0; d < dim; ++d) {
    q[d] = ties[d % 12];
    q[dim + d] = ties[(d + 5) % 12] / 2.0f;
    q[2 * dim + d] = std::sin(0.37f * static_cast<float>(d)) * 100.0f;
    q[3 * dim + d] = static_cast<float>(d % 7) * 0.3f - 0.9f;
  }
  for (Dtype dt : {Dtype::q8, Dtype::q4, Dtype::q2}) {
    SCOPED_TRACE(dtype_name(dt));
    const float top = static_cast<float>((1u << bits_of(dt)) - 1u);
    const RowFormat f{dt, 32};
    std::vector<float> keys(n * dim);
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t d = 0; d < dim; ++d)  // each group holds 0 and top: scale 1, minimum 0
        keys[r * dim + d] = d % 32 == 0 ? 0.0f : d % 32 == 1 ? top : static_cast<float>((d * 37 + r * 11) % (1u << bits_of(dt)));
    const std::size_t bytes = row_bytes(f, dim);
    std::vector<std::byte> k(n * bytes), v(n * bytes);
    ref::encode_rows(f, dim, keys.data(), dim, n, k.data(), bytes);
    ref::encode_rows(f, dim, keys.data(), dim, n, v.data(), bytes);
    const Segment seg{k.data(), v.data(), n};
    std::vector<float> m(4, -std::numeric_limits<float>::infinity()), l(4, 0.0f), acc(4 * dim, 0.0f), logits(4 * n);
    AttendArgs a = over_segment(attend_args(q.data(), 4, dim, f, f, bytes, bytes, 1.0f), seg, Precision::fast, m.data(),
                                l.data(), acc.data());
    a.logits = logits.data();
    a.logits_stride = n;
    kernels().attend(a);
    for (std::size_t h = 0; h < 4; ++h) {
      float mx = 0.0f;
      for (std::size_t d = 0; d < dim; ++d) mx = std::max(mx, std::fabs(q[h * dim + d]));
      const float step = mx / 127.0f;
      for (std::size_t r = 0; r < n; ++r) {
        std::int64_t dot = 0;
        for (std::size_t d = 0; d < dim; ++d) {
          const float qi = std::clamp(std::nearbyint(q[h * dim + d] / step), -127.0f, 127.0f);
          dot += static_cast<std::int64_t>(qi) * static_cast<std::int64_t>(keys[r * dim + d]);
        }
        ASSERT_EQ(logits[h * n + r], static_cast<float>(dot) * step) << "head " << h << " row " << r;
      }
    }
  }
}

TEST_P(AttendFastTest, HalfRowsOfAnyDimAndRowCount) {
  for (std::size_t dim : {1, 8, 17, 31, 32, 33, 50, 64, 80, 96, 128, 200, 256, 300})
    for (Dtype d : {Dtype::f32, Dtype::f16, Dtype::bf16})
      for (std::size_t n : {1, 2, 15, 31, 32, 33, 65, 100}) {
        check_fast(kernels(), {{d, 0}, {d, 0}, dim, n, 4, 1});
        if (HasFailure()) return;
      }
}

// Every buffer attend touches ends at an inaccessible page: rows, query, state and logits are
// read and written within their bounds on every tail (exact and fast alike), and the results
// stay close to the exact ones.
TEST_P(AttendFastTest, NothingIsTouchedPastAnyBuffer) {
  const std::vector<RowFormat> formats{{Dtype::f32, 0},  {Dtype::f16, 0}, {Dtype::bf16, 0},
                                       {Dtype::q8, 16}, {Dtype::q4, 16}, {Dtype::q8, 8}};
  const auto fits = [](RowFormat f, std::size_t dim) { return !is_quantized(f.dtype) || dim % f.group == 0; };
  for (RowFormat kf : formats)
    for (RowFormat vf : formats)
      for (std::size_t dim : {16, 17, 24, 33, 40, 80, 144})
        for (std::size_t n : {1, 33, 65})
          for (std::size_t n_q : {1, 5}) {
            if (!fits(kf, dim) || !fits(vf, dim)) continue;
            SCOPED_TRACE(std::string(dtype_name(kf.dtype)) + "/" + dtype_name(vf.dtype) + " dim " + std::to_string(dim) +
                         " n " + std::to_string(n) + " n_q " + std::to_string(n_q));
            const std::size_t kb = row_bytes(kf, dim), vb = row_bytes(vf, dim);
            Guarded k(n * kb), v(n * vb), q(n_q * dim * 4);
            ref::encode_rows(kf, dim, gaussian(n * dim, 41).data(), dim, n, k.as<std::byte>(), kb);
            ref::encode_rows(vf, dim, gaussian(n * dim, 42).data(), dim, n, v.as<std::byte>(), vb);
            const auto qv = gaussian(n_q * dim, 43);
            std::memcpy(q.as<float>(), qv.data(), qv.size() * 4);
            const Segment seg{k.as<std::byte>(), v.as<std::byte>(), n};
            std::vector<float> out[2];
            for (Precision p : {Precision::exact, Precision::fast}) {
              Guarded m(n_q * 4), l(n_q * 4), acc(n_q * dim * 4), logits(n_q * n * 4);
              std::fill_n(m.as<float>(), n_q, -std::numeric_limits<float>::infinity());
              AttendArgs a = attend_args(q.as<float>(), n_q, dim, kf, vf, kb, vb, 1.0f / std::sqrt(float(dim)));
              a.segments = &seg;
              a.n_segments = 1;
              a.rows = n;
              a.precision = p;
              a.m = m.as<float>();
              a.l = l.as<float>();
              a.acc = acc.as<float>();
              a.logits = logits.as<float>();
              a.logits_stride = n;
              kernels().attend(a);
              for (std::size_t i = 0; i < n_q * dim; ++i) out[int(p)].push_back(a.acc[i] / a.l[i / dim]);
            }
            for (std::size_t i = 0; i < out[0].size(); ++i) ASSERT_NEAR(out[1][i], out[0][i], 2e-2f) << i;
          }
}

TEST_P(AttendFastTest, NonFiniteQueriesTakeTheExactPath) {
  for (RowFormat f : {RowFormat{Dtype::f16, 0}, RowFormat{Dtype::q8, 32}})
    for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                      std::numeric_limits<float>::quiet_NaN()}) {
    SCOPED_TRACE(std::string(dtype_name(f.dtype)) + " " + std::to_string(bad));
    const std::size_t dim = 64, n = 40, bytes = row_bytes(f, dim);
    std::vector<std::byte> k(n * bytes), v(n * bytes);
    ref::encode_rows(f, dim, gaussian(n * dim, 51).data(), dim, n, k.data(), bytes);
    ref::encode_rows(f, dim, gaussian(n * dim, 52).data(), dim, n, v.data(), bytes);
    auto q = gaussian(2 * dim, 53);
    q[dim + 3] = bad;  // head 1; head 0 stays finite
    const Segment seg{k.data(), v.data(), n};
    std::vector<float> logits[2];
    for (Precision p : {Precision::exact, Precision::fast}) {
      std::vector<float> m(2, -std::numeric_limits<float>::infinity()), l(2, 0.0f), acc(2 * dim, 0.0f);
      logits[int(p)].assign(2 * n, 0.0f);
      AttendArgs a = attend_args(q.data(), 2, dim, f, f, bytes, bytes, 0.125f);
      a.segments = &seg;
      a.n_segments = 1;
      a.rows = n;
      a.precision = p;
      a.m = m.data();
      a.l = l.data();
      a.acc = acc.data();
      a.logits = logits[int(p)].data();
      a.logits_stride = n;
      kernels().attend(a);
    }
    // The query of the call is not rounded at all: the fast logits equal the exact ones bitwise.
    for (std::size_t i = 0; i < 2 * n; ++i) {
      if (std::isnan(logits[0][i])) continue;
      ASSERT_EQ(logits[1][i], logits[0][i]) << i;
    }
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
  // Dims that are not a multiple of 16: the int8 query's masked tail (q8 and q4 keys in groups
  // of 8 take the vectorized logits; q2 the generic ones).
  for (std::size_t dim : {8, 24, 40, 72, 136, 248})
    for (Dtype d : {Dtype::q8, Dtype::q4, Dtype::q2})
      for (std::size_t n : {1, 17, 40}) {
        check_fast(kernels(), {{d, 8}, {d, 8}, dim, n, 5, 1});
        if (HasFailure()) return;
      }
}

TEST_P(AttendFastTest, QueryHeadCountsMixedFormatsAndSeveralCalls) {
  const std::vector<std::pair<RowFormat, RowFormat>> pairs{
      {{Dtype::q8, 32}, {Dtype::q4, 64}}, {{Dtype::q4, 32}, {Dtype::f16, 0}}, {{Dtype::f16, 0}, {Dtype::q8, 32}},
      {{Dtype::q2, 16}, {Dtype::q8, 128}}, {{Dtype::q8, 8}, {Dtype::q8, 8}}, {{Dtype::q4, 24}, {Dtype::q4, 24}},
      {{Dtype::bf16, 0}, {Dtype::f32, 0}}, {{Dtype::f32, 0}, {Dtype::q2, 32}}, {{Dtype::f16, 0}, {Dtype::bf16, 0}}};
  for (const auto& [kf, vf] : pairs)
    for (std::size_t n_q : {1, 2, 3, 4, 5, 8, 9, 16, 32, 33}) {
      const std::size_t dim = kf.group == 24 ? 96 : 128;
      check_fast(kernels(), {kf, vf, dim, 1000, n_q, n_q % 3 + 1});
      if (HasFailure()) return;
    }
}

TEST_P(AttendFastTest, OutlierChannelsHugeMagnitudesAndPeakedSoftmax) {
  for (Dtype d : all_dtypes()) {
    const RowFormat f{d, is_quantized(d) ? std::uint16_t{32} : std::uint16_t{0}};
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
  kernels().attend(over_segment(attend_args(q.data(), 2, dim, f, f, row_bytes(f, dim), row_bytes(f, dim), AttendArgs{}.scale),
                                seg, Precision::fast, m.data(), l.data(), acc.data()));
  EXPECT_EQ(m, std::vector<float>(2, 0.0f));
  EXPECT_EQ(l, std::vector<float>(2, static_cast<float>(n)));
  EXPECT_EQ(acc, std::vector<float>(2 * dim, 0.0f));  // the initial acc is scaled by exp(-inf) = 0
}

KVC_INSTANTIATE_FOR_EVERY_ISA(AttendFastTest);

std::vector<Isa> isas_where(bool (*has)(Isa)) {
  std::vector<Isa> isas;
  for (const Isa isa : kAllIsas)
    if (has(isa)) isas.push_back(isa);
  return isas;
}
INSTANTIATE_TEST_SUITE_P(Isa, AttendBf16Test, ::testing::ValuesIn(isas_where(bf16_isa)), isa_param_name);
INSTANTIATE_TEST_SUITE_P(Isa, AttendInt8Test, ::testing::ValuesIn(isas_where(int8_isa)), isa_param_name);

}  // namespace
}  // namespace kvc::kernels::testing
