// Builds a cache, appends a few tokens and attends: exits non-zero on a wrong result. Then the
// same through a run-time stack (kvc/runtime) and through the C API (c_consumer.c).
#include <kvc/kvc.hpp>
#include <kvc/runtime/registry.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

// The CMake builds link the C API (kvc::c) too; the pkg-config build links kvcompress alone.
#ifdef KVC_CONSUMER_C_API
extern "C" int c_consumer(void);
#endif

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
  auto stack = kvc::runtime::make_cache(kvc::runtime::parse_stack("h2o:budget=2"), shape, 0);
  for (int t = 0; t < 4; ++t)
    if (stack->append(0, t, k, v) != kvc::Status::ok) return 2;
  stack->compress();
  if (stack->size(0, 0) != 2) return 3;
#ifdef KVC_CONSUMER_C_API
  if (const int c = c_consumer(); c != 0) return 10 + c;
#endif
  std::printf("consumer ok: %zu tokens, %zu bytes\n", cache.tokens(), cache.memory_bytes());
  return 0;
}
