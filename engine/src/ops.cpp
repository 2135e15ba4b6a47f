#include "kvc_engine/ops.hpp"

#include "kvc/core/dot.hpp"
#include "kvc/core/error.hpp"
#include "kvc/kernels/table.hpp"
#include "matmul_kernels.hpp"
#include "parallel.hpp"

#include <algorithm>
#include <cstring>
#include <cmath>

namespace kvc::engine::ops {

namespace {

// The AVX2 kernels are built for x86-64 only (engine/CMakeLists.txt); elsewhere every ISA the
// library supports is scalar and the products take the portable loops.
constexpr bool kAvx2Kernels = kernels::isa_built(kernels::Isa::avx2);

bool use_avx2(kernels::Isa isa) noexcept { return kAvx2Kernels && isa != kernels::Isa::scalar; }

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
  if constexpr (kAvx2Kernels) {
    if (j.avx2) {
      detail::matmul_rows_avx2(j.out, j.rows, j.w, j.x, j.n, j.cols, r0, r1);
      return;
    }
  }
  for (std::size_t t = 0; t < j.n; ++t)
    for (std::size_t r = r0; r < r1; ++r) j.out[t * j.rows + r] = kvc::dot(j.w + r * j.cols, j.x + t * j.cols, j.cols);
}

struct QuantJob {
  float* out;
  const QuantMatrix* w;
  const float* x;
  const float* xsum;
  std::size_t rows_per_task;
  bool avx2;
};

float load_f16(const std::byte* p) noexcept {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// The scalar kernels: each weight as dequantize() decodes it, times x.
float dot_q4_1(const std::byte* b, const float* x, std::size_t blocks) noexcept {
  float sum = 0.0f;
  for (std::size_t k = 0; k < blocks; ++k, b += 20, x += 32) {
    const float d = load_f16(b), m = load_f16(b + 2);
    const auto* q = reinterpret_cast<const std::uint8_t*>(b + 4);
    for (int j = 0; j < 16; ++j) sum += (d * float(q[j] & 0x0F) + m) * x[j] + (d * float(q[j] >> 4) + m) * x[j + 16];
  }
  return sum;
}

float dot_q8_0(const std::byte* b, const float* x, std::size_t blocks) noexcept {
  float sum = 0.0f;
  for (std::size_t k = 0; k < blocks; ++k, b += 34, x += 32) {
    const float d = load_f16(b);
    const auto* q = reinterpret_cast<const std::int8_t*>(b + 2);
    for (int j = 0; j < 32; ++j) sum += d * float(q[j]) * x[j];
  }
  return sum;
}

void quant_task(void* context, std::size_t task) noexcept {
  const auto& j = *static_cast<const QuantJob*>(context);
  const QuantMatrix& w = *j.w;
  const std::size_t r0 = task * j.rows_per_task, r1 = std::min(w.rows, r0 + j.rows_per_task);
  if (r0 >= r1) return;
  const bool q4 = w.type == GgmlType::q4_1;
  if constexpr (kAvx2Kernels) {
    if (j.avx2) {
      if (q4)
        detail::matvec_q4_1_avx2(j.out, w.data, w.row_bytes, j.x, j.xsum, w.cols, r0, r1);
      else
        detail::matvec_q8_0_avx2(j.out, w.data, w.row_bytes, j.x, w.cols, r0, r1);
      return;
    }
  }
  for (std::size_t r = r0; r < r1; ++r)
    j.out[r] = q4 ? dot_q4_1(w.data + r * w.row_bytes, j.x, w.cols / 32) : dot_q8_0(w.data + r * w.row_bytes, j.x, w.cols / 32);
}

// The kvc kernel choice, made once per process (KVC_ISA can force one).
kernels::Isa default_isa() noexcept {
  static const kernels::Isa isa = kernels::active().isa;
  return isa;
}

}  // namespace

void matmul(std::span<float> out, std::span<const float> w, std::span<const float> x, std::size_t n) noexcept {
  matmul(out, w, x, n, default_isa());
}

void matmul(std::span<float> out, std::span<const float> w, std::span<const float> x, std::size_t n,
            kernels::Isa isa) noexcept {
  KVC_CONTRACT(n > 0 && !x.empty() && x.size() % n == 0, "matmul: x must hold n > 0 rows");
  const std::size_t cols = x.size() / n, rows = w.size() / cols;
  KVC_CONTRACT(rows * cols == w.size() && cols * n == x.size() && out.size() == rows * n,
               "matmul: w must be [rows][cols], x [n][cols], out [n][rows]");
  MatmulJob job{out.data(), w.data(), x.data(), n, rows, cols, rows, use_avx2(isa) && cols % 8 == 0};
  // Below ~64K multiply-adds a second thread costs more than it saves (stories260K's layers).
  auto& pool = detail::ThreadPool::instance();
  const std::size_t tasks = rows * cols * n < (std::size_t{1} << 16) ? 1 : pool.size();
  job.rows_per_task = (rows + tasks - 1) / tasks;
  job.rows_per_task = (job.rows_per_task + 2) / 3 * 3;  // whole 3-row tiles
  pool.run(tasks, matmul_task, &job);
}

void matvec_quant(std::span<float> out, const QuantMatrix& w, std::span<const float> x) noexcept {
  matvec_quant(out, w, x, default_isa());
}

void matvec_quant(std::span<float> out, const QuantMatrix& w, std::span<const float> x, kernels::Isa isa) noexcept {
  KVC_CONTRACT(has_quant_matvec(w.type) && !w.empty(), "matvec_quant: no kernel for this matrix");
  KVC_CONTRACT(x.size() == w.cols && out.size() == w.rows, "matvec_quant: x must hold cols floats, out rows");
  constexpr std::size_t max_blocks = 1024;
  KVC_CONTRACT(w.cols % 32 == 0 && w.cols / 32 <= max_blocks, "matvec_quant: cols must be a multiple of 32, at most 32768");
  float xsum[max_blocks];  // Q4_1's per-block sums of x, on the stack: the hot path does not allocate
  for (std::size_t k = 0; k < w.cols / 32; ++k) {
    float s = 0.0f;
    for (std::size_t i = 0; i < 32; ++i) s += x[32 * k + i];
    xsum[k] = s;
  }
  QuantJob job{out.data(), &w, x.data(), xsum, 0, use_avx2(isa)};
  auto& pool = detail::ThreadPool::instance();
  const std::size_t tasks = w.rows * w.cols < (std::size_t{1} << 16) ? 1 : pool.size();
  job.rows_per_task = (w.rows + tasks - 1) / tasks;
  pool.run(tasks, quant_task, &job);
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
