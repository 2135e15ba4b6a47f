#pragma once
// Scalar OCP FP8 E4M3 conversions (OCP "8-bit Floating Point Specification (OFP8)" 1.0): the
// specification of the e4m3 row format (format.hpp, docs/formats.md) that the SIMD codecs
// (src/kernels/simd/fp8-inl.hpp) match bit for bit. Byte S.EEEE.MMM: exponent bias 7, no
// infinities, NaN = S.1111.111, largest finite 1.75 * 2^8 = 448, smallest subnormal 2^-9.
// Like half.hpp, never included by a per-ISA translation unit.
#include <bit>
#include <cstdint>

namespace kvc::kernels::fp8 {

inline constexpr std::uint8_t kE4m3MaxBits = 0x7E;  // 448
inline constexpr std::uint8_t kE4m3NanBits = 0x7F;

// Round to nearest, ties to even; magnitudes from 448 up (which round to 448 or past it) and
// infinities give +-448 (saturating: a finite cache stays finite); NaN gives the NaN of its sign.
[[nodiscard]] inline std::uint8_t f32_to_e4m3(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const auto sign = static_cast<std::uint8_t>((x >> 24) & 0x80u);
  const std::uint32_t abs = x & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return sign | kE4m3NanBits;
  if (abs >= 0x43E00000u) return sign | kE4m3MaxBits;  // 448.0f
  const int e = static_cast<int>(abs >> 23) - 127;
  if (e < -10) return sign;  // below 2^-10, half the smallest subnormal (f32 subnormals too)
  // The 24-bit significand s holds x = s * 2^(e - 23); the e4m3 quantum is 2^(e - 3) for
  // normals (e >= -6) and 2^-9 for subnormals, r bits of s below it.
  const std::uint32_t s = (abs & 0x7FFFFFu) | 0x800000u;
  const int r = e < -6 ? 14 - e : 20;
  std::uint32_t q = s >> r;  // normals: 8..15, the implicit bit included
  const std::uint32_t rest = s & ((1u << r) - 1u), half = 1u << (r - 1);
  if (rest > half || (rest == half && (q & 1u) != 0)) ++q;  // a carry correctly bumps the exponent
  const std::uint32_t base = e < -6 ? 0u : static_cast<std::uint32_t>(e + 6) << 3;
  return static_cast<std::uint8_t>(sign | (base + q));
}

// Exact; NaN codes give the quiet NaN of their sign.
[[nodiscard]] inline float e4m3_to_f32(std::uint8_t c) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(c & 0x80u) << 24;
  const std::uint32_t mag = c & 0x7Fu;
  if (mag == kE4m3NanBits) return std::bit_cast<float>(sign | 0x7FC00000u);
  if (mag < 8) return std::bit_cast<float>(sign | std::bit_cast<std::uint32_t>(static_cast<float>(mag) * 0x1p-9f));
  return std::bit_cast<float>(sign | ((mag << 20) + (120u << 23)));  // exponent E - 7 + 127
}

}  // namespace kvc::kernels::fp8
