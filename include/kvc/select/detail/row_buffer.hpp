#pragma once
// Selections that read rows at compression (KeyDiff, LagKV) decode them into stack buffers of
// this many floats: the cache refuses longer stored rows when it is built (KVCache's
// kMaxStoredDim), so no buffer is allocated on the hot path.
#include <cstddef>

namespace kvc::select::detail {

inline constexpr std::size_t max_row_dim = 1024;

}  // namespace kvc::select::detail
