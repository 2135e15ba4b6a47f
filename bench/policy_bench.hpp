#pragma once
// What the policy benchmarks share: the decode shape (4 layers, 32 query heads sharing 8 KV
// heads, head_dim 128), random normal rows with fixed seeds, and a prefill of every layer.
#include "kvc/kvc.hpp"

#include <cstddef>
#include <random>
#include <vector>

namespace kvc_bench {

inline const kvc::Shape kShape{4, 32, 8, 128};
inline constexpr std::size_t kRow = 8 * 128;  // kv_heads * head_dim: one token of one layer
inline constexpr auto kF16 = kvc::kernels::Dtype::f16;

inline std::vector<float> random_rows(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

template <class Cache>
void prefill_all(Cache& cache, const std::vector<float>& keys, const std::vector<float>& values) {
  for (std::size_t layer = 0; layer < kShape.layers; ++layer) cache.prefill(layer, 0, keys, values);
}

}  // namespace kvc_bench
