// Precision::fast attention over f16 and bf16 rows with AVX512-BF16: vdpbf16ps does 32
// bf16 multiply-adds into 16 fp32 sums, twice an fp32 FMA's 16 at the same rate on Zen 4 (3.67 G
// instructions/s each, measured). Included by the AVX512-BF16 TU only, after attend-inl.hpp,
// inside its anonymous namespace.
//
// q is rounded to bf16 once per call, each K and V chunk as it is read, the softmax weights once
// per block; products are exact and sums fp32, so a logit is off from the exact one by at most
// about 2^-7 * scale * sum_d |q_d k_d| (2^-8 over bf16 rows, docs/formats.md), and an output by
// 2^-7 of the weighted sum of |v|. f16 rows become bf16 with integer operations (below). f32
// rows stay exact: their attention is bound by memory (2.2-2.4 ms at 4K rows either way,
// measured), so bf16 would only add error.

struct Bf16Query {
  static constexpr std::size_t kMaxHeads = 32, kMaxDim = 256;
  // Head h in bf16, zero from k_dim up to the next multiple of 32, so masked key chunks need no
  // masked query.
  alignas(64) std::uint16_t q[kMaxHeads][kMaxDim];
};

inline constexpr std::size_t kBf16Chunk = 32;  // elements per vector of bf16

inline __mmask32 bf16_mask(std::size_t n) noexcept {
  return n >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << n) - 1u);
}

// f16 -> bf16 on the integer pipes, which leaves the FP pipes to vdpbf16ps: q.K over f16 keys from
// L1 runs at 1.4x the exact kernel's rate this way, 1.24x through vcvtph2ps + vcvtne2ps2bf16.
// Finite values only (rows KVCache stores): the exponent is rebiased (15 -> 127), the mantissa
// rounded half up to 7 bits, subnormals (below 6.1e-5) flushed to signed zero.
inline __m512i f16_to_bf16(__m512i h) noexcept {
  const __m512i magnitude = _mm512_and_si512(h, _mm512_set1_epi16(0x7FFF));
  const __mmask32 normal = _mm512_cmpge_epu16_mask(magnitude, _mm512_set1_epi16(0x0400));
  const __m512i rounded = _mm512_srli_epi16(_mm512_add_epi16(magnitude, _mm512_set1_epi16(4)), 3);
  const __m512i rebiased = _mm512_maskz_add_epi16(normal, rounded, _mm512_set1_epi16((127 - 15) << 7));
  // rebiased | (h & 0x8000): the sign back.
  return _mm512_ternarylogic_epi32(rebiased, h, _mm512_set1_epi16(static_cast<short>(0x8000)), 0xF8);
}

// f32 -> bf16 (the query, the weights), rounding to nearest even; finite values past bf16's
// range saturate to +-max, as in the library's encoder, instead of rounding to infinity. f32
// subnormals become zero.
inline __m512i f32_to_bf16(__m512 lo, __m512 hi) noexcept {
  const __m512 top = _mm512_set1_ps(3.38953139e38f), bottom = _mm512_set1_ps(-3.38953139e38f);
  lo = _mm512_min_ps(_mm512_max_ps(lo, bottom), top);
  hi = _mm512_min_ps(_mm512_max_ps(hi, bottom), top);
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
}

// Elements [d, d + n) of a row as bf16, zero past n (n <= 32).
template <kvc::kernels::Dtype D>
__attribute__((always_inline)) inline __m512i bf16_chunk(const std::byte* row, std::size_t d, std::size_t n) noexcept {
  static_assert(D == kvc::kernels::Dtype::f16 || D == kvc::kernels::Dtype::bf16);
  const std::byte* p = row + 2 * d;
  const __m512i x = n == kBf16Chunk ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi16(bf16_mask(n), p);
  if constexpr (D == kvc::kernels::Dtype::f16) return f16_to_bf16(x);
  return x;
}

