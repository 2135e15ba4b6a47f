// encode_rows / decode_rows / encode_channels of every ISA against the scalar reference:
// codes and f16 parameters bit for bit, decoded floats bit for bit, and the round-trip bound.
#include "isa_test_util.hpp"

#include <bit>
#include <cmath>
#include <functional>
#include <initializer_list>

namespace kvc::kernels::testing {
namespace {

struct Data {
  const char* name;
  std::function<std::vector<float>(std::size_t n, std::size_t dim)> make;
  bool in_range;  // inside the f16 range: the round-trip bound applies
};

std::vector<Data> data_kinds() {
  return {
      {"gaussian", [](std::size_t n, std::size_t dim) { return gaussian(n * dim, 7); }, true},
      {"outlier_channels",
       [](std::size_t n, std::size_t dim) {
         auto v = gaussian(n * dim, 8);
         for (std::size_t r = 0; r < n; ++r)
           for (std::size_t c = 3; c < dim; c += 11) v[r * dim + c] *= 100.0f;
         return v;
       },
       true},
      {"equal_rows", [](std::size_t n, std::size_t dim) { return std::vector<float>(n * dim, 0.3f); }, true},
      {"offset_narrow",  // far from zero next to their range: x - min must not lose the range
       [](std::size_t n, std::size_t dim) {
         auto v = gaussian(n * dim, 13);
         for (auto& x : v) x = 1000.0f + 0.01f * x;
         return v;
       },
       true},
      {"signed_zeros",
       [](std::size_t n, std::size_t dim) {
         std::vector<float> v(n * dim);
         for (std::size_t i = 0; i < v.size(); ++i) v[i] = (i * 7 % 3 == 0) ? -0.0f : 0.0f;
         return v;
       },
       true},
      {"nonnegative_with_zeros",  // the minimum is a zero of either sign: its first one must win
       [](std::size_t n, std::size_t dim) {
         auto v = gaussian(n * dim, 9);
         for (std::size_t i = 0; i < v.size(); ++i) v[i] = (i % 5 == 1) ? -0.0f : (i % 5 == 3 ? 0.0f : std::fabs(v[i]));
         return v;
       },
       true},
      {"near_f16_max",
       [](std::size_t n, std::size_t dim) {
         auto v = gaussian(n * dim, 10);
         for (auto& x : v) x = x * 6.0e4f;
         return v;
       },
       false},
      {"huge_1e30",
       [](std::size_t n, std::size_t dim) {
         auto v = gaussian(n * dim, 11);
         for (std::size_t i = 0; i < v.size(); ++i) v[i] = (i % 3 == 0) ? v[i] * 1.0e30f : v[i];
         return v;
       },
       false},
      {"magnitude_per_8",  // 1e-8 .. 1e8 by chunks of 8: batches mix saturated and plain groups
       [](std::size_t n, std::size_t dim) {
         auto v = gaussian(n * dim, 14);
         for (std::size_t i = 0; i < v.size(); ++i) v[i] *= std::pow(10.0f, static_cast<float>((i / 8 * 5) % 17) - 8.0f);
         return v;
       },
       false},
      {"scale_near_f16_max",  // a range of 65504 * levels * (1 -+ 5e-4): unsaturated codes at the edge
       [](std::size_t n, std::size_t dim) {
         std::vector<float> v(n * dim);
         const float levels[] = {3.0f, 15.0f, 255.0f}, edge[] = {0.9995f, 1.0f, 1.0005f};
         for (std::size_t i = 0; i < v.size(); ++i) {
           const std::size_t chunk = i / 8;
           const float top = 65504.0f * levels[chunk % 3] * edge[chunk / 3 % 3];
           v[i] = top * static_cast<float>(i % 8) / 7.0f - (chunk % 2 == 0 ? 0.0f : 60000.0f);
         }
         return v;
       },
       false},
      {"one_saturating_group",  // an int4/int2 scale saturates in one group of 8, wherever in a chain
       [](std::size_t n, std::size_t dim) {
         auto v = gaussian(n * dim, 15);
         for (std::size_t r = 0; r < n; ++r) {
           const std::size_t at = r * dim + (r * 5 + 5) % (dim / 8 > 0 ? dim / 8 : 1) * 8;
           for (std::size_t i = 0; i < 8 && at + i < v.size(); ++i) v[at + i] = i % 2 == 0 ? 1.3e6f : -1e7f;
         }
         return v;
       },
       false},
      {"tiny_subnormal_f16",
       [](std::size_t n, std::size_t dim) {
         auto v = gaussian(n * dim, 12);
         for (auto& x : v) x *= 1.0e-6f;
         return v;
       },
       true},
  };
}

std::vector<RowFormat> formats_for(std::size_t dim) {
  std::vector<RowFormat> f;
  for (Dtype d : dtypes_of(Family::element)) f.push_back({d, 0});
  if (dim % 8 != 0) return f;
  for (Dtype d : dtypes_of(Family::grouped))
    for (std::size_t g : {8, 16, 24, 32, 64, 128, 256})
      if (g <= dim && dim % g == 0) f.push_back({d, static_cast<std::uint16_t>(g)});
  return f;
}

std::string describe(RowFormat f, std::size_t dim, std::size_t n, const char* data) {
  return std::string(dtype_name(f.dtype)) + "/g" + std::to_string(f.group) + " dim " + std::to_string(dim) + " rows " +
         std::to_string(n) + " data " + data;
}

float f16_param(const std::byte* row, RowFormat f, std::size_t dim, std::size_t g, std::size_t which) {
  std::uint16_t h;
  std::memcpy(&h, row + code_bytes(f, dim) + g * kGroupParamBytes + 2 * which, 2);
  return half::f16_to_f32(h);
}

// Rows x (dense, `dim` floats each) encoded by `t` and by the reference in every grouped format
// at each group size: bitwise equal.
void expect_quantized_rows_match(const Table& t, const std::vector<float>& x, std::size_t dim,
                                 std::initializer_list<std::uint16_t> groups) {
  const std::size_t n = x.size() / dim;
  for (Dtype d : dtypes_of(Family::grouped))
    for (std::uint16_t g : groups) {
      const RowFormat f{d, g};
      std::vector<std::byte> want(n * row_bytes(f, dim)), got(want.size());
      ref::encode_rows(f, dim, x.data(), dim, n, want.data(), row_bytes(f, dim));
      t.encode_rows(f, dim, x.data(), dim, n, got.data(), row_bytes(f, dim));
      EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size())) << dtype_name(d) << " g" << g;
    }
}

