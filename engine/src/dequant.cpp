#include "kvc_engine/dequant.hpp"

#include "kvc/core/error.hpp"

#include <cstring>

namespace kvc::engine {
namespace {

// The block structs of ggml-common.h: the bytes of one block, in file order.
struct BlockQ4_0 { std::uint16_t d; std::uint8_t qs[16]; };
struct BlockQ4_1 { std::uint16_t d, m; std::uint8_t qs[16]; };
struct BlockQ5_0 { std::uint16_t d; std::uint8_t qh[4]; std::uint8_t qs[16]; };
struct BlockQ5_1 { std::uint16_t d, m; std::uint8_t qh[4]; std::uint8_t qs[16]; };
struct BlockQ8_0 { std::uint16_t d; std::int8_t qs[32]; };
struct BlockQ4_K { std::uint16_t d, dmin; std::uint8_t scales[12]; std::uint8_t qs[128]; };
struct BlockQ5_K { std::uint16_t d, dmin; std::uint8_t scales[12]; std::uint8_t qh[32]; std::uint8_t qs[128]; };
struct BlockQ6_K { std::uint8_t ql[128]; std::uint8_t qh[64]; std::int8_t scales[16]; std::uint16_t d; };
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

// Blocks are read by memcpy: tensor data is aligned, but a block of 18 or 34 bytes is not.
template <class Block>
Block load(const std::byte* p) noexcept {
  Block b;
  std::memcpy(&b, p, sizeof(Block));
  return b;
}

void f32_row(const std::byte* in, float* out, std::size_t n) noexcept { std::memcpy(out, in, n * 4); }

void f16_row(const std::byte* in, float* out, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = f16_to_f32(load<std::uint16_t>(in + 2 * i));
}

void bf16_row(const std::byte* in, float* out, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load<std::uint16_t>(in + 2 * i));
}

// 32 elements: element j in the low nibble of qs[j], element j + 16 in its high nibble.
void q4_0_row(const std::byte* in, float* out, std::size_t n) noexcept {
  for (std::size_t b = 0; b < n / 32; ++b, out += 32) {
    const auto blk = load<BlockQ4_0>(in + b * sizeof(BlockQ4_0));
    const float d = f16_to_f32(blk.d);
    for (int j = 0; j < 16; ++j) {
      out[j] = d * float((blk.qs[j] & 0x0F) - 8);
      out[j + 16] = d * float((blk.qs[j] >> 4) - 8);
    }
  }
}

void q4_1_row(const std::byte* in, float* out, std::size_t n) noexcept {
  for (std::size_t b = 0; b < n / 32; ++b, out += 32) {
    const auto blk = load<BlockQ4_1>(in + b * sizeof(BlockQ4_1));
    const float d = f16_to_f32(blk.d), m = f16_to_f32(blk.m);
    for (int j = 0; j < 16; ++j) {
      out[j] = d * float(blk.qs[j] & 0x0F) + m;
      out[j + 16] = d * float(blk.qs[j] >> 4) + m;
    }
  }
}

// As Q4 with a fifth bit per element in qh: bit j for element j.
void q5_0_row(const std::byte* in, float* out, std::size_t n) noexcept {
  for (std::size_t b = 0; b < n / 32; ++b, out += 32) {
    const auto blk = load<BlockQ5_0>(in + b * sizeof(BlockQ5_0));
    const float d = f16_to_f32(blk.d);
    std::uint32_t qh;
    std::memcpy(&qh, blk.qh, 4);
    for (int j = 0; j < 16; ++j) {
      const int lo = (blk.qs[j] & 0x0F) | int(((qh >> j) & 1u) << 4);
      const int hi = (blk.qs[j] >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
      out[j] = d * float(lo - 16);
      out[j + 16] = d * float(hi - 16);
    }
  }
}

void q5_1_row(const std::byte* in, float* out, std::size_t n) noexcept {
  for (std::size_t b = 0; b < n / 32; ++b, out += 32) {
    const auto blk = load<BlockQ5_1>(in + b * sizeof(BlockQ5_1));
    const float d = f16_to_f32(blk.d), m = f16_to_f32(blk.m);
    std::uint32_t qh;
    std::memcpy(&qh, blk.qh, 4);
    for (int j = 0; j < 16; ++j) {
      const int lo = (blk.qs[j] & 0x0F) | int(((qh >> j) & 1u) << 4);
      const int hi = (blk.qs[j] >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
      out[j] = d * float(lo) + m;
      out[j + 16] = d * float(hi) + m;
    }
  }
}

void q8_0_row(const std::byte* in, float* out, std::size_t n) noexcept {
  for (std::size_t b = 0; b < n / 32; ++b, out += 32) {
    const auto blk = load<BlockQ8_0>(in + b * sizeof(BlockQ8_0));
    const float d = f16_to_f32(blk.d);
    for (int j = 0; j < 32; ++j) out[j] = d * float(blk.qs[j]);
  }
}

// The K formats pack eight 6-bit scales and eight 6-bit mins into 12 bytes: sub-block j < 4 in the
// low six bits of bytes j and j + 4; j >= 4 in the nibbles of byte j + 4 plus the top two bits of
// bytes j - 4 (scale) and j (min).
void scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& scale, std::uint8_t& min) noexcept {
  if (j < 4) {
    scale = q[j] & 63;
    min = q[j + 4] & 63;
  } else {
    scale = std::uint8_t((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
    min = std::uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// 256 elements in four runs of 64: the low nibbles of 32 bytes of qs, then their high nibbles,
// each run of 32 with its own scale and min.
void q4_k_row(const std::byte* in, float* out, std::size_t n) noexcept {
  for (std::size_t b = 0; b < n / 256; ++b) {
    const auto blk = load<BlockQ4_K>(in + b * sizeof(BlockQ4_K));
    const float d = f16_to_f32(blk.d), dmin = f16_to_f32(blk.dmin);
    const std::uint8_t* q = blk.qs;
    for (int run = 0; run < 4; ++run, q += 32, out += 64) {
      std::uint8_t sc, m;
      scale_min_k4(2 * run, blk.scales, sc, m);
      const float d1 = d * float(sc), m1 = dmin * float(m);
      scale_min_k4(2 * run + 1, blk.scales, sc, m);
      const float d2 = d * float(sc), m2 = dmin * float(m);
      for (int l = 0; l < 32; ++l) out[l] = d1 * float(q[l] & 0x0F) - m1;
      for (int l = 0; l < 32; ++l) out[l + 32] = d2 * float(q[l] >> 4) - m2;
    }
  }
}

// As Q4_K with a fifth bit: for run r, bit 2r of qh[l] goes to the low-nibble element l, bit 2r+1
// to the high-nibble one.
void q5_k_row(const std::byte* in, float* out, std::size_t n) noexcept {
  for (std::size_t b = 0; b < n / 256; ++b) {
    const auto blk = load<BlockQ5_K>(in + b * sizeof(BlockQ5_K));
    const float d = f16_to_f32(blk.d), dmin = f16_to_f32(blk.dmin);
    const std::uint8_t* q = blk.qs;
    for (int run = 0; run < 4; ++run, q += 32, out += 64) {
      std::uint8_t sc, m;
      scale_min_k4(2 * run, blk.scales, sc, m);
      const float d1 = d * float(sc), m1 = dmin * float(m);
      scale_min_k4(2 * run + 1, blk.scales, sc, m);
      const float d2 = d * float(sc), m2 = dmin * float(m);
      const unsigned u1 = 1u << (2 * run), u2 = 2u << (2 * run);
      for (int l = 0; l < 32; ++l) out[l] = d1 * float((q[l] & 0x0F) + (blk.qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) out[l + 32] = d2 * float((q[l] >> 4) + (blk.qh[l] & u2 ? 16 : 0)) - m2;
    }
  }
}

// 256 elements in two halves of 128; in each, element l + 32k (k = 0..3) takes four low bits
// from ql (nibble k / 2 of byte l + 32 (k % 2)) and two high bits (bits 2k, 2k+1 of qh[l]),
// minus 32, times the int8 scale of its run of 16.
void q6_k_row(const std::byte* in, float* out, std::size_t n) noexcept {
  for (std::size_t b = 0; b < n / 256; ++b) {
    const auto blk = load<BlockQ6_K>(in + b * sizeof(BlockQ6_K));
    const float d = f16_to_f32(blk.d);
    for (int half = 0; half < 2; ++half, out += 128) {
      const std::uint8_t* ql = blk.ql + 64 * half;
      const std::uint8_t* qh = blk.qh + 32 * half;
      const std::int8_t* sc = blk.scales + 8 * half;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        out[l] = d * float(sc[is]) * float(q1);
        out[l + 32] = d * float(sc[is + 2]) * float(q2);
        out[l + 64] = d * float(sc[is + 4]) * float(q3);
        out[l + 96] = d * float(sc[is + 6]) * float(q4);
      }
    }
  }
}

using RowFn = void (*)(const std::byte*, float*, std::size_t) noexcept;
struct Dequantizer {
  GgmlType type;
  RowFn row;
};
constexpr Dequantizer dequantizers[] = {
    {GgmlType::f32, f32_row},   {GgmlType::f16, f16_row},   {GgmlType::bf16, bf16_row},
    {GgmlType::q4_0, q4_0_row}, {GgmlType::q4_1, q4_1_row}, {GgmlType::q5_0, q5_0_row},
    {GgmlType::q5_1, q5_1_row}, {GgmlType::q8_0, q8_0_row}, {GgmlType::q4_k, q4_k_row},
    {GgmlType::q5_k, q5_k_row}, {GgmlType::q6_k, q6_k_row},
};

RowFn row_function(GgmlType type) noexcept {
  for (const auto& d : dequantizers)
    if (d.type == type) return d.row;
  return nullptr;
}

}  // namespace

float f16_to_f32(std::uint16_t h) noexcept {
  const std::uint32_t sign = std::uint32_t(h & 0x8000) << 16;
  std::uint32_t exponent = (h >> 10) & 0x1F;
  std::uint32_t mantissa = h & 0x3FF;
  std::uint32_t bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);  // inf, NaN (payload kept)
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);  // rebias 15 -> 127
  } else if (mantissa == 0) {
    bits = sign;
  } else {
    // Subnormal half: normalise; each shift lowers the float exponent by one.
    exponent = 113;
    while ((mantissa & 0x400) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3FF) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

bool can_dequantize(GgmlType type) noexcept { return row_function(type) != nullptr; }

bool has_quant_matvec(GgmlType type) noexcept { return type == GgmlType::q4_1 || type == GgmlType::q8_0; }

void dequantize(GgmlType type, std::span<const std::byte> in, std::span<float> out) {
  constexpr std::string_view where = "kvc::engine::dequantize";
  const RowFn row = row_function(type);
  const GgmlTypeTraits* traits = ggml_type_traits(type);
  if (!row || !traits) fail(where, "no dequantizer for {}", ggml_type_name(type));
  if (out.size() % traits->block_elements != 0)
    fail(where, "{} elements is not a whole number of {} blocks of {}", out.size(), traits->name,
         traits->block_elements);
  const std::size_t bytes = out.size() / traits->block_elements * traits->block_bytes;
  if (in.size() != bytes)
    fail(where, "{} elements of {} take {} bytes, {} given", out.size(), traits->name, bytes, in.size());
  row(in.data(), out.data(), out.size());
}

}  // namespace kvc::engine
