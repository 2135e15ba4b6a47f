#pragma once
// PagedLayout: each (layer, KV head) holds a block table into a shared BlockPool. A block holds
// `block_tokens` key rows followed by as many value rows. A head only holds the blocks its
// tokens need: compression returns the surplus blocks to the pool at once. A copied head (a
// forked cache) shares every block with its original until either writes it: make_writable()
// copies the shared blocks a write is about to touch (copy on write, vLLM's prefix sharing).
#include "kvc/core/block_pool.hpp"
#include "kvc/core/checked.hpp"
#include "kvc/core/row_geometry.hpp"
#include "kvc/kernels/table.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

namespace kvc {

struct PagedLayout {
  struct config {
    std::size_t block_tokens = 16;
    // Shared with other caches when set; the cache makes its own pool otherwise. A shared pool's
    // block size must equal block_tokens * (key row bytes + value row bytes).
    std::shared_ptr<BlockPool> pool;
  };

  // Checks the configuration against the cache's rows and makes the pool if none is shared.
  static void prepare(config& c, RowGeometry geometry) {
    if (c.block_tokens == 0) fail("kvc::PagedLayout", "block_tokens must be > 0");
    const std::size_t block_bytes = checked_mul(c.block_tokens, geometry.key_bytes + geometry.value_bytes,
                                                "kvc::PagedLayout", "block bytes (block_tokens * row bytes)");
    if (!c.pool)
      c.pool = std::make_shared<BlockPool>(block_bytes);
    else if (c.pool->block_bytes() != block_bytes)
      fail("kvc::PagedLayout", "shared pool has {}-byte blocks but this cache needs {} ({} tokens x {} bytes)",
           c.pool->block_bytes(), block_bytes, c.block_tokens, geometry.key_bytes + geometry.value_bytes);
  }

  class store {
   public:
    store(RowGeometry geometry, config& c)
        : geometry_(geometry), block_tokens_(c.block_tokens), pool_(c.pool.get()) {}
    store(store&& other) noexcept
        : geometry_(other.geometry_),
          block_tokens_(other.block_tokens_),
          pool_(other.pool_),
          blocks_(std::exchange(other.blocks_, {})),
          size_(std::exchange(other.size_, 0)) {}
    // A fork: the same blocks, each held once more.
    store(const store& other)
        : geometry_(other.geometry_), block_tokens_(other.block_tokens_), pool_(other.pool_), blocks_(other.blocks_),
          size_(other.size_) {
      for (std::byte* block : blocks_) pool_->share(block);
    }
    store& operator=(store&&) = delete;
    store& operator=(const store&) = delete;
    ~store() {
      for (std::byte* block : blocks_) pool_->release(block);
    }

    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] std::size_t capacity() const noexcept { return blocks_.size() * block_tokens_; }
    [[nodiscard]] std::byte* key(std::size_t i) noexcept {
      return blocks_[i / block_tokens_] + (i % block_tokens_) * geometry_.key_bytes;
    }
    [[nodiscard]] std::byte* value(std::size_t i) noexcept {
      return blocks_[i / block_tokens_] + block_tokens_ * geometry_.key_bytes + (i % block_tokens_) * geometry_.value_bytes;
    }
    [[nodiscard]] const std::byte* key(std::size_t i) const noexcept { return const_cast<store*>(this)->key(i); }
    [[nodiscard]] const std::byte* value(std::size_t i) const noexcept { return const_cast<store*>(this)->value(i); }

    // Takes blocks from the pool or returns them, so the head holds ceil(n / block_tokens). If
    // the pool cannot allocate, the head keeps the blocks it got and its size (resize to size()
    // returns them).
    void resize(std::size_t n) {
      const std::size_t need = n / block_tokens_ + (n % block_tokens_ != 0);
      // The table grows first: a block acquired and then lost to a failed push_back would leak.
      if (need > blocks_.capacity()) blocks_.reserve(std::max(need, 2 * blocks_.capacity()));
      while (blocks_.size() < need) blocks_.push_back(pool_->acquire());
      while (blocks_.size() > need) {
        pool_->release(blocks_.back());
        blocks_.pop_back();
      }
      size_ = n;
    }
    void reserve(std::size_t n) { blocks_.reserve((n + block_tokens_ - 1) / block_tokens_); }
    // Before rows first.. are written: every block from the one holding row `first` that another
    // holder shares is replaced by a private copy. Throws std::bad_alloc if the pool cannot give a
    // block; the blocks replaced so far hold the same bytes, so the head is unchanged.
    void make_writable(std::size_t first) {
      const std::size_t block_bytes = pool_->block_bytes();
      for (std::size_t b = first / block_tokens_; b < blocks_.size(); ++b) {
        if (!pool_->shared(blocks_[b])) continue;
        std::byte* copy = pool_->acquire();
        std::memcpy(copy, blocks_[b], block_bytes);
        pool_->release(blocks_[b]);
        blocks_[b] = copy;
      }
    }
    // Blocks are already returned by resize; only the block table can shrink.
    void fit(std::size_t n) {
      if (blocks_.capacity() > 2 * ((n + block_tokens_ - 1) / block_tokens_) + 1) blocks_.shrink_to_fit();
    }

    [[nodiscard]] std::size_t max_segments(std::size_t rows) const noexcept {
      return (rows + block_tokens_ - 1) / block_tokens_;
    }
    std::size_t segments(kernels::Segment* out) const noexcept {
      std::size_t left = size_;
      for (std::size_t b = 0; b < blocks_.size(); ++b) {
        const std::size_t rows = std::min(left, block_tokens_);
        out[b] = {blocks_[b], blocks_[b] + block_tokens_ * geometry_.key_bytes, rows};
        left -= rows;
      }
      return blocks_.size();
    }
    [[nodiscard]] std::size_t memory_bytes() const noexcept {
      return blocks_.size() * pool_->block_bytes() + blocks_.capacity() * sizeof(std::byte*);
    }

   private:
    RowGeometry geometry_;
    std::size_t block_tokens_;
    BlockPool* pool_;
    std::vector<std::byte*> blocks_;
    std::size_t size_ = 0;
  };
};

}  // namespace kvc
