#pragma once
// The text form of a policy stack, as kvc-eval takes it on the command line:
//
//   stack     := component ('+' component)*
//   component := name [':' param (',' param)*]
//   param     := key '=' number
//
// e.g. "full", "streaming:sinks=4,recent=60", "pyramid:budget=64+h2o", "h2o:budget=64+int4:group=8".
// parse_stack() checks the syntax only; the registry (registry.hpp) checks names and parameters.
#include <string>
#include <string_view>
#include <vector>

namespace kvc::runtime {

struct SpecParam {
  std::string key;
  double value = 0;
  std::string text;  // as written, for messages
};

struct SpecComponent {
  std::string name;
  std::vector<SpecParam> params;
  std::size_t offset = 0;  // where the component starts in the stack text, for messages
};

struct StackSpec {
  std::string text;
  std::vector<SpecComponent> components;
};

// Throws kvc::Error quoting the stack and the offending token.
[[nodiscard]] StackSpec parse_stack(std::string_view text);

}  // namespace kvc::runtime
