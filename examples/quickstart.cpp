// The README's example, built and run by the test suite: an H2O cache with int4 storage, fed
// random tokens the way an engine feeds it (per layer: append the token, then attend).
#include <kvc/kvc.hpp>

#include <cstdio>
#include <random>
#include <vector>

int main() {
  const kvc::Shape shape{.layers = 2, .query_heads = 8, .kv_heads = 2, .head_dim = 64};
  kvc::KVCache<kvc::PagedLayout, kvc::select::H2O, kvc::quant::PerToken> cache(
      shape, {.budget = 128}, kvc::select::H2O{.recent_fraction = 0.5}, kvc::quant::PerToken{.bits = 4, .group = 32});

  std::mt19937 rng(42);
  std::normal_distribution<float> normal;
  std::vector<float> k(shape.kv_heads * shape.head_dim), v(k.size());
  std::vector<float> q(shape.query_heads * shape.head_dim), out(q.size());
  for (std::int32_t position = 0; position < 1000; ++position)
    for (std::size_t layer = 0; layer < shape.layers; ++layer) {
      for (auto* row : {&k, &v, &q})
        for (auto& x : *row) x = normal(rng);
      cache.append(layer, position, k, v);  // keys already RoPE-rotated by the engine
      cache.attend(layer, q, out);          // evicts down to the budget when over it
    }
  std::printf("kept %zu of %d tokens per head, %.1f bytes per token and head (f16 full cache: %zu)\n",
              cache.size(0, 0), 1000, static_cast<double>(cache.memory_bytes()) / static_cast<double>(cache.tokens()),
              2 * 2 * shape.head_dim);
  return cache.size(0, 0) == 128 ? 0 : 1;
}
