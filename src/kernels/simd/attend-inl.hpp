// Fused decode attention over encoded rows, written once against an Ops type and compiled by
// each per-ISA translation unit inside its own anonymous namespace. Equal to ref::attend within
// the tolerances stated in tests/kernels/attend_test.cpp (not bitwise: other summation order,
// one softmax rescale per block of rows).
// Needs codec-inl.hpp (and what it needs), <new> and <type_traits> to be included first.

// Rows per online-softmax block: kGenericBlock for the generic stages, kAttendBlock where the int8
// stages replace them (StageOverride: Block, LogitsFn and ValuesFn are of that size). 64 rows instead of
// 32 halve the per-block work (rescales, reductions, stage calls): f16 67 -> 72 % of the FMA
// peak from L2; the int8 stages, tuned for 32, lost over a DRAM-resident cache with 64.
inline constexpr std::size_t kAttendBlock = 32;
inline constexpr std::size_t kGenericBlock = 64;
inline constexpr std::size_t kHeadTile = 4;      // query heads sharing one decoded K chunk

// Decodes chunks of one stored row with the format fixed at compile time (the hot loops).
template <class O, kvc::kernels::Dtype D>
struct Reader {
  using F = typename O::F;
  static constexpr bool quantized = kvc::kernels::is_quantized(D);
  static constexpr unsigned bits = kvc::kernels::bits_of(D);

  static const std::byte* params(const std::byte* row, std::size_t dim) noexcept { return row + dim * bits / 8; }
  // Elements [d, d + n) (grouped formats: with their own parameters, any group that is a
  // multiple of 8).
  static F chunk(const std::byte* row, std::size_t dim, std::size_t group, std::size_t d, std::size_t n) noexcept {
    if constexpr (!quantized) {
      return Elements<D>::template load<O>(row, d, n);
    } else {
      F s, m;
      O::load_params(params(row, dim), d / group, n > 8 ? (d + 8) / group : d / group, s, m);
      return O::fmadd(O::load_codes(row, d, bits, n), s, m);
    }
  }
  // A full chunk of a quantized row whose parameters s, m the caller holds.
  static F codes(const std::byte* row, std::size_t d, F s, F m) noexcept {
    return O::fmadd(O::load_codes(row, d, bits, O::W), s, m);
  }
};

template <std::size_t B>
struct BlockOf {
  const std::byte* k[B];
  const std::byte* v[B];
  std::size_t n = 0;
  std::size_t first_row = 0;  // index of k[0] among the attended rows (for the logits output)
  // The generic stages prefetch, as they go, the rows these many bytes past theirs (0: none).
  std::size_t k_ahead = 0;
  std::size_t v_ahead = 0;
};
using Block = BlockOf<kAttendBlock>;

// The hardware prefetchers stop at 4 KiB pages (16 f16 rows of 128), so a DRAM-resident cache
// waits on latency at every page. The generic stages fetch the row 32 rows past each of theirs
// into L2, a few lines after each few FMAs: f16 attention over 4K rows went from 2.0 to 1.1 ms
// cold and from 1.2 to 0.9 ms from L3 (16, 48 or 64 rows ahead: no better; into L1 (T0), every
// other line, one line per page, or all of a block's V rows at once as below: no better than no
// prefetch).
inline constexpr std::size_t kPrefetchRows = 32;