__attribute__((always_inline)) inline __m512 dot_bf16(__m512 acc, __m512i a, __m512i b) noexcept {
  return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh>(a), reinterpret_cast<__m512bh>(b));
}

// Rounds the query heads to bf16; false (the exact path runs) past kMaxHeads, kMaxDim or on a
// non-finite q.
inline bool bf16_prepare(const kvc::kernels::AttendArgs& a, Bf16Query& query) noexcept {
  const std::size_t dim = a.k_dim;
  if (a.n_q == 0 || a.n_q > Bf16Query::kMaxHeads || dim == 0 || dim > Bf16Query::kMaxDim) return false;
  for (std::size_t h = 0; h < a.n_q; ++h) {
    for (std::size_t d = 0; d < dim; d += 16) {
      const std::size_t n = dim - d < 16 ? dim - d : 16;
      const __m512 x = Ops512::load_n(a.q + h * dim + d, n);
      if (_mm512_cmp_ps_mask(_mm512_abs_ps(x), _mm512_set1_ps(3.40282347e38f), _CMP_NLE_UQ) != 0) return false;
      _mm256_store_si256(reinterpret_cast<__m256i*>(query.q[h] + d),
                         _mm512_castsi512_si256(f32_to_bf16(x, _mm512_setzero_ps())));
    }
    for (std::size_t d = (dim + 15) / 16 * 16; d < (dim + kBf16Chunk - 1) / kBf16Chunk * kBf16Chunk; ++d)
      query.q[h][d] = 0;
  }
  return true;
}

template <kvc::kernels::Dtype KD, std::size_t NH, std::size_t R>
__attribute__((always_inline)) inline void bf16_logits_chunk(const Bf16Query& query, std::size_t h0,
                                                             const std::byte* const* rows, std::size_t d,
                                                             std::size_t n, __m512 (&acc)[R][NH]) noexcept {
  __m512i qv[NH];
  for (std::size_t h = 0; h < NH; ++h) qv[h] = _mm512_load_si512(query.q[h0 + h] + d);
  for (std::size_t r = 0; r < R; ++r) {
    const __m512i k = bf16_chunk<KD>(rows[r], d, n);
    for (std::size_t h = 0; h < NH; ++h) acc[r][h] = dot_bf16(acc[r][h], qv[h], k);
  }
}

// Logits of NH heads for R rows, as logits_rows with bf16 dot products over chunks of 32.
template <kvc::kernels::Dtype KD, std::size_t NH, std::size_t R, std::size_t B>
__attribute__((always_inline)) inline void bf16_logits_rows(const kvc::kernels::AttendArgs& a, const Bf16Query& query,
                                                            std::size_t h0, const std::byte* const* rows,
                                                            float (*logits)[B], std::size_t r0) noexcept {
  const std::size_t dim = a.k_dim, full = dim - dim % kBf16Chunk;
  __m512 acc[R][NH];
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t h = 0; h < NH; ++h) acc[r][h] = _mm512_setzero_ps();
  // The masked tail first, as in logits_rows, to keep acc in registers.
  if (full < dim) bf16_logits_chunk<KD, NH, R>(query, h0, rows, full, dim - full, acc);
  for (std::size_t d = 0; d < full; d += kBf16Chunk) bf16_logits_chunk<KD, NH, R>(query, h0, rows, d, kBf16Chunk, acc);
  store_logits<Ops512, NH, R, B>(a.scale, acc, logits, r0);
}

