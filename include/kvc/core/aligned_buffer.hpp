#pragma once
#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <utility>

namespace kvc::detail {

// A fixed-size, cache-line aligned byte buffer: rows start aligned for the SIMD kernels and
// the allocation is exactly what memory_bytes() reports.
class AlignedBytes {
 public:
  static constexpr std::size_t kAlignment = 64;

  AlignedBytes() = default;
  explicit AlignedBytes(std::size_t size)
      : data_(size ? static_cast<std::byte*>(::operator new(size, std::align_val_t{kAlignment})) : nullptr),
        size_(size) {}
  AlignedBytes(AlignedBytes&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  AlignedBytes& operator=(AlignedBytes&& other) noexcept {
    AlignedBytes(std::move(other)).swap(*this);
    return *this;
  }
  AlignedBytes(const AlignedBytes&) = delete;
  AlignedBytes& operator=(const AlignedBytes&) = delete;
  ~AlignedBytes() {
    if (data_) ::operator delete(data_, std::align_val_t{kAlignment});
  }

  void swap(AlignedBytes& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
  }
  [[nodiscard]] std::byte* data() noexcept { return data_; }
  [[nodiscard]] const std::byte* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace kvc::detail
