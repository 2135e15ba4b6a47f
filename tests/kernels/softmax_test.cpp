// Table::softmax_weights of every ISA against the reference (std::exp): each combine mode, every
// length up to a few vectors (tails), misaligned pointers, logits far below the max.
#include "kernels/isa_test_util.hpp"

#include <cmath>
#include <limits>

namespace kvc::kernels::testing {
namespace {

using SoftmaxTest = IsaTest;

TEST_P(SoftmaxTest, WeightsMatchTheReferenceWithinTwoUlp) {
  for (std::size_t n = 1; n <= 67; ++n) {
    std::vector<float> logits = gaussian(n, static_cast<unsigned>(n), 4.0f);
    logits[0] = -120.0f;  // exp underflows: both sides must give (nearly) zero
    float max = -std::numeric_limits<float>::infinity();
    for (float x : logits) max = std::max(max, x);
    const float scale = 0.37f;
    const std::vector<float> prior = gaussian(n, 99, 0.1f);
    for (Combine c : {Combine::assign, Combine::add, Combine::max}) {
      SCOPED_TRACE("n " + std::to_string(n) + " combine " + std::to_string(static_cast<int>(c)));
      Misaligned<float> in(n, 4), out(n, 8);
      std::vector<float> want(prior);
      for (std::size_t r = 0; r < n; ++r) in.data()[r] = logits[r], out.data()[r] = prior[r];
      ref::softmax_weights(logits.data(), n, max, scale, c, want.data());
      kernels().softmax_weights(in.data(), n, max, scale, c, out.data());
      for (std::size_t r = 0; r < n; ++r) {
        // 2 ulp of the weight, plus the rounding of the sum it joins.
        const float eps = std::numeric_limits<float>::epsilon();
        const float tol = 2.0f * eps * std::exp(logits[r] - max) * scale + eps * std::abs(want[r]) + 1e-37f;
        ASSERT_NEAR(out.data()[r], want[r], tol) << "row " << r;
      }
    }
  }
}

// A NaN logit (from a non-finite query) gives what the reference gives in every combine mode:
// NaN where it assigns or adds, the prior where std::max(prior, NaN) keeps it.
TEST_P(SoftmaxTest, NaNLogitsGiveWhatTheReferenceGives) {
  const std::size_t n = 37;
  std::vector<float> logits = gaussian(n, 5, 4.0f);
  float max = -std::numeric_limits<float>::infinity();
  for (float x : logits) max = std::max(max, x);
  logits[5] = logits[20] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> prior = gaussian(n, 6, 0.1f);
  for (Combine c : {Combine::assign, Combine::add, Combine::max}) {
    SCOPED_TRACE("combine " + std::to_string(static_cast<int>(c)));
    std::vector<float> want(prior), got(prior);
    ref::softmax_weights(logits.data(), n, max, 1.0f, c, want.data());
    kernels().softmax_weights(logits.data(), n, max, 1.0f, c, got.data());
    for (std::size_t r = 0; r < n; ++r) {
      ASSERT_EQ(std::isnan(got[r]), std::isnan(want[r])) << "row " << r << ": " << got[r] << " vs " << want[r];
      if (!std::isnan(want[r])) {
        ASSERT_NEAR(got[r], want[r], 1e-6f * std::abs(want[r]) + 1e-37f) << "row " << r;
      }
    }
    EXPECT_TRUE(c == Combine::max ? !std::isnan(want[5]) : std::isnan(want[5]));
  }
}

KVC_INSTANTIATE_FOR_EVERY_ISA(SoftmaxTest);

}  // namespace
}  // namespace kvc::kernels::testing
