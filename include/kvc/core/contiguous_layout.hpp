#pragma once
// ContiguousLayout: each (layer, KV head) owns two aligned arrays, one of key rows and one of
// value rows. The arrays grow geometrically while a head fills up and are cut back to the
// head's budget when it is compressed, so a head with a small budget holds a small allocation.
#include "kvc/core/aligned_buffer.hpp"
#include "kvc/core/checked.hpp"
#include "kvc/core/row_geometry.hpp"
#include "kvc/kernels/table.hpp"

#include <algorithm>
#include <cstring>

namespace kvc {

struct ContiguousLayout {
  struct config {};

  // Nothing to check or share: every head allocates its own arrays.
  static void prepare(config&, RowGeometry) noexcept {}

  class store {
   public:
    store(RowGeometry geometry, config&) : geometry_(geometry) {}
    store(store&&) noexcept = default;
    store& operator=(store&&) noexcept = default;
    // A fork copies the rows (and keeps the capacity, so the copy appends without reallocating):
    // prefix sharing needs the paged layout.
    store(const store& other)
        : geometry_(other.geometry_),
          keys_(other.capacity_ * other.geometry_.key_bytes),
          values_(other.capacity_ * other.geometry_.value_bytes),
          size_(other.size_),
          capacity_(other.capacity_) {
      if (size_ > 0) {
        std::memcpy(keys_.data(), other.keys_.data(), size_ * geometry_.key_bytes);
        std::memcpy(values_.data(), other.values_.data(), size_ * geometry_.value_bytes);
      }
    }
    store& operator=(const store&) = delete;

    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] std::byte* key(std::size_t i) noexcept { return keys_.data() + i * geometry_.key_bytes; }
    [[nodiscard]] std::byte* value(std::size_t i) noexcept { return values_.data() + i * geometry_.value_bytes; }
    [[nodiscard]] const std::byte* key(std::size_t i) const noexcept { return keys_.data() + i * geometry_.key_bytes; }
    [[nodiscard]] const std::byte* value(std::size_t i) const noexcept {
      return values_.data() + i * geometry_.value_bytes;
    }

    // Grows allocate (amortized, only until the head reaches its steady-state size).
    void resize(std::size_t n) {
      if (n > capacity_) reallocate(std::max({n, capacity_ + capacity_ / 2, std::size_t{16}}));
      size_ = n;
    }
    void reserve(std::size_t n) {
      if (n > capacity_) reallocate(n);
    }
    // Rows are never shared: nothing to copy before a write.
    static constexpr void make_writable(std::size_t) noexcept {}
    // Gives memory back after compression: keeps room for `n` rows (at least size()).
    void fit(std::size_t n) {
      n = std::max(n, size_);
      if (capacity_ > n) reallocate(n);
    }

    [[nodiscard]] static constexpr std::size_t max_segments(std::size_t) noexcept { return 1; }
    std::size_t segments(kernels::Segment* out) const noexcept {
      out[0] = {keys_.data(), values_.data(), size_};
      return 1;
    }
    [[nodiscard]] std::size_t memory_bytes() const noexcept { return keys_.size() + values_.size(); }

   private:
    void reallocate(std::size_t rows) {
      detail::AlignedBytes keys(checked_mul(rows, geometry_.key_bytes, "kvc::ContiguousLayout", "key bytes"));
      detail::AlignedBytes values(checked_mul(rows, geometry_.value_bytes, "kvc::ContiguousLayout", "value bytes"));
      if (size_ > 0) {
        std::memcpy(keys.data(), keys_.data(), size_ * geometry_.key_bytes);
        std::memcpy(values.data(), values_.data(), size_ * geometry_.value_bytes);
      }
      keys_ = std::move(keys);
      values_ = std::move(values);
      capacity_ = rows;
    }

    RowGeometry geometry_;
    detail::AlignedBytes keys_;
    detail::AlignedBytes values_;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
  };
};

}  // namespace kvc
