// Decode attention over per-channel key codes (KIVI's frozen groups, Table::attend_channels),
// written once against an Ops type. The generic block loop, online softmax and value stages of
// attend-inl.hpp run unchanged; only the logits stage differs. Needs attend-inl.hpp first.
//
// Dequantizing per channel costs a {scale, min} load and conversion per chunk of every row. The
// stage folds them into the query once per group instead:
//   q . k_r = sum_c q_c (s_c code_rc + m_c) = sum_c (q_c s_c) code_rc + sum_c q_c m_c,
// so a row costs what a per-token row without parameters costs (codes -> float, one FMA per
// head), and the fold (dim / W parameter loads, 2 NH FMAs each) is paid once per G rows.

// Largest key dim the fold buffer holds (KVCache's stored rows are at most this wide).
inline constexpr std::size_t kMaxChannelDim = 1024;

struct ChannelKeys {
  const std::byte* params;
  std::size_t group_tokens;
};

// logits of NH heads for R rows of codes against the folded query qs (bias: q . min per head).
template <class O, unsigned Bits, std::size_t NH, std::size_t R, std::size_t B>
__attribute__((always_inline)) inline void channel_rows(const kvc::kernels::AttendArgs& a,
                                                        const float (*qs)[kMaxChannelDim], const float* bias,
                                                        const std::byte* const* rows, float (*logits)[B],
                                                        std::size_t r0) noexcept {
  using F = typename O::F;
  constexpr std::size_t W = O::W;
  const std::size_t dim = a.k_dim, full = dim - dim % W;
  F acc[R][NH];
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t h = 0; h < NH; ++h) acc[r][h] = O::zero();
  for (std::size_t d = 0; d < full; d += W) {
    F qv[NH];
    for (std::size_t h = 0; h < NH; ++h) qv[h] = O::load(qs[h] + d);
    for (std::size_t r = 0; r < R; ++r) {
      const F k = O::load_codes(rows[r], d, Bits, W);
      for (std::size_t h = 0; h < NH; ++h) acc[r][h] = O::fmadd(qv[h], k, acc[r][h]);
    }
  }
  if (full < dim) {  // AVX-512 with dim % 16 == 8: one masked half vector
    F qv[NH];
    for (std::size_t h = 0; h < NH; ++h) qv[h] = O::load_n(qs[h] + full, dim - full);
    for (std::size_t r = 0; r < R; ++r) {
      const F k = O::load_codes(rows[r], full, Bits, dim - full);
      for (std::size_t h = 0; h < NH; ++h) acc[r][h] = O::fmadd(qv[h], k, acc[r][h]);
    }
  }
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t h = 0; h < NH; ++h) logits[h][r0 + r] = a.scale * (O::hsum(acc[r][h]) + bias[h]);
}

// qs[h][c] = q[h][c] * scale_c and bias[h] = sum_c q[h][c] * min_c over one group's pairs.
template <class O, std::size_t NH>
inline void fold_query(const float* q, std::size_t dim, const std::byte* params, float (*qs)[kMaxChannelDim],
                       float* bias) noexcept {
  using F = typename O::F;
  constexpr std::size_t W = O::W;
  const std::size_t full = dim - dim % W;
  F b[NH];
  for (std::size_t h = 0; h < NH; ++h) b[h] = O::zero();
  for (std::size_t d = 0; d < full; d += W) {
    F s, m;
    O::load_channel_params(params + d * 4, s, m);
    for (std::size_t h = 0; h < NH; ++h) {
      const F qv = O::load(q + h * dim + d);
      O::store(qs[h] + d, O::mul(qv, s));
      b[h] = O::fmadd(qv, m, b[h]);
    }
  }
  for (std::size_t h = 0; h < NH; ++h) bias[h] = O::hsum(b[h]);
  for (std::size_t d = full; d < dim; ++d) {  // the masked half vector's channels
    std::uint16_t sm[2];
    __builtin_memcpy(sm, params + d * 4, 4);
    const float s = _cvtsh_ss(sm[0]), m = _cvtsh_ss(sm[1]);
    for (std::size_t h = 0; h < NH; ++h) {
      qs[h][d] = q[h * dim + d] * s;
      bias[h] += q[h * dim + d] * m;
    }
  }
}

template <class O, unsigned Bits, std::size_t NH, std::size_t B>
inline void channel_block_logits(const kvc::kernels::AttendArgs& a, std::size_t h0, const BlockOf<B>& b,
                                 float (*logits)[B], const void* prep) noexcept {
  constexpr std::size_t R = O::W == 16 ? 4 : 2;  // as block_logits: R*NH accumulators + NH q chunks
  const auto& keys = *static_cast<const ChannelKeys*>(prep);
  const std::size_t dim = a.k_dim, g_rows = keys.group_tokens;
  alignas(64) float qs[NH][kMaxChannelDim];
  float bias[NH];
  const std::size_t bytes = dim * Bits / 8;
  std::size_t r = 0;
  while (r < b.n) {
    const std::size_t g = (b.first_row + r) / g_rows;
    const std::size_t group_end = (g + 1) * g_rows - b.first_row;
    const std::size_t end = group_end < b.n ? group_end : b.n;
    fold_query<O, NH>(a.q + h0 * dim, dim, keys.params + g * dim * kvc::kernels::kGroupParamBytes, qs, bias);
    for (; r + R <= end; r += R) {
      channel_rows<O, Bits, NH, R, B>(a, qs, bias, b.k + r, logits, r);
      if (b.k_ahead != 0)
        for (std::size_t i = 0; i < R; ++i) prefetch_row(b.k[r + i] + b.k_ahead, bytes);
    }
    for (; r < end; ++r) channel_rows<O, Bits, NH, 1, B>(a, qs, bias, b.k + r, logits, r);
  }
}

template <class O, unsigned Bits>
inline void channel_stages(std::size_t nh, LogitsFnOf<kGenericBlock>& lf) noexcept {
  with_heads(nh, [&](auto NH) { lf = &channel_block_logits<O, Bits, NH, kGenericBlock>; });
}

// Preconditions: k_format is q8, q4 or q2 with k_dim a multiple of 8 and at most kMaxChannelDim;
// rows <= (groups stored) * group_tokens.
template <class O>
inline void attend_channels(const kvc::kernels::AttendArgs& a, const std::byte* key_params,
                            std::size_t group_tokens) noexcept {
  if (a.n_q == 0 || a.rows == 0) return;
  const ChannelKeys keys{key_params, group_tokens};
  StageOverrideOf<kGenericBlock> over;
  over.prep = &keys;
  const std::size_t last_nh = (a.n_q - 1) % kHeadTile + 1;
  const auto pick = [&](auto bits) {
    channel_stages<O, bits()>(kHeadTile, over.logits[0]);
    channel_stages<O, bits()>(last_nh, over.logits[1]);
  };
  switch (kvc::kernels::bits_of(a.k_format.dtype)) {
    case 8: pick(std::integral_constant<unsigned, 8>{}); break;
    case 4: pick(std::integral_constant<unsigned, 4>{}); break;
    default: pick(std::integral_constant<unsigned, 2>{}); break;
  }
  attend_blocks<O, kGenericBlock>(a, over);
}
