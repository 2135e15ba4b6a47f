// The engine's matrix products on every instruction set the machine has, against plain loops.
#include "kvc_engine/dequant.hpp"
#include "kvc_engine/ops.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <algorithm>
#include <random>

namespace kvc::test {
namespace {

using namespace kvc::engine;

std::vector<float> random_floats(std::size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

// Odd sizes on purpose: row and token counts that leave partial tiles; large enough to be split
// across the thread pool.
TEST(Ops, MatmulMatchesPlainLoopsOnEveryIsa) {
  std::mt19937 rng(1);
  for (const auto [rows, cols, n] : {std::array<std::size_t, 3>{97, 64, 1}, {200, 576, 7}, {301, 24, 130}, {5, 12, 3}}) {
    const auto w = random_floats(rows * cols, rng), x = random_floats(n * cols, rng);
    std::vector<double> expected(n * rows);
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c) expected[t * rows + r] += double(w[r * cols + c]) * x[t * cols + c];
    for (const kernels::Isa isa : kernels::supported_isas()) {
      SCOPED_TRACE(kernels::isa_name(isa));
      std::vector<float> out(n * rows, NAN);
      ops::matmul(out, w, x, n, isa);
      for (std::size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], expected[i], 1e-4 * std::sqrt(double(cols))) << rows << "x" << cols << " n " << n << " at " << i;
    }
  }
}

// Random blocks with finite f16 scales in [-1/16, 1/16].
std::string random_blocks(GgmlType type, std::size_t blocks, std::mt19937& rng) {
  const GgmlTypeTraits& t = *ggml_type_traits(type);
  std::string bytes(blocks * t.block_bytes, '\0');
  std::uniform_int_distribution<int> byte(0, 255), mantissa(0, 1023), exponent(6, 10);
  for (auto& c : bytes) c = char(byte(rng));
  for (std::size_t b = 0; b < blocks; ++b)
    for (std::size_t off : {std::size_t{0}, std::size_t{2}}) {
      if (type == GgmlType::q8_0 && off == 2) continue;
      const auto h = std::uint16_t((byte(rng) & 0x80) << 8 | exponent(rng) << 10 | mantissa(rng));
      std::memcpy(bytes.data() + b * t.block_bytes + off, &h, 2);
    }
  return bytes;
}

// The weights as dequantize() decodes them, times float32 x: only the order of the sums differs.
TEST(Ops, QuantMatvecMatchesTheDequantizedMatrixOnEveryIsa) {
  std::mt19937 rng(2);
  for (const GgmlType type : {GgmlType::q4_1, GgmlType::q8_0}) {
    ASSERT_TRUE(has_quant_matvec(type));
    for (const auto [rows, cols] : {std::array<std::size_t, 2>{3, 32}, {577, 576}, {100, 1536}}) {
      const std::string bytes = random_blocks(type, rows * cols / 32, rng);
      std::vector<float> dense(rows * cols);
      dequantize(type, std::as_bytes(std::span(bytes)), dense);
      const auto x = random_floats(cols, rng);
      const QuantMatrix q{type, reinterpret_cast<const std::byte*>(bytes.data()), rows, cols, bytes.size() / rows};
      for (const kernels::Isa isa : kernels::supported_isas()) {
        SCOPED_TRACE(std::string(ggml_type_name(type)) + " on " + kernels::isa_name(isa));
        std::vector<float> out(rows, NAN);
        ops::matvec_quant(out, q, x, isa);
        for (std::size_t r = 0; r < rows; ++r) {
          double expected = 0, magnitude = 0;
          for (std::size_t c = 0; c < cols; ++c) {
            expected += double(dense[r * cols + c]) * x[c];
            magnitude += std::abs(double(dense[r * cols + c]) * x[c]);
          }
          ASSERT_NEAR(out[r], expected, 1e-5 * magnitude + 1e-6) << rows << "x" << cols << " row " << r;
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvc::test
