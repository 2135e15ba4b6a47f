#pragma once
// A fixed pool of worker threads for the engine's matrix products: one per core (or
// $KVC_ENGINE_THREADS), started on first use. run() hands out task indices and returns when all
// are done; it neither allocates nor throws, so the forward pass stays a hot path.
//
// The caller works too and never waits for a worker that has not started: tasks are claimed
// with a ticket that carries the run's generation, so a worker that wakes late (on a loaded
// machine) finds nothing left to claim instead of holding the caller up.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace kvc::engine::detail {

class ThreadPool {
 public:
  using Task = void (*)(void* context, std::size_t index) noexcept;

  static ThreadPool& instance();
  explicit ThreadPool(std::size_t threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads that run tasks, the caller included.
  [[nodiscard]] std::size_t size() const noexcept { return workers_.size() + 1; }
  // Runs task(context, i) for every i < count; the caller takes part. A call made while another
  // thread is using the pool runs serially on the caller.
  void run(std::size_t count, Task task, void* context) noexcept;

 private:
  void work() noexcept;
  void drain(std::uint64_t generation) noexcept;

  std::vector<std::thread> workers_;
  std::mutex busy_;
  // (generation << 32) | next task index.
  std::atomic<std::uint64_t> ticket_{0};
  std::atomic<std::size_t> done_{0};
  std::atomic<std::size_t> count_{0};
  std::atomic<Task> task_{nullptr};
  std::atomic<void*> context_{nullptr};
  std::atomic<bool> stop_{false};
};

}  // namespace kvc::engine::detail
