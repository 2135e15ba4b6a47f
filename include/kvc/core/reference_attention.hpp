#pragma once
// Exact attention over plain float arrays: what a cache without policies must reproduce.
// It applies the same online-softmax recurrence as the scalar kernel, row by row, so an f32
// cache on the scalar kernels matches it bit for bit whatever its layout or paging.
#include "kvc/core/shape.hpp"
#include "kvc/kernels/reference.hpp"

#include <limits>
#include <span>
#include <vector>

namespace kvc::reference {

// q: [query_heads][head_dim] of one token; keys, values: [rows][kv_heads][head_dim];
// out: [query_heads][head_dim]. Attends to every row.
inline void attention(const Shape& shape, std::span<const float> q, std::span<const float> keys,
                      std::span<const float> values, float scale, std::span<float> out) {
  const std::size_t hd = shape.head_dim;
  const std::size_t row = shape.kv_heads * hd;
  const std::size_t rows = keys.size() / row;
  for (std::size_t qh = 0; qh < shape.query_heads; ++qh) {
    const std::size_t kv = qh / shape.group_size();
    float m = -std::numeric_limits<float>::infinity();
    float l = 0.0f;
    std::vector<float> acc(hd, 0.0f);
    for (std::size_t r = 0; r < rows; ++r) {
      const float* k = keys.data() + r * row + kv * hd;
      float dot = 0.0f;
      for (std::size_t d = 0; d < hd; ++d) dot += q[qh * hd + d] * k[d];
      kernels::ref::softmax_step(scale * dot, values.data() + r * row + kv * hd, hd, m, l, acc.data());
    }
    for (std::size_t d = 0; d < hd; ++d) out[qh * hd + d] = acc[d] * (1.0f / l);
  }
}

}  // namespace kvc::reference
