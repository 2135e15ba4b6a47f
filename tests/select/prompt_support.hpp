#pragma once
// What the tests of the prompt-time selections share: data, a prefilled and attended prompt, and
// the attention weights of one query written out with plain loops.
#include "kvc/kvc.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace kvc::prompt_test {

inline std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = dist(gen);
  return x;
}

// Every layer gets the same prompt: keys and values [n][kv_heads][head_dim], and every prompt
// query attends ([n][query_heads][head_dim]), in two chunks (split at `split` tokens) when split
// is between 0 and n, as an engine prefilling in chunks does.
template <class Cache>
void prefill_and_attend(Cache& cache, const std::vector<float>& keys, const std::vector<float>& values,
                        const std::vector<float>& queries, std::size_t split = 0) {
  const Shape& s = cache.shape();
  const std::size_t row = s.kv_heads * s.head_dim, qrow = s.query_heads * s.head_dim;
  const std::size_t n = keys.size() / row;
  std::vector<float> out(queries.size());
  for (std::size_t l = 0; l < s.layers; ++l) {
    std::size_t first = 0;
    for (std::size_t end : {split, n}) {
      if (end <= first) continue;
      cache.prefill(l, static_cast<std::int32_t>(first), std::span(keys).subspan(first * row, (end - first) * row),
                    std::span(values).subspan(first * row, (end - first) * row));
      cache.attend(l, std::span(queries).subspan(first * qrow, (end - first) * qrow),
                   std::span(out).subspan(first * qrow, (end - first) * qrow));
      first = end;
    }
  }
}

// Softmax weights (scale 1/sqrt(head_dim)) of prompt query r of KV head h over tokens 0..r,
// averaged over the query heads of the group (Options::gqa_reduce's default).
inline std::vector<double> weights_of(const std::vector<float>& keys, const std::vector<float>& queries,
                                      const Shape& shape, std::size_t h, std::size_t r) {
  const std::size_t group = shape.group_size(), d = shape.head_dim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  std::vector<double> w(r + 1, 0.0);
  for (std::size_t g = 0; g < group; ++g) {
    const float* q = queries.data() + (r * shape.query_heads + h * group + g) * d;
    std::vector<double> logit(r + 1);
    for (std::size_t t = 0; t <= r; ++t) {
      const float* k = keys.data() + (t * shape.kv_heads + h) * d;
      double dot = 0.0;
      for (std::size_t c = 0; c < d; ++c) dot += double{q[c]} * double{k[c]};
      logit[t] = dot * scale;
    }
    const double m = *std::max_element(logit.begin(), logit.end());
    double sum = 0.0;
    for (double& l : logit) sum += (l = std::exp(l - m));
    for (std::size_t t = 0; t <= r; ++t) w[t] += logit[t] / sum / static_cast<double>(group);
  }
  return w;
}

// Indices of the `k` highest scores, ties to the higher index, ascending.
inline std::vector<std::int32_t> top_indices(const std::vector<double>& score, std::size_t k) {
  std::vector<std::int32_t> order(score.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int32_t>(i);
  std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
    const double sa = score[static_cast<std::size_t>(a)], sb = score[static_cast<std::size_t>(b)];
    return sa != sb ? sa > sb : a > b;
  });
  order.resize(std::min(k, order.size()));
  std::sort(order.begin(), order.end());
  return order;
}

inline std::vector<std::int32_t> positions_of(std::span<const std::int32_t> p) { return {p.begin(), p.end()}; }

}  // namespace kvc::prompt_test

#include "support/allocation_counter.hpp"

#include <gtest/gtest.h>

namespace kvc::prompt_test {

// After the prompt's compression every head holds its budget; decoding then appends without
// evicting and, within compress_slack, allocates nothing (append, attend, the policy's hooks).
template <class Cache>
void expect_decode_grows_without_allocating(Cache& cache, std::size_t budget, std::size_t steps) {
  const Shape& s = cache.shape();
  for (std::size_t l = 0; l < s.layers; ++l)
    for (std::size_t h = 0; h < s.kv_heads; ++h) ASSERT_EQ(cache.size(l, h), budget);
  const auto k = random_floats(s.kv_heads * s.head_dim, 91);
  const auto q = random_floats(s.query_heads * s.head_dim, 92);
  std::vector<float> out(q.size());
  const std::size_t before = kvc::testing::allocation_count();
  for (std::size_t t = 0; t < steps; ++t)
    for (std::size_t l = 0; l < s.layers; ++l) {
      ASSERT_EQ(cache.append(l, static_cast<std::int32_t>(100000 + t), k, k), Status::ok);
      cache.attend(l, q, out);
    }
  EXPECT_EQ(kvc::testing::allocation_count() - before, 0u);
  for (std::size_t l = 0; l < s.layers; ++l)
    for (std::size_t h = 0; h < s.kv_heads; ++h) EXPECT_EQ(cache.size(l, h), budget + steps);
}

}  // namespace kvc::prompt_test
