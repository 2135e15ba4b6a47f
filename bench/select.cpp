// Selection policies (StreamingLLM, H2O) in a KVCache, one at a time:
//  * DecodeFull: a decode step (append + attend, every layer) of the full cache, no policy: the
//    baseline, at a context of 1K and 4K tokens.
//  * DecodeEvict: the same step at the steady state of a bounded cache: every head holds its
//    budget, the step appends one token, attends over budget + 1 and evicts (compress_slack 0: one
//    token per step, as the papers do; 64: a selection every 64 steps).
//  * CompressPass: one compress() of every head from a prefilled context down to the budget
//    (selection, on_compact, row moves, giving memory back); prefill is not timed.
// Shape: 4 layers, 32 query heads sharing 8 KV heads, head_dim 128, f16 rows; random normal data
// with fixed seeds.
//  * PromptCompress: compress_prompt() of a 4K-token prompt, every layer of SmolLM2's shape
//    (30 layers, 9 query heads sharing 3 KV heads, head_dim 64), to a quarter of the prompt
//    (budget_ratio 0.25) with SnapKV, TOVA, AdaKV+SnapKV, the published PyramidKV, KeyDiff,
//    ObservedAttention, LagKV and ChunkKV; prefill and the window's attend are not timed
//    (ObservedAttention's scores accumulate during that attend, so its timed part is the ranking
//    alone, whatever number of queries attended: one, here).
//  * DecodeAfterPrompt: a decode step (append + attend, every layer) of that cache after the
//    compression, against the full cache holding as many tokens per head (1K): what uniform
//    budgets of the same size cost.
#include "kvc/kvc.hpp"
#include "policy_bench.hpp"

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using namespace kvc_bench;

template <class P>
const char* policy_name() {
  if constexpr (std::is_same_v<P, kvc::select::H2O>)
    return "H2O";
  else if constexpr (std::is_same_v<P, kvc::select::SnapKV>)
    return "SnapKV";
  else if constexpr (std::is_same_v<P, kvc::select::TOVA>)
    return "TOVA";
  else if constexpr (std::is_same_v<P, kvc::select::KeyDiff>)
    return "KeyDiff";
  else if constexpr (std::is_same_v<P, kvc::select::ObservedAttention>)
    return "ObservedAttention";
  else if constexpr (std::is_same_v<P, kvc::select::LagKV>)
    return "LagKV";
  else if constexpr (std::is_same_v<P, kvc::select::ChunkKV>)
    return "ChunkKV";
  else
    return "StreamingLLM";
}

std::string label(const char* what, kvc::kernels::Isa isa) { return fmt::format("{} {}", what, kvc::kernels::isa_name(isa)); }

// Baseline: the full cache, nothing evicted. The context drifts by at most 1/16 before the cache
// is cleared and prefilled again (untimed).
void BM_DecodeFull(benchmark::State& state) {
  const auto context = static_cast<std::size_t>(state.range(0));
  const std::size_t limit = context + context / 16;
  kvc::KVCache<kvc::ContiguousLayout> cache(kShape, {.dtype = kF16, .capacity = limit});
  DecodeData data(context);
  prefill_all(cache, data.keys, data.values);
  time_decode_steps(state, cache, data, limit);
  state.SetLabel(label("none", cache.isa()));
  state.counters["tokens/head"] = static_cast<double>(cache.tokens()) / static_cast<double>(kShape.head_count());
}
BENCHMARK(BM_DecodeFull)->ArgName("context")->Arg(1024)->Arg(4096)->MinTime(0.2)->Unit(benchmark::kMicrosecond);

