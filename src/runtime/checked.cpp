#include "kvc/runtime/checked.hpp"

#include "kvc/core/error.hpp"

#include <cmath>

namespace kvc::runtime {
namespace {

void check_layer(const AnyCache& cache, std::string_view where, std::size_t layer) {
  if (layer >= cache.shape().layers) fail(where, "layer {} out of range (layers: {})", layer, cache.shape().layers);
}

void check_finite(std::string_view where, std::string_view what, std::span<const float> x) {
  for (std::size_t i = 0; i < x.size(); ++i)
    if (!std::isfinite(x[i])) fail(where, "{}[{}] is {}, not a finite number", what, i, x[i]);
}

}  // namespace

void check_append(const AnyCache& cache, std::size_t layer, std::int32_t position, std::span<const float> k,
                  std::span<const float> v) {
  constexpr std::string_view where = "kvc::runtime append";
  const Shape& shape = cache.shape();
  check_layer(cache, where, layer);
  const std::size_t row = shape.kv_heads * shape.head_dim;
  if (k.size() != row) fail(where, "keys hold {} floats, not kv_heads * head_dim = {}", k.size(), row);
  if (v.size() != row) fail(where, "values hold {} floats, not kv_heads * head_dim = {}", v.size(), row);
  check_finite(where, "keys", k);
  check_finite(where, "values", v);
  for (std::size_t h = 0; h < shape.kv_heads; ++h) {
    const std::span<const std::int32_t> kept = cache.positions(layer, h);
    if (!kept.empty() && position <= kept.back())
      fail(where, "position {} does not follow the last position {} of layer {}, KV head {}", position, kept.back(),
           layer, h);
  }
}

void check_attend(const AnyCache& cache, std::size_t layer, std::span<const float> queries, std::span<float> out) {
  constexpr std::string_view where = "kvc::runtime attend";
  const Shape& shape = cache.shape();
  check_layer(cache, where, layer);
  const std::size_t stride = shape.query_heads * shape.head_dim;
  if (queries.empty() || queries.size() % stride != 0)
    fail(where, "queries hold {} floats, not a positive multiple of query_heads * head_dim = {}", queries.size(),
         stride);
  if (out.size() != queries.size())
    fail(where, "out holds {} floats but queries hold {}: they must be the same size", out.size(), queries.size());
  check_finite(where, "queries", queries);
  const std::size_t n_queries = queries.size() / stride;
  for (std::size_t h = 0; h < shape.kv_heads; ++h)
    if (n_queries > cache.size(layer, h))
      fail(where, "{} queries but KV head {} of layer {} holds {} tokens (attend the tokens appended last)",
           n_queries, h, layer, cache.size(layer, h));
}

}  // namespace kvc::runtime
