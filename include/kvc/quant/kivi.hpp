#pragma once
// Kivi: keys quantized per channel, values per token, the newest tokens in full precision.
//
// Paper: Zirui Liu, Jiayi Yuan, Hongye Jin, Shaochen Zhong, Zhaozhuo Xu, Vladimir Braverman,
// Beidi Chen, Xia Hu. "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache". ICML
// 2024, arXiv:2402.02750. Reference implementation: github.com/jy-yuan/KIVI (models/llama_kivi.py).
//
// Mechanism: key channels carry outliers of fixed channels, so keys are quantized per channel:
// each group of G consecutive tokens gets, per channel, an asymmetric (zero point = min, scale =
// (max - min) / (2^bits - 1)) b-bit quantizer over its G values. Values are quantized per token
// in groups of G channels. The newest tokens stay in full precision (the residual): keys enter a
// tail and when it holds R tokens they are quantized together (R / G groups), then the tail
// starts over, so attention always sees 1..R full-precision keys. A group, once encoded, is never
// re-quantized. Storage and attention: kvc/core/channel_store.hpp (the container's per-channel
// key capability) and kernels::Table::attend_channels.
//
// Defaults: the paper's: bits = 2 (KIVI-2; 4 is KIVI-4), group G = 32, residual R = 128. The
// reference asserts R % G == 0; so does this policy.
// Deviations:
//  * Values share the keys' tail: a token's value is quantized when its key is (the reference
//    quantizes the oldest value as soon as more than R are held, so exactly the last R values
//    stay full precision, while keys keep 1..R). One tail keeps attention at two kernel calls
//    (frozen rows, tail) and the rows of a token together under eviction; on average R / 2
//    fewer values are full precision than in the reference.
//  * The prefill attends to its own (quantized) rows: the reference attends the prompt in full
//    precision and quantizes afterwards; the container stores rows before attending them. A
//    prompt of n tokens keeps ((n - 1) mod R) + 1 tail tokens, the reference n mod R.
//  * Parameters are f16 (min rounded down, scale up, so every value is covered and the round
//    trip error stays <= scale / 2), the reference's are the model's dtype.
//  * Eviction inside a frozen group (with a selection policy) re-encodes the kept frozen tokens
//    into full groups and returns a trailing partial group to the tail (core/channel_store.hpp);
//    KIVI itself never evicts. Each compression rounds re-encoded keys once more, so decode-time
//    eviction drifts (H2O every 8 tokens: 3.3 whole-range 4-bit steps after 400 tokens,
//    docs/policies/quant.md); prompt-time compression (SnapKV) rounds once.
//
// Cost per token of head dim d: keys d * bits / 8 bytes + 4 d / G per group member, values
// d * bits / 8 + 4 d / G; for d = 64, G = 32, 2 bits: 16 + 8 key bytes and 24 value bytes (48
// per token against 256 for f32 and 128 for f16), plus the R + G full-precision tail rows per
// head. Time: a group is encoded once (encode_channels, per R tokens); attention folds each
// group's scales into the query once per G rows.
#include "kvc/concepts/family.hpp"
#include "kvc/core/channel_store.hpp"
#include "kvc/core/error.hpp"
#include "kvc/kernels/format.hpp"

#include <cstdint>

namespace kvc::quant {

struct Kivi {
  using family = kvc::family::quantization;

  // Bits per key and value element: 2 or 4.
  unsigned bits = 2;
  // G: tokens per key group and channels per value group; a positive multiple of 8, at most 1024.
  unsigned group = 32;
  // R: keys of the newest tokens kept in full precision before a freeze; a positive multiple of G.
  unsigned residual = 128;

  // Key rows hold the codes only; the groups' parameters live with the container's channel store.
  [[nodiscard]] kernels::RowFormat key_format() const {
    validate();
    return {dtype(), 0};
  }
  [[nodiscard]] kernels::RowFormat value_format() const { return {dtype(), static_cast<std::uint16_t>(group)}; }
  [[nodiscard]] ChannelKeys channel_keys() const {
    validate();
    return {dtype(), group, residual};
  }

  void validate() const {
    (void)dtype();
    if (group == 0 || group % 8 != 0 || group > 1024)
      fail("kvc::quant::Kivi", "group = {} must be a positive multiple of 8, at most 1024", group);
    if (residual == 0 || residual % group != 0)
      fail("kvc::quant::Kivi", "residual = {} must be a positive multiple of group = {}", residual, group);
  }

 private:
  [[nodiscard]] kernels::Dtype dtype() const {
    switch (bits) {
      case 4: return kernels::Dtype::q4;
      case 2: return kernels::Dtype::q2;
      default: fail("kvc::quant::Kivi", "bits = {} is not supported (2 or 4)", bits);
    }
  }
};

}  // namespace kvc::quant
