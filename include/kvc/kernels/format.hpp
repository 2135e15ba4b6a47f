#pragma once
// Row formats of the encoded cache: how one token's key or value row of `dim` elements is laid
// out in bytes. This header is the block-format contract shared by every ISA's translation unit,
// so it includes nothing but <cstdint>/<cstddef> and its functions have internal linkage (an
// AVX-512 compiled copy of an inline function must never win the link for a scalar caller).
//
//   f32, f16, bf16:  dim elements, little-endian.
//   q8, q4, q2:      [codes: dim*bits/8 bytes][params: dim/group x {f16 scale, f16 min}]
//                    q4 packs element 2j in the low nibble of byte j, 2j+1 in the high nibble;
//                    q2 packs element 4j+t in bits 2t..2t+1 of byte j.
//                    value = fma(code, scale, min) in f32 (see reference.hpp for the encoder).
#include <cstddef>
#include <cstdint>

namespace kvc::kernels {

enum class Dtype : std::uint8_t { f32, f16, bf16, q8, q4, q2 };

struct RowFormat {
  Dtype dtype = Dtype::f32;
  std::uint16_t group = 0;  // elements per scale/min pair; 0 for the float formats

  friend constexpr bool operator==(RowFormat, RowFormat) = default;
};

static constexpr bool is_quantized(Dtype d) noexcept {
  return d == Dtype::q8 || d == Dtype::q4 || d == Dtype::q2;
}

static constexpr unsigned bits_of(Dtype d) noexcept {
  switch (d) {
    case Dtype::f32: return 32;
    case Dtype::f16:
    case Dtype::bf16: return 16;
    case Dtype::q8: return 8;
    case Dtype::q4: return 4;
    case Dtype::q2: return 2;
  }
  return 0;
}

// Bytes of one parameter pair (f16 scale, f16 min) per quantization group.
inline constexpr std::size_t kGroupParamBytes = 4;

static constexpr std::size_t code_bytes(RowFormat f, std::size_t dim) noexcept {
  return dim * bits_of(f.dtype) / 8;
}

static constexpr std::size_t row_bytes(RowFormat f, std::size_t dim) noexcept {
  if (!is_quantized(f.dtype)) return code_bytes(f, dim);
  return code_bytes(f, dim) + (f.group == 0 ? 0 : dim / f.group * kGroupParamBytes);
}

static constexpr const char* dtype_name(Dtype d) noexcept {
  switch (d) {
    case Dtype::f32: return "f32";
    case Dtype::f16: return "f16";
    case Dtype::bf16: return "bf16";
    case Dtype::q8: return "int8";
    case Dtype::q4: return "int4";
    case Dtype::q2: return "int2";
  }
  return "?";
}

}  // namespace kvc::kernels
