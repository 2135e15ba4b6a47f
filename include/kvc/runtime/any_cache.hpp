#pragma once
// A type-erased KV cache for programs that choose the policy stack at run time.
//
// kvc::KVCache takes its policies as template arguments so the hot path has no virtual calls:
// that stays the zero-overhead path. A server or tool that reads "h2o:budget=64+int4" from its
// configuration needs one object type for all stacks; this adapter pays one virtual call per
// (token, layer).
#include "kvc/core/error.hpp"
#include "kvc/core/shape.hpp"
#include "kvc/core/token_tag.hpp"

#include <cstdint>
#include <memory>
#include <type_traits>
#include <span>
#include <utility>

namespace kvc::runtime {

class AnyCache {
 public:
  virtual ~AnyCache() = default;
  // Status::out_of_memory when a head could not grow; the cache is then unchanged. `token_tag`
  // reaches policies that read tags (SepLLM), as in KVCache::append.
  virtual Status append(std::size_t layer, std::int32_t position, std::span<const float> k,
                        std::span<const float> v, TokenTag token_tag = tag::none) noexcept = 0;
  virtual void attend(std::size_t layer, std::span<const float> queries, std::span<float> out) noexcept = 0;
  virtual void prefill(std::size_t layer, std::int32_t first_position, std::span<const float> keys,
                       std::span<const float> values, std::span<const TokenTag> tags = {}) = 0;
  // Throw kvc::Error for a layer or KV head out of range.
  [[nodiscard]] virtual std::size_t size(std::size_t layer, std::size_t kv_head) const = 0;
  [[nodiscard]] virtual std::span<const std::int32_t> positions(std::size_t layer, std::size_t kv_head) const = 0;
  [[nodiscard]] virtual std::size_t memory_bytes() const noexcept = 0;
  [[nodiscard]] virtual std::size_t tokens() const noexcept = 0;
  [[nodiscard]] virtual const Shape& shape() const noexcept = 0;
  virtual void clear() noexcept = 0;
  // Evicts every head down to its budget now (KVCache::compress); a no-op without a budget.
  virtual void compress() = 0;
  // Compresses the prompt of every layer once, after it was prefilled and attended
  // (KVCache::compress_prompt): what prompt-time selections (SnapKV) need; throws kvc::Error.
  // A no-op for caches that never compress.
  virtual void compress_prompt() = 0;
};

template <class Cache>
class CacheAdapter final : public AnyCache {
 public:
  template <class... Args>
  explicit CacheAdapter(Args&&... args) : cache_(std::forward<Args>(args)...) {}

  Status append(std::size_t layer, std::int32_t position, std::span<const float> k, std::span<const float> v,
                TokenTag token_tag = tag::none) noexcept override {
    // A cache without tags (PlainCache) ignores them.
    if constexpr (requires { cache_.append(layer, position, k, v, token_tag); })
      return cache_.append(layer, position, k, v, token_tag);
    else
      return cache_.append(layer, position, k, v);
  }
  void attend(std::size_t layer, std::span<const float> queries, std::span<float> out) noexcept override {
    cache_.attend(layer, queries, out);
  }
  void prefill(std::size_t layer, std::int32_t first_position, std::span<const float> keys,
               std::span<const float> values, std::span<const TokenTag> tags = {}) override {
    if constexpr (requires { cache_.prefill(layer, first_position, keys, values, tags); })
      cache_.prefill(layer, first_position, keys, values, tags);
    else
      cache_.prefill(layer, first_position, keys, values);
  }
  [[nodiscard]] std::size_t size(std::size_t layer, std::size_t kv_head) const override {
    return cache_.size(layer, kv_head);
  }
  [[nodiscard]] std::span<const std::int32_t> positions(std::size_t layer, std::size_t kv_head) const override {
    return cache_.positions(layer, kv_head);
  }
  [[nodiscard]] std::size_t memory_bytes() const noexcept override { return cache_.memory_bytes(); }
  [[nodiscard]] std::size_t tokens() const noexcept override { return cache_.tokens(); }
  [[nodiscard]] const Shape& shape() const noexcept override { return cache_.shape(); }
  void clear() noexcept override { cache_.clear(); }
  void compress() override { cache_.compress(); }
  void compress_prompt() override {
    if constexpr (requires { cache_.compress_prompt(); }) cache_.compress_prompt();
  }

  [[nodiscard]] Cache& get() noexcept { return cache_; }

 private:
  Cache cache_;
};

}  // namespace kvc::runtime
