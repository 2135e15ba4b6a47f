#pragma once
// The recoverable mode of the hot path's contract checks, for servers.
//
// AnyCache::append and attend are noexcept and check their preconditions with KVC_CONTRACT,
// which aborts: inside a noexcept function a throw would call std::terminate all the same, so a
// contract violation cannot be turned into an exception where it is detected. A server that
// takes shapes and positions from a client checks them first with these functions, which test
// every precondition of append and attend that a caller can break and throw kvc::Error naming
// the argument and its value instead. After a check passes, the call cannot trip a contract on
// its arguments; the contracts left are the library's own invariants (a policy keeping more
// tokens than its budget), which no input can break, and, for a cache built by hand around an
// unfitted low-rank policy, its calibration (make_cache fits low-rank bases when it builds the
// cache). The C API (kvc.h) checks every call so.
#include "kvc/runtime/any_cache.hpp"

#include <cstdint>
#include <span>

namespace kvc::runtime {

// Throws kvc::Error unless cache.append(layer, position, k, v) meets its contract: layer in
// range, k and v of kv_heads * head_dim finite floats each, position after every head's last.
void check_append(const AnyCache& cache, std::size_t layer, std::int32_t position, std::span<const float> k,
                  std::span<const float> v);

// Throws kvc::Error unless cache.attend(layer, queries, out) meets its contract: layer in range,
// queries a positive multiple of query_heads * head_dim finite floats, out as long, no more
// queries than tokens in any head of the layer.
void check_attend(const AnyCache& cache, std::size_t layer, std::span<const float> queries, std::span<float> out);

}  // namespace kvc::runtime
