// Token merging (kvc::merge::D2O, kvc::merge::CaM) in a KVCache. Merging needs a selection policy; StreamingLLM
// (stateless, O(budget)) is the base, so the difference between a case and its "none" twin is
// what D2O costs:
//  * DecodeEvict: the steady state of a bounded cache (compress_slack 0): each step appends one
//    token per layer, attends over budget + 1 and evicts one token per head, which D2O compares
//    with every kept key (loads the K kept keys, one nearest-key search; two with the EMA).
//  * CompressPass: compress() of one layer (8 KV heads) from a prefilled context down to the
//    budget: D2O is O(evicted x kept x head_dim) per head, twice with the EMA (a first pass for
//    the mean similarity). Prefill is not timed; setup dominates, hence fixed iteration counts.
// Variants: none (StreamingLLM alone), D2O with the EMA threshold (the paper's), D2O with a fixed
// threshold (one pass); CaM needs a selection with attention scores, so its twin is TOVA alone
// ("tova") vs TOVA + CaM ("cam"), DecodeEvict only (CompressPass attends nothing: every score is
// 0 and CaM would merge nothing). Shape: 4 layers, 32 query heads sharing 8 KV heads, head_dim 128, f16
// rows; random normal data with fixed seeds.
#include "kvc/kvc.hpp"
#include "policy_bench.hpp"

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <vector>

namespace {

using namespace kvc_bench;

enum Variant : std::int64_t { kNone = 0, kEma = 1, kFixed = 2, kTova = 3, kCaM = 4 };
const char* variant_name(std::int64_t v) {
  switch (v) {
    case kNone: return "none";
    case kEma: return "D2O ema";
    case kFixed: return "D2O fixed";
    case kTova: return "tova";
    default: return "tova + CaM";
  }
}

// Calls body(cache) with a StreamingLLM cache, with or without D2O. Random keys are nearly
// orthogonal (cosines around 0 +- 0.1): a fixed threshold of 0 merges about half of them.
template <class Body>
void with_cache(std::int64_t variant, const kvc::Options& options, Body&& body) {
  using kvc::select::StreamingLLM;
  using kvc::select::TOVA;
  if (variant == kTova) {
    kvc::KVCache<kvc::ContiguousLayout, TOVA> cache(kShape, options, TOVA{});
    body(cache);
  } else if (variant == kCaM) {
    kvc::KVCache<kvc::ContiguousLayout, TOVA, kvc::merge::CaM> cache(kShape, options, TOVA{}, kvc::merge::CaM{});
    body(cache);
  } else if (variant == kNone) {
    kvc::KVCache<kvc::ContiguousLayout, StreamingLLM> cache(kShape, options, StreamingLLM{});
    body(cache);
  } else {
    kvc::merge::D2O d2o;
    if (variant == kFixed) d2o.threshold = 0.0f;
    kvc::KVCache<kvc::ContiguousLayout, StreamingLLM, kvc::merge::D2O> cache(kShape, options, StreamingLLM{}, d2o);
    body(cache);
  }
}

void BM_DecodeEvict(benchmark::State& state) {
  const std::int64_t variant = state.range(0);
  const auto budget = static_cast<std::size_t>(state.range(1));
  // The steady state does not depend on the prompt length: prefill exactly the budget, so that
  // no (slow, untimed) D2O prompt compression precedes the timed steps.
  const std::size_t context = budget;
  DecodeData data(context);
  with_cache(variant, {.dtype = kF16, .budget = budget}, [&](auto& cache) {
    prefill_all(cache, data.keys, data.values);
    time_decode_steps(state, cache, data);
    state.SetLabel(fmt::format("{} {}", variant_name(variant), kvc::kernels::isa_name(cache.isa())));
  });
}
BENCHMARK(BM_DecodeEvict)
    ->ArgNames({"d2o", "budget"})
    ->ArgsProduct({{kNone, kEma, kFixed, kTova, kCaM}, {256, 1024}})
    ->MinTime(0.2)
    ->Unit(benchmark::kMicrosecond);

// compress(0): layer 0's 8 KV heads from `context` tokens down to `budget`.
void BM_CompressPass(benchmark::State& state) {
  const std::int64_t variant = state.range(0);
  const auto context = static_cast<std::size_t>(state.range(1));
  const auto budget = static_cast<std::size_t>(state.range(2));
  const auto keys = random_rows(context * kRow, 1), values = random_rows(context * kRow, 2);
  with_cache(variant, {.dtype = kF16, .budget = budget, .auto_compress = false}, [&](auto& cache) {
    for (auto _ : state) {
      state.PauseTiming();
      cache.clear();
      cache.prefill(0, 0, keys, values);
      state.ResumeTiming();
      cache.compress(0);
    }
    state.SetLabel(fmt::format("{} {}", variant_name(variant), kvc::kernels::isa_name(cache.isa())));
  });
  state.counters["evicted_tokens/s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * (context - budget) * kShape.kv_heads), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_CompressPass)
    ->ArgNames({"d2o", "context", "budget"})
    ->ArgsProduct({{kNone, kEma, kFixed}, {1024}, {256}})
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);
// At 4K one D2O pass of one layer takes about a second (EMA): one iteration.
BENCHMARK(BM_CompressPass)
    ->ArgNames({"d2o", "context", "budget"})
    ->Args({kNone, 4096, 256})
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CompressPass)
    ->ArgNames({"d2o", "context", "budget"})
    ->ArgsProduct({{kEma, kFixed}, {4096}, {256}})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
