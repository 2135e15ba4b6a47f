// The context-compression protocol: prefill C tokens, compress, score the next N against the
// exact cache. End to end on stories260K at small sizes.
#include "engine/models.hpp"
#include "eval/run_cli.hpp"

#include "kvc/core/error.hpp"
#include "kvc/runtime/registry.hpp"
#include "kvc_engine/eval_cli.hpp"
#include "kvc_engine/fidelity.hpp"
#include "kvc_engine/protocols.hpp"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include <sstream>

namespace kvc::test {
namespace {

using ::testing::HasSubstr;

TEST(ContextProtocol, SharesOfTheContextBecomeTokenCounts) {
  EXPECT_EQ(engine::resolve_context_shares("h2o:budget=12.5%+int4", 1024), "h2o:budget=128+int4");
  EXPECT_EQ(engine::resolve_context_shares("streaming:sinks=4,recent=10%", 300), "streaming:sinks=4,recent=30");
  EXPECT_EQ(engine::resolve_context_shares("pyramid:budget=25%+h2o", 100), "pyramid:budget=25+h2o");
  EXPECT_EQ(engine::resolve_context_shares("h2o:budget=0.01%", 100), "h2o:budget=1") << "at least one token";
  EXPECT_EQ(engine::resolve_context_shares("h2o:budget=64", 100), "h2o:budget=64");
  EXPECT_THAT([] { (void)engine::resolve_context_shares("h2o:budget=64,recent=50%", 100); },
              ::testing::ThrowsMessage<Error>(HasSubstr("'recent' of 'h2o' is not a token count")));
  EXPECT_THAT([] { (void)engine::resolve_context_shares("h2o:budget=150%", 100); },
              ::testing::ThrowsMessage<Error>(HasSubstr("must be a percentage in (0, 100]")));
  EXPECT_THAT([] { (void)engine::resolve_context_shares("int4:group=50%", 100); },
              ::testing::ThrowsMessage<Error>(HasSubstr("'group' of 'int4' is not a token count")));
  EXPECT_THAT([] { (void)engine::resolve_context_shares("int4:bits=5%", 100); },
              ::testing::ThrowsMessage<Error>(HasSubstr("no token-count parameter 'bits'")));
}

// FidelityRun with a context: nothing before C is scored, and every budget holds after it.
TEST(ContextProtocol, OnlyTheTokensAfterTheContextAreScored) {
  KVC_REQUIRE_MODELS();
  const auto& b = bundle();
  const Shape shape = b.model.config().attention_shape();
  constexpr std::size_t context = 100, scored = 28, window = context + scored;
  std::vector<std::unique_ptr<runtime::AnyCache>> caches;
  // The exact cache against itself: every difference must be exactly zero.
  caches.push_back(std::make_unique<runtime::CacheAdapter<engine::PlainCache>>(shape));
  caches.push_back(runtime::make_cache(runtime::parse_stack("h2o:budget=16"), shape, window + 1));
  engine::FidelityRun run(b.model, std::move(caches), {"exact", "h2o:budget=16"}, context);
  const auto& tokens = corpus_head();
  run.run_window(std::span(tokens).first(window));
  run.run_window(std::span(tokens).subspan(window, window));
  const engine::FidelityReport r = run.report();
  EXPECT_EQ(r.context, context);
  EXPECT_EQ(r.window_tokens, window);
  EXPECT_EQ(r.predictions, 2 * scored);
  EXPECT_EQ(r.position_buckets, std::vector<std::string>{"100-127"});
  ASSERT_EQ(r.stacks.size(), 2u);
  EXPECT_EQ(r.stacks[0].perplexity_change, 0.0);
  EXPECT_EQ(r.stacks[0].mean_kl, 0.0);
  EXPECT_EQ(r.stacks[0].top1_agreement, 1.0);
  EXPECT_NEAR(r.stacks[0].kept_attention_mass, 1.0, 1e-6) << "sums of softmax weights";
  // Every head holds exactly its budget at the end: 16 of the 128 positions seen.
  EXPECT_DOUBLE_EQ(r.stacks[1].tokens_kept, 16.0 / double(window));
  EXPECT_GT(r.stacks[1].mean_kl, 0.0);
  EXPECT_LT(r.stacks[1].kept_attention_mass, 1.0);

  std::vector<std::unique_ptr<runtime::AnyCache>> one;
  one.push_back(runtime::make_cache(runtime::parse_stack("full"), shape, window + 1));
  engine::FidelityRun too_short(b.model, std::move(one), {"full"}, context);
  EXPECT_THAT([&] { too_short.run_window(std::span(tokens).first(context)); },
              ::testing::ThrowsMessage<Error>(HasSubstr("leaves nothing to score")));
}

// The decode protocol at longer windows: the position buckets keep doubling to the window's end
// (256-511, 512-1023, ... on a long-context model); here 256-299 on stories260K.
TEST(ContextProtocol, DecodeBucketsDoubleToTheWindowEnd) {
  KVC_REQUIRE_MODELS();
  const auto& b = bundle();
  std::vector<std::unique_ptr<runtime::AnyCache>> caches;
  caches.push_back(std::make_unique<runtime::CacheAdapter<engine::PlainCache>>(b.model.config().attention_shape()));
  engine::FidelityRun run(b.model, std::move(caches), {"exact"});
  run.run_window(std::span(corpus_head()).first(300));
  const engine::FidelityReport r = run.report();
  EXPECT_EQ(r.context, 0u);
  EXPECT_EQ(r.predictions, 300u);
  EXPECT_EQ(r.position_buckets, (std::vector<std::string>{"0-63", "64-127", "128-255", "256-299"}));
  EXPECT_EQ(r.reference_perplexity_by_position.size(), 4u);
}

TEST(ContextProtocol, EndToEndWritesOneRowPerContextAndStack) {
  KVC_REQUIRE_MODELS();
  const auto dir = temp_dir();
  std::string out, err;
  ASSERT_EQ(run({"--protocol", "context", "--context", "128,256", "--score-tokens", "64", "--windows", "2",
                 "--stack", "full", "--stack", "h2o:budget=16", "--stack", "h2o:budget=12.5%", "-o", dir.string(),
                 "-q"},
                out, err),
            0)
      << err;
  EXPECT_THAT(out, HasSubstr("context C = 256 tokens (BOS included), then 64 scored"));
  const auto json = nlohmann::json::parse(read_bytes(dir / "results.json"));
  EXPECT_EQ(json["protocol"], "context");
  EXPECT_EQ(json["contexts"], nlohmann::json::array({128, 256}));
  EXPECT_EQ(json["score_tokens"], 64);
  ASSERT_EQ(json["runs"].size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& r = json["runs"][i];
    EXPECT_EQ(r["protocol"], "context");
    EXPECT_EQ(r["context"], i == 0 ? 128 : 256);
    EXPECT_EQ(r["score_tokens"], 64);
    EXPECT_EQ(r["predictions"], 2 * 64);
    ASSERT_EQ(r["stacks"].size(), 3u);
    const auto& exact = r["stacks"][0];
    const auto& h2o = r["stacks"][1];
    // The f32 full KVCache sums in another order than the reference: equal to rounding.
    EXPECT_NEAR(exact["perplexity_change"].get<double>(), 0.0, 1e-6);
    EXPECT_LT(exact["mean_kl"].get<double>(), 1e-9);
    EXPECT_EQ(exact["top1_agreement"].get<double>(), 1.0);
    // A budget of 16 tokens loses predictions the exact cache gets right.
    EXPECT_LT(h2o["top1_agreement"].get<double>(), 1.0);
    EXPECT_GT(h2o["mean_kl"].get<double>(), 1e-4);
    EXPECT_GT(h2o["compression_ratio"].get<double>(), exact["compression_ratio"].get<double>());
    EXPECT_EQ(r["stacks"][2]["stack"], "h2o:budget=12.5%") << "the label keeps the share";
  }
  // 12.5% of C is 16 tokens at C = 128: the same stack as budget=16.
  EXPECT_EQ(json["runs"][0]["stacks"][2]["mean_kl"], json["runs"][0]["stacks"][1]["mean_kl"]);
  EXPECT_NE(json["runs"][1]["stacks"][2]["mean_kl"], json["runs"][1]["stacks"][1]["mean_kl"]);

  std::istringstream csv(read_bytes(dir / "results.csv"));
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(csv, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 1u + 2u * 3u);
  EXPECT_THAT(lines[0], ::testing::StartsWith("protocol,context,score_tokens,stack,compression_ratio,"));
  EXPECT_THAT(lines[1], ::testing::StartsWith("context,128,64,full,"));
  EXPECT_THAT(lines[6], ::testing::StartsWith("context,256,64,h2o:budget=12.5%,"));
  EXPECT_TRUE(std::filesystem::exists(dir / "results-c128.svg"));
  EXPECT_TRUE(std::filesystem::exists(dir / "results-c256.svg"));
}

TEST(ContextProtocol, ContextBeyondTheModelSaysWhatFits) {
  KVC_REQUIRE_MODELS();
  std::string out, err;
  EXPECT_EQ(run({"--protocol", "context", "--context", "500", "--score-tokens", "64", "--stack", "full", "-o",
                 temp_dir().string()},
                out, err),
            1);
  EXPECT_THAT(err, HasSubstr("--context 500 with --score-tokens 64 needs 564 positions; the model has 512"));
}

}  // namespace
}  // namespace kvc::test
