#include "parallel.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdlib>

namespace kvc::engine::detail {
namespace {

// Pause rounds (about 50 us) before sleeping: the forward pass issues a product every few
// microseconds, and waking a sleeping thread costs tens of them; longer spins steal the core
// from other processes on a busy machine.
constexpr int spin_rounds = 2000;

// One round of a spin: the CPU's hint that this is a wait loop (x86 pause, Arm yield), which
// frees the core's resources for the thread beside it; other architectures spin plainly.
inline void spin_pause() noexcept {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

std::size_t configured_threads() {
  if (const char* env = std::getenv("KVC_ENGINE_THREADS"); env && *env) {
    const long n = std::strtol(env, nullptr, 10);
    if (n >= 1 && n <= 256) return std::size_t(n);
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

ThreadPool& ThreadPool::instance() {
  static ThreadPool pool(configured_threads());
  return pool;
}

ThreadPool::ThreadPool(std::size_t threads) {
  for (std::size_t i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  ticket_.fetch_add(std::uint64_t{1} << 32);
  ticket_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::drain(std::uint64_t generation) noexcept {
  std::uint64_t t = ticket_.load(std::memory_order_acquire);
  while ((t >> 32) == generation) {
    const std::size_t index = std::size_t(t & 0xFFFFFFFFu);
    if (index >= count_.load(std::memory_order_relaxed)) return;
    if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel)) continue;
    task_.load(std::memory_order_relaxed)(context_.load(std::memory_order_relaxed), index);
    done_.fetch_add(1, std::memory_order_release);
    done_.notify_one();
    t = ticket_.load(std::memory_order_acquire);
  }
}

void ThreadPool::work() noexcept {
  std::uint64_t seen = 0;
  while (true) {
    std::uint64_t t;
    for (int spins = 0; ((t = ticket_.load(std::memory_order_acquire)) >> 32) == seen; ++spins) {
      if (spins < spin_rounds)
        spin_pause();
      else
        ticket_.wait(t);
    }
    seen = t >> 32;
    if (stop_.load()) return;
    drain(seen);
  }
}

void ThreadPool::run(std::size_t count, Task task, void* context) noexcept {
  std::unique_lock lock(busy_, std::try_to_lock);
  if (!lock || workers_.empty() || count == 1) {
    for (std::size_t i = 0; i < count; ++i) task(context, i);
    return;
  }
  count_.store(count, std::memory_order_relaxed);
  task_.store(task, std::memory_order_relaxed);
  context_.store(context, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  const std::uint64_t generation = (ticket_.load() >> 32) + 1;
  ticket_.store(generation << 32, std::memory_order_release);  // publishes the fields above
  ticket_.notify_all();
  drain(generation);
  // Only tasks a worker has claimed are left; wait for those.
  for (int spins = 0;; ++spins) {
    const std::size_t d = done_.load(std::memory_order_acquire);
    if (d >= count) break;
    if (spins < spin_rounds)
      spin_pause();
    else
      done_.wait(d);
  }
}

}  // namespace kvc::engine::detail
