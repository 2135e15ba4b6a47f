// The SIMD row codecs (encode/decode of every row format, per-channel blocks), written once
// against an Ops type (Ops256, Ops512) and compiled by each per-ISA translation unit inside its
// own anonymous namespace (internal linkage). Bitwise equal to kvc/kernels/reference.hpp.
// Needs <immintrin.h>, <cstdint>, <cstddef>, kvc/kernels/table.hpp and src/kernels/tuning.hpp to
// be included first.

inline std::size_t min_size(std::size_t a, std::size_t b) noexcept { return a < b ? a : b; }

// Every cache line of [row, row + bytes) into L2 (the encoder's and the attention stages' hint).
inline void prefetch_row(const void* row, std::size_t bytes) noexcept {
  const auto at = reinterpret_cast<std::uintptr_t>(row);
  for (std::uintptr_t line = at & ~std::uintptr_t{63}; line < at + bytes; line += 64)
    _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T1);
}

// The first element equal to 0.0f: the reference keeps the first of equal extremes, which
// decides the sign of a zero minimum or maximum (and so the stored bits).
inline float first_zero(const float* x, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    if (x[i] == 0.0f) return x[i];
  return 0.0f;
}

// Calls fn(d, values, n) for consecutive chunks of up to O::W decoded elements of one row of
// format D; lanes at and beyond n hold unspecified finite values.
template <class O, kvc::kernels::Dtype D, class Fn>
inline void visit_row_of(kvc::kernels::RowFormat f, std::size_t dim, const std::byte* row, Fn&& fn) noexcept {
  constexpr std::size_t W = O::W;
  if constexpr (!is_grouped<D>) {
    std::size_t d = 0;
    for (; d + W <= dim; d += W) fn(d, Elements<D>::template load<O>(row, d, W), W);
    if (d < dim) fn(d, Elements<D>::template load<O>(row, d, dim - d), dim - d);
  } else {
    constexpr unsigned bits = kvc::kernels::bits_of(D);
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
  }
}

template <class O, class Fn>
inline void visit_row(kvc::kernels::RowFormat f, std::size_t dim, const std::byte* row, Fn&& fn) noexcept {
  with_dtype(f.dtype, [&](auto D) { visit_row_of<O, D()>(f, dim, row, fn); });
}

template <class O>
inline void decode_rows(kvc::kernels::RowFormat f, std::size_t dim, const std::byte* src, std::size_t src_stride,
                        std::size_t n, float* dst, std::size_t dst_stride) noexcept {
  for (std::size_t r = 0; r < n; ++r) {
    float* y = dst + r * dst_stride;
    visit_row<O>(f, dim, src + r * src_stride, [y](std::size_t d, typename O::F v, std::size_t k) { O::store_n(y + d, v, k); });
  }
}

// The f16 {scale, min} of groups (one per lane) from their extremes, as ref::group_params
// rounds them (vcvtps2ph's rounding-mode immediates after clamping to +-65504), and the min and
// 1/scale that encode their codes.
template <class O>
struct F16Params {
  typename O::H scale, min;
  typename O::F min_f, inv;

  F16Params(typename O::F lo, typename O::F hi, typename O::F levels) noexcept
      : min(O::template to_f16<_MM_FROUND_TO_NEG_INF>(O::clamp_f16(lo))), min_f(O::from_f16(min)) {
    scale = O::template to_f16<_MM_FROUND_TO_POS_INF>(O::clamp_f16(O::div(O::sub(hi, min_f), levels)));
    const typename O::F scale_f = O::from_f16(scale);
    inv = O::positive_or_zero(scale_f, O::div(O::set1(1.0f), scale_f));
  }
};

