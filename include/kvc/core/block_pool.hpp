#pragma once
// A pool of fixed-size blocks shared by the heads of one or several paged caches (vLLM-style).
// A head returns its blocks when it is compressed or cleared; another head or cache reuses them
// without touching the allocator, and trim() hands unused blocks back to the system.
#include "kvc/core/aligned_buffer.hpp"
#include "kvc/core/error.hpp"

#include <algorithm>
#include <cstddef>
#include <mutex>
#include <vector>

namespace kvc {

class BlockPool {
 public:
  explicit BlockPool(std::size_t block_bytes) : block_bytes_(block_bytes) {
    if (block_bytes == 0) fail("kvc::BlockPool", "block_bytes must be > 0");
  }
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  [[nodiscard]] std::size_t block_bytes() const noexcept { return block_bytes_; }

  // A free block, allocating a new one only when none is free. Throws std::bad_alloc with the
  // pool unchanged when the system has no memory for it.
  [[nodiscard]] std::byte* acquire() {
    std::lock_guard lock(mutex_);
    if (free_.empty()) {
      // Both tables grow before the block exists, so no failure can orphan it.
      const std::size_t next = blocks_.size() + 1;
      if (free_.capacity() < next) free_.reserve(2 * next);  // so release() never allocates
      if (blocks_.capacity() < next) blocks_.reserve(2 * next);
      blocks_.emplace_back(block_bytes_);
      return blocks_.back().data();
    }
    std::byte* block = free_.back();
    free_.pop_back();
    return block;
  }

  void release(std::byte* block) noexcept {
    std::lock_guard lock(mutex_);
    free_.push_back(block);  // capacity reserved in acquire/reserve: never allocates
  }

  // Pre-allocates blocks so that later acquires do not allocate.
  void reserve(std::size_t blocks) {
    std::lock_guard lock(mutex_);
    free_.reserve(blocks);
    while (blocks_.size() < blocks) {
      blocks_.emplace_back(block_bytes_);
      free_.push_back(blocks_.back().data());
    }
  }

  // Frees every block nobody holds. Allocates nothing, so it cannot fail when memory is short,
  // which is when it is called.
  void trim() {
    std::lock_guard lock(mutex_);
    std::sort(free_.begin(), free_.end());
    std::erase_if(blocks_, [&](const detail::AlignedBytes& block) {
      return std::binary_search(free_.begin(), free_.end(), block.data());
    });
    free_.clear();
  }

  [[nodiscard]] std::size_t blocks_allocated() const {
    std::lock_guard lock(mutex_);
    return blocks_.size();
  }
  [[nodiscard]] std::size_t blocks_free() const {
    std::lock_guard lock(mutex_);
    return free_.size();
  }
  // Bytes the pool holds from the system, in use or free.
  [[nodiscard]] std::size_t reserved_bytes() const {
    std::lock_guard lock(mutex_);
    return blocks_.size() * block_bytes_;
  }

 private:
  std::size_t block_bytes_;
  mutable std::mutex mutex_;
  std::vector<detail::AlignedBytes> blocks_;
  std::vector<std::byte*> free_;
};

}  // namespace kvc
