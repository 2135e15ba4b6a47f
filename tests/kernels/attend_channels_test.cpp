// attend_channels (keys as per-channel codes: KIVI's frozen groups) of every ISA.
//  * The scalar reference equals ref::attend over the same keys dequantized by the definition
//    below (element c of token t = code * scale_c + min_c of t's group, decode_channels' fma), to
//    1e-6 relative: both decode to the same floats and sum in the same order.
//  * Every ISA equals the scalar reference within attend_test.cpp's tolerance, tol = 2e-5 *
//    max(1, kappa / 32) (kappa: the largest scale * sum_d |q_d k_d|), on outputs, normalizers
//    and logits, with the rows split into uneven segments (pages) and a causal limit.
#include "isa_test_util.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kvc::kernels::testing {
namespace {

struct ChannelCase {
  Dtype key;          // q8, q4, q2
  RowFormat value;    // any row format
  std::size_t dim, group_tokens, groups, n_q;
  std::size_t rows;      // causal limit, <= groups * group_tokens
  std::size_t segments;  // pages the rows are split into
};

std::string describe(const ChannelCase& c) {
  return std::string("key ") + dtype_name(c.key) + " value " + dtype_name(c.value.dtype) + " dim " +
         std::to_string(c.dim) + " G " + std::to_string(c.group_tokens) + " groups " + std::to_string(c.groups) +
         " n_q " + std::to_string(c.n_q) + " rows " + std::to_string(c.rows) + " segments " +
         std::to_string(c.segments);
}

// Per-channel keys as a cache keeps them: code rows (padded, not vector aligned) and the
// groups' parameters back to back; the keys dequantized by the definition; encoded values.
struct Stored {
  std::size_t k_stride = 0, v_stride = 0;
  std::vector<std::byte> codes, params, values;
  std::vector<float> dequantized;  // [n][dim]
};

Stored store(const ChannelCase& c, const std::vector<float>& k, const std::vector<float>& v) {
  const std::size_t n = c.groups * c.group_tokens, code = code_bytes({c.key, 0}, c.dim);
  const unsigned bits = bits_of(c.key);
  Stored s;
  s.k_stride = code + 4;
  s.v_stride = row_bytes(c.value, c.dim) + 8;
  s.codes.resize(4 + n * s.k_stride + 64);
  s.params.resize(c.groups * c.dim * kGroupParamBytes);
  s.values.resize(8 + n * s.v_stride + 64);
  s.dequantized.resize(n * c.dim);
  std::vector<std::byte> block(channel_block_bytes(c.key, c.dim, c.group_tokens));
  for (std::size_t g = 0; g < c.groups; ++g) {
    ref::encode_channels(c.key, c.dim, c.group_tokens, k.data() + g * c.group_tokens * c.dim, c.dim, block.data());
    const std::byte* params = block.data() + c.group_tokens * code;
    std::copy_n(params, c.dim * kGroupParamBytes, s.params.data() + g * c.dim * kGroupParamBytes);
    for (std::size_t t = 0; t < c.group_tokens; ++t) {
      const std::size_t row = g * c.group_tokens + t;
      std::copy_n(block.data() + t * code, code, s.codes.data() + 4 + row * s.k_stride);
      for (std::size_t ch = 0; ch < c.dim; ++ch) {
        GroupParams p;
        std::memcpy(&p, params + ch * kGroupParamBytes, kGroupParamBytes);
        s.dequantized[row * c.dim + ch] = std::fma(static_cast<float>(ref::get_code(block.data() + t * code, ch, bits)),
                                                   half::f16_to_f32(p.scale), half::f16_to_f32(p.min));
      }
    }
  }
  ref::encode_rows(c.value, c.dim, v.data(), c.dim, n, s.values.data() + 8, s.v_stride);
  return s;
}

struct State {
  std::vector<float> m, l, acc, logits;
  State(std::size_t n_q, std::size_t dim, std::size_t rows)
      : m(n_q, -std::numeric_limits<float>::infinity()), l(n_q, 0.0f), acc(n_q * dim, 0.0f), logits(n_q * rows, 0.0f) {}
  void bind(AttendArgs& a) {
    a.m = m.data();
    a.l = l.data();
    a.acc = acc.data();
    a.logits = logits.data();
  }
  [[nodiscard]] std::vector<float> out(std::size_t n_q, std::size_t dim) const {
    std::vector<float> o(acc.size());
    for (std::size_t h = 0; h < n_q; ++h)
      for (std::size_t d = 0; d < dim; ++d) o[h * dim + d] = acc[h * dim + d] / l[h];
    return o;
  }
};

float max_abs(const std::vector<float>& x) {
  float m = 0.0f;
  for (float v : x) m = std::max(m, std::fabs(v));
  return m;
}

void expect_close(const State& want, const State& got, const ChannelCase& c, float tol) {
  const auto want_out = want.out(c.n_q, c.dim), got_out = got.out(c.n_q, c.dim);
  const float out_tol = tol * max_abs(want_out) + 1e-30f;
  for (std::size_t i = 0; i < want_out.size(); ++i) ASSERT_NEAR(want_out[i], got_out[i], out_tol) << "output " << i;
  for (std::size_t h = 0; h < c.n_q; ++h)
    ASSERT_NEAR(got.l[h] * std::exp(got.m[h] - want.m[h]) / want.l[h], 1.0f, tol) << "normalizer of head " << h;
  const float logit_tol = tol * max_abs(want.logits) + 1e-30f;
  for (std::size_t i = 0; i < want.logits.size(); ++i) ASSERT_NEAR(want.logits[i], got.logits[i], logit_tol) << "logit " << i;
}

void check(const Table& t, const ChannelCase& c) {
  SCOPED_TRACE(describe(c));
  const std::size_t n = c.groups * c.group_tokens;
  auto k = gaussian(n * c.dim, 31);
  for (std::size_t r = 0; r < n; ++r)  // outlier channels: what per-channel groups are for
    for (std::size_t d = 3; d < c.dim; d += 11) k[r * c.dim + d] = k[r * c.dim + d] * 20.0f + 5.0f;
  const auto v = gaussian(n * c.dim, 32);
  const auto q = gaussian(c.n_q * c.dim, 33);
  const Stored s = store(c, k, v);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.dim));
  float kappa = 0.0f;
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t h = 0; h < c.n_q; ++h) {
      float sum = 0.0f;
      for (std::size_t d = 0; d < c.dim; ++d) sum += std::fabs(q[h * c.dim + d] * s.dequantized[r * c.dim + d]);
      kappa = std::max(kappa, scale * sum);
    }
  const float tol = 2e-5f * std::max(1.0f, kappa / 32.0f);
  const std::byte* k0 = s.codes.data() + 4;
  const std::byte* v0 = s.values.data() + 8;

  // The definition: ref::attend over the dequantized keys as f32 rows.
  State defined(c.n_q, c.dim, c.rows);
  {
    AttendArgs a = attend_args(q.data(), c.n_q, c.dim, {Dtype::f32, 0}, c.value, c.dim * 4, s.v_stride, scale);
    const Segment all{reinterpret_cast<const std::byte*>(s.dequantized.data()), v0, n};
    a.segments = &all;
    a.n_segments = 1;
    a.rows = c.rows;
    a.logits_stride = c.rows;
    defined.bind(a);
    ref::attend(a);
  }
  AttendArgs base = attend_args(q.data(), c.n_q, c.dim, {c.key, 0}, c.value, s.k_stride, s.v_stride, scale);
  base.logits_stride = c.rows;
  State want(c.n_q, c.dim, c.rows);
  {
    const Segment all{k0, v0, n};
    AttendArgs a = base;
    a.segments = &all;
    a.n_segments = 1;
    a.rows = c.rows;
    want.bind(a);
    ref::attend_channels(a, s.params.data(), c.group_tokens);
  }
  expect_close(defined, want, c, 1e-6f);
  if (::testing::Test::HasFatalFailure()) return;

  std::vector<Segment> segs;  // uneven pages, independent of the groups
  for (std::size_t i = 0, start = 0; i < c.segments; ++i) {
    const std::size_t end = i + 1 == c.segments ? n : std::min(n, start + n * (i + 1) * (i + 1) / (c.segments * c.segments));
    segs.push_back({k0 + start * s.k_stride, v0 + start * s.v_stride, end - start});
    start = end;
  }
  State got(c.n_q, c.dim, c.rows);
  AttendArgs a = base;
  a.segments = segs.data();
  a.n_segments = segs.size();
  a.rows = c.rows;
  got.bind(a);
  t.attend_channels(a, s.params.data(), c.group_tokens);
  expect_close(want, got, c, tol);
}

