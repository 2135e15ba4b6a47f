#pragma once
// Conversion of ggml tensor data to float32: the block formats of docs/model.md, each decoded
// exactly as ggml's dequantize_row_* does (checked bit for bit against the gguf Python package
// by tests/engine/dequant_test.cpp).
#include "kvc_engine/gguf.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

namespace kvc::engine {

// IEEE half and bfloat16 to float (exact: every value of both is a float).
[[nodiscard]] float f16_to_f32(std::uint16_t bits) noexcept;
[[nodiscard]] inline float bf16_to_f32(std::uint16_t bits) noexcept {
  const std::uint32_t u = std::uint32_t(bits) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

// True for F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
[[nodiscard]] bool can_dequantize(GgmlType type) noexcept;

// Decodes out.size() elements (a whole number of blocks) from `in`, which must hold exactly
// their bytes. Throws kvc::Error for an unsupported type or mismatched sizes.
void dequantize(GgmlType type, std::span<const std::byte> in, std::span<float> out);

}  // namespace kvc::engine
