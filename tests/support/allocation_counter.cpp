#include "support/allocation_counter.hpp"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<std::size_t> g_allocations{0};
// Allocations left before the injected failure; negative when disarmed.
std::atomic<long long> g_fail_countdown{-1};
std::atomic<bool> g_failed{false};

// Counts an allocation; true when it is the one to fail.
bool count_and_fail() noexcept {
  ++g_allocations;
  long long left = g_fail_countdown.load();
  while (left >= 0 && !g_fail_countdown.compare_exchange_weak(left, left - 1)) {
  }
  if (left != 0) return false;
  g_failed = true;
  return true;
}
}  // namespace

std::size_t kvc::testing::allocation_count() noexcept { return g_allocations.load(); }
void kvc::testing::fail_allocation(std::size_t n) noexcept {
  g_failed = false;
  g_fail_countdown = static_cast<long long>(n);
}
void kvc::testing::disarm_allocation_failure() noexcept { g_fail_countdown = -1; }
bool kvc::testing::failed_allocation() noexcept { return g_failed.load(); }

// GCC cannot see that every replaced operator pairs malloc/aligned_alloc with free.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t n) {
  if (count_and_fail()) throw std::bad_alloc();
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a) {
  if (count_and_fail()) throw std::bad_alloc();
  const auto align = static_cast<std::size_t>(a);
  if (void* p = std::aligned_alloc(align, (n + align - 1) / align * align)) return p;
  throw std::bad_alloc();
}
// The nothrow forms too: libstdc++'s call the forms above, but AddressSanitizer replaces them with
// its own, whose blocks the deletes here would free with the wrong deallocator
// (std::stable_sort's temporary buffer is one).
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  if (count_and_fail()) return nullptr;
  return std::malloc(n ? n : 1);
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  if (count_and_fail()) return nullptr;
  const auto align = static_cast<std::size_t>(a);
  return std::aligned_alloc(align, (n + align - 1) / align * align);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
