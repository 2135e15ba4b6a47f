// The AVX2 + FMA + F16C kernel table. Compiled with -mavx2 -mfma -mf16c (src/CMakeLists.txt);
// everything but avx2_table() has internal linkage, so no AVX2 code can leak into other callers.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include "kvc/kernels/format.hpp"
#include "kvc/kernels/table.hpp"  // plain structs and declarations: no inline code to leak
#include "../tuning.hpp"

namespace kvc::kernels {
namespace {

#include "../simd/ops_avx2-inl.hpp"
#include "../simd/formats-inl.hpp"
#include "../simd/codec-inl.hpp"
#include "../simd/attend-inl.hpp"
#include "../simd/softmax-inl.hpp"

void encode_rows_avx2(RowFormat f, std::size_t dim, const float* src, std::size_t src_stride, std::size_t n,
                      std::byte* dst, std::size_t dst_stride) noexcept {
  encode_rows<Ops256>(f, dim, src, src_stride, n, dst, dst_stride);
}

void decode_rows_avx2(RowFormat f, std::size_t dim, const std::byte* src, std::size_t src_stride, std::size_t n,
                      float* dst, std::size_t dst_stride) noexcept {
  decode_rows<Ops256>(f, dim, src, src_stride, n, dst, dst_stride);
}

void attend_avx2(const AttendArgs& a) noexcept { attend<Ops256>(a); }

void encode_channels_avx2(Dtype dtype, std::size_t dim, std::size_t tokens, const float* src, std::size_t src_stride,
                          std::byte* dst) noexcept {
  encode_channels<Ops256>(dtype, dim, tokens, src, src_stride, dst);
}

void decode_channels_avx2(Dtype dtype, std::size_t dim, std::size_t tokens, const std::byte* src, float* dst,
                          std::size_t dst_stride) noexcept {
  decode_channels<Ops256>(dtype, dim, tokens, src, dst, dst_stride);
}

void softmax_weights_avx2(const float* logits, std::size_t n, float max, float scale, Combine combine,
                          float* out) noexcept {
  softmax_weights<Ops256>(logits, n, max, scale, combine, out);
}

}  // namespace

const Table& avx2_table() noexcept {
  static constexpr Table table{Isa::avx2,  &encode_rows_avx2,     &decode_rows_avx2,
                               &attend_avx2, &encode_channels_avx2, &decode_channels_avx2,
                               &softmax_weights_avx2};
  return table;
}

}  // namespace kvc::kernels
