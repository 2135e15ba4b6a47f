// Precision::fast q.K over quantized keys with AVX512-VNNI: vpdpbusd does 64 u8 x s8
// multiply-adds per instruction, four times an fp32 FMA's 16. Included by the AVX512-VNNI TU only,
// after attend-inl.hpp, inside its anonymous namespace.
//
// Each query head is quantized once per call: step = max|q| / 127, qi = round(q / step). For a row
// with codes c, group scales s_g and mins m_g,
//   logit = scale * step * sum_g (s_g * dot(qi_g, c_g) + m_g * sum(qi_g)),
// i.e. scale * step * dot(qi, k): off from the exact logit by at most scale * step/2 * sum|k|, the
// order of the int8 rounding of the cache itself. dot(qi_g, c_g) is exact in int32 and sum(qi_g)
// is prepared per call.
//
// Layout: 16 rows in the 16 dword lanes (lane = row), so a group's scale and min apply once per
// 16 rows with vector FMAs and no horizontal sums. 32 bytes of each of the 16 rows are loaded
// whole and transposed (vector j, lane r = dword j of row r); a dword of 32/bits codes is split by
// shift and mask into 8/bits vectors of byte codes, and the query is stored in that order, so
// each split costs one vpdpbusd per head with a broadcast dword of 4 qi.

struct Int8Query {
  static constexpr std::size_t kMaxHeads = 32, kMaxDim = 256, kMaxGroups = kMaxDim / 8;
  // Head h: dim/4 dwords of 4 qi, in the order int8_logits16 consumes them.
  alignas(64) std::int32_t qi[kMaxHeads][kMaxDim / 4];
  float qsum[kMaxHeads][kMaxGroups];  // sum of the qi of each group (exact: |sum| < 2^24)
  float out_scale[kMaxHeads];         // a.scale * step
};

// Transposes of W dwords at byte `off` of 16 rows: u[j] lane r = dword j of rows[r] + off.
// `whole`: all W dwords lie inside the rows, so plain loads may read them (the ones past n are
// ignored by the caller); otherwise masked loads read only the first n (they are much slower on
// some cores, hence only at the very end of a row).

// 32 bytes per row; rows r and r + 4 share a vector: 8 inserts and 24 shuffles. (Measured slightly
// faster than 64-byte loads and a 16 x 16 transpose, which also needs 4 shuffles per dword.)
inline void int8_transpose8(const std::byte* const* rows, std::size_t off, std::size_t n, bool whole,
                            __m512i (&u)[8]) noexcept {
  const auto mask = static_cast<__mmask8>((1u << n) - 1u);
  const auto load = [&](std::size_t r) {
    return whole ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r] + off))
                 : _mm256_maskz_loadu_epi32(mask, rows[r] + off);
  };
  __m512i x[2][4];  // x[Q][j] 128-bit lanes: dword j, 4 + j of rows 8Q..8Q+3, then of rows 8Q+4..8Q+7
  for (std::size_t q = 0; q < 2; ++q) {
    __m512i r[4];
    for (std::size_t i = 0; i < 4; ++i)
      r[i] = _mm512_inserti64x4(_mm512_castsi256_si512(load(8 * q + i)), load(8 * q + 4 + i), 1);
    transpose4_epi32(r, x[q]);
  }
  for (std::size_t j = 0; j < 4; ++j) {
    u[j] = _mm512_shuffle_i32x4(x[0][j], x[1][j], 0x88);
    u[4 + j] = _mm512_shuffle_i32x4(x[0][j], x[1][j], 0xDD);
  }
}

