// TOVA through a real cache against its definition written out here: at every decoding step the
// token with the lowest weight of the current query (GQA group averaged) leaves once the head is
// over budget; after a prompt the budget tokens the last prompt query attends to most remain.
#include "kvc/kvc.hpp"
#include "kvc/select/tova.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

namespace kvc {
namespace {

constexpr std::size_t kDim = 8;
constexpr std::size_t kGroup = 2;

std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = dist(gen);
  return x;
}

// Weights of query q ([kGroup][kDim]) over the tokens `held` of keys ([token][kDim]), group mean.
std::vector<double> weights(const float* q, const std::vector<float>& keys, const std::vector<std::int32_t>& held) {
  std::vector<double> w(held.size(), 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(kDim));
  for (std::size_t g = 0; g < kGroup; ++g) {
    std::vector<double> logit(held.size());
    for (std::size_t j = 0; j < held.size(); ++j) {
      double dot = 0.0;
      for (std::size_t d = 0; d < kDim; ++d) dot += double{q[g * kDim + d]} * double{keys[static_cast<std::size_t>(held[j]) * kDim + d]};
      logit[j] = dot * scale;
    }
    const double m = *std::max_element(logit.begin(), logit.end());
    double sum = 0.0;
    for (double& l : logit) sum += (l = std::exp(l - m));
    for (std::size_t j = 0; j < held.size(); ++j) w[j] += logit[j] / sum / kGroup;
  }
  return w;
}

std::vector<std::int32_t> positions_of(std::span<const std::int32_t> p) { return {p.begin(), p.end()}; }

template <class L>
class TOVALayouts : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(TOVALayouts, Layouts);

TYPED_TEST(TOVALayouts, DecodeDropsTheLowestWeightOfTheCurrentQuery) {
  const std::size_t steps = 40, budget = 6;
  const auto keys = random_floats(steps * kDim, 1);
  const auto queries = random_floats(steps * kGroup * kDim, 2);
  KVCache<TypeParam, select::TOVA> cache(Shape{1, kGroup, 1, kDim}, {.budget = budget});
  std::vector<std::int32_t> held;
  std::vector<float> out(kGroup * kDim);
  for (std::size_t t = 0; t < steps; ++t) {
    const std::span<const float> k(keys.data() + t * kDim, kDim);
    ASSERT_EQ(cache.append(0, static_cast<std::int32_t>(t), k, k), Status::ok);
    cache.attend(0, std::span(queries).subspan(t * kGroup * kDim, kGroup * kDim), out);
    held.push_back(static_cast<std::int32_t>(t));
    if (held.size() > budget) {
      const auto w = weights(queries.data() + t * kGroup * kDim, keys, held);
      held.erase(held.begin() + (std::min_element(w.begin(), w.end()) - w.begin()));
    }
    ASSERT_EQ(positions_of(cache.positions(0, 0)), held) << "step " << t;
  }
}

TEST(TOVA, PromptKeepsWhatItsLastQueryAttendsToMost) {
  const std::size_t n = 30, budget = 8;
  const auto keys = random_floats(n * kDim, 3);
  const auto queries = random_floats(n * kGroup * kDim, 4);
  KVCache<ContiguousLayout, select::TOVA> cache(Shape{1, kGroup, 1, kDim}, {.budget = budget});
  std::vector<float> out(queries.size());
  cache.prefill(0, 0, keys, keys);
  cache.attend(0, queries, out);
  std::vector<std::int32_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  const auto w = weights(queries.data() + (n - 1) * kGroup * kDim, keys, all);
  std::vector<std::int32_t> order = all;
  std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) { return w[static_cast<std::size_t>(a)] > w[static_cast<std::size_t>(b)]; });
  order.resize(budget);
  std::sort(order.begin(), order.end());
  EXPECT_EQ(positions_of(cache.positions(0, 0)), order);
}

}  // namespace
}  // namespace kvc
