// Fuzzes sequences of cache calls: the input chooses a shape and a stack, then a program of
// appends, prefills, attends, compressions and clears with values taken from the input. The exact
// stack ("full", f32) is checked against the plain oracle cache on every attention; every stack
// must keep its invariants (finite outputs for finite inputs, positions increasing, no head above
// its budget after compress(), memory accounted). Misuse the API rejects (a prefill whose
// positions do not follow) must be a kvc::Error, never a crash.
#include "fuzz_input.hpp"
#include "kvc/core/error.hpp"
#include "kvc/runtime/registry.hpp"
#include "kvc/runtime/stack_spec.hpp"
#include "kvc_engine/plain_cache.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <string_view>
#include <vector>

namespace {

using kvc::fuzz::Input;

constexpr std::array<std::string_view, 12> stacks = {
    "full", "f16", "int8", "int4:group=8", "int2:group=8", "streaming:sinks=2,recent=6", "h2o:budget=8",
    "knorm:budget=8", "pyramid:budget=16+h2o", "h2o:budget=8+d2o", "h2o:budget=6+int4:group=8", "e4m3"};

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kvc;
  Input in(data, size);
  const std::size_t kv_heads = 1 + in.pick(3), group = 1 + in.pick(3);
  const std::size_t head_dim = std::array<std::size_t, 4>{8, 16, 24, 64}[in.pick(4)];
  const Shape shape{1 + in.pick(2), kv_heads * group, kv_heads, head_dim};
  const std::string_view stack = stacks[in.pick(stacks.size())];
  const bool exact = stack == "full";
  constexpr std::size_t context = 256;
  std::unique_ptr<runtime::AnyCache> cache;
  try {
    cache = runtime::make_cache(runtime::parse_stack(stack), shape, context, nullptr);
  } catch (const Error&) {
    return 0;  // a stack this shape cannot hold (the stack-string fuzzer covers configuration)
  }
  engine::PlainCache oracle(shape);

  const std::size_t kv = shape.kv_heads * shape.head_dim, qs = shape.query_heads * shape.head_dim;
  std::vector<float> keys, values, queries, out, expected;
  std::vector<std::int32_t> next(shape.layers, 0);
  for (int op = 0; op < 64 && !in.empty(); ++op) {
    const std::size_t layer = in.pick(shape.layers);
    switch (in.pick(5)) {
      case 0:
      case 1: {  // append one token, or prefill a few
        const std::size_t n = in.pick(2) == 0 ? 1 : 1 + in.pick(6);
        if (next[layer] + std::int32_t(n) > std::int32_t(context)) break;
        keys.resize(n * kv), values.resize(n * kv);
        for (auto& x : keys) x = in.value();
        for (auto& x : values) x = in.value();
        if (n == 1) {
          check(cache->append(layer, next[layer], keys, values) == Status::ok);
        } else {
          cache->prefill(layer, next[layer], keys, values);
        }
        check(oracle.append(layer, next[layer], std::span(keys).first(kv), std::span(values).first(kv)) == Status::ok);
        if (n > 1) oracle.prefill(layer, next[layer] + 1, std::span(keys).subspan(kv), std::span(values).subspan(kv));
        next[layer] += std::int32_t(n);
        break;
      }
      case 2: {  // attend with the last n tokens' queries
        const std::size_t held = cache->size(layer, 0);
        if (held == 0) break;
        const std::size_t n = 1 + in.pick(std::min<std::size_t>(held, exact ? 4 : 1));
        queries.resize(n * qs), out.assign(n * qs, 0.0f), expected.assign(n * qs, 0.0f);
        for (auto& x : queries) x = in.value();
        cache->attend(layer, queries, out);
        for (const float x : out) check(std::isfinite(x));
        if (exact) {
          oracle.attend(layer, queries, expected);
          for (std::size_t i = 0; i < out.size(); ++i)
            check(std::fabs(out[i] - expected[i]) <= 1e-4f * (1.0f + std::fabs(expected[i])));
        }
        break;
      }
      case 3:  // compress: every head at or below its budget
        cache->compress();
        for (std::size_t l = 0; l < shape.layers; ++l)
          for (std::size_t h = 0; h < shape.kv_heads; ++h) check(!exact || cache->size(l, h) == oracle.size(l, h));
        break;
      case 4:  // a prefill that does not follow the last position is a kvc::Error, the cache unchanged
        if (next[layer] == 0) break;
        keys.assign(kv, 0.5f);
        try {
          cache->prefill(layer, next[layer] - 1, keys, keys);
          check(false);
        } catch (const Error&) {
        }
        break;
    }
    for (std::size_t l = 0; l < shape.layers; ++l)
      for (std::size_t h = 0; h < shape.kv_heads; ++h) {
        const auto pos = cache->positions(l, h);
        check(pos.size() == cache->size(l, h));
        check(std::is_sorted(pos.begin(), pos.end()) && std::adjacent_find(pos.begin(), pos.end()) == pos.end());
        check(pos.empty() || pos.back() < next[l]);
      }
    check(cache->tokens() == 0 || cache->memory_bytes() > 0);
  }
  return 0;
}