using CodecTest = IsaTest;

TEST_P(CodecTest, EncodeAndDecodeMatchTheReferenceBitwise) {
  std::size_t cases = 0;
  for (std::size_t dim : {1, 3, 8, 17, 24, 64, 80, 96, 128, 256}) {
    for (RowFormat f : formats_for(dim)) {
      for (std::size_t n : {1, 3, 17, 45}) {  // 45: on Intel, batches that prefetch rows ahead and ones that do not
        for (const Data& kind : data_kinds()) {
          SCOPED_TRACE(describe(f, dim, n, kind.name));
          const std::vector<float> x = kind.make(n, dim);
          const std::size_t src_stride = dim + 3, bytes = row_bytes(f, dim), dst_stride = bytes + 5;
          Misaligned<float> src(n * src_stride, 4);
          for (std::size_t r = 0; r < n; ++r) std::memcpy(src.data() + r * src_stride, &x[r * dim], dim * sizeof(float));
          Misaligned<std::byte> want(n * dst_stride, 0), got(n * dst_stride, f.dtype == Dtype::f32 ? 4 : 1);
          ref::encode_rows(f, dim, src.data(), src_stride, n, want.data(), dst_stride);
          kernels().encode_rows(f, dim, src.data(), src_stride, n, got.data(), dst_stride);
          for (std::size_t r = 0; r < n; ++r)
            ASSERT_EQ(0, std::memcmp(want.data() + r * dst_stride, got.data() + r * dst_stride, bytes)) << "row " << r;

          Misaligned<float> want_y(n * src_stride, 0), got_y(n * src_stride, 4);
          ref::decode_rows(f, dim, want.data(), dst_stride, n, want_y.data(), src_stride);
          kernels().decode_rows(f, dim, got.data(), dst_stride, n, got_y.data(), src_stride);
          for (std::size_t r = 0; r < n; ++r)
            for (std::size_t i = 0; i < dim; ++i) {
              const float a = want_y.data()[r * src_stride + i], b = got_y.data()[r * src_stride + i];
              ASSERT_EQ(std::bit_cast<std::uint32_t>(a), std::bit_cast<std::uint32_t>(b)) << "row " << r << " elem " << i;
            }

          // |x - decode(encode(x))| <= scale/2 for quantized rows, plus one ulp of the group's
          // largest magnitude (x - min and fma(code, scale, min) round at that magnitude);
          // element formats: their traits' bound inside their range.
          if (kind.in_range) {
            for (std::size_t r = 0; r < n; ++r)
              for (std::size_t i = 0; i < dim; ++i) {
                const float xi = x[r * dim + i], yi = got_y.data()[r * src_stride + i];
                const FormatTraits& t = traits(f.dtype);
                if (!is_quantized(f.dtype) && std::fabs(xi) > t.max_finite) continue;
                float bound = std::max(std::fabs(xi) * t.rel_error, t.abs_error);
                if (is_quantized(f.dtype)) {
                  const float scale = f16_param(got.data() + r * dst_stride, f, dim, i / f.group, 0);
                  const float min = f16_param(got.data() + r * dst_stride, f, dim, i / f.group, 1);
                  const float levels = static_cast<float>((1u << bits_of(f.dtype)) - 1u);
                  const float magnitude = std::max(std::fabs(min), std::fabs(min + levels * scale));
                  bound = scale / 2 + magnitude * 0x1p-23f + 1e-38f;
                }
                ASSERT_LE(std::fabs(xi - yi), bound) << "row " << r << " elem " << i << " x " << xi;
              }
          }
          ++cases;
        }
      }
    }
  }
  EXPECT_GT(cases, 1000u);
}

