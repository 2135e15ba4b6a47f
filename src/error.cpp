#include "kvc/core/error.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace kvc {
namespace {

void print_to_stderr(const char* message) noexcept { std::fputs(message, stderr); }

std::atomic<ContractHandler> g_handler{&print_to_stderr};

}  // namespace

ContractHandler set_contract_handler(ContractHandler handler) noexcept {
  return g_handler.exchange(handler ? handler : &print_to_stderr);
}

void contract_violation(const char* condition, const char* message, std::source_location where) noexcept {
  char text[1024];
  std::snprintf(text, sizeof text, "kvcompress contract violation at %s:%u in %s: %s (%s)\n", where.file_name(),
                static_cast<unsigned>(where.line()), where.function_name(), message, condition);
  g_handler.load()(text);
  std::abort();
}

}  // namespace kvc
