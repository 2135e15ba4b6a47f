// Precision::fast weights . V over quantized values with AVX512-VNNI (table.hpp states the
// arithmetic). Per block, head h and group g the products a_r = p[h][r] * scale[r][g] become u8
// weights ai_r = round(a_r / step), step = max_r a_r / 255, so
//   sum_r p_r (s_r c_r + m_r) = step * sum_r ai_r c_r + sum_r p_r m_r
// and the code sum is vpdpbusd: one dword lane holds one dimension of 4 rows (their codes
// interleaved in registers), multiplied by the 4 rows' weights broadcast as a dword.
// q8 codes (0..255) do not fit the signed operand: they run as c - 128 and 128 * sum_r ai_r is
// added back. q4 and q2 codes fit as they are.
// Included by the AVX512-VNNI translation unit after attend-inl.hpp, in its anonymous namespace.

inline constexpr std::size_t kValueChunk = 64;  // dims per pass over a block: 4 vectors of int32 sums

// Per block and head tile: the u8 weights, and per (group, head) what turns the int32 sums into
// fp32. w[g][h / 2][weight_index(h, k)] holds the weights of rows 4k..4k+3 of head h for group
// g, in the order vpackus leaves them.
struct ValueWeights {
  alignas(64) std::uint32_t w[kMaxValueGroups][kHeadTile / 2][16];
  float step[kMaxValueGroups][kHeadTile];
  float bias[kMaxValueGroups][kHeadTile];         // sum_r p_r m_r
  std::int32_t corr[kMaxValueGroups][kHeadTile];  // q8 only: 128 * sum_r ai_r
};

constexpr std::size_t weight_index(std::size_t h, std::size_t k) noexcept { return (k % 4) * 4 + (h % 2) * 2 + k / 4; }

// Step, min term, q8 correction and u8 weights of group g for NH heads. p and the {scale, min}
// pairs hold rows 0..15 (lo) and 16..31 (hi).
template <kvc::kernels::Dtype VD, std::size_t NH>
inline void group_weights(const __m512 (&p_lo)[NH], const __m512 (&p_hi)[NH], __m512i pairs_lo, __m512i pairs_hi,
                          std::size_t g, ValueWeights& vw) noexcept {
  const __m512 s_lo = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(pairs_lo));
  const __m512 s_hi = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(pairs_hi));
  const __m512 m_lo = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(pairs_lo, 16)));
  const __m512 m_hi = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(pairs_hi, 16)));
  __m512 a_lo[NH], a_hi[NH];
  __m512 mx[kHeadTile], mt[kHeadTile];
  for (std::size_t h = 0; h < kHeadTile; ++h) mx[h] = mt[h] = _mm512_setzero_ps();
  for (std::size_t h = 0; h < NH; ++h) {
    a_lo[h] = _mm512_mul_ps(p_lo[h], s_lo);
    a_hi[h] = _mm512_mul_ps(p_hi[h], s_hi);
    mx[h] = _mm512_max_ps(a_lo[h], a_hi[h]);
    mt[h] = _mm512_fmadd_ps(p_lo[h], m_lo, _mm512_mul_ps(p_hi[h], m_hi));
  }
  const __m128 max4 = Ops512::reduce4<true>(mx[0], mx[1], mx[2], mx[3]);
  // A zero maximum (255 / 0 = inf) turns into FLT_MAX: its weights are 0 * FLT_MAX = 0.
  alignas(16) float inv[4];
  _mm_store_ps(inv, _mm_min_ps(_mm_div_ps(_mm_set1_ps(255.0f), max4), _mm_set1_ps(__FLT_MAX__)));
  _mm_storeu_ps(vw.step[g], _mm_div_ps(max4, _mm_set1_ps(255.0f)));
  _mm_storeu_ps(vw.bias[g], Ops512::hsum4(mt[0], mt[1], mt[2], mt[3]));

  __m512i ai_lo[kHeadTile], ai_hi[kHeadTile];
  for (std::size_t h = 0; h < kHeadTile; ++h) ai_lo[h] = ai_hi[h] = _mm512_setzero_si512();
  for (std::size_t h = 0; h < NH; ++h) {
    const __m512 iv = _mm512_set1_ps(inv[h]);
    ai_lo[h] = _mm512_cvtps_epi32(_mm512_mul_ps(a_lo[h], iv));  // round to nearest even
    ai_hi[h] = _mm512_cvtps_epi32(_mm512_mul_ps(a_hi[h], iv));
  }
  // Lane L of a head pair's bytes: head 2hp rows of lane L (dword 0) and of lane L + 16
  // (dword 1), head 2hp + 1 likewise (dwords 2, 3); see weight_index.
  __m512i packed[kHeadTile / 2];
  for (std::size_t hp = 0; hp < kHeadTile / 2; ++hp) {
    packed[hp] = _mm512_setzero_si512();
    if (2 * hp >= NH) continue;
    packed[hp] = _mm512_packus_epi16(_mm512_packus_epi32(ai_lo[2 * hp], ai_hi[2 * hp]),
                                     _mm512_packus_epi32(ai_lo[2 * hp + 1], ai_hi[2 * hp + 1]));
    _mm512_store_si512(vw.w[g][hp], packed[hp]);
  }
  if constexpr (VD == kvc::kernels::Dtype::q8) {
    // Byte sums per qword (head 2hp in the even qwords, 2hp + 1 in the odd ones), the second
    // pair in the upper dwords, then summed over the lanes: dwords {h0, h2, h1, h3}.
    __m512i s = _mm512_or_si512(_mm512_sad_epu8(packed[0], _mm512_setzero_si512()),
                                _mm512_slli_epi64(_mm512_sad_epu8(packed[1], _mm512_setzero_si512()), 32));
    s = _mm512_add_epi32(s, _mm512_shuffle_i64x2(s, s, 0x4E));
    s = _mm512_add_epi32(s, _mm512_shuffle_i64x2(s, s, 0xB1));
    const __m128i sums = _mm_shuffle_epi32(_mm512_castsi512_si128(s), 0xD8);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(vw.corr[g]), _mm_slli_epi32(sums, 7));
  }
}