// logits[h][r0 + r] = scale * (sum of the lanes of acc[r][h]).
template <class O, std::size_t NH, std::size_t R, std::size_t B>
__attribute__((always_inline)) inline void store_logits(float scale, const typename O::F (&acc)[R][NH],
                                                        float (*logits)[B], std::size_t r0) noexcept {
  if constexpr (NH == 4 && R == 4 && O::W == 16) {
    float* const out[4] = {logits[0] + r0, logits[1] + r0, logits[2] + r0, logits[3] + r0};
    O::store_quarters(out, O::mul(O::set1(scale), O::sum_tile(acc)));
  } else {
    for (std::size_t r = 0; r < R; ++r) {
      if constexpr (NH == 4) {
        alignas(16) float sum[4];
        _mm_store_ps(sum, O::hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
        for (std::size_t h = 0; h < 4; ++h) logits[h][r0 + r] = scale * sum[h];
      } else {
        for (std::size_t h = 0; h < NH; ++h) logits[h][r0 + r] = scale * O::hsum(acc[r][h]);
      }
    }
  }
}

// Logits of NH query heads for R rows: the q chunk of every head stays in registers while the
// R rows' K chunks stream past it, so each K chunk is decoded once and every load feeds NH FMAs.
// Quantized keys whose group is a multiple of the vector hold their (scale, min) per group.
template <class O, kvc::kernels::Dtype KD, std::size_t NH, std::size_t R, std::size_t B>
__attribute__((always_inline)) inline void logits_rows(const kvc::kernels::AttendArgs& a, const float* q,
                                                       const std::byte* const* rows, float (*logits)[B],
                                                       std::size_t r0) noexcept {
  using F = typename O::F;
  using Rd = Reader<O, KD>;
  constexpr std::size_t W = O::W;
  const std::size_t dim = a.k_dim, group = a.k_format.group;
  F acc[R][NH];
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t h = 0; h < NH; ++h) acc[r][h] = O::zero();
  if (Rd::quantized && group % W == 0) {
    for (std::size_t g = 0; g * group < dim; ++g) {
      F s[R], m[R];
      for (std::size_t r = 0; r < R; ++r) O::load_params(Rd::params(rows[r], dim), g, g, s[r], m[r]);
      for (std::size_t d = g * group; d < (g + 1) * group; d += W) {
        F qv[NH];
        for (std::size_t h = 0; h < NH; ++h) qv[h] = O::load(q + h * dim + d);
        for (std::size_t r = 0; r < R; ++r) {
          const F k = Rd::codes(rows[r], d, s[r], m[r]);
          for (std::size_t h = 0; h < NH; ++h) acc[r][h] = O::fmadd(qv[h], k, acc[r][h]);
        }
      }
    }
  } else {
    // The masked tail first, so that the accumulators leave the loop of full chunks (compile-time
    // width, no masks) in registers: a tail after it made them live in memory.
    const std::size_t full = dim - dim % W;
    if (full < dim) {
      F qv[NH];
      for (std::size_t h = 0; h < NH; ++h) qv[h] = O::load_n(q + h * dim + full, dim - full);
      for (std::size_t r = 0; r < R; ++r) {
        const F k = Rd::chunk(rows[r], dim, group, full, dim - full);
        for (std::size_t h = 0; h < NH; ++h) acc[r][h] = O::mul(qv[h], k);
      }
    }
    for (std::size_t d = 0; d < full; d += W) {
      F qv[NH];
      for (std::size_t h = 0; h < NH; ++h) qv[h] = O::load(q + h * dim + d);
      for (std::size_t r = 0; r < R; ++r) {
        const F k = Rd::chunk(rows[r], dim, group, d, W);
        for (std::size_t h = 0; h < NH; ++h) acc[r][h] = O::fmadd(qv[h], k, acc[r][h]);
      }
    }
  }
  store_logits<O, NH, R, B>(a.scale, acc, logits, r0);
}

template <class O, kvc::kernels::Dtype KD, std::size_t NH, std::size_t B>
inline void block_logits(const kvc::kernels::AttendArgs& a, std::size_t h0, const BlockOf<B>& b, float (*logits)[B],
                         const void* /*prep*/) noexcept {
  constexpr std::size_t R = O::W == 16 ? 4 : 2;  // R*NH accumulators + NH q chunks fit the registers
  const float* q = a.q + h0 * a.k_dim;
  std::size_t r = 0;
  const std::size_t bytes = kvc::kernels::row_bytes(a.k_format, a.k_dim);
  for (; r + R <= b.n; r += R) {
    logits_rows<O, KD, NH, R, B>(a, q, b.k + r, logits, r);
    if (b.k_ahead != 0)
      for (std::size_t i = 0; i < R; ++i) prefetch_row(b.k[r + i] + b.k_ahead, bytes);
  }
  for (; r < b.n; ++r) logits_rows<O, KD, NH, 1, B>(a, q, b.k + r, logits, r);
}

