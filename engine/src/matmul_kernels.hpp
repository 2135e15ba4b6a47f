#pragma once
// The row-times-rows product behind ops::matmul, one copy per instruction set. Per-ISA files
// include only this header and <immintrin.h> (see STYLE.md: a shared inline function compiled
// for AVX2 could win the link and crash an older CPU).
#include <cstddef>

namespace kvc::engine::detail {

// out[t * out_stride + r] = sum_c w[r * cols + c] * x[t * cols + c] for r in [r0, r1), t < n.
// AVX2 + FMA; cols must be a multiple of 8.
void matmul_rows_avx2(float* out, std::size_t out_stride, const float* w, const float* x, std::size_t n,
                      std::size_t cols, std::size_t r0, std::size_t r1) noexcept;

}  // namespace kvc::engine::detail
