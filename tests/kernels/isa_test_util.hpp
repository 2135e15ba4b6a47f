#pragma once
// Every kernel test runs once per instruction set (Highway's hwy_gtest.h idea): the test is
// parameterized over all ISAs and skips, saying so, the ones this CPU cannot run.
#include "kvc/kernels/reference.hpp"
#include "kvc/kernels/table.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace kvc::kernels::testing {

// Every target of kIsaTraits, supported here or not.
inline const std::vector<Isa> kAllIsas = [] {
  std::vector<Isa> isas;
  for (const IsaTraits& t : kIsaTraits) isas.push_back(t.isa);
  return isas;
}();

class IsaTest : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!isa_built(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " is not built for this architecture";
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

// `bytes` of zeroed memory that end exactly where an inaccessible page starts, so a kernel that
// reads or writes one byte past them faults instead of passing unnoticed.
class Guarded {
 public:
  explicit Guarded(std::size_t bytes) {
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    pages_ = (bytes + page - 1) / page * page;
    map_ = mmap(nullptr, pages_ + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map_ == MAP_FAILED || mprotect(static_cast<char*>(map_) + pages_, page, PROT_NONE) != 0)
      throw std::runtime_error("Guarded: mmap/mprotect failed");
    size_ = pages_ + page;
    data_ = static_cast<char*>(map_) + pages_ - bytes;
  }
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;
  ~Guarded() { munmap(map_, size_); }
  template <class T>
  T* as() const {
    return reinterpret_cast<T*>(data_);
  }

 private:
  void* map_ = nullptr;
  std::size_t pages_ = 0, size_ = 0;
  char* data_ = nullptr;
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

// The formats of kFormatTraits, all of them or those of one family: what the tests iterate, so
// that a new format is tested without being listed here.
inline std::vector<Dtype> all_dtypes() {
  std::vector<Dtype> d;
  for (const FormatTraits& t : kFormatTraits) d.push_back(t.dtype);
  return d;
}

inline std::vector<Dtype> dtypes_of(Family family) {
  std::vector<Dtype> d;
  for (const FormatTraits& t : kFormatTraits)
    if (t.family == family) d.push_back(t.dtype);
  return d;
}

// Every format, grouped ones with groups of `group` elements.
inline std::vector<RowFormat> all_formats(std::uint16_t group) {
  std::vector<RowFormat> f;
  for (Dtype d : all_dtypes()) f.push_back({d, is_quantized(d) ? group : std::uint16_t{0}});
  return f;
}

inline std::vector<float> gaussian(std::size_t n, unsigned seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

}  // namespace kvc::kernels::testing
