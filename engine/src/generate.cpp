#include "kvc_engine/generate.hpp"

#include "kvc/core/error.hpp"

#include <algorithm>
#include <numeric>

namespace kvc::engine {

Sampler::Sampler(float temperature, float top_p, std::uint64_t seed)
    : temperature_(temperature), top_p_(top_p), state_(seed == 0 ? 0x9E3779B97F4A7C15ull : seed) {
  if (!(temperature >= 0.0f) || !std::isfinite(temperature))
    fail("kvc::engine::Sampler", "temperature must be finite and >= 0, got {}", temperature);
  if (!(top_p > 0.0f && top_p <= 1.0f)) fail("kvc::engine::Sampler", "top_p must be in (0, 1], got {}", top_p);
}

float Sampler::next_uniform() noexcept {
  // xorshift64*: tiny, portable and the same everywhere (std distributions are not).
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  return float((state_ * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}

std::int32_t Sampler::sample(std::span<const float> logits) {
  if (temperature_ == 0.0f) return argmax(logits);
  probs_.assign(logits.begin(), logits.end());
  for (float& p : probs_) p /= temperature_;
  ops::softmax(probs_);
  order_.resize(probs_.size());
  std::iota(order_.begin(), order_.end(), 0);
  std::stable_sort(order_.begin(), order_.end(),
                   [&](std::int32_t a, std::int32_t b) { return probs_[std::size_t(a)] > probs_[std::size_t(b)]; });
  float mass = 0.0f;
  std::size_t keep = 0;
  while (keep < order_.size() && (keep == 0 || mass < top_p_)) mass += probs_[std::size_t(order_[keep++])];
  const float r = next_uniform() * mass;
  float cdf = 0.0f;
  for (std::size_t i = 0; i < keep; ++i) {
    cdf += probs_[std::size_t(order_[i])];
    if (r < cdf) return order_[i];
  }
  return order_[keep - 1];
}

std::int32_t argmax(std::span<const float> logits) noexcept {
  return std::int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

double negative_log_likelihood(std::span<const float> logits, std::int32_t target) noexcept {
  const float m = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (const float l : logits) sum += std::exp(double(l) - double(m));
  return std::log(sum) - (double(logits[std::size_t(target)]) - double(m));
}

}  // namespace kvc::engine
