#pragma once
// Quantization decides how kept rows are encoded. Rows are encoded when appended and decoded
// only inside the attention kernel (and by policies through HeadView).
#include "kvc/concepts/family.hpp"
#include "kvc/kernels/format.hpp"

namespace kvc {

// Row formats for keys and values. The container validates them against the stored dims
// (groups must divide them) when the cache is built.
template <class P>
concept QuantizationPolicy = InFamily<P, family::quantization> && requires(const P& p) {
  { p.key_format() } -> std::same_as<kernels::RowFormat>;
  { p.value_format() } -> std::same_as<kernels::RowFormat>;
};

}  // namespace kvc