// The row tiling and prefetch of block_logits. (Sharing them through a lambda that takes the
// tile function kept it out of line and cost 40 % of f16 attention from L2.)
template <kvc::kernels::Dtype KD, std::size_t NH, std::size_t B>
inline void bf16_block_logits(const kvc::kernels::AttendArgs& a, std::size_t h0, const BlockOf<B>& b,
                              float (*logits)[B], const void* prep) noexcept {
  constexpr std::size_t R = 4;
  const auto& query = *static_cast<const Bf16Query*>(prep);
  const std::size_t bytes = kvc::kernels::row_bytes(a.k_format, a.k_dim);
  std::size_t r = 0;
  for (; r + R <= b.n; r += R) {
    bf16_logits_rows<KD, NH, R, B>(a, query, h0, b.k + r, logits, r);
    if (b.k_ahead != 0)
      for (std::size_t i = 0; i < R; ++i) prefetch_row(b.k[r + i] + b.k_ahead, bytes);
  }
  for (; r < b.n; ++r) bf16_logits_rows<KD, NH, 1, B>(a, query, h0, b.k + r, logits, r);
}

// weights . V over DT chunks of 32 dims from d (the last one n dims long), two rows per
// vdpbf16ps: the rows' chunks interleaved (vpunpck{l,h}wd) against a broadcast pair of weights.
// The interleave puts dims 8j..8j+3 of 128-bit lane j in `lo` and 8j+4..8j+7 in `hi`; acc is
// permuted into that order on load and back on store.
template <kvc::kernels::Dtype VD, std::size_t NH, std::size_t DT, std::size_t B>
inline void bf16_value_tile(const kvc::kernels::AttendArgs& a, float* const* acc, const float* alpha,
                            const std::uint32_t (*w)[B / 2], const BlockOf<B>& b, std::size_t d,
                            std::size_t n) noexcept {
  const auto dims = [&](std::size_t j) { return j + 1 < DT ? kBf16Chunk : n; };
  const auto part = [](std::size_t m, std::size_t half) -> std::size_t {
    return half == 0 ? (m < 16 ? m : 16) : (m > 16 ? m - 16 : 0);
  };
  __m512 lo[NH][DT], hi[NH][DT];
  for (std::size_t h = 0; h < NH; ++h) {
    const __m512 s = _mm512_set1_ps(alpha[h]);
    for (std::size_t j = 0; j < DT; ++j) {
      float* p = acc[h] + d + j * kBf16Chunk;
      const __m512 x0 = _mm512_mul_ps(s, Ops512::load_n(p, part(dims(j), 0)));
      const __m512 x1 = _mm512_mul_ps(s, Ops512::load_n(p + 16, part(dims(j), 1)));
      lo[h][j] = _mm512_shuffle_f32x4(x0, x1, 0x88);
      hi[h][j] = _mm512_shuffle_f32x4(x0, x1, 0xDD);
    }
  }
  const std::size_t ahead = d == 0 ? b.v_ahead : 0, bytes = kvc::kernels::row_bytes(a.v_format, a.v_dim);
  for (std::size_t r = 0; r < b.n; r += 2) {
    if (ahead != 0) {
      prefetch_row(b.v[r] + ahead, bytes);
      if (r + 1 < b.n) prefetch_row(b.v[r + 1] + ahead, bytes);
    }
    __m512i il[DT], ih[DT];
    for (std::size_t j = 0; j < DT; ++j) {
      const __m512i v0 = bf16_chunk<VD>(b.v[r], d + j * kBf16Chunk, dims(j));
      const __m512i v1 = r + 1 < b.n ? bf16_chunk<VD>(b.v[r + 1], d + j * kBf16Chunk, dims(j)) : _mm512_setzero_si512();
      il[j] = _mm512_unpacklo_epi16(v0, v1);
      ih[j] = _mm512_unpackhi_epi16(v0, v1);
    }
    for (std::size_t h = 0; h < NH; ++h) {
      const __m512i wv = _mm512_set1_epi32(static_cast<int>(w[h][r / 2]));
      for (std::size_t j = 0; j < DT; ++j) {
        lo[h][j] = dot_bf16(lo[h][j], wv, il[j]);
        hi[h][j] = dot_bf16(hi[h][j], wv, ih[j]);
      }
    }
  }
  const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  for (std::size_t h = 0; h < NH; ++h)
    for (std::size_t j = 0; j < DT; ++j) {
      float* p = acc[h] + d + j * kBf16Chunk;
      Ops512::store_n(p, _mm512_permutex2var_ps(lo[h][j], first, hi[h][j]), part(dims(j), 0));
      Ops512::store_n(p + 16, _mm512_permutex2var_ps(lo[h][j], second, hi[h][j]), part(dims(j), 1));
    }
}