// acc[h][d..) = alpha[h] * acc[h][d..) + sum_r p[h][r] * v_r[d..) over DT vectors of d, decoding
// each V chunk once for the NH heads, straight from the stored rows.
// Full: every lane of the DT vectors is inside v_dim (no masks); otherwise DT is 1 and the
// vector is the masked tail.
template <class O, kvc::kernels::Dtype VD, std::size_t NH, std::size_t DT, bool Full, std::size_t B>
inline void value_tile(const kvc::kernels::AttendArgs& a, float* const* acc, const float* alpha, const float (*p)[B],
                       const BlockOf<B>& b, std::size_t d) noexcept {
  using F = typename O::F;
  using Rd = Reader<O, VD>;
  constexpr std::size_t W = O::W;
  const std::size_t dim = a.v_dim, group = a.v_format.group;
  const std::size_t n = Full ? W : dim - d;
  F t[NH][DT];
  for (std::size_t h = 0; h < NH; ++h)
    for (std::size_t j = 0; j < DT; ++j) t[h][j] = O::mul(O::set1(alpha[h]), O::load_n(acc[h] + d + j * W, n));
  // Chunks that start a new quantization group reload (scale, min); the others reuse them.
  const bool hoist = Rd::quantized && Full && group % W == 0;
  unsigned reload = 0;
  if (hoist)
    for (std::size_t j = 0; j < DT; ++j)
      if (j == 0 || (d + j * W) % group == 0) reload |= 1u << j;
  const std::size_t ahead = d == 0 ? b.v_ahead : 0, bytes = kvc::kernels::row_bytes(a.v_format, dim);
  for (std::size_t r = 0; r < b.n; ++r) {
    const std::byte* row = b.v[r];
    if (ahead != 0) prefetch_row(row + ahead, bytes);
    F v[DT];
    if (hoist) {
      F s = O::zero(), m = O::zero();
      for (std::size_t j = 0; j < DT; ++j) {
        if ((reload >> j) & 1u) O::load_params(Rd::params(row, dim), (d + j * W) / group, (d + j * W) / group, s, m);
        v[j] = Rd::codes(row, d + j * W, s, m);
      }
    } else {
      for (std::size_t j = 0; j < DT; ++j) v[j] = Rd::chunk(row, dim, group, d + j * W, n);
    }
    for (std::size_t h = 0; h < NH; ++h) {
      const F w = O::set1(p[h][r]);
      for (std::size_t j = 0; j < DT; ++j) t[h][j] = O::fmadd(w, v[j], t[h][j]);
    }
  }
  for (std::size_t h = 0; h < NH; ++h)
    for (std::size_t j = 0; j < DT; ++j) O::store_n(acc[h] + d + j * W, t[h][j], n);
}

// The format-specific stages, chosen once per call: K logits of a head tile, and weights . V.
// (Function pointers keep the instantiations at formats x head counts, not formats^2 x ...)
// `prep` is what a logits stage prepared once per call (the int8 query), else nullptr.
template <std::size_t B>
using LogitsFnOf = void (*)(const kvc::kernels::AttendArgs&, std::size_t h0, const BlockOf<B>&, float (*logits)[B],
                            const void* prep) noexcept;
template <std::size_t B>
using ValuesFnOf = void (*)(const kvc::kernels::AttendArgs&, float* const* acc, const float* alpha,
                            const float (*p)[B], const BlockOf<B>&) noexcept;
using LogitsFn = LogitsFnOf<kAttendBlock>;
using ValuesFn = ValuesFnOf<kAttendBlock>;

inline constexpr std::size_t kMaxValueGroups = 16;

// Quantized V without decoding: sum_r p_r (s_r c_r + m_r) = sum_r (p_r s_r) c_r + sum_r p_r m_r.
// Per block, w[g][h][r] = p[h][r] * scale[r][g] and the min terms are formed once; the inner loop
// is then codes -> float and one FMA (with a broadcast weight from memory) per head, as cheap as
// f16 values. Needs group % W == 0 and at most kMaxValueGroups groups.
template <class O, kvc::kernels::Dtype VD, std::size_t NH, std::size_t DT, std::size_t B>
inline void quantized_value_tile(const kvc::kernels::AttendArgs& a, float* const* acc, const float* alpha,
                                 const float* w, const float (*min_term)[NH], const BlockOf<B>& b,
                                 std::size_t d) noexcept {
  using F = typename O::F;
  constexpr std::size_t W = O::W;
  constexpr unsigned bits = kvc::kernels::bits_of(VD);
  const std::size_t group = a.v_format.group;
  F t[NH][DT];
  const float* wj[DT];
  for (std::size_t j = 0; j < DT; ++j) wj[j] = w + (d + j * W) / group * NH * B;
  for (std::size_t h = 0; h < NH; ++h)
    for (std::size_t j = 0; j < DT; ++j)
      t[h][j] = O::fmadd(O::set1(alpha[h]), O::load(acc[h] + d + j * W), O::set1(min_term[(d + j * W) / group][h]));
  const std::size_t ahead = d == 0 ? b.v_ahead : 0, bytes = kvc::kernels::row_bytes(a.v_format, a.v_dim);
  for (std::size_t r = 0; r < b.n; ++r) {
    if (ahead != 0) prefetch_row(b.v[r] + ahead, bytes);
    F c[DT];
    for (std::size_t j = 0; j < DT; ++j) c[j] = O::load_codes(b.v[r], d + j * W, bits, W);
    for (std::size_t h = 0; h < NH; ++h)
      for (std::size_t j = 0; j < DT; ++j) t[h][j] = O::fmadd(O::set1(wj[j][h * B + r]), c[j], t[h][j]);
  }
  for (std::size_t h = 0; h < NH; ++h)
    for (std::size_t j = 0; j < DT; ++j) O::store(acc[h] + d + j * W, t[h][j]);
}

