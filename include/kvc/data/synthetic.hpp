#pragma once
// Synthetic KV caches whose statistics imitate real ones, at sizes the bundled model cannot reach
// (head_dim 64/128, tens of thousands of tokens). Deterministic for a seed on every platform: the
// generator uses its own PRNG and Box-Muller, not <random>'s implementation-defined distributions.
//
// What is imitated, and how (docs/evaluation.md has the real model's measurements):
//  * outlier key channels: per KV head one channel whose mean |k| is `outlier_ratio` times the
//    median channel's (the real 260K model: 2.7-9.7x). The outlier is mostly a constant offset,
//    as in real models, so it barely changes the attention (queries are small on that channel);
//  * an attention sink: the key at position 0 aligns with a direction every query carries;
//  * mostly-local attention: keys and queries carry a "time code" (sinusoids of several
//    frequencies of the position), so q(p).k(t) peaks at t = p and decays with |p - t|;
//  * some far retrieval: a fraction of queries also carry the content of one random far key;
//  * a needle: one far-back key with a unique direction, which the last query must retrieve.
#include "kvc/core/error.hpp"
#include "kvc/core/shape.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <span>
#include <vector>

namespace kvc::data {

struct SyntheticSpec {
  std::size_t tokens = 32768;
  std::size_t kv_heads = 1;
  std::size_t query_heads = 1;   // a multiple of kv_heads (GQA groups)
  std::size_t head_dim = 128;    // even, >= 16
  std::size_t queries = 16;      // decode queries, at the last `queries` positions
  float outlier_ratio = 6.0f;    // outlier channel mean |k| over the median channel's
  // Logits (already scaled by 1/sqrt(head_dim)). The local peak must beat the many far tokens
  // (about ln(tokens) plus their spread), and the sink, far and needle logits are set against it:
  // the defaults give about 65% of the mass to the last 64 tokens, 15-25% to the sink.
  float sink_logit = 18.0f;      // extra logit every query gives position 0 (0: no sink)
  float local_logit = 20.0f;     // logit of a query on its own position from the time code
  std::size_t local_window = 32; // scale of the time code's decay, in tokens
  float far_fraction = 0.25f;    // queries that also retrieve one random far key
  float far_logit = 28.0f;       // logit of such a query on that key
  bool needle = true;
  float needle_depth = 0.1f;     // the needle sits at this fraction of the sequence
  float needle_logit = 32.0f;    // extra logit of the last query on the needle
  std::uint64_t seed = 1;

  void validate() const {
    constexpr const char* where = "kvc::data::SyntheticSpec";
    if (tokens < 2) fail(where, "tokens must be >= 2, got {}", tokens);
    if (head_dim < 16 || head_dim % 2 != 0) fail(where, "head_dim must be even and >= 16, got {}", head_dim);
    Shape{1, query_heads, kv_heads, head_dim}.validate();
    if (queries == 0 || queries > tokens) fail(where, "queries must be in [1, tokens], got {}", queries);
    if (!(outlier_ratio >= 1.0f)) fail(where, "outlier_ratio must be >= 1, got {}", outlier_ratio);
    if (!(needle_depth >= 0.0f && needle_depth < 1.0f)) fail(where, "needle_depth must be in [0, 1), got {}", needle_depth);
    if (local_window == 0) fail(where, "local_window must be > 0");
    if (!(far_fraction >= 0.0f && far_fraction <= 1.0f)) fail(where, "far_fraction must be in [0, 1], got {}", far_fraction);
  }
};

struct SyntheticCache {
  Shape shape;                          // layers = 1
  std::vector<float> keys;              // [tokens][kv_heads][head_dim]
  std::vector<float> values;            // [tokens][kv_heads][head_dim]
  std::vector<float> queries;           // [queries][query_heads][head_dim]
  std::vector<std::int32_t> query_positions;  // position of each query (the last ones)
  std::vector<std::size_t> outlier_channel;   // per KV head
  std::int32_t sink_position = 0;       // -1 when there is no sink
  std::int32_t needle_position = -1;    // -1 when there is no needle
  std::size_t needle_query = 0;         // index of the query that must retrieve the needle
  std::vector<std::int32_t> far_target; // per query: the far key it retrieves, or -1
  std::size_t tokens = 0;

