// Precision::fast for the shapes the vectorized int8 stages decline (values whose dim is not a
// multiple of 64 or whose group is not a multiple of 16, such as the bundled model's head_dim 8;
// q2 keys with a group of 8): the same arithmetic (table.hpp) in plain integer loops, so `fast`
// computes the same way on every shape of an ISA instead of silently falling back to fp32 on
// small heads. These shapes are small; speed is not the point of these loops.

struct GenericInt8Query {
  static constexpr std::size_t kMaxHeads = 32, kMaxDim = 256, kMaxGroups = kMaxDim / 8;
  alignas(64) std::int8_t qi[kMaxHeads][kMaxDim];
  std::int32_t group_sum[kMaxHeads][kMaxGroups];  // sum of qi over each key group
  float out_scale[kMaxHeads];                     // a.scale * step_h
};

// The int8 query of the spec (int8_query_head). False if q is not finite or the shape does not fit
// the fixed-size buffers.
inline bool generic_int8_prepare(const kvc::kernels::AttendArgs& a, GenericInt8Query& g) noexcept {
  using G = GenericInt8Query;
  const std::size_t dim = a.k_dim, group = a.k_format.group;
  if (a.n_q > G::kMaxHeads || dim > G::kMaxDim || group == 0 || dim % group != 0 || dim / group > G::kMaxGroups)
    return false;
  for (std::size_t h = 0; h < a.n_q; ++h) {
    if (!int8_query_head(a.q + h * dim, dim, a.scale, g.qi[h], g.out_scale[h])) return false;
    for (std::size_t gi = 0; gi < dim / group; ++gi) g.group_sum[h][gi] = int8_sum(g.qi[h] + gi * group, group);
  }
  return true;
}

template <unsigned Bits>
inline std::int32_t generic_code(const std::byte* codes, std::size_t d) noexcept {
  constexpr unsigned per_byte = 8 / Bits;
  return static_cast<std::int32_t>((static_cast<unsigned>(codes[d / per_byte]) >> ((d % per_byte) * Bits)) &
                                   ((1u << Bits) - 1u));
}

inline void generic_params(const std::byte* p, std::size_t g, float& scale, float& min) noexcept {
  std::uint32_t sm = 0;
  __builtin_memcpy(&sm, p + g * kvc::kernels::kGroupParamBytes, 4);
  const __m128 v = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(sm)));
  scale = _mm_cvtss_f32(v);
  min = _mm_cvtss_f32(_mm_movehdup_ps(v));
}

template <unsigned Bits, std::size_t NH>
void generic_int8_logits(const kvc::kernels::AttendArgs& a, std::size_t h0, const Block& b,
                         float (*logits)[kAttendBlock], const void* prep) noexcept {
  const auto& g = *static_cast<const GenericInt8Query*>(prep);
  const std::size_t dim = a.k_dim, group = a.k_format.group;
  for (std::size_t r = 0; r < b.n; ++r) {
    const std::byte* row = b.k[r];
    float sum[NH] = {};
    for (std::size_t gi = 0; gi < dim / group; ++gi) {
      float s, m;
      generic_params(row + dim * Bits / 8, gi, s, m);
      std::int32_t dot[NH] = {};
      for (std::size_t d = gi * group; d < (gi + 1) * group; ++d) {
        const std::int32_t c = generic_code<Bits>(row, d);
        for (std::size_t h = 0; h < NH; ++h) dot[h] += c * g.qi[h0 + h][d];
      }
      for (std::size_t h = 0; h < NH; ++h)
        sum[h] += s * static_cast<float>(dot[h]) + m * static_cast<float>(g.group_sum[h0 + h][gi]);
    }
    for (std::size_t h = 0; h < NH; ++h) logits[h][r] = g.out_scale[h0 + h] * sum[h];
  }
}

