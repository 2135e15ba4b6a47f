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

void contract_violation(const char* condition, const char* message, const char* file, unsigned line) noexcept {
  char text[1024];
  std::snprintf(text, sizeof text, "kvcompress contract violation at %s:%u: %s (%s)\n", file, line, message, condition);
  g_handler.load()(text);
  std::abort();
}

}  // namespace kvc