TEST_P(CodecTest, SaturatesAndRoundsSpecialValuesLikeTheReference) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> special{65504.0f, 65519.0f, 65520.0f, 1e30f,  -1e30f,   inf,       -inf,      -65504.0f,
                                   -65520.0f, 3.4e38f, 1e-40f,  -1e-40f, 5.96e-8f, -2.98e-8f, 2.98e-8f,  0.0f,
                                   -0.0f,     1.0f,    0x1.fffffep+127f, -0x1.fffffep+127f, 0x1.ff7p127f, 1.00390625f,
                                   std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN()};
  for (Dtype d : dtypes_of(Family::element)) {
    const RowFormat f{d, 0};
    const std::size_t dim = special.size(), bytes = bits_of(d) / 8;
    std::vector<std::byte> want(row_bytes(f, dim)), got(row_bytes(f, dim));
    ref::encode_rows(f, dim, special.data(), dim, 1, want.data(), 0);
    kernels().encode_rows(f, dim, special.data(), dim, 1, got.data(), 0);
    for (std::size_t i = 0; i < dim; ++i)
      EXPECT_EQ(0, std::memcmp(want.data() + i * bytes, got.data() + i * bytes, bytes)) << dtype_name(d) << " input " << special[i];
    std::vector<float> want_y(dim), got_y(dim);
    ref::decode_rows(f, dim, want.data(), 0, 1, want_y.data(), 0);
    kernels().decode_rows(f, dim, want.data(), 0, 1, got_y.data(), 0);
    for (std::size_t i = 0; i < dim; ++i)
      EXPECT_EQ(std::bit_cast<std::uint32_t>(want_y[i]), std::bit_cast<std::uint32_t>(got_y[i]))
          << dtype_name(d) << " input " << special[i];
  }
  // Quantized rows of extreme groups (finite inputs): saturated f16 params, codes clamped. The
  // pattern is tiled to 3 rows of 96 so that every group size's packed path sees it.
  const std::vector<float> pattern{1e30f, 1e30f, 1e30f, 1e30f, 1e30f, 1e30f, 1e30f, 1e30f,
                                   -1e30f, 0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 1e30f,
                                   -7e4f, -6.6e4f, 6.6e4f, 7e4f, 1.0f, -1.0f, 0.5f, 65504.0f};
  std::vector<float> x;
  for (std::size_t i = 0; i < 12; ++i) x.insert(x.end(), pattern.begin(), pattern.end());
  const std::size_t dim = 96;
  expect_quantized_rows_match(kernels(), x, dim, {8, 16, 32, 96});
}

