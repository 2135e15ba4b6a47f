#include "kvc_engine/ops.hpp"

#include "kvc/core/dot.hpp"
#include "kvc/kernels/table.hpp"
#include "matmul_kernels.hpp"
#include "parallel.hpp"

#include <algorithm>
#include <cmath>

namespace kvc::engine::ops {

namespace {

struct MatmulJob {
  float* out;
  const float* w;
  const float* x;
  std::size_t n, rows, cols, rows_per_task;
  bool avx2;
};

void matmul_task(void* context, std::size_t task) noexcept {
  const auto& j = *static_cast<const MatmulJob*>(context);
  const std::size_t r0 = task * j.rows_per_task;
  const std::size_t r1 = std::min(j.rows, r0 + j.rows_per_task);
  if (r0 >= r1) return;
  if (j.avx2) {
    detail::matmul_rows_avx2(j.out, j.rows, j.w, j.x, j.n, j.cols, r0, r1);
    return;
  }
  for (std::size_t t = 0; t < j.n; ++t)
    for (std::size_t r = r0; r < r1; ++r) j.out[t * j.rows + r] = kvc::dot(j.w + r * j.cols, j.x + t * j.cols, j.cols);
}

bool use_avx2() noexcept {
  static const bool avx2 = kvc::kernels::active().isa != kvc::kernels::Isa::scalar;
  return avx2;
}

}  // namespace

void matmul(std::span<float> out, std::span<const float> w, std::span<const float> x, std::size_t n) noexcept {
  const std::size_t cols = x.size() / n, rows = w.size() / cols;
  MatmulJob job{out.data(), w.data(), x.data(), n, rows, cols, rows, use_avx2() && cols % 8 == 0};
  // Below ~64K multiply-adds a second thread costs more than it saves (stories260K's layers).
  auto& pool = detail::ThreadPool::instance();
  const std::size_t tasks = rows * cols * n < (std::size_t{1} << 16) ? 1 : pool.size();
  job.rows_per_task = (rows + tasks - 1) / tasks;
  job.rows_per_task = (job.rows_per_task + 2) / 3 * 3;  // whole 3-row tiles
  pool.run(tasks, matmul_task, &job);
}

void matvec(std::span<float> out, std::span<const float> w, std::span<const float> x) noexcept {
  matmul(out, w, x, 1);
}

void rmsnorm(std::span<float> out, std::span<const float> x, std::span<const float> weight, float eps) noexcept {
  float ss = 0.0f;
  for (const float v : x) ss += v * v;
  ss = 1.0f / std::sqrt(ss / float(x.size()) + eps);
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = weight[i] * (ss * x[i]);
}

void rope_angles(std::span<float> cos_sin, std::int32_t position, float theta) noexcept {
  const std::size_t rotary_dim = cos_sin.size();
  for (std::size_t i = 0; i < rotary_dim; i += 2) {
    const float freq = 1.0f / std::pow(theta, float(i) / float(rotary_dim));
    const float angle = float(position) * freq;
    cos_sin[i] = std::cos(angle);
    cos_sin[i + 1] = std::sin(angle);
  }
}

void rope(std::span<float> v, std::size_t head_dim, std::span<const float> cos_sin) noexcept {
  for (std::size_t head = 0; head < v.size(); head += head_dim) {
    float* x = v.data() + head;
    for (std::size_t i = 0; i < cos_sin.size(); i += 2) {
      const float c = cos_sin[i], s = cos_sin[i + 1];
      const float a = x[i], b = x[i + 1];
      x[i] = a * c - b * s;
      x[i + 1] = a * s + b * c;
    }
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