// Parameters of `count` <= 8 groups (group % 8 == 0, x[k] the first element of group k),
// computed together in the 8 lanes of one vector: their {scale, min} pairs go to `params`
// (count pairs written), and the min and
// 1/scale the codes use to mins/invs (8 entries written, whatever the count). Returns whether a
// scale may have saturated at the f16 maximum (see quantize_groups).
template <class O, std::size_t PerGroup>
inline bool group_params8(const float* const* x, std::size_t group_size, std::size_t count, float levels,
                          std::byte* params, float* mins, float* invs) noexcept {
  static_assert(O::W == 8, "one group per lane");
  using F = typename O::F;
  const std::size_t group = PerGroup != 0 ? PerGroup * 8 : group_size;
  F lo[8], hi[8];
  for (std::size_t k = 0; k < 8; ++k) {
    if (k > 0 && k >= count) {  // lanes without a group repeat the first one
      lo[k] = lo[0];
      hi[k] = hi[0];
      continue;
    }
    const float* xg = x[k];
    F l = O::load(xg), h = l;
    for (std::size_t i = 8; i < group; i += 8) {
      const F v = O::load(xg + i);
      l = O::min(v, l);
      h = O::max(v, h);
    }
    lo[k] = l;
    hi[k] = h;
  }
  F vlo = O::template reduce8<false>(lo), vhi = O::template reduce8<true>(hi);
  if (O::any_zero(vlo, vhi)) {
    // A zero extreme: its sign is that of the group's first zero, as in the reference.
    alignas(32) float l8[8], h8[8];
    O::store(l8, vlo);
    O::store(h8, vhi);
    for (std::size_t k = 0; k < count; ++k) {
      if (l8[k] == 0.0f) l8[k] = first_zero(x[k], group);
      if (h8[k] == 0.0f) h8[k] = first_zero(x[k], group);
    }
    vlo = O::load(l8);
    vhi = O::load(h8);
  }
  const F16Params<O> p(vlo, vhi, O::set1(levels));
  O::store(mins, p.min_f);
  O::store(invs, p.inv);
  if (count == 8) {
    O::store_channel_params(params, p.scale, p.min);  // the same {scale, min} pairs
  } else {
    alignas(32) std::byte pairs[32];
    O::store_channel_params(pairs, p.scale, p.min);
    for (std::size_t k = 0; k < count; ++k) __builtin_memcpy(params + 4 * k, pairs + 4 * k, 4);  // no call to memcpy
  }
  return O::any_f16_max(p.scale);
}

// Codes of `groups` consecutive groups at x, from their mins and invs, four vectors per pack
// (one store, no narrowing per vector). PerGroup: vectors per group, when known at compile time
// (0: any), so that the group of each vector is a constant. Unclamped: no scale is 65504, so
// none saturated and (x - min) * inv <= levels (1 + 2^-21), which rounds to at most levels:
// x <= max; the scale is f16 rounded up from fl(range / levels), so at least range / levels
// (1 - 2^-24), or 2^-24 when that is larger; 1 / scale and the product round within 2^-24.
// Below, negative codes (x under a min that saturated at -65504, down to INT_MIN) become 0 in
// store_codes4's saturating packs, the only store this path uses. A saturated scale can put
// codes far above levels, so such batches take the clamped path.
template <class O, unsigned bits, std::size_t PerGroup, bool Unclamped>
inline void quantize_groups(const float* x, std::size_t group, std::size_t groups, const float* mins,
                            const float* invs, std::byte* codes) noexcept {
  constexpr std::size_t W = O::W;
  const typename O::F levels = O::set1(static_cast<float>((1u << bits) - 1u));
  const std::size_t per_group = PerGroup != 0 ? PerGroup : group / W, vectors = groups * per_group;
  std::size_t v = 0;
  if constexpr (PerGroup != 0) {
    constexpr std::size_t span = PerGroup > 4 ? PerGroup : 4;  // vectors per unrolled step
    for (; v + span <= vectors; v += span) {
      const float* xv = x + v * W;
      const float* m = mins + v / PerGroup;
      const float* i = invs + v / PerGroup;
      for (std::size_t p = 0; p < span; p += 4) {
        typename O::I c[4];
        for (std::size_t k = 0; k < 4; ++k) {
          const std::size_t g = (p + k) / PerGroup;
          const typename O::F xk = O::load(xv + (p + k) * W);
          c[k] = Unclamped ? O::quantize_unclamped(xk, O::set1(m[g]), O::set1(i[g]))
                           : O::quantize_hi(xk, O::set1(m[g]), O::set1(i[g]), levels);
        }
        O::store_codes4(codes, (v + p) * W, bits, c);
      }
    }
  }
  for (; v < vectors; ++v) {
    const std::size_t g = v / per_group;
    O::store_codes(codes, v * W, bits, O::quantize(O::load(x + v * W), O::set1(mins[g]), O::set1(invs[g]), levels));
  }
}

