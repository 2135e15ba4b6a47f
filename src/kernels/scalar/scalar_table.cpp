// The scalar table is the reference itself: the specification is also the portable fallback.
#include "kvc/kernels/reference.hpp"
#include "../target.hpp"

namespace kvc::kernels {

template <>
const Table& isa_table<Isa::scalar>() noexcept {
  static constexpr Table table{Isa::scalar, &ref::encode_rows, &ref::decode_rows, &ref::attend,
                               &ref::encode_channels, &ref::decode_channels, &ref::attend_channels,
                               &ref::softmax_weights};
  return table;
}

}  // namespace kvc::kernels
