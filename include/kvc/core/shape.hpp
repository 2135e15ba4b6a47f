#pragma once
#include "kvc/core/checked.hpp"
#include "kvc/core/error.hpp"

#include <cstddef>

namespace kvc {

// The attention geometry of a model: query heads are split into groups that share one KV head
// (MHA: groups of one; GQA: several; MQA: one KV head).
struct Shape {
  std::size_t layers = 0;
  std::size_t query_heads = 0;
  std::size_t kv_heads = 0;
  std::size_t head_dim = 0;

  [[nodiscard]] constexpr std::size_t group_size() const noexcept { return query_heads / kv_heads; }
  [[nodiscard]] constexpr std::size_t head_count() const noexcept { return layers * kv_heads; }
  [[nodiscard]] constexpr std::size_t head_index(std::size_t layer, std::size_t kv_head) const noexcept {
    return layer * kv_heads + kv_head;
  }

  // Throws kvc::Error naming the offending field.
  void validate() const {
    if (layers == 0) fail("kvc::Shape", "layers must be > 0");
    if (query_heads == 0) fail("kvc::Shape", "query_heads must be > 0");
    if (kv_heads == 0) fail("kvc::Shape", "kv_heads must be > 0");
    if (head_dim == 0) fail("kvc::Shape", "head_dim must be > 0");
    if (query_heads % kv_heads != 0)
      fail("kvc::Shape", "query_heads ({}) must be a multiple of kv_heads ({})", query_heads, kv_heads);
    if (kv_heads > query_heads)
      fail("kvc::Shape", "kv_heads ({}) must not exceed query_heads ({})", kv_heads, query_heads);
    // Every size the cache derives from a shape is a product of these; a wrapped product would
    // build a cache with too few heads or too short rows.
    (void)checked_mul(layers, kv_heads, "kvc::Shape", "layers * kv_heads");
    (void)checked_mul(layers, checked_mul(query_heads, head_dim, "kvc::Shape", "query_heads * head_dim"),
                      "kvc::Shape", "layers * query_heads * head_dim");
  }

  friend constexpr bool operator==(const Shape&, const Shape&) = default;
};

}  // namespace kvc
