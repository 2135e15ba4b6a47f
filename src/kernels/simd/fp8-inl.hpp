// The e4m3 row format on SIMD: Elements<Dtype::e4m3> (formats-inl.hpp), bitwise equal to the
// scalar specification in kvc/kernels/fp8.hpp. Written for 8 lanes (AVX2) and 16 lanes
// (AVX-512 F/BW/VL) with the same steps; the branch of the other width is discarded.
//
// Decode with integer steps, no table: magnitude m = c & 0x7F; normals are the f32 bits
// (m << 20) + (120 << 23) (exponent rebias 127 - 7), subnormals (m < 8) m * 2^-9, converted;
// then the sign, and NaN for m = 0x7F. (Multiplying the bits m << 20 by 2^120 would cover both
// but feeds f32 subnormals to the multiplier, which Intel cores may serve by microcode.)

template <class O>
inline typename O::F e4m3_load(const std::byte* p, std::size_t n) noexcept {
  if constexpr (O::W == 8) {
    std::uint64_t raw = 0;
    __builtin_memcpy(&raw, p, n);
    const __m256i c = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(raw)));
    const __m256i mag = _mm256_and_si256(c, _mm256_set1_epi32(0x7F));
    const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x80)), 24);
    const __m256i normal = _mm256_add_epi32(_mm256_slli_epi32(mag, 20), _mm256_set1_epi32(120 << 23));
    const __m256i sub = _mm256_castps_si256(_mm256_mul_ps(_mm256_cvtepi32_ps(mag), _mm256_set1_ps(0x1p-9f)));
    __m256i bits = _mm256_blendv_epi8(normal, sub, _mm256_cmpgt_epi32(_mm256_set1_epi32(8), mag));
    bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x7FC00000), _mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7F)));
    return _mm256_castsi256_ps(_mm256_or_si256(bits, sign));
  } else {
    const __m128i raw = n == 16 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p))
                                : _mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << n) - 1u), p);
    const __m512i c = _mm512_cvtepu8_epi32(raw);
    const __m512i mag = _mm512_and_si512(c, _mm512_set1_epi32(0x7F));
    const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x80)), 24);
    const __m512i normal = _mm512_add_epi32(_mm512_slli_epi32(mag, 20), _mm512_set1_epi32(120 << 23));
    const __m512i sub = _mm512_castps_si512(_mm512_mul_ps(_mm512_cvtepi32_ps(mag), _mm512_set1_ps(0x1p-9f)));
    __m512i bits = _mm512_mask_blend_epi32(_mm512_cmplt_epi32_mask(mag, _mm512_set1_epi32(8)), normal, sub);
    bits = _mm512_mask_mov_epi32(bits, _mm512_cmpeq_epi32_mask(mag, _mm512_set1_epi32(0x7F)), _mm512_set1_epi32(0x7FC00000));
    return _mm512_castsi512_ps(_mm512_or_si512(bits, sign));
  }
}

