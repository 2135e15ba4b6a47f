#pragma once
// Row formats of the encoded cache: how one token's key or value row of `dim` elements is laid
// out in bytes. This header is the block-format contract shared by every ISA's translation unit,
// so it includes nothing but <cstdint>/<cstddef> and its functions have internal linkage (an
// AVX-512 compiled copy of an inline function must never win the link for a scalar caller).
//
// Every fact about a format is one row of kFormatTraits below (ggml's type_traits idea); each
// layer that implements formats (the reference codecs in reference.hpp, the SIMD element
// loaders in src/kernels/simd) keeps its own table checked against this one at compile time,
// and the tests and benchmarks iterate this one. docs/formats.md has the byte diagrams and the
// steps to add a format.
#include <cstddef>
#include <cstdint>

namespace kvc::kernels {

enum class Dtype : std::uint8_t { f32, f16, bf16, q8, q4, q2, e4m3 };

// How a format stores a row.
//   element: dim codes of `bits` each, one per element, nothing else (f32, f16, bf16, e4m3:
//            OCP FP8 E4M3 bytes, fp8.hpp).
//   grouped: [codes: dim*bits/8 bytes][params: dim/group x GroupParams]; value = fma(code,
//            scale, min) in f32 (see reference.hpp for the encoder). q4 packs element 2j in the
//            low nibble of byte j, 2j+1 in the high nibble; q2 packs element 4j+t in bits
//            2t..2t+1 of byte j.
enum class Family : std::uint8_t { element, grouped };

struct FormatTraits {
  Dtype dtype;
  const char* name;  // in logs, errors and benchmark names
  unsigned bits;     // per element code
  Family family;
  // The group the tests and benchmarks use when they iterate the table (0: no groups).
  std::uint16_t sample_group;
  // Element formats' round trip, the bound the tests check: |x - decode(encode(x))| <=
  // max(|x| * rel_error, abs_error) for |x| <= max_finite; larger magnitudes saturate to
  // +-max_finite. Grouped formats' bound depends on the group (scale / 2, docs/formats.md): 0 here.
  float max_finite;
  float rel_error;
  float abs_error;
};

inline constexpr FormatTraits kFormatTraits[] = {
    // dtype      name    bits family           group max_finite     rel_error abs_error
    {Dtype::f32, "f32", 32, Family::element, 0, 0x1.fffffep127f, 0.0f, 0.0f},
    {Dtype::f16, "f16", 16, Family::element, 0, 65504.0f, 0x1p-11f, 0x1p-25f},
    {Dtype::bf16, "bf16", 16, Family::element, 0, 0x1.fep127f, 0x1p-8f, 0x1p-134f},
    {Dtype::q8, "int8", 8, Family::grouped, 32, 0.0f, 0.0f, 0.0f},
    {Dtype::q4, "int4", 4, Family::grouped, 32, 0.0f, 0.0f, 0.0f},
    {Dtype::q2, "int2", 2, Family::grouped, 32, 0.0f, 0.0f, 0.0f},
    {Dtype::e4m3, "e4m3", 8, Family::element, 0, 448.0f, 0x1p-4f, 0x1p-10f},
};
inline constexpr std::size_t kDtypeCount = sizeof(kFormatTraits) / sizeof(kFormatTraits[0]);

namespace detail {
// An exhaustive switch (-Wswitch, warnings are errors): a new enumerator does not compile until
// it is added here, and then the assertion below fails until kFormatTraits has its row.
static constexpr bool is_named(Dtype d) noexcept {
  switch (d) {
    case Dtype::f32:
    case Dtype::f16:
    case Dtype::bf16:
    case Dtype::q8:
    case Dtype::q4:
    case Dtype::q2:
    case Dtype::e4m3: return true;
  }
  return false;
}
// Whether rows[i].*Key == i for every row: how a table indexed by an enum (this one, the
// reference codecs, the ISA targets) is checked to list it in order.
template <auto Key, class Row, std::size_t N>
constexpr bool rows_in_enum_order(const Row (&rows)[N]) noexcept {
  for (std::size_t i = 0; i < N; ++i)
    if (static_cast<std::size_t>(rows[i].*Key) != i) return false;
  return true;
}
}  // namespace detail
static_assert(detail::rows_in_enum_order<&FormatTraits::dtype>(kFormatTraits),
              "kFormatTraits must list the formats in the order of Dtype.");
static_assert(!detail::is_named(static_cast<Dtype>(kDtypeCount)),
              "Every Dtype needs its row in kFormatTraits (the table is shorter than the enum).");

// The parameters of one quantization group of a grouped format, little-endian f16 bits.
struct GroupParams {
  std::uint16_t scale;
  std::uint16_t min;
};
// Bytes of one parameter pair per quantization group.
inline constexpr std::size_t kGroupParamBytes = 4;
static_assert(sizeof(GroupParams) == kGroupParamBytes, "GroupParams is the stored {f16 scale, f16 min} pair.");

struct RowFormat {
  Dtype dtype = Dtype::f32;
  std::uint16_t group = 0;  // elements per scale/min pair; 0 for the element formats

  friend constexpr bool operator==(RowFormat, RowFormat) = default;
};

static constexpr const FormatTraits& traits(Dtype d) noexcept { return kFormatTraits[static_cast<std::size_t>(d)]; }

// Whether rows of d are codes with per-group {scale, min} (Family::grouped).
static constexpr bool is_quantized(Dtype d) noexcept { return traits(d).family == Family::grouped; }

static constexpr unsigned bits_of(Dtype d) noexcept { return traits(d).bits; }

static constexpr const char* dtype_name(Dtype d) noexcept { return traits(d).name; }

static constexpr std::size_t code_bytes(RowFormat f, std::size_t dim) noexcept {
  return dim * bits_of(f.dtype) / 8;
}

static constexpr std::size_t row_bytes(RowFormat f, std::size_t dim) noexcept {
  if (!is_quantized(f.dtype)) return code_bytes(f, dim);
  return code_bytes(f, dim) + (f.group == 0 ? 0 : dim / f.group * kGroupParamBytes);
}

// The format of d that the tests and benchmarks use (its sample group).
static constexpr RowFormat sample_format(Dtype d) noexcept { return {d, traits(d).sample_group}; }

}  // namespace kvc::kernels
