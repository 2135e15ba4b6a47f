#pragma once
// The stack registry: maps the components of a stack spec ("h2o:budget=64+int4:group=8") to
// policy objects and builds a kvc::KVCache<ContiguousLayout, ...> behind an AnyCache. Each
// family's policy is wrapped in one run-time policy of that family (registry.cpp), so the cache
// types do not multiply with the registered policies; adding a policy is one registration there.
#include "kvc/runtime/any_cache.hpp"
#include "kvc/runtime/stack_spec.hpp"

#include <memory>
#include <string>
#include <vector>

namespace kvc::data {
class KvCapture;
}

namespace kvc::runtime {

struct ParamInfo {
  std::string key;
  double default_value = 0;
  double min = 0, max = 0;
  bool integer = true;
  std::string help;
};

struct ComponentInfo {
  std::string name;
  std::string family;  // "budget", "selection", "merging", "quantization", "lowrank", "storage", "none"
  std::string help;
  std::vector<ParamInfo> params;
};

[[nodiscard]] const std::vector<ComponentInfo>& registered_components();
// One line per component: name, family, parameters with defaults, help. For --help and errors.
[[nodiscard]] std::string describe_components();

// Checks names, parameters, one component per family and the families' dependencies
// (a budget or merging policy needs a selection). Throws kvc::Error saying which token is wrong
// and listing what is valid.
void check_stack(const StackSpec& spec);

// Builds the cache of a stack for sequences of at most `context` tokens (the full cache
// reserves that much, so memory_bytes() is not inflated by growth slack). Low-rank components
// fit their bases on `calibration` (keys and values of held-out text), which they require.
[[nodiscard]] std::unique_ptr<AnyCache> make_cache(const StackSpec& spec, const Shape& shape, std::size_t context,
                                                   const data::KvCapture* calibration = nullptr);

}  // namespace kvc::runtime