// Per block, head and value group: a_r = p_r s_{r,g} rounded to u8 steps of max_r a_r / 255.
template <unsigned Bits, std::size_t NH>
void generic_int8_values(const kvc::kernels::AttendArgs& a, float* const* acc, const float* alpha,
                         const float (*p)[kAttendBlock], const Block& b) noexcept {
  const std::size_t dim = a.v_dim, group = a.v_format.group;
  for (std::size_t h = 0; h < NH; ++h)
    for (std::size_t d = 0; d < dim; ++d) acc[h][d] *= alpha[h];
  for (std::size_t gi = 0; gi < dim / group; ++gi) {
    float s[kAttendBlock], m[kAttendBlock];
    for (std::size_t r = 0; r < b.n; ++r) generic_params(b.v[r] + dim * Bits / 8, gi, s[r], m[r]);
    for (std::size_t h = 0; h < NH; ++h) {
      float mx = 0.0f, min_term = 0.0f;
      for (std::size_t r = 0; r < b.n; ++r) {
        mx = __builtin_fmaxf(mx, p[h][r] * s[r]);
        min_term += p[h][r] * m[r];
      }
      std::int32_t ai[kAttendBlock];
      const float step = mx / 255.0f, inv = mx > 0.0f ? 255.0f / mx : 0.0f;
      for (std::size_t r = 0; r < b.n; ++r) ai[r] = static_cast<std::int32_t>(__builtin_nearbyintf(p[h][r] * s[r] * inv));
      for (std::size_t d = gi * group; d < (gi + 1) * group; ++d) {
        std::int32_t dot = 0;
        for (std::size_t r = 0; r < b.n; ++r) dot += ai[r] * generic_code<Bits>(b.v[r], d);
        acc[h][d] += step * static_cast<float>(dot) + min_term;
      }
    }
  }
}

template <unsigned Bits>
inline void generic_pick(std::size_t last_nh, LogitsFn* l, ValuesFn* v) noexcept {
  if (l != nullptr) {
    l[0] = &generic_int8_logits<Bits, kHeadTile>;
    with_heads(last_nh, [&](auto NH) { l[1] = &generic_int8_logits<Bits, NH>; });
  }
  if (v != nullptr) {
    v[0] = &generic_int8_values<Bits, kHeadTile>;
    with_heads(last_nh, [&](auto NH) { v[1] = &generic_int8_values<Bits, NH>; });
  }
}

inline void generic_pick(kvc::kernels::Dtype d, std::size_t last_nh, LogitsFn* l, ValuesFn* v) noexcept {
  using kvc::kernels::Dtype;
  if (d == Dtype::q8) generic_pick<8>(last_nh, l, v);
  if (d == Dtype::q4) generic_pick<4>(last_nh, l, v);
  if (d == Dtype::q2) generic_pick<2>(last_nh, l, v);
}

inline void generic_int8_logits_stages(const kvc::kernels::AttendArgs& a, GenericInt8Query& g,
                                       StageOverride& over) noexcept {
  if (!int8_rows(a.k_format.dtype) || !generic_int8_prepare(a, g)) return;
  generic_pick(a.k_format.dtype, (a.n_q - 1) % kHeadTile + 1, over.logits, nullptr);
  over.prep = &g;
}

inline void generic_int8_values_stages(const kvc::kernels::AttendArgs& a, StageOverride& over) noexcept {
  const std::size_t group = a.v_format.group;
  if (!int8_rows(a.v_format.dtype) || group == 0 || a.v_dim % group != 0) return;
  generic_pick(a.v_format.dtype, (a.n_q - 1) % kHeadTile + 1, nullptr, over.values);
}

// Every int8 stage that applies to a's quantized keys and values: the vectorized ones where
// their shape allows, the loops above elsewhere. The prepared query lives in `scratch`, which
// must outlive the call.
template <class Scratch>
inline void int8_stages(const kvc::kernels::AttendArgs& a, Scratch& scratch, StageOverride& over) noexcept {
  if (int8_rows(a.k_format.dtype) && !int8_logits_stages(a, scratch.template make<Int8Query>(), over))
    generic_int8_logits_stages(a, scratch.template make<GenericInt8Query>(), over);
  if (!int8_values_stages(a, over)) generic_int8_values_stages(a, over);
  over.prefetch_values = over.values[0] != nullptr;  // the int8 values stages do not fetch as they go
}