template <class O, kvc::kernels::Dtype VD, std::size_t NH, std::size_t B>
inline void block_values(const kvc::kernels::AttendArgs& a, float* const* acc, const float* alpha, const float (*p)[B],
                         const BlockOf<B>& b) noexcept {
  constexpr std::size_t W = O::W;
  constexpr std::size_t DT = W == 16 ? 4 : 2;  // NH*DT accumulators + DT values fit the registers
  const std::size_t group = a.v_format.group;
  if constexpr (kvc::kernels::is_quantized(VD)) {
    if (group % W == 0 && a.v_dim / group <= kMaxValueGroups) {
      const std::size_t groups = a.v_dim / group;
      alignas(64) float w[kMaxValueGroups][NH][B];
      alignas(64) float scale[B], min[B];
      float min_term[kMaxValueGroups][NH];
      const std::size_t params = a.v_dim * kvc::kernels::bits_of(VD) / 8;
      for (std::size_t g = 0; g < groups; ++g) {
        for (std::size_t r = 0; r < B; ++r) {
          std::uint32_t sm = 0;
          if (r < b.n) __builtin_memcpy(&sm, b.v[r] + params + 4 * g, 4);
          const __m128 v = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(sm)));
          scale[r] = _mm_cvtss_f32(v);
          min[r] = _mm_cvtss_f32(_mm_movehdup_ps(v));
        }
        for (std::size_t h = 0; h < NH; ++h) {
          typename O::F mt = O::zero();
          for (std::size_t r = 0; r < B; r += W) {
            const typename O::F pr = O::load(p[h] + r);
            O::store(w[g][h] + r, O::mul(pr, O::load(scale + r)));
            mt = O::fmadd(pr, O::load(min + r), mt);
          }
          min_term[g][h] = O::hsum(mt);
        }
      }
      std::size_t d = 0;
      for (; d + DT * W <= a.v_dim; d += DT * W)
        quantized_value_tile<O, VD, NH, DT, B>(a, acc, alpha, &w[0][0][0], min_term, b, d);
      for (; d < a.v_dim; d += W) quantized_value_tile<O, VD, NH, 1, B>(a, acc, alpha, &w[0][0][0], min_term, b, d);
      return;
    }
  }
  std::size_t d = 0;
  for (; d + DT * W <= a.v_dim; d += DT * W) value_tile<O, VD, NH, DT, true, B>(a, acc, alpha, p, b, d);
  for (; d + W <= a.v_dim; d += W) value_tile<O, VD, NH, 1, true, B>(a, acc, alpha, p, b, d);
  if (d < a.v_dim) value_tile<O, VD, NH, 1, false, B>(a, acc, alpha, p, b, d);
}

