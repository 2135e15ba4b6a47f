#pragma once
// Every kernel test runs once per instruction set (Highway's hwy_gtest.h idea): the test is
// parameterized over all ISAs and skips, saying so, the ones this CPU cannot run.
#include "kvc/kernels/reference.hpp"
#include "kvc/kernels/table.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace kvc::kernels::testing {

inline constexpr std::array<Isa, 5> kAllIsas{Isa::scalar, Isa::avx2, Isa::avx512, Isa::avx512vnni,
                                             Isa::avx512bf16};

class IsaTest : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " is not supported by this CPU or OS";
  }
  const Table& kernels() const { return table(GetParam()); }
};

inline std::string isa_param_name(const ::testing::TestParamInfo<Isa>& info) { return isa_name(info.param); }

#define KVC_INSTANTIATE_FOR_EVERY_ISA(suite) \
  INSTANTIATE_TEST_SUITE_P(Isa, suite, ::testing::ValuesIn(::kvc::kernels::testing::kAllIsas), \
                           ::kvc::kernels::testing::isa_param_name)

// A buffer whose data() is misaligned by `offset` bytes from a 64-byte boundary, so kernels are
// exercised on pointers that are not vector aligned.
template <class T>
class Misaligned {
 public:
  Misaligned(std::size_t n, std::size_t offset_bytes) : storage_(n * sizeof(T) + 128 + offset_bytes) {
    auto base = reinterpret_cast<std::uintptr_t>(storage_.data());
    base = (base + 63) / 64 * 64 + offset_bytes;
    data_ = reinterpret_cast<T*>(base);  // the vector's bytes are already zero
  }
  T* data() { return data_; }
  const T* data() const { return data_; }

 private:
  std::vector<unsigned char> storage_;
  T* data_;
};

// What stays the same across the calls of one attention: the query heads, the row formats and
// strides, the scale. Segments, rows and the output state are set per call.
inline AttendArgs attend_args(const float* q, std::size_t n_q, std::size_t dim, RowFormat kf, RowFormat vf,
                              std::size_t k_stride, std::size_t v_stride, float scale) {
  AttendArgs a;
  a.q = q;
  a.n_q = n_q;
  a.k_dim = a.v_dim = dim;
  a.k_format = kf;
  a.v_format = vf;
  a.k_stride = k_stride;
  a.v_stride = v_stride;
  a.scale = scale;
  return a;
}

inline std::vector<float> gaussian(std::size_t n, unsigned seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

}  // namespace kvc::kernels::testing
