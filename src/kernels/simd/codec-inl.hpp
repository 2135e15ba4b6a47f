// The SIMD row codecs (encode/decode of every row format, per-channel blocks), written once
// against an Ops type (Ops256, Ops512) and compiled by each per-ISA translation unit inside its
// own anonymous namespace (internal linkage). Bitwise equal to kvc/kernels/reference.hpp.
// Needs <immintrin.h>, <cstdint>, <cstddef> and kvc/kernels/table.hpp to be included first.

inline std::size_t min_size(std::size_t a, std::size_t b) noexcept { return a < b ? a : b; }

// The first element equal to 0.0f: the reference keeps the first of equal extremes, which
// decides the sign of a zero minimum or maximum (and so the stored bits).
inline float first_zero(const float* x, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    if (x[i] == 0.0f) return x[i];
  return 0.0f;
}

// Calls fn(d, values, n) for consecutive chunks of up to O::W decoded elements of one row;
// lanes at and beyond n hold unspecified finite values.
template <class O, class Fn>
inline void visit_row(kvc::kernels::RowFormat f, std::size_t dim, const std::byte* row, Fn&& fn) noexcept {
  using kvc::kernels::Dtype;
  constexpr std::size_t W = O::W;
  switch (f.dtype) {
    case Dtype::f32: {
      const auto* p = reinterpret_cast<const float*>(row);
      std::size_t d = 0;
      for (; d + W <= dim; d += W) fn(d, O::load(p + d), W);
      if (d < dim) fn(d, O::load_n(p + d, dim - d), dim - d);
      return;
    }
    case Dtype::f16:
    case Dtype::bf16: {
      const bool is_f16 = f.dtype == Dtype::f16;
      std::size_t d = 0;
      for (; d + W <= dim; d += W) fn(d, is_f16 ? O::load_f16(row + 2 * d, W) : O::load_bf16(row + 2 * d, W), W);
      if (d < dim) {
        const std::size_t n = dim - d;
        fn(d, is_f16 ? O::load_f16(row + 2 * d, n) : O::load_bf16(row + 2 * d, n), n);
      }
      return;
    }
    case Dtype::q8:
    case Dtype::q4:
    case Dtype::q2: {
      const unsigned bits = kvc::kernels::bits_of(f.dtype);
      const std::byte* params = row + dim * bits / 8;
      const std::size_t group = f.group;
      typename O::F s, m;
      if (group % W == 0) {
        for (std::size_t g = 0; g * group < dim; ++g) {
          O::load_params(params, g, g, s, m);
          for (std::size_t d = g * group; d < (g + 1) * group; d += W) fn(d, O::fmadd(O::load_codes(row, d, bits, W), s, m), W);
        }
        return;
      }
      for (std::size_t d = 0; d < dim; d += W) {  // a vector spans two groups of 8 (or a tail)
        const std::size_t n = min_size(W, dim - d);
        O::load_params(params, d / group, n > 8 ? (d + 8) / group : d / group, s, m);
        fn(d, O::fmadd(O::load_codes(row, d, bits, n), s, m), n);
      }
      return;
    }
  }
}

template <class O>
inline void decode_rows(kvc::kernels::RowFormat f, std::size_t dim, const std::byte* src, std::size_t src_stride,
                        std::size_t n, float* dst, std::size_t dst_stride) noexcept {
  for (std::size_t r = 0; r < n; ++r) {
    float* y = dst + r * dst_stride;
    visit_row<O>(f, dim, src + r * src_stride, [y](std::size_t d, typename O::F v, std::size_t k) { O::store_n(y + d, v, k); });
  }
}

// {op(a), op(b), op(c), op(d)} over the 8 lanes of each: a transpose-and-reduce, so four groups'
// extremes cost about as much as one horizontal reduction.
template <bool Max>
inline __m128 reduce4(__m256 a, __m256 b, __m256 c, __m256 d) noexcept {
  const auto op = [](__m256 x, __m256 y) { return Max ? _mm256_max_ps(x, y) : _mm256_min_ps(x, y); };
  const __m256 ab = op(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));  // a02 b02 a13 b13 | a46..
  const __m256 cd = op(_mm256_unpacklo_ps(c, d), _mm256_unpackhi_ps(c, d));
  const __m256 abcd = op(_mm256_shuffle_ps(ab, cd, 0x44), _mm256_shuffle_ps(ab, cd, 0xEE));  // a0-3 b0-3 c0-3 d0-3 | 4-7
  const __m128 lo = _mm256_castps256_ps128(abcd), hi = _mm256_extractf128_ps(abcd, 1);
  return Max ? _mm_max_ps(lo, hi) : _mm_min_ps(lo, hi);
}