// Encode, the scalar steps on every lane: significand s rounded to nearest even at r bits
// ((s + 2^(r-1) - 1 + lsb) >> r, r = 20 for normals, 14 - e below 2^-6, the exponent clamped so
// that r <= 31), then the biased exponent added, saturation at 448, NaN, the sign.
template <class O>
inline void e4m3_store(std::byte* p, typename O::F v, std::size_t n) noexcept {
  if constexpr (O::W == 8) {
    const __m256i x = _mm256_castps_si256(v);
    const __m256i abs = _mm256_and_si256(x, _mm256_set1_epi32(0x7FFFFFFF));
    const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(x, 24), _mm256_set1_epi32(0x80));
    const __m256i e = _mm256_max_epi32(_mm256_sub_epi32(_mm256_srli_epi32(abs, 23), _mm256_set1_epi32(127)),
                                       _mm256_set1_epi32(-17));
    const __m256i small = _mm256_cmpgt_epi32(_mm256_set1_epi32(-6), e);
    const __m256i r = _mm256_blendv_epi8(_mm256_set1_epi32(20), _mm256_sub_epi32(_mm256_set1_epi32(14), e), small);
    const __m256i s = _mm256_or_si256(_mm256_and_si256(abs, _mm256_set1_epi32(0x7FFFFF)), _mm256_set1_epi32(0x800000));
    const __m256i half_less_1 =
        _mm256_sub_epi32(_mm256_sllv_epi32(_mm256_set1_epi32(1), _mm256_sub_epi32(r, _mm256_set1_epi32(1))),
                         _mm256_set1_epi32(1));
    const __m256i lsb = _mm256_and_si256(_mm256_srlv_epi32(s, r), _mm256_set1_epi32(1));
    const __m256i q = _mm256_srlv_epi32(_mm256_add_epi32(_mm256_add_epi32(s, half_less_1), lsb), r);
    const __m256i base = _mm256_andnot_si256(small, _mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(6)), 3));
    __m256i code = _mm256_add_epi32(base, q);
    code = _mm256_blendv_epi8(code, _mm256_set1_epi32(0x7E), _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x43DFFFFF)));
    code = _mm256_blendv_epi8(code, _mm256_set1_epi32(0x7F), _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7F800000)));
    code = _mm256_or_si256(code, sign);
    const __m256i bytes = _mm256_packus_epi16(_mm256_packus_epi32(code, code), _mm256_setzero_si256());
    const __m128i out = _mm_unpacklo_epi32(_mm256_castsi256_si128(bytes), _mm256_extracti128_si256(bytes, 1));
    if (n == 8) return _mm_storel_epi64(reinterpret_cast<__m128i*>(p), out);
    alignas(16) std::byte buf[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(buf), out);
    __builtin_memcpy(p, buf, n);
  } else {
    const __m512i x = _mm512_castps_si512(v);
    const __m512i abs = _mm512_and_si512(x, _mm512_set1_epi32(0x7FFFFFFF));
    const __m512i sign = _mm512_and_si512(_mm512_srli_epi32(x, 24), _mm512_set1_epi32(0x80));
    const __m512i e = _mm512_max_epi32(_mm512_sub_epi32(_mm512_srli_epi32(abs, 23), _mm512_set1_epi32(127)),
                                       _mm512_set1_epi32(-17));
    const __mmask16 small = _mm512_cmplt_epi32_mask(e, _mm512_set1_epi32(-6));
    const __m512i r = _mm512_mask_sub_epi32(_mm512_set1_epi32(20), small, _mm512_set1_epi32(14), e);
    const __m512i s = _mm512_or_si512(_mm512_and_si512(abs, _mm512_set1_epi32(0x7FFFFF)), _mm512_set1_epi32(0x800000));
    const __m512i half_less_1 =
        _mm512_sub_epi32(_mm512_sllv_epi32(_mm512_set1_epi32(1), _mm512_sub_epi32(r, _mm512_set1_epi32(1))),
                         _mm512_set1_epi32(1));
    const __m512i lsb = _mm512_and_si512(_mm512_srlv_epi32(s, r), _mm512_set1_epi32(1));
    const __m512i q = _mm512_srlv_epi32(_mm512_add_epi32(_mm512_add_epi32(s, half_less_1), lsb), r);
    const __m512i base = _mm512_maskz_slli_epi32(static_cast<__mmask16>(~small),
                                                 _mm512_add_epi32(e, _mm512_set1_epi32(6)), 3);
    __m512i code = _mm512_add_epi32(base, q);
    code = _mm512_mask_mov_epi32(code, _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x43DFFFFF)), _mm512_set1_epi32(0x7E));
    code = _mm512_mask_mov_epi32(code, _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7F800000)), _mm512_set1_epi32(0x7F));
    code = _mm512_or_si512(code, sign);
    _mm_mask_storeu_epi8(p, static_cast<__mmask16>((1u << n) - 1u), _mm512_cvtepi32_epi8(code));
  }
}

template <>
struct Elements<kvc::kernels::Dtype::e4m3> {
  template <class O>
  static typename O::F load(const std::byte* row, std::size_t d, std::size_t n) noexcept {
    return e4m3_load<O>(row + d, n);
  }
  template <class O>
  static void store(std::byte* row, std::size_t d, typename O::F v, std::size_t n) noexcept {
    e4m3_store<O>(row + d, v, n);
  }
};
