#include "kvc_engine/protocols.hpp"

#include "kvc/core/error.hpp"
#include "kvc/runtime/registry.hpp"
#include "kvc_engine/corpus.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace kvc::engine {
namespace {

constexpr std::string_view where = "kvc-eval";

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The registry's parameters that count tokens (ParamInfo has no such flag yet). Others that are
// integers (a quantizer's group, a rank) are not sizes of the context.
bool counts_tokens(const runtime::ParamInfo& p) {
  return p.integer && (p.key == "budget" || p.key == "sinks" || p.key == "recent" || p.key == "window");
}

const runtime::ParamInfo* find_param(std::string_view component, std::string_view key) {
  for (const runtime::ComponentInfo& c : runtime::registered_components())
    if (c.name == component)
      for (const runtime::ParamInfo& p : c.params)
        if (p.key == key) return &p;
  return nullptr;
}

// One "key=value" item of component `name`, with a trailing '%' resolved against `context`.
std::string resolve_param(std::string_view stack, std::string_view name, std::string_view item, std::size_t context) {
  item = trim(item);
  name = trim(name);
  const std::size_t eq = item.find('=');
  if (eq == std::string_view::npos || !item.ends_with('%')) return std::string(item);
  const std::string_view key = trim(item.substr(0, eq)), value = trim(item.substr(eq + 1, item.size() - eq - 2));
  const runtime::ParamInfo* info = find_param(name, key);
  if (!info)
    fail(where, "'{}': '{}' has no token-count parameter '{}' to give as a share of the context", stack, name, key);
  if (!counts_tokens(*info))
    fail(where, "'{}': '{}' of '{}' is not a token count, so it cannot be a share of the context ('{}')", stack, key,
         name, item);
  double percent = 0;
  const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), percent);
  if (value.empty() || ec != std::errc{} || ptr != value.data() + value.size() || !(percent > 0 && percent <= 100))
    fail(where, "'{}': '{}' must be a percentage in (0, 100], e.g. {}=12.5%", stack, item, key);
  const double tokens = std::max(1.0, std::round(percent / 100.0 * double(context)));
  return fmt::format("{}={}", key, std::size_t(tokens));
}

}  // namespace

std::string_view protocol_name(Protocol p) noexcept {
  switch (p) {
    case Protocol::decode: return "decode";
    case Protocol::context: return "context";
    case Protocol::passkey: return "passkey";
  }
  return "decode";
}

Protocol parse_protocol(std::string_view name) {
  for (const Protocol p : {Protocol::decode, Protocol::context, Protocol::passkey})
    if (protocol_name(p) == name) return p;
  fail(where, "unknown protocol '{}'; valid: decode, context, passkey", name);
}

std::string resolve_context_shares(std::string_view stack, std::size_t context) {
  if (stack.find('%') == std::string_view::npos) return std::string(stack);
  std::string out;
  std::size_t start = 0;
  while (start <= stack.size()) {
    std::size_t end = stack.find('+', start);
    if (end == std::string_view::npos) end = stack.size();
    const std::string_view part = stack.substr(start, end - start);
    const std::size_t colon = part.find(':');
    out += part.substr(0, colon == std::string_view::npos ? part.size() : colon + 1);
    if (colon != std::string_view::npos) {
      const std::string_view name = part.substr(0, colon), params = part.substr(colon + 1);
      std::size_t p = 0;
      while (p <= params.size()) {
        std::size_t comma = params.find(',', p);
        if (comma == std::string_view::npos) comma = params.size();
        out += resolve_param(stack, name, params.substr(p, comma - p), context);
        if (comma < params.size()) out += ',';
        p = comma + 1;
      }
    }
    if (end < stack.size()) out += '+';
    start = end + 1;
  }
  return out;
}

std::string read_texts(const std::vector<std::filesystem::path>& paths) {
  if (paths.empty()) fail(where, "no evaluation text given");
  std::string text;
  for (const auto& path : paths) {
    if (!text.empty()) text += "\n\n";
    text += read_text_file(path);
  }
  if (text.size() > max_text_bytes)
    fail(where, "the texts together are larger than the {} MiB limit for an evaluation text", max_text_bytes >> 20);
  return text;
}

}  // namespace kvc::engine