// One row of q8/q4/q2 with group % O::W == 0. The parameters of four groups are computed
// together in the lanes of one 128-bit vector (f16 rounding with vcvtps2ph's rounding-mode
// immediates), which is what makes the encoder run at memory speed.
template <class O, unsigned bits>
inline void encode_quantized_row(kvc::kernels::RowFormat f, std::size_t dim, const float* x, std::byte* dst) noexcept {
  using F = typename O::F;
  constexpr std::size_t W = O::W;
  const auto levels = static_cast<float>((1u << bits) - 1u);
  const std::size_t group = f.group, groups = dim / group;
  std::byte* params = dst + dim * bits / 8;
  const F vlevels = O::set1(levels);
  for (std::size_t g0 = 0; g0 < groups; g0 += 4) {
    const std::size_t count = min_size(4, groups - g0);
    __m256 lo[4], hi[4];
    for (std::size_t k = 0; k < 4; ++k) {
      if (k >= count) {  // lanes without a group repeat the first one
        lo[k] = lo[0];
        hi[k] = hi[0];
        continue;
      }
      const float* xg = x + (g0 + k) * group;
      F l = O::load(xg), h = l;
      for (std::size_t i = W; i < group; i += W) {
        const F v = O::load(xg + i);
        l = O::min(v, l);
        h = O::max(v, h);
      }
      lo[k] = O::half_min(l);
      hi[k] = O::half_max(h);
    }
    __m128 vlo = reduce4<false>(lo[0], lo[1], lo[2], lo[3]);
    __m128 vhi = reduce4<true>(hi[0], hi[1], hi[2], hi[3]);
    const __m128 zero = _mm_setzero_ps();
    if (_mm_movemask_ps(_mm_or_ps(_mm_cmpeq_ps(vlo, zero), _mm_cmpeq_ps(vhi, zero))) != 0) {
      // A zero extreme: its sign is that of the group's first zero, as in the reference.
      alignas(16) float l4[4], h4[4];
      _mm_store_ps(l4, vlo);
      _mm_store_ps(h4, vhi);
      for (std::size_t k = 0; k < count; ++k) {
        if (l4[k] == 0.0f) l4[k] = first_zero(x + (g0 + k) * group, group);
        if (h4[k] == 0.0f) h4[k] = first_zero(x + (g0 + k) * group, group);
      }
      vlo = _mm_load_ps(l4);
      vhi = _mm_load_ps(h4);
    }
    const __m128 max16 = _mm_set1_ps(65504.0f), min16 = _mm_set1_ps(-65504.0f);
    const __m128i min_h = _mm_cvtps_ph(_mm_max_ps(min16, _mm_min_ps(max16, vlo)), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m128 min_f = _mm_cvtph_ps(min_h);
    const __m128 q = _mm_div_ps(_mm_sub_ps(vhi, min_f), _mm_set1_ps(levels));
    const __m128i scale_h = _mm_cvtps_ph(_mm_max_ps(min16, _mm_min_ps(max16, q)), _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
    const __m128 scale_f = _mm_cvtph_ps(scale_h);
    const __m128 inv = _mm_and_ps(_mm_cmpgt_ps(scale_f, zero), _mm_div_ps(_mm_set1_ps(1.0f), scale_f));
    alignas(16) std::uint16_t pairs[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(pairs), _mm_unpacklo_epi16(scale_h, min_h));
    __builtin_memcpy(params + g0 * 4, pairs, count * 4);
    alignas(16) float mins[4], invs[4];
    _mm_store_ps(mins, min_f);
    _mm_store_ps(invs, inv);
    for (std::size_t k = 0; k < count; ++k) {
      const float* xg = x + (g0 + k) * group;
      const F vmin = O::set1(mins[k]), vinv = O::set1(invs[k]);
      for (std::size_t i = 0; i < group; i += W)
        O::store_codes(dst, (g0 + k) * group + i, bits, O::quantize(O::load(xg + i), vmin, vinv, vlevels));
    }
  }
}

// Float formats for any dim; quantized formats need group % O::W == 0 (the caller picks O).
template <class O>
inline void encode_rows(kvc::kernels::RowFormat f, std::size_t dim, const float* src, std::size_t src_stride,
                        std::size_t n, std::byte* dst, std::size_t dst_stride) noexcept {
  using kvc::kernels::Dtype;
  constexpr std::size_t W = O::W;
  for (std::size_t r = 0; r < n; ++r) {
    const float* x = src + r * src_stride;
    std::byte* y = dst + r * dst_stride;
    switch (f.dtype) {
      case Dtype::f32:
        __builtin_memcpy(y, x, dim * sizeof(float));
        break;
      case Dtype::f16:
      case Dtype::bf16: {
        const bool is_f16 = f.dtype == Dtype::f16;
        for (std::size_t d = 0; d < dim; d += W) {
          const std::size_t k = min_size(W, dim - d);
          const typename O::F v = O::load_n(x + d, k);
          if (is_f16)
            O::store_f16(y + 2 * d, v, k);
          else
            O::store_bf16(y + 2 * d, v, k);
        }
        break;
      }
      case Dtype::q8:  // the code width is a template argument: no branch per stored vector
        encode_quantized_row<O, 8>(f, dim, x, y);
        break;
      case Dtype::q4:
        encode_quantized_row<O, 4>(f, dim, x, y);
        break;
      case Dtype::q2:
        encode_quantized_row<O, 2>(f, dim, x, y);
        break;
    }
  }
}

// Per-channel block (table.hpp, channel_block_bytes); dim % O::W == 0. Lanes are channels, so
// the min/max run over tokens in the reference's order and ties keep the same zero.
template <class O>
inline void encode_channels(kvc::kernels::Dtype dtype, std::size_t dim, std::size_t tokens, const float* src,
                            std::size_t src_stride, std::byte* dst) noexcept {
  using F = typename O::F;
  const unsigned bits = kvc::kernels::bits_of(dtype);
  const std::size_t row_code_bytes = dim * bits / 8;
  std::byte* params = dst + tokens * row_code_bytes;
  const F levels = O::set1(static_cast<float>((1u << bits) - 1u));
  for (std::size_t c = 0; c < dim; c += O::W) {
    F lo = O::load(src + c), hi = lo;
    for (std::size_t t = 1; t < tokens; ++t) {
      const F v = O::load(src + t * src_stride + c);
      lo = O::min(v, lo);
      hi = O::max(v, hi);
    }
    const auto min_h = O::template to_f16<_MM_FROUND_TO_NEG_INF>(O::clamp_f16(lo));
    const F min_f = O::from_f16(min_h);
    const auto scale_h = O::template to_f16<_MM_FROUND_TO_POS_INF>(O::clamp_f16(O::div(O::sub(hi, min_f), levels)));
    const F scale_f = O::from_f16(scale_h);
    const F inv = O::positive_or_zero(scale_f, O::div(O::set1(1.0f), scale_f));
    O::store_channel_params(params + c * 4, scale_h, min_h);
    for (std::size_t t = 0; t < tokens; ++t)
      O::store_codes(dst + t * row_code_bytes, c, bits, O::quantize(O::load(src + t * src_stride + c), min_f, inv, levels));
  }
}

template <class O>
inline void decode_channels(kvc::kernels::Dtype dtype, std::size_t dim, std::size_t tokens, const std::byte* src,
                            float* dst, std::size_t dst_stride) noexcept {
  const unsigned bits = kvc::kernels::bits_of(dtype);
  const std::size_t row_code_bytes = dim * bits / 8;
  const std::byte* params = src + tokens * row_code_bytes;
  for (std::size_t c = 0; c < dim; c += O::W) {
    typename O::F s, m;
    O::load_channel_params(params + c * 4, s, m);
    for (std::size_t t = 0; t < tokens; ++t)
      O::store(dst + t * dst_stride + c, O::fmadd(O::load_codes(src + t * row_code_bytes, c, bits, O::W), s, m));
  }
}
