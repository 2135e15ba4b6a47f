#pragma once
// PyramidKV as published: SnapKV's prompt compression under a pyramid of layer budgets computed
// from the prompt's length, with the reference's fallbacks for short prompts.
//
//   Zefan Cai, Yichi Zhang, Bofei Gao, Yuliang Liu, Tianyu Liu, Keming Lu, Wayne Xiong, Yue Dong,
//   Baobao Chang, Junjie Hu, Wen Xiao. "PyramidKV: Dynamic KV Cache Compression based on
//   Pyramidal Information Funneling". arXiv:2406.02069, 2024. Reference code:
//   github.com/Zefan-Cai/PyramidKV, pyramidkv/pyramidkv_utils.py, PyramidKVCluster.update_kv.
//
// Compose it with select::SnapKV (registry: `pyramidkv+snapkv:budget=128`) and call
// KVCache::compress_prompt(): this policy sets each layer's budget there, from the prompt's
// length n. With C = the average budget (Options::budget, or the ratio's), w = window, L = layers
// and the reference's names and integer arithmetic:
//
//   n <  C             nothing is compressed (every head's budget is C >= n)
//   n <  2 (C - w)     every layer keeps C: SnapKV with uniform budgets (the reference's fallback)
//   otherwise          min_num = (C - w) / beta,  max_num = 2 (C - w) - min_num,
//                      if max_num >= n - w: max_num = n - w, min_num = 2 (C - w) - max_num,
//                      steps = (max_num - min_num) / (L - 1),
//                      layer l keeps max_num - l * steps prompt tokens plus the window w.
//
// Unlike budget::PyramidKV (the pyramid of fixed budgets set when the cache is built, which any
// selection can use, e.g. `pyramid+h2o`), this follows the reference exactly, including its
// rounding: steps rounds down, so the layers may hold a little more than L * C in total.
// At construction (no prompt yet) every head gets C, which is what the cache reserves.
//
// Defaults: beta = 20 (the reference's and the paper's), window = 32 (SnapKV's default here; the
// reference's scripts pass 8 for LongBench): it must equal the SnapKV window, since a layer's
// budget is its prompt share plus that window. Requires C > w (the reference asserts it) and
// beta >= 1. One layer: steps has no meaning (L - 1 = 0); that layer keeps max_num + w.
//
// Cost: O(layers * kv_heads) per call; no state.
#include "kvc/budget/pyramid_kv.hpp"
#include "kvc/concepts/budget.hpp"
#include "kvc/concepts/family.hpp"
#include "kvc/core/error.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

namespace kvc::budget {

struct PyramidKVPrompt {
  using family = kvc::family::budget;

  std::size_t beta = 20;
  std::size_t window = 32;

  void allocate(const BudgetContext& c, std::span<std::size_t> budgets) const {
    detail::check_pyramid("kvc::budget::PyramidKVPrompt", beta, window, c, budgets.size());
    const auto C = static_cast<std::int64_t>(c.average), w = static_cast<std::int64_t>(window);
    const auto n = static_cast<std::int64_t>(c.prompt);
    for (auto& b : budgets) b = c.average;
    if (c.prompt == 0 || n < 2 * (C - w)) return;  // construction, no compression, or the uniform fallback
    std::int64_t min_num = (C - w) / static_cast<std::int64_t>(beta);
    std::int64_t max_num = 2 * (C - w) - min_num;
    if (max_num >= n - w) {
      max_num = n - w;
      min_num = 2 * (C - w) - max_num;
    }
    const auto layers = static_cast<std::int64_t>(c.shape.layers);
    const std::int64_t steps = layers > 1 ? (max_num - min_num) / (layers - 1) : 0;
    for (std::size_t l = 0; l < c.shape.layers; ++l) {
      const std::int64_t share = max_num - static_cast<std::int64_t>(l) * steps;
      for (std::size_t h = 0; h < c.shape.kv_heads; ++h)
        budgets[c.shape.head_index(l, h)] = static_cast<std::size_t>(share + w);
    }
  }
};

}  // namespace kvc::budget