template <class O, unsigned bits, std::size_t PerGroup>
inline void quantize_groups(bool saturated, const float* x, std::size_t group, std::size_t groups,
                            const float* mins, const float* invs, std::byte* codes) noexcept {
  if (saturated) return quantize_groups<O, bits, PerGroup, false>(x, group, groups, mins, invs, codes);
  quantize_groups<O, bits, PerGroup, true>(x, group, groups, mins, invs, codes);
}

inline constexpr std::size_t kEncodeBatchRows = 8;
inline constexpr std::size_t kEncodeMaxGroups = 64;  // per batch, for the batched encoder

// Rows of q8/q4/q2 with group % 8 == 0, with 8-lane vectors on every ISA (on Zen 4 they encode
// DRAM-resident rows faster than 16-lane ones: q8 group 32, 18.0 against 14.5 GB/s). Rows of at
// most kEncodeMaxGroups groups go in batches of kEncodeBatchRows rows: first the parameters of
// the batch's groups, eight at a time across rows (one reduction, f16 rounding and division
// chain per eight groups, however short the rows), then the codes, from L1. Longer rows go one
// at a time, eight groups at a time. Measured on Zen 4, int8, GB/s: batches of 2 rows 14.4, 4
// rows 19.5, 8 rows 20.4 (DRAM, group 64); chains of eight groups instead of four, unclamped
// codes and a constant group, from L2, one run: group 32 19.8 -> 24.2, group 128 25.8 -> 31.9,
// while DRAM-resident rows stayed at 18-20 (memory-bound). Computing the next batch's
// parameters ahead of the current codes gained nothing from L2 and lost 25 % from DRAM. Where the
// vendor rule says so (encode_prefetch_rows), each batch first fetches the rows that far ahead.
template <class O, unsigned bits, std::size_t PerGroup>
inline void encode_quantized_rows(kvc::kernels::RowFormat f, std::size_t dim, const float* src, std::size_t src_stride,
                                  std::size_t n, std::byte* dst, std::size_t dst_stride) noexcept {
  const auto levels = static_cast<float>((1u << bits) - 1u);
  const std::size_t group = PerGroup != 0 ? PerGroup * 8 : f.group, groups = dim / group, code_bytes = dim * bits / 8;
  if (groups > kEncodeMaxGroups) {
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t g0 = 0; g0 < groups; g0 += 8) {
        const std::size_t count = min_size(8, groups - g0);
        alignas(32) float mins[8], invs[8];
        const float* x[8];
        for (std::size_t k = 0; k < count; ++k) x[k] = src + r * src_stride + (g0 + k) * group;
        std::byte* y = dst + r * dst_stride;
        const bool saturated = group_params8<O, PerGroup>(x, group, count, levels, y + code_bytes + g0 * 4, mins, invs);
        quantize_groups<O, bits, PerGroup>(saturated, x[0], group, count, mins, invs, y + g0 * group * bits / 8);
      }
    return;
  }
  const std::size_t batch = min_size(kEncodeBatchRows, kEncodeMaxGroups / groups);
  alignas(64) float mins[kEncodeMaxGroups], invs[kEncodeMaxGroups];  // count <= 64, chains of 8 from 0
  alignas(64) std::byte pairs[kEncodeMaxGroups * 4];
  const std::size_t ahead = kvc::kernels::detail::encode_prefetch_rows();
  for (std::size_t r0 = 0; r0 < n; r0 += batch) {
    const std::size_t rows = min_size(n - r0, batch), count = rows * groups;
    const float* row = src + r0 * src_stride;
    if (ahead != 0)  // only rows of the input: their lines, not the gaps
      for (std::size_t t = r0 + ahead; t < n && t < r0 + ahead + rows; ++t)
        prefetch_row(src + t * src_stride, dim * sizeof(float));
    std::size_t g = 0;
    bool saturated = false;
    for (std::size_t at = 0; at < count; at += 8) {
      const float* x[8];
      for (std::size_t k = 0; k < 8 && at + k < count; ++k) {
        x[k] = row + g * group;
        if (++g == groups) g = 0, row += src_stride;
      }
      saturated |=
          group_params8<O, PerGroup>(x, group, min_size(8, count - at), levels, pairs + 4 * at, mins + at, invs + at);
    }
    for (std::size_t i = 0; i < rows; ++i) {
      const std::size_t at = i * groups;
      std::byte* y = dst + (r0 + i) * dst_stride;
      for (std::size_t k = 0; k < groups; ++k)  // 4 bytes at a time: no call to memcpy
        __builtin_memcpy(y + code_bytes + 4 * k, pairs + 4 * (at + k), 4);
      quantize_groups<O, bits, PerGroup>(saturated, src + (r0 + i) * src_stride, group, groups, mins + at, invs + at, y);
    }
  }
}