template <class O, std::size_t B>
inline void attend_heads(const kvc::kernels::AttendArgs& a, std::size_t h0, std::size_t nh, const BlockOf<B>& b,
                         LogitsFnOf<B> logits_fn, ValuesFnOf<B> values_fn, const void* prep) noexcept {
  constexpr std::size_t W = O::W;
  alignas(64) float logits[kHeadTile][B];
  alignas(64) float p[kHeadTile][B];
  logits_fn(a, h0, b, logits, prep);

  // exp(m_old - m_new) of every head in one vector: 0 while m_old is -inf.
  alignas(64) float alpha[W] = {};
  float sums[kHeadTile];
  float* acc[kHeadTile];
  for (std::size_t h = 0; h < nh; ++h) {
    const std::size_t head = h0 + h;
    if (a.logits != nullptr)
      for (std::size_t r = 0; r < b.n; ++r) a.logits[head * a.logits_stride + b.first_row + r] = logits[h][r];
    for (std::size_t r = b.n; r < B; ++r) logits[h][r] = -__builtin_inff();
    typename O::F mx = O::load(logits[h]);
    for (std::size_t r = W; r < B; r += W) mx = O::max(mx, O::load(logits[h] + r));
    const float m_old = a.m[head];
    const float block_max = O::hmax(mx);
    const float m_new = m_old > block_max ? m_old : block_max;
    const typename O::F vm = O::set1(m_new);
    typename O::F sum = O::zero();
    for (std::size_t r = 0; r < B; r += W) {
      const typename O::F e = vexp<O>(O::sub(O::load(logits[h] + r), vm));
      O::store(p[h] + r, e);
      sum = O::add(sum, e);
    }
    alpha[h] = m_old - m_new;
    sums[h] = O::hsum(sum);
    a.m[head] = m_new;
    acc[h] = a.acc + head * a.v_dim;
  }
  O::store(alpha, vexp<O>(O::load(alpha)));
  for (std::size_t h = 0; h < nh; ++h) a.l[h0 + h] = a.l[h0 + h] * alpha[h] + sums[h];
  values_fn(a, acc, alpha, p, b);
}

// fn(std::integral_constant<std::size_t, NH>) for the head count nh of a tile (1..kHeadTile):
// how every stage picks its instantiation for a tile's heads.
template <class Fn>
inline void with_heads(std::size_t nh, Fn&& fn) noexcept {
  switch (nh) {
    case 1: return fn(std::integral_constant<std::size_t, 1>{});
    case 2: return fn(std::integral_constant<std::size_t, 2>{});
    case 3: return fn(std::integral_constant<std::size_t, 3>{});
    default: return fn(std::integral_constant<std::size_t, kHeadTile>{});
  }
}

template <class O, kvc::kernels::Dtype D, std::size_t B>
inline void stages_for(std::size_t nh, LogitsFnOf<B>& lf, ValuesFnOf<B>& vf) noexcept {
  with_heads(nh, [&](auto NH) {
    lf = &block_logits<O, D, NH, B>;
    vf = &block_values<O, D, NH, B>;
  });
}

template <class O, std::size_t B>
inline void stages(kvc::kernels::Dtype kd, kvc::kernels::Dtype vd, std::size_t nh, LogitsFnOf<B>& lf,
                   ValuesFnOf<B>& vf) noexcept {
  LogitsFnOf<B> unused_l;
  ValuesFnOf<B> unused_v;
  with_dtype(kd, [&](auto D) { stages_for<O, D(), B>(nh, lf, unused_v); });
  with_dtype(vd, [&](auto D) { stages_for<O, D(), B>(nh, unused_l, vf); });
}

// Stages that replace the generic ones get the V rows of the block two blocks ahead fetched into
// L2 at once instead: that took int8 fast attention over a DRAM-resident cache from 1.36 to 0.73
// ms at 4K rows (1 block: 0.76, 4 blocks: 0.83). Here and in the generic stages the guess is that
// the segment continues; past its end the hint costs bandwidth, never a fault.
inline constexpr std::size_t kPrefetchBlocks = 2;

inline void prefetch_rows(const std::byte* const* rows, std::size_t n, std::size_t ahead, std::size_t bytes) noexcept {
  std::uintptr_t line = 0;  // each line once, even where rows share one
  for (std::size_t i = 0; i < n; ++i) {
    const std::uintptr_t row = reinterpret_cast<std::uintptr_t>(rows[i]) + ahead;
    if (line < (row & ~std::uintptr_t{63})) line = row & ~std::uintptr_t{63};
    for (; line < row + bytes; line += 64) _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T1);
  }
}

// Storage for one of Ts at a time: the query a call's fast logits stage prepares (int8, generic
// int8 or bf16), so the stack holds the largest of them, not their sum (20 instead of 45 KB on
// avx512bf16: engines run attention on threads with small stacks).
template <class... Ts>
class ScratchOf {
 public:
  // A fresh T in the storage; ends the life of what was there.
  template <class T>
  T& make() noexcept {
    static_assert((std::is_same_v<T, Ts> || ...) && std::is_trivially_destructible_v<T>);
    return *::new (static_cast<void*>(bytes_)) T;
  }

