#pragma once
#include "kvc/core/row_geometry.hpp"
#include "kvc/kernels/table.hpp"

#include <concepts>
#include <cstddef>

namespace kvc {

// A layout is a tag type with a nested `config` (layout parameters) and `store` (one head's rows);
// prepare() checks the config against the cache's row sizes before any store is made (and may
// throw kvc::Error), so the container never names a concrete layout. A store is copied when a
// cache is forked; make_writable(first) is called before rows first.. are written, so a store that
// shares rows with a copy (copy on write) can un-share them.
template <class L>
concept Layout = requires { typename L::config; typename L::store; } &&
    requires(typename L::config& c, RowGeometry geometry) { L::prepare(c, geometry); } &&
    std::constructible_from<typename L::store, RowGeometry, typename L::config&> &&
    std::copy_constructible<typename L::store> &&
    requires(typename L::store& s, const typename L::store& cs, std::size_t n, kernels::Segment* out) {
      { cs.size() } -> std::same_as<std::size_t>;
      { s.key(n) } -> std::same_as<std::byte*>;
      { s.value(n) } -> std::same_as<std::byte*>;
      s.resize(n);
      s.reserve(n);
      s.fit(n);
      s.make_writable(n);
      { cs.max_segments(n) } -> std::same_as<std::size_t>;
      { cs.segments(out) } -> std::same_as<std::size_t>;
      { cs.memory_bytes() } -> std::same_as<std::size_t>;
    };

}  // namespace kvc
