// The container's own cost around the kernels: append (encode + bookkeeping) and a full decode
// step (append + attend over every layer) for each layout and storage type, and the cost of a
// compression pass. Shape: 32 query heads sharing 8 KV heads, head_dim 128.
#include "kvc/kvc.hpp"
#include "policy_bench.hpp"

#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

namespace {

using namespace kvc_bench;

struct KeepRecent {
  using family = kvc::family::selection;
  std::size_t select(const kvc::HeadRef<KeepRecent>& head, std::span<std::uint32_t> keep) const {
    const std::size_t n = head.size(), b = head.budget();
    for (std::size_t j = 0; j < b; ++j) keep[j] = static_cast<std::uint32_t>(n - b + j);
    return b;
  }
};

template <class Layout>
void BM_Append(benchmark::State& state) {
  const auto dtype = static_cast<kvc::kernels::Dtype>(state.range(0));
  const std::size_t tokens = 4096;
  kvc::KVCache<Layout> cache(kShape, {.dtype = dtype, .capacity = tokens});
  const auto row = random_rows(kShape.kv_heads * kShape.head_dim, 1);
  time_appends(state, cache, row, row, tokens);
  state.SetLabel(kvc::kernels::dtype_name(dtype));
}
BENCHMARK_TEMPLATE(BM_Append, kvc::ContiguousLayout)->Arg(0)->Arg(1)->Arg(2);
BENCHMARK_TEMPLATE(BM_Append, kvc::PagedLayout)->Arg(0)->Arg(1)->Arg(2);

// One decode step of a 4-layer model: append the new token, attend, per layer; with
// Precision::fast (third argument 1) on the machine's best ISA too (bf16 dot products over f16
// rows on AVX512-BF16; f32 rows stay exact).
template <class Layout>
void BM_DecodeStep(benchmark::State& state) {
  const auto dtype = static_cast<kvc::kernels::Dtype>(state.range(0));
  const auto context = static_cast<std::size_t>(state.range(1));
  const auto precision = state.range(2) == 1 ? kvc::kernels::Precision::fast : kvc::kernels::Precision::exact;
  kvc::KVCache<Layout> cache(kShape, {.dtype = dtype, .capacity = context + context / 16, .precision = precision});
  DecodeData data(context);
  prefill_all(cache, data.keys, data.values);
  // Nothing is evicted, so start again from the prompt before the context drifts by > 6%.
  time_decode_steps(state, cache, data, context + context / 16);
  const double bytes = static_cast<double>(cache.memory_bytes());
  state.SetLabel(std::string(kvc::kernels::dtype_name(dtype)) +
                 (precision == kvc::kernels::Precision::fast ? "+fast" : ""));
  state.counters["cache_GB/s"] = benchmark::Counter(bytes * static_cast<double>(state.iterations()) / 1e9,
                                                    benchmark::Counter::kIsRate);
  state.counters["bytes/token"] = bytes / static_cast<double>(cache.tokens()) * static_cast<double>(kShape.head_count());
}
BENCHMARK_TEMPLATE(BM_DecodeStep, kvc::ContiguousLayout)
    ->ArgsProduct({{0, 1}, {1024, 4096}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_DecodeStep, kvc::PagedLayout)->ArgsProduct({{0, 1}, {1024, 4096}, {0, 1}})->Unit(benchmark::kMicrosecond);

// Evicting every head of every layer from 2 * budget down to the budget: selection, row moves,
// and giving memory back.
template <class Layout>
void BM_CompressPass(benchmark::State& state) {
  const auto budget = static_cast<std::size_t>(state.range(0));
  kvc::KVCache<Layout, KeepRecent> cache(kShape, {.budget = budget, .auto_compress = false});
  const std::size_t row = kShape.kv_heads * kShape.head_dim;
  const auto keys = random_rows(2 * budget * row, 5), values = random_rows(2 * budget * row, 6);
  for (auto _ : state) {
    state.PauseTiming();
    cache.clear();
    for (std::size_t layer = 0; layer < kShape.layers; ++layer) cache.prefill(layer, 0, keys, values);
    state.ResumeTiming();
    cache.compress();
  }
  state.counters["evicted_tokens/s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * budget * kShape.head_count()), benchmark::Counter::kIsRate);
}
BENCHMARK_TEMPLATE(BM_CompressPass, kvc::ContiguousLayout)->Arg(256)->Arg(2048)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_CompressPass, kvc::PagedLayout)->Arg(256)->Arg(2048)->Unit(benchmark::kMicrosecond);

}  // namespace
