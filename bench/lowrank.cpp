// Low-rank projection (kvc::lowrank::SVD) in a KVCache against full-dimension rows, f16 storage:
//  * DecodeStep: a decode step (append + attend, every layer) of the full cache at a context of
//    1K and 4K tokens, by rank (rank 128 = head_dim: the projections cost, nothing is saved).
//    The step projects the new key and value, the 4 queries of each KV head, and restores the
//    4 outputs; attention reads rank dims per token. bytes/token: one token over every layer and
//    KV head (key row, value row, position); basis_MiB: the fixed cost of the bases.
//  * Calibrate: fitting one (layer, KV head) from 1024 calibration rows (two SVDs, keys and
//    values), the cost a first prefill pays per head.
// Bases are fitted once per rank (untimed) on 512 calibration tokens. Shape: 4 layers, 32 query
// heads sharing 8 KV heads, head_dim 128; random normal data with fixed seeds (flat spectrum:
// this measures cost, not accuracy).
#include "kvc/kvc.hpp"
#include "policy_bench.hpp"

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cstdint>
#include <map>
#include <random>
#include <span>
#include <vector>

namespace {

using namespace kvc_bench;

// One fitted policy per rank, shared by the benchmarks (fitting is not what they measure).
const kvc::lowrank::SVD& fitted(std::size_t rank) {
  static std::map<std::size_t, kvc::lowrank::SVD> cache;
  auto it = cache.find(rank);
  if (it == cache.end()) {
    constexpr std::size_t n = 512;
    const auto keys = random_rows(kShape.layers * n * kRow, 11), values = random_rows(kShape.layers * n * kRow, 12);
    it = cache.emplace(rank, kvc::lowrank::SVD::fit(kShape, rank, keys, values)).first;
  }
  return it->second;
}

// A decode step of the full cache; the context drifts by at most 1/16 before the cache is
// cleared and prefilled again (untimed). rank 0: no low-rank policy.
template <class Cache>
void decode(benchmark::State& state, Cache& cache, std::size_t context) {
  DecodeData data(context);
  prefill_all(cache, data.keys, data.values);
  time_decode_steps(state, cache, data, context + context / 16);
  const std::size_t row = kvc::kernels::row_bytes(cache.key_format(), cache.key_dim()) +
                          kvc::kernels::row_bytes(cache.value_format(), cache.value_dim()) + sizeof(std::int32_t);
  state.counters["bytes/token"] = static_cast<double>(row * kShape.head_count());
}

void BM_DecodeStep(benchmark::State& state) {
  const auto rank = static_cast<std::size_t>(state.range(0));
  const auto context = static_cast<std::size_t>(state.range(1));
  const kvc::Options options{.dtype = kF16, .capacity = context + context / 16};
  if (rank == 0) {
    kvc::KVCache<kvc::ContiguousLayout> cache(kShape, options);
    decode(state, cache, context);
    state.SetLabel(fmt::format("full {}", kvc::kernels::isa_name(cache.isa())));
    state.counters["basis_MiB"] = 0.0;
  } else {
    kvc::KVCache<kvc::ContiguousLayout, kvc::lowrank::SVD> cache(kShape, options, fitted(rank));
    decode(state, cache, context);
    state.SetLabel(fmt::format("SVD rank {} {}", rank, kvc::kernels::isa_name(cache.isa())));
    state.counters["basis_MiB"] =
        static_cast<double>(cache.get<kvc::lowrank::SVD>().memory_bytes()) / (1024.0 * 1024.0);
  }
}
BENCHMARK(BM_DecodeStep)
    ->ArgNames({"rank", "context"})
    ->ArgsProduct({{0, 32, 64, 96, 128}, {1024, 4096}})
    ->MinTime(0.2)
    ->Unit(benchmark::kMicrosecond);

// Fitting one head's key and value bases from 1024 rows.
void BM_Calibrate(benchmark::State& state) {
  const auto rank = static_cast<std::size_t>(state.range(0));
  constexpr std::size_t n = 1024;
  const auto keys = random_rows(n * kShape.head_dim, 21), values = random_rows(n * kShape.head_dim, 22);
  kvc::lowrank::SVD svd{.rank = rank};
  svd.setup(kvc::PolicySetup{.shape = kShape});
  for (auto _ : state) svd.calibrate(0, 0, keys, values, n);
  state.counters["heads/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Calibrate)->ArgName("rank")->Arg(32)->Arg(64)->Arg(128)->MinTime(0.2)->Unit(benchmark::kMillisecond);

}  // namespace
