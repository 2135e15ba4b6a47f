// AVX2 + FMA + F16C kernels of ops::matmul and ops::matvec_quant (compiled with those flags;
// called only when the kvc kernel choice is AVX2 or wider, which implies all three).
#include "matmul_kernels.hpp"

#include <immintrin.h>

#include <cstdint>

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

inline float load_f16(const std::byte* p) noexcept {
  std::uint16_t h;
  __builtin_memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// Eight bytes as floats (unsigned / signed).
inline __m256 u8x8(__m128i bytes) noexcept { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)); }
inline __m256 i8x8(const std::byte* p) noexcept {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

}  // namespace

// Per block, sum_j (d q_j + m) x_j = d (q . x) + m sum(x): the nibbles widen to floats, the block's
// q . x accumulates as a vector scaled by d, and m sum(x) uses the caller's block sums. x stays
// float32 (llama.cpp quantizes it to int8 per block, which measured 1.5x faster here but moves
// the logits by up to 1.3 from the float32 prefill's; docs/model.md).
void matvec_q4_1_avx2(float* out, const std::byte* w, std::size_t row_bytes, const float* x, const float* xsum,
                      std::size_t cols, std::size_t r0, std::size_t r1) noexcept {
  const std::size_t blocks = cols / 32;
  const __m128i low = _mm_set1_epi8(0x0F);
  for (std::size_t r = r0; r < r1; ++r) {
    const std::byte* b = w + r * row_bytes;
    __m256 acc = _mm256_setzero_ps();
    float offset = 0.0f;
    for (std::size_t k = 0; k < blocks; ++k, b += 20) {
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 4));
      // Elements 0-15 are the low nibbles, 16-31 the high ones.
      const __m128i lo = _mm_and_si128(q, low), hi = _mm_and_si128(_mm_srli_epi16(q, 4), low);
      const float* xb = x + 32 * k;
      __m256 t = _mm256_mul_ps(u8x8(lo), _mm256_loadu_ps(xb));
      t = _mm256_fmadd_ps(u8x8(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(xb + 8), t);
      t = _mm256_fmadd_ps(u8x8(hi), _mm256_loadu_ps(xb + 16), t);
      t = _mm256_fmadd_ps(u8x8(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(xb + 24), t);
      acc = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(b)), t, acc);
      offset += load_f16(b + 2) * xsum[k];
    }
    out[r] = hsum(acc) + offset;
  }
}

void matvec_q8_0_avx2(float* out, const std::byte* w, std::size_t row_bytes, const float* x, std::size_t cols,
                      std::size_t r0, std::size_t r1) noexcept {
  const std::size_t blocks = cols / 32;
  for (std::size_t r = r0; r < r1; ++r) {
    const std::byte* b = w + r * row_bytes;
    __m256 acc = _mm256_setzero_ps();
    for (std::size_t k = 0; k < blocks; ++k, b += 34) {
      const float* xb = x + 32 * k;
      __m256 t = _mm256_mul_ps(i8x8(b + 2), _mm256_loadu_ps(xb));
      t = _mm256_fmadd_ps(i8x8(b + 10), _mm256_loadu_ps(xb + 8), t);
      t = _mm256_fmadd_ps(i8x8(b + 18), _mm256_loadu_ps(xb + 16), t);
      t = _mm256_fmadd_ps(i8x8(b + 26), _mm256_loadu_ps(xb + 24), t);
      acc = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(b)), t, acc);
    }
    out[r] = hsum(acc);
  }
}

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
