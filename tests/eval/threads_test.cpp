// The evaluation on two threads (each with its own reference model state and a share of the
// stacks' caches, sharing the read-only model) gives exactly the numbers of one thread. The test
// command also runs this under ThreadSanitizer.
#include "engine/models.hpp"
#include "kvc/runtime/registry.hpp"
#include "kvc/runtime/stack_spec.hpp"
#include "kvc_engine/fidelity.hpp"

#include <gtest/gtest.h>

namespace kvc::engine {
namespace {

FidelityReport run(std::size_t threads) {
  const auto& model = test::bundle().model;
  const Windows corpus = make_windows(test::corpus_head(), 96, 4);
  const std::vector<std::string> stacks = {"full", "h2o:budget=24", "int4:group=8", "streaming:sinks=2,recent=20"};
  std::vector<std::unique_ptr<runtime::AnyCache>> caches;
  for (const auto& s : stacks)
    caches.push_back(runtime::make_cache(runtime::parse_stack(s), model.config().attention_shape(), 97, nullptr));
  return evaluate(model, corpus, std::move(caches), stacks, {}, threads);
}

TEST(EvaluationThreads, TwoThreadsGiveTheSameNumbersAsOne) {
  KVC_REQUIRE_MODELS();
  const FidelityReport one = run(1), two = run(2);
  EXPECT_EQ(one.reference_nll, two.reference_nll);
  ASSERT_EQ(one.stacks.size(), two.stacks.size());
  for (std::size_t i = 0; i < one.stacks.size(); ++i) {
    EXPECT_EQ(one.stacks[i].label, two.stacks[i].label);
    EXPECT_EQ(one.stacks[i].mean_nll, two.stacks[i].mean_nll) << one.stacks[i].label;
    EXPECT_EQ(one.stacks[i].mean_kl, two.stacks[i].mean_kl) << one.stacks[i].label;
    EXPECT_EQ(one.stacks[i].top1_agreement, two.stacks[i].top1_agreement) << one.stacks[i].label;
  }
  EXPECT_GT(one.stacks[1].mean_kl, 0.0) << "h2o:budget=24 should differ from the exact cache";
}

}  // namespace
}  // namespace kvc::engine