// Steps, min terms and u8 weights of every group for the NH heads of one block (rows: its 32
// row pointers, valid ones).
template <kvc::kernels::Dtype VD, std::size_t NH>
inline void value_weights(const kvc::kernels::AttendArgs& a, const float (*p)[kAttendBlock],
                          const std::byte* const* rows, ValueWeights& vw) noexcept {
  const std::size_t groups = a.v_dim / a.v_format.group;
  const std::size_t params = a.v_dim * kvc::kernels::bits_of(VD) / 8;
  __m512 p_lo[NH], p_hi[NH];
  for (std::size_t h = 0; h < NH; ++h) {
    p_lo[h] = _mm512_load_ps(p[h]);
    p_hi[h] = _mm512_load_ps(p[h] + 16);
  }
  for (std::size_t g0 = 0; g0 < groups; g0 += 4) {
    // The {scale, min} pairs of groups g0..g0+3 (masked: a row may end after fewer), lane L of
    // z[q] from row 4L + q, then transposed in lanes: pairs[half][g - g0] in row order.
    const std::size_t count = min_size(4, groups - g0);
    const auto present = static_cast<__mmask8>((1u << count) - 1u);
    __m512i pairs[2][4];
    for (std::size_t half = 0; half < 2; ++half) {
      __m512i z[4];
      for (std::size_t q = 0; q < 4; ++q) {
        const std::byte* const* r = rows + 16 * half + q;
        const auto load = [&](std::size_t lane) { return _mm_maskz_loadu_epi32(present, r[4 * lane] + params + 4 * g0); };
        z[q] = _mm512_inserti32x4(_mm512_castsi128_si512(load(0)), load(1), 1);
        z[q] = _mm512_inserti32x4(z[q], load(2), 2);
        z[q] = _mm512_inserti32x4(z[q], load(3), 3);
      }
      transpose4_epi32(z, pairs[half]);
    }
    for (std::size_t i = 0; i < count; ++i) group_weights<VD, NH>(p_lo, p_hi, pairs[0][i], pairs[1][i], g0 + i, vw);
  }
}

