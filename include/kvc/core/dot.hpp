#pragma once
// The float dot product of the scalar paths (projections, the reference engine's matvec).
#include <cstddef>

namespace kvc {

// Eight independent partial sums, so that the compiler vectorizes it without -ffast-math (one
// sum is a serial chain of additions it may not reorder).
[[nodiscard]] inline float dot(const float* a, const float* b, std::size_t n) noexcept {
  float part[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (std::size_t l = 0; l < 8; ++l) part[l] += a[i + l] * b[i + l];
  float sum = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

}  // namespace kvc
