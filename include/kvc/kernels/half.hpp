#pragma once
// Scalar f16/bf16 conversions: the specification the SIMD conversions must match bit for bit.
// Float-to-half conversions saturate to the largest finite value instead of producing infinity,
// so that a finite cache stays finite.
#include <bit>
#include <cmath>
#include <cstdint>

namespace kvc::kernels::half {

inline constexpr std::uint16_t kF16MaxBits = 0x7BFF;  // 65504
inline constexpr float kF16Max = 65504.0f;

[[nodiscard]] inline float f16_to_f32(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1Fu;
  const std::uint32_t mant = h & 0x3FFu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in f32
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Round to nearest, ties to even; finite inputs beyond the f16 range give +-65504.
[[nodiscard]] inline std::uint16_t f32_to_f16(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t abs = x & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return static_cast<std::uint16_t>(sign | 0x7E00u);  // NaN
  if (abs >= 0x477FF000u) return static_cast<std::uint16_t>(sign | kF16MaxBits);  // rounds past 65504
  if (abs < 0x38800000u) {  // below 2^-14: subnormal result; scaling by 2^24 is exact
    const auto m = static_cast<std::uint32_t>(std::nearbyint(std::bit_cast<float>(abs) * 16777216.0f));
    return static_cast<std::uint16_t>(sign | m);
  }
  std::uint32_t h = ((((abs >> 23) - 112u) << 10) | ((abs & 0x7FFFFFu) >> 13));
  const std::uint32_t rest = abs & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry correctly bumps the exponent
  return static_cast<std::uint16_t>(sign | h);
}

namespace detail {
// The f16 value adjacent to h in the direction of `up`, saturating at +-65504.
[[nodiscard]] inline std::uint16_t step(std::uint16_t h, bool up) noexcept {
  const bool negative = (h & 0x8000u) != 0;
  const std::uint16_t mag = h & 0x7FFFu;
  if (mag == 0) return up ? std::uint16_t{0x0001} : std::uint16_t{0x8001};
  const bool grow = (up != negative);  // moving away from zero
  if (grow && mag == kF16MaxBits) return h;
  return static_cast<std::uint16_t>(grow ? h + 1 : h - 1);
}
}  // namespace detail

// Largest f16 <= f (saturated to -65504 below the range).
[[nodiscard]] inline std::uint16_t f32_to_f16_down(float f) noexcept {
  const std::uint16_t h = f32_to_f16(f);
  return f16_to_f32(h) > f ? detail::step(h, false) : h;
}

// Smallest f16 >= f (saturated to 65504 above the range).
[[nodiscard]] inline std::uint16_t f32_to_f16_up(float f) noexcept {
  const std::uint16_t h = f32_to_f16(f);
  return f16_to_f32(h) < f ? detail::step(h, true) : h;
}

[[nodiscard]] inline float bf16_to_f32(std::uint16_t h) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

// Round to nearest, ties to even; finite inputs that would round to infinity give +-max bf16.
[[nodiscard]] inline std::uint16_t f32_to_bf16(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  const std::uint32_t rounded = x + 0x7FFFu + ((x >> 16) & 1u);
  if ((rounded & 0x7F800000u) == 0x7F800000u && (x & 0x7F800000u) != 0x7F800000u)
    return static_cast<std::uint16_t>(((x >> 16) & 0x8000u) | 0x7F7Fu);
  return static_cast<std::uint16_t>(rounded >> 16);
}

}  // namespace kvc::kernels::half