using AttendChannelsTest = IsaTest;

TEST_P(AttendChannelsTest, EveryKeyWidthAndValueFormat) {
  for (Dtype key : {Dtype::q2, Dtype::q4, Dtype::q8})
    for (RowFormat value : all_formats(32)) {
      check(kernels(), {key, value, 128, 32, 5, 4, 160, 1});
      if (HasFatalFailure()) return;
    }
}

TEST_P(AttendChannelsTest, DimsGroupSizesAndHeadCounts) {
  for (std::size_t dim : {8, 64, 136, 256})  // 136: a half vector past the last full one on AVX-512
    for (std::size_t g : {8, 32, 48, 128})
      for (std::size_t n_q : {1, 3, 4, 5}) {
        check(kernels(), {Dtype::q4, {Dtype::q2, 8}, dim, g, 3, n_q, 3 * g, 1});
        if (HasFatalFailure()) return;
      }
}

TEST_P(AttendChannelsTest, PagesAndCausalLimit) {
  for (std::size_t pages : {1, 3, 7}) {
    check(kernels(), {Dtype::q2, {Dtype::q2, 32}, 64, 32, 40, 4, 1280, pages});
    check(kernels(), {Dtype::q4, {Dtype::f16, 0}, 64, 32, 40, 2, 999, pages});  // limit inside a group
    check(kernels(), {Dtype::q4, {Dtype::q4, 32}, 64, 32, 4, 4, 1, pages});
    if (HasFatalFailure()) return;
  }
}

KVC_INSTANTIATE_FOR_EVERY_ISA(AttendChannelsTest);

}  // namespace
}  // namespace kvc::kernels::testing
