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

KVC_INSTANTIATE_FOR_EVERY_ISA(SoftmaxTest);

}  // namespace
}  // namespace kvc::kernels::testing
