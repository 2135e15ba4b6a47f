// Builds a cache, appends a few tokens and attends: exits non-zero on a wrong result.
#include <kvc/kvc.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  const kvc::Shape shape{1, 2, 1, 8};
  kvc::KVCache<> cache(shape);
  std::vector<float> k(8, 0.0f), v(8), q(16, 0.0f), out(16);
  for (int t = 0; t < 4; ++t) {
    for (int d = 0; d < 8; ++d) v[d] = static_cast<float>(t);
    cache.append(0, t, k, v);
  }
  cache.attend(0, q, out);  // equal logits: the output is the mean of the values, 1.5
  for (float x : out)
    if (std::fabs(x - 1.5f) > 1e-6f) return 1;
  std::printf("consumer ok: %zu tokens, %zu bytes\n", cache.tokens(), cache.memory_bytes());
  return 0;
}
