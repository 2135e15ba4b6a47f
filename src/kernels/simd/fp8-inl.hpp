// The e4m3 row format on SIMD: Elements<Dtype::e4m3> (formats-inl.hpp), bitwise equal to the
// scalar specification in kvc/kernels/fp8.hpp. Written for 8 lanes (AVX2) and 16 lanes
// (AVX-512 F/BW/VL) with the same steps; the branch of the other width is discarded.
//
// Decode through f16, no table: with the sign at bit 15 and the 7 magnitude bits at 13..7, an
// e4m3 byte is the f16 of value x * 2^-8, normals and subnormals alike (the f16 exponent field
// holds E, its mantissa M << 7), so vcvtph2ps and one exact multiply by 256 decode it; only NaN
// (S.1111.111, which would read as 480) is patched to the f16 quiet NaN of its sign first.
// Sign-extending the byte and shifting it by 7 puts the sign at bits 15 and 14; bit 14 is
// cleared. Against the integer decode this replaced (rebias, subnormal conversion and blend: 13
// operations a vector instead of 9), e4m3 attention at 4K rows, warm, as a multiple of f16's in
// the same run: avx512 1.51x -> 1.43x, avx2 1.93x -> 1.50x (docs/performance.md).

template <class O>
inline typename O::F e4m3_load(const std::byte* p, std::size_t n) noexcept {
  if constexpr (O::W == 8) {
    std::uint64_t raw = 0;
    __builtin_memcpy(&raw, p, n);
    __m128i h = _mm_cvtepi8_epi16(_mm_cvtsi64_si128(static_cast<long long>(raw)));
    h = _mm_and_si128(_mm_slli_epi16(h, 7), _mm_set1_epi16(static_cast<short>(0xBFFF)));
    const __m128i nan = _mm_cmpeq_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7FFF)), _mm_set1_epi16(0x3F80));
    const __m128i quiet = _mm_or_si128(_mm_and_si128(h, _mm_set1_epi16(static_cast<short>(0x8000))), _mm_set1_epi16(0x7E00));
    return _mm256_mul_ps(_mm256_cvtph_ps(_mm_blendv_epi8(h, quiet, nan)), _mm256_set1_ps(256.0f));
  } else {
    const __m128i raw = n == 16 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p))
                                : _mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << n) - 1u), p);
    const __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(raw), 7),
                                       _mm256_set1_epi16(static_cast<short>(0xBFFF)));
    const __mmask16 nan = _mm_cmpeq_epi8_mask(_mm_and_si128(raw, _mm_set1_epi8(0x7F)), _mm_set1_epi8(0x7F));
    // (h & 0x8000) | 0x7E00: ternary-logic table 0xEA is (A & B) | C.
    const __m256i quiet = _mm256_ternarylogic_epi32(h, _mm256_set1_epi16(static_cast<short>(0x8000)),
                                                    _mm256_set1_epi16(0x7E00), 0xEA);
    return _mm512_mul_ps(_mm512_cvtph_ps(_mm256_mask_blend_epi16(nan, h, quiet)), _mm512_set1_ps(256.0f));
  }
}

// Encode, the scalar steps on every lane, written once for both widths with GCC's generic
// vectors (compiled to the TU's instructions: vpsrlvd, blends), then narrowed to bytes and
// stored per width (vpmovdb, or packs): significand s
// rounded to nearest even at r bits ((s + 2^(r-1) - 1 + lsb) >> r, r = 20 for normals, 14 - e
// below 2^-6, the exponent clamped so that r <= 31), then the biased exponent added, saturation
// at 448, NaN, the sign.
template <std::size_t W>
struct GenericLanes;  // W lanes of GCC's generic vectors (a vector_size cannot depend on W)
template <>
struct GenericLanes<8> {
  using U32 = std::uint32_t __attribute__((vector_size(32)));
  using I32 = std::int32_t __attribute__((vector_size(32)));
};
template <>
struct GenericLanes<16> {
  using U32 = std::uint32_t __attribute__((vector_size(64)));
  using I32 = std::int32_t __attribute__((vector_size(64)));
};

template <class O>
inline void e4m3_store(std::byte* p, typename O::F v, std::size_t n) noexcept {
  using U32 = typename GenericLanes<O::W>::U32;
  using I32 = typename GenericLanes<O::W>::I32;
  const U32 x = __builtin_bit_cast(U32, v);
  const U32 abs = x & 0x7FFFFFFFu;
  const U32 sign = (x >> 24) & 0x80u;
  I32 e = __builtin_bit_cast(I32, abs >> 23) - 127;
  e = e < -17 ? I32{} - 17 : e;
  const I32 small = e < -6;
  const U32 r = __builtin_bit_cast(U32, small ? 14 - e : I32{} + 20);
  const U32 s = (abs & 0x7FFFFFu) | 0x800000u;
  const U32 q = (s + ((U32{} + 1u) << (r - 1u)) - 1u + ((s >> r) & 1u)) >> r;
  U32 code = __builtin_bit_cast(U32, small ? I32{} : (e + 6) << 3) + q;
  code = abs >= 0x43E00000u ? U32{} + 0x7Eu : code;
  code = abs > 0x7F800000u ? U32{} + 0x7Fu : code;
  // To bytes, per width (GCC narrows an 8-lane generic vector element by element on AVX2).
  const U32 out = code | sign;
  if constexpr (O::W == 8) {
    const __m256i c = __builtin_bit_cast(__m256i, out);
    const __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(c, c), _mm256_setzero_si256());
    const __m128i bytes = _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    if (n == 8) return _mm_storel_epi64(reinterpret_cast<__m128i*>(p), bytes);
    alignas(16) std::byte buf[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(buf), bytes);
    __builtin_memcpy(p, buf, n);
  } else {
    _mm_mask_storeu_epi8(p, static_cast<__mmask16>((1u << n) - 1u), _mm512_cvtepi32_epi8(__builtin_bit_cast(__m512i, out)));
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
