// Budget policies (Uniform, PyramidKV): the cost of allocate(), which runs once when a KVCache
// is built and fills one budget per (layer, KV head). O(layers x kv_heads), no state: tiny next
// to anything on the decode path, so one benchmark covers both policies. Shape: a 32-layer model
// with 32 query heads sharing 8 KV heads, head_dim 128 (256 budgets). The counters give the
// bottom and top layers' budgets and the total handed out (average x layers x KV heads).
#include "kvc/kvc.hpp"

#include <benchmark/benchmark.h>

#include <numeric>
#include <type_traits>
#include <vector>

namespace {

const kvc::Shape kModel{32, 32, 8, 128};

template <class Budget>
void BM_Allocate(benchmark::State& state) {
  const auto average = static_cast<std::size_t>(state.range(0));
  const Budget policy{};
  const kvc::BudgetContext context{kModel, average, 0};
  std::vector<std::size_t> budgets(kModel.head_count());
  for (auto _ : state) {
    policy.allocate(context, budgets);
    benchmark::DoNotOptimize(budgets.data());
    benchmark::ClobberMemory();
  }
  state.SetLabel(std::is_same_v<Budget, kvc::budget::PyramidKV> ? "PyramidKV" : "Uniform");
  state.counters["allocations/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["bottom"] = static_cast<double>(budgets.front());
  state.counters["top"] = static_cast<double>(budgets.back());
  state.counters["total"] = static_cast<double>(std::accumulate(budgets.begin(), budgets.end(), std::size_t{0}));
}
BENCHMARK_TEMPLATE(BM_Allocate, kvc::budget::Uniform)->ArgName("budget")->Arg(256)->Arg(1024)->MinTime(0.2);
BENCHMARK_TEMPLATE(BM_Allocate, kvc::budget::PyramidKV)->ArgName("budget")->Arg(256)->Arg(1024)->MinTime(0.2);

}  // namespace
