#pragma once
// Low rank decides in which space rows are stored: keys and values are projected from head_dim
// to rank dims before encoding; queries are projected the same way and the attention output is
// mapped back, so attention never leaves the small space.
#include "kvc/concepts/family.hpp"
#include "kvc/core/shape.hpp"

#include <cstddef>
#include <span>

namespace kvc {

// rank_keys/rank_values: stored dims. ready(): the head has projections (fitted offline or by
// calibrate()). calibrate() fits a head from n rows of keys and values ([n][head_dim] each); the
// container calls it on the first prefill of an uncalibrated head (it may allocate and throw).
// The projections are hot-path calls: no allocation.
template <class P>
concept LowRankPolicy = InFamily<P, family::lowrank> &&
    requires(P& p, const P& cp, const Shape& shape, std::size_t layer, std::size_t head, const float* in,
             float* out, std::size_t n) {
      { cp.rank_keys(shape) } -> std::same_as<std::size_t>;
      { cp.rank_values(shape) } -> std::same_as<std::size_t>;
      { cp.ready(layer, head) } -> std::same_as<bool>;
      p.calibrate(layer, head, std::span<const float>{}, std::span<const float>{}, n);
      cp.project_key(layer, head, in, out);    // head_dim -> rank_keys (queries use it too)
      cp.project_value(layer, head, in, out);  // head_dim -> rank_values
      cp.restore_value(layer, head, in, out);  // rank_values -> head_dim
    };

}  // namespace kvc
