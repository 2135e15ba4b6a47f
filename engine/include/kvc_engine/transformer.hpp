#pragma once
// The forward pass of a llama2.c model over any KV cache.
//
// This is how an engine integrates kvcompress: one cache per sequence; for every token and every
// layer, compute q, k, v, apply RoPE to q and k (the cache stores rotated keys), append(k, v),
// then attend(q). The cache decides what it keeps; the engine never looks inside it.
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
  c.append(layer, position, in, in);
  c.attend(layer, in, out);
};

class Transformer {
 public:
  explicit Transformer(const Model& model);

  [[nodiscard]] const Model& model() const noexcept { return *model_; }
  [[nodiscard]] const Config& config() const noexcept { return model_->config(); }

  // Runs `token` at `position` through the model, using and extending `cache`.
  // Returns the next-token logits (valid until the next call).
  template <EngineCache Cache>
  std::span<const float> forward(Cache& cache, std::int32_t token, std::int32_t position) noexcept;

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

  const Model* model_;
  std::size_t dim_, kv_dim_, hidden_;
  std::vector<float> x_, xb_, xb2_, hb_, hb2_, q_, k_, v_, att_out_, logits_;
};

template <EngineCache Cache>
std::span<const float> Transformer::forward(Cache& cache, std::int32_t token, std::int32_t position) noexcept {
  embed(token);
  const std::size_t layers = std::size_t(config().n_layers);
  for (std::size_t l = 0; l < layers; ++l) {
    project_qkv(l, position);
    cache.append(l, position, std::span<const float>(k_), std::span<const float>(v_));
    cache.attend(l, std::span<const float>(q_), std::span<float>(att_out_).subspan(l * dim_, dim_));
    finish_layer(l);
  }
  classify();
  return logits_;
}

}  // namespace kvc::engine