  [[nodiscard]] std::span<const float> key(std::size_t t, std::size_t h) const noexcept {
    return std::span<const float>(keys).subspan((t * shape.kv_heads + h) * shape.head_dim, shape.head_dim);
  }
  [[nodiscard]] std::span<const float> value(std::size_t t, std::size_t h) const noexcept {
    return std::span<const float>(values).subspan((t * shape.kv_heads + h) * shape.head_dim, shape.head_dim);
  }
  [[nodiscard]] std::span<const float> query(std::size_t i, std::size_t qh) const noexcept {
    return std::span<const float>(queries).subspan((i * shape.query_heads + qh) * shape.head_dim, shape.head_dim);
  }
};

namespace detail {

// splitmix64 + Box-Muller: the same numbers on every compiler and standard library.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() noexcept { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  float normal() noexcept {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u = 1.0 - uniform(), v = uniform();
    const double r = std::sqrt(-2.0 * std::log(u)), a = 2.0 * std::numbers::pi * v;
    spare_ = float(r * std::sin(a));
    has_spare_ = true;
    return float(r * std::cos(a));
  }
  std::size_t below(std::size_t n) noexcept { return std::size_t(uniform() * double(n)); }

 private:
  std::uint64_t state_;
  float spare_ = 0;
  bool has_spare_ = false;
};

}  // namespace detail

