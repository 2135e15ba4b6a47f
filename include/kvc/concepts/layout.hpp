#pragma once
#include "kvc/core/row_geometry.hpp"
#include "kvc/kernels/table.hpp"

#include <concepts>
#include <cstddef>

namespace kvc {

// A layout is a tag type with a nested `config` (layout parameters) and `store` (one head's rows).
template <class L>
concept Layout = requires { typename L::config; typename L::store; } &&
    std::constructible_from<typename L::store, RowGeometry, typename L::config&> &&
    requires(typename L::store& s, const typename L::store& cs, std::size_t n, kernels::Segment* out) {
      { cs.size() } -> std::same_as<std::size_t>;
      { s.key(n) } -> std::same_as<std::byte*>;
      { s.value(n) } -> std::same_as<std::byte*>;
      s.resize(n);
      s.reserve(n);
      s.fit(n);
      { cs.max_segments(n) } -> std::same_as<std::size_t>;
      { cs.segments(out) } -> std::same_as<std::size_t>;
      { cs.memory_bytes() } -> std::same_as<std::size_t>;
    };

}  // namespace kvc
