#pragma once
// Minimal policies for testing the container itself, independent of any paper's policy.
#include "kvc/kvc.hpp"

#include <numeric>
#include <random>
#include <vector>

namespace kvc::testing {

// Keeps the most recent `budget` tokens.
struct KeepRecent {
  using family = kvc::family::selection;
  template <class P>
  std::size_t select(const HeadRef<P>& head, std::span<std::uint32_t> keep) const {
    const std::size_t n = head.size(), b = head.budget();
    for (std::size_t j = 0; j < b; ++j) keep[j] = static_cast<std::uint32_t>(n - b + j);
    return b;
  }
};

// Head i (layer-major) gets budget `average - spread + 2 * spread * i / (heads - 1)`: ragged sizes
// with the total preserved.
struct Ragged {
  using family = kvc::family::budget;
  std::size_t spread = 2;
  void allocate(const BudgetContext& c, std::span<std::size_t> budgets) const {
    for (std::size_t i = 0; i < budgets.size(); ++i)
      budgets[i] = c.average - spread + (i % 2 == 0 ? 0 : 2 * spread);
    if (budgets.size() % 2 == 1) budgets.back() = c.average;
  }
};

// Records the weights it observes; keeps the most recent tokens.
struct Recorder {
  using family = kvc::family::selection;
  std::vector<std::vector<float>> seen;
  void on_attend(const HeadRef<Recorder>&, std::span<const float> w) { seen.emplace_back(w.begin(), w.end()); }
  void reset() { seen.clear(); }
  std::size_t select(const HeadRef<Recorder>& head, std::span<std::uint32_t> keep) const {
    return KeepRecent{}.select(head, keep);
  }
};

// Sums every weight it observes (allocation-free); keeps the most recent tokens.
struct WeightSum {
  using family = kvc::family::selection;
  double total = 0;
  void on_attend(const HeadRef<WeightSum>&, std::span<const float> w) noexcept {
    for (float x : w) total += x;
  }
  std::size_t select(const HeadRef<WeightSum>& head, std::span<std::uint32_t> keep) const {
    return KeepRecent{}.select(head, keep);
  }
};

// Breaks the selection contract: indices out of order.
struct Unsorted {
  using family = kvc::family::selection;
  std::size_t select(const HeadRef<Unsorted>& head, std::span<std::uint32_t> keep) const {
    for (std::size_t j = 0; j < head.budget(); ++j) keep[j] = static_cast<std::uint32_t>(head.budget() - 1 - j);
    return head.budget();
  }
};

// Any fixed row formats.
struct Formats {
  using family = kvc::family::quantization;
  kernels::RowFormat key{kernels::Dtype::q8, 8};
  kernels::RowFormat value{kernels::Dtype::q8, 8};
  kernels::RowFormat key_format() const { return key; }
  kernels::RowFormat value_format() const { return value; }
};

inline std::vector<float> random_vector(std::size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

}  // namespace kvc::testing