// encode_quantized_rows with the vectors per group a constant where it is a power of two up to 16.
template <class O, unsigned bits>
inline void encode_quantized(kvc::kernels::RowFormat f, std::size_t dim, const float* src, std::size_t src_stride,
                             std::size_t n, std::byte* dst, std::size_t dst_stride) noexcept {
  switch (f.group / 8) {
    case 1: return encode_quantized_rows<O, bits, 1>(f, dim, src, src_stride, n, dst, dst_stride);
    case 2: return encode_quantized_rows<O, bits, 2>(f, dim, src, src_stride, n, dst, dst_stride);
    case 4: return encode_quantized_rows<O, bits, 4>(f, dim, src, src_stride, n, dst, dst_stride);
    case 8: return encode_quantized_rows<O, bits, 8>(f, dim, src, src_stride, n, dst, dst_stride);
    case 16: return encode_quantized_rows<O, bits, 16>(f, dim, src, src_stride, n, dst, dst_stride);
    default: return encode_quantized_rows<O, bits, 0>(f, dim, src, src_stride, n, dst, dst_stride);
  }
}

// Rows of an element format, any dim.
template <class O, kvc::kernels::Dtype D>
inline void encode_element_rows(std::size_t dim, const float* src, std::size_t src_stride, std::size_t n,
                                std::byte* dst, std::size_t dst_stride) noexcept {
  constexpr std::size_t W = O::W;
  for (std::size_t r = 0; r < n; ++r) {
    const float* x = src + r * src_stride;
    std::byte* y = dst + r * dst_stride;
    if constexpr (D == kvc::kernels::Dtype::f32) {
      __builtin_memcpy(y, x, dim * sizeof(float));
    } else {
      for (std::size_t d = 0; d < dim; d += W) {
        const std::size_t k = min_size(W, dim - d);
        Elements<D>::template store<O>(y, d, O::load_n(x + d, k), k);
      }
    }
  }
}

// Rows of an element format with O, rows of a grouped one with Grouped (8-lane vectors on every
// ISA: encode_quantized_rows); grouped formats need group % 8 == 0.
template <class O, class Grouped = O>
inline void encode_rows(kvc::kernels::RowFormat f, std::size_t dim, const float* src, std::size_t src_stride,
                        std::size_t n, std::byte* dst, std::size_t dst_stride) noexcept {
  with_dtype(f.dtype, [&](auto D) {  // the code width is a template argument: no branch per stored vector
    if constexpr (is_grouped<D()>)
      encode_quantized<Grouped, kvc::kernels::bits_of(D())>(f, dim, src, src_stride, n, dst, dst_stride);
    else
      encode_element_rows<O, D()>(dim, src, src_stride, n, dst, dst_stride);
  });
}

