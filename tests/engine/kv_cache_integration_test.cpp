// The engine on kvc::KVCache: with no policy it must behave exactly like plain attention.
#include "engine/models.hpp"

#include "kvc/kvc.hpp"
#include "kvc/runtime/any_cache.hpp"
#include "kvc_engine/fidelity.hpp"
#include "kvc_engine/generate.hpp"
#include "kvc_engine/plain_cache.hpp"

#include <gtest/gtest.h>

namespace kvc::test {
namespace {

using namespace kvc::engine;
using namespace kvc::runtime;

TEST(KVCacheIntegration, FullCacheGreedyTokensEqualPlainAttention) {
  KVC_REQUIRE_MODELS();
  const Bundle& b = bundle();
  const Shape shape = b.model.config().attention_shape();
  Transformer transformer(b.model);
  Sampler greedy;
  PlainCache plain(shape);
  const auto expected = generate(transformer, plain, b.tokenizer, "", 200, greedy);
  KVCache<> full(shape, Options{.capacity = 512});
  const auto got = generate(transformer, full, b.tokenizer, "", 200, greedy);
  EXPECT_EQ(got, expected);
  EXPECT_EQ(full.tokens(), 200u * shape.kv_heads * shape.layers);
}

TEST(KVCacheIntegration, FullCacheHasZeroKlAgainstPlainAttention) {
  KVC_REQUIRE_MODELS();
  const Bundle& b = bundle();
  const Shape shape = b.model.config().attention_shape();
  std::vector<std::unique_ptr<AnyCache>> caches;
  caches.push_back(std::make_unique<CacheAdapter<KVCache<>>>(shape, Options{.capacity = 512}));
  FidelityRun run(b.model, std::move(caches), {"full"});
  run.run_window(make_windows(corpus_head(), 511, 1)[0]);
  const FidelityReport r = run.report();
  ASSERT_EQ(r.stacks.size(), 1u);
  const StackMetrics& m = r.stacks[0];
  EXPECT_LT(m.mean_kl, 1e-9);
  EXPECT_EQ(m.top1_agreement, 1.0);
  EXPECT_NEAR(m.perplexity, r.reference_perplexity, 1e-5 * r.reference_perplexity);
  EXPECT_NEAR(m.kept_attention_mass, 1.0, 1e-6);
  for (const double e : m.attention_error) EXPECT_LT(e, 1e-5);
  EXPECT_DOUBLE_EQ(m.tokens_kept, 1.0);
}

}  // namespace
}  // namespace kvc::test