// Codes of one row for the dims [kValueChunk * c, + kValueChunk), as 64 bytes before the
// per-lane fixup of expand_codes: q4 repeats its 32 bytes in both halves (low nibbles from the
// lower half, high nibbles from the upper), q2 its 16 bytes in every lane (crumb L from lane L).
template <kvc::kernels::Dtype VD>
inline __m512i load_codes_chunk(const std::byte* row, std::size_t c) noexcept {
  using kvc::kernels::Dtype;
  if constexpr (VD == Dtype::q8) {
    return _mm512_loadu_epi8(row + 64 * c);
  } else if constexpr (VD == Dtype::q4) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 32 * c)));
  } else {
    return _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * c)));
  }
}

// The signed-byte operand of vpdpbusd from interleaved raw bytes (per-lane operations commute
// with the in-lane interleave, so four vectors are fixed up instead of four rows).
template <kvc::kernels::Dtype VD>
inline __m512i expand_codes(__m512i x) noexcept {
  using kvc::kernels::Dtype;
  if constexpr (VD == Dtype::q8) {
    return _mm512_xor_si512(x, _mm512_set1_epi8(static_cast<char>(0x80)));
  } else if constexpr (VD == Dtype::q4) {
    return _mm512_and_si512(_mm512_mask_srli_epi16(x, 0xFFFF0000u, x, 4), _mm512_set1_epi8(0x0F));
  } else {
    const __m512i shift = _mm512_set_epi64(0x0006000600060006, 0x0006000600060006, 0x0004000400040004,
                                           0x0004000400040004, 0x0002000200020002, 0x0002000200020002, 0, 0);
    return _mm512_and_si512(_mm512_srlv_epi16(x, shift), _mm512_set1_epi8(0x03));
  }
}

// Dimension (within the chunk) of lane L, dword 0, of interleaved vector j; dwords 1..3 follow
// at steps of 1 (q8), 2 (q4), 4 (q2), inside the same 16-aligned dims, so inside one group.
template <kvc::kernels::Dtype VD>
constexpr std::size_t lane_dim(std::size_t lane, std::size_t j) noexcept {
  using kvc::kernels::Dtype;
  if constexpr (VD == Dtype::q8) return 16 * lane + 4 * j;
  else if constexpr (VD == Dtype::q4) return 32 * (lane % 2) + 8 * j + lane / 2;
  else return 16 * j + lane;
}

// The weight vector of interleaved vector j is Slots broadcasts blended by lane (1: every lane
// one group; 2: q8 lanes {0,1}|{2,3}, q4 lanes {0,2}|{1,3}; 4: one per lane); with PerJ the
// groups differ between the j.
template <kvc::kernels::Dtype VD, std::size_t Slots>
constexpr std::size_t slot_of(std::size_t lane) noexcept {
  if constexpr (Slots == 1) return 0;
  else if constexpr (Slots == 4) return lane;
  else return VD == kvc::kernels::Dtype::q8 ? lane / 2 : lane % 2;
}

template <kvc::kernels::Dtype VD, std::size_t Slots>
constexpr __mmask16 slot_mask(std::size_t slot) noexcept {
  __mmask16 m = 0;
  for (std::size_t lane = 0; lane < 4; ++lane)
    if (slot_of<VD, Slots>(lane) == slot) m = static_cast<__mmask16>(m | (0xFu << (4 * lane)));
  return m;
}

// The int32 sums of vector j, lane L, dword i back in dimension order: out[m] = dims 16m..16m+15.
template <kvc::kernels::Dtype VD>
inline void unpermute(const __m512i (&x)[4], __m512i (&out)[4]) noexcept {
  using kvc::kernels::Dtype;
  if constexpr (VD == Dtype::q8) {  // out[m] = lane m of x[0..3]: a 4x4 transpose of 128-bit lanes
    const __m512i t0 = _mm512_shuffle_i32x4(x[0], x[1], 0x44), t1 = _mm512_shuffle_i32x4(x[2], x[3], 0x44);
    const __m512i t2 = _mm512_shuffle_i32x4(x[0], x[1], 0xEE), t3 = _mm512_shuffle_i32x4(x[2], x[3], 0xEE);
    out[0] = _mm512_shuffle_i32x4(t0, t1, 0x88);
    out[1] = _mm512_shuffle_i32x4(t0, t1, 0xDD);
    out[2] = _mm512_shuffle_i32x4(t2, t3, 0x88);
    out[3] = _mm512_shuffle_i32x4(t2, t3, 0xDD);
  } else if constexpr (VD == Dtype::q4) {  // even dims from lanes 0/1, odd from 2/3 of x[2(m%2)], x[2(m%2)+1]
    const __m512i lower = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 16, 24, 17, 25, 18, 26, 19, 27);
    const __m512i upper = _mm512_setr_epi32(4, 12, 5, 13, 6, 14, 7, 15, 20, 28, 21, 29, 22, 30, 23, 31);
    out[0] = _mm512_permutex2var_epi32(x[0], lower, x[1]);
    out[1] = _mm512_permutex2var_epi32(x[2], lower, x[3]);
    out[2] = _mm512_permutex2var_epi32(x[0], upper, x[1]);
    out[3] = _mm512_permutex2var_epi32(x[2], upper, x[3]);
  } else {  // x[m] holds dim 16m + 4i + L at lane L, dword i: a 4x4 transpose of its dwords
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    for (std::size_t m = 0; m < 4; ++m) out[m] = _mm512_permutexvar_epi32(order, x[m]);
  }
}

