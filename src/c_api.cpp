// The C API (include/kvc/kvc.h) over the run-time stacks: every entry point catches everything,
// turns it into a kvc_status and a per-thread message, and checks the hot path's contracts
// (runtime/checked.hpp) before calling it, so no exception or abort crosses the boundary.
#include "kvc/kvc.h"

#include "kvc/core/error.hpp"
#include "kvc/runtime/checked.hpp"
#include "kvc/runtime/registry.hpp"
#include "kvc/runtime/stack_spec.hpp"
#include "kvc/version.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <span>
#include <string>

struct kvc_stack {
  kvc::runtime::StackSpec spec;
};

struct kvc_cache {
  std::unique_ptr<kvc::runtime::AnyCache> cache;
};

namespace {

// A fixed buffer: recording an error must not allocate, since running out of memory is one of
// the errors it records. Messages longer than this are cut (stack errors list every valid name
// and stay well under it).
constexpr std::size_t message_capacity = 2048;
thread_local char last_message[message_capacity] = "";

kvc_status report(kvc_status status, const char* message) noexcept {
  std::snprintf(last_message, message_capacity, "%s", message);
  return status;
}

// Runs `body` (which returns a kvc_status) with every exception mapped to a status and message.
template <class Body>
kvc_status guarded(const char* where, Body&& body) noexcept {
  try {
    return body();
  } catch (const kvc::Error& e) {
    return report(KVC_ERROR_INVALID_ARGUMENT, e.what());
  } catch (const std::bad_alloc&) {
    std::snprintf(last_message, message_capacity, "%s: out of memory", where);
    return KVC_ERROR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    std::snprintf(last_message, message_capacity, "%s: internal error: %s", where, e.what());
    return KVC_ERROR_INTERNAL;
  } catch (...) {
    std::snprintf(last_message, message_capacity, "%s: internal error: unknown exception", where);
    return KVC_ERROR_INTERNAL;
  }
}

// Throws kvc::Error naming the null argument.
template <class T>
void require(const T* pointer, const char* where, const char* name) {
  if (pointer == nullptr) kvc::fail(where, "{} is NULL", name);
}

// A float array of `count` elements; NULL is allowed only when count is 0.
std::span<const float> floats(const float* data, std::size_t count, const char* where, const char* name) {
  if (data == nullptr && count != 0) kvc::fail(where, "{} is NULL but its count is {}", name, count);
  return {data, count};
}

kvc_status write_text(const std::string& text, char* buffer, std::size_t capacity, std::size_t* length,
                      const char* where) {
  require(length, where, "length");
  if (buffer == nullptr && capacity != 0) kvc::fail(where, "buffer is NULL but capacity is {}", capacity);
  *length = text.size();
  if (capacity <= text.size()) {
    std::snprintf(last_message, message_capacity, "%s: the text needs %zu bytes and a NUL, the buffer holds %zu",
                  where, text.size(), capacity);
    return KVC_ERROR_BUFFER_TOO_SMALL;
  }
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  return KVC_OK;
}

const kvc::runtime::ComponentInfo& component_info(const std::string& name) {
  for (const kvc::runtime::ComponentInfo& c : kvc::runtime::registered_components())
    if (c.name == name) return c;
  kvc::fail("kvc_stack_describe", "internal: component '{}' is not registered", name);
}

// Every parameter of every component, the given value or else the default.
std::string describe(const kvc::runtime::StackSpec& spec) {
  std::string out;
  for (const kvc::runtime::SpecComponent& component : spec.components) {
    if (!out.empty()) out += '+';
    out += component.name;
    const kvc::runtime::ComponentInfo& info = component_info(component.name);
    for (std::size_t i = 0; i < info.params.size(); ++i) {
      const kvc::runtime::ParamInfo& p = info.params[i];
      double value = p.default_value;
      for (const kvc::runtime::SpecParam& given : component.params)
        if (given.key == p.key) value = given.value;
      out += fmt::format("{}{}={}", i == 0 ? ":" : ",", p.key, value);
    }
  }
  return out;
}

}  // namespace

