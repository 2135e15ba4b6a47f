// The published PyramidKV through a real cache with SnapKV: each layer's budget at
// compress_prompt() follows the reference's integer schedule for the prompt's length, with its
// two short-prompt rules (no compression below C, uniform C below 2 (C - w)) and its clamp.
#include "kvc/kvc.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace kvc {
namespace {

using ::testing::ElementsAre;
using Cache = KVCache<ContiguousLayout, budget::PyramidKVPrompt, select::SnapKV>;

std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = dist(gen);
  return x;
}

// Sizes of every layer's head 0 after a prompt of n tokens: C = 20, w = 4.
std::vector<std::size_t> sizes_after_prompt(std::size_t n, std::size_t beta) {
  const Shape shape{4, 2, 1, 8};
  Cache cache(shape, {.budget = 20}, budget::PyramidKVPrompt{.beta = beta, .window = 4},
              select::SnapKV{.window = 4, .kernel = 3});
  const auto keys = random_floats(n * 8, 1);
  const auto queries = random_floats(n * 16, 2);
  std::vector<float> out(queries.size());
  for (std::size_t l = 0; l < shape.layers; ++l) {
    cache.prefill(l, 0, keys, keys);
    cache.attend(l, queries, out);
  }
  cache.compress_prompt();
  std::vector<std::size_t> sizes;
  for (std::size_t l = 0; l < shape.layers; ++l) sizes.push_back(cache.size(l, 0));
  return sizes;
}

TEST(PyramidKVPrompt, ShortPromptsFollowTheReferencesRules) {
  EXPECT_THAT(sizes_after_prompt(10, 2), ElementsAre(10, 10, 10, 10)) << "n < C: not compressed";
  EXPECT_THAT(sizes_after_prompt(30, 2), ElementsAre(20, 20, 20, 20)) << "n < 2 (C - w) = 32: uniform C";
}

TEST(PyramidKVPrompt, LongPromptsGetThePyramid) {
  // min_num = 16 / 2 = 8, max_num = 32 - 8 = 24, steps = (24 - 8) / 3 = 5: 24, 19, 14, 9 plus w.
  EXPECT_THAT(sizes_after_prompt(100, 2), ElementsAre(28, 23, 18, 13));
}

TEST(PyramidKVPrompt, MaxNumIsClampedToThePrompt) {
  // beta 20: min_num = 0, max_num = 32 >= n - w = 30, so max_num = 30, min_num = 2,
  // steps = 28 / 3 = 9: 30, 21, 12, 3 plus w.
  EXPECT_THAT(sizes_after_prompt(34, 20), ElementsAre(34, 25, 16, 7));
}

TEST(PyramidKVPrompt, BadParametersThrow) {
  const Shape shape{4, 2, 1, 8};
  EXPECT_THROW(Cache(shape, {.budget = 4}, budget::PyramidKVPrompt{.window = 4}, select::SnapKV{.window = 4}), Error);
  EXPECT_THROW(Cache(shape, {.budget = 20}, budget::PyramidKVPrompt{.beta = 0, .window = 4}, select::SnapKV{.window = 4}),
               Error);
}

}  // namespace
}  // namespace kvc
