#pragma once
// PyramidKV: layer budgets that shrink from the bottom layer to the top one.
//
//   Zefan Cai, Yichi Zhang, Bofei Gao, Yuliang Liu, Tianyu Liu, Keming Lu, Wayne Xiong, Yue Dong,
//   Baobao Chang, Junjie Hu, Wen Xiao. "PyramidKV: Dynamic KV Cache Compression based on
//   Pyramidal Information Funneling". arXiv:2406.02069, 2024.
//   Reference code: github.com/Zefan-Cai/PyramidKV (later KVCache-Factory),
//   pyramidkv/pyramidkv_utils.py, PyramidKVCluster.update_kv.
//
// Attention is spread wide in the lower layers and funnels onto a few tokens in the upper ones,
// so lower layers get more tokens. With C = Options::budget (the average per head), w = window,
// L = layers, and the reference code's names:
//
//   base    = C - w                      tokens each layer selects beyond its window, on average
//   min_num = floor(base / beta)         the top layer's share
//   max_num = 2 * base - min_num         the bottom layer's share
//   layer l = max_num - l * (max_num - min_num) / (L - 1)   + w       (arithmetic sequence)
//
// so the top layer keeps floor((C - w) / beta) + w tokens, the bottom one about 2(C - w) + w, and
// the mean over layers is C. Every KV head of a layer gets the layer's budget.
//
// Where we differ from the reference, and why:
//  * The reference rounds the step down, steps = (max_num - min_num) // (L - 1), which can make
//    the layers' total exceed L * C (by up to (L - 1) L / 2 tokens); the container forbids that.
//    We round each layer's exact value down and hand the remainder (< L tokens) out one token
//    each from the bottom layer up, so the total is exactly L * C and budgets still decrease.
//  * The reference clamps max_num to the prompt length of each request; budgets here are fixed
//    when the cache is built, so a prompt shorter than a layer's budget is simply not compressed.
//  * Every layer keeps at least one token: if min_num + w = 0, min_num is raised to 1.
//  * One layer: every head gets C (the reference divides by L - 1 = 0).
//
// Defaults and where they come from: beta = 20 (PyramidKVCluster's default and the paper's
// setting); window = 8 (the observation window the reference's run_longbench.py passes,
// window_sizes = 8, for SnapKV, PyramidKV and H2O). The window is the recent tokens every layer
// keeps on top of its share; here it is only the floor under every layer's budget — which tokens
// fill the budget is the selection policy's business. Requires C > w (the reference asserts
// max_capacity_prompt - window_size > 0) and beta >= 1.
//
// Cost: O(layers * kv_heads) once, when the cache is built; no state.
#include "kvc/concepts/budget.hpp"
#include "kvc/concepts/family.hpp"
#include "kvc/core/error.hpp"

#include <cstddef>
#include <span>

namespace kvc::budget {

namespace detail {
// The conditions both pyramids share: the reference asserts budget - window > 0, and the top
// layer's share (budget - window) / beta needs beta >= 1.
inline void check_pyramid(const char* where, std::size_t beta, std::size_t window, const BudgetContext& c,
                          std::size_t slots) {
  if (beta == 0) fail(where, "beta must be >= 1 (the top layer keeps (budget - window) / beta tokens)");
  if (c.average <= window)
    fail(where, "the average budget {} must exceed the window {} (every layer keeps the window plus its share)",
         c.average, window);
  if (slots != c.shape.head_count())
    fail(where, "{} budget slots for {} (layer, KV head) pairs", slots, c.shape.head_count());
}
}  // namespace detail

struct PyramidKV {
  using family = kvc::family::budget;

  // Steepness: the top layer's share is (C - window) / beta. 1 makes every layer equal.
  std::size_t beta = 20;
  // Tokens every layer keeps on top of its pyramid share (the reference's window_size).
  std::size_t window = 8;

  void allocate(const BudgetContext& c, std::span<std::size_t> budgets) const {
    constexpr const char* where = "kvc::budget::PyramidKV";
    detail::check_pyramid(where, beta, window, c, budgets.size());
    const std::size_t layers = c.shape.layers;
    const std::size_t base = c.average - window;
    std::size_t min_num = base / beta;
    if (min_num + window == 0) min_num = 1;
    const std::size_t max_num = 2 * base - min_num;

    std::size_t given = 0;
    for (std::size_t l = 0; l < layers; ++l) {
      const std::size_t share = layers == 1 ? base : (max_num * (layers - 1) - l * (max_num - min_num)) / (layers - 1);
      for (std::size_t h = 0; h < c.shape.kv_heads; ++h) budgets[c.shape.head_index(l, h)] = share;
      given += share;
    }
    // The floors lose less than one token per layer: give it back from the bottom layer up.
    for (std::size_t l = 0; given < layers * base; ++l, ++given)
      for (std::size_t h = 0; h < c.shape.kv_heads; ++h) ++budgets[c.shape.head_index(l, h)];
    for (auto& b : budgets) b += window;

    if (c.capacity > 0 && budgets[0] > c.capacity)
      fail(where, "the bottom layer's budget {} exceeds the capacity {} (average {}, beta {}, window {})", budgets[0],
           c.capacity, c.average, beta, window);
  }
};

}  // namespace kvc::budget
