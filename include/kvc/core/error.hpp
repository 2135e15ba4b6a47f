#pragma once
// Two kinds of failure, kept apart on purpose:
//  * configuration and I/O validate their input and throw kvc::Error;
//  * hot paths (append, attend, kernels) are noexcept and check their preconditions with
//    KVC_CONTRACT, which reports the broken contract and aborts: a hot path that throws or
//    silently continues on a wrong shape would corrupt the cache.
#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace kvc {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws kvc::Error with "where: message".
template <class... Args>
[[noreturn]] void fail(std::string_view where, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format("{}: {}", where, fmt::format(format, std::forward<Args>(args)...)));
}

// What a hot-path operation that needs memory reports instead of throwing: on out_of_memory the
// operation did nothing and the cache is as it was, so the caller may free memory (compress,
// clear another sequence, trim a shared BlockPool) and retry.
enum class Status { ok, out_of_memory };

// Called with a description of a broken hot-path precondition. Must not return; if it does,
// the library aborts anyway. The default prints the message to stderr.
using ContractHandler = void (*)(const char* message) noexcept;
ContractHandler set_contract_handler(ContractHandler handler) noexcept;

// file/line rather than std::source_location: clang 14 with libstdc++ 12 lacks the latter.
[[noreturn]] void contract_violation(const char* condition, const char* message, const char* file,
                                     unsigned line) noexcept;

}  // namespace kvc

#define KVC_CONTRACT(condition, message)                                                   \
  do {                                                                                     \
    if (!(condition)) [[unlikely]]                                                         \
      ::kvc::contract_violation(#condition, message, __FILE__, __LINE__);                 \
  } while (false)
