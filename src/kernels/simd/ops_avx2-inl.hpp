// 8-lane operations (AVX2 + FMA + F16C) used by the generic kernels (codec-inl.hpp, attend-inl.hpp).
// Included only by per-ISA translation units, inside their own anonymous namespace, so every
// function here has internal linkage: no AVX2 copy can be picked by the linker for another TU.
// Needs <immintrin.h>, <cstdint> and <cstddef> to be included first.

struct Ops256 {
  static constexpr std::size_t W = 8;
  using F = __m256;
  using I = __m256i;
  using H = __m128i;  // W halfs

  static F zero() noexcept { return _mm256_setzero_ps(); }
  static F set1(float x) noexcept { return _mm256_set1_ps(x); }
  static F load(const float* p) noexcept { return _mm256_loadu_ps(p); }
  static void store(float* p, F x) noexcept { _mm256_storeu_ps(p, x); }
  static I lane_mask(std::size_t n) noexcept {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static F load_n(const float* p, std::size_t n) noexcept {
    return n == W ? load(p) : _mm256_maskload_ps(p, lane_mask(n));
  }
  static void store_n(float* p, F x, std::size_t n) noexcept {
    if (n == W) return store(p, x);
    _mm256_maskstore_ps(p, lane_mask(n), x);
  }
  static float first(F x) noexcept { return _mm256_cvtss_f32(x); }
  static F add(F a, F b) noexcept { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) noexcept { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) noexcept { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) noexcept { return _mm256_div_ps(a, b); }
  static F fmadd(F a, F b, F c) noexcept { return _mm256_fmadd_ps(a, b, c); }
  // a < b ? a : b and a > b ? a : b: the operand order of std::min/std::max in the reference.
  static F min(F a, F b) noexcept { return _mm256_min_ps(a, b); }
  static F max(F a, F b) noexcept { return _mm256_max_ps(a, b); }
  static F positive_or_zero(F x, F y) noexcept {  // x > 0 ? y : 0
    return _mm256_and_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ), y);
  }

  static __m128 half_sum(F x) noexcept { return _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1)); }
  static float hsum(F x) noexcept {
    __m128 s = half_sum(x);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  // {hsum(a), hsum(b), hsum(c), hsum(d)} with shared shuffles.
  static __m128 hsum4(F a, F b, F c, F d) noexcept {
    const F ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d);
    return half_sum(_mm256_hadd_ps(ab, cd));
  }
  // Lane k: op over the lanes of v[k]. A transpose-and-reduce, so eight groups' extremes cost
  // about as much as two horizontal reductions.
  template <bool Max>
  static F reduce8(const F (&v)[8]) noexcept {
    const auto op = [](F x, F y) { return Max ? _mm256_max_ps(x, y) : _mm256_min_ps(x, y); };
    F p[4];  // p[i], per 128-bit lane: a02 b02 a13 b13 of a = v[2i], b = v[2i + 1]
    for (int i = 0; i < 4; ++i) p[i] = op(_mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    const F abcd = op(_mm256_shuffle_ps(p[0], p[1], 0x44), _mm256_shuffle_ps(p[0], p[1], 0xEE));  // a b c d | a b c d
    const F efgh = op(_mm256_shuffle_ps(p[2], p[3], 0x44), _mm256_shuffle_ps(p[2], p[3], 0xEE));
    return op(_mm256_permute2f128_ps(abcd, efgh, 0x20), _mm256_permute2f128_ps(abcd, efgh, 0x31));
  }
  static bool any_zero(F a, F b) noexcept {
    return _mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(a, zero(), _CMP_EQ_OQ), _mm256_cmp_ps(b, zero(), _CMP_EQ_OQ))) != 0;
  }
  static float hmin(F x) noexcept {
    __m128 s = _mm_min_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_min_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_min_ss(s, _mm_movehdup_ps(s)));
  }
  static float hmax(F x) noexcept {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
  }

  // --- for math-inl.hpp ---
  using M = __m256;  // lane masks
  static M less(F a, F b) noexcept { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static M unordered(F x) noexcept { return _mm256_cmp_ps(x, x, _CMP_UNORD_Q); }
  static F select(M m, F yes, F no) noexcept { return _mm256_blendv_ps(no, yes, m); }
  static F zero_where(M m, F x) noexcept { return _mm256_andnot_ps(m, x); }
  static F round_nearest(F x) noexcept { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F fnmadd(F a, F b, F c) noexcept { return _mm256_fnmadd_ps(a, b, c); }
  // 2^n for integral n in [-126, 127].
  static F pow2(F n) noexcept {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
  }

  // --- f16 / bf16 ---
  template <int Mode>
  static H to_f16(F x) noexcept { return _mm256_cvtps_ph(x, Mode | _MM_FROUND_NO_EXC); }
  static F from_f16(H h) noexcept { return _mm256_cvtph_ps(h); }
  // A NaN becomes the quiet NaN of its sign: its payload is not kept (half.hpp).
  static F canonical_nan(F x) noexcept {
    const F nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    const F canon = _mm256_or_ps(_mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(INT32_MIN))),
                                 _mm256_castsi256_ps(_mm256_set1_epi32(0x7FC00000)));
    return _mm256_blendv_ps(x, canon, nan);
  }
  // Clamp to the finite f16 range; NaN passes through (the second operand wins on NaN).
  static F clamp_f16(F x) noexcept {
    return _mm256_max_ps(_mm256_set1_ps(-65504.0f), _mm256_min_ps(_mm256_set1_ps(65504.0f), x));
  }
  static F load_f16(const std::byte* p, std::size_t n) noexcept {
    if (n == W) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    alignas(16) std::uint16_t buf[8] = {};
    __builtin_memcpy(buf, p, 2 * n);
    return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(buf)));
  }
  static void store_halfs(std::byte* p, H h, std::size_t n) noexcept {
    if (n == W) return _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h);
    alignas(16) std::uint16_t buf[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(buf), h);
    __builtin_memcpy(p, buf, 2 * n);
  }
  static void store_f16(std::byte* p, F x, std::size_t n) noexcept {
    store_halfs(p, to_f16<_MM_FROUND_TO_NEAREST_INT>(clamp_f16(canonical_nan(x))), n);
  }
  static F load_bf16(const std::byte* p, std::size_t n) noexcept {
    __m128i h;
    if (n == W) {
      h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    } else {
      alignas(16) std::uint16_t buf[8] = {};
      __builtin_memcpy(buf, p, 2 * n);
      h = _mm_load_si128(reinterpret_cast<const __m128i*>(buf));
    }
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static void store_bf16(std::byte* p, F xf, std::size_t n) noexcept {
    const I x = _mm256_castps_si256(xf);
    const I exp_mask = _mm256_set1_epi32(0x7F800000);
    const I abs = _mm256_and_si256(x, _mm256_set1_epi32(0x7FFFFFFF));
    const I nan = _mm256_cmpgt_epi32(abs, exp_mask);
    const I hi = _mm256_srli_epi32(x, 16);
    const I rounded = _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7FFF)), _mm256_and_si256(hi, _mm256_set1_epi32(1)));
    const I overflow = _mm256_andnot_si256(_mm256_cmpeq_epi32(_mm256_and_si256(x, exp_mask), exp_mask),
                                           _mm256_cmpeq_epi32(_mm256_and_si256(rounded, exp_mask), exp_mask));
    I r = _mm256_srli_epi32(rounded, 16);
    r = _mm256_blendv_epi8(r, _mm256_or_si256(_mm256_and_si256(hi, _mm256_set1_epi32(0x8000)), _mm256_set1_epi32(0x7F7F)), overflow);
    r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
    const I packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    store_halfs(p, _mm256_castsi256_si128(packed), n);
  }

  // --- quantized codes (quantized rows have dims that are multiples of 8: n is always W) ---
  static std::uint32_t load_u32(const std::byte* p) noexcept {
    std::uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
  }
  static F load_codes(const std::byte* codes, std::size_t d0, unsigned bits, std::size_t /*n*/) noexcept {
    __m128i b;
    if (bits == 8) {
      b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + d0));
    } else if (bits == 4) {
      const __m128i x = _mm_cvtsi32_si128(static_cast<int>(load_u32(codes + d0 / 2)));
      const __m128i nib = _mm_set1_epi8(0x0F);
      b = _mm_unpacklo_epi8(_mm_and_si128(x, nib), _mm_and_si128(_mm_srli_epi16(x, 4), nib));
    } else {
      std::uint16_t v;
      __builtin_memcpy(&v, codes + d0 / 4, 2);
      const __m128i x = _mm_shuffle_epi8(_mm_cvtsi32_si128(v), _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0));
      const I w = _mm256_srlv_epi32(_mm256_cvtepu8_epi32(x), _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
      return _mm256_cvtepi32_ps(_mm256_and_si256(w, _mm256_set1_epi32(3)));
    }
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
  }
  // nearbyint((x - min) * inv) clamped to [0, levels]; clamping first also keeps huge values
  // away from cvtps2dq's 0x80000000.
  static I quantize(F x, F min, F inv, F levels) noexcept {
    const F v = _mm256_mul_ps(_mm256_sub_ps(x, min), inv);
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), levels));
  }
  // For store_codes4, whose saturating packs turn negative codes into 0: clamped above only.
  static I quantize_hi(F x, F min, F inv, F levels) noexcept {
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(_mm256_sub_ps(x, min), inv), levels));
  }
  // Not clamped: codes above levels or below 0 (down to INT_MIN) are the caller's to rule out
  // or to saturate (quantize_groups: no saturated scale, and store_codes4's packs).
  static I quantize_unclamped(F x, F min, F inv) noexcept {
    return _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(x, min), inv));
  }
  // Whether a lane holds scale 65504, the f16 maximum clamp_f16 may have saturated it to.
  static bool any_f16_max(H scale) noexcept {
    return _mm_movemask_epi8(_mm_cmpeq_epi16(scale, _mm_set1_epi16(0x7BFF))) != 0;
  }
  // 4W consecutive codes packed to `bits` at element d0 (dword j of lane L holds
  // codes 4L..4L+3 of c[j] after the packs).
  static void store_codes4(std::byte* codes, std::size_t d0, unsigned bits, const I (&c)[4]) noexcept {
    const I b = _mm256_permutevar8x32_epi32(
        _mm256_packus_epi16(_mm256_packus_epi32(c[0], c[1]), _mm256_packus_epi32(c[2], c[3])),
        _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    if (bits == 8) {
      _mm256_storeu_si256(reinterpret_cast<I*>(codes + d0), b);
    } else if (bits == 4) {
      const I pairs = _mm256_maddubs_epi16(b, _mm256_set1_epi16(0x1001));
      const __m128i r = _mm_packus_epi16(_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + d0 / 2), r);
    } else {
      const I quads = _mm256_madd_epi16(_mm256_maddubs_epi16(b, _mm256_set1_epi16(0x0401)), _mm256_set1_epi32(0x00100001));
      const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(quads), _mm256_extracti128_si256(quads, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + d0 / 4), _mm_packus_epi16(w, w));
    }
  }
  static void store_codes(std::byte* codes, std::size_t d0, unsigned bits, I c) noexcept {
    if (bits == 8) {
      const I b = _mm256_shuffle_epi8(c, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
      const __m128i r = _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + d0), r);
    } else if (bits == 4) {
      const I t = _mm256_or_si256(c, _mm256_srli_epi64(c, 28));
      const I b = _mm256_shuffle_epi8(t, _mm256_setr_epi8(0, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                                          0, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
      const __m128i r = _mm_unpacklo_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
      const auto v = static_cast<std::uint32_t>(_mm_cvtsi128_si32(r));
      __builtin_memcpy(codes + d0 / 2, &v, 4);
    } else {
      I t = _mm256_sllv_epi32(c, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
      t = _mm256_or_si256(t, _mm256_srli_si256(t, 8));
      t = _mm256_or_si256(t, _mm256_srli_si256(t, 4));
      const auto v = static_cast<std::uint16_t>((_mm256_extract_epi32(t, 0) & 0xFF) | ((_mm256_extract_epi32(t, 4) & 0xFF) << 8));
      __builtin_memcpy(codes + d0 / 4, &v, 2);
    }
  }
  // Scale and min of lanes [0, 8) from group ga (gb is for wider vectors).
  static void load_params(const std::byte* params, std::size_t ga, std::size_t /*gb*/, F& s, F& m) noexcept {
    const __m128 v = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(load_u32(params + 4 * ga))));
    s = _mm256_broadcastss_ps(v);
    m = _mm256_broadcastss_ps(_mm_movehdup_ps(v));
  }
  // W channels' interleaved {scale, min} pairs.
  static void load_channel_params(const std::byte* p, F& s, F& m) noexcept {
    const I x = _mm256_loadu_si256(reinterpret_cast<const I*>(p));
    const I lo = _mm256_and_si256(x, _mm256_set1_epi32(0xFFFF));
    const I hi = _mm256_srli_epi32(x, 16);
    const I packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8);
    s = _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
    m = _mm256_cvtph_ps(_mm256_extracti128_si256(packed, 1));
  }
  static void store_channel_params(std::byte* p, H s, H m) noexcept {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm_unpacklo_epi16(s, m));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 16), _mm_unpackhi_epi16(s, m));
  }
};
