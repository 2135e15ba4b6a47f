#pragma once
// The scalar reference kernels: the specification of every row format and of decode attention.
// SIMD kernels must produce the same quantized codes and scales bit for bit, and attention
// within the tolerances stated in tests/kernels. Readability over speed.
#include "kvc/kernels/format.hpp"
#include "kvc/kernels/fp8.hpp"
#include "kvc/kernels/half.hpp"
#include "kvc/kernels/table.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

namespace kvc::kernels::ref {

// Largest stored row the scalar reference attends over (stack buffers, no allocation).
inline constexpr std::size_t kMaxDim = 1024;

// The {f16 scale, f16 min} pair is the block struct of format.hpp; this spelling stays for callers.
using GroupParams = kvc::kernels::GroupParams;

// Asymmetric min/scale of one group: min rounds down and scale rounds up to f16, so the stored
// range covers every input and the round-trip error is at most scale/2.
inline GroupParams group_params(const float* x, std::size_t n, unsigned bits) noexcept {
  float lo = x[0], hi = x[0];
  for (std::size_t i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  const auto levels = static_cast<float>((1u << bits) - 1u);
  const std::uint16_t min_h = half::f32_to_f16_down(lo);
  const float range = hi - half::f16_to_f32(min_h);
  return {half::f32_to_f16_up(range / levels), min_h};
}

inline std::uint8_t quantize_value(float x, float min, float inv_scale, unsigned bits) noexcept {
  const float levels = static_cast<float>((1u << bits) - 1u);
  const float c = std::nearbyint((x - min) * inv_scale);
  return static_cast<std::uint8_t>(std::clamp(c, 0.0f, levels));
}

inline void put_code(std::byte* codes, std::size_t i, std::uint8_t c, unsigned bits) noexcept {
  const std::size_t per_byte = 8 / bits;
  const auto shift = static_cast<unsigned>((i % per_byte) * bits);
  auto& b = codes[i / per_byte];
  const auto mask = static_cast<unsigned>(((1u << bits) - 1u) << shift);
  b = static_cast<std::byte>((static_cast<unsigned>(b) & ~mask) | (static_cast<unsigned>(c) << shift));
}

inline std::uint8_t get_code(const std::byte* codes, std::size_t i, unsigned bits) noexcept {
  const std::size_t per_byte = 8 / bits;
  const auto shift = static_cast<unsigned>((i % per_byte) * bits);
  return static_cast<std::uint8_t>((static_cast<unsigned>(codes[i / per_byte]) >> shift) & ((1u << bits) - 1u));
}

// Element formats: one code per element, converted by To (f32 -> code) and From (code -> f32).
template <class Code, Code (*To)(float), float (*From)(Code)>
struct ElementCodec {
  static void encode(RowFormat, std::size_t dim, const float* x, std::byte* dst) noexcept {
    for (std::size_t i = 0; i < dim; ++i) {
      const Code c = To(x[i]);
      std::memcpy(dst + i * sizeof(Code), &c, sizeof(Code));
    }
  }
  static void decode(RowFormat, std::size_t dim, const std::byte* src, float* y) noexcept {
    for (std::size_t i = 0; i < dim; ++i) {
      Code c;
      std::memcpy(&c, src + i * sizeof(Code), sizeof(Code));
      y[i] = From(c);
    }
  }
};

inline float f32_identity(float x) noexcept { return x; }
using F32Codec = ElementCodec<float, &f32_identity, &f32_identity>;
using F16Codec = ElementCodec<std::uint16_t, &half::f32_to_f16, &half::f16_to_f32>;
using Bf16Codec = ElementCodec<std::uint16_t, &half::f32_to_bf16, &half::bf16_to_f32>;
using E4m3Codec = ElementCodec<std::uint8_t, &fp8::f32_to_e4m3, &fp8::e4m3_to_f32>;

// Grouped formats (q8, q4, q2): per group, group_params, then the codes from them.
struct GroupedCodec {
  static void encode(RowFormat f, std::size_t dim, const float* x, std::byte* dst) noexcept {
    const unsigned bits = bits_of(f.dtype);
    std::byte* params = dst + code_bytes(f, dim);
    for (std::size_t g = 0; g * f.group < dim; ++g) {
      const float* xg = x + g * f.group;
      const GroupParams p = group_params(xg, f.group, bits);
      std::memcpy(params + g * kGroupParamBytes, &p, kGroupParamBytes);
      const float scale = half::f16_to_f32(p.scale);
      const float min = half::f16_to_f32(p.min);
      const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
      for (std::size_t i = 0; i < f.group; ++i)
        put_code(dst, g * f.group + i, quantize_value(xg[i], min, inv, bits), bits);
    }
  }
  static void decode(RowFormat f, std::size_t dim, const std::byte* src, float* y) noexcept {
    const unsigned bits = bits_of(f.dtype);
    const std::byte* params = src + code_bytes(f, dim);
    for (std::size_t i = 0; i < dim; ++i) {
      GroupParams p;
      std::memcpy(&p, params + i / f.group * kGroupParamBytes, kGroupParamBytes);
      y[i] = std::fma(static_cast<float>(get_code(src, i, bits)), half::f16_to_f32(p.scale), half::f16_to_f32(p.min));
    }
  }
};

// The specification of every format's row codec: one row per format, in kFormatTraits' order.
struct RowCodec {
  Dtype dtype;
  void (*encode)(RowFormat f, std::size_t dim, const float* x, std::byte* dst) noexcept;
  void (*decode)(RowFormat f, std::size_t dim, const std::byte* src, float* y) noexcept;
};

template <class C>
inline constexpr RowCodec codec_row(Dtype d) noexcept {
  return {d, &C::encode, &C::decode};
}

inline constexpr RowCodec kRowCodecs[] = {
    codec_row<F32Codec>(Dtype::f32), codec_row<F16Codec>(Dtype::f16),     codec_row<Bf16Codec>(Dtype::bf16),
    codec_row<GroupedCodec>(Dtype::q8), codec_row<GroupedCodec>(Dtype::q4), codec_row<GroupedCodec>(Dtype::q2),
    codec_row<E4m3Codec>(Dtype::e4m3),
};

static_assert(sizeof(kRowCodecs) / sizeof(kRowCodecs[0]) == kDtypeCount &&
                  kvc::kernels::detail::rows_in_enum_order<&RowCodec::dtype>(kRowCodecs),
              "kRowCodecs needs one row per format, in the order of kFormatTraits.");

inline void encode_row(RowFormat f, std::size_t dim, const float* x, std::byte* dst) noexcept {
  kRowCodecs[static_cast<std::size_t>(f.dtype)].encode(f, dim, x, dst);
}

inline void decode_row(RowFormat f, std::size_t dim, const std::byte* src, float* y) noexcept {
  kRowCodecs[static_cast<std::size_t>(f.dtype)].decode(f, dim, src, y);
}

inline void encode_rows(RowFormat f, std::size_t dim, const float* src, std::size_t src_stride, std::size_t n,
                        std::byte* dst, std::size_t dst_stride) noexcept {
  for (std::size_t r = 0; r < n; ++r) encode_row(f, dim, src + r * src_stride, dst + r * dst_stride);
}

inline void decode_rows(RowFormat f, std::size_t dim, const std::byte* src, std::size_t src_stride, std::size_t n,
                        float* dst, std::size_t dst_stride) noexcept {
  for (std::size_t r = 0; r < n; ++r) decode_row(f, dim, src + r * src_stride, dst + r * dst_stride);
}

// One online-softmax step of one query head over one decoded row.
inline void softmax_step(float logit, const float* v, std::size_t v_dim, float& m, float& l, float* acc) noexcept {
  const float m_new = std::max(m, logit);
  const float alpha = std::exp(m - m_new);  // 0 on the first row (m = -inf)
  const float p = std::exp(logit - m_new);
  l = l * alpha + p;
  for (std::size_t d = 0; d < v_dim; ++d) acc[d] = acc[d] * alpha + p * v[d];
  m = m_new;
}

// Row by row, in order: decode (the key of row `row`, at `k_row`, by decode_key), logit = scale *
// sequential dot product, online-softmax update.
template <class DecodeKey>
inline void attend_rows(const AttendArgs& a, DecodeKey&& decode_key) noexcept {
  std::array<float, kMaxDim> k{};
  std::array<float, kMaxDim> v{};
  std::size_t row = 0;
  for (std::size_t s = 0; s < a.n_segments && row < a.rows; ++s) {
    const Segment& seg = a.segments[s];
    for (std::size_t r = 0; r < seg.rows && row < a.rows; ++r, ++row) {
      decode_key(row, seg.k + r * a.k_stride, k.data());
      decode_row(a.v_format, a.v_dim, seg.v + r * a.v_stride, v.data());
      for (std::size_t h = 0; h < a.n_q; ++h) {
        const float* q = a.q + h * a.k_dim;
        float dot = 0.0f;
        for (std::size_t d = 0; d < a.k_dim; ++d) dot += q[d] * k[d];
        const float logit = a.scale * dot;
        if (a.logits) a.logits[h * a.logits_stride + row] = logit;
        softmax_step(logit, v.data(), a.v_dim, a.m[h], a.l[h], a.acc + h * a.v_dim);
      }
    }
  }
}

inline void attend(const AttendArgs& a) noexcept {
  attend_rows(a, [&](std::size_t, const std::byte* k_row, float* k) { decode_row(a.k_format, a.k_dim, k_row, k); });
}

// Keys as per-channel codes (table.hpp, Table::attend_channels): element c of row r is
// fma(code, scale_c, min_c) with the pair of channel c in group r / group_tokens, exactly as
// decode_channels decodes a block.
inline void attend_channels(const AttendArgs& a, const std::byte* key_params, std::size_t group_tokens) noexcept {
  const unsigned bits = bits_of(a.k_format.dtype);
  attend_rows(a, [&](std::size_t row, const std::byte* codes, float* k) {
    const std::byte* params = key_params + row / group_tokens * a.k_dim * kGroupParamBytes;
    for (std::size_t c = 0; c < a.k_dim; ++c) {
      GroupParams p;
      std::memcpy(&p, params + c * kGroupParamBytes, kGroupParamBytes);
      k[c] = std::fma(static_cast<float>(get_code(codes, c, bits)), half::f16_to_f32(p.scale), half::f16_to_f32(p.min));
    }
  });
}

inline void softmax_weights(const float* logits, std::size_t n, float max, float scale, Combine combine,
                            float* out) noexcept {
  for (std::size_t r = 0; r < n; ++r) {
    const float p = std::exp(logits[r] - max) * scale;
    out[r] = combine == Combine::assign ? p : combine == Combine::add ? out[r] + p : std::max(out[r], p);
  }
}

// Per-channel (KIVI-style) quantization of a block of `tokens` rows: channel c's values over the
// block's tokens form one group, with group_params' rounding, in token order (so the first of
// several equal extremes, e.g. -0.0 vs 0.0, is the one kept). Layout: table.hpp,
// channel_block_bytes. Preconditions: dtype quantized, 1 <= tokens <= kMaxDim.
inline void encode_channels(Dtype dtype, std::size_t dim, std::size_t tokens, const float* src, std::size_t src_stride,
                            std::byte* dst) noexcept {
  const unsigned bits = bits_of(dtype);
  const std::size_t row_code_bytes = code_bytes(RowFormat{dtype, 0}, dim);
  std::byte* params = dst + tokens * row_code_bytes;
  std::array<float, kMaxDim> column{};
  for (std::size_t c = 0; c < dim; ++c) {
    for (std::size_t t = 0; t < tokens; ++t) column[t] = src[t * src_stride + c];
    const GroupParams p = group_params(column.data(), tokens, bits);
    std::memcpy(params + c * kGroupParamBytes, &p.scale, 2);
    std::memcpy(params + c * kGroupParamBytes + 2, &p.min, 2);
    const float scale = half::f16_to_f32(p.scale);
    const float min = half::f16_to_f32(p.min);
    const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    for (std::size_t t = 0; t < tokens; ++t)
      put_code(dst + t * row_code_bytes, c, quantize_value(column[t], min, inv, bits), bits);
  }
}

inline void decode_channels(Dtype dtype, std::size_t dim, std::size_t tokens, const std::byte* src, float* dst,
                            std::size_t dst_stride) noexcept {
  const unsigned bits = bits_of(dtype);
  const std::size_t row_code_bytes = code_bytes(RowFormat{dtype, 0}, dim);
  const std::byte* params = src + tokens * row_code_bytes;
  for (std::size_t c = 0; c < dim; ++c) {
    std::uint16_t s, m;
    std::memcpy(&s, params + c * kGroupParamBytes, 2);
    std::memcpy(&m, params + c * kGroupParamBytes + 2, 2);
    for (std::size_t t = 0; t < tokens; ++t)
      dst[t * dst_stride + c] =
          std::fma(static_cast<float>(get_code(src + t * row_code_bytes, c, bits)), half::f16_to_f32(s), half::f16_to_f32(m));
  }
}

}  // namespace kvc::kernels::ref