extern "C" {

const char* kvc_last_error(void) { return last_message; }

const char* kvc_status_name(kvc_status status) {
  switch (status) {
    case KVC_OK: return "KVC_OK";
    case KVC_ERROR_INVALID_ARGUMENT: return "KVC_ERROR_INVALID_ARGUMENT";
    case KVC_ERROR_OUT_OF_MEMORY: return "KVC_ERROR_OUT_OF_MEMORY";
    case KVC_ERROR_BUFFER_TOO_SMALL: return "KVC_ERROR_BUFFER_TOO_SMALL";
    case KVC_ERROR_INTERNAL: return "KVC_ERROR_INTERNAL";
    case KVC_STATUS_MAX_ENUM: break;
  }
  return "unknown status";
}

kvc_status kvc_version(int* major, int* minor, int* patch) {
  return guarded("kvc_version", [&] {
    require(major, "kvc_version", "major");
    require(minor, "kvc_version", "minor");
    require(patch, "kvc_version", "patch");
    *major = kvc::version.major, *minor = kvc::version.minor, *patch = kvc::version.patch;
    return KVC_OK;
  });
}

kvc_status kvc_components_describe(char* buffer, size_t capacity, size_t* length) {
  constexpr const char* where = "kvc_components_describe";
  return guarded(where, [&] { return write_text(kvc::runtime::describe_components(), buffer, capacity, length, where); });
}

kvc_status kvc_stack_parse(const char* text, kvc_stack** stack) {
  constexpr const char* where = "kvc_stack_parse";
  return guarded(where, [&] {
    require(stack, where, "stack");
    *stack = nullptr;
    require(text, where, "text");
    auto parsed = std::make_unique<kvc_stack>(kvc_stack{kvc::runtime::parse_stack(text)});
    kvc::runtime::check_stack(parsed->spec);
    *stack = parsed.release();
    return KVC_OK;
  });
}

kvc_status kvc_stack_describe(const kvc_stack* stack, char* buffer, size_t capacity, size_t* length) {
  constexpr const char* where = "kvc_stack_describe";
  return guarded(where, [&] {
    require(stack, where, "stack");
    return write_text(describe(stack->spec), buffer, capacity, length, where);
  });
}

kvc_status kvc_stack_destroy(kvc_stack* stack) {
  delete stack;
  return KVC_OK;
}

kvc_status kvc_cache_create(const kvc_shape* shape, const kvc_options* options, const kvc_stack* stack,
                            kvc_cache** cache) {
  constexpr const char* where = "kvc_cache_create";
  return guarded(where, [&] {
    require(cache, where, "cache");
    *cache = nullptr;
    require(shape, where, "shape");
    require(stack, where, "stack");
    const kvc::Shape s{shape->layers, shape->query_heads, shape->kv_heads, shape->head_dim};
    s.validate();
    const std::size_t context = options ? options->context : 0;
    auto made = std::make_unique<kvc_cache>(kvc_cache{kvc::runtime::make_cache(stack->spec, s, context)});
    *cache = made.release();
    return KVC_OK;
  });
}

kvc_status kvc_cache_destroy(kvc_cache* cache) {
  delete cache;
  return KVC_OK;
}

kvc_status kvc_cache_append(kvc_cache* cache, size_t layer, int32_t position, const float* keys, size_t keys_count,
                            const float* values, size_t values_count) {
  constexpr const char* where = "kvc_cache_append";
  return guarded(where, [&] {
    require(cache, where, "cache");
    const auto k = floats(keys, keys_count, where, "keys");
    const auto v = floats(values, values_count, where, "values");
    kvc::runtime::check_append(*cache->cache, layer, position, k, v);
    if (cache->cache->append(layer, position, k, v) == kvc::Status::out_of_memory)
      return report(KVC_ERROR_OUT_OF_MEMORY, "kvc_cache_append: out of memory growing a head; the cache is unchanged");
    return KVC_OK;
  });
}

kvc_status kvc_cache_prefill(kvc_cache* cache, size_t layer, int32_t first_position, const float* keys,
                             size_t keys_count, const float* values, size_t values_count) {
  constexpr const char* where = "kvc_cache_prefill";
  return guarded(where, [&] {
    require(cache, where, "cache");
    // prefill validates its arguments and throws kvc::Error itself.
    cache->cache->prefill(layer, first_position, floats(keys, keys_count, where, "keys"),
                          floats(values, values_count, where, "values"));
    return KVC_OK;
  });
}

kvc_status kvc_cache_attend(kvc_cache* cache, size_t layer, const float* queries, size_t queries_count, float* out,
                            size_t out_count) {
  constexpr const char* where = "kvc_cache_attend";
  return guarded(where, [&] {
    require(cache, where, "cache");
    const auto q = floats(queries, queries_count, where, "queries");
    if (out == nullptr && out_count != 0) kvc::fail(where, "out is NULL but its count is {}", out_count);
    const std::span<float> o(out, out_count);
    kvc::runtime::check_attend(*cache->cache, layer, q, o);
    cache->cache->attend(layer, q, o);
    return KVC_OK;
  });
}

kvc_status kvc_cache_compress_prompt(kvc_cache* cache) {
  constexpr const char* where = "kvc_cache_compress_prompt";
  return guarded(where, [&] {
    require(cache, where, "cache");
    cache->cache->compress_prompt();
    return KVC_OK;
  });
}

kvc_status kvc_cache_clear(kvc_cache* cache) {
  constexpr const char* where = "kvc_cache_clear";
  return guarded(where, [&] {
    require(cache, where, "cache");
    cache->cache->clear();
    return KVC_OK;
  });
}

kvc_status kvc_cache_size(const kvc_cache* cache, size_t layer, size_t kv_head, size_t* size) {
  constexpr const char* where = "kvc_cache_size";
  return guarded(where, [&] {
    require(cache, where, "cache");
    require(size, where, "size");
    *size = cache->cache->size(layer, kv_head);  // throws kvc::Error for a layer or head out of range
    return KVC_OK;
  });
}

kvc_status kvc_cache_positions(const kvc_cache* cache, size_t layer, size_t kv_head, int32_t* buffer,
                               size_t capacity, size_t* count) {
  constexpr const char* where = "kvc_cache_positions";
  return guarded(where, [&] {
    require(cache, where, "cache");
    require(count, where, "count");
    if (buffer == nullptr && capacity != 0) kvc::fail(where, "buffer is NULL but capacity is {}", capacity);
    const std::span<const std::int32_t> kept = cache->cache->positions(layer, kv_head);
    *count = kept.size();
    if (capacity < kept.size()) {
      std::snprintf(last_message, message_capacity, "%s: %zu positions, the buffer holds %zu", where, kept.size(),
                    capacity);
      return KVC_ERROR_BUFFER_TOO_SMALL;
    }
    std::copy(kept.begin(), kept.end(), buffer);
    return KVC_OK;
  });
}

kvc_status kvc_cache_tokens(const kvc_cache* cache, size_t* tokens) {
  constexpr const char* where = "kvc_cache_tokens";
  return guarded(where, [&] {
    require(cache, where, "cache");
    require(tokens, where, "tokens");
    *tokens = cache->cache->tokens();
    return KVC_OK;
  });
}

kvc_status kvc_cache_memory_bytes(const kvc_cache* cache, size_t* bytes) {
  constexpr const char* where = "kvc_cache_memory_bytes";
  return guarded(where, [&] {
    require(cache, where, "cache");
    require(bytes, where, "bytes");
    *bytes = cache->cache->memory_bytes();
    return KVC_OK;
  });
}

}  // extern "C"
