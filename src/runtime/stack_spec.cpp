#include "kvc/runtime/stack_spec.hpp"

#include "kvc/core/error.hpp"

#include <cctype>
#include <charconv>
#include <cmath>

namespace kvc::runtime {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool is_identifier(std::string_view s) {
  if (s.empty() || !std::isalpha(static_cast<unsigned char>(s.front()))) return false;
  for (const char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  return true;
}

}  // namespace

StackSpec parse_stack(std::string_view text) {
  constexpr std::string_view where = "kvc stack spec";
  StackSpec spec{std::string(text), {}};
  if (trim(text).empty()) fail(where, "empty stack; write e.g. 'full' or 'h2o:budget=64+int4'");
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find('+', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view part = trim(text.substr(start, end - start));
    if (part.empty())
      fail(where, "'{}': empty component at offset {} (two '+' in a row, or a '+' at an end?)", text, start);
    SpecComponent component;
    component.offset = start;
    const std::size_t colon = part.find(':');
    const std::string_view name = trim(part.substr(0, colon));
    if (!is_identifier(name))
      fail(where, "'{}': '{}' is not a policy name (letters, digits, '_' or '-', starting with a letter)",
           text, name);
    component.name = std::string(name);
    if (colon != std::string_view::npos) {
      std::string_view params = part.substr(colon + 1);
      if (trim(params).empty())
        fail(where, "'{}': '{}' has a ':' but no parameters after it (write {}:key=value)", text, part,
             name);
      std::size_t p = 0;
      while (p <= params.size()) {
        std::size_t comma = params.find(',', p);
        if (comma == std::string_view::npos) comma = params.size();
        const std::string_view item = trim(params.substr(p, comma - p));
        const std::size_t eq = item.find('=');
        if (item.empty() || eq == std::string_view::npos)
          fail(where, "'{}': parameter '{}' of '{}' must be written key=value", text, item, name);
        const std::string_view key = trim(item.substr(0, eq));
        const std::string_view value = trim(item.substr(eq + 1));
        if (!is_identifier(key)) fail(where, "'{}': '{}' is not a parameter name (in '{}')", text, key, item);
        double number = 0;
        const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), number);
        if (value.empty() || ec != std::errc{} || ptr != value.data() + value.size() || !std::isfinite(number)) {
          // '+' separates components, so "budget=+5" or "budget=1e+5" arrives cut at the '+'.
          if (comma == params.size() && end < text.size())
            fail(where, "'{}': value of parameter '{}' of '{}' is cut at the '+' at offset {}: '+' separates "
                 "components, so numbers are written without it (budget=5, 1e5)", text, key, name, end);
          if (value.empty()) fail(where, "'{}': parameter '{}' of '{}' has no value after '='", text, key, name);
          fail(where, "'{}': value '{}' of parameter '{}' of '{}' is not a number", text, value, key, name);
        }
        for (const SpecParam& seen : component.params)
          if (seen.key == key) fail(where, "'{}': parameter '{}' of '{}' is given twice", text, key, name);
        component.params.push_back(SpecParam{std::string(key), number, std::string(value)});
        p = comma + 1;
      }
    }
    spec.components.push_back(std::move(component));
    start = end + 1;
  }
  return spec;
}

}  // namespace kvc::runtime
