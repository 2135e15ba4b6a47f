#include "kvc_engine/ops.hpp"

#include "kvc/core/dot.hpp"

#include <algorithm>
#include <cmath>

namespace kvc::engine::ops {

void matvec(std::span<float> out, std::span<const float> w, std::span<const float> x) noexcept {
  const std::size_t n = x.size();
  const float* xp = x.data();
  for (std::size_t r = 0; r < out.size(); ++r) out[r] = kvc::dot(w.data() + r * n, xp, n);
}

void rmsnorm(std::span<float> out, std::span<const float> x, std::span<const float> weight) noexcept {
  float ss = 0.0f;
  for (const float v : x) ss += v * v;
  ss = 1.0f / std::sqrt(ss / float(x.size()) + 1e-5f);
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = weight[i] * (ss * x[i]);
}

void rope(std::span<float> v, std::size_t head_dim, std::int32_t position, float theta) noexcept {
  for (std::size_t i = 0; i < v.size(); i += 2) {
    const std::size_t d = i % head_dim;
    const float freq = 1.0f / std::pow(theta, float(d) / float(head_dim));
    const float angle = float(position) * freq;
    const float c = std::cos(angle), s = std::sin(angle);
    const float a = v[i], b = v[i + 1];
    v[i] = a * c - b * s;
    v[i + 1] = a * s + b * c;
  }
}

void softmax(std::span<float> x) noexcept {
  if (x.empty()) return;
  const float m = *std::max_element(x.begin(), x.end());
  float sum = 0.0f;
  for (float& v : x) {
    v = std::exp(v - m);
    sum += v;
  }
  const float inv = 1.0f / sum;
  for (float& v : x) v *= inv;
}

void swiglu(std::span<float> h1, std::span<const float> h3) noexcept {
  for (std::size_t i = 0; i < h1.size(); ++i) {
    const float v = h1[i];
    h1[i] = v / (1.0f + std::exp(-v)) * h3[i];
  }
}

}  // namespace kvc::engine::ops
