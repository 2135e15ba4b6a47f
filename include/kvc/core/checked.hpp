#pragma once
// Size arithmetic of configuration code: a product or sum that does not fit in size_t is a
// configuration error (kvc::Error), never a silently wrapped, too small allocation.
#include "kvc/core/error.hpp"

#include <cstddef>
#include <string_view>

namespace kvc {

// a * b; throws kvc::Error "where: <what> = a * b overflows size_t".
[[nodiscard]] inline std::size_t checked_mul(std::size_t a, std::size_t b, std::string_view where,
                                             std::string_view what) {
  std::size_t product = 0;
  if (__builtin_mul_overflow(a, b, &product)) fail(where, "{} = {} * {} overflows size_t", what, a, b);
  return product;
}

// a + b; throws kvc::Error "where: <what> = a + b overflows size_t".
[[nodiscard]] inline std::size_t checked_add(std::size_t a, std::size_t b, std::string_view where,
                                             std::string_view what) {
  std::size_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) fail(where, "{} = {} + {} overflows size_t", what, a, b);
  return sum;
}

}  // namespace kvc
