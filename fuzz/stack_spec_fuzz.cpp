// Fuzzes stack strings end to end: parse, check against the registry, build the cache on a small
// shape and run a few decode steps through it. Every malformed or out-of-range stack must fail
// with kvc::Error at parse, check or construction time, never later and never otherwise.
#include "kvc/core/error.hpp"
#include "kvc/runtime/registry.hpp"
#include "kvc/runtime/stack_spec.hpp"

#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const kvc::Shape shape{2, 4, 2, 8};
  try {
    const auto spec = kvc::runtime::parse_stack(text);
    kvc::runtime::check_stack(spec);
    const auto cache = kvc::runtime::make_cache(spec, shape, 64, nullptr);
    std::vector<float> k(shape.kv_heads * shape.head_dim), q(shape.query_heads * shape.head_dim), out(q.size());
    for (std::int32_t t = 0; t < 40; ++t)
      for (std::size_t l = 0; l < shape.layers; ++l) {
        for (std::size_t i = 0; i < k.size(); ++i) k[i] = float((std::size_t(t) * 7 + i * 3) % 11) * 0.25f - 1.0f;
        for (std::size_t i = 0; i < q.size(); ++i) q[i] = float((std::size_t(t) + i) % 5) * 0.5f - 1.0f;
        cache->append(l, t, k, k);
        cache->attend(l, q, out);
      }
  } catch (const kvc::Error&) {
  }
  return 0;
}
