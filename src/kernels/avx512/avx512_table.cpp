// The AVX-512 (F/BW/VL/DQ) kernel table. 16-lane kernels, with the 8-lane ones (compiled here
// with AVX-512 flags, internal linkage) for encoding quantized rows and for per-channel blocks
// whose dim is 8 mod 16.
#include "../simd/tu_begin.hpp"

namespace kvc::kernels {
namespace {

#include "../simd/ops_avx2-inl.hpp"
#include "../simd/ops_avx512-inl.hpp"
#include "../simd/kernels-inl.hpp"

void encode_rows_avx512(RowFormat f, std::size_t dim, const float* src, std::size_t src_stride, std::size_t n,
                        std::byte* dst, std::size_t dst_stride) noexcept {
  // Grouped formats with 8-lane vectors (codec-inl.hpp, encode_quantized_rows).
  encode_rows<Ops512, Ops256>(f, dim, src, src_stride, n, dst, dst_stride);
}

void decode_rows_avx512(RowFormat f, std::size_t dim, const std::byte* src, std::size_t src_stride, std::size_t n,
                        float* dst, std::size_t dst_stride) noexcept {
  decode_rows<Ops512>(f, dim, src, src_stride, n, dst, dst_stride);
}

void attend_avx512(const AttendArgs& a) noexcept { attend<Ops512>(a); }

void encode_channels_avx512(Dtype dtype, std::size_t dim, std::size_t tokens, const float* src,
                            std::size_t src_stride, std::byte* dst) noexcept {
  if (dim % 16 != 0) return encode_channels<Ops256>(dtype, dim, tokens, src, src_stride, dst);
  encode_channels<Ops512>(dtype, dim, tokens, src, src_stride, dst);
}

void decode_channels_avx512(Dtype dtype, std::size_t dim, std::size_t tokens, const std::byte* src, float* dst,
                            std::size_t dst_stride) noexcept {
  if (dim % 16 != 0) return decode_channels<Ops256>(dtype, dim, tokens, src, dst, dst_stride);
  decode_channels<Ops512>(dtype, dim, tokens, src, dst, dst_stride);
}

void attend_channels_avx512(const AttendArgs& a, const std::byte* key_params, std::size_t group_tokens) noexcept {
  attend_channels<Ops512>(a, key_params, group_tokens);
}

void softmax_weights_avx512(const float* logits, std::size_t n, float max, float scale, Combine combine,
                            float* out) noexcept {
  softmax_weights<Ops512>(logits, n, max, scale, combine, out);
}

}  // namespace

template <>
const Table& isa_table<Isa::avx512>() noexcept {
  static constexpr Table table{Isa::avx512,  &encode_rows_avx512,     &decode_rows_avx512,
                               &attend_avx512, &encode_channels_avx512, &decode_channels_avx512,
                               &attend_channels_avx512,
                               &softmax_weights_avx512};
  return table;
}

}  // namespace kvc::kernels
