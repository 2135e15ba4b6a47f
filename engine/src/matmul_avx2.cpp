// AVX2 + FMA tiles of ops::matmul (compiled with -mavx2 -mfma; called only when the CPU has both).
#include "matmul_kernels.hpp"

#include <immintrin.h>

namespace kvc::engine::detail {
namespace {

inline float hsum(__m256 v) noexcept {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}

// R weight rows against T token rows: R * T accumulators + R weight loads + one token load must
// fit the 16 ymm registers, so 3 x 4 (16) for the bulk, and smaller tiles for the edges.
template <int R, int T>
inline void tile(float* out, std::size_t out_stride, const float* w, const float* x, std::size_t cols) noexcept {
  __m256 acc[R][T];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < T; ++j) acc[i][j] = _mm256_setzero_ps();
  for (std::size_t c = 0; c < cols; c += 8) {
    __m256 a[R];
    for (int i = 0; i < R; ++i) a[i] = _mm256_loadu_ps(w + std::size_t(i) * cols + c);
    for (int j = 0; j < T; ++j) {
      const __m256 b = _mm256_loadu_ps(x + std::size_t(j) * cols + c);
      for (int i = 0; i < R; ++i) acc[i][j] = _mm256_fmadd_ps(a[i], b, acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < T; ++j) out[std::size_t(j) * out_stride + std::size_t(i)] = hsum(acc[i][j]);
}

template <int R>
inline void rows(float* out, std::size_t out_stride, const float* w, const float* x, std::size_t n,
                 std::size_t cols) noexcept {
  std::size_t t = 0;
  for (; t + 4 <= n; t += 4) tile<R, 4>(out + t * out_stride, out_stride, w, x + t * cols, cols);
  for (; t < n; ++t) tile<R, 1>(out + t * out_stride, out_stride, w, x + t * cols, cols);
}

}  // namespace

void matmul_rows_avx2(float* out, std::size_t out_stride, const float* w, const float* x, std::size_t n,
                      std::size_t cols, std::size_t r0, std::size_t r1) noexcept {
  // Blocks of tokens and rows that stay in L2 (a 2 MB L2 holds 128 tokens and 96 rows of 1536
  // floats), so each weight row is read from memory once per 128 tokens.
  constexpr std::size_t token_block = 128, row_block = 96;
  for (std::size_t t0 = 0; t0 < n; t0 += token_block) {
    const std::size_t nt = n - t0 < token_block ? n - t0 : token_block;
    for (std::size_t rb = r0; rb < r1; rb += row_block) {
      const std::size_t re = r1 - rb < row_block ? r1 : rb + row_block;
      std::size_t r = rb;
      for (; r + 3 <= re; r += 3) rows<3>(out + t0 * out_stride + r, out_stride, w + r * cols, x + t0 * cols, nt, cols);
      for (; r < re; ++r) rows<1>(out + t0 * out_stride + r, out_stride, w + r * cols, x + t0 * cols, nt, cols);
    }
  }
}

}  // namespace kvc::engine::detail