 private:
  static constexpr std::size_t largest() noexcept {
    std::size_t n = 0;
    ((n = sizeof(Ts) > n ? sizeof(Ts) : n), ...);
    return n;
  }
  alignas(64) std::byte bytes_[largest()];
};

// Stages that replace the generic ones (Precision::fast): [0] for full head tiles, [1] for the
// last tile; a null pair keeps the generic stage. `prep` is handed to the logits stage.
// prefetch_values: fetch the V rows of the block kPrefetchBlocks ahead at once, for values stages
// that do not fetch as they go.
template <std::size_t B>
struct StageOverrideOf {
  LogitsFnOf<B> logits[2] = {nullptr, nullptr};
  ValuesFnOf<B> values[2] = {nullptr, nullptr};
  const void* prep = nullptr;
  bool prefetch_values = false;
};
using StageOverride = StageOverrideOf<kAttendBlock>;

// Blocks of B rows gathered across segments; per block and head tile: logits, one online-softmax
// rescale, weights . V. No copy of the cache, no allocation.
template <class O, std::size_t B>
inline void attend_blocks(const kvc::kernels::AttendArgs& a, const StageOverrideOf<B>& over) noexcept {
  LogitsFnOf<B> full_l = nullptr, last_l = nullptr;
  ValuesFnOf<B> full_v = nullptr, last_v = nullptr;
  const std::size_t last_nh = (a.n_q - 1) % kHeadTile + 1;
  stages<O, B>(a.k_format.dtype, a.v_format.dtype, kHeadTile, full_l, full_v);
  stages<O, B>(a.k_format.dtype, a.v_format.dtype, last_nh, last_l, last_v);
  if (over.logits[0] != nullptr) full_l = over.logits[0], last_l = over.logits[1];
  if (over.values[0] != nullptr) full_v = over.values[0], last_v = over.values[1];
  BlockOf<B> b;
  std::size_t row = 0, s = 0, r = 0;
  while (row < a.rows) {
    b.n = 0;
    b.first_row = row;
    while (b.n < B && row < a.rows) {
      while (s < a.n_segments && r == a.segments[s].rows) {
        ++s;
        r = 0;
      }
      if (s == a.n_segments) break;
      // A run of rows of one segment at a time (a row at a time cost 6 % of f16 attention).
      std::size_t run = B - b.n;
      if (run > a.segments[s].rows - r) run = a.segments[s].rows - r;
      if (run > a.rows - row) run = a.rows - row;
      const std::byte* k = a.segments[s].k + r * a.k_stride;
      const std::byte* v = a.segments[s].v + r * a.v_stride;
      for (std::size_t i = 0; i < run; ++i) {
        b.k[b.n + i] = k + i * a.k_stride;
        b.v[b.n + i] = v + i * a.v_stride;
      }
      b.n += run;
      r += run;
      row += run;
    }
    if (b.n == 0) break;
    if (over.prefetch_values)
      prefetch_rows(b.v, b.n, kPrefetchBlocks * B * a.v_stride, kvc::kernels::row_bytes(a.v_format, a.v_dim));
    for (std::size_t h0 = 0; h0 < a.n_q; h0 += kHeadTile) {
      const bool last = h0 + kHeadTile >= a.n_q;
      b.k_ahead = h0 == 0 ? kPrefetchRows * a.k_stride : 0;  // once per block
      b.v_ahead = h0 == 0 ? kPrefetchRows * a.v_stride : 0;
      attend_heads<O, B>(a, h0, last ? last_nh : kHeadTile, b, last ? last_l : full_l, last ? last_v : full_v,
                         over.prep);
    }
    if (b.n < B) break;
  }
}

// Preconditions: quantized dims are multiples of 8 (format.hpp).
template <class O>
inline void attend(const kvc::kernels::AttendArgs& a) noexcept {
  if (a.n_q == 0) return;
  attend_blocks<O, kGenericBlock>(a, {});
}

// With the stages `over` replaces. A call whose override replaces none runs `exact` (the exact
// table's attend, the same generic stages): a fast table need not compile a second copy of them
// at its own block size.
template <class O, std::size_t B>
inline void attend(const kvc::kernels::AttendArgs& a, const StageOverrideOf<B>& over,
                   decltype(kvc::kernels::Table::attend) exact) noexcept {
  if (over.logits[0] == nullptr && over.values[0] == nullptr) return exact(a);
  if (a.n_q == 0) return;
  attend_blocks<O, B>(a, over);
}