// Steady state of a bounded cache: prefill `context` tokens, compress to the budget (untimed),
// then every timed step appends one token per layer, attends and evicts.
template <class Selection>
void BM_DecodeEvict(benchmark::State& state) {
  const auto context = static_cast<std::size_t>(state.range(0));
  const auto budget = static_cast<std::size_t>(state.range(1));
  const auto slack = static_cast<std::size_t>(state.range(2));
  kvc::KVCache<kvc::ContiguousLayout, Selection> cache(
      kShape, {.dtype = kF16, .budget = budget, .compress_slack = slack}, Selection{});
  DecodeData data(context);
  prefill_all(cache, data.keys, data.values);
  cache.compress();
  time_decode_steps(state, cache, data);
  state.SetLabel(label(policy_name<Selection>(), cache.isa()));
  state.counters["tokens/head"] = static_cast<double>(cache.tokens()) / static_cast<double>(kShape.head_count());
}
void evict_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"context", "budget", "slack"});
  for (std::int64_t context : {1024, 4096})
    for (std::int64_t budget : {256, 1024}) b->Args({context, budget, 0});
  for (std::int64_t budget : {256, 1024}) b->Args({4096, budget, 64});
}
BENCHMARK_TEMPLATE(BM_DecodeEvict, kvc::select::StreamingLLM)->Apply(evict_args)->MinTime(0.2)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_DecodeEvict, kvc::select::H2O)->Apply(evict_args)->MinTime(0.2)->Unit(benchmark::kMicrosecond);

// One compress() pass from `context` tokens per head down to `budget`. Before it (untimed): a
// prefill, and one attend per layer with auto-compression off, so that H2O has accumulated
// attention to rank by. Setup dominates, hence a fixed iteration count.
template <class Selection>
void BM_CompressPass(benchmark::State& state) {
  const auto context = static_cast<std::size_t>(state.range(0));
  const auto budget = static_cast<std::size_t>(state.range(1));
  kvc::KVCache<kvc::ContiguousLayout, Selection> cache(
      kShape, {.dtype = kF16, .budget = budget, .auto_compress = false}, Selection{});
  const auto keys = random_rows(context * kRow, 1), values = random_rows(context * kRow, 2);
  const auto q = random_rows(kShape.query_heads * kShape.head_dim, 5);
  std::vector<float> out(q.size());
  for (auto _ : state) {
    state.PauseTiming();
    cache.clear();
    prefill_all(cache, keys, values);
    for (std::size_t layer = 0; layer < kShape.layers; ++layer) cache.attend(layer, q, out);
    state.ResumeTiming();
    cache.compress();
  }
  state.SetLabel(label(policy_name<Selection>(), cache.isa()));
  state.counters["evicted_tokens/s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * (context - budget) * kShape.head_count()),
                         benchmark::Counter::kIsRate);
}
void compress_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"context", "budget"});
  b->Args({1024, 256})->Args({4096, 256})->Args({4096, 1024});
}
BENCHMARK_TEMPLATE(BM_CompressPass, kvc::select::StreamingLLM)->Apply(compress_args)->Iterations(10)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_CompressPass, kvc::select::H2O)->Apply(compress_args)->Iterations(10)->Unit(benchmark::kMicrosecond);

// SmolLM2-135M's cache shape and the prompt of the prefill-time benchmarks.
const kvc::Shape kSmolShape{30, 9, 3, 64};
constexpr std::size_t kSmolRow = 3 * 64;
constexpr std::size_t kPrompt = 4096;

// Prefills every layer with the prompt and attends its last `window` queries (what a
// prompt-time selection observes; TOVA's is the last one), compression not yet run.
template <class Cache>
void prompt_into(Cache& cache, const std::vector<float>& keys, const std::vector<float>& queries, std::size_t window) {
  std::vector<float> out(window * kSmolShape.query_heads * kSmolShape.head_dim);
  const std::span<const float> q(queries.data() + queries.size() - out.size(), out.size());
  for (std::size_t layer = 0; layer < kSmolShape.layers; ++layer) {
    cache.prefill(layer, 0, keys, keys);
    cache.attend(layer, q, out);
  }
}

// At least one query: attend() needs one, and the attention-free selections observe none.
template <class Selection>
std::size_t window_of() {
  if constexpr (kvc::PromptHook<Selection>)
    return std::max<std::size_t>(Selection{}.observation_window(), 1);
  else
    return 1;
}

// Budget is void (uniform budgets) or a budget policy composed with the selection (AdaKV,
// the published PyramidKV).
template <class Budget, class Selection>
using PromptCache = std::conditional_t<std::is_void_v<Budget>, kvc::KVCache<kvc::ContiguousLayout, Selection>,
                                       kvc::KVCache<kvc::ContiguousLayout, std::conditional_t<std::is_void_v<Budget>, Selection, Budget>, Selection>>;

