#pragma once
#include <cstddef>

namespace kvc {

// Bytes of one encoded key row and one encoded value row: all heads of a cache share them.
struct RowGeometry {
  std::size_t key_bytes = 0;
  std::size_t value_bytes = 0;
};

}  // namespace kvc
