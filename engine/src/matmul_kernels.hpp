#pragma once
// The matrix products behind ops::matmul and ops::matvec_quant, one copy per instruction set. Per-ISA files
// include only this header and <immintrin.h> (see STYLE.md: a shared inline function compiled
// for AVX2 could win the link and crash an older CPU).
#include <cstddef>

namespace kvc::engine::detail {

// out[t * out_stride + r] = sum_c w[r * cols + c] * x[t * cols + c] for r in [r0, r1), t < n.
// AVX2 + FMA; cols must be a multiple of 8.
void matmul_rows_avx2(float* out, std::size_t out_stride, const float* w, const float* x, std::size_t n,
                      std::size_t cols, std::size_t r0, std::size_t r1) noexcept;

// out[r] = row r of a matrix in a block format times x, for r in [r0, r1). Rows are row_bytes
// apart; cols is a multiple of 32. AVX2 + FMA + F16C.
// Q4_1 (20-byte blocks: f16 d, f16 m, 16 bytes of nibbles); xsum[k] = the sum of block k of x.
void matvec_q4_1_avx2(float* out, const std::byte* w, std::size_t row_bytes, const float* x, const float* xsum,
                      std::size_t cols, std::size_t r0, std::size_t r1) noexcept;
// Q8_0 (34-byte blocks: f16 d, 32 int8).
void matvec_q8_0_avx2(float* out, const std::byte* w, std::size_t row_bytes, const float* x, std::size_t cols,
                      std::size_t r0, std::size_t r1) noexcept;

}  // namespace kvc::engine::detail