// Every code of the element formats of up to 16 bits, decoded: bitwise the reference's value
// (NaN codes: a NaN of the same sign).
TEST_P(CodecTest, ElementFormatsDecodeEveryCodeLikeTheReference) {
  for (Dtype d : dtypes_of(Family::element)) {
    const unsigned bits = bits_of(d);
    if (bits > 16) continue;
    SCOPED_TRACE(dtype_name(d));
    const std::size_t dim = std::size_t{1} << bits, bytes = bits / 8;
    std::vector<std::byte> row(row_bytes({d, 0}, dim));
    for (std::size_t i = 0; i < dim; ++i) std::memcpy(row.data() + i * bytes, &i, bytes);  // little-endian
    std::vector<float> want(dim), got(dim);
    ref::decode_rows({d, 0}, dim, row.data(), 0, 1, want.data(), 0);
    kernels().decode_rows({d, 0}, dim, row.data(), 0, 1, got.data(), 0);
    for (std::size_t i = 0; i < dim; ++i) {
      if (std::isnan(want[i])) {
        ASSERT_TRUE(std::isnan(got[i])) << "code " << i;
        ASSERT_EQ(std::signbit(got[i]), std::signbit(want[i])) << "code " << i;
        continue;
      }
      ASSERT_EQ(std::bit_cast<std::uint32_t>(got[i]), std::bit_cast<std::uint32_t>(want[i])) << "code " << i;
    }
  }
}

// Rows of more groups than the batched encoder takes (kEncodeMaxGroups) go row by row, eight
// groups at a time: a partial last chain (dim 1000), a group that is no power of two (24, 1560),
// saturated scales in some chains.
TEST_P(CodecTest, RowsOfManyGroupsMatchTheReferenceBitwise) {
  for (const Data& kind : data_kinds()) {
    SCOPED_TRACE(kind.name);
    expect_quantized_rows_match(kernels(), kind.make(3, 1024), 1024, {8, 16});
    expect_quantized_rows_match(kernels(), kind.make(3, 1000), 1000, {8});
    expect_quantized_rows_match(kernels(), kind.make(3, 1560), 1560, {24});
  }
}

TEST_P(CodecTest, ChannelBlocksMatchTheReferenceBitwise) {
  std::size_t cases = 0;
  for (Dtype d : dtypes_of(Family::grouped)) {
    for (std::size_t dim : {8, 24, 64, 96, 128, 136, 240}) {  // every channel tile size (8, 4, 2, 1 vectors)
      for (std::size_t tokens : {1, 3, 17, 32, 128}) {
        for (const Data& kind : data_kinds()) {
          SCOPED_TRACE(std::string(dtype_name(d)) + " dim " + std::to_string(dim) + " tokens " + std::to_string(tokens) +
                       " " + kind.name);
          const std::vector<float> x = kind.make(tokens, dim);
          const std::size_t stride = dim + 1;
          Misaligned<float> src(tokens * stride, 4);
          for (std::size_t t = 0; t < tokens; ++t) std::memcpy(src.data() + t * stride, &x[t * dim], dim * sizeof(float));
          const std::size_t bytes = channel_block_bytes(d, dim, tokens);
          Misaligned<std::byte> want(bytes, 0), got(bytes, 3);
          ref::encode_channels(d, dim, tokens, src.data(), stride, want.data());
          kernels().encode_channels(d, dim, tokens, src.data(), stride, got.data());
          ASSERT_EQ(0, std::memcmp(want.data(), got.data(), bytes));
          Misaligned<float> want_y(tokens * stride, 0), got_y(tokens * stride, 4);
          ref::decode_channels(d, dim, tokens, want.data(), want_y.data(), stride);
          kernels().decode_channels(d, dim, tokens, got.data(), got_y.data(), stride);
          for (std::size_t t = 0; t < tokens; ++t)
            for (std::size_t c = 0; c < dim; ++c) {
              const float a = want_y.data()[t * stride + c], b = got_y.data()[t * stride + c];
              ASSERT_EQ(std::bit_cast<std::uint32_t>(a), std::bit_cast<std::uint32_t>(b));
              if (kind.in_range) {  // the row bound above: rounding at the channel's largest magnitude
                std::uint16_t sm[2];
                std::memcpy(sm, got.data() + tokens * code_bytes({d, 0}, dim) + c * kGroupParamBytes, 4);
                const float scale = half::f16_to_f32(sm[0]), min = half::f16_to_f32(sm[1]);
                const float levels = static_cast<float>((1u << bits_of(d)) - 1u);
                const float magnitude = std::max(std::fabs(min), std::fabs(min + levels * scale));
                ASSERT_LE(std::fabs(x[t * dim + c] - b), scale / 2 + magnitude * 0x1p-23f + 1e-38f);
              }
            }
          ++cases;
        }
      }
    }
  }
  EXPECT_EQ(cases, dtypes_of(Family::grouped).size() * 7u * 5u * data_kinds().size());
}

KVC_INSTANTIATE_FOR_EVERY_ISA(CodecTest);

}  // namespace
}  // namespace kvc::kernels::testing
