// The AVX2 + FMA + F16C kernel table (kCpuAvx2). Compiled with -mavx2 -mfma -mf16c
// (src/CMakeLists.txt); everything but isa_table<Isa::avx2> has internal linkage, so no AVX2 code can leak into other callers.
#include "../simd/tu_begin.hpp"

namespace kvc::kernels {
namespace {

#include "../simd/ops_avx2-inl.hpp"
#include "../simd/kernels-inl.hpp"

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

void attend_channels_avx2(const AttendArgs& a, const std::byte* key_params, std::size_t group_tokens) noexcept {
  attend_channels<Ops256>(a, key_params, group_tokens);
}

void softmax_weights_avx2(const float* logits, std::size_t n, float max, float scale, Combine combine,
                          float* out) noexcept {
  softmax_weights<Ops256>(logits, n, max, scale, combine, out);
}

}  // namespace

template <>
const Table& isa_table<Isa::avx2>() noexcept {
  static constexpr Table table{Isa::avx2,  &encode_rows_avx2,     &decode_rows_avx2,
                               &attend_avx2, &encode_channels_avx2, &decode_channels_avx2,
                               &attend_channels_avx2,
                               &softmax_weights_avx2};
  return table;
}

}  // namespace kvc::kernels