// Builds the cache of one layer. Logits are dot products scaled by 1/sqrt(head_dim), as attention
// computes them; the *_logit fields are in those scaled units.
inline SyntheticCache make_synthetic_cache(const SyntheticSpec& spec) {
  spec.validate();
  const std::size_t n = spec.tokens, hd = spec.head_dim, kvh = spec.kv_heads, qh = spec.query_heads;
  const std::size_t group = qh / kvh;
  const float root = std::sqrt(float(hd));
  detail::Rng rng(spec.seed);

  SyntheticCache c;
  c.shape = Shape{1, qh, kvh, hd};
  c.tokens = n;
  c.keys.resize(n * kvh * hd);
  c.values.resize(n * kvh * hd);
  c.queries.resize(spec.queries * qh * hd);

  // Channel plan per head: [0, code) time code (cos/sin pairs), then content channels. The sink
  // and needle directions and the outlier live in the content channels.
  const std::size_t code = hd / 2;
  const std::size_t pairs = code / 2;
  std::vector<float> freq(pairs);
  // Log-spaced frequencies from one turn per 8 local windows to a quarter turn per token: their
  // sum of cosines is a kernel that peaks at distance 0 and decays over ~local_window tokens.
  const double low = 2.0 * std::numbers::pi / (8.0 * double(spec.local_window)), high = std::numbers::pi / 2.0;
  for (std::size_t i = 0; i < pairs; ++i)
    freq[i] = float(low * std::pow(high / low, pairs > 1 ? double(i) / double(pairs - 1) : 0.0));
  const float code_amplitude = std::sqrt(spec.local_logit * root / float(pairs));  // q.k = local_logit*sqrt(hd) at distance 0

  const float content_sigma = 0.5f;  // noise per content channel
  const std::size_t sink_channel = code, needle_channel = code + 1;
  c.outlier_channel.resize(kvh);
  for (std::size_t h = 0; h < kvh; ++h) c.outlier_channel[h] = code + 2 + rng.below(hd - code - 2);

  // Keys and values.
  for (std::size_t t = 0; t < n; ++t)
    for (std::size_t h = 0; h < kvh; ++h) {
      float* k = c.keys.data() + (t * kvh + h) * hd;
      float* v = c.values.data() + (t * kvh + h) * hd;
      for (std::size_t i = 0; i < pairs; ++i) {
        const float a = freq[i] * float(t);
        k[2 * i] = code_amplitude * std::cos(a);
        k[2 * i + 1] = code_amplitude * std::sin(a);
      }
      for (std::size_t d = code; d < hd; ++d) k[d] = content_sigma * rng.normal();
      for (std::size_t d = 0; d < hd; ++d) v[d] = rng.normal();
    }
  // The median channel's mean |k|, then the outlier: an offset with small jitter, like
  // the key biases of real models, sized to give the requested ratio.
  for (std::size_t h = 0; h < kvh; ++h) {
    std::vector<double> mean(hd, 0.0);
    // Every token: sampling with a stride would alias with the time code's frequencies.
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t d = 0; d < hd; ++d) mean[d] += std::fabs(c.keys[(t * kvh + h) * hd + d]);
    const std::size_t counted = n;
    // The median as key_channel_ratios() defines it (mean of the two middle channels), counting
    // the outlier channel as the largest, which it is about to become.
    mean[c.outlier_channel[h]] = std::numeric_limits<double>::infinity();
    std::sort(mean.begin(), mean.end());
    const float median = float(0.5 * (mean[hd / 2 - 1] + mean[hd / 2]) / double(counted));
    const float offset = spec.outlier_ratio * median;
    const std::size_t ch = c.outlier_channel[h];
    for (std::size_t t = 0; t < n; ++t) {
      float& x = c.keys[(t * kvh + h) * hd + ch];
      x = offset * (1.0f + 0.1f * rng.normal());
    }
  }
  // Sink: position 0's key points along the sink channel.
  c.sink_position = spec.sink_logit > 0 ? 0 : -1;
  const float sink_key = 4.0f;
  if (c.sink_position == 0)
    for (std::size_t h = 0; h < kvh; ++h) c.keys[h * hd + sink_channel] = sink_key;
  // Needle: a far-back key along a channel nothing else uses much, with a distinctive value.
  if (spec.needle) {
    c.needle_position = std::int32_t(float(n) * spec.needle_depth);
    if (c.needle_position == c.sink_position) c.needle_position = 1;
    for (std::size_t h = 0; h < kvh; ++h) {
      float* k = c.keys.data() + (std::size_t(c.needle_position) * kvh + h) * hd;
      k[needle_channel] = 4.0f;
      float* v = c.values.data() + (std::size_t(c.needle_position) * kvh + h) * hd;
      for (std::size_t d = 0; d < hd; ++d) v[d] = d % 2 ? -3.0f : 3.0f;
    }
  }

  // Queries at the last positions.
  c.query_positions.resize(spec.queries);
  c.far_target.assign(spec.queries, -1);
  c.needle_query = spec.queries - 1;
  for (std::size_t i = 0; i < spec.queries; ++i) {
    const std::size_t p = n - spec.queries + i;
    c.query_positions[i] = std::int32_t(p);
    // Far retrieval target: a random key at least 8 local windows back (when there is room).
    std::int32_t target = -1;
    const std::size_t far_limit = p > 8 * spec.local_window ? p - 8 * spec.local_window : 0;
    if (far_limit > 1 && rng.uniform() < spec.far_fraction) target = std::int32_t(1 + rng.below(far_limit - 1));
    c.far_target[i] = target;
    for (std::size_t g = 0; g < qh; ++g) {
      const std::size_t h = g / group;
      float* q = c.queries.data() + (i * qh + g) * hd;
      for (std::size_t j = 0; j < pairs; ++j) {
        const float a = freq[j] * float(p);
        q[2 * j] = code_amplitude * std::cos(a);
        q[2 * j + 1] = code_amplitude * std::sin(a);
      }
      for (std::size_t d = code; d < hd; ++d) q[d] = 0.05f * rng.normal();
      q[c.outlier_channel[h]] = 0.0f;  // the outlier offset must not dominate the logits
      if (c.sink_position == 0) q[sink_channel] = spec.sink_logit * root / sink_key;
      if (target >= 0) {
        // Add the far key's content direction, sized so that the logit on it (time code and all)
        // comes out at far_logit: a far key in a trough of the time code is still retrieved.
        const float* k = c.keys.data() + (std::size_t(target) * kvh + h) * hd;
        const auto content = [&](std::size_t d) {
          return d >= code && d != c.outlier_channel[h] && d != sink_channel && d != needle_channel;
        };
        float norm2 = 0, current = 0;
        for (std::size_t d = 0; d < hd; ++d) {
          current += q[d] * k[d];
          if (content(d)) norm2 += k[d] * k[d];
        }
        const float s = (spec.far_logit * root - current) / std::max(norm2, 1e-6f);
        for (std::size_t d = 0; d < hd; ++d)
          if (content(d)) q[d] += s * k[d];
      }
      if (spec.needle && i == c.needle_query) q[needle_channel] = spec.needle_logit * root / 4.0f;
    }
  }
  return c;
}

}  // namespace kvc::data
