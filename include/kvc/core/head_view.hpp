#pragma once
// A policy's window onto one (layer, KV head): decoded rows in, re-encoded rows out. Merging
// uses it at compression time; it is layout-agnostic so policies are not templates of the layout.
#include "kvc/kernels/table.hpp"

#include <cstdint>
#include <span>

namespace kvc {

class HeadView {
 public:
  using RowAddress = std::byte* (*)(void* store, std::size_t row) noexcept;

  struct Access {
    void* store;
    RowAddress key_row;
    RowAddress value_row;
    // Set when a row is not one self-contained encoded row (per-channel key groups with a
    // full-precision tail, core/channel_store.hpp): these decode and rewrite row i instead.
    void (*load)(const Access& access, bool key, std::size_t i, float* out) noexcept = nullptr;
    void (*store_row)(const Access& access, bool key, std::size_t i, const float* row) noexcept = nullptr;
    const void* context = nullptr;
  };

  HeadView(std::size_t layer, std::size_t kv_head, std::span<const std::int32_t> positions,
           const kernels::Table& table, kernels::RowFormat key_format, kernels::RowFormat value_format,
           std::size_t key_dim, std::size_t value_dim, Access access) noexcept
      : layer_(layer), kv_head_(kv_head), positions_(positions), table_(&table), key_format_(key_format),
        value_format_(value_format), key_dim_(key_dim), value_dim_(value_dim), access_(access) {}

  [[nodiscard]] std::size_t layer() const noexcept { return layer_; }
  [[nodiscard]] std::size_t kv_head() const noexcept { return kv_head_; }
  [[nodiscard]] std::size_t size() const noexcept { return positions_.size(); }
  [[nodiscard]] std::size_t key_dim() const noexcept { return key_dim_; }
  [[nodiscard]] std::size_t value_dim() const noexcept { return value_dim_; }
  [[nodiscard]] std::span<const std::int32_t> positions() const noexcept { return positions_; }

  // Decoded rows (in the stored space: rank dims under low rank). `out` holds key_dim/value_dim.
  void load_key(std::size_t i, std::span<float> out) const noexcept {
    if (access_.load != nullptr) return access_.load(access_, true, i, out.data());
    table_->decode_rows(key_format_, key_dim_, access_.key_row(access_.store, i), 0, 1, out.data(), 0);
  }
  void load_value(std::size_t i, std::span<float> out) const noexcept {
    if (access_.load != nullptr) return access_.load(access_, false, i, out.data());
    table_->decode_rows(value_format_, value_dim_, access_.value_row(access_.store, i), 0, 1, out.data(), 0);
  }
  // Re-encodes a row in the cache's format (quantized formats round again).
  void store_key(std::size_t i, std::span<const float> row) noexcept {
    if (access_.store_row != nullptr) return access_.store_row(access_, true, i, row.data());
    table_->encode_rows(key_format_, key_dim_, row.data(), 0, 1, access_.key_row(access_.store, i), 0);
  }
  void store_value(std::size_t i, std::span<const float> row) noexcept {
    if (access_.store_row != nullptr) return access_.store_row(access_, false, i, row.data());
    table_->encode_rows(value_format_, value_dim_, row.data(), 0, 1, access_.value_row(access_.store, i), 0);
  }

 private:
  std::size_t layer_;
  std::size_t kv_head_;
  std::span<const std::int32_t> positions_;
  const kernels::Table* table_;
  kernels::RowFormat key_format_;
  kernels::RowFormat value_format_;
  std::size_t key_dim_;
  std::size_t value_dim_;
  Access access_;
};

}  // namespace kvc