template <kvc::kernels::Dtype VD, std::size_t NH, std::size_t B>
inline void bf16_block_values(const kvc::kernels::AttendArgs& a, float* const* acc, const float* alpha,
                              const float (*p)[B], const BlockOf<B>& b) noexcept {
  static_assert(B % kBf16Chunk == 0);
  // Dword i of w[h]: the bf16 weights of rows 2i and 2i + 1 (0 past the block's rows).
  alignas(64) std::uint32_t w[NH][B / 2];
  for (std::size_t h = 0; h < NH; ++h)
    for (std::size_t r = 0; r < B; r += kBf16Chunk)
      _mm512_store_si512(w[h] + r / 2, f32_to_bf16(_mm512_load_ps(p[h] + r), _mm512_load_ps(p[h] + r + 16)));
  constexpr std::size_t DT = 2;  // 4 heads x 2 chunks x {lo, hi}: 16 accumulators
  std::size_t d = 0;
  for (; d + DT * kBf16Chunk <= a.v_dim; d += DT * kBf16Chunk)
    bf16_value_tile<VD, NH, DT, B>(a, acc, alpha, w, b, d, kBf16Chunk);
  if (d < a.v_dim) {
    const std::size_t left = a.v_dim - d;
    if (left > kBf16Chunk)
      bf16_value_tile<VD, NH, 2, B>(a, acc, alpha, w, b, d, left - kBf16Chunk);
    else
      bf16_value_tile<VD, NH, 1, B>(a, acc, alpha, w, b, d, left);
  }
}

template <std::size_t B, class Pick>
inline void bf16_pick(kvc::kernels::Dtype dtype, std::size_t last_nh, Pick&& pick) noexcept {
  using kvc::kernels::Dtype;
  const auto both = [&](auto D) {
    pick(D, std::integral_constant<std::size_t, kHeadTile>{}, 0);
    with_heads(last_nh, [&](auto NH) { pick(D, NH, 1); });
  };
  if (dtype == Dtype::f16) return both(std::integral_constant<Dtype, Dtype::f16>{});
  both(std::integral_constant<Dtype, Dtype::bf16>{});
}

inline bool half_rows(kvc::kernels::Dtype d) noexcept {
  return d == kvc::kernels::Dtype::f16 || d == kvc::kernels::Dtype::bf16;
}

// Sets the logits stages of `over` for f16 and bf16 keys (preparing the bf16 query in
// `scratch`) and the values stages for f16 and bf16 values; leaves the rest of `over` as it is.
template <std::size_t B, class Scratch>
inline void bf16_stages(const kvc::kernels::AttendArgs& a, Scratch& scratch, StageOverrideOf<B>& over) noexcept {
  if (a.n_q == 0) return;
  const std::size_t last_nh = (a.n_q - 1) % kHeadTile + 1;
  if (half_rows(a.k_format.dtype)) {
    Bf16Query& query = scratch.template make<Bf16Query>();
    if (bf16_prepare(a, query)) {
      bf16_pick<B>(a.k_format.dtype, last_nh,
                   [&](auto D, auto NH, int i) { over.logits[i] = &bf16_block_logits<D(), NH(), B>; });
      over.prep = &query;
    }
  }
  if (half_rows(a.v_format.dtype))
    bf16_pick<B>(a.v_format.dtype, last_nh,
                 [&](auto D, auto NH, int i) { over.values[i] = &bf16_block_values<D(), NH(), B>; });
}