// 16 bytes per row; 128-bit lane L of a[k] holds row 4L + k: 12 inserts and 8 shuffles.
inline void int8_transpose4(const std::byte* const* rows, std::size_t off, std::size_t n, bool whole,
                            __m512i (&u)[4]) noexcept {
  const auto mask = static_cast<__mmask8>((1u << n) - 1u);
  const auto load = [&](std::size_t r) {
    return whole ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + off)) : _mm_maskz_loadu_epi32(mask, rows[r] + off);
  };
  __m512i a[4];
  for (std::size_t k = 0; k < 4; ++k) {
    __m512i v = _mm512_castsi128_si512(load(k));
    v = _mm512_inserti32x4(v, load(4 + k), 1);
    v = _mm512_inserti32x4(v, load(8 + k), 2);
    a[k] = _mm512_inserti32x4(v, load(12 + k), 3);
  }
  transpose4_epi32(a, u);
}

// Calls fn(u, first, n) for consecutive spans of n <= 8 of the `dwords` code dwords of 16 rows of
// `row_bytes` bytes, u transposed as above (u[j] is dword first + j).
template <class Fn>
inline void int8_code_spans(const std::byte* const* rows, std::size_t dwords, std::size_t row_bytes, Fn&& fn) noexcept {
  for (std::size_t d = 0; d < dwords;) {
    const std::size_t left = dwords - d;
    if (left > 4) {
      const std::size_t n = left < 8 ? left : 8;
      __m512i u[8];
      int8_transpose8(rows, 4 * d, n, 4 * d + 32 <= row_bytes, u);
      fn(u, d, n);
      d += n;
    } else {
      __m512i u[4];
      int8_transpose4(rows, 4 * d, left, 4 * d + 16 <= row_bytes, u);
      fn(u, d, left);
      d += left;
    }
  }
}

// Logits of NH heads (h0..) for 16 rows, stored to logits[h][r0, r0 + 16).
template <unsigned Bits, std::size_t NH>
inline void int8_logits16(const kvc::kernels::AttendArgs& a, const Int8Query& query, std::size_t h0,
                          const std::byte* const* rows, float (*logits)[kAttendBlock], std::size_t r0) noexcept {
  constexpr std::size_t E = 8 / Bits;  // byte-code vectors per dword of codes
  constexpr std::size_t kQiStride = Int8Query::kMaxDim / 4;
  const std::size_t dim = a.k_dim, groups = dim / a.k_format.group;
  const std::size_t code_bytes = dim * Bits / 8, row_bytes = code_bytes + 4 * groups;

  // Parameters first, as float vectors (lane = row) per group. The last piece of fewer than 4
  // groups is read as the row's last 16 bytes when the row is that long (no masked loads).
  alignas(64) __m512 scale[Int8Query::kMaxGroups], min[Int8Query::kMaxGroups];
  for (std::size_t g0 = 0; g0 < groups; g0 += 4) {
    const std::size_t n = groups - g0 < 4 ? groups - g0 : 4;
    const std::size_t shift = n < 4 && row_bytes >= 16 ? 4 - n : 0;
    __m512i u[4];
    int8_transpose4(rows, code_bytes + 4 * g0 - 4 * shift, n, n == 4 || shift != 0, u);
    for (std::size_t j = 0; j < n; ++j) {  // a dword of params is {f16 scale, f16 min}
      scale[g0 + j] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(u[shift + j]));
      min[g0 + j] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(u[shift + j], 16)));
    }
  }

  __m512i dot[NH];
  __m512 acc[NH];
  for (std::size_t h = 0; h < NH; ++h) {
    dot[h] = _mm512_setzero_si512();
    acc[h] = _mm512_setzero_ps();
  }
  const std::int32_t* qi = query.qi[h0];
  const std::size_t dwords_per_group = a.k_format.group * Bits / 32;
  std::size_t g = 0, left = dwords_per_group;
  const __m512i field = _mm512_set1_epi8(static_cast<char>((1u << Bits) - 1u));
  int8_code_spans(rows, code_bytes / 4, row_bytes, [&]<std::size_t W>(const __m512i(&u)[W], std::size_t w0, std::size_t n) {
    // Unrolled, so that u, dot and acc stay in registers.
#pragma GCC unroll 8
    for (std::size_t j = 0; j < W && j < n; ++j) {
#pragma GCC unroll 4
      for (std::size_t e = 0; e < E; ++e) {
        __m512i c = e == 0 ? u[j] : _mm512_srli_epi32(u[j], static_cast<unsigned>(Bits * e));
        if constexpr (Bits < 8) c = _mm512_and_si512(c, field);
        const std::int32_t* qd = qi + (w0 + j) * E + e;
#pragma GCC unroll 4
        for (std::size_t h = 0; h < NH; ++h) dot[h] = _mm512_dpbusd_epi32(dot[h], c, _mm512_set1_epi32(qd[h * kQiStride]));
      }
      if (--left == 0) {  // the group's last dword: apply its scale and min
        for (std::size_t h = 0; h < NH; ++h) {
          acc[h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[h]), scale[g], acc[h]);
          acc[h] = _mm512_fmadd_ps(min[g], _mm512_set1_ps(query.qsum[h0 + h][g]), acc[h]);
          dot[h] = _mm512_setzero_si512();
        }
        ++g;
        left = dwords_per_group;
      }
    }
  });
  for (std::size_t h = 0; h < NH; ++h)
    _mm512_store_ps(logits[h] + r0, _mm512_mul_ps(acc[h], _mm512_set1_ps(query.out_scale[h0 + h])));
}

