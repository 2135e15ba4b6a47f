#pragma once
// Quantization decides how kept rows are encoded. Rows are encoded when appended and decoded
// only inside the attention kernel (and by policies through HeadView).
#include "kvc/concepts/family.hpp"
#include "kvc/core/channel_store.hpp"
#include "kvc/kernels/format.hpp"

namespace kvc {

// Row formats for keys and values. The container validates them against the stored dims
// (groups must divide them) when the cache is built.
template <class P>
concept QuantizationPolicy = InFamily<P, family::quantization> && requires(const P& p) {
  { p.key_format() } -> std::same_as<kernels::RowFormat>;
  { p.value_format() } -> std::same_as<kernels::RowFormat>;
};

// Optional: keys quantized per channel over groups of tokens with a full-precision tail
// (KIVI). When the returned ChannelKeys is enabled, key_format() is {codes, 0} and the container
// keeps the groups' parameters and the tail (kvc/core/channel_store.hpp).
template <class P>
concept ChannelKeyHook = requires(const P& p) {
  { p.channel_keys() } -> std::same_as<ChannelKeys>;
};

}  // namespace kvc
