#pragma once
// A pool of fixed-size blocks shared by the heads of one or several paged caches (vLLM-style).
// A head returns its blocks when it is compressed or cleared; another head or cache reuses them
// without touching the allocator, and trim() hands unused blocks back to the system.
//
// Blocks are reference counted so that forked caches share their prefix (copy on write): a
// fork share()s every block it copies the table of, release() frees a block when its last holder
// lets go, and a holder that is about to write a block with shared() true copies it first. The
// count lives in a 64-byte header in front of each block (the block itself stays 64-byte aligned)
// and is atomic, so forks used by different threads may share, un-share and release blocks
// concurrently; the free list is guarded by the pool's mutex.
#include "kvc/core/aligned_buffer.hpp"
#include "kvc/core/error.hpp"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
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

  // A free block, held once, allocating a new one only when none is free. Throws std::bad_alloc
  // with the pool unchanged when the system has no memory for it.
  [[nodiscard]] std::byte* acquire() {
    std::lock_guard lock(mutex_);
    std::byte* block;
    if (free_.empty()) {
      // Both tables grow before the block exists, so no failure can orphan it.
      const std::size_t next = blocks_.size() + 1;
      if (free_.capacity() < next) free_.reserve(2 * next);  // so release() never allocates
      if (blocks_.capacity() < next) blocks_.reserve(2 * next);
      blocks_.emplace_back(kHeader + block_bytes_);
      block = blocks_.back().data() + kHeader;
      new (count(block)) std::atomic<std::uint32_t>(0);
    } else {
      block = free_.back();
      free_.pop_back();
    }
    count(block)->store(1, std::memory_order_relaxed);
    return block;
  }

  // One more holder of a block (a fork that copied a block table).
  void share(std::byte* block) noexcept { count(block)->fetch_add(1, std::memory_order_relaxed); }

  // Whether another holder shares the block: then a writer copies it first.
  [[nodiscard]] bool shared(const std::byte* block) const noexcept {
    return count(const_cast<std::byte*>(block))->load(std::memory_order_acquire) > 1;
  }

  // One holder lets go; the last one returns the block to the free list.
  void release(std::byte* block) noexcept {
    if (count(block)->fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    std::lock_guard lock(mutex_);
    free_.push_back(block);  // capacity reserved in acquire/reserve: never allocates
  }

  // Pre-allocates blocks so that later acquires do not allocate.
  void reserve(std::size_t blocks) {
    std::lock_guard lock(mutex_);
    free_.reserve(blocks);
    while (blocks_.size() < blocks) {
      blocks_.emplace_back(kHeader + block_bytes_);
      std::byte* block = blocks_.back().data() + kHeader;
      new (count(block)) std::atomic<std::uint32_t>(0);
      free_.push_back(block);
    }
  }

  // Frees every block nobody holds. Allocates nothing, so it cannot fail when memory is short,
  // which is when it is called.
  void trim() {
    std::lock_guard lock(mutex_);
    std::sort(free_.begin(), free_.end());
    std::erase_if(blocks_, [&](const detail::AlignedBytes& block) {
      return std::binary_search(free_.begin(), free_.end(), block.data() + kHeader);
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
  // Blocks some cache holds; a block shared by forks counts once.
  [[nodiscard]] std::size_t blocks_in_use() const {
    std::lock_guard lock(mutex_);
    return blocks_.size() - free_.size();
  }
  // Bytes the pool holds from the system, in use or free (each block's 64-byte header included).
  [[nodiscard]] std::size_t reserved_bytes() const {
    std::lock_guard lock(mutex_);
    return blocks_.size() * (kHeader + block_bytes_);
  }

 private:
  // The reference count sits in the header, so the block keeps AlignedBytes' 64-byte alignment.
  static constexpr std::size_t kHeader = detail::AlignedBytes::kAlignment;
  static_assert(sizeof(std::atomic<std::uint32_t>) <= kHeader && std::atomic<std::uint32_t>::is_always_lock_free);
  static std::atomic<std::uint32_t>* count(std::byte* block) noexcept {
    return std::launder(reinterpret_cast<std::atomic<std::uint32_t>*>(block - kHeader));
  }

  std::size_t block_bytes_;
  mutable std::mutex mutex_;
  std::vector<detail::AlignedBytes> blocks_;
  std::vector<std::byte*> free_;
};

}  // namespace kvc