template <kvc::kernels::Dtype VD, std::size_t NH, std::size_t Slots, bool PerJ>
inline void int8_block_values(const kvc::kernels::AttendArgs& a, float* const* acc, const float* alpha,
                              const float (*p)[kAttendBlock], const Block& b) noexcept {
  constexpr std::size_t J = PerJ ? 4 : 1;  // distinct weight vectors per head and quad
  // In a short block (the last of a call) rows at and beyond b.n read row b.n - 1 (their
  // pointers are not valid) and weigh p = 0.
  const std::byte* padded[kAttendBlock];
  const std::byte* const* rows = b.v;
  if (b.n < kAttendBlock) {
    for (std::size_t r = 0; r < kAttendBlock; ++r) padded[r] = b.v[r < b.n ? r : b.n - 1];
    rows = padded;
  }
  ValueWeights vw;
  value_weights<VD, NH>(a, p, rows, vw);
  const std::size_t group = a.v_format.group;
  for (std::size_t c = 0; c * kValueChunk < a.v_dim; ++c) {
    const std::size_t d0 = c * kValueChunk;
    // Per vector j and weight slot: the group, and its head-pair weights.
    std::size_t slot_group[J][Slots];
    const std::uint32_t* src[J][Slots];
    for (std::size_t j = 0; j < J; ++j)
      for (std::size_t lane = 0; lane < 4; ++lane) {
        const std::size_t g = (d0 + lane_dim<VD>(lane, j)) / group;
        slot_group[j][slot_of<VD, Slots>(lane)] = g;
        src[j][slot_of<VD, Slots>(lane)] = vw.w[g][0];
      }
    // q8 sums start at 128 * sum_r ai_r (the codes run as c - 128); q8 slots are per lane only.
    __m512i sum[NH][4];
    for (std::size_t h = 0; h < NH; ++h) {
      __m512i start = _mm512_setzero_si512();
      if constexpr (VD == kvc::kernels::Dtype::q8) {
        start = _mm512_set1_epi32(vw.corr[slot_group[0][0]][h]);
        for (std::size_t s = 1; s < Slots; ++s)
          start = _mm512_mask_set1_epi32(start, slot_mask<VD, Slots>(s), vw.corr[slot_group[0][s]][h]);
      }
      for (std::size_t j = 0; j < 4; ++j) sum[h][j] = start;
    }
    // Every quad, also in a short block (the last of a call): a branch here would cost the
    // accumulators their registers.
#pragma GCC unroll 8
    for (std::size_t k = 0; k < kAttendBlock / 4; ++k) {
      const std::byte* const* quad = rows + 4 * k;
      const __m512i r0 = load_codes_chunk<VD>(quad[0], c), r1 = load_codes_chunk<VD>(quad[1], c);
      const __m512i r2 = load_codes_chunk<VD>(quad[2], c), r3 = load_codes_chunk<VD>(quad[3], c);
      const __m512i ab_lo = _mm512_unpacklo_epi8(r0, r1), ab_hi = _mm512_unpackhi_epi8(r0, r1);
      const __m512i cd_lo = _mm512_unpacklo_epi8(r2, r3), cd_hi = _mm512_unpackhi_epi8(r2, r3);
      const __m512i x[4] = {expand_codes<VD>(_mm512_unpacklo_epi16(ab_lo, cd_lo)),
                            expand_codes<VD>(_mm512_unpackhi_epi16(ab_lo, cd_lo)),
                            expand_codes<VD>(_mm512_unpacklo_epi16(ab_hi, cd_hi)),
                            expand_codes<VD>(_mm512_unpackhi_epi16(ab_hi, cd_hi))};
      for (std::size_t h = 0; h < NH; ++h) {
        const std::size_t at = (h / 2) * 16 + weight_index(h, k);
        __m512i w[J];
        for (std::size_t j = 0; j < J; ++j) {
          w[j] = _mm512_set1_epi32(static_cast<int>(src[j][0][at]));
          for (std::size_t s = 1; s < Slots; ++s)
            w[j] = _mm512_mask_set1_epi32(w[j], slot_mask<VD, Slots>(s), static_cast<int>(src[j][s][at]));
        }
        for (std::size_t j = 0; j < 4; ++j) sum[h][j] = _mm512_dpbusd_epi32(sum[h][j], w[PerJ ? j : 0], x[j]);
      }
    }
    for (std::size_t h = 0; h < NH; ++h) {
      __m512i o[4];
      unpermute<VD>(sum[h], o);
      const __m512 keep = _mm512_set1_ps(alpha[h]);
      for (std::size_t m = 0; m < 4; ++m) {
        const std::size_t d = d0 + 16 * m, g = d / group;
        const __m512 t = _mm512_fmadd_ps(keep, _mm512_loadu_ps(acc[h] + d), _mm512_set1_ps(vw.bias[g][h]));
        _mm512_storeu_ps(acc[h] + d, _mm512_fmadd_ps(_mm512_cvtepi32_ps(o[m]), _mm512_set1_ps(vw.step[g][h]), t));
      }
    }
  }
}

