// 16-lane operations (AVX-512 F/BW/VL/DQ + F16C) used by the generic kernels in kernels-inl.hpp.
// Same rules as ops_avx2-inl.hpp: included inside an anonymous namespace of the AVX-512 TU only.
// Tails are masked loads and stores, so n may be anything in [1, 16].

struct Ops512 {
  static constexpr std::size_t W = 16;
  using F = __m512;
  using I = __m512i;
  using H = __m256i;

  static __mmask16 lane_mask(std::size_t n) noexcept { return static_cast<__mmask16>((1u << n) - 1u); }
  static F zero() noexcept { return _mm512_setzero_ps(); }
  static F set1(float x) noexcept { return _mm512_set1_ps(x); }
  static F load(const float* p) noexcept { return _mm512_loadu_ps(p); }
  static void store(float* p, F x) noexcept { _mm512_storeu_ps(p, x); }
  static F load_n(const float* p, std::size_t n) noexcept {
    return n == W ? load(p) : _mm512_maskz_loadu_ps(lane_mask(n), p);
  }
  static void store_n(float* p, F x, std::size_t n) noexcept {
    if (n == W) return store(p, x);
    _mm512_mask_storeu_ps(p, lane_mask(n), x);
  }
  static float first(F x) noexcept { return _mm512_cvtss_f32(x); }
  static F add(F a, F b) noexcept { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) noexcept { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) noexcept { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) noexcept { return _mm512_div_ps(a, b); }
  static F fmadd(F a, F b, F c) noexcept { return _mm512_fmadd_ps(a, b, c); }
  static F min(F a, F b) noexcept { return _mm512_min_ps(a, b); }
  static F max(F a, F b) noexcept { return _mm512_max_ps(a, b); }
  static F positive_or_zero(F x, F y) noexcept {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ), y);
  }

  static __m256 half_sum(F x) noexcept {
    return _mm256_add_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));
  }
  static float hsum(F x) noexcept {
    const __m256 h = half_sum(x);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  static __m128 hsum4(F a, F b, F c, F d) noexcept {
    const __m256 ab = _mm256_hadd_ps(half_sum(a), half_sum(b));
    const __m256 cd = _mm256_hadd_ps(half_sum(c), half_sum(d));
    const __m256 t = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
  }
  // {op(a), op(b), op(c), op(d)} over 16 lanes: the 4 x 4 transpose-and-reduce of reduce4_256
  // in every 128-bit lane, then the lanes folded, so nothing is narrowed per vector.
  template <bool Max>
  static __m128 reduce4(F a, F b, F c, F d) noexcept {
    const auto op = [](F x, F y) { return Max ? _mm512_max_ps(x, y) : _mm512_min_ps(x, y); };
    const F ab = op(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    const F cd = op(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    F x = op(_mm512_shuffle_ps(ab, cd, 0x44), _mm512_shuffle_ps(ab, cd, 0xEE));  // lane L: a b c d of lane L
    x = op(x, _mm512_shuffle_f32x4(x, x, 0x4E));
    x = op(x, _mm512_shuffle_f32x4(x, x, 0xB1));
    return _mm512_castps512_ps128(x);
  }
  // Attention logits of 4 rows x 4 heads: lane 4 * h + r is the sum of the lanes of x[r][h]. A
  // transposing reduction (15 adds, 20 shuffles, 10 blends) instead of one hsum4 per row; where a
  // pair's halves swap, a blend replaces the second shuffle.
  static F sum_tile(const F (&x)[4][4]) noexcept {
    F y[8];
    for (int i = 0; i < 8; ++i) {
      const F a = x[i / 2][i % 2 * 2], b = x[i / 2][i % 2 * 2 + 1];
      y[i] = _mm512_add_ps(_mm512_mask_blend_ps(0xFF00, a, b), _mm512_shuffle_f32x4(a, b, 0x4E));
    }
    F z[4];
    for (int i = 0; i < 4; ++i)
      z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], 0x88),
                           _mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], 0xDD));
    const F w0 = _mm512_add_ps(_mm512_mask_blend_ps(0xCCCC, z[0], z[1]), _mm512_shuffle_ps(z[0], z[1], 0x4E));
    const F w1 = _mm512_add_ps(_mm512_mask_blend_ps(0xCCCC, z[2], z[3]), _mm512_shuffle_ps(z[2], z[3], 0x4E));
    return _mm512_add_ps(_mm512_shuffle_ps(w0, w1, 0x88), _mm512_shuffle_ps(w0, w1, 0xDD));
  }
  // Lanes [4 * h, 4 * h + 4) to p[h].
  static void store_quarters(float* const (&p)[4], F x) noexcept {
    _mm_storeu_ps(p[0], _mm512_castps512_ps128(x));
    _mm_storeu_ps(p[1], _mm512_extractf32x4_ps(x, 1));
    _mm_storeu_ps(p[2], _mm512_extractf32x4_ps(x, 2));
    _mm_storeu_ps(p[3], _mm512_extractf32x4_ps(x, 3));
  }
  static float hmin(F x) noexcept { return _mm512_reduce_min_ps(x); }
  static float hmax(F x) noexcept { return _mm512_reduce_max_ps(x); }

  // --- for math-inl.hpp ---
  using M = __mmask16;
  static M less(F a, F b) noexcept { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M unordered(F x) noexcept { return _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q); }
  static F select(M m, F yes, F no) noexcept { return _mm512_mask_blend_ps(m, no, yes); }
  static F zero_where(M m, F x) noexcept { return _mm512_maskz_mov_ps(static_cast<M>(~m), x); }
  static F round_nearest(F x) noexcept { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F fnmadd(F a, F b, F c) noexcept { return _mm512_fnmadd_ps(a, b, c); }
  // 2^n for integral n in [-126, 127].
  static F pow2(F n) noexcept {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
  }

  // --- f16 / bf16 ---
  template <int Mode>
  static H to_f16(F x) noexcept { return _mm512_cvtps_ph(x, Mode | _MM_FROUND_NO_EXC); }
  static F from_f16(H h) noexcept { return _mm512_cvtph_ps(h); }
  static F canonical_nan(F x) noexcept {
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    const I canon = _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN)),
                                    _mm512_set1_epi32(0x7FC00000));
    return _mm512_mask_mov_ps(x, nan, _mm512_castsi512_ps(canon));
  }
  static F clamp_f16(F x) noexcept {
    return _mm512_max_ps(_mm512_set1_ps(-65504.0f), _mm512_min_ps(_mm512_set1_ps(65504.0f), x));
  }
  static H load_halfs(const std::byte* p, std::size_t n) noexcept {
    return n == W ? _mm256_loadu_si256(reinterpret_cast<const H*>(p)) : _mm256_maskz_loadu_epi16(lane_mask(n), p);
  }
  static void store_halfs(std::byte* p, H h, std::size_t n) noexcept {
    if (n == W) return _mm256_storeu_si256(reinterpret_cast<H*>(p), h);
    _mm256_mask_storeu_epi16(p, lane_mask(n), h);
  }
  static F load_f16(const std::byte* p, std::size_t n) noexcept { return _mm512_cvtph_ps(load_halfs(p, n)); }
  static void store_f16(std::byte* p, F x, std::size_t n) noexcept {
    store_halfs(p, to_f16<_MM_FROUND_TO_NEAREST_INT>(clamp_f16(canonical_nan(x))), n);
  }
  static F load_bf16(const std::byte* p, std::size_t n) noexcept {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(load_halfs(p, n)), 16));
  }
  static void store_bf16(std::byte* p, F xf, std::size_t n) noexcept {
    const I x = _mm512_castps_si512(xf);
    const I exp_mask = _mm512_set1_epi32(0x7F800000);
    const I hi = _mm512_srli_epi32(x, 16);
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(x, _mm512_set1_epi32(0x7FFFFFFF)), exp_mask);
    const I rounded = _mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7FFF)), _mm512_and_si512(hi, _mm512_set1_epi32(1)));
    const __mmask16 overflow =
        _mm512_cmpeq_epi32_mask(_mm512_and_si512(rounded, exp_mask), exp_mask) &
        static_cast<__mmask16>(~_mm512_cmpeq_epi32_mask(_mm512_and_si512(x, exp_mask), exp_mask));
    I r = _mm512_srli_epi32(rounded, 16);
    r = _mm512_mask_mov_epi32(r, overflow, _mm512_or_si512(_mm512_and_si512(hi, _mm512_set1_epi32(0x8000)), _mm512_set1_epi32(0x7F7F)));
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
    store_halfs(p, _mm512_cvtepi32_epi16(r), n);
  }

  // --- quantized codes: n is 16, or 8 in the last chunk of a row whose dim is 8 mod 16 ---
  static F load_codes(const std::byte* codes, std::size_t d0, unsigned bits, std::size_t n) noexcept {
    __m128i b;
    if (bits == 8) {
      b = n == W ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + d0))
                 : _mm_maskz_loadu_epi8(lane_mask(n), codes + d0);
    } else if (bits == 4) {
      const __m128i x = n == W ? _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + d0 / 2))
                               : _mm_maskz_loadu_epi8(lane_mask(n / 2), codes + d0 / 2);
      const __m128i nib = _mm_set1_epi8(0x0F);
      b = _mm_unpacklo_epi8(_mm_and_si128(x, nib), _mm_and_si128(_mm_srli_epi16(x, 4), nib));
    } else {
      std::uint32_t word;
      if (n == W) __builtin_memcpy(&word, codes + d0 / 4, 4);
      const __m128i x = n == W ? _mm_cvtsi32_si128(static_cast<int>(word)) : _mm_maskz_loadu_epi8(lane_mask(n / 4), codes + d0 / 4);
      const __m128i spread = _mm_shuffle_epi8(x, _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));
      const I w = _mm512_srlv_epi32(_mm512_cvtepu8_epi32(spread),
                                    _mm512_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6));
      return _mm512_cvtepi32_ps(_mm512_and_si512(w, _mm512_set1_epi32(3)));
    }
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b));
  }
  static I quantize(F x, F min, F inv, F levels) noexcept {
    const F v = _mm512_mul_ps(_mm512_sub_ps(x, min), inv);
    return _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), levels));
  }
  static void store_codes(std::byte* codes, std::size_t d0, unsigned bits, I c) noexcept {
    if (bits == 8) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + d0), _mm512_cvtepi32_epi8(c));
    } else if (bits == 4) {
      const __m128i b = _mm512_cvtepi64_epi8(_mm512_or_si512(c, _mm512_srli_epi64(c, 28)));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + d0 / 2), b);
    } else {
      const I t = _mm512_sllv_epi32(c, _mm512_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6));
      __m128i b = _mm512_cvtepi32_epi8(t);
      b = _mm_or_si128(b, _mm_srli_epi32(b, 8));
      b = _mm_or_si128(b, _mm_srli_epi32(b, 16));
      const auto v = static_cast<std::uint32_t>(_mm_cvtsi128_si32(_mm_cvtepi32_epi8(b)));
      __builtin_memcpy(codes + d0 / 4, &v, 4);
    }
  }
  // Scale and min of lanes [0, 8) from group ga and of lanes [8, 16) from group gb.
  static void load_params(const std::byte* params, std::size_t ga, std::size_t gb, F& s, F& m) noexcept {
    if (ga == gb) {  // {s, m} broadcast to every pair of lanes, then split
      std::uint32_t a;
      __builtin_memcpy(&a, params + 4 * ga, 4);
      const F v = _mm512_cvtph_ps(_mm256_set1_epi32(static_cast<int>(a)));
      s = _mm512_shuffle_ps(v, v, 0x00);
      m = _mm512_shuffle_ps(v, v, 0x55);
      return;
    }
    std::uint32_t a, b;
    __builtin_memcpy(&a, params + 4 * ga, 4);
    __builtin_memcpy(&b, params + 4 * gb, 4);
    const __m512 v = _mm512_cvtph_ps(_mm256_setr_epi32(static_cast<int>(a), 0, 0, 0, static_cast<int>(b), 0, 0, 0));
    // v = {sa, ma, 0...0, sb, mb, 0...}: lanes 0/1 and 8/9 hold the pairs.
    s = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 8, 8, 8, 8, 8, 8), v);
    m = _mm512_permutexvar_ps(_mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 9, 9, 9, 9, 9, 9, 9, 9), v);
  }
  static void load_channel_params(const std::byte* p, F& s, F& m) noexcept {
    const I x = _mm512_loadu_si512(p);
    s = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(x));
    m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(x, 16)));
  }
  static void store_channel_params(std::byte* p, H s, H m) noexcept {
    const H lo = _mm256_unpacklo_epi16(s, m), hi = _mm256_unpackhi_epi16(s, m);
    _mm256_storeu_si256(reinterpret_cast<H*>(p), _mm256_permute2x128_si256(lo, hi, 0x20));
    _mm256_storeu_si256(reinterpret_cast<H*>(p + 32), _mm256_permute2x128_si256(lo, hi, 0x31));
  }
};

// Within each 128-bit lane: out[j] dword i = in[i] dword j (a 4 x 4 transpose per lane), the
// step that puts 4 consecutive bytes of 4 rows side by side for the int8 dot products.
inline void transpose4_epi32(const __m512i (&in)[4], __m512i (&out)[4]) noexcept {
  const __m512i t0 = _mm512_unpacklo_epi32(in[0], in[1]), t1 = _mm512_unpackhi_epi32(in[0], in[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(in[2], in[3]), t3 = _mm512_unpackhi_epi32(in[2], in[3]);
  out[0] = _mm512_unpacklo_epi64(t0, t2);
  out[1] = _mm512_unpackhi_epi64(t0, t2);
  out[2] = _mm512_unpacklo_epi64(t1, t3);
  out[3] = _mm512_unpackhi_epi64(t1, t3);
}