// NJ vectors of channels from c0 of a per-channel block: their extremes over the tokens in
// registers while the rows stream past once, then the codes in a second pass (from L2).
template <class O, unsigned Bits, std::size_t NJ>
inline void encode_channel_tile(std::size_t c0, std::size_t dim, std::size_t tokens, const float* src,
                                std::size_t src_stride, std::byte* dst) noexcept {
  using F = typename O::F;
  constexpr std::size_t W = O::W;
  const std::size_t row_code_bytes = dim * Bits / 8;
  const F levels = O::set1(static_cast<float>((1u << Bits) - 1u));
  F lo[NJ], hi[NJ];
  for (std::size_t j = 0; j < NJ; ++j) lo[j] = hi[j] = O::load(src + c0 + j * W);
  for (std::size_t t = 1; t < tokens; ++t)
    for (std::size_t j = 0; j < NJ; ++j) {
      const F v = O::load(src + t * src_stride + c0 + j * W);
      lo[j] = O::min(v, lo[j]);
      hi[j] = O::max(v, hi[j]);
    }
  F min_f[NJ], inv[NJ];
  for (std::size_t j = 0; j < NJ; ++j) {
    const F16Params<O> p(lo[j], hi[j], levels);
    min_f[j] = p.min_f;
    inv[j] = p.inv;
    O::store_channel_params(dst + tokens * row_code_bytes + (c0 + j * W) * 4, p.scale, p.min);
  }
  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t j = 0; j < NJ; ++j)
      O::store_codes(dst + t * row_code_bytes, c0 + j * W, Bits,
                     O::quantize(O::load(src + t * src_stride + c0 + j * W), min_f[j], inv[j], levels));
}

// Per-channel block (table.hpp, channel_block_bytes); dim % O::W == 0. Lanes are channels, so
// the min/max run over tokens in the reference's order and ties keep the same zero. Channels go
// in tiles of up to 8 vectors, so that a pass reads long runs of each row: int8, 128 x 128
// blocks, Zen 4, GB/s, one vector per pass -> tiles: AVX-512 from L2 24.9 -> 36.4, from DRAM
// 8 -> 13; AVX2 15.4 -> 23.3 and 7.1 -> 11.9 (tiles of 4 vectors: 23.2 and 7.7).
template <class O, unsigned Bits>
inline void encode_channels(std::size_t dim, std::size_t tokens, const float* src, std::size_t src_stride,
                            std::byte* dst) noexcept {
  constexpr std::size_t W = O::W, J = 8;  // 2J accumulators: in registers on AVX-512, some spilled on AVX2
  std::size_t c = 0;
  for (; c + J * W <= dim; c += J * W) encode_channel_tile<O, Bits, J>(c, dim, tokens, src, src_stride, dst);
  if (c + 4 * W <= dim) encode_channel_tile<O, Bits, 4>(c, dim, tokens, src, src_stride, dst), c += 4 * W;
  if (c + 2 * W <= dim) encode_channel_tile<O, Bits, 2>(c, dim, tokens, src, src_stride, dst), c += 2 * W;
  if (c < dim) encode_channel_tile<O, Bits, 1>(c, dim, tokens, src, src_stride, dst);
}

template <class O>
inline void encode_channels(kvc::kernels::Dtype dtype, std::size_t dim, std::size_t tokens, const float* src,
                            std::size_t src_stride, std::byte* dst) noexcept {
  switch (kvc::kernels::bits_of(dtype)) {  // the code width a constant: no branch per stored vector
    case 8: return encode_channels<O, 8>(dim, tokens, src, src_stride, dst);
    case 4: return encode_channels<O, 4>(dim, tokens, src, src_stride, dst);
    default: return encode_channels<O, 2>(dim, tokens, src, src_stride, dst);
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