template <kvc::kernels::Dtype VD, std::size_t Slots, bool PerJ>
inline void int8_values_for(std::size_t nh, ValuesFn& vf) noexcept {
  with_heads(nh, [&](auto NH) { vf = &int8_block_values<VD, NH, Slots, PerJ>; });
}

// The weight slots each format needs for a group (a multiple of 16): q8 lanes are 16 dims,
// q4 lanes 32 dims (even or odd ones), q2 vectors j are 16 dims.
template <kvc::kernels::Dtype VD>
inline void int8_values_pick(std::size_t group, std::size_t nh, ValuesFn& vf) noexcept {
  using kvc::kernels::Dtype;
  if (group % 64 == 0) return int8_values_for<VD, 1, false>(nh, vf);
  if constexpr (VD == Dtype::q8) {
    if (group % 32 == 0) return int8_values_for<VD, 2, false>(nh, vf);
    return int8_values_for<VD, 4, false>(nh, vf);
  } else if constexpr (VD == Dtype::q4) {
    if (group % 32 == 0) return int8_values_for<VD, 2, false>(nh, vf);
    return int8_values_for<VD, 2, true>(nh, vf);
  } else {
    return int8_values_for<VD, 1, true>(nh, vf);
  }
}

// Sets over.values[0] (full head tiles) and over.values[1] (the last tile) when the int8 path
// applies to the value format and shape (dims a multiple of 64, groups a multiple of 16, at most
// kMaxValueGroups per row); returns false and leaves `over` untouched otherwise.
inline bool int8_values_stages(const kvc::kernels::AttendArgs& a, StageOverride& over) noexcept {
  using kvc::kernels::Dtype;
  const std::size_t group = a.v_format.group;
  if (!int8_rows(a.v_format.dtype) || a.n_q == 0 || group == 0 || group % 16 != 0 ||
      a.v_dim % kValueChunk != 0 || a.v_dim % group != 0 || a.v_dim / group > kMaxValueGroups)
    return false;
  const auto pick = [&](std::size_t nh, ValuesFn& vf) {
    switch (a.v_format.dtype) {
      case Dtype::q8: return int8_values_pick<Dtype::q8>(group, nh, vf);
      case Dtype::q4: return int8_values_pick<Dtype::q4>(group, nh, vf);
      default: return int8_values_pick<Dtype::q2>(group, nh, vf);  // int8_rows: q2
    }
  };
  pick(kHeadTile, over.values[0]);
  pick((a.n_q - 1) % kHeadTile + 1, over.values[1]);
  return true;
}