template <kvc::kernels::Dtype KD, std::size_t NH>
inline void int8_block_logits(const kvc::kernels::AttendArgs& a, std::size_t h0, const Block& b,
                              float (*logits)[kAttendBlock], const void* prep) noexcept {
  const auto& query = *static_cast<const Int8Query*>(prep);
  const std::size_t row_bytes = kvc::kernels::row_bytes(a.k_format, a.k_dim);
  for (std::size_t r = 0; r < b.n; r += 16) {
    const std::byte* const* rows = b.k + r;
    const std::byte* tail[16];
    if (r + 16 > b.n) {  // lanes past the block's rows repeat its first row; attend ignores them
      for (std::size_t i = 0; i < 16; ++i) tail[i] = b.k[r + i < b.n ? r + i : 0];
      rows = tail;
    }
    // The rows are read 32 bytes at a time across 16 rows, which the hardware prefetchers follow
    // poorly: cold q8 keys at 4K rows took longer than the exact path. Fetch the 16 rows one
    // block ahead into L2 (measured best; into L1, or the next 16 rows, gained less), assuming
    // they follow in the segment. A wrong guess (segment end) costs only bandwidth; prefetches
    // never fault. Row by row, so that a large stride does not fetch what lies between rows, and
    // each line once.
    const auto first = reinterpret_cast<std::uintptr_t>(rows[0]) + kAttendBlock * a.k_stride;
    std::uintptr_t line = 0;
    for (std::size_t i = 0; i < 16; ++i) {
      const std::uintptr_t row = first + i * a.k_stride;
      if (line < (row & ~std::uintptr_t{63})) line = row & ~std::uintptr_t{63};
      for (; line < row + row_bytes; line += 64) _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T1);
    }
    int8_logits16<kvc::kernels::bits_of(KD), NH>(a, query, h0, rows, logits, r);
  }
}

template <kvc::kernels::Dtype KD>
inline void int8_logits_for(std::size_t last_nh, LogitsFn (&l)[2]) noexcept {
  l[0] = &int8_block_logits<KD, kHeadTile>;
  with_heads(last_nh, [&](auto NH) { l[1] = &int8_block_logits<KD, NH>; });
}

