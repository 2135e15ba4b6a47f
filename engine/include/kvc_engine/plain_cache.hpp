#pragma once
// The test oracle: exact float32 attention over plain arrays, no policy, no tricks.
//
// It offers the subset of kvc::KVCache's interface the engine uses, plus the attention weights
// of its last attend() per layer, which the fidelity metrics need (how much of the full
// attention mass fell on the tokens a compressed cache kept).
#include "kvc/core/error.hpp"
#include "kvc/core/shape.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <new>
#include <span>
#include <vector>

namespace kvc::engine {

class PlainCache {
 public:
  explicit PlainCache(Shape shape, float scale = 0.0f) : shape_(shape) {
    shape_.validate();
    scale_ = scale != 0.0f ? scale : 1.0f / std::sqrt(float(shape_.head_dim));
    layers_.resize(shape_.layers);
  }

  [[nodiscard]] const Shape& shape() const noexcept { return shape_; }

  // One token of keys and values, [kv_heads][head_dim] each. Status::out_of_memory, with the
  // cache unchanged, when the layer cannot grow.
  Status append(std::size_t layer, std::int32_t position, std::span<const float> k,
                std::span<const float> v) noexcept {
    Layer& l = layers_[layer];
    const std::size_t keys = l.keys.size(), values = l.values.size();
    try {
      l.keys.insert(l.keys.end(), k.begin(), k.end());
      l.values.insert(l.values.end(), v.begin(), v.end());
      l.positions.push_back(position);
    } catch (const std::bad_alloc&) {
      l.keys.resize(keys), l.values.resize(values);
      return Status::out_of_memory;
    }
    return Status::ok;
  }

  void prefill(std::size_t layer, std::int32_t first_position, std::span<const float> keys,
               std::span<const float> values) {
    const std::size_t row = shape_.kv_heads * shape_.head_dim;
    for (std::size_t t = 0; t * row < keys.size(); ++t)
      append(layer, first_position + std::int32_t(t), keys.subspan(t * row, row),
             values.subspan(t * row, row));
  }

  // queries [n][query_heads][head_dim] are the last n tokens appended (causal); out same shape.
  // Records the softmax weights of the last query, [query_heads][size].
  void attend(std::size_t layer, std::span<const float> queries, std::span<float> out) noexcept {
    Layer& l = layers_[layer];
    const std::size_t hd = shape_.head_dim, qh = shape_.query_heads, group = shape_.group_size();
    const std::size_t kv_row = shape_.kv_heads * hd;
    const std::size_t n_tokens = l.positions.size();
    const std::size_t n_queries = queries.size() / (qh * hd);
    l.weights.assign(qh * n_tokens, 0.0f);
    std::vector<float>& scores = scratch_;
    for (std::size_t qi = 0; qi < n_queries; ++qi) {
      const std::size_t visible = n_tokens - (n_queries - 1 - qi);
      for (std::size_t h = 0; h < qh; ++h) {
        const float* q = queries.data() + (qi * qh + h) * hd;
        const std::size_t kvh = h / group;
        scores.resize(visible);
        for (std::size_t t = 0; t < visible; ++t) {
          const float* k = l.keys.data() + t * kv_row + kvh * hd;
          // Eight partial sums: the compiler vectorizes them (one sum is a serial chain it may
          // not reorder), which makes the exact reference of a long prefill several times faster.
          float part[8] = {};
          std::size_t d = 0;
          for (; d + 8 <= hd; d += 8)
            for (std::size_t j = 0; j < 8; ++j) part[j] += q[d + j] * k[d + j];
          float dot = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
          for (; d < hd; ++d) dot += q[d] * k[d];
          scores[t] = dot * scale_;
        }
        const float m = *std::max_element(scores.begin(), scores.end());
        float sum = 0.0f;
        for (float& s : scores) sum += (s = std::exp(s - m));
        float* o = out.data() + (qi * qh + h) * hd;
        std::fill(o, o + hd, 0.0f);
        for (std::size_t t = 0; t < visible; ++t) {
          const float w = scores[t] / sum;
          const float* v = l.values.data() + t * kv_row + kvh * hd;
          for (std::size_t d = 0; d < hd; ++d) o[d] += w * v[d];
          if (qi + 1 == n_queries) l.weights[h * n_tokens + t] = w;
        }
      }
    }
  }

  // Softmax weights of query head `query_head` at the last attend of `layer`, one per token.
  [[nodiscard]] std::span<const float> last_weights(std::size_t layer, std::size_t query_head) const noexcept {
    const Layer& l = layers_[layer];
    const std::size_t n = l.positions.size();
    if (l.weights.size() < (query_head + 1) * n) return {};
    return std::span<const float>(l.weights).subspan(query_head * n, n);
  }

  [[nodiscard]] std::size_t size(std::size_t layer, std::size_t /*kv_head*/) const noexcept {
    return layers_[layer].positions.size();
  }
  [[nodiscard]] std::span<const std::int32_t> positions(std::size_t layer, std::size_t /*kv_head*/) const noexcept {
    return layers_[layer].positions;
  }
  [[nodiscard]] std::size_t tokens() const noexcept {
    std::size_t n = 0;
    for (const Layer& l : layers_) n += l.positions.size() * shape_.kv_heads;
    return n;
  }
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    std::size_t n = 0;
    for (const Layer& l : layers_)
      n += (l.keys.capacity() + l.values.capacity()) * sizeof(float) +
           l.positions.capacity() * sizeof(std::int32_t);
    return n;
  }
  void compress() noexcept {}
  void clear() noexcept {
    for (Layer& l : layers_) {
      l.keys.clear();
      l.values.clear();
      l.positions.clear();
      l.weights.clear();
    }
  }

 private:
  struct Layer {
    std::vector<float> keys, values;  // [token][kv_heads][head_dim]
    std::vector<std::int32_t> positions;
    std::vector<float> weights;  // [query_heads][tokens] of the last query
  };
  Shape shape_;
  float scale_ = 0.0f;
  std::vector<Layer> layers_;
  std::vector<float> scratch_;
};

}  // namespace kvc::engine
