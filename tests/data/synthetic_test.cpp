// The synthetic cache generator: deterministic, and with the statistics it promises.
#include "kvc/data/capture.hpp"
#include "kvc/data/synthetic.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace kvc::test {
namespace {

using namespace kvc::data;

// Exact softmax weights of one query over every key of its head, up to its position.
std::vector<double> weights(const SyntheticCache& c, std::size_t query, std::size_t query_head) {
  const std::size_t h = query_head / c.shape.group_size();
  const auto q = c.query(query, query_head);
  const std::size_t visible = std::size_t(c.query_positions[query]) + 1;
  std::vector<double> w(visible);
  const double scale = 1.0 / std::sqrt(double(c.shape.head_dim));
  for (std::size_t t = 0; t < visible; ++t) {
    const auto k = c.key(t, h);
    double dot = 0;
    for (std::size_t d = 0; d < q.size(); ++d) dot += double(q[d]) * double(k[d]);
    w[t] = dot * scale;
  }
  const double m = *std::max_element(w.begin(), w.end());
  double sum = 0;
  for (double& x : w) sum += (x = std::exp(x - m));
  for (double& x : w) x /= sum;
  return w;
}

SyntheticSpec spec(std::size_t head_dim, std::size_t tokens) {
  SyntheticSpec s;
  s.tokens = tokens;
  s.head_dim = head_dim;
  s.kv_heads = 2;
  s.query_heads = 4;
  s.queries = 32;
  s.seed = 11;
  return s;
}

TEST(Synthetic, IsDeterministicForASeed) {
  const auto a = make_synthetic_cache(spec(64, 2048));
  const auto b = make_synthetic_cache(spec(64, 2048));
  EXPECT_EQ(a.keys, b.keys);
  EXPECT_EQ(a.values, b.values);
  EXPECT_EQ(a.queries, b.queries);
  auto other = spec(64, 2048);
  other.seed = 12;
  EXPECT_NE(make_synthetic_cache(other).keys, a.keys);
}

TEST(Synthetic, HasTheRequestedShape) {
  const auto c = make_synthetic_cache(spec(128, 32768));
  EXPECT_EQ(c.shape, (Shape{1, 4, 2, 128}));
  EXPECT_EQ(c.keys.size(), 32768u * 2 * 128);
  EXPECT_EQ(c.values.size(), c.keys.size());
  EXPECT_EQ(c.queries.size(), 32u * 4 * 128);
  EXPECT_EQ(c.query_positions.back(), 32767);
  for (const float x : c.keys) ASSERT_TRUE(std::isfinite(x));
}

TEST(Synthetic, KeysHaveOneOutlierChannelPerHead) {
  auto s = spec(128, 8192);
  s.outlier_ratio = 6.0f;
  const auto c = make_synthetic_cache(s);
  // Measured the way docs/evaluation.md measures the real model (kvc::data::key_channel_ratios).
  KvCapture capture(c.shape);
  for (std::size_t t = 0; t < c.tokens; ++t) {
    std::vector<float> k(c.keys.begin() + std::ptrdiff_t(t * 2 * 128), c.keys.begin() + std::ptrdiff_t((t + 1) * 2 * 128));
    capture.append_kv(0, k, k);
  }
  for (std::size_t h = 0; h < 2; ++h) {
    const auto r = key_channel_ratios(capture, 0, h);
    const auto top = std::max_element(r.begin(), r.end());
    EXPECT_EQ(std::size_t(top - r.begin()), c.outlier_channel[h]);
    EXPECT_NEAR(*top, 6.0, 0.6);
    std::vector<double> rest(r);
    rest.erase(rest.begin() + (top - r.begin()));
    EXPECT_LT(*std::max_element(rest.begin(), rest.end()), 3.0) << "only one outlier channel";
  }
}

TEST(Synthetic, AttentionIsMostlyLocalWithASinkAndFarRetrieval) {
  for (const std::size_t head_dim : {64u, 128u}) {
    const auto c = make_synthetic_cache(spec(head_dim, 16384));
    double local = 0, sink = 0;
    std::size_t far_found = 0, far_total = 0;
    double far_mass = 0;
    for (std::size_t i = 0; i + 1 < c.query_positions.size(); ++i)  // the last query is the needle's
      for (std::size_t g = 0; g < 4; ++g) {
        const auto w = weights(c, i, g);
        const std::size_t p = std::size_t(c.query_positions[i]);
        for (std::size_t t = p >= 63 ? p - 63 : 0; t <= p; ++t) local += w[t];
        sink += w[0];
        if (c.far_target[i] >= 0) {
          ++far_total;
          const std::size_t far = std::size_t(c.far_target[i]);
          far_found += w[far] > 0.05 ? 1 : 0;
          far_mass += w[far];
        }
      }
    const double n = double((c.query_positions.size() - 1) * 4);
    EXPECT_GT(local / n, 0.5) << "head_dim " << head_dim << ": most mass on the last 64 tokens";
    EXPECT_GT(sink / n, 0.02) << "head_dim " << head_dim << ": position 0 is a sink";
    EXPECT_LT(sink / n, 0.5);
    ASSERT_GT(far_total, 0u);
    // Content retrieval competes with chance alignments of thousands of random keys, so not every
    // query finds its target; most must, with a large share of their mass.
    EXPECT_GE(4 * far_found, 3 * far_total) << "head_dim " << head_dim << ": far-retrieval queries find their target";
    EXPECT_GT(far_mass / double(far_total), 0.3) << "head_dim " << head_dim;
  }
}

TEST(Synthetic, TheLastQueryRetrievesTheNeedle) {
  const auto c = make_synthetic_cache(spec(128, 32768));
  ASSERT_GT(c.needle_position, 0);
  EXPECT_EQ(c.needle_position, 3276);
  for (std::size_t g = 0; g < 4; ++g) {
    const auto w = weights(c, c.needle_query, g);
    EXPECT_GT(w[std::size_t(c.needle_position)], 0.5) << "query head " << g;
  }
  // Other queries do not attend to it: evicting it early would go unnoticed until the end.
  const auto w = weights(c, 0, 0);
  EXPECT_LT(w[std::size_t(c.needle_position)], 0.01);
}

TEST(Synthetic, ValidatesTheSpec) {
  auto s = spec(64, 1024);
  s.head_dim = 10;
  EXPECT_THROW((void)make_synthetic_cache(s), Error);
  s = spec(64, 1024);
  s.query_heads = 3;
  EXPECT_THROW((void)make_synthetic_cache(s), Error);
  s = spec(64, 1024);
  s.queries = 0;
  EXPECT_THROW((void)make_synthetic_cache(s), Error);
}

}  // namespace
}  // namespace kvc::test
