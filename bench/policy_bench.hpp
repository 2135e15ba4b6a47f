#pragma once
// What the policy benchmarks share: the decode shape (4 layers, 32 query heads sharing 8 KV
// heads, head_dim 128), random normal rows with fixed seeds, and a prefill of every layer.
#include "kvc/kvc.hpp"

#include <benchmark/benchmark.h>

#include <cstddef>
#include <random>
#include <vector>

namespace kvc_bench {

inline const kvc::Shape kShape{4, 32, 8, 128};
inline constexpr std::size_t kRow = 8 * 128;  // kv_heads * head_dim: one token of one layer
inline constexpr auto kF16 = kvc::kernels::Dtype::f16;

inline std::vector<float> random_rows(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

template <class Cache>
void prefill_all(Cache& cache, const std::vector<float>& keys, const std::vector<float>& values) {
  for (std::size_t layer = 0; layer < kShape.layers; ++layer) cache.prefill(layer, 0, keys, values);
}

// What a decode benchmark feeds: a prompt of `context` tokens per layer, and the token (k, v) and
// query appended and attended at every step.
struct DecodeData {
  explicit DecodeData(std::size_t context_tokens)
      : context(context_tokens),
        keys(random_rows(context * kRow, 1)),
        values(random_rows(context * kRow, 2)),
        k(random_rows(kRow, 3)),
        v(random_rows(kRow, 4)),
        q(random_rows(kShape.query_heads * kShape.head_dim, 5)),
        out(q.size()) {}
  std::size_t context;
  std::vector<float> keys, values, k, v, q, out;
};

// The timed loop of every decode benchmark: each iteration appends one token to every layer and
// attends. The cache already holds the prompt (and is compressed if the benchmark wants that).
// With refill_at > 0 the cache is cleared and prefilled again (untimed) when the position reaches
// it, so a cache that evicts nothing stays between context and refill_at tokens.
template <class Cache>
void time_decode_steps(benchmark::State& state, Cache& cache, DecodeData& d, std::size_t refill_at = 0) {
  auto position = static_cast<std::int32_t>(d.context);
  for (auto _ : state) {
    for (std::size_t layer = 0; layer < kShape.layers; ++layer) {
      (void)cache.append(layer, position, d.k, d.v);
      cache.attend(layer, d.q, d.out);
    }
    benchmark::DoNotOptimize(d.out.data());
    if (static_cast<std::size_t>(++position) == refill_at) {
      state.PauseTiming();
      cache.clear();
      prefill_all(cache, d.keys, d.values);
      position = static_cast<std::int32_t>(d.context);
      state.ResumeTiming();
    }
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// The timed loop of the append benchmarks: one token to every layer per iteration, the cache
// cleared (untimed) every `tokens` tokens.
template <class Cache>
void time_appends(benchmark::State& state, Cache& cache, const std::vector<float>& k, const std::vector<float>& v,
                  std::size_t tokens) {
  std::int32_t position = 0;
  for (auto _ : state) {
    if (static_cast<std::size_t>(position) == tokens) {
      state.PauseTiming();
      cache.clear();
      position = 0;
      state.ResumeTiming();
    }
    for (std::size_t layer = 0; layer < kShape.layers; ++layer) (void)cache.append(layer, position, k, v);
    ++position;
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace kvc_bench