// The int8 query of one head (the arithmetic above): qi[0, dim) = q / step rounded to nearest
// even and zero up to the next multiple of 64 (qi 64-byte aligned, room for that), out_scale =
// scale * step. False if q is not finite. Both int8 logits stages use it, so they see the same qi.
inline bool int8_query_head(const float* q, std::size_t dim, float scale, std::int8_t* qi, float& out_scale) noexcept {
  __m512 mx = _mm512_setzero_ps();
  for (std::size_t d = 0; d < dim; d += 16) {
    const __m512 x = _mm512_abs_ps(Ops512::load_n(q + d, min_size(16, dim - d)));
    if (_mm512_cmp_ps_mask(x, _mm512_set1_ps(3.40282347e38f), _CMP_NLE_UQ) != 0) return false;  // inf or nan
    mx = _mm512_max_ps(mx, x);
  }
  const float top = _mm512_reduce_max_ps(mx);
  const float step = top > 0.0f ? top / 127.0f : 1.0f;
  out_scale = scale * step;
  // |q| <= max keeps q / step in [-127, 127] but for the last ulp, hence the clamp.
  for (std::size_t d = 0; d < (dim + 63) / 64 * 64; d += 16) {
    const __m512 x = Ops512::load_n(q + d, d < dim ? min_size(16, dim - d) : 0);
    const __m512 y = _mm512_roundscale_ps(_mm512_div_ps(x, _mm512_set1_ps(step)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 clamped = _mm512_min_ps(_mm512_max_ps(y, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    _mm_store_si128(reinterpret_cast<__m128i*>(qi + d), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(clamped)));
  }
  return true;
}

inline std::int32_t int8_sum(const std::int8_t* x, std::size_t n) noexcept {
  std::int32_t sum = 0;
  for (std::size_t i = 0; i < n; ++i) sum += x[i];
  return sum;
}

// The formats the int8 stages read: codes of 8, 4 or 2 bits with {scale, min} per group.
inline bool int8_rows(kvc::kernels::Dtype d) noexcept {
  return d == kvc::kernels::Dtype::q8 || d == kvc::kernels::Dtype::q4 || d == kvc::kernels::Dtype::q2;
}

inline bool int8_logits_stages(const kvc::kernels::AttendArgs& a, Int8Query& query, StageOverride& over) noexcept {
  using kvc::kernels::Dtype;
  const Dtype kd = a.k_format.dtype;
  if (!int8_rows(kd)) return false;
  const unsigned bits = kvc::kernels::bits_of(kd);
  const std::size_t dim = a.k_dim, group = a.k_format.group, per_dword = 32 / bits, e = 8 / bits;
  // A dword of codes must not straddle two groups (q2 with a group of 8).
  if (a.n_q == 0 || a.n_q > Int8Query::kMaxHeads || dim == 0 || dim > Int8Query::kMaxDim || group == 0 ||
      group % 8 != 0 || group % per_dword != 0 || dim % group != 0)
    return false;
  // Within the 4e bytes of one code dword, code e * b + k goes to byte 4 * k + b, the order in
  // which int8_logits16 consumes its splits: a pattern of 16 bytes, so one in-lane shuffle.
  const __m512i order = e == 1   ? _mm512_set4_epi32(0x0F0E0D0C, 0x0B0A0908, 0x07060504, 0x03020100)
                        : e == 2 ? _mm512_set4_epi32(0x0F0D0B09, 0x0E0C0A08, 0x07050301, 0x06040200)
                                 : _mm512_set4_epi32(0x0F0B0703, 0x0E0A0602, 0x0D090501, 0x0C080400);
  for (std::size_t h = 0; h < a.n_q; ++h) {
    alignas(64) std::int8_t qi[Int8Query::kMaxDim];
    if (!int8_query_head(a.q + h * dim, dim, a.scale, qi, query.out_scale[h])) return false;
    for (std::size_t g = 0; g < dim / group; ++g) query.qsum[h][g] = static_cast<float>(int8_sum(qi + g * group, group));
    for (std::size_t d = 0; d < dim; d += 64)
      _mm512_store_si512(query.qi[h] + d / 4, _mm512_shuffle_epi8(_mm512_load_si512(qi + d), order));
  }
  const std::size_t last_nh = (a.n_q - 1) % kHeadTile + 1;
  switch (kd) {
    case Dtype::q8: int8_logits_for<Dtype::q8>(last_nh, over.logits); break;
    case Dtype::q4: int8_logits_for<Dtype::q4>(last_nh, over.logits); break;
    default: int8_logits_for<Dtype::q2>(last_nh, over.logits); break;  // int8_rows: q2
  }
  over.prep = &query;
  return true;
}
