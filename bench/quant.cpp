// Per-token quantization (kvc::quant::PerToken, group 32) in a KVCache against f16 rows:
//  * DecodeStep: a decode step (append + attend, every layer) of the full cache at a context of
//    1K and 4K tokens, no eviction; bytes/token is what one token costs over every layer and KV
//    head (encoded key and value rows plus its position), alloc_MiB what the cache holds.
//  * Append: appending one token to every layer (encoding only).
// Formats: f16 (no policy), int8, int4, int2, and int8 keys with int4 values (KIVI's advice:
// keys quantize worse per token than values). Shape: 4 layers, 32 query heads sharing 8 KV
// heads, head_dim 128; random normal data with fixed seeds.
#include "kvc/kvc.hpp"
#include "policy_bench.hpp"

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace kvc_bench;

constexpr unsigned kGroup = 32;

std::string format_name(unsigned key_bits, unsigned value_bits) {
  // fmt rather than std::string's operator+, which trips g++ 12's -Wrestrict false positive at -O3.
  const auto name = [](unsigned bits) { return bits == 16 ? std::string("f16") : fmt::format("int{}", bits); };
  return key_bits == value_bits ? name(key_bits) : fmt::format("K{}/V{}", name(key_bits), name(value_bits));
}

// Calls body(cache) with an f16 cache (key_bits 16) or a PerToken one.
template <class Body>
void with_cache(unsigned key_bits, unsigned value_bits, kvc::Options options, Body&& body) {
  if (key_bits == 16) {
    options.dtype = kvc::kernels::Dtype::f16;
    kvc::KVCache<kvc::ContiguousLayout> cache(kShape, options);
    body(cache);
  } else {
    kvc::KVCache<kvc::ContiguousLayout, kvc::quant::PerToken> cache(
        kShape, options, kvc::quant::PerToken{.bits = key_bits, .group = kGroup, .value_bits = value_bits});
    body(cache);
  }
}

// Bytes of one token over every layer and KV head: its key row, value row and position.
template <class Cache>
double bytes_per_token(const Cache& cache) {
  const std::size_t row = kvc::kernels::row_bytes(cache.key_format(), cache.key_dim()) +
                          kvc::kernels::row_bytes(cache.value_format(), cache.value_dim()) + sizeof(std::int32_t);
  return static_cast<double>(row * kShape.head_count());
}

void format_args(benchmark::internal::Benchmark* b, bool with_context) {
  const std::vector<std::pair<std::int64_t, std::int64_t>> formats{{16, 16}, {8, 8}, {4, 4}, {2, 2}, {8, 4}};
  if (with_context) {
    b->ArgNames({"kbits", "vbits", "context"});
    for (std::int64_t context : {1024, 4096})
      for (auto [k, v] : formats) b->Args({k, v, context});
  } else {
    b->ArgNames({"kbits", "vbits"});
    for (auto [k, v] : formats) b->Args({k, v});
  }
}

// A decode step of the full cache; the context drifts by at most 1/16 before the cache is
// cleared and prefilled again (untimed).
void BM_DecodeStep(benchmark::State& state) {
  const auto key_bits = static_cast<unsigned>(state.range(0));
  const auto value_bits = static_cast<unsigned>(state.range(1));
  const auto context = static_cast<std::size_t>(state.range(2));
  DecodeData data(context);
  with_cache(key_bits, value_bits, {.capacity = context + context / 16}, [&](auto& cache) {
    prefill_all(cache, data.keys, data.values);
    time_decode_steps(state, cache, data, context + context / 16);
    state.SetLabel(fmt::format("{} {}", format_name(key_bits, value_bits), kvc::kernels::isa_name(cache.isa())));
    state.counters["bytes/token"] = bytes_per_token(cache);
    state.counters["alloc_MiB"] = static_cast<double>(cache.memory_bytes()) / (1024.0 * 1024.0);
  });
}
BENCHMARK(BM_DecodeStep)->Apply([](benchmark::internal::Benchmark* b) { format_args(b, true); })->MinTime(0.2)->Unit(benchmark::kMicrosecond);

// Appending one token to every layer: encoding and bookkeeping. The cache is cleared (untimed)
// every 4096 tokens.
void BM_Append(benchmark::State& state) {
  const auto key_bits = static_cast<unsigned>(state.range(0));
  const auto value_bits = static_cast<unsigned>(state.range(1));
  constexpr std::size_t tokens = 4096;
  const auto k = random_rows(kRow, 3), v = random_rows(kRow, 4);
  with_cache(key_bits, value_bits, {.capacity = tokens}, [&](auto& cache) {
    time_appends(state, cache, k, v, tokens);
    state.SetLabel(fmt::format("{} {}", format_name(key_bits, value_bits), kvc::kernels::isa_name(cache.isa())));
    state.counters["bytes/token"] = bytes_per_token(cache);
  });
}
BENCHMARK(BM_Append)->Apply([](benchmark::internal::Benchmark* b) { format_args(b, false); })->MinTime(0.2);

}  // namespace
