// Fuzzes the C API (include/kvc/kvc.h) with hostile calls: the input is a stack string, a shape
// (zero and mismatched head counts included) and a program of appends, prefills, attends and
// queries whose layers, heads, positions, float counts, NULL pointers and non-finite values come
// from the input. Buffers are always as long as the counts say (a C caller lying about a
// buffer's length is outside any contract). Every call must return a kvc_status, never crash or
// abort; a failed call must leave the cache's token count as it was, and a failure must come
// with a message.
#include "fuzz_input.hpp"
#include "kvc/kvc.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace {

using kvc::fuzz::Input;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// A known status, and a message whenever it is not KVC_OK.
kvc_status checked(kvc_status status) {
  check(status >= KVC_OK && status <= KVC_ERROR_INTERNAL);
  check(status != KVC_ERROR_INTERNAL);  // an internal error is a defect, whatever the input
  if (status != KVC_OK) check(kvc_last_error()[0] != '\0');
  return status;
}

std::size_t tokens_of(const kvc_cache* cache) {
  std::size_t n = 0;
  check(kvc_cache_tokens(cache, &n) == KVC_OK);
  return n;
}

// A count near `right`: usually right, sometimes off by a little, sometimes zero.
std::size_t count_near(Input& in, std::size_t right) {
  switch (in.pick(8)) {
    case 0: return 0;
    case 1: return right + 1 + in.pick(4);
    case 2: return right > 0 ? right - 1 : 0;
    default: return right;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in(data, size);
  // A length byte, then the stack text (a NUL would end the C string early: it becomes a space).
  std::string text;
  for (std::size_t n = in.pick(48); n > 0 && !in.empty(); --n) {
    const std::uint8_t c = in.byte();
    text += c == 0 ? ' ' : char(c);
  }
  kvc_stack* stack = nullptr;
  if (checked(kvc_stack_parse(text.c_str(), &stack)) != KVC_OK) {
    check(stack == nullptr);
    return 0;
  }
  // Small values so a valid shape stays within the fuzzer's memory limit; 0 is invalid.
  const kvc_shape shape{in.pick(3), in.pick(7), in.pick(4), std::size_t{8} * in.pick(5)};
  const kvc_options options{in.pick(2) == 0 ? std::size_t{0} : std::size_t{64}};
  kvc_cache* cache = nullptr;
  const kvc_status created = checked(kvc_cache_create(&shape, in.pick(4) == 0 ? nullptr : &options, stack, &cache));
  check(kvc_stack_destroy(stack) == KVC_OK);
  if (created != KVC_OK) {
    check(cache == nullptr);
    return 0;
  }

  const std::size_t kv = shape.kv_heads * shape.head_dim, qs = shape.query_heads * shape.head_dim;
  std::vector<float> keys, values, queries, out;
  std::vector<std::int32_t> positions;
  std::vector<std::int32_t> next(shape.layers + 1, 0);
  for (int op = 0; op < 48 && !in.empty(); ++op) {
    // Now and then a layer or head past the end.
    const std::size_t layer = in.pick(shape.layers + 1), head = in.pick(shape.kv_heads + 1);
    const std::size_t before = tokens_of(cache);
    kvc_status status = KVC_OK;
    switch (in.pick(7)) {
      case 0:
      case 1: {  // append one token, or prefill a few
        const std::size_t n = in.pick(2) == 0 ? 1 : 1 + in.pick(6);
        keys.resize(count_near(in, n * kv)), values.resize(count_near(in, n * kv));
        for (auto& x : keys) x = in.value_or_nonfinite();
        for (auto& x : values) x = in.value_or_nonfinite();
        const std::int32_t position = in.pick(8) == 0 ? std::int32_t(in.byte()) - 8 : next[layer];
        const float* k = in.pick(16) == 0 ? nullptr : keys.data();
        status = n == 1 ? checked(kvc_cache_append(cache, layer, position, k, keys.size(), values.data(), values.size()))
                        : checked(kvc_cache_prefill(cache, layer, position, k, keys.size(), values.data(), values.size()));
        if (status == KVC_OK) next[layer] = position + std::int32_t(n == 1 ? 1 : keys.size() / kv);
        break;
      }
      case 2:
      case 3: {  // attend one or a few queries
        const std::size_t n = 1 + in.pick(3);
        queries.resize(count_near(in, n * qs));
        out.resize(in.pick(8) == 0 ? queries.size() + 1 : queries.size());
        for (auto& x : queries) x = in.value_or_nonfinite();
        status = checked(kvc_cache_attend(cache, layer, queries.data(), queries.size(),
                                          in.pick(16) == 0 ? nullptr : out.data(), out.size()));
        if (status == KVC_OK)
          for (float x : out) check(std::isfinite(x));
        break;
      }
      case 4: {  // read positions into a buffer that may be too short
        std::size_t count = 0;
        positions.resize(in.pick(80));
        status = checked(kvc_cache_positions(cache, layer, head, positions.data(), positions.size(), &count));
        if (status == KVC_OK)
          for (std::size_t i = 1; i < count; ++i) check(positions[i] > positions[i - 1]);
        break;
      }
      case 5: {
        std::size_t n = 0;
        status = checked(kvc_cache_size(cache, layer, head, &n));
        break;
      }
      default:
        if (in.pick(4) == 0) {
          check(kvc_cache_clear(cache) == KVC_OK);
          std::fill(next.begin(), next.end(), 0);
          continue;
        }
        status = checked(kvc_cache_compress_prompt(cache));
        continue;  // compresses (changes the count) or fails part-way by contract
    }
    if (status != KVC_OK) check(tokens_of(cache) == before);
  }
  std::size_t bytes = 0;
  check(kvc_cache_memory_bytes(cache, &bytes) == KVC_OK);
  check(kvc_cache_destroy(cache) == KVC_OK);
  return 0;
}
