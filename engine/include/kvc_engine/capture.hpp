#pragma once
// A cache decorator that records every appended key/value and every query of a run into a
// kvc::data::KvCapture, then forwards to the cache it wraps (any EngineCache).
#include "kvc/data/capture.hpp"
#include "kvc_engine/transformer.hpp"

namespace kvc::engine {

template <class Cache>
class CapturingCache {
 public:
  CapturingCache(Cache& inner, data::KvCapture& capture) : inner_(&inner), capture_(&capture) {}

  auto append(std::size_t layer, std::int32_t position, std::span<const float> k, std::span<const float> v) {
    capture_->append_kv(layer, k, v);
    return inner_->append(layer, position, k, v);
  }
  void attend(std::size_t layer, std::span<const float> queries, std::span<float> out) {
    capture_->append_query(layer, queries);
    inner_->attend(layer, queries, out);
  }

 private:
  Cache* inner_;
  data::KvCapture* capture_;
};

}  // namespace kvc::engine

#include "kvc_engine/generate.hpp"
#include "kvc_engine/plain_cache.hpp"

namespace kvc::engine {

// The keys, values and queries of scoring BOS + `window` with the exact cache.
inline data::KvCapture capture_window(const Model& model, std::span<const std::int32_t> window) {
  data::KvCapture capture(model.config().attention_shape());
  PlainCache exact(model.config().attention_shape());
  CapturingCache<PlainCache> capturing(exact, capture);
  Transformer transformer(model);
  (void)score_window(transformer, capturing, window);
  return capture;
}

}  // namespace kvc::engine
