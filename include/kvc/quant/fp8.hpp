#pragma once
// Fp8: every key and value element stored as one OCP FP8 E4M3 byte (sign, 4 exponent bits with
// bias 7, 3 mantissa bits; largest finite 448, no infinities).
//
// Context:
//  * OCP "8-bit Floating Point Specification (OFP8)" 1.0 (2023; Micikevicius et al., "FP8
//    Formats for Deep Learning", arXiv:2209.05433) defines E4M3 and E5M2; E4M3 trades range for
//    precision, the choice for forward-pass tensors.
//  * vLLM's fp8 KV cache (kv_cache_dtype="fp8_e4m3") stores E4M3 elements with one scale per
//    tensor, 1.0 by default: the form used here, with no scale at all.
//
// Format (kvc/kernels/format.hpp, e4m3; byte diagram and bounds in docs/formats.md): dim bytes,
// element i in byte i; encode rounds to nearest even and saturates at +-448. Round-trip error
// per element: at most |x| * 2^-4 for 2^-6 <= |x| <= 448, at most 2^-10 below 2^-6; larger
// magnitudes become +-448 (use PerToken where keys have outliers beyond that, or a smaller
// attention scale upstream). The scalar encoder (kvc/kernels/fp8.hpp) is the specification.
//
// Bytes per row of dim d: d (128 for d = 128: half of f16, 16 bytes less than int8 with groups
// of 32). Time: encoding on append, decoding inside the attention kernel (through f16, no
// table); no state, no parameters.
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/quantization.hpp"
#include "kvc/kernels/format.hpp"

namespace kvc::quant {

struct Fp8 {
  using family = kvc::family::quantization;

  [[nodiscard]] kernels::RowFormat key_format() const { return {kernels::Dtype::e4m3, 0}; }
  [[nodiscard]] kernels::RowFormat value_format() const { return {kernels::Dtype::e4m3, 0}; }
};

}  // namespace kvc::quant