template <class Budget, class Selection>
void BM_PromptCompress(benchmark::State& state) {
  PromptCache<Budget, Selection> cache(kSmolShape, {.dtype = kF16, .budget_ratio = 0.25});
  const auto keys = random_rows(kPrompt * kSmolRow, 1);
  const auto queries = random_rows(kPrompt * kSmolShape.query_heads * kSmolShape.head_dim, 2);
  for (auto _ : state) {
    state.PauseTiming();
    cache.clear();
    prompt_into(cache, keys, queries, window_of<Selection>());
    state.ResumeTiming();
    cache.compress_prompt();
  }
  state.SetLabel(label(std::is_void_v<Budget> ? policy_name<Selection>()
                                               : std::is_same_v<Budget, kvc::budget::AdaKV> ? "AdaKV+SnapKV"
                                                                                            : "PyramidKV",
                       cache.isa()));
  state.counters["tokens/head"] = static_cast<double>(cache.tokens()) / static_cast<double>(kSmolShape.head_count());
  state.counters["prompt_tokens/s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * kPrompt), benchmark::Counter::kIsRate);
}
BENCHMARK_TEMPLATE(BM_PromptCompress, void, kvc::select::SnapKV)->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_PromptCompress, void, kvc::select::TOVA)->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_PromptCompress, kvc::budget::AdaKV, kvc::select::SnapKV)->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_PromptCompress, kvc::budget::PyramidKVPrompt, kvc::select::SnapKV)->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_PromptCompress, void, kvc::select::KeyDiff)->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_PromptCompress, void, kvc::select::ObservedAttention)->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_PromptCompress, void, kvc::select::LagKV)->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_PromptCompress, void, kvc::select::ChunkKV)->Iterations(5)->Unit(benchmark::kMillisecond);

template <class Cache>
void decode_steps(benchmark::State& state, Cache& cache, std::int32_t position) {
  const auto k = random_rows(kSmolRow, 3);
  const auto q = random_rows(kSmolShape.query_heads * kSmolShape.head_dim, 5);
  std::vector<float> out(q.size());
  for (auto _ : state) {
    for (std::size_t layer = 0; layer < kSmolShape.layers; ++layer) {
      cache.append(layer, position, k, k);
      cache.attend(layer, q, out);
    }
    benchmark::DoNotOptimize(out.data());
    ++position;
  }
  state.SetLabel(label("", cache.isa()));
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["tokens/head"] = static_cast<double>(cache.tokens()) / static_cast<double>(kSmolShape.head_count());
}

// After compress_prompt() SnapKV's heads grow from 1K (no eviction); TOVA evicts every step.
template <class Budget, class Selection>
void BM_DecodeAfterPrompt(benchmark::State& state) {
  PromptCache<Budget, Selection> cache(kSmolShape, {.dtype = kF16, .budget_ratio = 0.25});
  prompt_into(cache, random_rows(kPrompt * kSmolRow, 1),
              random_rows(kPrompt * kSmolShape.query_heads * kSmolShape.head_dim, 2), window_of<Selection>());
  cache.compress_prompt();
  decode_steps(state, cache, static_cast<std::int32_t>(kPrompt));
}
BENCHMARK_TEMPLATE(BM_DecodeAfterPrompt, void, kvc::select::SnapKV)->Iterations(200)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_DecodeAfterPrompt, void, kvc::select::TOVA)->Iterations(200)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_DecodeAfterPrompt, kvc::budget::AdaKV, kvc::select::SnapKV)->Iterations(200)->Unit(benchmark::kMicrosecond);

// The same step on the full cache holding the compressed size, 1K tokens per head.
void BM_DecodeUniform1K(benchmark::State& state) {
  kvc::KVCache<kvc::ContiguousLayout> cache(kSmolShape, {.dtype = kF16, .capacity = 2048});
  const auto keys = random_rows(1024 * kSmolRow, 1);
  for (std::size_t layer = 0; layer < kSmolShape.layers; ++layer) cache.prefill(layer, 0, keys, keys);
  decode_steps(state, cache, 1024);
}
BENCHMARK(BM_DecodeUniform1K)->Iterations(200)->Unit(benchmark::kMicrosecond);

}  // namespace
