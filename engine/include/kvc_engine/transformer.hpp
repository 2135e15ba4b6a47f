#pragma once
// The forward pass of a llama model over any KV cache.
//
// This is how an engine integrates kvcompress: one cache per sequence; for every token and every
// layer, compute q, k, v, apply RoPE to q and k (the cache stores rotated keys), append(k, v),
// then attend(q). The cache decides what it keeps; the engine never looks inside it. A cache that
// takes per-token tags (kvc::KVCache, AnyCache) gets each token's tag from Model::token_tags().
// A prompt can instead go through prefill(): a chunk of tokens per layer, with matrix-matrix
// products, one cache.prefill of the chunk's keys and values and one attend of its queries.
#include "kvc/core/error.hpp"
#include "kvc_engine/model.hpp"
#include "kvc_engine/ops.hpp"

#include <concepts>
#include <cstdint>
#include <span>
#include <vector>

namespace kvc::engine {

// What the engine needs of a cache: kvc::KVCache<...>, PlainCache and AnyCache all qualify.
template <class C>
concept EngineCache = requires(C& c, std::size_t layer, std::int32_t position,
                               std::span<const float> in, std::span<float> out) {
  { c.append(layer, position, in, in) } -> std::same_as<Status>;
  c.attend(layer, in, out);
};

// A cache that also takes a chunk of tokens at once (kvc::KVCache, PlainCache, AnyCache).
template <class C>
concept PrefillCache = EngineCache<C> && requires(C& c, std::size_t layer, std::int32_t position,
                                                  std::span<const float> in) {
  c.prefill(layer, position, in, in);
};

class Transformer {
 public:
  explicit Transformer(const Model& model);

  [[nodiscard]] const Model& model() const noexcept { return *model_; }
  [[nodiscard]] const Config& config() const noexcept { return model_->config(); }

  // Runs `token` at `position` through the model, using and extending `cache`.
  // Returns the next-token logits (valid until the next call). Contract: 0 <= token < vocab_size.
  template <EngineCache Cache>
  std::span<const float> forward(Cache& cache, std::int32_t token, std::int32_t position) noexcept;

  // Runs tokens at first_position, first_position + 1, ... through the model as one chunk and
  // returns the logits of the last one, as that many forward() calls would (up to rounding).
  // attention_output() and query() then describe the last token. Buffers grow to the largest
  // chunk seen (callers split long prompts, e.g. into chunks of 512). Throws kvc::Error for an
  // empty chunk or a token id out of range, and passes on the cache's errors.
  // With `all_logits` ([tokens][vocab_size]), also the logits after every token of the chunk
  // (scoring a text costs one classifier product per chunk instead of one per token).
  template <PrefillCache Cache>
  std::span<const float> prefill(Cache& cache, std::span<const std::int32_t> tokens, std::int32_t first_position,
                                 std::span<float> all_logits = {});

  // Per layer, the attention output (before wo) of the last forward, [query_heads][head_dim];
  // and the rotated query, key and value it used. The fidelity metrics and the capture read these.
  [[nodiscard]] std::span<const float> attention_output(std::size_t layer) const noexcept {
    return std::span<const float>(att_out_).subspan(layer * dim_, dim_);
  }
  [[nodiscard]] std::span<const float> query() const noexcept { return q_; }
  [[nodiscard]] std::span<const float> logits() const noexcept { return logits_; }

 private:
  void embed(std::int32_t token) noexcept;
  void project_qkv(std::size_t layer, std::int32_t position) noexcept;
  void finish_layer(std::size_t layer) noexcept;
  void classify() noexcept;
  // Chunk versions over n tokens: prefill_begin checks the ids, sizes the buffers and embeds.
  void prefill_begin(std::span<const std::int32_t> tokens, std::int32_t first_position);
  void prefill_qkv(std::size_t layer) noexcept;
  void prefill_finish_layer(std::size_t layer) noexcept;
  std::span<const float> prefill_end(std::span<float> all_logits);
  [[nodiscard]] TokenTag tag_of(std::int32_t token) const noexcept {
    const std::span<const TokenTag> tags = model_->token_tags();
    return std::size_t(token) < tags.size() ? tags[std::size_t(token)] : tag::none;
  }

  const Model* model_;
  std::size_t dim_, kv_dim_, hidden_;
  std::vector<float> x_, xb_, xb2_, hb_, hb2_, q_, k_, v_, att_out_, logits_, rope_;
  // Chunk buffers, [n][...] row-major; n_ tokens in the current chunk.
  std::size_t n_ = 0;
  std::vector<float> cx_, cxb_, cq_, ck_, cv_, catt_, ch1_, ch3_, crope_;
  std::vector<TokenTag> ctags_;
};

template <EngineCache Cache>
std::span<const float> Transformer::forward(Cache& cache, std::int32_t token, std::int32_t position) noexcept {
  embed(token);
  const std::size_t layers = std::size_t(config().n_layers);
  for (std::size_t l = 0; l < layers; ++l) {
    project_qkv(l, position);
    // This engine runs one sequence; a serving engine would preempt another sequence and retry.
    const std::span<const float> k(k_), v(v_);
    Status status;
    if constexpr (requires { cache.append(l, position, k, v, tag::none); })
      status = cache.append(l, position, k, v, tag_of(token));
    else
      status = cache.append(l, position, k, v);
    KVC_CONTRACT(status == Status::ok, "Transformer::forward: the KV cache is out of memory");
    cache.attend(l, std::span<const float>(q_), std::span<float>(att_out_).subspan(l * dim_, dim_));
    finish_layer(l);
  }
  classify();
  return logits_;
}

template <PrefillCache Cache>
std::span<const float> Transformer::prefill(Cache& cache, std::span<const std::int32_t> tokens,
                                            std::int32_t first_position, std::span<float> all_logits) {
  if (!all_logits.empty() && all_logits.size() != tokens.size() * std::size_t(config().vocab_size))
    fail("kvc::engine::Transformer::prefill", "all_logits holds {} floats, not tokens * vocab_size = {}",
         all_logits.size(), tokens.size() * std::size_t(config().vocab_size));
  prefill_begin(tokens, first_position);
  ctags_.clear();
  if (!model_->token_tags().empty())
    for (const std::int32_t token : tokens) ctags_.push_back(tag_of(token));
  const std::size_t layers = std::size_t(config().n_layers);
  for (std::size_t l = 0; l < layers; ++l) {
    prefill_qkv(l);
    const std::span<const float> keys = std::span<const float>(ck_).first(n_ * kv_dim_);
    const std::span<const float> values = std::span<const float>(cv_).first(n_ * kv_dim_);
    if constexpr (requires { cache.prefill(l, first_position, keys, values, std::span<const TokenTag>(ctags_)); })
      cache.prefill(l, first_position, keys, values, std::span<const TokenTag>(ctags_));
    else
      cache.prefill(l, first_position, keys, values);
    cache.attend(l, std::span<const float>(cq_).first(n_ * dim_), std::span<float>(catt_).first(n_ * dim_));
    prefill_finish_layer(l);
  }
  return prefill_end(all_logits);
}

}  // namespace kvc::engine
