#pragma once
// PerToken: asymmetric integer quantization of each key and value row, in groups of `group`
// consecutive channels with one (scale, min) pair per group.
//
// Context (this is the common block format, not one paper's method):
//  * ggml's Q8_0 / Q4_1 blocks (github.com/ggerganov/ggml): 32 elements per block with an f16
//    scale (and, for Q4_1, an f16 min) — the format llama.cpp uses for its quantized KV cache.
//  * FlexGen: Ying Sheng et al. "FlexGen: High-Throughput Generative Inference of Large Language
//    Models with a Single GPU". ICML 2023, arXiv:2303.06865 — group-wise asymmetric 4-bit KV
//    cache (group size 64) with little accuracy loss.
//  * KIVI: Zirui Liu et al. "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache".
//    ICML 2024, arXiv:2402.02750 — shows values quantize well per token while keys prefer per
//    channel (outlier channels); per-token keys at 2 bits lose accuracy, so prefer key bits >= 4.
//    KIVI's per-channel key scheme needs groups across tokens: a different policy.
//
// Format (kvc/kernels/format.hpp, q8/q4/q2): [dim * bits / 8 bytes of codes][dim / group x
// {f16 scale, f16 min}]. x ~ code * scale + min with min = group minimum (rounded down to f16),
// scale = (max - min) / (2^bits - 1) (rounded up to f16), so the round-trip error of every
// element is at most scale / 2. The scalar reference encoder (kvc/kernels/reference.hpp) is the
// specification.
//
// Defaults: bits = 8, group = 32 (ggml's block size; KIVI also uses 32). value_bits = 0 means
// "same as bits": pass e.g. {.bits = 8, .value_bits = 4} for int8 keys and int4 values.
//
// Bytes per row of dim d: d * bits / 8 + 4 * d / group. For d = 128, group 32: int8 144 bytes,
// int4 80, int2 48 — vs 256 for f16 and 512 for f32. Time: encoding on append, decoding inside
// the attention kernel; no state.
//
// Composition: rows are quantized after low-rank projection, so group must divide the stored
// dim (the rank under low rank); the container checks this when the cache is built. Merging
// re-encodes merged rows (rounded again).
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/quantization.hpp"
#include "kvc/core/error.hpp"
#include "kvc/kernels/format.hpp"

#include <cstddef>
#include <cstdint>

namespace kvc::quant {

struct PerToken {
  using family = kvc::family::quantization;

  // Bits per key element: 8, 4 or 2.
  unsigned bits = 8;
  // Elements per (scale, min) pair: a positive multiple of 8 dividing the stored row dims.
  unsigned group = 32;
  // Bits per value element; 0 means the same as `bits`.
  unsigned value_bits = 0;

  [[nodiscard]] kernels::RowFormat key_format() const { return format(bits, "bits"); }
  [[nodiscard]] kernels::RowFormat value_format() const {
    return value_bits == 0 ? format(bits, "bits") : format(value_bits, "value_bits");
  }

  void validate() const {
    (void)key_format();
    (void)value_format();
  }

 private:
  [[nodiscard]] kernels::RowFormat format(unsigned b, const char* what) const {
    kernels::Dtype dtype{};
    switch (b) {
      case 8: dtype = kernels::Dtype::q8; break;
      case 4: dtype = kernels::Dtype::q4; break;
      case 2: dtype = kernels::Dtype::q2; break;
      default: fail("kvc::quant::PerToken", "{} = {} is not supported (8, 4 or 2)", what, b);
    }
    if (group == 0 || group % 8 != 0 || group > 0xFFFFu)
      fail("kvc::quant::PerToken", "group = {} must be a positive multiple of 8", group);
    return {dtype, static_cast<std::uint16_t>(group)};
  }
};

}  // namespace kvc::quant
