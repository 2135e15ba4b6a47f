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

// A matrix [rows][cols] left in its ggml block format, each row `row_bytes` long (tensor data of
// a mapped GGUF file). Empty (data null) when a matrix has no such copy.
struct QuantMatrix {
  GgmlType type = GgmlType::f32;
  const std::byte* data = nullptr;
  std::size_t rows = 0, cols = 0, row_bytes = 0;

  [[nodiscard]] bool empty() const noexcept { return data == nullptr; }
};

// The formats ops::matvec_quant multiplies directly: Q4_1 and Q8_0 (SmolLM2's).
[[nodiscard]] bool has_quant_matvec(GgmlType type) noexcept;

}  // namespace kvc::engine
