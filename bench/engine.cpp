// The engine's speed on SmolLM2-135M-Instruct (scripts/fetch_models.sh fetches it): prefill of a
// 2048-token prompt in 512-token chunks, and decode at 1K and 8K tokens of context, on an exact
// kvc::KVCache<> (f32 rows, the process's kernel ISA). Counters: tokens/s.
//
//   KVC_ENGINE_THREADS=2 build/bench/kvc_bench_engine
#include "kvc/kvc.hpp"
#include "kvc_engine/model.hpp"
#include "kvc_engine/paths.hpp"
#include "kvc_engine/transformer.hpp"

#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <vector>

namespace {

using namespace kvc::engine;

const Model* smollm2() {
  static const std::unique_ptr<Model> model = [] {
    const auto path = find_smollm2();
    return path.empty() ? nullptr : std::make_unique<Model>(Model::load(path));
  }();
  return model.get();
}

std::vector<std::int32_t> random_tokens(std::size_t n, std::int32_t vocab) {
  std::mt19937 rng(42);
  std::uniform_int_distribution<std::int32_t> id(0, vocab - 1);
  std::vector<std::int32_t> t(n);
  for (auto& x : t) x = id(rng);
  return t;
}

void BM_Prefill(benchmark::State& state) {
  const Model* model = smollm2();
  if (!model) return state.SkipWithError("SmolLM2 not found; run scripts/fetch_models.sh");
  const std::size_t prompt = 2048, chunk = std::size_t(state.range(0));
  const auto tokens = random_tokens(prompt, model->config().vocab_size);
  Transformer transformer(*model);
  kvc::KVCache<> cache(model->config().attention_shape(), {.capacity = prompt});
  for (auto _ : state) {
    cache.clear();
    for (std::size_t t = 0; t < prompt; t += chunk)
      benchmark::DoNotOptimize(transformer.prefill(cache, std::span(tokens).subspan(t, chunk), std::int32_t(t)));
  }
  state.counters["tokens/s"] = benchmark::Counter(double(prompt), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Prefill)->Arg(512)->Unit(benchmark::kSecond)->Iterations(2)->UseRealTime();

// Decode cost depends on how many tokens the cache holds, not on what they are, so the context
// is filled with random keys and values instead of running the model over it.
void BM_Decode(benchmark::State& state) {
  const Model* model = smollm2();
  if (!model) return state.SkipWithError("SmolLM2 not found; run scripts/fetch_models.sh");
  const std::size_t context = std::size_t(state.range(0)), steps = 32;
  const kvc::Shape shape = model->config().attention_shape();
  kvc::KVCache<> cache(shape, {.capacity = context + steps});
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> rows(context * shape.kv_heads * shape.head_dim);
  for (auto& x : rows) x = normal(rng);
  Transformer transformer(*model);
  const auto tokens = random_tokens(steps, model->config().vocab_size);
  for (auto _ : state) {
    state.PauseTiming();
    cache.clear();
    for (std::size_t l = 0; l < shape.layers; ++l) cache.prefill(l, 0, rows, rows);
    state.ResumeTiming();
    for (std::size_t s = 0; s < steps; ++s)
      benchmark::DoNotOptimize(transformer.forward(cache, tokens[s], std::int32_t(context + s)));
  }
  state.counters["tokens/s"] = benchmark::Counter(double(steps), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Decode)->Arg(1024)->Arg(8192)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

}  // namespace
