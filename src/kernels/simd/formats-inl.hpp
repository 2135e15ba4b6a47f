// What the SIMD kernels know per row format, written once against an Ops type and compiled by
// each per-ISA translation unit inside its own anonymous namespace: the loads and stores of the
// element formats (Family::element), and with_dtype, which turns a run-time Dtype into a
// compile-time one by walking kFormatTraits (no list of formats here: a new format either has
// its Elements specialization or does not compile).
// Needs <immintrin.h>, <cstdint>, <cstddef>, <utility>, <type_traits> and kvc/kernels/format.hpp.

// fn(std::integral_constant<Dtype, d>{}) for the run-time format d.
template <class Fn, std::size_t... I>
inline void with_dtype(kvc::kernels::Dtype d, Fn&& fn, std::index_sequence<I...>) noexcept {
  (void)((static_cast<std::size_t>(d) == I &&
          (fn(std::integral_constant<kvc::kernels::Dtype, static_cast<kvc::kernels::Dtype>(I)>{}), true)) ||
         ...);
}

template <class Fn>
inline void with_dtype(kvc::kernels::Dtype d, Fn&& fn) noexcept {
  with_dtype(d, fn, std::make_index_sequence<kvc::kernels::kDtypeCount>{});
}

template <kvc::kernels::Dtype D>
inline constexpr bool is_grouped = kvc::kernels::traits(D).family == kvc::kernels::Family::grouped;

// Elements [d, d + n) of a row of element format D, n <= O::W: load decodes them to f32 lanes
// (lanes at and beyond n zero), store encodes them bitwise as the reference does. One
// specialization per element format; the primary template is left undefined on purpose.
template <kvc::kernels::Dtype D>
struct Elements;

template <>
struct Elements<kvc::kernels::Dtype::f32> {
  template <class O>
  static typename O::F load(const std::byte* row, std::size_t d, std::size_t n) noexcept {
    return O::load_n(reinterpret_cast<const float*>(row) + d, n);
  }
  template <class O>
  static void store(std::byte* row, std::size_t d, typename O::F v, std::size_t n) noexcept {
    O::store_n(reinterpret_cast<float*>(row) + d, v, n);
  }
};

// f16 and bf16: two-byte codes the op set converts.
template <kvc::kernels::Dtype D>
  requires(D == kvc::kernels::Dtype::f16 || D == kvc::kernels::Dtype::bf16)
struct Elements<D> {
  template <class O>
  static typename O::F load(const std::byte* row, std::size_t d, std::size_t n) noexcept {
    if constexpr (D == kvc::kernels::Dtype::f16) return O::load_f16(row + 2 * d, n);
    else return O::load_bf16(row + 2 * d, n);
  }
  template <class O>
  static void store(std::byte* row, std::size_t d, typename O::F v, std::size_t n) noexcept {
    if constexpr (D == kvc::kernels::Dtype::f16) O::store_f16(row + 2 * d, v, n);
    else O::store_bf16(row + 2 * d, v, n);
  }
};
